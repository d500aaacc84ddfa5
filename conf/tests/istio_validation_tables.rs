//! Istio's own validation test tables, row by row: each row of `tests/istio-tables/<Test>.json` (from
//! istio/istio `pkg/config/validation`, at the commit the file names) is a configuration and Istio's
//! verdict: an error containing its message, a warning containing its message, or neither. Pylon
//! must agree, except for the rows the file lists as deviations, each with its reason (the README's
//! deviations say the same). Every disagreement is listed at once. `scripts/istio-tables
//! ISTIO_GIT_DIR` regenerates the files from a newer istio/istio.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test harness fails by panicking

use serde_json::{json, Value};

struct Table {
    rows: Vec<Value>,
    deviations: serde_json::Map<String, Value>,
}

fn table(name: &str) -> Table {
    let path = format!("{}/tests/istio-tables/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let rows = doc["rows"].as_array().unwrap().clone();
    let deviations = doc["deviations"].as_object_mut().map(std::mem::take).unwrap_or_default();
    Table { rows, deviations }
}

/// Pylon's diagnostics that Istio's validation has no counterpart for: missing files and
/// credentials (facts of the machine), fields without effect at a gateway, and what `istioctl
/// analyze` would report across resources (unknown hosts, gateways, subsets, ...), and whether a
/// resource applies to this workload at all (`skipped`, `unselected`). (Unreachable
/// rules and ineffective matches are Istio's validation warnings too, and are compared.)
fn beyond_validation(code: conf::diagnostic::Code) -> bool {
    use conf::diagnostic::Code;
    matches!(
        code,
        Code::Credential
            | Code::NoEffect
            | Code::MeshOnly
            | Code::UnknownGateway
            | Code::UnknownHost
            | Code::UnknownSubset
            | Code::UnknownPort
            | Code::NoEndpoints
            | Code::NoGateway
            | Code::Unselected
            | Code::Skipped
    )
}

/// `value` with large strings written out: `{"$repeat": [text, times]}`, and base64 of the same
/// under `$repeat_base64` (a table row with a 1 MB body stays small on disk).
fn expand(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let repeated = |key: &str| {
                let args = map.get(key)?.as_array()?;
                Some(args[0].as_str()?.repeat(usize::try_from(args[1].as_u64()?).ok()?))
            };
            if let Some(text) = repeated("$repeat") {
                return Value::String(text);
            }
            if let Some(text) = repeated("$repeat_base64") {
                use base64::Engine;
                return Value::String(base64::engine::general_purpose::STANDARD.encode(text));
            }
            Value::Object(map.iter().map(|(k, v)| (k.clone(), expand(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(expand).collect()),
        other => other.clone(),
    }
}

/// The errors and warnings Pylon gives under `path` for `document` (JSON is YAML), less those
/// [`beyond_validation`].
fn verdict(document: &Value, path: &str) -> (Vec<String>, Vec<String>) {
    // A row may give the document's YAML text itself.
    let text = document.as_str().map_or_else(|| document.to_string(), str::to_string);
    let built = conf::build_str("row.yaml", &text, &conf::Selection::default());
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    for d in &built.diagnostics.0 {
        let conf::diagnostic::Location::Resource { path: at, .. } = &d.location else { continue };
        if !at.starts_with(path) || beyond_validation(d.code) {
            continue;
        }
        match d.severity {
            conf::diagnostic::Severity::Error => errors.push(d.message.clone()),
            conf::diagnostic::Severity::Warning => warnings.push(d.message.clone()),
        }
    }
    (errors, warnings)
}

/// Why Pylon's `(errors, warnings)` disagree with Istio's row, if they do. A row gives either
/// `errs` and perhaps `warns` (Istio's table checks only whether there are any), or the `error`
/// and `warning` messages Istio gives (empty: none).
fn disagreement(row: &Value, errors: &[String], warnings: &[String]) -> Option<String> {
    if let Some(errs) = row["errs"].as_bool() {
        // Without `warns`, Istio's table does not check warnings, and neither does this.
        return match (errs, errors.is_empty(), row["warns"].as_bool(), warnings.is_empty()) {
            (false, false, _, _) => Some(format!("Istio accepts; Pylon: {errors:?}")),
            (true, true, _, _) => Some("Istio rejects; Pylon accepts".into()),
            (_, _, Some(true), true) => Some("Istio warns; Pylon does not".into()),
            (_, _, Some(false), false) => Some(format!("Istio warns of nothing; Pylon: {warnings:?}")),
            _ => None,
        };
    }
    let expect = |key: &str| row[key].as_str().unwrap_or_default().to_string();
    let (error, warning) = (expect("error"), expect("warning"));
    let says = |found: &[String], want: &str| found.iter().any(|m| m.contains(want));
    if error.is_empty() && !errors.is_empty() {
        return Some(format!("Istio accepts; Pylon: {errors:?}"));
    }
    if !error.is_empty() && !says(errors, &error) {
        return Some(format!("Istio: error {error:?}; Pylon errors: {errors:?}"));
    }
    if !warning.is_empty() && !says(warnings, &warning) {
        return Some(format!("Istio: warning {warning:?}; Pylon warnings: {warnings:?}"));
    }
    if warning.is_empty() && error.is_empty() && !warnings.is_empty() {
        return Some(format!("Istio warns of nothing; Pylon: {warnings:?}"));
    }
    None
}

/// A resource of `kind` with `metadata` and `spec` (the security kinds in security.istio.io, the
/// others in networking.istio.io).
fn resource(kind: &str, metadata: Value, spec: Value) -> Value {
    let api = if matches!(kind, "AuthorizationPolicy" | "RequestAuthentication") {
        "security.istio.io/v1"
    } else {
        "networking.istio.io/v1"
    };
    json!({"apiVersion": api, "kind": kind, "metadata": metadata, "spec": spec})
}

/// A VirtualService bound to the Gateway `gw`, with these HTTP rules.
fn bound_virtual_service(http: Value) -> Value {
    resource(
        "VirtualService",
        json!({"name": "vs"}),
        json!({"hosts": ["a.example.com"], "gateways": ["gw"], "http": http}),
    )
}

fn check(name: &str, document: impl Fn(&Value) -> Value, path: &str) {
    let Table { rows, deviations } = table(name);
    let mut wrong = Vec::new();
    for row in &rows {
        let id = row["row"].as_str().unwrap();
        let (errors, warnings) = verdict(&document(&expand(row)), path);
        let differs = disagreement(row, &errors, &warnings);
        match (differs, deviations.contains_key(id)) {
            (Some(why), false) => wrong.push(format!("{name}/{id}: {why}")),
            (None, true) => wrong.push(format!("{name}/{id}: listed as a deviation, but Pylon agrees with Istio")),
            _ => {}
        }
    }
    println!("{name}: {} rows, {} deviations", rows.len(), deviations.len());
    assert!(wrong.is_empty(), "{} of {} rows disagree with Istio:\n{}", wrong.len(), rows.len(), wrong.join("\n"));
}

#[test]
fn gateway_tls_options_as_istio_validates_them() {
    let gateway = |row: &Value| {
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "gw"},
            "spec": {"selector": {"istio": "ingressgateway"}, "servers": [{
                "port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": ["*"], "tls": row["in"],
            }]},
        })
    };
    check("TestValidateTlsOptions", gateway, "spec.servers[0].tls");
}

