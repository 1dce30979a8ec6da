/**
 * Names and references, parsed once, here, by the same code for CLI arguments, route
 * parameters and database rows. Parsers return branded strings so an unchecked string
 * cannot reach the engine where a validated name is expected.
 */
import { InvalidArgumentError } from './errors.js';
import { checkText, quote } from './input.js';

declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

export type SafeName = Brand<string, 'SafeName'>;
export type BoxName = Brand<string, 'BoxName'>;
export type ProjectName = Brand<string, 'ProjectName'>;
export type BaseName = SafeName;
export type SnapshotName = SafeName;

export const NAME_RULE = '1-63 characters of lowercase a-z, 0-9 and "-", starting and ending with a letter or digit, with no "--"';

/** Why `value` is not a safe name component, or undefined when it is one. */
export function nameProblem(value: string): string | undefined {
  if (value.length === 0) return 'it is empty';
  if (value.length > 63) return `it is ${value.length} characters long (at most 63)`;
  if (!/^[a-z0-9-]+$/.test(value)) {
    return /[A-Z]/.test(value) ? 'it contains uppercase letters' : 'it contains characters other than a-z, 0-9 and "-"';
  }
  if (value.startsWith('-')) return 'it starts with "-"';
  if (value.endsWith('-')) return 'it ends with "-"';
  if (value.includes('--')) return 'it contains "--"';
  return undefined;
}

function check(kind: string, value: string): void {
  if (typeof value !== 'string') throw new InvalidArgumentError(`invalid ${kind}: expected a string`, { code: 'ZOMG_INVALID_NAME' });
  checkText(value, kind);
  const problem = nameProblem(value);
  if (problem !== undefined) {
    throw new InvalidArgumentError(`invalid ${kind} ${quote(value)}: ${problem}; a ${kind} must be ${NAME_RULE}`, {
      code: 'ZOMG_INVALID_NAME',
    });
  }
}

export function parseSafeName(value: string, kind = 'name'): SafeName {
  check(kind, value);
  return value as SafeName;
}

export const parseBoxName = (value: string): BoxName => {
  check('box name', value);
  return value as BoxName;
};
export const parseProjectName = (value: string): ProjectName => {
  check('project name', value);
  return value as ProjectName;
};
export const parseBaseName = (value: string): BaseName => parseSafeName(value, 'base name');
export const parseSnapshotName = (value: string): SnapshotName => parseSafeName(value, 'snapshot name');

export const isValidName = (value: string): boolean => nameProblem(value) === undefined;

const TAG_PART = /^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$/;

/** Parses `key=value` tags; keys and values follow the name rule and may also use `_` and `.`. */
export function parseTag(value: string): [string, string] {
  checkText(value, 'tag');
  const eq = value.indexOf('=');
  const key = eq < 0 ? value : value.slice(0, eq);
  const val = eq < 0 ? '' : value.slice(eq + 1);
  if (eq < 0 || !TAG_PART.test(key) || !TAG_PART.test(val) || key.includes('--') || val.includes('--')) {
    throw new InvalidArgumentError(
      `invalid tag ${quote(value)}: a tag is key=value, each 1-63 characters of lowercase a-z, 0-9, "-", "_" and ".", starting and ending with a letter or digit`,
      { code: 'ZOMG_INVALID_TAG' },
    );
  }
  return [key, val];
}

export const RESERVED_ENV = ['ZOMG_PROJECT', 'BOX_NAME', 'ZOMG_API_URL', 'TERM'] as const;

/** Parses `KEY=VALUE` for `-e`; the injected keys are reserved. */
export function parseEnvAssignment(value: string): [string, string] {
  const eq = value.indexOf('=');
  const key = eq < 0 ? value : value.slice(0, eq);
  checkText(key, 'environment variable name');
  checkText(value.slice(eq + 1), `value of environment variable ${quote(key)}`, 'no-nul');
  if (eq <= 0 || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) {
    throw new InvalidArgumentError(`invalid environment variable ${quote(value)}: expected KEY=VALUE with KEY of letters, digits and "_"`, {
      code: 'ZOMG_INVALID_ENV',
    });
  }
  if ((RESERVED_ENV as readonly string[]).includes(key)) {
    throw new InvalidArgumentError(`${key}: environment variable is reserved`, { code: 'ZOMG_RESERVED_ENV' });
  }
  return [key, value.slice(eq + 1)];
}
