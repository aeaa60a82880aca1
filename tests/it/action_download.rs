//! The JavaScript action's last resort (docs/user/action.md, "How the binary is found"): with no
//! binary given, beside `dist/action.js` or on `PATH`, it downloads the release asset of its own
//! version (`Cargo.toml` beside `dist/`) for the runner's architecture, checks it against the
//! release's `SHA256SUMS`, caches it in the tool cache and runs it.
//!
//! A [`ReleaseServer`] on 127.0.0.1 serves release-shaped files the way GitHub does: the asset
//! URL `<server>/<owner>/<repo>/releases/download/v<version>/<asset>` answers with a redirect to a
//! signed storage URL (whose signature must never reach the log), `SHA256SUMS` in `sha256sum`'s
//! format. The "binary" is the stand-in of `action_js`, so the run after the download shows
//! that the downloaded file was made executable and ran. Platforms without a release binary
//! are checked through the exported resolver (`node -e`), since this machine is one platform.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::action_js::{Action, DIGEST, REF, STANDIN, node, parse_outputs, text, wait};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const REPOSITORY: &str = "octo-org/runner-k8s-hook";
/// The query of the signed storage URL the asset redirects to: a secret that must not be logged.
const SIGNATURE: &str = "X-Amz-Signature=do-not-log-3f9a";

/// The release asset for this machine (the release contract: `runner-k8s-hook-<arch>-linux`).
fn asset() -> String {
    format!("runner-k8s-hook-{}-linux", std::env::consts::ARCH)
}

/// node's name for this machine's architecture (`process.arch`), the tool cache's directory.
fn node_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        other => panic!("no release binary for {other}: these tests need x86_64 or aarch64"),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

enum Reply {
    Body(Vec<u8>),
    Redirect(String),
    /// The headers and the first bytes of a longer body, then nothing until the server stops.
    Stall,
}

/// A plain HTTP/1.1 server on 127.0.0.1 answering GETs from a fixed table (404 otherwise), one
/// connection at a time, `Connection: close`. It records every request path. Stopped (and its
/// thread joined) when dropped, also when a test panics.
struct ReleaseServer {
    base: String,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ReleaseServer {
    fn start(routes: HashMap<String, Reply>) -> ReleaseServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        serve(stream, &routes, &requests, &stop);
                    }
                }
            })
        };
        ReleaseServer {
            base,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// The release as GitHub serves it: the asset redirects to storage, `SHA256SUMS` lists
    /// `sums_for` (the asset's real digest unless a test lies).
    fn github(binary: &[u8], sums_for: &[u8]) -> ReleaseServer {
        let dir = format!("/{REPOSITORY}/releases/download/v{VERSION}");
        let stored = format!("/storage/{}?{SIGNATURE}", asset());
        let sums = format!(
            "{}  runner-k8s-hook-other-linux\n{}  {}\n",
            "0".repeat(64),
            sha256_hex(sums_for),
            asset()
        );
        ReleaseServer::start(HashMap::from([
            (
                format!("{dir}/{}", asset()),
                Reply::Redirect(stored.clone()),
            ),
            (stored, Reply::Body(binary.to_vec())),
            (format!("{dir}/SHA256SUMS"), Reply::Body(sums.into_bytes())),
        ]))
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for ReleaseServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.base.trim_start_matches("http://"));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    mut stream: TcpStream,
    routes: &HashMap<String, Reply>,
    log: &Mutex<Vec<String>>,
    stop: &AtomicBool,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => return,
            Ok(_) if header == "\r\n" || header == "\n" => break,
            Ok(_) => {}
        }
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_owned();
    log.lock().unwrap().push(path.clone());
    let (status, headers, body): (&str, String, Vec<u8>) = match routes.get(&path) {
        Some(Reply::Body(body)) => ("200 OK", String::new(), body.clone()),
        Some(Reply::Redirect(to)) => ("302 Found", format!("Location: {to}\r\n"), Vec::new()),
        Some(Reply::Stall) => {
            let head = "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\nConnection: close\r\n\r\n";
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&[0; 1000]);
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
            return;
        }
        None => ("404 Not Found", String::new(), b"Not Found".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

/// The checked-out action with no binary anywhere it looks, pointed at `server` as GitHub
/// (`GITHUB_SERVER_URL`, `GITHUB_ACTION_REPOSITORY`) and with a tool cache of its own.
fn downloading(server: &ReleaseServer) -> Action {
    let mut action = Action::checkout("ok");
    let cache = action.dir.path().join("tool-cache");
    fs::create_dir(&cache).unwrap();
    action
        .command
        .env("GITHUB_SERVER_URL", &server.base)
        .env("GITHUB_ACTION_REPOSITORY", REPOSITORY)
        .env("RUNNER_TOOL_CACHE", &cache);
    action
}

/// Where the action caches the binary: @actions/tool-cache's `<tool>/<version>/<arch>/`.
fn cached(action: &Action, root: &str) -> PathBuf {
    action
        .dir
        .path()
        .join(root)
        .join("runner-k8s-hook")
        .join(VERSION)
        .join(node_arch())
}

/// Every file under `dir` (relative paths), to see that nothing else was left behind.
fn files_under(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for entry in fs::read_dir(&next).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                files.push(
                    entry
                        .path()
                        .strip_prefix(dir)
                        .unwrap()
                        .display()
                        .to_string(),
                );
            }
        }
    }
    files.sort();
    files
}

