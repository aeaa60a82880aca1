//! Following a container's log to its end, through broken streams.
//!
//! A followed log (`GET .../log?follow=true`) ends normally about a second after the container
//! exits. When the connection breaks first (an API server restart, a network hiccup), the
//! follower asks again from where it stopped: it reads the log with `timestamps=true`, remembers
//! the time of the last line it passed on and how many lines carried that time, and resumes
//! with `sinceTime` (whole seconds, which is what kube sends) while skipping the lines it has
//! already passed on. Every line reaches the output once, in order, without its timestamp.
//! Container-step and build logs both use it. Owns reading logs; never decides when a step has
//! ended (that is [`super::wait`]).

use futures::AsyncBufReadExt as _;
use k8s_openapi::jiff::{Timestamp, Unit};
use kube::api::LogParams;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::{Session, retry};

/// Why a log could not be followed to its end.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The API server refused the log, or stayed away longer than [`retry::OUTAGE_BUDGET`].
    #[error("failed to follow the log of container `{container}` in pod `{pod}`")]
    Api {
        /// Pod.
        pod: String,
        /// Container.
        container: String,
        /// The last error.
        #[source]
        source: kube::Error,
    },
    /// The stream kept breaking for longer than [`retry::OUTAGE_BUDGET`].
    #[error("the log of container `{container}` in pod `{pod}` kept breaking off")]
    Broken {
        /// Pod.
        pod: String,
        /// Container.
        container: String,
        /// The last error.
        #[source]
        source: std::io::Error,
    },
    /// Writing the log out failed.
    #[error("failed to write the log of pod `{pod}`")]
    Write {
        /// Pod.
        pod: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Where the follower stands: the times of the lines passed on lately (the last two seconds'
/// worth), enough to tell which lines a resumed stream sends again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Position {
    recent: std::collections::VecDeque<Timestamp>,
}

impl Position {
    fn passed(&mut self, at: Timestamp) {
        self.recent.push_back(at);
        let newest = self.recent.iter().max().copied().unwrap_or(at);
        let horizon = newest
            .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(2))
            .unwrap_or(Timestamp::UNIX_EPOCH);
        while self.recent.front().is_some_and(|t| *t < horizon) && self.recent.len() > 1 {
            self.recent.pop_front();
        }
    }

    /// The `sinceTime` to resume from: the last line's time rounded down to the second (kube
    /// sends whole seconds; rounding down never skips a line), and how many of the lines
    /// already passed on the API server sends again from then: those at or after that time.
    /// It sends them first, in the order they were passed on (the log's own order).
    fn resume(&self) -> Option<(Timestamp, usize)> {
        let last = *self.recent.back()?;
        let since = last
            .round(
                k8s_openapi::jiff::TimestampRound::new()
                    .smallest(Unit::Second)
                    .mode(k8s_openapi::jiff::RoundMode::Trunc),
            )
            .ok()?;
        let again = self.recent.iter().filter(|t| **t >= since).count();
        Some((since, again))
    }
}

/// Run `end` (the wait for the container's end) while `follow` streams the log; once `end` is
/// done, give the log [`LOG_DRAIN`] to finish (the API server ends a followed log about a second
/// after the container ends) and stop following it then: a timed-out build's container is still
/// running, and a log stream on a half-open connection would never end. The exit code never
/// waits for the log.
pub async fn follow_until<F, E, T, X>(
    follow: F,
    end: E,
) -> (Option<anyhow::Result<()>>, Result<T, X>)
where
    F: std::future::Future<Output = anyhow::Result<()>>,
    E: std::future::Future<Output = Result<T, X>>,
{
    let mut follow = std::pin::pin!(follow);
    let mut end = std::pin::pin!(end);
    let mut followed = None;
    let result = loop {
        tokio::select! {
            r = &mut follow, if followed.is_none() => followed = Some(r),
            r = &mut end => break r,
        }
    };
    // Only a container that ended has a log that ends; after a timeout or a failure to watch,
    // stop following at once.
    if followed.is_none() && result.is_ok() {
        followed = tokio::time::timeout(LOG_DRAIN, follow).await.ok();
    }
    (followed, result)
}

/// How long the end of a build's log may take to arrive after the build container ended.
pub const LOG_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Split `<RFC 3339 time> <text>` as the API server writes each line with `timestamps=true`.
fn split_timestamp(line: &[u8]) -> Option<(Timestamp, &[u8])> {
    let space = line.iter().position(|b| *b == b' ')?;
    let at = std::str::from_utf8(&line[..space]).ok()?.parse().ok()?;
    Some((at, &line[space + 1..]))
}

