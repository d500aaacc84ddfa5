//! Pylon, the gateway: command line, and (as it arrives) listeners, proxying, reload and telemetry.
//! The only crate that knows Pingora.

#![forbid(unsafe_code)]

pub mod cli;
pub mod commands;
pub mod dns;
pub mod error;
pub mod features;
pub mod listener;
pub mod logging;
pub mod proxy;
pub mod server;
pub mod signals;
pub mod snapshot;
pub mod state;
pub mod status;
pub mod upstream;
