//! Waiting for a pod: by watch where the service account may watch pods, by polling `get` on
//! the one pod where it may not (ARC's stock Role has no `watch` on pods), with one policy for
//! what is worth waiting for.
//!
//! [`evaluate`] is a pure function from a pod to where it stands relative to a [`Goal`]; the
//! loop in [`until`] only feeds it and applies the waiting rules (docs/user/troubleshooting.md):
//!
//! - states a pod cannot leave by itself fail at once with the kubelet's reason (an invalid
//!   image name, `imagePullPolicy: Never` without the image, a pull refused as not found or
//!   unauthorized, a container config error, a failed init container);
//! - states that heal by themselves are waited out: `Unschedulable` (a cluster autoscaler adds
//!   a node, a preemption completes, a volume binds) until the start timeout, and a pull that
//!   failed for a passing reason (5xx, 429, a network error) for the image-pull bound, while
//!   the kubelet retries with its own back-off. The scheduler's and kubelet's messages are
//!   printed once, and again when they change, and the last one is in the final error;
//! - an API server that is gone for a while (an upgrade, a restart) does not end the wait: a
//!   watch resumes, a poll keeps polling, for up to [`retry::OUTAGE_BUDGET`].
//!
//! Owns when a pod counts as started, ended or failed; creates and deletes nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::runtime::watcher::{self, Event};
use tokio::time::Instant;
use tracing::{debug, info};

use super::Session;
use super::retry;

/// What we wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Goal {
    /// The pod runs and this container is running (the job pod's `job` container).
    Running {
        /// The container that must run.
        container: String,
    },
    /// This init container is running (a step pod's `stage`, waiting for the hook's copy).
    InitRunning {
        /// The init container.
        container: String,
    },
    /// This container has started: it runs, or has already ended (when to follow its log).
    Started {
        /// The container.
        container: String,
    },
    /// This container has ended (step and build pods): its exit code is the result.
    Terminated {
        /// The container whose end we wait for.
        container: String,
    },
}

/// Where a pod stands relative to a goal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Not there yet; the text says what it waits for (for the timeout message).
    Waiting(String),
    /// Not there yet, held up by something that usually heals by itself: the scheduler finds
    /// no node (`Unschedulable`), or the kubelet retries a pull that failed for a passing reason
    /// (`ErrImagePull`, `ImagePullBackOff`). [`until`] decides how long to wait.
    Stalled(PodFailure),
    /// The goal is reached.
    Reached(Reached),
    /// The pod cannot reach the goal.
    Failed(PodFailure),
}

/// A reached goal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reached {
    /// The container runs.
    Running,
    /// The container started (it may have ended already).
    Started,
    /// The container ended.
    Terminated {
        /// Its exit code.
        exit_code: i32,
        /// Its termination message (`terminationMessagePath`), if any.
        message: Option<String>,
        /// The kubelet's reason (`Completed`, `Error`, `OOMKilled`...).
        reason: Option<String>,
    },
}

/// Why a pod cannot reach its goal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFailure {
    /// The container concerned, if one is.
    pub container: Option<String>,
    /// Its image, when the failure is about the image.
    pub image: Option<String>,
    /// The machine-readable reason (`ErrImagePull`, `Unschedulable`...).
    pub reason: String,
    /// The kubelet's or scheduler's message.
    pub message: String,
}

impl fmt::Display for PodFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.container, &self.image) {
            (Some(c), Some(i)) => write!(f, "container `{c}` (image `{i}`): ")?,
            (Some(c), None) => write!(f, "container `{c}`: ")?,
            _ => {}
        }
        write!(f, "{}", self.reason)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl PodFailure {
    /// Whether this is an image-pull problem (the error then hints at credentials).
    pub fn is_image_pull(&self) -> bool {
        matches!(
            self.reason.as_str(),
            PULL_FAILED | PULL_BACK_OFF | "InvalidImageName" | "ErrImageNeverPull"
        )
    }

    /// Whether the scheduler found no node for the pod.
    pub fn is_unschedulable(&self) -> bool {
        self.reason == UNSCHEDULABLE
    }
}

const UNSCHEDULABLE: &str = "Unschedulable";
/// The kubelet's reasons while it retries a pull (`pkg/kubelet/images`: `ErrImagePull`,
/// `ErrImagePullBackOff`); they alternate until the pull succeeds.
const PULL_FAILED: &str = "ErrImagePull";
const PULL_BACK_OFF: &str = "ImagePullBackOff";

