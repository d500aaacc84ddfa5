//! Authentication: Istio `RequestAuthentication` at the gateway (Envoy's `jwt_authn` as Istio
//! configures it), each test named after the behaviour of Istio's reference
//! (istio.io/latest/docs/reference/config/security/request_authentication/ and .../jwt/) it shows,
//! with tokens signed at test time and key sets inline or fetched over HTTPS from the test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::time::{Duration, Instant};

use e2e::client::{get, http1, Reply};
use e2e::jwks::{jwks, now, trust, JwksServer, SigningKey};
use e2e::yaml::{gateway, service, virtual_service};
use e2e::{TestGateway, Upstream};
use serde_json::{json, Value};

const ISSUER: &str = "https://issuer.test";

/// The RSA key most tests sign with (RSA generation is the slow part, so it is made once).
fn rsa() -> &'static SigningKey {
    static KEY: std::sync::OnceLock<SigningKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| SigningKey::rsa("rsa-1"))
}

/// Claims of a token of [`ISSUER`] for `sub`, valid for an hour, with `extra` merged in.
fn claims(sub: &str, extra: Value) -> Value {
    let mut c = json!({"iss": ISSUER, "sub": sub, "iat": now(), "exp": now() + 3600});
    if let (Some(c), Value::Object(extra)) = (c.as_object_mut(), extra) {
        c.extend(extra);
    }
    c
}

/// A token of `sub` signed with [`rsa`].
fn token(sub: &str, extra: Value) -> String {
    rsa().sign(&claims(sub, extra))
}

/// A gateway on port 80 routing every host to `up`, plus `policies`.
fn serving(up: &Upstream, policies: &str) -> String {
    gateway(80, &["*"])
        + &service("app", "app.internal", &[up])
        + &virtual_service("vs", &["*"], "- route: [{destination: {host: app.internal}}]")
        + policies
}

/// A RequestAuthentication `name` selecting the gateway, with `rules` (YAML list items).
fn request_authentication(name: &str, rules: &[String]) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: {name}}}\nspec:\n  selector: {{matchLabels: {{istio: ingressgateway}}}}\n  jwtRules:\n{}\n---\n",
        rules.iter().map(|r| format!("  {r}")).collect::<Vec<_>>().join("\n")
    )
}

/// A jwtRule of [`ISSUER`] with `keys` inline and `extra` fields (YAML flow, may be empty).
fn inline_rule(keys: &[&SigningKey], extra: &str) -> String {
    let set = serde_json::to_string(&jwks(keys)).unwrap();
    let sep = if extra.is_empty() { "" } else { ", " };
    format!("- {{issuer: \"{ISSUER}\", jwks: {set}{sep}{extra}}}")
}

/// An AuthorizationPolicy `name` selecting the gateway, with `spec` lines.
fn authorization(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}}}\nspec:\n  selector: {{matchLabels: {{istio: ingressgateway}}}}\n{}\n---\n",
        spec.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
    )
}

/// A gateway serving `up` with one RequestAuthentication of `rules` and `more` policies.
fn authenticating(up: &Upstream, rules: &[String], more: &str) -> TestGateway {
    // Before any gateway of this binary starts: `SSL_CERT_FILE` is set while nothing reads it.
    trust();
    TestGateway::start(&serving(up, &(request_authentication("jwt", rules) + more)))
}

/// GET `path` with `headers`.
async fn send(gw: &TestGateway, path: &str, headers: &[(&str, &str)]) -> Reply {
    get(&http1(), &gw.url(80), "", path, headers).await
}

/// GET `path` with `Authorization: Bearer <token>`.
async fn bearer(gw: &TestGateway, path: &str, token: &str) -> Reply {
    send(gw, path, &[("authorization", &format!("Bearer {token}"))]).await
}

