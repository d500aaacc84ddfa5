//! Authentication: Istio `RequestAuthentication` (Envoy's `jwt_authn` filter as Istio configures
//! it).
//!
//! Istio turns every `jwtRule` of every bound policy into an Envoy provider and requires "any
//! provider, or no token at all" (`requires_any` with `allow_missing`,
//! <https://istio.io/latest/docs/reference/config/security/request_authentication/>). So: a request
//! without a token passes (authorization decides what an anonymous request may do), a request with
//! a token passes only if the token verifies against a rule of its issuer, and anything else is
//! refused with Envoy's status text.

mod keys;
mod token;
mod verify;

#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{HeaderName, HeaderValue};
use pingora_http::RequestHeader;

pub use keys::RemoteJwks;
pub use token::cookie_values;

use crate::{BuildError, Identity, LocalReply};
use keys::KeySet;
use token::{Found, Location};
use verify::{claim_as_header, Jwt, Status};

/// Istio's default for `jwtRule.timeout`.
const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Claims whose string value is always a space-separated list, in Istio's authorization
/// (<https://istio.io/latest/docs/reference/config/security/conditions/>).
const SPACE_DELIMITED: [&str; 2] = ["scope", "permission"];

/// Where a rule's keys come from.
enum Jwks {
    Inline(Arc<KeySet>),
    Remote(Arc<RemoteJwks>),
}

/// One `jwtRule`, ready to verify with.
struct Rule {
    issuer: String,
    audiences: Vec<String>,
    jwks: Jwks,
    /// Indices into [`Authenticator::locations`].
    locations: Vec<usize>,
    forward: bool,
    payload_header: Option<HeaderName>,
    claim_headers: Vec<(HeaderName, String)>,
    space_delimited: Vec<String>,
}

/// All `jwtRules` of all bound `RequestAuthentication`s, in order.
pub struct Authenticator {
    rules: Vec<Rule>,
    /// Every distinct token location of every rule (Envoy extracts from all of them at once).
    locations: Vec<Location>,
    /// One per distinct `jwksUri`.
    remotes: Vec<Arc<RemoteJwks>>,
}

/// A `jwtRule.timeout`: a protobuf `Duration` in its JSON form (`"5s"`, `"1.5s"`); `ms` is
/// accepted too. Zero or negative is refused: no fetch could ever finish.
fn parse_timeout(text: Option<&str>) -> Result<Duration, String> {
    let Some(text) = text else { return Ok(DEFAULT_FETCH_TIMEOUT) };
    let bad = || format!("timeout: {text:?} is not a positive duration like \"5s\"");
    let (number, unit) = match text.strip_suffix("ms") {
        Some(n) => (n, 0.001),
        None => (text.strip_suffix('s').ok_or_else(bad)?, 1.0),
    };
    let secs = number.parse::<f64>().map_err(|_| bad())? * unit;
    if !(secs > 0.0 && secs <= 3600.0) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A `jwksUri` must be an absolute `http`/`https` URL; Istio accepts both schemes.
fn check_jwks_uri(uri: &str) -> Result<(), String> {
    let parsed: http::Uri = uri.parse().map_err(|_| format!("jwksUri: {uri:?} is not a URL"))?;
    match (parsed.scheme_str(), parsed.host()) {
        (Some("https"), Some(host)) if is_ip(host) => Err(format!(
            "jwksUri: {uri:?}: an https key set at an IP address cannot be verified (the certificate check needs a host name)"
        )),
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(()),
        _ => Err(format!("jwksUri: {uri:?} is not an http:// or https:// URL")),
    }
}

/// An IPv4 or bracketed IPv6 literal.
pub fn is_ip(host: &str) -> bool {
    host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().is_ok()
}

fn header_name(field: &str, name: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("{field}: {name:?} is not a header name"))
}

impl Authenticator {
    /// Builds the rules of `policies`. Fails (never fail-open) on: invalid inline `jwks` JSON or
    /// a set without a usable key, a `jwksUri` that is not an http(s) URL, a rule with neither
    /// (Istio's OpenID discovery of the issuer is not implemented), no `issuer`, a bad `timeout`,
    /// a bad header name. `None` when there is no rule.
    pub fn build(
        policies: &[conf::table::BoundPolicy<conf::raw::RequestAuthentication>],
    ) -> Result<Option<Authenticator>, BuildError> {
        // Rules sharing a `jwksUri` share one fetch; it gets the longest of their timeouts.
        let mut timeouts: HashMap<&str, Duration> = HashMap::new();
        for rule in policies.iter().flat_map(|p| &p.spec.jwt_rules) {
            if let Ok(t) = parse_timeout(rule.timeout.as_deref()) {
                let entry = timeouts.entry(rule.jwks_uri.as_str()).or_insert(t);
                *entry = (*entry).max(t);
            }
        }
        let mut authn = Authenticator { rules: Vec::new(), locations: Vec::new(), remotes: Vec::new() };
        for policy in policies {
            for (i, rule) in policy.spec.jwt_rules.iter().enumerate() {
                let built = authn.rule(rule, &timeouts).map_err(|message| BuildError {
                    policy: format!("RequestAuthentication {}", policy.name),
                    message: format!("jwtRules[{i}]: {message}"),
                })?;
                authn.rules.push(built);
            }
        }
        Ok((!authn.rules.is_empty()).then_some(authn))
    }

