/**
 * Bases from Dockerfiles (`base build`) and from boxes (`base save`).
 *
 * A build runs a container engine (storage/builders.ts) and turns the image's root
 * filesystem into a new base version: build → hand the root over into a staging subvolume
 * (a btrfs snapshot of podman's layer when podman keeps its store on the pool, else export
 * | tar) → check the binaries' architecture → commit (kind `build`, the Dockerfile as script,
 * its sha256 as tag, the image's ENV/WORKDIR/USER/CMD as config) → remove the image. A
 * failure anywhere records nothing and removes the image.
 *
 * zomg's podman store is `<pool>/staging/podman` with the btrfs storage driver, so the
 * hand-over is a snapshot on the same filesystem; images pulled for `FROM` stay there as a
 * cache. Builds are serialized (one lock for every zomg process of the state directory): the
 * builder's clean-up of a failed build removes working containers by creation time, which
 * a concurrent build in the same store would lose. A marker file per running build lets the
 * next engine start remove what a build killed mid-way left in the store.
 */
import { fsPromises, nodeCrypto, randomHex } from '../system/builtins.js';
import { mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { ConflictError, PoolFullError, ZomgError, rewordError } from '../core/errors.js';
import { parseBaseName } from '../core/names.js';
import type { BoxRef } from '../core/refs.js';
import type { BuildBaseOptions } from '../core/service.js';
import type { BaseVersion, BuilderName } from '../core/types.js';
import { aliasOfVersion } from '../core/versions.js';
import { atomicWriteFile, isErrno } from '../system/fs.js';
import { isAlive, selfIdentity } from '../system/procfs.js';
import { resolveInRoot } from '../system/rootpath.js';
import { Reverter } from '../system/reverter.js';
import { CommandError } from '../system/run.js';
import type { DetectBuilderOptions } from '../storage/builders.js';
import { podmanStoreOf } from '../storage/layout.js';
import { mutation, withBox } from './access.js';
import { type LocatedContext, isDetachedDockerfile, locateBuildContext, noDockerfile, readDockerfile, uploadedDockerfile } from './build-context.js';
import type { EngineContext } from './context.js';
import { commitVersion, placeStaged } from './versions.js';

/** The lock every build takes (builds are serialized per state directory, hence per store). */
const BUILD_LOCK = 'builds';
const BUILD_LOCK_TIMEOUT_MS = 60 * 60_000;

/** zomg's own podman store for the pool at `poolRoot`: on the pool, never the host's. */
export function podmanStoreFor(poolRoot: string, runroot?: string): DetectBuilderOptions {
  const key = nodeCrypto().createHash('sha256').update(poolRoot).digest('hex').slice(0, 12);
  return {
    podmanRoot: podmanStoreOf(poolRoot),
    // tmpfs, so podman notices a reboot; keyed by pool, so two pools never share it.
    podmanRunroot: runroot ?? join('/run/zomg', `podman-${key}`),
    // The btrfs driver on the pool's filesystem: the snapshot hand-over applies.
    storageDriver: 'btrfs',
  };
}

const podmanStore = (ctx: EngineContext): DetectBuilderOptions => podmanStoreFor(ctx.pool.root, ctx.options.podmanRunroot);

// --- build markers --------------------------------------------------------------------

interface BuildMarker {
  pid: number;
  /** The builder process's start time (absent in markers of older versions). */
  start_time?: number;
  builder: BuilderName;
  tag: string;
  since_ms: number;
}

const markersDir = (ctx: EngineContext): string => join(ctx.stateDir, 'builds');

function writeMarker(ctx: EngineContext, marker: BuildMarker): string {
  mkdirSync(markersDir(ctx), { recursive: true, mode: 0o700 });
  const path = join(markersDir(ctx), `${marker.pid}-${randomHex(4)}.json`);
  atomicWriteFile(path, JSON.stringify(marker), 0o600);
  return path;
}

/**
 * Removes what builds whose process died left in the engine's store (their image, buildah
 * working containers, export containers). Cheap when there is nothing to do (one readdir);
 * skipped when a build is running now (its lock is held), to be retried at the next start.
 * Returns how many dead builds were cleaned up.
 */
export async function pruneStaleBuilds(ctx: EngineContext): Promise<number> {
  let names: string[];
  try {
    names = readdirSync(markersDir(ctx)).filter((n) => n.endsWith('.json'));
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return 0;
    throw err;
  }
  const stale: Array<{ path: string; marker: BuildMarker | null }> = [];
  for (const name of names) {
    const path = join(markersDir(ctx), name);
    let marker: BuildMarker | null = null;
    try {
      marker = JSON.parse(readFileSync(path, 'utf8')) as BuildMarker;
    } catch (err) {
      if (isErrno(err, 'ENOENT')) continue;
      // A marker cut short by a crash is not parseable; there is nothing to clean for it.
    }
    if (marker !== null && isAlive({ pid: marker.pid, startTime: marker.start_time })) continue;
    stale.push({ path, marker });
  }
  if (stale.length === 0) return 0;
  let lock;
  try {
    lock = await ctx.locks.acquire(BUILD_LOCK, { timeoutMs: 0, what: 'the container build' });
  } catch (err) {
    if (err instanceof ConflictError) return 0;
    throw err;
  }
  try {
    const { removeBuildLeftovers } = await import('../storage/builders.js');
    let cleaned = 0;
    for (const { path, marker } of stale) {
      if (marker !== null) {
        try {
          await removeBuildLeftovers(marker.builder, podmanStore(ctx), { tag: marker.tag, sinceMs: marker.since_ms });
        } catch (err) {
          // The engine is gone or not answering: nothing of it can be removed now, and an
          // engine that stays away must not slow every later start down. Programmer errors
          // still surface.
          if (!(err instanceof ZomgError) && !(err instanceof CommandError)) throw err;
        }
      }
      rmSync(path, { force: true });
      cleaned++;
    }
    return cleaned;
  } finally {
    lock.release();
  }
}

// --- build ----------------------------------------------------------------------------

/**
 * Builds the Dockerfile into a new version of `name` (see the file comment). The context is
 * a local directory or an uploaded tar stream, extracted into a staging subvolume first.
 */
export async function buildBase(ctx: EngineContext, name: string, options: BuildBaseOptions = {}): Promise<BaseVersion> {
  parseBaseName(name);
  options.signal?.throwIfAborted();
  const source = options.context;
  if (source !== undefined && typeof source !== 'string') return buildUploaded(ctx, name, source, options);
  const located = await locateBuildContext(source ?? '.', options.dockerfile);
  return buildLocated(ctx, name, located, options);
}

async function buildUploaded(ctx: EngineContext, name: string, upload: Readable, options: BuildBaseOptions): Promise<BaseVersion> {
  const rel = uploadedDockerfile(options.dockerfile ?? 'Dockerfile');
  // A staging subvolume, so a crash leaves nothing the reconciler does not remove.
  const contextId = ctx.pool.newStaging('context');
  await ctx.pool.create(contextId);
  const context = ctx.pool.hostPath(contextId);
  let aside: string | undefined;
  let failed = true;
  try {
    const { extractRootfs } = await import('../storage/tar.js');
    await extractRootfs(upload, context, options.signal ? { signal: options.signal } : {});
    // Resolved as if the context were `/`: an uploaded `Dockerfile -> /etc/shadow` must
    // never read (and record, and return) a file of the server.
    const resolved = resolveInRoot(context, rel);
    if (!resolved.stat?.isFile()) throw noDockerfile(rel);
    let dockerfile = resolved.hostPath;
    const script = await readDockerfile(dockerfile, rel);
    if (isDetachedDockerfile(rel)) {
      aside = await fsPromises().mkdtemp(join(tmpdir(), 'zomg-dockerfile-'));
      dockerfile = join(aside, 'Dockerfile');
      await fsPromises().writeFile(dockerfile, script);
      await fsPromises().unlink(join(context, rel)); // the name itself (a top-level entry), never a link's target
    }
    const version = await buildLocated(ctx, name, { context, dockerfile, shown: rel, script }, options);
    failed = false;
    return version;
  } finally {
    if (aside !== undefined) await fsPromises().rm(aside, { recursive: true, force: true });
    try {
      await ctx.pool.delete(contextId, { waitForSpace: failed });
    } catch {
      // After a recorded build the context is garbage the reconciler removes (its pid is
      // then dead); after a failure the build's own error is what the user must see.
    }
  }
}

async function buildLocated(ctx: EngineContext, name: string, at: LocatedContext, options: BuildBaseOptions): Promise<BaseVersion> {
  const script = at.script;
  const sha = nodeCrypto().createHash('sha256').update(script).digest('hex');
  const progress = options.onProgress;
  const signal = options.signal;
  const { detectBuilder } = await import('../storage/builders.js');
  return mutation(ctx, () => ctx.locks.with(
    BUILD_LOCK,
    async () => {
      const store = podmanStore(ctx);
      const builder = await detectBuilder(options.builder, { ...store, ...(signal ? { signal } : {}) });
      progress?.({ phase: `build (${builder.name})` });
      const marker = writeMarker(ctx, { pid: process.pid, start_time: selfIdentity().startTime, builder: builder.name, tag: `${name.toLowerCase()}:latest`, since_ms: Date.now() });
      let leftBehind = false;
      try {
        let image;
        try {
          image = await builder.build({
            name,
            dockerfile: at.dockerfile,
            context: at.context,
            onLine: (line) => progress?.({ phase: 'build', line: ctx.redact(line) }),
            ...(signal ? { signal } : {}),
          });
        } catch (err) {
          // Build output quotes host paths (the uploaded context lives in the pool); API clients must not see them.
          if (!(err instanceof ZomgError)) throw err;
          const redacted = rewordError(err, ctx.redact(err.message));
          if (redacted.code === 'ZOMG_BUILD_FAILED' && /no space left on device/i.test(redacted.message)) {
            throw new PoolFullError('the storage pool filled up during the build', { cause: redacted });
          }
          throw redacted;
        }
        try {
          return await new Reverter().run(async (r) => {
            const staging = ctx.pool.newStaging('build');
            progress?.({ phase: 'hand-over' });
            const handover = await image.exportTo(ctx.pool.hostPath(staging), ctx.pool.driver, { method: ctx.options.buildHandover ?? 'auto', ...(signal ? { signal } : {}) });
            r.add('delete staging subvolume', () => ctx.pool.delete(staging, { waitForSpace: true }));
            progress?.({ phase: `handed over by ${handover.method} in ${Math.round(handover.durationMs)} ms` });
            await ctx.fault('build:handed-over');
            // podman stamps the requested platform on any image: the binaries decide.
            progress?.({ phase: 'verify' });
            await (await import('../storage/arch.js')).verifyArchitecture(ctx.pool.hostPath(staging));
            return commitVersion(ctx, {
              alias: name,
              kind: 'build',
              builder: builder.name,
              script,
              scriptSha256: sha,
              config: image.config,
              place: placeStaged(ctx, staging),
            });
          });
        } finally {
          try {
            await image.remove();
          } catch {
            // The outcome stands either way; the marker stays, so the next engine start
            // removes the image.
            leftBehind = true;
          }
        }
      } finally {
        if (!leftBehind) rmSync(marker, { force: true });
      }
    },
    { what: 'the container build', timeoutMs: BUILD_LOCK_TIMEOUT_MS, ...(signal ? { signal } : {}) },
  ));
}

// --- save -----------------------------------------------------------------------------


/**
 * Saves the box's current root as a new version of `name`: a read-only snapshot straight
 * into `bases/`, O(1) in the size of the tree, taken under the box lock so no restore or
 * delete swaps the root meanwhile. Kind `save`; the parent is the base version the box was
 * cloned from, whose image config the new version keeps.
 */
export async function saveBase(ctx: EngineContext, name: string, ref: BoxRef): Promise<BaseVersion> {
  parseBaseName(name);
  return withBox(ctx, ref, async ({ row, root }) => {
    const parent = ctx.bases.getVersion(row.base);
    return commitVersion(ctx, {
      alias: name,
      kind: 'save',
      parent: parent ?? { name: row.base, alias: aliasOfVersion(row.base) },
      config: parent?.config ?? null,
      place: async (dest) => void (await ctx.pool.snapshot(root, dest, { readOnly: true })),
    });
  });
}
