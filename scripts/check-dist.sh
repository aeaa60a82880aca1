#!/usr/bin/env bash
# The static check of the release binaries (run by `make dist`, or alone): each of
# runner-k8s-hook-x86_64-linux and runner-k8s-hook-aarch64-linux in DIR (default target/dist)
#   - is listed in DIR/SHA256SUMS with its hash (`sha256sum -c`, as a user checks a download);
#   - is a 64-bit ELF executable for its machine, statically linked: no program interpreter
#     (INTERP) and no shared library (NEEDED), read with readelf and file;
#   - runs in an empty root, alone in a directory with nothing else (bubblewrap: no /lib, no
#     /etc, no /proc, no environment): `--version` prints the exact version line for its
#     target, and the hook without a request fails with its own error, not a loader's. The
#     binary for this machine runs natively, the other one under qemu-user-static
#     (qemu-<arch>-static, itself static, placed in the same empty root).
# Needs bubblewrap, file, binutils and qemu-user-static (scripts/install-deps.sh dist).
# docs/developer/releasing.md
#
# usage: scripts/check-dist.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
dist=$(realpath "${1:-target/dist}")

# Each `ok` is one passed check; the last line is the tally (`check-dist: N passed, N failed`),
# which CI's log reader takes as a test run's closing line.
passed=0
fail() {
  echo "check-dist: FAILED: $*" >&2
  echo "check-dist: $passed passed, 1 failed"
  exit 1
}
ok() {
  echo "check-dist: ok: $*" >&2
  passed=$((passed + 1))
}

for tool in bwrap file readelf sha256sum; do
  command -v "$tool" >/dev/null || fail "\`$tool\` is not installed (scripts/install-deps.sh dist installs it)"
done
[ -f "$dist/SHA256SUMS" ] || fail "$dist/SHA256SUMS is missing: run make dist"

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
[ -n "$version" ] || fail "no version in Cargo.toml"
# The commit build.rs put in the binaries: HEAD's first 7 digits in this git checkout, else
# RUNNER_K8S_HOOK_COMMIT, else `unknown`.
commit=""
if [ "$(git rev-parse --show-toplevel 2>/dev/null)" = "$PWD" ]; then
  commit=$(git rev-parse --verify -q 'HEAD^{commit}' | cut -c1-7) || commit=""
fi
commit=${commit:-${RUNNER_K8S_HOOK_COMMIT:-unknown}}

(cd "$dist" && sha256sum --check --strict SHA256SUMS >&2) || fail "SHA256SUMS does not match the binaries in $dist"
for asset in runner-k8s-hook-x86_64-linux runner-k8s-hook-aarch64-linux; do
  grep -q "  $asset\$" "$dist/SHA256SUMS" || fail "SHA256SUMS does not list $asset"
done
ok "SHA256SUMS lists and matches both binaries"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# Run `root/<command...>` in an empty root that holds only what root/ holds: nothing of the
# host (no /lib, /usr, /etc, /proc, /dev), no environment, no network. Prints stdout; stderr
# goes to $scratch/stderr; returns the exit code.
run_empty_root() {
  local root=$1
  shift
  env -i bwrap --bind "$root" / --chdir / --unshare-all --die-with-parent --new-session \
    "$@" 2>"$scratch/stderr" </dev/null
}

check() {
  local asset=$1 arch=$2 machine=$3 target=$4
  local binary=$dist/$asset
  [ -f "$binary" ] || fail "$binary is missing: run make dist"
  [ -x "$binary" ] || fail "$binary is not executable"

  local header
  header=$(readelf --file-header --wide "$binary") || fail "readelf cannot read $asset: not an ELF file"
  grep -Eq '^ *Class: +ELF64$' <<<"$header" || fail "$asset is not a 64-bit ELF file"
  grep -Eq "^ *Machine: +$machine\$" <<<"$header" \
    || fail "$asset is for $(sed -n 's/^ *Machine: *//p' <<<"$header"), not $machine"
  grep -Eq '^ *Type: +(EXEC|DYN) ' <<<"$header" || fail "$asset is not an executable"
  if readelf --program-headers --wide "$binary" | grep -q 'INTERP'; then
    fail "$asset has a program interpreter (INTERP): it is dynamically linked, not static"
  fi
  local needed
  needed=$(readelf --dynamic --wide "$binary" | grep '(NEEDED)' || true)
  [ -z "$needed" ] || fail "$asset needs shared libraries:"$'\n'"$needed"
  local description
  description=$(file --brief "$binary")
  grep -Eq 'static(-pie)? linked|statically linked' <<<"$description" \
    || fail "file(1) does not call $asset statically linked: $description"
  ok "$asset: $(cut -d, -f1-2 <<<"$description"), no INTERP, no NEEDED ($(stat -c %s "$binary") bytes)"

  # The empty root: the binary, and for another machine's binary the (static) emulator.
  local root=$scratch/root-$arch
  mkdir "$root"
  cp "$binary" "$root/runner-k8s-hook"
  local run=(/runner-k8s-hook) how="natively"
  if [ "$arch" != "$(uname -m)" ]; then
    local qemu
    qemu=$(command -v "qemu-$arch-static") \
      || fail "qemu-$arch-static is not installed, so $asset cannot be run on this $(uname -m) machine (apt-get install qemu-user-static; scripts/install-deps.sh dist does)"
    if readelf --program-headers "$qemu" | grep -q INTERP; then
      fail "$qemu is dynamically linked; it cannot run in an empty root"
    fi
    cp "$qemu" "$root/qemu"
    run=(/qemu /runner-k8s-hook)
    how="under $(basename "$qemu")"
  fi

  local expected="runner-k8s-hook $version (commit $commit, $target)" got status=0
  got=$(run_empty_root "$root" "${run[@]}" --version) || status=$?
  [ "$status" -eq 0 ] || fail "$asset --version in an empty root ($how) exited $status: $(cat "$scratch/stderr")"
  [ "$got" = "$expected" ] || fail "$asset --version printed \`$got\`, expected \`$expected\` (built from another commit or version? run make dist again)"
  ok "$asset --version in an empty root ($how): $got"

  # The hook itself, without a request: its own error and exit code 1, no loader or panic.
  status=0
  run_empty_root "$root" "${run[@]}" >/dev/null || status=$?
  local first
  first=$(head -n1 "$scratch/stderr")
  if [ "$status" -ne 1 ] || [ "$first" != "::error::no request on stdin: the runner writes one JSON line and closes stdin" ]; then
    fail "$asset as a hook with no request (in an empty root, $how) exited $status with: $(cat "$scratch/stderr")"
  fi
  ok "$asset as a hook with no request (in an empty root, $how): exit 1, $first"
}

check runner-k8s-hook-x86_64-linux x86_64 'Advanced Micro Devices X86-64' x86_64-unknown-linux-musl
check runner-k8s-hook-aarch64-linux aarch64 'AArch64' aarch64-unknown-linux-musl
echo "check-dist: both release binaries are static and run with no libraries" >&2
echo "check-dist: $passed passed, 0 failed"
