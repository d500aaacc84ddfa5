//! Server TLS settings with certificates resolved: files, Secrets in the configuration, or
//! `--credentials-dir/NAME/{tls.crt,tls.key,ca.crt}`.
//!
//! A credential that cannot be found is a warning, not an error (CONTRACT.md): the server refuses
//! handshakes until it appears, and every other server keeps working.

use std::path::{Path, PathBuf};

use base64::Engine;

use super::servers::tls_mode;
use super::Selection;
use crate::config::Config;
use crate::diagnostic::{Code, Reporter};
use crate::raw::{ServerTlsSettings, TlsProtocol};
use crate::table::{Certificate, PemSource, ServerTls, TlsMode};

const CERT_KEYS: &[&str] = &["tls.crt", "cert"];
const KEY_KEYS: &[&str] = &["tls.key", "key"];
const CA_KEYS: &[&str] = &["ca.crt", "cacert"];

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
        ca_crl: t.ca_crl.as_ref().map(PathBuf::from),
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
        ecdh_curves: t.ecdh_curves.clone(),
        insecure_skip_verify: t.insecure_skip_verify.unwrap_or(false),
    };
    if mode == TlsMode::Passthrough {
        return Some(tls);
    }
    for c in &t.cipher_suites {
        if !tls.cipher_suites.contains(c) {
            tls.cipher_suites.push(c.clone());
        }
    }
    let store = Store { config, sel };
    certificates(t, path, &store, &mut tls, r);
    if mode != TlsMode::Simple && tls.client_ca.is_none() {
        r.warn(
            Code::Credential,
            path,
            "no client CA found for MUTUAL TLS; the server refuses handshakes until one appears",
        )
        .hint = Some("add ca.crt to the credential, a <name>-cacert Secret, or caCertificates".into());
        tls.client_ca = Some(PemSource::Missing { credential: t.credential_name.clone().unwrap_or_default() });
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
        let (cert, ca) = store.credential(name, &at, r);
        tls.certificates.push(cert);
        if tls.client_ca.is_none() {
            tls.client_ca = ca;
        }
    }
    if let (Some(cert), Some(key)) = (&t.server_certificate, &t.private_key) {
        tls.certificates.push(Certificate {
            cert: file(cert, &format!("{path}.serverCertificate"), r),
            key: file(key, &format!("{path}.privateKey"), r),
            credential: None,
        });
    }
    for (i, c) in t.tls_certificates.iter().enumerate() {
        let at = format!("{path}.tlsCertificates[{i}]");
        tls.certificates.push(Certificate {
            cert: file(&c.server_certificate, &at, r),
            key: file(&c.private_key, &at, r),
            credential: None,
        });
    }
    if let Some(ca) = &t.ca_certificates {
        tls.client_ca = Some(file(ca, &format!("{path}.caCertificates"), r));
    }
    if let Some(name) = &t.ca_cert_credential_name {
        tls.client_ca = Some(store.ca_credential(name, &format!("{path}.caCertCredentialName"), r));
    }
}

/// A PEM file; a missing file is a warning (the file is watched and may appear later).
fn file(path: &str, at: &str, r: &mut Reporter<'_>) -> PemSource {
    if !Path::new(path).is_file() {
        r.warn(
            Code::Credential,
            at,
            format!("file {path} not found; the server refuses TLS handshakes until it appears"),
        );
    }
    PemSource::File { path: PathBuf::from(path) }
}

/// The decoded entries of a Secret: key → bytes.
type SecretData = Vec<(String, Vec<u8>)>;

/// Where credentials are looked up.
struct Store<'a> {
    config: &'a Config,
    sel: &'a Selection,
}

impl Store<'_> {
    /// A Secret `name` in the workload's namespace: its data with base64 decoded, stringData over it.
    fn secret(&self, name: &str) -> Option<(String, SecretData)> {
        let s =
            self.config.secrets.iter().find(|s| s.meta.name() == name && s.meta.namespace() == self.sel.namespace)?;
        let mut data: Vec<(String, Vec<u8>)> = s
            .spec
            .data
            .iter()
            .filter_map(|(k, v)| {
                base64::engine::general_purpose::STANDARD.decode(v.trim()).ok().map(|b| (k.clone(), b))
            })
            .collect();
        for (k, v) in &s.spec.string_data {
            data.retain(|(dk, _)| dk != k);
            data.push((k.clone(), v.clone().into_bytes()));
        }
        Some((format!("{}/{name}", self.sel.namespace), data))
    }

    fn from_secret(secret: &str, data: &[(String, Vec<u8>)], keys: &[&str]) -> Option<PemSource> {
        keys.iter().find_map(|k| {
            let (key, pem) = data.iter().find(|(dk, _)| dk == k)?;
            Some(PemSource::Secret { secret: secret.to_string(), key: key.clone(), pem: pem.clone() })
        })
    }

    fn dir_file(&self, name: &str, file: &str) -> Option<PemSource> {
        let path = self.sel.credentials_dir.as_ref()?.join(name).join(file);
        path.is_file().then_some(PemSource::File { path })
    }

    /// The certificate, key and (optional) CA of credential `name`.
    fn credential(&self, name: &str, at: &str, r: &mut Reporter<'_>) -> (Certificate, Option<PemSource>) {
        let missing = || PemSource::Missing { credential: name.to_string() };
        if let Some((secret, data)) = self.secret(name) {
            let cert = Self::from_secret(&secret, &data, CERT_KEYS);
            let key = Self::from_secret(&secret, &data, KEY_KEYS);
            if cert.is_none() || key.is_none() {
                r.warn(
                    Code::Credential,
                    at,
                    format!("Secret {secret} has no tls.crt and tls.key; the server refuses TLS handshakes"),
                );
            }
            let ca = Self::from_secret(&secret, &data, CA_KEYS).or_else(|| self.cacert_secret(name));
            let cert = Certificate {
                cert: cert.unwrap_or_else(missing),
                key: key.unwrap_or_else(missing),
                credential: Some(name.to_string()),
            };
            return (cert, ca);
        }
        if let (Some(cert), Some(key)) = (self.dir_file(name, "tls.crt"), self.dir_file(name, "tls.key")) {
            let ca = self.dir_file(name, "ca.crt");
            return (Certificate { cert, key, credential: Some(name.to_string()) }, ca);
        }
        let dir = self.sel.credentials_dir.as_ref().map_or_else(
            || "no --credentials-dir".to_string(),
            |d| format!("no {}/{name}/tls.crt and tls.key", d.display()),
        );
        r.warn(
            Code::Credential,
            at,
            format!("credential {name:?} not found (no Secret {}/{name} in the configuration, {dir}); the server refuses TLS handshakes until it appears", self.sel.namespace),
        )
        .hint = Some("add a kubernetes.io/tls Secret to the configuration, or the files to --credentials-dir".into());
        (Certificate { cert: missing(), key: missing(), credential: Some(name.to_string()) }, None)
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
            r.warn(
                Code::Credential,
                at,
                format!("CA credential {name:?} not found; the server refuses TLS handshakes until it appears"),
            );
            PemSource::Missing { credential: name.to_string() }
        })
    }
}
