#!/bin/sh
# Builds native/btrfs.c, zomg's in-process btrfs ioctls, into dist/native/zomg-btrfs.node
# (loaded by src/storage/btrfs-ioctl.ts). It needs a C compiler and Node's headers
# (node_api.h; Debian's nodejs package has them). Without a compiler zomg is still whole:
# it runs btrfs-progs for the same operations, so this only warns.
set -eu
cd "$(dirname "$0")/.."
out=dist/native/zomg-btrfs.node
cc=${CC:-cc}
if ! command -v "$cc" >/dev/null 2>&1; then
  echo "native.sh: no C compiler ($cc): zomg will run btrfs-progs instead of its own ioctls" >&2
  exit 0
fi
include=$(node -p 'require("node:path").join(process.execPath, "..", "..", "include", "node")')
[ -f "$include/node_api.h" ] || include=/usr/include/node
mkdir -p dist/native
"$cc" -O2 -Wall -Wextra -Werror -std=gnu11 -shared -fPIC -pthread -fvisibility=hidden \
  -DNODE_GYP_MODULE_NAME=zomg_btrfs -DNAPI_VERSION=8 -I"$include" \
  native/btrfs.c -o "$out.tmp"
mv "$out.tmp" "$out"
