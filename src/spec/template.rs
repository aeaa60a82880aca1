//! The hook template (`ACTIONS_RUNNER_CONTAINER_HOOK_TEMPLATE`, ADR 0134): reading the YAML file
//! and merging it into the pods the hook builds.
//!
//! Existing ARC deployments ship these files for the TypeScript hook, so the merge rules are that
//! hook's (`mergeObjectMeta`, `mergePodSpecWithOptions`, `mergeContainerWithOptions` in
//! `packages/k8s/src/k8s/utils.ts`; docs/user/hook-template.md):
//!
//! - only `metadata` and `spec` are read, at the top level or under `template:` (a real
//!   `kind: PodTemplate` object);
//! - `metadata.labels` / `metadata.annotations` are added, overwriting with a warning;
//! - `spec.containers`: `$job` merges into the job (or step) container, `$<name>` into the service
//!   container of that name, any other entry is added as a sidecar;
//! - in a merged container `name` and `image` are ignored, `env`, `volumeMounts` and `ports` are
//!   appended, every other field replaces;
//! - `spec.volumes` are appended, every other `spec` field replaces.
//!
//! Deliberate differences, each explained where it is implemented: our `runner-pod` label cannot
//! be overwritten; our pods inherit the runner pod's tolerations, and the template's
//! `tolerations` are added to them (without duplicates) while an empty list removes them; `initContainers` are appended after the hook's `fs-init` instead of replacing
//! it; an appended entry with the same key as one of ours (env name, mount path, port, volume or
//! init container name) replaces ours instead of producing a pod the API server refuses; a build
//! pod only takes `$build`; every merge works on copies, so the TypeScript hook's shared
//! `CONTAINER_VOLUMES` array bug (a `$job` mount leaking into services and step pods) cannot
//! happen.
//!
//! The merge works on the JSON form of the typed [`PodSpec`] and converts back, so a template
//! value of the wrong type is an error naming the field path. This module only transforms
//! values; reading the file in [`Template::load`] is its only I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tracing::{debug, warn};

use super::RUNNER_POD_LABEL;
use super::names::BUILD_CONTAINER;

/// Which kind of pod a template is applied to; it decides which `$<name>` entries merge and
/// whether sidecars are added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodKind {
    /// The job pod: `$job` merges into the job container, `$<service>` into service containers,
    /// sidecars and init containers are added.
    Job,
    /// A container-step pod: `$job` merges into the step container (also named `job`), sidecars
    /// and init containers are added (as the TypeScript hook does).
    Step,
    /// A build pod: only `$build` merges (into the `build` container); no sidecars and no init
    /// containers, because a build pod should only build. Labels, annotations and the other
    /// `spec` fields (node selectors, tolerations...) still apply.
    Build,
}

impl PodKind {
    /// Whether a `$<target>` entry is meant for this kind of pod.
    fn merges(self, target: &str) -> bool {
        match self {
            PodKind::Job | PodKind::Step => target != BUILD_CONTAINER,
            PodKind::Build => target == BUILD_CONTAINER,
        }
    }

    /// Whether sidecars and init containers from the template are added.
    fn takes_extra_containers(self) -> bool {
        !matches!(self, PodKind::Build)
    }
}

impl fmt::Display for PodKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PodKind::Job => "job",
            PodKind::Step => "step",
            PodKind::Build => "build",
        })
    }
}

/// Why a hook template cannot be read or applied. Every variant names the template's path.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The file cannot be read.
    #[error("failed to read the hook template `{}`", path.display())]
    Read {
        /// The template's path.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML.
    #[error("the hook template `{}` is not valid YAML{location}", path.display())]
    Parse {
        /// The template's path.
        path: PathBuf,
        /// ` at line L column C` when the parser knows where, else empty.
        location: String,
        /// The parser's error.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// The file holds no document (empty, only comments, or `null`).
    #[error("the hook template `{}` is empty: expected a pod template with `metadata` and/or `spec`", path.display())]
    Empty {
        /// The template's path.
        path: PathBuf,
    },
    /// The document is not a mapping, or uses YAML that has no JSON form (non-string keys).
    #[error("the hook template `{}` is not a pod template: {message}", path.display())]
    NotAPodTemplate {
        /// The template's path.
        path: PathBuf,
        /// What was found instead.
        message: String,
    },
    /// A field has a value Kubernetes does not accept there.
    #[error("the hook template `{}` has an invalid `{field}`: {message}", path.display())]
    InvalidField {
        /// The template's path.
        path: PathBuf,
        /// Path of the field, e.g. `spec.containers[1].resources.limits`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A sidecar has the name of a container the hook already put in the pod.
    #[error(
        "the hook template `{}` adds a container named `{name}`, but the {kind} pod already has one; name it `${name}` to change that container instead",
        path.display()
    )]
    DuplicateContainer {
        /// The template's path.
        path: PathBuf,
        /// The clashing name.
        name: String,
        /// The pod it was applied to.
        kind: PodKind,
    },
}

