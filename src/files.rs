//! What routeguard reads from files, for `check` and for `serve` without a
//! cluster: the policy file, and the desired state that manifest files
//! describe (their objects with the API server's CRD defaults, the
//! Deployments mutated, the objects routeguard would generate, and the
//! snapshot of all of them).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::manifest::{self, LoadError, Loaded, Source};
use crate::model::{FieldPath, Object, ObjectKey};
use crate::policy::{Code, Engine, Finding, Policy, PolicyError, Snapshot};

/// A file that cannot be read or used (`check` exits 2).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
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
pub fn load_policy(path: Option<&Path>) -> Result<Policy, FileError> {
    let Some(path) = path else { return Ok(Policy::default()) };
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| FileError::PolicyRead { path: name.clone(), source })?;
    parse_policy(&text).map_err(|source| FileError::Policy { path: name, source })
}

/// Parses the text of a policy file: YAML, read the way kubectl reads it (JSON is YAML too).
pub fn parse_policy(text: &str) -> Result<Policy, PolicyError> {
    let docs = manifest::yaml::parse_documents(text).map_err(|e| PolicyError::Parse(e.to_string()))?;
    Policy::from_value(&docs.into_iter().next().map(|d| d.value).unwrap_or_default())
}

/// The desired state of a set of manifests.
#[derive(Debug, Clone)]
pub struct Desired {
    /// How many objects were read.
    pub loaded: usize,
    /// Every object read, defaulted and (Deployments) mutated, in input order.
    pub objects: Vec<Object>,
    /// Where each object came from (the last occurrence of a key).
    pub sources: BTreeMap<ObjectKey, Source>,
    /// The Deployments the mutation changed, in input order.
    pub mutated: Vec<Object>,
    /// The objects routeguard would generate.
    pub generated: Vec<Object>,
    /// The findings of the mutation (RG301, RG302), the policy applied.
    pub findings: Vec<Finding>,
    /// The loaded objects, each as mutated, then the generated ones.
    pub snapshot: Snapshot,
}

/// Defaults and mutates loaded manifests, generates what routeguard would, and indexes it all.
pub fn desired(engine: &Engine, loaded: Vec<Loaded>) -> Desired {
    desired_on(engine, Snapshot::for_policy(engine.policy()), loaded, true)
}

/// [`desired`] on top of what is already there (`base`: a cluster's current
/// state for `check --cluster`): the loaded objects replace the base's of the
/// same key, and, when `generate`, routeguard's generated objects are made
/// from the whole.
pub fn desired_on(engine: &Engine, base: Snapshot, loaded: Vec<Loaded>, generate: bool) -> Desired {
    let count = loaded.len();
    let mut sources: BTreeMap<ObjectKey, Source> = BTreeMap::new();
    let mut objects = Vec::with_capacity(count);
    let mut mutated: Vec<Object> = Vec::new();
    let mut findings: Vec<Finding> = Vec::new();
    for Loaded { object, source } in loaded {
        let (object, patched) = prepared(engine, object, &mut findings);
        if patched {
            mutated.push(object.clone());
        }
        sources.insert(object.key.clone(), source);
        objects.push(object);
    }
    let mut snapshot = base;
    for object in &objects {
        snapshot.upsert_from(object);
    }
    let generated = if generate { engine.generate(&snapshot) } else { Vec::new() };
    for object in &generated {
        snapshot.upsert_from(object);
    }
    Desired { loaded: count, objects, sources, mutated, generated, findings, snapshot }
}

/// An object as the API server would store it: its CRD defaults filled in
/// (what admission is sent), then the version-label mutation applied; true
/// when the mutation changed it. The mutation's findings go to `findings`.
fn prepared(engine: &Engine, object: Object, findings: &mut Vec<Finding>) -> (Object, bool) {
    let mut object = object.with_api_defaults();
    let mutation = engine.mutate(&object, None);
    findings.extend(engine.policy().apply(mutation.findings, None));
    if mutation.patch.0.is_empty() {
        return (object, false);
    }
    let mut raw = object.raw.clone();
    match json_patch::patch(&mut raw, &mutation.patch) {
        Ok(()) => object.raw = raw,
        Err(e) => findings.push(Finding::new(
            Code::RG100,
            &object.key,
            FieldPath::root(),
            format!("the version-label patch does not apply: {e}"),
        )),
    }
    (object, true)
}

/// The snapshot a set of manifests makes once mutated and completed with the
/// generated objects: what `serve --objects` answers from when no cluster is there.
///
/// Built one file at a time, keeping only the snapshot: loading 10,000
/// objects peaked at four times the resident size of the result when every
/// parsed file, its line tables and the mutated copies were kept until the
/// end (as `check` needs them). A key loaded twice keeps its last
/// occurrence, except that a mutated version is not replaced by a later one
/// the mutation left alone (the generator then sees the Deployment that is served).
pub fn snapshot_from_paths(engine: &Engine, paths: &[PathBuf], namespace: &str) -> Result<Snapshot, FileError> {
    let mut snapshot = Snapshot::for_policy(engine.policy());
    let mut mutated: BTreeSet<ObjectKey> = BTreeSet::new();
    let mut findings = Vec::new();
    manifest::visit_paths(paths, namespace, |loaded| {
        let (object, patched) = prepared(engine, loaded.object, &mut findings);
        findings.clear();
        if patched {
            mutated.insert(object.key.clone());
        } else if mutated.contains(&object.key) {
            return;
        }
        snapshot.upsert_from(&object);
    })?;
    for object in engine.generate(&snapshot) {
        snapshot.upsert_from(&object);
    }
    Ok(snapshot)
}
