//! `routeguard check` and `routeguard render`: the policy over manifest files.
//!
//! The files are the desired state: the CRD schema defaults the API server
//! would apply are filled in, Deployments are mutated and the generated objects
//! added first, then every object is checked as if it were created.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::manifest::{self, LoadError, Loaded, Source};
use crate::model::{Object, ObjectKey};
use crate::policy::{Change, Engine, Finding, Policy, PolicyError, Severity, Snapshot};

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

    /// The mutated Deployments and the generated objects as a multi-document YAML stream.
    pub fn to_yaml(&self) -> String {
        manifest::yaml::to_yaml_stream(self.mutated.iter().chain(&self.generated).map(|o| &o.raw))
    }
}

fn path_message(f: &Finding) -> String {
    if f.path.is_root() { f.message.clone() } else { format!("{}: {}", f.path, f.message) }
}

/// Why `check` could not run (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{path}: {source}")]
    Policy {
        path: String,
        #[source]
        source: PolicyError,
    },
    #[error("{path}: {source}")]
    PolicyRead {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Reads a policy file, or the defaults without one.
pub fn load_policy(path: Option<&Path>) -> Result<Policy, CheckError> {
    let Some(path) = path else { return Ok(Policy::default()) };
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| CheckError::PolicyRead { path: name.clone(), source })?;
    Policy::from_yaml(&text).map_err(|source| CheckError::Policy { path: name, source })
}

/// Mutates, generates and checks loaded manifests.
pub fn check(engine: &Engine, loaded: Vec<Loaded>) -> Report {
    check_with_snapshot(engine, loaded).0
}

/// [`check`], also returning the snapshot it checked against (the mutated
/// objects and the generated ones) and, for object keys that occur more than
/// once, the last mutated version when a later occurrence was not mutated.
fn check_with_snapshot(engine: &Engine, loaded: Vec<Loaded>) -> (Report, Snapshot, Vec<Object>) {
    let mut report = Report { objects: loaded.len(), ..Report::default() };
    let mut sources: BTreeMap<ObjectKey, Source> = BTreeMap::new();
    let mut objects = Vec::with_capacity(loaded.len());
    let mut raw_findings: Vec<Finding> = Vec::new();
    // Per key: the index in `report.mutated` of the last mutated version, and
    // whether the last occurrence was it.
    let mut last_mutated: BTreeMap<ObjectKey, (usize, bool)> = BTreeMap::new();
    for Loaded { object, source } in loaded {
        // Judge what the API server would store and send to admission, its CRD defaults filled in.
        let mut object = object.with_api_defaults();
        let mutation = engine.mutate(&object, None);
        raw_findings.extend(engine.policy().apply(mutation.findings, None));
        if !mutation.patch.0.is_empty() {
            let mut raw = object.raw.clone();
            match json_patch::patch(&mut raw, &mutation.patch) {
                Ok(()) => object.raw = raw,
                Err(e) => raw_findings.push(Finding::new(
                    crate::policy::Code::RG100,
                    &object.key,
                    crate::model::FieldPath::root(),
                    format!("the version-label patch does not apply: {e}"),
                )),
            }
            last_mutated.insert(object.key.clone(), (report.mutated.len(), true));
            report.mutated.push(object.clone());
        } else if let Some((_, last)) = last_mutated.get_mut(&object.key) {
            *last = false;
        }
        sources.insert(object.key.clone(), source);
        objects.push(object);
    }
    let mut snapshot = Snapshot::for_policy(engine.policy());
    for object in &objects {
        snapshot.upsert_from(object);
    }
    report.generated = engine.generate(&snapshot);
    for object in &report.generated {
        snapshot.upsert_from(object);
    }
    let stale: Vec<Object> =
        last_mutated.into_values().filter(|(_, last)| !last).map(|(i, _)| report.mutated[i].clone()).collect();
    // A generated object that replaces a loaded one (a DestinationRule whose
    // subsets routeguard manages) is checked in its generated form.
    let generated_keys: std::collections::BTreeSet<&ObjectKey> = report.generated.iter().map(|o| &o.key).collect();
    let checked = objects.iter().filter(|o| !generated_keys.contains(&o.key)).chain(&report.generated);
    for object in checked {
        raw_findings.extend(engine.validate(&snapshot, &Change::create(object)));
    }
    // The mutation and the validation of a Deployment can both report RG302.
    raw_findings.sort_by(|a, b| {
        (&a.kind, &a.namespace, &a.name, &a.code, &a.path, &a.message).cmp(&(
            &b.kind,
            &b.namespace,
            &b.name,
            &b.code,
            &b.path,
            &b.message,
        ))
    });
    raw_findings.dedup();
    report.findings = raw_findings
        .into_iter()
        .map(|finding| {
            let key =
                ObjectKey { kind: finding.kind, namespace: finding.namespace.clone(), name: finding.name.clone() };
            let source = sources.get(&key);
            Located { file: source.map(|s| s.file.clone()), line: source.map(|s| s.line_of(&finding.path)), finding }
        })
        .collect();
    report.findings.sort_by(|a, b| {
        (a.file.is_none(), &a.file, a.line, &a.finding.code).cmp(&(b.file.is_none(), &b.file, b.line, &b.finding.code))
    });
    (report, snapshot, stale)
}

/// The snapshot a set of manifests makes once mutated and completed with the
/// generated objects: what `serve --objects` answers from when no cluster is there.
pub fn snapshot_from_paths(
    engine: &Engine,
    paths: &[std::path::PathBuf],
    namespace: &str,
) -> Result<Snapshot, CheckError> {
    let loaded = manifest::load_paths(paths, namespace)?;
    // The snapshot `check` built is this one (loaded objects, each replaced by
    // its mutated version, then the generated objects), except that for a key
    // loaded twice the last mutated version wins over a later unmutated one.
    let (report, mut snapshot, stale) = check_with_snapshot(engine, loaded);
    let generated: std::collections::BTreeSet<&ObjectKey> = report.generated.iter().map(|o| &o.key).collect();
    for object in stale.iter().filter(|o| !generated.contains(&o.key)) {
        snapshot.upsert_from(object);
    }
    Ok(snapshot)
}

/// `routeguard check` / `render` from arguments to a report.
pub fn run(policy: Option<&Path>, paths: &[std::path::PathBuf], namespace: &str) -> Result<Report, CheckError> {
    let policy = load_policy(policy)?;
    let loaded = manifest::load_paths(paths, namespace)?;
    Ok(check(&Engine::new(policy), loaded))
}
