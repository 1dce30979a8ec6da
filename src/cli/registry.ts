/** Every CLI command, declared as data. */
import type { CommandSpec } from './command.js';
import { baseCommands } from './commands/bases.js';
import { boxCommands } from './commands/boxes.js';
import { buildCommands } from './commands/builds.js';
import { completionCommands } from './commands/completion.js';
import { configCommands } from './commands/config.js';
import { diffCommands } from './commands/diffs.js';
import { runningCommands } from './commands/running.js';
import { snapshotCommands } from './commands/snapshots.js';
import { systemCommands } from './commands/system.js';
import { terminalCommands } from './commands/terminals.js';
import { volumeCommands } from './commands/volumes.js';

export const registry: CommandSpec[] = [...boxCommands, ...runningCommands, ...terminalCommands, ...snapshotCommands, ...diffCommands, ...baseCommands, ...buildCommands, ...systemCommands, ...configCommands, ...completionCommands, ...volumeCommands];