    fn rule(&mut self, rule: &conf::raw::JwtRule, timeouts: &HashMap<&str, Duration>) -> Result<Rule, String> {
        if rule.issuer.is_empty() {
            return Err("issuer is required".into());
        }
        let timeout = parse_timeout(rule.timeout.as_deref())?;
        // Istio uses the inline set when both are given.
        let jwks = if !rule.jwks.is_empty() {
            Jwks::Inline(Arc::new(KeySet::parse(&rule.jwks).map_err(|e| format!("jwks: {e}"))?))
        } else if !rule.jwks_uri.is_empty() {
            check_jwks_uri(&rule.jwks_uri)?;
            Jwks::Remote(self.remote(&rule.jwks_uri, timeouts.get(rule.jwks_uri.as_str()).copied().unwrap_or(timeout)))
        } else {
            return Err("neither jwks nor jwksUri is set (OpenID discovery is not supported)".into());
        };
        let mut locations = Vec::new();
        for location in token::rule_locations(rule)? {
            let index = match self.locations.iter().position(|l| *l == location) {
                Some(index) => index,
                None => {
                    self.locations.push(location);
                    self.locations.len() - 1
                }
            };
            locations.push(index);
        }
        let payload_header = match rule.output_payload_to_header.as_str() {
            "" => None,
            name => Some(header_name("outputPayloadToHeader", name)?),
        };
        let claim_headers = rule
            .output_claim_to_headers
            .iter()
            .map(|c| Ok((header_name("outputClaimToHeaders", &c.header)?, c.claim.clone())))
            .collect::<Result<Vec<_>, String>>()?;
        let mut space_delimited: Vec<String> = SPACE_DELIMITED.iter().map(|s| s.to_string()).collect();
        space_delimited.extend(rule.space_delimited_claims.iter().cloned());
        Ok(Rule {
            issuer: rule.issuer.clone(),
            audiences: rule.audiences.clone(),
            jwks,
            locations,
            forward: rule.forward_original_token,
            payload_header,
            claim_headers,
            space_delimited,
        })
    }

    fn remote(&mut self, uri: &str, timeout: Duration) -> Arc<RemoteJwks> {
        if let Some(existing) = self.remotes.iter().find(|r| r.uri == uri) {
            return existing.clone();
        }
        let remote = Arc::new(RemoteJwks::new(uri.to_string(), timeout));
        self.remotes.push(remote.clone());
        remote
    }

    /// Every remote key set the gateway must fetch (one per distinct `jwksUri`).
    pub fn remote_key_sets(&self) -> Vec<Arc<RemoteJwks>> {
        self.remotes.clone()
    }

    /// Finds and verifies the request's token(s). `Ok(None)`: no token (passes; authorization
    /// decides). `Ok(Some(identity))`: verified; the token's header is removed unless
    /// `forwardOriginalToken`, and `outputPayloadToHeader` / `outputClaimToHeaders` are set
    /// (overwriting). `Err(reply)`: 401 (403 for a wrong audience) with Envoy's status text.
    ///
    /// With several tokens, every one must verify (Istio's requirement tree: a token present in a
    /// location must be valid, even next to a valid one); the identity is the first one's.
    /// The output headers are removed first, token or not (Envoy's `sanitizeHeaders`), so a
    /// client can never pass its own value off as a verified claim.
    pub async fn authenticate(&self, req: &mut RequestHeader, now: SystemTime) -> Result<Option<Identity>, LocalReply> {
        for rule in &self.rules {
            rule.sanitize(req);
        }
        let found = token::extract(req, &self.locations);
        if found.is_empty() {
            return Ok(None);
        }
        let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut verified: Vec<(usize, &Rule, Jwt)> = Vec::new();
        let mut refused: Option<Status> = None;
        for f in &found {
            match self.verify(f, now_secs).await {
                Ok((rule, jwt)) => verified.push((f.location, rule, jwt)),
                // Like Envoy's `AnyVerifier`, a token meant for no rule here is the least telling
                // error: any other one is reported instead.
                Err(status) => {
                    if refused.is_none_or(|r| r == Status::UnknownIssuer) {
                        refused = Some(status);
                    }
                }
            }
        }
        if let Some(status) = refused {
            return Err(reply(req, status));
        }
        let Some((_, rule, jwt)) = verified.first() else {
            return Err(reply(req, Status::VerificationFail));
        };
        let identity = identity(rule, jwt);
        for (location, rule, jwt) in &verified {
            rule.write_outputs(req, jwt);
            // Envoy removes the token after writing the outputs (`authenticator.cc`, `verifyKey`).
            if !rule.forward {
                if let Some(location) = self.locations.get(*location) {
                    token::remove(req, location);
                }
            }
        }
        Ok(Some(identity))
    }

