//! Dockerfile container actions: find or build the action's image, and hand back the pull-host
//! reference pinned by digest (docs/user/dockerfile-actions.md). The step then runs from it
//! exactly like an image step ([`super::run_container_step::run_image`]).
//!
//! First the build key ([`crate::image::key`]): when the push registry already has an image under
//! the key's tag, that manifest is tagged again under a fresh random tag and the step runs from
//! it, with no build pod. Otherwise the image is built in a build pod, with the registry's layer
//! cache, pushed under a random tag and under the key's tag. A registry that cannot be asked, or
//! refuses the new tag, costs one log line and a build, never the step.
//!
//! Owns the decisions of a Dockerfile action (registry hosts, image name, reuse, cache, where the
//! context comes from); the build itself is [`crate::k8s::build::PodExecutor`]'s and the registry
//! calls are [`crate::image::registry`]'s.

use std::path::Path;

use anyhow::Context as _;
use tokio::io::AsyncWriteExt as _;
use tracing::{debug, info, warn};

use super::step::Surroundings;
use crate::config;
use crate::config::BuildConfig;
use crate::image::context::BuildContext;
use crate::image::key::{self, BuildKey, KeyInputs};
use crate::image::reference::{ImageRef, action_name};
use crate::image::registry::Registry;
use crate::image::{CacheUse, Executor};
use crate::k8s::Session;
use crate::k8s::build::{PodContext, PodExecutor, build_spec};
use crate::protocol::{ContainerDefinition, State};
use crate::spec::WorkVolume;

/// A built and pushed action image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// `<pull-host>/<name>:<tag>@sha256:<digest>`: what the step pod runs.
    pub pull_ref: String,
    /// The registry Secret, the step pod's pull secret.
    pub pull_secret: Option<String>,
}

/// Build the action whose Dockerfile is at `dockerfile` (a runner-host path).
///
/// # Errors
/// No registry configured (naming the variable to set), a Dockerfile or context problem (before
/// any pod is created), or the build's own failure with the last lines of its log.
pub async fn build(
    args: &ContainerDefinition,
    dockerfile: &Path,
    state: Option<&State>,
    session: &Session,
) -> anyhow::Result<Built> {
    let config = &session.config;
    let build = &config.build;
    let push_host = build.push_host().map_err(|_| {
        anyhow::anyhow!(
            "this step is a Dockerfile action, and no registry to push its image to is configured: set `{}` (or `{}` and `{}`)",
            config::REGISTRY_HOST,
            config::REGISTRY_HOST_PUSH,
            config::REGISTRY_HOST_PULL
        )
    })?;
    let pull_host = build.pull_host()?;
    let work_dir = super::runner_work_dir(session)?;

    // Everything about the context is checked before any pod exists.
    let limit = build.context_limit_bytes;
    let path = dockerfile.to_owned();
    let build_context = tokio::task::spawn_blocking(move || BuildContext::scan(&path, limit))
        .await
        .context("the build context scan stopped unexpectedly")?
        .with_context(|| format!("cannot build the action `{}`", dockerfile.display()))?;
    let repository = args
        .environment_variables
        .get("GITHUB_REPOSITORY")
        .map(String::as_str);
    let image = ImageRef::new(
        push_host,
        pull_host,
        &action_name(dockerfile, &work_dir, repository),
    );

    let cache = cache_repository(build, &image);
    let key = if build.reuse {
        build_key(&build_context, build, cache.is_some()).await
    } else {
        None
    };
    let mut stdout = tokio::io::stdout();
    if let Some(key) = &key {
        match reuse(session, build, &image, key).await {
            Ok(Some(built)) => {
                let line = format!(
                    "reused {}@{} (built earlier from the same content)\n",
                    image.push_name(),
                    built.digest
                );
                stdout.write_all(line.as_bytes()).await?;
                stdout.flush().await?;
                info!(image = %built.pull_ref, key = %key, "action image reused");
                return Ok(built.into_built(build));
            }
            Ok(None) => debug!(key = %key, "no earlier build of this content; building"),
            Err(error) => warn!(
                "not reusing an earlier build of this action: {error:#}; building it (set {}=false to skip the lookup)",
                config::REUSE
            ),
        }
    }

    let around = Surroundings::read(session, state).await?;
    let sub_path;
    let packed;
    let source = match &around.work_volume {
        WorkVolume::Claim {
            claim_name,
            placement,
        } => {
            sub_path = build_context.volume_sub_path(&work_dir).with_context(|| {
                format!(
                    "the Dockerfile `{}` is not inside the runner's work volume `{}`",
                    dockerfile.display(),
                    work_dir.display()
                )
            })?;
            PodContext::Volume {
                claim_name,
                sub_path: &sub_path,
                placement,
            }
        }
        WorkVolume::EmptyDir => {
            let scanned = build_context.clone();
            packed = tokio::task::spawn_blocking(move || scanned.pack())
                .await
                .context("packing the build context stopped unexpectedly")??;
            PodContext::Copy(&packed)
        }
    };

    let mut spec = build_spec(
        build,
        &build_context.dockerfile,
        &image.push_ref(),
        true,
        &[],
    );
    spec.cache = cache;
    spec.extra_tags = key
        .iter()
        .map(|key| image.retagged(&key.tag()).push_ref())
        .collect();
    let executor = PodExecutor {
        session,
        owner: around.owner.as_ref(),
        source,
        template: around.template.as_ref(),
        tolerations: around.tolerations(),
    };

    // The build log goes to the step log, folded in a group the runner shows collapsed.
    stdout
        .write_all(format!("::group::Building {}\n", image.push_ref()).as_bytes())
        .await?;
    stdout.flush().await?;
    let outcome = executor.run(&spec, &mut stdout).await;
    stdout.write_all(b"::endgroup::\n").await?;
    stdout.flush().await?;
    let outcome = outcome.with_context(|| {
        format!(
            "failed to build the Dockerfile action `{}`",
            dockerfile.display()
        )
    })?;
    let digest = outcome
        .digest
        .context("the build finished without pushing the image")?;
    let pull_ref = image.pull_ref(&digest);
    let line = format!(
        "built {}@{digest} ({})\n",
        image.push_name(),
        cache_text(spec.cache.is_some(), outcome.cache)
    );
    stdout.write_all(line.as_bytes()).await?;
    stdout.flush().await?;
    info!(image = %pull_ref, "action image built");
    Ok(Built {
        pull_ref,
        pull_secret: build.registry_secret_name.clone(),
    })
}

