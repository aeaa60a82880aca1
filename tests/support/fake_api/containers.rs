//! What the kubelet and container runtime compute for one container before it starts: the
//! image pull (with containerd's error texts and pull-secret check), the pod's volumes on the
//! host (emptyDir, PVC, secret, configMap, hostPath), the environment
//! (`pkg/kubelet/kubelet_pods.go` `makeEnvironmentVariables`, `$(VAR)` expansion of
//! `third_party/forked/golang/expansion`), the command (the documented command/args ×
//! ENTRYPOINT/CMD table, `pkg/kubelet/kuberuntime/kuberuntime_container.go`), the mounts and
//! the process identity (`runAsUser`/`runAsGroup`/`fsGroup`/`supplementalGroups`, capabilities,
//! `allowPrivilegeEscalation`: `pkg/kubelet/kuberuntime/security_context.go` and containerd's
//! default capability set). Must not: start processes or publish status.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use serde_json::Value;

use super::Shared;
use super::images::{ImageSpec, normalize, registry_host};
use super::sandbox::{Identity, Mount, SandboxConfig};

/// containerd's default capability set for a container that is not privileged
/// (`oci.DefaultSpec` / `pkg/cap`), the same as Docker's.
const DEFAULT_CAPABILITIES: &[&str] = &[
    "chown",
    "dac_override",
    "fsetid",
    "fowner",
    "mknod",
    "net_raw",
    "setgid",
    "setuid",
    "setfcap",
    "setpcap",
    "net_bind_service",
    "sys_chroot",
    "kill",
    "audit_write",
];

/// Who `container` runs as: its own `securityContext` over the pod's, else the image's user
/// (our test images set none: root, group 0). The pod's `fsGroup` and `supplementalGroups`
/// are supplementary groups of every container.
pub fn identity(pod: &Pod, container: &Container) -> Identity {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = container.security_context.as_ref();
    let id = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok());
    let uid = id(sc.and_then(|s| s.run_as_user))
        .or_else(|| id(pod_sc.and_then(|s| s.run_as_user)))
        .unwrap_or(0);
    let gid = id(sc.and_then(|s| s.run_as_group))
        .or_else(|| id(pod_sc.and_then(|s| s.run_as_group)))
        .unwrap_or(0);
    let mut groups: Vec<u32> = pod_sc
        .and_then(|s| s.supplemental_groups.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|g| u32::try_from(g).ok())
        .chain(id(pod_sc.and_then(|s| s.fs_group)))
        .collect();
    groups.sort_unstable();
    groups.dedup();
    let name = |c: &String| {
        let c = c.to_ascii_lowercase();
        c.strip_prefix("cap_").map(str::to_owned).unwrap_or(c)
    };
    let capabilities = if sc.and_then(|s| s.privileged) == Some(true) {
        None
    } else {
        let caps = sc.and_then(|s| s.capabilities.as_ref());
        let drop: Vec<String> = caps
            .and_then(|c| c.drop.as_ref())
            .into_iter()
            .flatten()
            .map(name)
            .collect();
        let mut set: Vec<String> = if drop.iter().any(|d| d == "all") {
            Vec::new()
        } else {
            DEFAULT_CAPABILITIES
                .iter()
                .map(|c| (*c).to_owned())
                .filter(|c| !drop.contains(c))
                .collect()
        };
        for add in caps.and_then(|c| c.add.as_ref()).into_iter().flatten() {
            let add = name(add);
            if !set.contains(&add) {
                set.push(add);
            }
        }
        Some(set)
    };
    Identity {
        uid,
        gid,
        groups,
        capabilities,
        no_new_privs: sc.and_then(|s| s.allow_privilege_escalation) == Some(false),
    }
}

/// The pod's `fsGroup`, if any.
fn fs_group(pod: &Pod) -> Option<u32> {
    pod.spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.fs_group)
        .and_then(|g| u32::try_from(g).ok())
}

