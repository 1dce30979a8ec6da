import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ZomgError } from '../../src/core/errors.js';
import { QUOTE_MAX, checkArgv, checkExecInput, checkPath, checkText, quote } from '../../src/core/input.js';
import { parseBaseName, parseBoxName, parseEnvAssignment, parseProjectName, parseSnapshotName, parseTag } from '../../src/core/names.js';
import { type Page, pageOf } from '../../src/core/paging.js';
import { parseBaseRef, parseBoxRef } from '../../src/core/refs.js';
import type { ProjectName } from '../../src/core/names.js';

/** Asserts `fn` throws a ZomgError with `code` whose message stays short. */
function refuses(fn: () => unknown, code: string): ZomgError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ZomgError, `not a ZomgError: ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.equal(err.kind, 'invalid');
    assert.ok(err.message.length < 400, `message too long (${err.message.length})`);
    return err;
  }
  assert.fail(`accepted, expected ${code}`);
}

const SMUGGLE = 'x\u0000--ro-bind\u0000/some/host/dir\u0000/injected';

describe('input that cannot smuggle', () => {
  it('refuses NUL in every name, ref, tag and environment entry with ZOMG_INVALID_INPUT', () => {
    for (const parse of [parseBoxName, parseProjectName, parseBaseName, parseSnapshotName]) refuses(() => parse('ok\u0000x'), 'ZOMG_INVALID_INPUT');
    refuses(() => parseBoxRef('proj:bo\u0000x', { project: 'p' as ProjectName }), 'ZOMG_INVALID_INPUT');
    refuses(() => parseBaseRef('base\u0000:abc'), 'ZOMG_INVALID_INPUT');
    refuses(() => parseTag('k=v\u0000'), 'ZOMG_INVALID_INPUT');
    refuses(() => parseEnvAssignment(`A=${SMUGGLE}`), 'ZOMG_INVALID_INPUT');
    refuses(() => parseEnvAssignment('A\u0000B=x'), 'ZOMG_INVALID_INPUT');
    // Other control characters in names are refused as input too; a bad but clean name keeps its own code.
    refuses(() => parseBoxName('a\u001bb'), 'ZOMG_INVALID_INPUT');
    refuses(() => parseBoxName('Upper'), 'ZOMG_INVALID_NAME');
  });

  it('keeps what has meaning: newlines in argv and env values, tabs and newlines in free text', () => {
    assert.deepEqual(parseEnvAssignment('CERT=line1\nline2'), ['CERT', 'line1\nline2']);
    checkArgv(['sh', '-c', 'echo a\necho b\t\u001b[0m']);
    assert.equal(checkText('two\nlines\tand a tab', 'description', 'text'), 'two\nlines\tand a tab');
    refuses(() => checkText('bell\u0007', 'description', 'text'), 'ZOMG_INVALID_INPUT');
  });

  it('checks every string of an exec request: argv, env, cwd, user', () => {
    refuses(() => checkExecInput({ command: ['id', 'a\u0000b'] }), 'ZOMG_INVALID_INPUT');
    refuses(() => checkExecInput({ command: ['id'], env: { A: SMUGGLE } }), 'ZOMG_INVALID_INPUT');
    refuses(() => checkExecInput({ command: ['id'], cwd: '/tmp\u0000/x' }), 'ZOMG_INVALID_INPUT');
    refuses(() => checkExecInput({ command: ['id'], cwd: '/tmp\n' }), 'ZOMG_INVALID_INPUT');
    refuses(() => checkExecInput({ command: ['id'], user: 'root\u0000' }), 'ZOMG_INVALID_INPUT');
    checkExecInput({ command: ['id'], env: { A: 'b' }, cwd: '/tmp', user: 'root' });
    refuses(() => checkPath(`/${'a'.repeat(5000)}`), 'ZOMG_INVALID_INPUT');
  });

  it('never echoes more than ~100 characters of the input', () => {
    const huge = `/${'x'.repeat(50 * 1024 * 1024)}\u0000`;
    const err = refuses(() => checkPath(huge, 'working directory'), 'ZOMG_INVALID_INPUT');
    assert.match(err.message, /more characters/);
    const big = refuses(() => parseBoxName('A'.repeat(10_000)), 'ZOMG_INVALID_NAME');
    assert.ok(big.message.includes('9900 more characters'), big.message);
    assert.equal(quote('short'), '"short"');
    assert.equal(quote('a\u0000b'), '"a\\u0000b"');
    assert.ok(quote('y'.repeat(1000)).length < QUOTE_MAX + 40);
  });
});

describe('paging', () => {
  const items = Array.from({ length: 7 }, (_, i) => ({ name: `n${i}` }));
  const key = (x: { name: string }): string => x.name;

  it('walks every item once, page by page, following the token', () => {
    const seen: string[] = [];
    let page: Page<{ name: string }> = pageOf(items, key, { maxResults: 3 });
    seen.push(...page.items.map(key));
    while (page.nextPageToken !== undefined) {
      page = pageOf(items, key, { maxResults: 3, pageToken: page.nextPageToken });
      seen.push(...page.items.map(key));
    }
    assert.deepEqual(seen, items.map(key));
    assert.deepEqual(pageOf(items, key).items.length, 7);
    assert.equal(pageOf(items, key, { maxResults: 7 }).nextPageToken, undefined);
  });

  it('refuses a token it did not hand out and a bad page size', () => {
    refuses(() => pageOf(items, key, { pageToken: 'garbage!!' }), 'ZOMG_INVALID_PAGE_TOKEN');
    refuses(() => pageOf(items, key, { maxResults: 0 }), 'ZOMG_INVALID_ARGUMENT');
  });
});
