/**
 * The Debian base with docker.io installed that the nested-docker test runs dockerd in.
 * Built by tests/fixtures/make-docker-base.sh (mmdebstrap from deb.debian.org, about a
 * minute) once per machine and cached like the other fixtures, under
 * /var/tmp/zomg-test-fixtures/<hash of the script>/ (ZOMG_TEST_FIXTURES_CACHE elsewhere).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FIXTURES_CACHE } from './fixtures.js';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const script = join(repoRoot, 'tests/fixtures/make-docker-base.sh');
const ARCHIVE = 'debian-docker.tar.zst';

function cacheDir(): string {
  return join(FIXTURES_CACHE, createHash('sha256').update(readFileSync(script)).digest('hex').slice(0, 16));
}

/** The rootfs archive (Debian 12 minbase + docker.io + busybox-static), building it on first use. */
export function dockerBaseTar(): string {
  const dir = cacheDir();
  if (!existsSync(join(dir, 'done'))) {
    mkdirSync(FIXTURES_CACHE, { recursive: true });
    const tmp = `${dir}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp);
    try {
      execFileSync('bash', [script, tmp], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 15 * 60_000 });
      writeFileSync(join(tmp, 'done'), '');
      try {
        renameSync(tmp, dir);
      } catch {
        // Another test process finished first; its copy is as good as ours.
        if (!existsSync(join(dir, 'done'))) throw new Error(`could not install the docker base into ${dir}`);
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  return join(dir, ARCHIVE);
}
