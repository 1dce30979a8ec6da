/**
 * A box's security configuration as the user gives it (`--privileged`, `--cpus`,
 * `--memory`, `--pids`, `--publish`), parsed once, here, for the CLI, the API and the
 * database rows alike.
 */
import { InvalidArgumentError } from './errors.js';
import type { BoxConfig, PortForward } from './types.js';

/** Below this a box cannot even run a shell and apt reliably; docker's floor is 6 MiB. */
const MIN_MEMORY_BYTES = 16 * 1024 * 1024;
const MAX_CPUS = 1024;
const MIN_PIDS = 8;
const MAX_PIDS = 4_194_304;

/** What a box without any option gets: the default profile, no limits, no published port. */
export const DEFAULT_BOX_CONFIG: BoxConfig = { privileged: false, cpus: null, memory_bytes: null, pids: null, publish: [] };

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** `512m`, `1g`, `1.5G`, `1073741824`, `64MiB` → bytes; at least MIN_MEMORY_BYTES. */
export function parseMemory(value: string | number): number {
  const text = String(value).trim();
  const m = /^(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?$/i.exec(text);
  const unit = m?.[2]?.toLowerCase() ?? '';
  const bytes = m ? Math.floor(Number(m[1]) * (UNITS[unit] ?? Number.NaN)) : Number.NaN;
  if (!Number.isSafeInteger(bytes)) {
    throw new InvalidArgumentError(`invalid memory limit "${text}": expected a size such as 512m or 2g`, {
      code: 'ZOMG_INVALID_MEMORY',
      hint: 'units: b, k, m, g, t (powers of 1024)',
    });
  }
  if (bytes < MIN_MEMORY_BYTES) {
    throw new InvalidArgumentError(`memory limit "${text}" is too small: a box needs at least 16m`, { code: 'ZOMG_INVALID_MEMORY' });
  }
  return bytes;
}

/** A number of CPUs, `0.5`, `2`: more than 0, at most MAX_CPUS, two decimals at most. */
export function parseCpus(value: string | number): number {
  const text = String(value).trim();
  const cpus = /^\d+(\.\d{1,2})?$/.test(text) ? Number(text) : Number.NaN;
  if (!(cpus > 0) || cpus > MAX_CPUS) {
    throw new InvalidArgumentError(`invalid CPU limit "${text}": expected a number of CPUs above 0, such as 0.5 or 2`, { code: 'ZOMG_INVALID_CPUS' });
  }
  return cpus;
}

export function parsePids(value: string | number): number {
  const text = String(value).trim();
  const pids = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!(pids >= MIN_PIDS && pids <= MAX_PIDS)) {
    throw new InvalidArgumentError(`invalid process limit "${text}": expected a whole number from ${MIN_PIDS} to ${MAX_PIDS}`, { code: 'ZOMG_INVALID_PIDS' });
  }
  return pids;
}

function port(text: string, spec: string): number {
  const n = /^\d{1,5}$/.test(text) ? Number(text) : Number.NaN;
  if (!(n >= 1 && n <= 65535)) {
    throw new InvalidArgumentError(`invalid port "${text}" in --publish ${spec}: ports are 1-65535`, { code: 'ZOMG_INVALID_PUBLISH' });
  }
  return n;
}

/**
 * `HOST:BOX`, `HOST:BOX/udp` or `IP:HOST:BOX[/tcp|udp]`. The host side binds 127.0.0.1
 * unless an address is given.
 */
export function parsePublish(spec: string): PortForward {
  const [ports = '', protocol = 'tcp', ...extra] = spec.split('/');
  if (extra.length > 0 || (protocol !== 'tcp' && protocol !== 'udp')) {
    throw new InvalidArgumentError(`invalid --publish ${spec}: unknown protocol "${[protocol, ...extra].join('/')}"`, {
      code: 'ZOMG_INVALID_PUBLISH',
      hint: 'use HOST:BOX, HOST:BOX/tcp or HOST:BOX/udp',
    });
  }
  const parts = ports.split(':');
  if (parts.length < 2 || parts.length > 3) {
    throw new InvalidArgumentError(`invalid --publish ${spec}: expected HOST:BOX, e.g. 8080:80`, { code: 'ZOMG_INVALID_PUBLISH' });
  }
  const hostIp = parts.length === 3 ? (parts[0] as string) : '127.0.0.1';
  if (!/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.test(hostIp) || hostIp.split('.').some((o) => Number(o) > 255)) {
    throw new InvalidArgumentError(`invalid --publish ${spec}: "${hostIp}" is not an IPv4 address`, { code: 'ZOMG_INVALID_PUBLISH' });
  }
  return { host_ip: hostIp, host_port: port(parts.at(-2) as string, spec), box_port: port(parts.at(-1) as string, spec), protocol };
}

/** The whole configuration from create options; refuses a host port published twice. */
export function parseBoxConfig(options: { privileged?: boolean; cpus?: string | number; memory?: string | number; pids?: string | number; publish?: string[] }): BoxConfig {
  const publish = (options.publish ?? []).map(parsePublish);
  const seen = new Set<string>();
  for (const p of publish) {
    const key = `${p.host_ip}:${p.host_port}/${p.protocol}`;
    if (seen.has(key)) throw new InvalidArgumentError(`--publish names host port ${key} twice`, { code: 'ZOMG_INVALID_PUBLISH' });
    seen.add(key);
  }
  return {
    privileged: options.privileged === true,
    cpus: options.cpus !== undefined ? parseCpus(options.cpus) : null,
    memory_bytes: options.memory !== undefined ? parseMemory(options.memory) : null,
    pids: options.pids !== undefined ? parsePids(options.pids) : null,
    publish,
  };
}

/** A stored configuration (JSON, possibly from before a field existed) with defaults filled in. */
export function boxConfigFromJson(text: string | null | undefined): BoxConfig {
  const raw = (text ? JSON.parse(text) : {}) as Partial<BoxConfig>;
  return { ...DEFAULT_BOX_CONFIG, ...raw, publish: raw.publish ?? [] };
}
