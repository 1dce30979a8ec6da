/**
 * Dockerfile builds with docker, podman or nerdctl, and the hand-over of the built root
 * filesystem to the pool: the only code in zomg that runs a container engine.
 *
 * Facts it relies on (measured with podman 4.3.1 / runc 1.1.5 on Debian 12, see
 * research/machine.md §3):
 * - crun fails on hybrid cgroups, and a runc RUN step outlives a killed `podman build` (an
 *   orphan container under /run/runc). `--isolation chroot` needs no OCI runtime, builds as
 *   fast, and its RUN processes die with podman, so it is the default.
 * - `--network host` keeps netavark from adding iptables chains and turning on ip_forward.
 * - `--pull=missing` never contacts a registry for an image present locally (`FROM
 *   localhost/x`, or the short name of an imported image) and fails fast offline for one
 *   that is absent, so builds work offline and still pull where a registry is reachable.
 * - `--layers=false` commits the image and nothing else, so a failed build leaves no
 *   dangling images; a killed one leaves a buildah "working-container" (removed here) and a
 *   bundle directory in $TMPDIR (pointed at a directory removed here).
 * - podman stamps `--platform` on the image whatever its content: a `FROM --platform=arm64`
 *   stage yields an "amd64" image of arm64 binaries. The architecture check here reads the
 *   metadata only; checking the binaries of the handed-over root is the importer's job.
 * - With the btrfs graph driver, `podman image mount` names the top layer's subvolume, a
 *   complete tree: snapshotting it takes ~15 ms plus two podman calls (~50 ms each), where
 *   export | tar costs seconds for a Debian-sized root.
 * - An export stream has no entry for `/` itself and containers/storage gives layer roots
 *   mode 0555; both hand-over paths set the new root to 0755, so they give identical trees.
 * - docker (daemon 20.10.24, its legacy builder; measured with a private dockerd): a
 *   container's export carries its init layer (empty 0755 /etc/hosts, /etc/hostname and
 *   /etc/resolv.conf over the image's own, /.dockerenv, /dev/console, /etc/mtab), so the
 *   docker hand-over applies the layers of `docker save` instead, whiteouts included, and
 *   gives the tree podman gives. A failed build leaves the images of its finished steps
 *   (untagged), which are removed here; `--force-rm` removes its containers.
 */
import { randomHex } from '../system/builtins.js';
import { closeSync, constants, createReadStream, openSync } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readFile, readdir, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { PassThrough } from 'node:stream';
import type { Readable } from 'node:stream';
import { InvalidArgumentError, ToolError, UnprocessableError, UnsupportedError, ZomgError } from '../core/errors.js';
import type { BaseConfig, BuilderName } from '../core/types.js';
import { mountHolding } from '../system/mountinfo.js';
import { isErrno } from '../system/fs.js';
import { withReverter } from '../system/reverter.js';
import { resolveInRoot } from '../system/rootpath.js';
import { CommandError, run, runText } from '../system/run.js';
import type { RunOptions, RunResult } from '../system/run.js';
import type { StorageDriver } from './driver.js';
import { extractRootfs } from './tar.js';

/** The order in which `detectBuilder` tries the engines. */
const BUILDER_NAMES: readonly BuilderName[] = ['docker', 'podman', 'nerdctl'];

/** How a built root filesystem reaches the pool: a btrfs snapshot of podman's layer, or export | tar. */
export type HandoverMethod = 'snapshot' | 'export';

/** How podman runs RUN steps: buildah's chroot isolation (no OCI runtime) or runc. */
export type PodmanIsolation = 'chroot' | 'runc';

export interface DetectBuilderOptions {
  /** podman `--root`: where its images and layers live. Default: podman's own. */
  podmanRoot?: string;
  /** podman `--runroot`: its runtime state. Default: podman's own. */
  podmanRunroot?: string;
  /** podman `--storage-driver`, e.g. `btrfs` for a root inside the pool (enables the snapshot hand-over). */
  storageDriver?: string;
  /** Default `chroot`. */
  podmanIsolation?: PodmanIsolation;
  /** How long each engine may take to answer its probe. Default 5000. */
  probeTimeoutMs?: number;
  signal?: AbortSignal;
}

interface BuildOptions {
  /** The image is tagged `<name>:latest`, lowercased. */
  name: string;
  /** Path of the Dockerfile. */
  dockerfile: string;
  /** The build context directory. */
  context: string;
  /** Each line of build output, as produced. */
  onLine?: (line: string) => void;
  signal?: AbortSignal;
  /**
   * `missing` (default) pulls only images absent locally; `never` refuses to. Docker's and
   * nerdctl's builders always behave like `missing`.
   */
  pull?: 'missing' | 'never';
}

