/**
 * The HTTP API's shapes, defined once as TypeBox schemas: the server validates and
 * serializes with them (and documents them in its OpenAPI document), and the remote CLI
 * reads answers typed by them. Each shared shape has an `$id` (its component name in the
 * OpenAPI document). The engine's own types (types.ts) are checked against these at compile
 * time (the `Same` assertions at the end), so a field added on one side and forgotten on the
 * other breaks the build instead of being dropped by the serializer.
 */
import { type Static, type TSchema, Type } from '@sinclair/typebox';
import { ERROR_CODES } from './error-codes.js';
import { PAGE_MAX_RESULTS } from './wire-constants.js';
import type { ErrorCode } from './error-codes.js';
import type { BoxProcess } from './console-protocol.js';
import type { DiffEntryJson } from './diff.js';
import type { DataMountSpec, LifecycleResult } from './service.js';
import type {
  BaseConfig,
  BaseDetails,
  BaseProvenance,
  BaseSummary,
  BaseVersion,
  Box,
  Snapshot,
  DiffStatus,
  FileDiff,
  FileSide,
  InstallOutcome,
  Volume,
  VolumeBackup,
  VolumeDiffStatus,
  VolumeSnapshot,
} from './types.js';

const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);
const StringMap = (description: string) => Type.Record(Type.String(), Type.String(), { description });
const Timestamp = Type.String({ format: 'date-time', description: 'RFC 3339, UTC' });

export const ErrorBodySchema = Type.Object(
  {
    statusCode: Type.Integer({ description: 'the HTTP status, repeated' }),
    code: Type.Unsafe<ErrorCode>({ type: 'string', enum: ERROR_CODES, description: 'a stable ZOMG_* code (docs/errors.md)' }),
    error: Type.String({ description: 'the HTTP reason phrase' }),
    message: Type.String({ description: 'what went wrong, for a person; a 500 says only "internal error"' }),
    hint: Type.Optional(Type.String({ description: 'what to do about it' })),
  },
  { $id: 'Error', description: 'Every error response' },
);
export type ErrorBody = Static<typeof ErrorBodySchema>;

export const BoxSchema = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    project: Type.String(),
    status: Type.Union([Type.Literal('running'), Type.Literal('stopped'), Type.Literal('created')]),
    base: Type.String({ description: 'the exact base version the box was cloned from' }),
    tags: StringMap('tags, key → value'),
    environment: StringMap('environment variables given to every exec'),
    data_mounts: Type.Array(Type.Object({ name: Type.String(), path: Type.String(), read_only: Type.Boolean() }), { description: 'data volumes mounted in the box' }),
    config: Type.Object(
      {
        privileged: Type.Boolean({ description: 'opted out of the default security profile' }),
        cpus: Nullable(Type.Number()),
        memory_bytes: Nullable(Type.Integer()),
        pids: Nullable(Type.Integer()),
        publish: Type.Array(
          Type.Object({
            host_ip: Type.String(),
            host_port: Type.Integer(),
            box_port: Type.Integer(),
            protocol: Type.Union([Type.Literal('tcp'), Type.Literal('udp')]),
          }),
        ),
      },
      { description: 'security profile and limits' },
    ),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { $id: 'Box' },
);

const BaseConfigSchema = Type.Object({
  env: Type.Array(Type.String()),
  workdir: Nullable(Type.String()),
  user: Nullable(Type.String()),
  cmd: Nullable(Type.Array(Type.String())),
});

const BaseProvenanceSchema = Type.Object({
  kind: Type.Union([Type.Literal('build'), Type.Literal('install'), Type.Literal('save'), Type.Literal('import')]),
  build: Type.Object({
    builder: Nullable(Type.String()),
    parent_alias: Nullable(Type.String()),
    parent_version: Nullable(Type.String()),
    script: Nullable(Type.String()),
    script_sha256: Nullable(Type.String()),
  }),
});

export const BaseVersionSchema = Type.Object(
  {
    name: Type.String(),
    alias: Type.String({ description: 'the alias this version was written under' }),
    created_at: Timestamp,
    size_bytes: Nullable(Type.Integer({ description: 'null until computed off the hot path' })),
    provenance: BaseProvenanceSchema,
    config: Nullable(BaseConfigSchema),
  },
  { $id: 'BaseVersion' },
);

