//! Image references for built actions: the registry host (with its optional path prefix), the
//! repository name derived from the action's identity, the random tag, and the digest that pins
//! the pull reference.
//!
//! A built action is pushed as `<push-host>/<name>:<tag>` and run as
//! `<pull-host>/<name>:<tag>@sha256:<digest>` (docs/user/dockerfile-actions.md). The two hosts differ when pods
//! reach the registry under one name (`registry.ns.svc:5000`) and the kubelet pulls under
//! another (`localhost:30500`).
//!
//! The grammar is distribution's `reference` package (`reference/regexp.go`): a repository path
//! is `/`-joined components `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`, a tag is
//! `[\w][\w.-]{0,127}`, and a name (host included) has at most 255 characters.
//!
//! Everything here is pure except [`random_tag`], which draws randomness. Nothing here talks to
//! a registry.

use std::fmt;
use std::path::{Component, Path};

use rand::RngExt as _;

/// Longest repository name, host included (distribution's `NameTotalLengthMax`).
pub const MAX_NAME_LEN: usize = 255;

/// Name used when an action's identity yields no usable character.
pub const FALLBACK_NAME: &str = "action";

/// Length of [`random_tag`]: 16 characters from a 36-letter alphabet, about 82 bits.
pub const TAG_LEN: usize = 16;

/// A registry host and an optional repository path prefix: `ghcr.io/owner`,
/// `registry.ns.svc:5000/actions`, `127.0.0.1:5000`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryHost {
    host: String,
    path: Option<String>,
}