interface ExportOptions {
  /** `auto` (default) takes the snapshot when it is possible, else the export. */
  method?: HandoverMethod | 'auto';
  signal?: AbortSignal;
}

interface ExportResult {
  method: HandoverMethod;
  durationMs: number;
  /** Why `auto` could not take the snapshot, when it could not. */
  fallbackReason?: string;
}

export interface Builder {
  readonly name: BuilderName;
  /** The engine's version as it reports it. */
  readonly version: string;
  /** Builds for linux/amd64. The image stays in the engine's store until `remove()`. */
  build(options: BuildOptions): Promise<BuiltImage>;
}

interface BuiltImage {
  readonly builder: BuilderName;
  /** The image ID (hex, without `sha256:`). */
  readonly id: string;
  /** `<name>:latest` as requested; engines may show it qualified (`localhost/<name>:latest`). */
  readonly tag: string;
  readonly architecture: string;
  /** ENV, WORKDIR, USER and CMD (ENTRYPOINT prepended), which no root filesystem carries. */
  readonly config: BaseConfig;
  /**
   * Hands the root filesystem over as a NEW writable subvolume at `dest`, which must not
   * exist and whose parent directory must. The snapshot path needs podman with the btrfs
   * storage driver on the same btrfs filesystem as `dest` and a driver with
   * `instantSnapshots`; the export path works everywhere. Either way the result does not
   * depend on the image afterwards. On failure nothing is left at `dest`.
   */
  exportTo(dest: string, driver: StorageDriver, options?: ExportOptions): Promise<ExportResult>;
  /** Removes the tag and the image, and any container made for the export. Idempotent. */
  remove(): Promise<void>;
}

/** The slice of `<engine> image inspect` that zomg reads (docker, podman and nerdctl agree on it). */
interface ImageInspect {
  Id?: string;
  Architecture?: string;
  RepoTags?: string[] | null;
  User?: string;
  GraphDriver?: { Name?: string };
  Config?: {
    Env?: string[] | null;
    WorkingDir?: string;
    User?: string;
    Cmd?: string[] | null;
    Entrypoint?: string[] | null;
  } | null;
}

const OUTPUT_TAIL_LINES = 15;
const REQUIRED_ARCH = 'amd64';
/** Stands in for CMD when creating the export container: imported images have none, and it never runs. */
const PLACEHOLDER_COMMAND = '/zomg-export-placeholder';

const isAbort = (err: unknown): boolean => (err as Error | undefined)?.name === 'AbortError';

/**
 * Lets a reader still blocked opening `fifo` (its writer died first) see end-of-file: a
 * non-blocking writer opens and closes. ENXIO means no reader is left, which is the goal.
 */
function releaseFifoReader(fifo: string): void {
  try {
    closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
  } catch (err) {
    if (!isErrno(err, 'ENXIO', 'ENOENT')) throw err;
  }
}

/** The last non-empty line a failed probe printed, short enough for a message. */
function lastLine(text: string): string {
  const line = text.trim().split('\n').filter((l) => l.trim() !== '').pop() ?? '';
  return line.length > 160 ? `${line.slice(0, 157)}...` : line;
}

/** `engine` with its global arguments: every call of a container engine goes through one. */
class EngineCli {
  constructor(
    readonly name: BuilderName,
    private readonly globalArgs: readonly string[],
  ) {}

  run(args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    return run(this.name, [...this.globalArgs, ...args], options);
  }

  async text(args: readonly string[], options: RunOptions = {}): Promise<string> {
    return (await this.run(args, options)).stdout.toString('utf8');
  }
}

function podmanGlobalArgs(options: DetectBuilderOptions): string[] {
  const args: string[] = [];
  if (options.podmanRoot !== undefined) args.push('--root', options.podmanRoot);
  if (options.podmanRunroot !== undefined) args.push('--runroot', options.podmanRunroot);
  if (options.storageDriver !== undefined) args.push('--storage-driver', options.storageDriver);
  return args;
}

type Probe = { ok: true; version: string } | { ok: false; reason: string; code?: string };

/** Why a probe failed, in words a user can act on; aborts and programmer errors are rethrown. */
function probeFailure(err: unknown, timeoutMs: number): string {
  if (err instanceof ZomgError && err.code === 'ZOMG_TOOL_MISSING') return 'not installed';
  if (err instanceof CommandError) {
    if (err.code === null) return `did not answer within ${timeoutMs / 1000} s`;
    return `not answering (${lastLine(err.stderr) || `exit ${err.code}`})`;
  }
  throw err;
}

