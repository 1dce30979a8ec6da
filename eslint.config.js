// Lint: typescript-eslint's recommended rules plus the layering rule of STYLE.md —
// imports flow inward only: cli, api → engine → storage, runtime, db, system → core.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Folders each layer may not import from (relative import patterns). */
const forbidden = {
  core: ['system', 'storage', 'runtime', 'db', 'engine', 'api', 'cli'],
  system: ['storage', 'runtime', 'db', 'engine', 'api', 'cli'],
  storage: ['runtime', 'db', 'engine', 'api', 'cli'],
  runtime: ['storage', 'db', 'engine', 'api', 'cli'],
  db: ['storage', 'runtime', 'engine', 'api', 'cli'],
  engine: ['api', 'cli'],
  api: ['storage', 'runtime', 'db', 'cli'],
  cli: ['storage', 'runtime', 'db'],
};

const nodeIo = ['node:fs', 'node:fs/promises', 'node:child_process', 'better-sqlite3', 'fastify'];

const layerRules = Object.entries(forbidden).map(([layer, banned]) => ({
  files: [`src/${layer}/**/*.ts`],
  rules: {
    'no-restricted-imports': [
      'error',
      {
        patterns: [
          {
            group: banned.flatMap((b) => [`../${b}/*`, `../../${b}/*`, `../${b}`, `../../${b}`]),
            message: `src/${layer} may not import from ${banned.join(', ')} (STYLE.md: imports flow inward only).`,
          },
        ],
        ...(layer === 'core' ? { paths: nodeIo.map((name) => ({ name, message: 'core is pure: no I/O.' })) } : {}),
      },
    ],
    // The same rule for dynamic `import()`, which no-restricted-imports does not see.
    'no-restricted-syntax': [
      'error',
      {
        selector: `ImportExpression > Literal[value=/^(\\.\\.\\/)+(${banned.join('|')})(\\/|$)/]`,
        message: `src/${layer} may not import from ${banned.join(', ')} (STYLE.md: imports flow inward only), dynamically either.`,
      },
      ...(layer === 'core'
        ? [{ selector: `ImportExpression > Literal[value=/^(${nodeIo.join('|').replaceAll('/', '\\/')})$/]`, message: 'core is pure: no I/O.' }]
        : []),
    ],
  },
}));

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'bases/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', URL: 'readonly', AbortController: 'readonly', AbortSignal: 'readonly' } },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  ...layerRules,
);
