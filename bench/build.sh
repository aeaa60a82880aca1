#!/usr/bin/env bash
# What the build engine adds to Buildah: a cold build + push of examples/hello-action through
# `runner-k8s-hook build` (local executor: the generated script, its overlay probe, auth file and
# storage.conf, a fresh temporary store removed afterwards) against the same `buildah build` +
# `buildah push --digestfile` typed by hand. Same machine, same unprivileged user (rootless,
# chroot isolation), same storage driver, a fresh store for every run, same local registry;
# for overlay and vfs. See bench/README.md for what the numbers mean.
#
# usage: bench/build.sh [RUNS]     (default 10; as root; results in target/bench/)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
out=$PWD/target/bench
mkdir -p "$out"
BUILD_USER=${BUILD_USER:-rk8sbuild}

[ "$(id -u)" -eq 0 ] || { echo "error: run as root (it switches to the build user '$BUILD_USER')" >&2; exit 1; }
for tool in buildah docker-registry curl runuser; do
  command -v "$tool" >/dev/null || { echo "error: \`$tool\` is not on PATH (scripts/install-deps.sh test)" >&2; exit 1; }
done
id -u "$BUILD_USER" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$BUILD_USER"
grep -q "^$BUILD_USER:" /etc/subuid || usermod --add-subuids 700000-765535 "$BUILD_USER"
grep -q "^$BUILD_USER:" /etc/subgid || usermod --add-subgids 700000-765535 "$BUILD_USER"
HOME_DIR=$(getent passwd "$BUILD_USER" | cut -d: -f6)

cargo build --release --locked --quiet
HOOK=$PWD/target/release/runner-k8s-hook

WORK=$(mktemp -d /tmp/runner-k8s-hook-bench.XXXXXX)
chmod 755 "$WORK"
REGISTRY_PID=""
trap '[ -n "$REGISTRY_PID" ] && kill "$REGISTRY_PID" 2>/dev/null; rm -rf "$WORK"' EXIT

# Registry on a free port.
for _ in 1 2 3 4 5; do
  PORT=$((20000 + RANDOM % 40000))
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && continue
  mkdir -p "$WORK/registry"
  printf 'version: 0.1\nlog: {level: warn, accesslog: {disabled: true}}\nstorage:\n  filesystem: {rootdirectory: %s}\nhttp:\n  addr: 127.0.0.1:%s\n  secret: bench-only\n' \
    "$WORK/registry" "$PORT" >"$WORK/registry.yml"
  docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
  REGISTRY_PID=$!
  for _ in $(seq 1 100); do curl -fs -o /dev/null "http://127.0.0.1:$PORT/v2/" && break; sleep 0.05; done
  curl -fs -o /dev/null "http://127.0.0.1:$PORT/v2/" && break
  kill "$REGISTRY_PID" 2>/dev/null || true; REGISTRY_PID=""
done
[ -n "$REGISTRY_PID" ] || { echo "error: the registry did not start" >&2; exit 1; }
REGISTRY=127.0.0.1:$PORT
export ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILD_OPTIONS=--tls-verify=false
export ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_PUSH_OPTIONS=--tls-verify=false