const isX86Host = (): boolean => process.arch === 'x64';

async function probe(cli: EngineCli, timeoutMs: number, signal: AbortSignal | undefined): Promise<Probe> {
  const opts = { timeoutMs, signal };
  try {
    // Each asks the part that builds: docker's and nerdctl's daemons, podman itself.
    const args =
      cli.name === 'podman' ? ['version', '--format', '{{.Client.Version}}']
      : cli.name === 'docker' ? ['version', '--format', '{{.Server.Version}}']
      : ['info', '--format', '{{.ServerVersion}}'];
    const version = (await cli.text(args, opts)).trim();
    if (cli.name === 'docker' && !isX86Host()) {
      try {
        await cli.run(['buildx', 'version'], opts);
      } catch (err) {
        if (isAbort(err)) throw err;
        return {
          ok: false,
          code: 'ZOMG_NO_BUILDX',
          reason: `buildx is missing, and this ${process.arch} host needs it to build for linux/amd64`,
        };
      }
    }
    return { ok: true, version };
  } catch (err) {
    return { ok: false, reason: probeFailure(err, timeoutMs) };
  }
}

/**
 * The first container engine that is installed and answering, in the order docker, podman,
 * nerdctl; or `preferred` only. Throws ToolError `ZOMG_NO_BUILDER` naming each engine tried
 * and why it cannot be used (`ZOMG_NO_BUILDX` for docker without buildx on a non-x86_64
 * host when docker was asked for). The podman options only affect podman.
 */
export async function detectBuilder(preferred?: BuilderName, options: DetectBuilderOptions = {}): Promise<Builder> {
  if (preferred !== undefined && !BUILDER_NAMES.includes(preferred)) {
    throw new InvalidArgumentError(`unknown builder "${String(preferred)}"; use one of ${BUILDER_NAMES.join(', ')}`, { code: 'ZOMG_INVALID_BUILDER' });
  }
  const timeoutMs = options.probeTimeoutMs ?? 5000;
  const failures: string[] = [];
  for (const name of preferred === undefined ? BUILDER_NAMES : [preferred]) {
    const cli = new EngineCli(name, name === 'podman' ? podmanGlobalArgs(options) : []);
    const result = await probe(cli, timeoutMs, options.signal);
    if (result.ok) return new EngineBuilder(cli, result.version, options.podmanIsolation ?? 'chroot');
    if (preferred !== undefined && result.code === 'ZOMG_NO_BUILDX') {
      throw new ToolError('ZOMG_NO_BUILDX', `docker cannot build for linux/amd64 here: ${result.reason}`, {
        hint: 'install the docker buildx plugin, or use --builder podman',
      });
    }
    failures.push(`${name}: ${result.reason}`);
  }
  const what = preferred === undefined ? 'no container engine can build here' : `the builder ${preferred} cannot be used`;
  throw new ToolError('ZOMG_NO_BUILDER', `${what} (${failures.join('; ')})`, {
    hint: preferred === undefined ? 'install podman (apt-get install podman), or start the docker daemon' : 'install it or start its daemon, or leave out --builder',
  });
}

// Docker's reference grammar for a repository path component, which base names satisfy.
const IMAGE_NAME = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;

/** Parses `<engine> image inspect` output for one image. Exported for tests. */
export function parseImageInspect(json: string): { id: string; architecture: string; graphDriver: string | null; repoTags: string[]; config: BaseConfig } {
  const parsed = JSON.parse(json) as ImageInspect[] | ImageInspect;
  const image = Array.isArray(parsed) ? parsed[0] : parsed;
  if (image === undefined || typeof image.Id !== 'string') throw new Error('image inspect returned no image');
  const c = image.Config ?? {};
  const entrypoint = c.Entrypoint ?? [];
  const cmd = c.Cmd ?? [];
  return {
    id: image.Id.replace(/^sha256:/, ''),
    architecture: image.Architecture ?? '',
    graphDriver: image.GraphDriver?.Name ?? null,
    repoTags: image.RepoTags ?? [],
    config: {
      env: c.Env ?? [],
      workdir: c.WorkingDir ? c.WorkingDir : null,
      user: c.User || image.User || null,
      cmd: entrypoint.length + cmd.length > 0 ? [...entrypoint, ...cmd] : null,
    },
  };
}

