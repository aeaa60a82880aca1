#!/bin/sh
# POSIX sh twin of dist/index.js, for runners configured with a `.sh` hook (the runner starts it
# as `bash -e <path>` or `sh -e <path>`). Same lookup order: $RUNNER_K8S_HOOK_BINARY if set (and
# nothing else), else <this dir>/runner-k8s-hook (the documented place), else
# <this dir>/bin/runner-k8s-hook. Then `exec`, so the binary takes over this PID: the runner's
# SIGINT/SIGTERM, stdin and the exit status (or death by signal) are the binary's own.
# <this dir> is the directory of the path the runner gave (symlinks are not followed).

dir=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd) || exit 1
if [ -n "${RUNNER_K8S_HOOK_BINARY:-}" ]; then
  tried=$RUNNER_K8S_HOOK_BINARY
  set -- "$RUNNER_K8S_HOOK_BINARY" "$@"
else
  tried="$dir/runner-k8s-hook, $dir/bin/runner-k8s-hook"
  if [ -f "$dir/runner-k8s-hook" ]; then
    set -- "$dir/runner-k8s-hook" "$@"
  else
    set -- "$dir/bin/runner-k8s-hook" "$@"
  fi
fi

if [ ! -f "$1" ]; then
  echo "::error::runner-k8s-hook binary not found (tried: $tried). Install it beside this shim as $dir/runner-k8s-hook, or set RUNNER_K8S_HOOK_BINARY to its path." >&2
  exit 1
fi
if [ ! -x "$1" ]; then
  # The shell's own exec failure would exit 126 with a less helpful message.
  echo "::error::cannot start runner-k8s-hook at $1: not executable (chmod +x it)" >&2
  exit 1
fi
exec "$@"
