//! The command line contract of `routeguard check`, run as a real process:
//! the text and JSON output formats, exit codes 0/1/2, standard input,
//! `--namespace`, `--policy`, and no crash on garbage input.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_routeguard");

/// A routeguard process in `dir`, with none of its ROUTEGUARD_* variables inherited.
fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ROUTEGUARD_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Runs routeguard and insists it did not panic, whatever the exit code.
fn run(dir: &Path, args: &[&str]) -> Output {
    let out = command(dir, args).output().expect("routeguard runs");
    no_panic(args, &out);
    out
}

fn run_stdin(dir: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = command(dir, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("routeguard runs");
    child.stdin.take().expect("stdin").write_all(input).expect("write stdin");
    let out = child.wait_with_output().expect("routeguard ends");
    no_panic(args, &out);
    out
}

fn no_panic(args: &[&str], out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "routeguard {args:?} panicked:\n{stderr}");
    assert!(out.status.code().is_some(), "routeguard {args:?} was killed by a signal: {:?}\n{stderr}", out.status);
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exit code")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> Vec<Value> {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not a JSON array ({e}):\n{}\nstderr: {}", stdout(out), stderr(out)))
}

/// (code, severity, namespace, name, path) of each finding.
fn summary(findings: &[Value]) -> Vec<(String, String, String, String, String)> {
    let s = |f: &Value, k: &str| f[k].as_str().unwrap_or_else(|| panic!("{k} of {f}")).to_string();
    findings.iter().map(|f| (s(f, "code"), s(f, "severity"), s(f, "namespace"), s(f, "name"), s(f, "path"))).collect()
}

fn finding(
    code: &str,
    severity: &str,
    namespace: &str,
    name: &str,
    path: &str,
) -> (String, String, String, String, String) {
    (code.into(), severity.into(), namespace.into(), name.into(), path.into())
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn write(dir: &Path, name: &str, text: impl AsRef<[u8]>) {
    std::fs::write(dir.join(name), text).expect("write");
}

/// The 1-based line of the first line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("no {needle:?}")) + 1
}

/// reviews: a Service (no selector: nothing to generate) and a DestinationRule with subsets v1 and v2.
const REVIEWS: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: reviews
spec:
  ports:
  - name: http
    port: 9080
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
";

/// A VirtualService for reviews: 80/20 to v1 and `second` (a subset), or with other weights.
fn reviews_vs(w1: i64, second: &str, w2: i64) -> String {
    format!(
        "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: {w1}
    - destination:
        host: reviews
        subset: {second}
      weight: {w2}
"
    )
}

/// A file with REVIEWS and a VirtualService routing 20% to the undefined subset v4.
fn broken_dir() -> (tempfile::TempDir, String) {
    let dir = tempdir();
    let text = format!("{REVIEWS}---\n{}", reviews_vs(80, "v4", 20));
    write(dir.path(), "reviews.yaml", &text);
    (dir, text)
}

const SUMMARY_CLEAN: &str = "objects checked: 0 errors, 0 warnings, 0 infos";

// ---- output formats -------------------------------------------------------

#[test]
fn text_output_names_severity_code_object_file_line_and_path() {
    let (dir, text) = broken_dir();
    let out = run(dir.path(), &["check", "reviews.yaml"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let stdout = stdout(&out);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "one finding and the summary:\n{stdout}");
    // The line of `subset: v4`, counted in the whole multi-document file.
    let line = line_of(&text, "subset: v4");
    assert_eq!(line, 39);
    let prefix = format!(
        "error RG103 VirtualService default/reviews (reviews.yaml:{line}) spec.http[0].route[1].destination.subset: "
    );
    assert!(lines[0].starts_with(&prefix), "expected {prefix:?}...\ngot      {:?}", lines[0]);
    // The message says what was found and which subsets do exist.
    assert!(lines[0].contains("\"v4\""), "{}", lines[0]);
    assert!(lines[0].contains("v1, v2"), "{}", lines[0]);
    assert_eq!(lines[1], "3 objects checked: 1 errors, 0 warnings, 0 infos");
    assert_eq!(stderr(&out), "");
}

#[test]
fn text_output_lists_findings_by_line_with_a_summary() {
    let dir = tempdir();
    // RG101 (weights 70 + 20) on the route list, RG103 on the subset below it.
    let text = format!("{REVIEWS}---\n{}", reviews_vs(70, "v3", 20));
    write(dir.path(), "r.yaml", &text);
    let out = run(dir.path(), &["check", "r.yaml"]);
    assert_eq!(code(&out), 1);
    let stdout = stdout(&out);
    let lines: Vec<&str> = stdout.lines().collect();
    let route = line_of(&text, "  - route:");
    let subset = line_of(&text, "subset: v3");
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0]
            .starts_with(&format!("error RG101 VirtualService default/reviews (r.yaml:{route}) spec.http[0].route: ")),
        "{stdout}"
    );
    assert!(lines[0].contains("sum to 90 (70 + 20), expected 100"), "{stdout}");
    assert!(
        lines[1].starts_with(&format!(
            "error RG103 VirtualService default/reviews (r.yaml:{subset}) spec.http[0].route[1].destination.subset: "
        )),
        "{stdout}"
    );
    assert_eq!(lines[2], "3 objects checked: 2 errors, 0 warnings, 0 infos");
}

