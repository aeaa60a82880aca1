// Node shim for runner-k8s-hook. The runner starts `.js` hooks with its bundled node (20 or 24),
// and the ARC chart hard-codes /home/runner/k8s/index.js and /home/runner/k8s-novolume/index.js,
// so this file must work from any directory. It only finds the Rust binary and runs it.
// Plain CommonJS, no dependencies. `dist/index.sh` is the POSIX sh twin; keep the two in step.
//
// Lookup: $RUNNER_K8S_HOOK_BINARY if set (and nothing else: a wrong override is an error), else
// <this dir>/runner-k8s-hook (the documented place), else <this dir>/bin/runner-k8s-hook.
"use strict";
const { spawn } = require("child_process");
const fs = require("fs");
const os = require("os");
const path = require("path");

const ENV = "RUNNER_K8S_HOOK_BINARY";
const override = process.env[ENV];
const candidates = override
  ? [override]
  : [path.join(__dirname, "runner-k8s-hook"), path.join(__dirname, "bin", "runner-k8s-hook")];
const isFile = (p) => {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false; // ENOENT, ENOTDIR, EACCES on a parent: not usable here
  }
};
const binary = candidates.find(isFile);

if (!binary) {
  // One line: the runner turns `::error::` on stdout or stderr into an annotation.
  console.error(
    `::error::runner-k8s-hook binary not found (tried: ${candidates.join(", ")}). ` +
      `Install it beside this shim as ${path.join(__dirname, "runner-k8s-hook")}, ` +
      `or set ${ENV} to its path.`,
  );
  process.exit(1);
}

// Not spawnSync: node must stay free to forward signals. The runner sends SIGINT, then SIGTERM,
// to this PID only, so the child never sees them unless we pass them on. Handlers go in before
// the spawn so no signal falls in between; installing them also stops node from dying of them.
let child;
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(signal, () => child && child.kill(signal));
}

// stdin is inherited as a file descriptor: the request line reaches the binary byte for byte.
child = spawn(binary, process.argv.slice(2), { stdio: "inherit" });

child.on("error", (err) => {
  // EACCES (not executable), ENOEXEC (wrong architecture), ...: the child never ran.
  console.error(`::error::cannot start runner-k8s-hook at ${binary}: ${err.message}`);
  process.exit(1);
});

child.on("exit", (code, signal) => {
  // A child killed by a signal has code null: report 128+N like a shell, never 0.
  process.exit(signal ? 128 + (os.constants.signals[signal] || 0) : code);
});
