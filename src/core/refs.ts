/** Box and base references (SPEC §2), parsed without I/O. */
import { InvalidArgumentError } from './errors.js';
import { checkText, quote } from './input.js';
import { type BoxName, type ProjectName, isValidName, parseBaseName, parseBoxName, parseProjectName } from './names.js';

export interface BoxRef {
  project: ProjectName;
  name: BoxName;
}

export type ParsedBoxRef = { kind: 'box'; ref: BoxRef } | { kind: 'ephemeral' };

export interface RefEnv {
  /** The resolved project for refs without one. */
  project: ProjectName;
  /** ZOMG_PROJECT and BOX_NAME, for the `.` ref. */
  currentProject?: string | undefined;
  currentBox?: string | undefined;
}

/** `name`, `project:name`, `project.name` (colon tried first), `.` (the current box), `-` (ephemeral). */
export function parseBoxRef(value: string, env: RefEnv): ParsedBoxRef {
  checkText(value, 'box reference');
  if (value === '-') return { kind: 'ephemeral' };
  if (value === '.') {
    if (!env.currentProject || !env.currentBox) {
      throw new InvalidArgumentError('"." means the current box, but ZOMG_PROJECT and BOX_NAME are not set', {
        code: 'ZOMG_INVALID_REF',
        hint: 'run this inside a box, or name the box',
      });
    }
    return { kind: 'box', ref: { project: parseProjectName(env.currentProject), name: parseBoxName(env.currentBox) } };
  }
  const colon = value.indexOf(':');
  if (colon >= 0) {
    return { kind: 'box', ref: { project: parseProjectName(value.slice(0, colon)), name: parseBoxName(value.slice(colon + 1)) } };
  }
  const dot = value.indexOf('.');
  if (dot >= 0) {
    return { kind: 'box', ref: { project: parseProjectName(value.slice(0, dot)), name: parseBoxName(value.slice(dot + 1)) } };
  }
  return { kind: 'box', ref: { project: env.project, name: parseBoxName(value) } };
}

export type BaseRef =
  | { kind: 'name'; name: string } // an alias or an exact version name; the engine decides which
  | { kind: 'tag'; alias: string; tagPrefix: string };

/** An alias, an exact version name, or `alias:<sha256 prefix>`. */
export function parseBaseRef(value: string): BaseRef {
  checkText(value, 'base reference');
  const colon = value.indexOf(':');
  if (colon < 0) {
    parseBaseName(value);
    return { kind: 'name', name: value };
  }
  const alias = value.slice(0, colon);
  const tagPrefix = value.slice(colon + 1).toLowerCase();
  parseBaseName(alias);
  if (!/^[0-9a-f]{1,64}$/.test(tagPrefix)) {
    throw new InvalidArgumentError(`invalid base reference ${quote(value)}: after ":" comes a sha256 prefix of hex digits`, {
      code: 'ZOMG_INVALID_REF',
    });
  }
  return { kind: 'tag', alias, tagPrefix };
}

/** The git repository root's directory name becomes the project when it is a valid name. */
export function projectFromDirName(dirName: string | undefined): ProjectName | undefined {
  return dirName !== undefined && isValidName(dirName) ? (dirName as ProjectName) : undefined;
}
