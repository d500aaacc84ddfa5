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

    /// The protocol of a Kubernetes Service port, as Istio infers it (`kube.ConvertProtocol` in
    /// istio/istio `pkg/config/kube/conversion.go`): UDP is UDP; `appProtocol` wins over the port
    /// name, with Kubernetes' `kubernetes.io/h2c` (HTTP2), `kubernetes.io/ws` (HTTP) and
    /// `kubernetes.io/wss` (HTTPS); otherwise the name up to its first `-` (`http-web` → HTTP,
    /// `grpc-web*` → gRPC-Web); unknown names are TCP on the well-known ports 25, 53, 3306 and
    /// 27017, and `None` (auto-detected by Istio, HTTP/1.1 at a Pylon gateway) elsewhere.
    pub fn from_kubernetes(port: u32, name: &str, protocol: Option<&str>, app_protocol: Option<&str>) -> Option<Self> {
        if protocol.is_some_and(|p| p.eq_ignore_ascii_case("UDP")) {
            return Some(Protocol::Udp);
        }
        let name = match app_protocol {
            Some("kubernetes.io/h2c") => return Some(Protocol::Http2),
            Some("kubernetes.io/ws") => return Some(Protocol::Http),
            Some("kubernetes.io/wss") => return Some(Protocol::Https),
            Some(app) => app,
            None => name,
        };
        if name.get(..8).is_some_and(|p| p.eq_ignore_ascii_case("grpc-web")) {
            return Some(Protocol::GrpcWeb);
        }
        let prefix = name.split('-').next().unwrap_or(name);
        Protocol::parse(prefix).or_else(|| matches!(port, 25 | 53 | 3306 | 27017).then_some(Protocol::Tcp))
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

#[cfg(test)]
mod tests {
    use super::Protocol;

    #[test]
    fn kubernetes_ports_get_the_protocol_istio_infers() {
        let p = |port, name, proto, app| Protocol::from_kubernetes(port, name, proto, app);
        assert_eq!(p(80, "http-web", None, None), Some(Protocol::Http));
        assert_eq!(p(80, "HTTP2", None, None), Some(Protocol::Http2));
        assert_eq!(p(80, "grpc-web-api", None, None), Some(Protocol::GrpcWeb));
        assert_eq!(p(80, "grpc", None, None), Some(Protocol::Grpc));
        assert_eq!(p(80, "web", None, Some("kubernetes.io/h2c")), Some(Protocol::Http2));
        assert_eq!(p(80, "grpc", None, Some("http")), Some(Protocol::Http), "appProtocol wins");
        assert_eq!(p(443, "", None, Some("kubernetes.io/wss")), Some(Protocol::Https));
        assert_eq!(p(80, "http", Some("UDP"), None), Some(Protocol::Udp));
        assert_eq!(p(3306, "db", None, None), Some(Protocol::Tcp), "a well-known port");
        assert_eq!(p(8080, "web", None, None), None, "unknown: auto-detected");
        assert_eq!(p(8080, "", None, None), None);
    }
}
