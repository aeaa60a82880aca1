//! The runner's mount view in a pod: the `work` volume (the runner's claim or an emptyDir), the
//! `externals` volume, the runner's Docker mounts mapped to `subPath` mounts of them, user
//! volumes, and the `fs-init` init container that fills `externals` and creates the `subPath`
//! directories as the runner user.
//!
//! The runner passes `docker create` one bind mount per directory
//! (`src/Runner.Worker/Container/DockerCommandManager.cs` in actions/runner); here every
//! directory under the runner's `_work` becomes a `subPath` of one `work` volume, so `/__w`,
//! `/__w/_temp`, `/github/home` and `/github/workflow` show what a bind mount would.
//!
//! Owns the mapping from mount sources to volumes and the user-volume copies the caller makes.
//! It must not build pods, choose the data plane (the caller picks the [`WorkVolume`]), copy
//! files, call the API, read files or draw random numbers.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, PersistentVolumeClaimVolumeSource, SecurityContext, Volume,
    VolumeMount,
};
use serde::Serialize;
use tracing::{debug, warn};

use super::names::JOB_CONTAINER;
use super::{Placement, SpecError};
use crate::paths::normalize;
use crate::protocol::{DataPlane, Mount};

/// The volume holding the runner's `_work` directory.
pub const WORK_VOLUME: &str = "work";

/// The volume holding the runner's `externals` (mounted at `/__e`).
pub const EXTERNALS_VOLUME: &str = "externals";

/// The init container that fills [`EXTERNALS_VOLUME`] (the TypeScript hook's name).
pub const FS_INIT_CONTAINER: &str = "fs-init";

/// User and group id of the runner in the runner image (`ghcr.io/actions/actions-runner`); the
/// TypeScript hook's `fsGroup` and `fs-init` user.
pub const RUNNER_UID: i64 = 1001;

/// Where the runner image keeps `externals`.
const RUNNER_IMAGE_EXTERNALS: &str = "/home/runner/externals";

/// Mount points in `fs-init`.
const INIT_EXTERNALS_MOUNT: &str = "/mnt/externals";
const INIT_WORK_MOUNT: &str = "/mnt/work";

/// Where a user volume that every container mounts read-only is also mounted writable, so the
/// caller can copy its content in (`VolumeCopy::path`).
const STAGING_ROOT: &str = "/__hook";

/// The runner mounts the Docker socket into every container; there is no Docker in the pod.
const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// Where the job's `work` volume comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkVolume {
    /// Volume mode: the runner's work volume claim, and where the pod may run.
    Claim {
        /// The PersistentVolumeClaim's name (`ACTIONS_RUNNER_CLAIM_NAME`, default
        /// `<runner-pod>-work`).
        claim_name: String,
        /// Node affinity for the pod.
        placement: Placement,
    },
    /// Copy mode: an emptyDir the caller fills by copying the runner's `_work` into the job
    /// container at [`JobPodPlan::work_mount`](super::JobPodPlan::work_mount).
    EmptyDir,
}

impl WorkVolume {
    /// The data plane this work volume belongs to.
    pub fn data_plane(&self) -> DataPlane {
        match self {
            WorkVolume::Claim { .. } => DataPlane::Volume,
            WorkVolume::EmptyDir => DataPlane::Copy,
        }
    }
}

/// A user volume whose content must be copied from the runner into the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeCopy {
    /// The host path on the runner (the workflow's `volumes:` source).
    pub source: PathBuf,
    /// The container to exec into.
    pub container: String,
    /// A writable path in that container where the volume is mounted: the user's target, or a
    /// staging mount under `/__hook/` when every mount of the volume is read-only.
    pub path: String,
    /// The pod volume (`user-volume-<n>`).
    pub volume: String,
}

