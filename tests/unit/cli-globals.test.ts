import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CommandSpec } from '../../src/cli/command.js';
import { completionTree } from '../../src/cli/commands/completion.js';
import { commandWords, splitPassThrough } from '../../src/cli/globals.js';
import { registry } from '../../src/cli/registry.js';

const exec = registry.find((s) => s.path.join(' ') === 'exec') as CommandSpec;

describe('reading argv before the parser', () => {
  it('finds the command words behind global options and their values', () => {
    assert.deepEqual(commandWords(['--url', 'http://127.0.0.1:7070', '-p', 'proj', 'base', 'list']), ['base', 'list']);
    assert.deepEqual(commandWords(['--url=http://x', '--json', 'list', '-q']), ['list']);
    assert.deepEqual(commandWords(['exec', '-', '--', 'true']), ['exec', '-']);
  });

  it('passes everything from the first word after the box through to exec', () => {
    assert.deepEqual(splitPassThrough(['exec', 'web', 'ls', '-la', '/root'], exec), ['exec', 'web', '--', 'ls', '-la', '/root']);
    assert.deepEqual(splitPassThrough(['--url', 'http://h', 'exec', '--env', 'A=1', 'web', '--sh', 'echo', '--help'], exec), ['--url', 'http://h', 'exec', '--env', 'A=1', 'web', '--sh', '--', 'echo', '--help']);
    assert.deepEqual(splitPassThrough(['exec', 'web', '--wd=/tmp', 'pwd'], exec), ['exec', 'web', '--wd=/tmp', '--', 'pwd']);
    // Already split by the user: left alone.
    assert.deepEqual(splitPassThrough(['exec', 'web', '--sh', '--', 'echo $A'], exec), ['exec', 'web', '--sh', '--', 'echo $A']);
  });

  it('says to use -- for an unknown option between the box and the command', () => {
    assert.throws(
      () => splitPassThrough(['exec', 'web', '-la'], exec),
      (err: Error & { code?: string; hint?: string }) => err.code === 'ZOMG_USAGE' && /unknown option '-la'/.test(err.message) && /--/.test(err.hint ?? ''),
    );
  });
});

describe('shell completion', () => {
  it('is generated from the registry: every visible command and its options', () => {
    const tree = completionTree(registry);
    const top = tree.find((n) => n.path === '');
    const words = top?.children.map((c) => c.word) ?? [];
    for (const spec of registry.filter((s) => !s.hidden)) assert.ok(words.includes(spec.path[0] as string), spec.path.join(' '));
    assert.ok(!words.includes('__compute-sizes'));
    const stop = tree.find((n) => n.path === 'stop');
    assert.ok(stop?.options.includes('--all'));
    assert.ok(stop?.options.includes('--url'));
    assert.equal(tree.at(-1)?.path, '', 'the program comes last, after every longer path');
  });
});
