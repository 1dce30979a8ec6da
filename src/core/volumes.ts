/**
 * Data volumes (SPEC §7): names, references, mount specs and the errors named once. Pure:
 * the same parsing for CLI arguments, route parameters and database rows.
 */
import { ConflictError, InvalidArgumentError, NotFoundError } from './errors.js';
import { type ProjectName, type SafeName, parseProjectName, parseSafeName } from './names.js';

export const parseVolumeName = (value: string): SafeName => parseSafeName(value, 'volume name');
export const parseVolumeSnapshotName = (value: string): SafeName => parseSafeName(value, 'volume snapshot name');
export const parseBackupName = (value: string): SafeName => parseSafeName(value, 'backup name');

export interface VolumeRef {
  project: ProjectName;
  name: SafeName;
}

/** `name` (in `project`) or `project:name`. */
export function parseVolumeRef(value: string, project: ProjectName): VolumeRef {
  const colon = value.indexOf(':');
  if (colon < 0) return { project, name: parseVolumeName(value) };
  return { project: parseProjectName(value.slice(0, colon)), name: parseVolumeName(value.slice(colon + 1)) };
}

/** How a box names a volume in its `data_mounts`: bare in its own project, `project:name` otherwise. */
export const volumeLabel = (ref: { project: string; name: string }, boxProject: string): string =>
  ref.project === boxProject ? ref.name : `${ref.project}:${ref.name}`;

/** A volume as one box mounts it (the box row's `data_mounts`). */
export interface DataMount {
  /** The volume: its name, or `project:name` for another project's volume. */
  name: string;
  /** Absolute mount path inside the box. */
  path: string;
  read_only: boolean;
}

/** Mount paths that belong to zomg or the kernel: a volume never goes there or below. */
const RESERVED_MOUNT_PREFIXES = ['/proc', '/sys', '/dev', '/box', '/home'] as const;

const within = (path: string, prefix: string): boolean => path === prefix || path.startsWith(`${prefix}/`);

function badMount(message: string, hint?: string): InvalidArgumentError {
  return new InvalidArgumentError(message, { code: 'ZOMG_INVALID_DATA_MOUNT', hint: hint ?? 'use -d VOLUME=/absolute/path[:ro|:rw], e.g. -d cache=/var/cache/app:ro' });
}

/** Checks a mount path: absolute, normalized, not `/`, not under the reserved prefixes, printable. */
export function checkMountPath(path: string): string {
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(path)) throw badMount(`invalid mount path ${JSON.stringify(path)}: it contains control characters`);
  if (!path.startsWith('/')) throw badMount(`invalid mount path "${path}": it must be absolute`);
  if (path === '/' || /^\/+$/.test(path)) throw badMount('invalid mount path "/": a volume cannot replace the root');
  const parts = path.split('/').slice(1);
  if (parts.some((p) => p === '' || p === '.' || p === '..') ) {
    throw badMount(`invalid mount path "${path}": write it without "//", ".", ".." or a trailing "/"`);
  }
  for (const prefix of RESERVED_MOUNT_PREFIXES) {
    if (within(path, prefix)) throw badMount(`invalid mount path "${path}": ${prefix} is reserved (the kernel's or zomg's own mounts live there)`);
  }
  return path;
}

/** Parses `NAME=/path[:ro|:rw]` (the `-d/--data` flag); the volume part stays a ref string for the engine. */
export function parseDataMountSpec(spec: string): { volume: string; path: string; read_only: boolean } {
  const eq = spec.indexOf('=');
  if (eq < 0) throw badMount(`invalid data mount "${spec}": expected VOLUME=/path[:ro|:rw]`);
  const volume = spec.slice(0, eq);
  let path = spec.slice(eq + 1);
  let readOnly = false;
  const colon = path.lastIndexOf(':');
  if (colon >= 0) {
    const mode = path.slice(colon + 1);
    if (mode !== 'ro' && mode !== 'rw') throw badMount(`invalid data mount "${spec}": unknown mode "${mode}" (use :ro or :rw)`);
    readOnly = mode === 'ro';
    path = path.slice(0, colon);
  }
  if (volume === '') throw badMount(`invalid data mount "${spec}": the volume name is missing before "="`);
  return { volume, path: checkMountPath(path), read_only: readOnly };
}

/** Refuses one volume twice, two volumes at one path, and nested mount paths. */
export function checkMountSet(mounts: ReadonlyArray<{ name: string; path: string }>): void {
  for (let i = 0; i < mounts.length; i++) {
    for (let j = i + 1; j < mounts.length; j++) {
      const a = mounts[i] as { name: string; path: string };
      const b = mounts[j] as { name: string; path: string };
      if (a.name === b.name) throw badMount(`volume "${a.name}" is mounted twice`, 'mount each volume once');
      if (a.path === b.path) throw badMount(`volumes "${a.name}" and "${b.name}" are both mounted at ${a.path}`, 'give each volume its own path');
      if (within(a.path, b.path) || within(b.path, a.path)) {
        const [outer, inner] = within(a.path, b.path) ? [b, a] : [a, b];
        throw badMount(`mount paths are nested: ${inner.path} ("${inner.name}") is inside ${outer.path} ("${outer.name}")`, 'mount volumes side by side, never one inside another');
      }
    }
  }
}

/** The data mount whose path holds `path` (an absolute in-box path), if any. */
export function mountHolding(mounts: readonly DataMount[], path: string): DataMount | undefined {
  const parts: string[] = [];
  for (const p of path.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') parts.pop();
    else parts.push(p);
  }
  const normalized = `/${parts.join('/')}`;
  return mounts.find((m) => within(normalized, m.path));
}

/**
 * The name of a box-owned volume made by a fork: `box-<prefix>-<12 hex>`, the prefix the
 * first characters of the new box's name so the whole is at most 63 (and never holds `--`).
 */
export function boxOwnedVolumeName(boxName: string, hex12: string): string {
  const room = 63 - 'box-'.length - 1 - 12;
  const prefix = boxName.slice(0, room).replace(/-+$/, '');
  return `box-${prefix}-${hex12}`;
}

// Errors named once so their codes and wording stay stable.
export const volumeNotFound = (ref: { project: string; name: string }): NotFoundError =>
  new NotFoundError('ZOMG_VOLUME_NOT_FOUND', `volume "${ref.project}:${ref.name}" not found`, {
    hint: 'run `zomg data list` to see the volumes of a project (another project\'s volume is named project:name)',
  });
export const volumeExists = (ref: { project: string; name: string }): ConflictError =>
  new ConflictError('ZOMG_VOLUME_EXISTS', `volume "${ref.project}:${ref.name}" already exists`, { hint: 'pick another name, or delete the existing volume' });
export const volumeSnapshotNotFound = (volume: string, name: string): NotFoundError =>
  new NotFoundError('ZOMG_VOLUME_SNAPSHOT_NOT_FOUND', `snapshot "${name}" of volume "${volume}" not found`, { hint: `run \`zomg data snapshot list ${volume}\`` });
export const backupNotFound = (what: string, url: string): NotFoundError =>
  new NotFoundError('ZOMG_BACKUP_NOT_FOUND', `backup ${what} not found at ${url}`, { hint: `run \`zomg data backup list --from ${url}\`` });
