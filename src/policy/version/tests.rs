use super::*;
use crate::policy::Severity;
use proptest::prelude::*;
use serde_json::json;

fn deployment(raw: Value) -> Object {
    Object::from_value(raw, "default").expect("deployment")
}

fn with_image(image: &str) -> Object {
    deployment(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "reviews-v2", "namespace": "shop"},
        "spec": {
            "selector": {"matchLabels": {"app": "reviews"}},
            "template": {
                "metadata": {"labels": {"app": "reviews"}},
                "spec": {"containers": [{"name": "app", "image": image}]}
            }
        }
    }))
}

fn applied(object: &Object, mutation: &Mutation) -> Object {
    let mut raw = object.raw.clone();
    json_patch::patch(&mut raw, &mutation.patch).expect("patch applies");
    deployment(raw)
}

fn template_label(object: &Object, key: &str) -> Option<String> {
    object
        .raw
        .pointer("/spec/template/metadata/labels")
        .and_then(|l| l.get(key))
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn policy() -> Policy {
    Policy::default()
}

#[test]
fn parses_image_references() {
    let r = parse_image("registry:5000/repo/img:1.2@sha256:abc");
    assert_eq!(r, ImageRef { name: "registry:5000/repo/img", tag: Some("1.2"), digest: Some("sha256:abc") });
    assert_eq!(parse_image("registry:5000/repo/img").tag, None);
    assert_eq!(parse_image("registry:5000/img").name, "registry:5000/img");
    let r = parse_image("img@sha256:abc");
    assert_eq!((r.name, r.tag, r.digest), ("img", None, Some("sha256:abc")));
    assert_eq!(parse_image("docker.io/library/nginx:1.27").tag, Some("1.27"));
    assert_eq!(parse_image("nginx").tag, None);
    assert_eq!(parse_image("nginx:").tag, None);
}

#[test]
fn sanitizes_into_dns_labels() {
    assert_eq!(sanitize("1.16.2").as_deref(), Some("1-16-2"));
    assert_eq!(sanitize("v2").as_deref(), Some("v2"));
    assert_eq!(sanitize("V1.0_RC..1-").as_deref(), Some("v1-0-rc-1"));
    assert_eq!(sanitize("--x--").as_deref(), Some("x"));
    assert_eq!(sanitize("._-"), None);
    let long = sanitize(&format!("{}-.b", "a".repeat(62))).expect("long");
    assert_eq!(long, "a".repeat(62));
    assert!(is_dns1123_label(&sanitize(&"ab.".repeat(40)).expect("x")));
    assert!(is_dns1123_label("1-16-2"));
    assert!(!is_dns1123_label("V1.0"));
    assert!(!is_dns1123_label("-a"));
    assert!(!is_dns1123_label(""));
    assert!(!is_dns1123_label(&"a".repeat(64)));
}

#[test]
fn injects_the_image_tag() {
    let d = with_image("registry:5000/shop/reviews:1.16.2@sha256:0123");
    let m = mutate(&policy(), &d, None);
    let out = applied(&d, &m);
    assert_eq!(template_label(&out, "version").as_deref(), Some("1-16-2"));
    assert_eq!(out.labels().get("version"), Some("1-16-2"));
    assert_eq!(out.annotation(VERSION_SOURCE_ANNOTATION), Some("image:app"));
    assert_eq!(m.findings.len(), 1);
    let f = &m.findings[0];
    assert_eq!((f.code, f.severity), (Code::RG301, Severity::Info));
    assert_eq!(f.path.as_str(), "spec.template.metadata.labels.version");
    assert!(f.message.contains("1-16-2") && f.message.contains("spec.template.spec.containers[0].image"));
    assert_eq!(out.raw["spec"]["selector"], d.raw["spec"]["selector"]);
}

#[test]
fn creates_missing_metadata_and_adds_app() {
    let d = deployment(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "ratings-v1"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "ratings:v1"}]}}, "x-future": 1}
    }));
    let m = mutate(&policy(), &d, None);
    let out = applied(&d, &m);
    assert_eq!(template_label(&out, "version").as_deref(), Some("v1"));
    assert_eq!(template_label(&out, "app").as_deref(), Some("ratings"));
    assert_eq!(out.raw["spec"]["x-future"], 1);
    assert_eq!(out.labels().get("version"), Some("v1"));
    assert_eq!(out.annotation(VERSION_SOURCE_ANNOTATION), Some("image:c"));
}

#[test]
fn does_not_add_app_when_a_name_label_exists() {
    let mut d = with_image("reviews:v2");
    d.raw["spec"]["template"]["metadata"]["labels"] = json!({"app.kubernetes.io/name": "reviews"});
    let out = applied(&d, &mutate(&policy(), &d, None));
    assert_eq!(template_label(&out, "app"), None);
}

