//! Container logs: the buffer a container's stdout and stderr are appended to (interleaved in
//! arrival order, like the CRI log file), and the `pods/log` endpoint with the API server's and
//! kubelet's answers: container resolution (`pkg/registry/core/pod/strategy.go`
//! `validateContainer`), an unscheduled pod's empty log (`LocationStreamer` with no location),
//! and the kubelet's `validateContainerLogStatus` errors (`pkg/kubelet/kubelet_pods.go`).

use std::sync::Mutex;

use bytes::Bytes;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use super::Shared;
use super::server::{self, Response};
use super::status::ApiError;
use super::store::timestamp_nanos;

struct Inner {
    chunks: Vec<(Timestamp, Bytes)>,
    closed: bool,
}

/// What one container wrote, with arrival times.
pub struct LogBuffer {
    inner: Mutex<Inner>,
    version: tokio::sync::watch::Sender<u64>,
}

impl Default for LogBuffer {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                chunks: Vec::new(),
                closed: false,
            }),
            version: tokio::sync::watch::channel(0).0,
        }
    }
}

impl LogBuffer {
    pub fn push(&self, data: Bytes) {
        self.inner
            .lock()
            .expect("log lock")
            .chunks
            .push((Timestamp::now(), data));
        self.version.send_modify(|v| *v += 1);
    }

    /// The container ended: followers stop after the last byte.
    pub fn close(&self) {
        self.inner.lock().expect("log lock").closed = true;
        self.version.send_modify(|v| *v += 1);
    }

    pub fn contents(&self) -> Vec<u8> {
        let inner = self.inner.lock().expect("log lock");
        inner
            .chunks
            .iter()
            .flat_map(|(_, c)| c.iter().copied())
            .collect()
    }

    fn from(&self, index: usize) -> (Vec<(Timestamp, Bytes)>, bool) {
        let inner = self.inner.lock().expect("log lock");
        (
            inner.chunks[index.min(inner.chunks.len())..].to_vec(),
            inner.closed,
        )
    }
}

/// Query options of `pods/log` (`PodLogOptions`).
struct LogOptions {
    container: Option<String>,
    follow: bool,
    previous: bool,
    timestamps: bool,
    tail_lines: Option<usize>,
    limit_bytes: Option<usize>,
    since_seconds: Option<i64>,
    since_time: Option<Timestamp>,
}

/// Go's `strconv.ParseBool` truth values, as query parameters are decoded.
pub fn query_bool(query: &[(String, String)], key: &str) -> bool {
    query
        .iter()
        .any(|(k, v)| k == key && matches!(v.as_str(), "1" | "t" | "T" | "true" | "TRUE" | "True"))
}

pub fn query_value<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// `validateContainer`: the named container must exist; an omitted name is fine with exactly
/// one container.
pub fn resolve_container(pod: &Value, requested: Option<&str>) -> Result<String, ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let names = |field: &str| -> Vec<String> {
        pod["spec"][field]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let containers = names("containers");
    let mut all = names("initContainers");
    all.extend(containers.iter().cloned());
    all.extend(names("ephemeralContainers"));
    match requested.filter(|c| !c.is_empty()) {
        None => match containers.len() {
            1 => Ok(containers[0].clone()),
            0 => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}"
            ))),
            _ => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                all.join(" ")
            ))),
        },
        Some(container) if all.iter().any(|c| c == container) => Ok(container.to_string()),
        Some(container) => Err(ApiError::bad_request(format!(
            "container {container} is not valid for pod {name}"
        ))),
    }
}

/// The kubelet's check that a container has logs to show.
fn check_log_status(pod: &Value, container: &str) -> Result<(), ApiError> {
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let status = ["containerStatuses", "initContainerStatuses"]
        .iter()
        .filter_map(|field| pod["status"][field].as_array())
        .flatten()
        .find(|s| s["name"] == container);
    let Some(status) = status else {
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{pod_name}\" is not available"
        )));
    };
    let state = &status["state"];
    if state["running"].is_object() || state["terminated"].is_object() {
        return Ok(());
    }
    let message = match state["waiting"]["reason"].as_str() {
        Some("ErrImagePull") => "image can't be pulled".to_string(),
        Some("ImagePullBackOff") => "trying and failing to pull image".to_string(),
        Some(reason) => reason.to_string(),
        None => {
            return Err(ApiError::bad_request(format!(
                "container \"{container}\" in pod \"{pod_name}\" is waiting to start - no logs yet"
            )));
        }
    };
    Err(ApiError::bad_request(format!(
        "container \"{container}\" in pod \"{pod_name}\" is waiting to start: {message}"
    )))
}

