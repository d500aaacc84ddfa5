//! Server TLS settings with certificates resolved: files, Secrets in the configuration, or
//! `--credentials-dir/NAME/{tls.crt,tls.key,ca.crt}`.
//!
//! A credential that cannot be found is a warning, not an error (README "TLS"): the server refuses
//! handshakes until it appears, and every other server keeps working.

use std::path::{Path, PathBuf};

use crate::raw::{ClientTlsMode, ClientTlsSettings};
use crate::table::ClientTls;

use super::servers::tls_mode;
use super::Selection;
use crate::config::Config;
use crate::diagnostic::{Code, Reporter};
use crate::raw::{ServerTlsSettings, TlsProtocol};
use crate::table::{Certificate, PemSource, ServerTls, TlsMode};

const CERT_KEYS: &[&str] = &["tls.crt", "cert"];
const KEY_KEYS: &[&str] = &["tls.key", "key"];
const CA_KEYS: &[&str] = &["ca.crt", "cacert"];
const CRL_KEYS: &[&str] = &["ca.crl", "crl"];

/// Resolves a server's `tls`; `None` for modes Pylon rejects (already reported by validation).
pub(super) fn server_tls(
    t: &ServerTlsSettings,
    path: &str,
    config: &Config,
    sel: &Selection,
    r: &mut Reporter<'_>,
) -> Option<ServerTls> {
    let mode = tls_mode(t.mode)?;
    let mut tls = ServerTls {
        mode,
        certificates: Vec::new(),
        client_ca: None,
        ca_crl: None,
        subject_alt_names: t.subject_alt_names.clone(),
        verify_certificate_spki: t.verify_certificate_spki.clone(),
        verify_certificate_hash: t.verify_certificate_hash.clone(),
        min_version: if t.min_protocol_version == TlsProtocol::Auto {
            TlsProtocol::V1_2
        } else {
            t.min_protocol_version
        },
        max_version: if t.max_protocol_version == TlsProtocol::Auto {
            TlsProtocol::V1_3
        } else {
            t.max_protocol_version
        },
        cipher_suites: Vec::new(),
        ecdh_curves: Vec::new(),
        insecure_skip_verify: t.insecure_skip_verify.unwrap_or(false),
        trust_domains: Vec::new(),
    };
    if mode == TlsMode::Passthrough {
        return Some(tls);
    }
    // Istio drops invalid and duplicate cipher names (validation warns about them). Unknown
    // curves are dropped too: Envoy would reject the whole listener for one.
    for c in &t.cipher_suites {
        if crate::validate::is_valid_cipher_suite(c) && !c.is_empty() && !tls.cipher_suites.contains(c) {
            tls.cipher_suites.push(c.clone());
        }
    }
    for c in &t.ecdh_curves {
        if crate::validate::is_valid_ecdh_curve(c) && !tls.ecdh_curves.contains(c) {
            tls.ecdh_curves.push(c.clone());
        }
    }
    if mode == TlsMode::IstioMutual {
        let identity = workload_identity(sel, &format!("{path}.mode"), SERVER_OTHERWISE, r)?;
        tls.trust_domains = identity.trust_domains(&t.subject_alt_names);
        tls.certificates.push(identity.certificate);
        tls.client_ca = Some(identity.root);
        return Some(tls);
    }
    let store = Store { config, sel, waits: SERVER_WAITS };
    certificates(t, path, &store, &mut tls, r);
    if mode != TlsMode::Simple && tls.client_ca.is_none() {
        r.warn(
            Code::Credential,
            path,
            "no client CA found for MUTUAL TLS; the server refuses handshakes until one appears",
        )
        .hint = Some("add ca.crt to the credential, a <name>-cacert Secret, or caCertificates".into());
        // Looked up again at run time (`NAME/ca.crt`, `NAME-cacert/ca.crt`) until it appears.
        let credential = t.credential_name.clone().or_else(|| t.credential_names.first().cloned());
        tls.client_ca = Some(PemSource::Missing { credential: credential.unwrap_or_default() });
    }
    Some(tls)
}

