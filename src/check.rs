//! `routeguard check` and `routeguard render`: the policy over manifest files.
//!
//! The files are the desired state ([`files::desired`]: the CRD schema
//! defaults the API server would apply filled in, Deployments mutated, the
//! generated objects added); then every object is checked as if it were created.

pub mod cluster;
pub(crate) mod sarif;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::files::{self, Desired, FileError};
use crate::manifest::{self, Loaded};
use crate::model::{FieldPath, Kind, Object, ObjectKey};
use crate::policy::{Change, Code, Engine, Finding, Mode, Operation, Severity, Snapshot, finding};

/// Where the object of a finding comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// A manifest file (`file` and `line` say where).
    File,
    /// What routeguard would generate.
    Generated,
    /// The cluster as it is (`check --cluster`).
    Cluster,
}

/// A finding with the file and line it points at (none for generated or cluster objects).
#[derive(Debug, Clone, Serialize)]
pub struct Located {
    #[serde(flatten)]
    pub finding: Finding,
    pub file: Option<String>,
    pub line: Option<usize>,
    pub origin: Origin,
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
            let at = match (&f.file, f.line, f.origin) {
                (Some(file), Some(line), _) => format!(" ({file}:{line})"),
                (_, _, Origin::Cluster) => " (cluster)".to_string(),
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
    check_with(engine, loaded, true)
}

/// [`check`]; the generated objects are made and judged only when `generate`.
pub fn check_with(engine: &Engine, loaded: Vec<Loaded>, generate: bool) -> Report {
    let mut desired = files::desired_on(engine, Snapshot::for_policy(engine.policy()), loaded, generate);
    let mut raw_findings = std::mem::take(&mut desired.findings);
    // A generated object that replaces a loaded one (a DestinationRule whose
    // subsets routeguard manages) is checked in its generated form.
    let generated_keys: BTreeSet<&ObjectKey> = desired.generated.iter().map(|o| &o.key).collect();
    let checked = desired.objects.iter().filter(|o| !generated_keys.contains(&o.key)).chain(&desired.generated);
    for object in checked {
        raw_findings.extend(engine.validate(&desired.snapshot, &Change::create(object)));
    }
    finish(engine, desired, raw_findings, None, Vec::new())
}

/// `check --cluster`: judges `loaded` applied on top of `cluster` (its
/// current state), or, with nothing loaded, the cluster as it is.
///
/// A loaded object is judged as the change it is: a create, or an update of
/// the cluster's object of the same key (so removing a subset live traffic
/// uses is refused, RG201). The cluster's other objects, and what routeguard
/// would generate, are audited before and after: with files, only the
/// findings the files bring are reported (the ones already there are counted
/// in a notice); without files, every finding is. `scope`: only findings in
/// that namespace.
pub fn check_cluster(
    engine: &Engine,
    cluster: Snapshot,
    loaded: Vec<Loaded>,
    scope: Option<&str>,
    generate: bool,
) -> Report {
    let read = cluster.len();
    let with_files = !loaded.is_empty();
    let before = engine.audit(&cluster);
    let mut desired = files::desired_on(engine, cluster.clone(), loaded, generate && with_files);
    let mut raw_findings = std::mem::take(&mut desired.findings);
    let generated: BTreeSet<&ObjectKey> = desired.generated.iter().map(|o| &o.key).collect();
    let changed: BTreeSet<ObjectKey> =
        desired.objects.iter().map(|o| &o.key).filter(|key| !generated.contains(key)).cloned().collect();
    for object in desired.objects.iter().filter(|o| changed.contains(&o.key)) {
        match cluster.get(&object.key).map(|entry| entry.object()) {
            // An update is judged as admission judges it: against the cluster
            // that still holds the old object (and, here, the other files applied).
            Some(old) => {
                let mut before_this = desired.snapshot.clone();
                before_this.upsert_from(&old);
                let change = Change { operation: Operation::Update, object: Some(object), old: Some(&old), user: None };
                raw_findings.extend(engine.validate(&before_this, &change));
            }
            None => raw_findings.extend(engine.validate(&desired.snapshot, &Change::create(object))),
        }
    }
    let mut kept = 0usize;
    if with_files {
        let already: BTreeSet<(Code, ObjectKey, &FieldPath)> =
            before.iter().map(|f| (f.code, f.key(), &f.path)).collect();
        for finding in engine.audit(&desired.snapshot) {
            let key = finding.key();
            if changed.contains(&key) {
                continue;
            }
            if already.contains(&(finding.code, key, &finding.path)) {
                kept += usize::from(scope.is_none_or(|ns| finding.namespace == ns));
            } else {
                raw_findings.push(finding);
            }
        }
    } else {
        raw_findings.extend(before);
    }
    let mut notices = Vec::new();
    if kept > 0 {
        notices.push(format!(
            "{kept} finding(s) the cluster already has are not shown: `routeguard check --cluster` without files lists them"
        ));
    }
    let loaded = desired.loaded;
    let mut report = finish(engine, desired, raw_findings, scope, notices);
    report.objects = read + loaded;
    report
}

/// Applies each namespace's enforcement mode, places findings on their files
/// and lines, and orders them.
fn finish(
    engine: &Engine,
    desired: Desired,
    mut raw_findings: Vec<Finding>,
    scope: Option<&str>,
    notices: Vec<String>,
) -> Report {
    if let Some(namespace) = scope {
        raw_findings.retain(|f| f.namespace == namespace);
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
    let notices: Vec<String> = (desired.snapshot.of_kind(Kind::Namespace).into_iter())
        .filter(|ns| scope.is_none_or(|scope| ns.name() == scope))
        .filter_map(|ns| Mode::of(engine.policy(), &desired.snapshot, ns.name()).notice())
        .chain(notices)
        .collect();
    let generated: BTreeSet<&ObjectKey> = desired.generated.iter().map(|o| &o.key).collect();
    let findings: Vec<Located> = raw_findings
        .into_iter()
        .map(|finding| {
            let key = finding.key();
            let source = desired.sources.get(&key);
            let origin = match source {
                Some(_) => Origin::File,
                None if generated.contains(&key) => Origin::Generated,
                None => Origin::Cluster,
            };
            Located {
                file: source.map(|s| s.file.clone()),
                line: source.map(|s| s.line_of(&finding.path)),
                finding,
                origin,
            }
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
    run_with(policy, paths, namespace, true)
}

/// [`run`], judging what routeguard would generate only when `generate`.
pub fn run_with(
    policy: Option<&Path>,
    paths: &[std::path::PathBuf],
    namespace: &str,
    generate: bool,
) -> Result<Report, CheckError> {
    let policy = files::load_policy(policy)?;
    let loaded = manifest::load_paths(paths, namespace)?;
    Ok(check_with(&Engine::new(policy), loaded, generate))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: reviews}\n\
        spec:\n  selector: {app: reviews}\n  ports: [{port: 9080}]\n";
    const DEPLOYMENTS: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: reviews-v1}\n\
        spec:\n  selector: {matchLabels: {app: reviews, version: v1}}\n  template:\n    metadata: {labels: {app: reviews, version: v1}}\n    \
        spec: {containers: [{name: app, image: reviews:1}]}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: reviews-v2}\n\
        spec:\n  selector: {matchLabels: {app: reviews, version: v2}}\n  template:\n    metadata: {labels: {app: reviews, version: v2}}\n    \
        spec: {containers: [{name: app, image: reviews:2}]}\n";
    const RULE_V1_V2: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\n\
        spec:\n  host: reviews\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n";
    const ROUTE_80_20: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\n\
        spec:\n  hosts: [reviews]\n  http:\n  - route:\n    - {destination: {host: reviews, subset: v1}, weight: 80}\n    \
        - {destination: {host: reviews, subset: v2}, weight: 20}\n";
    const ROUTE_ALL_V1: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\n\
        spec:\n  hosts: [reviews]\n  http:\n  - route:\n    - {destination: {host: reviews, subset: v1}}\n";

    fn load(file: &str, text: &str) -> Vec<Loaded> {
        manifest::load_text(file, text, "shop").expect("manifest")
    }

    /// A snapshot of a cluster holding these manifests, as stored (defaults applied).
    fn cluster(engine: &Engine, texts: &[&str]) -> Snapshot {
        let mut snapshot = Snapshot::for_policy(engine.policy());
        for text in texts {
            for loaded in load("cluster.yaml", text) {
                snapshot.upsert(loaded.object.with_api_defaults());
            }
        }
        snapshot
    }

    fn codes(report: &Report) -> Vec<(Code, String, Origin)> {
        report.findings.iter().map(|f| (f.finding.code, f.finding.name.clone(), f.origin)).collect()
    }

    #[test]
    fn removing_a_subset_is_allowed_when_the_same_files_move_its_traffic_off() {
        let engine = Engine::new(Policy::default());
        let live = cluster(&engine, &[SERVICE, DEPLOYMENTS, RULE_V1_V2, ROUTE_80_20]);
        let rule_v1 = RULE_V1_V2.replace("  - {name: v2, labels: {version: v2}}\n", "");
        let alone = check_cluster(&engine, live.clone(), load("rule.yaml", &rule_v1), None, false);
        assert_eq!(
            codes(&alone),
            [(Code::RG201, "reviews".into(), Origin::File), (Code::RG103, "reviews".into(), Origin::Cluster)],
            "{}",
            alone.to_text()
        );
        let mut both = load("rule.yaml", &rule_v1);
        both.extend(load("route.yaml", ROUTE_ALL_V1));
        let report = check_cluster(&engine, live, both, None, false);
        assert!(report.findings.is_empty(), "{}", report.to_text());
        assert_eq!(report.objects, 7, "five read, two loaded");
    }

    #[test]
    fn without_files_every_finding_counts_and_a_scope_keeps_one_namespace() {
        let engine = Engine::new(Policy::default());
        let broken = ROUTE_80_20.replace("subset: v2", "subset: v9");
        let live = cluster(&engine, &[SERVICE, DEPLOYMENTS, RULE_V1_V2, &broken]);
        let report = check_cluster(&engine, live.clone(), Vec::new(), None, true);
        assert_eq!(codes(&report), [(Code::RG103, "reviews".into(), Origin::Cluster)]);
        assert!(report.generated.is_empty(), "a cluster as it is holds what was generated already");
        assert!(check_cluster(&engine, live.clone(), Vec::new(), Some("web"), true).findings.is_empty());
        // With a file that does not touch it, the old finding is counted, not shown.
        let report = check_cluster(&engine, live, load("rule.yaml", RULE_V1_V2), None, false);
        assert!(report.findings.is_empty(), "{}", report.to_text());
        assert_eq!(report.notices.len(), 1, "{:?}", report.notices);
        assert!(report.notices[0].starts_with("1 finding(s) the cluster already has"), "{:?}", report.notices);
    }
}
