//! The scenarios under `examples/` behave as `examples/README.md` documents.
//!
//! Every good folder checks clean (no finding at all, exit 0), every broken
//! folder has exactly the findings listed here (code, severity, object, field
//! path, file and line) and exits 1 when one of them is an error, 0 when they
//! are all warnings (as `check` does), the embedded cluster state `examples/cluster` checks
//! clean, the example policy file is accepted, and `render` prints the objects
//! routeguard generates for bookinfo. The real binary is run, from the crate
//! root, so file names in findings are `examples/...` as in the README.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_routeguard");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Folders that must check clean: the cluster state and every good variant.
const GOOD: &[&str] = &[
    "cluster",
    "bookinfo-canary/good-80-20",
    "bookinfo-canary/good-50-50",
    "bookinfo-canary/good-100",
    "dark-launch/good",
    "mirroring/good",
    "gateway-api-shift/good",
    "gateway-api-shift/good-start",
    "canary-service/good",
    "service-entry-export/good",
    "unreachable-routes/good",
    "destination-ports/good",
    "conflicting-routes/good",
    "unused-destination-rule/good",
    "duplicate-destination-rules/good",
    "missing-gateway/good",
];

/// One finding a broken folder must produce.
struct Expected {
    code: &'static str,
    /// `error` or `warning`.
    severity: &'static str,
    namespace: &'static str,
    kind: &'static str,
    name: &'static str,
    path: &'static str,
    /// The file inside the folder.
    file: &'static str,
    line: u64,
    /// Words the message must contain (the wrong value, and what exists instead).
    says: &'static [&'static str],
}

const fn e(
    code: &'static str,
    kind: &'static str,
    name: &'static str,
    path: &'static str,
    file: &'static str,
    line: u64,
    says: &'static [&'static str],
) -> Expected {
    Expected { code, severity: "error", namespace: "default", kind, name, path, file, line, says }
}

/// [`e`] for a finding that is a warning.
const fn warning(expected: Expected) -> Expected {
    Expected { severity: "warning", ..expected }
}

/// [`e`] for an object outside namespace `default`.
const fn e_in(namespace: &'static str, expected: Expected) -> Expected {
    Expected { namespace, ..expected }
}