const BaseSummarySchema = Type.Object(
  { name: Type.String(), latest_version: Type.String(), size_bytes: Nullable(Type.Integer()), created_at: Timestamp },
  { $id: 'BaseSummary' },
);

export const BaseDetailsSchema = Type.Object(
  { name: Type.String(), latest_version: Nullable(Type.String()), versions: Type.Array(Type.Ref(BaseVersionSchema)) },
  { $id: 'BaseDetails' },
);

export const CheckpointSchema = Type.Object(
  {
    name: Type.String(),
    box: Type.String(),
    project: Type.String(),
    description: Type.String(),
    size_bytes: Nullable(Type.Integer()),
    created_at: Timestamp,
  },
  { $id: 'Checkpoint' },
);

const DiffEntrySchema = Type.Object({
  path: Type.String(),
  path_b64: Type.Optional(Type.String({ description: "present only when the path's bytes are not valid UTF-8: the exact bytes, base64" })),
  kind: Type.Union([Type.Literal('added'), Type.Literal('modified'), Type.Literal('deleted')]),
});

export const DiffStatusSchema = Type.Object(
  {
    box: Type.String(),
    project: Type.String(),
    against: Type.String(),
    to: Nullable(Type.String()),
    method: Type.Union([Type.Literal('tree'), Type.Literal('send'), Type.Literal('walk')]),
    changes: Type.Array(DiffEntrySchema),
  },
  { $id: 'DiffStatus' },
);

const FileSideSchema = Type.Object({
  type: Type.Union([Type.Literal('file'), Type.Literal('symlink')]),
  size_bytes: Type.Integer(),
  mode: Type.String(),
  uid: Type.Integer(),
  gid: Type.Integer(),
  target: Type.Optional(Type.String()),
});

export const FileDiffSchema = Type.Object(
  {
    path: Type.String(),
    status: Type.Union([Type.Literal('added'), Type.Literal('deleted'), Type.Literal('modified'), Type.Literal('unchanged')]),
    current: Nullable(FileSideSchema),
    previous: Nullable(FileSideSchema),
    diff: Nullable(Type.String()),
    binary: Type.Boolean(),
  },
  { $id: 'FileDiff' },
);

export const LifecycleResultSchema = Type.Object(
  { box: Type.Ref(BoxSchema), changed: Type.Boolean({ description: 'false when the box already was in the requested state' }) },
  { $id: 'LifecycleResult' },
);

export const InstallOutcomeSchema = Type.Object(
  { status: Type.Union([Type.Literal('installed'), Type.Literal('up_to_date')]), version: Type.Ref(BaseVersionSchema) },
  { $id: 'InstallOutcome' },
);

/** The most bytes of stdout and of stderr a buffered exec (`POST …/exec`) returns; the rest is read and dropped. */
export const EXEC_OUTPUT_CAP_BYTES = 1024 * 1024;

export const ExecResultSchema = Type.Object(
  {
    exit_code: Type.Integer(),
    stdout: Type.String(),
    stderr: Type.String(),
    stdout_truncated: Type.Boolean({ description: `true when stdout was longer than ${EXEC_OUTPUT_CAP_BYTES} bytes and the rest was dropped` }),
    stderr_truncated: Type.Boolean({ description: `true when stderr was longer than ${EXEC_OUTPUT_CAP_BYTES} bytes and the rest was dropped` }),
  },
  { $id: 'ExecResult' },
);
export type ExecResult = Static<typeof ExecResultSchema>;

export const BackgroundExecSchema = Type.Object(
  { pid: Type.Integer(), log_path: Type.String({ description: 'the output, inside the box' }) },
  { $id: 'BackgroundExec' },
);

const BoxProcessSchema = Type.Object(
  {
    pid: Type.Integer({ description: "the pid inside the box's PID namespace" }),
    ppid: Type.Integer(),
    user: Type.String({ description: "name from the box's /etc/passwd, else the numeric uid" }),
    cpu_seconds: Type.Number({ description: 'CPU time (user + system)' }),
    command: Type.String({ description: 'the command line (or [name] when it has none)' }),
  },
  { $id: 'BoxProcess' },
);

