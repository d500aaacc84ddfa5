//! Port protocols (Istio `pkg/config/protocol`).

use std::fmt;

use serde::Serialize;

/// A port protocol, parsed case-insensitively as Istio does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING-KEBAB-CASE")]
pub enum Protocol {
    /// HTTP/1.1 (and h2c on gateways).
    Http,
    /// HTTP/2.
    Http2,
    /// gRPC.
    Grpc,
    /// gRPC-Web.
    GrpcWeb,
    /// TLS-terminated or passthrough HTTPS.
    Https,
    /// Opaque TLS.
    Tls,
    /// Opaque TCP.
    Tcp,
    /// MongoDB (TCP at a gateway).
    Mongo,
    /// Redis (TCP at a gateway).
    Redis,
    /// MySQL (TCP at a gateway).
    Mysql,
    /// UDP (not meaningful at gateways).
    Udp,
    /// HTTP proxy (not meaningful at gateways).
    HttpProxy,
}

impl Protocol {
    /// Parses a protocol name, ignoring case; `None` for unknown names.
    pub fn parse(s: &str) -> Option<Protocol> {
        Some(match s.to_ascii_uppercase().as_str() {
            "HTTP" => Protocol::Http,
            "HTTP2" => Protocol::Http2,
            "GRPC" => Protocol::Grpc,
            "GRPC-WEB" => Protocol::GrpcWeb,
            "HTTPS" => Protocol::Https,
            "TLS" => Protocol::Tls,
            "TCP" => Protocol::Tcp,
            "MONGO" => Protocol::Mongo,
            "REDIS" => Protocol::Redis,
            "MYSQL" => Protocol::Mysql,
            "UDP" => Protocol::Udp,
            "HTTP_PROXY" => Protocol::HttpProxy,
            _ => return None,
        })
    }

    /// The canonical upper-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Http2 => "HTTP2",
            Protocol::Grpc => "GRPC",
            Protocol::GrpcWeb => "GRPC-WEB",
            Protocol::Https => "HTTPS",
            Protocol::Tls => "TLS",
            Protocol::Tcp => "TCP",
            Protocol::Mongo => "MONGO",
            Protocol::Redis => "REDIS",
            Protocol::Mysql => "MYSQL",
            Protocol::Udp => "UDP",
            Protocol::HttpProxy => "HTTP_PROXY",
        }
    }

    /// Istio `IsHTTP`: served by the HTTP connection manager.
    pub fn is_http(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Http2 | Protocol::Grpc | Protocol::GrpcWeb | Protocol::HttpProxy)
    }

    /// Istio `IsTLS`: HTTPS or TLS, which need `tls` settings on a Gateway server.
    pub fn is_tls(self) -> bool {
        matches!(self, Protocol::Https | Protocol::Tls)
    }

    /// Opaque TCP at a gateway.
    pub fn is_tcp(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Mongo | Protocol::Redis | Protocol::Mysql)
    }

    /// True when the upstream speaks HTTP/2 (HTTP2 and gRPC ports).
    pub fn is_http2(self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Grpc | Protocol::GrpcWeb)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
