//! `runner-k8s-hook build`: build a Dockerfile and push it, with the same script and
//! configuration as the hook's build pods, on this machine (the local executor) or in a build
//! pod in the cluster (the pod executor, exactly what a Dockerfile action gets).
//!
//! ```text
//! runner-k8s-hook build --context DIR [--file F] --image REF [--build-arg K=V]... [--no-push]
//!                       [--executor local] [--user USER] [--storage DIR]
//!                       [--authfile FILE] [--cert-dir DIR]
//! runner-k8s-hook build --context DIR [--file F] --image REF [--build-arg K=V]... [--no-push]
//!                       --executor pod [--namespace NS]
//! ```
//! stdout gets one line, the pushed reference pinned by digest (`REF@sha256:...`), or `REF`
//! with `--no-push`; the build log goes to stderr. Extra Buildah options, the storage driver and
//! the timeout come from the hook's variables (`..._BUILD_OPTIONS`, `..._PUSH_OPTIONS`,
//! `..._STORAGE_DRIVER`, `..._BUILD_TIMEOUT_SECONDS`), with the same allow-list; in the cluster,
//! so do the profile, builder image, resources, registry Secret and CA.
//!
//! This module parses arguments and wires the engine together; it runs nothing itself and holds
//! no build logic (that is [`crate::image`] and [`crate::k8s::build`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tokio::io::AsyncWriteExt as _;

use crate::cancel::{CANCEL_GRACE, Cancel, Cancelled};
use crate::config::{self, Config};
use crate::image::context::BuildContext;
use crate::image::local::{LocalExecutor, Scratch, User};
use crate::image::reference::{self, ImageRef};
use crate::image::{BuildSpec, Executor as _, Storage};
use crate::k8s;
use crate::k8s::build::{PodContext, PodExecutor, build_spec};

/// The usage text, also printed by `--help`.
pub const USAGE: &str = "\
usage: runner-k8s-hook build --context DIR [--file F] --image REF [--build-arg K=V]... [--no-push]
                             [--executor local] [--user USER] [--storage DIR]
                             [--authfile FILE] [--cert-dir DIR]
       runner-k8s-hook build --context DIR [--file F] --image REF [--build-arg K=V]... [--no-push]
                             --executor pod [--namespace NS]

Build the Dockerfile F (default `Dockerfile`, relative to DIR) with Buildah and push it as REF
(`host[:port]/repository[:tag]`; without a tag, a random one). Prints REF@sha256:<digest>.

  --context DIR      build context directory (readable by the build user)
  --file F           Dockerfile, relative to DIR or an absolute path inside it
  --image REF        image to build and push
  --build-arg K=V    build argument (repeatable)
  --no-push          build only; prints REF
  --executor local   run the build script with this machine's buildah (the default)
  --executor pod     run it in a build pod in the cluster (KUBECONFIG, or the pod's service
                     account), as the hook does for a Dockerfile action; the context (minus
                     .dockerignore) is streamed into the pod
local executor:
  --user USER        run it as USER (rootless; needs root to switch and subuid/subgid ranges)
  --storage DIR      keep the image store in DIR (default: a fresh one, removed afterwards)
  --authfile FILE    registry auth file (docker config.json format)
  --cert-dir DIR     directory with the registry's CA as `ca.crt`
pod executor:
  --namespace NS     namespace of the build pod (default: ACTIONS_RUNNER_KUBERNETES_NAMESPACE,
                     else the kubeconfig's)

Extra options: ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILD_OPTIONS / _PUSH_OPTIONS (allow-listed),
ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_STORAGE_DRIVER, ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILD_TIMEOUT_SECONDS.
In a pod: the registry credentials are the Secret named by
ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_SECRET_NAME, the CA ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_CA,
and the profile, builder image and resources the hook's variables (docs/user/configuration.md).
";

/// Label value (`runner-pod=`) and name prefix of build pods started from the command line
/// outside a runner pod (without `ACTIONS_RUNNER_POD_NAME`): `runner-k8s-hook-build-<suffix>`.
pub const CLI_POD_PREFIX: &str = "runner-k8s-hook";

/// Where the build runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecutorKind {
    /// This machine's `buildah` ([`LocalExecutor`]).
    #[default]
    Local,
    /// A build pod in the cluster ([`PodExecutor`]).
    Pod,
}

