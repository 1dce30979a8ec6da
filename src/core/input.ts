/**
 * Input that cannot smuggle: the one place that decides which bytes a string from a user
 * (a CLI argument, a JSON field, a route parameter) may carry before it becomes argv, an
 * environment variable, a path, a name or a tag. NUL is refused everywhere (the sandbox
 * passes its argument list NUL-separated, and C strings end at NUL); the other control
 * characters are refused where they have no meaning (paths, names, users). Errors quote at
 * most {@link QUOTE_MAX} characters of the input, so a huge value is never echoed back.
 */
import { InvalidArgumentError } from './errors.js';

export { QUOTE_MAX, quote } from './quote.js';
import { quote } from './quote.js';

/** Longest path accepted (Linux PATH_MAX). */
const PATH_MAX = 4096;

// C0 controls and DEL. Tab and newline are kept apart: they mean something in text.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
// eslint-disable-next-line no-control-regex
const CONTROL_BUT_WHITESPACE = /[\u0000-\u0008\u000b-\u001f\u007f]/;

const invalidInput = (message: string, hint?: string): InvalidArgumentError =>
  new InvalidArgumentError(message, { code: 'ZOMG_INVALID_INPUT', ...(hint !== undefined ? { hint } : {}) });

/** What a string may carry. */
export type TextRule =
  /** Anything but NUL (argv elements, environment values: newlines and escapes mean something there). */
  | 'no-nul'
  /** No control character but tab and newline (descriptions, free text). */
  | 'text'
  /** No control character at all (names, refs, paths, users, tags). */
  | 'line';

/** Throws ZOMG_INVALID_INPUT when `value` carries a byte `rule` refuses; `what` names the field in the message. */
export function checkText(value: string, what: string, rule: TextRule = 'line'): string {
  const nul = value.indexOf('\u0000');
  if (nul >= 0) {
    throw invalidInput(`invalid ${what} ${quote(value)}: it contains a NUL byte (at character ${nul})`, 'NUL cannot appear in arguments, environment variables, paths or names');
  }
  const re = rule === 'line' ? CONTROL : rule === 'text' ? CONTROL_BUT_WHITESPACE : undefined;
  const m = re?.exec(value);
  if (m) {
    throw invalidInput(`invalid ${what} ${quote(value)}: it contains the control character ${JSON.stringify(m[0])} (at character ${m.index})`);
  }
  return value;
}

/** An absolute or relative path: no control characters, at most PATH_MAX. */
export function checkPath(value: string, what = 'path'): string {
  checkText(value, what, 'line');
  if (value.length > PATH_MAX) throw invalidInput(`invalid ${what} ${quote(value)}: it is ${value.length} characters long (at most ${PATH_MAX})`);
  return value;
}

/** Every argv element: anything but NUL (a shell script may well hold newlines and escapes). */
export function checkArgv(argv: readonly string[], what = 'command argument'): void {
  argv.forEach((arg, i) => checkText(arg, `${what} ${i}`, 'no-nul'));
}

/** An exec request's strings: argv (no NUL), environment (key: no control characters; value: no NUL), cwd and user (no control characters). */
export function checkExecInput(req: { command: readonly string[]; env?: Record<string, string>; cwd?: string; user?: string }): void {
  checkArgv(req.command);
  for (const [k, v] of Object.entries(req.env ?? {})) {
    checkText(k, 'environment variable name', 'line');
    checkText(v, `value of environment variable ${quote(k)}`, 'no-nul');
  }
  if (req.cwd !== undefined) checkPath(req.cwd, 'working directory');
  if (req.user !== undefined) checkText(req.user, 'user', 'line');
}
