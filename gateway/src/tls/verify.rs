//! The checks a MUTUAL or OPTIONAL_MUTUAL server makes on a client certificate beyond its chain,
//! as Envoy's certificate validator makes them: revocation (CRLs), then the SAN list, then the
//! SPKI and hash pins (`subjectAltNames` AND (`verifyCertificateHash` OR
//! `verifyCertificateSpki`)). `insecureSkipVerify` accepts what fails, as Envoy's
//! `ACCEPT_UNTRUSTED`. An ISTIO_MUTUAL server also requires a SPIFFE identity in the mesh's trust
//! domains, as Istio's inbound listeners do.

use base64::Engine;
use conf::table::ServerTls;
use openssl::hash::MessageDigest;
use openssl::x509::{CrlStatus, X509Crl, X509Ref, X509StoreContextRef};

use super::peer::{all_sans, hex, in_trust_domain, san_matches};

/// The per-server policy for client certificates.
pub struct ClientCheck {
    sans: Vec<String>,
    spki: Vec<String>,
    hashes: Vec<String>,
    crls: Vec<X509Crl>,
    insecure: bool,
    trust_domains: Vec<String>,
}

impl ClientCheck {
    /// The policy of a server's `tls` block; `crls` already parsed.
    pub fn new(tls: &ServerTls, crls: Vec<X509Crl>) -> Self {
        ClientCheck {
            sans: tls.subject_alt_names.clone(),
            spki: tls.verify_certificate_spki.clone(),
            hashes: tls.verify_certificate_hash.iter().map(|h| h.replace(':', "").to_ascii_lowercase()).collect(),
            crls,
            insecure: tls.insecure_skip_verify,
            trust_domains: tls.trust_domains.clone(),
        }
    }

    /// OpenSSL's verify callback: `ok` is OpenSSL's own verdict for the certificate at the current
    /// depth. Pylon's checks run once, on the leaf, with the whole verified chain at hand.
    pub fn verify(&self, ok: bool, ctx: &mut X509StoreContextRef) -> bool {
        if !ok {
            if self.insecure {
                return true;
            }
            tracing::debug!(error = %ctx.error(), depth = ctx.error_depth(), "client certificate rejected");
            return false;
        }
        if ctx.error_depth() != 0 {
            return true;
        }
        let verdict = self.leaf(ctx);
        match verdict {
            Ok(()) => true,
            Err(why) => {
                tracing::debug!(reason = %why, "client certificate rejected");
                if self.insecure {
                    return true;
                }
                ctx.set_error(openssl::x509::X509VerifyResult::APPLICATION_VERIFICATION);
                false
            }
        }
    }

    fn leaf(&self, ctx: &X509StoreContextRef) -> Result<(), String> {
        let chain: Vec<&X509Ref> = ctx.chain().map(|c| c.iter().collect()).unwrap_or_default();
        let leaf = *chain.first().ok_or("no certificate")?;
        check_revocation(&chain, &self.crls)?;
        if !self.sans.is_empty() {
            let presented = all_sans(leaf);
            let matched =
                self.sans.iter().any(|want| presented.iter().any(|(kind, san)| san_matches(*kind, san, want)));
            if !matched {
                return Err(format!("no SAN of the certificate is in subjectAltNames {:?}", self.sans));
            }
        }
        let domains = &self.trust_domains;
        if !domains.is_empty() && !all_sans(leaf).iter().any(|(_, san)| in_trust_domain(san, domains)) {
            return Err(format!(
                "the client certificate has no SPIFFE identity in trust domain {}",
                domains.join(", ")
            ));
        }
        if !self.hashes.is_empty() || !self.spki.is_empty() {
            let hash = leaf.digest(MessageDigest::sha256()).map(|d| hex(&d)).map_err(|e| e.to_string())?;
            let spki = spki_sha256(leaf)?;
            if !self.hashes.contains(&hash) && !self.spki.contains(&spki) {
                return Err("the certificate matches neither verifyCertificateHash nor verifyCertificateSpki".into());
            }
        }
        Ok(())
    }
}

/// Revocation as Envoy checks it once CRLs are configured (OpenSSL's `CRL_CHECK` and
/// `CRL_CHECK_ALL`): every certificate of the verified chain below its trust anchor needs a CRL
/// signed by its issuer that has not expired, and must not be listed in it. No CRLs: no check.
pub fn check_revocation(chain: &[&X509Ref], crls: &[X509Crl]) -> Result<(), String> {
    if crls.is_empty() {
        return Ok(());
    }
    let now = openssl::asn1::Asn1Time::days_from_now(0).map_err(|e| e.to_string())?;
    for pair in chain.windows(2) {
        let (cert, issuer) = (pair[0], pair[1]);
        let issuer_key = issuer.public_key().map_err(|e| e.to_string())?;
        let issuer_name = issuer.subject_name().to_der().map_err(|e| e.to_string())?;
        let crl = crls.iter().find(|crl| {
            crl.issuer_name().to_der().ok().as_deref() == Some(issuer_name.as_slice())
                && crl.verify(&issuer_key).unwrap_or(false)
        });
        let Some(crl) = crl else {
            return Err(format!(
                "no CRL from {}, which issued a certificate of the chain",
                super::peer::rfc2253(issuer.subject_name())
            ));
        };
        if crl.next_update().is_some_and(|next| *next < *now) {
            return Err("the CRL has expired".into());
        }
        if let CrlStatus::Revoked(_) = crl.get_by_cert(&cert.to_owned()) {
            return Err("the certificate is revoked".into());
        }
    }
    Ok(())
}

/// Base64 of the SHA-256 of the DER SubjectPublicKeyInfo (Envoy `verify_certificate_spki`).
pub fn spki_sha256(cert: &X509Ref) -> Result<String, String> {
    let der = cert.public_key().and_then(|k| k.public_key_to_der()).map_err(|e| e.to_string())?;
    let digest = openssl::sha::sha256(&der);
    Ok(base64::engine::general_purpose::STANDARD.encode(digest))
}
