//! Bad input never crashes the pipeline: every Istio sample and fixture, mutated line by line
//! (a line dropped, the file cut short, a value replaced by a wrong type), goes through load,
//! validation and compilation without a panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails by panicking

use std::path::PathBuf;

fn inputs() -> Vec<String> {
    let mut files = Vec::new();
    for dir in ["tests/istio-samples", "tests/istio-services", "examples/demo"] {
        for e in std::fs::read_dir(dir).unwrap() {
            files.push(e.unwrap().path());
        }
    }
    for e in std::fs::read_dir("tests/fixtures").unwrap() {
        let input: PathBuf = e.unwrap().path().join("input.yaml");
        if input.is_file() {
            files.push(input);
        }
    }
    files.sort();
    files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect()
}

fn mutations(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for i in 0..lines.len() {
        let mut dropped = lines.clone();
        dropped.remove(i);
        out.push(dropped.join("\n"));
        out.push(lines[..i].join("\n"));
        let mut retyped = lines.clone();
        let line = lines[i];
        if let Some((key, _)) = line.split_once(": ") {
            let replacement = format!("{key}: [1, {{a: b}}]");
            retyped[i] = &replacement;
            out.push(retyped.join("\n"));
        }
    }
    out
}

#[test]
fn mutated_configurations_never_panic() {
    let sel = conf::Selection::default();
    let mut runs = 0;
    for text in inputs() {
        for m in mutations(&text) {
            let built = conf::build_str("mutated.yaml", &m, &sel);
            // Rendering must not panic either, valid or not.
            let _ = conf::render::text(&built.table);
            runs += 1;
        }
    }
    assert!(runs > 1000, "only {runs} mutations ran");
}
