//! Every fixture request (`tests/fixtures/requests/`, written from the runner's real payloads)
//! parses, and survives a round trip through the typed model without losing a field.

use std::path::PathBuf;

use runner_k8s_hook::protocol::{Args, Command, parse_request};
use serde_json::Value;

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/requests")
}

/// All fixture files, by name without `.json`.
pub fn fixtures() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures dir exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).expect("readable fixture"))
        })
        .collect();
    out.sort();
    out
}

/// What the typed model is expected to give back: the input, with registry passwords masked
/// and a legacy string `prependPath` in its array form.
fn normalise(mut raw: Value) -> Value {
    let mut stack = vec![&mut raw];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(p)) = map.get_mut("password") {
                    *p = "***".into();
                }
                if let Some(Value::String(p)) = map.get("prependPath").cloned() {
                    map.insert("prependPath".into(), Value::Array(vec![Value::String(p)]));
                }
                stack.extend(map.values_mut());
            }
            Value::Array(items) => stack.extend(items.iter_mut()),
            _ => {}
        }
    }
    raw
}

#[test]
fn every_command_has_a_fixture() {
    let names: Vec<String> = fixtures().into_iter().map(|(n, _)| n).collect();
    for command in Command::ALL {
        assert!(
            names.iter().any(|n| n == command.as_str()),
            "no fixture named {command}.json in {names:?}"
        );
    }
}

#[test]
fn fixtures_round_trip_through_the_typed_model() {
    for (name, text) in fixtures() {
        assert_eq!(
            text.trim_end().lines().count(),
            1,
            "{name}: the runner sends one line"
        );
        let request = parse_request(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            name.starts_with(request.command.as_str()),
            "{name}: parsed as {}",
            request.command
        );
        let raw: Value = serde_json::from_str(&text).unwrap();
        let typed = request.to_json();
        assert_eq!(
            typed["args"],
            normalise(raw["args"].clone()),
            "{name}: args"
        );
        assert_eq!(
            typed["responseFile"], raw["responseFile"],
            "{name}: responseFile"
        );
        // State: every field we were given comes back unchanged.
        if let Value::Object(given) = &raw["state"] {
            for (key, value) in given {
                assert_eq!(&typed["state"][key], value, "{name}: state.{key}");
            }
        } else {
            assert!(typed["state"].is_null(), "{name}: state");
        }
    }
}

#[test]
fn real_payload_details_are_understood() {
    let text = std::fs::read_to_string(fixtures_dir().join("prepare_job.json")).unwrap();
    let Args::PrepareJob(args) = parse_request(&text).unwrap().args else {
        panic!("prepare_job args");
    };
    let job = args.container.expect("job container");
    assert_eq!(job.image.as_deref(), Some("node:22"));
    assert_eq!(job.system_mount_volumes[2].target_volume_path, "/__e");
    assert!(job.system_mount_volumes[2].read_only);
    assert_eq!(
        job.user_mount_volumes[0].user_provided_value.as_deref(),
        Some("/home/runner/_work/repo/repo/data:/data")
    );
    assert_eq!(args.services.len(), 2);
    assert_eq!(args.services[0].port_mappings, ["6379:6379"]);

    let text = std::fs::read_to_string(fixtures_dir().join("run_container_step.json")).unwrap();
    let Args::RunContainerStep(step) = parse_request(&text).unwrap().args else {
        panic!("run_container_step args");
    };
    // The runner's split of `"hello" "big world"` (runner #2633).
    assert_eq!(step.entry_point_args, ["\"hello\"", "\"big", "world\""]);

    let text =
        std::fs::read_to_string(fixtures_dir().join("run_container_step_dockerfile.json")).unwrap();
    let Args::RunContainerStep(step) = parse_request(&text).unwrap().args else {
        panic!("run_container_step args");
    };
    assert!(step.image.is_none());
    assert_eq!(
        step.dockerfile.as_deref(),
        Some("/home/runner/_work/_actions/octo-org/hello-action/v1/Dockerfile")
    );
}