/// Asserts `reply` is Envoy's denial `status` with `body` and a Bearer challenge.
fn assert_refused(reply: &Reply, status: u16, body: &str) {
    assert_eq!((reply.status, reply.body.as_str()), (status, body), "{reply:?}");
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Bearer realm="), "www-authenticate: {challenge:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_rs256_and_es256_tokens_pass_and_the_token_is_not_forwarded() {
    let up = Upstream::start("app").await;
    let ec = SigningKey::ec("ec-1");
    let gw = authenticating(&up, &[inline_rule(&[rsa(), &ec], "")], "");
    for t in [token("alice", json!({})), ec.sign(&claims("alice", json!({})))] {
        let reply = bearer(&gw, "/", &t).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(up.last().header("authorization"), None, "the verified token is removed by default");
    }
    assert_eq!(up.seen().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_original_token_keeps_the_authorization_header() {
    let up = Upstream::start("app").await;
    let gw = authenticating(&up, &[inline_rule(&[rsa()], "forwardOriginalToken: true")], "");
    let t = token("alice", json!({}));
    assert_eq!(bearer(&gw, "/", &t).await.status, 200);
    assert_eq!(up.last().header("authorization"), Some(format!("Bearer {t}").as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused_with_a_bearer_challenge_after_sixty_seconds_of_skew() {
    let up = Upstream::start("app").await;
    let gw = authenticating(&up, &[inline_rule(&[rsa()], "")], "");
    let expired = token("alice", json!({"iat": now() - 7200, "exp": now() - 120}));
    let reply = bearer(&gw, "/orders?page=2", &expired).await;
    assert_refused(&reply, 401, "Jwt is expired");
    let realm = format!("Bearer realm=\"http://{}/orders?page=2\"", gw.addr(80));
    assert!(reply.header("www-authenticate").unwrap().starts_with(&realm), "{reply:?}");
    let within_skew = token("alice", json!({"exp": now() - 20}));
    assert_eq!(bearer(&gw, "/", &within_skew).await.status, 200, "Envoy allows 60 s of clock skew");
    assert_eq!(up.seen().len(), 1, "the refused request never reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_not_valid_yet_is_refused_beyond_sixty_seconds_of_skew() {
    let up = Upstream::start("app").await;
    let gw = authenticating(&up, &[inline_rule(&[rsa()], "")], "");
    let early = token("alice", json!({"nbf": now() + 300}));
    assert_refused(&bearer(&gw, "/", &early).await, 401, "Jwt not yet valid");
    let within_skew = token("alice", json!({"nbf": now() + 20}));
    assert_eq!(bearer(&gw, "/", &within_skew).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_of_an_unconfigured_issuer_is_unauthorized() {
    let up = Upstream::start("app").await;
    let gw = authenticating(&up, &[inline_rule(&[rsa()], "")], "");
    let other = token("alice", json!({"iss": "https://other.test"}));
    assert_refused(&bearer(&gw, "/", &other).await, 401, "Jwt issuer is not configured");
    assert!(up.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_another_audience_is_forbidden() {
    let up = Upstream::start("app").await;
    let gw = authenticating(&up, &[inline_rule(&[rsa()], "audiences: [api.example.com]")], "");
    let other = token("alice", json!({"aud": "web.example.com"}));
    assert_refused(&bearer(&gw, "/", &other).await, 403, "Audiences in Jwt are not allowed");
    // Envoy compares audiences without the scheme and a trailing slash.
    let ours = token("alice", json!({"aud": ["web.example.com", "https://api.example.com/"]}));
    assert_eq!(bearer(&gw, "/", &ours).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_whose_key_or_signature_does_not_match_is_unauthorized() {
    let up = Upstream::start("app").await;
    let gw = authenticating(&up, &[inline_rule(&[rsa()], "")], "");
    let stranger = SigningKey::ec("unknown");
    let unknown_kid = stranger.sign(&claims("alice", json!({})));
    assert_refused(&bearer(&gw, "/", &unknown_kid).await, 401, "Jwks doesn't have key to match kid or alg from Jwt");
    // A payload swapped under a valid signature.
    let good = token("alice", json!({}));
    let forged_payload = token("root", json!({})).split('.').nth(1).unwrap().to_string();
    let parts: Vec<&str> = good.split('.').collect();
    let forged = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    assert_refused(&bearer(&gw, "/", &forged).await, 401, "Jwt verification fails");
    assert!(up.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_token_in_the_request_must_verify_not_just_one() {
    // Envoy's authenticator: "If a request has multiple tokens, all of them must be valid",
    // else the upstream could mistake the bad one for the verified one.
    let up = Upstream::start("app").await;
    let gw = authenticating(&up, &[inline_rule(&[rsa()], "")], "");
    let good = format!("Bearer {}", token("alice", json!({})));
    let expired = token("mallory", json!({"exp": now() - 120}));
    let reply = send(&gw, &format!("/?access_token={expired}"), &[("authorization", &good)]).await;
    assert_refused(&reply, 401, "Jwt is expired");
    assert!(up.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_a_token_passes_unless_authorization_requires_a_principal() {
    let up = Upstream::start("app").await;
    let rules = [inline_rule(&[rsa()], "")];
    let gw = authenticating(&up, &rules, "");
    assert_eq!(send(&gw, "/", &[]).await.status, 200, "no token: authentication alone lets it through");
    let require =
        authorization("require-jwt", "action: ALLOW\nrules:\n- from: [{source: {requestPrincipals: [\"*\"]}}]");
    let gw = authenticating(&up, &rules, &require);
    let anonymous = send(&gw, "/", &[]).await;
    assert_eq!((anonymous.status, anonymous.body.as_str()), (403, "RBAC: access denied"));
    assert_eq!(bearer(&gw, "/", &token("alice", json!({}))).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_the_access_token_query_parameter_is_read_by_default() {
    let up = Upstream::start("app").await;
    let gw = authenticating(&up, &[inline_rule(&[rsa()], "")], "");
    let t = token("alice", json!({}));
    assert_eq!(send(&gw, &format!("/q?access_token={t}"), &[]).await.status, 200);
    assert_eq!(up.last().path, format!("/q?access_token={t}"), "Envoy leaves a query token in place");
    let reply = send(&gw, "/q?access_token=not-a-token", &[]).await;
    assert_refused(&reply, 401, "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_header_and_cookie_locations_replace_the_default_ones() {
    let up = Upstream::start("app").await;
    let custom = "fromHeaders: [{name: x-jwt, prefix: \"Bearer \"}], fromCookies: [session]";
    let gw = authenticating(&up, &[inline_rule(&[rsa()], custom)], "");
    let t = token("alice", json!({}));
    assert_eq!(send(&gw, "/", &[("x-jwt", &format!("Bearer {t}"))]).await.status, 200);
    assert_eq!(up.last().header("x-jwt"), None, "a header token is removed");
    assert_eq!(send(&gw, "/", &[("cookie", &format!("theme=dark; session={t}"))]).await.status, 200);
    assert!(up.last().header("cookie").is_some_and(|c| c.contains("session=")), "Envoy leaves cookies alone");
    let garbage = send(&gw, "/", &[("x-jwt", "Bearer garbage")]).await;
    assert_refused(&garbage, 401, "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections");
    // The default locations are no longer read: what is there is not a token, so the request is
    // anonymous (and passes, no policy requiring a principal).
    assert_eq!(send(&gw, "/", &[("authorization", "Bearer garbage")]).await.status, 200);
    assert_eq!(up.last().header("authorization"), Some("Bearer garbage"), "not a token location: left alone");
    assert_eq!(send(&gw, "/?access_token=garbage", &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_and_the_payload_are_copied_to_headers_over_client_values() {
    let up = Upstream::start("app").await;
    let outputs = "outputPayloadToHeader: x-jwt-payload, outputClaimToHeaders: [{header: x-sub, claim: sub}, \
                   {header: x-team, claim: org.team}, {header: x-level, claim: level}, {header: x-absent, claim: nope}]";
    let gw = authenticating(&up, &[inline_rule(&[rsa()], outputs)], "");
    let t = token("alice", json!({"org": {"team": "payments"}, "level": 3}));
    let auth = format!("Bearer {t}");
    let spoofed = [
        ("x-sub", "mallory"),
        ("x-team", "root"),
        ("x-absent", "spoofed"),
        ("x-jwt-payload", "spoofed"),
        ("authorization", auth.as_str()),
    ];
    assert_eq!(send(&gw, "/", &spoofed).await.status, 200);
    let seen = up.last();
    assert_eq!(seen.header("x-sub"), Some("alice"));
    assert_eq!(seen.header("x-team"), Some("payments"), "a nested claim a.b");
    assert_eq!(seen.header("x-level"), Some("3"));
    assert_eq!(seen.header("x-absent"), None, "a claim the token lacks removes the client's header");
    assert_eq!(seen.header("x-jwt-payload"), t.split('.').nth(1), "the payload segment as received");
    assert_eq!(seen.headers.iter().filter(|(k, _)| k == "x-sub").count(), 1, "replaced, not appended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_headers_sent_without_a_token_are_removed() {
    // Envoy sanitizes every provider's `claim_to_headers` and `forward_payload_header` names before
    // looking for a token (`ProviderVerifierImpl::verify` calls `sanitizeHeaders`), so with Istio
    // an anonymous client cannot pass its own value off as a verified claim (istio/istio#53212).
    let up = Upstream::start("app").await;
    let outputs = "outputPayloadToHeader: x-jwt-payload, outputClaimToHeaders: [{header: x-sub, claim: sub}]";
    let gw = authenticating(&up, &[inline_rule(&[rsa()], outputs)], "");
    assert_eq!(send(&gw, "/", &[("x-sub", "admin"), ("x-jwt-payload", "e30")]).await.status, 200);
    let seen = up.last();
    assert_eq!((seen.header("x-sub"), seen.header("x-jwt-payload")), (None, None), "{:?}", seen.headers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matches_the_claims_principal_and_audiences_of_the_token() {
    let up = Upstream::start("app").await;
    let allow = authorization(
        "by-claims",
        "action: ALLOW\nrules:\n\
         - to: [{operation: {paths: [/admin]}}]\n  when: [{key: \"request.auth.claims[groups]\", values: [admin]}]\n\
         - to: [{operation: {paths: [/team]}}]\n  when: [{key: \"request.auth.claims[org][team]\", values: [payments]}]\n\
         - to: [{operation: {paths: [/alice]}}]\n  from: [{source: {requestPrincipals: [\"https://issuer.test/alice\"]}}]\n\
         - to: [{operation: {paths: [/api]}}]\n  when: [{key: request.auth.audiences, values: [api.example.com]}]",
    );
    let gw = authenticating(&up, &[inline_rule(&[rsa()], "")], &allow);
    let alice =
        token("alice", json!({"groups": ["dev", "admin"], "org": {"team": "payments"}, "aud": "api.example.com"}));
    let bob = token("bob", json!({"groups": ["dev"], "org": {"team": "web"}, "aud": ["web.example.com"]}));
    for path in ["/admin", "/team", "/alice", "/api"] {
        assert_eq!(bearer(&gw, path, &alice).await.status, 200, "alice {path}");
        let denied = bearer(&gw, path, &bob).await;
        assert_eq!((denied.status, denied.body.as_str()), (403, "RBAC: access denied"), "bob {path}");
        assert_eq!(send(&gw, path, &[]).await.status, 403, "anonymous {path}");
    }
}

/// A jwtRule of `issuer` whose keys are fetched from `uri`.
fn remote_rule(issuer: &str, uri: &str) -> String {
    format!("- {{issuer: \"{issuer}\", jwksUri: \"{uri}\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_set_fetched_over_https_verifies_tokens() {
    let up = Upstream::start("app").await;
    let server = JwksServer::start(&jwks(&[rsa()])).await;
    let gw = authenticating(&up, &[remote_rule(ISSUER, &server.uri())], "");
    let reply = bearer(&gw, "/", &token("alice", json!({}))).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(up.last().header("authorization"), None);
    assert_eq!(server.fetches(), 1, "fetched once, when the configuration was loaded");
}

/// istiod fetches `jwksUri` with Go's TLS client, which checks an IP-literal host against the
/// certificate's IP SANs; a key set at `https://<ip>` verifies against them too.
#[test]
fn an_https_key_set_at_an_ip_address_is_refused_as_unverifiable() {
    // Pingora's connector checks a certificate against a host name only; Pylon refuses rather
    // than fetch keys it cannot authenticate (README, "Deliberate differences from Istio").
    let yaml = "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: jwt}\nspec:\n  jwtRules: [{issuer: i, jwksUri: \"https://127.0.0.1:8443/jwks.json\"}]\n";
    let built = conf::build_str("c.yaml", yaml, &conf::Selection::default());
    assert!(
        built.diagnostics.to_string().contains("an https key set at an IP address cannot be verified"),
        "{}",
        built.diagnostics
    );
    assert!(!built.is_valid());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_set_server_that_is_not_trusted_or_not_named_in_its_certificate_is_not_used() {
    use e2e::certs::{Ca, Leaf};
    let up = Upstream::start("app").await;
    let untrusted = Ca::new("Untrusted CA").issue(&Leaf::server(&["localhost"]));
    let misnamed = trust().ca.issue(&Leaf::server(&["jwks.other.test"]));
    let (a, b) = (
        JwksServer::start_with(&jwks(&[rsa()]), &untrusted).await,
        JwksServer::start_with(&jwks(&[rsa()]), &misnamed).await,
    );
    let second = "https://second.test";
    let gw = authenticating(&up, &[remote_rule(ISSUER, &a.uri()), remote_rule(second, &b.uri())], "");
    for t in [token("alice", json!({})), token("alice", json!({"iss": second}))] {
        assert_refused(&bearer(&gw, "/", &t).await, 401, "Jwks remote fetch is failed");
    }
    assert_eq!((a.fetches(), b.fetches()), (0, 0), "the handshakes failed: nothing was fetched");
    assert!(up.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_signed_with_a_new_key_makes_the_gateway_refetch_the_key_set() {
    let up = Upstream::start("app").await;
    let b = SigningKey::rsa("b");
    let server = JwksServer::start(&jwks(&[rsa()])).await;
    let gw = authenticating(&up, &[remote_rule(ISSUER, &server.uri())], "");
    let loaded = Instant::now();
    assert_eq!(bearer(&gw, "/", &token("alice", json!({}))).await.status, 200);
    assert_eq!(server.fetches(), 1);
    // The issuer rotates: it now publishes key "b" too, and signs with it.
    server.serve(&jwks(&[rsa(), &b]));
    let signed_by_b = b.sign(&claims("alice", json!({})));
    // Within 10 s of the last fetch an unknown kid does not refetch (so made-up kids cannot make
    // the gateway hammer the issuer) and, no fetch being in flight, is refused at once.
    let early = bearer(&gw, "/", &signed_by_b).await;
    assert_refused(&early, 401, "Jwks doesn't have key to match kid or alg from Jwt");
    assert_eq!(server.fetches(), 1, "rate-limited: no refetch");
    // Later, the unknown kid asks for a refetch; the request waits for it and passes.
    tokio::time::sleep_until((loaded + Duration::from_millis(10_300)).into()).await;
    let reply = bearer(&gw, "/", &signed_by_b).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(server.fetches(), 2, "exactly one refetch");
    assert_eq!(bearer(&gw, "/", &signed_by_b).await.status, 200);
    assert_eq!(server.fetches(), 2, "the new key is kept");
}
