//! The pod executor of the build engine: runs [`crate::image::script`] in a build pod.
//!
//! It creates the pod ([`crate::spec::build_pod::build_pod`]), fills the context in copy mode through
//! the `stage` init container, streams the build log live, waits for the build container's end
//! by watch (failing fast on image-pull and scheduling errors), reads `<ref>@<digest>` from the
//! termination message, and deletes the pod in every case.
//!
//! Owns the pod side of a build: the script's paths in the pod ([`build_spec`]), checking the
//! created pod ([`verify_created`]) and explaining a refusal ([`explain_rejection`]). The pod
//! itself is [`crate::spec::build_pod`]'s; what to build is the caller's.

use std::time::Instant;

use futures::future::BoxFuture;
use tokio::io::AsyncWrite;
use tracing::{debug, info, warn};

use super::wait::{self, Goal, Reached};
use super::{Session, Undo};
use crate::config::BuildConfig;
use crate::image::{self, BuildError, BuildOutcome, BuildSpec, Executor, LastLines};
use crate::spec::build_pod::BuilderProfile;
use crate::spec::build_pod::{self, BuildPodInput, READY_MARKER};
use crate::spec::names::BUILD_CONTAINER;
use crate::spec::names::STAGE_CONTAINER;
use crate::transfer::{self, CopyOptions, PackedDir};
use k8s_openapi::api::core::v1::Pod;

/// Where the context comes from.
pub enum PodContext<'a> {
    /// Volume mode: this read-only `subPath` of the work volume claim.
    Volume {
        /// The claim.
        claim_name: &'a str,
        /// The context relative to `_work`.
        sub_path: &'a str,
        /// Node placement, as for step pods.
        placement: &'a crate::spec::Placement,
    },
    /// Copy mode: this archive, streamed into the `stage` init container.
    Copy(&'a PackedDir),
}

/// Runs builds as pods.
pub struct PodExecutor<'a> {
    /// The hook session (client, namespace, configuration, undo log).
    pub session: &'a Session,
    /// The runner pod as owner, when known.
    pub owner: Option<&'a crate::spec::Owner>,
    /// The build context's source.
    pub source: PodContext<'a>,
    /// The hook template (`$build` applies).
    pub template: Option<&'a crate::spec::template::Template>,
    /// The runner pod's tolerations, which the build pod carries.
    pub tolerations: &'a [k8s_openapi::api::core::v1::Toleration],
}

impl Executor for PodExecutor<'_> {
    fn run<'a>(
        &'a self,
        spec: &'a BuildSpec,
        log: &'a mut (dyn AsyncWrite + Send + Unpin),
    ) -> BoxFuture<'a, Result<BuildOutcome, BuildError>> {
        Box::pin(async move {
            let result = self.run_pod(spec, log).await;
            // The build pod is deleted in every case: success, failure, timeout.
            self.session.undo_all(crate::cancel::CANCEL_GRACE).await;
            result
        })
    }
}