/// Waiting reasons a container never leaves without a change of spec or credentials (kubelet
/// `images.ErrInvalidImageName`, `ErrImageNeverPull`, `kuberuntime.ErrCreateContainerConfig`,
/// `ErrCreateContainer`, `ErrRunContainer`).
const FATAL_WAITING: &[&str] = &[
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Whether the kubelet's `ErrImagePull` message says the pull cannot succeed by retrying: the
/// image or tag does not exist, or the registry refused the credentials. Registries and
/// runtimes word these differently; these are the words containerd, CRI-O and the common
/// registries (distribution, Docker Hub, GHCR, ECR, GCR, ACR, Harbor, Quay) use. Anything else
/// (5xx, 429 `toomanyrequests`, DNS, timeouts, connection resets) may pass.
pub fn pull_cannot_heal(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    const NOT_FOUND: &[&str] = &[
        "code = notfound",
        ": not found",
        "manifest unknown",
        "name unknown",
        "repository does not exist",
        "not found: manifest",
    ];
    const REFUSED: &[&str] = &[
        "401 unauthorized",
        "403 forbidden",
        "unauthorized",
        "authentication required",
        "pull access denied",
        "denied: ",
        "insufficient_scope",
        "no basic auth credentials",
    ];
    NOT_FOUND.iter().chain(REFUSED).any(|word| m.contains(word))
}

/// Where `pod` stands relative to `goal`.
pub fn evaluate(pod: &Pod, goal: &Goal) -> Progress {
    let Some(status) = pod.status.as_ref() else {
        return Progress::Waiting("the pod has no status yet".to_owned());
    };
    let image_of = |name: &str| {
        pod.spec.as_ref().and_then(|s| {
            s.init_containers
                .iter()
                .flatten()
                .chain(s.containers.iter())
                .find(|c| c.name == name)
                .and_then(|c| c.image.clone())
        })
    };

    // Scheduling: `PodScheduled` False with reason `Unschedulable` (scheduler
    // `FailedScheduling`). Not terminal: the pod starts as soon as a node fits.
    let mut stalled = None;
    if let Some(condition) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        && condition.reason.as_deref() == Some(UNSCHEDULABLE)
    {
        stalled = Some(PodFailure {
            container: None,
            image: None,
            reason: UNSCHEDULABLE.to_owned(),
            message: condition.message.clone().unwrap_or_default(),
        });
    }

    // Init containers: one that ended non-zero fails the pod (restartPolicy Never).
    for c in status.init_container_statuses.iter().flatten() {
        match waiting_verdict(c, image_of(&c.name)) {
            Some(Verdict::Fatal(failure)) => return Progress::Failed(failure),
            Some(Verdict::Heals(failure)) => {
                stalled.get_or_insert(failure);
            }
            None => {}
        }
        if let Some(t) = c.state.as_ref().and_then(|s| s.terminated.as_ref())
            && t.exit_code != 0
        {
            return Progress::Failed(PodFailure {
                container: Some(c.name.clone()),
                image: image_of(&c.name),
                reason: format!("init container exited with code {}", t.exit_code),
                message: t.message.clone().or(t.reason.clone()).unwrap_or_default(),
            });
        }
    }

    let statuses: Vec<&ContainerStatus> = status.container_statuses.iter().flatten().collect();
    for c in &statuses {
        match waiting_verdict(c, image_of(&c.name)) {
            Some(Verdict::Fatal(failure)) => return Progress::Failed(failure),
            Some(Verdict::Heals(failure)) => {
                stalled.get_or_insert(failure);
            }
            None => {}
        }
    }

    let phase = status.phase.as_deref().unwrap_or("Pending");
    match goal {
        Goal::InitRunning { container } => {
            let init = status
                .init_container_statuses
                .iter()
                .flatten()
                .find(|c| &c.name == container);
            let state = init.and_then(|c| c.state.as_ref());
            if state.is_some_and(|s| s.running.is_some()) {
                Progress::Reached(Reached::Running)
            } else if state.is_some_and(|s| s.terminated.is_some()) {
                Progress::Failed(PodFailure {
                    container: Some(container.clone()),
                    image: image_of(container),
                    reason: "init container ended before the hook was ready".to_owned(),
                    message: String::new(),
                })
            } else if matches!(phase, "Failed" | "Succeeded") {
                Progress::Failed(PodFailure {
                    container: None,
                    image: None,
                    reason: format!("pod {phase}"),
                    message: status.message.clone().unwrap_or_default(),
                })
            } else {
                waiting(stalled, phase, &statuses)
            }
        }
        Goal::Started { container } => {
            let state = statuses
                .iter()
                .find(|c| &c.name == container)
                .and_then(|c| c.state.as_ref());
            if state.is_some_and(|s| s.running.is_some() || s.terminated.is_some()) {
                Progress::Reached(Reached::Started)
            } else if phase == "Failed" {
                Progress::Failed(PodFailure {
                    container: Some(container.clone()),
                    image: image_of(container),
                    reason: "pod Failed".to_owned(),
                    message: status.message.clone().unwrap_or_default(),
                })
            } else {
                waiting(stalled, phase, &statuses)
            }
        }
        Goal::Running { container } => {
            let target = statuses.iter().find(|c| &c.name == container);
            if let Some(t) = target.and_then(|c| c.state.as_ref()?.terminated.as_ref()) {
                return Progress::Failed(PodFailure {
                    container: Some(container.clone()),
                    image: image_of(container),
                    reason: format!("exited with code {} before the job started", t.exit_code),
                    message: t.message.clone().or(t.reason.clone()).unwrap_or_default(),
                });
            }
            // Any other container ending while we wait: a service that crashed at start.
            if let Some((name, t)) = statuses
                .iter()
                .find_map(|c| Some((&c.name, c.state.as_ref()?.terminated.as_ref()?)))
                && t.exit_code != 0
            {
                return Progress::Failed(PodFailure {
                    container: Some(name.clone()),
                    image: image_of(name),
                    reason: format!("exited with code {}", t.exit_code),
                    message: t.message.clone().or(t.reason.clone()).unwrap_or_default(),
                });
            }
            if matches!(phase, "Failed" | "Succeeded") {
                return Progress::Failed(PodFailure {
                    container: None,
                    image: None,
                    reason: format!("pod {phase}"),
                    message: status.message.clone().unwrap_or_default(),
                });
            }
            let running =
                target.is_some_and(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()));
            if phase == "Running" && running {
                Progress::Reached(Reached::Running)
            } else {
                waiting(stalled, phase, &statuses)
            }
        }
        Goal::Terminated { container } => {
            // Wait for the container's state, not the phase: the phase turns about a second
            // later (measured on a real node; docs/user/build-pod-security.md).
            let target = statuses.iter().find(|c| &c.name == container);
            if let Some(t) = target.and_then(|c| c.state.as_ref()?.terminated.as_ref()) {
                return Progress::Reached(Reached::Terminated {
                    exit_code: t.exit_code,
                    message: t.message.clone().filter(|m| !m.is_empty()),
                    reason: t.reason.clone(),
                });
            }
            if phase == "Failed" {
                return Progress::Failed(PodFailure {
                    container: Some(container.clone()),
                    image: image_of(container),
                    reason: "pod Failed".to_owned(),
                    message: status.message.clone().unwrap_or_default(),
                });
            }
            waiting(stalled, phase, &statuses)
        }
    }
}