/// The `work` volume: the runner's claim in volume mode, an emptyDir in copy mode.
pub(super) fn work_volume(source: &WorkVolume) -> Volume {
    Volume {
        name: WORK_VOLUME.into(),
        persistent_volume_claim: match source {
            WorkVolume::Claim { claim_name, .. } => Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name.clone(),
                read_only: None,
            }),
            WorkVolume::EmptyDir => None,
        },
        empty_dir: matches!(source, WorkVolume::EmptyDir).then(EmptyDirVolumeSource::default),
        ..Default::default()
    }
}

pub(super) fn empty_dir_volume(name: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

/// `fs-init`: copies the runner's externals into the `externals` volume, and creates the
/// work-volume directories that containers mount by `subPath`.
///
/// The kubelet creates a missing `subPath` directory itself, owned by root; in copy mode the
/// emptyDir starts empty, so `/github/home` would be root-owned and unwritable for a non-root
/// job image. Created here first, as the runner user, they carry its ownership (and the pod's
/// `fsGroup`). Paths go to the script as arguments (`"$@"`), never through shell quoting; an
/// existing path (a file mounted from the work volume in volume mode) is left alone.
pub(super) fn fs_init(runner_image: &str, layout: &Layout) -> Vec<Container> {
    let mut script = vec!["set -e".to_owned()];
    let mut volume_mounts = Vec::new();
    let mut dirs = Vec::new();
    if layout.uses_externals {
        script.push(format!(
            "cp -R {RUNNER_IMAGE_EXTERNALS}/. {INIT_EXTERNALS_MOUNT}"
        ));
        volume_mounts.push(VolumeMount {
            name: EXTERNALS_VOLUME.into(),
            mount_path: INIT_EXTERNALS_MOUNT.into(),
            ..Default::default()
        });
    }
    if !layout.work_dirs.is_empty() {
        script.push(r#"for dir in "$@"; do [ -e "$dir" ] || mkdir -p -- "$dir"; done"#.to_owned());
        volume_mounts.push(VolumeMount {
            name: WORK_VOLUME.into(),
            mount_path: INIT_WORK_MOUNT.into(),
            ..Default::default()
        });
        dirs.extend(
            layout
                .work_dirs
                .iter()
                .map(|sub| format!("{INIT_WORK_MOUNT}/{sub}")),
        );
    }
    if volume_mounts.is_empty() {
        return Vec::new();
    }
    let mut command = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        script.join("\n"),
        FS_INIT_CONTAINER.to_owned(), // `$0` of the script
    ];
    command.extend(dirs);
    vec![Container {
        name: FS_INIT_CONTAINER.into(),
        image: Some(runner_image.to_owned()),
        command: Some(command),
        security_context: Some(SecurityContext {
            run_as_user: Some(RUNNER_UID),
            run_as_group: Some(RUNNER_UID),
            ..Default::default()
        }),
        volume_mounts: Some(volume_mounts),
        ..Default::default()
    }]
}

/// Where a mount's source lives, seen from the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// Under the runner's `_work`: the work volume, at this `subPath` (`None`: its root).
    Work(Option<String>),
    /// Under the runner's `externals`: the externals volume.
    Externals(Option<String>),
    /// The Docker socket.
    DockerSocket,
    /// Another absolute host path.
    Host(PathBuf),
    /// A Docker named volume (no leading `/`).
    Named(String),
    /// No source given.
    Missing,
}

/// The pod-level result of mapping every container's mounts.
#[derive(Debug, Default)]
pub(super) struct Layout {
    pub(super) uses_work: bool,
    pub(super) uses_externals: bool,
    pub(super) work_dirs: BTreeSet<String>,
    pub(super) extra_volumes: Vec<String>,
    pub(super) copies: Vec<VolumeCopy>,
    pub(super) work_mount: Option<String>,
}

/// An emptyDir for a user volume outside `_work`, shared by every container that mounts the same
/// source (as a Docker bind mount or named volume would be).
#[derive(Debug)]
struct ExtraVolume {
    name: String,
    source: Source,
    /// (container index, container name, target, read-only) of each mount.
    mounts: Vec<(usize, String, String, bool)>,
}

