//! Certificates made at test time with OpenSSL: a CA, leaves it issues (server or client, RSA or
//! ECDSA, any SANs, valid or expired), and CRLs revoking some of them.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use openssl::asn1::{Asn1Integer, Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName, SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509CrlBuilder, X509Extension, X509NameBuilder, X509RevokedBuilder, X509};

static SERIAL: AtomicU32 = AtomicU32::new(1000);

/// The key algorithm of a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// ECDSA P-256.
    Ec,
    /// RSA 2048.
    Rsa,
}

fn new_key(kind: KeyType) -> PKey<Private> {
    match kind {
        KeyType::Ec => {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
            PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
        }
        KeyType::Rsa => PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(),
    }
}

/// A certificate authority.
pub struct Ca {
    /// Its certificate.
    pub cert: X509,
    key: PKey<Private>,
}

/// A certificate and its key.
#[derive(Clone)]
pub struct Issued {
    /// The certificate.
    pub cert: X509,
    /// Its private key.
    pub key: PKey<Private>,
}

/// What to put in a leaf certificate.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// Subject CN.
    pub cn: String,
    /// DNS SANs.
    pub dns: Vec<String>,
    /// URI SANs.
    pub uris: Vec<String>,
    /// IP SANs.
    pub ips: Vec<IpAddr>,
    /// Key type.
    pub key: KeyType,
    /// Valid from `days.0` to `days.1` days from now (negative: in the past).
    pub days: (i64, i64),
    /// What the certificate may authenticate.
    pub usage: Usage,
}

/// The extended key usage of a leaf certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// TLS servers.
    Server,
    /// TLS clients.
    Client,
    /// Both, as Istio's workload certificates: a workload is the server of some connections and
    /// the client of others.
    Workload,
}

impl Leaf {
    /// A server certificate for `names` (the first is also the CN), valid for a year.
    pub fn server(names: &[&str]) -> Leaf {
        Leaf {
            cn: names.first().copied().unwrap_or("server").to_string(),
            dns: names.iter().map(|s| s.to_string()).collect(),
            uris: Vec::new(),
            ips: Vec::new(),
            key: KeyType::Ec,
            days: (-1, 365),
            usage: Usage::Server,
        }
    }

    /// A client certificate with subject CN `cn`, valid for a year.
    pub fn client(cn: &str) -> Leaf {
        Leaf { usage: Usage::Client, dns: Vec::new(), cn: cn.to_string(), ..Leaf::server(&[]) }
    }

    /// An Istio workload certificate for the SPIFFE identity `spiffe`, valid for a year.
    pub fn workload(spiffe: &str) -> Leaf {
        Leaf { usage: Usage::Workload, uris: vec![spiffe.to_string()], ..Leaf::client("workload") }
    }
}

fn time(days: i64) -> Asn1Time {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    Asn1Time::from_unix(now + days * 86400).unwrap()
}

fn serial() -> Asn1Integer {
    BigNum::from_u32(SERIAL.fetch_add(1, Ordering::Relaxed)).unwrap().to_asn1_integer().unwrap()
}

/// A builder for a certificate of `subject` (`CN` and `O`) with `key`, valid from `days.0` to
/// `days.1` days from now, issued by `issuer` (its name; the certificate itself when `None`).
fn builder(cn: &str, org: &str, key: &PKey<Private>, issuer: Option<&X509>, days: (i64, i64)) -> X509Builder {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    name.append_entry_by_text("O", org).unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&serial()).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(issuer.map_or(&*name, |i| i.subject_name())).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&time(days.0)).unwrap();
    b.set_not_after(&time(days.1)).unwrap();
    b
}

impl Ca {
    /// A new self-signed CA named `cn`.
    pub fn new(cn: &str) -> Ca {
        Self::make(cn, None)
    }

    /// An intermediate CA named `cn`, issued by this CA.
    pub fn intermediate(&self, cn: &str) -> Ca {
        Self::make(cn, Some(self))
    }