#[test]
fn escapes_slashes_in_pointers() {
    let d = with_image("reviews:v2");
    let m = mutate(&policy(), &d, None);
    let text = serde_json::to_string(&m.patch).expect("json");
    assert!(text.contains("/metadata/annotations"), "{text}");
    let mut d = with_image("reviews:v2");
    d.raw["metadata"]["annotations"] = json!({"other": "x"});
    let m = mutate(&policy(), &d, None);
    let text = serde_json::to_string(&m.patch).expect("json");
    assert!(text.contains("/metadata/annotations/routeguard.io~1version-source"), "{text}");
}

#[test]
fn prefers_labels_then_annotation_then_image() {
    let mut d = with_image("reviews:9.9");
    d.raw["metadata"]["annotations"] = json!({VERSION_ANNOTATION: "From.Annotation"});
    let out = applied(&d, &mutate(&policy(), &d, None));
    assert_eq!(template_label(&out, "version").as_deref(), Some("from-annotation"));
    assert_eq!(out.annotation(VERSION_SOURCE_ANNOTATION), Some("annotation"));

    d.raw["spec"]["template"]["metadata"]["labels"]["service.istio.io/canonical-revision"] = json!("rev7");
    let out = applied(&d, &mutate(&policy(), &d, None));
    assert_eq!(template_label(&out, "version").as_deref(), Some("rev7"));

    d.raw["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"] = json!("1.2.3");
    let m = mutate(&policy(), &d, None);
    let out = applied(&d, &m);
    assert_eq!(template_label(&out, "version").as_deref(), Some("1-2-3"));
    assert_eq!(out.annotation(VERSION_SOURCE_ANNOTATION), Some("label:app.kubernetes.io/version"));
    assert!(m.findings[0].message.contains("spec.template.metadata.labels[\"app.kubernetes.io/version\"]"));
}

#[test]
fn version_from_names_the_container() {
    let mut d = with_image("reviews:1.0");
    d.raw["spec"]["template"]["spec"]["containers"] =
        json!([{"name": "proxy", "image": "envoy:1.30"}, {"name": "app", "image": "reviews:2.0"}]);
    let out = applied(&d, &mutate(&policy(), &d, None));
    assert_eq!(template_label(&out, "version").as_deref(), Some("1-30"));
    d.raw["metadata"]["annotations"] = json!({VERSION_FROM_ANNOTATION: "app"});
    let out = applied(&d, &mutate(&policy(), &d, None));
    assert_eq!(template_label(&out, "version").as_deref(), Some("2-0"));
    assert_eq!(out.annotation(VERSION_SOURCE_ANNOTATION), Some("image:app"));
    d.raw["metadata"]["annotations"] = json!({VERSION_FROM_ANNOTATION: "nope"});
    let m = mutate(&policy(), &d, None);
    let out = applied(&d, &m);
    assert_eq!(out.annotation(VERSION_SOURCE_ANNOTATION), Some("hash"));
    assert!(m.findings[0].message.contains("no container is named \"nope\""));
}

#[test]
fn hashes_when_there_is_no_usable_tag() {
    for image in ["reviews", "reviews:latest", "reviews@sha256:abcd", "registry:5000/reviews"] {
        let d = with_image(image);
        let out = applied(&d, &mutate(&policy(), &d, None));
        let v = template_label(&out, "version").expect("version");
        assert!(v.starts_with("r-") && v.len() == 12 && is_dns1123_label(&v), "{v}");
        assert_eq!(out.annotation(VERSION_SOURCE_ANNOTATION), Some("hash"));
    }
    // Deterministic, and independent of field order.
    let a = with_image("reviews");
    let mut b = with_image("reviews");
    b.raw["spec"]["template"]["spec"] = json!({"containers": [{"image": "reviews", "name": "app"}]});
    let va = template_label(&applied(&a, &mutate(&policy(), &a, None)), "version");
    let vb = template_label(&applied(&b, &mutate(&policy(), &b, None)), "version");
    assert_eq!(va, vb);
    let c = with_image("other");
    assert_ne!(va, template_label(&applied(&c, &mutate(&policy(), &c, None)), "version"));
}

#[test]
fn keeps_an_existing_label_and_warns_when_invalid() {
    let mut d = with_image("reviews:2.0");
    d.raw["spec"]["template"]["metadata"]["labels"]["version"] = json!("V1.0");
    let m = mutate(&policy(), &d, None);
    let out = applied(&d, &m);
    assert_eq!(template_label(&out, "version").as_deref(), Some("V1.0"));
    assert_eq!(out.annotation(VERSION_SOURCE_ANNOTATION), Some("label"));
    assert_eq!(m.findings.len(), 1);
    assert_eq!((m.findings[0].code, m.findings[0].severity), (Code::RG302, Severity::Warning));
    assert!(m.findings[0].message.contains("\"V1.0\""));
    assert_eq!(check_deployment(&policy(), &d), m.findings);
    assert!(m.patch.iter().all(|op| !op.path().as_str().starts_with("/spec")));

    d.raw["spec"]["template"]["metadata"]["labels"]["version"] = json!("v1");
    assert!(check_deployment(&policy(), &d).is_empty());
    assert!(mutate(&policy(), &d, None).findings.is_empty());
}

