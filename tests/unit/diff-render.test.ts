import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  diffEntryFromJson,
  diffEntryToJson,
  escapePath,
  renderDiffText,
  sortDiffEntries,
  unescapePath,
  type DiffEntry,
  type DiffEntryJson,
} from '../../src/core/diff.js';

const p = (s: string | number[]): Buffer => (typeof s === 'string' ? Buffer.from(s, 'utf8') : Buffer.from(s));

test('renders + ~ - lines sorted bytewise by path, or No changes', () => {
  const entries: DiffEntry[] = [
    { path: p('/b'), kind: 'deleted' },
    { path: p('/a/b'), kind: 'modified' },
    { path: p('/a-c'), kind: 'added' },
    { path: p('/a'), kind: 'added' },
  ];
  // '-' (0x2d) sorts before '/' (0x2f): bytewise, not by path components.
  assert.equal(renderDiffText(entries), ['+ /a', '+ /a-c', '~ /a/b', '- /b'].join('\n'));
  assert.equal(renderDiffText([]), 'No changes');
  assert.deepEqual(
    sortDiffEntries([{ path: p([0x2f, 0xff]), kind: 'added' }, { path: p('/é'), kind: 'added' }]).map((e) => e.path),
    [p('/é'), p([0x2f, 0xff])],
  );
});

test('names that are not plain text are escaped unambiguously', () => {
  assert.equal(escapePath(p('/etc/hosts')), '/etc/hosts');
  assert.equal(escapePath(p('/uni-é/日本')), '/uni-é/日本');
  assert.equal(escapePath(p('/back\\slash')), '/back\\\\slash');
  assert.equal(escapePath(p('/nl\nx\ttab\x7f')), '/nl\\x0ax\\x09tab\\x7f');
  assert.equal(escapePath(p([0x2f, 0xff, 0x61, 0xc3])), '/\\xffa\\xc3');
  // A literal "\xff" in a name is not the byte 0xff.
  assert.equal(escapePath(p('/\\xff')), '/\\\\xff');
  // C1 controls and UTF-16 surrogates encoded in UTF-8 are escaped byte by byte.
  assert.equal(escapePath(p([0x2f, 0xc2, 0x85])), '/\\xc2\\x85');
  assert.equal(escapePath(p([0x2f, 0xed, 0xa0, 0x80])), '/\\xed\\xa0\\x80');
  assert.equal(renderDiffText([{ path: p([0x2f, 0x61, 0x0a, 0x2f, 0xfe]), kind: 'added' }]), '+ /a\\x0a/\\xfe');
  assert.throws(() => unescapePath('/bad\\q'));
});

test('escapePath round-trips any bytes', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
      const path = Buffer.concat([p('/'), Buffer.from(bytes)]);
      const text = escapePath(path);
      assert.ok(![...text].some((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f), 'no control characters in the text form');
      assert.deepEqual(unescapePath(text), path);
    }),
    { numRuns: 500 },
  );
});

test('JSON form: plain UTF-8 names stay plain, others carry exact bytes in path_b64', () => {
  assert.deepEqual(diffEntryToJson({ path: p('/tab\there/é'), kind: 'added' }), { path: '/tab\there/é', kind: 'added' });
  const odd = p([0x2f, 0x66, 0xff, 0x5c]);
  const json = diffEntryToJson({ path: odd, kind: 'deleted' });
  assert.deepEqual(json, { path: '/f\\xff\\\\', path_b64: odd.toString('base64'), kind: 'deleted' });
  // Through real JSON text and back.
  const back = diffEntryFromJson(JSON.parse(JSON.stringify(json)) as DiffEntryJson);
  assert.deepEqual(back, { path: odd, kind: 'deleted' });
});

test('JSON form round-trips any bytes', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40 }), fc.constantFrom('added', 'modified', 'deleted' as const), (bytes, kind) => {
      const entry: DiffEntry = { path: Buffer.concat([p('/'), Buffer.from(bytes)]), kind };
      const text = JSON.stringify(diffEntryToJson(entry));
      assert.deepEqual(diffEntryFromJson(JSON.parse(text) as DiffEntryJson), entry);
    }),
    { numRuns: 500 },
  );
});