/// What a container's `waiting` state says, when it says something is wrong.
enum Verdict {
    /// It will not start without a change.
    Fatal(PodFailure),
    /// It may start once the kubelet's retries succeed.
    Heals(PodFailure),
}

fn waiting_verdict(c: &ContainerStatus, image: Option<String>) -> Option<Verdict> {
    let waiting = c.state.as_ref()?.waiting.as_ref()?;
    let reason = waiting.reason.as_deref()?;
    let failure = || PodFailure {
        container: Some(c.name.clone()),
        image: image
            .clone()
            .or_else(|| Some(c.image.clone()).filter(|i| !i.is_empty())),
        reason: reason.to_owned(),
        message: waiting.message.clone().unwrap_or_default(),
    };
    if FATAL_WAITING.contains(&reason) {
        return Some(Verdict::Fatal(failure()));
    }
    match reason {
        PULL_FAILED if pull_cannot_heal(waiting.message.as_deref().unwrap_or_default()) => {
            Some(Verdict::Fatal(failure()))
        }
        PULL_FAILED | PULL_BACK_OFF => Some(Verdict::Heals(failure())),
        _ => None,
    }
}

fn waiting(stalled: Option<PodFailure>, phase: &str, statuses: &[&ContainerStatus]) -> Progress {
    match stalled {
        Some(failure) => Progress::Stalled(failure),
        None => Progress::Waiting(describe(phase, statuses)),
    }
}

fn describe(phase: &str, statuses: &[&ContainerStatus]) -> String {
    let waiting: Vec<String> = statuses
        .iter()
        .filter_map(|c| {
            let w = c.state.as_ref()?.waiting.as_ref()?;
            Some(format!(
                "`{}` waiting ({})",
                c.name,
                w.reason.as_deref().unwrap_or("no reason")
            ))
        })
        .collect();
    if waiting.is_empty() {
        format!("pod phase {phase}")
    } else {
        format!("pod phase {phase}, {}", waiting.join(", "))
    }
}