/// The kubelet's `SetVolumeOwnership` (`pkg/volume/volume_linux.go`): every entry gets the
/// group `fs_group` and `rw` for the group (`r` when read-only), directories also `x` and
/// setgid, so what is created later inherits the group. Symlinks are left alone. With
/// `OnRootMismatch` nothing changes when the root already has the group and the bits.
fn set_volume_ownership(dir: &Path, fs_group: u32, read_only: bool, policy: Option<&str>) {
    use std::os::unix::fs::MetadataExt as _;
    let mask = if read_only { 0o440 } else { 0o660 };
    let dir_mask = mask | 0o2000 | 0o110;
    if policy == Some("OnRootMismatch")
        && std::fs::metadata(dir)
            .is_ok_and(|m| m.gid() == fs_group && m.mode() & dir_mask == dir_mask)
    {
        return;
    }
    fn walk(path: &Path, gid: u32, mask: u32, dir_mask: u32) {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return;
        };
        if meta.file_type().is_symlink() {
            return;
        }
        let _ = std::os::unix::fs::lchown(path, None, Some(gid));
        let add = if meta.is_dir() { dir_mask } else { mask };
        let _ = std::fs::set_permissions(
            path,
            std::fs::Permissions::from_mode((meta.permissions().mode() & 0o7777) | add),
        );
        if meta.is_dir()
            && let Ok(entries) = std::fs::read_dir(path)
        {
            for entry in entries.flatten() {
                walk(&entry.path(), gid, mask, dir_mask);
            }
        }
    }
    walk(dir, fs_group, mask, dir_mask);
}

/// Why an image cannot be had.
pub enum PullError {
    /// `ErrImagePull`, with the runtime's message.
    Failed(String),
    /// `ErrImageNeverPull`.
    NeverPull(String),
}

/// Pull `image` for `pod`: scripted failures first, then the image store, then credentials.
pub fn pull(shared: &Shared, pod: &Pod, image: &str, policy: &str) -> Result<ImageSpec, PullError> {
    let reference = normalize(image);
    if let Some(message) = shared.kubelet.scripted_pull_failure(&reference) {
        return Err(PullError::Failed(message));
    }
    let Some(spec) = shared.images.lookup(image) else {
        if policy == "Never" {
            // pkg/kubelet/images/image_manager.go
            return Err(PullError::NeverPull(format!(
                "Container image \"{image}\" is not present with pull policy of Never"
            )));
        }
        // containerd 1.7 resolver error for a missing repository or tag.
        return Err(PullError::Failed(format!(
            "rpc error: code = NotFound desc = failed to pull and unpack image \"{reference}\": failed to resolve reference \"{reference}\": {reference}: not found"
        )));
    };
    if spec.requires_auth && !has_credentials(shared, pod, &registry_host(image)) {
        return Err(PullError::Failed(format!(
            "rpc error: code = Unknown desc = failed to pull and unpack image \"{reference}\": failed to resolve reference \"{reference}\": pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed"
        )));
    }
    Ok(spec)
}

fn secret(shared: &Shared, namespace: &str, name: &str) -> Option<Secret> {
    shared
        .store
        .get("secrets", namespace, name)
        .and_then(|o| serde_json::from_value(o).ok())
}

fn config_map(shared: &Shared, namespace: &str, name: &str) -> Option<ConfigMap> {
    shared
        .store
        .get("configmaps", namespace, name)
        .and_then(|o| serde_json::from_value(o).ok())
}

/// Whether one of the pod's `imagePullSecrets` has credentials for `host` (the credential
/// provider matches `auths` keys by registry host; `index.docker.io` is Docker Hub).
fn has_credentials(shared: &Shared, pod: &Pod, host: &str) -> bool {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let secrets = pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.clone())
        .unwrap_or_default();
    secrets.iter().any(|reference| {
        let Some(secret) = secret(shared, namespace, &reference.name) else {
            return false;
        };
        let Some(config) = secret
            .data
            .as_ref()
            .and_then(|d| d.get(".dockerconfigjson"))
            .and_then(|b| serde_json::from_slice::<Value>(&b.0).ok())
        else {
            return false;
        };
        config["auths"].as_object().is_some_and(|auths| {
            auths.keys().any(|key| {
                let bare = key
                    .trim_start_matches("https://")
                    .trim_start_matches("http://");
                let bare = bare.split('/').next().unwrap_or_default();
                let bare = if bare == "index.docker.io" {
                    "docker.io"
                } else {
                    bare
                };
                bare == host
            })
        })
    })
}

/// A volume as the container runtime sees it.
#[derive(Clone, Debug)]
pub struct VolumeDir {
    pub host: PathBuf,
    pub read_only: bool,
}

fn write_file(dir: &Path, relative: &str, data: &[u8], mode: i32) -> std::io::Result<()> {
    let path = dir.join(relative);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&path, data)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode as u32 & 0o7777))
}

