//! What the steps share: where the runner's directories are in the job container, what every
//! pod of a step inherits ([`Surroundings`]), and how a step's exit code becomes the command's
//! outcome. `run_script_step`, `run_container_step` and `build_action` use this module; none
//! borrows from another.

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Toleration;

use super::Outcome;
use crate::k8s::Session;
use crate::k8s::objects::RunnerPod;
use crate::protocol::{DataPlane, State};
use crate::spec::template::Template;
use crate::spec::{Owner, WorkVolume};

/// Where the runner's `_work` is mounted in the job container.
pub const WORK_MOUNT: &str = "/__w";

/// The runner's directory for file-command files (`GITHUB_OUTPUT`, `GITHUB_ENV`...), in `_temp`.
pub const FILE_COMMANDS: &str = "_runner_file_commands";

/// What every pod a step creates (its step pod, a build pod) takes from where the job runs:
/// the hook template, the runner pod (owner, tolerations, node) and the work volume.
pub struct Surroundings {
    /// The hook template, if configured.
    pub template: Option<Template>,
    /// The runner pod, when it could be read.
    pub runner: Option<RunnerPod>,
    /// The runner pod as owner of what the step creates.
    pub owner: Option<Owner>,
    /// The job's data plane: the work claim and placement, or copy mode.
    pub work_volume: WorkVolume,
}

impl Surroundings {
    /// Read them: the template, then the runner pod.
    ///
    /// # Errors
    /// A hook template that cannot be read or parsed.
    pub async fn read(session: &Session, state: Option<&State>) -> anyhow::Result<Surroundings> {
        let template = session
            .hook_template()
            .context("the hook template is unusable")?;
        let runner = session.runner_pod().await;
        let owner = session.owner(runner.as_ref());
        // The job's choice when there is a job (its state), else the choice `prepare_job` would
        // make (a job without `container:` never ran it).
        let work_volume = match state.and_then(|s| s.data_plane) {
            Some(DataPlane::Copy) => WorkVolume::EmptyDir,
            _ => super::choose_work_volume(session, runner.as_ref()),
        };
        Ok(Surroundings {
            template,
            runner,
            owner,
            work_volume,
        })
    }

    /// The runner pod's tolerations, which the step's pods carry.
    pub fn tolerations(&self) -> &[Toleration] {
        super::runner_tolerations(self.runner.as_ref())
    }
}

/// The outcome of a step whose process exited with `code`: success, or the same code for the
/// runner.
pub fn outcome(code: i32) -> Outcome {
    match code {
        0 => Outcome::Success(None),
        code => Outcome::StepExited(exit_status_byte(code)),
    }
}

/// A process exit code as a byte: codes 1..=255 pass through; anything outside (a negative or
/// wrapped code) becomes 1 so a failure never looks like success.
pub fn exit_status_byte(code: i32) -> u8 {
    match u8::try_from(code) {
        Ok(0) | Err(_) => 1,
        Ok(b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_map_to_bytes_that_never_read_as_success() {
        assert_eq!(exit_status_byte(3), 3);
        assert_eq!(exit_status_byte(255), 255);
        assert_eq!(exit_status_byte(256), 1);
        assert_eq!(exit_status_byte(-1), 1);
        assert_eq!(outcome(0), Outcome::Success(None));
        assert_eq!(outcome(3), Outcome::StepExited(3));
    }
}
