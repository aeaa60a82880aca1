// JavaScript action (action.yml) for jobs that run on the runner itself: builds a Dockerfile with
// `runner-k8s-hook build` (rootless Buildah, the same script as the hook's build pods; on the
// runner, or in a build pod with `executor: pod`), pushes it, and sets the outputs `image`
// (reference pinned by digest) and `digest`.
// Plain CommonJS, no dependencies, like dist/index.js, so `uses: <owner>/<repo>@<tag>` works from
// the checkout the runner makes, with nothing installed or bundled.
//
// The binary (docs/user/action.md, "How the binary is found"), first match wins:
//   1. the `binary` input, if set (and nothing else: a wrong path is an error);
//   2. $RUNNER_K8S_HOOK_BINARY, if set (the same);
//   3. <this dir>/runner-k8s-hook, then <this dir>/bin/runner-k8s-hook (as dist/index.js);
//   4. `runner-k8s-hook` on PATH;
//   5. the release asset for this checkout's version (Cargo.toml's `version` beside dist/):
//      `runner-k8s-hook-<x86_64|aarch64>-linux` from
//      $GITHUB_SERVER_URL/$GITHUB_ACTION_REPOSITORY/releases/download/v<version>/ (or from
//      $RUNNER_K8S_HOOK_RELEASE_BASE_URL, a mirror of that directory), checked against the
//      release's SHA256SUMS, cached in $RUNNER_TOOL_CACHE (else $RUNNER_TEMP) and made executable.
//      A cached copy is reused while its SHA-256 is still the one SHA256SUMS lists.
//
// Inputs arrive as the runner passes them: INPUT_<NAME> with the name upper-cased, spaces turned
// into `_` and hyphens kept (INPUT_BUILD-ARGS), defaults from action.yml already applied.
//
// The lookup is exported (resolveBinary and its parts) so tests can call it with another
// platform or environment than the machine's; the runner runs this file as the main module.
"use strict";
const { spawn } = require("child_process");
const crypto = require("crypto");
const fs = require("fs");
const os = require("os");
const path = require("path");

const TOOL = "runner-k8s-hook";
const ENV = "RUNNER_K8S_HOOK_BINARY";
const BASE_URL_ENV = "RUNNER_K8S_HOOK_RELEASE_BASE_URL";
const SUMS = "SHA256SUMS";
const DIGEST = /^sha256:[0-9a-f]{64}$/;
// node's process.arch → the release asset's architecture (the release contract:
// runner-k8s-hook-x86_64-linux, runner-k8s-hook-aarch64-linux).
const ASSET_ARCH = { x64: "x86_64", arm64: "aarch64" };
const SUMS_TIMEOUT_MS = 60 * 1000;
const BINARY_TIMEOUT_MS = 10 * 60 * 1000;

// A failure the user can act on: printed as one `::error::` line, exit 1.
class ActionError extends Error {}

// Workflow-command data escaping (@actions/core `escapeData`): %, CR and LF would end or corrupt
// the command.
const escapeData = (s) => String(s).replace(/%/g, "%25").replace(/\r/g, "%0D").replace(/\n/g, "%0A");

const fail = (message) => {
  console.log(`::error::${escapeData(message)}`);
  process.exit(1);
};

// @actions/core getInput: trimmed, "" when unset.
const input = (name, fallback, env = process.env) => {
  const value = (env[`INPUT_${name.replace(/ /g, "_").toUpperCase()}`] || "").trim();
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

const isFile = (p) => {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false; // ENOENT, ENOTDIR, EACCES on a parent: not usable here
  }
};

const isExecutableFile = (p) => {
  if (!isFile(p)) return false;
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
};

const sha256File = (p) => crypto.createHash("sha256").update(fs.readFileSync(p)).digest("hex");

// The release asset for a platform, or an error saying what to do instead.
const assetName = (platform, arch) => {
  if (platform !== "linux" || !ASSET_ARCH[arch]) {
    throw new ActionError(
      `runner-k8s-hook has release binaries for Linux on x64 and arm64 only, and this runner is ` +
        `${platform}/${arch}: build it on the runner (cargo build --release) and give its path ` +
        `in the \`binary\` input, or run the job on a Linux x64 or arm64 runner`,
    );
  }
  return `${TOOL}-${ASSET_ARCH[arch]}-linux`;
};