/// Why waiting ended without the goal.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The pod cannot reach the goal.
    #[error("pod `{pod}` cannot start: {failure}")]
    Failed {
        /// The pod.
        pod: String,
        /// What is wrong.
        failure: PodFailure,
    },
    /// The time ran out.
    #[error("pod `{pod}` did not get there within {}s; last seen: {}", timeout.as_secs(), stalled.as_ref().map_or_else(|| last.clone(), ToString::to_string))]
    Timeout {
        /// The pod.
        pod: String,
        /// The limit.
        timeout: Duration,
        /// The last state seen.
        last: String,
        /// What held the pod up when the time ran out, if something did (`Unschedulable`, a
        /// pull the kubelet was retrying).
        stalled: Option<PodFailure>,
    },
    /// The pod was deleted while we waited.
    #[error("pod `{pod}` was deleted while the hook waited for it")]
    Deleted {
        /// The pod.
        pod: String,
    },
    /// The API server refused to show the pod (403), or stayed unreachable for longer than
    /// [`retry::OUTAGE_BUDGET`].
    #[error("failed to read pod `{pod}` from the Kubernetes API")]
    Api {
        /// The pod.
        pod: String,
        /// The last error.
        #[source]
        source: kube::Error,
    },
    /// The watch failed for good.
    #[error("failed to watch pod `{pod}`")]
    Watch {
        /// The pod.
        pod: String,
        /// The watcher's error.
        #[source]
        source: watcher::Error,
    },
}

/// Whether this process's service account may watch pods. Learnt from the pre-flight check or
/// from the first watch the API server refuses, then kept for the rest of the command, so a
/// Role without `watch` (ARC's stock Role) costs one refused request at most.
#[derive(Debug, Clone, Default)]
pub struct WatchPermission(Arc<AtomicU8>);

// 0: not known yet (the default).
const WATCH_GRANTED: u8 = 1;
const WATCH_DENIED: u8 = 2;

impl WatchPermission {
    /// Record what the API server said.
    pub fn learn(&self, granted: bool) {
        let value = if granted { WATCH_GRANTED } else { WATCH_DENIED };
        self.0.store(value, Ordering::Relaxed);
    }

    /// Whether watching is known to be refused.
    pub fn denied(&self) -> bool {
        self.0.load(Ordering::Relaxed) == WATCH_DENIED
    }

    /// Whether watching is known to be allowed.
    pub fn granted(&self) -> bool {
        self.0.load(Ordering::Relaxed) == WATCH_GRANTED
    }
}

/// Wait for pod `name` until [`evaluate`] says the goal is reached or cannot be, or `timeout`
/// passes. Watches the pod when the service account may, polls it otherwise (see
/// [`poll_interval`]); waits out `Unschedulable` until `timeout` and a pull the kubelet retries
/// until [`crate::config::Config::image_pull_timeout`], printing what holds the pod up when it
/// changes.
///
/// # Errors
/// [`WaitError`]: failure with the reason, timeout with the last state, deletion, an API that
/// refuses or stays away.
#[tracing::instrument(skip_all, fields(pod = %name))]
pub async fn until(
    session: &Session,
    name: &str,
    goal: &Goal,
    timeout: Duration,
) -> Result<(Pod, Reached), WaitError> {
    let mut rules = Rules::new(name, session.config.image_pull_timeout);
    let mut feed = Feed::new(session, name);
    match tokio::time::timeout(timeout, follow(&mut feed, &mut rules, goal)).await {
        Ok(result) => result,
        Err(_) => Err(WaitError::Timeout {
            pod: name.to_owned(),
            timeout,
            last: rules.last,
            stalled: rules.stalled,
        }),
    }
}

async fn follow(
    feed: &mut Feed<'_>,
    rules: &mut Rules,
    goal: &Goal,
) -> Result<(Pod, Reached), WaitError> {
    loop {
        let Some(pod) = feed.next().await? else {
            return Err(WaitError::Deleted {
                pod: rules.pod.clone(),
            });
        };
        if let Some(done) = rules.observe(evaluate(&pod, goal), Instant::now()) {
            return done.map(|reached| (pod, reached));
        }
    }
}

/// The waiting rules applied to each [`Progress`]: what ends the wait, and what is printed.
#[derive(Debug)]
struct Rules {
    pod: String,
    pull_bound: Duration,
    /// The last state, for the timeout message.
    last: String,
    /// What held the pod up at the last look.
    stalled: Option<PodFailure>,
    /// The last message printed, so that each is printed once.
    said: Option<String>,
    /// Per container: when its pull first failed, and the kubelet's last real pull error (an
    /// `ImagePullBackOff` only says "Back-off pulling image").
    pulls: BTreeMap<String, (Instant, Option<PodFailure>)>,
}

impl Rules {
    fn new(pod: &str, pull_bound: Duration) -> Rules {
        Rules {
            pod: pod.to_owned(),
            pull_bound,
            last: "no answer from the API server yet".to_owned(),
            stalled: None,
            said: None,
            pulls: BTreeMap::new(),
        }
    }

