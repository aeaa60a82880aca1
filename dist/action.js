// JavaScript action (action.yml) for jobs that run on the runner itself: builds a Dockerfile with
// `runner-k8s-hook build` (rootless Buildah, the same script as the hook's build pods; on the
// runner, or in a build pod with `executor: pod`), pushes it, and sets the outputs `image`
// (reference pinned by digest) and `digest`.
// Plain CommonJS, no dependencies, like dist/index.js; the binary is found the same way:
// $RUNNER_K8S_HOOK_BINARY if set (and nothing else), else <this dir>/runner-k8s-hook, else
// <this dir>/bin/runner-k8s-hook.
//
// Inputs arrive as the runner passes them: INPUT_<NAME> with the name upper-cased, spaces turned
// into `_` and hyphens kept (INPUT_BUILD-ARGS), defaults from action.yml already applied.
"use strict";
const { spawn } = require("child_process");
const crypto = require("crypto");
const fs = require("fs");
const os = require("os");
const path = require("path");

const ENV = "RUNNER_K8S_HOOK_BINARY";
const DIGEST = /^sha256:[0-9a-f]{64}$/;

// Workflow-command data escaping (@actions/core `escapeData`): %, CR and LF would end or corrupt
// the command.
const escapeData = (s) => String(s).replace(/%/g, "%25").replace(/\r/g, "%0D").replace(/\n/g, "%0A");

const fail = (message) => {
  console.log(`::error::${escapeData(message)}`);
  process.exit(1);
};

// @actions/core getInput: trimmed, "" when unset.
const input = (name, fallback) => {
  const value = (process.env[`INPUT_${name.replace(/ /g, "_").toUpperCase()}`] || "").trim();
  return value === "" ? fallback : value;
};

// @actions/core getBooleanInput: the YAML 1.2 core schema's booleans only.
const booleanInput = (name, fallback) => {
  const value = input(name, fallback);
  if (["true", "True", "TRUE"].includes(value)) return true;
  if (["false", "False", "FALSE"].includes(value)) return false;
  fail(`Input does not meet YAML 1.2 "Core Schema" specification: ${name}\n` +
    "Support boolean input list: `true | True | TRUE | false | False | FALSE`");
};

// One `NAME=value` per line; blank lines are skipped, each line is trimmed, the value keeps
// everything after the first `=` (spaces and further `=` included).
const buildArgs = (text) => {
  const args = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === "") return;
    const eq = line.indexOf("=");
    if (eq <= 0) {
      fail(`build-args line ${index + 1} is not NAME=value: ${line}`);
    }
    args.push("--build-arg", line);
  });
  return args;
};

const image = input("image", "");
if (image === "") fail("Input required and not supplied: image");
const argv = [
  "build",
  "--context", input("context", "."),
  "--file", input("dockerfile", "Dockerfile"),
  "--image", image,
  ...buildArgs(input("build-args", "")),
];
if (!booleanInput("push", "true")) argv.push("--no-push");
const executor = input("executor", "local");
if (!["local", "pod"].includes(executor)) {
  fail(`Input executor must be \`local\` or \`pod\`, not: ${executor}`);
}
if (executor !== "local") argv.push("--executor", executor);

const override = process.env[ENV];
const candidates = override
  ? [override]
  : [path.join(__dirname, "runner-k8s-hook"), path.join(__dirname, "bin", "runner-k8s-hook")];
const isFile = (p) => {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
};
const binary = candidates.find(isFile);
if (!binary) {
  fail(
    `runner-k8s-hook binary not found (tried: ${candidates.join(", ")}). ` +
      `Install it beside this action as ${path.join(__dirname, "runner-k8s-hook")}, ` +
      `or set ${ENV} to its path.`,
  );
}

// The runner's file-command format, heredoc form, so no value can inject another output.
const setOutputs = (outputs) => {
  const file = process.env.GITHUB_OUTPUT;
  if (!file) {
    console.log("::warning::GITHUB_OUTPUT is not set: outputs are only printed");
    for (const [name, value] of Object.entries(outputs)) console.log(`${name}=${value}`);
    return;
  }
  let text = "";
  for (const [name, value] of Object.entries(outputs)) {
    const delimiter = `ghadelimiter_${crypto.randomUUID()}`;
    if (name.includes(delimiter) || value.includes(delimiter)) {
      fail(`unexpected input: the output ${name} contains the delimiter ${delimiter}`);
    }
    text += `${name}<<${delimiter}${os.EOL}${value}${os.EOL}${delimiter}${os.EOL}`;
  }
  fs.appendFileSync(file, text, { encoding: "utf8" });
};

// Handlers go in before the spawn (see dist/index.js): the runner signals this PID only.
let child;
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => child && child.kill(signal));
}

// The build log is on the child's stderr; stdout carries the result as its last line. stdout is
// also passed through, so anything else the child prints there still reaches the log.
child = spawn(binary, argv, { stdio: ["inherit", "pipe", "inherit"] });
const chunks = [];
child.stdout.on("data", (chunk) => {
  chunks.push(chunk);
  process.stdout.write(chunk);
});

child.on("error", (err) => {
  fail(`cannot start runner-k8s-hook at ${binary}: ${err.message}`);
});

child.on("close", (code, signal) => {
  if (signal) fail(`runner-k8s-hook build was killed by ${signal}`);
  if (code !== 0) fail(`runner-k8s-hook build failed with exit code ${code}`);
  const lines = Buffer.concat(chunks).toString("utf8").split(/\r?\n/).map((l) => l.trim());
  const result = lines.filter((l) => l !== "").pop() || "";
  const at = result.lastIndexOf("@");
  const digest = at >= 0 ? result.slice(at + 1) : "";
  if (result === "" || (at >= 0 && !DIGEST.test(digest))) {
    fail(`runner-k8s-hook build printed no image reference (got: ${JSON.stringify(result)})`);
  }
  if (argv.includes("--no-push") ? at >= 0 : at < 0) {
    fail(`runner-k8s-hook build printed an unexpected result: ${result}`);
  }
  setOutputs({ image: result, digest });
  process.exit(0);
});