/// Maps the runner's Docker mounts to volume mounts, one container at a time.
pub(super) struct MountPlanner {
    work_dir: Option<PathBuf>,
    externals_dir: Option<PathBuf>,
    extra: Vec<ExtraVolume>,
}

impl MountPlanner {
    pub(super) fn new(work_dir: &Path) -> MountPlanner {
        let work_dir = normalize(work_dir);
        // The runner's layout: `<root>/_work` beside `<root>/externals` (`GetDirectory` in
        // actions/runner's `src/Runner.Common/HostContext.cs`).
        let externals_dir = work_dir
            .as_deref()
            .and_then(Path::parent)
            .map(|root| root.join("externals"));
        MountPlanner {
            work_dir,
            externals_dir,
            extra: Vec::new(),
        }
    }

    fn classify(&self, source: Option<&str>) -> Source {
        let Some(source) = source.filter(|s| !s.is_empty()) else {
            return Source::Missing;
        };
        if !source.starts_with('/') {
            return Source::Named(source.to_owned());
        }
        let Some(path) = normalize(Path::new(source)) else {
            return Source::Host(PathBuf::from(source));
        };
        if path == Path::new(DOCKER_SOCKET) {
            return Source::DockerSocket;
        }
        let relative = |base: &Option<PathBuf>| {
            let rest = path.strip_prefix(base.as_ref()?).ok()?;
            let rest = rest.to_str()?;
            Some((!rest.is_empty()).then(|| rest.to_owned()))
        };
        if let Some(sub) = relative(&self.work_dir) {
            return Source::Work(sub);
        }
        if let Some(sub) = relative(&self.externals_dir) {
            return Source::Externals(sub);
        }
        Source::Host(path)
    }

    /// The volume mounts of one container: system mounts first, then user mounts; a user mount
    /// with the target of a system mount replaces it, and a repeated target keeps the first.
    pub(super) fn container(
        &mut self,
        index: usize,
        container: &str,
        system: &[Mount],
        user: &[Mount],
    ) -> Result<Vec<VolumeMount>, SpecError> {
        let mut mounts: Vec<(VolumeMount, bool)> = Vec::new();
        for (mount, is_user) in system
            .iter()
            .map(|m| (m, false))
            .chain(user.iter().map(|m| (m, true)))
        {
            let target = mount_target(container, &mount.target_volume_path)?;
            let source = self.classify(mount.source_volume_path.as_deref());
            let volume = match &source {
                Source::Work(sub) => Some((WORK_VOLUME.to_owned(), sub.clone())),
                Source::Externals(sub) => Some((EXTERNALS_VOLUME.to_owned(), sub.clone())),
                Source::DockerSocket => {
                    if is_user {
                        warn!(
                            container,
                            "the Docker socket mount at `{target}` is skipped: there is no Docker daemon in the job pod"
                        );
                    } else {
                        debug!(
                            container,
                            "skipping the Docker socket mount: there is no Docker daemon in the job pod"
                        );
                    }
                    None
                }
                Source::Missing => {
                    warn!(
                        container,
                        "the mount at `{target}` has no source and is skipped"
                    );
                    None
                }
                Source::Host(path) if !is_user => {
                    // E.g. a tool cache outside `_work` (`/__t`): nothing in the pod holds it.
                    warn!(
                        container,
                        "the runner's mount of `{}` at `{target}` is skipped: only directories under the runner's `_work` and `externals` are available in the pod",
                        path.display()
                    );
                    None
                }
                Source::Named(name) if !is_user => {
                    warn!(
                        container,
                        "the runner's mount of volume `{name}` at `{target}` is skipped"
                    );
                    None
                }
                Source::Host(_) | Source::Named(_) => {
                    if let Source::Named(name) = &source {
                        warn!(
                            container,
                            "Docker volume `{name}` is mounted at `{target}` as an empty directory that lasts as long as the job pod, not a persistent volume"
                        );
                    }
                    let name =
                        self.extra_volume(&source, index, container, &target, mount.read_only);
                    Some((name, None))
                }
            };
            let Some((volume, sub_path)) = volume else {
                continue;
            };
            let volume_mount = VolumeMount {
                name: volume,
                mount_path: target.clone(),
                sub_path,
                read_only: mount.read_only.then_some(true),
                ..Default::default()
            };
            match mounts.iter().position(|(m, _)| m.mount_path == target) {
                None => mounts.push((volume_mount, is_user)),
                Some(i) if is_user && !mounts[i].1 => {
                    warn!(
                        container,
                        "the workflow's volume at `{target}` replaces the runner's mount there"
                    );
                    mounts[i] = (volume_mount, true);
                }
                Some(_) => {
                    warn!(
                        container,
                        "a second mount at `{target}` is skipped: a target can be mounted once"
                    );
                }
            }
        }
        Ok(mounts.into_iter().map(|(m, _)| m).collect())
    }