/// A parsed and validated hook template.
#[derive(Debug, Clone)]
pub struct Template {
    path: PathBuf,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    /// `spec.containers` entries, in file order, each a valid `Container`.
    containers: Vec<Map<String, Value>>,
    /// Every other `spec` field, each valid for a `PodSpec`.
    spec: Map<String, Value>,
}

impl Template {
    /// Read and validate the template at `path`.
    ///
    /// # Errors
    /// [`TemplateError::Read`] when the file cannot be read, otherwise as
    /// [`Template::from_yaml`].
    pub fn load(path: impl AsRef<Path>) -> Result<Template, TemplateError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
            path: path.to_owned(),
            source,
        })?;
        Template::from_yaml(&text, path)
    }

    /// Parse and validate a template; `path` is only used in messages.
    ///
    /// The document is read like the TypeScript hook reads it (a `V1PodTemplateSpec`:
    /// `metadata` and `spec` at the top level), or, for a real `kind: PodTemplate` object, from
    /// under `template:`. Every value is checked against the Kubernetes types now, so a typo in
    /// a value fails before any pod is made; unknown field names are ignored with a warning, as
    /// the API server would drop them.
    ///
    /// # Errors
    /// [`TemplateError::Parse`] (with the line and column), [`TemplateError::Empty`],
    /// [`TemplateError::NotAPodTemplate`] or [`TemplateError::InvalidField`] (with the field
    /// path).
    pub fn from_yaml(text: &str, path: impl AsRef<Path>) -> Result<Template, TemplateError> {
        let path = path.as_ref().to_owned();
        let parse_error = |source: serde_yaml_ng::Error| TemplateError::Parse {
            path: path.clone(),
            location: source
                .location()
                .map(|l| format!(" at line {} column {}", l.line(), l.column()))
                .unwrap_or_default(),
            source,
        };
        if text.trim().is_empty() {
            return Err(TemplateError::Empty { path });
        }
        let mut yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(parse_error)?;
        // `<<: *anchor` merge keys, which YAML users expect to work.
        yaml.apply_merge().map_err(parse_error)?;
        let document = serde_json::to_value(&yaml).map_err(|e| TemplateError::NotAPodTemplate {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let top = match document {
            Value::Null => return Err(TemplateError::Empty { path }),
            Value::Object(map) => map,
            other => {
                return Err(TemplateError::NotAPodTemplate {
                    path,
                    message: format!("expected a mapping, found {}", kind_of(&other)),
                });
            }
        };

        let root = match top.get("template") {
            Some(Value::Object(inner)) => {
                if top.contains_key("spec") {
                    return Err(invalid(
                        &path,
                        "template",
                        "both `template.spec` and a top-level `spec` are given; keep one".into(),
                    ));
                }
                debug!(template = %path.display(), "reading the pod template under `template:`");
                inner.clone()
            }
            _ => top,
        };

        let (labels, annotations) = match root.get("metadata") {
            None | Some(Value::Null) => Default::default(),
            Some(value) => {
                let meta: ObjectMeta = typed(&path, "metadata", value.clone())?;
                let other: Vec<&String> = root_keys(value)
                    .filter(|k| *k != "labels" && *k != "annotations")
                    .collect();
                if !other.is_empty() {
                    debug!(template = %path.display(), fields = ?other, "only `metadata.labels` and `metadata.annotations` are used");
                }
                (
                    meta.labels.unwrap_or_default(),
                    meta.annotations.unwrap_or_default(),
                )
            }
        };

        let mut spec = match root.get("spec") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(spec)) => spec.clone(),
            Some(other) => {
                return Err(invalid(
                    &path,
                    "spec",
                    format!("expected a mapping, found {}", kind_of(other)),
                ));
            }
        };
        if !root.contains_key("metadata") && !root.contains_key("spec") {
            warn!(template = %path.display(), "the hook template has neither `metadata` nor `spec`; it changes nothing");
        }

        let containers = match spec.remove("containers") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items,
            Some(other) => {
                return Err(invalid(
                    &path,
                    "spec.containers",
                    format!("expected a list, found {}", kind_of(&other)),
                ));
            }
        };
        let containers = containers
            .into_iter()
            .enumerate()
            .map(|(i, entry)| {
                let field = format!("spec.containers[{i}]");
                let Value::Object(map) = entry else {
                    return Err(invalid(
                        &path,
                        &field,
                        format!("expected a container mapping, found {}", kind_of(&entry)),
                    ));
                };
                let container: Container = typed(&path, &field, Value::Object(map.clone()))?;
                if container.name.is_empty() || container.name == "$" {
                    return Err(invalid(
                        &path,
                        &format!("{field}.name"),
                        "a container needs a name: `$job`, `$<service>` or a sidecar's name".into(),
                    ));
                }
                warn_unknown(&path, &field, &map, &container);
                Ok(map)
            })
            .collect::<Result<Vec<_>, _>>()?;

        // Check every other field against `PodSpec` (which requires `containers`).
        let mut probe = spec.clone();
        probe.insert("containers".into(), Value::Array(Vec::new()));
        let typed_spec: PodSpec = typed(&path, "spec", Value::Object(probe.clone()))?;
        warn_unknown(&path, "spec", &probe, &typed_spec);

        Ok(Template {
            path,
            labels,
            annotations,
            containers,
            spec,
        })
    }

    /// Where the template was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `metadata.labels` of the template.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    /// `metadata.annotations` of the template.
    pub fn annotations(&self) -> &BTreeMap<String, String> {
        &self.annotations
    }
}

