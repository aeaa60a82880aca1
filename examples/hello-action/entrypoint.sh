#!/bin/sh
# The action's entrypoint. The runner passes `with: who-to-greet` as the first argument
# (`runs.args` in action.yml); its environment name, `INPUT_WHO-TO-GREET`, is not a shell
# variable, so `INPUT_WHO_TO_GREET` is only a fallback for running the image by hand.
set -eu
who=${1:-${INPUT_WHO_TO_GREET:-world}}
greeting="Hello, $who! ($(cat /usr/share/hello/build-info))"
echo "$greeting"
if [ -n "${GITHUB_OUTPUT:-}" ]; then
  echo "greeting=$greeting" >>"$GITHUB_OUTPUT"
fi