    fn extra_volume(
        &mut self,
        source: &Source,
        index: usize,
        container: &str,
        target: &str,
        read_only: bool,
    ) -> String {
        let position = match self.extra.iter().position(|v| &v.source == source) {
            Some(position) => position,
            None => {
                self.extra.push(ExtraVolume {
                    name: format!("user-volume-{}", self.extra.len()),
                    source: source.clone(),
                    mounts: Vec::new(),
                });
                self.extra.len() - 1
            }
        };
        let volume = &mut self.extra[position];
        volume
            .mounts
            .push((index, container.to_owned(), target.to_owned(), read_only));
        volume.name.clone()
    }

    /// Record which volumes the containers use and plan the user-volume copies. A volume every
    /// container mounts read-only gets a writable staging mount in the first one, so it can be
    /// filled.
    pub(super) fn finish(self, containers: &mut [Container]) -> Layout {
        let mut layout = Layout::default();
        for container in containers.iter() {
            for mount in container.volume_mounts.iter().flatten() {
                match mount.name.as_str() {
                    WORK_VOLUME => {
                        layout.uses_work = true;
                        match &mount.sub_path {
                            Some(sub) => {
                                layout.work_dirs.insert(sub.clone());
                            }
                            None if container.name == JOB_CONTAINER
                                && layout.work_mount.is_none() =>
                            {
                                layout.work_mount = Some(mount.mount_path.clone());
                            }
                            None => {}
                        }
                    }
                    EXTERNALS_VOLUME => layout.uses_externals = true,
                    _ => {}
                }
            }
            if let Some(dir) = container
                .working_dir
                .as_deref()
                .and_then(|wd| work_relative(container, wd))
            {
                layout.work_dirs.insert(dir);
            }
        }
        for volume in &self.extra {
            // A mount replaced by a later one at the same target is not in the pod.
            let live: Vec<&(usize, String, String, bool)> = volume
                .mounts
                .iter()
                .filter(|(index, _, target, _)| {
                    containers[*index]
                        .volume_mounts
                        .iter()
                        .flatten()
                        .any(|m| m.name == volume.name && &m.mount_path == target)
                })
                .collect();
            let Some(first) = live.first() else {
                continue;
            };
            layout.extra_volumes.push(volume.name.clone());
            let Source::Host(source) = &volume.source else {
                continue; // A named volume starts empty, as a new Docker volume does.
            };
            let (container, path) = match live.iter().find(|(_, _, _, read_only)| !read_only) {
                Some((_, container, target, _)) => (container.clone(), target.clone()),
                None => {
                    let (index, container, _, _) = first;
                    let staging = format!("{STAGING_ROOT}/{}", volume.name);
                    containers[*index]
                        .volume_mounts
                        .get_or_insert_with(Vec::new)
                        .push(VolumeMount {
                            name: volume.name.clone(),
                            mount_path: staging.clone(),
                            ..Default::default()
                        });
                    (container.clone(), staging)
                }
            };
            layout.copies.push(VolumeCopy {
                source: source.clone(),
                container,
                path,
                volume: volume.name.clone(),
            });
        }
        layout
    }
}