/** Throws `ZOMG_WRONG_ARCH` unless the image is for amd64. Exported for tests. */
export function checkArchitecture(architecture: string): void {
  if (architecture !== REQUIRED_ARCH) {
    throw new UnprocessableError('ZOMG_WRONG_ARCH', `the image was built for "${architecture || 'an unknown architecture'}", not ${REQUIRED_ARCH}`, {
      hint: 'zomg bases are linux/amd64: check the FROM line of the Dockerfile',
    });
  }
}

/**
 * The images docker's legacy builder commits, one per step, read from its output: `Step
 * 2/5 : ...`, then ` ---> Running in <container>` or ` ---> Using cache`, then
 * ` ---> <image id>`.
 */
class StepImages {
  private readonly ids: string[] = [];
  private readonly running: string[] = [];
  private cached = false;

  see(line: string): void {
    if (/^Step \d+\/\d+ : /.test(line)) this.cached = false;
    else if (/^ ---> Using cache$/.test(line)) this.cached = true;
    else {
      const run = /^ ---> Running in ([0-9a-f]{12,64})$/.exec(line);
      if (run?.[1]) this.running.push(run[1]);
      const m = /^ ---> ([0-9a-f]{12,64})$/.exec(line);
      if (m?.[1] && !this.cached) this.ids.push(m[1]);
    }
  }

  made(): { images: string[]; containers: string[] } {
    return { images: this.ids, containers: this.running };
  }
}

class EngineBuilder implements Builder {
  readonly name: BuilderName;

  constructor(
    private readonly cli: EngineCli,
    readonly version: string,
    private readonly isolation: PodmanIsolation,
  ) {
    this.name = cli.name;
  }

  private buildArgs(tag: string, dockerfile: string, context: string, iidfile: string, pull: 'missing' | 'never'): string[] {
    const common = ['--platform', 'linux/amd64', '--iidfile', iidfile, '-t', tag, '-f', dockerfile];
    switch (this.name) {
      case 'podman':
        return [
          'build',
          ...common,
          ...(this.isolation === 'chroot' ? ['--isolation', 'chroot'] : ['--runtime', 'runc']),
          '--network', 'host',
          `--pull=${pull}`,
          '--layers=false',
          '--force-rm',
          context,
        ];
      case 'docker':
        // Only buildx cross-builds; its result must be loaded into the image store.
        return isX86Host()
          ? ['build', ...common, '--network', 'host', '--force-rm', context]
          : ['buildx', 'build', ...common, '--network', 'host', '--load', context];
      case 'nerdctl':
        return ['build', ...common, context];
    }
  }

  /**
   * Removes the buildah working containers created since `sinceMs` (podman only): a killed
   * build leaves its own behind. Dated rather than listed before the build, which would cost
   * a podman call on every build; a concurrent build in the same store would be caught too,
   * which is why zomg serializes builds per store (the engine's lock) and keeps its own store.
   */
  private async removeStrayWorkingContainers(sinceMs: number): Promise<void> {
    if (this.name !== 'podman') return;
    const list = JSON.parse(await this.cli.text(['ps', '-a', '--external', '--format', 'json'])) as Array<{ Id?: string; Names?: string[]; Created?: number }>;
    const since = Math.floor(sinceMs / 1000);
    const stray = list
      .filter((c) => (c.Names ?? []).some((n) => n.endsWith('working-container') || /working-container-\d+$/.test(n)) && (c.Created ?? 0) >= since)
      .map((c) => c.Id ?? '')
      .filter((id) => id !== '');
    if (stray.length > 0) await this.cli.run(['rm', '-f', ...stray]);
  }

  /**
   * Removes the images docker's legacy builder committed for the steps of a failed build
   * (it removes their containers itself with --force-rm, not the images), newest first.
   * `rmi` without -f refuses an image that is tagged or has children, so nothing anyone
   * else uses goes; images taken from the cache are not in the list.
   */
  private async removeStepImages(made: { images: string[]; containers: string[] }): Promise<void> {
    if (this.name !== 'docker') return;
    // An aborted build's last step container outlives the client for a moment (the daemon
    // removes it on its own, about a second later), and holds the image below it.
    if (made.containers.length > 0) {
      try {
        await this.cli.run(['rm', '-f', ...made.containers]);
      } catch (err) {
        if (!(err instanceof CommandError)) throw err;
      }
    }
    for (const id of [...made.images].reverse()) {
      for (let attempt = 0; ; attempt++) {
        try {
          await this.cli.run(['rmi', id]);
          break;
        } catch (err) {
          if (!(err instanceof CommandError)) throw err;
          // Still in use by the container the daemon is removing: wait for it, briefly.
          if (!/being used by|is using its referenced image|removal of container .* is already in progress/i.test(err.stderr) || attempt >= 20) break;
          await new Promise((r) => setTimeout(r, 250));
        }
      }
    }
  }

