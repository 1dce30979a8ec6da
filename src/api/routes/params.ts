/** Ref parsing shared by the route files: every path parameter goes through core's parsers before use. */
import { parseBoxName, parseProjectName } from '../../core/names.js';
import type { BoxRef } from '../../core/refs.js';

export const boxRef = (p: { project: string; name: string }): BoxRef => ({ project: parseProjectName(p.project), name: parseBoxName(p.name) });
