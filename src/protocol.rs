//! The runner's container-hook wire protocol: the request the runner writes to our stdin and the
//! response we write to `responseFile`.
//!
//! The types mirror the runner's `HookInput.cs` / `HookResponse.cs`
//! (`src/Runner.Worker/Container/ContainerHooks/` in `actions/runner`). The runner serialises with
//! Newtonsoft and a camel-case contract resolver: property names are camelCase, dictionary keys
//! keep their case, and null values are *present* rather than omitted.
//!
//! Input is lenient: unknown fields are ignored (the runner adds fields over time) and a `null`
//! list or map reads as empty. Output is strict: the response types make every field the runner
//! requires non-optional, so a response we write is always one the runner accepts.
//!
//! This module owns parsing and response writing; it never talks to Kubernetes.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// One of the four commands the runner sends (`HookCommand` in the runner).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Start the job container and service containers ("Initialize containers").
    PrepareJob,
    /// Delete everything the job created ("Stop containers").
    CleanupJob,
    /// Run one `run:` step or JavaScript action inside the job container.
    RunScriptStep,
    /// Run one Docker container action (from an image or a Dockerfile).
    RunContainerStep,
}

impl Command {
    /// Every command, in the order the runner uses them in a job.
    pub const ALL: [Command; 4] = [
        Command::PrepareJob,
        Command::RunScriptStep,
        Command::RunContainerStep,
        Command::CleanupJob,
    ];

    /// The wire name, e.g. `prepare_job`.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::PrepareJob => "prepare_job",
            Command::CleanupJob => "cleanup_job",
            Command::RunScriptStep => "run_script_step",
            Command::RunContainerStep => "run_container_step",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request from the runner, decoded and typed.
#[derive(Debug, Clone)]
pub struct Request {
    /// Which command to run.
    pub command: Command,
    /// Where the runner expects our response. The runner creates it empty before starting us;
    /// older examples send `null`.
    pub response_file: Option<PathBuf>,
    /// The command's own arguments.
    pub args: Args,
    /// What we returned as `state` from an earlier command of this job (`null` on the first).
    pub state: Option<State>,
}

impl Request {
    /// The request as the runner would send it (one JSON object), for tests and diagnostics.
    /// Registry passwords are written as `***`: a serialised request never carries a secret
    /// from the registry credentials.
    pub fn to_json(&self) -> Value {
        let args = match &self.args {
            Args::PrepareJob(a) => serde_json::to_value(a),
            Args::CleanupJob => Ok(Value::Object(Default::default())),
            Args::RunScriptStep(a) => serde_json::to_value(a),
            Args::RunContainerStep(a) => serde_json::to_value(a),
        };
        serde_json::json!({
            "command": self.command.as_str(),
            "responseFile": self.response_file,
            // Plain data structs with string map keys serialise infallibly.
            "args": args.expect("request types serialise infallibly"),
            "state": self.state,
        })
    }
}

/// The arguments of each command.
#[derive(Debug, Clone)]
pub enum Args {
    /// `prepare_job` arguments.
    PrepareJob(PrepareJobArgs),
    /// `cleanup_job` takes no arguments (the runner sends `{}`).
    CleanupJob,
    /// `run_script_step` arguments.
    RunScriptStep(ScriptStepArgs),
    /// `run_container_step` arguments: the step's container.
    RunContainerStep(ContainerDefinition),
}

/// `prepare_job` arguments (`PrepareJobArgs` in `HookInput.cs`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrepareJobArgs {
    /// The job container (`container:` in the workflow); absent for service-only jobs.
    #[serde(default)]
    pub container: Option<ContainerDefinition>,
    /// Service containers (`services:`), in workflow order. The response must list them in the
    /// same order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub services: Vec<ContainerDefinition>,
}