/// Set up the pod's volumes on the host. An error is the `FailedMount` event message; the
/// kubelet retries until it succeeds (e.g. once the secret exists).
pub fn setup_volumes(
    shared: &Shared,
    pod: &Pod,
    pod_dir: &Path,
) -> Result<HashMap<String, VolumeDir>, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut volumes = HashMap::new();
    let spec_volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    for volume in spec_volumes {
        let name = volume.name.clone();
        let own_dir = pod_dir.join("volumes").join(&name);
        let failed =
            |why: String| format!("MountVolume.SetUp failed for volume \"{name}\" : {why}");
        let io = |e: std::io::Error| failed(e.to_string());
        let entry = if volume.empty_dir.is_some() {
            // An emptyDir on disk is made 0777 (`pkg/volume/emptydir/empty_dir.go`), then gets
            // the pod's fsGroup.
            if !own_dir.exists() {
                std::fs::create_dir_all(&own_dir).map_err(io)?;
                std::fs::set_permissions(&own_dir, std::fs::Permissions::from_mode(0o777))
                    .map_err(io)?;
                if let Some(gid) = fs_group(pod) {
                    set_volume_ownership(&own_dir, gid, false, None);
                }
            }
            VolumeDir {
                host: own_dir,
                read_only: false,
            }
        } else if let Some(claim) = &volume.persistent_volume_claim {
            let dir = shared.pvc_dir(namespace, &claim.claim_name);
            std::fs::create_dir_all(&dir).map_err(io)?;
            if let Some(gid) = fs_group(pod) {
                let policy = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.security_context.as_ref())
                    .and_then(|s| s.fs_group_change_policy.as_deref());
                set_volume_ownership(&dir, gid, claim.read_only == Some(true), policy);
            }
            VolumeDir {
                host: dir,
                read_only: claim.read_only == Some(true),
            }
        } else if let Some(source) = &volume.secret {
            let secret_name = source.secret_name.clone().unwrap_or_default();
            std::fs::create_dir_all(&own_dir).map_err(io)?;
            let optional = source.optional == Some(true);
            match secret(shared, namespace, &secret_name) {
                None if optional => {}
                None => return Err(failed(format!("secret \"{secret_name}\" not found"))),
                Some(found) => {
                    let data: HashMap<String, Vec<u8>> = found
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect();
                    let mode = source.default_mode.unwrap_or(0o644);
                    project(&own_dir, &data, source.items.as_deref(), mode, optional).map_err(
                        |why| failed(format!("references non-existent secret key: {why}")),
                    )?;
                }
            }
            VolumeDir {
                host: own_dir,
                read_only: true,
            }
        } else if let Some(source) = &volume.config_map {
            std::fs::create_dir_all(&own_dir).map_err(io)?;
            let optional = source.optional == Some(true);
            match config_map(shared, namespace, &source.name) {
                None if optional => {}
                None => {
                    return Err(failed(format!("configmap \"{}\" not found", source.name)));
                }
                Some(found) => {
                    let mut data: HashMap<String, Vec<u8>> = found
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes()))
                        .collect();
                    data.extend(
                        found
                            .binary_data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.0)),
                    );
                    let mode = source.default_mode.unwrap_or(0o644);
                    project(&own_dir, &data, source.items.as_deref(), mode, optional).map_err(
                        |why| {
                            failed(format!(
                                "configmap references non-existent config key: {why}"
                            ))
                        },
                    )?;
                }
            }
            VolumeDir {
                host: own_dir,
                read_only: true,
            }
        } else if let Some(source) = &volume.host_path {
            let path = PathBuf::from(&source.path);
            match source.type_.as_deref() {
                Some("DirectoryOrCreate") => std::fs::create_dir_all(&path).map_err(io)?,
                Some("FileOrCreate") if !path.exists() => std::fs::write(&path, b"").map_err(io)?,
                _ if !path.exists() => {
                    return Err(failed(format!(
                        "hostPath type check failed: {} is not a directory",
                        source.path
                    )));
                }
                _ => {}
            }
            VolumeDir {
                host: path,
                read_only: false,
            }
        } else if volume.projected.is_some() || volume.downward_api.is_some() {
            // Simplified: no service-account token or downward API files are projected.
            std::fs::create_dir_all(&own_dir).map_err(io)?;
            VolumeDir {
                host: own_dir,
                read_only: true,
            }
        } else {
            return Err(failed(
                "the fake node cannot provide this volume type".to_string(),
            ));
        };
        volumes.insert(name, entry);
    }
    Ok(volumes)
}

