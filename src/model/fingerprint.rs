//! A fingerprint of a JSON value, for telling whether two values are equal
//! without keeping either.
//!
//! RG113 only asks whether two DestinationRules' `trafficPolicy` differ. A
//! `serde_json::Value` of one costs a few hundred bytes and a dozen
//! allocations in every snapshot entry; its fingerprint is 16 bytes, read in
//! one pass over the input with no allocation.

use std::fmt;

use xxhash_rust::xxh3::{Xxh3, xxh3_128};

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// 128 bits of XXH3 over a JSON value. Maps are hashed
/// regardless of their keys' order (as `Value`s compare them); numbers keep
/// their type (`1` and `1.0` differ, as they do as `Value`s). Two different
/// values collide with a chance of about 2^-128.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(u128);

/// One 128-bit hash of a tag and some bytes, in one pass (XXH3-128: the two
/// 64-bit SipHashes it replaced made hashing most of what reading a
/// DestinationRule's `trafficPolicy` cost). Not keyed, as `DefaultHasher::new()`
/// was not: a fingerprint tells values apart, it is not a secret.
fn hash(tag: u8, parts: &[&[u8]]) -> u128 {
    // Most inputs (a scalar, two fingerprints) fit a buffer on the stack and
    // are hashed in one call; the streaming state is for long strings.
    let mut short = [0u8; SHORT];
    let mut len = 0;
    let mut put = |bytes: &[u8]| -> bool {
        let Some(slot) = short.get_mut(len..len + bytes.len()) else { return false };
        slot.copy_from_slice(bytes);
        len += bytes.len();
        true
    };
    let fits = put(&[tag]) && parts.iter().all(|part| put(&part.len().to_le_bytes()) && put(part));
    if fits {
        return xxh3_128(&short[..len]);
    }
    let mut hasher = Xxh3::new();
    hasher.update(&[tag]);
    for part in parts {
        hasher.update(&part.len().to_le_bytes());
        hasher.update(part);
    }
    hasher.digest128()
}

/// The longest input hashed from the stack (tag, lengths and bytes).
const SHORT: usize = 128;

impl Fingerprint {
    /// The fingerprint of a parsed value: the same as reading its text.
    pub fn of(value: &serde_json::Value) -> Fingerprint {
        use serde_json::Value;
        match value {
            Value::Null => null(),
            Value::Bool(b) => boolean(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => unsigned(u),
                (None, Some(i)) => signed(i),
                (None, None) => float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => string(s),
            Value::Array(items) => Fingerprint(items.iter().map(Fingerprint::of).fold(SEQ_START, push)),
            Value::Object(map) => Fingerprint::of_map(map.iter().map(|(k, v)| (k.as_str(), Fingerprint::of(v)))),
        }
    }

    /// The fingerprint of a JSON object with these entries (keys unique, in
    /// any order): what [`Fingerprint::of`] gives the map, from the entries'
    /// own fingerprints, so a caller can leave some out or read some otherwise.
    pub fn of_map<'a>(entries: impl IntoIterator<Item = (&'a str, Fingerprint)>) -> Fingerprint {
        let (sum, len) = entries
            .into_iter()
            .fold((0u128, 0u64), |(sum, len), (k, v)| (sum.wrapping_add(entry(string(k), v)), len + 1));
        close_map(sum, len)
    }
}

fn null() -> Fingerprint {
    Fingerprint(hash(b'n', &[]))
}

fn boolean(v: bool) -> Fingerprint {
    Fingerprint(hash(b'b', &[&[u8::from(v)]]))
}

fn unsigned(v: u64) -> Fingerprint {
    Fingerprint(hash(b'u', &[&v.to_le_bytes()]))
}

fn signed(v: i64) -> Fingerprint {
    // serde_json gives non-negative integers as u64 whatever their source.
    match u64::try_from(v) {
        Ok(v) => unsigned(v),
        Err(_) => Fingerprint(hash(b'i', &[&v.to_le_bytes()])),
    }
}

fn float(v: f64) -> Fingerprint {
    // -0.0 == 0.0 as `Value`s compare them; their bytes differ.
    let v = if v == 0.0 { 0.0 } else { v };
    Fingerprint(hash(b'f', &[&v.to_le_bytes()]))
}

fn string(v: &str) -> Fingerprint {
    Fingerprint(hash(b's', &[v.as_bytes()]))
}

/// A list folds each element, in order, into the hash of those before it.
const SEQ_START: u128 = 0x5b;

fn push(acc: u128, Fingerprint(item): Fingerprint) -> u128 {
    hash(b',', &[&acc.to_le_bytes(), &item.to_le_bytes()])
}

