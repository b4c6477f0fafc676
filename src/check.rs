//! `routeguard check` and `routeguard render`: the policy over manifest files.
//!
//! The files are the desired state ([`files::desired`]: the CRD schema
//! defaults the API server would apply filled in, Deployments mutated, the
//! generated objects added); then every object is checked as if it were created.

pub(crate) mod sarif;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::files::{self, FileError};
use crate::manifest::{self, Loaded};
use crate::model::{Kind, Object, ObjectKey};
use crate::policy::{Change, Engine, Finding, Mode, Severity, finding};

/// A finding with the file and line it points at (none for generated objects).
#[derive(Debug, Clone, Serialize)]
pub struct Located {
    #[serde(flatten)]
    pub finding: Finding,
    pub file: Option<String>,
    pub line: Option<usize>,
}

/// What checking a set of manifests produced.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Findings, ordered by file and line; generated objects' findings last.
    pub findings: Vec<Located>,
    /// The Deployments after mutation, in input order.
    pub mutated: Vec<Object>,
    /// The objects routeguard would generate.
    pub generated: Vec<Object>,
    /// How many objects were read.
    pub objects: usize,
    /// What `check` has to say that is no finding: a namespace's enforcement
    /// label of an unknown value.
    pub notices: Vec<String>,
}

impl Report {
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.finding.is_error())
    }

    fn count(&self, severity: Severity) -> usize {
        self.findings.iter().filter(|f| f.finding.severity == severity).count()
    }

    /// One line per finding, then a summary line.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let at = match (&f.file, f.line) {
                (Some(file), Some(line)) => format!(" ({file}:{line})"),
                _ => " (generated)".to_string(),
            };
            let g = &f.finding;
            let _ = writeln!(
                out,
                "{} {} {} {}/{}{at} {}",
                g.severity,
                g.code,
                g.kind,
                g.namespace,
                g.name,
                path_message(g)
            );
        }
        for notice in &self.notices {
            let _ = writeln!(out, "warning {notice}");
        }
        let _ = writeln!(
            out,
            "{} objects checked: {} errors, {} warnings, {} infos",
            self.objects,
            self.count(Severity::Error),
            self.count(Severity::Warning),
            self.count(Severity::Info)
        );
        out
    }

    /// A JSON array of findings with keys code, severity, kind, namespace, name, path, message, file, line.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.findings).unwrap_or_else(|_| "[]".to_string())
    }

    /// A SARIF 2.1.0 log of the findings (see [`sarif`]).
    pub fn to_sarif(&self) -> String {
        serde_json::to_string_pretty(&sarif::to_sarif(self)).unwrap_or_else(|_| "{}".to_string())
    }

    /// The mutated Deployments and the generated objects as a multi-document YAML stream.
    pub fn to_yaml(&self) -> String {
        manifest::yaml::to_yaml_stream(self.mutated.iter().chain(&self.generated).map(|o| &o.raw))
    }
}

fn path_message(f: &Finding) -> String {
    if f.path.is_root() { f.message.clone() } else { format!("{}: {}", f.path, f.message) }
}

/// Why `check` could not run (exit code 2).
pub type CheckError = FileError;

/// Mutates, generates and checks loaded manifests.
pub fn check(engine: &Engine, loaded: Vec<Loaded>) -> Report {
    let desired = files::desired(engine, loaded);
    let mut raw_findings = desired.findings;
    // A generated object that replaces a loaded one (a DestinationRule whose
    // subsets routeguard manages) is checked in its generated form.
    let generated_keys: BTreeSet<&ObjectKey> = desired.generated.iter().map(|o| &o.key).collect();
    let checked = desired.objects.iter().filter(|o| !generated_keys.contains(&o.key)).chain(&desired.generated);
    for object in checked {
        raw_findings.extend(engine.validate(&desired.snapshot, &Change::create(object)));
    }
    // The mutation and the validation of a Deployment can both report RG302.
    finding::sort_unique(&mut raw_findings);
    // Each namespace's enforcement mode, as admission applies it: what a
    // namespace admits with warnings (or silently) is no error here either.
    let mut modes: BTreeMap<String, Mode> = BTreeMap::new();
    let raw_findings: Vec<Finding> = raw_findings
        .into_iter()
        .flat_map(|finding| {
            let mode = modes
                .entry(finding.namespace.clone())
                .or_insert_with(|| Mode::of(engine.policy(), &desired.snapshot, &finding.namespace));
            mode.enforce(vec![finding])
        })
        .collect();
    let notices = (desired.snapshot.of_kind(Kind::Namespace).into_iter())
        .filter_map(|ns| Mode::of(engine.policy(), &desired.snapshot, ns.name()).notice())
        .collect();
    let findings: Vec<Located> = raw_findings
        .into_iter()
        .map(|finding| {
            let key =
                ObjectKey { kind: finding.kind, namespace: finding.namespace.clone(), name: finding.name.clone() };
            let source = desired.sources.get(&key);
            Located { file: source.map(|s| s.file.clone()), line: source.map(|s| s.line_of(&finding.path)), finding }
        })
        .collect();
    let mut report =
        Report { findings, objects: desired.loaded, mutated: desired.mutated, generated: desired.generated, notices };
    report.findings.sort_by(|a, b| {
        (a.file.is_none(), &a.file, a.line, &a.finding.code).cmp(&(b.file.is_none(), &b.file, b.line, &b.finding.code))
    });
    report
}

/// `routeguard check` / `render` from arguments to a report.
pub fn run(policy: Option<&Path>, paths: &[std::path::PathBuf], namespace: &str) -> Result<Report, CheckError> {
    let policy = files::load_policy(policy)?;
    let loaded = manifest::load_paths(paths, namespace)?;
    Ok(check(&Engine::new(policy), loaded))
}
