//! Version labels on Deployments: the mutation (RG301) and its validity (RG302).
//!
//! Istio subsets select pods by a version label (the policy's `versionLabel`,
//! `version` by default). When a Deployment's pod template has none, the
//! mutation derives one, in this order:
//!
//! 1. the label already on the template (kept as it is, never rewritten);
//! 2. the template label `app.kubernetes.io/version`, then
//!    `service.istio.io/canonical-revision`;
//! 3. the Deployment annotation `routeguard.io/version`;
//! 4. the image tag of the first container, or of the container that the
//!    annotation `routeguard.io/version-from` names;
//! 5. `r-` and 10 hex digits of the SHA-256 of the canonical JSON of
//!    `spec.template.spec`, when there is no usable tag (none, `latest`, or a
//!    digest only).
//!
//! Values from 2 to 4 are [`sanitize`]d into DNS-1123 labels. The patch is a
//! JSON Patch against the object's original JSON: it adds the label to the
//! template (creating `metadata` / `labels` when missing), mirrors it on the
//! Deployment's own labels, adds `app` to the template when it has neither
//! `app` nor `app.kubernetes.io/name`, and records where the value came from
//! in the annotation `routeguard.io/version-source`. `spec.selector` is never
//! touched. The mutation is idempotent: mutating the patched object again
//! yields an empty patch.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::model::{FieldPath, Kind, Labels, Lookup as _, Object, string_map};

use super::finding::Code;
use super::{Finding, Mutation, Policy};

/// Deployment annotation that gives the version explicitly.
pub const VERSION_ANNOTATION: &str = "routeguard.io/version";
/// Deployment annotation naming the container whose image tag gives the version.
pub const VERSION_FROM_ANNOTATION: &str = "routeguard.io/version-from";
/// Deployment annotation where the mutation records the source of the version.
pub const VERSION_SOURCE_ANNOTATION: &str = "routeguard.io/version-source";
/// Template labels read as the version when the version label is missing, in order.
pub const FALLBACK_LABELS: [&str; 2] = ["app.kubernetes.io/version", "service.istio.io/canonical-revision"];

/// The longest DNS-1123 label.
const MAX_LABEL: usize = 63;

/// True when `s` is a DNS-1123 label, which Istio requires of subset names:
/// 1 to 63 lowercase letters, digits or `-`, starting and ending with a letter or digit.
pub fn is_dns1123_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= MAX_LABEL
        && bytes.iter().all(|b| alnum(b) || *b == b'-')
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
}

/// Turns any text into a DNS-1123 label: lowercased, every character outside
/// `[a-z0-9-]` replaced by `-`, runs of `-` collapsed, `-` trimmed from both
/// ends, at most 63 characters. `None` when nothing is left.
///
/// `1.16.2` becomes `1-16-2`; `v2` stays `v2`.
pub fn sanitize(raw: &str) -> Option<String> {
    let mut out = String::new();
    for c in raw.chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
    }
    // Only ASCII was pushed, so byte truncation is on a character boundary.
    out.truncate(MAX_LABEL);
    while out.ends_with('-') {
        out.pop();
    }
    (!out.is_empty()).then_some(out)
}

/// A container image reference split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageRef<'a> {
    /// Registry and repository (`registry:5000/repo/img`).
    pub name: &'a str,
    /// The tag, when one is written (`1.16.2`).
    pub tag: Option<&'a str>,
    /// The digest, when one is written (`sha256:...`).
    pub digest: Option<&'a str>,
}

/// Parses an image reference. A colon in the registry part is a port, not a
/// tag: `registry:5000/repo/img` has no tag; `registry:5000/repo/img:tag@sha256:...`
/// has both a tag and a digest; `img@sha256:...` has a digest only.
pub fn parse_image(image: &str) -> ImageRef<'_> {
    let image = image.trim();
    let (named, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d).filter(|d| !d.is_empty())),
        None => (image, None),
    };
    // The tag can only be in the last path segment.
    let last_start = named.rfind('/').map_or(0, |i| i + 1);
    match named[last_start..].rfind(':') {
        Some(i) => {
            let colon = last_start + i;
            let tag = &named[colon + 1..];
            ImageRef { name: &named[..colon], tag: Some(tag).filter(|t| !t.is_empty()), digest }
        }
        None => ImageRef { name: named, tag: None, digest },
    }
}

/// Where a version value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// The version label already on the template.
    Label,
    /// One of [`FALLBACK_LABELS`] on the template.
    TemplateLabel(&'static str),
    /// The [`VERSION_ANNOTATION`] annotation.
    Annotation,
    /// The image tag of a container (its name).
    Image(String),
    /// A hash of the pod spec.
    Hash,
}

