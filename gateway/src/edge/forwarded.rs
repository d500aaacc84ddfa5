//! The headers Istio's gateway sets on every request it forwards (Envoy's connection manager with
//! `use_remote_address: true`, `xff_num_trusted_hops: 0`, `forward_client_cert_details:
//! SANITIZE_SET`): nothing a client sends in them is trusted.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use pingora::{ErrorType, OrErr};

use crate::proxy::request::joined;
use crate::tls::peer::PeerCertificate;

/// `x-forwarded-client-cert`.
pub const XFCC: &str = "x-forwarded-client-cert";

// The names looked up or removed on every request, parsed once: a `&str` name is parsed (and a
// custom one hashed) again on each lookup, which cost more than the rest of the forwarding work.
static XFCC_NAME: HeaderName = HeaderName::from_static(XFCC);
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_ENVOY_EXTERNAL_ADDRESS: HeaderName = HeaderName::from_static("x-envoy-external-address");

/// The Envoy control headers a client must not set: Envoy removes them from external requests
/// (<https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_conn_man/header_sanitizing>,
/// `ConnectionManagerUtility::cleanInternalHeaders`). Left in, `x-envoy-retry-on` or
/// `x-envoy-upstream-rq-timeout-ms` would let a client steer upstream Envoys.
pub const INTERNAL_HEADERS: &[&str] = &[
    "x-envoy-decorator-operation",
    "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-external-address",
    "x-envoy-force-trace",
    "x-envoy-hedge-on-per-try-timeout",
    "x-envoy-internal",
    "x-envoy-ip-tags",
    "x-envoy-max-retries",
    "x-envoy-original-url",
    "x-envoy-retriable-header-names",
    "x-envoy-retriable-status-codes",
    "x-envoy-retry-grpc-on",
    "x-envoy-retry-on",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-rq-timeout-alt-response",
    "x-envoy-upstream-rq-timeout-ms",
];

/// Removes [`INTERNAL_HEADERS`]. Every request reaching the gateway is external: Pylon is the
/// edge (Envoy's newer default, an empty `internal_address_config`, treats none as internal).
pub fn strip_internal(req: &mut RequestHeader) {
    // One pass over the request's names first: almost no request carries any of them, and a
    // lookup per name would parse and hash all nineteen on every request.
    if !req.headers.keys().any(|k| k.as_str().starts_with("x-envoy-")) {
        return;
    }
    for name in INTERNAL_HEADERS {
        req.remove_header(*name);
    }
}

/// What a request says about where it came from, and how far the gateway trusts it.
pub struct Origin {
    /// The TCP peer (appended to `x-forwarded-for`, as Envoy with `use_remote_address`) and the
    /// trusted client address (`x-envoy-external-address`).
    pub addresses: Option<(String, String)>,
    /// The downstream scheme.
    pub scheme: &'static str,
    /// The peer is a trusted proxy (`numTrustedProxies` > 0, or inside `trustedCidrs`).
    pub trusted_hop: bool,
    /// What happens to `x-forwarded-client-cert` (MeshConfig `forwardClientCertDetails`).
    pub xfcc: conf::table::ForwardClientCert,
}

/// The `x-forwarded-*` headers only a trusted proxy may set: from anyone else they are removed
/// (`x-forwarded-proto` is then set to the downstream scheme).
static FORWARDED_BY_PROXIES: [HeaderName; 2] =
    [HeaderName::from_static("x-forwarded-host"), HeaderName::from_static("x-forwarded-port")];