/// Every broken folder and exactly what it must produce, in report order (file, line, code).
const BROKEN: &[(&str, &[Expected])] = &[
    (
        "bookinfo-canary/broken",
        &[
            e(
                "RG103",
                "VirtualService",
                "reviews",
                "spec.http[0].route[0].destination.subset",
                "reviews-virtualservice.yaml",
                23,
                &["\"v4\"", "v1, v2, v3"],
            ),
            e(
                "RG101",
                "VirtualService",
                "reviews",
                "spec.http[1].route",
                "reviews-virtualservice.yaml",
                24,
                &["90", "70 + 20", "100"],
            ),
        ],
    ),
    (
        "dark-launch/broken",
        &[e(
            "RG106",
            "VirtualService",
            "catalog",
            "spec.http[0].match[1].headers.x-dark-launch.regex",
            "catalog-virtualservice.yaml",
            21,
            &["^v2(?!-rc).*$", "x-dark-launch", "look-around"],
        )],
    ),
    (
        "mirroring/broken",
        &[
            e(
                "RG103",
                "VirtualService",
                "httpbin",
                "spec.http[0].mirror.subset",
                "httpbin-virtualservice.yaml",
                22,
                &["\"v3\"", "v1, v2"],
            ),
            e(
                "RG105",
                "VirtualService",
                "httpbin",
                "spec.http[0].mirrorPercentage.value",
                "httpbin-virtualservice.yaml",
                24,
                &["150", "0 to 100"],
            ),
        ],
    ),
    (
        "gateway-api-shift/broken",
        &[
            e(
                "RG107",
                "HTTPRoute",
                "customers",
                "spec.rules[0].backendRefs[0].name",
                "customers-httproute.yaml",
                24,
                &["customers-v3"],
            ),
            e(
                "RG101",
                "HTTPRoute",
                "customers",
                "spec.rules[1].backendRefs",
                "customers-httproute.yaml",
                26,
                &["110", "90 + 20", "100"],
            ),
        ],
    ),
    (
        "canary-service/broken",
        &[e(
            "RG104",
            "VirtualService",
            "checkout",
            "spec.http[1].route[1].destination.host",
            "checkout-virtualservice.yaml",
            28,
            &["checkout-canery"],
        )],
    ),
    (
        "service-entry-export/broken",
        &[
            e_in(
                "billing",
                e("RG104", "ServiceEntry", "everything", "spec.hosts[0]", "ledger-serviceentry.yaml", 33, &["\"*\""]),
            ),
            e_in(
                "shop",
                e(
                    "RG104",
                    "VirtualService",
                    "ledger",
                    "spec.http[0].route[0].destination.host",
                    "ledger-virtualservice.yaml",
                    22,
                    &["ledger.billing.svc.cluster.local", "serviceentry billing/ledger-vm", "exportTo [.]", "shop"],
                ),
            ),
        ],
    ),
    (
        "unreachable-routes/broken",
        &[warning(e(
            "RG109",
            "VirtualService",
            "ratings",
            "spec.http[1]",
            "ratings-virtualservice.yaml",
            19,
            &["(\"jason\") is never used", "spec.http[0] (\"default\")"],
        ))],
    ),
    (
        "destination-ports/broken",
        &[
            e(
                "RG110",
                "VirtualService",
                "orders",
                "spec.http[0].route[0].destination.port",
                "orders-virtualservice.yaml",
                17,
                &["service default/orders", "8080 (http), 9090 (grpc)"],
            ),
            e(
                "RG110",
                "VirtualService",
                "orders",
                "spec.http[0].route[1].destination.port.number",
                "orders-virtualservice.yaml",
                25,
                &["port 80", "8080 (http), 9090 (grpc)"],
            ),
        ],
    ),
    (
        "conflicting-routes/broken",
        &[
            e(
                "RG111",
                "VirtualService",
                "cart-beta",
                "spec.hosts[0]",
                "cart-beta-virtualservice.yaml",
                11,
                &["cart.default.svc.cluster.local", "virtualservice default/cart,"],
            ),
            e(
                "RG111",
                "VirtualService",
                "cart",
                "spec.hosts[0]",
                "cart-virtualservice.yaml",
                11,
                &["cart.default.svc.cluster.local", "virtualservice default/cart-beta"],
            ),
        ],
    ),
    (
        "unused-destination-rule/broken",
        &[warning(e(
            "RG112",
            "DestinationRule",
            "inventory",
            "spec.host",
            "inventory-destinationrule.yaml",
            10,
            &["inventroy.default.svc.cluster.local", "namespace default"],
        ))],
    ),
    (
        "duplicate-destination-rules/broken",
        &[
            warning(e(
                "RG113",
                "DestinationRule",
                "payments-canary",
                "spec.trafficPolicy",
                "payments-canary-destinationrule.yaml",
                14,
                &["destinationrule default/payments is older"],
            )),
            e(
                "RG113",
                "DestinationRule",
                "payments-canary",
                "spec.subsets[1].name",
                "payments-canary-destinationrule.yaml",
                22,
                &["\"v2\"", "{version=v3} here and {version=v2}", "destinationrule default/payments,"],
            ),
            warning(e(
                "RG113",
                "DestinationRule",
                "payments",
                "spec.trafficPolicy",
                "payments.yaml",
                109,
                &["destinationrule default/payments-canary is ignored"],
            )),
            e(
                "RG113",
                "DestinationRule",
                "payments",
                "spec.subsets[1].name",
                "payments.yaml",
                118,
                &["\"v2\"", "keeps this one", "destinationrule default/payments-canary is ignored"],
            ),
        ],
    ),
    (
        "missing-gateway/broken",
        &[
            e(
                "RG114",
                "HTTPRoute",
                "storefront-api",
                "spec.parentRefs[0].name",
                "storefront-httproute.yaml",
                11,
                &["gateway api gateway default/web", "does not exist"],
            ),
            e(
                "RG114",
                "VirtualService",
                "storefront",
                "spec.gateways[0]",
                "storefront-virtualservice.yaml",
                13,
                &["no istio gateway istio-ingress/public-gatway", "did you mean \"istio-ingress/public-gateway\"?"],
            ),
        ],
    ),
];

