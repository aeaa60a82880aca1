//! Names of the objects and containers the hook creates, and the DNS-1123 rules they must obey.
//!
//! Object names follow the TypeScript hook (`packages/k8s/src/hooks/constants.ts`, `MAX = 63`) so
//! both hooks name a runner's objects the same way: `<runner-pod[..54]>-workflow`,
//! `<runner-pod[..49]>-step-<suffix>`, `<runner-pod[..47]>-secret-<suffix>`, and ours,
//! `<runner-pod[..48]>-build-<suffix>`. Unlike that hook, a cut never leaves `-` or `.` before
//! the suffix, and a runner pod name that is not a valid object name (an unusual
//! `ACTIONS_RUNNER_POD_NAME` outside ARC) is made into one instead of being sent to the API
//! server to be refused.
//!
//! Service containers are named after their image (`generateContainerName` in the TypeScript
//! hook's `utils.ts`), made a valid container name, and de-duplicated as in its PR #308. The hook
//! template addresses them by these names (`$redis`), so the rules must not drift.
//!
//! Everything here is pure; only [`random_suffix`] draws randomness.

use std::collections::{BTreeMap, BTreeSet};

use rand::RngExt as _;

/// Longest object name we generate: a DNS-1123 label, so the pod's hostname (its name, cut at 63
/// characters) stays the full name.
pub const MAX_NAME_LEN: usize = 63;

/// Name of the job container in the job pod (the TypeScript hook's `JOB_CONTAINER_NAME`; the hook
/// template addresses it as `$job`).
pub const JOB_CONTAINER: &str = "job";

/// Name of the step container in a container-step pod. It has the value of [`JOB_CONTAINER`] on
/// purpose: the hook template's `$job` entry merges into the container named `job`, in the job
/// pod and in step pods alike ([`PodKind::Step`](super::template::PodKind::Step)), and the
/// TypeScript hook names its step container `JOB_CONTAINER_NAME` too
/// (`packages/k8s/src/hooks/run-container-step.ts` in actions/runner-container-hooks), so
/// templates written for either hook keep applying to the step.
pub const STEP_CONTAINER: &str = "job";

/// Name of the container in a build pod (the hook template addresses it as `$build`).
pub const BUILD_CONTAINER: &str = "build";

/// Init container of a copy-mode step or build pod: waits until the hook has copied the files in
/// (a step's `_temp` and workspace, or the build context), then ends so the pod's own container
/// starts.
pub const STAGE_CONTAINER: &str = "stage";

/// Sidecar of a copy-mode step pod: outlives the step so the hook can copy its results out.
pub const FILES_CONTAINER: &str = "files";

/// Container name used when an image reference yields no usable characters.
pub const FALLBACK_SERVICE_NAME: &str = "service";

/// Name of the job pod: `<runner pod, at most 54 characters>-workflow`.
pub fn job_pod(runner_pod: &str) -> String {
    join_name(runner_pod, "-workflow")
}

/// Name of a pull secret: `<runner pod, at most 47 characters>-secret-<suffix>`.
pub fn secret(runner_pod: &str, suffix: &str) -> String {
    join_name(runner_pod, &format!("-secret-{}", clean_suffix(suffix)))
}

/// Name of a container-step pod: `<runner pod, at most 49 characters>-step-<suffix>`.
pub fn step_pod(runner_pod: &str, suffix: &str) -> String {
    join_name(runner_pod, &format!("-step-{}", clean_suffix(suffix)))
}

/// Name of a build pod: `<runner pod, at most 48 characters>-build-<suffix>`.
pub fn build_pod(runner_pod: &str, suffix: &str) -> String {
    join_name(runner_pod, &format!("-build-{}", clean_suffix(suffix)))
}

/// Name of a short-lived pod of `runner-k8s-hook check`:
/// `<runner pod, at most 48 characters>-check-<suffix>`.
pub fn check_pod(runner_pod: &str, suffix: &str) -> String {
    join_name(runner_pod, &format!("-check-{}", clean_suffix(suffix)))
}

/// Eight random lowercase letters and digits (about 41 bits), for [`secret`], [`step_pod`] and
/// [`build_pod`]. The TypeScript hook uses the first 8 hex digits of a UUID v4 (32 bits).
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..8)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// `<prefix>` cut so that `<prefix><tail>` has at most [`MAX_NAME_LEN`] characters, made a valid
/// DNS-1123 subdomain, and never ending in `-` or `.` where the tail starts.
fn join_name(runner_pod: &str, tail: &str) -> String {
    let budget = MAX_NAME_LEN.saturating_sub(tail.len());
    let prefix = subdomain_prefix(runner_pod, budget);
    if prefix.is_empty() {
        // Only possible for a runner pod name without a single letter or digit.
        return tail.trim_start_matches('-').to_owned();
    }
    format!("{prefix}{tail}")
}

