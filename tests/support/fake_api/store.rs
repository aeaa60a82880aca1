//! The object store behind the fake API: objects by (resource, namespace, name), one global
//! resourceVersion counter, a bounded history of changes and the fan-out of those changes to open
//! watches. It plays etcd plus the API server's watch cache
//! (`staging/src/k8s.io/apiserver/pkg/storage/cacher/watch_cache.go`): watches replay history
//! after a resourceVersion, and a version older than the retained window is `410 Expired`.
//! It knows nothing about pods or the kubelet.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::status::ApiError;

/// A watch event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change to one object, as the watch cache keeps it: the new object and the previous one
/// (so selector-filtered watches can turn "stopped matching" into DELETED).
#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    pub plural: String,
    pub namespace: String,
    pub event: EventType,
    pub object: Value,
    pub prev: Option<Value>,
}

/// Where a watch starts (`staging/src/k8s.io/apiserver/pkg/storage/interfaces.go` semantics).
pub enum WatchStart {
    /// `resourceVersion` unset or "0": synthetic ADDED events for the current state, then
    /// changes.
    CurrentState,
    /// `resourceVersion=N`: every change after N, from the history.
    After(u64),
}

/// A watch just opened: events to send first, the live changes, the version it starts at.
pub struct OpenedWatch {
    pub first: Vec<Arc<Change>>,
    pub changes: mpsc::UnboundedReceiver<Arc<Change>>,
    pub rv: u64,
}

struct Watcher {
    plural: String,
    namespace: Option<String>,
    tx: mpsc::UnboundedSender<Arc<Change>>,
}

type Key = (String, String, String);

struct Inner {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Arc<Change>>,
    /// Changes at or below this version were dropped from the history.
    compacted_rv: u64,
    watchers: Vec<Watcher>,
    namespaces: BTreeSet<String>,
}

pub struct Store {
    inner: Mutex<Inner>,
    history_limit: usize,
    /// Bumped to end every open watch stream (`FakeCluster::faults().drop_watches()`).
    drop_tx: tokio::sync::watch::Sender<u64>,
}