#[test]
fn destination_rule_client_tls_as_istio_validates_it() {
    let rule = |row: &Value| {
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "dr"},
            "spec": {"host": "a.internal", "trafficPolicy": {"tls": row["in"]}},
        })
    };
    check("TestValidateTLS", rule, "spec.trafficPolicy.tls");
}

/// A DestinationRule whose `loadBalancer.<field>` is the row's `in`, with the row's `outlier`.
fn load_balancer_part(field: &'static str) -> impl Fn(&Value) -> Value {
    move |row: &Value| {
        let mut policy = json!({});
        if !row["in"].is_null() {
            policy["loadBalancer"] = json!({field: row["in"]});
        }
        if !row["outlier"].is_null() {
            policy["outlierDetection"] = row["outlier"].clone();
        }
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "dr"},
            "spec": {"host": "a.internal", "trafficPolicy": policy},
        })
    }
}

#[test]
fn locality_load_balancing_as_istio_validates_it() {
    check("TestValidateLocalityLbSetting", load_balancer_part("localityLbSetting"), "spec.trafficPolicy.loadBalancer");
}

#[test]
fn zone_aware_load_balancing_as_istio_validates_it() {
    check(
        "TestValidateZoneAwareLbSetting",
        load_balancer_part("zoneAwareLbSetting"),
        "spec.trafficPolicy.loadBalancer",
    );
}

