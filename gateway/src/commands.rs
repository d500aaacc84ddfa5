//! The verbs: `validate`, `routes`, `run`, `version`. Each returns the process exit status.

use std::io::Write;

use crate::cli::{Output, RoutesArgs, RunArgs, Selection};

/// Exit status: the configuration is valid.
pub const EXIT_OK: u8 = 0;
/// Exit status: the configuration is invalid.
pub const EXIT_INVALID: u8 = 1;
/// Exit status: unreadable input or bad usage.
pub const EXIT_USAGE: u8 = 2;

fn build(sel: &Selection) -> Result<conf::Built, u8> {
    if sel.mesh_config.is_some() {
        eprintln!("warning: --mesh-config is not implemented yet; the file is not read");
    }
    conf::build(&sel.config, &sel.to_conf()).map_err(|e| {
        eprintln!("pylon: {e}");
        EXIT_USAGE
    })
}

/// `pylon validate`: diagnostics on stdout, one per line, then a summary on stderr.
pub fn validate(sel: &Selection) -> u8 {
    let built = match build(sel) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let mut stdout = std::io::stdout().lock();
    let _ = write!(stdout, "{}", built.diagnostics);
    let errors = built.diagnostics.error_count();
    let warnings = built.diagnostics.0.len() - errors;
    if built.is_valid() {
        eprintln!(
            "valid: {} listener(s), {} cluster(s), {warnings} warning(s)",
            built.table.listeners.len(),
            built.table.clusters.len()
        );
        EXIT_OK
    } else {
        eprintln!("invalid: {errors} error(s), {warnings} warning(s)");
        EXIT_INVALID
    }
}

/// `pylon routes`: the table on stdout; diagnostics on stderr; exit 1 when invalid.
pub fn routes(args: &RoutesArgs) -> u8 {
    let built = match build(&args.selection) {
        Ok(b) => b,
        Err(code) => return code,
    };
    eprint!("{}", built.diagnostics);
    if !built.is_valid() {
        eprintln!("invalid: {} error(s); fix them to see the routes", built.diagnostics.error_count());
        return EXIT_INVALID;
    }
    let text = match args.output {
        Output::Text => conf::render::text(&built.table),
        Output::Json => match serde_json::to_string_pretty(&built.table) {
            Ok(json) => json + "\n",
            Err(e) => {
                eprintln!("pylon: cannot encode the table: {e}");
                return EXIT_INVALID;
            }
        },
    };
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    EXIT_OK
}

/// `pylon run`: refuses invalid configuration (exit 1, diagnostics on stderr).
pub fn run(args: &RunArgs) -> u8 {
    let built = match build(&args.selection) {
        Ok(b) => b,
        Err(code) => return code,
    };
    eprint!("{}", built.diagnostics);
    if !built.is_valid() {
        eprintln!("pylon: refusing to start: {} error(s) in the configuration", built.diagnostics.error_count());
        return EXIT_INVALID;
    }
    eprintln!("pylon: the data plane is not part of this build yet; the configuration is valid");
    EXIT_INVALID
}

/// `pylon version`.
pub fn version() -> u8 {
    println!("pylon {}", env!("CARGO_PKG_VERSION"));
    EXIT_OK
}
