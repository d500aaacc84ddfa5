//! JSON Web Key Sets: parsing, choosing the key for a token, and the remote sets the gateway
//! fetches.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tokio::sync::{watch, Notify};

use super::verify::{Jwt, Status};

/// A remote set is refetched for an unknown `kid` at most this often, so that tokens with made-up
/// key ids cannot make the gateway hammer the issuer.
pub(crate) const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(10);

/// One usable verification key.
struct Key {
    kid: Option<String>,
    /// The JWK's `alg`, when it names one.
    alg: Option<Algorithm>,
    /// The algorithms the key material can verify (its family; for EC keys, its curve's).
    accepts: &'static [Algorithm],
    decoding: DecodingKey,
}

/// How many verified tokens a key set remembers (then it forgets them all and starts again).
const VERIFIED_CAPACITY: usize = 4096;

/// The usable keys of one JSON Web Key Set.
pub(crate) struct KeySet {
    keys: Vec<Key>,
    /// Tokens whose signature one of these keys verified, by their exact text: clients send the
    /// same token for its whole lifetime, and an RSA check costs far more than the rest of a
    /// request. Only the signature is remembered; `exp`, `nbf`, `iss` and `aud` are checked on
    /// every request. A new key set (a fetch, a reload) starts with none.
    verified: Mutex<std::collections::HashSet<String>>,
}

const RSA: &[Algorithm] =
    &[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512];

/// The key a JWK describes, or `None` when Pylon cannot or will not verify with it: symmetric
/// (`oct`) keys are never used, nor are curves `jsonwebtoken` does not implement (P-521) or keys
/// whose `alg` is not a signature algorithm (`RSA-OAEP`, ...).
fn key(jwk: &Jwk) -> Option<Key> {
    let accepts: &'static [Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => &[Algorithm::EdDSA],
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(ka) => Some(signature_algorithm(ka).filter(|a| accepts.contains(a))?),
    };
    let decoding = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key { kid: jwk.common.key_id.clone(), alg, accepts, decoding })
}