/// Write secret/configMap keys as files: all keys, or only `items` (key → path, mode).
fn project(
    dir: &Path,
    data: &HashMap<String, Vec<u8>>,
    items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
    default_mode: i32,
    optional: bool,
) -> Result<(), String> {
    match items {
        Some(items) if !items.is_empty() => {
            for item in items {
                match data.get(&item.key) {
                    Some(bytes) => {
                        write_file(dir, &item.path, bytes, item.mode.unwrap_or(default_mode))
                            .map_err(|e| e.to_string())?;
                    }
                    None if optional => {}
                    None => return Err(item.key.clone()),
                }
            }
        }
        _ => {
            for (key, bytes) in data {
                write_file(dir, key, bytes, default_mode).map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
}

/// `expansion.Expand`: `$(VAR)` → its value when defined, `$$` → `$`, anything else as is.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => out.push_str(&rest[dollar..dollar + 3 + end]),
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str(&rest[dollar..]);
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn set(env: &mut Vec<(String, String)>, key: &str, value: String) {
    match env.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value,
        None => env.push((key.to_string(), value)),
    }
}

/// The container's env from its spec (`envFrom`, then `env`). An error is the
/// `CreateContainerConfigError` message.
pub fn spec_env(
    shared: &Shared,
    pod: &Pod,
    container: &Container,
    pod_ip: &str,
) -> Result<Vec<(String, String)>, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut env: Vec<(String, String)> = Vec::new();
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        if let Some(reference) = &source.secret_ref {
            match secret(shared, namespace, &reference.name) {
                Some(found) => {
                    for (key, value) in found.data.unwrap_or_default() {
                        set(
                            &mut env,
                            &format!("{prefix}{key}"),
                            String::from_utf8_lossy(&value.0).into_owned(),
                        );
                    }
                }
                None if reference.optional == Some(true) => {}
                None => return Err(format!("secret \"{}\" not found", reference.name)),
            }
        }
        if let Some(reference) = &source.config_map_ref {
            match config_map(shared, namespace, &reference.name) {
                Some(found) => {
                    for (key, value) in found.data.unwrap_or_default() {
                        set(&mut env, &format!("{prefix}{key}"), value);
                    }
                }
                None if reference.optional == Some(true) => {}
                None => return Err(format!("configmap \"{}\" not found", reference.name)),
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = if let Some(value) = &var.value {
            let snapshot = env.clone();
            expand(value, &|name| {
                snapshot
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            })
        } else if let Some(from) = &var.value_from {
            if let Some(selector) = &from.secret_key_ref {
                match secret(shared, namespace, &selector.name) {
                    Some(found) => match found.data.unwrap_or_default().get(&selector.key) {
                        Some(bytes) => String::from_utf8_lossy(&bytes.0).into_owned(),
                        None if selector.optional == Some(true) => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in Secret {namespace}/{}",
                                selector.key, selector.name
                            ));
                        }
                    },
                    None if selector.optional == Some(true) => continue,
                    None => return Err(format!("secret \"{}\" not found", selector.name)),
                }
            } else if let Some(selector) = &from.config_map_key_ref {
                match config_map(shared, namespace, &selector.name) {
                    Some(found) => match found.data.unwrap_or_default().get(&selector.key) {
                        Some(value) => value.clone(),
                        None if selector.optional == Some(true) => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in ConfigMap {namespace}/{}",
                                selector.key, selector.name
                            ));
                        }
                    },
                    None if selector.optional == Some(true) => continue,
                    None => return Err(format!("configmap \"{}\" not found", selector.name)),
                }
            } else if let Some(field) = &from.field_ref {
                field_value(pod, &field.field_path, pod_ip, &shared.options.node_ip)
            } else {
                continue; // resourceFieldRef: not provided by this fake
            }
        } else {
            String::new()
        };
        set(&mut env, &var.name, value);
    }
    Ok(env)
}

/// `podFieldSelectorRuntimeValue` / `ConvertDownwardAPIFieldLabel`.
fn field_value(pod: &Pod, path: &str, pod_ip: &str, host_ip: &str) -> String {
    let meta = &pod.metadata;
    let label = |map: &Option<std::collections::BTreeMap<String, String>>, key: &str| {
        map.as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default()
    };
    match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
        "spec.serviceAccountName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => host_ip.to_string(),
        other => {
            if let Some(key) = other
                .strip_prefix("metadata.labels['")
                .and_then(|k| k.strip_suffix("']"))
            {
                label(&meta.labels, key)
            } else if let Some(key) = other
                .strip_prefix("metadata.annotations['")
                .and_then(|k| k.strip_suffix("']"))
            {
                label(&meta.annotations, key)
            } else {
                String::new()
            }
        }
    }
}