// Cargo.toml's `[package] version`: the release this checkout of the action belongs to.
const packageVersion = (text, file) => {
  let inPackage = false;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/#.*$/, "").trim();
    const table = line.match(/^\[\s*([^\]]*?)\s*\]$/);
    if (table) {
      inPackage = table[1] === "package";
      continue;
    }
    const version = inPackage && line.match(/^version\s*=\s*"([^"]+)"$/);
    if (version) return version[1];
  }
  throw new ActionError(
    `${file} has no [package] version, so the release to download is unknown: ` +
      "give the binary in the `binary` input or RUNNER_K8S_HOOK_BINARY",
  );
};

// The directory of the release's assets, without a trailing slash.
const releaseBaseUrl = (env, version) => {
  const override = (env[BASE_URL_ENV] || "").trim();
  if (override !== "") return override.replace(/\/+$/, "");
  const repository = (env.GITHUB_ACTION_REPOSITORY || "").trim();
  if (repository === "") {
    throw new ActionError(
      "cannot tell which repository to download runner-k8s-hook from: GITHUB_ACTION_REPOSITORY " +
        "is empty (the runner leaves it empty for a local action, `uses: ./...`); give the binary " +
        `in the \`binary\` input or ${ENV}, or set ${BASE_URL_ENV} to the directory holding the ` +
        "release assets",
    );
  }
  const server = (env.GITHUB_SERVER_URL || "https://github.com").trim().replace(/\/+$/, "");
  return `${server}/${repository}/releases/download/v${version}`;
};

// The SHA-256 that SHA256SUMS (sha256sum's format: `<hex>  <name>` or `<hex> *<name>`) lists for
// `asset`.
const expectedSum = (text, asset, url) => {
  for (const line of text.split(/\r?\n/)) {
    const m = line.trim().match(/^([0-9a-fA-F]{64}) [ *](.+)$/);
    if (m && m[2].trim() === asset) return m[1].toLowerCase();
  }
  throw new ActionError(
    `${url} lists no SHA-256 for ${asset}: the release is missing this runner's binary; ` +
      "give the binary in the `binary` input instead",
  );
};