/// A DestinationRule whose `trafficPolicy.<field>` is the row's `in`.
fn traffic_policy_part(field: &'static str) -> impl Fn(&Value) -> Value {
    move |row: &Value| {
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "dr"},
            "spec": {"host": "a.internal", "trafficPolicy": {field: row["in"]}},
        })
    }
}

#[test]
fn connection_pools_as_istio_validates_them() {
    check("TestValidateConnectionPool", traffic_policy_part("connectionPool"), "spec.trafficPolicy.connectionPool");
}

#[test]
fn load_balancers_as_istio_validates_them() {
    check("TestValidateLoadBalancer", traffic_policy_part("loadBalancer"), "spec.trafficPolicy.loadBalancer");
}

#[test]
fn outlier_detection_as_istio_validates_it() {
    check(
        "TestValidateOutlierDetection",
        traffic_policy_part("outlierDetection"),
        "spec.trafficPolicy.outlierDetection",
    );
}

/// A VirtualService whose one HTTP rule has the row's `in` at `field` (a dotted path inside the
/// rule); with `forward`, the rule also routes to a destination.
fn http_rule_part(field: &'static str, forward: bool) -> impl Fn(&Value) -> Value {
    move |row: &Value| {
        let mut rule = if forward { json!({"route": [{"destination": {"host": "a.internal"}}]}) } else { json!({}) };
        if !row["in"].is_null() {
            let (outer, inner) = field.split_once('.').map_or((field, None), |(o, i)| (o, Some(i)));
            rule[outer] = match inner {
                Some(inner) => json!({inner: row["in"]}),
                None => row["in"].clone(),
            };
        }
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "vs"},
            "spec": {"hosts": ["a.example.com"], "http": [rule]},
        })
    }
}

#[test]
fn http_rule_parts_as_istio_validates_them() {
    check("TestValidateCORSPolicy", http_rule_part("corsPolicy", true), "spec.http[0].corsPolicy");
    check("TestValidateHTTPFaultInjectionAbort", http_rule_part("fault.abort", true), "spec.http[0].fault");
    check("TestValidateHTTPFaultInjectionDelay", http_rule_part("fault.delay", true), "spec.http[0].fault");
    check("TestValidateHTTPRetry", http_rule_part("retries", true), "spec.http[0].retries");
    check("TestValidateHTTPRewrite", http_rule_part("rewrite", true), "spec.http[0].rewrite");
    check("TestValidateUriRegexRewrite", http_rule_part("rewrite.uriRegexRewrite", true), "spec.http[0].rewrite");
    check("TestValidateHTTPRedirect", http_rule_part("redirect", false), "spec.http[0].redirect");
    check("TestValidateHTTPDirectResponse", http_rule_part("directResponse", false), "spec.http[0].directResponse");
}

#[test]
fn domains_as_istio_validates_them() {
    let rule = |row: &Value| {
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "dr"},
            "spec": {"host": row["in"]},
        })
    };
    check("TestValidateWildcardDomain", rule, "spec.host");
    // A VirtualService bound to a gateway; with `sni`, a TLS rule matching the host as SNI.
    let service = |row: &Value| {
        let mut spec = json!({"hosts": [row["in"]], "gateways": ["gw"]});
        if row["sni"].as_bool() == Some(true) {
            spec["tls"] =
                json!([{"match": [{"sniHosts": [row["in"]]}], "route": [{"destination": {"host": "a.internal"}}]}]);
        } else {
            spec["http"] = json!([{"route": [{"destination": {"host": "a.internal"}}]}]);
        }
        resource("VirtualService", json!({"name": "vs"}), spec)
    };
    check("TestValidateWildcardDomainForVirtualServiceBoundToGateway", service, "spec.hosts");
}

