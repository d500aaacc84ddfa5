//! Secret validation: the data a `credentialName` reads must decode.

use crate::diagnostic::{Code, Reporter};
use crate::raw::Secret;

/// Keys Istio reads from a TLS credential Secret.
const CERT_KEYS: &[&str] = &["tls.crt", "cert"];
const KEY_KEYS: &[&str] = &["tls.key", "key"];

pub(super) fn validate(secret: &Secret, r: &mut Reporter<'_>) {
    // A Secret no credentialName can read is none of Pylon's business.
    if !secret.may_hold_credentials() {
        return;
    }
    for (k, v) in &secret.data {
        if Secret::decode(v).is_none() {
            r.error(Code::Secret, format!("data[{k:?}]"), "value is not valid base64").hint =
                Some("values under data are base64; put plain PEM under stringData".into());
        }
    }
    if secret.secret_type.as_deref() == Some("kubernetes.io/tls") {
        let has =
            |keys: &[&str]| keys.iter().any(|k| secret.data.contains_key(*k) || secret.string_data.contains_key(*k));
        if !has(CERT_KEYS) {
            r.error(Code::Secret, "data", "a kubernetes.io/tls Secret needs tls.crt");
        }
        if !has(KEY_KEYS) {
            r.error(Code::Secret, "data", "a kubernetes.io/tls Secret needs tls.key");
        }
    }
}
