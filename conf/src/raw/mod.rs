//! Serde mirrors of the Istio and Kubernetes kinds Pylon reads, with Istio's names.
//!
//! These types take the YAML as written: strings stay strings (durations, hosts) so that validation
//! can report every problem with Istio's message; `crate::model` parses them. Unknown fields are not
//! rejected by serde itself: the loader collects every one of them (see `crate::load`).

mod common;
mod destination_rule;
mod gateway;
pub mod gateway_api;
mod gateway_policy;
mod kubernetes;
mod meta;
mod secret;
mod security;
mod service_entry;
mod virtual_service;

pub use common::*;
pub use destination_rule::*;
pub use gateway::*;
pub use gateway_policy::*;
pub use kubernetes::*;
pub use meta::*;
pub use secret::*;
pub use security::*;
pub use service_entry::*;
pub use virtual_service::*;
