//! What reuse by content and the layer cache save (issue 11; the flow is
//! `hooks::build_action::build`'s), with the real Buildah as an unprivileged user, against a
//! registry on 127.0.0.1. A benchmark, not a test: `bench/reuse.sh` starts the registry, prepares the
//! action, runs this in release mode and turns its `REUSE-BENCH` lines into medians
//! (bench/README.md). Each round, in this order:
//!
//! - `ref`: `buildah build` + `buildah push` typed by hand (the script's `by-hand.sh`), cold;
//! - `a`: what the hook does for an action seen for the first time, as
//!   `hooks::build_action::build` does it: scan the context, compute the key, look the key tag
//!   up (a miss), then build with the layer cache (`BuildSpec::cache`) in a fresh store and
//!   push under a random tag and the key tag (`BuildSpec::extra_tags`), into a repository and
//!   cache repository no earlier round used;
//! - `b`: the same action unchanged: scan, key, `Registry::find` (a hit), `Registry::retag` to a
//!   new random tag. Everything the hook adds before the step runs like an image step;
//! - `c`: a one-line change in `entrypoint.sh` (the late `COPY`), as `a` (key miss, build with
//!   the cache that `a` filled, key tag), in a fresh store;
//! - `d`: the same change built without the cache and without a key (`cache: None`, no
//!   `--layers`), in a fresh store.
//!
//! `c` and `d` swap places every other round, so drifting machine load weighs on both. Round 0 is
//! a warm-up (page cache, the base image's blobs in the registry's cache).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runner_k8s_hook::config::{BuildCache, DEFAULT_BUILDER_IMAGE};
use runner_k8s_hook::image::context::BuildContext;
use runner_k8s_hook::image::key::{self, BuildKey, KeyInputs};
use runner_k8s_hook::image::local::{LocalExecutor, Scratch, USER_PATH, User, running_as_root};
use runner_k8s_hook::image::options::{self, Stage};
use runner_k8s_hook::image::reference::{ImageRef, RegistryHost};
use runner_k8s_hook::image::registry::{Access, Found, Registry};
use runner_k8s_hook::image::{BuildOutcome, BuildSpec, Executor as _, Storage, StorageDriver};

use crate::support::registry::{busybox_context, copy_tree, set_mode};

/// The hook's default context limit (docs/user/configuration.md); the action is far below it.
const CONTEXT_LIMIT: u64 = 100 * 1024 * 1024;

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run bench/reuse.sh"))
}

fn number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Bench {
    host: RegistryHost,
    user: User,
    /// The action as the script prepared it (heavy `RUN`, then `COPY entrypoint.sh`).
    action: PathBuf,
    /// Where the per-round copies go (readable by the build user).
    work: PathBuf,
    /// `by-hand.sh STORE CONTEXT IMAGE`, written by the script.
    by_hand: PathBuf,
    build_options: Vec<String>,
    push_options: Vec<String>,
    /// Where to keep the build logs (`REUSE_BENCH_LOGS`), if anywhere.
    logs: Option<PathBuf>,
}

/// What the hook's lookup found, and how long its parts took.
struct Lookup {
    key: BuildKey,
    found: Option<Found>,
    registry: Registry,
    scan_key: Duration,
    find: Duration,
}

impl Bench {
    fn access(&self) -> Access {
        Access {
            host: self.host.host().to_owned(),
            credentials: None,
            ca_pem: None,
            plain_http: true,
        }
    }