impl Source {
    /// The value recorded in [`VERSION_SOURCE_ANNOTATION`].
    fn annotation_value(&self) -> String {
        match self {
            Source::Label => "label".to_string(),
            Source::TemplateLabel(l) => format!("label:{l}"),
            Source::Annotation => "annotation".to_string(),
            Source::Image(container) => format!("image:{container}"),
            Source::Hash => "hash".to_string(),
        }
    }
}

/// A derived version, with a description of its origin for messages.
#[derive(Debug, Clone)]
struct Derived {
    value: String,
    source: Source,
    origin: String,
}

fn template_labels_path() -> FieldPath {
    FieldPath::new("spec.template.metadata.labels")
}

/// Derives the version of a template without a version label (steps 2 to 5).
fn derive(object: &Object, template: &Value, labels: &Labels) -> Derived {
    for label in FALLBACK_LABELS {
        if let Some(raw) = labels.get(label)
            && let Some(value) = sanitize(raw)
        {
            let origin = format!("template label {} ({raw:?})", template_labels_path().key(label));
            return Derived { value, source: Source::TemplateLabel(label), origin };
        }
    }
    if let Some(raw) = object.annotation(VERSION_ANNOTATION)
        && let Some(value) = sanitize(raw)
    {
        let path = FieldPath::new("metadata.annotations").key(VERSION_ANNOTATION);
        return Derived { value, source: Source::Annotation, origin: format!("annotation {path} ({raw:?})") };
    }

    let containers = template.lookup("/spec/containers").and_then(Value::as_array).map(Vec::as_slice);
    let containers = containers.unwrap_or_default();
    let wanted = object.annotation(VERSION_FROM_ANNOTATION);
    let chosen = match wanted {
        Some(name) => containers.iter().position(|c| c.get("name").and_then(Value::as_str) == Some(name)),
        None => (!containers.is_empty()).then_some(0),
    };
    let why_hash = match chosen.and_then(|i| containers.get(i).map(|c| (i, c))) {
        Some((index, container)) => {
            let image = container.get("image").and_then(Value::as_str).unwrap_or_default();
            let name = container.get("name").and_then(Value::as_str).unwrap_or_default();
            let path = FieldPath::new("spec.template.spec.containers").index(index).key("image");
            let parsed = parse_image(image);
            match parsed.tag {
                Some(tag) if !tag.eq_ignore_ascii_case("latest") => {
                    if let Some(value) = sanitize(tag) {
                        let label = if name.is_empty() { format!("containers[{index}]") } else { name.to_string() };
                        let origin = format!("the tag of {path} ({image:?})");
                        return Derived { value, source: Source::Image(label), origin };
                    }
                    format!("the tag of {path} ({image:?}) has no letter or digit")
                }
                Some(_) => format!("{path} ({image:?}) has the tag latest"),
                None if parsed.digest.is_some() => format!("{path} ({image:?}) has a digest and no tag"),
                None => format!("{path} ({image:?}) has no tag"),
            }
        }
        None => match wanted {
            Some(name) => format!(
                "no container is named {name:?} as {} says",
                FieldPath::new("metadata.annotations").key(VERSION_FROM_ANNOTATION)
            ),
            None => "the pod template has no containers".to_string(),
        },
    };
    let spec = template.get("spec").unwrap_or(&Value::Null);
    Derived {
        value: spec_hash(spec),
        source: Source::Hash,
        origin: format!("a hash of spec.template.spec, because {why_hash}"),
    }
}