/// The suffix as a DNS-1123 label fragment: lowercase letters, digits and `-`, trimmed.
fn clean_suffix(suffix: &str) -> String {
    let mapped: String = suffix
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if is_label_char(c) { c } else { '-' })
        .collect();
    mapped.trim_matches('-').to_owned()
}

/// The longest valid DNS-1123 subdomain prefix of at most `max` characters derived from `name`:
/// lowercase, characters other than letters, digits, `-` and `.` become `-`, every dot-separated
/// part starts and ends with a letter or digit, and the cut end is trimmed of `-` and `.`.
fn subdomain_prefix(name: &str, max: usize) -> String {
    let mapped: String = name
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if is_label_char(c) || c == '.' { c } else { '-' })
        .collect();
    let parts: Vec<&str> = mapped
        .split('.')
        .map(|part| part.trim_matches('-'))
        .filter(|part| !part.is_empty())
        .collect();
    let joined = parts.join(".");
    let cut: String = joined.chars().take(max).collect();
    cut.trim_end_matches(['-', '.']).to_owned()
}

fn is_label_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

/// The container name the TypeScript hook derives from an image (`generateContainerName`): the
/// last path segment, without `:tag` and `@digest` (`bitnami/redis:7` → `redis`,
/// `localhost:5000/app:1` → `app`, `postgres@sha256:…` → `postgres`), made a valid DNS-1123
/// label: lowercase, other characters → `-`, trimmed, at most 63 characters. Falls back to
/// [`FALLBACK_SERVICE_NAME`] when nothing usable is left.
///
/// The TypeScript hook cut only at `:`, so a digest reference produced the invalid
/// `postgres@sha256`, which the API server refused.
pub fn container_name_from_image(image: &str) -> String {
    let without_digest = image.split('@').next().unwrap_or_default();
    // The last `/` segment holds no registry port, so its first `:` starts the tag.
    let last = without_digest.rsplit('/').next().unwrap_or_default();
    let repository = last.split(':').next().unwrap_or_default();
    let mapped: String = repository
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if is_label_char(c) { c } else { '-' })
        .collect();
    let trimmed = mapped.trim_matches('-');
    let cut: String = trimmed.chars().take(MAX_NAME_LEN).collect();
    let name = cut.trim_end_matches('-');
    if name.is_empty() {
        FALLBACK_SERVICE_NAME.to_owned()
    } else {
        name.to_owned()
    }
}

/// Container names for the services, in request order.
///
/// A name derived by [`container_name_from_image`] that only one service has stays bare. Names
/// several services share become `<name>-0`, `<name>-1`, ... in request order (TypeScript hook
/// PR #308). Beyond that PR, a derived name equal to [`JOB_CONTAINER`] is suffixed too (the
/// job container owns `job`), and a suffix that would equal another container's name (two
/// `redis` services beside a `redis-0` image) skips to the next free index, so the pod never
/// has two containers of one name.
pub fn service_container_names<S: AsRef<str>>(images: &[S]) -> Vec<String> {
    let bases: Vec<String> = images
        .iter()
        .map(|image| container_name_from_image(image.as_ref()))
        .collect();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for base in &bases {
        *counts.entry(base.as_str()).or_default() += 1;
    }
    let stays_bare = |base: &str| counts[base] == 1 && base != JOB_CONTAINER;

    let mut taken: BTreeSet<String> = bases
        .iter()
        .filter(|base| stays_bare(base))
        .cloned()
        .collect();
    taken.insert(JOB_CONTAINER.to_owned());

    let mut next_index: BTreeMap<&str, usize> = BTreeMap::new();
    bases
        .iter()
        .map(|base| {
            if stays_bare(base) {
                return base.clone();
            }
            let index = next_index.entry(base.as_str()).or_default();
            loop {
                let candidate = indexed_name(base, *index);
                *index += 1;
                if taken.insert(candidate.clone()) {
                    return candidate;
                }
            }
        })
        .collect()
}

