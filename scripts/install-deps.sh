#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian 12 machine. Idempotent: a package
# that is already installed is not touched, and apt is only asked when something is missing.
#
# usage: scripts/install-deps.sh test|demo|dist
set -euo pipefail

want=(bubblewrap busybox-static hyperfine nodejs)
# Release binaries (scripts/dist.sh, scripts/check-dist.sh): an empty root to run the x86_64
# binary in (bubblewrap), `file` and `readelf` (binutils) to read both, and qemu-user-static to
# run the aarch64 one. Zig and cargo-zigbuild come from PyPI (scripts/dist-requirements.txt).
dist=(bubblewrap file binutils qemu-user-static)
# Real builds (tests/it/build_real.rs, make demo, bench/build.sh): rootless Buildah, a local
# registry (run by hand on 127.0.0.1, never as the package's service: policy-rc.d keeps it
# stopped), subordinate ids (uidmap: newuidmap/newgidmap), a busybox base image made without
# internet, and the tools for a TLS + basic-auth registry and for asking it for digests.
# `--no-install-recommends` keeps the set minimal. fuse-overlayfs (a Recommends of buildah) is
# deliberately neither installed nor removed: the build tests pass with and without it
# (docs/developer/testing.md, "Real build tests").
build=(buildah docker-registry uidmap busybox-static apache2-utils openssl curl ca-certificates)
case "${1:-test}" in
  test) want+=("${build[@]}") ;;
  demo) want+=("${build[@]}") ;;
  dist) want=("${dist[@]}") ;;
  *) echo "usage: $0 test|demo|dist" >&2; exit 2 ;;
esac

missing=()
for pkg in "${want[@]}"; do
  # node may come from outside apt (the CI image ships one); accept any node >= 20 on PATH.
  if [ "$pkg" = nodejs ] && command -v node >/dev/null 2>&1; then continue; fi
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

for tool in cargo rustc; do
  command -v "$tool" >/dev/null || { echo "error: \`$tool\` is not on PATH; install Rust (rustup) first" >&2; exit 1; }
done
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy
