//! Dockerfile container actions: build the action's image in a build pod, push it under a random
//! tag, and hand back the pull-host reference pinned by digest (docs/user/dockerfile-actions.md). The step then runs
//! from it exactly like an image step ([`super::run_container_step::run_image`]).
//! Owns the decisions of a Dockerfile action (registry hosts, image name, where the context
//! comes from); the build itself is [`crate::k8s::build::PodExecutor`]'s.

use std::path::Path;

use anyhow::Context as _;
use tokio::io::AsyncWriteExt as _;
use tracing::info;

use super::step::Surroundings;
use crate::config;
use crate::image::Executor;
use crate::image::context::BuildContext;
use crate::image::reference::{ImageRef, action_name};
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

    let spec = build_spec(
        build,
        &build_context.dockerfile,
        &image.push_ref(),
        true,
        &[],
    );
    let executor = PodExecutor {
        session,
        owner: around.owner.as_ref(),
        source,
        template: around.template.as_ref(),
        tolerations: around.tolerations(),
    };

    // The build log goes to the step log, folded in a group the runner shows collapsed.
    let mut stdout = tokio::io::stdout();
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
    info!(image = %pull_ref, "action image built");
    Ok(Built {
        pull_ref,
        pull_secret: build.registry_secret_name.clone(),
    })
}
