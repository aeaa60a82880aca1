#!/usr/bin/env bash
# `make dist`: the release binaries. Static Linux executables (musl) for x86_64 and aarch64,
# cross-compiled with cargo-zigbuild and Zig (both from PyPI, pinned below), written to
# target/dist/ as the release assets:
#
#   runner-k8s-hook-x86_64-linux  runner-k8s-hook-aarch64-linux  SHA256SUMS
#
# then checked by scripts/check-dist.sh (static, the right machine, runs with no libraries).
# Installs what it needs, idempotently: Debian packages (scripts/install-deps.sh dist), the
# rustup targets, and the pinned Zig and cargo-zigbuild in a cache directory
# ($RUNNER_K8S_HOOK_TOOLS, default ~/.cache/runner-k8s-hook). Why musl and how a release is
# made and reproduced: docs/developer/releasing.md.
#
# usage: scripts/dist.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

# The cross toolchain. cargo-zigbuild uses `python3 -m ziglang` when the module imports
# (cargo-zigbuild's src/zig/locate.rs), so PYTHONPATH below makes it this Zig and no other.
# Both versions and their wheels' hashes are in scripts/dist-requirements.txt.
requirements=scripts/dist-requirements.txt
zig_version=$(sed -n 's/^ziglang==\([^ ]*\).*/\1/p' "$requirements")
zigbuild_version=$(sed -n 's/^cargo-zigbuild==\([^ ]*\).*/\1/p' "$requirements")
targets=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
# Release asset name for each target: the contract with the GitHub action and the docs.
asset_of() {
  case "$1" in
    x86_64-unknown-linux-musl) echo runner-k8s-hook-x86_64-linux ;;
    aarch64-unknown-linux-musl) echo runner-k8s-hook-aarch64-linux ;;
  esac
}
dist=$repo/target/dist

step() { echo "==> $*" >&2; }
die() { echo "error: $*" >&2; exit 1; }

# --- what the build and the check need --------------------------------------------------------
step "Debian packages (scripts/install-deps.sh dist)"
scripts/install-deps.sh dist

step "rustup targets: ${targets[*]} ($(rustc -V))"
installed=$(rustup target list --installed) || die "\`rustup target list\` failed: the build needs a rustup-managed toolchain (https://rustup.rs)"
for target in "${targets[@]}"; do
  grep -qx "$target" <<<"$installed" || rustup target add "$target" \
    || die "\`rustup target add $target\` failed: install the target, then run make dist again"
done

tools_root=${RUNNER_K8S_HOOK_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/runner-k8s-hook}
tools=$tools_root/zig-$zig_version-zigbuild-$zigbuild_version
if [ ! -x "$tools/bin/cargo-zigbuild" ] || [ ! -d "$tools/ziglang" ]; then
  step "Zig $zig_version and cargo-zigbuild $zigbuild_version from PyPI into $tools"
  python3 -m pip --version >/dev/null 2>&1 \
    || die "\`python3 -m pip\` is not available: install Python 3 with pip (Debian: apt-get install python3-pip)"
  mkdir -p "$tools_root"
  staging=$(mktemp -d "$tools_root/.install.XXXXXX")
  trap 'rm -rf "$staging"' EXIT
  # --target installs into a directory of our own: no virtualenv, no change to the system's
  # Python (pip skips the PEP 668 externally-managed check for --target), and the hashes in
  # the requirements file pin exactly these wheels.
  PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
    python3 -m pip install --quiet --no-input --no-deps --only-binary=:all: \
    --require-hashes --target "$staging" -r "$requirements" \
    || die "pip could not install Zig $zig_version and cargo-zigbuild $zigbuild_version (is PyPI reachable? on a host that is not x86_64 or aarch64 Linux, add its wheels' hashes to $requirements)"
  rm -rf "$tools"
  mv "$staging" "$tools"
  trap - EXIT
fi
export PATH="$tools/bin:$PATH" PYTHONPATH="$tools${PYTHONPATH:+:$PYTHONPATH}"
have_zig=$(python3 -m ziglang version 2>/dev/null) || die "\`python3 -m ziglang version\` failed with PYTHONPATH=$tools: remove $tools and run make dist again"
[ "$have_zig" = "$zig_version" ] || die "Zig in $tools is $have_zig, expected $zig_version: remove $tools and run make dist again"

# --- the build --------------------------------------------------------------------------------
# Reproducible from a commit (docs/developer/releasing.md): the commit and its time come from
# git; paths of this machine (the checkout, cargo's registry, the target directory) are
# remapped so they do not end up in panic messages. CARGO_ENCODED_RUSTFLAGS applies to the
# cross-compiled crates only, not to build scripts (cargo's --target rule).
if git -C "$repo" rev-parse --verify -q HEAD >/dev/null 2>&1; then
  export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct)}
fi
# Where cargo puts the build ($CARGO_TARGET_DIR, a config's target-dir, or target/).
target_dir=$(cargo metadata --format-version 1 --no-deps --locked \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])') \
  || die "\`cargo metadata\` failed: is Cargo.lock up to date (cargo build --locked)?"
cargo_home=${CARGO_HOME:-$HOME/.cargo}
sep=$'\x1f'
export CARGO_ENCODED_RUSTFLAGS="--remap-path-prefix=$repo=/build${sep}--remap-path-prefix=$cargo_home=/cargo${sep}--remap-path-prefix=$target_dir=/target"

step "cargo zigbuild --release --locked ${targets[*]/#/--target } (Zig $zig_version, cargo-zigbuild $zigbuild_version)"
target_args=()
for target in "${targets[@]}"; do target_args+=(--target "$target"); done
cargo zigbuild --release --locked --bin runner-k8s-hook "${target_args[@]}" \
  || die "the release build failed (above); \`cargo build --locked\` shows whether the code builds at all"

# --- the assets -------------------------------------------------------------------------------
step "release assets in target/dist/"
rm -rf "$dist"
mkdir -p "$dist"
for target in "${targets[@]}"; do
  install -m 0755 "$target_dir/$target/release/runner-k8s-hook" "$dist/$(asset_of "$target")"
done
(
  cd "$dist"
  sha256sum runner-k8s-hook-x86_64-linux runner-k8s-hook-aarch64-linux >SHA256SUMS
)
ls -l "$dist" >&2
cat "$dist/SHA256SUMS" >&2

step "static check (scripts/check-dist.sh)"
scripts/check-dist.sh "$dist"
