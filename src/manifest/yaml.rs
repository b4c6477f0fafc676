//! YAML to JSON with the line of every field, and JSON back to YAML.
//!
//! Scalars resolve the way `kubectl` resolves them (YAML 1.1 booleans such as
//! `yes`/`on` included), so `check` sees what the API server would receive.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, ScanError, TScalarStyle};
use yaml_rust2::{Yaml, YamlEmitter};

use crate::model::path::push_key;

/// One YAML document as JSON, with the 1-based line of each field path.
#[derive(Debug, Clone)]
pub struct Document {
    pub value: Value,
    /// Line where the document's content starts.
    pub line: usize,
    /// Line of each field path (`spec.http[0].route`), keyed as in findings.
    pub lines: HashMap<String, usize>,
}

impl Document {
    /// The line of `path`, or of its nearest enclosing field, or the document's.
    pub fn line_of(&self, path: &crate::model::FieldPath) -> usize {
        line_of(&self.lines, path, self.line)
    }
}

/// The line of `path` in `lines`, or of its nearest enclosing field, or `fallback`.
pub fn line_of(lines: &HashMap<String, usize>, path: &crate::model::FieldPath, fallback: usize) -> usize {
    std::iter::successors(Some(path.clone()), |p| p.parent())
        .find_map(|p| lines.get(p.as_str()).copied())
        .unwrap_or(fallback)
}

/// A YAML text that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct YamlError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl From<ScanError> for YamlError {
    fn from(e: ScanError) -> YamlError {
        YamlError { line: e.marker().line(), column: e.marker().col() + 1, message: e.info().to_string() }
    }
}

/// Parses every document of a YAML (or JSON) stream. Empty documents are kept as `null`.
pub fn parse_documents(text: &str) -> Result<Vec<Document>, YamlError> {
    let mut builder = Builder::default();
    Parser::new_from_str(text).load(&mut builder, true)?;
    match builder.error {
        Some(e) => Err(e),
        None => Ok(builder.documents),
    }
}

enum Frame {
    Seq { items: Vec<Value>, path: String, anchor: usize },
    Map { map: Map<String, Value>, path: String, key: Option<String>, anchor: usize },
}

#[derive(Default)]
struct Builder {
    documents: Vec<Document>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Value, usize)>,
    /// Nodes produced by aliases so far in this stream.
    expanded: usize,
    lines: HashMap<String, usize>,
    doc_line: usize,
    root: Option<Value>,
    error: Option<YamlError>,
}

impl Builder {
    /// The path of the value about to be added, or `None` when it is a map key.
    fn next_path(&self) -> Option<String> {
        match self.stack.last() {
            None => Some(String::new()),
            Some(Frame::Seq { items, path, .. }) => Some(format!("{path}[{}]", items.len())),
            Some(Frame::Map { key: None, .. }) => None,
            Some(Frame::Map { path, key: Some(k), .. }) => {
                let mut p = path.clone();
                push_key(&mut p, k);
                Some(p)
            }
        }
    }

    fn add(&mut self, value: Value, anchor: usize) {
        if anchor > 0 {
            let size = node_count(&value);
            self.anchors.insert(anchor, (value.clone(), size));
        }
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map { map, key, .. }) => match key.take() {
                Some(k) => {
                    map.insert(k, value);
                }
                None => *key = Some(key_text(&value)),
            },
        }
    }

    fn fail(&mut self, mark: Marker, message: &str) {
        if self.error.is_none() {
            self.error = Some(YamlError { line: mark.line(), column: mark.col() + 1, message: message.to_string() });
        }
    }
}

/// Nodes that aliases may produce in one stream: far above any real manifest,
/// far below what would exhaust memory (the "billion laughs" attack).
const MAX_EXPANDED_NODES: usize = 1_000_000;

/// The number of JSON nodes in a value.
fn node_count(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(node_count).sum::<usize>(),
        Value::Object(map) => 1 + map.values().map(node_count).sum::<usize>(),
        _ => 1,
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let path = self.next_path();
        let starts_value =
            matches!(event, Event::Scalar(..) | Event::SequenceStart(..) | Event::MappingStart(..) | Event::Alias(_));
        if starts_value {
            if let Some(p) = &path {
                self.lines.entry(p.clone()).or_insert(mark.line());
            } else if let Some(Frame::Map { path: parent, .. }) = self.stack.last()
                && let Event::Scalar(k, ..) = &event
            {
                // A key: the field's line is the key's line.
                let mut p = parent.clone();
                push_key(&mut p, k);
                self.lines.insert(p, mark.line());
            }
        }
        match event {
            Event::DocumentStart => {
                self.lines.clear();
                self.root = None;
                self.doc_line = mark.line();
            }
            Event::DocumentEnd => {
                let value = self.root.take().unwrap_or(Value::Null);
                let line = self.lines.get("").copied().unwrap_or(self.doc_line).max(1);
                self.documents.push(Document { value, line, lines: std::mem::take(&mut self.lines) });
                self.anchors.clear();
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some((_, size)) if self.expanded + size > MAX_EXPANDED_NODES => {
                    self.fail(mark, "aliases expand to too many nodes (over 1,000,000)")
                }
                Some((value, size)) => {
                    self.expanded += size;
                    let value = value.clone();
                    self.add(value, 0)
                }
                None => self.fail(mark, "alias to an unknown anchor"),
            },
            Event::Scalar(text, style, anchor, tag) => {
                let value = resolve_scalar(text, style, tag.as_ref());
                self.add(value, anchor);
            }
            Event::SequenceStart(anchor, _) => {
                self.stack.push(Frame::Seq { items: Vec::new(), path: path.unwrap_or_default(), anchor })
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push(Frame::Map { map: Map::new(), path: path.unwrap_or_default(), key: None, anchor })
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq { items, anchor, .. }) = self.stack.pop() {
                    self.add(Value::Array(items), anchor);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map { map, anchor, .. }) = self.stack.pop() {
                    self.add(Value::Object(map), anchor);
                }
            }
            Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
        }
    }
}

