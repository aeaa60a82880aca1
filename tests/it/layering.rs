//! The shape of `src/` (docs/developer/architecture.md), checked on every `make test`:
//! - data flows one way: a module may use only modules of a lower layer ([`LAYERS`]) and its own
//!   files, never one above it or beside it;
//! - only `k8s` talks to the API (`kube::`), and the build engine (`image`) and the copy
//!   transport (`transfer`) know nothing about Kubernetes objects;
//! - no file has more than [`MAX_LINES`] lines outside its tests;
//! - every file starts with a `//!` comment saying what it owns.
//!
//! Test modules (`#[cfg(test)]`) and comments are not part of the flow and are not checked: a
//! golden test may build its input with a module from another layer.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The layers, lowest first. A module may use the modules of the layers before its own.
const LAYERS: &[&[&str]] = &[
    // Leaves: no crate imports at all.
    &["cancel", "paths", "protocol", "shell"],
    // Copy mode's tar streams and checksums, behind the `Remote` seam `k8s::exec` implements.
    &["transfer"],
    // The build engine: context, references, options, script, the local executor.
    &["image"],
    // Pure object builders: names, template merge, job, step and build pods.
    &["spec"],
    // The environment, parsed once (uses `spec` and `image` types for what it parses).
    &["config"],
    // The only code that calls the API.
    &["k8s"],
    // One module per runner command.
    &["hooks"],
    // The process: the hook entry, the `build` subcommand, logging.
    &["cli", "logging"],
    // Error reports name every error type of the layers below.
    &["error"],
];

/// Lines a file may have outside its tests, comments included.
const MAX_LINES: usize = 800;

/// Modules that must not use Kubernetes: neither the API client nor its object types.
const NO_KUBERNETES: &[&str] = &["cancel", "paths", "protocol", "shell", "transfer", "image"];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// A source file: its top-level module and the path of the module it defines.
struct Source {
    path: PathBuf,
    /// `k8s` for `src/k8s/wait.rs`, `config` for `src/config/mod.rs`, `shell` for `src/shell.rs`.
    top: String,
    /// How many `super::` reach the crate root from this file.
    depth: usize,
    text: String,
}

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&root, &mut files);
    files
        .into_iter()
        .filter_map(|path| {
            let rel = path.strip_prefix(&root).unwrap().to_owned();
            let parts: Vec<_> = rel.iter().map(|p| p.to_str().unwrap().to_owned()).collect();
            if parts.len() == 1 && (parts[0] == "lib.rs" || parts[0] == "main.rs") {
                return None; // the crate root wires everything
            }
            let top = parts[0].trim_end_matches(".rs").to_owned();
            // src/x.rs and src/x/mod.rs sit one level below the root, src/x/y.rs two levels, ...
            let depth = parts.len() - usize::from(parts.last().unwrap() == "mod.rs");
            let text = std::fs::read_to_string(&path).unwrap();
            Some(Source {
                path: rel,
                top,
                depth,
                text,
            })
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
}

/// The code of a file outside its `#[cfg(test)]` items and comments, line by line.
fn code_lines(text: &str) -> Vec<&str> {
    lines_outside_tests(text)
        .into_iter()
        .map(without_comment)
        .filter(|line| !line.trim().is_empty())
        .collect()
}

/// `line` up to a `//` comment that is not inside a string literal.
fn without_comment(line: &str) -> &str {
    let mut in_string = false;
    let mut escaped = false;
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\\' if in_string => escaped = !escaped,
            b'"' if !escaped => in_string = !in_string,
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => escaped = false,
        }
        if b != b'\\' {
            escaped = false;
        }
    }
    line
}

