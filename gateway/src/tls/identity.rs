//! The mesh workload identity of `--identity-dir` (Istio's file-mounted `cert-chain.pem`): the
//! SPIFFE ID it proves and until when, for `pylon routes`, the log (at start-up and at each
//! rotation) and the metric `pylon_workload_certificate_expiry_timestamp_seconds` (read at each
//! scrape, as Istio's agent exports its certificate's expiry).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, Opts};

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
    /// The end of its validity, in seconds since the Unix epoch.
    pub not_after_unix: i64,
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
    let now_unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let now = Asn1Time::from_unix(i64::try_from(now_unix).unwrap_or(i64::MAX)).map_err(|e| e.to_string())?;
    let left = now.diff(leaf.not_after()).map_err(|e| e.to_string())?;
    let not_after_unix =
        i64::try_from(now_unix).unwrap_or(i64::MAX) + i64::from(left.days) * 86_400 + i64::from(left.secs);
    Ok(WorkloadIdentity { spiffe, not_after: leaf.not_after().to_string(), days_left: left.days, not_after_unix })
}

/// Logs the identity again whenever `cert-chain.pem` changes (a rotation), for as long as the
/// returned watcher lives; `None` when the folder cannot be watched (rotation still works: the TLS
/// material has its own watch and periodic refresh).
pub fn watch(dir: &Path) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let last = Mutex::new(read(dir).ok());
    let folder = dir.to_path_buf();
    let mut w = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_err() {
            return;
        }
        let Ok(now) = read(&folder) else { return };
        let Ok(mut last) = last.lock() else { return };
        if last.as_ref() != Some(&now) {
            report(&now, "workload identity rotated: new upstream connections present it");
            *last = Some(now);
        }
    })
    .ok()?;
    w.watch(dir, notify::RecursiveMode::NonRecursive).ok()?;
    Some(w)
}

fn report(id: &WorkloadIdentity, what: &str) {
    if id.days_left < 0 || id.spiffe.is_none() {
        tracing::warn!(identity = %id, "{what}; the mesh refuses it (expired, or no SPIFFE ID)");
    } else {
        tracing::info!(identity = %id, "{what}");
    }
}

/// `pylon_workload_certificate_expiry_timestamp_seconds{spiffe_id}`: when the workload certificate
/// expires, read from the files at each scrape (so it follows rotation); absent while unreadable.
pub struct ExpiryCollector {
    dir: PathBuf,
    gauge: GaugeVec,
}

impl ExpiryCollector {
    /// The collector for the identity in `dir`.
    pub fn new(dir: PathBuf) -> prometheus::Result<Self> {
        let opts = Opts::new(
            "pylon_workload_certificate_expiry_timestamp_seconds",
            "When the workload certificate of --identity-dir expires, in seconds since the Unix epoch.",
        );
        Ok(ExpiryCollector { dir, gauge: GaugeVec::new(opts, &["spiffe_id"])? })
    }
}

impl Collector for ExpiryCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.gauge.reset();
        if let Ok(id) = read(&self.dir) {
            #[allow(clippy::cast_precision_loss)] // seconds since 1970 fit an f64 exactly
            self.gauge.with_label_values(&[id.spiffe.as_deref().unwrap_or("")]).set(id.not_after_unix as f64);
        }
        self.gauge.collect()
    }
}

/// Logs the identity at start-up: what it is, and a warning when it is unreadable, expired or
/// has no SPIFFE ID (the mesh then refuses the gateway's connections).
pub fn log(dir: &Path) {
    match read(dir) {
        Ok(id) => report(&id, "workload identity"),
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