#[test]
fn json_output_has_exactly_the_documented_keys() {
    let (dir, text) = broken_dir();
    let out = run(dir.path(), &["check", "--output", "json", "reviews.yaml"]);
    assert_eq!(code(&out), 1);
    let findings = json(&out);
    assert_eq!(findings.len(), 1, "{findings:?}");
    let f = findings[0].as_object().expect("a finding is an object");
    // The keys in the order they are written, read off the text (not off a
    // parsed map, whose order depends on serde_json's features): one finding,
    // pretty-printed, so its keys are the lines indented by four.
    let written = stdout(&out);
    let keys: Vec<&str> =
        written.lines().filter_map(|l| l.strip_prefix("    \"")?.split_once("\":").map(|(key, _)| key)).collect();
    assert_eq!(keys, ["code", "severity", "kind", "namespace", "name", "path", "message", "file", "line", "origin"]);
    assert_eq!(f.len(), keys.len(), "{written}");
    assert_eq!(f["origin"], "file");
    assert_eq!(f["code"], "RG103");
    assert_eq!(f["severity"], "error");
    assert_eq!(f["kind"], "VirtualService");
    assert_eq!(f["namespace"], "default");
    assert_eq!(f["name"], "reviews");
    assert_eq!(f["path"], "spec.http[0].route[1].destination.subset");
    assert_eq!(f["file"], "reviews.yaml");
    assert_eq!(f["line"].as_u64(), Some(line_of(&text, "subset: v4") as u64));
    assert!(f["message"].as_str().is_some_and(|m| m.contains("v4") && m.contains("v1, v2")), "{}", f["message"]);

    // -o is --output; a clean check prints an empty array.
    let clean = tempdir();
    write(clean.path(), "ok.yaml", format!("{REVIEWS}---\n{}", reviews_vs(80, "v2", 20)));
    let out = run(clean.path(), &["check", "-o", "json", "ok.yaml"]);
    assert_eq!(code(&out), 0);
    assert_eq!(json(&out), Vec::<Value>::new());
    assert_eq!(stdout(&out).trim(), "[]");
}

// ---- exit codes -----------------------------------------------------------