    /// Verifies one token: Envoy's order is parse, issuer, time, audience, signature.
    async fn verify(&self, found: &Found, now_secs: u64) -> Result<(&Rule, Jwt), Status> {
        let jwt = Jwt::parse(&found.token)?;
        // The unverified `iss` only routes the token to the rules that could verify it, as Envoy's
        // issuer-based provider lookup does; nothing is trusted before the signature is.
        let candidates: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|r| !jwt.iss.is_empty() && r.issuer == jwt.iss && r.locations.contains(&found.location))
            .collect();
        if candidates.is_empty() {
            return Err(Status::UnknownIssuer);
        }
        jwt.check_time(now_secs)?;
        let mut first_error = Status::UnknownIssuer;
        for (i, rule) in candidates.into_iter().enumerate() {
            match rule.check(&jwt).await {
                Ok(()) => return Ok((rule, jwt)),
                Err(status) if i == 0 => first_error = status,
                Err(_) => {}
            }
        }
        Err(first_error)
    }
}

impl Rule {
    async fn check(&self, jwt: &Jwt) -> Result<(), Status> {
        jwt.check_audiences(&self.audiences)?;
        match &self.jwks {
            Jwks::Inline(set) => set.verify(jwt),
            Jwks::Remote(remote) => remote.verify(jwt).await,
        }
    }

    /// `outputPayloadToHeader` gets the payload segment as received (Envoy's
    /// `forward_payload_header`); each `outputClaimToHeaders` header gets its claim, or is removed
    /// when the claim is absent or not a scalar, so a client cannot pass its own value off as a
    /// verified claim.
    fn sanitize(&self, req: &mut RequestHeader) {
        if let Some(name) = &self.payload_header {
            req.remove_header(name);
        }
        for (name, _) in &self.claim_headers {
            req.remove_header(name);
        }
    }

    fn write_outputs(&self, req: &mut RequestHeader, jwt: &Jwt) {
        if let Some(name) = &self.payload_header {
            if let Ok(value) = HeaderValue::from_str(&jwt.payload_b64) {
                let _ = req.insert_header(name.clone(), value);
            }
        }
        for (name, claim) in &self.claim_headers {
            match claim_as_header(&jwt.payload, claim).and_then(|v| HeaderValue::from_str(&v).ok()) {
                Some(value) => {
                    let _ = req.insert_header(name.clone(), value);
                }
                None => {
                    req.remove_header(name);
                }
            }
        }
    }
}

/// What a verified token proves, as Istio's `request.auth.*` attributes.
fn identity(rule: &Rule, jwt: &Jwt) -> Identity {
    Identity {
        principal: format!("{}/{}", jwt.iss, jwt.sub),
        issuer: jwt.iss.clone(),
        subject: jwt.sub.clone(),
        audiences: jwt.audiences.clone(),
        presenter: jwt.payload.get("azp").and_then(|v| v.as_str()).map(str::to_string),
        claims: jwt.payload.clone(),
        space_delimited: rule.space_delimited.clone(),
    }
}

/// Envoy's denial (`filter.cc`, `onComplete`): the status text as body, RFC 6750's
/// `www-authenticate` with the request's original URI as realm, and the response details
/// `jwt_authn_access_denied{<status with _ for spaces>}`.
fn reply(req: &RequestHeader, status: Status) -> LocalReply {
    let body = status.message();
    let challenge = format!("Bearer realm=\"{}\", error=\"invalid_token\"", original_uri(req));
    LocalReply {
        status: status.http_status(),
        body: body.to_string(),
        headers: vec![("www-authenticate".to_string(), challenge)],
        details: format!("jwt_authn_access_denied{{{}}}", body.replace(' ', "_")),
    }
}

/// Envoy's `Http::Utility::buildOriginalUri`: `<x-forwarded-proto>://<host><path>`, the path with
/// its query.
fn original_uri(req: &RequestHeader) -> String {
    let scheme = req
        .headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|v| *v == "http" || *v == "https")
        .or_else(|| req.uri.scheme_str())
        .unwrap_or("http");
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
    format!("{scheme}://{host}{path}")
}