export const ProcessListSchema = Type.Object({ processes: Type.Array(Type.Ref(BoxProcessSchema)) }, { $id: 'ProcessList' });
export type ProcessList = Static<typeof ProcessListSchema>;

// Data volumes (SPEC §7).

export const VolumeSchema = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    project: Type.String(),
    ownership: Type.Union([Type.Literal('persistent'), Type.Literal('box_owned')]),
    delete_with_owner: Type.Boolean({ description: 'true for box-owned volumes: deleted with the owning box' }),
    owner: Nullable(Type.String({ description: 'the owning box (project:name) of a box-owned volume' })),
    size_bytes: Nullable(Type.Integer({ description: 'logical bytes as last measured off the hot path; null until measured' })),
    attached: Type.Array(Type.Object({ box: Type.String(), project: Type.String(), path: Type.String(), read_only: Type.Boolean() }), {
      description: 'boxes that mount the volume',
    }),
    source: Nullable(Type.String({ description: 'what it was cloned from: volume, volume@snapshot, or a backup' })),
    created_at: Timestamp,
  },
  { $id: 'Volume' },
);

export const VolumeSnapshotSchema = Type.Object(
  {
    name: Type.String(),
    volume: Type.String(),
    project: Type.String(),
    description: Type.String(),
    size_bytes: Nullable(Type.Integer()),
    created_at: Timestamp,
  },
  { $id: 'VolumeSnapshot' },
);

export const VolumeDiffStatusSchema = Type.Object(
  {
    volume: Type.String(),
    project: Type.String(),
    against: Type.String(),
    to: Nullable(Type.String({ description: 'the snapshot compared to; null for the live volume' })),
    method: Type.Union([Type.Literal('tree'), Type.Literal('send'), Type.Literal('walk')]),
    changes: Type.Array(DiffEntrySchema),
  },
  { $id: 'VolumeDiffStatus' },
);

export const VolumeBackupSchema = Type.Object(
  {
    name: Type.String(),
    volume: Type.String(),
    project: Type.String(),
    kind: Type.Union([Type.Literal('full'), Type.Literal('incremental')]),
    parent: Nullable(Type.String({ description: 'the backup this one is incremental against' })),
    sha256: Type.String({ description: 'of the stream file' }),
    stream_bytes: Type.Integer(),
    volume_size_bytes: Nullable(Type.Integer({ description: "the volume's logical size when it was backed up, when known" })),
    created_at: Timestamp,
  },
  { $id: 'VolumeBackup', description: 'a backup as its manifest at the target describes it' },
);

export const VolumeListSchema = Type.Object({ volumes: Type.Array(Type.Ref(VolumeSchema)) }, { $id: 'VolumeList' });
export const VolumeSnapshotListSchema = Type.Object({ snapshots: Type.Array(Type.Ref(VolumeSnapshotSchema)) }, { $id: 'VolumeSnapshotList' });
export const VolumeBackupListSchema = Type.Object({ backups: Type.Array(Type.Ref(VolumeBackupSchema)) }, { $id: 'VolumeBackupList' });
export type VolumeList = Static<typeof VolumeListSchema>;
export type VolumeSnapshotList = Static<typeof VolumeSnapshotListSchema>;
export type VolumeBackupList = Static<typeof VolumeBackupListSchema>;

const NextPageToken = Type.Optional(Type.String({ description: 'pass as page_token for the next page; absent on the last page' }));

export const BoxListSchema = Type.Object({ boxes: Type.Array(Type.Ref(BoxSchema)), next_page_token: NextPageToken }, { $id: 'BoxList' });
export const BaseListSchema = Type.Object({ bases: Type.Array(Type.Ref(BaseSummarySchema)), next_page_token: NextPageToken }, { $id: 'BaseList' });
export const CheckpointListSchema = Type.Object({ checkpoints: Type.Array(Type.Ref(CheckpointSchema)), next_page_token: NextPageToken }, { $id: 'CheckpointList' });
export type BoxList = Static<typeof BoxListSchema>;
export type BaseList = Static<typeof BaseListSchema>;
export type CheckpointList = Static<typeof CheckpointListSchema>;

