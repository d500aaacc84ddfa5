//! Parsed forms of the strings Istio resources carry: host names, durations, protocols.

pub mod duration;
pub mod host;
pub mod protocol;

pub use duration::Duration;
pub use protocol::Protocol;