/// A container the runner asks for: the job container, a service, or a container step
/// (`HookContainer` in `HookInput.cs`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDefinition {
    /// Image reference; `null` for a Dockerfile action.
    #[serde(default)]
    pub image: Option<String>,
    /// Runner-host path of the action's Dockerfile (`Dockerfile` or `Dockerfile.*`); `null`
    /// unless the step is a Dockerfile action.
    #[serde(default)]
    pub dockerfile: Option<String>,
    /// Arguments, already split on spaces by the runner (runner #2633): `"b c"` arrives as
    /// `["\"b", "c\""]`. Re-join with spaces and shell-split to recover them.
    #[serde(default, deserialize_with = "null_as_default")]
    pub entry_point_args: Vec<String>,
    /// `runs.entrypoint` (or the job's `entryPoint`); `null` means "the image's own".
    #[serde(default)]
    pub entry_point: Option<String>,
    /// Working directory inside the container.
    #[serde(default)]
    pub working_directory: Option<String>,
    /// The workflow's `options:` string (docker-style create options).
    #[serde(default)]
    pub create_options: Option<String>,
    /// Registry credentials for pulling `image`; set only when a username was given.
    #[serde(default)]
    pub registry: Option<Registry>,
    /// Environment variables; the runner sends strings, a `null` value reads as empty.
    #[serde(default, deserialize_with = "env_map")]
    pub environment_variables: BTreeMap<String, String>,
    /// Docker-style port mappings, e.g. `"80:8080"`, `"6379"`, `"53:53/udp"`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub port_mappings: Vec<String>,
    /// Mounts the runner itself needs (work dir, externals, file commands...).
    #[serde(default, deserialize_with = "null_as_default")]
    pub system_mount_volumes: Vec<Mount>,
    /// The workflow's `volumes:` entries.
    #[serde(default, deserialize_with = "null_as_default")]
    pub user_mount_volumes: Vec<Mount>,
}

/// One bind mount the runner asks for (`MountVolume` in `HookInput.cs`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    /// The workflow's original text (`src:dst[:ro]`); non-null only for user volumes.
    #[serde(default)]
    pub user_provided_value: Option<String>,
    /// Source path on the runner host (or a docker volume name).
    #[serde(default)]
    pub source_volume_path: Option<String>,
    /// Target path inside the container.
    #[serde(default)]
    pub target_volume_path: String,
    /// Whether the mount is read-only.
    #[serde(default, deserialize_with = "null_as_default")]
    pub read_only: bool,
}

/// Registry credentials for an image (`ContainerRegistry` in `HookInput.cs`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registry {
    /// User name.
    #[serde(default)]
    pub username: Option<String>,
    /// Password or token; redacted in `Debug` and never logged.
    #[serde(default, serialize_with = "redacted")]
    pub password: Option<SecretString>,
    /// Registry host parsed from the image name; empty for Docker Hub.
    #[serde(default)]
    pub server_url: Option<String>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("server_url", &self.server_url)
            .finish()
    }
}

impl Registry {
    /// The password as plain text, for building a pull Secret. Never log the result.
    pub fn password_plain(&self) -> &str {
        self.password
            .as_ref()
            .map(|p| p.expose_secret())
            .unwrap_or_default()
    }
}

/// `run_script_step` arguments (`ScriptStepArgs` in `HookInput.cs`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScriptStepArgs {
    /// Arguments for `entryPoint`, split on single spaces, e.g. `["-e", "/__w/_temp/<guid>.sh"]`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub entry_point_args: Vec<String>,
    /// The interpreter, e.g. `sh`, `bash` or `/__e/node20/bin/node`.
    #[serde(default)]
    pub entry_point: Option<String>,
    /// The step's environment, secrets included.
    #[serde(default, deserialize_with = "env_map")]
    pub environment_variables: BTreeMap<String, String>,
    /// Directories to put in front of `PATH`, highest priority first.
    #[serde(default)]
    pub prepend_path: PrependPath,
    /// Working directory inside the job container.
    #[serde(default)]
    pub working_directory: Option<String>,
}

/// `prependPath`: an array since runner 2.294 (runner #1948); older runners sent one string.
/// Serialises as the array form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PrependPath(pub Vec<String>);

impl PrependPath {
    /// The directories joined with `:`, ready to put in front of `$PATH`; `None` when empty.
    pub fn joined(&self) -> Option<String> {
        let parts: Vec<&str> = self
            .0
            .iter()
            .map(String::as_str)
            .filter(|s| !s.is_empty())
            .collect();
        (!parts.is_empty()).then(|| parts.join(":"))
    }
}

