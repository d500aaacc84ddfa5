//! `pylon`: a thin entry point over `gateway::commands`.

use std::process::ExitCode;

use clap::Parser;
use gateway::cli::{Cli, Command};
use gateway::commands;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let status = match &cli.command {
        Command::Run(args) => commands::run(args),
        Command::Validate(sel) => commands::validate(sel),
        Command::Routes(args) => commands::routes(args),
        Command::Version => commands::version(),
    };
    ExitCode::from(status)
}