/// The pod's hostname as the kubelet sets it (`spec.hostname`, else the name cut to 63).
pub fn hostname(pod: &Pod) -> String {
    if let Some(name) = pod.spec.as_ref().and_then(|s| s.hostname.clone()) {
        return name;
    }
    let name = pod.metadata.name.clone().unwrap_or_default();
    let cut = &name[..name.len().min(63)];
    cut.trim_end_matches(['-', '.']).to_string()
}

/// Everything the sandbox needs for `container`, from its spec, its image and the pod's volumes.
/// An error is the `CreateContainerConfigError` message.
pub fn sandbox_config(
    shared: &Shared,
    pod: &Pod,
    container: &Container,
    image: &ImageSpec,
    volumes: &HashMap<String, VolumeDir>,
    termination_log: &Path,
    pod_ip: &str,
) -> Result<SandboxConfig, String> {
    let spec_env = spec_env(shared, pod, container, pod_ip)?;
    let lookup = |name: &str| {
        spec_env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let expand_all = |list: &Option<Vec<String>>| -> Vec<String> {
        list.iter().flatten().map(|s| expand(s, &lookup)).collect()
    };
    let command = expand_all(&container.command);
    let args = expand_all(&container.args);
    // Command/args vs ENTRYPOINT/CMD ("Define a Command and Arguments for a Container").
    let argv = match (command.is_empty(), args.is_empty()) {
        (true, true) => image.entrypoint.iter().chain(&image.cmd).cloned().collect(),
        (false, true) => command,
        (true, false) => image.entrypoint.iter().cloned().chain(args).collect(),
        (false, false) => command.into_iter().chain(args).collect(),
    };

    // containerd: HOSTNAME, then the image env, then the container's (same keys replaced);
    // runc adds HOME for the user when missing.
    let hostname = hostname(pod);
    let mut env = vec![("HOSTNAME".to_string(), hostname.clone())];
    for (key, value) in image.env.iter().chain(&spec_env) {
        set(&mut env, key, value.clone());
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push((
            "PATH".to_string(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        ));
    }
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push(("HOME".to_string(), "/root".to_string()));
    }

    let mut mounts = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let Some(volume) = volumes.get(&mount.name) else {
            return Err(format!(
                "cannot find volume \"{}\" to mount into container \"{}\"",
                mount.name, container.name
            ));
        };
        let sub_path = match (&mount.sub_path, &mount.sub_path_expr) {
            (Some(sub), _) if !sub.is_empty() => sub.clone(),
            (_, Some(expr)) if !expr.is_empty() => expand(expr, &lookup),
            _ => String::new(),
        };
        let host = if sub_path.is_empty() {
            volume.host.clone()
        } else {
            // The kubelet creates a missing subPath as a directory with the mode of the
            // volume's root (`pkg/kubelet/kubelet_pods.go` `makeMounts`, `SafeMakeDir`), as
            // root; a setgid root passes its group on.
            let host = volume.host.join(&sub_path);
            if !host.exists() {
                let mode = std::fs::metadata(&volume.host)
                    .map(|m| m.permissions().mode() & 0o7777)
                    .unwrap_or(0o755);
                let mut missing = Vec::new();
                let mut at = host.as_path();
                while !at.exists() {
                    missing.push(at.to_path_buf());
                    match at.parent() {
                        Some(parent) => at = parent,
                        None => break,
                    }
                }
                std::fs::create_dir_all(&host).map_err(|e| e.to_string())?;
                for dir in missing {
                    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode));
                }
            }
            host
        };
        mounts.push(Mount {
            host,
            target: mount.mount_path.clone(),
            read_only: mount.read_only == Some(true) || volume.read_only,
        });
    }
    mounts.push(Mount {
        host: termination_log.to_path_buf(),
        target: container
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".to_string()),
        read_only: false,
    });

    let workdir = container
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| image.working_dir.clone())
        .unwrap_or_else(|| "/".to_string());
    Ok(SandboxConfig {
        rootfs: image.rootfs.clone().unwrap_or_else(|| PathBuf::from("/")),
        mounts,
        env,
        workdir,
        argv,
        hostname,
        identity: identity(pod, container),
    })
}

#[cfg(test)]
mod tests {
    use super::expand;

    #[test]
    fn expansion_matches_kubelet() {
        let lookup = |name: &str| (name == "A").then(|| "x".to_string());
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", &lookup), "x-$(B)-$(A)-$");
        assert_eq!(expand("a$(A", &lookup), "a$(A");
    }
}