#[test]
fn exit_0_when_clean_or_only_warnings() {
    let dir = tempdir();
    write(dir.path(), "ok.yaml", format!("{REVIEWS}---\n{}", reviews_vs(80, "v2", 20)));
    let out = run(dir.path(), &["check", "ok.yaml"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert_eq!(stdout(&out), format!("3 {SUMMARY_CLEAN}\n"));

    // An unknown field is a warning (RG108): reported, but exit 0.
    let vs = reviews_vs(80, "v2", 20).replacen("  - route:", "  - timeoutt: 5s\n    route:", 1);
    let text = format!("{REVIEWS}---\n{vs}");
    write(dir.path(), "warn.yaml", &text);
    let out = run(dir.path(), &["check", "-o", "json", "warn.yaml"]);
    assert_eq!(
        summary(&json(&out)),
        [finding("RG108", "warning", "default", "reviews", "spec.http[0].timeoutt")],
        "{}",
        stdout(&out)
    );
    assert_eq!(code(&out), 0);
}

#[test]
fn exit_1_when_any_finding_is_an_error() {
    let (dir, _) = broken_dir();
    assert_eq!(code(&run(dir.path(), &["check", "reviews.yaml"])), 1);
    assert_eq!(code(&run(dir.path(), &["check", "."])), 1, "a folder is searched");
}

#[test]
fn exit_2_on_bad_usage() {
    let (dir, _) = broken_dir();
    for args in [
        &["check", "--bogus", "reviews.yaml"][..],
        &["check"],
        &["check", "--output", "xml", "reviews.yaml"],
        &["check", "--policy"],
        &["frobnicate", "reviews.yaml"],
    ] {
        let out = run(dir.path(), args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "", "{args:?}: no report on bad usage");
        assert!(!stderr(&out).is_empty(), "{args:?}: says why on stderr");
    }
}

#[test]
fn exit_2_on_a_missing_file_naming_it() {
    let (dir, _) = broken_dir();
    let out = run(dir.path(), &["check", "reviews.yaml", "missing.yaml"]);
    assert_eq!(code(&out), 2);
    assert_eq!(stdout(&out), "", "nothing checked when an input cannot be read");
    assert!(stderr(&out).contains("missing.yaml"), "{}", stderr(&out));
}

#[test]
fn exit_2_on_a_yaml_syntax_error_with_file_and_line() {
    let dir = tempdir();
    // The second document's line 4 (file line 9) is not valid YAML.
    write(
        dir.path(),
        "bad.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: b: c\n",
    );
    let out = run(dir.path(), &["check", "bad.yaml"]);
    assert_eq!(code(&out), 2);
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains("bad.yaml:9:"), "file:line on stderr: {}", stderr(&out));

    write(dir.path(), "bad.json", "{\"apiVersion\": \"v1\", \"kind\": \"Service\",\n \"metadata\": {\"name\": \"a\"\n");
    let out = run(dir.path(), &["check", "bad.json"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("bad.json:"), "{}", stderr(&out));
}

#[test]
fn exit_2_on_a_document_that_is_not_a_kubernetes_object() {
    let dir = tempdir();
    let service = "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n---\n";
    for (name, second, why) in [
        ("list.yaml", "- 1\n- 2\n", "list"),
        ("string.yaml", "just a string\n", "string"),
        ("number.yaml", "42\n", "number"),
        ("nokind.yaml", "hello: world\n", "kind"),
        ("noname.yaml", "apiVersion: v1\nkind: Service\nmetadata: {}\n", "metadata.name"),
    ] {
        write(dir.path(), name, format!("{service}{second}"));
        let out = run(dir.path(), &["check", name]);
        assert_eq!(code(&out), 2, "{name}: {}", stdout(&out));
        assert_eq!(stdout(&out), "", "{name}");
        let err = stderr(&out);
        assert!(err.contains(&format!("{name}:6:")), "{name}: file and line of the document: {err}");
        assert!(err.contains(why), "{name}: says what is wrong: {err}");
    }
    // Objects of other kinds are skipped, not refused.
    write(dir.path(), "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n");
    let out = run(dir.path(), &["check", "cm.yaml"]);
    assert_eq!(code(&out), 0);
    assert_eq!(stdout(&out), format!("0 {SUMMARY_CLEAN}\n"));
}

// ---- inputs ---------------------------------------------------------------

#[test]
fn dash_reads_standard_input() {
    let (dir, text) = broken_dir();
    let out = run_stdin(dir.path(), &["check", "-o", "json", "-"], text.as_bytes());
    assert_eq!(code(&out), 1);
    let findings = json(&out);
    assert_eq!(
        summary(&findings),
        [finding("RG103", "error", "default", "reviews", "spec.http[0].route[1].destination.subset")]
    );
    assert_eq!(findings[0]["file"], "<stdin>");
    assert_eq!(findings[0]["line"].as_u64(), Some(line_of(&text, "subset: v4") as u64));

    // Standard input together with files: the route on stdin sees the DestinationRule in the file.
    write(dir.path(), "rules.yaml", REVIEWS);
    let out = run_stdin(dir.path(), &["check", "rules.yaml", "-"], reviews_vs(50, "v2", 50).as_bytes());
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert_eq!(stdout(&out), format!("3 {SUMMARY_CLEAN}\n"));
}

#[test]
fn namespace_applies_to_objects_without_one() {
    let dir = tempdir();
    // Service and DestinationRule name their namespace (shop); the VirtualService names none.
    let rules = REVIEWS.replace("  name: reviews\n", "  name: reviews\n  namespace: shop\n");
    write(dir.path(), "rules.yaml", &rules);
    write(dir.path(), "vs.yaml", reviews_vs(80, "v2", 20));

    // Without --namespace the route lands in default, where reviews means reviews.default.
    let out = run(dir.path(), &["check", "-o", "json", "rules.yaml", "vs.yaml"]);
    assert_eq!(code(&out), 1);
    let found = summary(&json(&out));
    assert!(
        found.contains(&finding("RG104", "error", "default", "reviews", "spec.http[0].route[0].destination.host")),
        "{found:?}"
    );
    assert!(
        found.contains(&finding("RG103", "error", "default", "reviews", "spec.http[0].route[1].destination.subset")),
        "{found:?}"
    );

    // With it, the route is in shop next to its Service and DestinationRule.
    for args in [&["check", "--namespace", "shop"][..], &["check", "-n", "shop"], &["check", "--namespace=shop"]] {
        let mut args = args.to_vec();
        args.extend(["rules.yaml", "vs.yaml"]);
        let out = run(dir.path(), &args);
        assert_eq!(code(&out), 0, "{args:?}: {}", stdout(&out));
    }

    // Findings name the namespace the object got; one that names its own keeps it.
    write(dir.path(), "broken.yaml", reviews_vs(80, "v4", 20));
    let out = run(dir.path(), &["check", "-o", "json", "-n", "shop", "rules.yaml", "broken.yaml"]);
    assert_eq!(
        summary(&json(&out)),
        [finding("RG103", "error", "shop", "reviews", "spec.http[0].route[1].destination.subset")]
    );
    let pinned = reviews_vs(80, "v2", 20).replace("  name: reviews\n", "  name: reviews\n  namespace: default\n");
    write(dir.path(), "pinned.yaml", pinned);
    let out = run(dir.path(), &["check", "-o", "json", "-n", "shop", "rules.yaml", "pinned.yaml"]);
    let found = summary(&json(&out));
    assert!(found.iter().all(|f| f.2 == "default"), "an explicit namespace is kept: {found:?}");
    assert_eq!(code(&out), 1);
}

// ---- policy ---------------------------------------------------------------

#[test]
fn policy_weights_relative_accepts_weights_that_do_not_sum_to_100() {
    let dir = tempdir();
    write(dir.path(), "r.yaml", format!("{REVIEWS}---\n{}", reviews_vs(70, "v2", 20)));
    let out = run(dir.path(), &["check", "-o", "json", "r.yaml"]);
    assert_eq!(code(&out), 1);
    assert_eq!(summary(&json(&out)), [finding("RG101", "error", "default", "reviews", "spec.http[0].route")]);

    write(dir.path(), "policy.yaml", "weights: relative\n");
    let out = run(dir.path(), &["check", "-o", "json", "--policy", "policy.yaml", "r.yaml"]);
    assert_eq!(json(&out), Vec::<Value>::new());
    assert_eq!(code(&out), 0);

    // Relative weights that are all 0 send traffic nowhere: RG102.
    write(dir.path(), "zero.yaml", format!("{REVIEWS}---\n{}", reviews_vs(0, "v2", 0)));
    let out = run(dir.path(), &["check", "-o", "json", "--policy", "policy.yaml", "zero.yaml"]);
    assert_eq!(summary(&json(&out)), [finding("RG102", "error", "default", "reviews", "spec.http[0].route")]);
    assert_eq!(code(&out), 1);
}

#[test]
fn policy_missing_subset_warn_turns_rg103_into_a_warning() {
    let (dir, _) = broken_dir();
    write(dir.path(), "policy.yaml", "missingSubset: warn\n");
    let out = run(dir.path(), &["check", "-o", "json", "--policy", "policy.yaml", "reviews.yaml"]);
    assert_eq!(
        summary(&json(&out)),
        [finding("RG103", "warning", "default", "reviews", "spec.http[0].route[1].destination.subset")]
    );
    assert_eq!(code(&out), 0);
    let out = run(dir.path(), &["check", "--policy", "policy.yaml", "reviews.yaml"]);
    assert!(
        stdout(&out).starts_with("warning RG103 VirtualService default/reviews (reviews.yaml:"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).ends_with("3 objects checked: 0 errors, 1 warnings, 0 infos\n"), "{}", stdout(&out));
}

#[test]
fn policy_missing_host_off_drops_rg104() {
    let dir = tempdir();
    let vs = reviews_vs(80, "v2", 20).replace("host: reviews\n        subset: v2", "host: ratings\n        subset: v2");
    write(dir.path(), "r.yaml", format!("{REVIEWS}---\n{vs}"));
    let out = run(dir.path(), &["check", "-o", "json", "r.yaml"]);
    let found = summary(&json(&out));
    assert!(
        found.contains(&finding("RG104", "error", "default", "reviews", "spec.http[0].route[1].destination.host")),
        "{found:?}"
    );
    // `off` unquoted is YAML 1.1 false: still means off.
    for text in ["missingHost: off\n", "missingHost: \"off\"\n"] {
        write(dir.path(), "policy.yaml", text);
        let out = run(dir.path(), &["check", "-o", "json", "--policy", "policy.yaml", "r.yaml"]);
        let found = summary(&json(&out));
        assert!(found.iter().all(|f| f.0 != "RG104"), "{text:?}: {found:?}");
        assert!(found.iter().any(|f| f.0 == "RG103"), "{text:?}: the missing subset is still reported: {found:?}");
    }
}

#[test]
fn a_policy_file_from_the_environment_is_used() {
    let dir = tempdir();
    write(dir.path(), "r.yaml", format!("{REVIEWS}---\n{}", reviews_vs(70, "v2", 20)));
    write(dir.path(), "policy.yaml", "weights: relative\n");
    let out = command(dir.path(), &["check", "r.yaml"]).env("ROUTEGUARD_POLICY", "policy.yaml").output().expect("runs");
    assert_eq!(code(&out), 0, "{}", stdout(&out));
}

#[test]
fn exit_2_on_a_malformed_policy_file() {
    let (dir, _) = broken_dir();
    for (i, (text, why)) in [
        ("weights: half\n", "half"),
        ("weight: relative\n", "weight"),
        ("missingSubset: off\n", "missingSubset"),
        ("missingHost: sometimes\n", "sometimes"),
        ("exemptUsers: bot\n", "\"bot\""),
        ("weights: [\n", "line"),
        ("clusterDomain: {a: 1}\n", "map"),
        ("just text\n", ""),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("policy{i}.yaml");
        write(dir.path(), &name, text);
        let out = run(dir.path(), &["check", "--policy", &name, "reviews.yaml"]);
        assert_eq!(code(&out), 2, "{text:?}: {}{}", stdout(&out), stderr(&out));
        assert_eq!(stdout(&out), "", "{text:?}: nothing checked with an unusable policy");
        let err = stderr(&out);
        assert!(err.contains(&name), "{text:?}: names the policy file: {err}");
        assert!(err.contains(why), "{text:?}: says what is wrong ({why:?}): {err}");
    }
    let out = run(dir.path(), &["check", "--policy", "no-such-policy.yaml", "reviews.yaml"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("no-such-policy.yaml"), "{}", stderr(&out));
}

/// A list is not a policy, even one whose items happen to be valid values: it
/// must not be read positionally as `weights: relative, missingSubset: warn`.
#[test]
fn exit_2_on_a_policy_file_that_is_a_list() {
    let (dir, _) = broken_dir();
    write(dir.path(), "policy.yaml", "- relative\n- warn\n");
    let out = run(dir.path(), &["check", "--policy", "policy.yaml", "reviews.yaml"]);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains("policy.yaml"), "{}", stderr(&out));
}

// ---- garbage in, no crash out --------------------------------------------

#[test]
fn random_bytes_exit_2() {
    let dir = tempdir();
    let mut rng = Lcg(7);
    let bytes: Vec<u8> = (0..512).map(|_| rng.next() as u8).collect();
    write(dir.path(), "random.yaml", &bytes);
    let out = run(dir.path(), &["check", "random.yaml"]);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    assert!(stderr(&out).contains("random.yaml"), "{}", stderr(&out));
    let out = run_stdin(dir.path(), &["check", "-"], &bytes);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("<stdin>"), "{}", stderr(&out));
}

const VS_HEAD: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: r\nspec:\n";

#[test]
fn spec_of_the_wrong_type_is_an_rg100_error() {
    let dir = tempdir();
    write(dir.path(), "svc.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: r\n");
    let cases = [
        ("  5\n", "spec", 5),
        ("  \"text\"\n", "spec", 5),
        ("  [1]\n", "spec", 5),
        ("  hosts: [r]\n  http: 5\n", "spec.http", 7),
        ("  hosts: [r]\n  http:\n  - route: x\n", "spec.http[0].route", 8),
    ];
    for (i, (spec, path, line)) in cases.into_iter().enumerate() {
        let name = format!("vs{i}.yaml");
        write(dir.path(), &name, format!("{VS_HEAD}{spec}"));
        let out = run(dir.path(), &["check", "-o", "json", "svc.yaml", &name]);
        let findings = json(&out);
        assert_eq!(summary(&findings), [finding("RG100", "error", "default", "r", path)], "{spec:?}");
        assert_eq!(findings[0]["line"].as_u64(), Some(line), "{spec:?}: the line of the bad field");
        assert_eq!(code(&out), 1, "{spec:?}");
    }
}

/// The weight of a route entry, as written, that is not a number.
const WEIGHT_ABC: &str =
    "  hosts: [r]\n  http:\n  - route:\n    - destination:\n        host: r\n      weight: \"abc\"\n";

#[test]
fn a_weight_that_is_not_a_number_is_an_rg100_error_not_a_crash() {
    let dir = tempdir();
    write(dir.path(), "svc.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: r\n");
    write(dir.path(), "vs.yaml", format!("{VS_HEAD}{WEIGHT_ABC}"));
    let out = run(dir.path(), &["check", "-o", "json", "svc.yaml", "vs.yaml"]);
    let findings = json(&out);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0]["code"], "RG100");
    assert_eq!(findings[0]["severity"], "error");
    assert_eq!(findings[0]["name"], "r");
    let path = findings[0]["path"].as_str().unwrap_or_default();
    assert!(path == "spec" || path.starts_with("spec."), "{path}");
    let message = findings[0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("\"abc\""), "the message shows the bad value: {message}");
    assert_eq!(code(&out), 1);
}