/// Certificates and client CA from credentials and files, in Istio's precedence.
fn certificates(t: &ServerTlsSettings, path: &str, store: &Store<'_>, tls: &mut ServerTls, r: &mut Reporter<'_>) {
    let names = t.credential_name.iter().chain(&t.credential_names);
    for (i, name) in names.enumerate() {
        let at = if t.credential_name.is_some() && i == 0 {
            format!("{path}.credentialName")
        } else {
            format!("{path}.credentialNames")
        };
        let found = store.credential(name, &at, r);
        tls.certificates.push(found.cert);
        if tls.client_ca.is_none() {
            tls.client_ca = found.ca;
        }
        if tls.ca_crl.is_none() {
            tls.ca_crl = found.crl;
        }
    }
    if let (Some(cert), Some(key)) = (&t.server_certificate, &t.private_key) {
        tls.certificates.push(Certificate {
            cert: file(cert, &format!("{path}.serverCertificate"), store.waits, r),
            key: file(key, &format!("{path}.privateKey"), store.waits, r),
            credential: None,
        });
    }
    for (i, c) in t.tls_certificates.iter().enumerate() {
        let at = format!("{path}.tlsCertificates[{i}]");
        tls.certificates.push(Certificate {
            cert: file(&c.server_certificate, &at, store.waits, r),
            key: file(&c.private_key, &at, store.waits, r),
            credential: None,
        });
    }
    if let Some(ca) = &t.ca_certificates {
        tls.client_ca = Some(file(ca, &format!("{path}.caCertificates"), store.waits, r));
    }
    if let Some(crl) = &t.ca_crl {
        tls.ca_crl = Some(file(crl, &format!("{path}.caCrl"), store.waits, r));
    }
    if let Some(name) = &t.ca_cert_credential_name {
        tls.client_ca = Some(store.ca_credential(name, &format!("{path}.caCertCredentialName"), r));
    }
}

/// What to use instead of a server's `ISTIO_MUTUAL` without an identity.
const SERVER_OTHERWISE: &str =
    "use MUTUAL with serverCertificate, privateKey and caCertificates, or with credentialName";
/// Istio's credential name prefix for a Gateway API certificateRef.
pub const GATEWAY_API_SECRET: &str = "kubernetes-gateway://";
/// What a missing server credential means.
const SERVER_WAITS: &str = "the server refuses TLS handshakes until it appears";
/// What a missing origination credential means.
const ORIGINATION_WAITS: &str = "requests to this destination get 503 until it appears";

/// A PEM file; a missing file is a warning (the file is watched and may appear later).
fn file(path: &str, at: &str, waits: &str, r: &mut Reporter<'_>) -> PemSource {
    if !Path::new(path).is_file() {
        r.warn(Code::Credential, at, format!("file {path} not found; {waits}"));
    }
    PemSource::File { path: PathBuf::from(path) }
}

/// What a credential holds.
struct Credential {
    cert: Certificate,
    ca: Option<PemSource>,
    crl: Option<PemSource>,
}

/// The decoded entries of a Secret: key → bytes.
type SecretData = Vec<(String, Vec<u8>)>;

/// Where credentials are looked up.
struct Store<'a> {
    config: &'a Config,
    sel: &'a Selection,
    /// What a missing credential means, for messages.
    waits: &'static str,
}

