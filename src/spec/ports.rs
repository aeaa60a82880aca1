//! Ports: the workflow's Docker-style `portMappings`, read and mapped to container ports of a
//! pod whose containers share one network, and the `ports` map of the `prepare_job` response.
//!
//! Owns the `portMappings` syntax and what a step is told to connect to. It must not build
//! containers or pods (the caller puts the ports in), call the API, read files or draw random
//! numbers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ContainerPort};
use tracing::{debug, warn};

use super::SpecError;

/// A Docker-style port mapping from `portMappings`: `[hostIP:][hostPort:]containerPort[/proto]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    /// The host IP, if given (not used: the pod has no host ports).
    pub host_ip: Option<String>,
    /// The host port, if given (not used: the pod has no host ports).
    pub host_port: Option<u16>,
    /// The port the container listens on.
    pub container_port: u16,
    /// `TCP` (default), `UDP` or `SCTP`.
    pub protocol: PortProtocol,
}

/// Protocol of a [`PortMapping`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PortProtocol {
    /// `/tcp` or no suffix.
    Tcp,
    /// `/udp`.
    Udp,
    /// `/sctp`.
    Sctp,
}

impl PortProtocol {
    /// The Kubernetes spelling (`TCP`, `UDP`, `SCTP`).
    pub fn as_kubernetes(self) -> &'static str {
        match self {
            PortProtocol::Tcp => "TCP",
            PortProtocol::Udp => "UDP",
            PortProtocol::Sctp => "SCTP",
        }
    }
}

/// Why a port mapping cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// The string is empty.
    #[error("the mapping is empty")]
    Empty,
    /// The form is not `[hostIP:][hostPort:]containerPort[/protocol]`.
    #[error(
        "expected `[hostIP:][hostPort:]containerPort[/protocol]`, e.g. `8080`, `80:8080` or `53:53/udp`"
    )]
    Malformed,
    /// A port range such as `8000-8010`.
    #[error("port ranges (`{0}`) are not supported: list each port separately")]
    Range(String),
    /// Not a number from 1 to 65535.
    #[error("`{0}` is not a port number from 1 to 65535")]
    InvalidNumber(String),
    /// A protocol other than tcp, udp or sctp.
    #[error("unknown protocol `{0}`: expected `tcp`, `udp` or `sctp`")]
    Protocol(String),
}

/// Parse one `portMappings` entry: `[hostIP:][hostPort:]containerPort[/tcp|/udp|/sctp]`
/// (Docker's `-p` syntax; an IPv6 host IP goes in brackets). Ports are 1 to 65535; ranges are
/// refused.
///
/// # Errors
/// [`PortError`] saying what is wrong.
pub fn parse_port_mapping(text: &str) -> Result<PortMapping, PortError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(PortError::Empty);
    }
    let (rest, protocol) = match text.split_once('/') {
        None => (text, PortProtocol::Tcp),
        Some((rest, proto)) => {
            let protocol = match proto.to_ascii_lowercase().as_str() {
                "tcp" => PortProtocol::Tcp,
                "udp" => PortProtocol::Udp,
                "sctp" => PortProtocol::Sctp,
                _ => return Err(PortError::Protocol(proto.to_owned())),
            };
            (rest, protocol)
        }
    };
    let (bracketed_ip, rest) = match rest.strip_prefix('[') {
        Some(inner) => {
            let (ip, after) = inner.split_once(']').ok_or(PortError::Malformed)?;
            let after = after.strip_prefix(':').ok_or(PortError::Malformed)?;
            (Some(ip.to_owned()), after)
        }
        None => (None, rest),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (host_ip, host_port, container_port) = match (bracketed_ip, parts.as_slice()) {
        (None, [container]) => (None, "", *container),
        (None, [host, container]) => (None, *host, *container),
        (None, [ip, host, container]) => (Some((*ip).to_owned()), *host, *container),
        (Some(ip), [host, container]) => (Some(ip), *host, *container),
        _ => return Err(PortError::Malformed),
    };
    let host_ip = host_ip.filter(|ip| !ip.is_empty());
    let host_port = match host_port {
        "" => None,
        port => Some(parse_port(port)?),
    };
    Ok(PortMapping {
        host_ip,
        host_port,
        container_port: parse_port(container_port)?,
        protocol,
    })
}

fn parse_port(text: &str) -> Result<u16, PortError> {
    if text.contains('-') {
        return Err(PortError::Range(text.to_owned()));
    }
    match text.parse::<u16>() {
        Ok(port) if port > 0 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(port),
        _ => Err(PortError::InvalidNumber(text.to_owned())),
    }
}

/// The `ports` map of a container in the `prepare_job` response: `{containerPort:
/// containerPort}`.
///
/// The runner exposes it as `job.services.<id>.ports[<containerPort>]`, the port a step uses to
/// reach the service. Docker publishes services on host ports; here every container of the pod
/// shares one network namespace, so from the job container the service listens on
/// `localhost:<containerPort>`, and that is the value to hand out. (The TypeScript hook returns
/// the requested host port, which nothing listens on in a pod.)
pub fn response_ports(mappings: &[PortMapping]) -> BTreeMap<String, String> {
    mappings
        .iter()
        .map(|m| {
            let port = m.container_port.to_string();
            (port.clone(), port)
        })
        .collect()
}

