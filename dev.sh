#!/usr/bin/env bash
# zomg's one entry for people and CI. Run as root on Debian 12 (bookworm).
#   ./dev.sh up     install everything, set up the embedded default (state dir, loopback
#                   btrfs pool, the box-base base) and run `zomg serve`
#   ./dev.sh test   install everything, then lint, typecheck and run the whole test suite
#   ./dev.sh setup  install everything (apt packages, npm ci, build) and stop
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(
  btrfs-progs util-linux e2fsprogs tar gzip zstd xz-utils pigz attr acl
  bubblewrap runc podman buildah uidmap fuse-overlayfs slirp4netns docker.io
  mmdebstrap debootstrap debian-archive-keyring ca-certificates
  python3 make g++ git
  rsync
)
BENCH_PACKAGES=(hyperfine snapper restic)

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "zomg manages btrfs pools, loop devices and namespaces: run this as root (sudo $0 $*)" >&2
    exit 1
  fi
}

install_apt() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

install_node_deps() {
  # npm ci rebuilds better-sqlite3 from source (about a minute); skip it when the lockfile is unchanged.
  local stamp=node_modules/.zomg-lock-sha
  local want
  want=$(sha256sum package-lock.json | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -e node_modules/better-sqlite3/build/Release/better_sqlite3.node ]; then
    echo "==> npm ci"
    npm_config_nodedir=/usr npm ci --no-audit --no-fund
    echo "$want" > "$stamp"
  fi
}

setup() {
  need_root "$@"
  install_apt "${APT_PACKAGES[@]}"
  install_node_deps
  echo "==> build"
  npm run --silent build
}

case "${1:-}" in
  setup)
    setup
    ;;
  up)
    setup
    shift
    node dist/bundle/cli/zomg.cjs base install box-base
    exec node dist/bundle/cli/zomg.cjs serve "$@"
    ;;
  test)
    setup
    echo "==> lint + typecheck"
    npm run --silent lint
    npx tsc -p tsconfig.json --noEmit
    echo "==> tests"
    node --test --test-concurrency=1 dist/tests/
    ;;
  bench)
    setup
    install_apt "${BENCH_PACKAGES[@]}"
    for b in dist/bench/*.js; do echo "==> $b"; node "$b"; done
    ;;
  *)
    sed -n '2,7p' "$0"
    exit 2
    ;;
esac
