#!/usr/bin/env bash
# Waiting for a pod by polling (ARC's chart Role has no `watch` on pods) against waiting by watch:
# `prepare_job` through the release binary against the fake API server, alternating the two,
# WAIT_BENCH_RUNS times each (default 10). Prints the median of each and their difference.
set -euo pipefail
cd "$(dirname "$0")/.."
export WAIT_BENCH_RUNS=${1:-10}
scripts/install-deps.sh test
out=target/bench/wait.txt
mkdir -p target/bench
cargo test --release --quiet --test it wait_bench:: -- --ignored --nocapture 2>/dev/null \
  | grep '^WAIT-BENCH' | tee "$out"
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
field() { grep "mode=$1 " "$out" | sed -n 's/.* prepare_job_ms=\([0-9.]*\).*/\1/p' | median; }
poll=$(field poll)
watch=$(field watch)
echo "median of $WAIT_BENCH_RUNS: prepare_job by watch ${watch} ms, by polling ${poll} ms, polling adds $(awk -v p="$poll" -v w="$watch" 'BEGIN {printf "%.0f", p - w}') ms"
