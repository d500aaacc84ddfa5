//! Pylon, the gateway: command line, and (as it arrives) listeners, proxying, reload and telemetry.
//! The only crate that knows Pingora.

#![forbid(unsafe_code)]

pub mod admin;
pub mod cache;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod conn;
pub mod edge;
pub mod error;
pub mod explain;
pub mod ext_authz;
pub mod jwks;
pub mod l4;
pub mod lifecycle;
pub mod listener;
pub mod logging;
pub mod proxy;
pub mod reload;
pub mod server;
pub mod signals;
pub mod snapshot;
pub mod state;
pub mod systemd;
pub mod telemetry;
pub mod tls;
pub mod upgrade;
pub mod workers;
