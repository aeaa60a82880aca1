//! `pods/exec` over WebSocket, the path `kube::Api::exec` takes, with the channel protocol of
//! `staging/src/k8s.io/apimachinery/pkg/util/httpstream/wsstream/conn.go`: binary frames whose
//! first byte is the channel (0 stdin, 1 stdout, 2 stderr, 3 status, 4 resize), an empty frame
//! on the lowest writable channel once connected, and a JSON `metav1.Status` on channel 3 at the
//! end.
//!
//! Two server paths, as in a real cluster:
//! - `v5.channel.k8s.io` (API server ≥1.30, `staging/src/k8s.io/apiserver/pkg/util/proxy/
//!   streamtranslator.go`): the upgrade happens before the container is reached, so a container
//!   that is not running gives 101 then an `InternalError` Status; `[255, 0]` closes stdin; a
//!   non-zero exit reads `command terminated with non-zero exit code: command terminated with
//!   exit code N` (the SPDY leg's `errorDecoderV4` wraps it once more).
//! - `v4.channel.k8s.io` (the kubelet/container runtime streaming server, `exec_v5: false` or a
//!   client that offers no v5): a container that is not running answers 500 `container not
//!   found ("c")` before any upgrade; the only way to end stdin is closing the socket, after
//!   which nothing more can be delivered (the process gets EOF and runs on); a non-zero exit
//!   reads containerd's `... error executing command [argv], exit code N`.
//!
//! The command runs in the container's own namespaces (sandbox.rs), with its env and working
//! directory. Pings are answered with pongs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::Shared;
use super::kubelet::Running;
use super::logs::{query_bool, query_value, resolve_container};
use super::sandbox;
use super::server::{self, Response};
use super::status::ApiError;

const V5: &str = "v5.channel.k8s.io";
const V4: &str = "v4.channel.k8s.io";

struct Options {
    argv: Vec<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    /// Served by the API server's stream translator (v5) rather than the kubelet (v4).
    translator: bool,
}

/// `GET|POST .../pods/{name}/exec?command=..&container=..&stdin=..`.
pub async fn serve(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
    namespace: &str,
    name: &str,
    query: &[(String, String)],
) -> Result<Response, ApiError> {
    let pod = shared
        .store
        .get("pods", namespace, name)
        .ok_or_else(|| ApiError::not_found("pods", name))?;
    let container = resolve_container(&pod, query_value(query, "container"))?;
    if pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty) {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let header = |key: &str| {
        request
            .headers()
            .get(key)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let upgrade = header("Upgrade").eq_ignore_ascii_case("websocket")
        && header("Connection")
            .to_ascii_lowercase()
            .contains("upgrade");
    if !upgrade {
        // This fake speaks WebSocket only (no SPDY).
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let offered: Vec<String> = header("Sec-WebSocket-Protocol")
        .split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    // wsstream handshake: the first protocol the client offers that the server supports.
    let translator = shared.options.exec_v5 && offered.iter().any(|p| p == V5);
    let protocol = if translator {
        V5
    } else if offered.iter().any(|p| p == V4) {
        V4
    } else if !shared.options.exec_v5 {
        // A 1.28 API server answers a handshake it cannot serve (only v5, v3, v2 or unknown
        // protocols offered) with a bare 403 and no body.
        return Ok(server::empty(403));
    } else {
        return Err(ApiError::bad_request(format!(
            "requested protocol(s) are not supported: {offered:?}; supports [v5.channel.k8s.io v4.channel.k8s.io]"
        )));
    };
    let options = Options {
        argv: query
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.clone())
            .collect(),
        stdin: query_bool(query, "stdin"),
        stdout: query_bool(query, "stdout"),
        stderr: query_bool(query, "stderr"),
        translator,
    };
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
    let running = shared.kubelet.running(uid, &container);
    if running.is_none() && !translator {
        // kubelet GetExec → streaming.WriteError, passed through by the API server's proxy.
        return Ok(server::text(
            500,
            format!("container not found (\"{container}\")").into_bytes(),
        ));
    }
    let target = running.ok_or(format!(
        "unable to upgrade connection: container not found (\"{container}\")"
    ));

    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(
        header("Sec-WebSocket-Key").as_bytes(),
    );
    let on_upgrade = hyper::upgrade::on(request);
    let session_shared = shared.clone();
    shared.spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        session(session_shared, socket, target, options).await;
    });
    let response = hyper::Response::builder()
        .status(101)
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Accept", accept)
        .header("Sec-WebSocket-Protocol", protocol)
        .body(server::empty(200).into_body())
        .expect("a valid response");
    Ok(response)
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::binary(bytes)
}

/// `json.Marshal(status.Status())` of an `InternalError` StatusError (no kind/apiVersion).
fn internal_error(err: &str) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("Internal error occurred: {err}"),
        "reason": "InternalError",
        "details": {"causes": [{"message": err}]},
        "code": 500,
    })
}

/// The Status frame for an exit code (kubelet `ServeExec`, translator `codeExitToStatusError`).
fn exit_status(code: i32, options: &Options) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    let cause = if options.translator {
        format!("command terminated with exit code {code}")
    } else {
        format!(
            "error executing command [{}], exit code {code}",
            options.argv.join(" ")
        )
    };
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: {cause}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;
type Output = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

