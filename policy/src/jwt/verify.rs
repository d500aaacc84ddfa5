//! One token: its parsing, its claim checks, and the verdicts Envoy's `jwt_verify_lib` names.
//!
//! The checks run in the order of Envoy's authenticator
//! (<https://github.com/envoyproxy/envoy/blob/main/source/extensions/filters/http/jwt_authn/authenticator.cc>):
//! parse, issuer, `exp`/`nbf`, audiences, then keys and signature. The order decides which error
//! a client sees when a token has several faults, so it is kept.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use serde_json::Value;

/// Envoy's `clock_skew_seconds` default, which Istio does not change
/// (<https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/http/jwt_authn/v3/config.proto>).
pub(crate) const CLOCK_SKEW_SECS: u64 = 60;

/// Why a token was refused: the statuses of Envoy's `jwt_verify_lib`, whose strings are the body of
/// the 401/403 (<https://github.com/google/jwt_verify_lib/blob/master/src/status.cc>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    BadFormat,
    HeaderBadBase64,
    HeaderBadJson,
    HeaderBadAlg,
    HeaderNotImplementedAlg,
    HeaderBadKid,
    PayloadBadBase64,
    PayloadBadJson,
    IssNotString,
    SubNotString,
    AudNotString,
    ExpNotInteger,
    NbfNotInteger,
    SignatureBadBase64,
    UnknownIssuer,
    Expired,
    NotYetValid,
    AudienceNotAllowed,
    KidAlgMismatch,
    VerificationFail,
    FetchFailed,
}

impl Status {
    /// Envoy's text for the status (the reply body).
    pub(crate) fn message(self) -> &'static str {
        match self {
            Status::BadFormat => "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
            Status::HeaderBadBase64 => "Jwt header is an invalid Base64url encoded",
            Status::HeaderBadJson => "Jwt header is an invalid JSON",
            Status::HeaderBadAlg => "Jwt header [alg] field is required and must be a string",
            Status::HeaderNotImplementedAlg => "Jwt header [alg] is not supported",
            Status::HeaderBadKid => "Jwt header [kid] field is not a string",
            Status::PayloadBadBase64 => "Jwt payload is an invalid Base64url encoded",
            Status::PayloadBadJson => "Jwt payload is an invalid JSON",
            Status::IssNotString => "Jwt payload [iss] field is not a string",
            Status::SubNotString => "Jwt payload [sub] field is not a string",
            Status::AudNotString => "Jwt payload [aud] field is not a string or string list",
            Status::ExpNotInteger => "Jwt payload [exp] field is not an integer",
            Status::NbfNotInteger => "Jwt payload [nbf] field is not an integer",
            Status::SignatureBadBase64 => "Jwt signature is an invalid Base64url encoded",
            Status::UnknownIssuer => "Jwt issuer is not configured",
            Status::Expired => "Jwt is expired",
            Status::NotYetValid => "Jwt not yet valid",
            Status::AudienceNotAllowed => "Audiences in Jwt are not allowed",
            Status::KidAlgMismatch => "Jwks doesn't have key to match kid or alg from Jwt",
            Status::VerificationFail => "Jwt verification fails",
            Status::FetchFailed => "Jwks remote fetch is failed",
        }
    }

    /// Envoy answers 403 for a token of the wrong audience and 401 for everything else
    /// (`filter.cc`, `onComplete`).
    pub(crate) fn http_status(self) -> u16 {
        if self == Status::AudienceNotAllowed {
            403
        } else {
            401
        }
    }
}

/// A token split and decoded, not yet verified.
#[derive(Debug, Clone)]
pub(crate) struct Jwt {
    /// The whole token as found.
    pub(crate) raw: String,
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<String>,
    /// The payload segment as received (base64url), for `outputPayloadToHeader`.
    pub(crate) payload_b64: String,
    pub(crate) payload: Value,
    pub(crate) iss: String,
    pub(crate) sub: String,
    pub(crate) audiences: Vec<String>,
    pub(crate) exp: Option<u64>,
    pub(crate) nbf: Option<u64>,
}

/// The algorithms Pylon verifies. Never `HS*` (a shared secret in a published key set would let
/// anyone sign) and never `none`; `ES512` is not implemented by `jsonwebtoken`.
fn algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