fn routeguard(args: &[&str]) -> Output {
    let out = Command::new(BIN).args(args).current_dir(ROOT).output().expect("routeguard runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "routeguard {args:?} panicked:\n{stderr}");
    out
}

/// `check --output json` on a folder of examples: the exit code and the findings.
fn check_json(folder: &str, extra: &[&str]) -> (i32, Vec<Value>) {
    let path = format!("examples/{folder}");
    let mut args = vec!["check", "--output", "json"];
    args.extend_from_slice(extra);
    args.push(&path);
    let out = routeguard(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let findings: Vec<Value> = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "check {path}: stdout is not a JSON array ({e}):\n{stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().expect("exit code"), findings)
}

fn show(findings: &[Value]) -> String {
    serde_json::to_string_pretty(findings).unwrap_or_default()
}

#[test]
fn good_folders_and_the_cluster_state_check_clean() {
    for folder in GOOD {
        let (code, findings) = check_json(folder, &[]);
        assert_eq!(
            findings,
            Vec::<Value>::new(),
            "examples/{folder} must have no finding at all:\n{}",
            show(&findings)
        );
        assert_eq!(code, 0, "examples/{folder}");
    }
}

#[test]
fn good_folders_check_clean_in_text_output_too() {
    for folder in GOOD {
        let out = routeguard(&["check", &format!("examples/{folder}")]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "examples/{folder}:\n{stdout}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 1, "examples/{folder}: only the summary line expected:\n{stdout}");
        assert!(lines[0].ends_with("objects checked: 0 errors, 0 warnings, 0 infos"), "{stdout}");
    }
}

/// code, severity, kind, namespace, name, path, file, line.
type Row = (String, String, String, String, String, String, String, u64);

#[test]
fn broken_folders_report_exactly_the_documented_findings() {
    for (folder, expected) in BROKEN {
        let (code, findings) = check_json(folder, &[]);
        let found: Vec<Row> = findings
            .iter()
            .map(|f| {
                let s = |k: &str| f[k].as_str().unwrap_or_else(|| panic!("{k} of {f}")).to_string();
                (
                    s("code"),
                    s("severity"),
                    s("kind"),
                    s("namespace"),
                    s("name"),
                    s("path"),
                    s("file"),
                    f["line"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        let wanted: Vec<Row> = expected
            .iter()
            .map(|x| {
                (
                    x.code.into(),
                    x.severity.into(),
                    x.kind.into(),
                    x.namespace.into(),
                    x.name.into(),
                    x.path.into(),
                    format!("examples/{folder}/{}", x.file),
                    x.line,
                )
            })
            .collect();
        assert_eq!(found, wanted, "examples/{folder}:\n{}", show(&findings));
        for (f, x) in findings.iter().zip(expected.iter()) {
            let message = f["message"].as_str().unwrap_or_default();
            for word in x.says {
                assert!(
                    message.contains(word),
                    "examples/{folder} {}: message {message:?} should mention {word:?}",
                    x.code
                );
            }
        }
        // `check` exits 1 for an error finding only: a folder of warnings passes.
        let exit = if expected.iter().any(|x| x.severity == "error") { 1 } else { 0 };
        assert_eq!(code, exit, "examples/{folder}");
    }
}

/// The comment at the top of each broken file names the codes that fire there.
#[test]
fn broken_files_say_what_is_wrong_and_which_code_fires() {
    for (folder, expected) in BROKEN {
        let files: BTreeSet<&str> = expected.iter().map(|x| x.file).collect();
        for file in files {
            let text = std::fs::read_to_string(Path::new(ROOT).join("examples").join(folder).join(file)).expect("read");
            let header: String = text.lines().take_while(|l| l.starts_with('#')).collect::<Vec<_>>().join("\n");
            assert!(header.starts_with("# BROKEN"), "examples/{folder}/{file} should start with a # BROKEN comment");
            for x in expected.iter().filter(|x| x.file == file) {
                assert!(header.contains(x.code), "the comment of examples/{folder}/{file} should name {}", x.code);
                assert!(header.contains(x.path), "the comment of examples/{folder}/{file} should name {}", x.path);
            }
        }
    }
}

/// Every scenario folder is tested here and documented in examples/README.md.
#[test]
fn every_scenario_is_tested_and_documented() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("examples/README.md")).expect("examples/README.md");
    let tested: BTreeSet<&str> = GOOD.iter().copied().chain(BROKEN.iter().map(|(f, _)| *f)).collect();
    let mut scenarios = 0;
    for entry in std::fs::read_dir(Path::new(ROOT).join("examples")).expect("examples/") {
        let entry = entry.expect("entry");
        if !entry.file_type().expect("type").is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().to_string();
        assert!(readme.contains(&format!("examples/{name}")), "examples/README.md does not mention examples/{name}");
        // AdmissionReview requests for `serve`, the load harnesses' shared code,
        // the cluster state: documented, but not scenarios for `check`.
        if matches!(name.as_str(), "admission" | "harness" | "cluster") {
            continue;
        }
        scenarios += 1;
        let mut variants = 0;
        for sub in std::fs::read_dir(entry.path()).expect("scenario") {
            let sub = sub.expect("entry").file_name().to_string_lossy().to_string();
            let folder = format!("{name}/{sub}");
            assert!(tested.contains(folder.as_str()), "examples/{folder} is not tested in tests/examples.rs");
            assert!(
                readme.contains(&format!("examples/{folder}")),
                "examples/README.md does not mention examples/{folder}"
            );
            variants += 1;
        }
        assert!(tested.contains(format!("{name}/broken").as_str()), "examples/{name} has no broken/ variant");
        assert!(variants >= 2, "examples/{name} needs a good and a broken variant");
    }
    assert_eq!(
        scenarios, 12,
        "bookinfo-canary, dark-launch, mirroring, gateway-api-shift, canary-service, service-entry-export, \
         unreachable-routes, destination-ports, conflicting-routes, unused-destination-rule, \
         duplicate-destination-rules, missing-gateway"
    );
}

/// examples/policy.yaml is a valid policy that spells out the defaults: every example gives the same result with it.
#[test]
fn the_example_policy_is_accepted_and_keeps_the_documented_results() {
    let all = GOOD.iter().copied().chain(BROKEN.iter().map(|(f, _)| *f));
    for folder in all {
        assert_eq!(
            check_json(folder, &["--policy", "examples/policy.yaml"]),
            check_json(folder, &[]),
            "examples/{folder} with --policy examples/policy.yaml"
        );
    }
    // The policy's keys are the documented ones, each with a comment.
    let text = std::fs::read_to_string(Path::new(ROOT).join("examples/policy.yaml")).expect("policy.yaml");
    for key in [
        "weights",
        "missingSubset",
        "missingHost",
        "protectInUse",
        "unreachableRoutes",
        "destinationPorts",
        "conflictingRoutes",
        "unusedRules",
        "duplicateRules",
        "missingGateway",
        "exemptUsers",
        "versionLabel",
        "meshRootNamespace",
        "clusterDomain",
    ] {
        let line = text.lines().position(|l| l.starts_with(&format!("{key}:"))).unwrap_or_else(|| panic!("no {key}"));
        assert!(
            line > 0 && text.lines().nth(line - 1).is_some_and(|l| l.starts_with('#')),
            "{key} has no comment above it"
        );
    }
}

/// As examples/README.md says: with `weights: relative` the broken canary's 70 + 20 split passes; RG103 remains.
#[test]
fn relative_weights_leave_only_the_missing_subset_of_the_broken_canary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "weights: relative\n").expect("write");
    let (code, findings) = check_json("bookinfo-canary/broken", &["--policy", policy.to_str().expect("utf-8")]);
    let codes: Vec<&str> = findings.iter().filter_map(|f| f["code"].as_str()).collect();
    assert_eq!(codes, ["RG103"], "{}", show(&findings));
    assert_eq!(findings[0]["path"], "spec.http[0].route[0].destination.subset");
    assert_eq!(code, 1);
}

/// `render` on a folder: the objects it prints, read back with routeguard's own loader.
fn render(folder: &str) -> Vec<Value> {
    let out = routeguard(&["render", &format!("examples/{folder}")]);
    assert_eq!(out.status.code(), Some(0), "render examples/{folder}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    routeguard::manifest::load_text("render", &text, "nowhere")
        .unwrap_or_else(|e| panic!("render output does not load ({e}):\n{text}"))
        .into_iter()
        .map(|l| l.object.raw)
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects.iter().find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

fn names(objects: &[Value], kind: &str) -> BTreeSet<String> {
    objects
        .iter()
        .filter(|o| o["kind"] == kind)
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn render_of_bookinfo_prints_destination_rules_and_per_version_services() {
    let objects = render("cluster");
    // A DestinationRule per bookinfo Service that has none of its own (reviews has one).
    let drs = names(&objects, "DestinationRule");
    for name in ["details", "productpage", "ratings"] {
        assert!(drs.contains(name), "no generated DestinationRule {name} in {drs:?}");
    }
    for name in ["reviews", "httpbin", "catalog"] {
        assert!(!drs.contains(name), "the user's DestinationRule {name} must not be replaced: {drs:?}");
    }
    let ratings = find(&objects, "DestinationRule", "ratings").expect("DestinationRule ratings");
    assert_eq!(ratings["apiVersion"], "networking.istio.io/v1");
    assert_eq!(ratings["metadata"]["namespace"], "default");
    assert_eq!(ratings["metadata"]["labels"]["app.kubernetes.io/managed-by"], "routeguard");
    assert_eq!(ratings["spec"]["host"], "ratings");
    assert_eq!(ratings["spec"]["subsets"], json!([{"name": "v1", "labels": {"version": "v1"}}]));

    // A Service per version of every bookinfo Service.
    let services = names(&objects, "Service");
    for name in ["reviews-v1", "reviews-v2", "reviews-v3", "ratings-v1", "details-v1", "productpage-v1"] {
        assert!(services.contains(name), "no generated Service {name} in {services:?}");
    }
    for v in ["v1", "v2", "v3"] {
        let svc = find(&objects, "Service", &format!("reviews-{v}")).expect("per-version Service");
        assert_eq!(svc["metadata"]["namespace"], "default");
        assert_eq!(svc["metadata"]["labels"]["app.kubernetes.io/managed-by"], "routeguard");
        assert_eq!(svc["spec"]["selector"], json!({"app": "reviews", "version": v}));
        assert_eq!(svc["spec"]["ports"][0]["port"], 9080);
    }
    // The Deployments come out mutated, their selectors untouched.
    let reviews_v2 = find(&objects, "Deployment", "reviews-v2").expect("mutated Deployment reviews-v2");
    assert_eq!(reviews_v2["metadata"]["labels"]["version"], "v2");
    assert_eq!(reviews_v2["metadata"]["annotations"]["routeguard.io/version-source"], "label");
    assert_eq!(reviews_v2["spec"]["selector"], json!({"matchLabels": {"app": "reviews", "version": "v2"}}));
}

#[test]
fn render_of_the_canary_stages_keeps_the_users_destination_rule() {
    for stage in ["good-80-20", "good-50-50", "good-100"] {
        let objects = render(&format!("bookinfo-canary/{stage}"));
        assert_eq!(names(&objects, "DestinationRule"), BTreeSet::new(), "{stage}: reviews has its own DestinationRule");
        let services = names(&objects, "Service");
        let want: BTreeSet<String> = ["reviews-v1", "reviews-v2", "reviews-v3"].map(String::from).into();
        assert_eq!(services, want, "{stage}");
    }
}

#[test]
fn render_of_the_canary_service_scenario_prints_the_canary_service() {
    let objects = render("canary-service/good");
    let canary = find(&objects, "Service", "checkout-canary").expect("generated Service checkout-canary");
    assert_eq!(canary["metadata"]["labels"]["app.kubernetes.io/managed-by"], "routeguard");
    assert_eq!(canary["spec"]["selector"], json!({"app": "checkout", "version": "v2"}));
    assert_eq!(canary["spec"]["ports"][0]["port"], 80);
    // The VirtualService routes to it: without the generated Service the good variant would fail RG104.
    let services = names(&objects, "Service");
    let want: BTreeSet<String> = ["checkout-canary", "checkout-v1", "checkout-v2"].map(String::from).into();
    assert_eq!(services, want);
}
