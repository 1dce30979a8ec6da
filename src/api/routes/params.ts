/** Ref parsing shared by the route files: every path parameter goes through core's parsers before use. */
import { parseBoxName, parseProjectName } from '../../core/names.js';
import type { BoxRef } from '../../core/refs.js';

export interface BoxParams {
  project: string;
  name: string;
}

export const boxRef = (p: BoxParams): BoxRef => ({ project: parseProjectName(p.project), name: parseBoxName(p.name) });