#[test]
fn header_names_and_values_as_istio_validates_them() {
    let rule = |part: Value| {
        let mut rule = json!({"route": [{"destination": {"host": "a.internal"}}]});
        rule.as_object_mut().unwrap().extend(part.as_object().unwrap().clone());
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "vs"},
            "spec": {"hosts": ["a.example.com"], "gateways": ["gw"], "http": [rule]},
        })
    };
    let name = |row: &Value| row["in"].as_str().unwrap_or_default().to_string();
    check(
        "TestValidateHTTPHeaderName",
        |row: &Value| rule(json!({"match": [{"headers": {name(row): {"exact": "v"}}}]})),
        "spec.http[0].match",
    );
    check(
        "TestValidateHTTPHeaderValue",
        |row: &Value| rule(json!({"headers": {"request": {"set": {"x-h": row["in"]}}}})),
        "spec.http[0].headers",
    );
    let auth = |row: &Value| {
        json!({
            "apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication", "metadata": {"name": "ra"},
            "spec": {"jwtRules": [{"issuer": "https://issuer.example", "jwksUri": "https://issuer.example/jwks",
                "outputClaimToHeaders": [{"header": row["in"], "claim": "sub"}]}]},
        })
    };
    check("TestStrictValidateHTTPHeaderName", auth, "spec.jwtRules[0].outputClaimToHeaders");
}

#[test]
fn gateway_servers_as_istio_validates_them() {
    let gateway = |server: Value| {
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "gw"},
            "spec": {"selector": {"istio": "ingressgateway"}, "servers": [server]},
        })
    };
    check("TestValidateServer", |row: &Value| gateway(row["in"].clone()), "spec.servers[0]");
    let port = |row: &Value| {
        let mut server = json!({"port": row["in"], "hosts": ["*"]});
        if row["bind"].as_str().is_some_and(|b| !b.is_empty()) {
            server["bind"] = row["bind"].clone();
        }
        gateway(server)
    };
    check("TestValidateServerPort", port, "spec.servers[0]");
}

#[test]
fn gateways_as_istio_validates_them() {
    let gateway = |row: &Value| resource("Gateway", json!({"name": "gw"}), row["in"].clone());
    check("TestValidateGateway", gateway, "spec");
}

#[test]
fn virtual_services_as_istio_validates_them() {
    let service = |row: &Value| resource("VirtualService", json!({"name": "vs"}), row["in"].clone());
    check("TestValidateVirtualService", service, "spec");
    // One HTTP rule of a VirtualService bound to a gateway.
    let rule = |row: &Value| bound_virtual_service(json!([row["in"]]));
    check("TestValidateHTTPRoute", rule, "spec.http[0]");
}

#[test]
fn destination_rules_as_istio_validates_them() {
    // Istio's table validates them as `foo` in namespace `bar`.
    let rule = |row: &Value| {
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "foo", "namespace": "bar"}, "spec": row["in"],
        })
    };
    check("TestValidateDestinationRule", rule, "spec");
    check("TestValidateTrafficPolicy", traffic_policy(), "spec.trafficPolicy");
}

/// A DestinationRule whose `trafficPolicy` is the row's `in`.
fn traffic_policy() -> impl Fn(&Value) -> Value {
    |row: &Value| {
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "dr"},
            "spec": {"host": "a.internal", "trafficPolicy": row["in"]},
        })
    }
}

#[test]
fn service_entries_as_istio_validates_them() {
    let entry = |row: &Value| {
        let mut metadata = json!({"name": "foo", "namespace": "bar"});
        if row["labels"].is_object() {
            metadata["labels"] = row["labels"].clone();
        }
        resource("ServiceEntry", metadata, row["in"].clone())
    };
    check("TestValidateServiceEntries", entry, "spec");
}

