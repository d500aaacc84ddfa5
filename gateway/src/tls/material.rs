//! Certificates, keys, CA bundles and CRLs read from where the configuration says: files, Secrets
//! in the configuration, or `--credentials-dir DIR/NAME/…` for a credential that was missing when
//! the configuration was compiled (it may have appeared since).
//!
//! Reading is separate from parsing so rotation can tell whether anything changed (the raw bytes)
//! before building anything.

use std::path::{Path, PathBuf};

use conf::table::PemSource;
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509Crl, X509};

/// What a PEM source holds; decides the file name inside a credential directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A certificate chain, leaf first (`tls.crt`).
    Chain,
    /// A private key (`tls.key`).
    Key,
    /// CA certificates (`ca.crt`).
    Ca,
    /// Certificate revocation lists (`ca.crl`).
    Crl,
}

impl Role {
    fn file(self) -> &'static str {
        match self {
            Role::Chain => "tls.crt",
            Role::Key => "tls.key",
            Role::Ca => "ca.crt",
            Role::Crl => "ca.crl",
        }
    }
}

/// Why TLS material cannot be used; names the file (or Secret key) so the operator can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{place}: {why}")]
pub struct MaterialError {
    /// The file, `Secret ns/name key`, or credential.
    pub place: String,
    /// What is wrong.
    pub why: String,
}

impl MaterialError {
    /// An error about `place`.
    pub fn new(place: impl Into<String>, why: impl Into<String>) -> Self {
        MaterialError { place: place.into(), why: why.into() }
    }
}

/// Raw bytes of one source and where they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raw {
    /// Where the bytes came from, for messages.
    pub place: String,
    /// The PEM bytes.
    pub bytes: Vec<u8>,
}

/// Reads `source` as `role`. A credential missing at compile time is looked up again in
/// `credentials_dir` (and, for a CA, in `NAME-cacert`, Istio's separate CA Secret).
pub fn read(source: &PemSource, role: Role, credentials_dir: Option<&Path>) -> Result<Raw, MaterialError> {
    match source {
        PemSource::File { path } => read_file(path),
        PemSource::Secret { secret, key, pem } => {
            Ok(Raw { place: format!("Secret {secret} key {key}"), bytes: pem.clone() })
        }
        PemSource::Missing { credential } => {
            let Some(dir) = credentials_dir else {
                return Err(MaterialError::new(
                    format!("credential {credential:?}"),
                    "not found (no Secret in the configuration and no --credentials-dir)",
                ));
            };
            let mut candidates = vec![dir.join(credential).join(role.file())];
            if role == Role::Ca {
                candidates.push(dir.join(format!("{credential}-cacert")).join(role.file()));
            }
            match candidates.iter().find(|p| p.is_file()) {
                Some(p) => read_file(p),
                None => Err(MaterialError::new(
                    format!("credential {credential:?}"),
                    format!("{} not found", candidates[0].display()),
                )),
            }
        }
    }
}

fn read_file(path: &Path) -> Result<Raw, MaterialError> {
    let place = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => Ok(Raw { place, bytes }),
        Err(e) => Err(MaterialError::new(place, format!("cannot read: {e}"))),
    }
}

/// The directories whose changes may change `source` (watched for rotation), and whether to watch
/// them recursively: a file's own folder (a Kubernetes Secret mount swaps a `..data` symlink
/// inside it), or the whole credentials directory (a credential's folder may appear later).
pub fn watch_dirs(source: &PemSource, credentials_dir: Option<&Path>) -> Vec<(PathBuf, bool)> {
    match source {
        PemSource::File { path } => path.parent().map(|p| (p.to_path_buf(), false)).into_iter().collect(),
        PemSource::Secret { .. } => Vec::new(),
        PemSource::Missing { .. } => credentials_dir.map(|d| (d.to_path_buf(), true)).into_iter().collect(),
    }
}

/// Material parsed and checked: certificate chains (leaf first) with their keys, CAs, CRLs.
pub struct Parsed {
    /// Each certificate chain and its private key (the key checked against the leaf).
    pub pairs: Vec<(Vec<X509>, PKey<Private>)>,
    /// CA certificates, when a CA source was given.
    pub ca: Option<Vec<X509>>,
    /// Revocation lists.
    pub crls: Vec<X509Crl>,
}