/** Every shape with an `$id`, for the server to register (they become OpenAPI components). */
export const SHARED_SCHEMAS = [
  ErrorBodySchema,
  BoxSchema,
  BaseVersionSchema,
  BaseSummarySchema,
  BaseDetailsSchema,
  CheckpointSchema,
  DiffStatusSchema,
  FileDiffSchema,
  LifecycleResultSchema,
  InstallOutcomeSchema,
  ExecResultSchema,
  BackgroundExecSchema,
  BoxListSchema,
  BaseListSchema,
  CheckpointListSchema,
  BoxProcessSchema,
  ProcessListSchema,
  VolumeSchema,
  VolumeSnapshotSchema,
  VolumeDiffStatusSchema,
  VolumeBackupSchema,
  VolumeListSchema,
  VolumeSnapshotListSchema,
  VolumeBackupListSchema,
] as const;

// Request bodies.

const NameString = Type.String({ minLength: 1, description: 'a name: 1-63 of a-z, 0-9, "-", alphanumeric ends, no "--"' });
const EnvMap = StringMap('environment variables KEY → value (no NUL)');

/** A data volume to mount in a box: `name` (or `project:name`) at an absolute `path`. */
export const DataMountSpecSchema = Type.Object(
  { name: Type.String(), path: Type.String(), read_only: Type.Optional(Type.Boolean()) },
  { additionalProperties: false },
);

export const CreateBoxBodySchema = Type.Object(
  {
    name: NameString,
    base: Type.Optional(Type.String({ description: 'base alias, exact version, or alias:<sha256 prefix> (default box-base)' })),
    fork: Type.Optional(Type.String({ description: 'a box to clone: name or project:name' })),
    tags: Type.Optional(StringMap('tags, key → value')),
    environment: Type.Optional(EnvMap),
    privileged: Type.Optional(Type.Boolean({ description: 'opt out of the default security profile (the server must allow it)' })),
    cpus: Type.Optional(Type.Union([Type.Number(), Type.String()], { description: 'CPU limit, e.g. 0.5 or "2"' })),
    memory: Type.Optional(Type.Union([Type.Integer(), Type.String()], { description: 'memory limit in bytes, or e.g. "512m"' })),
    pids: Type.Optional(Type.Union([Type.Integer(), Type.String()], { description: 'limit on the number of processes' })),
    publish: Type.Optional(Type.Array(Type.String(), { description: 'ports to forward: [ip:]host:box[/udp]' })),
    data_mounts: Type.Optional(Type.Array(DataMountSpecSchema, { description: 'data volumes to mount: name (or project:name) at an absolute path' })),
  },
  { additionalProperties: false },
);
export type CreateBoxBody = Static<typeof CreateBoxBodySchema>;

export const UpdateBoxBodySchema = Type.Object(
  { tags: Type.Optional(StringMap('replaces the tags')), environment: Type.Optional(EnvMap) },
  { additionalProperties: false },
);

export const ExecBodySchema = Type.Object(
  {
    // The string form first: with type coercion on, an array schema tried first would swallow a string.
    command: Type.Union([Type.String({ minLength: 1, description: 'run through /bin/sh -c' }), Type.Array(Type.String(), { minItems: 1, description: 'argv' })]),
    cwd: Type.Optional(Type.String()),
    env: Type.Optional(EnvMap),
    shell: Type.Optional(Type.Boolean()),
    user: Type.Optional(Type.String()),
    stdin: Type.Optional(Type.String({ description: 'buffered exec only: the command reads this as its stdin' })),
    background: Type.Optional(Type.Boolean({ description: 'buffered exec only: run detached, answer {pid, log_path}' })),
  },
  { additionalProperties: false },
);

/** The first message of the streaming exec WebSocket: the exec body without the buffered-only fields. */
export const ExecStreamRequestSchema = Type.Omit(ExecBodySchema, ['stdin', 'background'], { additionalProperties: false });
export type ExecStreamRequest = Static<typeof ExecStreamRequestSchema>;

export const CreateCheckpointBodySchema = Type.Object(
  { name: Type.Optional(NameString), description: Type.Optional(Type.String()) },
  { additionalProperties: false },
);

