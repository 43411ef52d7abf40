//! `docs/compliance.md` is evidence only if every test it names exists (and, being in the
//! suite, passes): this parses its control table and checks each reference.
use std::path::{Path, PathBuf};

/// The controls the table must cover (the compliance issue's list).
const REQUIRED: &[&str] = &[
    "HIPAA 164.312(a)(1)",
    "HIPAA 164.312(a)(2)(i)",
    "HIPAA 164.312(a)(2)(iv)",
    "HIPAA 164.312(b)",
    "HIPAA 164.312(c)(1)",
    "HIPAA 164.312(c)(2)",
    "HIPAA 164.312(d)",
    "HIPAA 164.312(e)(1)",
    "HIPAA 164.312(e)(2)(ii)",
    "GDPR Art. 5(1)(c)",
    "GDPR Art. 5(1)(e)",
    "GDPR Art. 5(1)(f)",
    "GDPR Art. 15",
    "GDPR Art. 17",
    "GDPR Art. 25",
    "GDPR Art. 30",
    "GDPR Art. 32",
    "NIST AU-2",
    "NIST AU-3",
    "NIST AU-8",
    "NIST AU-9",
    "NIST AU-10",
    "NIST AU-11",
    "NIST AU-12",
    "NIST AC-3",
    "NIST AC-6",
    "NIST IA-2",
    "NIST IA-5(2)",
    "NIST SC-7",
    "NIST SC-8",
    "NIST SC-13",
    "NIST SI-7",
    "NIST CM-7",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `(control, [test references])` of every row of the table whose header starts with
/// `| Control |`.
fn rows(doc: &str) -> Vec<(String, Vec<String>)> {
    let mut lines = doc.lines().skip_while(|l| !l.starts_with("| Control |"));
    let header: Vec<&str> = lines
        .next()
        .expect("a table headed `| Control | ... | Test |`")
        .split('|')
        .map(str::trim)
        .collect();
    let test_col = header
        .iter()
        .position(|h| *h == "Test")
        .expect("a Test column");
    lines
        .skip(1) // the |---| line
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let tests = cells
                .get(test_col)
                .copied()
                .unwrap_or_default()
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect();
            (cells[1].trim_matches('`').to_owned(), tests)
        })
        .collect()
}

#[test]
fn every_named_test_exists() {
    let doc =
        std::fs::read_to_string(repo().join("docs/compliance.md")).expect("docs/compliance.md");
    let rows = rows(&doc);
    for control in REQUIRED {
        assert!(
            rows.iter().any(|(c, _)| c == control),
            "docs/compliance.md has no row for {control}"
        );
    }
    let mut checked = 0;
    for (control, tests) in &rows {
        assert!(!tests.is_empty(), "{control}: no test named");
        for reference in tests {
            let (file, name) = reference
                .split_once("::")
                .unwrap_or_else(|| panic!("{control}: {reference:?} is not `path.rs::test_name`"));
            let source = std::fs::read_to_string(repo().join(file))
                .unwrap_or_else(|e| panic!("{control}: {file}: {e}"));
            // The function, with a test attribute (`#[test]`, `#[tokio::test]`...) among the
            // few lines above it.
            let at = source
                .find(&format!("fn {name}("))
                .unwrap_or_else(|| panic!("{control}: no `fn {name}(` in {file}"));
            let above: Vec<&str> = source[..at].lines().rev().take(5).collect();
            assert!(
                above
                    .iter()
                    .any(|l| l.trim_start().starts_with("#[") && l.contains("test]")),
                "{control}: {file}::{name} is not a test"
            );
            checked += 1;
        }
    }
    assert!(checked >= REQUIRED.len(), "only {checked} references");
}
