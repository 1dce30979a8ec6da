/** The one table from error to exit code: 2 for usage errors, 1 for everything else. */
import { UsageError, isZomgError } from '../core/errors.js';

export function exitCodeOf(err: unknown): number {
  if (err instanceof UsageError) return 2;
  if (isZomgError(err)) return 1;
  return 1;
}
