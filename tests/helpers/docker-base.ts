/**
 * The Debian base with docker.io installed that the nested-docker test runs dockerd in.
 * Built by tests/fixtures/make-docker-base.sh (mmdebstrap from deb.debian.org, about a
 * minute) once per machine and cached like the other fixtures, under
 * /var/tmp/zomg-test-fixtures/<hash of the script>/ (ZOMG_TEST_FIXTURES_CACHE elsewhere).
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cachedScriptOutput } from './fixtures.js';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const script = join(repoRoot, 'tests/fixtures/make-docker-base.sh');
const ARCHIVE = 'debian-docker.tar.zst';

/** The rootfs archive (Debian 12 minbase + docker.io + busybox-static), building it on first use. */
export function dockerBaseTar(): string {
  const dir = cachedScriptOutput(script, [], 15 * 60_000);
  return join(dir, ARCHIVE);
}