/// Container ports from `portMappings`, without host ports: all containers of the pod share its
/// network, so a step reaches a service at `localhost:<containerPort>`, and a `hostPort` would
/// only make two jobs on one node clash (ARC #2890).
pub(super) fn container_ports(
    container: &str,
    mappings: &[String],
) -> Result<Vec<ContainerPort>, SpecError> {
    let mut ports: Vec<ContainerPort> = Vec::new();
    for entry in mappings {
        let mapping = parse_port_mapping(entry).map_err(|source| SpecError::InvalidPort {
            container: container.to_owned(),
            entry: entry.clone(),
            source,
        })?;
        if mapping
            .host_port
            .is_some_and(|h| h != mapping.container_port)
        {
            debug!(
                container,
                entry,
                "the host port is not used: the service is reachable from the job container at localhost:{}",
                mapping.container_port
            );
        }
        let protocol = mapping.protocol.as_kubernetes();
        let port = i32::from(mapping.container_port);
        // `80:8080` and `81:8080` publish one container port twice; the pod needs it once.
        if !ports
            .iter()
            .any(|p| p.container_port == port && p.protocol.as_deref() == Some(protocol))
        {
            ports.push(ContainerPort {
                container_port: port,
                protocol: Some(protocol.to_owned()),
                ..Default::default()
            });
        }
    }
    Ok(ports)
}

/// Warn when two containers of the pod declare one port: they share the network namespace, so
/// only one of them can listen on it (with Docker each had its own).
pub(super) fn warn_shared_ports(containers: &[Container]) {
    let mut seen: BTreeMap<(i32, String), &str> = BTreeMap::new();
    for container in containers {
        for port in container.ports.iter().flatten() {
            let key = (
                port.container_port,
                port.protocol.clone().unwrap_or_default(),
            );
            match seen.get(&key) {
                Some(first) if *first != container.name => warn!(
                    "containers `{first}` and `{}` both declare port {}: they share the pod's network, so only one of them can listen on it",
                    container.name, port.container_port
                ),
                _ => {
                    seen.insert(key, &container.name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::WorkVolume;
    use crate::spec::tests::{build, container, copy_plan, definition, fixture, job_only};

    #[test]
    fn port_mappings_parse_like_docker() {
        let ok =
            |text: &str, host_ip: Option<&str>, host: Option<u16>, container: u16, protocol| {
                assert_eq!(
                    parse_port_mapping(text),
                    Ok(PortMapping {
                        host_ip: host_ip.map(str::to_owned),
                        host_port: host,
                        container_port: container,
                        protocol,
                    }),
                    "{text}"
                );
            };
        use PortProtocol::*;
        ok("8080", None, None, 8080, Tcp);
        ok("80:8080", None, Some(80), 8080, Tcp);
        ok("53:53/udp", None, Some(53), 53, Udp);
        ok("53/UDP", None, None, 53, Udp);
        ok("9/sctp", None, None, 9, Sctp);
        ok("127.0.0.1:80:8080", Some("127.0.0.1"), Some(80), 8080, Tcp);
        ok("127.0.0.1::8080/tcp", Some("127.0.0.1"), None, 8080, Tcp);
        ok("[::1]:80:8080", Some("::1"), Some(80), 8080, Tcp);
        ok("[::1]::8080", Some("::1"), None, 8080, Tcp);
        ok(" 65535 ", None, None, 65535, Tcp);

        let err = |text: &str, expected: PortError| {
            assert_eq!(parse_port_mapping(text), Err(expected), "{text}");
        };
        err("", PortError::Empty);
        err("0", PortError::InvalidNumber("0".into()));
        err("65536", PortError::InvalidNumber("65536".into()));
        err("http", PortError::InvalidNumber("http".into()));
        err("+80", PortError::InvalidNumber("+80".into()));
        err("80:", PortError::InvalidNumber(String::new()));
        err("8000-8010", PortError::Range("8000-8010".into()));
        err("8000-8010:8000-8010", PortError::Range("8000-8010".into()));
        err("80/http", PortError::Protocol("http".into()));
        err("1:2:3:4", PortError::Malformed);
        err("[::1]:8080", PortError::Malformed);
        err("[::1", PortError::Malformed);
        err("80/tcp/udp", PortError::Protocol("tcp/udp".into()));
    }

    #[test]
    fn response_ports_map_container_port_to_itself() {
        let mappings: Vec<PortMapping> = ["80:8080", "6379", "53:53/udp"]
            .iter()
            .map(|m| parse_port_mapping(m).unwrap())
            .collect();
        assert_eq!(
            response_ports(&mappings),
            BTreeMap::from([
                ("53".into(), "53".into()),
                ("6379".into(), "6379".into()),
                ("8080".into(), "8080".into()),
            ])
        );
    }

    #[test]
    fn ports_have_no_host_port_and_are_deduplicated() {
        let mut def = definition("node:22");
        def.port_mappings = vec!["80:8080".into(), "81:8080".into(), "53:53/udp".into()];
        let plan = copy_plan(&job_only(def));
        let ports = container(&plan.pod, "job").ports.clone().unwrap();
        assert_eq!(ports.len(), 2);
        assert!(
            ports
                .iter()
                .all(|p| p.host_port.is_none() && p.host_ip.is_none())
        );
        assert_eq!(ports[1].protocol.as_deref(), Some("UDP"));
    }

    #[test]
    fn invalid_port_names_the_entry_and_the_container() {
        let mut args = fixture("prepare_job");
        args.services[0].port_mappings = vec!["6379-6380".into()];
        let err = build(&args, &WorkVolume::EmptyDir, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid port mapping `6379-6380` for container `redis`"
        );
        assert_eq!(
            std::error::Error::source(&err).unwrap().to_string(),
            "port ranges (`6379-6380`) are not supported: list each port separately"
        );
    }
}
