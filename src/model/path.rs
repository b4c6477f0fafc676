//! Field paths in the form users read in messages: `spec.http[1].route[0].weight`.

use std::fmt;

/// A path to a field inside an object, built segment by segment.
///
/// Keys that are not plain identifiers (label keys such as
/// `app.kubernetes.io/name`) are written in brackets: `metadata.labels["app.kubernetes.io/name"]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldPath(String);

impl FieldPath {
    /// The empty path (the object itself).
    pub fn root() -> FieldPath {
        FieldPath(String::new())
    }

    /// Parses a path written with dots only (`spec.http`).
    pub fn new(dotted: &str) -> FieldPath {
        FieldPath(dotted.to_string())
    }

    /// This path followed by a map key.
    pub fn key(&self, key: &str) -> FieldPath {
        let mut s = String::with_capacity(self.0.len() + key.len() + 5);
        s.push_str(&self.0);
        push_key(&mut s, key);
        FieldPath(s)
    }

    /// This path followed by a list index.
    pub fn index(&self, index: usize) -> FieldPath {
        use std::fmt::Write as _;
        let mut s = String::with_capacity(self.0.len() + 6);
        s.push_str(&self.0);
        s.push('[');
        // Writing a number into a String cannot fail.
        let _ = write!(s, "{index}");
        s.push(']');
        FieldPath(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The enclosing path (`spec.http[0]` for `spec.http[0].route`), or `None` at the root.
    pub fn parent(&self) -> Option<FieldPath> {
        if self.0.is_empty() {
            return None;
        }
        let s = &self.0;
        let cut = if s.ends_with(']') {
            // The bracket that opens the last segment; quoted keys may hold `[`.
            if s.ends_with("\"]") { s[..s.len() - 2].rfind("[\"").unwrap_or(0) } else { s.rfind('[').unwrap_or(0) }
        } else {
            s.rfind(['.', ']']).map_or(0, |i| if s.as_bytes()[i] == b']' { i + 1 } else { i })
        };
        Some(FieldPath(s[..cut].to_string()))
    }
}

/// Appends a map key to a path string.
pub fn push_key(path: &mut String, key: &str) {
    let plain = !key.is_empty()
        && key.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'$')
        && !key.as_bytes()[0].is_ascii_digit();
    if plain {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
    } else {
        path.push_str("[\"");
        path.push_str(&key.replace('\\', "\\\\").replace('"', "\\\""));
        path.push_str("\"]");
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_walks_up() {
        let p = FieldPath::new("spec").key("http").index(1).key("route").index(0).key("weight");
        assert_eq!(p.as_str(), "spec.http[1].route[0].weight");
        let up: Vec<String> =
            std::iter::successors(Some(p), FieldPath::parent).map(|p| p.as_str().to_string()).collect();
        assert_eq!(
            up,
            vec![
                "spec.http[1].route[0].weight",
                "spec.http[1].route[0]",
                "spec.http[1].route",
                "spec.http[1]",
                "spec.http",
                "spec",
                ""
            ]
        );
    }

    #[test]
    fn quotes_keys_that_are_not_identifiers() {
        let p = FieldPath::new("metadata").key("labels").key("app.kubernetes.io/name");
        assert_eq!(p.as_str(), "metadata.labels[\"app.kubernetes.io/name\"]");
        assert_eq!(p.parent().map(|p| p.0), Some("metadata.labels".to_string()));
    }
}
