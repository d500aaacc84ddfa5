//! The text form of a [`Report`] (`pylon diff`): one line per change with its details indented
//! under it, the new diagnostics, then a summary line.

use std::fmt::Write;

use super::{Change, Kind, Report, Section};

/// Renders a report as text.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    for c in &report.changes {
        let _ = writeln!(out, "{:<7} {}", word(c), c.subject);
        c.details.iter().for_each(|d| _ = writeln!(out, "    {d}"));
    }
    if !report.new_diagnostics.is_empty() {
        out.push_str("new diagnostics:\n");
        report.new_diagnostics.iter().for_each(|d| _ = writeln!(out, "    {d}"));
    }
    out.push_str(&match report.changes.len() {
        _ if !report.new_valid => "not compared: the new configuration is invalid\n".to_string(),
        0 => "no change\n".to_string(),
        n => format!("{n} change(s)\n"),
    });
    out
}

/// What happened, in a word: listeners are opened and closed, routes move.
fn word(c: &Change) -> &'static str {
    match (c.section, c.kind) {
        (Section::Listener, Kind::Added) => "opened",
        (Section::Listener, Kind::Removed) => "closed",
        (_, Kind::Added) => "added",
        (_, Kind::Removed) => "removed",
        (_, Kind::Changed) => "changed",
        (_, Kind::Reordered) => "moved",
    }
}