/// The layer cache's repository for `image`: the configured one, unless the operator's own
/// build options already manage the cache (`--layers`, `--cache-from`, `--cache-to`).
fn cache_repository(build: &BuildConfig, image: &ImageRef) -> Option<String> {
    let own = build.build_options.iter().any(|option| {
        ["--layers", "--cache-from", "--cache-to"]
            .iter()
            .any(|name| option == name || option.starts_with(&format!("{name}=")))
    });
    if own {
        return None;
    }
    build.cache.repository(&image.push_name())
}

/// The build key of the action, or `None` (with one log line) when a file cannot be read: the
/// build then runs as it would without reuse, and fails on its own if the file is really gone.
async fn build_key(context: &BuildContext, build: &BuildConfig, layers: bool) -> Option<BuildKey> {
    let context = context.clone();
    let builder_image = build.builder_image.clone();
    let build_options = build.build_options.clone();
    let push_options = build.push_options.clone();
    let computed = tokio::task::spawn_blocking(move || {
        key::build_key(
            &context,
            &KeyInputs {
                build_args: &[],
                platform: &key::platform(),
                builder_image: &builder_image,
                layers,
                build_options: &build_options,
                push_options: &push_options,
            },
        )
    })
    .await;
    match computed {
        Ok(Ok(key)) => Some(key),
        Ok(Err(error)) => {
            warn!("not looking for an earlier build of this action: {error:#}");
            None
        }
        Err(error) => {
            warn!("not looking for an earlier build of this action: {error}");
            None
        }
    }
}

/// An image found by its key and tagged anew.
struct Reused {
    pull_ref: String,
    digest: crate::image::reference::Digest,
}

impl Reused {
    fn into_built(self, build: &BuildConfig) -> Built {
        Built {
            pull_ref: self.pull_ref,
            pull_secret: build.registry_secret_name.clone(),
        }
    }
}

/// Look for `key`'s tag in the push registry; when it is there, put its manifest under the
/// image's own random tag (so retention rules that expire old tags never take an image a running job uses)
/// and return the pinned pull reference. `None`: no earlier build.
async fn reuse(
    session: &Session,
    build: &BuildConfig,
    image: &ImageRef,
    key: &BuildKey,
) -> anyhow::Result<Option<Reused>> {
    let access = session.registry_access(build, image.push_host()).await?;
    let registry = Registry::new(&access)?;
    let repository = image.push_repository();
    let Some(found) = registry.find(&repository, &key.tag()).await? else {
        return Ok(None);
    };
    registry.retag(&repository, &found, image.tag()).await?;
    Ok(Some(Reused {
        pull_ref: image.pull_ref(&found.digest),
        digest: found.digest,
    }))
}

/// `cache: N of M steps reused`, or why there is no such count.
fn cache_text(cache_on: bool, cache: Option<CacheUse>) -> String {
    match (cache_on, cache) {
        (false, _) => "no layer cache".to_owned(),
        (true, Some(CacheUse { reused, steps })) => {
            format!("cache: {reused} of {steps} steps reused")
        }
        (true, None) => "layer cache on; the log showed no build steps".to_owned(),
    }
}
