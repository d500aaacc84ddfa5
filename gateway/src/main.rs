//! `pylon`: a thin entry point over `gateway::commands`.

use std::process::ExitCode;

use clap::Parser;
use gateway::cli::{Cli, Command};
use gateway::commands;

/// jemalloc, configured at build time (`.cargo/config.toml`) to give freed memory back to the
/// system within a second: cheaper per request than glibc's allocator, and the transient peak of
/// loading a large configuration does not stay resident.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let status = match &cli.command {
        Command::Run(args) => commands::run(args),
        Command::Validate(sel) => commands::validate(sel),
        Command::Routes(args) => commands::routes(args),
        Command::Explain(args) => commands::explain(args),
        Command::Diff(args) => commands::diff(args),
        Command::Version => commands::version(),
    };
    ExitCode::from(status)
}
