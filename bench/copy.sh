#!/usr/bin/env bash
# Copy-mode throughput: 10,000 files / 200 MB into a pod and back over pods/exec (the fake API
# server on 127.0.0.1, the real kube client and our WebSocket exec loop), verified by content.
# Runs the ignored benchmark `copy_bench::copy_mode_throughput` in release mode N times (default 3)
# and prints the median of each figure.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
scripts/install-deps.sh test
out=target/bench/copy.txt
mkdir -p target/bench
: > "$out"
for i in $(seq 1 "$runs"); do
  cargo test --release --quiet --test it copy_bench::copy_mode_throughput -- --ignored --nocapture 2>/dev/null \
    | grep '^COPY-BENCH' | tee -a "$out"
done
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" "$out" | median; }
echo "median of $runs: copy in $(field copy_in_s) s ($(field in_mib_s) MiB/s), copy out $(field copy_out_s) s ($(field out_mib_s) MiB/s)"
