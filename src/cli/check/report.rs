//! What `runner-k8s-hook check` says: one [`Finding`] per check, rendered for people (one line
//! per check, then the fixes) or as JSON (the schema in docs/user/check.md).
//!
//! Owns the output formats and the exit code rule (any `fail` is exit 1); the findings themselves
//! come from [`super::checks`].

use serde::Serialize;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Jobs will work as far as this check can tell.
    Pass,
    /// Jobs will fail (or some of them will): the fix says what to change.
    Fail,
    /// Jobs may work, but something could not be checked or looks risky.
    Warn,
    /// The check does not apply, or could not run because an earlier one failed.
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "FAIL",
            Status::Warn => "warn",
            Status::Skip => "skip",
        }
    }
}

/// One check's result. The JSON form has exactly these four fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The check's stable name: `permissions`, `data-plane`, `work-claim`, `pod-security`,
    /// `job-image`, `builder`, `registry`.
    pub check: &'static str,
    /// The outcome.
    pub status: Status,
    /// What was found, in one sentence.
    pub message: String,
    /// What to change, when something should change (may span lines, e.g. Role rules).
    pub fix: Option<String>,
}

impl Finding {
    /// A finding without a fix.
    pub fn new(check: &'static str, status: Status, message: impl Into<String>) -> Finding {
        Finding {
            check,
            status,
            message: message.into(),
            fix: None,
        }
    }

    /// The same finding with `fix`.
    #[must_use]
    pub fn fix(mut self, fix: impl Into<String>) -> Finding {
        self.fix = Some(fix.into());
        self
    }
}

/// Every finding of one run, and where it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Version of this JSON schema (docs/user/check.md).
    pub schema: u32,
    /// The namespace checked.
    pub namespace: String,
    /// The runner pod the check ran as (`ACTIONS_RUNNER_POD_NAME`), if any.
    #[serde(rename = "runnerPod")]
    pub runner_pod: Option<String>,
    /// No finding failed.
    pub passed: bool,
    /// The findings, in the order of the checks.
    pub findings: Vec<Finding>,
}

/// The JSON schema version written by [`Report::json`].
pub const SCHEMA: u32 = 1;

impl Report {
    /// A report of `findings`.
    pub fn new(namespace: &str, runner_pod: Option<&str>, findings: Vec<Finding>) -> Report {
        Report {
            schema: SCHEMA,
            namespace: namespace.to_owned(),
            runner_pod: runner_pod.map(str::to_owned),
            passed: !findings.iter().any(|f| f.status == Status::Fail),
            findings,
        }
    }

    /// The JSON document (one line).
    pub fn json(&self) -> String {
        let mut text = serde_json::to_string(self).expect("a report serialises");
        text.push('\n');
        text
    }

    /// The text for a person: a title, one line per check, the fixes, a summary.
    pub fn human(&self) -> String {
        let mut out = match &self.runner_pod {
            Some(pod) => format!(
                "runner-k8s-hook check: namespace `{}`, runner pod `{pod}`\n",
                self.namespace
            ),
            None => format!(
                "runner-k8s-hook check: namespace `{}` (not in a runner pod)\n",
                self.namespace
            ),
        };
        for finding in &self.findings {
            out.push_str(&format!(
                "  {}  {:<13} {}\n",
                finding.status.label(),
                finding.check,
                finding.message
            ));
        }
        let fixes: Vec<&Finding> = self.findings.iter().filter(|f| f.fix.is_some()).collect();
        if !fixes.is_empty() {
            out.push_str("\nWhat to change:\n");
            for finding in fixes {
                let fix = finding.fix.as_deref().unwrap_or_default();
                let mut lines = fix.lines();
                out.push_str(&format!(
                    "  {}: {}\n",
                    finding.check,
                    lines.next().unwrap_or_default()
                ));
                for line in lines {
                    out.push_str(&format!("      {line}\n"));
                }
            }
        }
        let count = |status| self.findings.iter().filter(|f| f.status == status).count();
        let (failed, warned) = (count(Status::Fail), count(Status::Warn));
        let plural = |n: usize, word: &str| {
            if n == 1 {
                format!("{n} {word}")
            } else {
                format!("{n} {word}s")
            }
        };
        out.push('\n');
        out.push_str(&match (failed, warned) {
            (0, 0) => "All checks passed: jobs will work.\n".to_owned(),
            (0, w) => format!(
                "No check failed ({}): jobs will work.\n",
                plural(w, "warning")
            ),
            (f, 0) => format!(
                "{} failed: jobs will not work until it is fixed.\n",
                plural(f, "check")
            ),
            (f, w) => format!(
                "{} failed, {}: jobs will not work until it is fixed.\n",
                plural(f, "check"),
                plural(w, "warning")
            ),
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report::new(
            "arc-runners",
            Some("runner-x"),
            vec![
                Finding::new("permissions", Status::Pass, "all granted"),
                Finding::new("work-claim", Status::Warn, "cannot read it")
                    .fix("grant get:\n- apiGroups: [\"\"]"),
                Finding::new("registry", Status::Fail, "refused").fix("update the Secret"),
                Finding::new("job-image", Status::Skip, "no --job-image"),
            ],
        )
    }

    #[test]
    fn json_has_one_object_per_finding_with_four_fields() {
        let value: serde_json::Value = serde_json::from_str(&report().json()).unwrap();
        assert_eq!(value["schema"], 1);
        assert_eq!(value["namespace"], "arc-runners");
        assert_eq!(value["runnerPod"], "runner-x");
        assert_eq!(value["passed"], false);
        let first = &value["findings"][0];
        assert_eq!(
            first,
            &serde_json::json!({"check": "permissions", "status": "pass", "message": "all granted", "fix": null})
        );
        assert_eq!(value["findings"][2]["status"], "fail");
        assert_eq!(value["findings"][3]["status"], "skip");
    }

    #[test]
    fn human_output_is_one_line_per_check_then_the_fixes() {
        assert_eq!(
            report().human(),
            "runner-k8s-hook check: namespace `arc-runners`, runner pod `runner-x`
  pass  permissions   all granted
  warn  work-claim    cannot read it
  FAIL  registry      refused
  skip  job-image     no --job-image

What to change:
  work-claim: grant get:
      - apiGroups: [\"\"]
  registry: update the Secret

1 check failed, 1 warning: jobs will not work until it is fixed.
"
        );
        let passing = Report::new(
            "ns",
            None,
            vec![Finding::new("permissions", Status::Pass, "ok")],
        );
        assert!(passing.passed);
        assert!(
            passing
                .human()
                .ends_with("\nAll checks passed: jobs will work.\n")
        );
    }
}