/// The text of a map key (non-string keys become their JSON text).
fn key_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Resolves a scalar the way `kubectl` (go-yaml, YAML 1.1) does.
fn resolve_scalar(text: String, style: TScalarStyle, tag: Option<&Tag>) -> Value {
    if style != TScalarStyle::Plain || tag.is_some_and(|t| t.suffix == "str") {
        return Value::String(text);
    }
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "y" | "Y" => return Value::Bool(true),
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "n" | "N" => {
            return Value::Bool(false);
        }
        _ => {}
    }
    let digits = text.replace('_', "");
    let int = if let Some(hex) = digits.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()
    } else if let Some(oct) = digits.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()
    } else if digits.len() > 1 && digits.starts_with('0') && digits.bytes().all(|b| b.is_ascii_digit()) {
        i64::from_str_radix(&digits, 8).ok()
    } else {
        digits.parse::<i64>().ok()
    };
    if let Some(i) = int {
        return Value::Number(i.into());
    }
    let looks_numeric = text.bytes().any(|b| b.is_ascii_digit())
        && text.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E' | b'_'));
    if looks_numeric && let Some(n) = digits.parse::<f64>().ok().and_then(Number::from_f64) {
        return Value::Number(n);
    }
    Value::String(text)
}

/// Writes values as a multi-document YAML stream (`---` before each).
pub fn to_yaml_stream<'a>(values: impl IntoIterator<Item = &'a Value>) -> String {
    let mut out = String::new();
    for value in values {
        let mut doc = String::new();
        let mut emitter = YamlEmitter::new(&mut doc);
        emitter.multiline_strings(true);
        // Emitting into a String cannot fail for values built from JSON.
        if emitter.dump(&to_yaml(value)).is_ok() {
            let _ = writeln!(out, "{doc}");
        }
    }
    out
}

fn to_yaml(value: &Value) -> Yaml {
    match value {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Integer(i),
            None => Yaml::Real(n.to_string()),
        },
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(items) => Yaml::Array(items.iter().map(to_yaml).collect()),
        Value::Object(map) => Yaml::Hash(map.iter().map(|(k, v)| (Yaml::String(k.clone()), to_yaml(v))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FieldPath;
    use serde_json::json;

    const VS: &str = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 80
    - destination:
        host: reviews
        subset: v2
      weight: 20
---
# empty
---
kind: Service
";

    #[test]
    fn keeps_values_and_lines() {
        let docs = parse_documents(VS).expect("parses");
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0].value["spec"]["http"][0]["route"][1]["weight"], json!(20));
        assert_eq!(docs[0].value["spec"]["hosts"], json!(["reviews"]));
        assert_eq!(docs[0].line_of(&FieldPath::new("spec.http[0].route[1].destination.subset")), 15);
        assert_eq!(docs[0].line_of(&FieldPath::new("spec.http[0].route[1].weight")), 16);
        assert_eq!(docs[0].line_of(&FieldPath::new("spec.http[0].route[0]")), 9);
        // A path that does not exist falls back to its nearest ancestor.
        assert_eq!(docs[0].line_of(&FieldPath::new("spec.http[0].nothing")), 8);
        assert!(docs[1].value.is_null());
        assert_eq!(docs[2].line, 20);
    }

    #[test]
    fn resolves_scalars_like_kubectl() {
        let docs =
            parse_documents("a: yes\nb: '1'\nc: 1.5\nd: 010\ne: v1.2\nf: ~\ng: \"true\"\nh: 1e3\n").expect("parses");
        assert_eq!(
            docs[0].value,
            json!({"a": true, "b": "1", "c": 1.5, "d": 8, "e": "v1.2", "f": null, "g": "true", "h": 1000.0})
        );
    }

    #[test]
    fn anchors_and_json_input() {
        let docs = parse_documents("a: &x {k: 1}\nb: *x\n").expect("parses");
        assert_eq!(docs[0].value["b"], json!({"k": 1}));
        let docs = parse_documents("{\"kind\": \"Service\", \"spec\": {\"ports\": [1, 2]}}").expect("json");
        assert_eq!(docs[0].value["spec"]["ports"], json!([1, 2]));
    }

    #[test]
    fn refuses_an_alias_bomb() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let err = parse_documents(&text).expect_err("bomb");
        assert!(err.message.contains("too many nodes"), "{err}");
        assert_eq!(err.line, 6);
    }

    #[test]
    fn reports_the_line_of_a_syntax_error() {
        let err = parse_documents("a: 1\nb: [1, 2\nc: 3\n").expect_err("broken");
        assert!(err.line >= 2, "{err}");
    }

    #[test]
    fn round_trips_through_yaml_output() {
        let value =
            json!({"metadata": {"labels": {"version": "1", "on": "true", "x": ""}}, "n": 3, "list": [{"a": null}]});
        let text = to_yaml_stream([&value]);
        let back = parse_documents(&text).expect("parses");
        assert_eq!(back[0].value, value, "{text}");
    }
}
