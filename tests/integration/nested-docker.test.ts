/**
 * Docker inside a box: the reason `--privileged` exists. A real Debian base with docker.io
 * from the mirror (tests/helpers/docker-base.ts, cached after the first build), a real
 * dockerd started in a privileged box with its default storage (the btrfs driver, so its
 * layers are subvolumes nested in the box's root), a tiny image imported from a tarball of
 * busybox, and a container run that prints and exits with its own code. The same dockerd
 * start in a default box must fail: that is the boundary.
 *
 * dockerd runs without touching the host's network (`--bridge=none`, no iptables; the
 * container has `--network none`). On a cgroup v1 or hybrid host a privileged box shares
 * the host's cgroup hierarchies, so dockerd is given a cgroup parent of this test's own,
 * removed at the end.
 */
import assert from 'node:assert/strict';
import { readdirSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BoxName, ProjectName } from '../../src/core/names.js';
import type { ExecRequest } from '../../src/core/service.js';
import { dockerBaseTar } from '../helpers/docker-base.js';
import { type TestEngine, makeTestEngine } from '../helpers/engine.js';
import { isRoot } from '../helpers/pool.js';

const ref = (name: string) => ({ project: 'nest' as ProjectName, name: name as BoxName });
const CGROUP_PARENT = `zomg-nested-test-${process.pid}`;
const DOCKERD = ['dockerd', '--iptables=false', '--ip6tables=false', '--bridge=none', `--cgroup-parent=/${CGROUP_PARENT}`, '--pidfile=/run/docker.pid'];
/** The image: busybox-static alone, packed and imported inside the box. */
const IMPORT_IMAGE = [
  'set -e',
  'rm -rf /tmp/img && mkdir -p /tmp/img/bin',
  'cp /bin/busybox /tmp/img/bin/busybox',
  'ln -s busybox /tmp/img/bin/sh',
  'tar -C /tmp/img -c . | docker import - tiny:1 >/dev/null',
  'docker image ls --format "{{.Repository}}:{{.Tag}}" tiny',
].join('\n');

/** Removes the cgroups dockerd made under CGROUP_PARENT in every hierarchy, children first. */
function removeCgroupParent(): void {
  const removeTree = (dir: string): void => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return; // not there in this hierarchy
    }
    for (const e of entries) if (e.isDirectory()) removeTree(join(dir, e.name));
    try {
      rmdirSync(dir);
    } catch {
      /* still busy: left for the kernel to report */
    }
  };
  const root = '/sys/fs/cgroup';
  const hierarchies = [root, ...readdirSync(root).map((n) => join(root, n)).filter((p) => statSync(p).isDirectory())];
  for (const h of hierarchies) removeTree(join(h, CGROUP_PARENT));
}

