//! TLS origination to a cluster (DestinationRule `tls` SIMPLE, MUTUAL and ISTIO_MUTUAL), as Istio configures
//! Envoy's upstream TLS context: SNI from `sni`, else the request's host (Envoy `auto_sni`);
//! the upstream certificate verified against `caCertificates` or the system's CAs, and its SANs
//! against `subjectAltNames`, else against the SNI (`auto_san_validation`); `insecureSkipVerify`
//! turns verification off. The client certificate of MUTUAL comes from files or `credentialName`;
//! ISTIO_MUTUAL presents the workload identity and requires a SPIFFE identity in the mesh's trust
//! domain (Istio's `ISTIO_MUTUAL` cluster: the workload certificate, the mesh root, and the SAN
//! matcher on `spiffe://<trust domain>/`).

use std::any::Any;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

use conf::raw::ClientTlsMode;
use conf::table::{ClientTls, PemSource};
use openssl::ssl::SslRef;
use openssl::x509::{X509Crl, X509Ref, X509};
use pingora::protocols::tls::HandshakeCompleteHook;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::CertKey;

use crate::tls::material::{self, MaterialError, Raw, Role};
use crate::tls::peer::{all_sans, in_trust_domain, san_matches};
use crate::tls::verify::check_revocation;

/// How connections to one cluster are secured.
pub struct Origination {
    /// `sni`; `None` = the request's host (HTTP) or the destination host (TCP).
    pub sni: Option<String>,
    /// Accepted SANs; empty = the SNI (checked by OpenSSL's host name verification).
    pub sans: Vec<String>,
    /// ISTIO_MUTUAL: a URI SAN `spiffe://<one of these>/...` is required instead.
    pub trust_domains: Vec<String>,
    /// False with `insecureSkipVerify`.
    pub verify: bool,
    /// Trusted CAs; `None` = the system's.
    pub ca: Option<Arc<Box<[X509]>>>,
    /// The client certificate (MUTUAL).
    pub client: Option<Arc<CertKey>>,
    /// Revoked upstream certificates.
    pub crls: Arc<Vec<X509Crl>>,
    /// Keeps pooled connections of different clusters apart (the pool key ignores the CA).
    pub group_key: u64,
}

/// What the post-handshake check found, stored with the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamVerdict(pub Result<(), String>);

impl Origination {
    /// Builds the origination of `cluster` from its sources (read in `sources` order). A client
    /// certificate must match its key; with `refuse_expired` an expired one is refused.
    pub fn build(
        cluster: &str,
        tls: &ClientTls,
        sources: &[(PemSource, Role)],
        raws: &[Raw],
        refuse_expired: bool,
    ) -> Result<Origination, MaterialError> {
        let parsed = material::parse(sources, raws, refuse_expired)?;
        let client = match parsed.pairs.into_iter().next() {
            Some((chain, key)) => Some(Arc::new(CertKey::new(chain, key))),
            None if matches!(tls.mode, ClientTlsMode::Mutual | ClientTlsMode::IstioMutual) => {
                return Err(MaterialError::new(
                    format!("cluster {cluster}"),
                    "MUTUAL TLS without a client certificate and key",
                ));
            }
            None => None,
        };
        let (ca, crls) = (parsed.ca, parsed.crls);
        let verify = !tls.insecure_skip_verify;
        let sans = tls.subject_alt_names.clone();
        // Pooled connections are reused only within a cluster and one version of its material: a
        // rotated CA or CRL must not keep connections verified under the old one.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        cluster.hash(&mut hasher);
        raws.iter().for_each(|r| r.bytes.hash(&mut hasher));
        Ok(Origination {
            sni: tls.sni.clone(),
            sans,
            trust_domains: tls.trust_domains.clone(),
            verify,
            ca: ca.map(|c| Arc::new(c.into_boxed_slice())),
            client,
            crls: Arc::new(crls),
            group_key: hasher.finish(),
        })
    }

