//! Request matchers: strings, paths, headers, query parameters and virtual hosts.
//!
//! Pure functions over a [`Request`] view, so the data plane and the tests share one implementation
//! of Istio's matching semantics
//! (<https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPMatchRequest>).

mod host;
pub mod path;
mod regex;
mod route;
mod string;

pub use host::{authority_host, split_authority, VirtualHostIndex};
pub use regex::{Re2, MAX_REGEX_LEN};
pub use route::{HeaderMatcher, Miss, PathMatcher, QueryMatcher, Request, RequestHeaders, RouteMatch};
pub use string::StringMatcher;