/// The lines of a file outside its `#[cfg(test)]` items, comments included: what a reader of
/// the module has to hold.
fn lines_outside_tests(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut skip_depth: Option<i64> = None;
    let mut depth = 0i64;
    let mut test_attribute = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let opens = line.matches('{').count() as i64;
        let closes = line.matches('}').count() as i64;
        if let Some(start) = skip_depth {
            depth += opens - closes;
            if depth <= start {
                skip_depth = None;
            }
            continue;
        }
        if trimmed.starts_with("#[cfg(test)]") {
            test_attribute = true;
            continue;
        }
        if test_attribute {
            test_attribute = false;
            if opens > closes {
                skip_depth = Some(depth);
                depth += opens - closes;
            }
            continue; // a one-line test item
        }
        depth += opens - closes;
        lines.push(line);
    }
    lines
}

/// The top-level modules a line of code names through `crate::` or `super::`.
fn modules_used(line: &str, source_depth: usize, own: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    // `crate::a::..`, `crate::{a, b::c}`.
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let before = &rest[..at];
        rest = &rest[at + "crate::".len()..];
        if before.ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue; // `some_crate::`
        }
        used.extend(heads(rest));
    }
    // `super::super::a` climbing to the root from a file `source_depth` levels down.
    let mut rest = line;
    while let Some(at) = rest.find("super::") {
        let before = &rest[..at];
        if before.ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
            rest = &rest[at + "super::".len()..];
            continue; // counted with the first `super::` of the chain
        }
        let mut climbs = 0;
        let mut tail = &rest[at..];
        while let Some(next) = tail.strip_prefix("super::") {
            climbs += 1;
            tail = next;
        }
        rest = tail;
        if climbs >= source_depth {
            used.extend(heads(tail));
        } else {
            used.insert(own.to_owned());
        }
    }
    used
}

/// The first path segment of `a::b`, or of each item of `{a, b::c, self}`.
fn heads(path: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    if let Some(group) = path.strip_prefix('{') {
        let mut items = Vec::new();
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    items.push(ident(&group[start..i]));
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(ident(&group[start..i]));
                    start = i + 1;
                }
                _ => {}
            }
        }
        items.into_iter().filter(|s| !s.is_empty()).collect()
    } else {
        vec![ident(path)]
    }
}

/// Every use of a module above or beside `source` in the flow, as `file: uses x`.
fn violations(source: &Source) -> Vec<String> {
    let mut found = Vec::new();
    let Some(own_layer) = layer_of(&source.top) else {
        return vec![format!(
            "{}: the module `{}` has no layer in LAYERS",
            source.path.display(),
            source.top
        )];
    };
    // `use` blocks span lines: join the code so a group is read whole.
    let code = code_lines(&source.text).join("\n");
    for statement in code.split(';') {
        let flat = statement.split_whitespace().collect::<Vec<_>>().join(" ");
        for module in modules_used(&flat, source.depth, &source.top) {
            if module == source.top || module == "self" || module == "super" {
                continue;
            }
            match layer_of(&module) {
                Some(layer) if layer < own_layer => {}
                Some(_) => found.push(format!(
                    "{}: `{}` uses `{module}`, which is not below it in the flow",
                    source.path.display(),
                    source.top
                )),
                // Crate-root items (`crate::run`) are re-exports for main.rs and tests.
                None => found.push(format!(
                    "{}: `{}` uses the crate root's `{module}`; use the module that defines it",
                    source.path.display(),
                    source.top
                )),
            }
        }
        if NO_KUBERNETES.contains(&source.top.as_str())
            && (flat.contains("kube::") || flat.contains("k8s_openapi::"))
        {
            found.push(format!(
                "{}: `{}` must not use Kubernetes types or the API client",
                source.path.display(),
                source.top
            ));
        }
        if source.top != "k8s" && source.top != "error" && uses_api_client(&flat) {
            found.push(format!(
                "{}: only `k8s` calls the API, but `{}` uses the `kube` client",
                source.path.display(),
                source.top
            ));
        }
    }
    found
}

/// `kube::Api`, `kube::Client`... (the `error` layer may only downcast `kube::Error`).
fn uses_api_client(statement: &str) -> bool {
    let mut rest = statement;
    while let Some(at) = rest.find("kube::") {
        let before = &rest[..at];
        rest = &rest[at + "kube::".len()..];
        if !before.ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
            return true;
        }
    }
    false
}