    /// A TLS peer for `addr` serving a request for `host` (the request's authority for HTTP, the
    /// destination host for TCP). `check_host`: verify the certificate against the SNI when no
    /// `subjectAltNames` are configured (Istio's auto SAN validation, HTTP only). `Err` when
    /// there is no name to send or check (no `sni` and an empty host).
    pub fn peer(&self, addr: SocketAddr, host: &str, check_host: bool) -> Result<HttpPeer, String> {
        let host = conf::matcher::authority_host(host).into_owned();
        let bare = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let is_ip = bare.parse::<std::net::IpAddr>().is_ok();
        // Pingora turns verification off entirely for an empty SNI, so one is always given: the
        // configured one, else the host. OpenSSL does not send an IP address as SNI.
        let sni = match &self.sni {
            Some(sni) => sni.clone(),
            None if bare.is_empty() => return Err("no sni configured and the request has no host".into()),
            None if is_ip => bare.clone(),
            None => host,
        };
        let mut peer = HttpPeer::new(addr, true, sni);
        // Which name the certificate must carry: `subjectAltNames`; else the configured SNI; else,
        // for HTTP, the request's host (for TCP only the chain is verified, as in Envoy).
        let mut sans = self.sans.clone();
        if sans.is_empty() && self.sni.is_none() && check_host && is_ip {
            sans.push(bare); // IP SANs, which a host name check does not cover
        }
        peer.options.verify_cert = self.verify;
        // Istio's outbound SNI of ISTIO_MUTUAL is not a name the certificate carries: the SPIFFE
        // identity is checked instead.
        let by_name = sans.is_empty() && self.trust_domains.is_empty();
        peer.options.verify_hostname = self.verify && by_name && (self.sni.is_some() || (check_host && !is_ip));
        peer.options.ca.clone_from(&self.ca);
        peer.client_cert_key.clone_from(&self.client);
        peer.group_key = self.group_key;
        let crls = if self.verify { self.crls.clone() } else { Arc::new(Vec::new()) };
        if !self.verify {
            sans.clear();
        }
        let wanted = Wanted { sans, trust_domains: self.trust_domains.clone() };
        peer.options.upstream_tls_handshake_complete_hook = Some(verdict_hook(wanted, crls));
        Ok(peer)
    }
}

/// The identity an upstream certificate must carry, besides a valid chain.
struct Wanted {
    /// One of these SANs (`subjectAltNames`).
    sans: Vec<String>,
    /// A SPIFFE URI SAN in one of these trust domains (ISTIO_MUTUAL).
    trust_domains: Vec<String>,
}

/// A hook that records, for each new upstream connection, whether it speaks TLS 1.2 or newer (Envoy's
/// client default; Pingora's connector would accept 1.0), its certificate carries the `wanted`
/// identity, and its chain is not revoked by `crls`.
fn verdict_hook(wanted: Wanted, crls: Arc<Vec<X509Crl>>) -> HandshakeCompleteHook {
    Arc::new(move |ssl: &SslRef| -> Option<Arc<dyn Any + Send + Sync>> {
        Some(Arc::new(UpstreamVerdict(check(ssl, &wanted, &crls))))
    })
}

fn check(ssl: &SslRef, wanted: &Wanted, crls: &[X509Crl]) -> Result<(), String> {
    use openssl::ssl::SslVersion;
    if !matches!(ssl.version2(), Some(v) if v == SslVersion::TLS1_2 || v == SslVersion::TLS1_3) {
        return Err(format!("the upstream negotiated {}; TLS 1.2 is the minimum", ssl.version_str()));
    }
    let (sans, domains) = (&wanted.sans, &wanted.trust_domains);
    if sans.is_empty() && domains.is_empty() && crls.is_empty() {
        return Ok(());
    }
    let leaf = ssl.peer_certificate().ok_or("the upstream presented no certificate")?;
    let presented = all_sans(&leaf);
    if !sans.is_empty() && !sans.iter().any(|want| presented.iter().any(|(kind, san)| san_matches(*kind, san, want))) {
        return Err(format!("no SAN of the upstream certificate is in subjectAltNames {sans:?}"));
    }
    if !domains.is_empty() && !presented.iter().any(|(_, san)| in_trust_domain(san, domains)) {
        return Err(format!("the upstream certificate has no SPIFFE identity in trust domain {}", domains.join(", ")));
    }
    let chain: Vec<&X509Ref> = ssl.verified_chain().map(|c| c.iter().collect()).unwrap_or_default();
    check_revocation(&chain, crls).map_err(|e| format!("upstream certificate: {e}"))
}

/// The verdict the post-handshake check stored with an upstream connection. Every originated TLS
/// connection carries one; a TLS connection without one fails (never assume a check passed), a
/// plaintext one passes.
pub fn verdict_of(ssl: Option<&pingora::protocols::tls::SslDigest>) -> Result<(), String> {
    match ssl {
        None => Ok(()),
        Some(d) => match d.extension.get::<UpstreamVerdict>() {
            Some(UpstreamVerdict(v)) => v.clone(),
            None => Err("the upstream TLS connection was not checked".into()),
        },
    }
}