/// Where `path` (in `container`) lies in the work volume, through the deepest work-volume mount
/// that contains it; `None` outside the work volume or at its root.
///
/// Used for the working directory: in copy mode it does not exist until `_work` is copied in,
/// but the container starts before that, so the runtime would create it as root (the TypeScript
/// hook's `fs-init` also created the workspace directory).
fn work_relative(container: &Container, path: &str) -> Option<String> {
    let path = normalize(Path::new(path))?;
    let (mount, rest) = container
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| m.name == WORK_VOLUME)
        .filter_map(|m| Some((m, path.strip_prefix(&m.mount_path).ok()?)))
        .max_by_key(|(m, _)| m.mount_path.len())?;
    let relative = Path::new(mount.sub_path.as_deref().unwrap_or_default()).join(rest);
    let relative = relative.to_str()?.trim_end_matches('/');
    (!relative.is_empty()).then(|| relative.to_owned())
}

/// The mount target, normalized (`/a//b/` → `/a/b`); it must be absolute, as Docker requires.
fn mount_target(container: &str, target: &str) -> Result<String, SpecError> {
    let invalid = |reason| SpecError::InvalidMount {
        container: container.to_owned(),
        target: target.to_owned(),
        reason,
    };
    if !target.starts_with('/') {
        return Err(invalid("the target must be an absolute path"));
    }
    let normalized =
        normalize(Path::new(target)).ok_or_else(|| invalid("the target is not a path"))?;
    normalized
        .to_str()
        .map(str::to_owned)
        .ok_or_else(|| invalid("the target is not valid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tests::{
        RUNNER_IMAGE, build, container, copy_plan, definition, fixture, job_only, mount, mounts,
        volume_names,
    };

    #[test]
    fn system_mounts_reproduce_the_docker_view() {
        let plan = copy_plan(&fixture("prepare_job"));
        let job = container(&plan.pod, "job");
        let work = |sub: Option<&str>| (WORK_VOLUME.to_owned(), sub.map(str::to_owned));
        let expected = vec![
            ("/__w", work(None), false),
            ("/__e", (EXTERNALS_VOLUME.to_owned(), None), true),
            ("/__w/_temp", work(Some("_temp")), false),
            ("/__w/_actions", work(Some("_actions")), false),
            ("/__w/_tool", work(Some("_tool")), false),
            ("/github/home", work(Some("_temp/_github_home")), false),
            (
                "/github/workflow",
                work(Some("_temp/_github_workflow")),
                false,
            ),
            ("/data", work(Some("repo/repo/data")), false),
        ];
        let expected: Vec<_> = expected
            .into_iter()
            .map(|(target, (volume, sub), ro)| (target.to_owned(), volume, sub, ro))
            .collect();
        assert_eq!(mounts(job), expected, "docker.sock is skipped");
        // Services mount only what the runner asked for them: nothing.
        assert!(container(&plan.pod, "redis").volume_mounts.is_none());
    }

    #[test]
    fn fs_init_fills_externals_and_creates_sub_paths_as_the_runner() {
        let plan = copy_plan(&fixture("prepare_job"));
        let init = &plan
            .pod
            .spec
            .as_ref()
            .unwrap()
            .init_containers
            .as_ref()
            .unwrap()[0];
        assert_eq!(init.name, FS_INIT_CONTAINER);
        assert_eq!(init.image.as_deref(), Some(RUNNER_IMAGE));
        let sc = init.security_context.as_ref().unwrap();
        assert_eq!((sc.run_as_user, sc.run_as_group), (Some(1001), Some(1001)));
        let command = init.command.as_ref().unwrap();
        assert_eq!(&command[..2], ["sh", "-c"]);
        assert!(command[2].contains("cp -R /home/runner/externals/. /mnt/externals"));
        assert_eq!(
            &command[4..],
            [
                "/mnt/work/_actions",
                "/mnt/work/_temp",
                "/mnt/work/_temp/_github_home",
                "/mnt/work/_temp/_github_workflow",
                "/mnt/work/_tool",
                // The working directory, which only the copy would create otherwise.
                "/mnt/work/repo/repo",
                "/mnt/work/repo/repo/data",
            ]
        );
    }

    #[test]
    fn user_volumes_outside_work_become_copied_empty_dirs() {
        let mut args = fixture("prepare_job");
        let job = args.container.as_mut().unwrap();
        job.user_mount_volumes = vec![
            mount("/opt/certs", "/etc/ssl/private", true),
            mount("/srv/data", "/data", false),
            mount("/srv/data", "/data-again", true),
            mount("cache", "/cache", false),
        ];
        args.services[0].user_mount_volumes = vec![
            mount("/opt/certs", "/certs", true),
            mount("cache", "/cache", false),
        ];
        let plan = copy_plan(&args);
        let job = container(&plan.pod, "job");
        let user: Vec<_> = mounts(job).into_iter().skip(7).collect();
        assert_eq!(
            user,
            [
                (
                    "/etc/ssl/private".into(),
                    "user-volume-0".into(),
                    None,
                    true
                ),
                ("/data".into(), "user-volume-1".into(), None, false),
                ("/data-again".into(), "user-volume-1".into(), None, true),
                ("/cache".into(), "user-volume-2".into(), None, false),
                // Every mount of /opt/certs is read-only: a writable staging mount to fill it.
                (
                    "/__hook/user-volume-0".into(),
                    "user-volume-0".into(),
                    None,
                    false
                ),
            ]
        );
        let redis = container(&plan.pod, "redis");
        assert_eq!(
            mounts(redis),
            [
                ("/certs".into(), "user-volume-0".into(), None, true),
                ("/cache".into(), "user-volume-2".into(), None, false),
            ],
            "one source, one shared volume"
        );
        assert_eq!(
            plan.user_volume_copies,
            [
                VolumeCopy {
                    source: "/opt/certs".into(),
                    container: "job".into(),
                    path: "/__hook/user-volume-0".into(),
                    volume: "user-volume-0".into(),
                },
                VolumeCopy {
                    source: "/srv/data".into(),
                    container: "job".into(),
                    path: "/data".into(),
                    volume: "user-volume-1".into(),
                },
            ],
            "a named volume starts empty: nothing to copy"
        );
        let volumes = volume_names(&plan.pod);
        assert_eq!(
            volumes,
            [
                "work",
                "externals",
                "user-volume-0",
                "user-volume-1",
                "user-volume-2"
            ]
        );
    }

    #[test]
    fn unusable_sources_are_skipped_and_targets_are_unique() {
        let mut def = definition("node:22");
        def.system_mount_volumes = vec![
            mount("/var/run/docker.sock", "/var/run/docker.sock", false),
            mount("/home/runner/_work", "/__w", false),
            mount("/opt/hostedtoolcache", "/__t", false),
            mount(
                "/home/runner/_work/_temp/_github_home",
                "/github/home/",
                false,
            ),
            mount("/home/runner/externals/node20", "/node", true),
        ];
        def.user_mount_volumes = vec![
            mount("/home/runner/_work/repo/repo/home", "/github/home", false),
            mount("/home/runner/_work/repo/./repo/../other", "/other", false),
            mount("/home/runner/_work/a", "/other", false),
        ];
        let plan = copy_plan(&job_only(def));
        assert_eq!(
            mounts(container(&plan.pod, "job")),
            [
                ("/__w".into(), "work".into(), None, false),
                (
                    "/github/home".into(),
                    "work".into(),
                    Some("repo/repo/home".into()),
                    false
                ),
                (
                    "/node".into(),
                    "externals".into(),
                    Some("node20".into()),
                    true
                ),
                (
                    "/other".into(),
                    "work".into(),
                    Some("repo/other".into()),
                    false
                ),
            ]
        );
    }

    #[test]
    fn a_relative_mount_target_is_an_error() {
        let mut def = definition("node:22");
        def.user_mount_volumes = vec![mount("/srv", "data", false)];
        let err = build(&job_only(def), &WorkVolume::EmptyDir, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid mount target `data` for container `job`: the target must be an absolute path"
        );
    }
}