impl<'de> Deserialize<'de> for PrependPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            List(Vec<String>),
            Legacy(String),
        }
        Ok(match Option::<Wire>::deserialize(deserializer)? {
            None => PrependPath::default(),
            Some(Wire::List(list)) => PrependPath(list),
            Some(Wire::Legacy(s)) if s.is_empty() => PrependPath::default(),
            Some(Wire::Legacy(s)) => PrependPath(vec![s]),
        })
    }
}

/// Which data plane a job uses (docs/user/install-arc.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataPlane {
    /// The runner's work volume is mounted in every pod; nothing is copied.
    Volume,
    /// Pods use emptyDirs; files move as tar streams over `pods/exec`.
    Copy,
}

impl fmt::Display for DataPlane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataPlane::Volume => "volume",
            DataPlane::Copy => "copy",
        })
    }
}

/// Our bookkeeping between commands of one job, returned as `state` and handed back by the runner.
///
/// Versioned so a newer hook can read what an older one wrote. A `state` written by the
/// TypeScript hook (`{"jobPod": "..."}`) reads as version 0 with only the job pod set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// Format version; [`State::VERSION`] for what this hook writes.
    #[serde(default)]
    pub version: u32,
    /// Name of the job pod (`<runner-pod>-workflow`); empty for jobs without one.
    #[serde(default)]
    pub job_pod: String,
    /// The data plane chosen at `prepare_job`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_plane: Option<DataPlane>,
    /// Secrets we created for this job (pull secrets), deleted at `cleanup_job`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// Whether the job container's image is Alpine-based.
    #[serde(default)]
    pub is_alpine: bool,
}

impl State {
    /// The state format this hook writes.
    pub const VERSION: u32 = 1;
}

/// The response to `prepare_job` (`PrepareJobResponse` in `HookResponse.cs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrepareJobResponse {
    /// Our state for later commands.
    pub state: State,
    /// What the runner puts into the `job` and `services` contexts.
    pub context: ResponseContext,
    /// Required by the runner when there is a job container: it picks `node20_alpine` for
    /// JavaScript actions when true.
    pub is_alpine: bool,
}

/// `context` in the `prepare_job` response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseContext {
    /// The job container, when the job has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerContext>,
    /// One entry per requested service, in request order (the runner indexes by position).
    pub services: Vec<ContainerContext>,
}

/// One container in the response context.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerContext {
    /// The image the container runs.
    pub image: String,
    /// `{"<containerPort>": "<hostPort>"}`; never null (the runner iterates it).
    pub ports: BTreeMap<String, String>,
}

/// What we write to `responseFile`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The `prepare_job` response.
    PrepareJob(PrepareJobResponse),
    /// Any other command: only the (possibly updated) state.
    State(State),
}

impl Response {
    /// The JSON document the runner reads.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct StateOnly<'a> {
            state: &'a State,
        }
        let result = match self {
            Response::PrepareJob(response) => serde_json::to_string(response),
            Response::State(state) => serde_json::to_string(&StateOnly { state }),
        };
        // Serialising plain structs of strings, bools and maps with string keys cannot fail.
        result.expect("response types serialise infallibly")
    }
}

/// Why a request could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// stdin held nothing but white space.
    #[error("no request on stdin: the runner writes one JSON line and closes stdin")]
    EmptyInput,
    /// stdin could not be read.
    #[error("failed to read the request from stdin")]
    ReadInput(#[source] std::io::Error),
    /// The last line is not a JSON object with the request fields.
    #[error("the request on stdin is not valid JSON")]
    InvalidJson(#[source] serde_json::Error),
    /// The JSON is an array, string or number instead of the request object.
    #[error(
        "the request on stdin is not a JSON object with `command`, `responseFile`, `args` and `state`"
    )]
    NotAnObject,
    /// `command` names no command we know.
    #[error(
        "unknown command `{0}`: expected one of prepare_job, cleanup_job, run_script_step, run_container_step"
    )]
    UnknownCommand(String),
    /// A field of the request has the wrong type or shape.
    #[error("invalid `{command}` request: field `{path}`: {message}")]
    InvalidField {
        /// The command whose arguments failed.
        command: String,
        /// Path of the field, e.g. `args.container.portMappings[0]`.
        path: String,
        /// What serde said about it.
        message: String,
    },
    /// The response file could not be written.
    #[error("failed to write the response file `{}`", path.display())]
    WriteResponse {
        /// The path the runner gave.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
}

