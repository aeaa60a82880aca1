//! Object semantics of the fake API server: create (defaulting, `generateName`, validation,
//! dry run), get, list (selectors, `limit`/`continue`), watch (replay, selector transitions,
//! initial-events bookmark, timeout, 410 as an ERROR event), replace/patch (resourceVersion
//! preconditions, immutable fields), delete (pod graceful deletion, preconditions, propagation),
//! deletecollection, the garbage collector and SelfSubjectAccessReviews; Pod Security
//! admission (`admission.rs`) on pod creation. Copies the generic
//! registry (`staging/src/k8s.io/apiserver/pkg/registry/generic/registry/store.go`), the watch
//! cache (`.../storage/cacher/cache_watcher.go`), `pkg/registry/core/pod/strategy.go` and the
//! defaulting of `pkg/apis/core/v1/defaults.go`. Must not: run containers (kubelet.rs).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use k8s_openapi::api::core::v1::{Pod, Secret};
use serde_json::{Map, Value, json};

use super::Shared;
use super::admission;
use super::logs::{query_bool, query_value};
use super::selectors::{FieldSelector, LabelSelector};
use super::server::{self, Response};
use super::status::{ApiError, FieldError};
use super::store::{Change, EventType, WatchStart, new_uid, timestamp, timestamp_in};
use super::validation;

/// `kind` of each served resource.
pub fn kind_of(plural: &str) -> &'static str {
    match plural {
        "pods" => "Pod",
        "secrets" => "Secret",
        "configmaps" => "ConfigMap",
        "persistentvolumeclaims" => "PersistentVolumeClaim",
        "events" => "Event",
        _ => "Unknown",
    }
}

fn plural_of(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some("pods"),
        "Secret" => Some("secrets"),
        "ConfigMap" => Some("configmaps"),
        "PersistentVolumeClaim" => Some("persistentvolumeclaims"),
        "Event" => Some("events"),
        _ => None,
    }
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("the body of the request could not be decoded: {e}"))
    })
}

/// `pkg/apis/core/v1/defaults.go` for the fields a client can observe.
fn apply_defaults(plural: &str, object: &mut Value) {
    match plural {
        "pods" => {
            let spec = &mut object["spec"];
            for (field, value) in [
                ("restartPolicy", json!("Always")),
                ("terminationGracePeriodSeconds", json!(30)),
                ("dnsPolicy", json!("ClusterFirst")),
                ("schedulerName", json!("default-scheduler")),
                ("securityContext", json!({})),
                ("serviceAccountName", json!("default")),
                ("enableServiceLinks", json!(true)),
                ("priority", json!(0)),
            ] {
                if spec[field].is_null() {
                    spec[field] = value;
                }
            }
            for group in ["initContainers", "containers"] {
                for container in spec[group].as_array_mut().into_iter().flatten() {
                    if container["terminationMessagePath"].is_null() {
                        container["terminationMessagePath"] = json!("/dev/termination-log");
                    }
                    if container["terminationMessagePolicy"].is_null() {
                        container["terminationMessagePolicy"] = json!("File");
                    }
                    if container["imagePullPolicy"].is_null() {
                        let image = container["image"].as_str().unwrap_or_default();
                        let last = image.rsplit('/').next().unwrap_or_default();
                        let tag = last.split_once(':').map(|(_, t)| t);
                        let policy = if image.contains('@') || tag.is_some_and(|t| t != "latest") {
                            "IfNotPresent"
                        } else {
                            "Always"
                        };
                        container["imagePullPolicy"] = json!(policy);
                    }
                    if container["resources"].is_null() {
                        container["resources"] = json!({});
                    }
                }
            }
            for volume in spec["volumes"].as_array_mut().into_iter().flatten() {
                for source in ["secret", "configMap"] {
                    if volume[source].is_object() && volume[source]["defaultMode"].is_null() {
                        volume[source]["defaultMode"] = json!(420);
                    }
                }
            }
            // PrepareForCreate: status is the server's.
            object["status"] = json!({"phase": "Pending", "qosClass": qos_class(object)});
        }
        "secrets" => {
            if object["type"].is_null() {
                object["type"] = json!("Opaque");
            }
            // stringData is write-only: merged into data (base64) by conversion.
            if let Some(strings) = object["stringData"].as_object().cloned() {
                let engine = base64::engine::general_purpose::STANDARD;
                for (key, value) in strings {
                    let text = value.as_str().unwrap_or_default();
                    object["data"][key] = json!(engine.encode(text));
                }
                object.as_object_mut().map(|o| o.remove("stringData"));
            }
        }
        "persistentvolumeclaims" => {
            if object["spec"]["volumeMode"].is_null() {
                object["spec"]["volumeMode"] = json!("Filesystem");
            }
            object["status"] = json!({"phase": "Pending"});
        }
        _ => {}
    }
}

