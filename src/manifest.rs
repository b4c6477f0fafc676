//! Manifest files: objects, with their file and line, from YAML and JSON.
//!
//! Paths are files or folders (searched recursively for `*.yaml`, `*.yml`,
//! `*.json`), or `-` for standard input. Documents may hold several objects
//! (`---`) or a `kind: List`. Objects of kinds routeguard does not handle are
//! skipped; anything that is not a Kubernetes object is an error.

pub mod yaml;

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use crate::model::{FieldPath, ModelError, Object};

/// Where an object came from.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file as the user named it (`<stdin>` for standard input).
    pub file: String,
    /// The line where the object starts.
    pub line: usize,
    lines: Arc<HashMap<String, usize>>,
}

impl Source {
    /// The line of a field of the object (or of its nearest enclosing field).
    pub fn line_of(&self, path: &FieldPath) -> usize {
        yaml::line_of(&self.lines, path, self.line)
    }
}

/// An object read from a file.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub object: Object,
    pub source: Source,
}

/// Why manifests could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    Syntax { file: String, line: usize, message: String },
    #[error("{file}:{line}: {message}")]
    Object { file: String, line: usize, message: String },
}

/// Reads every object under `paths`; objects without a namespace get `default_namespace`.
pub fn load_paths(paths: &[PathBuf], default_namespace: &str) -> Result<Vec<Loaded>, LoadError> {
    let mut loaded = Vec::new();
    visit_paths(paths, default_namespace, |object| loaded.push(object))?;
    Ok(loaded)
}

/// [`load_paths`] one file at a time: `visit` gets each object of a file
/// before the next file is read, so a caller that keeps less than the objects
/// (the snapshot `serve --objects` builds) never holds every parsed file at once.
pub fn visit_paths(paths: &[PathBuf], default_namespace: &str, mut visit: impl FnMut(Loaded)) -> Result<(), LoadError> {
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|source| LoadError::Io { path: "<stdin>".into(), source })?;
            load_text("<stdin>", &text, default_namespace)?.into_iter().for_each(&mut visit);
            continue;
        }
        for file in files_under(path)? {
            let name = file.display().to_string();
            let text = std::fs::read_to_string(&file).map_err(|source| LoadError::Io { path: name.clone(), source })?;
            load_text(&name, &text, default_namespace)?.into_iter().for_each(&mut visit);
        }
    }
    Ok(())
}

/// Reads the objects of one YAML or JSON text named `file`.
pub fn load_text(file: &str, text: &str, default_namespace: &str) -> Result<Vec<Loaded>, LoadError> {
    let documents = yaml::parse_documents(text).map_err(|e| LoadError::Syntax {
        file: file.to_string(),
        line: e.line,
        message: format!("column {}: {}", e.column, e.message),
    })?;
    let mut loaded = Vec::new();
    for document in documents {
        let lines = Arc::new(document.lines);
        let source = Source { file: file.to_string(), line: document.line, lines };
        collect(document.value, source, default_namespace, &mut loaded)?;
    }
    Ok(loaded)
}

fn collect(value: Value, source: Source, default_namespace: &str, out: &mut Vec<Loaded>) -> Result<(), LoadError> {
    let fail = |message: String| LoadError::Object { file: source.file.clone(), line: source.line, message };
    match &value {
        Value::Null => return Ok(()),
        Value::Object(map) if map.get("kind").and_then(Value::as_str).is_some_and(|k| k.ends_with("List")) => {
            let items = map.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
            for (i, item) in items.into_iter().enumerate() {
                let prefix = format!("items[{i}]");
                let lines: HashMap<String, usize> = source
                    .lines
                    .iter()
                    .filter_map(|(p, l)| {
                        let rest = p.strip_prefix(&prefix)?;
                        match rest.strip_prefix('.') {
                            Some(field) => Some((field.to_string(), *l)),
                            None => (rest.is_empty() || rest.starts_with('[')).then(|| (rest.to_string(), *l)),
                        }
                    })
                    .collect();
                let line = lines.get("").copied().unwrap_or(source.line);
                let item_source = Source { file: source.file.clone(), line, lines: Arc::new(lines) };
                collect(item, item_source, default_namespace, out)?;
            }
            return Ok(());
        }
        Value::Object(_) => {}
        other => return Err(fail(format!("expected a kubernetes object, found {}", crate::model::json_type(other)))),
    }
    match Object::from_value(value, default_namespace) {
        Ok(object) => out.push(Loaded { object, source }),
        // Other kinds (ConfigMaps, Namespaces, ...) are not routeguard's business.
        Err(ModelError::UnknownKind { .. }) => {}
        Err(e) => return Err(fail(format!("not a kubernetes object: {e}"))),
    }
    Ok(())
}

/// The manifest files under a path, sorted; a file named directly is taken whatever its extension.
fn files_under(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let io = |source| LoadError::Io { path: path.display().to_string(), source };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut found = Vec::new();
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in
            std::fs::read_dir(&dir).map_err(|source| LoadError::Io { path: dir.display().to_string(), source })?
        {
            let entry = entry.map_err(|source| LoadError::Io { path: dir.display().to_string(), source })?;
            let p = entry.path();
            if p.is_dir() {
                pending.push(p);
            } else if p.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e, "yaml" | "yml" | "json")) {
                found.push(p);
            }
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;

    #[test]
    fn reads_objects_lists_and_skips_other_kinds() {
        let text = "\
apiVersion: v1
kind: ConfigMap
metadata: {name: c}
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata:
    name: reviews
    namespace: bookinfo
  spec:
    selector: {app: reviews}
";
        let loaded = load_text("a.yaml", text, "default").expect("loads");
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].object.kind(), Kind::Service);
        assert_eq!(loaded[0].object.namespace(), "bookinfo");
        assert_eq!(loaded[0].source.line, 8);
        assert_eq!(loaded[0].source.line_of(&FieldPath::new("spec.selector")), 14);
    }

    #[test]
    fn reports_file_and_line_of_bad_documents() {
        let err = load_text("b.yaml", "kind: Service\n---\n- 1\n", "d").expect_err("bad");
        assert!(matches!(err, LoadError::Object { .. }), "{err}");
        let err = load_text("b.yaml", "---\n- 1\n", "d").expect_err("bad");
        assert_eq!(err.to_string(), "b.yaml:2: expected a kubernetes object, found a list");
        let err = load_text("c.yaml", "a: [1\n", "d").expect_err("bad");
        assert!(err.to_string().starts_with("c.yaml:"), "{err}");
    }

    #[test]
    fn walks_folders_for_manifest_files_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).expect("mkdir");
        let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n";
        std::fs::write(dir.path().join("a.yaml"), svc).expect("write");
        std::fs::write(sub.join("b.json"), r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"t"}}"#)
            .expect("write");
        std::fs::write(dir.path().join("notes.txt"), "not yaml: [").expect("write");
        let loaded = load_paths(&[dir.path().to_path_buf()], "default").expect("loads");
        let names: Vec<&str> = loaded.iter().map(|l| l.object.name()).collect();
        assert_eq!(names, vec!["s", "t"]);
        assert!(load_paths(&[dir.path().join("missing.yaml")], "d").is_err());
    }
}
