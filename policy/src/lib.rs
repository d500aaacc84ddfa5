//! Pylon's policies: what a gateway checks about a request besides routing it.
//!
//! Each module takes a request and a small [`Context`] (addresses, SNI, the verified client
//! certificate, the identity a token proved) and returns a [`Decision`]. A denial is a value,
//! never an error that a caller could mistake for "continue". Chains are built once per
//! configuration ([`Chain::build`]) and a chain that cannot be built rejects the configuration:
//! there is no fail-open path.
//!
//! Modules: [`jwt`] (Istio `RequestAuthentication`), [`authz`] (Istio `AuthorizationPolicy`).

#![forbid(unsafe_code)]

pub mod authz;
mod chain;
mod context;
mod external;
pub mod jwt;
pub mod ratelimit;
mod reply;

pub use chain::{BuildError, Chain};
pub use context::{Context, Identity};
pub use external::{External, NoExternal};
pub use reply::LocalReply;

/// What a policy decided about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go on (to the next policy, then to routing).
    Allow,
    /// Answer locally with this reply; the request goes no further.
    Deny(LocalReply),
}