/// A map adds up its entries' hashes: the same whatever their order.
fn entry(Fingerprint(key): Fingerprint, Fingerprint(value): Fingerprint) -> u128 {
    hash(b':', &[&key.to_le_bytes(), &value.to_le_bytes()])
}

fn close_map(sum: u128, len: u64) -> Fingerprint {
    Fingerprint(hash(b'{', &[&sum.to_le_bytes(), &len.to_le_bytes()]))
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Fingerprint, D::Error> {
        Reader.deserialize(deserializer)
    }
}

struct Reader;

impl<'de> DeserializeSeed<'de> for Reader {
    type Value = Fingerprint;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Fingerprint, D::Error> {
        deserializer.deserialize_any(Reader)
    }
}

impl<'de> Visitor<'de> for Reader {
    type Value = Fingerprint;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Fingerprint, E> {
        Ok(null())
    }

    fn visit_bool<E>(self, v: bool) -> Result<Fingerprint, E> {
        Ok(boolean(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Fingerprint, E> {
        Ok(unsigned(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Fingerprint, E> {
        Ok(signed(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Fingerprint, E> {
        Ok(float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Fingerprint, E> {
        Ok(string(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Fingerprint, A::Error> {
        let mut acc = SEQ_START;
        while let Some(item) = seq.next_element_seed(Reader)? {
            acc = push(acc, item);
        }
        Ok(Fingerprint(acc))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fingerprint, A::Error> {
        let (mut sum, mut len) = (0u128, 0u64);
        while let Some(key) = map.next_key_seed(Reader)? {
            sum = sum.wrapping_add(entry(key, map.next_value_seed(Reader)?));
            len += 1;
        }
        Ok(close_map(sum, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn of(value: serde_json::Value) -> Fingerprint {
        // Through the `&Value` deserializer (what typed specs use) and from text.
        let from_value = Fingerprint::deserialize(&value).expect("fingerprint");
        let from_text: Fingerprint = serde_json::from_str(&value.to_string()).expect("fingerprint");
        assert_eq!(from_value, from_text, "{value}");
        assert_eq!(Fingerprint::of(&value), from_value, "{value}");
        if let Some(map) = value.as_object() {
            let entries = map.iter().map(|(k, v)| (k.as_str(), Fingerprint::of(v)));
            assert_eq!(Fingerprint::of_map(entries), from_value, "{value}");
        }
        from_value
    }

    #[test]
    fn short_and_long_inputs_hash_as_their_concatenation() {
        // The tag and the length take 9 bytes: up to SHORT - 9 bytes of text fit the stack.
        for n in [0, 10, SHORT - 10, SHORT - 9, SHORT - 8, SHORT, 1000] {
            let text = "x".repeat(n);
            let mut whole = vec![b's'];
            whole.extend_from_slice(&text.len().to_le_bytes());
            whole.extend_from_slice(text.as_bytes());
            assert_eq!(hash(b's', &[text.as_bytes()]), xxh3_128(&whole), "{n} bytes");
        }
    }

    #[test]
    fn equal_values_have_equal_fingerprints_whatever_the_key_order() {
        let a = json!({"tls": {"mode": "ISTIO_MUTUAL"}, "loadBalancer": {"simple": "LEAST_REQUEST", "x": [1, 2]}});
        let b = json!({"loadBalancer": {"x": [1, 2], "simple": "LEAST_REQUEST"}, "tls": {"mode": "ISTIO_MUTUAL"}});
        assert_eq!(a, b);
        assert_eq!(of(a), of(b));
        // Negative zero equals zero as a `Value`, and so as a fingerprint.
        let (zero, negative) = (json!({"w": 0.0}), json!({"w": -0.0}));
        assert_eq!(zero, negative);
        assert_eq!(of(zero), of(negative));
    }

    #[test]
    fn values_that_differ_as_values_differ() {
        let distinct = [
            json!(null),
            json!(true),
            json!(false),
            json!(1),
            json!(-1),
            json!(1.0),
            json!("1"),
            json!(""),
            json!([]),
            json!({}),
            json!([1, 2]),
            json!([2, 1]),
            json!([[1], 2]),
            json!([1, [2]]),
            json!({"a": 1, "b": 2}),
            json!({"a": 2, "b": 1}),
            json!({"a": {"b": 1}}),
            json!({"a": {"b": 2}}),
            json!({"a": 1}),
            json!({"a": 1, "c": null}),
        ];
        for (i, a) in distinct.iter().enumerate() {
            for b in &distinct[i + 1..] {
                assert_ne!(a, b);
                assert_ne!(of(a.clone()), of(b.clone()), "{a} and {b}");
            }
        }
    }
}