/// Merge `template` into `pod`, a pod of the given kind (module docs list the rules).
///
/// The template is only read: applying one template to several pods (the job pod, then each
/// step pod) gives each the same additions, never an accumulation.
///
/// # Errors
/// [`TemplateError::DuplicateContainer`] when a sidecar has the name of one of the pod's
/// containers; [`TemplateError::InvalidField`] when the merged spec is not a valid `PodSpec`.
pub fn apply(pod: &mut Pod, template: &Template, kind: PodKind) -> Result<(), TemplateError> {
    let path = &template.path;
    let spec = pod.spec.clone().unwrap_or_default();
    let Value::Object(mut spec) =
        serde_json::to_value(&spec).expect("a typed PodSpec serialises to a JSON object")
    else {
        unreachable!("a PodSpec serialises to a JSON object");
    };

    // Containers: `$<name>` entries merge into the pod's own containers; others are sidecars.
    let mut containers = match spec.remove("containers") {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    };
    let own_names: Vec<String> = containers.iter().filter_map(name_of).collect();
    let mut sidecars: Vec<Value> = Vec::new();
    for entry in &template.containers {
        let name = entry
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if let Some(target) = name.strip_prefix('$') {
            if !kind.merges(target) {
                debug!(template = %path.display(), entry = name, %kind, "template entry is not for this kind of pod");
                continue;
            }
            match containers
                .iter_mut()
                .find(|c| name_of(c).as_deref() == Some(target))
            {
                Some(Value::Object(container)) => {
                    merge_container(container, entry, target, kind, path)
                }
                _ if kind == PodKind::Job => {
                    let similar: Vec<&String> = own_names
                        .iter()
                        .filter(|n| {
                            n.strip_prefix(target)
                                .is_some_and(|rest| rest.starts_with('-'))
                        })
                        .collect();
                    warn!(
                        template = %path.display(),
                        "the hook template entry `{name}` matches no container of the job pod and is ignored{}",
                        if similar.is_empty() {
                            String::new()
                        } else {
                            format!(
                                " (services sharing an image are numbered: {})",
                                similar.iter().map(|n| format!("`${n}`")).collect::<Vec<_>>().join(", ")
                            )
                        }
                    );
                }
                // Step pods have only `job`: `$<service>` entries are for the job pod.
                _ => {
                    debug!(template = %path.display(), entry = name, %kind, "template entry matches no container")
                }
            }
        } else if kind.takes_extra_containers() {
            let clashes = own_names.iter().any(|n| n == name)
                || sidecars.iter().any(|s| name_of(s).as_deref() == Some(name));
            if clashes {
                return Err(TemplateError::DuplicateContainer {
                    path: path.clone(),
                    name: name.to_owned(),
                    kind,
                });
            }
            sidecars.push(Value::Object(entry.clone()));
        } else {
            debug!(template = %path.display(), sidecar = name, "sidecars are not added to build pods");
        }
    }
    containers.extend(sidecars);
    spec.insert("containers".into(), Value::Array(containers));

    for (key, value) in &template.spec {
        match key.as_str() {
            "volumes" => append_keyed(&mut spec, key, value, "name", path, "volume"),
            // Deliberate difference from the TypeScript hook, which replaces `initContainers`:
            // that drops the hook's `fs-init`, which fills `/__e` with the runner's externals
            // (node for JavaScript actions), so every JavaScript action then fails with
            // "/__e/node20/bin/node: not found" (ARC #3425). Nobody writing a template means
            // that, so template init containers run after ours; one with our name replaces ours.
            "initContainers" if kind.takes_extra_containers() => {
                append_keyed(&mut spec, key, value, "name", path, "init container");
            }
            "initContainers" => {
                debug!(template = %path.display(), "init containers are not added to build pods");
            }
            "tolerations" => merge_tolerations(&mut spec, value, path),
            _ => {
                if key == "affinity" && spec.contains_key("affinity") {
                    warn!(
                        template = %path.display(),
                        "the hook template's `affinity` replaces the hook's preference for the runner's node"
                    );
                }
                if key == "nodeName" && spec.contains_key("nodeName") {
                    warn!(
                        template = %path.display(),
                        "the hook template's `nodeName` replaces the runner's node; with a ReadWriteOnce work volume the {kind} pod must run on the runner's node"
                    );
                }
                debug!(template = %path.display(), field = %key, "the hook template replaces `spec.{key}`");
                replace(&mut spec, key, value);
            }
        }
    }

    let merged: PodSpec = typed(path, "spec", Value::Object(spec))?;
    pod.spec = Some(merged);

    merge_metadata(
        pod.metadata.labels.get_or_insert_with(Default::default),
        &template.labels,
        "label",
        path,
    );
    merge_metadata(
        pod.metadata
            .annotations
            .get_or_insert_with(Default::default),
        &template.annotations,
        "annotation",
        path,
    );
    if pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(BTreeMap::is_empty)
    {
        pod.metadata.annotations = None;
    }
    Ok(())
}

