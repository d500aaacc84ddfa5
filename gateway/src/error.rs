//! The one table mapping how a request ended to its status code, body and Envoy response flag
//! (the README's "Status codes"; Envoy's response flags:
//! <https://www.envoyproxy.io/docs/envoy/latest/configuration/observability/access_log/usage#config-access-log-format-response-flags>).

use pingora::{Error, ErrorType};

/// Why a request was answered by the gateway itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No virtual host or no route matched.
    NoRoute,
    /// The route's cluster is not in the registry.
    NoCluster,
    /// A Gateway API route's backend is not found or not permitted: 500, as the Gateway API
    /// requires (Istio's `cluster_not_found_response_code` for such routes); flag `NC`.
    BackendNotFound,
    /// The cluster has no endpoint.
    NoHealthyUpstream,
    /// Connecting to the upstream failed (after the retries allowed).
    ConnectFailure,
    /// The upstream closed or reset the connection before a response.
    UpstreamReset,
    /// The request is malformed.
    BadRequest,
    /// The request headers exceed the limits.
    HeadersTooLarge,
    /// TLS to the upstream failed: its material is unusable, the handshake failed, or its
    /// certificate did not verify.
    UpstreamTls,
    /// The route's `timeout` passed before the upstream's response was complete.
    Timeout,
    /// The request target is longer than the gateway accepts.
    UriTooLong,
    /// The upstream's response was not valid HTTP.
    UpstreamProtocol,
    /// The cluster's connection pool is full (Envoy's circuit breakers).
    Overflow,
    /// No byte from the upstream for the stream idle timeout.
    StreamIdle,
}

impl Outcome {
    /// The HTTP status.
    pub fn status(self) -> u16 {
        match self {
            Outcome::NoRoute => 404,
            Outcome::NoCluster
            | Outcome::NoHealthyUpstream
            | Outcome::ConnectFailure
            | Outcome::UpstreamReset
            | Outcome::UpstreamTls
            | Outcome::Overflow => 503,
            Outcome::BackendNotFound => 500,
            Outcome::BadRequest => 400,
            Outcome::HeadersTooLarge => 431,
            Outcome::Timeout => 504,
            Outcome::StreamIdle => 408,
            Outcome::UriTooLong => 414,
            Outcome::UpstreamProtocol => 502,
        }
    }

    /// The body Envoy sends (empty for 404 and NC).
    pub fn body(self) -> &'static str {
        match self {
            Outcome::NoRoute
            | Outcome::NoCluster
            | Outcome::BackendNotFound
            | Outcome::BadRequest
            | Outcome::HeadersTooLarge
            | Outcome::UriTooLong => "",
            Outcome::UpstreamProtocol => {
                "upstream connect error or disconnect/reset before headers. reset reason: protocol error"
            }
            Outcome::Overflow => "upstream connect error or disconnect/reset before headers. reset reason: overflow",
            Outcome::NoHealthyUpstream => "no healthy upstream",
            Outcome::Timeout => "upstream request timeout",
            Outcome::StreamIdle => "stream timeout",
            Outcome::ConnectFailure => {
                "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
            }
            Outcome::UpstreamReset => {
                "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
            }
            Outcome::UpstreamTls => {
                "upstream connect error or disconnect/reset before headers. reset reason: connection failure, transport failure reason: TLS_error: CERTIFICATE_VERIFY_FAILED or handshake failure"
            }
        }
    }

    /// Envoy's response flag for access logs.
    pub fn flag(self) -> &'static str {
        match self {
            Outcome::NoRoute => "NR",
            Outcome::NoCluster | Outcome::BackendNotFound => "NC",
            Outcome::NoHealthyUpstream => "UH",
            Outcome::ConnectFailure | Outcome::UpstreamTls => "UF",
            Outcome::UpstreamReset => "UC",
            Outcome::Timeout => "UT",
            Outcome::StreamIdle => "SI",
            Outcome::BadRequest | Outcome::HeadersTooLarge | Outcome::UriTooLong => "DPE",
            Outcome::UpstreamProtocol => "UPE",
            Outcome::Overflow => "UO",
        }
    }

    /// The outcome of a Pingora proxy error that reached `fail_to_proxy`.
    pub fn of_error(e: &Error) -> Option<Outcome> {
        match e.etype() {
            ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert | ErrorType::HandshakeError => {
                Some(Outcome::UpstreamTls)
            }
            ErrorType::ConnectTimedout
            | ErrorType::ConnectRefused
            | ErrorType::ConnectNoRoute
            | ErrorType::ConnectError
            // The source address (GatewayPolicy `upstreamBind`) is not this host's, or its port
            // range is used up: the connection is never made (Envoy: a connect failure).
            | ErrorType::BindError => Some(Outcome::ConnectFailure),
            // Pingora wraps what failed while connecting (a bind error) in an internal error.
            ErrorType::InternalError if e.esource() == &pingora::ErrorSource::Upstream => {
                let cause = e.cause.as_ref()?;
                let inner = cause.downcast_ref::<Box<Error>>().map(AsRef::as_ref).or_else(|| cause.downcast_ref::<Error>());
                inner.and_then(Outcome::of_error)
            }
            ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError | ErrorType::H2Error
                if e.esource() == &pingora::ErrorSource::Upstream =>
            {
                Some(Outcome::UpstreamReset)
            }
            ErrorType::InvalidHTTPHeader | ErrorType::H1Error if e.esource() == &pingora::ErrorSource::Upstream => {
                Some(Outcome::UpstreamProtocol)
            }
            // The client's own bytes were not HTTP (bad chunking, a bad body length).
            ErrorType::InvalidHTTPHeader
            | ErrorType::H1Error
            | ErrorType::H2Error
            | ErrorType::Custom("InvalidChunk")
                if e.esource() == &pingora::ErrorSource::Downstream =>
            {
                Some(Outcome::BadRequest)
            }
            _ => None,
        }
    }

    /// An error carrying this outcome's status, for returning from a hook.
    pub fn error(self) -> Box<Error> {
        Error::explain(ErrorType::HTTPStatus(self.status()), self.flag())
    }
}