/// The intended behaviour: an RG100 names the field that has the wrong type, like every other finding.
#[test]
fn a_weight_that_is_not_a_number_is_reported_at_the_weight() {
    let dir = tempdir();
    write(dir.path(), "svc.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: r\n");
    let text = format!("{VS_HEAD}{WEIGHT_ABC}");
    write(dir.path(), "vs.yaml", &text);
    let out = run(dir.path(), &["check", "-o", "json", "svc.yaml", "vs.yaml"]);
    let findings = json(&out);
    assert_eq!(summary(&findings), [finding("RG100", "error", "default", "r", "spec.http[0].route[0].weight")]);
    assert_eq!(findings[0]["line"].as_u64(), Some(line_of(&text, "weight:") as u64));
}

#[test]
fn deeply_nested_input_exits_2() {
    let dir = tempdir();
    let depth = 100_000;
    write(dir.path(), "deep.yaml", format!("a: {}{}\n", "[".repeat(depth), "]".repeat(depth)));
    let json_text = format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{{\"name\":\"a\"}},\"spec\":{}1{}}}",
        "{\"a\":".repeat(depth),
        "}".repeat(depth)
    );
    write(dir.path(), "deep.json", json_text);
    for name in ["deep.yaml", "deep.json"] {
        let out = run(dir.path(), &["check", name]);
        assert_eq!(code(&out), 2, "{name}");
        assert!(stderr(&out).contains(name), "{}", stderr(&out));
    }
}

/// A YAML alias bomb: 7 levels of 10 aliases is 10^7 strings from a 500-byte file.
#[test]
fn a_yaml_alias_bomb_is_refused_not_expanded() {
    let dir = tempdir();
    let mut text = String::from("a0: &a0 [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]\n");
    for i in 1..8 {
        let refs = vec![format!("*a{}", i - 1); 10].join(",");
        text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    write(dir.path(), "bomb.yaml", &text);
    // Capped at 1 GiB of address space and 60 seconds so that the bug cannot take the machine down.
    let script = format!("ulimit -v 1048576; exec timeout 60 '{BIN}' check bomb.yaml");
    let out = Command::new("sh").arg("-c").arg(&script).current_dir(dir.path()).output().expect("sh runs");
    assert_eq!(out.status.code(), Some(2), "{:?}: {}", out.status, stderr(&out));
}

/// Deterministic pseudo-random numbers (no dependency, same cases on every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Mutations of a valid manifest (bytes replaced, inserted, deleted, cut) never crash
/// routeguard: exit 0 or 1 with a report, or 2 with a reason and no report.
#[test]
fn mutated_manifests_never_crash() {
    let dir = tempdir();
    let base = format!("{REVIEWS}---\n{}", reviews_vs(80, "v4", 20)).into_bytes();
    let alphabet: &[u8] = b":-[]{}\"'&*!|>#%@,?\t\n 0123456789aZ.~\\\xff\x00";
    let mut rng = Lcg(2024);
    for case in 0..60 {
        let mut bytes = base.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(bytes.len());
            let c = alphabet[rng.below(alphabet.len())];
            match rng.below(4) {
                0 => bytes[at] = c,
                1 => bytes.insert(at, c),
                2 => {
                    bytes.remove(at);
                }
                _ => bytes.truncate(at),
            }
            if bytes.is_empty() {
                bytes.push(b'x');
            }
        }
        let name = format!("case{case}.yaml");
        write(dir.path(), &name, &bytes);
        let out = run(dir.path(), &["check", &name]);
        let text = String::from_utf8_lossy(&bytes);
        match code(&out) {
            0 | 1 => {
                let report = stdout(&out);
                let last = report.lines().last().unwrap_or_default();
                assert!(last.contains(" objects checked: "), "case {case}: no summary line:\n{report}\ninput:\n{text}");
            }
            2 => {
                assert_eq!(stdout(&out), "", "case {case}: a report despite exit 2\ninput:\n{text}");
                assert!(stderr(&out).starts_with("routeguard: "), "case {case}: {}\ninput:\n{text}", stderr(&out));
            }
            other => panic!("case {case}: exit {other}: {}\ninput:\n{text}", stderr(&out)),
        }
    }
}

#[test]
fn certs_generate_writes_a_ca_and_a_serving_pair() {
    let dir = tempdir();
    let out = run(
        dir.path(),
        &["certs", "generate", "--dir", "dev-certs", "--service-name", "rg", "--service-namespace", "ops"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("for localhost, 127.0.0.1, rg, rg.ops, rg.ops.svc"), "{}", stdout(&out));
    for (file, marker) in
        [("ca.crt", "BEGIN CERTIFICATE"), ("tls.crt", "BEGIN CERTIFICATE"), ("tls.key", "PRIVATE KEY")]
    {
        let text = std::fs::read_to_string(dir.path().join("dev-certs").join(file)).expect(file);
        assert!(text.contains(marker), "{file}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("dev-certs/tls.key")).expect("key").permissions().mode();
        assert_eq!(mode & 0o077, 0, "the key is private");
    }
}

/// The binary allocates with jemalloc and the options `src/allocator.rs`
/// builds in (a background thread, dirty pages back after a second, none kept
/// lazily): jemalloc prints them at exit when `stats_print` is added from the
/// environment, which it reads after the built-in options.
#[cfg(feature = "jemalloc")]
#[test]
fn the_binary_runs_on_jemalloc_with_prompt_purging() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = command(dir.path(), &["--help"]).env("_RJEM_MALLOC_CONF", "stats_print:true").output().expect("runs");
    assert!(out.status.success(), "{out:?}");
    let stats = String::from_utf8_lossy(&out.stderr);
    for option in ["opt.background_thread: true", "opt.dirty_decay_ms: 1000", "opt.muzzy_decay_ms: 0"] {
        assert!(stats.contains(option), "{option} not in jemalloc's statistics:\n{stats}");
    }
}