fn segment(b64: &str, bad_base64: Status, bad_json: Status) -> Result<Value, Status> {
    // Envoy tolerates the `=` padding some issuers leave on segments.
    let bytes = URL_SAFE_NO_PAD.decode(b64.trim_end_matches('=')).map_err(|_| bad_base64)?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(bad_json),
    }
}

/// An optional `NumericDate`: Envoy wants a non-negative integer.
fn numeric_date(payload: &Value, claim: &str, bad: Status) -> Result<Option<u64>, Status> {
    match payload.get(claim) {
        None => Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(v), _) => Ok(Some(v)),
            (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 && f < u64::MAX as f64 => Ok(Some(f as u64)),
            _ => Err(bad),
        },
        Some(_) => Err(bad),
    }
}

fn optional_string(payload: &Value, claim: &str, bad: Status) -> Result<String, Status> {
    match payload.get(claim) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(bad),
    }
}

/// `aud` is a string or a list of strings (RFC 7519 §4.1.3).
fn audiences(payload: &Value) -> Result<Vec<String>, Status> {
    match payload.get("aud") {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => {
            items.iter().map(|item| item.as_str().map(str::to_string).ok_or(Status::AudNotString)).collect()
        }
        Some(_) => Err(Status::AudNotString),
    }
}

impl Jwt {
    /// Splits and decodes `raw` as `jwt_verify_lib`'s `Jwt::parseFromString` does; nothing is
    /// trusted yet (the issuer only routes the token to its rule).
    pub(crate) fn parse(raw: &str) -> Result<Jwt, Status> {
        let parts: Vec<&str> = raw.split('.').collect();
        let [header_b64, payload_b64, signature_b64] = parts[..] else {
            return Err(Status::BadFormat);
        };
        let header = segment(header_b64, Status::HeaderBadBase64, Status::HeaderBadJson)?;
        let alg = match header.get("alg") {
            Some(Value::String(name)) => algorithm(name).ok_or(Status::HeaderNotImplementedAlg)?,
            _ => return Err(Status::HeaderBadAlg),
        };
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(Status::HeaderBadKid),
        };
        let payload = segment(payload_b64, Status::PayloadBadBase64, Status::PayloadBadJson)?;
        URL_SAFE_NO_PAD.decode(signature_b64.trim_end_matches('=')).map_err(|_| Status::SignatureBadBase64)?;
        Ok(Jwt {
            raw: raw.to_string(),
            alg,
            kid,
            payload_b64: payload_b64.to_string(),
            iss: optional_string(&payload, "iss", Status::IssNotString)?,
            sub: optional_string(&payload, "sub", Status::SubNotString)?,
            audiences: audiences(&payload)?,
            exp: numeric_date(&payload, "exp", Status::ExpNotInteger)?,
            nbf: numeric_date(&payload, "nbf", Status::NbfNotInteger)?,
            payload,
        })
    }

    /// `jwt_verify_lib`'s `verifyTimeConstraint`: both bounds widened by the clock skew; a token
    /// without `exp` never expires, one without `nbf` is valid at once.
    pub(crate) fn check_time(&self, now_secs: u64) -> Result<(), Status> {
        if self.nbf.is_some_and(|nbf| now_secs.saturating_add(CLOCK_SKEW_SECS) < nbf) {
            return Err(Status::NotYetValid);
        }
        if self.exp.is_some_and(|exp| now_secs > exp.saturating_add(CLOCK_SKEW_SECS)) {
            return Err(Status::Expired);
        }
        Ok(())
    }

    /// Envoy's `CheckAudience`: no configured audience accepts any token; otherwise one of the
    /// token's audiences must be configured, compared without `http(s)://` and a trailing `/`.
    pub(crate) fn check_audiences(&self, allowed: &[String]) -> Result<(), Status> {
        if allowed.is_empty() {
            return Ok(());
        }
        let sanitize = |a: &str| {
            let a = a.strip_prefix("http://").or_else(|| a.strip_prefix("https://")).unwrap_or(a);
            a.strip_suffix('/').unwrap_or(a).to_string()
        };
        let allowed: Vec<String> = allowed.iter().map(|a| sanitize(a)).collect();
        if self.audiences.iter().any(|a| allowed.contains(&sanitize(a))) {
            Ok(())
        } else {
            Err(Status::AudienceNotAllowed)
        }
    }
}

