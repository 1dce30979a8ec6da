/**
 * The house's rules, checked on the source: no import cycles anywhere in src/ (static,
 * runtime imports), and engine use cases never import each other (shared helpers
 * live in engine/access.ts, lifecycle.ts, versions.ts, tree-diff.ts).
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const SRC = resolve(fileURLToPath(new URL('../../../src/', import.meta.url)));

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return name.endsWith('.ts') ? [path] : [];
  });
}

/** Relative imports of a file (static `from '…'`, `import('…')`, re-exports), as source paths. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  // Type-only imports make no runtime edge: they are left out.
  const runtime = text.replace(/^import type [^;]+;$/gm, '').replace(/^export type [^;]+;$/gm, '');
  // Static imports only: a dynamic import() runs when it is called, after every module has loaded.
  const specs = [...runtime.matchAll(/(?:from|^import)\s*'(\.{1,2}\/[^']+)'/gm)].map((m) => m[1] as string);
  return specs.map((s) => resolve(dirname(file), s.replace(/\.js$/, '.ts')));
}

const graph = new Map(sources(SRC).map((f) => [f, importsOf(f)]));
const rel = (f: string): string => relative(SRC, f);

describe('architecture', () => {
  it('has no import cycles', () => {
    const state = new Map<string, 'visiting' | 'done'>();
    const cycles: string[] = [];
    const visit = (f: string, path: string[]): void => {
      if (state.get(f) === 'done') return;
      if (state.get(f) === 'visiting') {
        cycles.push([...path.slice(path.indexOf(f)), f].map(rel).join(' → '));
        return;
      }
      state.set(f, 'visiting');
      for (const dep of graph.get(f) ?? []) if (graph.has(dep)) visit(dep, [...path, f]);
      state.set(f, 'done');
    };
    for (const f of graph.keys()) visit(f, []);
    assert.deepEqual(cycles, []);
  });

  it('engine use cases do not import each other', () => {
    const engine = join(SRC, 'engine');
    const composition = readFileSync(join(engine, 'engine.ts'), 'utf8');
    const useCases = new Set([...composition.matchAll(/import \* as \w+ from '\.\/([\w-]+)\.js'/g)].map((m) => join(engine, `${m[1]}.ts`)));
    assert.ok(useCases.size >= 5, 'engine.ts composes the use cases with `import * as`');
    const crossings: string[] = [];
    for (const f of useCases) for (const dep of graph.get(f) ?? []) if (useCases.has(dep)) crossings.push(`${rel(f)} → ${rel(dep)}`);
    assert.deepEqual(crossings, []);
  });
});