/// Parses `raws`, read from `sources` in order (each `Chain` followed by its `Key`). A certificate
/// that is not valid now is an error with `refuse_expired` (rotation), else only logged (start-up:
/// there is nothing older to serve).
pub fn parse(sources: &[(PemSource, Role)], raws: &[Raw], refuse_expired: bool) -> Result<Parsed, MaterialError> {
    let mut out = Parsed { pairs: Vec::new(), ca: None, crls: Vec::new() };
    let mut pending = None;
    for ((_, role), raw) in sources.iter().zip(raws) {
        match role {
            Role::Chain => pending = Some((chain(raw)?, raw.place.clone())),
            Role::Key => {
                let (certs, place) =
                    pending.take().ok_or_else(|| MaterialError::new(&raw.place, "key without certificate"))?;
                let private = key(raw)?;
                key_matches(&certs, &private, &place)?;
                if let Err(e) = check_validity(&certs, &place) {
                    if refuse_expired {
                        return Err(e);
                    }
                    tracing::error!(error = %e, "using a certificate that is not valid now");
                }
                out.pairs.push((certs, private));
            }
            Role::Ca => out.ca = Some(chain(raw)?),
            Role::Crl => out.crls = crls(raw)?,
        }
    }
    Ok(out)
}

/// A certificate chain (leaf first) from PEM.
pub fn chain(raw: &Raw) -> Result<Vec<X509>, MaterialError> {
    let certs = X509::stack_from_pem(&raw.bytes)
        .map_err(|e| MaterialError::new(&raw.place, format!("not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(MaterialError::new(&raw.place, "no certificate in the file"));
    }
    Ok(certs)
}

/// A private key from PEM (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub fn key(raw: &Raw) -> Result<PKey<Private>, MaterialError> {
    PKey::private_key_from_pem(&raw.bytes)
        .map_err(|e| MaterialError::new(&raw.place, format!("not a PEM private key: {e}")))
}

/// Every CRL in a PEM bundle.
pub fn crls(raw: &Raw) -> Result<Vec<X509Crl>, MaterialError> {
    const BEGIN: &str = "-----BEGIN X509 CRL-----";
    const END: &str = "-----END X509 CRL-----";
    let text = String::from_utf8_lossy(&raw.bytes);
    let mut out = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else { break };
        let block = &rest[start..start + len + END.len()];
        let crl = X509Crl::from_pem(block.as_bytes())
            .map_err(|e| MaterialError::new(&raw.place, format!("not a PEM CRL: {e}")))?;
        out.push(crl);
        rest = &rest[start + len + END.len()..];
    }
    if out.is_empty() {
        return Err(MaterialError::new(&raw.place, "no CRL in the file"));
    }
    Ok(out)
}

/// Checks that `key` belongs to the leaf of `chain`.
pub fn key_matches(chain: &[X509], key: &PKey<Private>, place: &str) -> Result<(), MaterialError> {
    let leaf = chain.first().ok_or_else(|| MaterialError::new(place, "no certificate"))?;
    let public = leaf.public_key().map_err(|e| MaterialError::new(place, format!("unreadable public key: {e}")))?;
    if public.public_eq(key) {
        Ok(())
    } else {
        Err(MaterialError::new(place, "the private key does not match the certificate"))
    }
}

/// `Err` when the leaf certificate has expired (or is not valid yet).
pub fn check_validity(chain: &[X509], place: &str) -> Result<(), MaterialError> {
    let leaf = chain.first().ok_or_else(|| MaterialError::new(place, "no certificate"))?;
    let now = openssl::asn1::Asn1Time::days_from_now(0)
        .map_err(|e| MaterialError::new(place, format!("cannot read the clock: {e}")))?;
    if leaf.not_after() < now {
        return Err(MaterialError::new(place, format!("the certificate expired on {}", leaf.not_after())));
    }
    if leaf.not_before() > now {
        return Err(MaterialError::new(place, format!("the certificate is not valid before {}", leaf.not_before())));
    }
    Ok(())
}
