import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { errorCatalogueUrl, readmeUrl, renderErrorCatalogue, withStatusSummary } from '../../src/cli/error-catalogue.js';
import { exitCodeOf } from '../../src/cli/exit-codes.js';
import { ERROR_CATALOGUE, isErrorCode } from '../../src/core/error-codes.js';
import { HTTP_STATUS, ToolError, UnprocessableError, UsageError, errorFromWire, rewordError } from '../../src/core/errors.js';

const SRC = fileURLToPath(new URL('../../../src/', import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sources(path) : path.endsWith('.ts') ? [path] : [];
  });
}

const KIND_OF_CLASS: Record<string, string> = {
  InvalidArgumentError: 'invalid',
  NotFoundError: 'not_found',
  ConflictError: 'conflict',
  TooLargeError: 'too_large',
  UnprocessableError: 'unprocessable',
  UnsupportedError: 'unsupported',
  ToolError: 'tool',
  ForbiddenError: 'forbidden',
};

describe('error codes as a closed set', () => {
  it('the committed docs/errors.md and the README summary are what `npm run docs:errors` generates', () => {
    assert.equal(readFileSync(errorCatalogueUrl, 'utf8'), renderErrorCatalogue(), 'docs/errors.md is stale: run `npm run docs:errors`');
    const readme = readFileSync(readmeUrl, 'utf8');
    assert.equal(withStatusSummary(readme), readme, 'the errors summary in README.md is stale: run `npm run docs:errors`');
  });

  it('every error class thrown with a code in src uses the kind the catalogue gives that code', () => {
    let checked = 0;
    for (const file of sources(SRC)) {
      const text = readFileSync(file, 'utf8');
      const direct = /new (\w+Error)\(\s*'(ZOMG_[A-Z_]+)'/g;
      const viaOption = /new (InvalidArgumentError)\((?:(?!new \w+Error)[\s\S]){0,400}?code: '(ZOMG_[A-Z_]+)'/g;
      for (const re of [direct, viaOption]) {
        for (const m of text.matchAll(re)) {
          const [, cls, code] = m as unknown as [string, string, string];
          const want = KIND_OF_CLASS[cls];
          if (want === undefined) continue;
          assert.ok(isErrorCode(code), `${file}: ${code} is not in the catalogue`);
          assert.equal(ERROR_CATALOGUE[code].kind, want, `${file}: ${cls} with ${code}`);
          checked++;
        }
      }
    }
    assert.ok(checked > 50, `only ${checked} error sites found`);
  });

  it('every ZOMG_ string literal in src that names an error is a catalogued code', () => {
    const envNames = /^ZOMG_(HOME|URL|API_URL|BOX_API_URL|PROJECT|PROFILE.*|TOKEN|SETUP_DIR|POOL_PATH|CACHE_DIR|DEBUG|NO_SIZE_WORKER)$/;
    for (const file of sources(SRC)) {
      for (const m of readFileSync(file, 'utf8').matchAll(/'(ZOMG_[A-Z0-9_]+)'/g)) {
        const code = m[1] as string;
        if (envNames.test(code)) continue;
        assert.ok(isErrorCode(code), `${file}: '${code}' is neither an error code in the catalogue nor a known environment variable`);
      }
    }
  });

  it('a remote 500 becomes kind internal; other statuses map back to their kind', () => {
    assert.equal(errorFromWire(500, { code: 'ZOMG_TOOL_FAILED', message: 'm' }).kind, 'internal');
    assert.equal(errorFromWire(502, {}).kind, 'internal');
    assert.equal(errorFromWire(404, { code: 'ZOMG_BOX_NOT_FOUND', message: 'gone' }).kind, 'not_found');
    assert.equal(errorFromWire(403, { code: 'ZOMG_FORBIDDEN_ORIGIN', message: 'no' }).kind, 'forbidden');
    assert.equal(errorFromWire(400, { code: 'not a code' }).code, 'ZOMG_INTERNAL');
    for (const kind of Object.keys(HTTP_STATUS)) if (kind !== 'tool') assert.equal(errorFromWire(HTTP_STATUS[kind as keyof typeof HTTP_STATUS], {}).kind, kind);
  });

  it('re-wording an error wraps it and leaves the original as it was', () => {
    const original = new UnprocessableError('ZOMG_BUILD_FAILED', 'failed in /var/lib/zomg/pool/staging/x', { hint: 'h' });
    const redacted = rewordError(original, 'failed in <context>');
    assert.equal(original.message, 'failed in /var/lib/zomg/pool/staging/x');
    assert.equal(redacted.message, 'failed in <context>');
    assert.equal(redacted.code, 'ZOMG_BUILD_FAILED');
    assert.equal(redacted.kind, 'unprocessable');
    assert.equal(redacted.hint, 'h');
    assert.equal(redacted.cause, original);
  });

  it('exit codes: 2 for usage errors, 1 for the rest', () => {
    assert.equal(exitCodeOf(new UsageError('bad flag')), 2);
    assert.equal(exitCodeOf(new ToolError('ZOMG_TOOL_FAILED', 'x')), 1);
    assert.equal(exitCodeOf(new Error('bug')), 1);
  });
});
