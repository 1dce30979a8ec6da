#!/usr/bin/env bash
# zomg maintained base: busybox — a tiny static userland (one binary, ~2 MB) for fast tests.
#
# Contract: build.sh <target-dir>, run as root; <target-dir> is an existing empty directory
# (a staging subvolume) that this script fills with a complete rootfs. If ZOMG_CACHE_DIR is
# set, the downloaded .deb is kept there and reused. Needs apt-get and dpkg (Debian host).
set -euo pipefail

die() { echo "busybox/build.sh: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: build.sh <target-dir>"
target=$1
[ "$(id -u)" -eq 0 ] || die "must run as root"
[ -d "$target" ] || die "$target is not a directory"
[ -z "$(ls -A "$target")" ] || die "$target is not empty"
command -v apt-get >/dev/null && command -v dpkg >/dev/null || die "needs apt-get and dpkg (a Debian host)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The package's .deb, from the cache when we have it.
cache=${ZOMG_CACHE_DIR:+$ZOMG_CACHE_DIR/busybox}
deb=
if [ -n "$cache" ]; then
  mkdir -p "$cache"
  deb=$(find "$cache" -maxdepth 1 -name 'busybox-static_*_amd64.deb' -print -quit)
fi
if [ -z "$deb" ]; then
  # apt-get download writes to the current directory; the lists may be missing or stale.
  if ! (cd "$work" && apt-get download -q busybox-static:amd64 2>/dev/null); then
    apt-get update -q >&2
    (cd "$work" && apt-get download -q busybox-static:amd64) || die "could not download busybox-static"
  fi
  deb=$(find "$work" -maxdepth 1 -name 'busybox-static_*.deb' -print -quit)
  [ -n "$deb" ] || die "apt-get download produced no .deb"
  if [ -n "$cache" ]; then
    cp "$deb" "$cache/.tmp.deb" && mv "$cache/.tmp.deb" "$cache/$(basename "$deb")"
  fi
fi
dpkg -x "$deb" "$work/pkg"
bb=$work/pkg/bin/busybox
[ -x "$bb" ] || die "the package holds no bin/busybox"

cd "$target"
mkdir -p bin sbin etc dev proc sys tmp root home run var/tmp var/log usr/bin usr/sbin
chmod 0755 . bin sbin etc dev proc sys home run var var/log usr usr/bin usr/sbin
chmod 0700 root
chmod 1777 tmp var/tmp
install -m 0755 "$bb" bin/busybox

# One relative symlink per applet, at the path busybox itself suggests (bin/sh,
# usr/bin/env, sbin/init…). The list includes bin/busybox: linking it would replace the
# binary with a link to itself.
"$bb" --list-full | while IFS= read -r applet; do
  case "$applet" in
    bin/busybox | linuxrc | '') continue ;;
    */*) ;;
    *) continue ;;
  esac
  dir=${applet%/*}
  if [ "$dir" = bin ]; then link=busybox
  else link=$(printf '%s' "$dir" | sed 's#[^/][^/]*#..#g')/bin/busybox
  fi
  [ -e "$applet" ] || [ -L "$applet" ] || ln -s "$link" "$applet"
done
[ -L bin/sh ] || die "busybox has no sh applet"

cat >etc/passwd <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >etc/group <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
echo box >etc/hostname
cat >etc/hosts <<'EOF'
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
EOF
cat >etc/profile <<'EOF'
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=${HOME:-/root}
PS1='\u@\h:\w\$ '
EOF
: >etc/resolv.conf
chmod 0644 etc/passwd etc/group etc/hostname etc/hosts etc/profile etc/resolv.conf
