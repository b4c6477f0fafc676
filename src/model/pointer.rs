//! JSON Pointer lookups that allocate nothing.
//!
//! `serde_json::Value::pointer` unescapes every token into two new `String`s
//! (`~1`, then `~0`), even a token with no `~` in it: a Deployment's
//! `/spec/template/metadata/labels` cost eight allocations, and the rules
//! look up a dozen such paths per request. [`Lookup::lookup`] answers the
//! same and allocates only for a token that holds an escape.

use std::borrow::Cow;

use serde_json::Value;

/// A JSON Pointer (RFC 6901) lookup into a value.
pub trait Lookup {
    /// The value at `pointer` (`""` is the value itself; `/spec/hosts/0`
    /// indexes arrays), as [`Value::pointer`] finds it.
    fn lookup(&self, pointer: &str) -> Option<&Value>;
}

impl Lookup for Value {
    fn lookup(&self, pointer: &str) -> Option<&Value> {
        if pointer.is_empty() {
            return Some(self);
        }
        let tokens = pointer.strip_prefix('/')?;
        tokens.split('/').try_fold(self, |target, token| {
            let token = unescape(token);
            match target {
                Value::Object(map) => map.get(&*token),
                Value::Array(items) => index(&token).and_then(|i| items.get(i)),
                _ => None,
            }
        })
    }
}

/// A token with `~1` and `~0` read as `/` and `~`, in that order (RFC 6901).
fn unescape(token: &str) -> Cow<'_, str> {
    if token.contains('~') { Cow::Owned(token.replace("~1", "/").replace("~0", "~")) } else { Cow::Borrowed(token) }
}

/// An array index as RFC 6901 writes it: digits, no sign, no leading zero.
fn index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() != 1) {
        return None;
    }
    token.parse().ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_lookup_finds_what_serde_json_finds() {
        let value = json!({
            "spec": {"template": {"metadata": {"labels": {"app": "reviews", "a/b": "slash", "m~n": "tilde", "~1": "lit"}}}},
            "list": [{"name": "zero"}, {"name": "one"}],
            "": {"": "empty keys"},
            "n": null,
        });
        let pointers = [
            "",
            "/",
            "//",
            "spec",
            "/spec",
            "/spec/",
            "/spec/template/metadata/labels",
            "/spec/template/metadata/labels/app",
            "/spec/template/metadata/labels/a~1b",
            "/spec/template/metadata/labels/m~0n",
            "/spec/template/metadata/labels/~01",
            "/spec/template/metadata/labels/missing",
            "/list/0/name",
            "/list/1",
            "/list/01",
            "/list/+1",
            "/list/-",
            "/list/2",
            "/list/x",
            "/n",
            "/n/deeper",
            "/spec/template/metadata/labels/app/0",
        ];
        for pointer in pointers {
            assert_eq!(value.lookup(pointer), value.pointer(pointer), "{pointer:?}");
        }
        assert_eq!(value.lookup("/spec/template/metadata/labels/a~1b"), Some(&json!("slash")));
        assert_eq!(value.lookup("/spec/template/metadata/labels/~01"), Some(&json!("lit")));
    }
}
