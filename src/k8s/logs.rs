//! Following a container's log to its end, through broken streams.
//!
//! A followed log (`GET .../log?follow=true`) ends normally about a second after the container
//! exits. When the connection breaks first (an API server restart, a network hiccup), the
//! follower asks again from where it stopped: it reads the log with `timestamps=true`, remembers
//! the time of the last line it passed on and how many lines carried that time, and resumes
//! with `sinceTime` (whole seconds, which is what kube sends) while skipping the lines it has
//! already passed on. Every line reaches the output once, in order, without its timestamp.
//! Container-step and build logs both use it.

use futures::AsyncBufReadExt as _;
use k8s_openapi::jiff::{Timestamp, Unit};
use kube::api::LogParams;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::{Context, retry};

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

/// Where the follower stands: the time of the last line passed on, and how many lines with
/// that time were passed on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Position {
    last: Option<(Timestamp, usize)>,
}

impl Position {
    /// Whether a line stamped `at`, the `nth_at` line with that time in this stream (from 1),
    /// was passed on before the stream broke.
    fn seen(&self, at: Timestamp, nth_at: usize) -> bool {
        match self.last {
            None => false,
            Some((last, count)) => at < last || (at == last && nth_at <= count),
        }
    }

    fn passed(&mut self, at: Timestamp) {
        self.last = Some(match self.last {
            Some((last, count)) if last == at => (last, count + 1),
            _ => (at, 1),
        });
    }

    /// The `sinceTime` to resume from: the last second seen, rounded down, so kube's rounding
    /// to whole seconds never skips a line.
    fn since(&self) -> Option<Timestamp> {
        let (at, _) = self.last?;
        at.round(
            k8s_openapi::jiff::TimestampRound::new()
                .smallest(Unit::Second)
                .mode(k8s_openapi::jiff::RoundMode::Trunc),
        )
        .ok()
    }
}

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
    context: &Context,
    pod: &str,
    container: &str,
    out: &mut (dyn AsyncWrite + Unpin + Send),
    on_line: &mut (dyn FnMut(&[u8]) + Send),
) -> Result<(), LogError> {
    let pods = context.pods();
    let mut position = Position::default();
    let mut broken_since: Option<Instant> = None;
    let mut backoff = retry::Backoff::default();
    loop {
        let params = LogParams {
            container: Some(container.to_owned()),
            follow: true,
            timestamps: true,
            since_time: position.since(),
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
        // Lines with the same time as the last one passed on, in this stream.
        let mut same_time = 0;
        let mut resumed = position;
        let mut line = Vec::new();
        let error = loop {
            line.clear();
            match stream.read_until(b'\n', &mut line).await {
                Ok(0) => return Ok(()),
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
            same_time = match resumed.last {
                Some((last, _)) if last == at => same_time + 1,
                _ => 1,
            };
            if resumed.seen(at, same_time) {
                continue;
            }
            resumed = Position::default();
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
    fn resuming_skips_exactly_the_lines_passed_on() {
        let mut position = Position::default();
        let t1 = at("2026-12-02T22:53:52.100000000Z");
        let t2 = at("2026-12-02T22:53:52.900000000Z");
        position.passed(t1);
        position.passed(t2);
        position.passed(t2);
        // The server resends from the whole second: everything before, and the two lines at
        // t2 already passed on, are skipped; a third line at t2 is new.
        assert!(position.seen(t1, 1));
        assert!(position.seen(t2, 1));
        assert!(position.seen(t2, 2));
        assert!(!position.seen(t2, 3));
        assert!(!position.seen(at("2026-12-02T22:53:53Z"), 1));
        assert_eq!(position.since(), Some(at("2026-12-02T22:53:52Z")));
        assert_eq!(Position::default().since(), None);
    }
}
