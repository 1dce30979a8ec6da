/** A SQLite UNIQUE / PRIMARY KEY violation, turned into the conflict the user sees, by the repository that hit it. */
import { ConflictError } from '../core/errors.js';

const UNIQUE_CODES = new Set(['SQLITE_CONSTRAINT_UNIQUE', 'SQLITE_CONSTRAINT_PRIMARYKEY']);

const isUniqueViolation = (err: unknown): boolean =>
  err instanceof Error && UNIQUE_CODES.has((err as Error & { code?: unknown }).code as string);

/** Runs `insert`; a uniqueness violation becomes `conflict()` (with the SQLite error as its cause), anything else is rethrown. */
export function insertOrConflict<T>(insert: () => T, conflict: () => ConflictError): T {
  try {
    return insert();
  } catch (err) {
    if (!isUniqueViolation(err)) throw err;
    const e = conflict();
    throw new ConflictError(e.code, e.message, { cause: err, ...(e.hint !== undefined ? { hint: e.hint } : {}) });
  }
}