/// Add the template's labels or annotations, warning when one changes a value we set.
fn merge_metadata(
    ours: &mut BTreeMap<String, String>,
    theirs: &BTreeMap<String, String>,
    what: &str,
    path: &Path,
) {
    for (key, value) in theirs {
        if what == "label" && key == RUNNER_POD_LABEL && ours.contains_key(key) {
            // `cleanup_job` (of this hook and of the TypeScript hook) finds every object of a
            // runner by this label; a template that changed it would leave the pods behind.
            if ours.get(key) != Some(value) {
                warn!(template = %path.display(), "label `{key}` is set by the hook to find its objects and cannot be changed by the template; keeping `{}`", ours[key]);
            }
            continue;
        }
        if ours.get(key).is_some_and(|old| old != value) {
            warn!(template = %path.display(), "{what} `{key}` is already defined and will be overwritten");
        }
        ours.insert(key.clone(), value.clone());
    }
}

/// Merge one `$<target>` entry into a container (TypeScript `mergeContainerWithOptions`).
fn merge_container(
    container: &mut Map<String, Value>,
    entry: &Map<String, Value>,
    target: &str,
    kind: PodKind,
    path: &Path,
) {
    for (key, value) in entry {
        match key.as_str() {
            "name" => {}
            // In the TypeScript hook a step container only kept itself alive (`tail`) while the
            // action ran over exec, so `$job`'s command was harmless there. Our step container
            // runs the action's own entrypoint: a keep-alive command from `$job` would replace
            // the action. `command`/`args` of `$job` therefore shape the job container only.
            "command" | "args" if kind == PodKind::Step => {
                debug!(template = %path.display(), key, "`$job` {key} applies to the job pod, not to container steps");
            }
            "image" => {
                warn!(template = %path.display(), "the hook template cannot change the image of container `{target}`; `image` in `${target}` is ignored");
            }
            "env" => append_keyed(container, key, value, "name", path, "environment variable"),
            "volumeMounts" => append_keyed(container, key, value, "mountPath", path, "mount"),
            "ports" => append_ports(container, value, path),
            _ => replace(container, key, value),
        }
    }
}

/// The template's `tolerations` are added to the ones the pod inherited from the runner pod;
/// one equal to an inherited toleration is not added twice. An empty list (or `null`) removes
/// the inherited ones: `tolerations: []` is how a template keeps its pods off the runner's
/// tainted nodes. (The TypeScript hook replaces `tolerations` like any other field, but its pods
/// inherit nothing, so a template's tolerations end up in the pod either way.)
fn merge_tolerations(spec: &mut Map<String, Value>, value: &Value, path: &Path) {
    match value {
        Value::Array(items) if !items.is_empty() => {
            let list = list_mut(spec, "tolerations");
            for item in items {
                // Compared in their typed form, as the inherited ones are written.
                let item = serde_json::from_value::<Toleration>(item.clone())
                    .ok()
                    .and_then(|t| serde_json::to_value(t).ok())
                    .unwrap_or_else(|| item.clone());
                if !list.contains(&item) {
                    list.push(item);
                }
            }
        }
        _ => {
            if spec.remove("tolerations").is_some() {
                debug!(template = %path.display(), "the hook template's empty `tolerations` removes the ones inherited from the runner pod");
            }
        }
    }
}

/// Set `key` to a copy of `value`; `null` removes it (the TypeScript hook assigns `null`, which
/// the API server reads as unset).
fn replace(map: &mut Map<String, Value>, key: &str, value: &Value) {
    if value.is_null() {
        map.remove(key);
    } else {
        map.insert(key.to_owned(), value.clone());
    }
}

/// Append copies of the template's list items to `map[key]`. An item whose `id_field` equals one
/// already there replaces it in place: duplicates (two mounts at one path, two volumes of one
/// name) are refused by the API server, while the template's author clearly meant to override.
fn append_keyed(
    map: &mut Map<String, Value>,
    key: &str,
    value: &Value,
    id_field: &str,
    path: &Path,
    what: &str,
) {
    let Value::Array(items) = value else {
        return; // `null`: nothing to add (TypeScript `mergeLists(base, undefined)`).
    };
    let list = list_mut(map, key);
    for item in items {
        let id = item.get(id_field);
        match id.and_then(|id| list.iter().position(|old| old.get(id_field) == Some(id))) {
            Some(i) => {
                warn!(template = %path.display(), "the hook template's {what} `{}` replaces the hook's", id.map(display_value).unwrap_or_default());
                list[i] = item.clone();
            }
            None => list.push(item.clone()),
        }
    }
}