#[test]
fn workload_entries_destinations_and_export_to_as_istio_validates_them() {
    let entry = |row: &Value| resource("WorkloadEntry", json!({"name": "we"}), row["in"].clone());
    check("TestValidateWorkloadEntry", entry, "spec");
    let http = |row: &Value| bound_virtual_service(json!([{"route": [{"destination": row["in"]}]}]));
    check("TestValidateDestination", http, "spec.http[0].route[0].destination");
    let tcp = |row: &Value| {
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "vs"},
            "spec": {"hosts": ["a.example.com"], "gateways": ["gw"], "tcp": [{"route": row["in"]}]},
        })
    };
    check("TestValidateRouteDestination", tcp, "spec.tcp[0].route");
    // validateExportTo for a ServiceEntry, a DestinationRule with a workload selector, or any kind.
    let export_to = |row: &Value| {
        let metadata = json!({"name": "r", "namespace": row["namespace"]});
        let export = row["in"].clone();
        if row["isServiceEntry"].as_bool() == Some(true) {
            let spec = json!({"hosts": ["a.example.com"], "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}], "resolution": "DNS", "exportTo": export});
            resource("ServiceEntry", metadata, spec)
        } else {
            let mut spec = json!({"host": "a.internal", "exportTo": export});
            if row["isDestinationRuleWithSelector"].as_bool() == Some(true) {
                spec["workloadSelector"] = json!({"matchLabels": {"app": "a"}});
            }
            resource("DestinationRule", metadata, spec)
        }
    };
    check("Test_validateExportTo", export_to, "spec");
}

#[test]
fn security_policies_as_istio_validates_them() {
    // Istio's tables validate an AuthorizationPolicy `name` and a RequestAuthentication named by the
    // row, both in their namespaces, with the row's annotations.
    let policy = |kind: &str, name: &Value, namespace: &str, row: &Value| {
        let mut metadata = json!({"name": name, "namespace": namespace});
        if row["annotations"].is_object() {
            metadata["annotations"] = row["annotations"].clone();
        }
        json!({"apiVersion": "security.istio.io/v1", "kind": kind, "metadata": metadata, "spec": row["in"]})
    };
    check(
        "TestValidateAuthorizationPolicy",
        |row: &Value| policy("AuthorizationPolicy", &json!("name"), "namespace", row),
        "",
    );
    check(
        "TestValidateRequestAuthentication",
        |row: &Value| policy("RequestAuthentication", &row["configName"], "bar", row),
        "",
    );
}

#[test]
fn port_names_statuses_durations_and_subnets_as_istio_validates_them() {
    let entry = |spec: Value| resource("ServiceEntry", json!({"name": "se"}), spec);
    let port_name = |row: &Value| {
        entry(
            json!({"hosts": ["a.example.com"], "ports": [{"number": 80, "protocol": "HTTP", "name": row["in"]}], "resolution": "DNS"}),
        )
    };
    check("TestValidatePortName", port_name, "spec.ports[0].name");
    let subnet = |row: &Value| {
        entry(
            json!({"hosts": ["a.example.com"], "addresses": [row["in"]], "ports": [{"number": 80, "protocol": "HTTP", "name": "http"}], "resolution": "STATIC"}),
        )
    };
    check("TestValidationIPSubnet", subnet, "spec.addresses");
    let abort = |row: &Value| {
        let status = json!({"in": {"httpStatus": row["in"], "percentage": {"value": 100}}});
        http_rule_part("fault.abort", true)(&status)
    };
    check("TestValidateHTTPStatus", abort, "spec.http[0].fault");
    check("TestValidateDuration", http_rule_part("timeout", true), "spec.http[0].timeout");
}

#[test]
fn delegation_as_istio_validates_it() {
    check(
        "TestValidateChainingVirtualService",
        |row: &Value| resource("VirtualService", json!({"name": "vs"}), row["in"].clone()),
        "spec",
    );
    check("TestValidateRootHTTPRoute", |row: &Value| bound_virtual_service(json!([row["in"]])), "spec.http[0]");
    // A delegate: a VirtualService without hosts.
    let delegate = |row: &Value| resource("VirtualService", json!({"name": "vs"}), json!({"http": [row["in"]]}));
    check("TestValidateDelegateHTTPRoute", delegate, "spec.http[0]");
}

#[test]
fn istio_crd_test_files_as_istio_validates_them() {
    // Whole documents: Istio's schema accepts or rejects each (its messages are the API server's).
    for file in ["destinationrule", "serviceentry", "workloadentry", "authz", "reqauth"] {
        check(&format!("crds-{file}"), |row: &Value| row["yaml"].clone(), "");
    }
}
