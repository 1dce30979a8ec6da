/** The one table from error to exit code: 2 for usage errors, 1 for everything else. */
import type { ErrorCode } from '../core/error-codes.js';
import { isZomgError } from '../core/errors.js';

/** The exit code of the CLI when a command fails with `code`. */
export const exitCodeOfCode = (code: ErrorCode): number => (code === 'ZOMG_USAGE' ? 2 : 1);

export function exitCodeOf(err: unknown): number {
  if (isZomgError(err)) return exitCodeOfCode(err.code);
  return 1;
}
