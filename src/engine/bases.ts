/** Base use cases: resolve refs, list, inspect, import, install, commit versions, delete. */
import { quote } from '../core/input.js';
import { nodeCrypto } from '../system/builtins.js';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { ConflictError, InvalidArgumentError, NotFoundError, PoolFullError, ToolError, baseNotFound } from '../core/errors.js';
import { parseBaseName } from '../core/names.js';
import type { ImportBaseOptions, InstallBaseOptions } from '../core/service.js';
import type { BaseDetails, BaseSummary, BaseVersion, InstallOutcome } from '../core/types.js';
import { isErrno, regularFileSize } from '../system/fs.js';
import { Reverter } from '../system/reverter.js';
import { CommandError, isNoSpace, run } from '../system/run.js';
import { baseId, mutation, withBases } from './access.js';
import type { EngineContext } from './context.js';
import { commitVersion, makeStaging, placeStaged, resolveBase } from './versions.js';

export function listBases(ctx: EngineContext): BaseSummary[] {
  return ctx.bases.aliases().flatMap(({ name, version }) => {
    const v = ctx.bases.getVersion(version);
    return v ? [{ name, latest_version: v.name, size_bytes: v.size_bytes, created_at: v.created_at }] : [];
  });
}

/** Every version written under `name` (or the one version named `name`), filtered by tag prefix. */
export function inspectBase(ctx: EngineContext, name: string, options: { tag?: string } = {}): BaseDetails {
  parseBaseName(name);
  let versions = ctx.bases.versionsOf(name);
  if (versions.length === 0) {
    const single = ctx.bases.getVersion(name);
    if (single) versions = [single];
  }
  const latest = ctx.bases.aliasTarget(name) ?? null;
  if (versions.length === 0 && latest === null) throw baseNotFound(name);
  if (options.tag !== undefined) {
    const tag = options.tag.toLowerCase();
    if (!/^[0-9a-f]{1,64}$/.test(tag)) {
      throw new InvalidArgumentError(`invalid tag ${quote(options.tag)}: a tag is a sha256 (or a prefix) in hex`, { code: 'ZOMG_INVALID_REF' });
    }
    versions = versions.filter((v) => v.provenance.build.script_sha256?.startsWith(tag));
  }
  return { name, latest_version: latest, versions };
}


/** Imports a rootfs tarball as a new version of `name` (on top of `parent` when given). */
export async function importBase(ctx: EngineContext, name: string, source: string | Readable, options: ImportBaseOptions = {}): Promise<BaseVersion> {
  parseBaseName(name);
  if (typeof source === 'string') regularFileSize(source);
  const parent = options.parent !== undefined ? resolveBase(ctx, options.parent) : undefined;
  const totalBytes = options.totalBytes ?? (typeof source === 'string' ? statSync(source).size : undefined);
  return mutation(ctx, () => new Reverter().run(async (r) => {
    const staging = await makeStaging(ctx, r, 'import', parent);
    const { extractRootfs } = await import('../storage/tar.js');
    await extractRootfs(source, ctx.pool.hostPath(staging), {
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      ...(totalBytes !== undefined ? { totalBytes } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      hasParent: parent !== undefined,
    });
    await ctx.fault('import:extracted');
    options.onProgress?.({ phase: 'verify' });
    await (await import('../storage/arch.js')).verifyArchitecture(ctx.pool.hostPath(staging));
    return commitVersion(ctx, { alias: name, kind: 'import', parent: parent ?? null, place: placeStaged(ctx, staging) });
  }));
}

function maintainedScript(ctx: EngineContext, name: string): { path: string; text: string } {
  parseBaseName(name);
  const path = join(ctx.maintainedBasesDir, name, 'build.sh');
  try {
    return { path, text: readFileSync(path, 'utf8') };
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) {
      throw new NotFoundError('ZOMG_BASE_NOT_MAINTAINED', `"${name}" is not a maintained base`, { hint: `maintained bases: ${listMaintained(ctx).join(', ')}` });
    }
    throw err;
  }
}

