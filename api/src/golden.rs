//! Golden-file tests: each `<dir>/<case>.json` holds an `input` and the
//! `expected` output. `UPDATE_GOLDEN=1 cargo test` rewrites `expected` from
//! the code (then review the diff). Used by llmproxy's own translators and
//! usable by yours.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use std::path::PathBuf;

/// Runs `f` on the input of every case in `dir` and compares with the
/// expected output; panics listing every mismatch.
pub fn check_dir(dir: impl Into<PathBuf>, f: impl Fn(&Value) -> Value) {
    let dir = dir.into();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no cases in {}", dir.display());
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut case: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let actual = f(&case["input"]);
        if update {
            case["expected"] = actual;
            let mut out = serde_json::to_string_pretty(&case).unwrap();
            out.push('\n');
            std::fs::write(&path, out).unwrap();
        } else if case["expected"] != actual {
            failures.push(format!(
                "{}:\nexpected {}\n  actual {}",
                path.display(),
                case["expected"],
                actual
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// [`check_dir`] on this crate's `tests/golden/<suite>`.
#[cfg(test)]
pub(crate) fn check(suite: &str, f: impl Fn(&Value) -> Value) {
    check_dir(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(suite),
        f,
    );
}

/// A conversion error as JSON, so error cases can be golden too.
pub fn error(e: &crate::ConvertError) -> Value {
    json!({"error": e.message, "param": e.param, "unsupported": e.unsupported})
}
