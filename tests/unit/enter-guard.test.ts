/** An exec whose entry program failed is zomg's error, not the command's exit code; the command's own stderr passes untouched. */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { EnterGuard } from '../../src/engine/running.js';

function sink(): { stream: Writable; text(): string } {
  const chunks: Buffer[] = [];
  return { stream: new Writable({ write: (c: Buffer, _e, cb) => (chunks.push(c), cb()) }), text: () => Buffer.concat(chunks).toString() };
}
const write = (w: Writable, data: string): Promise<void> => new Promise((resolve) => w.write(Buffer.from(data), () => resolve()));

describe('EnterGuard', () => {
  it('holds back zomg-enter and nsenter failures, split across chunks, and names them', async () => {
    for (const [parts, code, reason] of [
      [['zomg', '-enter: entering the box', "'s namespaces: No such process\n"], 125, "entering the box's namespaces: No such process"],
      [['nsenter: cannot open /proc/123/ns/ipc: No such file or directory\n'], 1, 'cannot open /proc/<init>/ns/ipc: No such file or directory'],
    ] as const) {
      const out = sink();
      const guard = new EnterGuard(out.stream);
      for (const p of parts) await write(guard, p);
      assert.equal(guard.enterFailure(code), reason);
      assert.equal(out.text(), '');
    }
  });

  it("passes the command's own stderr through, also when it exits with the tool's code", async () => {
    const out = sink();
    const guard = new EnterGuard(out.stream);
    await write(guard, 'zom');
    await write(guard, 'bie process\n');
    assert.equal(guard.enterFailure(1), undefined);
    assert.equal(out.text(), 'zombie process\n');
    const out2 = sink();
    const guard2 = new EnterGuard(out2.stream);
    await write(guard2, 'nsenter: cannot open x\n');
    assert.equal(guard2.enterFailure(3), undefined, 'not the tool exit code: the command said it');
    assert.equal(out2.text(), 'nsenter: cannot open x\n');
  });

  it('does not hold without end a command output that merely begins like the tool: past 64 KiB it flows on', async () => {
    const out = sink();
    const guard = new EnterGuard(out.stream);
    await write(guard, 'zomg-enter: not really\n');
    const chunk = 'x'.repeat(16 * 1024);
    for (let i = 0; i < 8; i++) await write(guard, chunk);
    assert.ok(out.text().startsWith('zomg-enter: not really\n'), 'the held start was passed on');
    assert.ok(out.text().length >= 64 * 1024, `only ${out.text().length} bytes passed`);
    await write(guard, 'tail\n');
    assert.equal(guard.enterFailure(125), undefined, 'a long output is the command\'s, whatever its exit code');
    assert.equal(out.text(), `zomg-enter: not really\n${chunk.repeat(8)}tail\n`);
  });
});
