//! The mesh workload identity of `--identity-dir` (Istio's file-mounted `cert-chain.pem`): the
//! SPIFFE ID it proves and until when, for `pylon routes` and the start-up log.

use std::path::Path;

use openssl::asn1::Asn1Time;
use openssl::x509::X509;

/// What the identity's certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadIdentity {
    /// The SPIFFE URI SAN (`spiffe://<trust domain>/ns/<ns>/sa/<sa>`), if the certificate has one.
    pub spiffe: Option<String>,
    /// The end of its validity, as OpenSSL prints it (`Nov 30 09:00:00 2027 GMT`).
    pub not_after: String,
    /// Whole days until then (negative: expired).
    pub days_left: i32,
}

impl std::fmt::Display for WorkloadIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let id = self.spiffe.as_deref().unwrap_or("(no SPIFFE URI SAN)");
        match self.days_left {
            d if d < 0 => write!(f, "{id}, EXPIRED on {}", self.not_after),
            d => write!(f, "{id}, valid until {} ({d} days)", self.not_after),
        }
    }
}

/// Reads the leaf of `DIR/cert-chain.pem`.
pub fn read(dir: &Path) -> Result<WorkloadIdentity, String> {
    let path = dir.join(conf::compile::credentials::IDENTITY_CHAIN);
    let pem = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let leaf = X509::from_pem(&pem).map_err(|e| format!("{}: not a PEM certificate: {e}", path.display()))?;
    let spiffe = leaf.subject_alt_names().and_then(|names| {
        names.iter().find_map(|n| n.uri().filter(|u| u.starts_with("spiffe://")).map(str::to_string))
    });
    let now = Asn1Time::days_from_now(0).map_err(|e| e.to_string())?;
    let days_left = now.diff(leaf.not_after()).map(|d| d.days).map_err(|e| e.to_string())?;
    Ok(WorkloadIdentity { spiffe, not_after: leaf.not_after().to_string(), days_left })
}

/// Logs the identity at start-up: what it is, and a warning when it is unreadable, expired or
/// has no SPIFFE ID (the mesh then refuses the gateway's connections).
pub fn log(dir: &Path) {
    match read(dir) {
        Ok(id) if id.days_left < 0 || id.spiffe.is_none() => {
            tracing::warn!(identity = %id, "workload identity unusable by the mesh")
        }
        Ok(id) => tracing::info!(identity = %id, "workload identity"),
        Err(why) => {
            tracing::warn!(reason = %why, "workload identity unreadable: ISTIO_MUTUAL upstreams answer 503 until it is fixed")
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::X509Builder;

    /// A self-signed certificate valid from yesterday for `days` days, with URI SAN `uri`.
    fn identity_dir(uri: &str, days: u32) -> std::path::PathBuf {
        let key =
            PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap())
                .unwrap();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
        b.set_not_after(&Asn1Time::days_from_now(days).unwrap()).unwrap();
        let san = SubjectAlternativeName::new().uri(uri).build(&b.x509v3_context(None, None)).unwrap();
        b.append_extension(san).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        let dir = std::env::temp_dir().join(format!("pylon-identity-{}-{days}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cert-chain.pem"), b.build().to_pem().unwrap()).unwrap();
        dir
    }

    #[test]
    fn the_spiffe_id_and_the_days_left_are_read_from_the_chain() {
        let dir = identity_dir("spiffe://cluster.local/ns/istio-system/sa/gw", 30);
        let id = read(&dir).unwrap();
        assert_eq!(id.spiffe.as_deref(), Some("spiffe://cluster.local/ns/istio-system/sa/gw"));
        assert!((29..=30).contains(&id.days_left), "{id:?}");
        assert!(id.to_string().starts_with("spiffe://cluster.local/ns/istio-system/sa/gw, valid until "), "{id}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_chain_is_an_error_naming_the_file() {
        let err = read(Path::new("/nonexistent-identity")).unwrap_err();
        assert!(err.starts_with("/nonexistent-identity/cert-chain.pem:"), "{err}");
    }
}