/// Arguments the `build` subcommand does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// An argument that is not one of the options.
    #[error("unknown argument `{0}` for `build`")]
    Unknown(String),
    /// An option without its value.
    #[error("`{0}` needs a value")]
    MissingValue(&'static str),
    /// A required option is missing.
    #[error("`{0}` is required")]
    Required(&'static str),
    /// An option's value is not usable.
    #[error("`{option}` has an invalid value `{value}`: {reason}")]
    Invalid {
        /// The option.
        option: &'static str,
        /// What was given.
        value: String,
        /// Why it cannot be used.
        reason: String,
    },
}

/// What to do, parsed from the arguments after `build`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Args {
    /// `--context`.
    pub context: PathBuf,
    /// `--file`.
    pub file: Option<PathBuf>,
    /// `--image`.
    pub image: String,
    /// `--build-arg`, in order.
    pub build_args: Vec<(String, String)>,
    /// `--no-push`.
    pub no_push: bool,
    /// `--user`.
    pub user: Option<String>,
    /// `--storage`.
    pub storage: Option<PathBuf>,
    /// `--authfile`.
    pub authfile: Option<PathBuf>,
    /// `--cert-dir`.
    pub cert_dir: Option<PathBuf>,
    /// `--executor`.
    pub executor: ExecutorKind,
    /// `--namespace`.
    pub namespace: Option<String>,
    /// `--help`.
    pub help: bool,
}

impl Args {
    /// Parse the arguments after `build`. Options take their value as the next argument or
    /// after `=` (`lexopt` reads the command line; the messages are ours).
    ///
    /// # Errors
    /// [`UsageError`] for an unknown or incomplete argument.
    pub fn parse(args: &[OsString]) -> Result<Args, UsageError> {
        use lexopt::prelude::*;

        let mut parsed = Args::default();
        let mut context = None;
        let mut image = None;
        let mut parser = lexopt::Parser::from_args(args.iter().cloned());
        while let Some(arg) = parser.next().map_err(unknown)? {
            match arg {
                Long("context") => {
                    context = Some(PathBuf::from(option_value(&mut parser, "--context")?))
                }
                Short('f') | Long("file") => {
                    parsed.file = Some(PathBuf::from(option_value(&mut parser, "--file")?))
                }
                Short('t') | Long("image" | "tag") => {
                    image = Some(option_value(&mut parser, "--image")?)
                }
                Long("build-arg") => parsed
                    .build_args
                    .push(build_arg(option_value(&mut parser, "--build-arg")?)?),
                Long("no-push") => parsed.no_push = true,
                Long("executor") => {
                    parsed.executor = match option_value(&mut parser, "--executor")?.as_str() {
                        "local" => ExecutorKind::Local,
                        "pod" => ExecutorKind::Pod,
                        other => {
                            return Err(UsageError::Invalid {
                                option: "--executor",
                                value: other.to_owned(),
                                reason: "expected `local` or `pod`".to_owned(),
                            });
                        }
                    }
                }
                Short('n') | Long("namespace") => {
                    parsed.namespace = Some(option_value(&mut parser, "--namespace")?)
                }
                Long("user") => parsed.user = Some(option_value(&mut parser, "--user")?),
                Long("storage") => {
                    parsed.storage = Some(PathBuf::from(option_value(&mut parser, "--storage")?))
                }
                Long("authfile") => {
                    parsed.authfile = Some(PathBuf::from(option_value(&mut parser, "--authfile")?))
                }
                Long("cert-dir") => {
                    parsed.cert_dir = Some(PathBuf::from(option_value(&mut parser, "--cert-dir")?))
                }
                Short('h') | Long("help") => parsed.help = true,
                Short(c) => return Err(UsageError::Unknown(format!("-{c}"))),
                Long(name) => return Err(UsageError::Unknown(format!("--{name}"))),
                Value(v) => return Err(UsageError::Unknown(v.to_string_lossy().into_owned())),
            }
        }
        if parsed.help {
            return Ok(parsed);
        }
        parsed.context = context.ok_or(UsageError::Required("--context"))?;
        parsed.image = image.ok_or(UsageError::Required("--image"))?;
        parsed.check_executor_options()?;
        Ok(parsed)
    }