/// Append ports; one with the same `containerPort` and protocol as an existing one replaces it.
fn append_ports(container: &mut Map<String, Value>, value: &Value, path: &Path) {
    let Value::Array(items) = value else {
        return;
    };
    let port_key = |port: &Value| {
        (
            port.get("containerPort").cloned(),
            port.get("protocol")
                .and_then(Value::as_str)
                .unwrap_or("TCP")
                .to_ascii_uppercase(),
        )
    };
    let list = list_mut(container, "ports");
    for item in items {
        let key = port_key(item);
        match list.iter().position(|old| port_key(old) == key) {
            Some(i) => {
                warn!(template = %path.display(), "the hook template's port {} replaces the hook's", key.0.as_ref().map(display_value).unwrap_or_default());
                list[i] = item.clone();
            }
            None => list.push(item.clone()),
        }
    }
}

fn list_mut<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Vec<Value> {
    let slot = map.entry(key.to_owned()).or_insert(Value::Null);
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    match slot {
        Value::Array(list) => list,
        _ => unreachable!("just made an array"),
    }
}

fn name_of(container: &Value) -> Option<String> {
    container.get("name")?.as_str().map(str::to_owned)
}

fn display_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn root_keys(value: &Value) -> impl Iterator<Item = &String> {
    value.as_object().into_iter().flat_map(Map::keys)
}

/// Deserialize `value` as `T`, reporting the failing field as `<prefix>.<path>`.
fn typed<T: DeserializeOwned>(path: &Path, prefix: &str, value: Value) -> Result<T, TemplateError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let inner = err.path().to_string();
        let field = if inner == "." {
            prefix.to_owned()
        } else {
            format!("{prefix}.{inner}")
        };
        invalid(path, &field, err.into_inner().to_string())
    })
}

/// Warn about keys of `input` that `typed` (its typed form) dropped: field names Kubernetes does
/// not know, most likely typos (`nodeselector`), which the API server would also drop silently.
fn warn_unknown<T: Serialize>(path: &Path, prefix: &str, input: &Map<String, Value>, typed: &T) {
    let Ok(Value::Object(known)) = serde_json::to_value(typed) else {
        return;
    };
    for (key, value) in input {
        if !value.is_null() && !known.contains_key(key) {
            warn!(template = %path.display(), "the hook template's `{prefix}.{key}` is not a Kubernetes field and is ignored");
        }
    }
}

