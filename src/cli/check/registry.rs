//! The `registry` check of `runner-k8s-hook check` (docs/user/check.md): the registry Secret and
//! CA are read first (a missing one is a finding at once, and would keep the builder pod from
//! starting), then the builder pod asks the push host for an absent tag
//! ([`crate::image::probe`]) and [`registry_verdict`] says what its answer means.
//!
//! Owns what each answer means and what to change; never reads or prints a credential (only
//! the registry hosts a Secret has entries for).

use super::report::{Finding, Status};
use crate::config;
use crate::image::probe::{self, Report as ProbeReport, Verdict};
use crate::image::registry::auth_key_matches;
use crate::k8s::Session;
use crate::k8s::check::Lookup;
use crate::spec::build_pod;
use crate::spec::names;

/// The repository the registry probe asks for, under the push host's path.
const PROBE_REPOSITORY: &str = "runner-k8s-hook-check";

/// What the registry probe is to do, decided before the builder pod exists.
pub(super) enum RegistryPlan {
    /// Ask the registry for this absent tag.
    Probe {
        /// The push host, as configured.
        host: String,
        /// The reference asked for.
        reference: String,
    },
    /// The registry check is already decided (no registry, or the Secret or CA is unusable).
    Decided(Finding),
}

/// The registry check's plan: probe the push host, unless there is none or the Secret or CA
/// it needs is unusable (then the finding is already known). Also whether the Secret and the
/// CA may be mounted (a missing one would keep the builder pod from starting).
pub(super) async fn registry_plan(session: &Session) -> (RegistryPlan, bool, bool) {
    const CHECK: &str = "registry";
    let build = &session.config.build;
    let namespace = &session.namespace;
    let Ok(host) = build.push_host() else {
        let finding = Finding::new(
            CHECK,
            Status::Skip,
            format!(
                "no registry configured, so Dockerfile actions cannot be built (set `{}` to use them)",
                config::REGISTRY_HOST
            ),
        );
        return (RegistryPlan::Decided(finding), true, true);
    };
    let host_name = host.host().to_owned();
    let mut decided = None;
    let mut secret_usable = true;
    if let Some(secret) = &build.registry_secret_name {
        let create = format!(
            "kubectl create secret docker-registry {secret} -n {namespace} --docker-server={host_name} --docker-username=<user> --docker-password=<token>"
        );
        match session.registry_secret(secret).await {
            Lookup::Found(facts) if facts.type_ != "kubernetes.io/dockerconfigjson" => {
                decided = Some(
                    Finding::new(
                        CHECK,
                        Status::Fail,
                        format!(
                            "Secret `{secret}` has type `{}`, not `kubernetes.io/dockerconfigjson`",
                            facts.type_
                        ),
                    )
                    .fix(format!("recreate it as a registry Secret: {create}")),
                );
                secret_usable = false;
            }
            Lookup::Found(facts)
                if !facts.hosts.iter().any(|h| auth_key_matches(h, &host_name)) =>
            {
                let has = if facts.hosts.is_empty() {
                    "none".to_owned()
                } else {
                    facts
                        .hosts
                        .iter()
                        .map(|h| format!("`{h}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                decided = Some(
                    Finding::new(CHECK, Status::Fail, format!("Secret `{secret}` has no credentials for the push host `{host_name}` (it has: {has})"))
                        .fix(format!("the key under `auths` must be the push host as pods reach it (`{}`); recreate the Secret: {create}", config::REGISTRY_HOST_PUSH)),
                );
            }
            Lookup::Found(_) | Lookup::Forbidden(_) | Lookup::Failed(_) => {}
            Lookup::NotFound => {
                decided = Some(
                    Finding::new(
                        CHECK,
                        Status::Fail,
                        format!(
                            "Secret `{secret}` (`{}`) does not exist in namespace `{namespace}`",
                            config::REGISTRY_SECRET_NAME
                        ),
                    )
                    .fix(format!("create it: {create}")),
                );
                secret_usable = false;
            }
        }
    }
    let mut ca_usable = true;
    if let Some(ca) = &build.registry_ca {
        let (kind, name) = match ca {
            build_pod::RegistryCa::Secret(name) => ("secret", name),
            build_pod::RegistryCa::ConfigMap(name) => ("configmap", name),
        };
        let fix = format!(
            "create it with the registry's CA certificate under the key `ca.crt`: kubectl create {kind} {} {name} -n {namespace} --from-file=ca.crt=<file>",
            if kind == "secret" { "generic" } else { "" }
        )
        .replace("  ", " ");
        let problem = match session.registry_ca(ca).await {
            Lookup::NotFound => Some(format!(
                "the CA {kind} `{name}` (`{}`) does not exist in namespace `{namespace}`",
                config::REGISTRY_CA
            )),
            Lookup::Found(false) => Some(format!("the CA {kind} `{name}` has no key `ca.crt`")),
            _ => None,
        };
        if let Some(problem) = problem {
            ca_usable = false;
            decided.get_or_insert(Finding::new(CHECK, Status::Fail, problem).fix(fix));
        }
    }
    let plan = match decided {
        Some(finding) => RegistryPlan::Decided(finding),
        None => RegistryPlan::Probe {
            host: host.to_string(),
            reference: format!(
                "{host}/{PROBE_REPOSITORY}:absent-{}",
                names::random_suffix()
            ),
        },
    };
    (plan, secret_usable, ca_usable)
}

/// `registry`: what the push host answered to the probe.
pub(super) fn registry_verdict(session: &Session, host: &str, report: &ProbeReport) -> Finding {
    const CHECK: &str = "registry";
    let build = &session.config.build;
    let summary = report.summary();
    let credentials = match &build.registry_secret_name {
        Some(secret) => format!("the credentials of Secret `{secret}`"),
        None => "no credentials".to_owned(),
    };
    match probe::classify(report.exit, &report.output) {
        Verdict::Answered => Finding::new(
            CHECK,
            Status::Pass,
            format!("`{host}` is reachable from a pod and accepts {credentials}"),
        ),
        Verdict::Refused => {
            let fix = match &build.registry_secret_name {
                Some(secret) => format!(
                    "update Secret `{secret}` with a user or token that may push to `{host}` (`kubectl create secret docker-registry {secret} --docker-server=... --dry-run=client -o yaml | kubectl apply -f -`)"
                ),
                None => format!(
                    "the registry needs credentials: set `{}` to a `kubernetes.io/dockerconfigjson` Secret with them",
                    config::REGISTRY_SECRET_NAME
                ),
            };
            Finding::new(
                CHECK,
                Status::Fail,
                format!("`{host}` refused {credentials}: {summary}"),
            )
            .fix(fix)
        }
        Verdict::Unreachable => Finding::new(
            CHECK,
            Status::Fail,
            format!("`{host}` cannot be reached from a pod: {summary}"),
        )
        .fix(format!(
            "pods must resolve and reach the push host: check the name (inside the cluster a Service is `<name>.<namespace>.svc:<port>`), the port, and NetworkPolicies; `{}` can name the registry as pods see it",
            config::REGISTRY_HOST_PUSH
        )),
        Verdict::Tls => Finding::new(
            CHECK,
            Status::Fail,
            format!("`{host}` has a certificate the builder does not trust: {summary}"),
        )
        .fix(match &build.registry_ca {
            Some(_) => format!(
                "the CA in `{}` does not sign the registry's certificate: put the right CA certificate under `ca.crt`",
                config::REGISTRY_CA
            ),
            None => format!(
                "set `{}` to `secret/<name>` or `configmap/<name>` holding the registry's CA certificate as `ca.crt`",
                config::REGISTRY_CA
            ),
        }),
        Verdict::PlainHttp => Finding::new(
            CHECK,
            Status::Fail,
            format!("`{host}` speaks plain HTTP: {summary}"),
        )
        .fix(format!(
            "add `--tls-verify=false` to `{}` and `{}`, or serve the registry over HTTPS",
            config::PUSH_OPTIONS,
            config::BUILD_OPTIONS
        )),
        Verdict::Unknown => Finding::new(
            CHECK,
            Status::Warn,
            format!("`{host}` gave an answer the check does not know: {summary}"),
        ),
    }
}