/// Why a registry host, image reference or digest is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// A registry host that does not have the accepted form.
    #[error("`{value}` is not a registry host: {reason}")]
    Host {
        /// What was given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An image reference that does not have the accepted form.
    #[error("`{value}` is not an image reference: {reason}")]
    Image {
        /// What was given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A digest that is not `sha256:` followed by 64 lowercase hex digits.
    #[error("`{value}` is not an image digest: expected `sha256:` and 64 lowercase hex digits")]
    Digest {
        /// What was given.
        value: String,
    },
}

impl RegistryHost {
    /// Parse `host[:port][/path...]`.
    ///
    /// The first component must look like a registry host (it contains a `.` or a `:`, or is
    /// `localhost`), because container tools read `owner/repo` as a Docker Hub repository: a
    /// value like `myorg` would silently push to `docker.io/myorg`. A trailing `/` is ignored;
    /// a scheme (`https://`) is refused, since registries are named without one.
    ///
    /// # Errors
    /// [`ReferenceError::Host`] saying what is wrong.
    pub fn parse(value: &str) -> Result<RegistryHost, ReferenceError> {
        let err = |reason| ReferenceError::Host {
            value: value.to_owned(),
            reason,
        };
        if value.contains("://") {
            return Err(err(
                "leave out the scheme (`https://`): registries are named by host only",
            ));
        }
        let trimmed = value.trim_end_matches('/');
        let (host, path) = match trimmed.split_once('/') {
            Some((host, path)) => (host, Some(path)),
            None => (trimmed, None),
        };
        if host.is_empty() {
            return Err(err("the host is empty"));
        }
        if !is_host(host) {
            return Err(err(
                "expected a host name or IP address with an optional `:port`, e.g. `ghcr.io` or `registry.ns.svc:5000`",
            ));
        }
        if !(host.contains('.') || host.contains(':') || host == "localhost") {
            return Err(err(
                "the first part must be a registry host (with a `.` or a `:port`, or `localhost`); for Docker Hub write `docker.io/<user>`",
            ));
        }
        if let Some(path) = path
            && !path.split('/').all(is_path_component)
        {
            return Err(err(
                "the path after the host must be lowercase components like `owner/actions` (letters, digits, and `.`, `_`, `-` between them)",
            ));
        }
        Ok(RegistryHost {
            host: host.to_owned(),
            path: path.map(str::to_owned),
        })
    }

    /// The host with its port, without the path: `registry.ns.svc:5000`. This is the key of the
    /// registry in an auth file (`auths`) and the directory name under `certs.d`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The repository path prefix, if any: `owner/actions`.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }
}

impl fmt::Display for RegistryHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{}/{path}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

/// `sha256:` followed by 64 lowercase hex digits: the digest of a pushed manifest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest(String);

impl Digest {
    /// Parse a digest, e.g. the content of `buildah push --digestfile`. Surrounding whitespace
    /// is ignored.
    ///
    /// # Errors
    /// [`ReferenceError::Digest`] unless the text is `sha256:<64 lowercase hex digits>`.
    pub fn parse(value: &str) -> Result<Digest, ReferenceError> {
        let trimmed = value.trim();
        let valid = trimmed.strip_prefix("sha256:").is_some_and(|hex| {
            hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if valid {
            Ok(Digest(trimmed.to_owned()))
        } else {
            Err(ReferenceError::Digest {
                value: value.to_owned(),
            })
        }
    }

    /// `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The image a build produces: a repository name under a push host and a pull host, and a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    push_host: RegistryHost,
    pull_host: RegistryHost,
    name: String,
    tag: String,
}

impl ImageRef {
    /// The image for an action named `name` (see [`action_name`]) under a fresh [`random_tag`].
    /// The hosts' path prefixes go before the name. A name that would make the reference longer
    /// than [`MAX_NAME_LEN`] under either host is cut (at a component boundary where possible).
    pub fn new(push_host: &RegistryHost, pull_host: &RegistryHost, name: &str) -> ImageRef {
        ImageRef::with_tag(push_host, pull_host, name, &random_tag())
    }

    /// As [`ImageRef::new`] with a given tag (tests; the CLI's `--image` with a tag).
    ///
    /// # Panics
    /// Never for a tag from [`random_tag`] or [`is_tag`]; a tag that is not valid is a bug in
    /// the caller and is checked in debug builds only.
    pub fn with_tag(
        push_host: &RegistryHost,
        pull_host: &RegistryHost,
        name: &str,
        tag: &str,
    ) -> ImageRef {
        debug_assert!(is_tag(tag), "invalid tag `{tag}`");
        let longest_host = push_host.to_string().len().max(pull_host.to_string().len());
        let name = fit_name(name, MAX_NAME_LEN.saturating_sub(longest_host + 1));
        ImageRef {
            push_host: push_host.clone(),
            pull_host: pull_host.clone(),
            name,
            tag: tag.to_owned(),
        }
    }

    /// The repository name below the host's path prefix: `owner/repo/path`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tag.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// What the build pushes: `<push-host>/<name>:<tag>`.
    pub fn push_ref(&self) -> String {
        format!("{}/{}:{}", self.push_host, self.name, self.tag)
    }

    /// The repository on the push host, without host and tag: `<host path>/<name>`, what the
    /// registry API calls the name (`/v2/<repository>/manifests/<tag>`).
    pub fn push_repository(&self) -> String {
        match self.push_host.path() {
            Some(path) => format!("{path}/{}", self.name),
            None => self.name.clone(),
        }
    }

    /// The image without its tag: `<push-host>/<name>`, how the step log names it.
    pub fn push_name(&self) -> String {
        format!("{}/{}", self.push_host, self.name)
    }

    /// The same image under another tag (the build key's).
    pub fn retagged(&self, tag: &str) -> ImageRef {
        debug_assert!(is_tag(tag), "invalid tag `{tag}`");
        ImageRef {
            tag: tag.to_owned(),
            ..self.clone()
        }
    }

    /// The push host.
    pub fn push_host(&self) -> &RegistryHost {
        &self.push_host
    }

    /// What the step runs: `<pull-host>/<name>:<tag>@<digest>`. The tag is kept for people
    /// reading the pod spec; the digest is what the runtime pulls.
    pub fn pull_ref(&self, digest: &Digest) -> String {
        format!("{}/{}:{}@{digest}", self.pull_host, self.name, self.tag)
    }
}

/// A full image reference given by a person (the CLI's `--image`): `host[:port]/path[:tag]`,
/// checked with the same rules as [`RegistryHost`] and [`is_tag`]. Returns the repository
/// (`host/path`) and the tag, if one was given.
///
/// # Errors
/// [`ReferenceError::Image`] for a reference with a digest, without a registry host, or with an
/// invalid repository path or tag.
pub fn parse_image(value: &str) -> Result<(RegistryHost, Option<String>), ReferenceError> {
    let err = |reason| ReferenceError::Image {
        value: value.to_owned(),
        reason,
    };
    if value.contains('@') {
        return Err(err(
            "leave out the digest: the build produces it (the output is the reference pinned by digest)",
        ));
    }
    // The tag is after the last `:` that comes after the last `/` (a `:` before it is a port).
    let last_slash = value.rfind('/');
    let (repository, tag) = match value.rfind(':') {
        Some(colon) if last_slash.is_none_or(|slash| colon > slash) => {
            (&value[..colon], Some(&value[colon + 1..]))
        }
        _ => (value, None),
    };
    if let Some(tag) = tag
        && !is_tag(tag)
    {
        return Err(err(
            "the tag must be 1 to 128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`",
        ));
    }
    let host = RegistryHost::parse(repository).map_err(|e| match e {
        ReferenceError::Host { reason, .. } => err(reason),
        other => other,
    })?;
    if host.path.is_none() {
        return Err(err(
            "name a repository under the registry, e.g. `registry.example:5000/team/image`",
        ));
    }
    if repository.len() > MAX_NAME_LEN {
        return Err(err("the repository name is longer than 255 characters"));
    }
    Ok((host, tag.map(str::to_owned)))
}

/// A fresh tag: [`TAG_LEN`] random lowercase letters and digits (about 82 bits, so tags never
/// collide and cannot be guessed from the action).
pub fn random_tag() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..TAG_LEN)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// Whether `tag` is a valid tag: `[\w][\w.-]{0,127}`.
pub fn is_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
}

/// The repository name of a Dockerfile action, from where the runner put its Dockerfile
/// (docs/user/dockerfile-actions.md):
///
/// - `<work>/_actions/<owner>/<repo>/<ref>/[<path>/]<Dockerfile>` (an action from another
///   repository, which the runner downloads there) → `<owner>/<repo>[/<path>]`;
/// - `<work>/<repo>/<repo>/[<path>/]<Dockerfile>` (a local `./` action in the workspace) →
///   `<github_repository>[/<path>]`, the workflow's own repository (`GITHUB_REPOSITORY`,
///   e.g. `octo-org/repo`);
/// - anywhere else → `<github_repository>`, or [`FALLBACK_NAME`] without one.
///
/// The result is lowercased and made a valid repository path (see [`sanitize_path`]); it is
/// never empty. The ref (tag, branch or SHA) is left out: the random tag already makes every
/// build unique, and one repository per action keeps registries tidy.
pub fn action_name(dockerfile: &Path, work_dir: &Path, github_repository: Option<&str>) -> String {
    let repository = github_repository.unwrap_or("");
    let parts: Vec<String> = match dockerfile.parent().map(|dir| dir.strip_prefix(work_dir)) {
        Some(Ok(relative)) => {
            let components: Vec<String> = relative
                .components()
                .filter_map(|c| match c {
                    Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
                    _ => None,
                })
                .collect();
            match components.as_slice() {
                [actions, owner, repo, _ref, path @ ..] if actions == "_actions" => {
                    let mut parts = vec![owner.clone(), repo.clone()];
                    parts.extend(path.iter().cloned());
                    parts
                }
                [first, second, path @ ..] if first == second && !first.starts_with('_') => {
                    let mut parts = vec![repository.to_owned()];
                    parts.extend(path.iter().cloned());
                    parts
                }
                _ => vec![repository.to_owned()],
            }
        }
        _ => vec![repository.to_owned()],
    };
    let name = sanitize_path(&parts.join("/"));
    if name.is_empty() {
        FALLBACK_NAME.to_owned()
    } else {
        name
    }
}

/// Make `text` a valid repository path: lowercase; every character other than `a-z0-9._-`
/// becomes `-`; inside each `/`-separated component, a run of separators becomes `-` unless it
/// is exactly `.`, `_`, `__` or only dashes; separators at either end of a component and empty
/// components are dropped. May return the empty string (nothing usable).
pub fn sanitize_path(text: &str) -> String {
    text.split('/')
        .map(sanitize_component)
        .filter(|c| !c.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

fn sanitize_component(text: &str) -> String {
    let lowered: String = text
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut out = String::with_capacity(lowered.len());
    let mut separators = String::new();
    for c in lowered.chars() {
        if c.is_ascii_alphanumeric() {
            if !separators.is_empty() {
                // Separators only count between alphanumerics: leading ones are dropped.
                if !out.is_empty() {
                    let run = if matches!(separators.as_str(), "." | "_" | "__")
                        || separators.bytes().all(|b| b == b'-')
                    {
                        separators.as_str()
                    } else {
                        "-"
                    };
                    out.push_str(run);
                }
                separators.clear();
            }
            out.push(c);
        } else {
            separators.push(c);
        }
    }
    out
}

/// Whether `component` matches `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`.
pub fn is_path_component(component: &str) -> bool {
    !component.is_empty() && sanitize_component(component) == component
}

/// Cut `name` to at most `max` characters, preferring a component boundary, and keep it valid.
fn fit_name(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let mut cut = String::new();
    for component in name.split('/') {
        let extra = if cut.is_empty() { 0 } else { 1 };
        if cut.len() + extra + component.len() > max {
            if cut.is_empty() {
                // A single over-long component: cut inside it.
                cut = sanitize_component(&component[..max.min(component.len())]);
            }
            break;
        }
        if extra == 1 {
            cut.push('/');
        }
        cut.push_str(component);
    }
    if cut.is_empty() {
        FALLBACK_NAME.to_owned()
    } else {
        cut
    }
}

/// Whether `host` is `name[:port]` with DNS-ish labels, an IPv4 address, or a bracketed IPv6
/// address, as distribution's `domainAndPort`.
fn is_host(host: &str) -> bool {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return false;
        };
        if inside.is_empty() || !inside.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("[v6]", Some(port)),
                None => return false,
            },
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    if name == "[v6]" {
        return true;
    }
    !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> RegistryHost {
        RegistryHost::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn registry_hosts_parse_with_optional_path() {
        let h = host("ghcr.io/owner");
        assert_eq!((h.host(), h.path()), ("ghcr.io", Some("owner")));
        let h = host("registry.ns.svc:5000/actions/built/");
        assert_eq!(
            (h.host(), h.path()),
            ("registry.ns.svc:5000", Some("actions/built"))
        );
        assert_eq!(h.to_string(), "registry.ns.svc:5000/actions/built");
        assert_eq!(host("127.0.0.1:5000").to_string(), "127.0.0.1:5000");
        assert_eq!(host("localhost").path(), None);
        assert_eq!(host("localhost:30500/a").to_string(), "localhost:30500/a");
        assert_eq!(host("[::1]:5000").host(), "[::1]:5000");
        assert_eq!(host("Registry.Example.com").host(), "Registry.Example.com");
    }

    #[test]
    fn registry_hosts_that_are_not_hosts_are_refused() {
        for bad in [
            "",
            "/owner",
            "https://ghcr.io/owner",
            "myorg",
            "myorg/actions",
            "ghcr.io/Owner",
            "ghcr.io/own er",
            "ghcr.io//owner",
            "ghcr.io:port",
            "ghcr.io:123456",
            "-bad.io",
            "bad_host.io",
            "ghcr.io/-owner",
        ] {
            assert!(
                RegistryHost::parse(bad).is_err(),
                "`{bad}` should be refused"
            );
        }
        let err = RegistryHost::parse("myorg").unwrap_err();
        assert!(err.to_string().contains("docker.io/<user>"), "{err}");
    }

    #[test]
    fn digests_are_sha256_and_64_lowercase_hex() {
        let hex = "a".repeat(64);
        let d = Digest::parse(&format!(" sha256:{hex}\n")).unwrap();
        assert_eq!(d.as_str(), format!("sha256:{hex}"));
        for bad in [
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
            format!("sha256:{}", "a".repeat(65)),
            format!("sha512:{hex}"),
            format!("sha256:{}g", "a".repeat(63)),
            hex.clone(),
            String::new(),
        ] {
            assert!(Digest::parse(&bad).is_err(), "`{bad}` should be refused");
        }
    }

    #[test]
    fn actions_from_other_repositories_are_named_owner_repo_path() {
        let work = Path::new("/home/runner/_work");
        let name = |p: &str| action_name(Path::new(p), work, Some("octo-org/workflow-repo"));
        assert_eq!(
            name("/home/runner/_work/_actions/actions/hello-world-docker-action/v2/Dockerfile"),
            "actions/hello-world-docker-action"
        );
        assert_eq!(
            name("/home/runner/_work/_actions/Octo-Org/My_Repo/main/tools/Lint/Dockerfile.alpine"),
            "octo-org/my_repo/tools/lint"
        );
        // The ref is never part of the name, even one with slashes.
        assert_eq!(
            name("/home/runner/_work/_actions/o/r/0123abc/Dockerfile"),
            "o/r"
        );
    }

    #[test]
    fn local_actions_are_named_after_the_workflow_repository() {
        let work = Path::new("/home/runner/_work");
        let name = |p: &str, repo| action_name(Path::new(p), work, repo);
        assert_eq!(
            name(
                "/home/runner/_work/repo/repo/Dockerfile",
                Some("Octo-Org/Repo")
            ),
            "octo-org/repo"
        );
        assert_eq!(
            name(
                "/home/runner/_work/repo/repo/.github/actions/greet/Dockerfile",
                Some("octo-org/repo")
            ),
            "octo-org/repo/github/actions/greet"
        );
        // Unknown places fall back to the repository, and to a fixed name without one.
        assert_eq!(
            name("/somewhere/else/Dockerfile", Some("octo-org/repo")),
            "octo-org/repo"
        );
        assert_eq!(
            name("/home/runner/_work/repo/repo/Dockerfile", None),
            "action"
        );
        assert_eq!(name("/home/runner/_work/Dockerfile", Some("")), "action");
    }

    #[test]
    fn odd_names_become_valid_repository_paths() {
        assert_eq!(sanitize_path("Hello World"), "hello-world");
        assert_eq!(sanitize_path("a..b"), "a-b");
        assert_eq!(sanitize_path("a__b"), "a__b");
        assert_eq!(sanitize_path("a___b"), "a-b");
        assert_eq!(sanitize_path("a---b"), "a---b");
        assert_eq!(sanitize_path("a.-b"), "a-b");
        assert_eq!(sanitize_path("-_.a.b_-"), "a.b");
        assert_eq!(sanitize_path(".github/actions//x"), "github/actions/x");
        assert_eq!(sanitize_path("héllo/日本/ok"), "h-llo/ok");
        assert_eq!(sanitize_path("___/..."), "");
        assert_eq!(sanitize_path("UPPER/Case.Name"), "upper/case.name");
        for s in ["Hello World", "a..b", "-_.a.b_-", "héllo/日本/ok", "x@y$z"] {
            let out = sanitize_path(s);
            assert!(out.split('/').all(is_path_component), "{s} -> {out}");
        }
    }

    #[test]
    fn tags_are_random_lowercase_and_valid() {
        let a = random_tag();
        let b = random_tag();
        assert_ne!(a, b);
        assert_eq!(a.len(), TAG_LEN);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert!(is_tag(&a));
        assert!(is_tag("v1.2_3-x"));
        assert!(!is_tag(".x"));
        assert!(!is_tag("-x"));
        assert!(!is_tag(""));
        assert!(!is_tag(&"x".repeat(129)));
    }

    #[test]
    fn push_and_pull_references() {
        let push = host("registry.ns.svc:5000/actions");
        let pull = host("localhost:30500/actions");
        let image = ImageRef::with_tag(&push, &pull, "octo/hello", "abc123");
        assert_eq!(
            image.push_ref(),
            "registry.ns.svc:5000/actions/octo/hello:abc123"
        );
        let digest = Digest::parse(&format!("sha256:{}", "0".repeat(64))).unwrap();
        assert_eq!(
            image.pull_ref(&digest),
            format!(
                "localhost:30500/actions/octo/hello:abc123@sha256:{}",
                "0".repeat(64)
            )
        );
        let image = ImageRef::new(&push, &push, "x");
        assert!(is_tag(image.tag()));
    }

    #[test]
    fn long_names_are_cut_to_the_reference_limit() {
        let push = host("registry.example.com:5000/prefix");
        let long = ["abcdefghij"; 40].join("/");
        let image = ImageRef::with_tag(&push, &push, &long, "t");
        let full = image.push_ref();
        let name_part = full.rsplit_once(':').unwrap().0;
        assert!(name_part.len() <= MAX_NAME_LEN, "{}", name_part.len());
        assert!(image.name().split('/').all(is_path_component));
        let one = "a".repeat(400);
        let image = ImageRef::with_tag(&push, &push, &one, "t");
        assert!(image.push_ref().rsplit_once(':').unwrap().0.len() <= MAX_NAME_LEN);
    }

    #[test]
    fn image_references_from_the_command_line() {
        let (repo, tag) = parse_image("127.0.0.1:5000/hello-action:v1").unwrap();
        assert_eq!(repo.to_string(), "127.0.0.1:5000/hello-action");
        assert_eq!(tag.as_deref(), Some("v1"));
        let (repo, tag) = parse_image("localhost:5000/team/img").unwrap();
        assert_eq!(repo.path(), Some("team/img"));
        assert_eq!(tag, None);
        for bad in [
            "127.0.0.1:5000",
            "hello:v1",
            "127.0.0.1:5000/Hello",
            "127.0.0.1:5000/x:-bad",
            "127.0.0.1:5000/x@sha256:abc",
        ] {
            assert!(parse_image(bad).is_err(), "`{bad}` should be refused");
        }
    }
}