async fn session(
    shared: Arc<Shared>,
    socket: Socket,
    target: Result<Running, String>,
    options: Options,
) {
    let (mut sink, mut stream) = socket.split();
    let (out, mut out_rx) = tokio::sync::mpsc::channel::<Message>(64);
    let writer = tokio::spawn(async move {
        while let Some(message) = out_rx.recv().await {
            let closing = matches!(message, Message::Close(_));
            if sink.send(message).await.is_err() || closing {
                break;
            }
        }
    });
    let first = if options.stdout {
        1
    } else if options.stderr {
        2
    } else {
        3
    };
    let _ = out.send(frame(first, &[])).await;

    let finish = |status: Value| {
        let out = out.clone();
        async move {
            let body = serde_json::to_vec(&status).expect("JSON values serialise");
            let _ = out.send(frame(3, &body)).await;
            let _ = out.send(Message::Close(None)).await;
        }
    };

    let running = match target {
        Ok(running) => running,
        Err(err) => {
            finish(internal_error(&err)).await;
            wait_for_close(&mut stream, writer).await;
            return;
        }
    };
    let program = options.argv.first().cloned().unwrap_or_default();
    if !sandbox::executable_in(running.ns_pid, &running.env, &running.workdir, &program) {
        let inner = format!(
            "error executing command in container: failed to exec in container: failed to start exec \"{}\": OCI runtime exec failed: exec failed: unable to start container process: exec: \"{program}\": executable file not found in $PATH: unknown",
            &uuid_like()
        );
        let err = if options.translator {
            format!("Internal error occurred: {inner}")
        } else {
            inner
        };
        finish(internal_error(&err)).await;
        wait_for_close(&mut stream, writer).await;
        return;
    }

    let mut child = match shared
        .tools
        .exec_command(
            running.ns_pid,
            &running.workdir,
            &running.env,
            &running.identity,
            &options.argv,
            options.stdin,
        )
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            finish(internal_error(&format!(
                "error executing command in container: {e}"
            )))
            .await;
            wait_for_close(&mut stream, writer).await;
            return;
        }
    };
    let pid = child.id().map_or(0, |p| p as i32);
    shared.track_pid(pid);

    // Output, forwarded while the client is there, drained (and dropped) after it left.
    let client_gone = Arc::new(AtomicBool::new(false));
    let mut pumps = Vec::new();
    let outputs: [(u8, bool, Option<Output>); 2] = [
        (
            1,
            options.stdout,
            child.stdout.take().map(|s| Box::new(s) as Output),
        ),
        (
            2,
            options.stderr,
            child.stderr.take().map(|s| Box::new(s) as Output),
        ),
    ];
    for (channel, wanted, reader) in outputs {
        let Some(mut reader) = reader else { continue };
        let out = out.clone();
        let gone = client_gone.clone();
        pumps.push(tokio::spawn(async move {
            let mut buffer = vec![0u8; 32 * 1024];
            while let Ok(n) = reader.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
                if wanted && !gone.load(Ordering::SeqCst) {
                    let _ = out.send(frame(channel, &buffer[..n])).await;
                }
            }
        }));
    }

    // Frames from the client: stdin, v5 close, resize; a closed socket closes every channel.
    let mut stdin = child.stdin.take();
    let v5 = options.translator;
    let pong = out.clone();
    let gone = client_gone.clone();
    let reader = tokio::spawn(async move {
        while let Some(message) = stream.next().await {
            match message {
                Ok(Message::Binary(data)) if !data.is_empty() => {
                    if v5 && data[0] == 255 {
                        if data.len() != 2 {
                            break; // protocol error: the connection ends
                        }
                        if data[1] == 0 {
                            stdin = None; // half-close: the process reads EOF
                        }
                        continue;
                    }
                    if data[0] == 0
                        && let Some(pipe) = stdin.as_mut()
                        && pipe.write_all(&data[1..]).await.is_err()
                    {
                        stdin = None;
                    }
                }
                Ok(Message::Ping(payload)) => {
                    let _ = pong.send(Message::Pong(payload)).await;
                }
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
        gone.store(true, Ordering::SeqCst);
        drop(stdin);
        stream
    });

    // A cut connection (an API server restart, a broken network) closes the socket; the
    // command goes on, its output is drained and dropped (`client_gone`).
    let mut cuts = shared.cuts.subscribe();
    let (reader_abort, writer_abort) = (reader.abort_handle(), writer.abort_handle());
    let cut_gone = client_gone.clone();
    let cutter = tokio::spawn(async move {
        loop {
            match cuts.recv().await {
                Ok(super::Cut::All | super::Cut::Execs) => break,
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            }
        }
        cut_gone.store(true, Ordering::SeqCst);
        reader_abort.abort();
        writer_abort.abort();
    });
    let status = child.wait().await;
    cutter.abort();
    shared.untrack_pid(pid);
    let code = status
        .ok()
        .and_then(|s| {
            std::os::unix::process::ExitStatusExt::signal(&s)
                .map(|sig| 128 + sig)
                .or(s.code())
        })
        .unwrap_or(1);
    for pump in pumps {
        let _ = tokio::time::timeout(Duration::from_secs(2), pump).await;
    }
    if !client_gone.load(Ordering::SeqCst) {
        finish(exit_status(code, &options)).await;
    }
    drop(out);
    // Wait (bounded) for the client to close, as the translator's `finish` does.
    let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
}

async fn wait_for_close(
    stream: &mut futures::stream::SplitStream<Socket>,
    writer: tokio::task::JoinHandle<()>,
) {
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(message)) = stream.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
}

fn uuid_like() -> String {
    format!("{:032x}", rand::random::<u128>())
}
