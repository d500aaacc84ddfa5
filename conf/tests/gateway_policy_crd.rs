//! The GatewayPolicy CRD (`deploy/kubernetes/gatewaypolicy-crd.yaml`) and Pylon's own schema
//! name the same fields: a policy using every field the CRD lists loads without an unknown field,
//! and a misspelled one is refused by both.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test harness fails by panicking

use serde_yaml::Value;

fn crd_spec() -> Value {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/kubernetes/gatewaypolicy-crd.yaml"))
            .unwrap();
    let crd: Value = serde_yaml::from_str(&text).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

fn names(v: &Value) -> Vec<String> {
    v["properties"]
        .as_mapping()
        .map(|m| m.keys().filter_map(|k| k.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

#[test]
fn the_crd_and_pylon_accept_the_same_fields() {
    let spec = crd_spec();
    assert_eq!(
        names(&spec),
        [
            "selector",
            "targetRefs",
            "rateLimit",
            "headers",
            "cache",
            "clientAddress",
            "authorization",
            "requestAuthentication",
            "upstreamBind"
        ]
    );
    assert_eq!(names(&spec["properties"]["upstreamBind"]), ["sourceAddress", "sourcePorts"]);
    assert_eq!(
        names(&spec["properties"]["cache"]),
        [
            "maxSize",
            "maxEntrySize",
            "defaultTtl",
            "staleWhileRevalidate",
            "staleIfError",
            "vary",
            "keyHeaders",
            "statusHeader",
            "lockTimeout"
        ]
    );
    assert_eq!(names(&spec["properties"]["clientAddress"]), ["numTrustedProxies", "trustedCidrs"]);
    assert_eq!(names(&spec["properties"]["headers"]), ["xForwardedFor", "forwarded", "requestId", "response"]);
    assert_eq!(names(&spec["properties"]["headers"]["properties"]["response"]), ["set", "remove"]);
    assert_eq!(names(&spec["properties"]["targetRefs"]["items"]), ["group", "kind", "name", "sectionName"]);
    assert_eq!(
        names(&spec["properties"]["rateLimit"]),
        ["requests", "unit", "burst", "key", "maxKeys", "responseHeaders"]
    );
    let yaml = "apiVersion: gateway.pylon.dev/v1alpha1\nkind: GatewayPolicy\nmetadata: {name: all}\nspec:\n  selector: {matchLabels: {istio: ingressgateway}}\n  targetRefs: [{group: networking.istio.io, kind: Gateway, name: gw, sectionName: http}]\n  rateLimit: {requests: 1, unit: second, burst: 2, key: client, maxKeys: 3, responseHeaders: true}\n  headers: {xForwardedFor: replace, forwarded: true, requestId: generate, response: {set: {server: edge}, remove: [x-envoy-upstream-service-time]}}\n  clientAddress: {numTrustedProxies: 1, trustedCidrs: [10.0.0.0/8]}\n  cache: {maxSize: 64Mi, maxEntrySize: 1Mi, defaultTtl: 60s, staleWhileRevalidate: 10s, staleIfError: 1h, vary: [accept-encoding], keyHeaders: [x-tenant], statusHeader: true, lockTimeout: 2s}\n";
    let built = conf::build_str("p.yaml", yaml, &conf::Selection::default());
    assert!(!built.diagnostics.to_string().contains("unknown field"), "{}", built.diagnostics);
    let misspelled = yaml.replace("maxKeys", "maxKey");
    let built = conf::build_str("p.yaml", &misspelled, &conf::Selection::default());
    assert!(built.diagnostics.to_string().contains("unknown field `maxKey`"), "{}", built.diagnostics);
}