    /// Options of one executor are refused with the other, rather than silently ignored.
    fn check_executor_options(&self) -> Result<(), UsageError> {
        let only = |option: &'static str, value: String, reason: &str| {
            Err(UsageError::Invalid {
                option,
                value,
                reason: reason.to_owned(),
            })
        };
        match self.executor {
            ExecutorKind::Local => {
                if let Some(ns) = &self.namespace {
                    return only("--namespace", ns.clone(), "only with `--executor pod`");
                }
            }
            ExecutorKind::Pod => {
                let in_pod = "only with `--executor local`; a build pod takes the registry credentials from the Secret named by ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_SECRET_NAME and the CA from ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_CA";
                let local_only = [
                    ("--user", self.user.clone()),
                    (
                        "--storage",
                        self.storage.as_ref().map(|p| p.display().to_string()),
                    ),
                    (
                        "--authfile",
                        self.authfile.as_ref().map(|p| p.display().to_string()),
                    ),
                    (
                        "--cert-dir",
                        self.cert_dir.as_ref().map(|p| p.display().to_string()),
                    ),
                ];
                for (option, value) in local_only {
                    if let Some(value) = value {
                        return only(option, value, in_pod);
                    }
                }
                if let Some(ns) = &self.namespace
                    && !crate::spec::names::is_dns1123_label(ns)
                {
                    return only("--namespace", ns.clone(), config::NAMESPACE_EXPECTED);
                }
            }
        }
        Ok(())
    }
}

/// The value of `option`: the next argument, or what follows `=`.
fn option_value(parser: &mut lexopt::Parser, option: &'static str) -> Result<String, UsageError> {
    match parser.value() {
        Ok(value) => value.into_string().map_err(|value| UsageError::Invalid {
            option,
            value: value.to_string_lossy().into_owned(),
            reason: "not valid UTF-8".to_owned(),
        }),
        Err(_) => Err(UsageError::MissingValue(option)),
    }
}