# Base image, then the contexts (readable by the build user).
BB=$WORK/busybox
mkdir -p "$BB"/rootfs/{bin,etc,tmp,root,proc,sys,dev}
chmod 1777 "$BB/rootfs/tmp"
cp "$(command -v busybox)" "$BB/rootfs/bin/busybox"
for a in $("$BB/rootfs/bin/busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$BB/rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$BB/rootfs/etc/passwd"
printf 'root:x:0:\n' >"$BB/rootfs/etc/group"
printf 'FROM scratch\nCOPY rootfs/ /\nENV PATH=/usr/sbin:/usr/bin:/sbin:/bin\nCMD ["/bin/sh"]\n' >"$BB/Containerfile"
cp -r examples/hello-action "$WORK/hello-action"
chmod -R a+rX "$WORK"
"$HOOK" build --context "$BB" --file Containerfile --image "$REGISTRY/busybox:latest" --user "$BUILD_USER" >/dev/null 2>"$WORK/busybox.log" \
  || { cat "$WORK/busybox.log" >&2; exit 1; }
BASE=$REGISTRY/busybox:latest

# By hand: what a person would type as the build user, in a store removed before each run
# (not timed).
STORE=$WORK/manual-store
cat >"$WORK/by-hand.sh" <<EOF
#!/bin/sh
set -e
B="buildah --root $STORE/root --runroot $STORE/run --storage-driver \$1"
tag=\$(date +%s%N)
\$B build --tls-verify=false --build-arg BASE_IMAGE=$BASE --tag $REGISTRY/bench/by-hand:\$tag $WORK/hello-action >/dev/null 2>&1
\$B push --tls-verify=false --digestfile $STORE/digest $REGISTRY/bench/by-hand:\$tag >/dev/null 2>&1
EOF
chmod 755 "$WORK/by-hand.sh"
as_user="runuser -u $BUILD_USER -- env -i HOME=$HOME_DIR PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin BUILDAH_ISOLATION=chroot"

# Interleaved runs (ours, by hand, ours, ...) rather than hyperfine's one-command-after-another:
# on a machine with other work the load drifts, and alternating gives both the same drift.
ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
minmax() { sort -n | awk 'NR == 1 { min = $1 } { max = $1 } END { printf "%.2f to %.2f", min / 1000, max / 1000 }'; }
rows=()
for driver in overlay vfs; do
  echo "== $driver: 1 warm-up + $runs interleaved runs each" >&2
  ours=(); hand=()
  for i in $(seq 0 "$runs"); do
    t0=$(ms)
    ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_STORAGE_DRIVER=$driver "$HOOK" build --context "$WORK/hello-action" \
      --image "$REGISTRY/bench/ours" --build-arg "BASE_IMAGE=$BASE" --user "$BUILD_USER" >/dev/null 2>"$WORK/ours.log" \
      || { cat "$WORK/ours.log" >&2; exit 1; }
    t1=$(ms)
    rm -rf "$STORE" && mkdir -p "$STORE" && chown "$BUILD_USER:" "$STORE"   # not timed
    t2=$(ms)
    $as_user "$WORK/by-hand.sh" "$driver" || { echo "error: the by-hand build failed" >&2; exit 1; }
    t3=$(ms)
    [ "$i" -eq 0 ] && continue   # warm-up: page cache, first pull of the base into the registry's cache
    ours+=($((t1 - t0))); hand+=($((t3 - t2)))
    printf '  run %2d: ours %5d ms, by hand %5d ms\n' "$i" $((t1 - t0)) $((t3 - t2)) >&2
  done
  m_ours=$(printf '%s\n' "${ours[@]}" | median)
  m_hand=$(printf '%s\n' "${hand[@]}" | median)
  printf '%s\n' "${ours[@]}" >"$out/build-$driver-ours.txt"
  printf '%s\n' "${hand[@]}" >"$out/build-$driver-by-hand.txt"
  rows+=("$(awk -v d="$driver" -v o="$m_ours" -v h="$m_hand" -v ro="$(printf '%s\n' "${ours[@]}" | minmax)" -v rh="$(printf '%s\n' "${hand[@]}" | minmax)" \
    'BEGIN { printf "| %s | %.2f s [%s] | %.2f s [%s] | %.2f | %+d ms |", d, o / 1000, ro, h / 1000, rh, o / h, o - h }')")
done

load=$(cut -d' ' -f1-3 /proc/loadavg)
echo >&2
echo "| driver | runner-k8s-hook build: median [min to max] | by hand | ratio | difference |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "$(date +%F), $(nproc) cores, kernel $(uname -r), $(buildah --version | cut -d' ' -f1-3), $runs runs each after 1 warm-up, load at the end $load"