impl Store<'_> {
    /// The namespace and name of credential `name`: a Secret in the workload's namespace, or, in
    /// Istio's form for a Gateway API `certificateRef` (which a ReferenceGrant may let name another
    /// namespace), `kubernetes-gateway://<namespace>/<name>`.
    fn locate<'n>(&'n self, name: &'n str) -> (&'n str, &'n str) {
        name.strip_prefix(GATEWAY_API_SECRET)
            .and_then(|rest| rest.split_once('/'))
            .unwrap_or((self.sel.namespace.as_str(), name))
    }

    /// Secret `name` (see [`Store::locate`]): its data with base64 decoded, stringData over it.
    fn secret(&self, name: &str) -> Option<(String, SecretData)> {
        let (namespace, name) = self.locate(name);
        let s = self.config.secrets.iter().find(|s| s.meta.name() == name && s.meta.namespace() == namespace)?;
        let mut data: Vec<(String, Vec<u8>)> =
            s.spec.data.iter().filter_map(|(k, v)| crate::raw::Secret::decode(v).map(|b| (k.clone(), b))).collect();
        for (k, v) in &s.spec.string_data {
            data.retain(|(dk, _)| dk != k);
            data.push((k.clone(), v.clone().into_bytes()));
        }
        Some((format!("{namespace}/{name}"), data))
    }

    fn from_secret(secret: &str, data: &[(String, Vec<u8>)], keys: &[&str]) -> Option<PemSource> {
        keys.iter().find_map(|k| {
            let (key, pem) = data.iter().find(|(dk, _)| dk == k)?;
            Some(PemSource::Secret { secret: secret.to_string(), key: key.clone(), pem: pem.clone() })
        })
    }

    fn dir_file(&self, name: &str, file: &str) -> Option<PemSource> {
        let (_, name) = self.locate(name);
        let path = self.sel.credentials_dir.as_ref()?.join(name).join(file);
        path.is_file().then_some(PemSource::File { path })
    }

    /// The certificate, key, (optional) CA and (optional) CRL of credential `name`.
    fn credential(&self, name: &str, at: &str, r: &mut Reporter<'_>) -> Credential {
        let missing = || PemSource::Missing { credential: name.to_string() };
        if let Some((secret, data)) = self.secret(name) {
            let cert = Self::from_secret(&secret, &data, CERT_KEYS);
            let key = Self::from_secret(&secret, &data, KEY_KEYS);
            if cert.is_none() || key.is_none() {
                r.warn(Code::Credential, at, format!("Secret {secret} has no tls.crt and tls.key; {}", self.waits));
            }
            let ca = Self::from_secret(&secret, &data, CA_KEYS).or_else(|| self.cacert_secret(name));
            let crl = Self::from_secret(&secret, &data, CRL_KEYS);
            let cert = Certificate {
                cert: cert.unwrap_or_else(missing),
                key: key.unwrap_or_else(missing),
                credential: Some(name.to_string()),
            };
            return Credential { cert, ca, crl };
        }
        if let (Some(cert), Some(key)) = (self.dir_file(name, "tls.crt"), self.dir_file(name, "tls.key")) {
            let ca = self.dir_file(name, "ca.crt").or_else(|| self.dir_file(&format!("{name}-cacert"), "ca.crt"));
            let crl = self.dir_file(name, "ca.crl");
            return Credential { cert: Certificate { cert, key, credential: Some(name.to_string()) }, ca, crl };
        }
        let dir = self.sel.credentials_dir.as_ref().map_or_else(
            || "no --credentials-dir".to_string(),
            |d| format!("no {}/{}/tls.crt and tls.key", d.display(), self.locate(name).1),
        );
        r.warn(
            Code::Credential,
            at,
            format!(
                "credential {name:?} not found (no Secret {}/{} in the configuration, {dir}); {}",
                self.locate(name).0,
                self.locate(name).1,
                self.waits
            ),
        )
        .hint = Some("add a kubernetes.io/tls Secret to the configuration, or the files to --credentials-dir".into());
        Credential {
            cert: Certificate { cert: missing(), key: missing(), credential: Some(name.to_string()) },
            ca: None,
            crl: None,
        }
    }

    /// Istio also reads a client CA from a `<name>-cacert` Secret.
    fn cacert_secret(&self, name: &str) -> Option<PemSource> {
        let (secret, data) = self.secret(&format!("{name}-cacert"))?;
        Self::from_secret(&secret, &data, CA_KEYS)
    }

    fn ca_credential(&self, name: &str, at: &str, r: &mut Reporter<'_>) -> PemSource {
        let found = self
            .secret(name)
            .and_then(|(secret, data)| Self::from_secret(&secret, &data, CA_KEYS))
            .or_else(|| self.dir_file(name, "ca.crt"));
        found.unwrap_or_else(|| {
            r.warn(Code::Credential, at, format!("CA credential {name:?} not found; {}", self.waits));
            PemSource::Missing { credential: name.to_string() }
        })
    }
}

/// Resolves a DestinationRule `tls` for origination; `None` for `DISABLE`. `outbound` is
/// Istio's SNI for the cluster (`outbound_.PORT_.SUBSET_.HOST`), sent with `ISTIO_MUTUAL`.
/// Missing files and credentials are warnings: the connection then fails (503), never leaves in
/// plaintext.
pub(super) fn client_tls(
    t: &ClientTlsSettings,
    at: &str,
    outbound: &str,
    config: &Config,
    sel: &Selection,
    r: &mut Reporter<'_>,
) -> Option<ClientTls> {
    if t.mode == ClientTlsMode::IstioMutual {
        return istio_mutual(t, at, outbound, sel, r);
    }
    if !matches!(t.mode, ClientTlsMode::Simple | ClientTlsMode::Mutual) {
        return None;
    }
    let store = Store { config, sel, waits: ORIGINATION_WAITS };
    let mut tls = ClientTls {
        mode: t.mode,
        client_certificate: None,
        ca: None,
        ca_crl: None,
        sni: t.sni.clone().filter(|s| !s.is_empty()),
        subject_alt_names: t.subject_alt_names.clone(),
        trust_domains: Vec::new(),
        insecure_skip_verify: t.insecure_skip_verify.unwrap_or(false),
        auto: false,
    };
    if let Some(name) = &t.credential_name {
        // Istio: a DestinationRule credential holds the client key and certificate (MUTUAL) and
        // the CA that verifies the upstream.
        let found = store.credential(name, &format!("{at}.credentialName"), r);
        if t.mode == ClientTlsMode::Mutual {
            tls.client_certificate = Some(found.cert);
        }
        // Istio fetches `NAME-cacert` and the cluster fails until it exists: never fall back to the
        // system's CAs for a credential without one.
        let waiting = (!tls.insecure_skip_verify).then(|| PemSource::Missing { credential: name.clone() });
        tls.ca = found.ca.or(waiting);
        tls.ca_crl = found.crl;
    }
    if let (Some(cert), Some(key)) = (&t.client_certificate, &t.private_key) {
        tls.client_certificate = Some(Certificate {
            cert: file(cert, &format!("{at}.clientCertificate"), store.waits, r),
            key: file(key, &format!("{at}.privateKey"), store.waits, r),
            credential: None,
        });
    }
    if let Some(ca) = &t.ca_certificates {
        tls.ca = Some(file(ca, &format!("{at}.caCertificates"), store.waits, r));
    }
    if let Some(crl) = &t.ca_crl {
        tls.ca_crl = Some(file(crl, &format!("{at}.caCrl"), store.waits, r));
    }
    Some(tls)
}