/// `KEY=VALUE` of `--build-arg`.
fn build_arg(pair: String) -> Result<(String, String), UsageError> {
    let invalid = |reason: &str| UsageError::Invalid {
        option: "--build-arg",
        value: pair.clone(),
        reason: reason.to_owned(),
    };
    let (key, value) = pair
        .split_once('=')
        .ok_or_else(|| invalid("expected `KEY=VALUE`"))?;
    if key.is_empty() {
        return Err(invalid("the key is empty"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// What `lexopt` cannot read: a flag given a value (`--no-push=yes`), or an argument that is
/// not UTF-8.
fn unknown(error: lexopt::Error) -> UsageError {
    UsageError::Unknown(super::unknown_argument(error))
}

/// Run `runner-k8s-hook build` with the arguments after `build`: the build log goes to stderr,
/// the reference to `stdout`. A signal on `cancel` stops the build (its processes, or its pod,
/// deleted within [`CANCEL_GRACE`]) and returns [`Cancelled`].
///
/// # Errors
/// A [`UsageError`], a [`crate::image::BuildError`], [`Cancelled`], or an I/O or cluster failure, with
/// context.
pub async fn run(
    args: &[OsString],
    config: &Config,
    stdout: &mut (dyn tokio::io::AsyncWrite + Send + Unpin),
    mut cancel: Cancel,
) -> anyhow::Result<()> {
    let args = Args::parse(args)?;
    if args.help {
        stdout.write_all(USAGE.as_bytes()).await?;
        return Ok(());
    }
    let image = image_to_build(&args.image)?;
    let context = std::path::absolute(&args.context)
        .with_context(|| format!("cannot resolve `{}`", args.context.display()))?;
    let context = utf8(&context, "--context")?;
    let dockerfile = dockerfile_in(Path::new(&context), args.file.as_deref())?;
    let reference = match args.executor {
        ExecutorKind::Local => {
            run_local(&args, config, context, dockerfile, image, &mut cancel).await?
        }
        ExecutorKind::Pod => {
            run_in_pod(&args, config, context, dockerfile, image, &mut cancel).await?
        }
    };
    stdout
        .write_all(format!("{reference}\n").as_bytes())
        .await?;
    stdout.flush().await?;
    Ok(())
}

/// `--image` as the reference to push: with its tag, or a random one.
fn image_to_build(given: &str) -> Result<String, UsageError> {
    let (repository, tag) = reference::parse_image(given).map_err(|e| UsageError::Invalid {
        option: "--image",
        value: given.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(match tag {
        Some(tag) => format!("{repository}:{tag}"),
        None => {
            let path = repository.path().unwrap_or_default().to_owned();
            let host = reference::RegistryHost::parse(repository.host())
                .expect("the host of a parsed repository parses");
            ImageRef::new(&host, &host, &path).push_ref()
        }
    })
}

/// The local executor: the script runs here, as `--user` when given, in a scratch directory
/// removed afterwards. Dropping the build (on a signal) stops its processes.
async fn run_local(
    args: &Args,
    config: &Config,
    context: String,
    dockerfile: String,
    image: String,
    cancel: &mut Cancel,
) -> anyhow::Result<String> {
    let user = match &args.user {
        Some(name) if !crate::image::local::running_as_root() => {
            return Err(UsageError::Invalid {
                option: "--user",
                value: name.clone(),
                reason:
                    "switching users needs root; leave out `--user` to build as the current user"
                        .to_owned(),
            }
            .into());
        }
        Some(name) => Some(User::lookup(name).await?),
        None => None,
    };
    let scratch = Scratch::new(user.as_ref())?;
    // Files the build user must read are copied into the scratch directory it owns (a root
    // `auth.json` is usually 0600, and `/root` is 0700).
    let auth_source = match &args.authfile {
        Some(file) => Some(give(file, &scratch, "auth-source.json", user.as_ref())?),
        None => None,
    };
    let cert_dir = match &args.cert_dir {
        Some(dir) => Some(give_dir(dir, &scratch, "certs", user.as_ref())?),
        None => None,
    };
    let storage = match &args.storage {
        Some(dir) => {
            let dir = std::path::absolute(dir)
                .with_context(|| format!("cannot resolve `{}`", dir.display()))?;
            std::fs::create_dir_all(&dir).with_context(|| {
                format!("cannot create the storage directory `{}`", dir.display())
            })?;
            if let Some(user) = &user {
                std::os::unix::fs::chown(&dir, Some(user.uid), Some(user.gid)).with_context(
                    || {
                        format!(
                            "cannot give `{}` to the build user `{}`",
                            dir.display(),
                            user.name
                        )
                    },
                )?;
            }
            let dir = utf8(&dir, "--storage")?;
            Storage {
                root: format!("{dir}/root"),
                runroot: format!("{dir}/run"),
                driver: config.build.storage_driver,
            }
        }
        None => Storage {
            root: scratch.join("storage/root")?,
            runroot: scratch.join("storage/run")?,
            driver: config.build.storage_driver,
        },
    };
    let spec = BuildSpec {
        context_dir: context,
        dockerfile,
        image,
        push: !args.no_push,
        build_args: args.build_args.clone(),
        storage,
        build_options: config.build.build_options.clone(),
        push_options: config.build.push_options.clone(),
        auth_source,
        cert_dir,
        work_dir: scratch.join("work")?,
        result_path: scratch.join("result")?,
        wait_for: None,
        extra_tags: Vec::new(),
        cache: None,
    };
    let executor = LocalExecutor {
        user,
        timeout: Some(config.build.timeout),
    };
    let mut log = tokio::io::stderr();
    let outcome = tokio::select! {
        outcome = executor.run(&spec, &mut log) => outcome?,
        signal = crate::cancel::signalled(cancel) => return Err(Cancelled(signal).into()),
    };
    drop(scratch);
    Ok(outcome.reference())
}

/// The pod executor: the context is selected (`.dockerignore`, symlinks, size limit) and packed
/// here, then streamed into a build pod that runs the script; the pod is deleted in every case.
/// Outside a runner pod, the build pod has no owner and is labelled [`CLI_POD_PREFIX`].
async fn run_in_pod(
    args: &Args,
    config: &Config,
    context_dir: String,
    dockerfile: String,
    image: String,
    cancel: &mut Cancel,
) -> anyhow::Result<String> {
    let mut config = config.clone();
    if let Some(namespace) = &args.namespace {
        config.namespace = Some(namespace.clone());
    }
    // Everything about the context is checked before the cluster is contacted.
    let limit = config.build.context_limit_bytes;
    let dir = PathBuf::from(&context_dir);
    let (scanned, packed) = tokio::task::spawn_blocking(move || {
        let scanned = BuildContext::scan_dir(&dir, &dockerfile, limit)?;
        let packed = scanned.pack()?;
        Ok::<_, crate::image::context::ContextError>((scanned, packed))
    })
    .await
    .context("the build context scan stopped unexpectedly")?
    .with_context(|| format!("cannot build the context `{context_dir}`"))?;

    let label = config
        .runner_pod_name
        .clone()
        .unwrap_or_else(|| CLI_POD_PREFIX.to_owned());
    let cluster = k8s::Session::connect(&config, &label, k8s::UndoLog::default())
        .await
        .context("cannot build in the cluster")?;
    let template = cluster
        .hook_template()
        .context("the hook template is unusable")?;
    // In a runner pod (the JavaScript action in ARC), the build pod goes with the runner pod.
    // Its tolerations, too, so the build pod may run on the runner's (tainted) node pool.
    let runner = match &config.runner_pod_name {
        Some(_) => cluster.runner_pod().await,
        None => None,
    };
    let owner = cluster.owner(runner.as_ref());
    let spec = build_spec(
        &config.build,
        &scanned.dockerfile,
        &image,
        !args.no_push,
        &args.build_args,
    );
    let executor = PodExecutor {
        session: &cluster,
        owner: owner.as_ref(),
        source: PodContext::Copy(&packed),
        template: template.as_ref(),
        tolerations: runner
            .as_ref()
            .map(|r| r.tolerations.as_slice())
            .unwrap_or_default(),
    };
    let mut log = tokio::io::stderr();
    tokio::select! {
        outcome = executor.run(&spec, &mut log) => Ok(outcome?.reference()),
        signal = crate::cancel::signalled(cancel) => {
            cluster.undo_all(CANCEL_GRACE).await;
            Err(Cancelled(signal).into())
        }
    }
}

/// The Dockerfile relative to the context: `Dockerfile` by default; a relative `--file` is
/// relative to the context; an absolute one must be inside it.
fn dockerfile_in(context: &Path, file: Option<&Path>) -> anyhow::Result<String> {
    let Some(file) = file else {
        return Ok("Dockerfile".to_owned());
    };
    let relative = if file.is_absolute() {
        file.strip_prefix(context)
            .map_err(|_| UsageError::Invalid {
                option: "--file",
                value: file.display().to_string(),
                reason: format!(
                    "the Dockerfile must be inside the context `{}`",
                    context.display()
                ),
            })?
    } else {
        file
    };
    if relative
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(UsageError::Invalid {
            option: "--file",
            value: file.display().to_string(),
            reason: "the Dockerfile must be inside the context (no `..`)".to_owned(),
        }
        .into());
    }
    Ok(utf8(relative, "--file")?)
}

fn utf8(path: &Path, option: &'static str) -> Result<String, UsageError> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| UsageError::Invalid {
            option,
            value: path.display().to_string(),
            reason: "the path is not UTF-8".to_owned(),
        })
}

/// Copy `file` to `<scratch>/<name>`, private to the build user.
fn give(file: &Path, scratch: &Scratch, name: &str, user: Option<&User>) -> anyhow::Result<String> {
    let target = scratch.path().join(name);
    std::fs::copy(file, &target).with_context(|| format!("cannot read `{}`", file.display()))?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600))?;
    if let Some(user) = user {
        std::os::unix::fs::chown(&target, Some(user.uid), Some(user.gid))
            .with_context(|| format!("cannot give `{}` to `{}`", target.display(), user.name))?;
    }
    Ok(scratch.join(name)?)
}

/// Copy the regular files of `dir` to `<scratch>/<name>/`, readable by the build user.
fn give_dir(
    dir: &Path,
    scratch: &Scratch,
    name: &str,
    user: Option<&User>,
) -> anyhow::Result<String> {
    let target = scratch.path().join(name);
    std::fs::create_dir(&target)?;
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read `{}`", dir.display()))?;
    for entry in entries {
        let entry = entry?;
        if entry.path().is_file() {
            let to = target.join(entry.file_name());
            std::fs::copy(entry.path(), &to)
                .with_context(|| format!("cannot read `{}`", entry.path().display()))?;
            if let Some(user) = user {
                std::os::unix::fs::chown(&to, Some(user.uid), Some(user.gid))?;
            }
        }
    }
    if let Some(user) = user {
        std::os::unix::fs::chown(&target, Some(user.uid), Some(user.gid))?;
    }
    Ok(scratch.join(name)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, UsageError> {
        Args::parse(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn arguments_parse_in_both_forms() {
        let args = parse(&[
            "--context",
            "examples/hello-action",
            "--file=Dockerfile",
            "--image",
            "127.0.0.1:5000/hello:v1",
            "--build-arg",
            "BASE_IMAGE=127.0.0.1:5000/busybox:latest",
            "--build-arg=EMPTY=",
            "--no-push",
            "--executor=local",
            "--user",
            "rk8sbuild",
        ])
        .unwrap();
        assert_eq!(args.context, PathBuf::from("examples/hello-action"));
        assert_eq!(args.file, Some(PathBuf::from("Dockerfile")));
        assert_eq!(args.image, "127.0.0.1:5000/hello:v1");
        assert_eq!(
            args.build_args,
            [
                (
                    "BASE_IMAGE".to_owned(),
                    "127.0.0.1:5000/busybox:latest".to_owned()
                ),
                ("EMPTY".to_owned(), String::new())
            ]
        );
        assert!(args.no_push);
        assert_eq!(args.user.as_deref(), Some("rk8sbuild"));
        assert!(parse(&["--help"]).unwrap().help);
    }

    #[test]
    fn bad_arguments_say_what_is_wrong() {
        assert_eq!(
            parse(&["--image", "r:5000/x"]).unwrap_err(),
            UsageError::Required("--context")
        );
        assert_eq!(
            parse(&["--context", "."]).unwrap_err(),
            UsageError::Required("--image")
        );
        assert_eq!(
            parse(&["--context"]).unwrap_err(),
            UsageError::MissingValue("--context")
        );
        assert_eq!(
            parse(&["--push-it"]).unwrap_err().to_string(),
            "unknown argument `--push-it` for `build`"
        );
        assert!(
            parse(&[
                "--context",
                ".",
                "--image",
                "r:5000/x",
                "--executor",
                "docker"
            ])
            .unwrap_err()
            .to_string()
            .contains("expected `local` or `pod`")
        );
        assert!(
            parse(&[
                "--context",
                ".",
                "--image",
                "r:5000/x",
                "--build-arg",
                "NOEQUALS"
            ])
            .is_err()
        );
    }

    #[test]
    fn stray_words_and_flags_with_values_are_refused_by_name() {
        let base = ["--context", ".", "--image", "r:5000/x"];
        let error = |extra: &[&str]| parse(&[&base[..], extra].concat()).unwrap_err().to_string();
        assert_eq!(
            error(&["--no-push=yes"]),
            "unknown argument `--no-push=yes` for `build`"
        );
        assert_eq!(
            error(&["Dockerfile"]),
            "unknown argument `Dockerfile` for `build`"
        );
        assert_eq!(error(&["-x"]), "unknown argument `-x` for `build`");
        assert_eq!(error(&["--file"]), "`--file` needs a value");
        let short = parse(
            &[
                &base[..],
                &["-fdocker/Dockerfile", "-n", "ns", "--executor=pod"],
            ]
            .concat(),
        )
        .unwrap();
        assert_eq!(short.file, Some(PathBuf::from("docker/Dockerfile")));
        assert_eq!(short.namespace.as_deref(), Some("ns"));
    }

    #[test]
    fn each_executor_refuses_the_other_ones_options() {
        let base = ["--context", ".", "--image", "r:5000/x"];
        let with = |extra: &[&str]| parse(&[&base[..], extra].concat());
        let pod = with(&["--executor", "pod", "-n", "builds"]).unwrap();
        assert_eq!(pod.executor, ExecutorKind::Pod);
        assert_eq!(pod.namespace.as_deref(), Some("builds"));
        assert_eq!(with(&[]).unwrap().executor, ExecutorKind::Local);
        for local_only in [
            &["--user", "build"][..],
            &["--storage", "/s"],
            &["--authfile", "/a.json"],
            &["--cert-dir", "/c"],
        ] {
            let error = with(&[&["--executor=pod"][..], local_only].concat()).unwrap_err();
            assert!(
                error.to_string().contains("only with `--executor local`")
                    && error
                        .to_string()
                        .contains("ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_SECRET_NAME"),
                "{error}"
            );
        }
        assert!(
            with(&["--namespace", "builds"])
                .unwrap_err()
                .to_string()
                .contains("only with `--executor pod`")
        );
        assert!(
            with(&["--executor", "pod", "--namespace", "Not_A_Namespace"])
                .unwrap_err()
                .to_string()
                .contains("a namespace name")
        );
    }

    #[test]
    fn dockerfiles_stay_inside_the_context() {
        let ctx = Path::new("/ctx");
        assert_eq!(dockerfile_in(ctx, None).unwrap(), "Dockerfile");
        assert_eq!(
            dockerfile_in(ctx, Some(Path::new("d/Dockerfile.alpine"))).unwrap(),
            "d/Dockerfile.alpine"
        );
        assert_eq!(
            dockerfile_in(ctx, Some(Path::new("/ctx/Dockerfile"))).unwrap(),
            "Dockerfile"
        );
        assert!(dockerfile_in(ctx, Some(Path::new("/elsewhere/Dockerfile"))).is_err());
        assert!(dockerfile_in(ctx, Some(Path::new("../Dockerfile"))).is_err());
    }
}
