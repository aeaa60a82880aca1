//! `pods/exec` over WebSocket, with our own channel loop.
//!
//! kube's `AttachedProcess` hides the socket, pings only every 60 s and cannot tell us which
//! sub-protocol was negotiated. Exec is the heart of the hook (every step runs through it, and
//! the TypeScript hook's worst bugs live here: steps ending early or hanging after idle minutes,
//! RCH #228/#165/#258), so we drive the socket ourselves from [`kube::Client::connect`]:
//!
//! - channel bytes as in `k8s.io/apimachinery/pkg/util/httpstream/wsstream/conn.go`: 0 stdin,
//!   1 stdout, 2 stderr, 3 status (a `metav1.Status` JSON on exit), 255 close (v5 only);
//! - a heartbeat: a ping every period and an error when no frame arrived within the deadline
//!   (`ACTIONS_RUNNER_HEARTBEAT_PERIOD_MS` / `_DEADLINE_MS`, the TypeScript hook's names);
//! - a connection that ends without a status frame is an error, never a silent success
//!   (RCH PR #376);
//! - stdin is sent in full and then, on v5, half-closed. Our scripts read an exact byte count, so
//!   on v4 (no half-close) stdin simply stays open until the command has ended.
//!
//! Output frames are written and flushed one by one, so step output reaches the runner live and
//! unmodified (it parses `::` workflow commands from it).
//!
//! Owns the exec protocol; implements [`crate::transfer::Remote`] so copy mode can run its
//! scripts through it, and knows nothing of what the commands are for.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::AttachParams;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;
use tracing::debug;

use crate::transfer::remote::{Remote, Stdin};

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
const CLOSE: u8 = 255;

/// Size of one stdin frame.
const STDIN_CHUNK: usize = 64 * 1024;

/// Keep-alive settings for an exec connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// Send a ping this often.
    pub period: Duration,
    /// Fail when nothing (data or pong) arrived for this long.
    pub deadline: Duration,
}

