//! End-to-end test harness: in-process upstreams that report what they received, a DNS server the
//! test controls, and the gateway started in-process on ephemeral ports. No fixed ports, no sleeps:
//! readiness is polled with a deadline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support fails by panicking

pub mod bare;
pub mod certs;
pub mod client;
pub mod closed_port;
pub mod conformance;
pub mod dns;
pub mod faulty;
pub mod gateway;
pub mod jwks;
pub mod netns;
pub mod tls;
pub mod upstream;
pub mod yaml;

pub use gateway::TestGateway;
pub use upstream::Upstream;
