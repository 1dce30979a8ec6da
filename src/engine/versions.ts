/**
 * Base versions as every use case needs them: resolving a ref, and committing a new
 * version (name it, place its subvolume, record the row and move the alias, under one lock).
 */
import { baseNotFound } from '../core/errors.js';
import { parseBaseRef } from '../core/refs.js';
import type { BaseConfig, BaseKind, BaseVersion } from '../core/types.js';
import { nextVersionName } from '../core/versions.js';
import { transaction } from '../db/database.js';
import { Reverter } from '../system/reverter.js';
import type { StagingId, SubvolumeId } from '../storage/layout.js';
import { baseId, withBases } from './access.js';
import { type EngineContext, isoNow } from './context.js';
import { scheduleSizes } from './sizes.js';

/** Resolves an alias (its latest version), an exact version, or `alias:<sha256 prefix>`. */
export function resolveBase(ctx: EngineContext, value: string): BaseVersion {
  const ref = parseBaseRef(value);
  if (ref.kind === 'tag') {
    const version = ctx.bases.newestWithTag(ref.alias, ref.tagPrefix);
    if (!version) throw baseNotFound(value);
    return version;
  }
  const target = ctx.bases.aliasTarget(ref.name);
  const version = ctx.bases.getVersion(target ?? ref.name);
  if (!version) throw baseNotFound(value);
  return version;
}

export interface CommitOptions {
  alias: string;
  kind: BaseKind;
  builder?: string | null;
  /** Only its name and alias are recorded (a saved box's base version may have been deleted since). */
  parent?: Pick<BaseVersion, 'name' | 'alias'> | null;
  script?: string | null;
  scriptSha256?: string | null;
  config?: BaseConfig | null;
  /** Puts a read-only subvolume at `dest` (which does not exist yet). */
  place: (dest: SubvolumeId) => Promise<void>;
}

/**
 * Names the next version of `alias`, puts its subvolume into `bases/` and commits the row
 * and the alias in one transaction. Naming, placing and committing hold one lock, so two
 * writes in the same second get different names. The caller holds the pool's shared
 * mutations lock, so the reconciler never sees the placed-but-uncommitted subvolume.
 */
export async function commitVersion(ctx: EngineContext, options: CommitOptions): Promise<BaseVersion> {
  return withBases(ctx, async () => {
    const now = ctx.now();
    const name = nextVersionName(options.alias, now, (n) => ctx.bases.versionExists(n) || ctx.pool.exists(baseId(n)));
    const dest = baseId(name);
    const version = await new Reverter().run(async (r) => {
      await options.place(dest);
      r.add('delete version subvolume', () => ctx.pool.delete(dest));
      await ctx.fault('base:placed');
      const createdAt = isoNow(ctx);
      transaction(ctx.db, () => {
        ctx.bases.insertVersion({
          name,
          alias: options.alias,
          kind: options.kind,
          builder: options.builder ?? null,
          parentAlias: options.parent?.alias ?? null,
          parentVersion: options.parent?.name ?? null,
          script: options.script ?? null,
          scriptSha256: options.scriptSha256 ?? null,
          config: options.config ?? null,
          createdAt,
        });
        ctx.bases.setAlias(options.alias, name, createdAt);
      });
      const committed = ctx.bases.getVersion(name);
      if (!committed) throw new Error(`version ${name} vanished after commit`);
      return committed;
    });
    scheduleSizes(ctx);
    return version;
  });
}

/** Places a finished staging subvolume as the version (rename, then read-only: a read-only subvolume cannot change directory). */
export const placeStaged =
  (ctx: EngineContext, staging: StagingId) =>
  (dest: SubvolumeId): Promise<void> =>
    ctx.pool.place(staging, dest, { readOnly: true });

/** A staging subvolume: empty, or a writable snapshot of `parent`. Registered for deletion on failure. */
export async function makeStaging(ctx: EngineContext, r: Reverter, label: string, parent?: BaseVersion): Promise<StagingId> {
  const staging = ctx.pool.newStaging(label);
  if (parent) await ctx.pool.snapshot(baseId(parent.name), staging, { readOnly: false });
  else await ctx.pool.create(staging);
  // Failed imports and builds may have filled the pool: wait until the space is back.
  r.add('delete staging subvolume', () => ctx.pool.delete(staging, { waitForSpace: true }));
  return staging;
}