/// `pkg/apis/core/helper/qos`: BestEffort without requests/limits, Guaranteed when every
/// container's limits equal its requests for cpu and memory, Burstable otherwise.
fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .filter_map(|g| pod["spec"][g].as_array())
        .flatten()
        .collect();
    let any = containers.iter().any(|c| {
        c["resources"]["requests"]
            .as_object()
            .is_some_and(|m| !m.is_empty())
            || c["resources"]["limits"]
                .as_object()
                .is_some_and(|m| !m.is_empty())
    });
    if !any {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let limit = &c["resources"]["limits"][r];
            let request = &c["resources"]["requests"][r];
            !limit.is_null() && (request.is_null() || request == limit)
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// `names.SimpleNameGenerator`: five characters from a vowel-free alphabet.
fn generate_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let prefix = &prefix[..prefix.len().min(58)];
    let suffix: String = (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{suffix}")
}

fn validate(plural: &str, object: &Value) -> Result<Vec<FieldError>, ApiError> {
    let undecodable = |e: serde_json::Error| {
        ApiError::bad_request(format!(
            "{} in version \"v1\" cannot be handled as a {}: {e}",
            kind_of(plural),
            kind_of(plural)
        ))
    };
    Ok(match plural {
        "pods" => {
            let pod: Pod = serde_json::from_value(object.clone()).map_err(undecodable)?;
            validation::pod(object, &pod)
        }
        "secrets" => {
            let secret: Secret = serde_json::from_value(object.clone()).map_err(undecodable)?;
            validation::secret(object, &secret)
        }
        "persistentvolumeclaims" => validation::pvc(object),
        "configmaps" => validation::generic(object, true),
        _ => validation::generic(object, false),
    })
}

/// `POST /api/v1/namespaces/{ns}/{resource}`.
pub fn create(
    shared: &Arc<Shared>,
    plural: &str,
    namespace: &str,
    body: &[u8],
    query: &[(String, String)],
) -> Result<Response, ApiError> {
    let mut object = parse_json(body)?;
    if !object.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be an object",
        ));
    }
    let kind = kind_of(plural);
    if let Some(given) = object["kind"].as_str()
        && given != kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({given}) does not match the expected kind ({kind})"
        )));
    }
    object["kind"] = json!(kind);
    object["apiVersion"] = json!("v1");
    if let Some(given) = object["metadata"]["namespace"].as_str()
        && !given.is_empty()
        && given != namespace
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    if !shared.store.namespace_exists(namespace) {
        return Err(ApiError::not_found("namespaces", namespace));
    }
    if object["metadata"]["resourceVersion"]
        .as_str()
        .is_some_and(|rv| !rv.is_empty())
    {
        // etcd3 store.Create
        return Err(ApiError::internal(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    // rest.FillObjectMetaSystemFields: the server owns these.
    if let Some(meta) = object["metadata"].as_object_mut() {
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            meta.remove(field);
        }
    } else {
        object["metadata"] = json!({});
    }
    if object["metadata"]["name"]
        .as_str()
        .is_none_or(str::is_empty)
        && let Some(prefix) = object["metadata"]["generateName"].as_str()
    {
        let name = generate_name(prefix);
        object["metadata"]["name"] = json!(name);
    }
    apply_defaults(plural, &mut object);
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let errors = validate(plural, &object)?;
    if !errors.is_empty() {
        return Err(ApiError::invalid(kind, &name, &errors));
    }
    if plural == "pods" {
        object["metadata"]["generation"] = json!(1);
        // Validating admission runs after validation, for dry runs too: Pod Security.
        let labels = shared
            .namespace_labels
            .lock()
            .expect("namespace labels lock")
            .get(namespace)
            .cloned()
            .unwrap_or_default();
        if let Some(detail) = admission::evaluate(&labels, &object) {
            return Err(ApiError::forbidden("pods", &name, &detail));
        }
    }
    if query_value(query, "dryRun").is_some() {
        object["metadata"]["uid"] = json!(new_uid());
        object["metadata"]["creationTimestamp"] = json!(timestamp());
        object["metadata"]["namespace"] = json!(namespace);
        return Ok(server::json_response(201, &object));
    }
    let created = shared.store.create(plural, namespace, object)?;
    after_create(shared, plural, namespace, &created);
    Ok(server::json_response(201, &created))
}

fn after_create(shared: &Arc<Shared>, plural: &str, namespace: &str, created: &Value) {
    let name = created["metadata"]["name"].as_str().unwrap_or_default();
    match plural {
        "pods" => shared.kubelet.pod_added(shared, created),
        "persistentvolumeclaims" => {
            // The PV controller binds at once (Immediate binding, a provisioner with room).
            let _ = std::fs::create_dir_all(shared.pvc_dir(namespace, name));
            let _ = shared.store.update(plural, namespace, name, |pvc| {
                pvc["status"] = json!({
                    "phase": "Bound",
                    "accessModes": pvc["spec"]["accessModes"].clone(),
                    "capacity": {"storage": pvc["spec"]["resources"]["requests"]["storage"].clone()},
                });
                pvc["spec"]["volumeName"] = json!(format!("pvc-{}", pvc["metadata"]["uid"].as_str().unwrap_or_default()));
                Ok(())
            });
        }
        _ => {}
    }
    if created["metadata"]["ownerReferences"].is_array() {
        // The garbage collector removes objects whose owners are already gone.
        schedule_gc(shared, namespace);
    }
}

/// `GET /api/v1/namespaces/{ns}/{resource}/{name}`.
pub fn get(
    shared: &Arc<Shared>,
    plural: &str,
    namespace: &str,
    name: &str,
) -> Result<Response, ApiError> {
    shared
        .store
        .get(plural, namespace, name)
        .map(|o| server::json_response(200, &o))
        .ok_or_else(|| ApiError::not_found(plural, name))
}

struct Selectors {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Selectors {
    fn parse(plural: &str, query: &[(String, String)]) -> Result<Self, ApiError> {
        Ok(Self {
            labels: LabelSelector::parse(query_value(query, "labelSelector").unwrap_or_default())
                .map_err(ApiError::bad_request)?,
            fields: FieldSelector::parse(
                query_value(query, "fieldSelector").unwrap_or_default(),
                plural,
            )
            .map_err(ApiError::bad_request)?,
        })
    }

    fn matches(&self, object: &Value) -> bool {
        self.labels.matches_object(object) && self.fields.matches_object(object)
    }
}

/// List items carry no `kind`/`apiVersion` (the list does).
fn list_item(mut object: Value) -> Value {
    if let Some(map) = object.as_object_mut() {
        map.remove("kind");
        map.remove("apiVersion");
    }
    object
}

fn list_body(plural: &str, items: Vec<Value>, rv: u64, extra: Map<String, Value>) -> Value {
    let mut metadata = Map::new();
    metadata.insert("resourceVersion".to_string(), json!(rv.to_string()));
    metadata.extend(extra);
    json!({
        "kind": format!("{}List", kind_of(plural)),
        "apiVersion": "v1",
        "metadata": metadata,
        "items": items.into_iter().map(list_item).collect::<Vec<_>>(),
    })
}

/// `GET /api/v1[/namespaces/{ns}]/{resource}`: selectors, then `limit`/`continue` paging in
/// key order.
pub fn list(
    shared: &Arc<Shared>,
    plural: &str,
    namespace: Option<&str>,
    query: &[(String, String)],
) -> Result<Response, ApiError> {
    let selectors = Selectors::parse(plural, query)?;
    let (items, rv) = shared.store.list(plural, namespace);
    let mut items: Vec<Value> = items.into_iter().filter(|o| selectors.matches(o)).collect();
    let key = |o: &Value| {
        format!(
            "{}/{}",
            o["metadata"]["namespace"].as_str().unwrap_or_default(),
            o["metadata"]["name"].as_str().unwrap_or_default()
        )
    };
    if let Some(token) = query_value(query, "continue").filter(|t| !t.is_empty()) {
        let start = base64::engine::general_purpose::STANDARD
            .decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                ApiError::bad_request("continue key is not valid: illegal base64 data")
            })?;
        items.retain(|o| key(o) > start);
    }
    let mut extra = Map::new();
    if let Some(limit) = query_value(query, "limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        && items.len() > limit
    {
        let remaining = items.len() - limit;
        items.truncate(limit);
        let last = items.last().map(key).unwrap_or_default();
        extra.insert(
            "continue".to_string(),
            json!(base64::engine::general_purpose::STANDARD.encode(last)),
        );
        extra.insert("remainingItemCount".to_string(), json!(remaining));
    }
    Ok(server::json_response(
        200,
        &list_body(plural, items, rv, extra),
    ))
}

/// What one change looks like to a watcher with selectors (`cache_watcher.go`
/// `convertToWatchEvent`): starts matching → ADDED, stops matching → DELETED of the previous
/// object at the change's version.
fn watch_event(change: &Change, selectors: &Selectors) -> Option<Value> {
    let current = change.event != EventType::Deleted && selectors.matches(&change.object);
    let previous = change.prev.as_ref().is_some_and(|p| selectors.matches(p));
    let (kind, object) = match (current, previous) {
        (true, false) => ("ADDED", change.object.clone()),
        (true, true) => ("MODIFIED", change.object.clone()),
        (false, true) => {
            let mut old = change.prev.clone().unwrap_or_default();
            old["metadata"]["resourceVersion"] = json!(change.rv.to_string());
            ("DELETED", old)
        }
        (false, false) => return None,
    };
    Some(json!({"type": kind, "object": object}))
}

fn line(event: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(event).expect("JSON values serialise");
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// `GET ...?watch=true`: newline-delimited `{"type","object"}` events.
pub fn watch(
    shared: &Arc<Shared>,
    plural: &str,
    namespace: Option<&str>,
    query: &[(String, String)],
) -> Result<Response, ApiError> {
    let selectors = Selectors::parse(plural, query)?;
    let send_initial = query_bool(query, "sendInitialEvents");
    let bookmarks = query_bool(query, "allowWatchBookmarks");
    if send_initial
        && (query_value(query, "resourceVersionMatch") != Some("NotOlderThan") || !bookmarks)
    {
        // ValidateListOptions for streaming lists.
        return Err(ApiError::invalid(
            "ListOptions",
            "",
            &[FieldError::forbidden(
                "sendInitialEvents",
                "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled, resourceVersionMatch is NotOlderThan and allowWatchBookmarks is true",
            )],
        ));
    }
    let start = match query_value(query, "resourceVersion").unwrap_or_default() {
        "" | "0" => WatchStart::CurrentState,
        _ if send_initial => WatchStart::CurrentState,
        rv => WatchStart::After(
            rv.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?,
        ),
    };
    let timeout = query_value(query, "timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    let opened = match shared.store.watch(plural, namespace, start) {
        Ok(opened) => opened,
        Err(expired) => {
            // cacher.Watch: errors after the request was accepted are an ERROR event.
            let event = json!({"type": "ERROR", "object": expired.body});
            let _ = tx.try_send(line(&event));
            return Ok(server::stream(200, "application/json", rx));
        }
    };
    let (first, mut changes, rv) = (opened.first, opened.changes, opened.rv);
    let kind = kind_of(plural);
    let mut dropped = shared.store.drop_signal();
    shared.spawn(async move {
        for change in &first {
            if let Some(event) = watch_event(change, &selectors)
                && tx.send(line(&event)).await.is_err()
            {
                return;
            }
        }
        if send_initial {
            let bookmark = json!({"type": "BOOKMARK", "object": {
                "kind": kind, "apiVersion": "v1",
                "metadata": {"resourceVersion": rv.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}},
            }});
            if tx.send(line(&bookmark)).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout.unwrap_or(Duration::from_secs(3600)));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                change = changes.recv() => {
                    let Some(change) = change else { return };
                    if let Some(event) = watch_event(&change, &selectors)
                        && tx.send(line(&event)).await.is_err()
                    {
                        return;
                    }
                }
                _ = dropped.changed() => return,
                _ = &mut deadline => return,
                _ = tx.closed() => return,
            }
        }
    });
    Ok(server::stream(200, "application/json", rx))
}

