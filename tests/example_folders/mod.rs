//! The folders of `examples/` that hold manifests, for the tests that run over all of them.

use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every variant folder under `examples/` (the cluster state included), sorted.
pub fn all() -> Vec<PathBuf> {
    let mut out = vec![Path::new(ROOT).join("examples/cluster")];
    for scenario in std::fs::read_dir(Path::new(ROOT).join("examples")).expect("examples") {
        let scenario = scenario.expect("entry").path();
        let name = scenario.file_name().unwrap_or_default().to_string_lossy().to_string();
        if !scenario.is_dir() || matches!(name.as_str(), "admission" | "cluster") {
            continue;
        }
        // Variants are folders (`examples/harness/` holds the load harnesses' shared code, no variant).
        for variant in std::fs::read_dir(&scenario).expect("scenario") {
            let variant = variant.expect("entry").path();
            if variant.is_dir() {
                out.push(variant);
            }
        }
    }
    out.sort();
    out
}
