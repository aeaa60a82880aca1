//! Retrying API calls that failed for a passing reason.
//!
//! A control-plane upgrade or an API server restart makes the API unreachable for seconds to
//! tens of seconds; API Priority and Fairness answers 429 under load; the API server's proxy to
//! a kubelet answers 500 `error dialing backend` while a node's connection is re-established.
//! None of that should fail a step. [`call`] retries one API call on such errors with
//! exponential back-off and jitter, for at most [`OUTAGE_BUDGET`]; everything else (403, 404,
//! 409, 422, a malformed answer) returns at once, because retrying cannot change it.
//!
//! kube's client already retries 429, 503 and 504 a few times itself, honouring `Retry-After`
//! (`kube-client` `client/retry.rs`); this layer covers what it does not: refused and reset
//! connections, timeouts, 500 and 502, failed WebSocket upgrades, and outages longer than its
//! own retries.
//!
//! Owns which errors are transient and how long to keep trying; every API call of `k8s` goes
//! through it. A new retry policy goes here, not into the callers.

use std::future::Future;
use std::time::Duration;

use kube::client::UpgradeConnectionError;
use rand::RngExt as _;
use tokio::time::Instant;
use tracing::{debug, warn};

/// How long one call keeps retrying, and how long a wait for a pod survives an unreachable API
/// server: longer than an API server restart or a managed control-plane upgrade usually takes.
pub const OUTAGE_BUDGET: Duration = Duration::from_secs(90);

/// How long one attempt may take before it counts as a failed connection (a pooled connection
/// that died without a word would otherwise hold the call forever).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// First pause between attempts; it doubles up to [`MAX_DELAY`].
pub const FIRST_DELAY: Duration = Duration::from_millis(200);
/// Longest pause between attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(5);

/// Whether `error` may pass by itself: the API server was unreachable (refused, reset, timed
/// out), overloaded (429), or failed on its side (500, 502, 503, 504), including a WebSocket
/// upgrade that it answered with one of those codes.
pub fn is_transient(error: &kube::Error) -> bool {
    let transient_code = |code: u16| matches!(code, 429 | 500 | 502 | 503 | 504);
    match error {
        kube::Error::Api(status) => transient_code(status.code),
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        kube::Error::UpgradeConnection(UpgradeConnectionError::ProtocolSwitch(code)) => {
            transient_code(code.as_u16())
        }
        kube::Error::UpgradeConnection(UpgradeConnectionError::GetPendingUpgrade(_)) => true,
        _ => false,
    }
}

/// Back-off between attempts: doubling from [`FIRST_DELAY`] to [`MAX_DELAY`], each pause
/// drawn between half and all of its step so that many clients do not retry in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: FIRST_DELAY }
    }
}

impl Backoff {
    /// The next pause.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(MAX_DELAY);
        let millis = step.as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
    }
}

/// Run `op` until it succeeds, fails for good, or [`OUTAGE_BUDGET`] has passed since the first
/// failure. `what` names the call in the log (`create pod x`).
///
/// # Errors
/// The last error: a non-transient one at once, a transient one when the budget is spent.
pub async fn call<T, F, Fut>(what: &str, mut op: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let mut first_failure: Option<Instant> = None;
    let mut backoff = Backoff::default();
    loop {
        let attempt = match tokio::time::timeout(ATTEMPT_TIMEOUT, op()).await {
            Ok(answer) => answer,
            Err(_) => Err(kube::Error::Service(
                format!("no answer within {}s", ATTEMPT_TIMEOUT.as_secs()).into(),
            )),
        };
        let error = match attempt {
            Ok(value) => {
                if let Some(since) = first_failure {
                    debug!(what, after = ?since.elapsed(), "the API server answered again");
                }
                return Ok(value);
            }
            Err(error) if is_transient(&error) => error,
            Err(error) => return Err(error),
        };
        let first = first_failure.is_none();
        let since = *first_failure.get_or_insert_with(Instant::now);
        let delay = backoff.next_delay();
        if since.elapsed() + delay > OUTAGE_BUDGET {
            return Err(error);
        }
        if first {
            warn!(
                what,
                %error,
                "the Kubernetes API did not answer; retrying for up to {}s",
                OUTAGE_BUDGET.as_secs()
            );
        } else {
            debug!(what, %error, "retrying");
        }
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(Status {
            code,
            ..Status::default()
        }))
    }

    #[test]
    fn passing_failures_are_transient_and_answers_are_not() {
        for code in [429, 500, 502, 503, 504] {
            assert!(is_transient(&api(code)), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 410, 422] {
            assert!(!is_transient(&api(code)), "{code}");
        }
        let upgrade = |code: u16| {
            kube::Error::UpgradeConnection(UpgradeConnectionError::ProtocolSwitch(
                http::StatusCode::from_u16(code).unwrap(),
            ))
        };
        assert!(is_transient(&upgrade(500)));
        assert!(!is_transient(&upgrade(403)));
        assert!(is_transient(&kube::Error::Service(
            "connection refused".into()
        )));
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let mut backoff = Backoff::default();
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next_delay()).collect();
        assert!(delays[0] >= FIRST_DELAY / 2 && delays[0] <= FIRST_DELAY);
        assert!(delays[1] >= FIRST_DELAY && delays[1] <= FIRST_DELAY * 2);
        assert!(delays.iter().all(|d| *d <= MAX_DELAY));
        assert!(delays[7] >= MAX_DELAY / 2);
    }

    #[tokio::test(start_paused = true)]
    async fn call_retries_transient_errors_and_stops_at_a_permanent_one() {
        let mut attempts = 0;
        let result: Result<u8, _> = call("get pod p", || {
            attempts += 1;
            let answer = match attempts {
                1 | 2 => Err(api(503)),
                3 => Err(api(404)),
                _ => Ok(1),
            };
            async move { answer }
        })
        .await;
        assert!(matches!(result, Err(kube::Error::Api(s)) if s.code == 404));
        assert_eq!(attempts, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn call_gives_up_when_the_budget_is_spent() {
        let started = Instant::now();
        let mut attempts = 0;
        let result: Result<u8, _> = call("list pods", || {
            attempts += 1;
            async { Err(api(502)) }
        })
        .await;
        assert!(result.is_err());
        assert!(
            started.elapsed() <= OUTAGE_BUDGET,
            "{:?}",
            started.elapsed()
        );
        assert!(started.elapsed() >= OUTAGE_BUDGET - MAX_DELAY);
        assert!(attempts > 10, "{attempts}");
    }
}
