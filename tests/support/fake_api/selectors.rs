//! Label and field selectors for list, watch and deletecollection: parsing the query string
//! syntax and matching objects. Copies `staging/src/k8s.io/apimachinery/pkg/labels/selector.go`
//! (equality, set-based and existence requirements) and `.../pkg/fields/selector.go` plus the
//! per-resource field labels the API server accepts (`pkg/registry/core/*/strategy.go`
//! `*ToSelectableFields`, `pkg/apis/core/v1/conversion.go`).

use std::collections::BTreeMap;

use serde_json::Value;

/// One requirement of a label selector.
#[derive(Debug, Clone)]
enum LabelRequirement {
    Exists(String),
    NotExists(String),
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed `labelSelector`: all requirements must hold (they are ANDed).
#[derive(Debug, Clone, Default)]
pub struct LabelSelector(Vec<LabelRequirement>);

impl LabelSelector {
    /// Parse `a=b,c!=d,e in (x,y),f notin (z),g,!h`. Errors carry the API server's prefix
    /// (`unable to parse requirement`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for term in split_top_level(text) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            requirements.push(parse_label_term(term)?);
        }
        Ok(Self(requirements))
    }

    /// Whether an object with these labels is selected (`labels.Requirement.Matches`: `!=` and
    /// `notin` also match objects without the key).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|req| match req {
            LabelRequirement::Exists(k) => labels.contains_key(k),
            LabelRequirement::NotExists(k) => !labels.contains_key(k),
            LabelRequirement::Equals(k, v) => labels.get(k) == Some(v),
            LabelRequirement::NotEquals(k, v) => labels.get(k) != Some(v),
            LabelRequirement::In(k, set) => labels.get(k).is_some_and(|v| set.contains(v)),
            LabelRequirement::NotIn(k, set) => labels.get(k).is_none_or(|v| !set.contains(v)),
        })
    }

    /// Whether the object's `metadata.labels` are selected.
    pub fn matches_object(&self, object: &Value) -> bool {
        self.matches(&object_labels(object))
    }
}

/// Split on commas that are not inside `( )` (set-based values contain commas).
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_label_term(term: &str) -> Result<LabelRequirement, String> {
    let bad = || format!("unable to parse requirement: found '{term}', expected: identifier");
    if let Some(key) = term.strip_prefix('!') {
        let key = key.trim();
        return if valid_key(key) {
            Ok(LabelRequirement::NotExists(key.to_string()))
        } else {
            Err(bad())
        };
    }
    if let Some(open) = term.find('(') {
        let close = term.rfind(')').ok_or_else(bad)?;
        let head: Vec<&str> = term[..open].split_whitespace().collect();
        let values: Vec<String> = term[open + 1..close]
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        return match head.as_slice() {
            [key, "in"] if valid_key(key) => Ok(LabelRequirement::In(key.to_string(), values)),
            [key, "notin"] if valid_key(key) => {
                Ok(LabelRequirement::NotIn(key.to_string(), values))
            }
            _ => Err(bad()),
        };
    }
    for (op, negate) in [("!=", true), ("==", false), ("=", false)] {
        if let Some((key, value)) = term.split_once(op) {
            let (key, value) = (key.trim(), value.trim());
            if !valid_key(key) {
                return Err(bad());
            }
            return Ok(if negate {
                LabelRequirement::NotEquals(key.to_string(), value.to_string())
            } else {
                LabelRequirement::Equals(key.to_string(), value.to_string())
            });
        }
    }
    if valid_key(term) {
        Ok(LabelRequirement::Exists(term.to_string()))
    } else {
        Err(bad())
    }
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

/// `metadata.labels` of a stored object.
pub fn object_labels(object: &Value) -> BTreeMap<String, String> {
    object["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// A parsed `fieldSelector`: `field=value`, `field==value`, `field!=value`, ANDed.
#[derive(Debug, Clone, Default)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parse and check every field is selectable for the resource (`plural`), with the API
    /// server's errors: `field label not supported: x` for resources with their own conversion
    /// (pods, events, secrets), the generic text otherwise.
    pub fn parse(text: &str, plural: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, negate, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, false, v)
            } else {
                return Err(format!(
                    "invalid selector: '{term}'; can't understand '{term}'"
                ));
            };
            let field = field.trim();
            if !selectable(plural, field) {
                return Err(match plural {
                    "pods" | "events" | "secrets" => format!("field label not supported: {field}"),
                    _ => format!(
                        "\"{field}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
                    ),
                });
            }
            terms.push((field.to_string(), negate, value.trim().to_string()));
        }
        Ok(Self(terms))
    }

    pub fn matches_object(&self, object: &Value) -> bool {
        self.0.iter().all(|(field, negate, value)| {
            let actual = field_value(object, field);
            (actual == *value) != *negate
        })
    }
}

/// Fields the API server lets each resource select on.
fn selectable(plural: &str, field: &str) -> bool {
    if matches!(field, "metadata.name" | "metadata.namespace") {
        return true;
    }
    match plural {
        // pkg/registry/core/pod/strategy.go ToSelectableFields
        "pods" => matches!(
            field,
            "spec.nodeName"
                | "spec.restartPolicy"
                | "spec.schedulerName"
                | "spec.serviceAccountName"
                | "spec.hostNetwork"
                | "status.phase"
                | "status.podIP"
                | "status.podIPs"
                | "status.nominatedNodeName"
        ),
        // pkg/registry/core/event/strategy.go ToSelectableFields
        "events" => matches!(
            field,
            "involvedObject.kind"
                | "involvedObject.namespace"
                | "involvedObject.name"
                | "involvedObject.uid"
                | "involvedObject.apiVersion"
                | "involvedObject.resourceVersion"
                | "involvedObject.fieldPath"
                | "reason"
                | "reportingComponent"
                | "source"
                | "type"
        ),
        // pkg/registry/core/secret/strategy.go SelectableFields
        "secrets" => field == "type",
        _ => false,
    }
}

/// The string value of a selectable field (missing fields select as "").
fn field_value(object: &Value, field: &str) -> String {
    let path = match field {
        "source" => "source.component",
        "status.podIPs" => "status.podIP",
        other => other,
    };
    let mut current = object;
    for part in path.split('.') {
        current = &current[part];
    }
    match current {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selector_semantics() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        let ok = |s: &str| LabelSelector::parse(s).expect("parses").matches(&l);
        assert!(ok("app=web"));
        assert!(ok("app==web,tier"));
        assert!(ok("app!=db"));
        assert!(ok("missing!=x"));
        assert!(ok("app in (web, db)"));
        assert!(ok("missing notin (x)"));
        assert!(ok("!missing"));
        assert!(!ok("app notin (web)"));
        assert!(!ok("!app"));
        assert!(!ok("app=web,tier=back"));
    }
}
