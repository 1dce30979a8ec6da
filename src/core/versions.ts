/**
 * Base versions (SPEC §8): the first write of a name is a version with exactly that name;
 * every later write is `<name>-vYYYYMMDDHHMMSS` (UTC). Two writes in the same second must
 * not collide, so the timestamp moves forward to the next free second.
 */
import { InvalidArgumentError } from './errors.js';

const STAMP = /-v(\d{14})$/;

function versionStamp(date: Date): string {
  const iso = date.toISOString(); // 2026-11-24T09:30:00.000Z
  return iso.slice(0, 19).replace(/[-:T]/g, '');
}

/**
 * The name the next version of `base` gets. `exists` tells whether a version name is taken.
 * A base name plus the suffix must still be at most 63 characters.
 */
export function nextVersionName(base: string, now: Date, exists: (name: string) => boolean): string {
  if (!exists(base)) return base;
  const suffixLength = '-v'.length + 14;
  if (base.length + suffixLength > 63) {
    throw new InvalidArgumentError(`base name "${base}" is too long to get a version suffix (at most ${63 - suffixLength} characters)`, {
      code: 'ZOMG_INVALID_NAME',
    });
  }
  let t = Math.floor(now.getTime() / 1000) * 1000;
  for (;;) {
    const name = `${base}-v${versionStamp(new Date(t))}`;
    if (!exists(name)) return name;
    t += 1000;
  }
}

/** The alias a version name was written under (`<alias>` or `<alias>-vYYYYMMDDHHMMSS`). */
export const aliasOfVersion = (version: string): string => version.replace(STAMP, '');

/** The next automatic snapshot name: `v<N+1>` where N is the highest existing `vN` (v0 when there is none). */
export function nextSnapshotName(existing: readonly string[]): string {
  let max = -1;
  for (const name of existing) {
    const m = /^v(0|[1-9]\d*)$/.exec(name);
    if (m) max = Math.max(max, Number(m[1]));
  }
  return `v${max + 1}`;
}