/// Fields the client does not own on update (`rest.BeforeUpdate`).
fn keep_server_fields(current: &Value, next: &mut Value, plural: &str) {
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "namespace",
    ] {
        next["metadata"][field] = current["metadata"][field].clone();
        if next["metadata"][field].is_null()
            && let Some(meta) = next["metadata"].as_object_mut()
        {
            meta.remove(field);
        }
    }
    next["kind"] = current["kind"].clone();
    next["apiVersion"] = current["apiVersion"].clone();
    if plural == "pods" || plural == "persistentvolumeclaims" {
        // The main resource cannot change status (status subresource).
        next["status"] = current["status"].clone();
    }
}

/// `ValidatePodUpdate`: only images, activeDeadlineSeconds, tolerations and the grace period
/// may change in a pod's spec.
fn pod_spec_update(current: &Value, next: &Value) -> Vec<FieldError> {
    let strip = |spec: &Value| {
        let mut spec = spec.clone();
        for group in ["initContainers", "containers"] {
            for c in spec[group].as_array_mut().into_iter().flatten() {
                c["image"] = Value::Null;
            }
        }
        if let Some(map) = spec.as_object_mut() {
            for field in [
                "activeDeadlineSeconds",
                "tolerations",
                "terminationGracePeriodSeconds",
            ] {
                map.remove(field);
            }
        }
        spec
    };
    if strip(&current["spec"]) == strip(&next["spec"]) {
        return Vec::new();
    }
    vec![FieldError::forbidden(
        "spec",
        "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
    )]
}