/// `<base>-<index>`, with `base` cut so the result is still a DNS-1123 label.
fn indexed_name(base: &str, index: usize) -> String {
    let tail = format!("-{index}");
    let cut: String = base
        .chars()
        .take(MAX_NAME_LEN.saturating_sub(tail.len()))
        .collect();
    format!("{}{tail}", cut.trim_end_matches('-'))
}

/// Whether `s` is a DNS-1123 label (RFC 1123, as Kubernetes checks container names and most
/// object names): 1 to 63 lowercase letters, digits and `-`, starting and ending with a letter
/// or digit.
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.chars().all(is_label_char)
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is a DNS-1123 subdomain (Kubernetes `IsDNS1123Subdomain`, what pod and secret
/// names must be): at most 253 characters, dot-separated parts each made of lowercase letters,
/// digits and `-`, starting and ending with a letter or digit.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part.chars().all(is_label_char)
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// Whether `s` is a valid label value (Kubernetes `IsValidLabelValue`): empty, or at most 63
/// letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit.
pub fn is_label_value(s: &str) -> bool {
    if s.is_empty() {
        return true;
    }
    let edge = |c: char| c.is_ascii_alphanumeric();
    s.len() <= MAX_NAME_LEN
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(edge)
        && s.ends_with(edge)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARC_POD: &str = "arc-runner-set-abcde-runner-x7k2p";

    #[test]
    fn short_names_are_kept_whole() {
        assert_eq!(
            job_pod(ARC_POD),
            "arc-runner-set-abcde-runner-x7k2p-workflow"
        );
        assert_eq!(
            secret(ARC_POD, "a1b2c3d4"),
            "arc-runner-set-abcde-runner-x7k2p-secret-a1b2c3d4"
        );
        assert_eq!(
            step_pod(ARC_POD, "a1b2c3d4"),
            "arc-runner-set-abcde-runner-x7k2p-step-a1b2c3d4"
        );
        assert_eq!(
            build_pod(ARC_POD, "a1b2c3d4"),
            "arc-runner-set-abcde-runner-x7k2p-build-a1b2c3d4"
        );
    }

    #[test]
    fn long_names_are_cut_like_the_typescript_hook() {
        let long = "a".repeat(100);
        assert_eq!(job_pod(&long), format!("{}-workflow", "a".repeat(54)));
        assert_eq!(
            secret(&long, "12345678"),
            format!("{}-secret-12345678", "a".repeat(47))
        );
        assert_eq!(
            step_pod(&long, "12345678"),
            format!("{}-step-12345678", "a".repeat(49))
        );
        assert_eq!(
            build_pod(&long, "12345678"),
            format!("{}-build-12345678", "a".repeat(48))
        );
        for name in [
            job_pod(&long),
            secret(&long, "12345678"),
            step_pod(&long, "12345678"),
            build_pod(&long, "12345678"),
        ] {
            assert_eq!(name.len(), MAX_NAME_LEN, "{name}");
            assert!(is_dns1123_label(&name), "{name}");
        }
    }

    #[test]
    fn a_cut_never_leaves_a_dash_or_dot_before_the_suffix() {
        // The last kept character (the 54th) is `-`, or `.`: it is trimmed.
        let dash = format!("{}-{}", "a".repeat(53), "b".repeat(20));
        assert_eq!(job_pod(&dash), format!("{}-workflow", "a".repeat(53)));
        let dot = format!("{}.{}", "a".repeat(53), "b".repeat(20));
        assert_eq!(job_pod(&dot), format!("{}-workflow", "a".repeat(53)));
        // A shorter suffix leaves more room for the prefix (63 - len("-secret-x1") = 53).
        let dashes = format!("{}---{}", "a".repeat(50), "b".repeat(20));
        let name = secret(&dashes, "x1");
        assert_eq!(name, format!("{}-secret-x1", "a".repeat(50)));
    }

    #[test]
    fn odd_runner_pod_names_become_valid_subdomains() {
        let cases = [
            ("My_Runner", "my-runner-workflow"),
            ("runner.example.com", "runner.example.com-workflow"),
            ("-lead-", "lead-workflow"),
            ("a..b", "a.b-workflow"),
            ("a.-b", "a.b-workflow"),
            ("ünïcode", "n-code-workflow"),
            ("___", "workflow"),
            ("", "workflow"),
        ];
        for (runner_pod, expected) in cases {
            let name = job_pod(runner_pod);
            assert_eq!(name, expected, "job_pod({runner_pod:?})");
            assert!(is_dns1123_subdomain(&name), "{name}");
        }
        let name = step_pod("", "AB_cd");
        assert_eq!(name, "step-ab-cd");
        assert!(is_dns1123_subdomain(&name));
    }

    #[test]
    fn random_suffixes_are_short_lowercase_and_differ() {
        let a = random_suffix();
        let b = random_suffix();
        assert_eq!(a.len(), 8);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert_ne!(a, b);
        assert!(is_dns1123_label(&step_pod(ARC_POD, &a)));
    }

    #[test]
    fn container_names_come_from_the_image() {
        let cases = [
            ("redis", "redis"),
            ("redis:7", "redis"),
            ("bitnami/redis:7", "redis"),
            ("docker.io/library/postgres:16-alpine", "postgres"),
            ("localhost:5000/app:1", "app"),
            ("localhost:5000/app", "app"),
            (
                "postgres@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "postgres",
            ),
            ("ghcr.io/o/r/img:1@sha256:abc", "img"),
            ("mcr.microsoft.com/mssql/server:2022-latest", "server"),
            ("My_Image.v2:latest", "my-image-v2"),
            ("__x__", "x"),
            (":tag", FALLBACK_SERVICE_NAME),
            ("", FALLBACK_SERVICE_NAME),
            ("registry/@sha256:abc", FALLBACK_SERVICE_NAME),
        ];
        for (image, expected) in cases {
            let name = container_name_from_image(image);
            assert_eq!(name, expected, "container_name_from_image({image:?})");
            assert!(is_dns1123_label(&name), "{name}");
        }
        let long = container_name_from_image(&format!("{}-{}", "a".repeat(62), "b"));
        assert_eq!(long, "a".repeat(62));
        assert!(is_dns1123_label(&long));
    }

    #[test]
    fn unique_service_names_stay_bare() {
        assert_eq!(
            service_container_names(&["redis:7", "postgres@sha256:abc"]),
            ["redis", "postgres"]
        );
        assert!(service_container_names::<&str>(&[]).is_empty());
    }

    /// TypeScript hook PR #308 / RCH #241: two services from one image.
    #[test]
    fn regression_rch_241_shared_names_get_index_suffixes() {
        assert_eq!(
            service_container_names(&["redis:8", "postgres", "bitnami/redis:7"]),
            ["redis-0", "postgres", "redis-1"]
        );
    }

    #[test]
    fn suffixed_names_never_collide() {
        // A bare `redis-0` image keeps its name; the two `redis` services skip past it.
        let names = service_container_names(&["redis", "redis", "redis-0"]);
        assert_eq!(names, ["redis-1", "redis-2", "redis-0"]);
        // A service image called `job` must not clash with the job container.
        assert_eq!(service_container_names(&["job:1"]), ["job-0"]);
        assert_eq!(
            service_container_names(&["job", "job-0", "job"]),
            ["job-1", "job-0", "job-2"]
        );
        let long = "a".repeat(70);
        let names = service_container_names(&[long.as_str(), long.as_str()]);
        assert_eq!(
            names,
            [
                format!("{}-0", "a".repeat(61)),
                format!("{}-1", "a".repeat(61))
            ]
        );
        let mut all = names.clone();
        all.push(JOB_CONTAINER.to_owned());
        for name in &names {
            assert!(is_dns1123_label(name), "{name}");
        }
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 3);
    }

    #[test]
    fn dns1123_validators() {
        for ok in ["a", "job", "redis-0", "0abc", &"a".repeat(63)] {
            assert!(is_dns1123_label(ok), "{ok}");
            assert!(is_dns1123_subdomain(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "é", &"a".repeat(64)] {
            assert!(!is_dns1123_label(bad), "{bad}");
        }
        assert!(is_dns1123_subdomain("a.b-c.d"));
        assert!(is_dns1123_subdomain(&"a".repeat(253)));
        for bad in [
            "",
            "a..b",
            ".a",
            "a.",
            "a.-b",
            "a-.b",
            "A.b",
            &"a".repeat(254),
        ] {
            assert!(!is_dns1123_subdomain(bad), "{bad}");
        }
    }

    #[test]
    fn label_values() {
        for ok in ["", "a", "My_Runner.1", ARC_POD, &"a".repeat(63)] {
            assert!(is_label_value(ok), "{ok}");
        }
        for bad in ["-a", "a_", "a b", "ü", &"a".repeat(64)] {
            assert!(!is_label_value(bad), "{bad}");
        }
    }
}