impl PodExecutor<'_> {
    async fn run_pod(
        &self,
        spec: &BuildSpec,
        log: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<BuildOutcome, BuildError> {
        let session = self.session;
        let config = &session.config.build;
        let started = Instant::now();
        let command = image::script::argv(spec);
        let source = match &self.source {
            PodContext::Volume {
                claim_name,
                sub_path,
                placement,
            } => build_pod::ContextSource::Volume {
                claim_name,
                sub_path,
                placement,
            },
            PodContext::Copy(_) => build_pod::ContextSource::Copy {
                stage_image: &session.config.runner_image,
            },
        };
        let pod_spec = build_pod::build_pod(&BuildPodInput {
            runner_pod: &session.runner_pod,
            suffix: &crate::spec::names::random_suffix(),
            owner: self.owner,
            profile: config.profile,
            seccomp_localhost: config.seccomp_profile.as_deref(),
            builder_image: &config.builder_image,
            builder_pull_secret: None,
            registry_secret: config.registry_secret_name.as_deref(),
            ca: config.registry_ca.as_ref(),
            resources: &config.resources,
            command: &command,
            context: source,
            template: self.template,
            tolerations: self.tolerations,
        })
        .map_err(|e| setup_error(format!("cannot build the build pod: {e}")))?;
        let name = pod_spec.metadata.name.clone().unwrap_or_default();
        if config.profile == BuilderProfile::Root {
            warn!(pod = %name, "builder profile `root`: the Dockerfile's RUN steps run as root on the node (no user namespace)");
        }
        let created = match session.create_pod(&pod_spec).await {
            Ok(created) => created,
            Err(crate::k8s::objects::ObjectError::Create { source, .. }) => {
                let message = match &source {
                    kube::Error::Api(status) => status.message.clone(),
                    other => other.to_string(),
                };
                return Err(setup_error(format!(
                    "the cluster refused the build pod: {}",
                    explain_rejection(config.profile, &message)
                )));
            }
            Err(other) => return Err(setup_error(format!("{other}"))),
        };
        session.undo.push(Undo::DeletePod(name.clone()));
        verify_created(config.profile, &created).map_err(|e| setup_error(e.to_string()))?;

        let start_timeout = session.config.prepare_job_timeout;
        if let PodContext::Copy(packed) = &self.source {
            wait::until(
                session,
                &name,
                &Goal::InitRunning {
                    container: STAGE_CONTAINER.to_owned(),
                },
                start_timeout,
            )
            .await
            .map_err(|e| setup_error(format!("the build pod did not start: {e}")))?;
            let stage = session.exec_in(&name, STAGE_CONTAINER);
            let report = transfer::copy_in_packed(
                &stage,
                packed,
                build_pod::CONTEXT_DIR,
                &CopyOptions::default(),
            )
            .await
            .map_err(|e| {
                setup_error(format!(
                    "failed to copy the build context into `{name}`: {e}"
                ))
            })?;
            debug!(%report, "build context copied");
            session
                .create_file(&name, STAGE_CONTAINER, READY_MARKER)
                .await
                .map_err(|e| setup_error(format!("could not release the build pod: {e:#}")))?;
        }

        wait::until(
            session,
            &name,
            &Goal::Started {
                container: BUILD_CONTAINER.to_owned(),
            },
            start_timeout,
        )
        .await
        .map_err(|e| setup_error(format!("the build pod did not start: {e}")))?;
        info!(pod = %name, elapsed = ?started.elapsed(), "build started");

        let mut last = LastLines::default();
        let follow = follow_log(session, &name, log, &mut last);
        let terminated = Goal::Terminated {
            container: BUILD_CONTAINER.to_owned(),
        };
        let end = wait::until(session, &name, &terminated, config.timeout);
        let (followed, end) = crate::k8s::logs::follow_until(follow, end).await;
        if let Some(Err(e)) = followed {
            warn!(error = %e, "the build log could not be followed to the end");
        }
        let reached = match end {
            Ok((_, reached)) => reached,
            Err(wait::WaitError::Timeout { .. }) => {
                return Err(BuildError::Timeout {
                    image: spec.image.clone(),
                    after: config.timeout,
                });
            }
            Err(e) => {
                let mut lines = last.into_vec();
                lines.push(e.to_string());
                return Err(BuildError::Exited {
                    code: None,
                    last_lines: lines,
                });
            }
        };
        let Reached::Terminated {
            exit_code, message, ..
        } = reached
        else {
            unreachable!("a Terminated goal ends terminated");
        };
        info!(pod = %name, exit_code, elapsed = ?started.elapsed(), "build ended");
        if exit_code != 0 {
            return Err(image::failure(spec, Some(exit_code), last.into_vec()));
        }
        image::parse_result(spec, message.as_deref().unwrap_or_default(), &last)
    }
}

/// The [`BuildSpec`] a build pod runs: the script's paths are the pod's layout ([`build_pod`]), the
/// options, storage driver, registry Secret and CA come from `config`. Both doors that build in
/// the cluster (the hook for a Dockerfile action, `runner-k8s-hook build --executor pod`) use it.
pub fn build_spec(
    config: &BuildConfig,
    dockerfile: &str,
    image: &str,
    push: bool,
    build_args: &[(String, String)],
) -> BuildSpec {
    BuildSpec {
        context_dir: build_pod::CONTEXT_DIR.to_owned(),
        dockerfile: dockerfile.to_owned(),
        image: image.to_owned(),
        push,
        build_args: build_args.to_vec(),
        storage: image::Storage {
            root: build_pod::storage_root(config.profile).to_owned(),
            runroot: build_pod::RUNROOT.to_owned(),
            driver: config.storage_driver,
        },
        build_options: config.build_options.clone(),
        push_options: config.push_options.clone(),
        auth_source: config
            .registry_secret_name
            .as_ref()
            .map(|_| build_pod::AUTH_SOURCE.to_owned()),
        cert_dir: config
            .registry_ca
            .as_ref()
            .map(|_| build_pod::CERT_DIR.to_owned()),
        work_dir: build_pod::WORK_DIR.to_owned(),
        result_path: build_pod::RESULT_PATH.to_owned(),
        wait_for: None,
        extra_tags: Vec::new(),
        cache: None,
    }
}

