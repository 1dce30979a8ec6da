/**
 * Shared pieces of the torture tests: a seeded random source (a failure names its seed, so
 * it can be replayed), the counts (scaled down in CI, full from `npm run torture`), and the
 * invariants every state of a pool must satisfy after any crash and repair.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';

/** mulberry32: a small, seedable PRNG in [0, 1). */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `ZOMG_TORTURE_FULL=1` (npm run torture) runs the full counts; the suite (and CI) a scaled-down run. */
export const FULL = process.env.ZOMG_TORTURE_FULL === '1';
export const SEED = Number(process.env.ZOMG_TORTURE_SEED ?? 20261130);

const names = (dir: string): string[] => {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
};

/**
 * Everything that must hold between a pool and its database once the reconciler has run:
 * every row has its subvolume and every subvolume its row, staging holds no leftover and
 * no root is renamed aside. Returns the problems found (empty when consistent).
 */
export function poolProblems(stateDir: string, poolRoot: string): string[] {
  const problems: string[] = [];
  const db = new Database(join(stateDir, 'zomg.db'), { readonly: true, fileMustExist: true });
  try {
    const versions = new Set((db.prepare('SELECT name FROM base_versions').all() as Array<{ name: string }>).map((r) => r.name));
    const boxes = new Set((db.prepare('SELECT id FROM boxes').all() as Array<{ id: string }>).map((r) => r.id));
    const checkpoints = new Set((db.prepare('SELECT box_id, name FROM checkpoints').all() as Array<{ box_id: string; name: string }>).map((r) => `${r.box_id}/${r.name}`));
    const aliases = db.prepare('SELECT name, version FROM base_aliases').all() as Array<{ name: string; version: string }>;
    const onDiskBases = new Set(names(join(poolRoot, 'bases')));
    const onDiskRoots = new Set(names(join(poolRoot, 'roots')));
    const onDiskCps = new Set(names(join(poolRoot, 'checkpoints')).flatMap((b) => names(join(poolRoot, 'checkpoints', b)).map((n) => `${b}/${n}`)));
    for (const v of versions) if (!onDiskBases.has(v)) problems.push(`base row without subvolume: ${v}`);
    for (const v of onDiskBases) if (!versions.has(v)) problems.push(`base subvolume without row: ${v}`);
    for (const a of aliases) if (!versions.has(a.version)) problems.push(`alias ${a.name} points to a missing version ${a.version}`);
    for (const b of boxes) if (!onDiskRoots.has(b)) problems.push(`box row without root: ${b}`);
    for (const r of onDiskRoots) {
      if (r.includes('@')) problems.push(`root renamed aside and left: ${r}`);
      else if (!boxes.has(r)) problems.push(`root without box row: ${r}`);
    }
    for (const c of checkpoints) if (!onDiskCps.has(c)) problems.push(`snapshot row without subvolume: ${c}`);
    for (const c of onDiskCps) if (!checkpoints.has(c)) problems.push(`snapshot subvolume without row: ${c}`);
    for (const s of names(join(poolRoot, 'staging'))) if (s !== 'podman') problems.push(`staging leftover: ${s}`);
  } finally {
    db.close();
  }
  return problems;
}

/** The block device a mount point shows (from this process's mountinfo). */
function mountSourceOf(point: string): string | undefined {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const fields = line.split(' ');
    if (fields[4] !== point) continue;
    const dash = fields.indexOf('-');
    if (dash > 0) return fields[dash + 2];
  }
  return undefined;
}

/**
 * Processes the pool's users cannot see through zomg: any process rooted inside one of the
 * pool's box roots whose box is not running according to `running` (ids), and any bwrap
 * stuck half-way holding its own copy of a mount namespace with the pool in it.
 */
export function untrackedProcesses(poolRoot: string, running: Set<string>): string[] {
  const roots = new Map<string, string>();
  for (const id of names(join(poolRoot, 'roots'))) {
    try {
      const st = statSync(join(poolRoot, 'roots', id));
      roots.set(`${st.dev}:${st.ino}`, id);
    } catch {
      /* gone meanwhile */
    }
  }
  const source = mountSourceOf(poolRoot);
  const out: string[] = [];
  for (const entry of names('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let comm = '';
    try {
      comm = readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
      const st = statSync(`/proc/${entry}/root/`);
      const box = roots.get(`${st.dev}:${st.ino}`);
      if (box !== undefined) {
        if (!running.has(box)) out.push(`${entry} (${comm}) runs in box ${box}, which is not running`);
        continue;
      }
      if (comm === 'bwrap' && source !== undefined) {
        const info = readFileSync(`/proc/${entry}/mountinfo`, 'utf8');
        if (info.includes(` ${source} `) && statSync(`/proc/${entry}/ns/mnt`).ino !== statSync('/proc/self/ns/mnt').ino) {
          out.push(`${entry} (bwrap) holds a copy of a mount namespace with the pool`);
        }
      }
    } catch {
      /* the process ended meanwhile, or is not ours to read */
    }
  }
  return out;
}
