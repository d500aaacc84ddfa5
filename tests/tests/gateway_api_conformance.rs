//! The Kubernetes Gateway API conformance tests (kubernetes-sigs/gateway-api `conformance/tests/`,
//! v1.6.1), each ported with its manifests and expectations (`tests/fixtures/gateway-api`) and named
//! after the test it ports: the HTTPRoute tests of the core and extended HTTP profile.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use e2e::certs::{Ca, Leaf};
use e2e::conformance::{Conformance, INFRA};
use e2e::tls::{Client, TlsUpstream};

/// Runs conformance test `name`: its status assertions, then every request case.
async fn conformance(name: &str) {
    let mut t = Conformance::load(name).await;
    // The suite checks the status first, then sends the requests.
    t.check_status();
    t.run_cases().await;
    println!("{name}: {} cases checked", t.checked);
    assert!(t.failures.is_empty(), "{name}: {} failures:\n{}", t.failures.len(), t.failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_simple_same_namespace() {
    conformance("HTTPRouteSimpleSameNamespace").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_matching() {
    conformance("HTTPRouteMatching").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_matching_across_routes() {
    conformance("HTTPRouteMatchingAcrossRoutes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_header_matching() {
    conformance("HTTPRouteHeaderMatching").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_query_param_matching() {
    conformance("HTTPRouteQueryParamMatching").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_method_matching() {
    conformance("HTTPRouteMethodMatching").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_hostname_intersection() {
    conformance("HTTPRouteHostnameIntersection").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_listener_hostname_matching() {
    conformance("HTTPRouteListenerHostnameMatching").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_cross_namespace() {
    conformance("HTTPRouteCrossNamespace").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_reference_grant() {
    conformance("HTTPRouteReferenceGrant").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_invalid_cross_namespace_backend_ref() {
    conformance("HTTPRouteInvalidCrossNamespaceBackendRef").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_request_header_modifier() {
    conformance("HTTPRouteRequestHeaderModifier").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_response_header_modifier() {
    conformance("HTTPRouteResponseHeaderModifier").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_redirect_host_and_status() {
    conformance("HTTPRouteRedirectHostAndStatus").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_redirect_path() {
    conformance("HTTPRouteRedirectPath").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_redirect_port() {
    conformance("HTTPRouteRedirectPort").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_redirect_scheme() {
    conformance("HTTPRouteRedirectScheme").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_redirect_port_and_scheme() {
    conformance("HTTPRouteRedirectPortAndScheme").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_rewrite_path() {
    conformance("HTTPRouteRewritePath").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_rewrite_host() {
    conformance("HTTPRouteRewriteHost").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_exact_path_matching() {
    conformance("HTTPRouteExactPathMatching").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_path_match_order() {
    conformance("HTTPRoutePathMatchOrder").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_invalid_backend_ref_unknown_kind() {
    conformance("HTTPRouteInvalidBackendRefUnknownKind").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_invalid_non_existent_backend_ref() {
    conformance("HTTPRouteInvalidNonExistentBackendRef").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_invalid_parent_ref_not_matching_listener_port() {
    conformance("HTTPRouteInvalidParentRefNotMatchingListenerPort").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_invalid_parent_ref_not_matching_section_name() {
    conformance("HTTPRouteInvalidParentRefNotMatchingSectionName").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_invalid_parent_ref_section_name_not_matching_port() {
    conformance("HTTPRouteInvalidParentRefSectionNameNotMatchingPort").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_invalid_cross_namespace_parent_ref() {
    conformance("HTTPRouteInvalidCrossNamespaceParentRef").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_secret_reference_grant_all_in_namespace() {
    conformance("GatewaySecretReferenceGrantAllInNamespace").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_secret_reference_grant_specific() {
    conformance("GatewaySecretReferenceGrantSpecific").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_secret_invalid_reference_grant() {
    conformance("GatewaySecretInvalidReferenceGrant").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_secret_missing_reference_grant() {
    conformance("GatewaySecretMissingReferenceGrant").await;
}

/// HTTPRouteWeight: backends weighted 70/30/0 share 500 requests within 5 points of their weight,
/// and the zero-weight backend gets none. As in the conformance suite
/// (`conformance/utils/weight/weight.go`, `MaxTestRetries = 10`), a batch outside the tolerance is
/// sent again, up to 10 batches: one batch of 500 lands 5 points off 70% about once in 60 runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_weight() {
    conformance("HTTPRouteWeight").await;
    let mut t = Conformance::load("HTTPRouteWeight").await;
    let mut batches = Vec::new();
    for _ in 0..10 {
        let counts = t.distribution("same-namespace", 500).await;
        let share = |b: &str| counts.get(b).copied().unwrap_or(0) as f64 / 500.0;
        println!("HTTPRouteWeight: {counts:?}");
        assert_eq!(share("infra-backend-v3"), 0.0, "{counts:?}");
        let within = (share("infra-backend-v1") - 0.7).abs() <= 0.05 && (share("infra-backend-v2") - 0.3).abs() <= 0.05;
        batches.push(counts);
        if within {
            return;
        }
    }
    panic!("no batch of 500 within 5 points of 70/30: {batches:?}");
}

/// TLSRouteSimpleSameNamespace: a TLSRoute on a Passthrough listener takes the connections whose
/// SNI it names to its backend, the TLS untouched (the backend's certificate answers). The
/// suite's backend speaks a line protocol over TLS; here it speaks HTTP over TLS, which tells the
/// same thing: which backend completed the handshake and answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_route_simple_same_namespace() {
    let ca = Ca::new("tls-passthrough-checks");
    let backend = TlsUpstream::start("tcp-backend", &ca.issue(&Leaf::server(&["abc.example.com"]))).await;
    let mut t = Conformance::load("TLSRouteSimpleSameNamespace").await;
    t.yaml += &format!(
        "\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: tcp-backend, namespace: {INFRA}}}\nspec:\n  ports: [{{name: echo-tcp-tls, port: 8443}}]\n---\napiVersion: v1\nkind: Endpoints\nmetadata: {{name: tcp-backend, namespace: {INFRA}}}\nsubsets: [{{addresses: [{{ip: 127.0.0.1}}], ports: [{{name: echo-tcp-tls, port: {}}}]}}]\n",
        backend.addr.port()
    );
    t.check_status();
    assert!(t.failures.is_empty(), "{}", t.failures.join("\n"));
    let addr = t.gateway("gateway-tlsroute").addr(443);
    let r = Client::to("abc.example.com", &ca.cert).get(addr, "abc.example.com", "/", &[]).await.unwrap();
    assert_eq!((r.status, r.upstream()), (200, Some("tcp-backend")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_backend_request_header_modifier() {
    conformance("HTTPRouteBackendRequestHeaderModifier").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_request_mirror() {
    conformance("HTTPRouteRequestMirror").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_request_multiple_mirrors() {
    conformance("HTTPRouteRequestMultipleMirrors").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_timeout_request() {
    conformance("HTTPRouteTimeoutRequest").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_timeout_backend_request() {
    conformance("HTTPRouteTimeoutBackendRequest").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_listener_port_matching() {
    conformance("HTTPRouteListenerPortMatching").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_named_rule() {
    conformance("HTTPRouteNamedRule").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_disallowed_kind() {
    conformance("HTTPRouteDisallowedKind").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_invalid_reference_grant() {
    conformance("HTTPRouteInvalidReferenceGrant").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_partially_invalid_via_invalid_reference_grant() {
    conformance("HTTPRoutePartiallyInvalidViaInvalidReferenceGrant").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_https_listener() {
    conformance("HTTPRouteHTTPSListener").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_303_redirect() {
    conformance("HTTPRoute303Redirect").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_307_redirect() {
    conformance("HTTPRoute307Redirect").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_308_redirect() {
    conformance("HTTPRoute308Redirect").await;
}