/// Why an exec did not produce an exit code.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The API server refused the WebSocket upgrade (pod gone, container not running, no RBAC).
    #[error("could not start a command in pod `{pod}` container `{container}`")]
    Connect {
        /// Pod.
        pod: String,
        /// Container.
        container: String,
        /// kube's error (carries the HTTP status).
        #[source]
        source: kube::Error,
    },
    /// The connection broke while the command ran.
    #[error("the exec connection to pod `{pod}` broke before the command ended")]
    Connection {
        /// Pod.
        pod: String,
        /// The WebSocket failure.
        #[source]
        source: tokio_tungstenite::tungstenite::Error,
    },
    /// Nothing arrived for longer than the heartbeat deadline.
    #[error(
        "the exec connection to pod `{pod}` went silent: no answer to pings for {}s",
        deadline.as_secs()
    )]
    HeartbeatTimeout {
        /// Pod.
        pod: String,
        /// The deadline that passed.
        deadline: Duration,
    },
    /// The server closed the connection without saying how the command ended.
    #[error("the exec connection to pod `{pod}` closed without an exit status")]
    ClosedWithoutStatus {
        /// Pod.
        pod: String,
    },
    /// The status frame says the command could not run at all.
    #[error("the command could not run in pod `{pod}`: {message}")]
    CommandFailed {
        /// Pod.
        pod: String,
        /// The API server's message.
        message: String,
    },
    /// Reading our stdin source or writing the command's output failed locally.
    #[error("failed to move data for the exec in pod `{pod}`")]
    LocalIo {
        /// Pod.
        pod: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl ExecError {
    /// Whether the command may still be running in the container: the connection broke or went
    /// silent after the command started, and nothing said how it ended (a real API server
    /// leaves the process running when the client goes away).
    pub fn step_may_run_on(&self) -> bool {
        matches!(
            self,
            ExecError::Connection { .. }
                | ExecError::HeartbeatTimeout { .. }
                | ExecError::ClosedWithoutStatus { .. }
        )
    }
}

/// A container to run commands in.
#[derive(Clone)]
pub struct PodExec {
    client: kube::Client,
    namespace: String,
    pod: String,
    container: String,
    heartbeat: Heartbeat,
}

impl PodExec {
    /// Target `container` of `pod` in `namespace`.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        pod: &str,
        container: &str,
        heartbeat: Heartbeat,
    ) -> PodExec {
        PodExec {
            client,
            namespace: namespace.to_owned(),
            pod: pod.to_owned(),
            container: container.to_owned(),
            heartbeat,
        }
    }

    /// The pod this targets.
    pub fn pod(&self) -> &str {
        &self.pod
    }

    /// Run `argv`, feeding `stdin`, copying output as it arrives; returns the exit code.
    ///
    /// # Errors
    /// [`ExecError`] when the command could not be started or its end was not observed.
    #[tracing::instrument(skip_all, fields(pod = %self.pod, container = %self.container))]
    pub async fn exec(
        &self,
        argv: Vec<String>,
        stdin: Option<Stdin<'_>>,
        stdout: &mut (dyn AsyncWrite + Unpin + Send),
        stderr: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> Result<i32, ExecError> {
        let params = AttachParams {
            container: Some(self.container.clone()),
            stdin: stdin.is_some(),
            stdout: true,
            stderr: true,
            tty: false,
            ..AttachParams::default()
        };
        let pod = self.pod.clone();
        let connect_error = |source| ExecError::Connect {
            pod: pod.clone(),
            container: self.container.clone(),
            source,
        };
        // Connection set-up is retried on passing failures (an API server restarting, a 500
        // `error dialing backend` from its proxy to the kubelet): nothing has run yet.
        let path = format!("/api/v1/namespaces/{}/pods", self.namespace);
        let connection = super::retry::call("exec", || {
            let request = kube::core::Request::new(&path).exec(&self.pod, argv.clone(), &params);
            async move {
                let request = request.map_err(kube::Error::BuildRequest)?;
                self.client.connect(request).await
            }
        })
        .await
        .map_err(connect_error)?;
        let half_close = connection.supports_stream_close();
        debug!(v5 = half_close, "exec connected");
        let (mut sink, mut stream) = connection.into_stream().split();

        let broken = |source| ExecError::Connection {
            pod: pod.clone(),
            source,
        };
        let local_io = |source| ExecError::LocalIo {
            pod: pod.clone(),
            source,
        };

        // Frames go out through one writer; stdin is fed to it from its own future, so the loop
        // below never stops reading output while a stdin frame waits for the socket (a command
        // that writes a lot to stderr while it reads stdin cannot deadlock us).
        let (outgoing, mut queue) = tokio::sync::mpsc::channel::<Message>(4);
        let writer = async move {
            while let Some(message) = queue.recv().await {
                sink.send(message).await?;
            }
            sink.close().await
        };
        let mut writer = std::pin::pin!(writer);
        let mut writer_done = false;
        let feed = {
            let outgoing = outgoing.clone();
            let mut stdin = stdin;
            async move {
                let mut remaining = stdin.as_ref().map_or(0, |s| s.len);
                let mut buffer = vec![0u8; STDIN_CHUNK + 1];
                if stdin.is_none() {
                    return Ok(());
                }
                loop {
                    let n = read_chunk(&mut stdin, &mut buffer, remaining).await?;
                    if n == 0 {
                        // All of stdin is sent. v5 can say so; on v4 closing would end the
                        // whole connection, so keep it open (our scripts do not wait for EOF).
                        if half_close {
                            let _ = outgoing.send(Message::binary(vec![CLOSE, STDIN])).await;
                        }
                        return Ok(());
                    }
                    remaining -= n as u64;
                    buffer[0] = STDIN;
                    if outgoing
                        .send(Message::binary(buffer[..=n].to_vec()))
                        .await
                        .is_err()
                    {
                        return Ok(());
                    }
                }
            }
        };
        let mut feed = std::pin::pin!(feed);
        let mut feeding = true;

        let mut ping = tokio::time::interval(self.heartbeat.period);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ping.reset();
        let mut last_heard = Instant::now();

        loop {
            let deadline = last_heard + self.heartbeat.deadline;
            tokio::select! {
                frame = stream.next() => {
                    let Some(frame) = frame else {
                        return Err(ExecError::ClosedWithoutStatus { pod: pod.clone() });
                    };
                    last_heard = Instant::now();
                    match frame.map_err(broken)? {
                        Message::Binary(bytes) if bytes.len() > 1 => {
                            let data = &bytes[1..];
                            match bytes[0] {
                                STDOUT => write_now(stdout, data).await.map_err(local_io)?,
                                STDERR => write_now(stderr, data).await.map_err(local_io)?,
                                STATUS => {
                                    // Let the writer say goodbye (a close frame), briefly.
                                    drop(outgoing);
                                    if !writer_done {
                                        let _ = tokio::time::timeout(CLOSE_GRACE, &mut writer).await;
                                    }
                                    return exit_code(data).map_err(|message| {
                                        ExecError::CommandFailed { pod: pod.clone(), message }
                                    });
                                }
                                _ => {}
                            }
                        }
                        Message::Close(_) => {
                            return Err(ExecError::ClosedWithoutStatus { pod: pod.clone() });
                        }
                        // Pongs, pings (tungstenite answers them) and the one-byte channel
                        // announcements the server sends on open: liveness only.
                        _ => {}
                    }
                }
                fed = &mut feed, if feeding => {
                    feeding = false;
                    fed.map_err(local_io)?;
                }
                written = &mut writer, if !writer_done => {
                    writer_done = true;
                    written.map_err(broken)?;
                }
                _ = ping.tick() => {
                    // A full queue means frames are waiting to go out: no ping needed then.
                    let _ = outgoing.try_send(Message::Ping(Default::default()));
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(ExecError::HeartbeatTimeout {
                        pod: pod.clone(),
                        deadline: self.heartbeat.deadline,
                    });
                }
            }
        }
    }
}

/// How long the writer may take to close the socket after the status frame arrived.
const CLOSE_GRACE: Duration = Duration::from_millis(200);

impl Remote for PodExec {
    async fn run(
        &self,
        argv: Vec<String>,
        stdin: Option<Stdin<'_>>,
        stdout: &mut (dyn AsyncWrite + Unpin + Send),
        stderr: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> anyhow::Result<i32> {
        Ok(self.exec(argv, stdin, stdout, stderr).await?)
    }
}

/// Read the next chunk of stdin into `buffer[1..]` (byte 0 is the channel), at most `remaining`
/// bytes; 0 at the end. A source shorter than its announced length is an error: the remote side
/// would wait for bytes that never come.
async fn read_chunk(
    stdin: &mut Option<Stdin<'_>>,
    buffer: &mut [u8],
    remaining: u64,
) -> std::io::Result<usize> {
    let Some(source) = stdin.as_mut() else {
        return Ok(0);
    };
    if remaining == 0 {
        return Ok(0);
    }
    let want = buffer.len().saturating_sub(1).min(remaining as usize);
    let n = source.reader.read(&mut buffer[1..=want]).await?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("stdin ended {remaining} bytes before its announced length"),
        ));
    }
    Ok(n)
}