    /// The hook's steps before any build: scan the context, compute the key (with `--layers`
    /// when the cache is on), make a registry client, ask for the key tag.
    async fn lookup(&self, context: &Path, image: &ImageRef, layers: bool) -> Lookup {
        let started = Instant::now();
        let dockerfile = context.join("Dockerfile");
        let (build_options, push_options) = (self.build_options.clone(), self.push_options.clone());
        let key = tokio::task::spawn_blocking(move || {
            let scanned =
                BuildContext::scan(&dockerfile, CONTEXT_LIMIT).expect("the context scans");
            key::build_key(
                &scanned,
                &KeyInputs {
                    build_args: &[],
                    platform: &key::platform(),
                    builder_image: DEFAULT_BUILDER_IMAGE,
                    layers,
                    build_options: &build_options,
                    push_options: &push_options,
                },
            )
            .expect("the key")
        })
        .await
        .unwrap();
        let scan_key = started.elapsed();
        let started = Instant::now();
        let registry = Registry::new(&self.access()).expect("a registry client");
        let found = registry
            .find(&image.push_repository(), &key.tag())
            .await
            .expect("the registry answers");
        Lookup {
            key,
            found,
            registry,
            scan_key,
            find: started.elapsed(),
        }
    }

    /// Build `context` as `image` through the build script, in a fresh store.
    async fn build(
        &self,
        context: &Path,
        image: &ImageRef,
        cache: Option<String>,
        extra_tags: Vec<String>,
    ) -> (BuildOutcome, String) {
        let scratch = Scratch::new(Some(&self.user)).expect("a scratch directory");
        let user = self.fresh_home(&scratch);
        let spec = BuildSpec {
            context_dir: context.to_str().unwrap().to_owned(),
            dockerfile: "Dockerfile".to_owned(),
            image: image.push_ref(),
            push: true,
            build_args: Vec::new(),
            storage: Storage {
                root: scratch.join("storage/root").unwrap(),
                runroot: scratch.join("storage/run").unwrap(),
                driver: StorageDriver::Overlay,
            },
            build_options: self.build_options.clone(),
            push_options: self.push_options.clone(),
            auth_source: None,
            cert_dir: None,
            work_dir: scratch.join("work").unwrap(),
            result_path: scratch.join("result").unwrap(),
            wait_for: None,
            extra_tags,
            cache,
        };
        let executor = LocalExecutor {
            user: Some(user),
            timeout: Some(Duration::from_secs(600)),
        };
        let mut log = TimedLog::new();
        let result = executor.run(&spec, &mut log).await;
        let log = String::from_utf8_lossy(&log.text).into_owned();
        let outcome = result.unwrap_or_else(|e| panic!("the build failed: {e}\n{log}"));
        (outcome, log)
    }