/// Parse what the runner wrote to stdin. The runner writes one line; like the TypeScript
/// hooklib (`getInputFromStdin`), we take the last non-empty line so a stray line before it
/// does no harm.
///
/// # Errors
/// [`ProtocolError`] naming what is wrong: empty input, invalid JSON, an unknown command, or the
/// path of a field with the wrong type.
pub fn parse_request(input: &str) -> Result<Request, ProtocolError> {
    let line = input
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or(ProtocolError::EmptyInput)?;

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Envelope {
        command: Option<Value>,
        #[serde(default)]
        response_file: Option<Value>,
        #[serde(default)]
        args: Value,
        #[serde(default)]
        state: Value,
    }
    let value: Value = serde_json::from_str(line).map_err(ProtocolError::InvalidJson)?;
    if !value.is_object() {
        return Err(ProtocolError::NotAnObject);
    }
    let envelope: Envelope = serde_json::from_value(value).map_err(ProtocolError::InvalidJson)?;

    let command_name = match &envelope.command {
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(field_error(
                "request",
                "command",
                format!("expected a string, found {other}"),
            ));
        }
        None => return Err(field_error("request", "command", "missing field".into())),
    };
    let command = Command::ALL
        .into_iter()
        .find(|c| c.as_str() == command_name)
        .ok_or_else(|| ProtocolError::UnknownCommand(command_name.clone()))?;

    let response_file = match envelope.response_file {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(PathBuf::from(s)),
        Some(other) => {
            return Err(field_error(
                command.as_str(),
                "responseFile",
                format!("expected a path string, found {other}"),
            ));
        }
    };

    let args = match command {
        Command::PrepareJob => Args::PrepareJob(decode(command, "args", envelope.args)?),
        Command::CleanupJob => Args::CleanupJob,
        Command::RunScriptStep => Args::RunScriptStep(decode(command, "args", envelope.args)?),
        Command::RunContainerStep => {
            Args::RunContainerStep(decode(command, "args", envelope.args)?)
        }
    };
    let state = match envelope.state {
        Value::Null => None,
        value => Some(decode(command, "state", value)?),
    };

    Ok(Request {
        command,
        response_file,
        args,
        state,
    })
}

fn field_error(command: &str, path: &str, message: String) -> ProtocolError {
    ProtocolError::InvalidField {
        command: command.to_owned(),
        path: path.to_owned(),
        message,
    }
}

/// Decode one part of the request, reporting the failing field's full path.
fn decode<T: for<'de> Deserialize<'de>>(
    command: Command,
    root: &str,
    value: Value,
) -> Result<T, ProtocolError> {
    // `null` args (the runner never sends them, examples do) read as an empty object.
    let value = if value.is_null() {
        Value::Object(Default::default())
    } else {
        value
    };
    serde_path_to_error::deserialize(value).map_err(|err| {
        let inner = err.path().to_string();
        let path = if inner == "." {
            root.to_owned()
        } else {
            format!("{root}.{inner}")
        };
        field_error(command.as_str(), &path, err.into_inner().to_string())
    })
}

/// Write `response` to the runner's response file as exactly one JSON document.
///
/// The runner creates the file empty before starting the hook and reads it after a zero exit
/// (`ContainerHookManager.GetResponse`), so we replace its content rather than append.
///
/// # Errors
/// [`ProtocolError::WriteResponse`] with the path when the file cannot be written.
pub fn write_response(path: &Path, response: &Response) -> Result<(), ProtocolError> {
    let mut json = response.to_json();
    json.push('\n');
    std::fs::write(path, json).map_err(|source| ProtocolError::WriteResponse {
        path: path.to_owned(),
        source,
    })
}

/// Serialise a secret as `***` (the runner's own mask), never its value.
fn redacted<S: serde::Serializer>(secret: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => s.serialize_str("***"),
        None => s.serialize_none(),
    }
}