function listMaintained(ctx: EngineContext): string[] {
  try {
    return readdirNames(ctx.maintainedBasesDir).filter((n) => existsSync(join(ctx.maintainedBasesDir, n, 'build.sh')));
  } catch {
    return [];
  }
}

const readdirNames = (dir: string): string[] => readdirSync(dir).sort();

/**
 * Installs a maintained base by running its build script into a staging subvolume. The tag
 * is the script's sha256: a version with that tag already present means there is nothing to do.
 */
export async function installBase(ctx: EngineContext, name: string, options: InstallBaseOptions = {}): Promise<InstallOutcome> {
  const script = maintainedScript(ctx, name);
  const sha = nodeCrypto().createHash('sha256').update(script.text).digest('hex');
  const existing = ctx.bases.newestWithTag(name, sha);
  if (existing && !options.update) return { status: 'up_to_date', version: existing };
  return ctx.locks.with(
    `install:${name}`,
    () =>
      mutation(ctx, () => new Reverter().run(async (r) => {
        const staging = await makeStaging(ctx, r, `install-${name}`);
        options.onProgress?.({ phase: 'build' });
        try {
          await run('bash', [script.path, ctx.pool.hostPath(staging)], {
            env: { ...process.env, ZOMG_CACHE_DIR: join(ctx.stateDir, 'cache') },
            ...(options.signal ? { signal: options.signal } : {}),
            onLine: (line) => options.onProgress?.({ phase: 'build', line }),
          });
        } catch (err) {
          if (isNoSpace(err)) throw new PoolFullError(undefined, { cause: err });
          // The script's last words, without host paths (the API never shows them).
          const said = (err instanceof CommandError ? err.stderr.trim().split('\n').slice(-3).join(' | ') : 'it could not run').split(ctx.pool.hostPath(staging)).join('<rootfs>');
          throw new ToolError('ZOMG_INSTALL_FAILED', `the build script of "${name}" failed: ${said}`, { cause: err, hint: 'run `zomg base install` on a terminal to see the whole build output' });
        }
        options.onProgress?.({ phase: 'verify' });
        await (await import('../storage/arch.js')).verifyArchitecture(ctx.pool.hostPath(staging));
        const version = await commitVersion(ctx, {
          alias: name,
          kind: 'install',
          builder: 'script',
          script: script.text,
          scriptSha256: sha,
          place: placeStaged(ctx, staging),
        });
        return { status: 'installed' as const, version };
      })),
    { what: `the install of ${name}`, timeoutMs: 30 * 60_000 },
  );
}

export async function deleteBaseAlias(ctx: EngineContext, name: string): Promise<void> {
  parseBaseName(name);
  await withBases(ctx, async () => {
    if (!ctx.bases.deleteAlias(name)) {
      throw new NotFoundError('ZOMG_ALIAS_NOT_FOUND', `base alias "${name}" not found`, { hint: 'run `zomg base list`' });
    }
  });
}

/** Deletes one immutable version; refused while an alias points to it. Boxes cloned from it are independent. */
export async function deleteBaseVersion(ctx: EngineContext, version: string): Promise<void> {
  parseBaseName(version);
  await mutation(ctx, () => withBases(ctx, async () => {
    if (!ctx.bases.getVersion(version)) {
      throw new NotFoundError('ZOMG_VERSION_NOT_FOUND', `base version "${version}" not found`, { hint: 'run `zomg base inspect <name>` to see versions' });
    }
    const aliases = ctx.bases.aliasesOf(version);
    if (aliases.length > 0) {
      throw new ConflictError('ZOMG_VERSION_IN_USE', `base version "${version}" is what alias ${aliases.map((a) => `"${a}"`).join(', ')} points to`, {
        hint: `delete the alias first (zomg base delete --alias ${aliases[0]}), or write a newer version`,
      });
    }
    ctx.bases.deleteVersion(version);
    await ctx.fault('base-delete:row-deleted');
    await ctx.pool.delete(baseId(version));
  }));
}
