//! Build-time facts for `runner-k8s-hook --version` (`cli::version`): the git commit and the
//! target triple, passed to the compiler as `RUNNER_K8S_HOOK_BUILD_COMMIT` and
//! `RUNNER_K8S_HOOK_BUILD_TARGET`.
//!
//! The commit is, in this order:
//! - the first 7 hex digits of `HEAD` when the crate is built from its own git checkout (not
//!   `git rev-parse --short`, whose length grows with the number of objects: a shallow clone in
//!   the release workflow and a full clone must print the same);
//! - else `RUNNER_K8S_HOOK_COMMIT` (a build from a source archive, where there is no `.git`);
//! - else `unknown`.
//!
//! Cargo reruns this script when `HEAD` moves: it watches `HEAD`, the branch `HEAD` points to
//! (its loose file, or `packed-refs`) and `HEAD`'s reflog, each at the path git names for it, so
//! a linked worktree (whose `.git` is a file) works too. See docs/developer/releasing.md.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The variable a build outside a git checkout sets to name its commit.
const COMMIT_VAR: &str = "RUNNER_K8S_HOOK_COMMIT";

fn main() {
    let target = std::env::var("TARGET").expect("cargo sets TARGET for build scripts");
    println!("cargo:rustc-env=RUNNER_K8S_HOOK_BUILD_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed={COMMIT_VAR}");

    let manifest_dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let commit = match git_commit(&manifest_dir) {
        Some(commit) => commit,
        None => commit_from_env().unwrap_or_else(|| "unknown".to_owned()),
    };
    println!("cargo:rustc-env=RUNNER_K8S_HOOK_BUILD_COMMIT={commit}");
}

/// `HEAD`'s commit, when `dir` is the top of a git work tree (not a crate vendored inside some
/// other repository), with the files that change when `HEAD` moves marked for a rerun.
fn git_commit(dir: &Path) -> Option<String> {
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    if Path::new(&top).canonicalize().ok()? != dir.canonicalize().ok()? {
        return None;
    }
    let head = git(dir, &["rev-parse", "--verify", "HEAD^{commit}"])?;
    if head.len() < 7 || !head.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut watched = vec![git_path(dir, "HEAD"), git_path(dir, "logs/HEAD")];
    // On a branch: its loose ref, and packed-refs where `git pack-refs` moved it.
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git_path(dir, &branch));
        watched.push(git_path(dir, "packed-refs"));
    }
    // A path that does not exist would make cargo rerun this script on every build.
    for path in watched.into_iter().flatten().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    Some(head[..7].to_owned())
}

/// `RUNNER_K8S_HOOK_COMMIT`, if set: a commit id, or the build stops with what to set instead.
fn commit_from_env() -> Option<String> {
    let value = std::env::var(COMMIT_VAR).ok()?;
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    let valid = value.len() <= 40 && value.bytes().all(|b| b.is_ascii_hexdigit());
    assert!(
        valid,
        "{COMMIT_VAR}={value:?} is not a commit id: set it to the hex digits of the commit the \
         source comes from (e.g. the output of `git rev-parse --short=7 HEAD`), or unset it"
    );
    Some(value.to_owned())
}

/// The absolute path git uses for `name` (`HEAD`, `refs/heads/main`, `packed-refs`) in the
/// repository of `dir`: in a linked worktree, `HEAD` is the worktree's own and refs are shared.
fn git_path(dir: &Path, name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(git(dir, &["rev-parse", "--git-path", name])?);
    Some(if path.is_absolute() {
        path
    } else {
        dir.join(path)
    })
}

/// The trimmed stdout of `git -C dir args...`, or `None` if git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    Some(text.trim().to_owned())
}
