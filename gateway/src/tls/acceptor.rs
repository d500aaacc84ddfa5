//! One OpenSSL acceptor per terminating Gateway server, built from its `tls` block the way Istio
//! configures Envoy's downstream TLS context: Envoy's defaults where the block is silent, the
//! server's certificates (RSA and ECDSA side by side), its own session context, and the client
//! certificate policy of MUTUAL and OPTIONAL_MUTUAL.

use std::sync::Arc;

use conf::raw::TlsProtocol;
use conf::table::{ServerTls, TlsMode};
use openssl::pkey::{PKey, Private};
use openssl::ssl::{
    select_next_proto, AlpnError, SslAcceptor, SslMethod, SslOptions, SslSessionCacheMode, SslVerifyMode, SslVersion,
};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::{X509Crl, X509Name, X509StoreContextRef, X509};

use super::material::MaterialError;
use super::verify::ClientCheck;

/// Envoy's default TLS 1.2 cipher suites for servers (forward secrecy and AEAD only), with
/// BoringSSL's equal-preference groups flattened for OpenSSL.
pub const DEFAULT_CIPHERS: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:\
ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384";

/// Envoy's default ECDH curves.
pub const DEFAULT_CURVES: &str = "X25519:P-256";

/// ALPN offered by HTTPS servers, in preference order (Istio `util.ALPNHttp`).
const ALPN_HTTP: &[u8] = b"\x02h2\x08http/1.1";

/// What a server presents and checks, parsed and ready to build an acceptor.
pub struct ServerMaterial {
    /// Certificate chains (leaf first) and their keys; several of different key types.
    pub certificates: Vec<(Vec<X509>, PKey<Private>)>,
    /// CAs that verify client certificates.
    pub client_ca: Vec<X509>,
    /// Revocation lists for client certificates.
    pub crls: Vec<X509Crl>,
}

/// Builds the acceptor of one server. `http` offers ALPN h2 and http/1.1 (HTTPS servers);
/// `session_id` keeps its sessions its own.
pub fn build(tls: &ServerTls, m: ServerMaterial, http: bool, session_id: &[u8]) -> Result<SslAcceptor, MaterialError> {
    let err = |what: &str| {
        let what = what.to_string();
        move |e: openssl::error::ErrorStack| MaterialError::new("TLS settings", format!("{what}: {e}"))
    };
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).map_err(err("acceptor"))?;
    // Versions are set explicitly below; the Mozilla profile's NO_TLSV1* options would override
    // a minProtocolVersion below 1.2.
    b.clear_options(SslOptions::NO_TLSV1 | SslOptions::NO_TLSV1_1);
    b.set_options(SslOptions::NO_RENEGOTIATION | SslOptions::NO_COMPRESSION | SslOptions::CIPHER_SERVER_PREFERENCE);
    b.set_min_proto_version(version(tls.min_version)).map_err(err("minProtocolVersion"))?;
    b.set_max_proto_version(version(tls.max_version)).map_err(err("maxProtocolVersion"))?;
    let mut ciphers =
        if tls.cipher_suites.is_empty() { DEFAULT_CIPHERS.to_string() } else { tls.cipher_suites.join(":") };
    if tls.min_version < TlsProtocol::V1_2 {
        // OpenSSL 3 allows TLS 1.0 and 1.1 only at security level 0.
        ciphers.push_str(":@SECLEVEL=0");
    }
    b.set_cipher_list(&ciphers).map_err(err("cipherSuites"))?;
    let curves = if tls.ecdh_curves.is_empty() {
        DEFAULT_CURVES.to_string()
    } else {
        // `?` lets OpenSSL skip a curve it does not implement instead of failing the list.
        tls.ecdh_curves.iter().map(|c| format!("?{c}")).collect::<Vec<_>>().join(":")
    };
    b.set_groups_list(&curves).map_err(err("ecdhCurves"))?;
    b.set_session_id_context(session_id).map_err(err("session id context"))?;
    // Sessions resume with tickets (TLS 1.3 and 1.2), sealed with this acceptor's own keys. No
    // server-side session cache: OpenSSL drops a cached session whenever a connection ends without
    // close_notify, which is how most HTTP connections end, so it would only cost memory.
    b.set_session_cache_mode(SslSessionCacheMode::OFF);
    // Certificates of different key types (RSA, ECDSA) fill separate slots; OpenSSL picks the one
    // the client's signature algorithms allow. The intermediates go in the shared extra chain.
    let mut intermediates: Vec<Vec<u8>> = Vec::new();
    for (chain, key) in m.certificates {
        let mut certs = chain.into_iter();
        let leaf = certs.next().ok_or_else(|| MaterialError::new("certificate", "empty chain"))?;
        b.set_certificate(&leaf).map_err(err("certificate"))?;
        b.set_private_key(&key).map_err(err("private key"))?;
        b.check_private_key().map_err(err("private key"))?;
        for intermediate in certs {
            let der = intermediate.to_der().map_err(err("certificate chain"))?;
            if !intermediates.contains(&der) {
                intermediates.push(der);
                b.add_extra_chain_cert(intermediate).map_err(err("certificate chain"))?;
            }
        }
    }
    if http {
        b.set_alpn_select_callback(|_, offered| select_next_proto(ALPN_HTTP, offered).ok_or(AlpnError::NOACK));
    }
    if tls.mode != TlsMode::Simple {
        client_verification(&mut b, tls, m.client_ca, m.crls)?;
    }
    Ok(b.build())
}