#[test]
fn no_module_uses_one_above_it_in_the_flow() {
    let found: Vec<String> = sources().iter().flat_map(violations).collect();
    assert!(found.is_empty(), "layering broken:\n{}", found.join("\n"));
}

#[test]
fn every_top_level_module_has_a_layer() {
    let tops: BTreeSet<String> = sources().into_iter().map(|s| s.top).collect();
    let missing: Vec<_> = tops.iter().filter(|t| layer_of(t).is_none()).collect();
    assert!(missing.is_empty(), "modules without a layer: {missing:?}");
}

#[test]
fn no_file_is_too_long_to_hold() {
    let long: Vec<String> = sources()
        .iter()
        .filter(|s| !s.path.ends_with("tests.rs")) // a test module of its own
        .filter_map(|s| {
            let n = lines_outside_tests(&s.text).len();
            (n > MAX_LINES).then(|| format!("{}: {n} lines outside its tests", s.path.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines outside their tests (split them, or move test tables to a `tests.rs`):\n{}",
        long.join("\n")
    );
}

#[test]
fn every_file_says_what_it_owns() {
    let silent: Vec<String> = sources()
        .iter()
        .filter(|s| !s.text.starts_with("//!"))
        .map(|s| s.path.display().to_string())
        .collect();
    assert!(
        silent.is_empty(),
        "files without a `//!` comment at the top: {silent:?}"
    );
}

/// The checker itself: a forbidden use is found however it is written, and allowed ones pass.
#[test]
fn the_checker_finds_a_forbidden_use() {
    let file = |path: &str, text: &str| {
        let parts = path.split('/').count();
        Source {
            path: PathBuf::from(path),
            top: path
                .split('/')
                .next()
                .unwrap()
                .trim_end_matches(".rs")
                .to_owned(),
            depth: parts - usize::from(path.ends_with("mod.rs")),
            text: format!("//! A file.\n{text}"),
        }
    };
    let forbidden = [
        ("spec/job_pod.rs", "use crate::k8s::Session;"),
        ("spec/job_pod.rs", "use crate::{paths, hooks::Outcome};"),
        (
            "spec/job_pod.rs",
            "use crate::{\n    paths::normalize,\n    config::Config,\n};",
        ),
        ("image/mod.rs", "pub use super::config::StorageDriver;"),
        ("image/script.rs", "fn f() { super::super::k8s::names(); }"),
        ("transfer/mod.rs", "let x = crate::spec::names::job_pod(r);"),
        ("k8s/exec.rs", "use crate::CANCEL_GRACE;"),
        ("image/local.rs", "use k8s_openapi::api::core::v1::Pod;"),
        ("hooks/mod.rs", "let api: kube::Api<Pod> = todo!();"),
        ("paths.rs", "use crate::shell::quote;"),
    ];
    for (path, text) in forbidden {
        assert!(
            !violations(&file(path, text)).is_empty(),
            "not caught in {path}: {text}"
        );
    }
    let allowed = [
        (
            "hooks/prepare_job.rs",
            "use crate::k8s::Session;\nuse super::step;",
        ),
        ("k8s/build.rs", "use super::wait::{self, Goal};"),
        (
            "spec/build_pod.rs",
            "use super::names::{self, BUILD_CONTAINER};",
        ),
        (
            "config/mod.rs",
            "use crate::{image::StorageDriver, spec::names};",
        ),
        (
            "image/mod.rs",
            "use tokio::io::AsyncWrite; // crate::k8s in a comment",
        ),
        (
            "image/script.rs",
            "#[cfg(test)]\nmod tests {\n    use crate::spec::build_pod;\n}",
        ),
        (
            "error.rs",
            "if let Some(kube::Error::Api(s)) = e.downcast_ref() {}",
        ),
    ];
    for (path, text) in allowed {
        let found = violations(&file(path, text));
        assert!(found.is_empty(), "{path}: {text}\n{found:?}");
    }
}