/// The API server dropped `hostUsers: false` (it does not know the field, or the
/// `UserNamespacesSupport` feature gate is off): the pod would run as root on the node.
#[derive(Debug, thiserror::Error)]
#[error(
    "the cluster dropped `hostUsers: false` from the `userns` build pod `{pod}`, so it would run as root on the node; the API server does not support user namespaces (Kubernetes 1.33 or later, or the `UserNamespacesSupport` feature gate): set `{}=rootless`",
    crate::config::BUILDER_PROFILE
)]
pub struct UserNamespaceDropped {
    /// The pod's name.
    pub pod: String,
}

/// Check the pod the API server created (its answer to the create call) still has what the
/// profile relies on: the API server silently drops fields it does not serve, and a `userns`
/// pod without `hostUsers: false` is a `root` pod. Delete the pod and fail when this fails.
///
/// # Errors
/// [`UserNamespaceDropped`].
pub fn verify_created(profile: BuilderProfile, created: &Pod) -> Result<(), UserNamespaceDropped> {
    let host_users = created.spec.as_ref().and_then(|s| s.host_users);
    if profile == BuilderProfile::Userns && host_users != Some(false) {
        return Err(UserNamespaceDropped {
            pod: created.metadata.name.clone().unwrap_or_default(),
        });
    }
    Ok(())
}

