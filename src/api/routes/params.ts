/** Ref parsing shared by the route files: every path parameter goes through core's parsers before use. */
import { parseBoxName, parseProjectName } from '../../core/names.js';
import type { BoxRef } from '../../core/refs.js';

export interface BoxParams {
  project: string;
  name: string;
}

export const boxRef = (p: BoxParams): BoxRef => ({ project: parseProjectName(p.project), name: parseBoxName(p.name) });

/** A string, as a plain JSON schema (for routes whose schemas are written out by hand). */
export const str = { type: 'string' } as const;

/** The `{project, name}` path parameters of a box route, as a plain JSON schema. */
export const boxParams = { type: 'object', required: ['project', 'name'], properties: { project: str, name: str } } as const;