#[test]
fn downloads_verifies_caches_and_runs_the_release_binary() {
    let server = ReleaseServer::github(STANDIN.as_bytes(), STANDIN.as_bytes());
    let mut action = downloading(&server);
    let out = action.run();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    // The downloaded stand-in ran with the inputs, and its answer became the outputs.
    assert_eq!(action.argv().unwrap()[0], "build");
    assert_eq!(
        parse_outputs(&action.github_output())["image"],
        format!("{REF}@{DIGEST}")
    );
    let dir = format!("/{REPOSITORY}/releases/download/v{VERSION}");
    assert_eq!(
        server.requests(),
        [
            format!("{dir}/SHA256SUMS"),
            format!("{dir}/{}", asset()),
            format!("/storage/{}?{SIGNATURE}", asset()),
        ],
        "SHA256SUMS, then the asset, following GitHub's redirect"
    );
    let binary = cached(&action, "tool-cache").join("runner-k8s-hook");
    assert_eq!(fs::read(&binary).unwrap(), STANDIN.as_bytes());
    assert_eq!(
        fs::metadata(&binary).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert_eq!(
        files_under(&action.dir.path().join("tool-cache")),
        [format!(
            "runner-k8s-hook/{VERSION}/{}/runner-k8s-hook",
            node_arch()
        )],
        "only the binary is left in the cache"
    );
    assert!(
        stdout.contains(&format!(
            "sha256 {} verified against SHA256SUMS",
            sha256_hex(STANDIN.as_bytes())
        )),
        "{stdout}"
    );
    assert!(
        !stdout.contains(SIGNATURE) && !text(&out.stderr).contains(SIGNATURE),
        "the signed storage URL must not be logged:\n{stdout}"
    );

    // The next run takes the cached copy: SHA256SUMS only.
    let mut again = downloading(&server);
    let cache = action.dir.path().join("tool-cache");
    again.command.env("RUNNER_TOOL_CACHE", &cache);
    let before = server.requests().len();
    let out = again.run();
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert_eq!(
        server.requests()[before..],
        [format!("{dir}/SHA256SUMS")],
        "a cached binary that matches is not downloaded again"
    );
    assert!(text(&out.stdout).contains("using the cached"));
}

#[test]
fn a_cached_binary_that_no_longer_matches_is_downloaded_again() {
    let server = ReleaseServer::github(STANDIN.as_bytes(), STANDIN.as_bytes());
    let mut action = downloading(&server);
    let stale = cached(&action, "tool-cache").join("runner-k8s-hook");
    fs::create_dir_all(stale.parent().unwrap()).unwrap();
    fs::write(&stale, "#!/bin/sh\nexit 42\n").unwrap();
    fs::set_permissions(&stale, fs::Permissions::from_mode(0o755)).unwrap();
    let out = action.run();
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("does not match SHA256SUMS; downloading it again"));
    assert_eq!(fs::read(&stale).unwrap(), STANDIN.as_bytes());
}

#[test]
fn a_checksum_mismatch_is_refused_and_nothing_is_kept() {
    let server = ReleaseServer::github(STANDIN.as_bytes(), b"what the release meant to ship");
    let mut action = downloading(&server);
    let out = action.run();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let url = format!(
        "{}/{REPOSITORY}/releases/download/v{VERSION}/{}",
        server.base,
        asset()
    );
    let expected = format!(
        "::error::checksum mismatch for {url}: SHA256SUMS lists {}, the download is {}; the download was discarded. Re-run the job; if it fails again, the release's asset or SHA256SUMS is damaged: give the binary in the `binary` input instead",
        sha256_hex(b"what the release meant to ship"),
        sha256_hex(STANDIN.as_bytes())
    );
    assert!(stdout.contains(&expected), "{stdout}");
    assert_eq!(action.argv(), None, "nothing ran");
    assert_eq!(action.github_output(), "");
    assert_eq!(
        files_under(&action.dir.path().join("tool-cache")),
        Vec::<String>::new(),
        "no file is left in the cache"
    );
}