    /// `None` to keep waiting; the end of the wait otherwise.
    fn observe(&mut self, progress: Progress, now: Instant) -> Option<Result<Reached, WaitError>> {
        let failed = |failure| {
            Some(Err(WaitError::Failed {
                pod: self.pod.clone(),
                failure,
            }))
        };
        let stalled = match progress {
            Progress::Reached(reached) => return Some(Ok(reached)),
            Progress::Failed(failure) => return failed(failure),
            Progress::Waiting(state) => {
                debug!(%state, "waiting");
                self.last = state;
                self.stalled = None;
                self.pulls.clear();
                return None;
            }
            Progress::Stalled(failure) => failure,
        };
        self.last = stalled.to_string();
        if stalled.is_image_pull() {
            let container = stalled.container.clone().unwrap_or_default();
            let (since, real) = self.pulls.entry(container).or_insert((now, None));
            if stalled.reason == PULL_FAILED {
                *real = Some(stalled.clone());
            }
            let since = *since;
            let shown = real.clone().unwrap_or_else(|| stalled.clone());
            if now.duration_since(since) >= self.pull_bound {
                let mut failure = shown;
                failure.message = format!(
                    "{} (the kubelet kept retrying for {}s)",
                    failure.message,
                    self.pull_bound.as_secs()
                );
                return failed(failure);
            }
            self.say(&format!(
                "pod `{}`: the image pull failed; the kubelet retries it (for up to {}s): {shown}",
                self.pod,
                self.pull_bound.as_secs()
            ));
        } else {
            self.say(&format!(
                "pod `{}` is waiting for a node: {}",
                self.pod, stalled.message
            ));
        }
        self.stalled = Some(stalled);
        None
    }

    fn say(&mut self, line: &str) {
        if self.said.as_deref() != Some(line) {
            info!("{line}");
            self.said = Some(line.to_owned());
        }
    }
}

/// Where pod updates come from: a watch, or polls of the one pod.
struct Feed<'a> {
    session: &'a Session,
    name: &'a str,
    watch: Option<futures::stream::BoxStream<'static, watcher::Result<Event<Pod>>>>,
    /// When polling started (the poll interval grows with it).
    polling_since: Instant,
    /// Whether the next poll is the first (no pause before it).
    first_poll: bool,
    /// When the API server stopped answering, while it does not.
    outage: Option<Instant>,
    backoff: retry::Backoff,
    /// Whether the watch's current (re)list found the pod.
    listed: bool,
}

impl<'a> Feed<'a> {
    fn new(session: &'a Session, name: &'a str) -> Feed<'a> {
        let mut feed = Feed {
            session,
            name,
            watch: None,
            polling_since: Instant::now(),
            first_poll: true,
            outage: None,
            backoff: retry::Backoff::default(),
            listed: false,
        };
        if !session.watch.denied() {
            feed.watch = Some(feed.new_watch());
        }
        feed
    }

    fn new_watch(&self) -> futures::stream::BoxStream<'static, watcher::Result<Event<Pod>>> {
        let config = watcher::Config::default().fields(&format!("metadata.name={}", self.name));
        watcher::watcher(self.session.pods(), config).boxed()
    }

    /// The pod's next state; `None` when it is gone.
    async fn next(&mut self) -> Result<Option<Pod>, WaitError> {
        loop {
            let Some(stream) = self.watch.as_mut() else {
                return self.poll().await;
            };
            let Ok(event) = tokio::time::timeout(WATCH_QUIET, stream.next()).await else {
                // Nothing for a while: a quiet pod, or a connection that died without a word
                // (half-open). A new watch lists the pod again either way.
                debug!("no watch event for {WATCH_QUIET:?}; watching anew");
                self.watch = Some(self.new_watch());
                continue;
            };
            match event {
                Some(Ok(Event::Apply(pod) | Event::InitApply(pod))) => {
                    self.outage = None;
                    self.listed = true;
                    return Ok(Some(pod));
                }
                Some(Ok(Event::Delete(_))) | None => return Ok(None),
                Some(Ok(Event::Init)) => self.listed = false,
                // A (re)list that did not find the pod: it was deleted while the watch was
                // down (kube's watcher reports no `Delete` for that).
                Some(Ok(Event::InitDone)) if !self.listed => return Ok(None),
                Some(Ok(Event::InitDone)) => {}
                Some(Err(error)) if watch_forbidden(&error) => {
                    info!(
                        "the service account may not watch pods (ARC's Role does not grant it): waiting by polling the pod"
                    );
                    self.session.watch.learn(false);
                    self.watch = None;
                    self.polling_since = Instant::now();
                }
                Some(Err(error)) => {
                    // The watcher resumes from the last resourceVersion on the next poll; pause
                    // so that a server that is down is not hammered, and give up only after
                    // the outage budget.
                    let since = *self.outage.get_or_insert_with(Instant::now);
                    if since.elapsed() > retry::OUTAGE_BUDGET {
                        return Err(WaitError::Watch {
                            pod: self.name.to_owned(),
                            source: error,
                        });
                    }
                    debug!(%error, "watch error; resuming");
                    tokio::time::sleep(self.backoff.next_delay()).await;
                }
            }
        }
    }

    async fn poll(&mut self) -> Result<Option<Pod>, WaitError> {
        loop {
            if self.first_poll {
                self.first_poll = false;
            } else if self.outage.is_some() {
                tokio::time::sleep(self.backoff.next_delay()).await;
            } else {
                tokio::time::sleep(poll_interval(self.polling_since.elapsed())).await;
            }
            let pods = self.session.pods();
            let answer = match tokio::time::timeout(POLL_TIMEOUT, pods.get_opt(self.name)).await {
                Ok(answer) => answer,
                // A connection that died without a word: ask again on a new one.
                Err(_) => Err(kube::Error::Service(
                    format!("no answer within {POLL_TIMEOUT:?}").into(),
                )),
            };
            match answer {
                Ok(pod) => {
                    if self.outage.take().is_some() {
                        self.backoff = retry::Backoff::default();
                    }
                    return Ok(pod);
                }
                Err(error) if retry::is_transient(&error) => {
                    let since = *self.outage.get_or_insert_with(Instant::now);
                    if since.elapsed() > retry::OUTAGE_BUDGET {
                        return Err(WaitError::Api {
                            pod: self.name.to_owned(),
                            source: error,
                        });
                    }
                    debug!(%error, "the API server did not answer; polling on");
                }
                Err(source) => {
                    return Err(WaitError::Api {
                        pod: self.name.to_owned(),
                        source,
                    });
                }
            }
        }
    }
}