describe('docker in a box', { skip: !isRoot() && 'needs root for btrfs' }, () => {
  let t: TestEngine | undefined;

  const exec = async (box: string, command: string[], opts: Partial<ExecRequest> = {}) => {
    let stdout = '';
    let stderr = '';
    const sink = (fn: (s: string) => void) => new Writable({ write: (c: Buffer, _e, cb) => (fn(c.toString()), cb()) });
    const { exit_code } = await t!.engine.exec(ref(box), { command, ...opts }, { stdout: sink((s) => (stdout += s)), stderr: sink((s) => (stderr += s)) });
    return { code: exit_code, stdout, stderr };
  };
  const sh = (box: string, script: string) => exec(box, ['sh', '-c', script]);

  /** Stops the box's dockerd (SIGTERM, as a service manager would) and waits for it to exit. */
  const stopDockerd = async (box: string): Promise<void> => {
    await sh(box, 'p=$(cat /run/docker.pid 2>/dev/null) || exit 0; kill "$p" 2>/dev/null; for i in $(seq 100); do kill -0 "$p" 2>/dev/null || exit 0; sleep 0.1; done; kill -9 "$p"');
  };

  before(async () => {
    const tar = dockerBaseTar();
    t = await makeTestEngine({}, 2048);
    await t.engine.importBase('debian-docker', tar);
    await t.engine.createBox(ref('dind'), { base: 'debian-docker', privileged: true });
    await t.engine.createBox(ref('plain'), { base: 'debian-docker' });
  });

  after(async () => {
    try {
      if (t !== undefined) {
        for (const box of await t.engine.listBoxes({ project: 'nest' }).catch(() => [])) {
          if (box.status === 'running') await stopDockerd(box.name).catch(() => undefined);
          await t.engine.deleteBox(ref(box.name)).catch(() => undefined);
        }
        await t.cleanup();
      }
    } finally {
      removeCgroupParent();
    }
  });

  it('runs dockerd in a --privileged box, imports an image and runs a container with its output and exit code', async () => {
    const daemon = await t!.engine.execBackground(ref('dind'), { command: DOCKERD });
    assert.ok(daemon.pid > 0);
    // Ready when the API answers (a second or two; the bound is for a loaded CI machine).
    let info = { code: -1, stdout: '', stderr: '' };
    for (let i = 0; i < 120; i++) {
      info = await exec('dind', ['docker', 'info', '--format', '{{.Driver}} {{.CgroupVersion}}']);
      if (info.code === 0) break;
      await sleep(250);
    }
    const log = async () => (await sh('dind', `tail -20 ${daemon.log_path}`)).stdout;
    assert.equal(info.code, 0, `dockerd did not come up: ${info.stderr}\n${await log()}`);
    // Its default storage on a btrfs root: layers are subvolumes nested in the box's root.
    assert.match(info.stdout, /^btrfs /);

    const image = await sh('dind', IMPORT_IMAGE);
    assert.equal(image.code, 0, image.stderr);
    assert.equal(image.stdout.trim(), 'tiny:1');

    const run = await exec('dind', ['docker', 'run', '--rm', '--network', 'none', 'tiny:1', '/bin/sh', '-c', 'echo "hello from a container, pid $$"; exit 7']);
    assert.equal(run.stdout, 'hello from a container, pid 1\n', run.stderr);
    assert.equal(run.code, 7, 'docker run returns the container\'s exit code, and zomg exec returns docker\'s');
    const ok = await exec('dind', ['docker', 'run', '--rm', '--network', 'none', 'tiny:1', '/bin/busybox', 'true']);
    assert.equal(ok.code, 0, ok.stderr);
    // The host's network (the box's own): no traffic, only that such a container starts.
    const host = await exec('dind', ['docker', 'run', '--rm', '--network', 'host', 'tiny:1', '/bin/busybox', 'true']);
    assert.equal(host.code, 0, host.stderr);
    assert.equal((await exec('dind', ['docker', 'ps', '-aq'])).stdout, '', '--rm left no container');

    // The nested subvolumes docker made do not break a snapshot or a diff of the box.
    await t!.engine.createSnapshot(ref('dind'), { name: 'with-docker' });
    await sh('dind', 'echo changed > /etc/motd');
    const diff = await t!.engine.diffStatus(ref('dind'), { against: 'with-docker' });
    assert.deepEqual(
      diff.changes.map((c) => c.path).filter((p) => !p.startsWith('/var/lib/docker') && !p.startsWith('/run')),
      ['/etc/motd'],
    );

    await stopDockerd('dind');
    assert.notEqual((await exec('dind', ['docker', 'info'])).code, 0, 'dockerd is stopped');
  });

  it('restores a snapshot that holds docker\'s nested subvolumes: the image is back and runs', async () => {
    // Lose the image, then roll the box back to the snapshot taken while dockerd ran.
    await sh('dind', 'rm -rf /var/lib/docker/image /var/lib/docker/btrfs/subvolumes/*/bin 2>/dev/null; true');
    await t!.engine.restoreSnapshot(ref('dind'), 'with-docker');
    assert.equal((await sh('dind', 'cat /etc/motd 2>/dev/null | grep -c changed')).stdout.trim(), '0');
    // /run is part of a box's root (it persists, unlike a host's tmpfs /run): the pid files
    // of the daemons that ran when the snapshot was taken are stale now, and a new pid may
    // match one. Cleared as a boot would, before dockerd starts again.
    await sh('dind', 'rm -f /run/docker.pid /run/docker/containerd/containerd.pid');
    const daemon = await t!.engine.execBackground(ref('dind'), { command: DOCKERD });
    let ready = -1;
    for (let i = 0; i < 120 && ready !== 0; i++) {
      ready = (await exec('dind', ['docker', 'info'])).code;
      if (ready !== 0) await sleep(250);
    }
    assert.equal(ready, 0, `dockerd did not come back up on the restored root: ${(await sh('dind', `tail -5 ${daemon.log_path}`)).stdout}`);
    const run = await exec('dind', ['docker', 'run', '--rm', '--network', 'none', 'tiny:1', '/bin/busybox', 'echo', 'restored']);
    assert.equal(run.stdout, 'restored\n', run.stderr);
    assert.equal(run.code, 0);
    await stopDockerd('dind');
  });

  it('refuses the same dockerd in a default box (no mounts, no cgroups, no capabilities for it)', async () => {
    // A daemon that started would run until the timeout (exit 124): it must fail on its own.
    const r = await exec('plain', ['timeout', '60', ...DOCKERD]);
    assert.notEqual(r.code, 0);
    assert.notEqual(r.code, 124, 'dockerd started in a default box');
    assert.match(r.stderr, /failed to start daemon: .*operation not permitted/);
    assert.notEqual((await exec('plain', ['docker', 'info'])).code, 0);
  });

  it('deletes a box that held docker\'s nested subvolumes', async () => {
    await t!.engine.deleteBox(ref('dind'));
    await assert.rejects(t!.engine.getBox(ref('dind')), (err: { code?: string }) => err.code === 'ZOMG_BOX_NOT_FOUND');
  });
});
