//! The README's rule table and the catalog built into the binary
//! (`routeguard::policy::catalog`, what `check --output sarif` describes
//! each rule with) say the same: every code, its default severity, its text.

use routeguard::policy::catalog::RULES;

#[test]
fn the_readme_rule_table_is_the_catalog() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    let rows: Vec<(String, String, String)> = readme
        .lines()
        .filter_map(|line| {
            let cells = line.strip_prefix("| RG")?.strip_suffix(" |")?;
            let mut parts = cells.splitn(3, " | ");
            let code = format!("RG{}", parts.next()?);
            Some((code, parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect();
    let catalog: Vec<(String, String, String)> =
        RULES.iter().map(|r| (r.code.to_string(), r.default_severity().to_string(), r.help.to_string())).collect();
    assert_eq!(rows.len(), catalog.len(), "the README table has {} rows, the catalog {}", rows.len(), catalog.len());
    for (readme, built) in rows.iter().zip(&catalog) {
        assert_eq!(readme, built, "README row and src/policy/catalog.rs differ");
    }
}
