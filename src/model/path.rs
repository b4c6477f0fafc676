//! Field paths in the form users read in messages: `spec.http[1].route[0].weight`.

use std::fmt;

/// A path to a field inside an object, built segment by segment.
///
/// Keys that are not plain identifiers (label keys such as
/// `app.kubernetes.io/name`) are written in brackets: `metadata.labels["app.kubernetes.io/name"]`.
///
/// The text lives inline up to [`INLINE`] bytes (`spec.http[3].route[1].destination.subset`
/// fits): a rule builds a path for every entry it walks, and a heap allocation
/// per segment was most of what a check cost once the index was large.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldPath(Text);

impl Default for FieldPath {
    fn default() -> FieldPath {
        FieldPath::root()
    }
}

/// Bytes of a path kept inline before it moves to the heap.
pub const INLINE: usize = 56;

type Text = smallstr::SmallString<[u8; INLINE]>;

impl FieldPath {
    /// The empty path (the object itself).
    pub fn root() -> FieldPath {
        FieldPath(Text::new())
    }

    /// Parses a path written with dots only (`spec.http`).
    pub fn new(dotted: &str) -> FieldPath {
        FieldPath(Text::from_str(dotted))
    }

    /// This path followed by a map key.
    pub fn key(&self, key: &str) -> FieldPath {
        let mut s = self.extended();
        push_key(&mut s, key);
        FieldPath(s)
    }

    /// This path followed by a list index.
    pub fn index(&self, index: usize) -> FieldPath {
        let mut s = self.extended();
        s.push('[');
        s.push_str(itoa::Buffer::new().format(index));
        s.push(']');
        FieldPath(s)
    }

    /// A copy of the text to extend. `Clone` would copy it byte by byte; a
    /// slice copy is one `memcpy`, and this is on every rule's hot path.
    fn extended(&self) -> Text {
        let mut s = Text::new();
        s.push_str(&self.0);
        s
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
        Some(FieldPath(Text::from_str(&s[..cut])))
    }
}

/// Appends a map key to a path text (a `String`, or a [`FieldPath`]'s inline text).
pub fn push_key<T: fmt::Write + std::ops::Deref<Target = str>>(path: &mut T, key: &str) {
    // Writing into a string cannot fail.
    let plain = !key.is_empty()
        && key.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'$')
        && !key.as_bytes()[0].is_ascii_digit();
    if plain {
        if !path.is_empty() {
            let _ = path.write_char('.');
        }
        let _ = path.write_str(key);
    } else {
        let _ = path.write_str("[\"");
        let _ = path.write_str(&key.replace('\\', "\\\\").replace('"', "\\\""));
        let _ = path.write_str("\"]");
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
        assert_eq!(p.parent().map(|p| p.to_string()), Some("metadata.labels".to_string()));
    }
}
