/**
 * Options every command accepts, before or after the command words (`zomg --url U list` and
 * `zomg list --url U`), and the reading of argv that has to happen before commander sees it:
 * which command the words name, and where a pass-through command (exec) begins.
 */
import { UsageError } from '../core/errors.js';
import type { CommandSpec, OptionSpec } from './command.js';

export const GLOBAL_OPTIONS: OptionSpec[] = [
  { flags: '--url <url>', description: 'API URL of a zomg server (else the local engine)' },
  { flags: '--token <token>', description: 'bearer token for --url (or $ZOMG_TOKEN)' },
  { flags: '--profile <name>', description: 'profile: uses ZOMG_PROFILE_<NAME>_URL and _TOKEN' },
  { flags: '-p, --project <project>', description: 'project (default: $ZOMG_PROJECT, the git repository name, or "default")' },
  { flags: '--state-dir <dir>', description: 'state directory of the local engine (default $ZOMG_HOME or /var/lib/zomg)' },
  { flags: '-j, --json', description: 'print the result as JSON on stdout' },
];

interface Flag {
  names: string[];
  takesValue: boolean;
}

export function parseFlags(flags: string): Flag {
  const names = flags
    .split(/[ ,|]+/)
    .filter((w) => w.startsWith('-'))
    .map((w) => w.replace(/=.*$/, ''));
  return { names, takesValue: /[<[]/.test(flags) };
}

/** The option a token names (`--env`, `--env=K=V`, `-e`), or undefined. */
function matchFlag(token: string, flags: Flag[]): { flag: Flag; inline: boolean } | undefined {
  const eq = token.indexOf('=');
  const name = token.startsWith('--') && eq > 0 ? token.slice(0, eq) : token;
  const flag = flags.find((f) => f.names.includes(name));
  return flag ? { flag, inline: name !== token } : undefined;
}

const GLOBAL_FLAGS = GLOBAL_OPTIONS.map((o) => parseFlags(o.flags));

/**
 * The words of argv that can name a command: global options (and their values) before the
 * command are skipped, so `zomg --url U base list` names `base list`.
 */
export function commandWords(argv: string[], count = 2): string[] {
  const words: string[] = [];
  for (let i = 0; i < argv.length && words.length < count; i++) {
    const token = argv[i] as string;
    if (token === '--') break;
    if (token.startsWith('-') && token !== '-') {
      const m = matchFlag(token, GLOBAL_FLAGS);
      if (m?.flag.takesValue && !m.inline) i++;
      continue;
    }
    words.push(token);
  }
  return words;
}

/**
 * For a command whose last argument is a command line (exec): everything from the first
 * word after the leading arguments is that command line, options included
 * (`zomg exec web ls -la /root`). Returns argv with `--` put where the command begins, so
 * the parser leaves it alone. An unknown option after the box, before any command word,
 * is a usage error that says to use `--`.
 */
export function splitPassThrough(argv: string[], spec: CommandSpec): string[] {
  const leading = (spec.args?.length ?? 1) - 1;
  const flags = [...(spec.options ?? []), ...GLOBAL_OPTIONS].map((o) => parseFlags(o.flags));
  // Find where the command's own words end.
  let i = 0;
  let matched = 0;
  for (; i < argv.length && matched < spec.path.length; i++) {
    const token = argv[i] as string;
    if (token === '--') return argv;
    if (token.startsWith('-') && token !== '-') {
      const m = matchFlag(token, GLOBAL_FLAGS);
      if (m?.flag.takesValue && !m.inline) i++;
      continue;
    }
    if (token === spec.path[matched]) matched++;
    else return argv;
  }
  let positionals = 0;
  for (; i < argv.length; i++) {
    const token = argv[i] as string;
    if (token === '--') return argv;
    if (token.startsWith('-') && token !== '-') {
      const m = matchFlag(token, flags);
      if (m === undefined) {
        if (positionals < leading) return argv; // the parser reports it, with the usual hint
        const lead = (spec.args ?? []).slice(0, leading).join(' ');
        throw new UsageError(`unknown option '${token}' for \`zomg ${spec.path.join(' ')}\``, {
          hint: `options meant for the command go after \`--\` (or after the command's first word): zomg ${spec.path.join(' ')} ${lead} -- CMD ${token} …`,
        });
      }
      if (m.flag.takesValue && !m.inline) i++;
      continue;
    }
    if (positionals < leading) {
      positionals++;
      continue;
    }
    return [...argv.slice(0, i), '--', ...argv.slice(i)];
  }
  return argv;
}
