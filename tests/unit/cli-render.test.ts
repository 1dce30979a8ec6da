import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { libraryTable, table } from '../../src/cli/render.js';

describe('tables', () => {
  it('the padding fast path prints what cli-table3 prints, for printable ASCII', () => {
    const cell = fc.string({ unit: fc.constantFrom(...' abcXYZ019-:._/'.split('')), maxLength: 12 });
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.array(fc.array(cell, { minLength: 5, maxLength: 5 }), { maxLength: 6 }), (columns, rows) => {
        const head = ['NAME', 'STATUS', 'BASE', 'CREATED', 'X'].slice(0, columns);
        const body = rows.map((r) => r.slice(0, columns));
        assert.equal(table(head, body), libraryTable(head, body));
      }),
      { numRuns: 300 },
    );
  });

  it('leaves wide characters to cli-table3', () => {
    const rows = [['日本語', '1'], ['ab', '2']];
    assert.equal(table(['NAME', 'N'], rows), libraryTable(['NAME', 'N'], rows));
    assert.equal(table(['NAME', 'N'], rows), 'NAME     N\n日本語   1\nab       2');
  });
});
