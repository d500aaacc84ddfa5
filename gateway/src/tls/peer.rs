//! What a connection knows of the certificate its client presented, in the forms Envoy's
//! `x-forwarded-client-cert` uses (Envoy `ConnectionInfo`: `sha256PeerCertificateDigest`,
//! `subjectPeerCertificate`, `uriSanPeerCertificate`, `dnsSansPeerCertificate`,
//! `urlEncodedPemEncodedPeerCertificate`), and the client-certificate checks of a MUTUAL server.

use openssl::hash::MessageDigest;
use openssl::x509::{X509NameRef, X509Ref};

/// The client certificate of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// Lower-case hex SHA-256 of the DER certificate.
    pub hash: String,
    /// The subject in RFC 2253 form (`CN=client,O=Example`).
    pub subject: String,
    /// URI SANs.
    pub uris: Vec<String>,
    /// DNS SANs.
    pub dns: Vec<String>,
    /// The PEM certificate, percent-encoded as Envoy encodes it.
    pub pem_encoded: String,
    /// The chain verified (false only with `insecureSkipVerify`).
    pub verified: bool,
}

impl PeerCertificate {
    /// Reads the details of `cert`.
    pub fn of(cert: &X509Ref, verified: bool) -> Self {
        let hash = cert.digest(MessageDigest::sha256()).map(|d| hex(&d)).unwrap_or_default();
        let pem = cert.to_pem().unwrap_or_default();
        PeerCertificate {
            hash,
            subject: rfc2253(cert.subject_name()),
            uris: sans(cert, |n| n.uri().map(str::to_string)),
            dns: sans(cert, |n| n.dnsname().map(str::to_string)),
            pem_encoded: percent_encode(&pem),
            verified,
        }
    }
}

fn sans(cert: &X509Ref, pick: impl Fn(&openssl::x509::GeneralNameRef) -> Option<String>) -> Vec<String> {
    cert.subject_alt_names().map(|names| names.iter().filter_map(&pick).collect()).unwrap_or_default()
}

/// True for `spiffe://<one of domains>/<path>`: a SPIFFE identity in one of the trust domains
/// (MeshConfig `trustDomain` and its aliases; trust domains compare case-insensitively).
pub fn in_trust_domain(san: &str, domains: &[String]) -> bool {
    let Some(rest) = san.strip_prefix("spiffe://") else { return false };
    let domain = rest.split('/').next().unwrap_or("");
    rest.len() > domain.len() + 1 && domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
}

/// Every SAN of `cert` as text: DNS, URI, email and IP (what Istio's `subjectAltNames` matches).
pub fn all_sans(cert: &X509Ref) -> Vec<(SanKind, String)> {
    let Some(names) = cert.subject_alt_names() else { return Vec::new() };
    names
        .iter()
        .filter_map(|n| {
            if let Some(d) = n.dnsname() {
                Some((SanKind::Dns, d.to_string()))
            } else if let Some(u) = n.uri() {
                Some((SanKind::Other, u.to_string()))
            } else if let Some(e) = n.email() {
                Some((SanKind::Other, e.to_string()))
            } else {
                n.ipaddress().and_then(ip_text).map(|ip| (SanKind::Other, ip))
            }
        })
        .collect()
}

/// DNS SANs match case-insensitively and as wildcard certificates; the others exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanKind {
    /// A DNS name.
    Dns,
    /// URI, email or IP.
    Other,
}

fn ip_text(raw: &[u8]) -> Option<String> {
    match raw.len() {
        4 => <[u8; 4]>::try_from(raw).ok().map(|b| std::net::Ipv4Addr::from(b).to_string()),
        16 => <[u8; 16]>::try_from(raw).ok().map(|b| std::net::Ipv6Addr::from(b).to_string()),
        _ => None,
    }
}

