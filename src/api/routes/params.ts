/** Route parameter schemas and ref parsing shared by the route files. */
import { parseBoxName, parseProjectName } from '../../core/names.js';
import type { BoxRef } from '../../core/refs.js';

export const str = { type: 'string' } as const;

export const boxParams = {
  type: 'object',
  required: ['project', 'name'],
  properties: { project: str, name: str },
} as const;

export interface BoxParams {
  project: string;
  name: string;
}

export const boxRef = (p: BoxParams): BoxRef => ({ project: parseProjectName(p.project), name: parseBoxName(p.name) });