/// Render chunks as the kubelet would, with an optional RFC 3339 timestamp before each line.
fn render(chunks: &[(Timestamp, Bytes)], timestamps: bool, at_line_start: &mut bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (at, chunk) in chunks {
        for &byte in chunk.iter() {
            if timestamps && *at_line_start {
                out.extend_from_slice(timestamp_nanos(*at).as_bytes());
                out.push(b' ');
            }
            out.push(byte);
            *at_line_start = byte == b'\n';
        }
    }
    out
}

fn tail(data: &[u8], lines: usize) -> &[u8] {
    let mut count = 0;
    let end = if data.ends_with(b"\n") {
        data.len() - 1
    } else {
        data.len()
    };
    for i in (0..end).rev() {
        if data[i] == b'\n' {
            count += 1;
            if count == lines {
                return &data[i + 1..];
            }
        }
    }
    if lines == 0 {
        &data[data.len()..]
    } else {
        data
    }
}

/// `GET /api/v1/namespaces/{ns}/pods/{name}/log`.
pub async fn serve(
    shared: &std::sync::Arc<Shared>,
    namespace: &str,
    name: &str,
    query: &[(String, String)],
) -> Result<Response, ApiError> {
    let options = LogOptions {
        container: query_value(query, "container").map(str::to_string),
        follow: query_bool(query, "follow"),
        previous: query_bool(query, "previous"),
        timestamps: query_bool(query, "timestamps"),
        tail_lines: query_value(query, "tailLines").and_then(|v| v.parse().ok()),
        limit_bytes: query_value(query, "limitBytes").and_then(|v| v.parse().ok()),
        since_seconds: query_value(query, "sinceSeconds").and_then(|v| v.parse().ok()),
        since_time: match query_value(query, "sinceTime") {
            None => None,
            // metav1.Time decodes RFC 3339 (second precision or finer); anything else is 400.
            Some(text) => Some(text.parse::<Timestamp>().map_err(|_| {
                ApiError::bad_request(format!(
                    "parsing time \"{text}\" as \"2006-01-02T15:04:05Z07:00\": cannot parse \"{text}\" as \"2006\""
                ))
            })?),
        },
    };
    let pod = shared
        .store
        .get("pods", namespace, name)
        .ok_or_else(|| ApiError::not_found("pods", name))?;
    let container = resolve_container(&pod, options.container.as_deref())?;
    if pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty) {
        // No node yet: the API server streams nothing and answers 200.
        return Ok(server::text(200, Vec::new()));
    }
    if options.previous {
        // Containers are never restarted here, so there is no previous instance.
        return Err(ApiError::bad_request(format!(
            "previous terminated container \"{container}\" in pod \"{name}\" not found"
        )));
    }
    check_log_status(&pod, &container)?;
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
    let Some(buffer) = shared.kubelet.log_buffer(uid, &container) else {
        return Ok(server::text(200, Vec::new()));
    };

    let (mut chunks, closed) = buffer.from(0);
    let seen = chunks.len();
    if let Some(since) = options.since_seconds {
        let cutoff = Timestamp::now()
            .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(since))
            .unwrap_or(Timestamp::UNIX_EPOCH);
        chunks.retain(|(at, _)| *at >= cutoff);
    }
    if let Some(since) = options.since_time {
        // Entries at or after `sinceTime` (the line with exactly that time is included).
        chunks.retain(|(at, _)| *at >= since);
    }
    let mut at_line_start = true;
    let mut first = render(&chunks, options.timestamps, &mut at_line_start);
    if let Some(lines) = options.tail_lines {
        first = tail(&first, lines).to_vec();
    }
    let mut budget = options.limit_bytes.unwrap_or(usize::MAX);
    first.truncate(budget);
    budget -= first.len();
    if !options.follow || closed || budget == 0 {
        return Ok(server::text(200, first));
    }

    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let mut version = buffer.version.subscribe();
    let timestamps = options.timestamps;
    let feeder_shared = shared.clone();
    let stalled = move || {
        feeder_shared
            .stall_logs
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    shared.spawn(async move {
        if tx.send(Bytes::from(first)).await.is_err() {
            return;
        }
        let mut index = seen;
        loop {
            if stalled() {
                // Half-open: the connection stays, nothing more arrives.
                tx.closed().await;
                return;
            }
            let (chunks, closed) = buffer.from(index);
            index += chunks.len();
            let mut data = render(&chunks, timestamps, &mut at_line_start);
            data.truncate(budget);
            budget -= data.len();
            if !data.is_empty() && tx.send(Bytes::from(data)).await.is_err() {
                return;
            }
            if closed || budget == 0 {
                return;
            }
            tokio::select! {
                changed = version.changed() => if changed.is_err() { return },
                _ = tx.closed() => return,
            }
        }
    });
    Ok(server::stream(200, "text/plain", rx))
}