fn update_errors(plural: &str, current: &Value, next: &Value) -> Result<Vec<FieldError>, ApiError> {
    let mut errors = validation::labels(&super::selectors::object_labels(next), "metadata.labels");
    match plural {
        "pods" => errors.extend(pod_spec_update(current, next)),
        "secrets" => {
            let old: Secret = serde_json::from_value(current.clone())
                .map_err(|e| ApiError::internal(&e.to_string()))?;
            let new: Secret = serde_json::from_value(next.clone()).map_err(|e| {
                ApiError::bad_request(format!(
                    "Secret in version \"v1\" cannot be handled as a Secret: {e}"
                ))
            })?;
            errors.extend(validation::secret(next, &new));
            errors.extend(validation::secret_update(&old, &new));
        }
        _ => {}
    }
    Ok(errors)
}

fn write(
    shared: &Arc<Shared>,
    plural: &str,
    namespace: &str,
    name: &str,
    change: impl FnOnce(&Value) -> Result<Value, ApiError>,
) -> Result<Response, ApiError> {
    let updated = shared.store.update(plural, namespace, name, |current| {
        let mut next = change(current)?;
        let given_rv = next["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !given_rv.is_empty()
            && Some(given_rv.as_str()) != current["metadata"]["resourceVersion"].as_str()
        {
            return Err(ApiError::conflict(
                plural,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        if plural == "secrets" {
            apply_defaults("secrets", &mut next);
        }
        keep_server_fields(current, &mut next, plural);
        let errors = update_errors(plural, current, &next)?;
        if !errors.is_empty() {
            return Err(ApiError::invalid(kind_of(plural), name, &errors));
        }
        *current = next;
        Ok(())
    })?;
    Ok(server::json_response(200, &updated))
}

/// `PUT .../{name}`: replace, with a resourceVersion precondition when the body has one.
pub fn replace(
    shared: &Arc<Shared>,
    plural: &str,
    namespace: &str,
    name: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    let next = parse_json(body)?;
    let given = next["metadata"]["name"].as_str().unwrap_or_default();
    if given != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({given}) does not match the name on the URL ({name})"
        )));
    }
    write(shared, plural, namespace, name, move |_| Ok(next))
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(entries) => {
            if !target.is_object() {
                *target = json!({});
            }
            for (key, value) in entries {
                if value.is_null() {
                    target.as_object_mut().map(|m| m.remove(key));
                } else {
                    merge_patch(&mut target[key], value);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// `PATCH .../{name}`: merge patch (strategic merge and apply are applied as merge patches).
pub fn patch(
    shared: &Arc<Shared>,
    plural: &str,
    namespace: &str,
    name: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if !matches!(
        media,
        "application/merge-patch+json"
            | "application/strategic-merge-patch+json"
            | "application/apply-patch+yaml"
    ) {
        return Err(ApiError::unsupported_media_type(media));
    }
    let patch = parse_json(body)?;
    if media == "application/apply-patch+yaml"
        && shared.store.get(plural, namespace, name).is_none()
    {
        // Server-side apply creates what does not exist.
        return create(shared, plural, namespace, body, &[]);
    }
    write(shared, plural, namespace, name, move |current| {
        let mut next = current.clone();
        merge_patch(&mut next, &patch);
        if patch["metadata"]["resourceVersion"].is_null() {
            next["metadata"]["resourceVersion"] = Value::Null;
        }
        Ok(next)
    })
}

/// `metav1.DeleteOptions` from the body and the query.
#[derive(Default, Clone)]
pub struct DeleteOptions {
    pub grace: Option<i64>,
    pub orphan: bool,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
}

impl DeleteOptions {
    fn parse(body: &[u8], query: &[(String, String)]) -> Result<Self, ApiError> {
        let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            parse_json(body)?
        };
        let grace = body["gracePeriodSeconds"]
            .as_i64()
            .or_else(|| query_value(query, "gracePeriodSeconds").and_then(|g| g.parse().ok()));
        let propagation = body["propagationPolicy"]
            .as_str()
            .or_else(|| query_value(query, "propagationPolicy"))
            .unwrap_or("Background");
        Ok(Self {
            grace,
            orphan: propagation == "Orphan" || body["orphanDependents"] == json!(true),
            uid: body["preconditions"]["uid"].as_str().map(str::to_string),
            resource_version: body["preconditions"]["resourceVersion"]
                .as_str()
                .map(str::to_string),
            dry_run: !body["dryRun"].as_array().is_none_or(|d| d.is_empty())
                || query_value(query, "dryRun").is_some(),
        })
    }
}

/// Delete one object; the answer body. Pods on a node are deleted gracefully: the API sets
/// `deletionTimestamp` and the kubelet removes the object once its containers are stopped
/// (`pod/strategy.go` `CheckGracefulDelete`: unscheduled or terminal pods go at once).
pub fn delete_object(
    shared: &Arc<Shared>,
    plural: &str,
    namespace: &str,
    name: &str,
    options: &DeleteOptions,
) -> Result<Value, ApiError> {
    let current = shared
        .store
        .get(plural, namespace, name)
        .ok_or_else(|| ApiError::not_found(plural, name))?;
    let uid = current["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if let Some(want) = &options.uid
        && *want != uid
    {
        return Err(ApiError::conflict(
            plural,
            name,
            &format!("Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"),
        ));
    }
    if let Some(want) = &options.resource_version {
        let have = current["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default();
        if want != have {
            return Err(ApiError::conflict(
                plural,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {have}"
                ),
            ));
        }
    }
    if options.dry_run {
        return Ok(current);
    }
    if plural == "pods" {
        let on_node = current["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty());
        let terminal = matches!(
            current["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        );
        let mut grace = options
            .grace
            .or_else(|| current["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(30)
            .max(0);
        if !on_node || terminal {
            grace = 0;
        }
        if grace > 0 {
            let existing = current["metadata"]["deletionGracePeriodSeconds"].as_i64();
            if existing.is_some_and(|e| e <= grace) {
                return Ok(current); // already terminating, no shorter
            }
            let updated = shared.store.update(plural, namespace, name, |pod| {
                pod["metadata"]["deletionTimestamp"] = json!(timestamp_in(grace));
                pod["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                Ok(())
            })?;
            shared.kubelet.terminate(&uid, grace);
            return Ok(updated);
        }
        let mut removed = remove_object(shared, plural, namespace, name, options.orphan)
            .ok_or_else(|| ApiError::not_found(plural, name))?;
        if removed["metadata"]["deletionTimestamp"].is_null() {
            removed["metadata"]["deletionTimestamp"] = json!(timestamp());
        }
        removed["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        return Ok(removed);
    }
    remove_object(shared, plural, namespace, name, options.orphan)
        .ok_or_else(|| ApiError::not_found(plural, name))?;
    Ok(json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": name, "kind": plural, "uid": uid},
    }))
}

/// Remove an object now, stop a pod's containers, and let the GC look at its dependents.
pub fn remove_object(
    shared: &Arc<Shared>,
    plural: &str,
    namespace: &str,
    name: &str,
    orphan: bool,
) -> Option<Value> {
    let removed = shared.store.remove(plural, namespace, name)?;
    if plural == "pods"
        && let Some(uid) = removed["metadata"]["uid"].as_str()
    {
        shared.kubelet.terminate(uid, 0);
    }
    if !orphan {
        schedule_gc(shared, namespace);
    }
    Some(removed)
}

/// Run the garbage collector for a namespace soon (it is asynchronous in a real cluster too).
pub fn schedule_gc(shared: &Arc<Shared>, namespace: &str) {
    let gc_shared = shared.clone();
    let namespace = namespace.to_string();
    shared.spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        collect_garbage(&gc_shared, &namespace);
    });
}

/// `pkg/controller/garbagecollector`: an object whose every owner (of a kind this server knows)
/// is gone is deleted with background propagation. Owners of unknown kinds count as present,
/// as the real GC cannot resolve them either.
fn collect_garbage(shared: &Arc<Shared>, namespace: &str) {
    for (plural, object) in shared.store.all_in(namespace) {
        let Some(owners) = object["metadata"]["ownerReferences"].as_array() else {
            continue;
        };
        if owners.is_empty() || !object["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        let owner_exists = |owner: &Value| {
            let kind = owner["kind"].as_str().unwrap_or_default();
            let Some(owner_plural) = plural_of(kind) else {
                return true;
            };
            let name = owner["name"].as_str().unwrap_or_default();
            shared
                .store
                .get(owner_plural, namespace, name)
                .is_some_and(|o| o["metadata"]["uid"] == owner["uid"])
        };
        if !owners.iter().any(owner_exists) {
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            let _ = delete_object(shared, &plural, namespace, name, &DeleteOptions::default());
        }
    }
}

/// `DELETE .../{name}`.
pub fn delete(
    shared: &Arc<Shared>,
    plural: &str,
    namespace: &str,
    name: &str,
    body: &[u8],
    query: &[(String, String)],
) -> Result<Response, ApiError> {
    let options = DeleteOptions::parse(body, query)?;
    delete_object(shared, plural, namespace, name, &options).map(|b| server::json_response(200, &b))
}

/// `DELETE /api/v1/namespaces/{ns}/{resource}?labelSelector=`: the deleted objects as a list.
pub fn delete_collection(
    shared: &Arc<Shared>,
    plural: &str,
    namespace: &str,
    body: &[u8],
    query: &[(String, String)],
) -> Result<Response, ApiError> {
    let options = DeleteOptions::parse(body, query)?;
    let selectors = Selectors::parse(plural, query)?;
    let (items, _) = shared.store.list(plural, Some(namespace));
    let mut deleted = Vec::new();
    for item in items.into_iter().filter(|o| selectors.matches(o)) {
        let name = item["metadata"]["name"].as_str().unwrap_or_default();
        match delete_object(shared, plural, namespace, name, &options) {
            Ok(answer) if plural == "pods" => deleted.push(answer),
            Ok(_) => deleted.push(item),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let rv = shared.store.current_rv();
    Ok(server::json_response(
        200,
        &list_body(plural, deleted, rv, Map::new()),
    ))
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`, answered from the RBAC
/// Role: allowed when the hook's Role grants (resource[/subresource], verb); the admin may do anything.
pub fn self_subject_access_review(
    shared: &Arc<Shared>,
    who: super::Identity,
    body: &[u8],
) -> Result<Response, ApiError> {
    let review = parse_json(body)?;
    let attributes = &review["spec"]["resourceAttributes"];
    let mut resource = attributes["resource"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if let Some(sub) = attributes["subresource"].as_str().filter(|s| !s.is_empty()) {
        resource = format!("{resource}/{sub}");
    }
    let verb = attributes["verb"].as_str().unwrap_or_default().to_string();
    let allowed = attributes.is_null()
        || who == super::Identity::Admin
        || shared
            .rbac
            .lock()
            .expect("rbac lock")
            .allows(&resource, &verb);
    let mut status = json!({"allowed": allowed});
    if allowed {
        status["reason"] = json!(format!(
            "RBAC: allowed by RoleBinding \"{sa}/{ns}\" of Role \"{sa}\" to ServiceAccount \"{sa}/{ns}\"",
            ns = shared.options.namespace,
            sa = shared.options.service_account
        ));
    }
    Ok(server::json_response(
        201,
        &json!({
            "kind": "SelfSubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "spec": review["spec"].clone(),
            "status": status,
        }),
    ))
}
