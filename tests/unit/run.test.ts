/**
 * run() (src/system/run.ts) with `stdoutBlocks`: the program's output read through dd in
 * full blocks, its failures reported as the program's, and an abort that ends both.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { CommandError, run } from '../../src/system/run.js';

/** A Writable that records the size of each chunk it is given. */
function chunkSizes(): { sink: Writable; sizes: number[]; bytes: () => Buffer } {
  const sizes: number[] = [];
  const parts: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, callback) {
      sizes.push(chunk.length);
      parts.push(chunk);
      callback();
    },
  });
  return { sink, sizes, bytes: () => Buffer.concat(parts) };
}

// 3,000 writes of 100 bytes, a short pause every 100 of them: without blocks the reader sees
// many small pieces; with 64 KiB blocks, whole blocks and one short last one.
const WRITER = `for i in $(seq 3000); do printf '%099d\\n' "$i"; [ $((i % 100)) -eq 0 ] && sleep 0.01; done; true`;

test('stdoutBlocks delivers the same bytes in full blocks', async () => {
  const plain = chunkSizes();
  await run('sh', ['-c', WRITER], { stdout: plain.sink });
  const blocked = chunkSizes();
  await run('sh', ['-c', WRITER], { stdout: blocked.sink, stdoutBlocks: 64 * 1024 });
  assert.equal(blocked.bytes().length, 300_000);
  assert.ok(blocked.bytes().equals(plain.bytes()));
  assert.ok(plain.sizes.length > 20, `the plain reader saw ${plain.sizes.length} pieces`);
  // dd writes 64 KiB blocks; a pipe may hand one over in two reads, never more data than that.
  const total = blocked.sizes.reduce((a, b) => a + b, 0);
  assert.equal(total, 300_000);
  assert.ok(blocked.sizes.length <= 10, `blocked reads: ${blocked.sizes.join(',')}`);
});

test('stdoutBlocks reports the program failing, with its stderr, and buffers stdout when not piped', async () => {
  const ok = await run('sh', ['-c', 'printf abc'], { stdoutBlocks: 4096 });
  assert.equal(ok.stdout.toString(), 'abc');
  await assert.rejects(run('sh', ['-c', 'printf partial; echo broken >&2; exit 3'], { stdoutBlocks: 4096 }), (err: unknown) => {
    assert.ok(err instanceof CommandError);
    assert.equal(err.command, 'sh');
    assert.equal(err.code, 3);
    assert.match(err.stderr, /broken/);
    return true;
  });
});

test('stdoutBlocks: an abort ends the program and dd, and nothing is left running', async () => {
  const abort = new AbortController();
  const { sink } = chunkSizes();
  const dir = mkdtempSync(join(tmpdir(), 'zomg-run-test-'));
  const pidFile = join(dir, 'pid');
  try {
    const running = run('sh', ['-c', `echo $$ > ${pidFile}.tmp && mv ${pidFile}.tmp ${pidFile}; exec sleep 30`], { stdout: sink, stdoutBlocks: 4096, signal: abort.signal });
    // Written once the program runs (a loaded machine may take a while).
    for (let i = 0; i < 200 && !existsSync(pidFile); i++) await new Promise((resolve) => setTimeout(resolve, 50));
    const pid = Number(readFileSync(pidFile, 'utf8'));
    abort.abort();
    await assert.rejects(running);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.throws(() => process.kill(pid, 0), /ESRCH/, 'the program is gone');
    assert.deepEqual(childrenNamed('dd'), [], 'and so is dd');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** This process's children called `name` (from /proc/<pid>/stat: "pid (comm) state ppid ..."). */
function childrenNamed(name: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    const close = stat.lastIndexOf(')');
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    const ppid = Number(stat.slice(close + 2).split(' ')[1]);
    if (comm === name && ppid === process.pid) found.push(Number(entry));
  }
  return found;
}