#[test]
fn uses_the_policy_label() {
    let p = Policy { version_label: "track".into(), ..Policy::default() };
    let d = with_image("reviews:v3");
    let out = applied(&d, &mutate(&p, &d, None));
    assert_eq!(template_label(&out, "track").as_deref(), Some("v3"));
    assert_eq!(template_label(&out, "version"), None);
}

#[test]
fn update_without_template_change_keeps_the_template() {
    let old = with_image("reviews:1.0");
    let mut new = old.clone();
    new.raw["spec"]["replicas"] = json!(3);
    assert!(mutate(&policy(), &new, Some(&old)).patch.is_empty());

    new.raw["spec"]["template"]["spec"]["containers"][0]["image"] = json!("reviews:1.1");
    let m = mutate(&policy(), &new, Some(&old));
    assert_eq!(template_label(&applied(&new, &m), "version").as_deref(), Some("1-1"));

    // The usual re-apply of a manifest without the injected label: same value, no roll.
    let live = applied(&old, &mutate(&policy(), &old, None));
    let m = mutate(&policy(), &old, Some(&live));
    assert_eq!(applied(&old, &m).raw["spec"]["template"], live.raw["spec"]["template"]);
}

#[test]
fn ignores_other_kinds_and_templateless_deployments() {
    let svc = Object::from_value(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}), "d")
        .expect("service");
    assert!(mutate(&policy(), &svc, None).patch.is_empty());
    let d = deployment(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}}));
    assert!(mutate(&policy(), &d, None).patch.is_empty());
    let d = deployment(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
        "spec": {"template": {"metadata": {"labels": "oops"}}}}));
    let m = mutate(&policy(), &d, None);
    json_patch::patch(&mut d.raw.clone(), &m.patch).expect("applies");
}

fn arb_deployment() -> impl Strategy<Value = Value> {
    let tag = proptest::option::of("[A-Za-z0-9._-]{0,12}");
    let digest = proptest::option::of(Just("sha256:0123abcd"));
    let registry = proptest::option::of(Just("registry:5000/team/"));
    let label = proptest::option::of("[A-Za-z0-9._-]{0,10}");
    let canonical = proptest::option::of("[A-Za-z0-9._-]{0,10}");
    let annotation = proptest::option::of("[A-Za-z0-9._ /-]{0,10}");
    let app = proptest::option::of("[a-z]{1,6}");
    let meta = any::<(bool, bool)>();
    (tag, digest, registry, label, canonical, annotation, app, meta, "[a-z]{1,8}(-v[0-9])?").prop_map(
        |(tag, digest, registry, label, canonical, annotation, app, (with_meta, with_labels), name)| {
            let mut image = format!("{}img", registry.unwrap_or_default());
            if let Some(t) = tag {
                image = format!("{image}:{t}");
            }
            if let Some(d) = digest {
                image = format!("{image}@{d}");
            }
            let mut labels = Map::new();
            for (k, v) in [("version", label), ("app.kubernetes.io/version", canonical), ("app", app)] {
                if let Some(v) = v {
                    labels.insert(k.to_string(), Value::String(v));
                }
            }
            let mut template = json!({"spec": {"containers": [{"name": "main", "image": image}]}});
            if with_meta {
                template["metadata"] = if with_labels { json!({"labels": labels}) } else { json!({}) };
            }
            let mut metadata = json!({"name": name});
            if let Some(a) = annotation {
                metadata["annotations"] = json!({VERSION_ANNOTATION: a});
            }
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata,
                "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": template}})
        },
    )
}

proptest! {
    #[test]
    fn mutation_is_idempotent(raw in arb_deployment()) {
        let d = deployment(raw);
        let m = mutate(&policy(), &d, None);
        let once = applied(&d, &m);
        prop_assert_eq!(&once.raw["spec"]["selector"], &d.raw["spec"]["selector"]);
        let version = template_label(&once, "version");
        prop_assert!(version.is_some());
        if template_label(&d, "version").is_none() {
            prop_assert!(is_dns1123_label(&version.unwrap_or_default()));
        }
        let again = mutate(&policy(), &once, None);
        prop_assert!(again.patch.is_empty(), "second patch: {}", again.patch);
        let update = mutate(&policy(), &once, Some(&d));
        prop_assert!(update.patch.is_empty(), "update patch: {}", update.patch);
    }
}