/// Istio's gateway request headers: `x-forwarded-for` appended with the client address,
/// `x-forwarded-proto` set to the downstream scheme unless a trusted proxy set it (Envoy: "if the
/// prior hop is not a trusted proxy, overwrite any x-forwarded-proto value it set"),
/// `x-forwarded-host` and `x-forwarded-port` kept only from a trusted proxy,
/// `x-forwarded-client-cert` set from the client certificate or removed (SANITIZE_SET), and
/// `x-request-id` set to `request_id` (the client's, or one made for this request). Returns it.
///
/// They are set on the upstream request's header map itself (see `request::with_header_map`):
/// through Pingora's `RequestHeader`, each name was parsed again and the map grown one at a time.
pub fn forwarding_headers(
    headers: &mut HeaderMap,
    origin: Origin,
    client_cert: Option<&PeerCertificate>,
    request_id: Option<&str>,
) -> pingora::Result<String> {
    let Origin { addresses, scheme, trusted_hop, xfcc: xfcc_mode } = origin;
    // Room for these four and for what the route adds after them (`x-envoy-attempt-count`, its
    // header operations): growing the map later rehashes every header, about 1,500 instructions.
    headers.reserve(8);
    // One pass over the client's names first: few requests carry any `x-forwarded-*` header or an
    // `x-request-id`, and each lookup or removal below hashes its name.
    let (mut forwarded, mut sent_id) = (false, false);
    for k in headers.keys() {
        forwarded |= k.as_str().starts_with("x-forwarded-");
        sent_id |= *k == X_REQUEST_ID;
    }
    if let Some((peer, client)) = addresses {
        // Every x-forwarded-for line counts; Envoy appends with a bare comma.
        let prev = if forwarded { joined(headers.get_all(&X_FORWARDED_FOR)).unwrap_or_default() } else { "".into() };
        let prev = prev.trim();
        let xff = if prev.is_empty() { peer } else { format!("{prev},{peer}") };
        headers.insert(X_FORWARDED_FOR.clone(), value(xff)?);
        headers.insert(X_ENVOY_EXTERNAL_ADDRESS.clone(), value(client)?);
    }
    if !trusted_hop || !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(scheme));
    }
    if !trusted_hop && forwarded {
        for name in &FORWARDED_BY_PROXIES {
            headers.remove(name);
        }
    }
    client_cert_header(headers, xfcc_mode, client_cert, forwarded)?;
    // One id per request, whatever the number of upstream attempts.
    let (single, sent) = if sent_id {
        let lines = headers.get_all(&X_REQUEST_ID);
        (lines.iter().nth(1).is_none(), lines.iter().next().and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()))
    } else {
        (true, None)
    };
    let id = match (request_id, sent) {
        // A retry, or a client's id kept: a single line already says it.
        (Some(id), Some(sent)) if single && id == sent => return Ok(id.to_string()),
        (None, Some(sent)) if single => return Ok(sent.to_string()),
        (None, Some(sent)) => sent.to_string(),
        (Some(id), _) => id.to_string(),
        (None, None) => new_request_id(),
    };
    headers.insert(X_REQUEST_ID.clone(), value(id.clone())?);
    Ok(id)
}

/// `text` as a header value; Pingora's error for one that is not (as `insert_header` gives).
fn value(text: String) -> pingora::Result<HeaderValue> {
    HeaderValue::try_from(text).or_err(ErrorType::InvalidHTTPHeader, "invalid forwarding header value")
}

/// A random (version 4) UUID for `x-request-id`, from the thread's fast generator: an id must be
/// unique, not secret, and `Uuid::new_v4` costs a `getrandom` system call per request.
pub fn new_request_id() -> String {
    let uuid = uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid();
    uuid.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()).to_string()
}

/// `x-forwarded-client-cert` as Envoy's `forward_client_cert_details` says. Istio's gateway default
/// is SANITIZE_SET: a client's own XFCC never passes; a verified client certificate sets it.
fn client_cert_header(
    headers: &mut HeaderMap,
    mode: conf::table::ForwardClientCert,
    cert: Option<&PeerCertificate>,
    client_sent_forwarded: bool,
) -> pingora::Result<()> {
    use conf::table::ForwardClientCert as Mode;
    // Envoy: FORWARD_ONLY and APPEND_FORWARD keep the client's header only on mutual-TLS
    // connections; on any other it is removed, so a client cannot claim an identity.
    match (mode, cert) {
        (Mode::AlwaysForwardOnly, _) | (Mode::ForwardOnly, Some(_)) => {}
        (Mode::SanitizeSet, Some(cert)) => {
            headers.insert(XFCC_NAME.clone(), value(xfcc(cert))?);
        }
        (Mode::AppendForward, Some(cert)) => {
            let prev = joined(headers.get_all(&XFCC_NAME)).map(|v| v.into_owned()).filter(|v| !v.is_empty());
            let joined = prev.map_or_else(|| xfcc(cert), |p| format!("{p},{}", xfcc(cert)));
            headers.insert(XFCC_NAME.clone(), value(joined)?);
        }
        (Mode::Sanitize, _) | (Mode::SanitizeSet | Mode::ForwardOnly | Mode::AppendForward, None) => {
            if client_sent_forwarded {
                headers.remove(&XFCC_NAME);
            }
        }
    }
    Ok(())
}