    /// `by-hand.sh` as the build user, in a fresh store and home; its wall time and output.
    async fn by_hand(&self, context: &Path, image: &str) -> (Duration, String) {
        let scratch = Scratch::new(Some(&self.user)).expect("a scratch directory");
        let user = self.fresh_home(&scratch);
        let started = Instant::now();
        let output = tokio::process::Command::new("runuser")
            .args(["-u", &user.name, "--"])
            .arg(&self.by_hand)
            .arg(scratch.path())
            .arg(context)
            .arg(image)
            .env_clear()
            .env("HOME", &user.home)
            .env("PATH", USER_PATH)
            .env("BUILDAH_ISOLATION", "chroot")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .expect("runuser runs");
        let elapsed = started.elapsed();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "the build by hand failed:\n{text}");
        (elapsed, text)
    }

    /// Keep a build's log as `<logs>/round-<round>-<case>.log`, when the script asked for logs.
    fn save_log(&self, round: usize, case: &str, log: &str) {
        if let Some(dir) = &self.logs {
            std::fs::write(dir.join(format!("round-{round}-{case}.log")), log).unwrap();
        }
    }

    /// The build user with an empty home in `scratch`, as a build pod has: Buildah keeps its
    /// blob info cache (which blobs it saw where) under `$HOME/.local/share/containers/cache`
    /// (containers/image `pkg/blobinfocache/default.go`), and the user's real home is shared with
    /// every other build on this machine.
    fn fresh_home(&self, scratch: &Scratch) -> User {
        let home = scratch.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::os::unix::fs::chown(&home, Some(self.user.uid), Some(self.user.gid)).unwrap();
        User {
            home: home.to_str().unwrap().to_owned(),
            ..self.user.clone()
        }
    }

    /// A copy of the action the build user can read, with `change` appended to `entrypoint.sh`
    /// as one more line (the late layer), when given.
    fn context(&self, name: &str, change: Option<&str>) -> PathBuf {
        let dir = self.work.join(name);
        copy_tree(&self.action, &dir);
        if let Some(change) = change {
            let script = dir.join("entrypoint.sh");
            let mut text = std::fs::read_to_string(&script).unwrap();
            text.push_str(change);
            text.push('\n');
            std::fs::write(&script, text).unwrap();
        }
        let output = Command::new("chmod")
            .args(["-R", "a+rX"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(output.status.success());
        dir
    }
}

/// A build log in memory, each line prefixed with the milliseconds since the build started, so
/// the saved logs show where a build spends its time. `LocalExecutor` writes whole lines.
struct TimedLog {
    started: Instant,
    text: Vec<u8>,
    at_line_start: bool,
}

impl TimedLog {
    fn new() -> TimedLog {
        TimedLog {
            started: Instant::now(),
            text: Vec::new(),
            at_line_start: true,
        }
    }
}

impl tokio::io::AsyncWrite for TimedLog {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        for &byte in buf {
            if self.at_line_start {
                let stamp = format!("[{:7.0} ms] ", ms(self.started.elapsed()));
                self.text.extend_from_slice(stamp.as_bytes());
            }
            self.text.push(byte);
            self.at_line_start = byte == b'\n';
        }
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Steps taken from the cache, as `BuildOutcome::cache` reports them: `reused steps`.
fn cache_fields(outcome: &BuildOutcome) -> String {
    match outcome.cache {
        Some(cache) => format!("reused={} steps={}", cache.reused, cache.steps),
        None => "reused=none steps=none".to_owned(),
    }
}

fn driver(log: &str) -> &'static str {
    if log.contains("storage driver: overlay") {
        "overlay"
    } else {
        "vfs"
    }
}

async fn run_bench() {
    assert!(
        running_as_root(),
        "the reuse benchmark needs root: run bench/reuse.sh as root"
    );
    let host = RegistryHost::parse(&var("REUSE_BENCH_REGISTRY")).expect("a registry host");
    let user = User::lookup(&var("REUSE_BENCH_USER"))
        .await
        .expect("the build user exists");
    let rounds = number("REUSE_BENCH_RUNS", 3);
    let lookups = number("REUSE_BENCH_LOOKUPS", 10);
    let bench = Bench {
        host: host.clone(),
        user,
        action: PathBuf::from(var("REUSE_BENCH_ACTION")),
        work: PathBuf::from(var("REUSE_BENCH_WORK")),
        by_hand: PathBuf::from(var("REUSE_BENCH_BY_HAND")),
        build_options: options::parse(Stage::Build, "--tls-verify=false").unwrap(),
        push_options: options::parse(Stage::Push, "--tls-verify=false").unwrap(),
        logs: std::env::var_os("REUSE_BENCH_LOGS").map(PathBuf::from),
    };
    if let Some(dir) = &bench.logs {
        std::fs::create_dir_all(dir).unwrap();
    }

    // The base image the action's `FROM` names, built from busybox-static (no internet here).
    let base = bench.work.join("busybox");
    std::fs::create_dir_all(&base).unwrap();
    set_mode(&base, 0o755);
    busybox_context(&base);
    let output = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&base)
        .output()
        .unwrap();
    assert!(output.status.success());
    std::fs::rename(base.join("Containerfile"), base.join("Dockerfile")).unwrap();
    let busybox = ImageRef::with_tag(&host, &host, "busybox", "latest");
    bench.build(&base, &busybox, None, Vec::new()).await;

    for round in 0..=rounds {
        let name = format!("bench/reuse-{round}");
        let new_image = || ImageRef::new(&host, &host, &name);

        // ref: by hand, cold, into a repository of its own.
        let context = bench.context(&format!("a-{round}"), None);
        let (hand, log) = bench
            .by_hand(
                &context,
                &ImageRef::new(&host, &host, &format!("bench/by-hand-{round}")).push_ref(),
            )
            .await;
        bench.save_log(round, "ref", &log);
        println!("REUSE-BENCH round={round} case=ref ms={:.1}", ms(hand));

        // a: first time: key miss, build with the cache, push the key tag.
        let image = new_image();
        let cache = BuildCache::PerAction.repository(&image.push_name());
        let started = Instant::now();
        let lookup = bench.lookup(&context, &image, true).await;
        assert!(lookup.found.is_none(), "round {round}: a fresh repository");
        let key_tag = image.retagged(&lookup.key.tag()).push_ref();
        let (built, log) = bench
            .build(&context, &image, cache.clone(), vec![key_tag.clone()])
            .await;
        let elapsed = started.elapsed();
        bench.save_log(round, "a", &log);
        assert!(
            log.contains(&format!("also pushed {key_tag}")),
            "the key tag is pushed:\n{log}"
        );
        println!(
            "REUSE-BENCH round={round} case=a ms={:.1} lookup_ms={:.1} {} driver={}",
            ms(elapsed),
            ms(lookup.scan_key + lookup.find),
            cache_fields(&built),
            driver(&log)
        );
        let digest = built.digest.clone().expect("pushed");

        // b: unchanged: scan, key, find, retag; nothing is built.
        for _ in 0..lookups {
            let image = new_image();
            let started = Instant::now();
            let lookup = bench.lookup(&context, &image, true).await;
            let found = lookup.found.as_ref().expect("the key tag of round's a");
            let retag = Instant::now();
            lookup
                .registry
                .retag(&image.push_repository(), found, image.tag())
                .await
                .expect("the registry takes the new tag");
            let retag = retag.elapsed();
            let elapsed = started.elapsed();
            assert_eq!(found.digest, digest, "the key tag is a's image");
            println!(
                "REUSE-BENCH round={round} case=b ms={:.2} scan_key_ms={:.2} find_ms={:.2} retag_ms={:.2}",
                ms(elapsed),
                ms(lookup.scan_key),
                ms(lookup.find),
                ms(retag)
            );
        }

        // c and d: one line more in entrypoint.sh, different in every round.
        let changed = bench.context(
            &format!("c-{round}"),
            Some(&format!("echo 'change {round}' >/dev/null")),
        );
        let cases = if round % 2 == 0 {
            ["c", "d"]
        } else {
            ["d", "c"]
        };
        for case in cases {
            let image = new_image();
            if case == "c" {
                let started = Instant::now();
                let lookup = bench.lookup(&changed, &image, true).await;
                assert!(lookup.found.is_none(), "a changed action has a new key");
                let key_tag = image.retagged(&lookup.key.tag()).push_ref();
                let (built, log) = bench
                    .build(&changed, &image, cache.clone(), vec![key_tag])
                    .await;
                bench.save_log(round, "c", &log);
                println!(
                    "REUSE-BENCH round={round} case=c ms={:.1} lookup_ms={:.1} {} driver={}",
                    ms(started.elapsed()),
                    ms(lookup.scan_key + lookup.find),
                    cache_fields(&built),
                    driver(&log)
                );
            } else {
                let started = Instant::now();
                let (built, log) = bench.build(&changed, &image, None, Vec::new()).await;
                bench.save_log(round, "d", &log);
                println!(
                    "REUSE-BENCH round={round} case=d ms={:.1} {} driver={}",
                    ms(started.elapsed()),
                    cache_fields(&built),
                    driver(&log)
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by bench/reuse.sh (as root) in release mode"]
async fn reuse_and_layer_cache_against_plain_buildah() {
    use tokio::signal::unix::{SignalKind, signal};
    // Stopped by the script (Ctrl-C, or its trap): dropping the benchmark's future stops the
    // build's process group and removes its store (`LocalExecutor`, `Scratch`), which a
    // process killed outright would leave behind.
    let mut interrupt = signal(SignalKind::interrupt()).unwrap();
    let mut terminate = signal(SignalKind::terminate()).unwrap();
    tokio::select! {
        () = run_bench() => {}
        _ = interrupt.recv() => panic!("interrupted"),
        _ = terminate.recv() => panic!("terminated"),
    }
}