/// `null` reads as the type's default (runner payloads carry explicit nulls).
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// An environment map whose values may be `null` (read as empty strings).
fn env_map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let map = Option::<BTreeMap<String, Option<String>>>::deserialize(deserializer)?;
    Ok(map
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Request, ProtocolError> {
        parse_request(json)
    }

    #[test]
    fn takes_the_last_non_empty_line() {
        let input = "garbage that is not json\n{\"command\":\"cleanup_job\",\"responseFile\":\"/tmp/r.json\",\"args\":{},\"state\":null}\n\n";
        let request = parse(input).expect("last line parses");
        assert_eq!(request.command, Command::CleanupJob);
        assert_eq!(request.response_file, Some(PathBuf::from("/tmp/r.json")));
        assert!(request.state.is_none());
    }

    #[test]
    fn empty_input_is_a_clear_error() {
        let err = parse(" \n\n").unwrap_err();
        assert!(matches!(err, ProtocolError::EmptyInput));
        assert_eq!(
            err.to_string(),
            "no request on stdin: the runner writes one JSON line and closes stdin"
        );
    }

    #[test]
    fn unknown_command_names_the_command_and_the_choices() {
        let err = parse(r#"{"command":"run_step","args":{}}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown command `run_step`: expected one of prepare_job, cleanup_job, run_script_step, run_container_step"
        );
    }

    #[test]
    fn wrong_field_type_names_the_field_path() {
        let err = parse(
            r#"{"command":"prepare_job","args":{"container":{"image":"a","portMappings":[80]}}}"#,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(
                "invalid `prepare_job` request: field `args.container.portMappings[0]`:"
            ),
            "{text}"
        );
    }

    #[test]
    fn prepend_path_accepts_array_and_legacy_string() {
        let array: ScriptStepArgs =
            serde_json::from_str(r#"{"prependPath":["/a/bin","/b/bin"]}"#).unwrap();
        assert_eq!(
            array.prepend_path.joined().as_deref(),
            Some("/a/bin:/b/bin")
        );
        let legacy: ScriptStepArgs = serde_json::from_str(r#"{"prependPath":"/old/bin"}"#).unwrap();
        assert_eq!(legacy.prepend_path.joined().as_deref(), Some("/old/bin"));
        let null: ScriptStepArgs = serde_json::from_str(r#"{"prependPath":null}"#).unwrap();
        assert_eq!(null.prepend_path.joined(), None);
    }

    #[test]
    fn nulls_read_as_empty_collections() {
        let c: ContainerDefinition = serde_json::from_str(
            r#"{"image":"x","entryPointArgs":null,"portMappings":null,"environmentVariables":{"A":null},"systemMountVolumes":null}"#,
        )
        .unwrap();
        assert!(c.entry_point_args.is_empty());
        assert!(c.port_mappings.is_empty());
        assert_eq!(c.environment_variables["A"], "");
    }

    #[test]
    fn registry_password_is_redacted_in_debug() {
        let c: ContainerDefinition = serde_json::from_str(
            r#"{"image":"x","registry":{"username":"u","password":"hunter2","serverUrl":"ghcr.io"}}"#,
        )
        .unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert_eq!(c.registry.unwrap().password_plain(), "hunter2");
    }

    #[test]
    fn typescript_hook_state_reads_as_version_0() {
        let request = parse(
            r#"{"command":"cleanup_job","args":{},"state":{"jobPod":"arc-runner-abcde-workflow"}}"#,
        )
        .unwrap();
        let state = request.state.unwrap();
        assert_eq!(state.version, 0);
        assert_eq!(state.job_pod, "arc-runner-abcde-workflow");
    }

    #[test]
    fn prepare_job_response_has_the_fields_the_runner_requires() {
        let response = Response::PrepareJob(PrepareJobResponse {
            state: State {
                version: State::VERSION,
                job_pod: "r-workflow".into(),
                data_plane: Some(DataPlane::Copy),
                secrets: vec![],
                is_alpine: false,
            },
            context: ResponseContext {
                container: Some(ContainerContext {
                    image: "node:22".into(),
                    ports: BTreeMap::new(),
                }),
                services: vec![ContainerContext {
                    image: "redis:7".into(),
                    ports: BTreeMap::from([("6379".into(), "6379".into())]),
                }],
            },
            is_alpine: false,
        });
        let value: Value = serde_json::from_str(&response.to_json()).unwrap();
        assert_eq!(value["isAlpine"], Value::Bool(false));
        assert_eq!(value["context"]["services"][0]["ports"]["6379"], "6379");
        assert!(value["context"]["container"]["ports"].is_object());
        assert_eq!(value["state"]["jobPod"], "r-workflow");
        assert_eq!(value["state"]["version"], 1);
    }
}
