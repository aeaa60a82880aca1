//! The HTTP side of the fake API server: the HTTP/1 accept loop (with upgrades for exec), the
//! request log, bearer-token authentication, scripted faults, RBAC enforcement with the
//! authorizer's message (`pkg/endpoints/handlers/responsewriters/errors.go`), and routing of
//! `/api/v1/...` paths to `resources.rs`, `logs.rs` and `exec.rs`. Owns no object semantics.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::status::ApiError;
use super::{Cut, Identity, Shared, exec, logs, resources};

pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;
pub type Response = hyper::Response<Body>;

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    /// Decoded query pairs in order (repeated keys repeat, as `command=` does for exec).
    pub query: Vec<(String, String)>,
    /// The HTTP status answered (101 for upgraded exec; 200 for watches and follows).
    pub status: u16,
    /// Whether the test's own admin client sent it (otherwise the hook's service account).
    pub admin: bool,
}

impl RequestRecord {
    pub fn param(&self, key: &str) -> Option<&str> {
        logs::query_value(&self.query, key)
    }

    pub fn is_watch(&self) -> bool {
        logs::query_bool(&self.query, "watch")
    }
}

/// The resources this server stores.
pub const RESOURCES: &[&str] = &[
    "pods",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "events",
];

pub fn json_response(code: u16, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).expect("JSON values serialise");
    hyper::Response::builder()
        .status(code)
        .header("Content-Type", "application/json")
        .body(
            Full::new(Bytes::from(bytes))
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .expect("a valid response")
}

pub fn text(code: u16, body: Vec<u8>) -> Response {
    hyper::Response::builder()
        .status(code)
        .header("Content-Type", "text/plain")
        .body(
            Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .expect("a valid response")
}

pub fn error_response(error: ApiError) -> Response {
    let mut response = json_response(error.code, &error.body);
    for (name, value) in error.headers {
        if let Ok(value) = value.parse() {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// A chunked response fed by a channel; the body ends when the sender is dropped.
pub fn stream(code: u16, content_type: &str, rx: tokio::sync::mpsc::Receiver<Bytes>) -> Response {
    let frames = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, std::io::Error>(Frame::data(bytes)), rx))
    });
    hyper::Response::builder()
        .status(code)
        .header("Content-Type", content_type)
        .body(BodyExt::boxed_unsync(StreamBody::new(frames.boxed())))
        .expect("a valid response")
}

pub fn empty(code: u16) -> Response {
    text(code, Vec::new())
}

