/**
 * Every `ZOMG_*` error code, as a closed set: the kind (which gives the HTTP status and the
 * CLI exit code, see errors.ts) and what it means to a user. `ErrorCode` is derived from this
 * table, every ZomgError constructor takes one, and docs/errors.md is generated from it
 * (`npm run docs:errors`; a unit test fails when the committed file is stale).
 */
/** What sort of failure: picks the HTTP status (errors.ts HTTP_STATUS) and, with the code, the CLI exit code. */
export type ErrorKind =
  | 'invalid'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'conflict'
  | 'too_large'
  | 'unprocessable'
  | 'unsupported_media_type'
  | 'pool_full'
  | 'unsupported'
  | 'tool'
  | 'internal';

export interface ErrorCodeInfo {
  kind: ErrorKind;
  meaning: string;
}

export const ERROR_CATALOGUE = {
  // 400 — input
  ZOMG_INVALID_ARGUMENT: { kind: 'invalid', meaning: 'A request or flag combination that cannot be right (e.g. --base with --fork, a body that does not match the route schema).' },
  ZOMG_INVALID_INPUT: { kind: 'invalid', meaning: 'A string carries a NUL byte or a control character where it has no meaning (names, refs, paths, users, tags, argv, environment).' },
  ZOMG_INVALID_PAGE_TOKEN: { kind: 'invalid', meaning: 'A page_token is not one this server handed out.' },
  ZOMG_USAGE: { kind: 'invalid', meaning: 'The CLI was called wrongly (an unknown flag, a missing argument).' },
  ZOMG_INVALID_NAME: { kind: 'invalid', meaning: 'A box, project, base or snapshot name breaks the name rule.' },
  ZOMG_INVALID_REF: { kind: 'invalid', meaning: 'A box or base reference cannot be parsed (e.g. "." outside a box, a bad sha256 prefix).' },
  ZOMG_INVALID_TAG: { kind: 'invalid', meaning: 'A tag is not key=value with both parts following the tag rule.' },
  ZOMG_INVALID_ENV: { kind: 'invalid', meaning: 'An environment variable is not KEY=VALUE with a valid name.' },
  ZOMG_RESERVED_ENV: { kind: 'invalid', meaning: 'An environment variable zomg injects itself (ZOMG_PROJECT, BOX_NAME, ZOMG_API_URL, TERM) cannot be set.' },
  ZOMG_INVALID_JSON: { kind: 'invalid', meaning: 'A request body or WebSocket message is not valid JSON.' },
  ZOMG_INVALID_PATH: { kind: 'invalid', meaning: 'A path is malformed (relative where an absolute path is needed).' },
  ZOMG_PATH_ESCAPES: { kind: 'invalid', meaning: 'A path would leave the box root or the build context.' },
  ZOMG_PATH_EXCLUDED: { kind: 'invalid', meaning: 'A path lies under a mount that diffs never include (/home, /box/bin, /box/all, /box/proj).' },
  ZOMG_INVALID_UPLOAD: { kind: 'invalid', meaning: 'An upload route received no stream body (wrong Content-Type).' },
  ZOMG_INVALID_BUILDER: { kind: 'invalid', meaning: 'The named container engine is not one of docker, podman, nerdctl.' },
  ZOMG_INVALID_CONFIG: { kind: 'invalid', meaning: 'The config file or a config value is malformed.' },
  ZOMG_INVALID_CONFIG_KEY: { kind: 'invalid', meaning: 'No such config key.' },
  ZOMG_INVALID_MOUNT_PATH: { kind: 'invalid', meaning: 'A mount path is not allowed (relative, /, under /proc, /sys, /dev, /box or /home).' },
  ZOMG_FILE_NOT_FOUND: { kind: 'invalid', meaning: 'A file named on the command line or in a diff does not exist.' },
  ZOMG_NOT_A_FILE: { kind: 'invalid', meaning: 'A path names something other than a regular file.' },
  ZOMG_NO_SUCH_DIRECTORY: { kind: 'invalid', meaning: 'The working directory of an exec does not exist in the box.' },
  ZOMG_NO_COMMAND: { kind: 'invalid', meaning: 'exec was given no command.' },
  ZOMG_NO_DOCKERFILE: { kind: 'invalid', meaning: 'The Dockerfile to build does not exist.' },
  ZOMG_NO_BUILD_CONTEXT: { kind: 'invalid', meaning: 'The build context is not a directory.' },
  ZOMG_UNKNOWN_USER: { kind: 'invalid', meaning: 'The exec user does not exist in the box.' },
  ZOMG_POOL_NOT_FOUND: { kind: 'invalid', meaning: 'The configured pool path does not exist.' },
  ZOMG_PROFILE_NO_URL: { kind: 'invalid', meaning: 'A profile is selected but its URL variable is not set.' },
  ZOMG_BAD_REQUEST: { kind: 'invalid', meaning: 'The HTTP request is malformed in a way the framework caught (e.g. a bad header).' },
  ZOMG_UNSUPPORTED_MEDIA_TYPE: { kind: 'unsupported_media_type', meaning: 'The request body has a Content-Type the route does not accept (HTTP 415).' },
  ZOMG_FORBIDDEN_ORIGIN: { kind: 'forbidden', meaning: 'A --no-auth server refused a request whose Host or Origin is not the loopback address it listens on (DNS rebinding protection).' },
  // 401
  ZOMG_UNAUTHORIZED: { kind: 'unauthorized', meaning: 'The bearer token is missing or wrong.' },
  // 404
  ZOMG_BOX_NOT_FOUND: { kind: 'not_found', meaning: 'No box with that project and name.' },
  ZOMG_BASE_NOT_FOUND: { kind: 'not_found', meaning: 'No base alias or version with that name.' },
  ZOMG_ALIAS_NOT_FOUND: { kind: 'not_found', meaning: 'No base alias with that name.' },
  ZOMG_VERSION_NOT_FOUND: { kind: 'not_found', meaning: 'No such base version (or it belongs to another base).' },
  ZOMG_SNAPSHOT_NOT_FOUND: { kind: 'not_found', meaning: 'The box has no snapshot (checkpoint) with that name.' },
  ZOMG_NO_SNAPSHOT: { kind: 'not_found', meaning: 'A diff needs a snapshot to compare against and the box has none.' },
  ZOMG_BASE_NOT_MAINTAINED: { kind: 'not_found', meaning: 'No maintained base with that name ships with zomg.' },
  ZOMG_CONFIG_KEY_NOT_SET: { kind: 'not_found', meaning: 'The config key has no value.' },
  ZOMG_ROUTE_NOT_FOUND: { kind: 'not_found', meaning: 'No API route for that method and path.' },
  // 409
  ZOMG_BOX_EXISTS: { kind: 'conflict', meaning: 'A box with that project and name already exists.' },
  ZOMG_SNAPSHOT_EXISTS: { kind: 'conflict', meaning: 'The box already has a snapshot with that name.' },
  ZOMG_VERSION_EXISTS: { kind: 'conflict', meaning: 'A base version with that name already exists.' },
  ZOMG_VERSION_IN_USE: { kind: 'conflict', meaning: 'The base version is the one an alias points to.' },
  ZOMG_BOX_RUNNING: { kind: 'conflict', meaning: 'The operation needs the box stopped.' },
  ZOMG_BOX_STOPPED: { kind: 'conflict', meaning: 'The operation needs the box running (resume it first).' },
  ZOMG_BOX_NOT_RUNNING: { kind: 'conflict', meaning: 'The box stopped while the operation ran.' },
  ZOMG_BUSY: { kind: 'conflict', meaning: 'Another operation holds the lock on the box or base storage.' },
  ZOMG_POOL_BUSY: { kind: 'conflict', meaning: 'The pool cannot be closed while it is in use.' },
  ZOMG_POOL_OWNED: { kind: 'conflict', meaning: 'The configured pool belongs to another state directory (its `.zomg-owner` file names that one), or holds boxes, bases or volumes this state directory does not know: opening it here would delete them as crash leftovers.' },
  // 413
  ZOMG_TOO_LARGE: { kind: 'too_large', meaning: 'The request body is larger than the server accepts.' },
  ZOMG_FILE_TOO_LARGE: { kind: 'too_large', meaning: 'A file to diff is larger than 1 MB.' },
  // 422
  ZOMG_WRONG_ARCH: { kind: 'unprocessable', meaning: 'The root filesystem is not for amd64.' },
  ZOMG_INVALID_ARCHIVE: { kind: 'unprocessable', meaning: 'The tarball is not a tar archive, or is corrupt or truncated.' },
  ZOMG_UNSAFE_ARCHIVE: { kind: 'unprocessable', meaning: 'The tarball has members that would escape the root.' },
  ZOMG_BUILD_FAILED: { kind: 'unprocessable', meaning: 'The Dockerfile build failed (its output says why).' },
  ZOMG_SEND_STREAM_INVALID: { kind: 'unprocessable', meaning: 'btrfs produced a send stream zomg cannot read.' },
  ZOMG_SYMLINK_LOOP: { kind: 'unprocessable', meaning: 'Too many levels of symbolic links inside the box root.' },
  ZOMG_BAD_MOUNTPOINT: { kind: 'unprocessable', meaning: 'A mount point in the box root exists with the wrong type.' },
  ZOMG_BOX_ROOT_MISSING: { kind: 'unprocessable', meaning: "The box's root directory is missing." },
  ZOMG_VOLUME_MISSING: { kind: 'unprocessable', meaning: 'The host directory of a volume is missing.' },
  // 501
  ZOMG_POOL_NOT_BTRFS: { kind: 'unsupported', meaning: 'The pool is not on btrfs.' },
  ZOMG_SNAPSHOT_HANDOVER_UNAVAILABLE: { kind: 'unsupported', meaning: "The builder's image store cannot be snapshotted into the pool." },
  // 507
  ZOMG_POOL_FULL: { kind: 'pool_full', meaning: 'The storage pool is full.' },
  // 500 — an external program failed or is missing; the message names the tool, never host paths
  ZOMG_TOOL_MISSING: { kind: 'tool', meaning: 'A program zomg needs is not installed.' },
  ZOMG_TOOL_FAILED: { kind: 'tool', meaning: 'A program zomg ran failed.' },
  ZOMG_BTRFS_FAILED: { kind: 'tool', meaning: 'A btrfs command failed.' },
  ZOMG_TAR_FAILED: { kind: 'tool', meaning: 'tar failed while importing a tarball.' },
  ZOMG_POOL_CREATE_FAILED: { kind: 'tool', meaning: 'The loop-image pool could not be created.' },
  ZOMG_POOL_MOUNT_FAILED: { kind: 'tool', meaning: 'The pool could not be mounted.' },
  ZOMG_POOL_LOOP_FAILED: { kind: 'tool', meaning: 'The loop device of the pool could not be set up.' },
  ZOMG_POOL_UNMOUNT_FAILED: { kind: 'tool', meaning: 'The pool could not be unmounted.' },
  ZOMG_BOX_START_FAILED: { kind: 'tool', meaning: 'The sandbox of the box did not start.' },
  ZOMG_BOX_STOP_TIMEOUT: { kind: 'tool', meaning: 'The box did not stop in time.' },
  ZOMG_EXEC_FAILED: { kind: 'tool', meaning: 'The command could not be started in the box.' },
  ZOMG_EXEC_INTERRUPTED: { kind: 'tool', meaning: 'The connection closed before the command finished.' },
  ZOMG_NO_BUILDER: { kind: 'tool', meaning: 'No container engine (docker, podman, nerdctl) is installed and answering.' },
  ZOMG_NO_BUILDX: { kind: 'tool', meaning: 'docker on a non-x86_64 host needs buildx.' },
  ZOMG_BUILD_INTERRUPTED: { kind: 'tool', meaning: 'The connection closed before the build finished.' },
  ZOMG_EXPORT_FAILED: { kind: 'tool', meaning: "The built image's root filesystem could not be exported." },
  ZOMG_CONTEXT_UNREADABLE: { kind: 'tool', meaning: 'The build context could not be packed.' },
  ZOMG_INSTALL_FAILED: { kind: 'tool', meaning: "A maintained base's build script failed." },
  ZOMG_UNREACHABLE: { kind: 'tool', meaning: 'The CLI cannot reach the zomg API.' },
  // Codes of the terminal, file, process, limit and network features.
  ZOMG_CONSOLE_PROTOCOL: { kind: 'invalid', meaning: 'A console WebSocket message does not follow the console protocol.' },
  ZOMG_INVALID_CPUS: { kind: 'invalid', meaning: '--cpus is not a positive number.' },
  ZOMG_INVALID_MEMORY: { kind: 'invalid', meaning: '--memory is not a size (e.g. 512m, 2g).' },
  ZOMG_INVALID_PID: { kind: 'invalid', meaning: 'A pid is not a positive integer.' },
  ZOMG_INVALID_PIDS: { kind: 'invalid', meaning: '--pids is not a positive integer.' },
  ZOMG_INVALID_PUBLISH: { kind: 'invalid', meaning: 'A --publish value is not HOST:BOX with valid ports.' },
  ZOMG_INVALID_TERMINAL_SIZE: { kind: 'invalid', meaning: 'A terminal size is not positive columns and rows.' },
  ZOMG_NOT_A_DIRECTORY: { kind: 'invalid', meaning: 'A path names something other than a directory where one is needed.' },
  ZOMG_NOT_A_TTY: { kind: 'invalid', meaning: '-t needs a terminal on stdin.' },
  ZOMG_ADDRESS_IN_USE: { kind: 'conflict', meaning: 'The address `zomg serve` should listen on is taken by another program.' },
  ZOMG_ADDRESS_UNAVAILABLE: { kind: 'invalid', meaning: 'The listen address is not one of this host.' },
  ZOMG_ADDRESS_DENIED: { kind: 'invalid', meaning: 'Listening on that address or port is not permitted.' },
  ZOMG_BAD_RESPONSE: { kind: 'tool', meaning: 'The server answered something the client cannot read.' },
  ZOMG_COMMAND_NOT_FOUND: { kind: 'not_found', meaning: 'The command to run does not exist in the box (exit 127 for a foreground exec).' },
  ZOMG_INVALID_DATA_MOUNT: { kind: 'invalid', meaning: 'A data mount is not NAME=/path[:ro|:rw] with an absolute path outside /, /proc, /sys, /dev, /box and /home, or two mounts collide.' },
  ZOMG_VOLUME_NOT_FOUND: { kind: 'not_found', meaning: 'No data volume of that name in the project.' },
  ZOMG_VOLUME_EXISTS: { kind: 'conflict', meaning: 'A data volume of that name already exists in the project.' },
  ZOMG_VOLUME_SNAPSHOT_NOT_FOUND: { kind: 'not_found', meaning: 'The data volume has no snapshot of that name.' },
  ZOMG_VOLUME_SNAPSHOT_EXISTS: { kind: 'conflict', meaning: 'The data volume already has a snapshot of that name.' },
  ZOMG_VOLUME_ATTACHED: { kind: 'conflict', meaning: 'The data volume is mounted in boxes (named in the message): detach it first.' },
  ZOMG_VOLUME_ALREADY_ATTACHED: { kind: 'conflict', meaning: 'The data volume is already mounted in that box.' },
  ZOMG_VOLUME_NOT_ATTACHED: { kind: 'not_found', meaning: 'The data volume is not mounted in that box.' },
  ZOMG_BACKUP_NOT_FOUND: { kind: 'not_found', meaning: 'No backup of that name at the target.' },
  ZOMG_BACKUP_EXISTS: { kind: 'conflict', meaning: 'A backup of that name already exists at the target.' },
  ZOMG_BACKUP_CHAIN_BROKEN: { kind: 'unprocessable', meaning: 'An incremental backup\'s parent is missing from the target.' },
  ZOMG_BACKUP_MANIFEST_INVALID: { kind: 'unprocessable', meaning: 'A backup manifest cannot be read or does not describe its stream.' },
  ZOMG_BACKUP_CORRUPT: { kind: 'unprocessable', meaning: 'A backup stream does not match the sha256 its manifest records.' },
  ZOMG_INVALID_BACKUP_TARGET: { kind: 'invalid', meaning: 'A backup target is not a URL zomg understands (file:///dir).' },
  ZOMG_UNSUPPORTED_BACKUP_TARGET: { kind: 'invalid', meaning: 'A backup target has a scheme zomg has no target for (only file:// is built).' },
  ZOMG_BACKUP_TARGET_MISSING: { kind: 'invalid', meaning: 'The backup target directory does not exist.' },
  ZOMG_BACKUP_TARGET_NOT_DIRECTORY: { kind: 'invalid', meaning: 'The backup target is not a directory.' },
  ZOMG_BACKUP_TARGET_NOT_WRITABLE: { kind: 'invalid', meaning: 'The backup target directory cannot be written.' },
  ZOMG_BACKUP_TARGET_FULL: { kind: 'tool', meaning: 'The backup target filled up while a backup was written (nothing was recorded).' },
  ZOMG_RECEIVE_FAILED: { kind: 'tool', meaning: 'btrfs receive could not replay a backup stream.' },
  ZOMG_PRIVILEGED_NOT_ALLOWED: { kind: 'invalid', meaning: 'A privileged box was asked of a server that does not permit them.' },
  ZOMG_NOT_A_BACKGROUND_EXEC: { kind: 'not_found', meaning: 'No background exec with that pid (no log to show).' },
  ZOMG_PATH_NOT_FOUND: { kind: 'not_found', meaning: 'The path does not exist in the box.' },
  ZOMG_PROCESS_NOT_FOUND: { kind: 'not_found', meaning: 'No process with that pid in the box.' },
  ZOMG_PORT_IN_USE: { kind: 'conflict', meaning: 'The host port to publish is already in use.' },
  ZOMG_BAD_PASSWD_ENTRY: { kind: 'unprocessable', meaning: "The box's /etc/passwd entry for the user cannot be used." },
  ZOMG_READ_ONLY_PATH: { kind: 'unprocessable', meaning: 'The path is on a read-only mount in the box.' },
  ZOMG_CGROUPS_UNAVAILABLE: { kind: 'unsupported', meaning: 'The host has no usable cgroups for resource limits.' },
  ZOMG_PROFILE_UNSUPPORTED: { kind: 'unsupported', meaning: 'The requested security profile cannot be applied on this host.' },
  ZOMG_CONSOLE_INTERRUPTED: { kind: 'tool', meaning: 'The connection closed before the console session ended.' },
  ZOMG_NETWORK_FAILED: { kind: 'tool', meaning: "The box's network (slirp4netns or pasta) could not be set up." },
  ZOMG_PTY_FAILED: { kind: 'tool', meaning: 'A pseudo-terminal could not be set up.' },
  ZOMG_STREAM_INTERRUPTED: { kind: 'tool', meaning: 'The connection closed before the stream ended.' },
  // 500 — a bug; the message is always "internal error"
  ZOMG_INTERNAL: { kind: 'internal', meaning: 'An unexpected server error; details are in the server log, never in the response.' },
} as const satisfies Record<`ZOMG_${string}`, ErrorCodeInfo>;

/** Every `ZOMG_*` code zomg can produce. */
export type ErrorCode = keyof typeof ERROR_CATALOGUE;

export const ERROR_CODES = Object.keys(ERROR_CATALOGUE) as ErrorCode[];

export const isErrorCode = (value: unknown): value is ErrorCode => typeof value === 'string' && Object.hasOwn(ERROR_CATALOGUE, value);
