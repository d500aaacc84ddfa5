//! Istio's own validation test tables for the security kinds, one case per row, named after
//! Istio's test and row (istio/istio at 86c9f01fd735fb01d8192f5bcaf0d424afb7f14c:
//! `pkg/config/validation/validation_test.go` `TestValidateAuthorizationPolicy`,
//! `TestValidateRequestAuthentication`; `pkg/config/security/security_test.go`
//! `TestValidateCondition`, `TestCheckValidPathTemplate`). `Refused` marks rows Istio accepts and
//! Pylon refuses on purpose (fail closed; the README lists them).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test harness fails by panicking

use conf::Severity;

#[derive(Debug, Clone, Copy)]
enum Want {
    Valid,
    /// Valid with a warning containing this.
    Warns(&'static str),
    /// An error containing this.
    Invalid(&'static str),
    /// Istio accepts it; Pylon refuses it with this (deliberately).
    Refused(&'static str),
}

fn check(kind: &str, case: &str, meta: &str, spec: &str, want: Want) {
    let yaml = format!(
        "apiVersion: security.istio.io/v1\nkind: {kind}\nmetadata: {{name: name, namespace: namespace{meta}}}\nspec:\n{}\n",
        spec.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
    );
    let built = conf::build_str("case.yaml", &yaml, &conf::Selection::default());
    let me = format!("{kind} namespace/name");
    let mine: Vec<_> =
        built.diagnostics.iter().filter(|d| d.code != conf::Code::Skipped && d.to_string().contains(&me)).collect();
    let errors: Vec<String> = mine.iter().filter(|d| d.severity == Severity::Error).map(|d| d.to_string()).collect();
    let warnings: Vec<String> =
        mine.iter().filter(|d| d.severity == Severity::Warning).map(|d| d.to_string()).collect();
    let has = |list: &[String], s: &str| list.iter().any(|e| e.contains(s));
    match want {
        Want::Valid => assert!(errors.is_empty() && warnings.is_empty(), "{case}: {errors:?} {warnings:?}"),
        Want::Warns(w) => assert!(errors.is_empty() && has(&warnings, w), "{case}: {errors:?} {warnings:?}"),
        Want::Invalid(e) | Want::Refused(e) => assert!(has(&errors, e), "{case}: want {e:?}, got {errors:?}"),
    }
}

const AUTHORIZATION_POLICY_ROWS: &[(&str, &str, &str, Want)] = &[
        ("good", "", "selector: {matchLabels: {app: httpbin, version: v1}}\nrules:\n- from: [{source: {principals: [sa1]}}, {source: {principals: [sa2]}}]\n  to: [{operation: {methods: [GET]}}, {operation: {methods: [POST]}}]\n  when:\n  - {key: source.ip, values: [1.2.3.4, 5.6.7.0/24]}\n  - {key: \"request.headers[:authority]\", values: [v1, v2]}", Want::Valid),
        ("good serviceAccounts", "", "rules:\n- from: [{source: {serviceAccounts: [ns1/sa1, ns2/sa2]}}, {source: {principals: [sa2]}}]", Want::Valid),
        ("serviceAccounts and namespaces", "", "rules:\n- from: [{source: {serviceAccounts: [ns1/sa1], namespaces: [ns]}}]", Want::Invalid("cannot set serviceAccounts with namespaces or principals")),
        ("custom-good", "", "action: CUSTOM\nprovider: {name: my-custom-authz}\nrules: [{}]", Want::Valid),
        ("custom-empty-provider", "", "action: CUSTOM\nprovider: {name: \"\"}\nrules: [{}]", Want::Invalid("`provider.name` must not be empty")),
        ("custom-nil-provider", "", "action: CUSTOM\nrules: [{}]", Want::Invalid("`provider.name` must not be empty")),
        ("custom-invalid-rule", "", "action: CUSTOM\nprovider: {name: my-custom-authz}\nrules:\n- from: [{source: {namespaces: [ns], principals: [p], requestPrincipals: [r]}}]\n  when: [{key: source.namespace, values: [ns]}, {key: \"request.auth.claims[a]\", values: [b]}]", Want::Invalid("is currently not supported with CUSTOM action")),
        ("provider-wrong-action", "", "action: ALLOW\nprovider: {name: \"\"}\nrules: [{}]", Want::Invalid("`provider` must not be with non CUSTOM action, found ALLOW")),
        ("allow-rules-nil", "", "action: ALLOW", Want::Valid),
        ("dry-run-valid-allow", ", annotations: {istio.io/dry-run: \"true\"}", "action: ALLOW", Want::Valid),
        ("dry-run-valid-deny", ", annotations: {istio.io/dry-run: \"false\"}", "action: DENY\nrules: [{}]", Want::Valid),
        ("dry-run-invalid-value", ", annotations: {istio.io/dry-run: foo}", "action: ALLOW", Want::Invalid("with invalid value (foo)")),
        ("dry-run-invalid-action-custom", ", annotations: {istio.io/dry-run: \"true\"}", "action: CUSTOM\nprovider: {name: p}\nrules: [{}]", Want::Invalid("currently only supports action ALLOW/DENY, found action CUSTOM")),
        ("dry-run-invalid-action-audit", ", annotations: {istio.io/dry-run: \"true\"}", "action: AUDIT", Want::Invalid("currently only supports action ALLOW/DENY, found action AUDIT")),
        ("deny-rules-nil", "", "action: DENY", Want::Invalid("DENY action without `rules` is meaningless")),
        ("selector-empty-value", "", "selector: {matchLabels: {app: \"\", version: v1}}", Want::Valid),
        ("selector-empty-key", "", "selector: {matchLabels: {\"\": v1}}", Want::Invalid("empty key is not supported in selector")),
        ("selector-empty-labels", "", "selector: {}", Want::Warns("workload selector specified without labels")),
        ("selector-wildcard-value", "", "selector: {matchLabels: {app: httpbin-*}}", Want::Invalid("wildcard is not supported in selector")),
        ("selector-wildcard-key", "", "selector: {matchLabels: {app-*: httpbin}}", Want::Invalid("wildcard is not supported in selector")),
        ("target-ref-good", "", "action: DENY\ntargetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: foo}\nrules:\n- from: [{source: {principals: [temp]}}]\n  to: [{operation: {ports: [\"8080\"], methods: [GET, DELETE]}}]", Want::Valid),
        ("target-refs-good", "", "action: DENY\ntargetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: foo}]\nrules:\n- from: [{source: {principals: [temp]}}]\n  to: [{operation: {ports: [\"8080\"], methods: [GET, DELETE]}}]", Want::Valid),
        ("target-refs-good-service", "", "action: DENY\ntargetRefs: [{group: \"\", kind: Service, name: foo}]\nrules:\n- from: [{source: {principals: [temp]}}]\n  to: [{operation: {ports: [\"8080\"], methods: [GET, DELETE]}}]", Want::Valid),
        ("target-ref-non-empty-namespace", "", "targetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: foo, namespace: bar}", Want::Invalid("cross namespace referencing is not supported")),
        ("target-ref-empty-name", "", "targetRef: {group: gateway.networking.k8s.io, kind: Gateway}", Want::Invalid("targetRef name must be set")),
        ("target-ref-wrong-group", "", "targetRef: {group: wrong-group, kind: Gateway, name: foo}", Want::Invalid("targetRef must be to one of")),
        ("target-ref-wrong-kind", "", "targetRef: {group: gateway.networking.k8s.io, kind: wrong-kind, name: foo}", Want::Invalid("targetRef must be to one of")),
        ("target-ref-and-selector-cannot-both-be-set", "", "selector: {matchLabels: {app: a}}\ntargetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: foo}", Want::Invalid("only one of targetRefs or workloadSelector can be set")),
        ("target-refs-and-selector-cannot-both-be-set", "", "selector: {matchLabels: {app: a}}\ntargetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: foo}]", Want::Invalid("only one of targetRefs or workloadSelector can be set")),
        ("from-empty", "", "rules:\n- from: []", Want::Invalid("`from` must not be empty, found at rule 0")),
        ("source-nil", "", "rules:\n- from: [{}]", Want::Invalid("`from.source` must not be nil, found at rule 0")),
        ("source-empty", "", "rules:\n- from: [{source: {}}]", Want::Invalid("`from.source` must not be empty, found at rule 0")),
        ("to-empty", "", "rules:\n- to: []", Want::Invalid("`to` must not be empty, found at rule 0")),
        ("operation-nil", "", "rules:\n- to: [{}]", Want::Invalid("`to.operation` must not be nil, found at rule 0")),
        ("operation-empty", "", "rules:\n- to: [{operation: {}}]", Want::Invalid("`to.operation` must not be empty, found at rule 0")),
        ("value-empty", "", "rules:\n- when: [{key: \"request.headers[:authority]\", values: [v1, \"\"]}]", Want::Invalid("empty value not allowed")),
        ("invalid ip and port in ipBlocks", "", "rules:\n- from: [{source: {ipBlocks: [1.2.3.4, ip1], notIpBlocks: [5.6.7.8, ip2]}}]\n  to: [{operation: {ports: [\"80\", port1], notPorts: [\"90\", port2]}}]", Want::Invalid("bad IP address (ip1)")),
        ("invalid ip and port in remoteIpBlocks", "", "rules:\n- from: [{source: {remoteIpBlocks: [1.2.3.4, ip1], notRemoteIpBlocks: [5.6.7.8, ip2]}}]\n  to: [{operation: {ports: [\"80\", port1], notPorts: [\"90\", port2]}}]", Want::Invalid("bad port (port1)")),
        ("condition-key-missing", "", "rules:\n- when: [{values: [v1, v2]}]", Want::Invalid("`key` must not be empty")),
        ("condition-key-empty", "", "rules:\n- when: [{key: \"\", values: [v1, v2]}]", Want::Invalid("`key` must not be empty")),
        ("condition-value-missing", "", "rules:\n- when: [{key: source.principal}]", Want::Invalid("at least one of `values` or `notValues` must be set for key source.principal")),
        ("condition-value-invalid", "", "rules:\n- when: [{key: source.ip, values: [a.b.c.d]}]", Want::Invalid("invalid `value` for `key` source.ip: bad IP address (a.b.c.d)")),
        ("condition-notValue-invalid", "", "rules:\n- when: [{key: source.ip, notValues: [a.b.c.d]}]", Want::Invalid("invalid `notValue` for `key` source.ip")),
        ("condition-unknown", "", "rules:\n- when: [{key: key1, values: [v1]}]", Want::Invalid("unknown attribute: key1")),
        ("L7DenyWithFrom", "", "action: DENY\nrules:\n- from: [{source: {requestPrincipals: [example.com/sub-1]}}]", Want::Warns("will deny all traffic to TCP ports")),
        ("L7DenyWithTo", "", "action: DENY\nrules:\n- to: [{operation: {methods: [GET, DELETE]}}]", Want::Warns("will deny all traffic to TCP ports")),
        ("L7DenyWithFromAndTo", "", "action: DENY\nrules:\n- from: [{source: {principals: [temp]}}]\n  to: [{operation: {methods: [GET, DELETE]}}]", Want::Warns("will deny all traffic to TCP ports")),
        ("L7DenyWithFromAndToWithPort", "", "action: DENY\nrules:\n- from: [{source: {principals: [temp]}}]\n  to: [{operation: {ports: [\"8080\"], methods: [GET, DELETE]}}]", Want::Valid),
];

#[test]
fn test_validate_authorization_policy() {
    for (case, meta, spec, want) in AUTHORIZATION_POLICY_ROWS {
        check("AuthorizationPolicy", case, meta, spec, *want);
    }
}

/// `TestValidateAuthorizationPolicy` rows `Principals-empty` ... `NotPaths-empty`.
#[test]
fn test_validate_authorization_policy_empty_values() {
    use Want::*;
    for field in [
        "principals",
        "notPrincipals",
        "requestPrincipals",
        "notRequestPrincipals",
        "namespaces",
        "notNamespaces",
        "ipBlocks",
        "notIpBlocks",
        "remoteIpBlocks",
        "notRemoteIpBlocks",
    ] {
        let value = if field.to_lowercase().contains("ip") { "1.2.3.4" } else { "p1" };
        check(
            "AuthorizationPolicy",
            field,
            "",
            &format!("rules:\n- from: [{{source: {{{field}: [{value}, \"\"]}}}}]"),
            Invalid("empty value not allowed"),
        );
    }
    for field in ["hosts", "notHosts", "ports", "notPorts", "methods", "notMethods", "paths", "notPaths"] {
        let value = if field.to_lowercase().contains("port") { "\"80\"" } else { "/p1" };
        check(
            "AuthorizationPolicy",
            field,
            "",
            &format!("rules:\n- to: [{{operation: {{{field}: [{value}, \"\"]}}}}]"),
            Invalid("empty value not allowed"),
        );
    }
    check(
        "AuthorizationPolicy",
        "ServiceAccounts-empty",
        "",
        "rules:\n- from: [{source: {serviceAccounts: [ns/sa, \"\"]}}]",
        Invalid("empty value not allowed"),
    );
}

const JWKS: &str = r#"{"keys":[{"kty":"RSA","e":"AQAB","n":"xAE7eB6qugXyCAG3yhh7pkDkT65pHymX-P7KfIupjf59vsdo91bSP9C8H07pSAGQO1MV_xFj9VswgsCg4R6otmg5PV2He95lZdHtOcU5DXIg_pbhLdKXbi66GlVeK6ABZOUW3WYtnNHD-91gVuoeJT_DwtGGcp4ignkgXfkiEm4sw-4sfb4qdt5oLbyVpmW6x9cfa7vs2WTfURiCrBoUqgBo_-4WTiULmmHSGZHOjzwa8WtrtOQGsAFjIbno85jp6MnGGGZPYZbDAa_b3y5u-YpW7ypZrvD8BgtKVjgtQgZhLAGezMt0ua3DRrWnKqTZ0BJ_EyxOGuHJrLsn00fnMQ"}]}"#;

#[test]
fn test_validate_request_authentication() {
    use Want::*;
    let good = "jwtRules:\n- {issuer: foo.com, jwksUri: \"https://foo.com/cert\"}";
    let rows: Vec<(&str, &str, String, Want)> = vec![
        ("empty spec", "", "{}".into(), Valid),
        ("another empty spec", "", "selector: {}".into(), Warns("workload selector specified without labels")),
        ("dry run annotation not supported", ", annotations: {istio.io/dry-run: \"true\"}", "{}".into(), Invalid("has unsupported annotation istio.io/dry-run")),
        ("default name with non empty selector", "", format!("selector: {{matchLabels: {{app: httpbin}}}}\n{good}"), Valid),
        ("empty jwt rule", "", "jwtRules: [{}]".into(), Invalid("issuer or jwksUri must be non-empty string")),
        ("empty issuer and jwksUri", "", "jwtRules: [{issuer: \"\"}]".into(), Invalid("issuer or jwksUri must be non-empty string")),
        ("empty issuer and set jwksUri", "", "jwtRules: [{jwksUri: \"https://foo.com/cert\"}]".into(), Valid),
        ("bad JwksUri - no protocol", "", "jwtRules: [{issuer: foo.com, jwksUri: foo.com}]".into(), Invalid("URI scheme \"\" is not supported")),
        ("bad JwksUri - invalid port", "", "jwtRules: [{issuer: foo.com, jwksUri: \"https://foo.com:not-a-number\"}]".into(), Invalid("invalid port")),
        ("empty value", "", format!("selector: {{matchLabels: {{version: \"\"}}}}\n{good}"), Valid),
        ("bad workload selector - empty key", "", format!("selector: {{matchLabels: {{\"\": v1}}}}\n{good}"), Invalid("empty key is not supported in selector")),
        ("good targetRef", "", format!("targetRef: {{group: gateway.networking.k8s.io, kind: Gateway, name: foo}}\n{good}"), Valid),
        ("bad targetRef - empty name", "", "targetRef: {group: gateway.networking.k8s.io, kind: Gateway}".into(), Invalid("targetRef name must be set")),
        ("bad targetRef - non-empty namespace", "", "targetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: foo, namespace: bar}".into(), Invalid("cross namespace referencing is not supported")),
        ("bad targetRef - wrong group", "", "targetRef: {group: wrong-group, kind: Gateway, name: foo}".into(), Invalid("targetRef must be to one of")),
        ("bad targetRef - wrong kind", "", "targetRef: {group: gateway.networking.k8s.io, kind: wrong-kind, name: foo}".into(), Invalid("targetRef must be to one of")),
        ("targetRef and selector cannot both be set", "", "selector: {matchLabels: {app: a}}\ntargetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: foo}".into(), Invalid("only one of targetRefs or workloadSelector can be set")),
        ("bad header location", "", "jwtRules: [{issuer: foo.com, jwksUri: \"https://foo.com\", fromHeaders: [{name: \"\", prefix: \"Bearer \"}]}]".into(), Invalid("location header name must be non-empty string")),
        ("bad param location", "", "jwtRules: [{issuer: foo.com, jwksUri: \"https://foo.com\", fromParams: [\"\"]}]".into(), Invalid("location query must be non-empty string")),
        ("good", "", "jwtRules: [{issuer: foo.com, jwksUri: \"https://foo.com\", fromHeaders: [{name: x-foo, prefix: \"Bearer \"}]}]".into(), Valid),
        ("bad cookie location", "", "jwtRules: [{issuer: foo.com, jwksUri: \"https://foo.com\", fromCookies: [\"\", foo]}]".into(), Invalid("cookie name must be non-empty string")),
        ("jwks ok", "", format!("jwtRules: [{{issuer: foo.com, jwks: '{JWKS}'}}]"), Valid),
        ("jwks error", "", "jwtRules: [{issuer: foo.com, jwks: foo}]".into(), Invalid("jwks parse error")),
        ("jwks with private RSA key warns", "", format!("jwtRules: [{{issuer: foo.com, jwks: '{}'}}]", JWKS.replace("\"kty\"", "\"d\":\"AQAB\",\"kty\"")), Warns("contains private key material")),
        ("null outputClaimToHeader", "", "jwtRules: [{issuer: foo.com, jwksUri: \"https://foo.com\", outputClaimToHeaders: [{}]}]".into(), Invalid("outputClaimToHeaders header and claim value must be non-empty string")),
        ("null claim value in outputClaimToHeader", "", "jwtRules: [{issuer: foo.com, jwksUri: \"https://foo.com\", outputClaimToHeaders: [{header: x-jwt-claim, claim: \"\"}]}]".into(), Invalid("outputClaimToHeaders header and claim value must be non-empty string")),
        ("null header value in outputClaimToHeader", "", "jwtRules: [{issuer: foo.com, jwksUri: \"https://foo.com\", outputClaimToHeaders: [{header: \"\", claim: sub}]}]".into(), Invalid("outputClaimToHeaders header and claim value must be non-empty string")),
        ("invalid header value in outputClaimToHeader", "", "jwtRules: [{issuer: foo.com, jwksUri: \"https://foo.com\", outputClaimToHeaders: [{header: \"abc%123\", claim: sub}]}]".into(), Invalid("header name abc%123 is not a valid header name")),
        // Pylon: Istio would discover the key set from the issuer's OpenID configuration.
        ("Pylon: no key set", "", "jwtRules: [{issuer: \"https://foo.com\"}]".into(), Refused("neither jwks nor jwksUri is set")),
    ];
    for (case, meta, spec, want) in &rows {
        check("RequestAuthentication", case, meta, spec, *want);
    }
}

#[test]
fn test_validate_condition() {
    use Want::*;
    let rows: &[(&str, &str, Want)] = &[
        ("request.headers[:authority]", "[productpage, \"\"]", Invalid("empty value not allowed")),
        ("request.headers[:authority]", "[productpage]", Valid),
        ("request.headers[]", "[x]", Invalid("bad key (request.headers[])")),
        ("source.ip", "[1.2.3.4, 5.6.7.0/24]", Valid),
        ("source.ip", "[a.b.c.d]", Invalid("bad IP address (a.b.c.d)")),
        ("remote.ip", "[1.2.3.4, 5.6.7.0/24]", Valid),
        ("remote.ip", "[a.b.c.d]", Invalid("bad IP address (a.b.c.d)")),
        ("source.namespace", "[ns]", Valid),
        ("source.user", "[u]", Invalid("unknown attribute: source.user")),
        ("source.principal", "[p]", Valid),
        ("source.serviceAccount", "[too/many/slashes]", Invalid("expected format")),
        ("source.serviceAccount", "[/emptyns]", Invalid("found empty namespace")),
        ("source.serviceAccount", "[emptysa/]", Invalid("found empty serviceAccount")),
        ("source.serviceAccount", "[ns/sa, sa]", Valid),
        ("source.trustDomain", "[cluster.local, \"*\", foo*, \"*bar\"]", Valid),
        ("source.trustDomain", "[fo*-bar]", Invalid("wildcard is only allowed at the start or end")),
        ("source.trustDomain", "[fo*bar*]", Invalid("at most one wildcard is allowed")),
        ("request.auth.principal", "[p]", Valid),
        ("request.auth.audiences", "[a]", Valid),
        ("request.auth.presenter", "[p]", Valid),
        ("request.auth.claims[id]", "[v]", Valid),
        ("request.auth.claims[]", "[v]", Invalid("bad key (request.auth.claims[])")),
        ("destination.ip", "[1.2.3.4]", Valid),
        ("destination.ip", "[a.b.c.d]", Invalid("bad IP address (a.b.c.d)")),
        ("destination.port", "[\"80\", \"90\"]", Valid),
        ("destination.port", "[\"80\", x]", Invalid("bad port (x)")),
        ("destination.labels[app]", "[v]", Invalid("is replaced by the workload selector")),
        ("destination.name", "[v]", Invalid("deprecated attribute destination.name")),
        ("destination.namespace", "[v]", Invalid("is replaced by the metadata.namespace")),
        ("destination.user", "[v]", Invalid("deprecated attribute destination.user")),
        ("connection.sni", "[v]", Valid),
        ("experimental.envoy.filters.a.b[c]", "[v]", Refused("reads Envoy filter metadata")),
        ("experimental.envoy.filters.a.b.x", "[v]", Invalid("bad key")),
    ];
    for (key, values, want) in rows {
        let spec = format!("rules:\n- when: [{{key: \"{key}\", values: {values}}}]");
        check("AuthorizationPolicy", &format!("{key} {values}"), "", &spec, *want);
    }
}

#[test]
fn test_check_valid_path_template() {
    let valid = ["/{*}/foo", "/{*}/foo/", "/foo/{**}/bar", "/foo/bar/{**}"];
    let invalid = [
        "/foo/{**}buzz/bar",
        "/{*}/foo/{}/bar",
        "/foo/{*}/bar/*",
        "/foo/{*}/bar/**/buzz",
        "/foo/{buzz}/bar",
        "/{buzz}",
        "/foo/{buzz}/bar/{**}",
        "/foo/{buzz=*}/bar/{**}",
        "/{*}/foo/{buzz=**}/bar",
        "/{*}/foo/{**}bar",
        "/{*}/foo/{*}.txt",
        "/{*}/foo/{temp",
        "/{*}/foo/temp}/bar",
        "/{*}/foo/temp}/*",
        "/{**}/foo/temp/{*}/bar",
        "/{**}/{**}",
        "/{**}/foo/temp/{**}/bar",
        "/{*}/foo/?abc",
    ];
    for p in valid {
        check(
            "AuthorizationPolicy",
            p,
            "",
            &format!("rules:\n- to: [{{operation: {{paths: [\"{p}\"]}}}}]"),
            Want::Valid,
        );
    }
    for p in invalid {
        let spec = format!("rules:\n- to: [{{operation: {{paths: [\"{p}\"]}}}}]");
        check("AuthorizationPolicy", p, "", &spec, Want::Invalid("invalid or unsupported path"));
    }
}