/// `r-` and the first 10 hex digits of the SHA-256 of the canonical JSON of `spec`.
fn spec_hash(spec: &Value) -> String {
    let mut text = String::new();
    canonical_json(spec, &mut text);
    let digest = Sha256::digest(text.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("r-{}", &hex[..10])
}

/// Writes JSON with object keys sorted and no whitespace, so that equal values
/// give equal text whatever the order of their fields.
fn canonical_json(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical_json(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Appends the operations that make the object at `parent` (a path of keys)
/// contain `entries`. Missing or null parents are created with one `add` of
/// the whole nested object (an `add` below a missing parent would fail);
/// entries that already hold the value are left alone. Nothing is done when
/// some part of the path holds something other than an object.
fn set_entries(raw: &Value, parent: &[&str], entries: &[(&str, Value)], ops: &mut Vec<PatchOperation>) {
    if entries.is_empty() {
        return;
    }
    let mut current = raw;
    for (depth, token) in parent.iter().enumerate() {
        let Some(map) = current.as_object() else { return };
        match map.get(*token) {
            Some(next) if next.is_object() => current = next,
            None | Some(Value::Null) => {
                let mut value = Value::Object(entries.iter().map(|(k, v)| (k.to_string(), v.clone())).collect());
                for inner in parent[depth + 1..].iter().rev() {
                    value = Value::Object(Map::from_iter([(inner.to_string(), value)]));
                }
                let path = PointerBuf::from_tokens(parent[..=depth].iter().copied());
                ops.push(PatchOperation::Add(AddOperation { path, value }));
                return;
            }
            Some(_) => return,
        }
    }
    let Some(map) = current.as_object() else { return };
    for (key, value) in entries {
        let path = PointerBuf::from_tokens(parent.iter().copied().chain([*key]));
        match map.get(*key) {
            Some(existing) if existing == value => {}
            Some(_) => ops.push(PatchOperation::Replace(ReplaceOperation { path, value: value.clone() })),
            None => ops.push(PatchOperation::Add(AddOperation { path, value: value.clone() })),
        }
    }
}

/// The value of `app` for a Deployment: its name without a trailing
/// `-<version>`, made a valid label value. `None` when nothing usable is left.
fn app_name(deployment: &str, version: &str) -> Option<String> {
    let base = deployment.strip_suffix(version).and_then(|s| s.strip_suffix('-')).filter(|s| !s.is_empty());
    let mut name: String = base.unwrap_or(deployment).chars().take(MAX_LABEL).collect();
    while name.ends_with(|c: char| !c.is_ascii_alphanumeric()) {
        name.pop();
    }
    (!name.is_empty()).then_some(name)
}

/// The RG302 finding for a template version label that is not a subset name.
fn invalid_version(policy: &Policy, object: &Object, value: &Value) -> Option<Finding> {
    let key = policy.version_label.as_str();
    let path = template_labels_path().key(key);
    let message = match value {
        Value::String(v) if is_dns1123_label(v) => return None,
        Value::String(v) => {
            let hint = sanitize(v).map(|s| format!(", such as {s:?}")).unwrap_or_default();
            format!(
                "{path} is {v:?}, which is not a valid istio subset name: expected a dns-1123 label (at most 63 \
                 lowercase letters, digits or '-', starting and ending with a letter or digit){hint}"
            )
        }
        other => format!("{path} is {other}, not a string: expected a dns-1123 label such as \"v1\""),
    };
    Some(Finding::new(Code::RG302, &object.key, path, message))
}

/// The template's version label as written, when present and not null.
fn template_version<'a>(policy: &Policy, object: &'a Object) -> Option<&'a Value> {
    object
        .raw
        .lookup("/spec/template/metadata/labels")
        .and_then(|labels| labels.get(&policy.version_label))
        .filter(|v| !v.is_null())
}

/// The JSON Patch that gives a Deployment's pod template its version label.
///
/// An UPDATE (`old` given) whose `spec.template` equals the old one gets no
/// template change, since changing the template would roll the pods; if the
/// template has no version label then, the patch is empty. A template that
/// already has the label keeps it: the patch at most mirrors it on the
/// Deployment's labels, records the source `label` when no source is
/// recorded, and adds a missing `app` label; an invalid value gives RG302.
/// An injected label gives RG301.
pub fn mutate(policy: &Policy, object: &Object, old: Option<&Object>) -> Mutation {
    let mut mutation = Mutation::default();
    let key = policy.version_label.as_str();
    if object.kind() != Kind::Deployment || key.is_empty() {
        return mutation;
    }
    let Some(template) = object.raw.lookup("/spec/template").filter(|t| t.is_object()) else {
        return mutation;
    };
    let template_changed = old.is_none_or(|o| o.raw.lookup("/spec/template") != Some(template));
    let labels = string_map(template.lookup("/metadata/labels"));

    // `relabel`: an injected label replaced on purpose, which changes the template even when nothing else did.
    let (value, derived, relabel) = match template_version(policy, object) {
        Some(Value::String(existing)) => match relabelled(policy, object, existing) {
            Some(relabel) => (relabel.value.clone(), Some(relabel), true),
            None => (existing.clone(), None, false),
        },
        Some(other) => {
            mutation.findings.extend(invalid_version(policy, object, other));
            return mutation;
        }
        None if !template_changed => return mutation,
        None => {
            let derived = derive(object, template, &labels);
            (derived.value.clone(), Some(derived), false)
        }
    };

    let mut ops = Vec::new();
    if template_changed || relabel {
        let mut entries: Vec<(&str, Value)> = Vec::new();
        if derived.is_some() {
            entries.push((key, Value::String(value.clone())));
        }
        if key != "app"
            && !labels.contains_key("app")
            && !labels.contains_key("app.kubernetes.io/name")
            && let Some(app) = app_name(object.name(), &value)
        {
            entries.push(("app", Value::String(app)));
        }
        set_entries(&object.raw, &["spec", "template", "metadata", "labels"], &entries, &mut ops);
    }

    let own_label = object.labels().get(key).map(str::to_string);
    if own_label.is_none() || (derived.is_some() && own_label.as_deref() != Some(value.as_str())) {
        set_entries(&object.raw, &["metadata", "labels"], &[(key, Value::String(value.clone()))], &mut ops);
    }

    let source = match &derived {
        Some(d) => Some(d.source.annotation_value()),
        None => object.annotation(VERSION_SOURCE_ANNOTATION).is_none().then(|| Source::Label.annotation_value()),
    };
    if let Some(source) = source {
        let entry = [(VERSION_SOURCE_ANNOTATION, Value::String(source))];
        set_entries(&object.raw, &["metadata", "annotations"], &entry, &mut ops);
    }

    match &derived {
        Some(d) => {
            let path = template_labels_path().key(key);
            let message = if relabel {
                format!("{path} relabelled {:?} from {}; subsets select pods by this label", d.value, d.origin)
            } else {
                format!(
                    "{path} was missing: injected {:?} from {}; subsets select pods by this label",
                    d.value, d.origin
                )
            };
            mutation.findings.push(Finding::new(Code::RG301, &object.key, path, message));
        }
        None => {
            if template_changed {
                mutation.findings.extend(drift(object, template, &labels, key, &value));
            }
            mutation.findings.extend(invalid_version(policy, object, &Value::String(value)));
        }
    }
    mutation.patch = Patch(ops);
    mutation
}

/// True when routeguard injected the template's version label: the source
/// annotation records a source other than a label the user wrote.
fn injected(object: &Object) -> bool {
    object.annotation(VERSION_SOURCE_ANNOTATION).is_some_and(|s| s != Source::Label.annotation_value())
}

/// The version that [`VERSION_ANNOTATION`] asks for, when derivation picks
/// it (no template fallback label outranks it) and it differs from the
/// injected `existing` label: a relabel on purpose. Never for a label the
/// user wrote, nor when `spec.selector` pins the version label (changing it
/// would no longer match the selector, which cannot change).
fn relabelled(policy: &Policy, object: &Object, existing: &str) -> Option<Derived> {
    let pinned = object.raw.lookup("/spec/selector/matchLabels").and_then(|m| m.get(&policy.version_label)).is_some();
    if !injected(object) || pinned || object.annotation(VERSION_ANNOTATION).is_none() {
        return None;
    }
    let template = object.raw.lookup("/spec/template")?;
    let wanted = derive(object, template, &string_map(template.lookup("/metadata/labels")));
    (wanted.source == Source::Annotation && wanted.value != existing)
        .then(|| Derived { origin: format!("{}, replacing {existing:?}", wanted.origin), ..wanted })
}

/// RG304: the template keeps a version label routeguard injected while the
/// changed template would give another version (`kubectl set image` to a new tag).
fn drift(object: &Object, template: &Value, labels: &Labels, key: &str, existing: &str) -> Option<Finding> {
    if !injected(object) {
        return None;
    }
    let now = derive(object, template, labels);
    if now.value == existing {
        return None;
    }
    let path = template_labels_path().key(key);
    let message = format!(
        "{path} stays {existing:?}, which routeguard injected, but {} now gives {:?}: the pods keep subset \
         {existing:?} and routes to it reach the new pods; to release {:?} as its own version create a new \
         deployment for it, or set annotation {VERSION_ANNOTATION}: {:?} on this deployment to relabel its pods on \
         purpose",
        now.origin, now.value, now.value, now.value
    );
    Some(Finding::new(Code::RG304, &object.key, path, message))
}

/// RG302 when the Deployment's version label is not a valid subset name.
pub fn check_deployment(policy: &Policy, object: &Object) -> Vec<Finding> {
    if object.kind() != Kind::Deployment || policy.version_label.is_empty() {
        return Vec::new();
    }
    template_version(policy, object).and_then(|v| invalid_version(policy, object, v)).into_iter().collect()
}

#[cfg(test)]
#[path = "version/tests.rs"]
mod tests;
