//! The layers point one way. This reads `src/` and fails when a module names,
//! in code (comments and test code aside), a module it may not use:
//!
//! ```text
//! model -> manifest, policy -> files -> admission, cluster -> server -> check, serve, cli -> main
//! (`check` reads the cluster for `check --cluster`, through `cluster`)
//! ```
//!
//! `supervisor` (named background tasks) and `pki` (the certificates
//! routeguard makes) depend on nothing of the crate.
//!
//! `manifest` (files to objects) and `policy` (the rules) both sit on the
//! model and do not know each other; `files` puts them together for `check`
//! and `serve`; `cluster` sits beside `admission` (it implements admission's
//! snapshot source) and never reaches up to the server.

use std::collections::BTreeMap;
use std::path::Path;

/// For each top-level module, the top-level modules of the crate it may name.
const ALLOWED: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("manifest", &["model"]),
    ("policy", &["model"]),
    ("files", &["model", "manifest", "policy"]),
    ("admission", &["model", "policy"]),
    ("supervisor", &[]),
    ("pki", &[]),
    ("cluster", &["model", "policy", "admission", "supervisor", "pki"]),
    ("server", &["model", "policy", "admission", "cluster", "supervisor", "pki"]),
    ("check", &["model", "manifest", "policy", "files", "cluster"]),
    ("cli", &[]),
    // The binary's global allocator (declared by main.rs, not the library) names nothing of the crate.
    ("allocator", &[]),
    ("serve", &["model", "manifest", "policy", "files", "admission", "cluster", "server", "supervisor", "pki", "cli"]),
    // The crate root only declares the modules.
    (
        "lib",
        &[
            "model",
            "manifest",
            "policy",
            "files",
            "admission",
            "supervisor",
            "pki",
            "cluster",
            "server",
            "check",
            "cli",
            "serve",
        ],
    ),
];

/// The code of a source file without comments and without its test module
/// (everything from the first `#[cfg(test)]` on, where this crate keeps its tests).
fn code(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        let line = line.split(" // ").next().unwrap_or(line);
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The crate's top-level modules that `code` names as `crate::<module>`.
fn named(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        // `routeguard::`-style paths do not occur inside the crate; skip `$crate::` in macros.
        if code[..i].ends_with('$') {
            continue;
        }
        let rest = &code[i + "crate::".len()..];
        let module: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if !module.is_empty() && !out.contains(&module) {
            out.push(module);
        }
    }
    out
}

/// The violations in one file of module `module`: the modules it names but may not.
fn violations(module: &str, text: &str) -> Vec<String> {
    let allowed = ALLOWED.iter().find(|(m, _)| *m == module).map(|(_, a)| *a);
    let Some(allowed) = allowed else { return vec![format!("module {module} is not in the layer table")] };
    named(&code(text)).into_iter().filter(|n| n != module && !allowed.contains(&n.as_str())).collect()
}

/// Every `.rs` file under `dir` that is not test code, by top-level module.
fn sources(dir: &Path, root: &Path, out: &mut BTreeMap<String, Vec<(String, String)>>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, root, out);
            continue;
        }
        let relative = path.strip_prefix(root).expect("under src").to_string_lossy().replace('\\', "/");
        let is_test = relative.ends_with("/tests.rs") || relative.ends_with("/testing.rs");
        if path.extension().is_none_or(|e| e != "rs") || is_test || relative == "main.rs" {
            continue;
        }
        let first = relative.split('/').next().unwrap_or_default();
        let module = first.strip_suffix(".rs").unwrap_or(first).to_string();
        let text = std::fs::read_to_string(&path).expect("read file");
        out.entry(module).or_default().push((relative, text));
    }
}

#[test]
fn no_module_names_a_layer_above_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    sources(&root, &root, &mut files);
    let mut problems = Vec::new();
    for (module, list) in &files {
        for (file, text) in list {
            for bad in violations(module, text) {
                problems.push(format!("src/{file} ({module}) names crate::{bad}"));
            }
        }
    }
    assert!(problems.is_empty(), "layers pointing the wrong way:\n{}", problems.join("\n"));
    for (module, _) in ALLOWED {
        assert!(files.contains_key(*module), "no files of module {module}: the table is stale");
    }

    assert_eq!(files.len(), ALLOWED.len(), "modules: {:?}", files.keys().collect::<Vec<_>>());
}

#[test]
fn the_checker_sees_code_and_ignores_comments_and_tests() {
    let text = "use crate::model::Object;\n/// See [`crate::server`].\nuse crate::cluster::x; // crate::cli\n\
                #[cfg(test)]\nmod tests { use crate::serve; }\n";
    assert_eq!(violations("policy", text), ["cluster"]);
    assert_eq!(violations("admission", "fn f() { crate::check::run(); }"), ["check"]);
    assert!(violations("server", "use crate::cluster::live::Live;").is_empty());
    assert_eq!(violations("unknown", ""), ["module unknown is not in the layer table"]);
}