fn invalid(path: &Path, field: &str, message: String) -> TemplateError {
    TemplateError::InvalidField {
        path: path.to_owned(),
        field: field.to_owned(),
        message,
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{EnvVar, PodSecurityContext, Volume, VolumeMount};

    use super::*;

    fn template(yaml: &str) -> Template {
        Template::from_yaml(yaml, "/etc/hook/template.yaml")
            .unwrap_or_else(|e| panic!("template should parse: {e}"))
    }

    fn error(yaml: &str) -> String {
        Template::from_yaml(yaml, "/etc/hook/template.yaml")
            .expect_err("template should be refused")
            .to_string()
    }

    fn container(name: &str) -> Container {
        Container {
            name: name.into(),
            image: Some(format!("{name}:1")),
            env: Some(vec![EnvVar {
                name: "BASE".into(),
                value: Some("1".into()),
                ..Default::default()
            }]),
            volume_mounts: Some(vec![VolumeMount {
                name: "work".into(),
                mount_path: "/__w".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    fn pod(containers: &[&str]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("runner-workflow".into()),
                labels: Some(BTreeMap::from([(
                    RUNNER_POD_LABEL.to_owned(),
                    "runner".to_owned(),
                )])),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: containers.iter().map(|n| container(n)).collect(),
                init_containers: Some(vec![Container {
                    name: "fs-init".into(),
                    image: Some("runner:1".into()),
                    ..Default::default()
                }]),
                volumes: Some(vec![Volume {
                    name: "work".into(),
                    ..Default::default()
                }]),
                restart_policy: Some("Never".into()),
                security_context: Some(PodSecurityContext {
                    fs_group: Some(1001),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn spec(pod: &Pod) -> &PodSpec {
        pod.spec.as_ref().unwrap()
    }

    fn find<'a>(pod: &'a Pod, name: &str) -> &'a Container {
        spec(pod)
            .containers
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no container `{name}`"))
    }

    fn mount_paths(c: &Container) -> Vec<&str> {
        c.volume_mounts
            .iter()
            .flatten()
            .map(|m| m.mount_path.as_str())
            .collect()
    }

    fn env_names(c: &Container) -> Vec<&str> {
        c.env.iter().flatten().map(|e| e.name.as_str()).collect()
    }

    #[test]
    fn reads_top_level_and_pod_template_forms() {
        let top =
            template("metadata:\n  labels:\n    team: a\nspec:\n  nodeSelector:\n    disk: ssd\n");
        assert_eq!(top.labels()["team"], "a");
        // What ARC's docs show: `kind: PodTemplate` with `metadata` and `spec` at the top.
        let arc = template(
            "apiVersion: v1\nkind: PodTemplate\nmetadata:\n  annotations:\n    a: b\nspec:\n  serviceAccountName: sa\n",
        );
        assert_eq!(arc.annotations()["a"], "b");
        // A real PodTemplate object: the pod template is under `template:`.
        let real = template(
            "apiVersion: v1\nkind: PodTemplate\nmetadata:\n  name: ignored\ntemplate:\n  metadata:\n    labels:\n      team: b\n  spec:\n    nodeSelector:\n      disk: ssd\n",
        );
        assert_eq!(real.labels()["team"], "b");
        let mut p = pod(&["job"]);
        apply(&mut p, &real, PodKind::Job).unwrap();
        assert_eq!(spec(&p).node_selector.as_ref().unwrap()["disk"], "ssd");
    }

    #[test]
    fn yaml_merge_keys_work() {
        let t = template(
            "x-env: &env\n  name: A\n  value: '1'\nspec:\n  containers:\n  - name: $job\n    env:\n    - <<: *env\n",
        );
        let mut p = pod(&["job"]);
        apply(&mut p, &t, PodKind::Job).unwrap();
        assert_eq!(env_names(find(&p, "job")), ["BASE", "A"]);
    }

    #[test]
    fn bad_templates_name_the_path_and_the_problem() {
        assert_eq!(
            error(""),
            "the hook template `/etc/hook/template.yaml` is empty: expected a pod template with `metadata` and/or `spec`"
        );
        assert!(error("# only a comment\n").contains("is empty"));
        assert!(error("~\n").contains("is empty"));
        let text = error("spec:\n  containers:\n  - name: x\n   image: y\n");
        assert!(
            text.starts_with(
                "the hook template `/etc/hook/template.yaml` is not valid YAML at line 4 column"
            ),
            "{text}"
        );
        assert_eq!(
            error("- a\n- b\n"),
            "the hook template `/etc/hook/template.yaml` is not a pod template: expected a mapping, found a list"
        );
        assert_eq!(
            error("spec: 3\n"),
            "the hook template `/etc/hook/template.yaml` has an invalid `spec`: expected a mapping, found a number"
        );
        assert!(
            error("spec:\n  containers: {}\n")
                .contains("invalid `spec.containers`: expected a list")
        );
    }

    #[test]
    fn wrong_value_types_name_the_field_path() {
        let text = error(
            "spec:\n  containers:\n  - name: $job\n  - name: side\n    resources:\n      limits: [1]\n",
        );
        assert!(
            text.starts_with("the hook template `/etc/hook/template.yaml` has an invalid `spec.containers[1].resources.limits`:"),
            "{text}"
        );
        let text = error("spec:\n  tolerations:\n  - key: a\n    tolerationSeconds: soon\n");
        assert!(
            text.contains("invalid `spec.tolerations[0].tolerationSeconds`"),
            "{text}"
        );
        let text = error("metadata:\n  labels:\n    version: [1]\n");
        assert!(text.contains("invalid `metadata.labels.version`"), "{text}");
        let text = error("spec:\n  containers:\n  - image: x\n");
        assert!(text.contains("invalid `spec.containers[0].name`"), "{text}");
    }

    #[test]
    fn load_names_an_unreadable_file() {
        let err = Template::load("/nonexistent/template.yaml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to read the hook template `/nonexistent/template.yaml`"
        );
    }

    #[test]
    fn labels_and_annotations_are_added_and_runner_pod_is_protected() {
        let t = template(
            "metadata:\n  labels:\n    runner-pod: other\n    team: a\n  annotations:\n    note: x\n",
        );
        let mut p = pod(&["job"]);
        p.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("team".into(), "old".into());
        apply(&mut p, &t, PodKind::Job).unwrap();
        let labels = p.metadata.labels.as_ref().unwrap();
        assert_eq!(
            labels[RUNNER_POD_LABEL], "runner",
            "cleanup finds pods by this label"
        );
        assert_eq!(labels["team"], "a");
        assert_eq!(p.metadata.annotations.as_ref().unwrap()["note"], "x");
    }

    #[test]
    fn job_entry_merges_lists_and_replaces_other_fields() {
        let t = template(
            r#"
spec:
  containers:
  - name: $job
    image: ignored:1
    command: [sh, -c]
    args: [sleep infinity]
    env:
    - name: EXTRA
      value: "1"
    volumeMounts:
    - name: cache
      mountPath: /cache
    ports:
    - containerPort: 9000
    resources:
      limits:
        cpu: 2
        memory: 1Gi
"#,
        );
        let mut p = pod(&["job"]);
        apply(&mut p, &t, PodKind::Job).unwrap();
        let job = find(&p, "job");
        assert_eq!(
            job.image.as_deref(),
            Some("job:1"),
            "image cannot be changed"
        );
        assert_eq!(job.command.as_deref().unwrap(), ["sh", "-c"]);
        assert_eq!(job.args.as_deref().unwrap(), ["sleep infinity"]);
        assert_eq!(env_names(job), ["BASE", "EXTRA"]);
        assert_eq!(mount_paths(job), ["/__w", "/cache"]);
        assert_eq!(job.ports.as_ref().unwrap()[0].container_port, 9000);
        let limits = job.resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert_eq!(limits["cpu"].0, "2");
        assert_eq!(limits["memory"].0, "1Gi");
    }

    #[test]
    fn same_keys_replace_instead_of_duplicating() {
        let t = template(
            r#"
spec:
  containers:
  - name: $job
    env:
    - name: BASE
      value: "2"
    volumeMounts:
    - name: tools
      mountPath: /__w
  volumes:
  - name: work
    persistentVolumeClaim:
      claimName: mine
"#,
        );
        let mut p = pod(&["job"]);
        apply(&mut p, &t, PodKind::Job).unwrap();
        let job = find(&p, "job");
        assert_eq!(job.env.as_ref().unwrap().len(), 1);
        assert_eq!(job.env.as_ref().unwrap()[0].value.as_deref(), Some("2"));
        assert_eq!(job.volume_mounts.as_ref().unwrap()[0].name, "tools");
        let volumes = spec(&p).volumes.as_ref().unwrap();
        assert_eq!(volumes.len(), 1);
        assert_eq!(
            volumes[0]
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .claim_name,
            "mine"
        );
    }

    #[test]
    fn service_entries_merge_by_derived_name() {
        let t = template(
            "spec:\n  containers:\n  - name: $redis\n    env:\n    - name: R\n      value: x\n  - name: $nope\n    env: []\n",
        );
        let mut p = pod(&["job", "redis", "postgres"]);
        apply(&mut p, &t, PodKind::Job).unwrap();
        assert_eq!(env_names(find(&p, "redis")), ["BASE", "R"]);
        assert_eq!(env_names(find(&p, "job")), ["BASE"]);
        assert_eq!(env_names(find(&p, "postgres")), ["BASE"]);
        assert_eq!(spec(&p).containers.len(), 3, "`$nope` adds nothing");
    }

    /// The TypeScript hook's containers all shared the module-level `CONTAINER_VOLUMES` array and
    /// `mergeLists` pushed into it, so `$job` mounts leaked into services and step pods
    /// (`mergeLists` in `packages/k8s/src/k8s/utils.ts` of actions/runner-container-hooks). Here
    /// every merge works on copies.
    #[test]
    fn regression_shared_container_volumes_do_not_leak() {
        let t = template(
            "spec:\n  containers:\n  - name: $job\n    volumeMounts:\n    - name: cache\n      mountPath: /cache\n",
        );
        let mut job_pod = pod(&["job", "redis"]);
        apply(&mut job_pod, &t, PodKind::Job).unwrap();
        assert_eq!(mount_paths(find(&job_pod, "job")), ["/__w", "/cache"]);
        assert_eq!(mount_paths(find(&job_pod, "redis")), ["/__w"]);

        // The same template applied to two step pods afterwards: one `/cache` each, no build-up.
        for _ in 0..2 {
            let mut step_pod = pod(&["job"]);
            apply(&mut step_pod, &t, PodKind::Step).unwrap();
            assert_eq!(mount_paths(find(&step_pod, "job")), ["/__w", "/cache"]);
        }
        assert_eq!(t.containers.len(), 1);
        assert_eq!(t.containers[0]["volumeMounts"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn sidecars_are_added_to_job_and_step_pods_but_not_build_pods() {
        let t = template(
            "spec:\n  containers:\n  - name: side-car\n    image: ubuntu:24.04\n  - name: $build\n    securityContext:\n      runAsUser: 2000\n  - name: $job\n    workingDir: /x\n",
        );
        let mut job = pod(&["job"]);
        apply(&mut job, &t, PodKind::Job).unwrap();
        let names: Vec<&str> = spec(&job)
            .containers
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["job", "side-car"]);

        let mut step = pod(&["job"]);
        apply(&mut step, &t, PodKind::Step).unwrap();
        assert_eq!(spec(&step).containers.len(), 2);
        assert_eq!(find(&step, "job").working_dir.as_deref(), Some("/x"));

        let mut build = pod(&["build"]);
        apply(&mut build, &t, PodKind::Build).unwrap();
        assert_eq!(spec(&build).containers.len(), 1);
        let b = find(&build, "build");
        assert_eq!(b.security_context.as_ref().unwrap().run_as_user, Some(2000));
        assert_eq!(b.working_dir, None, "`$job` is not for build pods");
    }

    #[test]
    fn a_sidecar_named_like_our_container_is_an_error() {
        let t = template("spec:\n  containers:\n  - name: redis\n    image: redis:7\n");
        let mut p = pod(&["job", "redis"]);
        let err = apply(&mut p, &t, PodKind::Job).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the hook template `/etc/hook/template.yaml` adds a container named `redis`, but the job pod already has one; name it `$redis` to change that container instead"
        );
    }

    #[test]
    fn other_spec_fields_replace_and_volumes_append() {
        let t = template(
            r#"
spec:
  securityContext:
    runAsNonRoot: true
  restartPolicy: OnFailure
  serviceAccountName: ci
  tolerations:
  - key: dedicated
    operator: Equal
    value: ci
    effect: NoSchedule
  volumes:
  - name: cache
    emptyDir: {}
"#,
        );
        let mut p = pod(&["job"]);
        apply(&mut p, &t, PodKind::Job).unwrap();
        let s = spec(&p);
        let sc = s.security_context.as_ref().unwrap();
        assert_eq!(sc.fs_group, None, "replaced, as in the TypeScript hook");
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(s.restart_policy.as_deref(), Some("OnFailure"));
        assert_eq!(s.service_account_name.as_deref(), Some("ci"));
        assert_eq!(s.tolerations.as_ref().unwrap().len(), 1);
        let volumes: Vec<&str> = s
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(volumes, ["work", "cache"]);
    }

    #[test]
    fn init_containers_run_after_fs_init() {
        let t = template("spec:\n  initContainers:\n  - name: warm-cache\n    image: busybox\n");
        let mut p = pod(&["job"]);
        apply(&mut p, &t, PodKind::Job).unwrap();
        let names: Vec<&str> = spec(&p)
            .init_containers
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["fs-init", "warm-cache"]);

        // One named `fs-init` replaces ours: the author asked for it by name.
        let t = template("spec:\n  initContainers:\n  - name: fs-init\n    image: mine:1\n");
        let mut p = pod(&["job"]);
        apply(&mut p, &t, PodKind::Job).unwrap();
        let inits = spec(&p).init_containers.as_ref().unwrap();
        assert_eq!(inits.len(), 1);
        assert_eq!(inits[0].image.as_deref(), Some("mine:1"));

        // Build pods take none.
        let mut b = pod(&["build"]);
        apply(
            &mut b,
            &template("spec:\n  initContainers:\n  - name: x\n    image: y\n"),
            PodKind::Build,
        )
        .unwrap();
        assert_eq!(spec(&b).init_containers.as_ref().unwrap().len(), 1);
    }

    #[test]
    fn null_unsets_a_field() {
        let t = template(
            "spec:\n  securityContext: null\n  containers:\n  - name: $job\n    volumeMounts: null\n    env: null\n",
        );
        let mut p = pod(&["job"]);
        apply(&mut p, &t, PodKind::Job).unwrap();
        assert_eq!(spec(&p).security_context, None);
        assert_eq!(
            mount_paths(find(&p, "job")),
            ["/__w"],
            "a null list adds nothing"
        );
    }

    /// Every YAML example in the user documentation parses and applies to all kinds of pods.
    #[test]
    fn documented_examples_are_valid() {
        let doc = include_str!("../../docs/user/hook-template.md");
        let examples: Vec<&str> = doc
            .split("```yaml\n")
            .skip(1)
            .map(|rest| rest.split("```").next().unwrap())
            .collect();
        assert!(examples.len() >= 8, "found {} examples", examples.len());
        for example in examples {
            let t = Template::from_yaml(example, "docs/user/hook-template.md")
                .unwrap_or_else(|e| panic!("{e}\n{example}"));
            for (kind, names) in [
                (PodKind::Job, &["job", "redis"][..]),
                (PodKind::Step, &["job"][..]),
                (PodKind::Build, &["build"][..]),
            ] {
                let mut p = pod(names);
                apply(&mut p, &t, kind).unwrap_or_else(|e| panic!("{e}\n{example}"));
            }
        }
    }

    #[test]
    fn documented_error_message_is_real() {
        let text = error(
            "spec:\n  containers:\n  - name: $job\n  - name: side\n    resources:\n      limits: [1]\n",
        );
        let doc = include_str!("../../docs/user/hook-template.md");
        let documented = text.replace(
            "/etc/hook/template.yaml",
            "/home/runner/pod-templates/default.yaml",
        );
        assert!(doc.contains(&documented), "docs should show: {documented}");
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let t = template("spec:\n  nodeselector:\n    disk: ssd\n");
        let mut p = pod(&["job"]);
        apply(&mut p, &t, PodKind::Job).unwrap();
        assert_eq!(spec(&p).node_selector, None);
    }
}
