//! Parsed forms of the strings Istio resources carry: host names, durations, protocols, sizes.

pub mod duration;
pub mod grpc;
pub mod host;
pub mod protocol;
pub mod quantity;

pub use duration::Duration;
pub use protocol::Protocol;
