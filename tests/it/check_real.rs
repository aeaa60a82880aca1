//! The registry probe of `runner-k8s-hook check` (`image::probe`) run for real: the generated
//! script with this machine's Buildah against the real registries of `build_real.rs`
//! (`docker-registry` on 127.0.0.1, plain HTTP, and TLS with basic auth), so the words the
//! classification reads are Buildah's own: the right credentials and CA are accepted
//! (`manifest unknown` for the absent tag), a wrong password is refused, a missing CA is a TLS
//! problem, plain HTTP is named, a closed port is unreachable. Runs as root, like the real build
//! tests (docs/developer/testing.md).

use std::path::Path;

use runner_k8s_hook::image::probe::{self, ProbeSpec, Report, Stage, Verdict};
use runner_k8s_hook::image::{Storage, StorageDriver};

use crate::support::registry::{Registry, require_tools};

/// Run the probe script for `reference` with this auth file and cert dir; its report.
fn probe(
    dir: &Path,
    reference: &str,
    auth: Option<&Path>,
    certs: Option<&Path>,
    tls_verify: bool,
) -> Report {
    let path = |p: &str| dir.join(p).to_str().unwrap().to_owned();
    let spec = ProbeSpec {
        storage: Storage {
            root: path("storage/root"),
            runroot: path("storage/run"),
            driver: StorageDriver::Vfs,
        },
        auth_source: auth.map(|p| p.to_str().unwrap().to_owned()),
        cert_dir: certs.map(|p| p.to_str().unwrap().to_owned()),
        work_dir: path("work"),
        result_path: path("result"),
        reference: Some(reference.to_owned()),
        tls_verify,
    };
    let status = std::process::Command::new("sh")
        .args(["-c", &probe::script(&spec)])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("sh runs");
    assert!(status.success(), "the probe exits 0 once it has a report");
    let text = std::fs::read_to_string(path("result")).expect("the probe writes its report");
    Report::parse(&text).unwrap_or_else(|| panic!("not a report: {text}"))
}

fn verdict(report: &Report) -> Verdict {
    assert_eq!(report.stage, Stage::Registry, "{report:?}");
    assert!(report.version.starts_with("buildah version"), "{report:?}");
    probe::classify(report.exit, &report.output)
}

#[test]
fn real_buildah_answers_are_classified() {
    require_tools();
    let tls = Registry::tls();
    let plain = Registry::plain();
    let client = tls.tls.as_ref().expect("the TLS registry's client files");
    let dir = tempfile::tempdir().unwrap();
    let absent = |host: &str| format!("{host}/actions/runner-k8s-hook-check:absent-probe");

    let accepted = probe(
        dir.path(),
        &absent(&tls.host),
        Some(&client.auth_file),
        Some(&client.cert_dir),
        true,
    );
    assert_eq!(verdict(&accepted), Verdict::Answered, "{accepted:?}");

    let refused = probe(
        dir.path(),
        &absent(&tls.host),
        Some(&client.bad_auth_file),
        Some(&client.cert_dir),
        true,
    );
    assert_eq!(verdict(&refused), Verdict::Refused, "{refused:?}");

    let untrusted = probe(
        dir.path(),
        &absent(&tls.host),
        Some(&client.auth_file),
        None,
        true,
    );
    assert_eq!(verdict(&untrusted), Verdict::Tls, "{untrusted:?}");

    let http = probe(dir.path(), &absent(&plain.host), None, None, true);
    assert_eq!(verdict(&http), Verdict::PlainHttp, "{http:?}");
    let insecure = probe(dir.path(), &absent(&plain.host), None, None, false);
    assert_eq!(verdict(&insecure), Verdict::Answered, "{insecure:?}");

    let closed = {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        format!("127.0.0.1:{port}")
    };
    let unreachable = probe(dir.path(), &absent(&closed), None, None, true);
    assert_eq!(
        verdict(&unreachable),
        Verdict::Unreachable,
        "{unreachable:?}"
    );
}