export const SaveBaseBodySchema = Type.Object({ box: NameString, name: NameString }, { additionalProperties: false });
export const InstallBaseBodySchema = Type.Object({ update: Type.Optional(Type.Boolean()) }, { additionalProperties: false });

// Data volume bodies. Names are checked by core's parsers (ZOMG_INVALID_NAME), not here.

export const CreateVolumeBodySchema = Type.Object(
  {
    name: Type.String({ description: 'the new volume' }),
    from: Type.Optional(Type.String({ description: 'clone this volume (name or project:name), O(1)' })),
    from_snapshot: Type.Optional(Type.String({ description: 'with from: clone this snapshot of it' })),
  },
  { additionalProperties: false },
);
export type CreateVolumeBody = Static<typeof CreateVolumeBodySchema>;

export const CreateVolumeSnapshotBodySchema = Type.Object(
  { name: Type.Optional(Type.String({ description: 'default vN' })), description: Type.Optional(Type.String()) },
  { additionalProperties: false },
);
export type CreateVolumeSnapshotBody = Static<typeof CreateVolumeSnapshotBodySchema>;

export const CreateBackupBodySchema = Type.Object(
  { to: Type.String({ description: 'the target URL, e.g. file:///srv/backups (a directory on the server)' }), name: Type.Optional(Type.String()) },
  { additionalProperties: false },
);
export type CreateBackupBody = Static<typeof CreateBackupBodySchema>;

export const RestoreBackupBodySchema = Type.Object(
  {
    from: Type.String({ description: 'the target URL the backup is read from' }),
    volume: Type.String({ description: 'the backed-up volume as named at the target: name or project:name' }),
    backup: Type.Optional(Type.String({ description: 'default: the newest backup of the volume' })),
    to: Type.String({ description: 'the new volume, in the project of the path' }),
  },
  { additionalProperties: false },
);
export type RestoreBackupBody = Static<typeof RestoreBackupBodySchema>;

/** Paging: how many to return, and where to go on from. */
export const PageQuery = {
  max_results: Type.Optional(Type.Integer({ minimum: 1, maximum: PAGE_MAX_RESULTS, description: `page size (default and most: ${PAGE_MAX_RESULTS})` })),
  page_token: Type.Optional(Type.String({ maxLength: 1024, description: 'the next_page_token of the previous page' })),
};

// Compile-time checks that the wire shapes and the engine's types are the same.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const same = <T extends true>(_: T): void => undefined;
same<Same<Static<typeof BoxSchema>, Box>>(true);
same<Same<Static<typeof BaseVersionSchema>, BaseVersion>>(true);
same<Same<Static<typeof BaseConfigSchema>, BaseConfig>>(true);
same<Same<Static<typeof BaseProvenanceSchema>, BaseProvenance>>(true);
same<Same<Static<typeof BaseSummarySchema>, BaseSummary>>(true);
same<Same<Static<typeof BaseDetailsSchema>, BaseDetails>>(true);
same<Same<Static<typeof CheckpointSchema>, Snapshot>>(true);
same<Same<Static<typeof DiffEntrySchema>, DiffEntryJson>>(true);
same<Same<Static<typeof DiffStatusSchema>, DiffStatus>>(true);
same<Same<Static<typeof FileSideSchema>, FileSide>>(true);
same<Same<Static<typeof FileDiffSchema>, FileDiff>>(true);
same<Same<Static<typeof LifecycleResultSchema>, LifecycleResult>>(true);
same<Same<Static<typeof InstallOutcomeSchema>, InstallOutcome>>(true);
same<Same<Static<typeof BoxProcessSchema>, BoxProcess>>(true);
same<Same<Static<typeof VolumeSchema>, Volume>>(true);
same<Same<Static<typeof VolumeSnapshotSchema>, VolumeSnapshot>>(true);
same<Same<Static<typeof VolumeDiffStatusSchema>, VolumeDiffStatus>>(true);
same<Same<Static<typeof VolumeBackupSchema>, VolumeBackup>>(true);
same<Same<Static<typeof DataMountSpecSchema>, DataMountSpec>>(true);