/// The XFCC value Envoy sets with Istio's gateway settings (`set_current_client_cert_details`:
/// subject, cert, URI, DNS): `Hash=…;Cert="…";Subject="…";URI=…;DNS=…`. `URI=` is present even
/// without a URI SAN; `DNS` only with DNS SANs; several SANs repeat the key (Envoy
/// `ConnectionManagerUtility::mutateXfccRequestHeader`).
pub fn xfcc(cert: &PeerCertificate) -> String {
    let mut parts = vec![
        format!("Hash={}", cert.hash),
        format!("Cert=\"{}\"", cert.pem_encoded),
        format!("Subject=\"{}\"", cert.subject),
    ];
    if cert.uris.is_empty() {
        parts.push("URI=".to_string());
    }
    parts.extend(cert.uris.iter().map(|u| format!("URI={u}")));
    parts.extend(cert.dns.iter().map(|d| format!("DNS={d}")));
    parts.join(";")
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_are_distinct_version_4_uuids() {
        let (a, b) = (super::new_request_id(), super::new_request_id());
        assert_ne!(a, b);
        let parsed = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!((parsed.get_version_num(), a.len()), (4, 36));
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
    }

    use super::*;

    fn cert(uris: &[&str], dns: &[&str]) -> PeerCertificate {
        PeerCertificate {
            hash: "ab01".into(),
            subject: "CN=client,O=Example".into(),
            uris: uris.iter().map(|s| s.to_string()).collect(),
            dns: dns.iter().map(|s| s.to_string()).collect(),
            pem_encoded: "-----BEGIN%20CERTIFICATE-----%0A".into(),
            verified: true,
        }
    }

    #[test]
    fn xfcc_has_envoys_keys_in_envoys_order() {
        assert_eq!(
            xfcc(&cert(&["spiffe://td/ns/a/sa/b"], &["a.example.com", "b.example.com"])),
            "Hash=ab01;Cert=\"-----BEGIN%20CERTIFICATE-----%0A\";Subject=\"CN=client,O=Example\";URI=spiffe://td/ns/a/sa/b;DNS=a.example.com;DNS=b.example.com"
        );
    }

    #[test]
    fn xfcc_keeps_an_empty_uri_and_omits_dns() {
        assert!(xfcc(&cert(&[], &[])).ends_with(";Subject=\"CN=client,O=Example\";URI="));
    }

    fn origin(trusted_hop: bool) -> Origin {
        Origin { addresses: None, scheme: "https", trusted_hop, xfcc: conf::table::ForwardClientCert::SanitizeSet }
    }

    #[test]
    fn forwarded_proto_host_and_port_are_kept_only_from_a_trusted_proxy() {
        for (trusted, proto, host) in [(false, "https", None), (true, "http", Some("shop.example.com"))] {
            let mut req = HeaderMap::new();
            for (k, v) in
                [("x-forwarded-proto", "http"), ("x-forwarded-host", "shop.example.com"), ("x-forwarded-port", "80")]
            {
                req.insert(k, HeaderValue::from_static(v));
            }
            forwarding_headers(&mut req, origin(trusted), None, None).unwrap();
            let value = |k: &str| req.get(k).and_then(|v| v.to_str().ok());
            assert_eq!(
                (value("x-forwarded-proto"), value("x-forwarded-host")),
                (Some(proto), host),
                "trusted {trusted}"
            );
            assert_eq!(value("x-forwarded-port").is_some(), trusted);
        }
        let mut bare = HeaderMap::new();
        forwarding_headers(&mut bare, origin(true), None, None).unwrap();
        assert_eq!(bare.get("x-forwarded-proto").unwrap(), "https", "set when no proxy set it");
    }

    #[test]
    fn forward_client_cert_details_modes() {
        use conf::table::ForwardClientCert as Mode;
        let run = |mode: Mode, cert: Option<&PeerCertificate>| {
            let mut req = HeaderMap::new();
            req.insert(XFCC, HeaderValue::from_static("Hash=client"));
            forwarding_headers(&mut req, Origin { xfcc: mode, ..origin(false) }, cert, None).unwrap();
            req.get(XFCC).map(|v| v.to_str().unwrap().to_string())
        };
        let c = cert(&[], &[]);
        assert_eq!(run(Mode::Sanitize, Some(&c)), None);
        assert_eq!(run(Mode::ForwardOnly, Some(&c)).as_deref(), Some("Hash=client"));
        assert!(run(Mode::AppendForward, Some(&c)).unwrap().starts_with("Hash=client,Hash=ab01;"));
        assert_eq!(run(Mode::AppendForward, None), None, "no mutual TLS: the client's header goes");
        assert_eq!(run(Mode::ForwardOnly, None), None);
        assert_eq!(run(Mode::AlwaysForwardOnly, None).as_deref(), Some("Hash=client"));
        assert!(run(Mode::SanitizeSet, Some(&c)).unwrap().starts_with("Hash=ab01;"));
        assert_eq!(run(Mode::SanitizeSet, None), None);
    }

    #[test]
    fn a_client_xfcc_is_removed_without_a_certificate_and_replaced_with_one() {
        let mut req = HeaderMap::new();
        req.insert(XFCC, HeaderValue::from_static("Hash=forged"));
        forwarding_headers(&mut req, origin(false), None, None).unwrap();
        assert!(req.get(XFCC).is_none());
        req.insert(XFCC, HeaderValue::from_static("Hash=forged"));
        forwarding_headers(&mut req, origin(false), Some(&cert(&[], &[])), None).unwrap();
        let all: Vec<_> = req.get_all(XFCC).iter().collect();
        assert_eq!(all.len(), 1);
        assert!(all[0].to_str().unwrap().starts_with("Hash=ab01;"));
    }
}