#[test]
fn without_a_tool_cache_the_binary_is_kept_in_runner_temp() {
    let server = ReleaseServer::github(STANDIN.as_bytes(), STANDIN.as_bytes());
    let mut action = downloading(&server);
    let temp = action.dir.path().join("runner-temp");
    fs::create_dir(&temp).unwrap();
    action
        .command
        .env_remove("RUNNER_TOOL_CACHE")
        .env("RUNNER_TEMP", &temp);
    let out = action.run();
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(
        cached(&action, "runner-temp")
            .join("runner-k8s-hook")
            .is_file()
    );
}

#[test]
fn the_base_url_can_point_at_a_mirror() {
    // A mirror of the release directory: no redirect, another path, no repository needed.
    let sums = format!("{}  {}\n", sha256_hex(STANDIN.as_bytes()), asset());
    let server = ReleaseServer::start(HashMap::from([
        (
            format!("/mirror/v{VERSION}/{}", asset()),
            Reply::Body(STANDIN.as_bytes().to_vec()),
        ),
        (
            format!("/mirror/v{VERSION}/SHA256SUMS"),
            Reply::Body(sums.into_bytes()),
        ),
    ]));
    let mut action = downloading(&server);
    action.command.env_remove("GITHUB_ACTION_REPOSITORY").env(
        "RUNNER_K8S_HOOK_RELEASE_BASE_URL",
        format!("{}/mirror/v{VERSION}/", server.base),
    );
    let out = action.run();
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn a_missing_release_is_named_with_what_to_do() {
    let server = ReleaseServer::start(HashMap::new());
    let mut action = downloading(&server);
    let out = action.run();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "::error::cannot download SHA256SUMS from {}/{REPOSITORY}/releases/download/v{VERSION}/SHA256SUMS: HTTP 404 Not Found; is there a release with this asset? Pin the action to a release tag (uses: <owner>/<repo>@v<version>) or give the binary in the `binary` input",
            server.base
        )),
        "{stdout}"
    );
    assert_eq!(action.argv(), None);
}

