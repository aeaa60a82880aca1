#!/usr/bin/env bash
# make demo: the headline feature on this machine, no cluster needed. Builds the Dockerfile action
# in examples/hello-action rootless (an unprivileged user with subordinate ids, Buildah with chroot
# isolation) through `runner-k8s-hook build` and its local executor, which runs the same script a
# build pod runs in the cluster; pushes it to a registry on 127.0.0.1 under a random tag; checks
# the digest with the registry; runs the image from the reference pinned by digest.
#
# With a reachable cluster (KUBECONFIG) and a registry it can push to and pull from
# (ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_HOST, or its _PUSH/_PULL pair), it then builds the
# same action in the cluster: `runner-k8s-hook build --executor pod` runs the same script in a
# rootless build pod (what the hook does for a Dockerfile action), pushes under a random tag,
# and runs the image from the pull host pinned by digest (with kubectl, when installed).
#
# usage: scripts/demo.sh          (as root, or as a user with sudo and a subuid range)
#   in the cluster, also: ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_SECRET_NAME (push/pull
#   credentials), ACTIONS_RUNNER_KUBERNETES_NAMESPACE, DEMO_BASE_IMAGE (default: the
#   Dockerfile's, docker.io/library/busybox:1.36), and the hook's other variables
#   (docs/user/configuration.md).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_USER=${BUILD_USER:-rk8sbuild}
WHO=${WHO:-Mona Lisa}
PUSH_HOST=${ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_HOST_PUSH:-${ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_HOST:-}}
PULL_HOST=${ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_HOST_PULL:-${ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_HOST:-$PUSH_HOST}}
IN_CLUSTER=""
[ -n "${KUBECONFIG:-}" ] && [ -n "$PUSH_HOST" ] && IN_CLUSTER=1
# The operator's own build options, for the cluster part (the local registry needs others).
CLUSTER_BUILD_OPTIONS=${ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILD_OPTIONS:-}
CLUSTER_PUSH_OPTIONS=${ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_PUSH_OPTIONS:-}
steps=7
[ -z "$IN_CLUSTER" ] || steps=9
step=0
say() { step=$((step + 1)); printf '\n\033[1m==> %d/%d %s\033[0m\n' "$step" "$steps" "$*" >&2; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

say "installing what the demo needs (apt packages once; Rust components)"
scripts/install-deps.sh demo

say "building runner-k8s-hook (release)"
cargo build --release --locked --quiet
HOOK=$PWD/target/release/runner-k8s-hook

WORK=$(mktemp -d /tmp/runner-k8s-hook-demo.XXXXXX)
chmod 755 "$WORK"
REGISTRY_PID=""
DEMO_POD=""
cleanup() {
  local rc=$?
  set +e
  [ -n "$REGISTRY_PID" ] && { kill "$REGISTRY_PID" 2>/dev/null; wait "$REGISTRY_PID" 2>/dev/null; }
  [ -z "$DEMO_POD" ] || kubectl ${ACTIONS_RUNNER_KUBERNETES_NAMESPACE:+--namespace "$ACTIONS_RUNNER_KUBERNETES_NAMESPACE"} delete pod "$DEMO_POD" --wait=false >/dev/null 2>&1
  if [ "$(id -u)" -eq 0 ]; then rm -rf "$WORK"; else buildah unshare rm -rf "$WORK" 2>/dev/null || rm -rf "$WORK"; fi
  [ $rc -eq 0 ] || printf 'demo: failed (exit %d); registry stopped, %s removed\n' "$rc" "$WORK" >&2
}
trap cleanup EXIT

# Who builds: as root, an unprivileged build user (created once, with subordinate ids: without
# them RUN steps fail); otherwise the current user, who then needs a range in /etc/subuid.
if [ "$(id -u)" -eq 0 ]; then
  id -u "$BUILD_USER" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$BUILD_USER"
  grep -q "^$BUILD_USER:" /etc/subuid || usermod --add-subuids 700000-765535 "$BUILD_USER"
  grep -q "^$BUILD_USER:" /etc/subgid || usermod --add-subgids 700000-765535 "$BUILD_USER"
  as_user=(--user "$BUILD_USER")
  runas=(runuser -u "$BUILD_USER" -- env -i HOME="$(getent passwd "$BUILD_USER" | cut -d: -f6)" PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin BUILDAH_ISOLATION=chroot)
  builder=$BUILD_USER
else
  grep -q "^$(id -un):" /etc/subuid || die "$(id -un) has no range in /etc/subuid; run as root (sudo make demo) or add one with usermod --add-subuids"
  as_user=()
  runas=(env BUILDAH_ISOLATION=chroot)
  builder=$(id -un)
fi

say "starting a registry on 127.0.0.1 (Debian's docker-registry, plain HTTP, a free port)"
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
mkdir -p "$WORK/registry"
for _ in 1 2 3 4 5; do
  PORT=$((20000 + RANDOM % 40000))
  port_free "$PORT" || continue
  cat >"$WORK/registry.yml" <<EOF
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $WORK/registry}
http:
  addr: 127.0.0.1:$PORT
  secret: demo-only