async fn write_now(out: &mut (dyn AsyncWrite + Unpin + Send), data: &[u8]) -> std::io::Result<()> {
    out.write_all(data).await?;
    out.flush().await
}

/// The exit code in a status frame (`metav1.Status`), as the API server writes it
/// (`k8s.io/kubelet/pkg/cri/streaming/remotecommand/websocket.go` + `httpstream.go`
/// `writeStatus`): `Success`, or `Failure` with reason `NonZeroExitCode` and the code in
/// `details.causes[reason=ExitCode].message`. Any other failure is the server's message.
pub fn exit_code(status_json: &[u8]) -> Result<i32, String> {
    let status: Status =
        serde_json::from_slice(status_json).map_err(|e| format!("unreadable exec status ({e})"))?;
    if status.status.as_deref() == Some("Success") {
        return Ok(0);
    }
    if status.reason.as_deref() == Some("NonZeroExitCode")
        && let Some(code) = status
            .details
            .as_ref()
            .and_then(|d| d.causes.as_ref())
            .and_then(|causes| {
                causes
                    .iter()
                    .find(|c| c.reason.as_deref() == Some("ExitCode"))
            })
            .and_then(|c| c.message.as_deref())
            .and_then(|m| m.trim().parse::<i32>().ok())
    {
        return Ok(code);
    }
    Err(status
        .message
        .unwrap_or_else(|| "the API server gave no reason".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_is_exit_code_0() {
        assert_eq!(exit_code(br#"{"metadata":{},"status":"Success"}"#), Ok(0));
    }

    #[test]
    fn non_zero_exit_code_comes_from_the_causes() {
        let status = br#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
        assert_eq!(exit_code(status), Ok(3));
    }

    #[test]
    fn other_failures_carry_the_server_message() {
        let status = br#"{"metadata":{},"status":"Failure","message":"container not found (\"job\")","reason":"InternalError"}"#;
        assert_eq!(
            exit_code(status),
            Err("container not found (\"job\")".to_owned())
        );
        assert!(
            exit_code(b"not json")
                .unwrap_err()
                .starts_with("unreadable exec status")
        );
    }
}
