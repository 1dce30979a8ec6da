/**
 * The btrfs driver's tests once more with btrfs-progs in place of zomg's own ioctls
 * (ZOMG_BTRFS_PROGS=1): what runs where the addon was not built. Set before the driver's
 * first operation, which is when src/storage/btrfs-ioctl.ts decides.
 */
import * as assert from 'node:assert/strict';
import { it } from 'node:test';

process.env.ZOMG_BTRFS_PROGS = '1';
const { btrfsIoctl } = await import('../../src/storage/btrfs-ioctl.js');
await import('./btrfs-driver.test.js');

it('runs them without the in-process ioctls', () => {
  assert.equal(btrfsIoctl(), undefined);
});
