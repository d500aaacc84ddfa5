//! `Authenticator` behaviours, end to end on a request header (no sockets).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conf::raw::{ClaimToHeader, JwtHeader, JwtRule, RequestAuthentication};
use conf::table::BoundPolicy;
use pingora_http::RequestHeader;
use serde_json::{json, Value};

use super::testkit::{ec_key, jwks, rotated_rsa_key, rsa_key};
use super::{Authenticator, RemoteJwks};
use crate::{Identity, LocalReply};

const ISSUER: &str = "https://issuer.example.com";
const NOW_SECS: u64 = 1_700_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

fn rule(issuer: &str, jwks: String) -> JwtRule {
    JwtRule { issuer: issuer.into(), jwks, ..Default::default() }
}

fn build(rules: Vec<JwtRule>) -> Authenticator {
    try_build(rules).unwrap().expect("rules")
}

fn try_build(rules: Vec<JwtRule>) -> Result<Option<Authenticator>, crate::BuildError> {
    let spec = RequestAuthentication { jwt_rules: rules, ..Default::default() };
    Authenticator::build(&[BoundPolicy { name: "ns/jwt".into(), bound_by: "selector", dry_run: false, spec }])
}

fn claims(iss: &str, extra: Value) -> Value {
    let mut c = json!({"iss": iss, "sub": "alice", "exp": NOW_SECS + 600, "iat": NOW_SECS});
    if let (Value::Object(c), Value::Object(extra)) = (&mut c, extra) {
        c.extend(extra);
    }
    c
}