/// `ISTIO_MUTUAL`: mutual TLS with the workload identity of `--identity-dir` (Istio's
/// file-mounted certificates): its certificate chain and key presented, the upstream verified
/// against its `root-cert.pem`, with a SPIFFE identity in the trust domain (or one of
/// `subjectAltNames`), and Istio's outbound SNI unless `sni` is set. Istio ignores the
/// certificate fields of the rule in this mode, and so does Pylon. Without an identity it is an
/// error: a gateway must not talk to the mesh in plaintext or with another identity.
pub(super) fn istio_mutual(
    t: &ClientTlsSettings,
    at: &str,
    outbound: &str,
    sel: &Selection,
    r: &mut Reporter<'_>,
) -> Option<ClientTls> {
    let otherwise = "use MUTUAL with clientCertificate, privateKey and caCertificates";
    let identity = workload_identity(sel, &format!("{at}.mode"), otherwise, r)?;
    let trust_domains = identity.trust_domains(&t.subject_alt_names);
    Some(ClientTls {
        mode: ClientTlsMode::IstioMutual,
        client_certificate: Some(identity.certificate),
        ca: Some(identity.root),
        ca_crl: None,
        sni: Some(t.sni.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| outbound.to_string())),
        subject_alt_names: t.subject_alt_names.clone(),
        trust_domains,
        insecure_skip_verify: false,
        auto: false,
    })
}

/// The workload identity of `--identity-dir`, as certificate sources.
struct WorkloadIdentity<'a> {
    certificate: Certificate,
    root: PemSource,
    sel: &'a Selection,
}

impl WorkloadIdentity<'_> {
    /// The trust domains a peer's SPIFFE identity must be in: MeshConfig `trustDomain` and
    /// `trustDomainAliases`, unless `subjectAltNames` names the peers instead.
    fn trust_domains(&self, subject_alt_names: &[String]) -> Vec<String> {
        if !subject_alt_names.is_empty() {
            return Vec::new();
        }
        std::iter::once(&self.sel.trust_domain).chain(&self.sel.trust_domain_aliases).cloned().collect()
    }
}

/// The workload identity for an `ISTIO_MUTUAL` setting at `at`; without `--identity-dir` an
/// error saying which flag gives one (`otherwise`: what to use instead).
fn workload_identity<'a>(
    sel: &'a Selection,
    at: &str,
    otherwise: &str,
    r: &mut Reporter<'_>,
) -> Option<WorkloadIdentity<'a>> {
    let Some(dir) = &sel.identity_dir else {
        r.error(Code::Unsupported, at, "ISTIO_MUTUAL needs the mesh's workload identity, and this workload has none").hint =
            Some(format!("give Pylon one with --identity-dir DIR holding cert-chain.pem, key.pem and root-cert.pem (Istio's file-mounted certificates), or {otherwise}"));
        return None;
    };
    let file = |name: &str| PemSource::File { path: dir.join(name) };
    Some(WorkloadIdentity {
        certificate: Certificate { cert: file(IDENTITY_CHAIN), key: file(IDENTITY_KEY), credential: None },
        root: file(IDENTITY_ROOT),
        sel,
    })
}

/// The certificate chain of the workload identity, in Istio's file-mounted layout.
pub const IDENTITY_CHAIN: &str = "cert-chain.pem";
/// The private key of the workload identity.
pub const IDENTITY_KEY: &str = "key.pem";
/// The mesh's root certificate.
pub const IDENTITY_ROOT: &str = "root-cert.pem";