// GET `url` with node's fetch (redirects followed: GitHub answers release downloads with a
// redirect to a signed storage URL, which is never printed). Errors name the URL asked for.
const get = async (url, what, timeoutMs) => {
  let response;
  try {
    response = await fetch(url, { redirect: "follow", signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    const reason = err && err.name === "TimeoutError"
      ? `no answer within ${timeoutMs / 1000} s`
      : (err && err.cause && err.cause.message) || (err && err.message) || String(err);
    throw new ActionError(
      `cannot download ${what} from ${url}: ${reason}; check that the runner can reach it ` +
        `(behind a proxy, set \`binary\` or put runner-k8s-hook on PATH)`,
    );
  }
  if (!response.ok) {
    const hint = response.status === 404
      ? "; is there a release with this asset? Pin the action to a release tag " +
        "(uses: <owner>/<repo>@v<version>) or give the binary in the `binary` input"
      : "";
    throw new ActionError(
      `cannot download ${what} from ${url}: HTTP ${response.status} ${response.statusText}${hint}`,
    );
  }
  try {
    return Buffer.from(await response.arrayBuffer());
  } catch (err) {
    throw new ActionError(`cannot download ${what} from ${url}: ${(err && err.message) || err}`);
  }
};

// Download the release asset into the tool cache, or reuse the cached copy if it still matches.
const download = async ({ dir, env, platform, arch, log }) => {
  const asset = assetName(platform, arch);
  const cargoToml = path.join(dir, "..", "Cargo.toml");
  let manifest;
  try {
    manifest = fs.readFileSync(cargoToml, "utf8");
  } catch (err) {
    throw new ActionError(
      `cannot read ${cargoToml} for the release version (${err.message}): give the binary in ` +
        "the `binary` input or RUNNER_K8S_HOOK_BINARY",
    );
  }
  const version = packageVersion(manifest, cargoToml);
  const base = releaseBaseUrl(env, version);
  const cacheRoot = (env.RUNNER_TOOL_CACHE || "").trim() || (env.RUNNER_TEMP || "").trim();
  if (cacheRoot === "") {
    throw new ActionError(
      "neither RUNNER_TOOL_CACHE nor RUNNER_TEMP is set (the runner sets both), so there is " +
        "nowhere to keep the downloaded runner-k8s-hook: set RUNNER_TOOL_CACHE to a writable " +
        "directory, or give the binary in the `binary` input",
    );
  }

  const sumsUrl = `${base}/${SUMS}`;
  const expected = expectedSum((await get(sumsUrl, SUMS, SUMS_TIMEOUT_MS)).toString("utf8"), asset, sumsUrl);
  // @actions/tool-cache's layout: <cache>/<tool>/<version>/<arch>/.
  const cacheDir = path.join(cacheRoot, TOOL, version, arch);
  const target = path.join(cacheDir, TOOL);
  if (isFile(target)) {
    if (sha256File(target) === expected) {
      fs.chmodSync(target, 0o755);
      log(`runner-k8s-hook ${version}: using the cached ${target} (sha256 ${expected})`);
      return target;
    }
    log(`runner-k8s-hook ${version}: the cached ${target} does not match ${SUMS}; downloading it again`);
    fs.rmSync(target, { force: true });
  }

  const url = `${base}/${asset}`;
  log(`runner-k8s-hook ${version}: downloading ${url}`);
  const body = await get(url, asset, BINARY_TIMEOUT_MS);
  const actual = crypto.createHash("sha256").update(body).digest("hex");
  if (actual !== expected) {
    // Checked before anything is written: a damaged download never reaches the disk.
    throw new ActionError(
      `checksum mismatch for ${url}: ${SUMS} lists ${expected}, the download is ${actual}; ` +
        "the download was discarded. Re-run the job; if it fails again, the release's asset or " +
        `${SUMS} is damaged: give the binary in the \`binary\` input instead`,
    );
  }
  // Written under a temporary name, then renamed (atomic): runners sharing the tool cache never
  // see half a binary.
  const suffix = `${process.pid}.${crypto.randomBytes(6).toString("hex")}`;
  const partial = path.join(cacheDir, `.${TOOL}.${suffix}.part`);
  try {
    fs.mkdirSync(cacheDir, { recursive: true });
    fs.writeFileSync(partial, body, { mode: 0o755 });
    fs.chmodSync(partial, 0o755);
    fs.renameSync(partial, target);
  } catch (err) {
    throw new ActionError(
      `cannot keep the downloaded runner-k8s-hook in ${cacheDir}: ${err.message}; make ` +
        "RUNNER_TOOL_CACHE a writable directory, or give the binary in the `binary` input",
    );
  } finally {
    try {
      fs.rmSync(partial, { force: true });
    } catch {
      // ENOTDIR: the directory was never made; nothing to remove.
    }
  }
  log(`runner-k8s-hook ${version}: sha256 ${actual} verified against ${SUMS}; cached at ${target}`);
  return target;
};

// Where the binary is, in the order of the header comment. `options` defaults to this process;
// tests pass another platform, environment or directory.
const resolveBinary = async (options = {}) => {
  const env = options.env || process.env;
  const dir = options.dir || __dirname;
  const platform = options.platform || process.platform;
  const arch = options.arch || process.arch;
  const log = options.log || ((line) => console.log(line));

  const wanted = input("binary", "", env);
  if (wanted !== "") {
    const file = path.resolve(wanted);
    if (!isFile(file)) {
      throw new ActionError(
        `runner-k8s-hook binary not found (tried: ${file}, from the \`binary\` input): ` +
          "give the path of the binary, or leave the input empty to find or download it",
      );
    }
    return file;
  }
  const override = (env[ENV] || "").trim();
  if (override !== "") {
    if (!isFile(override)) {
      throw new ActionError(
        `runner-k8s-hook binary not found (tried: ${override}, from ${ENV}): set ${ENV} to the ` +
          "binary's path, or unset it to find or download the binary",
      );
    }
    return override;
  }
  const beside = [path.join(dir, TOOL), path.join(dir, "bin", TOOL)].find(isFile);
  if (beside) return beside;
  for (const entry of (env.PATH || "").split(path.delimiter)) {
    // An empty entry means the working directory: never look there.
    if (entry === "" || !path.isAbsolute(entry)) continue;
    const candidate = path.join(entry, TOOL);
    if (isExecutableFile(candidate)) return candidate;
  }
  return download({ dir, env, platform, arch, log });
};

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

const main = async () => {
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

  // Handlers go in before the download and the spawn (see dist/index.js): the runner signals
  // this PID only. Before the child exists (a download in progress), a signal ends the action as
  // it would have ended node; nothing is on disk yet then (the file is written synchronously,
  // after the checksum check).
  let child;
  for (const signal of ["SIGINT", "SIGTERM"]) {
    process.on(signal, () => {
      if (child) {
        child.kill(signal);
        return;
      }
      process.exit(128 + os.constants.signals[signal]);
    });
  }

  let binary;
  try {
    binary = await resolveBinary();
  } catch (err) {
    if (err instanceof ActionError) fail(err.message);
    throw err;
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
};

module.exports = { ActionError, assetName, packageVersion, releaseBaseUrl, expectedSum, resolveBinary };

if (require.main === module) {
  main().catch((err) => fail(`unexpected failure: ${(err && err.stack) || err}`));
}