fn signature_algorithm(ka: KeyAlgorithm) -> Option<Algorithm> {
    Some(match ka {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// The signature check, through `jsonwebtoken` with every claim check off: `jsonwebtoken` reads
/// the system clock, and the caller has already checked `exp`, `nbf`, `iss` and `aud` against the
/// request's `now`, in Envoy's order and with Envoy's error statuses.
fn signature_ok(jwt: &Jwt, key: &Key) -> bool {
    let mut validation = Validation::new(jwt.alg);
    validation.algorithms = vec![jwt.alg];
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.leeway = super::verify::CLOCK_SKEW_SECS;
    jsonwebtoken::decode::<serde::de::IgnoredAny>(&jwt.raw, &key.decoding, &validation).is_ok()
}

impl KeySet {
    /// Parses a JWKS document, keeping the keys Pylon can use. Like `jwt_verify_lib`, a key that
    /// does not parse is skipped rather than failing the set; a set left with no key is an error.
    pub(crate) fn parse(json: &str) -> Result<KeySet, String> {
        let doc: Value = serde_json::from_str(json).map_err(|e| format!("JWKS is not JSON: {e}"))?;
        let Some(Value::Array(entries)) = doc.get("keys") else {
            return Err("JWKS has no \"keys\" list".into());
        };
        let keys: Vec<Key> = entries
            .iter()
            .filter_map(|entry| serde_json::from_value::<Jwk>(entry.clone()).ok())
            .filter_map(|jwk| key(&jwk))
            .collect();
        if keys.is_empty() {
            return Err(format!(
                "JWKS has no usable key ({} entries; RSA, EC P-256/P-384 and Ed25519 public keys are used)",
                entries.len()
            ));
        }
        Ok(KeySet { keys, verified: Mutex::new(std::collections::HashSet::new()) })
    }

    /// How many keys the set holds.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// `jwt_verify_lib`'s `verifyJwt`: keys whose `kid` (when both have one) and `alg` (when the
    /// key names one) match the token are tried in order; none matching is `KidAlgMismatch`, all
    /// matching ones failing is `VerificationFail`.
    pub(crate) fn verify(&self, jwt: &Jwt) -> Result<(), Status> {
        if self.verified.lock().is_ok_and(|v| v.contains(&jwt.raw)) {
            return Ok(());
        }
        let checked = self.check(jwt);
        if checked.is_ok() {
            if let Ok(mut v) = self.verified.lock() {
                if v.len() >= VERIFIED_CAPACITY {
                    v.clear();
                }
                v.insert(jwt.raw.clone());
            }
        }
        checked
    }

    fn check(&self, jwt: &Jwt) -> Result<(), Status> {
        let mut matched = false;
        for key in &self.keys {
            if let (Some(want), Some(have)) = (&jwt.kid, &key.kid) {
                if want != have {
                    continue;
                }
            }
            if key.alg.is_some_and(|alg| alg != jwt.alg) {
                continue;
            }
            matched = true;
            if key.accepts.contains(&jwt.alg) && signature_ok(jwt, key) {
                return Ok(());
            }
        }
        Err(if matched { Status::VerificationFail } else { Status::KidAlgMismatch })
    }
}

/// Fetch bookkeeping of a [`RemoteJwks`].
struct FetchState {
    /// When a fetch was last asked for (the initial fetch counts).
    last_request: Instant,
    /// A fetch was asked for and has not reported back.
    pending: bool,
}

/// A key set the gateway fetches from a rule's `jwksUri`, shared by every rule naming that URI.
///
/// The gateway's fetcher fetches [`RemoteJwks::uri`] at once (within [`RemoteJwks::timeout`]),
/// [`RemoteJwks::install`]s the body on success and calls [`RemoteJwks::fetch_done`] in every
/// case; then it waits for [`RemoteJwks::refetch_wanted`] (or its own refresh period) and does it
/// again. Requests meanwhile keep the last good set; until the first fetch reports back they wait
/// for it (at most the timeout).
pub struct RemoteJwks {
    /// The `jwksUri`.
    pub uri: String,
    /// How long a fetch may take, and how long a request waits for one (the rule's `timeout`).
    pub timeout: Duration,
    keys: ArcSwapOption<KeySet>,
    refetch: Notify,
    /// Bumped by every `fetch_done`, so waiting requests wake.
    done: watch::Sender<u64>,
    state: Mutex<FetchState>,
}

impl std::fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteJwks").field("uri", &self.uri).field("has_keys", &self.has_keys()).finish()
    }
}

impl RemoteJwks {
    /// A set not fetched yet, its first fetch counted as asked for (the fetcher does it at once).
    pub(crate) fn new(uri: String, timeout: Duration) -> RemoteJwks {
        RemoteJwks {
            uri,
            timeout,
            keys: ArcSwapOption::empty(),
            refetch: Notify::new(),
            done: watch::Sender::new(0),
            state: Mutex::new(FetchState { last_request: Instant::now(), pending: true }),
        }
    }

    /// Installs a freshly fetched JWKS document (JSON text). Err when it does not parse or has no
    /// usable key: the last good set is kept.
    pub fn install(&self, json: &str) -> Result<usize, String> {
        let set = KeySet::parse(json)?;
        let n = set.len();
        self.keys.store(Some(Arc::new(set)));
        Ok(n)
    }

    /// Takes the keys of `previous` (the same `jwksUri` in the configuration this one replaces)
    /// while this set has none: a reload keeps verifying with the last good keys instead of
    /// waiting for, or losing them to, a fetch.
    pub fn adopt(&self, previous: &RemoteJwks) {
        if previous.uri == self.uri && !self.has_keys() {
            self.keys.store(previous.keys.load_full());
        }
    }

    /// True once a key set was installed.
    pub fn has_keys(&self) -> bool {
        self.keys.load().is_some()
    }

    /// The fetcher (in the gateway) awaits this: resolves when a refetch is wanted (unknown kid
    /// seen, or no set yet; rate-limited to once per 10 s per key set). It does not resolve for
    /// the first fetch, which the fetcher does unasked.
    pub async fn refetch_wanted(&self) {
        self.refetch.notified().await;
    }

    /// The fetcher calls this after every fetch attempt (success or failure) so waiting requests
    /// wake.
    pub fn fetch_done(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.pending = false;
        }
        self.done.send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    /// Verifies `jwt` against the current set; on an unknown `kid` (or no set yet) asks for a
    /// fetch, waits for it within the timeout and tries once more.
    pub(crate) async fn verify(&self, jwt: &Jwt) -> Result<(), Status> {
        if let Some(set) = self.keys.load_full() {
            let result = set.verify(jwt);
            if result != Err(Status::KidAlgMismatch) {
                return result;
            }
        }
        self.await_fetch().await;
        match self.keys.load_full() {
            Some(set) => set.verify(jwt),
            None => Err(Status::FetchFailed),
        }
    }

    /// Lets the next unknown `kid` ask for a fetch at once, as if [`MIN_REFETCH_INTERVAL`] had
    /// passed.
    #[cfg(test)]
    pub(crate) fn expire_refetch_limit_for_tests(&self) {
        if let (Ok(mut state), Some(long_ago)) = (self.state.lock(), Instant::now().checked_sub(MIN_REFETCH_INTERVAL)) {
            state.last_request = long_ago;
        }
    }

    /// Asks for a fetch unless one was asked for within [`MIN_REFETCH_INTERVAL`], and waits (at
    /// most `timeout`) when a fetch is in flight. A request arriving while the limit holds and no
    /// fetch is in flight does not wait: the answer would not change.
    async fn await_fetch(&self) {
        // Subscribe before asking, so a fetch finishing in between is not missed.
        let mut done = self.done.subscribe();
        let wait = match self.state.lock() {
            Ok(mut state) => {
                if state.last_request.elapsed() >= MIN_REFETCH_INTERVAL {
                    state.last_request = Instant::now();
                    state.pending = true;
                    self.refetch.notify_one();
                }
                state.pending
            }
            Err(_) => false,
        };
        if wait {
            // A timeout just means the fetch is slow or the fetcher is gone: use what is there.
            let _ = tokio::time::timeout(self.timeout, done.changed()).await;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::testkit::{jwks, rsa_key};
    use super::*;

    #[test]
    fn a_verified_signature_is_remembered_and_a_forged_one_is_not() {
        let set = KeySet::parse(&jwks(&[rsa_key()])).unwrap();
        let claims = serde_json::json!({"iss": "i", "sub": "s"});
        let good = Jwt::parse(&rsa_key().sign(&claims)).unwrap();
        assert_eq!(set.verify(&good), Ok(()));
        assert!(set.verified.lock().unwrap().contains(&good.raw));
        assert_eq!(set.verify(&good), Ok(()), "answered from memory");
        // Another payload under the same signature: checked, refused, never remembered.
        let other = rsa_key().sign(&serde_json::json!({"iss": "i", "sub": "admin"}));
        let parts: Vec<&str> = good.raw.split('.').collect();
        let tampered = format!("{}.{}.{}", parts[0], other.split('.').nth(1).unwrap(), parts[2]);
        let tampered = Jwt::parse(&tampered).unwrap();
        assert_eq!(set.verify(&tampered), Err(Status::VerificationFail));
        assert!(!set.verified.lock().unwrap().contains(&tampered.raw));
    }
}