/// Envoy's SAN matcher for one configured name: exact for URI, email and IP; for DNS, case-
/// insensitive, and a wildcard certificate name (`*.example.com`) covers exactly one label.
pub fn san_matches(kind: SanKind, san: &str, wanted: &str) -> bool {
    match kind {
        SanKind::Other => san == wanted,
        SanKind::Dns => {
            if san.eq_ignore_ascii_case(wanted) {
                return true;
            }
            match (san.strip_prefix("*."), wanted.split_once('.')) {
                (Some(suffix), Some((label, rest))) => !label.is_empty() && rest.eq_ignore_ascii_case(suffix),
                _ => false,
            }
        }
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Percent-encoding as Envoy's `urlEncodedPemEncodedPeerCertificate`: only `A-Z a-z 0-9 * - . _`
/// are kept; everything else becomes `%XX` with upper-case hex.
pub fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3 / 2);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A distinguished name as OpenSSL's `X509_NAME_print_ex(.., XN_FLAG_RFC2253)` prints it: the
/// entries in reverse order, short names, `,` between them, RFC 2253 escaping, and bytes above
/// 0x7f as `\XX`.
pub fn rfc2253(name: &X509NameRef) -> String {
    let mut parts: Vec<String> = Vec::new();
    for entry in name.entries() {
        let key = entry.object().nid().short_name().map_or_else(|_| entry.object().to_string(), str::to_string);
        // UTF-8 conversion of every string type (BMPString included), as OpenSSL's printer does.
        let value = entry.data().to_string().unwrap_or_default();
        parts.push(format!("{key}={}", escape_rfc2253(&value)));
    }
    parts.reverse();
    parts.join(",")
}

fn escape_rfc2253(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.len().saturating_sub(1);
    for (i, c) in value.char_indices() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
            out.push(c);
        } else if c.is_ascii() && !c.is_ascii_control() {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\{b:02X}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_is_encoded_as_envoy_encodes_it() {
        assert_eq!(
            percent_encode(b"-----BEGIN CERTIFICATE-----\nMIIB+/a=\n"),
            "-----BEGIN%20CERTIFICATE-----%0AMIIB%2B%2Fa%3D%0A"
        );
    }

    #[test]
    fn dns_sans_match_case_insensitively_and_one_wildcard_label() {
        assert!(san_matches(SanKind::Dns, "API.example.com", "api.example.com"));
        assert!(san_matches(SanKind::Dns, "*.example.com", "api.example.com"));
        assert!(!san_matches(SanKind::Dns, "*.example.com", "a.b.example.com"));
        assert!(!san_matches(SanKind::Dns, "*.example.com", "example.com"));
        assert!(san_matches(SanKind::Other, "spiffe://td/ns/a/sa/b", "spiffe://td/ns/a/sa/b"));
        assert!(!san_matches(SanKind::Other, "spiffe://td/ns/a/sa/b", "SPIFFE://td/ns/a/sa/b"));
    }

    #[test]
    fn a_spiffe_identity_is_in_a_trust_domain_by_its_authority() {
        let domains = ["cluster.local".to_string(), "old.mesh".to_string()];
        assert!(in_trust_domain("spiffe://cluster.local/ns/a/sa/b", &domains));
        assert!(in_trust_domain("spiffe://OLD.mesh/ns/a/sa/b", &domains), "an alias, any case");
        assert!(!in_trust_domain("spiffe://other.local/ns/a/sa/b", &domains));
        assert!(!in_trust_domain("spiffe://cluster.local.evil/ns/a/sa/b", &domains));
        assert!(!in_trust_domain("spiffe://cluster.local", &domains), "no workload path");
        assert!(!in_trust_domain("spiffe://cluster.local/", &domains), "no workload path");
        assert!(!in_trust_domain("https://cluster.local/ns/a/sa/b", &domains));
    }

    #[test]
    fn rfc2253_escapes_specials_and_non_ascii() {
        assert_eq!(escape_rfc2253("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape_rfc2253(" lead"), "\\ lead");
        assert_eq!(escape_rfc2253("é"), "\\C3\\A9");
    }
}
