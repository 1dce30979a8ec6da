/** Every CLI command, declared as data. */
import type { CommandSpec } from './command.js';
import { baseCommands } from './commands/bases.js';
import { boxCommands } from './commands/boxes.js';
import { buildCommands } from './commands/builds.js';
import { configCommands } from './commands/config.js';
import { diffCommands } from './commands/diffs.js';
import { runningCommands } from './commands/running.js';
import { snapshotCommands } from './commands/snapshots.js';
import { systemCommands } from './commands/system.js';
import { volumeCommands } from './commands/volumes.js';

export const registry: CommandSpec[] = [...boxCommands, ...runningCommands, ...snapshotCommands, ...diffCommands, ...baseCommands, ...buildCommands, ...systemCommands, ...configCommands, ...volumeCommands];