/// The claim at the `.`-separated `path`, as a header value: a string as is, a number or a boolean
/// as written, anything else (objects, lists, null) none — Istio's `outputClaimToHeaders` "only
/// supports claims of type string, int and bool"
/// (<https://istio.io/latest/docs/reference/config/security/jwt/#ClaimToHeader>).
pub(crate) fn claim_as_header(payload: &Value, path: &str) -> Option<String> {
    let mut v = payload;
    for key in path.split('.') {
        v = v.get(key)?;
    }
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.{}", b64(header), b64(payload), b64("sig"))
    }

    #[test]
    fn a_token_without_three_sections_is_badly_formed() {
        assert_eq!(Jwt::parse("abc").unwrap_err(), Status::BadFormat);
        assert_eq!(Jwt::parse("a.b.c.d").unwrap_err(), Status::BadFormat);
    }

    #[test]
    fn hmac_and_none_algorithms_are_not_supported() {
        for alg in ["HS256", "none", "ES512"] {
            let t = token(&format!(r#"{{"alg":"{alg}"}}"#), r#"{"iss":"a"}"#);
            assert_eq!(Jwt::parse(&t).unwrap_err(), Status::HeaderNotImplementedAlg, "{alg}");
        }
        let t = token(r#"{"typ":"JWT"}"#, r#"{"iss":"a"}"#);
        assert_eq!(Jwt::parse(&t).unwrap_err(), Status::HeaderBadAlg);
    }

    #[test]
    fn malformed_claims_are_named_as_envoy_names_them() {
        let h = r#"{"alg":"RS256"}"#;
        assert_eq!(Jwt::parse(&token(h, r#"{"iss":1}"#)).unwrap_err(), Status::IssNotString);
        assert_eq!(Jwt::parse(&token(h, r#"{"aud":[1]}"#)).unwrap_err(), Status::AudNotString);
        assert_eq!(Jwt::parse(&token(h, r#"{"exp":"soon"}"#)).unwrap_err(), Status::ExpNotInteger);
        assert_eq!(Jwt::parse(&token(h, r#"[1]"#)).unwrap_err(), Status::PayloadBadJson);
        assert_eq!(Jwt::parse(&format!("{}.%%%.{}", b64(h), b64("s"))).unwrap_err(), Status::PayloadBadBase64);
    }

    #[test]
    fn time_bounds_are_widened_by_sixty_seconds() {
        let t = token(r#"{"alg":"RS256"}"#, r#"{"exp":1000,"nbf":500}"#);
        let jwt = Jwt::parse(&t).unwrap();
        assert_eq!(jwt.check_time(1060), Ok(()));
        assert_eq!(jwt.check_time(1061), Err(Status::Expired));
        assert_eq!(jwt.check_time(440), Ok(()));
        assert_eq!(jwt.check_time(439), Err(Status::NotYetValid));
    }

    #[test]
    fn audiences_match_without_scheme_or_trailing_slash() {
        let t = token(r#"{"alg":"RS256"}"#, r#"{"aud":["https://api.example.com/","other"]}"#);
        let jwt = Jwt::parse(&t).unwrap();
        assert_eq!(jwt.check_audiences(&[]), Ok(()));
        assert_eq!(jwt.check_audiences(&["api.example.com".into()]), Ok(()));
        assert_eq!(jwt.check_audiences(&["nope".into()]), Err(Status::AudienceNotAllowed));
    }

    #[test]
    fn claims_become_header_values_only_when_scalar() {
        let p: Value = serde_json::json!({"a": {"b": "x", "n": 3, "t": true, "l": ["y"]}});
        assert_eq!(claim_as_header(&p, "a.b").as_deref(), Some("x"));
        assert_eq!(claim_as_header(&p, "a.n").as_deref(), Some("3"));
        assert_eq!(claim_as_header(&p, "a.t").as_deref(), Some("true"));
        assert_eq!(claim_as_header(&p, "a.l"), None);
        assert_eq!(claim_as_header(&p, "a.missing"), None);
    }
}
