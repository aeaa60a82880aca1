//! What both kinds of step share: where the runner's directories are in the job container, and
//! how a step's exit code becomes the command's outcome. `run_script_step` and
//! `run_container_step` use this module; neither borrows from the other.

use super::Outcome;

/// Where the runner's `_work` is mounted in the job container.
pub const WORK_MOUNT: &str = "/__w";

/// The runner's directory for file-command files (`GITHUB_OUTPUT`, `GITHUB_ENV`...), in `_temp`.
pub const FILE_COMMANDS: &str = "_runner_file_commands";

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
