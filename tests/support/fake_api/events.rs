//! Events the scheduler and kubelet record about pods (core/v1 `Event`, as `kubectl describe`
//! and `fieldSelector=involvedObject.name=` show them), aggregated like
//! `staging/src/k8s.io/client-go/tools/record` does for repeats.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::Shared;
use super::kubelet::PodHandle;

/// Record an Event about the pod, aggregated like the event recorder does (same reason and
/// message → `count` and `lastTimestamp` move on).
pub(super) fn event(
    shared: &Arc<Shared>,
    handle: &PodHandle,
    warning: bool,
    reason: &str,
    message: &str,
    component: &str,
    field_path: Option<&str>,
) {
    let namespace = &handle.namespace;
    let now = super::store::timestamp();
    let (existing, _) = shared.store.list("events", Some(namespace));
    if let Some(old) = existing.iter().find(|e| {
        e["involvedObject"]["uid"] == handle.uid.as_str()
            && e["reason"] == reason
            && e["message"] == message
    }) {
        let name = old["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let _ = shared.store.update("events", namespace, &name, |e| {
            e["count"] = json!(e["count"].as_i64().unwrap_or(1) + 1);
            e["lastTimestamp"] = json!(now);
            Ok(())
        });
        return;
    }
    let nanos = Timestamp::now().as_nanosecond();
    let mut involved = json!({
        "kind": "Pod", "namespace": namespace, "name": handle.name,
        "uid": handle.uid, "apiVersion": "v1",
    });
    if let Some(path) = field_path {
        involved["fieldPath"] = json!(path);
    }
    let host = if component == "kubelet" {
        json!(shared.options.node_name)
    } else {
        Value::Null
    };
    let mut source = json!({"component": component});
    if !host.is_null() {
        source["host"] = host;
    }
    let object = json!({
        "kind": "Event", "apiVersion": "v1",
        "metadata": {"name": format!("{}.{:x}", handle.name, nanos)},
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "source": source,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "type": if warning { "Warning" } else { "Normal" },
        "eventTime": null,
        "reportingComponent": component,
        "reportingInstance": if component == "kubelet" { shared.options.node_name.clone() } else { String::new() },
    });
    let _ = shared.store.create("events", namespace, object);
}
