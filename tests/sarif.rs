//! `check --output sarif`: a SARIF 2.1.0 log that the official schema
//! accepts (`tests/fixtures/sarif-schema-2.1.0.json`, see
//! `tests/fixtures/README.md` for where it comes from), with one rule per code
//! and every finding on the file and line `--output json` gives it.

mod example_folders;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_routeguard");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(Path::new(ROOT).join("tests/fixtures/sarif-schema-2.1.0.json")).expect("schema");
    let schema: Value = serde_json::from_str(&text).expect("schema json");
    // The OASIS schema declares draft-04 (`id`, not `$id`).
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-04/schema#");
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .should_validate_formats(true)
        .build(&schema)
        .expect("the SARIF schema compiles")
}

/// `routeguard check --output FORMAT PATH...` run in the repository: (exit code, parsed stdout).
fn check(format: &str, paths: &[&str]) -> (i32, Value) {
    let out = Command::new(BIN)
        .current_dir(ROOT)
        .arg("check")
        .arg("--output")
        .arg(format)
        .args(paths)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{paths:?}: {e}\n{stdout}"));
    (out.status.code().expect("exit code"), value)
}

fn assert_valid(log: &Value, what: &str) {
    let errors: Vec<String> =
        validator().iter_errors(log).map(|e| format!("{}: {}", e.instance_path(), e.masked())).collect();
    assert!(errors.is_empty(), "{what}: not SARIF 2.1.0:\n{}", errors.join("\n"));
}

#[test]
fn broken_examples_are_valid_sarif_on_the_lines_json_gives() {
    let folders: Vec<String> = example_folders::all()
        .iter()
        .map(|p| p.strip_prefix(ROOT).unwrap_or(p).to_string_lossy().into_owned())
        .collect();
    assert!(folders.len() >= 20, "{folders:?}");
    let mut results_seen = 0;
    for folder in &folders {
        let folder = folder.as_str();
        let (code, log) = check("sarif", &[folder]);
        let (json_code, findings) = check("json", &[folder]);
        assert_eq!(code, json_code, "{folder}: sarif and json exit alike");
        assert_valid(&log, folder);
        let run = &log["runs"][0];
        assert_eq!(run["tool"]["driver"]["name"], "routeguard");
        let rules = run["tool"]["driver"]["rules"].as_array().expect("rules");
        assert_eq!(rules.len(), routeguard::policy::Code::ALL.len(), "one rule per code");
        let results = run["results"].as_array().expect("results");
        let findings = findings.as_array().expect("findings");
        assert_eq!(results.len(), findings.len(), "{folder}");
        results_seen += results.len();
        for (result, finding) in results.iter().zip(findings) {
            assert_eq!(result["ruleId"], finding["code"]);
            let index = result["ruleIndex"].as_u64().expect("index") as usize;
            assert_eq!(rules[index]["id"], finding["code"], "ruleIndex points at the rule");
            let level = match finding["severity"].as_str() {
                Some("info") => "note",
                other => other.expect("severity"),
            };
            assert_eq!(result["level"], level);
            let text = result["message"]["text"].as_str().expect("text");
            assert!(text.contains(finding["path"].as_str().expect("path")), "{text}");
            assert!(text.contains(finding["message"].as_str().expect("message")), "{text}");
            let location = &result["locations"][0]["physicalLocation"];
            if finding["file"].is_null() {
                assert!(location.is_null(), "a generated object has no file");
            } else {
                assert_eq!(location["artifactLocation"]["uri"], finding["file"]);
                assert_eq!(location["region"]["startLine"], finding["line"]);
            }
        }
    }
    assert!(results_seen >= 20, "only {results_seen} results");
}

#[test]
fn rules_carry_the_readme_text_and_default_levels() {
    let (_, log) = check("sarif", &["examples/bookinfo-canary/good-80-20"]);
    let rules = log["runs"][0]["tool"]["driver"]["rules"].as_array().expect("rules").clone();
    let rg301 = rules.iter().find(|r| r["id"] == "RG301").expect("RG301");
    assert_eq!(rg301["defaultConfiguration"]["level"], "note");
    assert_eq!(rg301["help"]["text"], "a version label was injected");
    let rg103 = rules.iter().find(|r| r["id"] == "RG103").expect("RG103");
    assert_eq!(rg103["defaultConfiguration"]["level"], "error");
    assert!(rg103["shortDescription"]["text"].as_str().is_some_and(|t| !t.contains('\n')));
}

#[test]
fn enforcement_modes_and_notices_in_sarif() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels:\n    routeguard.io/enforcement: warn\n---\n\
                apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n  labels:\n    routeguard.io/enforcement: strict\n---\n\
                apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: r\n  namespace: shop\n\
                spec:\n  hosts: [r]\n  http:\n  - route:\n    - destination: {host: nowhere}\n";
    std::fs::write(dir.path().join("all.yaml"), text).expect("write");
    let path = dir.path().to_string_lossy().to_string();
    let (code, log) = check("sarif", &[&path]);
    assert_valid(&log, "enforcement");
    // The schema does judge: a level SARIF does not have is refused.
    let mut wrong = log.clone();
    wrong["runs"][0]["results"][0]["level"] = Value::from("fatal");
    assert!(validator().iter_errors(&wrong).next().is_some(), "the schema accepts anything");
    assert_eq!(code, 0, "warn: the error is a warning, exit 0");
    let results = log["runs"][0]["results"].as_array().expect("results");
    assert_eq!(results.len(), 1);
    assert_eq!((results[0]["ruleId"].as_str(), results[0]["level"].as_str()), (Some("RG104"), Some("warning")));
    assert_eq!(results[0]["locations"][0]["physicalLocation"]["region"]["startLine"], 24);
    let notices = &log["runs"][0]["invocations"][0]["toolExecutionNotifications"];
    assert!(
        notices[0]["message"]["text"].as_str().is_some_and(|t| t.contains("unknown value \"strict\"")),
        "{notices}"
    );
}
