/**
 * A hint for every error the CLI prints: the error's own when it has one, else one chosen by
 * the kind of error and the command that failed, so a user always has a next step.
 */
import type { ErrorKind } from '../core/errors.js';

export function fallbackHint(kind: ErrorKind | undefined, command: string[] | undefined): string {
  const cmd = command && command.length > 0 ? `zomg ${command.join(' ')}` : 'zomg';
  switch (kind) {
    case 'invalid':
      return `run \`${cmd} --help\` for its usage`;
    case 'not_found':
      return 'check the name: `zomg list -a`, `zomg base list` and `zomg snapshot list <box>` show what exists';
    case 'conflict':
      return 'another operation holds it, or it is in the wrong state: check with `zomg list` or `zomg info <box>`, then retry';
    case 'unauthorized':
      return 'pass --token <token> or set ZOMG_TOKEN';
    case 'too_large':
      return 'use a smaller input';
    case 'unprocessable':
      return 'check the input: it was read but cannot be used as given';
    case 'pool_full':
      return 'free space by deleting boxes, snapshots or base versions, or grow the pool';
    case 'unsupported':
      return 'this is not available in this setup; see README.md';
    case 'tool':
    case 'internal':
    case undefined:
      return `run it again with ZOMG_DEBUG=1 for details${kind === 'tool' ? '' : '; if it persists, report it with that output'}`;
    default:
      return 'run `zomg --help` to see what zomg can do';
  }
}