  /** The id of the image `ref` names now, or undefined when there is none. */
  private async imageIdOf(ref: string): Promise<string | undefined> {
    try {
      return parseImageInspect(await this.cli.text(['image', 'inspect', ref])).id || undefined;
    } catch (err) {
      if (err instanceof CommandError) return undefined;
      throw err;
    }
  }

  async build(options: BuildOptions): Promise<BuiltImage> {
    const tag = `${options.name.toLowerCase()}:latest`;
    if (!IMAGE_NAME.test(options.name.toLowerCase())) {
      throw new InvalidArgumentError(`"${options.name}" cannot name an image`, { code: 'ZOMG_INVALID_NAME' });
    }
    const context = resolve(options.context);
    const dockerfile = resolve(options.dockerfile);
    // The context and the Dockerfile were checked by the engine (engine/build-context.ts).

    // docker and nerdctl build in the host's own store, where `<name>:latest` may already
    // name someone's image: remember it, to give the tag back when zomg removes its image.
    const previousId = await this.imageIdOf(tag);
    const tmp = await mkdtemp(join(tmpdir(), 'zomg-build-'));
    try {
      const iidfile = join(tmp, 'iid');
      const startedMs = Date.now();
      const tail: string[] = [];
      const steps = new StepImages();
      try {
        await this.cli.run(this.buildArgs(tag, dockerfile, context, iidfile, options.pull ?? 'missing'), {
          cwd: context,
          // buildah puts each RUN step's bundle under $TMPDIR and leaves it when killed.
          env: { ...process.env, TMPDIR: tmp },
          signal: options.signal,
          onLine: (line) => {
            steps.see(line);
            tail.push(line);
            if (tail.length > OUTPUT_TAIL_LINES) tail.shift();
            options.onLine?.(line);
          },
        });
      } catch (err) {
        try {
          await this.removeStrayWorkingContainers(startedMs);
          await this.removeStepImages(steps.made());
        } catch {
          // The build's own failure is what the user must see; a working container left in
          // zomg's store holds no lock and costs only its disk space.
        }
        if (err instanceof CommandError) {
          const shown = tail.filter((l) => l.trim() !== '').join('\n');
          throw new UnprocessableError('ZOMG_BUILD_FAILED', `the ${this.name} build of ${tag} failed${err.code === null ? ` (${err.signal ?? 'killed'})` : ''}:\n${shown}`, {
            cause: err,
            hint: 'fix the Dockerfile step shown above and build again',
          });
        }
        throw err;
      }
      const id = (await readFile(iidfile, 'utf8')).trim();
      const image = new EngineImage(this.cli, id, tag, previousId !== id ? previousId : undefined);
      await image.load();
      try {
        checkArchitecture(image.architecture);
      } catch (err) {
        await image.remove();
        throw err;
      }
      return image;
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

}

/**
 * Removes what a zomg build whose process died may have left in an engine's store: the
 * image tagged `tag` and, for podman, buildah working containers and zomg's export
 * containers created since `sinceMs`. The caller must hold the lock that serializes builds
 * in that store (a live build's containers would match too). Quiet when they are gone.
 */
export async function removeBuildLeftovers(builder: BuilderName, options: DetectBuilderOptions, leftover: { tag: string; sinceMs: number }): Promise<void> {
  if (!BUILDER_NAMES.includes(builder)) throw new Error(`unknown builder ${builder}`);
  const cli = new EngineCli(builder, builder === 'podman' ? podmanGlobalArgs(options) : []);
  if (builder === 'podman') {
    const list = JSON.parse(await cli.text(['ps', '-a', '--external', '--format', 'json'])) as Array<{ Id?: string; Names?: string[]; Created?: number }>;
    const since = Math.floor(leftover.sinceMs / 1000);
    const stray = list
      .filter((c) => (c.Created ?? 0) >= since && (c.Names ?? []).some((n) => /working-container(-\d+)?$/.test(n) || n.startsWith('zomg-export-')))
      .map((c) => c.Id ?? '')
      .filter((id) => id !== '');
    if (stray.length > 0) await cli.run(['rm', '-f', ...stray]);
  }
  // In the host's docker or nerdctl store the tag may name a user's image by now: leave it.
  if (builder !== 'podman') return;
  try {
    await cli.run(['rmi', '-f', leftover.tag]);
  } catch (err) {
    if (err instanceof CommandError && /no such image|image not known|not found/i.test(err.stderr)) return;
    throw err;
  }
}

async function sameBtrfsFilesystem(a: string, b: string): Promise<boolean> {
  // mountinfo's major:minor is the superblock's device, one per btrfs filesystem, whereas
  // `st_dev` and statfs's fsid differ between its subvolumes.
  const [ra, rb] = await Promise.all([realpath(a), realpath(b)]);
  const [fa, fb] = [mountHolding(ra), mountHolding(rb)];
  return fa?.fstype === 'btrfs' && fb?.fstype === 'btrfs' && fa.device === fb.device;
}

async function ensureAbsent(dest: string): Promise<void> {
  try {
    await lstat(dest);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return;
    throw err;
  }
  // The engine picks staging paths, so an existing one is a bug, not a user's mistake.
  throw new Error(`exportTo: ${dest} already exists`);
}

class EngineImage implements BuiltImage {
  readonly builder: BuilderName;
  id = '';
  architecture = '';
  config: BaseConfig = { env: [], workdir: null, user: null, cmd: null };
  private graphDriver: string | null = null;
  /** The tag as the engine stores it (podman: `localhost/<tag>`), once known. */
  private storedTag: string | null = null;
  private readonly containers = new Set<string>();

  constructor(
    private readonly cli: EngineCli,
    private readonly ref: string,
    readonly tag: string,
    /** The image the tag named before this build, re-tagged when this one is removed. */
    private readonly previousId?: string,
  ) {
    this.builder = cli.name;
  }

  async load(): Promise<void> {
    const info = parseImageInspect(await this.cli.text(['image', 'inspect', this.ref]));
    this.id = info.id;
    this.architecture = info.architecture;
    this.config = info.config;
    this.graphDriver = info.graphDriver;
    this.storedTag = info.repoTags.find((t) => t === this.tag || t.endsWith(`/${this.tag}`)) ?? null;
  }

  async exportTo(dest: string, driver: StorageDriver, options: ExportOptions = {}): Promise<ExportResult> {
    const started = performance.now();
    const method = options.method ?? 'auto';
    await ensureAbsent(dest);
    let fallbackReason: string | undefined;
    if (method !== 'export') {
      const done = await this.trySnapshot(dest, driver);
      if (done === true) return { method: 'snapshot', durationMs: performance.now() - started };
      if (method === 'snapshot') {
        throw new UnsupportedError('ZOMG_SNAPSHOT_HANDOVER_UNAVAILABLE', `cannot snapshot the image: ${done}`, {
          hint: 'use podman with --storage-driver btrfs and a storage root on the pool',
        });
      }
      fallbackReason = done;
    }
    await this.exportTar(dest, driver, options.signal);
    return { method: 'export', durationMs: performance.now() - started, ...(fallbackReason === undefined ? {} : { fallbackReason }) };
  }

  /** True when `dest` now holds the snapshot, else why it could not be taken. */
  private async trySnapshot(dest: string, driver: StorageDriver): Promise<true | string> {
    if (this.builder !== 'podman') return `${this.builder} cannot mount images`;
    if (this.graphDriver !== 'btrfs') return `podman's storage driver is ${this.graphDriver ?? 'unknown'}, not btrfs`;
    if (!driver.capabilities.instantSnapshots) return 'the storage driver has no instant snapshots';
    let layer: string;
    try {
      // With the btrfs graph driver this mounts nothing: it names the top layer's subvolume.
      layer = (await this.cli.text(['image', 'mount', this.id])).trim().split('\n').pop() ?? '';
    } catch (err) {
      if (err instanceof CommandError) return `podman could not mount the image (${lastLine(err.stderr)})`;
      throw err;
    }
    try {
      if (!(await sameBtrfsFilesystem(layer, dirname(dest)))) return "podman's storage is not on the pool's btrfs filesystem";
      if (!(await driver.isSubvolume(layer))) return "the image's top layer is not a subvolume";
      await withReverter(async (r) => {
        await driver.snapshot(layer, dest);
        r.add('delete the partial root', () => driver.deleteSubvolume(dest));
        await chmod(dest, 0o755);
      });
      return true;
    } finally {
      await this.cli.run(['image', 'unmount', this.id]);
    }
  }

  /** create → export | extractRootfs into a new subvolume → rm; for docker, its saved layers. */
  private async exportTar(dest: string, driver: StorageDriver, signal: AbortSignal | undefined): Promise<void> {
    if (this.builder === 'docker') {
      await this.applySavedLayers(dest, driver, signal);
      return;
    }
    const name = `zomg-export-${randomHex(6)}`;
    try {
      await this.cli.run(['create', '--name', name, '--network', 'none', this.id, PLACEHOLDER_COMMAND], { signal });
    } catch (err) {
      if (err instanceof CommandError) {
        throw new ToolError('ZOMG_EXPORT_FAILED', `${this.builder} could not create a container to export the image from: ${lastLine(err.stderr)}`, { cause: err });
      }
      throw err;
    }
    this.containers.add(name);
    try {
      await withReverter(async (r) => {
        await driver.createSubvolume(dest);
        r.add('delete the partial root', () => driver.deleteSubvolume(dest));
        await this.pipeExport(name, dest, signal);
        await chmod(dest, 0o755);
      });
    } finally {
      await this.cli.run(['rm', '-f', name]);
      this.containers.delete(name);
    }
  }

  /**
   * docker: `docker save`, then the image's layers extracted in order, whiteouts applied. A
   * container's export is not the image: docker's init layer shadows /etc/hosts,
   * /etc/hostname and /etc/resolv.conf with empty 0755 files and adds /.dockerenv,
   * /dev/console, /dev/pts, /dev/shm and /etc/mtab (measured with docker 20.10.24), where
   * podman's export is the image as built.
   */
  private async applySavedLayers(dest: string, driver: StorageDriver, signal: AbortSignal | undefined): Promise<void> {
    const dir = await mkdtemp(join(tmpdir(), 'zomg-save-'));
    try {
      const archive = join(dir, 'image.tar');
      const unpacked = join(dir, 'image');
      try {
        await this.cli.run(['save', '-o', archive, this.id], { signal });
      } catch (err) {
        if (err instanceof CommandError) {
          throw new ToolError('ZOMG_EXPORT_FAILED', `${this.builder} could not save the image: ${lastLine(err.stderr) || 'it failed'}`, { cause: err });
        }
        throw err;
      }
      await mkdir(unpacked);
      await run('tar', ['-x', '-f', archive, '-C', unpacked], { signal });
      await rm(archive);
      const layers = savedLayers(await readFile(join(unpacked, 'manifest.json'), 'utf8'), unpacked);
      await withReverter(async (r) => {
        await driver.createSubvolume(dest);
        r.add('delete the partial root', () => driver.deleteSubvolume(dest));
        for (const [i, layer] of layers.entries()) {
          const whiteouts = await listWhiteouts(layer, signal);
          await applyWhiteouts(dest, whiteouts);
          await extractRootfs(layer, dest, { signal, hasParent: i > 0 });
          await removeWhiteoutMarkers(dest, whiteouts);
        }
        await chmod(dest, 0o755);
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /**
   * `<engine> export` into extractRootfs (podman, nerdctl). podman writes to a FIFO: given
   * no `-o` it opens /dev/stdout, which fails (ENXIO) on the socket Node gives a child as its
   * stdout. nerdctl writes to stdout.
   */
  private async pipeExport(container: string, dest: string, signal: AbortSignal | undefined): Promise<void> {
    const dir = await mkdtemp(join(tmpdir(), 'zomg-export-'));
    try {
      // Either side failing stops the other: each would otherwise wait for the other forever.
      const stop = new AbortController();
      const both = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
      let source: Readable;
      let producer: Promise<unknown>;
      if (this.builder === 'podman') {
        const fifo = join(dir, 'rootfs.tar');
        await run('mkfifo', ['-m', '600', fifo]);
        source = createReadStream(fifo, { highWaterMark: 1 << 20 });
        producer = this.cli.run(['export', '-o', fifo, container], { signal: both }).finally(() => releaseFifoReader(fifo));
      } else {
        const pipe = new PassThrough({ highWaterMark: 1 << 20 });
        source = pipe;
        producer = this.cli.run(['export', container], { stdout: pipe, signal: both });
      }
      const consumer = extractRootfs(source, dest, { signal: both });
      const results = await Promise.allSettled(
        [producer, consumer].map((p) =>
          p.catch((err: unknown) => {
            stop.abort();
            throw err;
          }),
        ),
      );
      // Report the first real failure, not the abort it caused in the other side.
      const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
      const cause = failures.find((e) => !isAbort(e)) ?? failures[0];
      if (cause === undefined) return;
      if (cause instanceof CommandError) {
        throw new ToolError('ZOMG_EXPORT_FAILED', `${this.builder} could not export the image's root filesystem: ${lastLine(cause.stderr) || 'it failed'}`, { cause });
      }
      throw cause;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  async remove(): Promise<void> {
    if (this.containers.size > 0) {
      await this.cli.run(['rm', '-f', ...this.containers]);
      this.containers.clear();
    }
    // By tag: an image that carries other tags too (someone else's) is only untagged. The
    // tag cannot have moved meanwhile: builds of one name are serialized by the engine.
    // The tag goes back to the image it named before this build first: then that image is
    // not dangling when ours is removed (engines prune dangling parents with `rmi`).
    let ref = this.storedTag ?? this.id;
    if (this.previousId) {
      await this.cli.run(['tag', this.previousId, this.tag]).catch(() => undefined);
      ref = this.id;
    }
    try {
      await this.cli.run(['rmi', ref]);
    } catch (err) {
      if (!(err instanceof CommandError && /no such image|image not known|not found/i.test(err.stderr))) throw err;
    }
  }
}

/** The layer tarballs of a `docker save` archive, lowest first, as paths inside `dir`. */
function savedLayers(manifestJson: string, dir: string): string[] {
  const manifest = JSON.parse(manifestJson) as Array<{ Layers?: unknown }>;
  const layers = manifest[0]?.Layers;
  if (!Array.isArray(layers) || !layers.every((l): l is string => typeof l === 'string')) throw new Error('docker save wrote a manifest without layers');
  return layers.map((l) => {
    const path = resolve(dir, l);
    if (!path.startsWith(`${dir}/`)) throw new Error(`docker save names a layer outside its archive: ${l}`);
    return path;
  });
}

const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';

/** The whiteout entries of a layer tarball: `dir/.wh.name` deletes `dir/name` below; `dir/.wh..wh..opq` empties `dir`. */
async function listWhiteouts(layer: string, signal: AbortSignal | undefined): Promise<string[]> {
  const out = await runText('tar', ['-t', '-f', layer, '--quoting-style=escape'], { signal });
  return out
    .split('\n')
    .filter((line) => line !== '' && basename(line).startsWith(WHITEOUT))
    .map(unescapeTarName);
}

/** Undoes GNU tar's `escape` quoting (`\\`, `\n`, `\ooo` …) of a listed name. */
function unescapeTarName(name: string): string {
  const bytes: number[] = [];
  const simple: Record<string, number> = { n: 10, t: 9, r: 13, f: 12, v: 11, b: 8, a: 7, '\\': 92, '?': 127 };
  const raw = Buffer.from(name, 'utf8');
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i] as number;
    if (c !== 92 || i + 1 >= raw.length) {
      bytes.push(c);
      continue;
    }
    const rest = raw.toString('latin1', i + 1, i + 4);
    if (/^[0-7]{3}$/.test(rest)) {
      bytes.push(Number.parseInt(rest, 8));
      i += 3;
    } else {
      const next = String.fromCharCode(raw[i + 1] as number);
      bytes.push(simple[next] ?? (raw[i + 1] as number));
      i += 1;
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/**
 * Deletes what a layer's whiteouts hide in the layers below, resolved inside `root` (a
 * symlink never leads out of it). Missing targets are fine: a whiteout may hide a path
 * another whiteout already removed with its directory.
 */
async function applyWhiteouts(root: string, whiteouts: readonly string[]): Promise<void> {
  for (const w of whiteouts) {
    const dir = dirname(`/${w}`);
    const name = basename(w);
    if (name === OPAQUE) {
      const target = resolveInRoot(root, dir, { followFinal: false });
      if (!target.stat?.isDirectory()) continue;
      for (const child of await readdir(target.hostPath)) await rm(join(target.hostPath, child), { recursive: true, force: true });
    } else {
      const hidden = name.slice(WHITEOUT.length);
      if (hidden === '' || hidden === '.' || hidden === '..') continue;
      const target = resolveInRoot(root, `${dir}/${hidden}`, { followFinal: false });
      if (target.stat) await rm(target.hostPath, { recursive: true, force: true });
    }
  }
}

/** The whiteout files themselves, which tar extracted as empty files. */
async function removeWhiteoutMarkers(root: string, whiteouts: readonly string[]): Promise<void> {
  for (const w of whiteouts) {
    const target = resolveInRoot(root, `/${w}`, { followFinal: false });
    if (target.stat?.isFile()) await rm(target.hostPath, { force: true });
  }
}