/// Copy the log of `container` in `pod` to `out` as it comes, unmodified, until the container
/// ends; `on_line` sees each line (with its newline, if it has one). Resumes after broken
/// streams.
///
/// # Errors
/// [`LogError`] when the log cannot be read or written.
pub async fn follow(
    session: &Session,
    pod: &str,
    container: &str,
    out: &mut (dyn AsyncWrite + Unpin + Send),
    on_line: &mut (dyn FnMut(&[u8]) + Send),
) -> Result<(), LogError> {
    let pods = session.pods();
    let mut position = Position::default();
    let mut broken_since: Option<Instant> = None;
    let mut backoff = retry::Backoff::default();
    loop {
        let resume = position.resume();
        let params = LogParams {
            container: Some(container.to_owned()),
            follow: true,
            timestamps: true,
            since_time: resume.map(|(since, _)| since),
            ..LogParams::default()
        };
        let stream = retry::call("follow a log", || pods.log_stream(pod, &params))
            .await
            .map_err(|source| LogError::Api {
                pod: pod.to_owned(),
                container: container.to_owned(),
                source,
            })?;
        let mut stream = std::pin::pin!(stream);
        // Lines this stream sends again before the new ones.
        let mut again = resume.map_or(0, |(_, again)| again);
        let mut line = Vec::new();
        let error = loop {
            line.clear();
            match stream.read_until(b'\n', &mut line).await {
                // A followed log ends when the container ended, or when the API server's proxy
                // to the kubelet lost its connection (it ends the response cleanly then): ask
                // the pod which.
                Ok(0) if container_ended(session, pod, container).await => return Ok(()),
                Ok(0) => {
                    break std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the log ended while the container still runs",
                    );
                }
                Ok(_) => {}
                Err(error) => break error,
            }
            broken_since = None;
            let Some((at, text)) = split_timestamp(&line) else {
                // Not a stamped line (never seen from a real API server): pass it on as is.
                write(out, pod, &line).await?;
                on_line(&line);
                continue;
            };
            if again > 0 {
                again -= 1;
                continue;
            }
            write(out, pod, text).await?;
            on_line(text);
            position.passed(at);
        };
        let first_break = broken_since.is_none();
        let since = *broken_since.get_or_insert_with(Instant::now);
        if since.elapsed() > retry::OUTAGE_BUDGET {
            return Err(LogError::Broken {
                pod: pod.to_owned(),
                container: container.to_owned(),
                source: error,
            });
        }
        if first_break {
            warn!(pod, container, %error, "the log stream broke off; resuming from the last line");
        } else {
            debug!(pod, container, %error, "the log stream broke off again");
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Whether `container` of `pod` has ended, or the pod is gone (then nothing more will come
/// either). An API that cannot answer counts as "ended": the wait for the container, not the
/// log, decides how the step ended.
async fn container_ended(session: &Session, pod: &str, container: &str) -> bool {
    let pods = session.pods();
    match retry::call("read the pod", || pods.get_opt(pod)).await {
        Ok(Some(pod)) => pod
            .status
            .and_then(|s| s.container_statuses)
            .into_iter()
            .flatten()
            .find(|c| c.name == container)
            .is_none_or(|c| c.state.is_some_and(|s| s.terminated.is_some())),
        Ok(None) | Err(_) => true,
    }
}

async fn write(
    out: &mut (dyn AsyncWrite + Unpin + Send),
    pod: &str,
    data: &[u8],
) -> Result<(), LogError> {
    let result = async {
        out.write_all(data).await?;
        out.flush().await
    };
    result.await.map_err(|source| LogError::Write {
        pod: pod.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn stamped_lines_split_into_time_and_text() {
        let (time, text) = split_timestamp(b"2026-12-02T22:53:52.753363113Z line 1\n").unwrap();
        assert_eq!(time, at("2026-12-02T22:53:52.753363113Z"));
        assert_eq!(text, b"line 1\n");
        let (_, text) =
            split_timestamp(b"2026-12-02T22:53:56.761506860Z no-newline-at-end").unwrap();
        assert_eq!(text, b"no-newline-at-end");
        let (_, text) = split_timestamp(b"2026-12-02T22:53:56.761506860Z \n").unwrap();
        assert_eq!(text, b"\n", "an empty line stays a line");
        assert!(split_timestamp(b"no time here\n").is_none());
    }

    #[test]
    fn resuming_counts_the_lines_the_server_sends_again() {
        let mut position = Position::default();
        assert_eq!(position.resume(), None);
        for time in [
            "2026-12-02T22:53:51.900000000Z",
            "2026-12-02T22:53:52.100000000Z",
            // stdout and stderr can be stamped slightly out of order in the log
            "2026-12-02T22:53:52.900000000Z",
            "2026-12-02T22:53:52.800000000Z",
            "2026-12-02T22:53:52.950000000Z",
        ] {
            position.passed(at(time));
        }
        // From 22:53:52 the server resends the last four lines, then the new ones.
        assert_eq!(position.resume(), Some((at("2026-12-02T22:53:52Z"), 4)));
        // Old times are forgotten, the window stays small.
        position.passed(at("2026-12-02T22:54:30.000000000Z"));
        assert_eq!(position.recent.len(), 1);
        assert_eq!(position.resume(), Some((at("2026-12-02T22:54:30Z"), 1)));
    }
}
