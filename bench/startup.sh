#!/usr/bin/env bash
# Start-up cost of one hook invocation: wall time (hyperfine) and peak RSS (GNU time), for the
# release binary alone and through the node shim (dist/index.js). Each run parses a real request,
# reads the config and fails for lack of a cluster, which is the fixed cost every command pays
# before it talks to the API server. See bench/README.md for what the numbers mean.
#
# usage: bench/startup.sh [RSS_RUNS]     (default 30; results in target/bench/)
set -euo pipefail

cd "$(dirname "$0")/.."
rss_runs=${1:-30}
out=target/bench
mkdir -p "$out"

for tool in hyperfine node; do
  command -v "$tool" >/dev/null || { echo "error: \`$tool\` is not on PATH (scripts/install-deps.sh test)" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "error: /usr/bin/time is missing: apt-get install -y time" >&2; exit 1; }

cargo build --release --quiet
bin=$PWD/target/release/runner-k8s-hook

request=tests/fixtures/requests/run_script_step.json
if [ ! -f "$request" ]; then
  request=$out/run_script_step.json
  echo '{"command":"run_script_step","responseFile":null,"args":{"entryPointArgs":["-e","/__w/_temp/x.sh"],"entryPoint":"sh","environmentVariables":{},"prependPath":[],"workingDirectory":"/__w/r/r"},"state":{"jobPod":"x-workflow"}}' >"$request"
  echo "note: tests/fixtures/requests/run_script_step.json is missing; using a one-line stand-in" >&2
fi

# The runner creates the response file (empty) before it starts the hook; do the same, so the run
# gets past the request and fails where it should: reaching the cluster.
: >"$out/response.json"
node -e 'const fs = require("fs"); const [src, dst, resp] = process.argv.slice(1);
  const r = JSON.parse(fs.readFileSync(src, "utf8")); r.responseFile = resp;
  fs.writeFileSync(dst, JSON.stringify(r) + "\n");' "$request" "$out/request.json" "$PWD/$out/response.json"
request=$out/request.json

# No cluster anywhere: a kubeconfig that does not exist and no in-cluster service variables.
unset KUBERNETES_SERVICE_HOST KUBERNETES_SERVICE_PORT RUNNER_K8S_HOOK_BINARY
export KUBECONFIG=/nonexistent ACTIONS_RUNNER_POD_NAME=bench-runner
export RUNNER_K8S_HOOK_BINARY=$bin # only the shim reads it; an explicit path, not a lookup

# Sanity: show where it stops (it must fail on the cluster, not on the request or the config).
set +e
"$bin" <"$request" >"$out/sample.out" 2>"$out/sample.err"
code=$?
set -e
echo "binary exit code $code; stderr (first lines):"
head -n 5 "$out/sample.err" | sed 's/^/  | /'

# Wall time. hyperfine 1.15 has no --input, so stdin comes through its shell, whose own start-up
# hyperfine measures and subtracts.
hyperfine --warmup 3 --runs 50 -i --export-json "$out/startup.json" \
  -n binary "'$bin' < '$request'" \
  -n "node shim" "node dist/index.js < '$request'" \
  -n "bare node" "node -e 0"

# Cross-check without hyperfine's shell correction (its runs are near its 5 ms resolution):
# a plain bash loop, fork+exec included, no subtraction.
loop() {
  local n=200 start end
  start=$(date +%s%N)
  for _ in $(seq $n); do "$@" <"$request" >/dev/null 2>&1 || true; done
  end=$(date +%s%N)
  awk -v t=$((end - start)) -v n=$n 'BEGIN { printf "%.1f ms\n", t / n / 1e6 }'
}
loop_bin=$(loop "$bin")
echo "bash loop, binary: $loop_bin per run"

# Peak RSS (max resident set, KiB) over repeated runs. For the shim, GNU time reports the largest
# single process among node and the binary it waited for, not their sum.
rss() {
  local file=$out/rss-$1.txt
  : >"$file"
  shift
  for _ in $(seq "$rss_runs"); do
    /usr/bin/time -f %M -a -o "$file" "$@" <"$request" >/dev/null 2>&1 || true
  done
  # GNU time adds "Command exited with non-zero status 1" lines: keep the numbers only.
  grep -E '^[0-9]+$' "$file" | sort -n | awk '{ v[NR] = $1 } END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "median %.1f MiB, max %.1f MiB (%d runs)\n", m / 1024, v[NR] / 1024, NR }'
}
rss_bin=$(rss binary "$bin")
rss_shim=$(rss shim node dist/index.js)
echo "peak RSS, binary:    $rss_bin"
echo "peak RSS, node shim: $rss_shim"

# One row for the README's "last run" table.
wall() { node -e 'const r = require(process.argv[1]).results[+process.argv[2]];
  console.log(`${(r.mean * 1e3).toFixed(1)} ± ${(r.stddev * 1e3).toFixed(1)} ms (median ${(r.median * 1e3).toFixed(1)})`)' "$PWD/$out/startup.json" "$1"; }
echo
echo "| date | machine | binary wall | binary wall (loop) | shim wall | bare node wall | binary RSS | shim RSS |"
echo "| $(date -u +%F) | $(nproc) cores, $(uname -r), load $(cut -d' ' -f1 /proc/loadavg) | $(wall 0) | $loop_bin | $(wall 1) | $(wall 2) | $rss_bin | $rss_shim |"