/// `kubectl set image` on a Deployment whose version label routeguard injected from the old tag.
fn set_image(annotations: Value, selector_version: bool) -> (Object, Object) {
    let mut old = with_image("reviews:1.16.2");
    let first = mutate(&policy(), &old, None);
    old = applied(&old, &first);
    let mut new = old.clone();
    new.raw["spec"]["template"]["spec"]["containers"][0]["image"] = json!("reviews:1.17.0");
    if let Some(map) = annotations.as_object() {
        for (k, v) in map {
            new.raw["metadata"]["annotations"][k] = v.clone();
        }
    }
    if selector_version {
        new.raw["spec"]["selector"]["matchLabels"]["version"] = json!("1-16-2");
    }
    (old, new)
}

#[test]
fn rg304_warns_when_an_injected_version_no_longer_matches_the_template() {
    let (old, new) = set_image(json!({}), false);
    assert_eq!(template_label(&new, "version").as_deref(), Some("1-16-2"));
    let mutation = mutate(&policy(), &new, Some(&old));
    // The label stays: relabelling would move the pods out of the subset routes use.
    assert!(mutation.patch.0.is_empty(), "{:?}", mutation.patch);
    assert_eq!(mutation.findings.len(), 1, "{:#?}", mutation.findings);
    let f = &mutation.findings[0];
    assert_eq!(
        (f.code, f.severity, f.path.as_str()),
        (Code::RG304, Severity::Warning, "spec.template.metadata.labels.version")
    );
    assert_eq!(
        f.message,
        "spec.template.metadata.labels.version stays \"1-16-2\", which routeguard injected, but the tag of \
         spec.template.spec.containers[0].image (\"reviews:1.17.0\") now gives \"1-17-0\": the pods keep subset \
         \"1-16-2\" and routes to it reach the new pods; to release \"1-17-0\" as its own version create a new \
         deployment for it, or set annotation routeguard.io/version: \"1-17-0\" on this deployment to relabel its \
         pods on purpose"
    );
    // An unchanged template, or the same tag, warns of nothing.
    assert!(mutate(&policy(), &old, Some(&old)).findings.is_empty());
}

#[test]
fn rg304_never_warns_about_a_label_the_user_wrote() {
    let mut old = with_image("reviews:1.16.2");
    old.raw["spec"]["template"]["metadata"]["labels"]["version"] = json!("v1");
    let old = applied(&old, &mutate(&policy(), &old, None));
    assert_eq!(old.annotation(VERSION_SOURCE_ANNOTATION), Some("label"));
    let mut new = old.clone();
    new.raw["spec"]["template"]["spec"]["containers"][0]["image"] = json!("reviews:1.17.0");
    let mutation = mutate(&policy(), &new, Some(&old));
    assert!(mutation.findings.is_empty(), "{:#?}", mutation.findings);
    assert!(mutation.patch.0.is_empty());
    // Nor does the version annotation relabel a user's label.
    new.raw["metadata"]["annotations"][VERSION_ANNOTATION] = json!("v2");
    let mutation = mutate(&policy(), &new, Some(&old));
    assert!(mutation.patch.0.is_empty(), "{:?}", mutation.patch);
}

#[test]
fn the_version_annotation_relabels_an_injected_label_on_purpose() {
    let (old, new) = set_image(json!({VERSION_ANNOTATION: "1.17.0"}), false);
    let mutation = mutate(&policy(), &new, Some(&old));
    let after = applied(&new, &mutation);
    assert_eq!(template_label(&after, "version").as_deref(), Some("1-17-0"));
    assert_eq!(after.labels().get("version"), Some("1-17-0"));
    assert_eq!(after.annotation(VERSION_SOURCE_ANNOTATION), Some("annotation"));
    let codes: Vec<Code> = mutation.findings.iter().map(|f| f.code).collect();
    assert_eq!(codes, [Code::RG301]);
    assert!(mutation.findings[0].message.contains("relabelled \"1-17-0\""), "{}", mutation.findings[0].message);
    // Idempotent: mutating the relabelled object again changes nothing and warns of nothing.
    let again = mutate(&policy(), &after, Some(&after));
    assert!(again.patch.0.is_empty() && again.findings.is_empty(), "{again:?}");

    // A selector that pins the version label cannot follow a relabel: warn instead.
    let (old, new) = set_image(json!({VERSION_ANNOTATION: "1.17.0"}), true);
    let mutation = mutate(&policy(), &new, Some(&old));
    assert!(mutation.patch.0.is_empty(), "{:?}", mutation.patch);
    assert_eq!(mutation.findings.iter().map(|f| f.code).collect::<Vec<_>>(), [Code::RG304]);
}
