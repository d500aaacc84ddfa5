//! Pylon, the gateway: command line, and (as it arrives) listeners, proxying, reload and telemetry.
//! The only crate that knows Pingora.

#![forbid(unsafe_code)]

pub mod cli;
pub mod commands;