fn version(v: TlsProtocol) -> Option<SslVersion> {
    Some(match v {
        TlsProtocol::V1_0 => SslVersion::TLS1,
        TlsProtocol::V1_1 => SslVersion::TLS1_1,
        TlsProtocol::V1_2 | TlsProtocol::Auto => SslVersion::TLS1_2,
        TlsProtocol::V1_3 => SslVersion::TLS1_3,
    })
}

/// MUTUAL and ISTIO_MUTUAL require a client certificate, OPTIONAL_MUTUAL asks for one; either way a presented
/// certificate is verified against the client CA, the CRLs, and the SAN, SPKI and hash lists.
/// Envoy makes a certificate mandatory once SANs, SPKI or hash pins are configured.
fn client_verification(
    b: &mut openssl::ssl::SslAcceptorBuilder,
    tls: &ServerTls,
    ca: Vec<X509>,
    crls: Vec<X509Crl>,
) -> Result<(), MaterialError> {
    let err = |e: openssl::error::ErrorStack| MaterialError::new("client CA", e.to_string());
    if ca.is_empty() {
        return Err(MaterialError::new("client CA", "no CA certificate to verify client certificates"));
    }
    let mut store = X509StoreBuilder::new().map_err(err)?;
    // As Envoy: a CA bundle holding only the issuing intermediate is a trust anchor of its own.
    store.set_flags(X509VerifyFlags::PARTIAL_CHAIN).map_err(err)?;
    let mut names = Stack::<X509Name>::new().map_err(err)?;
    for c in ca {
        names.push(c.subject_name().to_owned().map_err(err)?).map_err(err)?;
        store.add_cert(c).map_err(err)?;
    }
    b.set_verify_cert_store(store.build()).map_err(err)?;
    b.set_client_ca_list(names);
    // Envoy requires a certificate, whatever the mode, once SANs or pins are to be matched.
    let pinned = !tls.verify_certificate_hash.is_empty()
        || !tls.verify_certificate_spki.is_empty()
        || !tls.subject_alt_names.is_empty();
    let mode = if matches!(tls.mode, TlsMode::Mutual | TlsMode::IstioMutual) || pinned {
        SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT
    } else {
        SslVerifyMode::PEER
    };
    let check = Arc::new(ClientCheck::new(tls, crls));
    b.set_verify_callback(mode, move |ok, ctx: &mut X509StoreContextRef| check.verify(ok, ctx));
    Ok(())
}
