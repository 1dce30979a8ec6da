/**
 * The shapes the engine returns. Field names follow the Zomg API (snake_case) so the HTTP
 * layer serializes them as they are and the CLI renders the same objects in both modes.
 */

import type { DiffEntryJson } from './diff.js';
import type { DataMount } from './volumes.js';

export type { DataMount } from './volumes.js';

type BoxStatus = 'running' | 'stopped' | 'created';

export interface Box {
  id: string;
  name: string;
  project: string;
  status: BoxStatus;
  /** The exact base version the box was cloned from. */
  base: string;
  tags: Record<string, string>;
  environment: Record<string, string>;
  /** Data volumes mounted in the box (SPEC §7). */
  data_mounts: DataMount[];
  /** The box's security profile and limits (README "Security"). */
  config: BoxConfig;
  created_at: string;
  updated_at: string;
}

/** A host port forwarded into a box (`--publish`). */
export interface PortForward {
  host_ip: string;
  host_port: number;
  box_port: number;
  protocol: 'tcp' | 'udp';
}

export interface BoxConfig {
  /** Opted out of the default profile (`--privileged`): host root, host network. */
  privileged: boolean;
  /** null = no limit. */
  cpus: number | null;
  memory_bytes: number | null;
  pids: number | null;
  publish: PortForward[];
}

export type BaseKind = 'build' | 'install' | 'save' | 'import';

export interface BaseProvenance {
  kind: BaseKind;
  build: {
    builder: string | null;
    parent_alias: string | null;
    parent_version: string | null;
    script: string | null;
    script_sha256: string | null;
  };
}

export interface BaseVersion {
  name: string;
  /** The alias this version was written under. */
  alias: string;
  created_at: string;
  /** Null until computed off the hot path. */
  size_bytes: number | null;
  provenance: BaseProvenance;
  /** Image config kept from a Dockerfile build (ENV, WORKDIR, USER, CMD), when any. */
  config: BaseConfig | null;
}

export interface BaseConfig {
  env: string[];
  workdir: string | null;
  user: string | null;
  cmd: string[] | null;
}

/** The container engines `zomg base build` can drive. */
export type BuilderName = 'docker' | 'podman' | 'nerdctl';

export interface BaseSummary {
  name: string;
  latest_version: string;
  size_bytes: number | null;
  created_at: string;
}

export interface BaseDetails {
  name: string;
  latest_version: string | null;
  versions: BaseVersion[];
}

export interface Snapshot {
  name: string;
  box: string;
  project: string;
  description: string;
  size_bytes: number | null;
  created_at: string;
}

export type InstallOutcome = { status: 'installed'; version: BaseVersion } | { status: 'up_to_date'; version: BaseVersion };

/** Progress of long work, rendered by the CLI as a bar. `total` is undefined when unknown. */
export interface Progress {
  phase: string;
  done?: number;
  total?: number;
  /** A line of tool output (build logs), streamed as produced. */
  line?: string;
}
export type ProgressFn = (p: Progress) => void;

export interface DiffStatus {
  box: string;
  project: string;
  /** The snapshot compared against. */
  against: string;
  /** The snapshot compared to, or null for the live root. */
  to: string | null;
  /** 'tree': the trees' own items; 'send': the btrfs change stream; 'walk': the full-walk fallback. */
  method: 'tree' | 'send' | 'walk';
  changes: DiffEntryJson[];
}

type FileDiffStatus = 'added' | 'deleted' | 'modified' | 'unchanged';

export interface FileSide {
  type: 'file' | 'symlink';
  size_bytes: number;
  /** Permission bits in octal, e.g. "0644". */
  mode: string;
  uid: number;
  gid: number;
  /** A symlink's target. */
  target?: string;
}

export interface FileDiff {
  path: string;
  status: FileDiffStatus;
  current: FileSide | null;
  previous: FileSide | null;
  /** A unified diff for modified text files; null otherwise. */
  diff: string | null;
  /** True when the content differs and a side is binary (no bytes are shown). */
  binary: boolean;
}

// --- data volumes (SPEC §7) ------------------------------------------------------------

export type VolumeOwnership = 'persistent' | 'box_owned';

export interface Volume {
  id: string;
  name: string;
  project: string;
  ownership: VolumeOwnership;
  /** True for box-owned volumes: deleted with the owning box once its deletion completes. */
  delete_with_owner: boolean;
  /** The owning box (`project:name`) of a box-owned volume. */
  owner: string | null;
  /** Logical bytes as last measured off the hot path; null until measured. */
  size_bytes: number | null;
  /** Boxes that mount the volume. */
  attached: Array<{ box: string; project: string; path: string; read_only: boolean }>;
  /** What it was cloned from, when it was: `volume` or `volume@snapshot`, or a backup. */
  source: string | null;
  created_at: string;
}

export interface VolumeSnapshot {
  name: string;
  volume: string;
  project: string;
  description: string;
  size_bytes: number | null;
  created_at: string;
}

export interface VolumeDiffStatus {
  volume: string;
  project: string;
  against: string;
  /** The snapshot compared to, or null for the live volume. */
  to: string | null;
  method: 'tree' | 'send' | 'walk';
  changes: DiffEntryJson[];
}

/** A backup as its manifest at the target describes it. */
export interface VolumeBackup {
  name: string;
  volume: string;
  project: string;
  kind: 'full' | 'incremental';
  /** The backup this one is incremental against (same volume, same target). */
  parent: string | null;
  /** sha256 of the stream file. */
  sha256: string;
  stream_bytes: number;
  /** The volume's logical size when it was backed up, when known. */
  volume_size_bytes: number | null;
  created_at: string;
}
