//! Golden tests: every folder of `tests/fixtures/<case>/` holds `input.yaml` (or a folder `input/`),
//! an optional `options` file (`labels=k=v,...`, `namespace=NS`, `credentials-dir=DIR` relative to
//! the case), and `expected.txt`: the diagnostics, then the routes Pylon compiles (or `invalid`).
//!
//! Each case is named after the Istio rule it pins. `UPDATE_GOLDEN=1 cargo test -p conf --test golden`
//! rewrites the expected files; review the diff before committing it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test harness fails by panicking

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

fn selection(case: &Path) -> conf::Selection {
    let mut sel = conf::Selection::default();
    let Ok(options) = fs::read_to_string(case.join("options")) else { return sel };
    for line in options.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (key, value) = line.split_once('=').expect("options lines are key=value");
        match key {
            "labels" => {
                sel.labels = value
                    .split(',')
                    .map(|kv| kv.split_once('=').expect("labels are k=v"))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>();
            }
            "namespace" => sel.namespace = value.to_string(),
            "credentials-dir" => sel.credentials_dir = Some(case.join(value)),
            other => panic!("unknown option {other} in {}", case.display()),
        }
    }
    sel
}

fn render(case: &Path) -> String {
    let input = if case.join("input").is_dir() { case.join("input") } else { case.join("input.yaml") };
    let built = conf::build(&[input], &selection(case)).expect("fixture input is readable");
    let mut out = built.diagnostics.to_string();
    out.push_str(if built.is_valid() { "=== routes ===\n" } else { "=== invalid ===\n" });
    if built.is_valid() {
        out.push_str(&conf::render::text(&built.table));
    }
    out
}

#[test]
fn fixtures_match_their_expected_output() {
    let root = PathBuf::from("tests/fixtures");
    let mut cases: Vec<PathBuf> = fs::read_dir(&root).expect("fixtures folder").map(|e| e.unwrap().path()).collect();
    cases.sort();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for case in &cases {
        let actual = render(case);
        let expected_path = case.join("expected.txt");
        if update {
            fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            failures.push(format!("--- {}\n=== expected\n{expected}=== actual\n{actual}", case.display()));
        }
    }
    assert!(!cases.is_empty(), "fixtures are missing");
    assert!(failures.is_empty(), "{} of {} golden cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