fn request(path: &str, headers: &[(&'static str, &str)]) -> RequestHeader {
    let mut req = RequestHeader::build("GET", path.as_bytes(), None).unwrap();
    req.append_header("host", "api.example.com").unwrap();
    for (k, v) in headers {
        req.append_header(*k, *v).unwrap();
    }
    req
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn authenticate(authn: &Authenticator, req: &mut RequestHeader) -> Result<Option<Identity>, LocalReply> {
    authn.authenticate(req, now()).await
}

fn header<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
    req.headers.get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn a_valid_rs256_token_proves_an_identity_and_is_removed() {
    let authn = build(vec![rule(ISSUER, jwks(&[rsa_key()]))]);
    let token = rsa_key().sign(&claims(ISSUER, json!({"aud": "api", "azp": "web", "scope": "read write"})));
    let mut req = request("/", &[("authorization", &bearer(&token))]);
    let identity = authenticate(&authn, &mut req).await.unwrap().expect("identity");
    assert_eq!(identity.principal, format!("{ISSUER}/alice"));
    assert_eq!(identity.audiences, vec!["api".to_string()]);
    assert_eq!(identity.presenter.as_deref(), Some("web"));
    assert_eq!(identity.claim_values(&["scope".into()]), vec!["read", "write"]);
    assert!(header(&req, "authorization").is_none());
}

#[tokio::test]
async fn a_valid_es256_token_is_accepted() {
    let authn = build(vec![rule(ISSUER, jwks(&[rsa_key(), ec_key()]))]);
    let token = ec_key().sign(&claims(ISSUER, json!({})));
    let mut req = request("/", &[("authorization", &bearer(&token))]);
    assert!(authenticate(&authn, &mut req).await.unwrap().is_some());
}

#[tokio::test]
async fn a_request_without_a_token_passes_anonymously() {
    let authn = build(vec![rule(ISSUER, jwks(&[rsa_key()]))]);
    let mut req = request("/", &[("authorization", "Basic dXNlcjpwdw==")]);
    assert_eq!(authenticate(&authn, &mut req).await.unwrap(), None);
    assert!(header(&req, "authorization").is_some());
}

#[tokio::test]
async fn an_expired_token_is_refused_with_401() {
    let authn = build(vec![rule(ISSUER, jwks(&[rsa_key()]))]);
    let token = rsa_key().sign(&claims(ISSUER, json!({"exp": NOW_SECS - 61})));
    let mut req = request("/a?b=c", &[("authorization", &bearer(&token))]);
    let reply = authenticate(&authn, &mut req).await.unwrap_err();
    assert_eq!((reply.status, reply.body.as_str()), (401, "Jwt is expired"));
    assert_eq!(reply.details, "jwt_authn_access_denied{Jwt_is_expired}");
    let challenge = r#"Bearer realm="http://api.example.com/a?b=c", error="invalid_token""#;
    assert_eq!(reply.headers, vec![("www-authenticate".to_string(), challenge.to_string())]);
    // Within the 60 s clock skew the token is still good.
    let token = rsa_key().sign(&claims(ISSUER, json!({"exp": NOW_SECS - 59})));
    let mut req = request("/", &[("authorization", &bearer(&token))]);
    assert!(authenticate(&authn, &mut req).await.unwrap().is_some());
}

#[tokio::test]
async fn a_token_not_yet_valid_is_refused_with_401() {
    let authn = build(vec![rule(ISSUER, jwks(&[rsa_key()]))]);
    let token = rsa_key().sign(&claims(ISSUER, json!({"nbf": NOW_SECS + 120})));
    let mut req = request("/", &[("authorization", &bearer(&token))]);
    let reply = authenticate(&authn, &mut req).await.unwrap_err();
    assert_eq!((reply.status, reply.body.as_str()), (401, "Jwt not yet valid"));
}

#[tokio::test]
async fn a_token_from_an_unconfigured_issuer_is_refused_with_401() {
    let authn = build(vec![rule(ISSUER, jwks(&[rsa_key()]))]);
    let token = rsa_key().sign(&claims("https://elsewhere.example.com", json!({})));
    let mut req = request("/", &[("authorization", &bearer(&token))]);
    let reply = authenticate(&authn, &mut req).await.unwrap_err();
    assert_eq!((reply.status, reply.body.as_str()), (401, "Jwt issuer is not configured"));
    assert!(header(&req, "authorization").is_some());
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused_with_403() {
    let mut r = rule(ISSUER, jwks(&[rsa_key()]));
    r.audiences = vec!["api.example.com".into()];
    let authn = build(vec![r]);
    let token = rsa_key().sign(&claims(ISSUER, json!({"aud": ["other"]})));
    let mut req = request("/", &[("authorization", &bearer(&token))]);
    let reply = authenticate(&authn, &mut req).await.unwrap_err();
    assert_eq!((reply.status, reply.body.as_str()), (403, "Audiences in Jwt are not allowed"));
    let token = rsa_key().sign(&claims(ISSUER, json!({"aud": ["other", "https://api.example.com/"]})));
    let mut req = request("/", &[("authorization", &bearer(&token))]);
    assert!(authenticate(&authn, &mut req).await.unwrap().is_some());
}

#[tokio::test]
async fn a_malformed_token_is_refused_with_401() {
    let authn = build(vec![rule(ISSUER, jwks(&[rsa_key()]))]);
    let mut req = request("/", &[("authorization", "Bearer not-a-jwt")]);
    let reply = authenticate(&authn, &mut req).await.unwrap_err();
    assert_eq!(reply.status, 401);
    assert_eq!(reply.body, "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections");
}

#[tokio::test]
async fn a_token_signed_by_another_key_fails_verification() {
    let authn = build(vec![rule(ISSUER, jwks(&[rsa_key()]))]);
    // Same `kid` as the configured key, other key material.
    let forged = super::testkit::TestKey::rsa(&rsa_key().kid);
    let mut req = request("/", &[("authorization", &bearer(&forged.sign(&claims(ISSUER, json!({})))))]);
    let reply = authenticate(&authn, &mut req).await.unwrap_err();
    assert_eq!((reply.status, reply.body.as_str()), (401, "Jwt verification fails"));
    // An unknown `kid` in an inline set is a key mismatch.
    let mut req = request("/", &[("authorization", &bearer(&rotated_rsa_key().sign(&claims(ISSUER, json!({})))))]);
    let reply = authenticate(&authn, &mut req).await.unwrap_err();
    assert_eq!(reply.body, "Jwks doesn't have key to match kid or alg from Jwt");
}

#[tokio::test]
async fn a_token_in_the_access_token_param_is_accepted_and_left_in_place() {
    let authn = build(vec![rule(ISSUER, jwks(&[rsa_key()]))]);
    let token = rsa_key().sign(&claims(ISSUER, json!({})));
    let mut req = request(&format!("/p?access_token={token}"), &[]);
    assert!(authenticate(&authn, &mut req).await.unwrap().is_some());
    assert_eq!(req.uri.query(), Some(format!("access_token={token}").as_str()));
}

#[tokio::test]
async fn a_token_in_a_configured_cookie_is_accepted() {
    let mut r = rule(ISSUER, jwks(&[rsa_key()]));
    r.from_cookies = vec!["session".into()];
    let authn = build(vec![r]);
    let token = rsa_key().sign(&claims(ISSUER, json!({})));
    let mut req = request("/", &[("cookie", &format!("theme=dark; session={token}"))]);
    assert!(authenticate(&authn, &mut req).await.unwrap().is_some());
    // Configured locations replace the defaults.
    let mut req = request("/", &[("authorization", &bearer(&token))]);
    assert_eq!(authenticate(&authn, &mut req).await.unwrap(), None);
}

#[tokio::test]
async fn a_custom_header_is_read_only_with_its_prefix() {
    let mut r = rule(ISSUER, jwks(&[rsa_key()]));
    r.from_headers = vec![JwtHeader { name: "x-jwt-assertion".into(), prefix: "Token ".into() }];
    let authn = build(vec![r]);
    let token = rsa_key().sign(&claims(ISSUER, json!({})));
    let mut req = request("/", &[("x-jwt-assertion", &format!("Token {token}"))]);
    assert!(authenticate(&authn, &mut req).await.unwrap().is_some());
    assert!(header(&req, "x-jwt-assertion").is_none());
    let mut req = request("/", &[("x-jwt-assertion", &token)]);
    assert_eq!(authenticate(&authn, &mut req).await.unwrap(), None);
}

#[tokio::test]
async fn forward_original_token_keeps_the_header() {
    let mut r = rule(ISSUER, jwks(&[rsa_key()]));
    r.forward_original_token = true;
    let authn = build(vec![r]);
    let value = bearer(&rsa_key().sign(&claims(ISSUER, json!({}))));
    let mut req = request("/", &[("authorization", &value)]);
    assert!(authenticate(&authn, &mut req).await.unwrap().is_some());
    assert_eq!(header(&req, "authorization"), Some(value.as_str()));
}

#[tokio::test]
async fn claims_and_payload_are_copied_to_headers() {
    let mut r = rule(ISSUER, jwks(&[rsa_key()]));
    r.output_payload_to_header = "x-jwt-payload".into();
    r.output_claim_to_headers = vec![
        ClaimToHeader { header: "x-sub".into(), claim: "sub".into() },
        ClaimToHeader { header: "x-tier".into(), claim: "org.tier".into() },
        ClaimToHeader { header: "x-admin".into(), claim: "admin".into() },
        ClaimToHeader { header: "x-missing".into(), claim: "nope".into() },
    ];
    let authn = build(vec![r]);
    let token = rsa_key().sign(&claims(ISSUER, json!({"org": {"tier": 3}, "admin": true})));
    let headers = [("authorization", bearer(&token)), ("x-sub", "spoofed".into()), ("x-missing", "spoofed".into())];
    let headers: Vec<(&'static str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut req = request("/", &headers);
    assert!(authenticate(&authn, &mut req).await.unwrap().is_some());
    assert_eq!(header(&req, "x-sub"), Some("alice"));
    assert_eq!(header(&req, "x-tier"), Some("3"));
    assert_eq!(header(&req, "x-admin"), Some("true"));
    assert_eq!(header(&req, "x-missing"), None);
    assert_eq!(header(&req, "x-jwt-payload"), token.split('.').nth(1));
}

#[tokio::test]
async fn two_rules_with_different_issuers_each_verify_their_own_tokens() {
    let other = "https://other.example.com";
    let authn = build(vec![rule(ISSUER, jwks(&[rsa_key()])), rule(other, jwks(&[ec_key()]))]);
    let mut req = request("/", &[("authorization", &bearer(&ec_key().sign(&claims(other, json!({})))))]);
    let identity = authenticate(&authn, &mut req).await.unwrap().unwrap();
    assert_eq!(identity.principal, format!("{other}/alice"));
    let mut req = request("/", &[("authorization", &bearer(&rsa_key().sign(&claims(ISSUER, json!({})))))]);
    assert!(authenticate(&authn, &mut req).await.unwrap().is_some());
    // The issuer routes the token: an RSA-signed token claiming the EC issuer finds no key.
    let mut req = request("/", &[("authorization", &bearer(&rsa_key().sign(&claims(other, json!({})))))]);
    let reply = authenticate(&authn, &mut req).await.unwrap_err();
    assert_eq!(reply.body, "Jwks doesn't have key to match kid or alg from Jwt");
}

fn remote_rule(timeout: &str) -> (Authenticator, Arc<RemoteJwks>) {
    let r = JwtRule {
        issuer: ISSUER.into(),
        jwks_uri: "https://issuer.example.com/jwks".into(),
        timeout: Some(timeout.into()),
        ..Default::default()
    };
    let authn = build(vec![r]);
    let sets = authn.remote_key_sets();
    assert_eq!(sets.len(), 1);
    let set = sets[0].clone();
    (authn, set)
}

/// A fetcher as the gateway runs it: fetch at once, then on every request for a refetch, serving
/// the documents of `docs` in turn (`None`: a failed fetch).
fn spawn_fetcher(set: Arc<RemoteJwks>, docs: Vec<Option<String>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for (i, doc) in docs.into_iter().enumerate() {
            if i > 0 {
                set.refetch_wanted().await;
            }
            if let Some(doc) = doc {
                set.install(&doc).unwrap();
            }
            set.fetch_done();
        }
    })
}

#[tokio::test]
async fn an_unknown_kid_triggers_a_refetch_and_passes_with_the_new_keys() {
    let (authn, set) = remote_rule("5s");
    let fetcher = spawn_fetcher(set.clone(), vec![Some(jwks(&[rsa_key()])), Some(jwks(&[rotated_rsa_key()]))]);
    let token = rsa_key().sign(&claims(ISSUER, json!({})));
    let mut req = request("/", &[("authorization", &bearer(&token))]);
    assert!(authenticate(&authn, &mut req).await.unwrap().is_some(), "initial fetch");
    assert!(set.has_keys());
    // The issuer rotated its key; the refetch interval has not passed yet, so pretend it has.
    tokio::time::sleep(Duration::from_millis(10)).await;
    set.expire_refetch_limit_for_tests();
    let token = rotated_rsa_key().sign(&claims(ISSUER, json!({})));
    let mut req = request("/", &[("authorization", &bearer(&token))]);
    assert!(authenticate(&authn, &mut req).await.unwrap().is_some(), "after refetch");
    fetcher.await.unwrap();
}

#[tokio::test]
async fn an_unknown_kid_is_refused_without_waiting_while_refetches_are_rate_limited() {
    let (authn, set) = remote_rule("5s");
    let fetcher = spawn_fetcher(set.clone(), vec![Some(jwks(&[rsa_key()]))]);
    let token = rotated_rsa_key().sign(&claims(ISSUER, json!({})));
    let mut req = request("/", &[("authorization", &bearer(&token))]);
    let started = std::time::Instant::now();
    let reply = authenticate(&authn, &mut req).await.unwrap_err();
    assert_eq!(reply.body, "Jwks doesn't have key to match kid or alg from Jwt");
    fetcher.await.unwrap();
    // The initial fetch is done and the last request is recent: no wait, no new fetch.
    let reply = authenticate(&authn, &mut req).await.unwrap_err();
    assert_eq!(reply.body, "Jwks doesn't have key to match kid or alg from Jwt");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_key_set_never_fetched_refuses_tokens_with_fetch_failed() {
    let (authn, set) = remote_rule("200ms");
    let fetcher = spawn_fetcher(set.clone(), vec![None]);
    let token = rsa_key().sign(&claims(ISSUER, json!({})));
    let mut req = request("/", &[("authorization", &bearer(&token))]);
    let reply = authenticate(&authn, &mut req).await.unwrap_err();
    assert_eq!((reply.status, reply.body.as_str()), (401, "Jwks remote fetch is failed"));
    fetcher.await.unwrap();
    assert!(!set.has_keys());
    assert!(set.install("{\"keys\":[]}").is_err());
}

#[tokio::test]
async fn a_request_waits_at_most_the_timeout_for_a_fetcher_that_never_answers() {
    let (authn, _set) = remote_rule("100ms");
    let token = rsa_key().sign(&claims(ISSUER, json!({})));
    let mut req = request("/", &[("authorization", &bearer(&token))]);
    let started = std::time::Instant::now();
    let reply = authenticate(&authn, &mut req).await.unwrap_err();
    assert_eq!(reply.body, "Jwks remote fetch is failed");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn rules_that_cannot_be_enforced_reject_the_configuration() {
    let bad = |r: JwtRule| try_build(vec![r]).err().expect("build error").to_string();
    assert!(bad(rule(ISSUER, "{not json".into())).contains("jwks"));
    assert!(bad(rule(ISSUER, r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#.into())).contains("no usable key"));
    let uri = |u: &str| JwtRule { issuer: ISSUER.into(), jwks_uri: u.into(), ..Default::default() };
    assert!(bad(uri("ftp://keys.example.com/jwks")).contains("jwksUri"));
    assert!(bad(JwtRule { timeout: Some("soon".into()), ..uri("https://k.example.com/") }).contains("timeout"));
    assert!(bad(JwtRule { issuer: ISSUER.into(), ..Default::default() }).contains("jwksUri"));
    assert!(bad(rule("", jwks(&[rsa_key()]))).contains("issuer"));
    assert!(try_build(Vec::new()).unwrap().is_none());
    assert!(try_build(vec![uri("http://127.0.0.1:8080/jwks")]).is_ok());
}

#[test]
fn rules_sharing_a_jwks_uri_share_one_fetch() {
    let uri = |iss: &str, t: &str| JwtRule {
        issuer: iss.into(),
        jwks_uri: "https://keys.example.com/jwks".into(),
        timeout: Some(t.into()),
        ..Default::default()
    };
    let authn = build(vec![uri("a", "1s"), uri("b", "3s")]);
    let sets = authn.remote_key_sets();
    assert_eq!(sets.len(), 1);
    assert_eq!(sets[0].timeout, Duration::from_secs(3));
}

#[test]
fn authentication_can_run_on_any_worker_thread() {
    fn send<T: Send>(_: T) {}
    let authn = build(vec![rule(ISSUER, jwks(&[rsa_key()]))]);
    let mut req = request("/", &[]);
    send(authn.authenticate(&mut req, now()));
    fn shared<T: Send + Sync>() {}
    shared::<Authenticator>();
}

#[tokio::test]
async fn output_headers_a_client_sends_are_removed_even_without_a_token() {
    let mut r = rule(ISSUER, jwks(&[rsa_key()]));
    r.output_payload_to_header = "x-jwt-payload".into();
    r.output_claim_to_headers = vec![ClaimToHeader { header: "x-sub".into(), claim: "sub".into() }];
    let authn = build(vec![r]);
    let mut req = request("/", &[("x-sub", "admin"), ("x-jwt-payload", "e30")]);
    assert!(authenticate(&authn, &mut req).await.unwrap().is_none());
    assert_eq!((header(&req, "x-sub"), header(&req, "x-jwt-payload")), (None, None));
}

#[tokio::test]
async fn a_bad_token_next_to_a_valid_one_is_refused() {
    let authn = build(vec![rule(ISSUER, jwks(&[rsa_key()]))]);
    let token = rsa_key().sign(&claims(ISSUER, json!({})));
    let auth = bearer(&token);
    let mut req = request("/?access_token=garbage", &[("authorization", auth.as_str())]);
    let refused = authenticate(&authn, &mut req).await.unwrap_err();
    assert_eq!(refused.status, 401, "{refused:?}");
}

#[tokio::test]
async fn a_reloaded_key_set_starts_with_the_keys_of_the_one_it_replaces() {
    let (_, old) = remote_rule("5s");
    old.install(&jwks(&[rsa_key()])).unwrap();
    let (authn, new) = remote_rule("5s");
    new.adopt(&old);
    // No fetcher runs: without the adopted keys the request would wait 5 s, then fail.
    let token = rsa_key().sign(&claims(ISSUER, json!({})));
    let mut req = request("/", &[("authorization", &bearer(&token))]);
    let started = std::time::Instant::now();
    assert!(authenticate(&authn, &mut req).await.unwrap().is_some());
    assert!(started.elapsed() < Duration::from_secs(1), "verified at once with the adopted keys");
}