/// One sentence for the user when the cluster refused the build pod of `profile`, or the build
/// failed in a way that means the profile cannot work on this cluster: what refused it, why, and
/// what to do instead. `message` is the API server's refusal (`Status.message`), a kubelet event
/// or container state message, or the last lines of the build log. It names the configuration
/// variables; docs/user/build-pod-security.md has the details.
pub fn explain_rejection(profile: BuilderProfile, message: &str) -> String {
    let name = build_pod::profile_name(profile);
    let lower = message.to_ascii_lowercase();
    let has = |needle: &str| lower.contains(&needle.to_ascii_lowercase());
    let profile_var = crate::config::BUILDER_PROFILE;
    let seccomp_var = crate::config::BUILDER_SECCOMP_PROFILE;

    if has("violates podsecurity") {
        let level = if has("\"restricted") {
            "restricted"
        } else if has("\"baseline") {
            "baseline"
        } else {
            "the namespace's"
        };
        let why = match profile {
            BuilderProfile::Rootless => {
                "it needs `allowPrivilegeEscalation: true` and the SETUID and SETGID capabilities so that newuidmap and newgidmap can map the build user's subordinate ids"
            }
            BuilderProfile::Root => {
                "it runs as uid 0 with the SETUID, SETGID and SETFCAP capabilities"
            }
            BuilderProfile::Userns => {
                "it runs as uid 0 (in its own user namespace) with the SETUID, SETGID and SETFCAP capabilities"
            }
        };
        return if level == "restricted" {
            format!(
                "the namespace enforces Pod Security `restricted`, which refuses the `{name}` build pod: {why}; no Buildah profile passes `restricted` today: run builds in a namespace labelled `pod-security.kubernetes.io/enforce: baseline` (every profile passes `baseline`)"
            )
        } else {
            format!(
                "Pod Security `{level}` refused the `{name}` build pod: {why}, and every profile is meant to pass `baseline`, so a field the hook template's `$build` entry or `spec` adds is the likely cause (`privileged`, host namespaces, extra capabilities, an Unconfined seccomp profile); remove it, or run builds in a namespace that allows it"
            )
        };
    }
    if has("unshare(clone_newuser)") || (has("clone_newuser") && has("operation not permitted")) {
        return format!(
            "the node's seccomp profile blocks the user namespace Buildah needs (`unshare(CLONE_NEWUSER): Operation not permitted`), so the `{name}` profile cannot build here: the kubelet probably defaults to `RuntimeDefault` (`--seccomp-default`); install a seccomp profile that allows user namespaces (containers-common's `seccomp.json` does) under the kubelet's seccomp directory on every node and set `{seccomp_var}` to its path"
        );
    }
    if has("seccomp")
        && (has("no such file") || has("not found") || has("cannot load") || has("failed to load"))
    {
        return format!(
            "the `{name}` build pod asks for a `Localhost` seccomp profile the node does not have: install the file under the kubelet's seccomp directory (`/var/lib/kubelet/seccomp/` by default, relative path as in `{seccomp_var}`) on every node that runs builds, or unset `{seccomp_var}`"
        );
    }
    if has("seccomp") && has("localhost") {
        return format!(
            "the cluster refused the `Localhost` seccomp profile of the `{name}` build pod (a policy may allow only `RuntimeDefault`, which blocks the user namespaces Buildah needs); ask for the profile to be allowed, or unset `{seccomp_var}` where the kubelet's default is Unconfined"
        );
    }
    if has("newuidmap")
        || has("newgidmap")
        || has("write to uid_map failed")
        || has("write to gid_map failed")
    {
        return format!(
            "newuidmap/newgidmap could not map the build user's subordinate ids in the `{name}` build pod: the builder image must ship them with file capabilities (`cap_setuid=ep`, `cap_setgid=ep`) rather than setuid-root (Debian and Ubuntu images fail in a pod), and the container needs `allowPrivilegeEscalation: true` with SETUID and SETGID; use `quay.io/buildah/stable`, fix the builder image, or check the hook template's `$build` entry"
        );
    }
    if has("error setting supplemental groups list")
        || has("setgroups")
        || has("insufficient uids or gids")
    {
        return format!(
            "Buildah fell back to a single-id user namespace in the `{name}` build pod, where `RUN` steps fail (`error setting supplemental groups list`): the build user needs ranges in the builder image's `/etc/subuid` and `/etc/subgid` (`build:1:999` and `build:1001:64535`), and the container needs SETUID, SETGID and `allowPrivilegeEscalation: true`, which a hook template override may have removed"
        );
    }
    if has("is not supported over overlayfs") || has("not supported over overlay") {
        return format!(
            "Buildah's image store in the `{name}` build pod is on the container's own overlayfs, where native overlay cannot work: keep the `storage` emptyDir of the build pod (a hook template volume of that name replaces it) or set `{}=vfs`",
            crate::config::STORAGE_DRIVER
        );
    }
    if has("hostusers")
        || has("usernamespacessupport")
        || has("idmap")
        || (has("user namespace") && (has("support") || has("enabled")))
    {
        return format!(
            "the cluster cannot run the `{name}` build pod's user namespace (`hostUsers: false`): that needs Kubernetes 1.33 or later (or the `UserNamespacesSupport` feature gate), a runtime that supports it (containerd 2.0 or CRI-O 1.25 and later, with runc 1.2 or crun 1.9), and a node kernel and filesystem with idmapped mounts; set `{profile_var}=rootless` instead"
        );
    }
    if has("privileged") {
        return format!(
            "a policy refused the `{name}` build pod because of a privileged setting: the hook never asks for `privileged`, so the hook template's `$build` entry probably does; remove it (see docs/user/build-pod-security.md)"
        );
    }
    if has("runasnonroot") || has("non-root") || has("must not run as root") {
        let alternative = if profile == BuilderProfile::Rootless {
            "the builder image's user does not match: the `rootless` profile runs as uid 1000, which must exist in the builder image".to_owned()
        } else {
            format!("set `{profile_var}=rootless`, which runs as uid 1000")
        };
        return format!(
            "a policy requires non-root containers and refused the `{name}` build pod; {alternative}"
        );
    }
    if has("capabilit") || has("allowprivilegeescalation") {
        return format!(
            "a policy refused the capabilities or privilege escalation of the `{name}` build pod (Buildah needs SETUID and SETGID, and `allowPrivilegeEscalation: true` when rootless); allow them for build pods (the `rootless` profile passes Pod Security `baseline`), or try `{profile_var}=userns` on clusters with user namespaces"
        );
    }
    let alternative = match profile {
        BuilderProfile::Rootless => format!(
            "`{profile_var}=userns` on clusters with user namespaces, or `root` where a policy requires it"
        ),
        BuilderProfile::Root | BuilderProfile::Userns => format!("`{profile_var}=rootless`"),
    };
    format!(
        "the cluster refused the `{name}` build pod; docs/user/build-pod-security.md lists what each profile needs; another profile may be admitted: {alternative}"
    )
}

/// A failure of the pod around the build, reported like the script's own setup failures.
fn setup_error(line: String) -> BuildError {
    BuildError::Setup {
        last_lines: vec![line],
    }
}