impl Store {
    pub fn new(namespaces: &[&str], history_limit: usize) -> Self {
        let (drop_tx, _) = tokio::sync::watch::channel(0);
        Self {
            inner: Mutex::new(Inner {
                rv: 1,
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                compacted_rv: 0,
                watchers: Vec::new(),
                namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            }),
            history_limit,
            drop_tx,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("store lock")
    }

    pub fn namespace_exists(&self, namespace: &str) -> bool {
        self.lock().namespaces.contains(namespace)
    }

    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// Store a new object. The caller has defaulted and validated it; the store stamps the
    /// resourceVersion (and uid/creationTimestamp when absent).
    pub fn create(
        &self,
        plural: &str,
        namespace: &str,
        mut object: Value,
    ) -> Result<Value, ApiError> {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut inner = self.lock();
        let key = (plural.to_string(), namespace.to_string(), name.clone());
        if inner.objects.contains_key(&key) {
            return Err(ApiError::already_exists(plural, &name));
        }
        inner.rv += 1;
        let rv = inner.rv;
        let meta = &mut object["metadata"];
        meta["namespace"] = json!(namespace);
        meta["resourceVersion"] = json!(rv.to_string());
        if meta["uid"].as_str().is_none_or(str::is_empty) {
            meta["uid"] = json!(new_uid());
        }
        if meta["creationTimestamp"].is_null() {
            meta["creationTimestamp"] = json!(timestamp());
        }
        inner.objects.insert(key, object.clone());
        self.record(
            &mut inner,
            plural,
            namespace,
            EventType::Added,
            object.clone(),
            None,
        );
        Ok(object)
    }

    pub fn get(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&(plural.to_string(), namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Any object of any resource in `namespace` with this uid.
    pub fn find_uid(&self, namespace: &str, uid: &str) -> Option<(String, Value)> {
        self.lock()
            .objects
            .iter()
            .find(|((_, ns, _), o)| ns == namespace && o["metadata"]["uid"] == uid)
            .map(|((plural, _, _), o)| (plural.clone(), o.clone()))
    }

    /// All objects of a resource (in one namespace or all), in key order, and the list's
    /// resourceVersion.
    pub fn list(&self, plural: &str, namespace: Option<&str>) -> (Vec<Value>, u64) {
        let inner = self.lock();
        let items = inner
            .objects
            .iter()
            .filter(|((p, ns, _), _)| p == plural && namespace.is_none_or(|n| n == ns))
            .map(|(_, o)| o.clone())
            .collect();
        (items, inner.rv)
    }

    /// All objects of every resource in a namespace (for the garbage collector).
    pub fn all_in(&self, namespace: &str) -> Vec<(String, Value)> {
        self.lock()
            .objects
            .iter()
            .filter(|((_, ns, _), _)| ns == namespace)
            .map(|((p, _, _), o)| (p.clone(), o.clone()))
            .collect()
    }

    /// Read-modify-write one object. A no-op change writes nothing and emits no event, as etcd3
    /// `GuaranteedUpdate` skips unchanged objects.
    pub fn update(
        &self,
        plural: &str,
        namespace: &str,
        name: &str,
        mutate: impl FnOnce(&mut Value) -> Result<(), ApiError>,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let key = (plural.to_string(), namespace.to_string(), name.to_string());
        let Some(current) = inner.objects.get(&key).cloned() else {
            return Err(ApiError::not_found(plural, name));
        };
        let mut next = current.clone();
        mutate(&mut next)?;
        next["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        if next == current {
            return Ok(current);
        }
        inner.rv += 1;
        let rv = inner.rv;
        next["metadata"]["resourceVersion"] = json!(rv.to_string());
        inner.objects.insert(key, next.clone());
        self.record(
            &mut inner,
            plural,
            namespace,
            EventType::Modified,
            next.clone(),
            Some(current),
        );
        Ok(next)
    }

    /// Remove an object now. The DELETED event carries the object at the deletion's version
    /// (the watch cache sets it so).
    pub fn remove(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let mut inner = self.lock();
        let key = (plural.to_string(), namespace.to_string(), name.to_string());
        let mut object = inner.objects.remove(&key)?;
        inner.rv += 1;
        object["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
        self.record(
            &mut inner,
            plural,
            namespace,
            EventType::Deleted,
            object.clone(),
            Some(object.clone()),
        );
        Some(object)
    }

    fn record(
        &self,
        inner: &mut Inner,
        plural: &str,
        namespace: &str,
        event: EventType,
        object: Value,
        prev: Option<Value>,
    ) {
        let change = Arc::new(Change {
            rv: inner.rv,
            plural: plural.to_string(),
            namespace: namespace.to_string(),
            event,
            object,
            prev,
        });
        inner.history.push_back(change.clone());
        while inner.history.len() > self.history_limit {
            if let Some(old) = inner.history.pop_front() {
                inner.compacted_rv = old.rv;
            }
        }
        inner.watchers.retain(|w| {
            if w.plural != change.plural
                || w.namespace
                    .as_ref()
                    .is_some_and(|ns| *ns != change.namespace)
            {
                return !w.tx.is_closed();
            }
            w.tx.send(change.clone()).is_ok()
        });
    }

    /// Open a watch: the events to send first, a receiver of every later change of this
    /// resource (and namespace), and the version the watch starts at. Registration happens under the store lock, so nothing falls
    /// between replay and live events.
    pub fn watch(
        &self,
        plural: &str,
        namespace: Option<&str>,
        start: WatchStart,
    ) -> Result<OpenedWatch, ApiError> {
        let mut inner = self.lock();
        let in_scope = |p: &str, ns: &str| p == plural && namespace.is_none_or(|n| n == ns);
        let first: Vec<Arc<Change>> = match start {
            WatchStart::CurrentState => inner
                .objects
                .iter()
                .filter(|((p, ns, _), _)| in_scope(p, ns))
                .map(|((p, ns, _), o)| {
                    Arc::new(Change {
                        rv: inner.rv,
                        plural: p.clone(),
                        namespace: ns.clone(),
                        event: EventType::Added,
                        object: o.clone(),
                        prev: None,
                    })
                })
                .collect(),
            WatchStart::After(rv) => {
                // cacher: "too old resource version: %d (%d)" when rv < oldest-1.
                if rv < inner.compacted_rv {
                    return Err(ApiError::expired(format!(
                        "too old resource version: {rv} ({})",
                        inner.compacted_rv
                    )));
                }
                inner
                    .history
                    .iter()
                    .filter(|c| c.rv > rv && in_scope(&c.plural, &c.namespace))
                    .cloned()
                    .collect()
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        inner.watchers.push(Watcher {
            plural: plural.to_string(),
            namespace: namespace.map(str::to_string),
            tx,
        });
        Ok(OpenedWatch {
            first,
            changes: rx,
            rv: inner.rv,
        })
    }

    /// Forget the whole history, as an etcd compaction followed by a watch-cache restart would:
    /// every resume from an older version then gets `410 Expired`.
    pub fn compact(&self) {
        let mut inner = self.lock();
        inner.history.clear();
        inner.compacted_rv = inner.rv;
    }

    /// End all open watch streams now.
    pub fn drop_watches(&self) {
        self.drop_tx.send_modify(|n| *n += 1);
    }

    pub fn drop_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        self.drop_tx.subscribe()
    }
}

/// A random v4-style UID.
pub fn new_uid() -> String {
    let n: u128 = rand::random();
    let hex = format!("{n:032x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// `metav1.Time` as the API serialises it: RFC 3339, whole seconds, UTC.
pub fn timestamp() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A timestamp `seconds` from now, same format.
pub fn timestamp_in(seconds: i64) -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    now.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(seconds))
        .unwrap_or(now)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// RFC 3339 with nanoseconds, as CRI log lines and `timestamps=true` print them.
pub fn timestamp_nanos(at: k8s_openapi::jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S.%9fZ").to_string()
}