#[test]
fn a_local_action_without_a_repository_cannot_download() {
    let mut action = Action::checkout("ok");
    action
        .command
        .env("RUNNER_TOOL_CACHE", action.dir.path())
        .env("GITHUB_ACTION_REPOSITORY", "");
    let out = action.run();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains(
            "::error::cannot tell which repository to download runner-k8s-hook from: GITHUB_ACTION_REPOSITORY is empty"
        ),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn the_version_is_cargo_toml_package_version() {
    // What the resolver downloads is the version in the checkout's Cargo.toml, [package] only.
    let server = ReleaseServer::start(HashMap::new());
    let mut action = downloading(&server);
    fs::write(
        action.checkout_root().join("Cargo.toml"),
        "[workspace]\nversion = \"0.0.1\"\n\n[package]\nname = \"runner-k8s-hook\" # the hook\nversion = \"9.8.7\"  # released\n\n[dependencies]\nfoo = { version = \"1\" }\n",
    )
    .unwrap();
    let out = action.run();
    assert!(
        text(&out.stdout).contains(&format!(
            "{}/{REPOSITORY}/releases/download/v9.8.7/SHA256SUMS",
            server.base
        )),
        "{}",
        text(&out.stdout)
    );
}

/// Call the exported resolver of a checked-out `dist/action.js` with `options` (JSON), printing
/// the binary it resolves or `ERROR: <message>`.
fn resolve_with(action: &Action, options: &str) -> String {
    const SCRIPT: &str = r#"
const action = require(process.env.ACTION_JS);
const options = JSON.parse(process.env.OPTIONS);
action.resolveBinary({ ...options, log: () => {} }).then(
  (binary) => console.log(binary),
  (err) => console.log(`ERROR: ${err instanceof action.ActionError ? "" : "(not an ActionError) "}${err.message}`),
);
"#;
    let child = Command::new(node())
        .args(["-e", SCRIPT])
        .env_clear()
        .env("ACTION_JS", action.checkout_root().join("dist/action.js"))
        .env("OPTIONS", options)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let out = wait(child);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

#[test]
fn platforms_without_a_release_binary_are_refused_before_any_download() {
    let server = ReleaseServer::github(STANDIN.as_bytes(), STANDIN.as_bytes());
    let action = Action::checkout("ok");
    for (platform, arch) in [
        ("darwin", "arm64"),
        ("win32", "x64"),
        ("linux", "ia32"),
        ("linux", "riscv64"),
    ] {
        let options = serde_json::json!({
            "platform": platform,
            "arch": arch,
            "env": {
                "PATH": "",
                "GITHUB_SERVER_URL": server.base,
                "GITHUB_ACTION_REPOSITORY": REPOSITORY,
                "RUNNER_TOOL_CACHE": action.dir.path().join("tool-cache"),
            },
        });
        assert_eq!(
            resolve_with(&action, &options.to_string()),
            format!(
                "ERROR: runner-k8s-hook has release binaries for Linux on x64 and arm64 only, and this runner is {platform}/{arch}: build it on the runner (cargo build --release) and give its path in the `binary` input, or run the job on a Linux x64 or arm64 runner"
            )
        );
    }
    assert_eq!(
        server.requests(),
        Vec::<String>::new(),
        "nothing was fetched"
    );

    // The same platforms run a binary they are given.
    let options = serde_json::json!({
        "platform": "darwin",
        "arch": "arm64",
        "env": { "INPUT_BINARY": action.standin() },
    });
    assert_eq!(
        resolve_with(&action, &options.to_string()),
        action.standin().display().to_string()
    );
}

#[test]
fn each_supported_platform_downloads_its_own_asset() {
    for (arch, asset) in [
        ("x64", "runner-k8s-hook-x86_64-linux"),
        ("arm64", "runner-k8s-hook-aarch64-linux"),
    ] {
        let body = format!("#!/bin/sh\n# {asset}\n");
        let dir = format!("/{REPOSITORY}/releases/download/v{VERSION}");
        let sums = format!("{}  {asset}\n", sha256_hex(body.as_bytes()));
        let server = ReleaseServer::start(HashMap::from([
            (
                format!("{dir}/{asset}"),
                Reply::Body(body.clone().into_bytes()),
            ),
            (format!("{dir}/SHA256SUMS"), Reply::Body(sums.into_bytes())),
        ]));
        let action = Action::checkout("ok");
        let cache = action.dir.path().join("tool-cache");
        let options = serde_json::json!({
            "platform": "linux",
            "arch": arch,
            "env": {
                "PATH": "",
                "GITHUB_SERVER_URL": server.base,
                "GITHUB_ACTION_REPOSITORY": REPOSITORY,
                "RUNNER_TOOL_CACHE": cache,
            },
        });
        let binary = cache.join(format!("runner-k8s-hook/{VERSION}/{arch}/runner-k8s-hook"));
        assert_eq!(
            resolve_with(&action, &options.to_string()),
            binary.display().to_string()
        );
        assert_eq!(fs::read_to_string(&binary).unwrap(), body);
    }
}

#[test]
fn a_tool_cache_that_cannot_be_written_is_named() {
    let server = ReleaseServer::github(STANDIN.as_bytes(), STANDIN.as_bytes());
    let mut action = downloading(&server);
    // A file where the cache directory would be: mkdir fails for root too.
    let blocked = action.dir.path().join("blocked");
    fs::write(&blocked, "").unwrap();
    action.command.env("RUNNER_TOOL_CACHE", &blocked);
    let out = action.run();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "::error::cannot keep the downloaded runner-k8s-hook in {}/runner-k8s-hook/{VERSION}/{}: ENOTDIR",
            blocked.display(),
            node_arch()
        )),
        "{stdout}"
    );
    assert!(stdout.contains(
        "make RUNNER_TOOL_CACHE a writable directory, or give the binary in the `binary` input"
    ));
}

#[test]
fn sigterm_during_the_download_ends_the_step_and_keeps_nothing() {
    let dir = format!("/{REPOSITORY}/releases/download/v{VERSION}");
    let sums = format!("{}  {}\n", sha256_hex(STANDIN.as_bytes()), asset());
    let server = ReleaseServer::start(HashMap::from([
        (format!("{dir}/{}", asset()), Reply::Stall),
        (format!("{dir}/SHA256SUMS"), Reply::Body(sums.into_bytes())),
    ]));
    let mut action = downloading(&server);
    let child = action.spawn();
    let start = std::time::Instant::now();
    while server.requests().len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the download never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let out = wait(child);
    assert_eq!(out.status.code(), Some(143), "{}", text(&out.stdout));
    assert_eq!(action.argv(), None, "nothing ran");
    assert_eq!(
        files_under(&action.dir.path().join("tool-cache")),
        Vec::<String>::new()
    );
}