/// Copy the build container's log to `log` as it comes, keeping the last lines.
async fn follow_log(
    session: &Session,
    pod: &str,
    log: &mut (dyn AsyncWrite + Send + Unpin),
    last: &mut LastLines,
) -> anyhow::Result<()> {
    let mut keep = |line: &[u8]| {
        let text = String::from_utf8_lossy(line);
        last.push(text.strip_suffix('\n').unwrap_or(&text));
    };
    crate::k8s::logs::follow(session, pod, BUILD_CONTAINER, log, &mut keep).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_host_users_field_is_caught() {
        // The API server's answer to the create call of a `userns` build pod.
        let mut pod = Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("runner-build-x".to_owned()),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::core::v1::PodSpec {
                host_users: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        };
        verify_created(BuilderProfile::Userns, &pod).unwrap();
        pod.spec.as_mut().unwrap().host_users = None;
        let err = verify_created(BuilderProfile::Userns, &pod).unwrap_err();
        assert!(
            err.to_string().contains("BUILDER_PROFILE=rootless"),
            "{err}"
        );
        assert!(err.to_string().contains("`runner-build-x`"), "{err}");
        verify_created(BuilderProfile::Rootless, &pod).unwrap();
    }

    #[test]
    fn rejections_are_explained_with_profile_reason_and_alternative() {
        use BuilderProfile::{Root, Rootless, Userns};
        let cases: &[(BuilderProfile, &str, &[&str])] = &[
            (
                Rootless,
                r#"pods "runner-build-x" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "build" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "build" must not include "SETGID", "SETUID" in securityContext.capabilities.add), seccompProfile (pod or container "build" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#,
                &[
                    "`restricted`",
                    "`rootless`",
                    "allowPrivilegeEscalation",
                    "enforce: baseline",
                ],
            ),
            (
                Root,
                r#"violates PodSecurity "baseline:latest": privileged (container "build" must not set securityContext.privileged=true)"#,
                &["`baseline`", "`root`", "template"],
            ),
            (
                Rootless,
                "Error during unshare(CLONE_NEWUSER): Operation not permitted",
                &[
                    "seccomp",
                    "RuntimeDefault",
                    "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILDER_SECCOMP_PROFILE",
                    "`rootless`",
                ],
            ),
            (
                Rootless,
                r#"Error: failed to create containerd container: cannot load seccomp profile "/var/lib/kubelet/seccomp/profiles/buildah.json": open /var/lib/kubelet/seccomp/profiles/buildah.json: no such file or directory"#,
                &["`Localhost`", "does not have", "/var/lib/kubelet/seccomp/"],
            ),
            (
                Userns,
                r#"Failed to create pod sandbox: rpc error: code = Unknown desc = failed to create containerd task: user namespaces are not supported by the runtime"#,
                &[
                    "`userns`",
                    "hostUsers: false",
                    "UserNamespacesSupport",
                    "=rootless",
                ],
            ),
            (
                Userns,
                r#"Pod "x" is invalid: spec.hostUsers: Forbidden: the UserNamespacesSupport feature gate is disabled"#,
                &["`userns`", "=rootless"],
            ),
            (
                Rootless,
                "newuidmap: write to uid_map failed: Operation not permitted",
                &["file capabilities", "setuid-root", "`rootless`"],
            ),
            (
                Rootless,
                "error running container: error setting supplemental groups list: operation not permitted",
                &["single-id", "/etc/subuid", "build:1001:64535"],
            ),
            (
                Root,
                "Error: 'overlay' is not supported over overlayfs, a mount_program is required: backing file system is unsupported for this graph driver",
                &["`storage`", "emptyDir", "=vfs"],
            ),
            (
                Root,
                r#"admission webhook "validate.kyverno.svc" denied the request: containers must run as non-root: runAsNonRoot must be true"#,
                &["`root`", "=rootless"],
            ),
            (
                Rootless,
                "admission webhook denied the request: something else entirely",
                &["`rootless`", "=userns", "docs/user/build-pod-security.md"],
            ),
        ];
        for (profile, message, expected) in cases {
            let text = explain_rejection(*profile, message);
            for needle in *expected {
                assert!(
                    text.contains(needle),
                    "{message}\n=> {text}\nmissing {needle}"
                );
            }
            assert!(!text.ends_with('.'), "{text}");
        }
    }
}