    fn make(cn: &str, parent: Option<&Ca>) -> Ca {
        let key = new_key(KeyType::Ec);
        let mut b = builder(cn, "Pylon Tests", &key, parent.map(|p| &p.cert), (-1, 3650));
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap()).unwrap();
        b.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build().unwrap()).unwrap();
        let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(parent.map(|p| &*p.cert), None)).unwrap();
        b.append_extension(ski).unwrap();
        if let Some(p) = parent {
            let aki = AuthorityKeyIdentifier::new().keyid(true).build(&b.x509v3_context(Some(&p.cert), None)).unwrap();
            b.append_extension(aki).unwrap();
        }
        b.sign(parent.map_or(&key, |p| &p.key), MessageDigest::sha256()).unwrap();
        Ca { cert: b.build(), key }
    }

    /// Issues a leaf certificate.
    pub fn issue(&self, leaf: &Leaf) -> Issued {
        let key = new_key(leaf.key);
        let mut b = builder(&leaf.cn, "Example", &key, Some(&self.cert), leaf.days);
        b.append_extension(BasicConstraints::new().build().unwrap()).unwrap();
        let mut usage = ExtendedKeyUsage::new();
        match leaf.usage {
            Usage::Server => usage.server_auth(),
            Usage::Client => usage.client_auth(),
            Usage::Workload => usage.server_auth().client_auth(),
        };
        b.append_extension(usage.build().unwrap()).unwrap();
        if !(leaf.dns.is_empty() && leaf.uris.is_empty() && leaf.ips.is_empty()) {
            let mut san = SubjectAlternativeName::new();
            leaf.dns.iter().for_each(|d| {
                san.dns(d);
            });
            leaf.uris.iter().for_each(|u| {
                san.uri(u);
            });
            leaf.ips.iter().for_each(|ip| {
                san.ip(&ip.to_string());
            });
            let ext = san.build(&b.x509v3_context(Some(&self.cert), None)).unwrap();
            b.append_extension(ext).unwrap();
        }
        let aki = AuthorityKeyIdentifier::new().keyid(true).build(&b.x509v3_context(Some(&self.cert), None)).unwrap();
        b.append_extension(aki).unwrap();
        b.sign(&self.key, MessageDigest::sha256()).unwrap();
        Issued { cert: b.build(), key }
    }

    /// A CRL revoking `revoked`, valid from yesterday for `days` days (negative: expired).
    pub fn crl(&self, revoked: &[&Issued], days: i64) -> String {
        let mut b = X509CrlBuilder::new().unwrap();
        b.set_issuer_name(self.cert.subject_name()).unwrap();
        b.set_last_update(&time(-2)).unwrap();
        b.set_next_update(&time(days)).unwrap();
        for r in revoked {
            let mut rb = X509RevokedBuilder::new().unwrap();
            rb.set_serial_number(r.cert.serial_number()).unwrap();
            rb.set_revocation_date(&time(-1)).unwrap();
            b.add_revoked(rb.build()).unwrap();
        }
        let ski = self.cert.subject_key_id().unwrap().as_slice().to_vec();
        let mut aki = vec![0x30, (ski.len() + 2) as u8, 0x80, ski.len() as u8];
        aki.extend_from_slice(&ski);
        let oid = Asn1Object::from_str("2.5.29.35").unwrap();
        b.append_extension(
            X509Extension::new_from_der(&oid, false, &Asn1OctetString::new_from_bytes(&aki).unwrap()).unwrap(),
        )
        .unwrap();
        let number = Asn1Object::from_str("2.5.29.20").unwrap();
        let one = Asn1OctetString::new_from_bytes(&[0x02, 0x01, 0x01]).unwrap();
        b.append_extension(X509Extension::new_from_der(&number, false, &one).unwrap()).unwrap();
        b.sign(&self.key, MessageDigest::sha256()).unwrap();
        String::from_utf8(b.build().unwrap().to_pem().unwrap()).unwrap()
    }

    /// The CA certificate as PEM.
    pub fn pem(&self) -> String {
        String::from_utf8(self.cert.to_pem().unwrap()).unwrap()
    }

    /// Writes the CA certificate to `dir/name`.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.pem()).unwrap();
        path
    }
}

impl Issued {
    /// The certificate as PEM.
    pub fn cert_pem(&self) -> String {
        String::from_utf8(self.cert.to_pem().unwrap()).unwrap()
    }

    /// The key as PEM (PKCS#8).
    pub fn key_pem(&self) -> String {
        String::from_utf8(self.key.private_key_to_pem_pkcs8().unwrap()).unwrap()
    }

    /// Writes `dir/<name>.crt` and `dir/<name>.key` atomically (write then rename, as Kubernetes and
    /// cert-manager replace files); returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        write_atomically(&key, self.key_pem().as_bytes());
        write_atomically(&cert, self.cert_pem().as_bytes());
        (cert, key)
    }

    /// Writes `dir/tls.crt` and `dir/tls.key` (a credential directory).
    pub fn write_credential(&self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        write_atomically(&dir.join("tls.key"), self.key_pem().as_bytes());
        write_atomically(&dir.join("tls.crt"), self.cert_pem().as_bytes());
    }

    /// The certificate's serial number, as decimal text.
    pub fn serial(&self) -> String {
        self.cert.serial_number().to_bn().unwrap().to_dec_str().unwrap().to_string()
    }
}

/// Replaces `path` with `bytes` in one rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