/// Accept connections until the cluster is dropped. When the API server "goes down"
/// (`Faults::api_down`) the listener is closed, so connections are refused, every open
/// connection is cut, and the same address is bound again when the outage is over.
pub async fn serve(shared: Arc<Shared>, listener: tokio::net::TcpListener) {
    let addr = listener.local_addr().expect("listener address");
    let mut listener = Some(listener);
    let mut cuts = shared.cuts.subscribe();
    loop {
        let Some(open) = listener.as_ref() else {
            let until = *shared.down_until.lock().expect("down lock");
            if let Some(until) = until {
                tokio::time::sleep_until(until.into()).await;
            }
            match tokio::net::TcpListener::bind(addr).await {
                Ok(bound) => listener = Some(bound),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
            continue;
        };
        let accepted = tokio::select! {
            accepted = open.accept() => accepted,
            cut = cuts.recv() => {
                if matches!(cut, Ok(Cut::All)) {
                    listener = None;
                }
                continue;
            }
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let connection_shared = shared.clone();
        let mut connection_cuts = shared.cuts.subscribe();
        shared.spawn(async move {
            // Whether this connection is streaming a followed log (what `Cut::Logs` cuts).
            let following = Arc::new(AtomicBool::new(false));
            let flag = following.clone();
            let service = hyper::service::service_fn(move |request| {
                let shared = connection_shared.clone();
                let flag = flag.clone();
                async move {
                    let follow = request.uri().path().ends_with("/log")
                        && request
                            .uri()
                            .query()
                            .unwrap_or_default()
                            .contains("follow=true");
                    flag.store(follow, Ordering::SeqCst);
                    Ok::<_, Infallible>(handle(shared, request).await)
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            let mut connection = std::pin::pin!(connection);
            loop {
                tokio::select! {
                    _ = &mut connection => return,
                    cut = connection_cuts.recv() => match cut {
                        Ok(Cut::All) => return,
                        Ok(Cut::Logs) if following.load(Ordering::SeqCst) => return,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                        _ => {}
                    },
                }
            }
        });
    }
}

/// Decode a query string; kube's URLs start it with `&` (`?&watch=true`).
pub fn parse_query(raw: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.as_bytes())
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let raw_query = request.uri().query().unwrap_or_default().to_string();
    let query = parse_query(&raw_query);
    let index = {
        let mut requests = shared.requests.lock().expect("requests lock");
        requests.push(RequestRecord {
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            status: 0,
            admin: request
                .headers()
                .get("Authorization")
                .and_then(|h| h.to_str().ok())
                == Some(format!("Bearer {}", shared.options.admin_token).as_str()),
        });
        requests.len() - 1
    };
    let response = match route(&shared, request, &method, &path, &raw_query, &query).await {
        Ok(response) => response,
        Err(error) => error_response(error),
    };
    if let Some(record) = shared
        .requests
        .lock()
        .expect("requests lock")
        .get_mut(index)
    {
        record.status = response.status().as_u16();
    }
    response
}

/// The RBAC verb of a request (`staging/src/k8s.io/apiserver/pkg/endpoints/request/requestinfo.go`).
fn verb(method: &Method, item: bool, watch: bool) -> &'static str {
    match (method.as_str(), item) {
        ("GET" | "HEAD", _) if watch => "watch",
        ("GET" | "HEAD", true) => "get",
        ("GET" | "HEAD", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

fn authorize(
    shared: &Shared,
    who: Identity,
    verb: &str,
    resource: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<(), ApiError> {
    if who == Identity::Admin
        || shared
            .rbac
            .lock()
            .expect("rbac lock")
            .allows(resource, verb)
    {
        return Ok(());
    }
    let user = format!(
        "system:serviceaccount:{}:{}",
        shared.options.namespace, shared.options.service_account
    );
    let scope = match namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    let reason =
        format!("User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"\" {scope}");
    let plural = resource.split('/').next().unwrap_or(resource);
    Err(ApiError::forbidden(plural, name, &reason))
}

async fn route(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
    method: &Method,
    path: &str,
    raw_query: &str,
    query: &[(String, String)],
) -> Result<Response, ApiError> {
    let bearer = request
        .headers()
        .get("Authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or_default();
    let who = if bearer == shared.options.admin_token {
        Identity::Admin
    } else if bearer == shared.options.token {
        Identity::ServiceAccount
    } else {
        return Err(ApiError::unauthorized());
    };
    let with_query = if raw_query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{raw_query}")
    };
    if let Some(error) = take_fault(shared, method, &with_query) {
        return Err(error);
    }

    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let watch = logs::query_bool(query, "watch");
    match segments.as_slice() {
        ["version"] => Ok(json_response(
            200,
            &if shared.options.exec_v5 {
                json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "platform": "linux/amd64"})
            } else {
                json!({"major": "1", "minor": "28", "gitVersion": "v1.28.4-fake", "platform": "linux/amd64"})
            },
        )),
        ["api"] => Ok(json_response(
            200,
            &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
        )),
        [
            "apis",
            "authorization.k8s.io",
            "v1",
            "selfsubjectaccessreviews",
        ] if method == Method::POST => {
            let body = read_body(request).await?;
            resources::self_subject_access_review(shared, who, &body)
        }
        ["api", "v1", "namespaces", namespace] if method == Method::GET => {
            authorize(shared, who, "get", "namespaces", None, namespace)?;
            if shared.store.namespace_exists(namespace) {
                // `kubernetes.io/metadata.name` is set on every namespace by the API server
                // (1.22+), then the labels a test gave it.
                let mut labels = json!({"kubernetes.io/metadata.name": namespace});
                for (key, value) in shared
                    .namespace_labels
                    .lock()
                    .expect("namespace labels lock")
                    .get(*namespace)
                    .into_iter()
                    .flatten()
                {
                    labels[key] = json!(value);
                }
                Ok(json_response(
                    200,
                    &json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": namespace, "labels": labels}, "status": {"phase": "Active"}}),
                ))
            } else {
                Err(ApiError::not_found("namespaces", namespace))
            }
        }
        ["api", "v1", plural] if RESOURCES.contains(plural) && method == Method::GET => {
            authorize(shared, who, verb(method, false, watch), plural, None, "")?;
            if watch {
                resources::watch(shared, plural, None, query)
            } else {
                resources::list(shared, plural, None, query)
            }
        }
        ["api", "v1", "namespaces", namespace, plural] if RESOURCES.contains(plural) => {
            // A list or watch narrowed to one object by `metadata.name` names it in the
            // authorizer's message (`requestinfo.go` takes the name from the field selector).
            let named = logs::query_value(query, "fieldSelector")
                .and_then(|s| s.strip_prefix("metadata.name="))
                .filter(|n| !n.contains(','))
                .unwrap_or_default();
            authorize(
                shared,
                who,
                verb(method, false, watch),
                plural,
                Some(namespace),
                named,
            )?;
            match *method {
                Method::GET if watch => resources::watch(shared, plural, Some(namespace), query),
                Method::GET => resources::list(shared, plural, Some(namespace), query),
                Method::POST => {
                    let body = read_body(request).await?;
                    resources::create(shared, plural, namespace, &body, query)
                }
                Method::DELETE => {
                    let body = read_body(request).await?;
                    resources::delete_collection(shared, plural, namespace, &body, query)
                }
                _ => Err(ApiError::method_not_supported(plural, method.as_str())),
            }
        }
        ["api", "v1", "namespaces", namespace, plural, name] if RESOURCES.contains(plural) => {
            authorize(
                shared,
                who,
                verb(method, true, false),
                plural,
                Some(namespace),
                name,
            )?;
            match *method {
                Method::GET => resources::get(shared, plural, namespace, name),
                Method::PUT => {
                    let body = read_body(request).await?;
                    resources::replace(shared, plural, namespace, name, &body)
                }
                Method::PATCH => {
                    let content_type = request
                        .headers()
                        .get("Content-Type")
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    let body = read_body(request).await?;
                    resources::patch(shared, plural, namespace, name, &content_type, &body)
                }
                Method::DELETE => {
                    let body = read_body(request).await?;
                    resources::delete(shared, plural, namespace, name, &body, query)
                }
                _ => Err(ApiError::method_not_supported(plural, method.as_str())),
            }
        }
        ["api", "v1", "namespaces", namespace, "pods", name, "log"] if method == Method::GET => {
            authorize(shared, who, "get", "pods/log", Some(namespace), name)?;
            logs::serve(shared, namespace, name, query).await
        }
        ["api", "v1", "namespaces", namespace, "pods", name, "exec"]
            if *method == Method::GET || *method == Method::POST =>
        {
            // The verb follows the HTTP method, as on a 1.28 API server: a WebSocket exec (GET)
            // needs `get` on pods/exec, a SPDY exec (POST, kubectl) `create`. (1.35 and later
            // also check `create` for WebSockets: AuthorizePodWebsocketUpgradeCreatePermission.)
            let verb = if *method == Method::GET {
                "get"
            } else {
                "create"
            };
            authorize(shared, who, verb, "pods/exec", Some(namespace), name)?;
            exec::serve(shared, request, namespace, name, query).await
        }
        ["api", "v1", "namespaces", namespace, "pods", name, "status"] if method == Method::GET => {
            authorize(shared, who, "get", "pods/status", Some(namespace), name)?;
            resources::get(shared, "pods", namespace, name)
        }
        _ => Err(ApiError::no_route()),
    }
}

fn take_fault(shared: &Shared, method: &Method, path: &str) -> Option<ApiError> {
    let mut faults = shared.faults.lock().expect("faults lock");
    let fault = faults.iter_mut().find(|f| {
        f.remaining > 0 && f.method == method.as_str() && path.contains(&f.path_contains)
    })?;
    fault.remaining -= 1;
    let error = ApiError::for_code(fault.code, &fault.message);
    faults.retain(|f| f.remaining > 0);
    Some(error)
}

async fn read_body(request: Request<Incoming>) -> Result<Bytes, ApiError> {
    request
        .into_body()
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))
}