/// How long a watch may stay silent before it is made anew.
const WATCH_QUIET: Duration = Duration::from_secs(60);
/// How long one poll may take.
const POLL_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a watch failed because the service account may not watch pods.
fn watch_forbidden(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => status.code == 403,
        watcher::Error::WatchError(status) => status.code == 403,
        _ => false,
    }
}

/// The pause between two polls of a pod, by how long the wait has lasted: a pod that starts
/// in a second or two (the common case) is seen within 100 ms of it; a pod that takes minutes
/// (a large image, a new node) costs the API server one `get` a second.
pub fn poll_interval(waited: Duration) -> Duration {
    match waited.as_secs() {
        0..3 => Duration::from_millis(100),
        3..10 => Duration::from_millis(250),
        10..30 => Duration::from_millis(500),
        _ => Duration::from_secs(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [
                {"name": "job", "image": "node:22"},
                {"name": "redis", "image": "redis:7"}
            ], "initContainers": [{"name": "fs-init", "image": "runner:1"}]},
            "status": status
        }))
        .unwrap()
    }

    fn running_goal() -> Goal {
        Goal::Running {
            container: "job".into(),
        }
    }

    #[test]
    fn running_pod_reaches_running() {
        let p = pod(json!({"phase": "Running", "containerStatuses": [
            {"name": "job", "image": "node:22", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}},
            {"name": "redis", "image": "redis:7", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}}
        ]}));
        assert_eq!(
            evaluate(&p, &running_goal()),
            Progress::Reached(Reached::Running)
        );
    }

    fn pulling(reason: &str, message: &str) -> Pod {
        pod(json!({"phase": "Pending", "containerStatuses": [
            {"name": "job", "image": "node:22", "imageID": "", "ready": false, "restartCount": 0, "state": {"running": {}}},
            {"name": "redis", "image": "redis:7", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"waiting": {"reason": reason, "message": message}}}
        ]}))
    }

    // The kubelet's messages, as a 1.28 node with containerd writes them.
    const NOT_FOUND: &str = "rpc error: code = NotFound desc = failed to pull and unpack image \"127.0.0.1:30500/facts/nothing:1\": failed to resolve reference \"127.0.0.1:30500/facts/nothing:1\": 127.0.0.1:30500/facts/nothing:1: not found";
    const NO_SUCH_HOST: &str = "failed to pull and unpack image \"nonexistent.invalid/x:1\": failed to resolve reference \"nonexistent.invalid/x:1\": failed to do request: Head \"https://nonexistent.invalid/v2/x/manifests/1\": dial tcp: lookup nonexistent.invalid on 10.255.255.53:53: no such host";
    const UNAUTHORIZED: &str = "rpc error: code = Unknown desc = failed to pull and unpack image \"ghcr.io/o/private:1\": failed to resolve reference \"ghcr.io/o/private:1\": failed to authorize: failed to fetch anonymous token: unexpected status from GET request to https://ghcr.io/token?scope=repository%3Ao%2Fprivate%3Apull&service=ghcr.io: 401 Unauthorized";
    const SERVER_ERROR: &str = "rpc error: code = Unknown desc = failed to pull and unpack image \"registry.example/app:1\": failed to resolve reference \"registry.example/app:1\": unexpected status from HEAD request to https://registry.example/v2/app/manifests/1: 503 Service Unavailable";
    const TOO_MANY: &str = "rpc error: code = Unknown desc = failed to pull and unpack image \"docker.io/library/redis:7\": failed to copy: httpReadSeeker: failed open: unexpected status code https://registry-1.docker.io/v2/library/redis/manifests/sha256:0: 429 Too Many Requests - Server message: toomanyrequests: You have reached your pull rate limit.";

    #[test]
    fn pulls_that_cannot_heal_are_told_from_passing_failures() {
        assert!(pull_cannot_heal(NOT_FOUND));
        assert!(pull_cannot_heal(UNAUTHORIZED));
        assert!(pull_cannot_heal(
            "rpc error: code = Unknown desc = failed to pull and unpack image \"docker.io/library/nope:1\": failed to resolve reference \"docker.io/library/nope:1\": pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed"
        ));
        assert!(!pull_cannot_heal(NO_SUCH_HOST));
        assert!(!pull_cannot_heal(SERVER_ERROR));
        assert!(!pull_cannot_heal(TOO_MANY));
    }

    #[test]
    fn a_missing_image_fails_at_once_with_the_kubelets_message() {
        let Progress::Failed(f) = evaluate(&pulling("ErrImagePull", NOT_FOUND), &running_goal())
        else {
            panic!("should fail")
        };
        assert!(f.is_image_pull());
        assert_eq!(
            f.to_string(),
            format!("container `redis` (image `redis:7`): ErrImagePull: {NOT_FOUND}")
        );
        for (reason, message) in [
            (
                "InvalidImageName",
                "Failed to apply default image tag \"UPPER/Case:tag\": couldn't parse image name \"UPPER/Case:tag\": invalid reference format: repository name must be lowercase",
            ),
            (
                "ErrImageNeverPull",
                "Container image \"localhost/busybox:9.99\" is not present with pull policy of Never",
            ),
        ] {
            assert!(
                matches!(
                    evaluate(&pulling(reason, message), &running_goal()),
                    Progress::Failed(_)
                ),
                "{reason}"
            );
        }
    }

    #[test]
    fn a_pull_the_kubelet_retries_stalls_instead_of_failing() {
        for (reason, message) in [
            ("ErrImagePull", SERVER_ERROR),
            ("ErrImagePull", NO_SUCH_HOST),
            ("ImagePullBackOff", "Back-off pulling image \"redis:7\""),
        ] {
            let Progress::Stalled(f) = evaluate(&pulling(reason, message), &running_goal()) else {
                panic!("{reason} should stall")
            };
            assert_eq!(f.container.as_deref(), Some("redis"));
            assert_eq!(f.message, message);
        }
    }

    #[test]
    fn unschedulable_stalls_with_the_scheduler_message() {
        let p = pod(json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/3 nodes are available: 3 Insufficient cpu."}
        ]}));
        let Progress::Stalled(f) = evaluate(&p, &running_goal()) else {
            panic!("should stall")
        };
        assert!(f.is_unschedulable());
        assert_eq!(
            f.to_string(),
            "Unschedulable: 0/3 nodes are available: 3 Insufficient cpu."
        );
    }

    fn unschedulable(message: &str) -> Progress {
        Progress::Stalled(PodFailure {
            container: None,
            image: None,
            reason: "Unschedulable".into(),
            message: message.into(),
        })
    }

    fn stalled_pull(reason: &str, message: &str) -> Progress {
        evaluate(&pulling(reason, message), &running_goal())
    }

    #[test]
    fn rules_wait_out_unschedulable_and_say_each_message_once() {
        let mut rules = Rules::new("p", Duration::from_secs(180));
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(
                rules
                    .observe(
                        unschedulable("0/1 nodes are available: 1 node(s) were unschedulable."),
                        t0 + Duration::from_secs(i)
                    )
                    .is_none()
            );
        }
        let first = rules.said.clone().expect("said");
        assert!(
            first.contains(
                "waiting for a node: 0/1 nodes are available: 1 node(s) were unschedulable."
            ),
            "{first}"
        );
        assert!(
            rules
                .observe(
                    unschedulable("0/2 nodes are available: 2 Insufficient cpu."),
                    t0 + Duration::from_secs(4)
                )
                .is_none()
        );
        assert_ne!(rules.said.as_ref(), Some(&first), "a new message is said");
        assert!(
            rules
                .stalled
                .as_ref()
                .is_some_and(PodFailure::is_unschedulable)
        );
        // Scheduled after all: the wait goes on normally and ends when the goal is reached.
        assert!(
            rules
                .observe(
                    Progress::Waiting("pod phase Pending".into()),
                    t0 + Duration::from_secs(9)
                )
                .is_none()
        );
        assert!(rules.stalled.is_none());
        assert_eq!(
            rules
                .observe(
                    Progress::Reached(Reached::Running),
                    t0 + Duration::from_secs(10)
                )
                .map(|r| r.is_ok()),
            Some(true)
        );
    }

    #[test]
    fn rules_let_the_kubelet_retry_a_pull_up_to_the_bound_and_keep_its_message() {
        let bound = Duration::from_secs(60);
        let mut rules = Rules::new("p", bound);
        let t0 = Instant::now();
        assert!(
            rules
                .observe(stalled_pull("ErrImagePull", SERVER_ERROR), t0)
                .is_none()
        );
        assert!(
            rules
                .observe(
                    stalled_pull("ImagePullBackOff", "Back-off pulling image \"redis:7\""),
                    t0 + Duration::from_secs(15)
                )
                .is_none()
        );
        let said = rules.said.clone().expect("said");
        assert!(
            said.contains("503 Service Unavailable"),
            "the real pull error is shown, not the back-off: {said}"
        );
        let Some(Err(WaitError::Failed { failure, .. })) = rules.observe(
            stalled_pull("ImagePullBackOff", "Back-off pulling image \"redis:7\""),
            t0 + bound,
        ) else {
            panic!("the bound ends the wait")
        };
        assert_eq!(failure.reason, "ErrImagePull");
        assert!(
            failure.message.starts_with(SERVER_ERROR),
            "{}",
            failure.message
        );
        assert!(
            failure
                .message
                .ends_with("(the kubelet kept retrying for 60s)")
        );
    }

    #[test]
    fn a_pull_that_recovers_starts_the_bound_again() {
        let bound = Duration::from_secs(60);
        let mut rules = Rules::new("p", bound);
        let t0 = Instant::now();
        assert!(
            rules
                .observe(stalled_pull("ErrImagePull", SERVER_ERROR), t0)
                .is_none()
        );
        assert!(
            rules
                .observe(
                    Progress::Waiting("pod phase Pending".into()),
                    t0 + Duration::from_secs(40)
                )
                .is_none()
        );
        assert!(
            rules
                .observe(
                    stalled_pull("ErrImagePull", SERVER_ERROR),
                    t0 + Duration::from_secs(50)
                )
                .is_none()
        );
        assert!(
            rules
                .observe(
                    stalled_pull("ErrImagePull", SERVER_ERROR),
                    t0 + Duration::from_secs(70)
                )
                .is_none()
        );
    }

    #[test]
    fn a_timeout_while_unschedulable_reports_the_scheduler_message() {
        let error = WaitError::Timeout {
            pod: "p".into(),
            timeout: Duration::from_secs(600),
            last: "ignored".into(),
            stalled: Some(PodFailure {
                container: None,
                image: None,
                reason: "Unschedulable".into(),
                message:
                    "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: runners}."
                        .into(),
            }),
        };
        assert_eq!(
            error.to_string(),
            "pod `p` did not get there within 600s; last seen: Unschedulable: 0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: runners}."
        );
    }

    #[test]
    fn polling_is_fast_at_first_and_backs_off() {
        assert_eq!(poll_interval(Duration::ZERO), Duration::from_millis(100));
        assert_eq!(
            poll_interval(Duration::from_millis(2900)),
            Duration::from_millis(100)
        );
        assert_eq!(
            poll_interval(Duration::from_secs(5)),
            Duration::from_millis(250)
        );
        assert_eq!(
            poll_interval(Duration::from_secs(20)),
            Duration::from_millis(500)
        );
        assert_eq!(
            poll_interval(Duration::from_secs(3600)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn failed_init_container_fails() {
        let p = pod(json!({"phase": "Failed", "initContainerStatuses": [
            {"name": "fs-init", "image": "runner:1", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}
        ]}));
        let Progress::Failed(f) = evaluate(&p, &running_goal()) else {
            panic!("should fail")
        };
        assert_eq!(f.container.as_deref(), Some("fs-init"));
        assert!(f.reason.contains("code 1"), "{f}");
    }

    #[test]
    fn pending_without_reason_keeps_waiting_and_says_why() {
        let p = pod(json!({"phase": "Pending", "containerStatuses": [
            {"name": "job", "image": "node:22", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"waiting": {"reason": "ContainerCreating"}}}
        ]}));
        assert_eq!(
            evaluate(&p, &running_goal()),
            Progress::Waiting("pod phase Pending, `job` waiting (ContainerCreating)".into())
        );
    }

    #[test]
    fn terminated_goal_reads_the_container_state_before_the_phase() {
        let p = pod(json!({"phase": "Running", "containerStatuses": [
            {"name": "job", "image": "node:22", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 3, "reason": "Error", "message": "127.0.0.1/a@sha256:x"}}}
        ]}));
        let goal = Goal::Terminated {
            container: "job".into(),
        };
        assert_eq!(
            evaluate(&p, &goal),
            Progress::Reached(Reached::Terminated {
                exit_code: 3,
                message: Some("127.0.0.1/a@sha256:x".into()),
                reason: Some("Error".into()),
            })
        );
    }
}