EOF
  docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
  REGISTRY_PID=$!
  for _ in $(seq 1 100); do
    curl -fs -o /dev/null "http://127.0.0.1:$PORT/v2/" && break
    kill -0 "$REGISTRY_PID" 2>/dev/null || break
    sleep 0.05
  done
  curl -fs -o /dev/null "http://127.0.0.1:$PORT/v2/" && break
  kill "$REGISTRY_PID" 2>/dev/null || true; REGISTRY_PID=""
done
[ -n "$REGISTRY_PID" ] || { cat "$WORK/registry.log" >&2; die "the registry did not start"; }
REGISTRY=127.0.0.1:$PORT
echo "registry: http://$REGISTRY (pid $REGISTRY_PID)" >&2

# The registry speaks plain HTTP, which Buildah refuses unless told: the same allow-listed
# options an operator sets for the hook.
export ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILD_OPTIONS=--tls-verify=false
export ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_PUSH_OPTIONS=--tls-verify=false

say "base image $REGISTRY/busybox:latest from busybox-static (no internet needed)"
BB=$WORK/busybox
mkdir -p "$BB"/rootfs/{bin,etc,tmp,root,proc,sys,dev}
chmod 1777 "$BB/rootfs/tmp"
cp "$(command -v busybox)" "$BB/rootfs/bin/busybox"
for applet in $("$BB/rootfs/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$BB/rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$BB/rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$BB/rootfs/etc/group"
printf 'FROM scratch\nCOPY rootfs/ /\nENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nCMD ["/bin/sh"]\n' >"$BB/Containerfile"
chmod -R a+rX "$BB"
"$HOOK" build --context "$BB" --file Containerfile --image "$REGISTRY/busybox:latest" "${as_user[@]}" >/dev/null 2>"$WORK/busybox.log" \
  || { cat "$WORK/busybox.log" >&2; die "the base image did not build"; }
echo "pushed $REGISTRY/busybox:latest" >&2

say "building examples/hello-action rootless as '$builder': runner-k8s-hook build --executor local"
# A copy the build user can read (a checkout under /root is not).
cp -r examples/hello-action "$WORK/hello-action"
chmod -R a+rX "$WORK/hello-action"
echo "\$ runner-k8s-hook build --context examples/hello-action --image $REGISTRY/octo-org/hello-action --build-arg BASE_IMAGE=$REGISTRY/busybox:latest ${as_user[*]}" >&2
started=$(date +%s.%N)
PINNED=$("$HOOK" build --executor local --context "$WORK/hello-action" \
  --image "$REGISTRY/octo-org/hello-action" \
  --build-arg "BASE_IMAGE=$REGISTRY/busybox:latest" "${as_user[@]}")
elapsed=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')

say "checking the digest with the registry (GET manifest, Accept: OCI + Docker v2)"
image=${PINNED%@*}
digest=${PINNED##*@}
repo_tag=${image#"$REGISTRY"/}
repo=${repo_tag%:*}
tag=${repo_tag##*:}
served=$(curl -fsS -o /dev/null -D - \
  -H 'Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' \
  "http://$REGISTRY/v2/$repo/manifests/$tag" | awk -F': ' 'tolower($1) == "docker-content-digest" { print $2 }' | tr -d '\r')
[ "$served" = "$digest" ] || die "the registry serves $served for $repo:$tag, the build reported $digest"
echo "registry: $repo:$tag is $served" >&2

say "running the image from its pinned reference (rootless: buildah from + buildah run, chroot)"
RUN=$WORK/run
mkdir -p "$RUN"
[ "$(id -u)" -ne 0 ] || chown "$BUILD_USER:" "$RUN"
B=("${runas[@]}" buildah --root "$RUN/root" --runroot "$RUN/run" --storage-driver overlay)
ctr=$("${B[@]}" from -q --tls-verify=false "$PINNED")
OUTPUT=$("${B[@]}" run "$ctr" -- sh -c 'GITHUB_OUTPUT=/tmp/github_output /entrypoint.sh "$1" && cat /tmp/github_output' sh "$WHO")
"${B[@]}" rm "$ctr" >/dev/null

printf '\n\033[1m%s\033[0m\n' "Dockerfile action built rootless, pushed, and run from its digest"
printf '  %-16s %s\n' "built by" "$builder (uid $(id -u "$builder")), no root, no daemon, ${elapsed} s for build + push" \
  "pull reference" "$PINNED" \
  "action output" "$(printf '%s\n' "$OUTPUT" | head -n 1)" \
  "GITHUB_OUTPUT" "$(printf '%s\n' "$OUTPUT" | sed -n 2p)"
echo
if [ -z "$IN_CLUSTER" ]; then
  if [ -n "${KUBECONFIG:-}" ]; then
    echo "KUBECONFIG is set but no registry is: set ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_HOST (a registry the cluster can push to and pull from) to build in the cluster too."
  else
    echo "With a cluster (KUBECONFIG) and ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_HOST, the demo also builds in a rootless build pod: see docs/user/dockerfile-actions.md."
  fi
  echo "The registry is stopped and $WORK removed on exit."
  exit 0
fi

say "in the cluster: runner-k8s-hook build --executor pod (a rootless build pod, as for a Dockerfile action)"
# The cluster's registry, not the local one: the operator's options, or none.
if [ -n "$CLUSTER_BUILD_OPTIONS" ]; then export ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILD_OPTIONS=$CLUSTER_BUILD_OPTIONS; else unset ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILD_OPTIONS; fi
if [ -n "$CLUSTER_PUSH_OPTIONS" ]; then export ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_PUSH_OPTIONS=$CLUSTER_PUSH_OPTIONS; else unset ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_PUSH_OPTIONS; fi
base=()
[ -z "${DEMO_BASE_IMAGE:-}" ] || base=(--build-arg "BASE_IMAGE=$DEMO_BASE_IMAGE")
echo "\$ runner-k8s-hook build --executor pod --context examples/hello-action --image $PUSH_HOST/octo-org/hello-action ${base[*]}" >&2
started=$(date +%s.%N)
CLUSTER_PINNED=$("$HOOK" build --executor pod --context examples/hello-action \
  --image "$PUSH_HOST/octo-org/hello-action" "${base[@]}") \
  || die "the build in the cluster failed (above: the build log and what to do)"
cluster_elapsed=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
PULL_REF=$PULL_HOST/${CLUSTER_PINNED#"$PUSH_HOST"/}

say "running the image in the cluster from the pull host, pinned by digest"
CLUSTER_OUTPUT="(not run: kubectl is not installed; run $PULL_REF with the argument \"$WHO\")"
if command -v kubectl >/dev/null 2>&1; then
  ns=()
  [ -z "${ACTIONS_RUNNER_KUBERNETES_NAMESPACE:-}" ] || ns=(--namespace "$ACTIONS_RUNNER_KUBERNETES_NAMESPACE")
  overrides=()
  secret=${ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_SECRET_NAME:-}
  [ -z "$secret" ] || overrides=(--overrides "{\"apiVersion\":\"v1\",\"spec\":{\"imagePullSecrets\":[{\"name\":\"$secret\"}]}}")
  DEMO_POD=runner-k8s-hook-demo-$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
  echo "\$ kubectl run $DEMO_POD --restart=Never --image $PULL_REF -- \"$WHO\"" >&2
  kubectl "${ns[@]}" run "$DEMO_POD" --restart=Never --image "$PULL_REF" "${overrides[@]}" -- "$WHO" >/dev/null \
    || die "kubectl could not create the pod $DEMO_POD (see above)"
  # Wait for the pod to end; fail at once when its image cannot be pulled.
  phase=""
  for _ in $(seq 1 300); do
    phase=$(kubectl "${ns[@]}" get pod "$DEMO_POD" -o 'jsonpath={.status.phase}' || true)
    case "$phase" in Succeeded | Failed) break ;; esac
    waiting=$(kubectl "${ns[@]}" get pod "$DEMO_POD" -o 'jsonpath={.status.containerStatuses[0].state.waiting.reason}' || true)
    case "$waiting" in
      ErrImagePull | ImagePullBackOff | InvalidImageName | CreateContainerConfigError)
        die "the pod $DEMO_POD cannot start: $waiting (can the nodes pull $PULL_HOST? is the registry Secret right?)" ;;
    esac
    sleep 1
  done
  case "$phase" in Succeeded | Failed) ;; *) die "the pod $DEMO_POD did not finish within 300 s (phase: ${phase:-unknown})" ;; esac
  CLUSTER_OUTPUT=$(kubectl "${ns[@]}" logs "$DEMO_POD")
  [ "$phase" = Succeeded ] || die "the pod $DEMO_POD failed: $CLUSTER_OUTPUT"
fi

printf '\n\033[1m%s\033[0m\n' "Dockerfile action built in a rootless build pod, pushed, and run from its digest"
printf '  %-16s %s\n' "build + push" "${cluster_elapsed} s, in the cluster" \
  "pushed" "$CLUSTER_PINNED" \
  "pull reference" "$PULL_REF" \
  "action output" "$(printf '%s\n' "$CLUSTER_OUTPUT" | head -n 1)"
echo
echo "The registry is stopped and $WORK removed on exit."
