//! The `pylon` command line: exit statuses, output formats, and the shipped and Istio sample
//! configurations (README "Command line").

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn pylon(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pylon")).args(args).current_dir(root()).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn errors(o: &Output) -> Vec<String> {
    stdout(o).lines().filter(|l| l.starts_with("error[")).map(str::to_string).collect()
}

#[test]
fn validate_accepts_the_shipped_examples() {
    // The credentials the examples name (`make run` makes the demo's in target/demo-certs);
    // validation only checks that the files are there.
    let creds = std::env::temp_dir().join(format!("pylon-example-creds-{}", std::process::id()));
    for (name, files) in
        [("demo-cert", &["tls.crt", "tls.key"][..]), ("egress-gateway-cert", &["tls.crt", "tls.key", "ca.crt"])]
    {
        std::fs::create_dir_all(creds.join(name)).unwrap();
        for file in files {
            std::fs::write(creds.join(name).join(file), "").unwrap();
        }
    }
    for entry in std::fs::read_dir(root().join("conf/examples")).unwrap() {
        let dir = entry.unwrap().path();
        // Each example is for the workload its directory names.
        let (labels, namespace) = if dir.ends_with("egress") {
            ("istio=egressgateway", "istio-system")
        } else {
            ("istio=ingressgateway", "default")
        };
        let out = pylon(&[
            "validate",
            "--labels",
            labels,
            "--namespace",
            namespace,
            "--config",
            dir.to_str().unwrap(),
            "--credentials-dir",
            creds.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}: {}", dir.display(), stdout(&out));
        assert!(stdout(&out).is_empty(), "{} has warnings: {}", dir.display(), stdout(&out));
    }
}

/// The label sets Istio's samples select: ingress, egress, and the API reference's custom selector.
const LABELS: &[&str] = &["istio=ingressgateway", "istio=egressgateway", "app=my-gateway-controller"];

#[test]
fn validate_accepts_every_istio_sample_alone_and_together() {
    let samples = root().join("conf/tests/istio-samples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&samples).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert_eq!(files.len(), 31);
    for labels in LABELS {
        for file in files.iter().chain([&samples]) {
            let out = pylon(&[
                "validate",
                "--labels",
                labels,
                "--config",
                file.to_str().unwrap(),
                "--config",
                "conf/tests/istio-services",
            ]);
            assert_eq!(out.status.code(), Some(0), "{} with {labels}: {}", file.display(), stdout(&out));
        }
    }
}

#[test]
fn validate_lists_every_problem_of_a_broken_configuration() {
    let out = pylon(&["validate", "--config", "gateway/tests/broken"]);
    assert_eq!(out.status.code(), Some(1));
    let expected = [
        "error[unknown-field] VirtualService default/shop spec.http[0].route[1].wieght: unknown field `wieght`",
        "error[yaml] gateway/tests/broken/4-syntax.yaml:7:1: did not find expected node content",
        "error[name] Gateway default/edge.gateway metadata.name: invalid gateway name: \"edge.gateway\"",
        "error[host] Gateway default/edge.gateway spec.servers[0].hosts[0]: short names (non FQDN) are not allowed",
        "error[port] Gateway default/edge.gateway spec.servers[0].port.number: port number 70000 must be in the range 1..65535",
        "error[tls] Gateway default/edge.gateway spec.servers[1].tls: server must have TLS settings for HTTPS/TLS protocols",
        "error[port] Gateway default/edge.gateway spec.servers[1].port.name: port names in servers must be unique: duplicate name http",
        "error[match] VirtualService default/shop spec.http[0].match[0].headers[\"x-user\"].prefix: \"headers\": prefix string match should not be empty",
        "error[regex] VirtualService default/shop spec.http[0].match[0].uri.regex: \"uri\": error parsing regexp: unclosed group: `/items/(\\d+`; Istio uses RE2 style regex-based match",
        "error[weight] VirtualService default/shop spec.http[0].route[0].weight: weight -1 < 0",
        "error[destination] VirtualService default/shop spec.http[0].route[1].destination.subset: subset name is invalid: V_1",
        "error[subset] DestinationRule default/shop spec.subsets[1].name: duplicate subset names: v1",
        "error[endpoint] ServiceEntry default/shop spec.endpoints[0].address: endpoint address \"shop.example.com\" is not a valid IP address",
    ];
    let found = errors(&out);
    for e in expected {
        assert!(found.iter().any(|l| l.starts_with(e)), "missing {e:?} in:\n{}", found.join("\n"));
    }
    assert_eq!(found.len(), expected.len(), "{}", found.join("\n"));
}

#[test]
fn unreadable_input_exits_2() {
    let out = pylon(&["validate", "--config", "no/such/path"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read no/such/path"));
}

#[test]
fn bad_usage_exits_2() {
    assert_eq!(pylon(&["validate"]).status.code(), Some(2));
    assert_eq!(pylon(&["validate", "--config", "x", "--labels", "novalue"]).status.code(), Some(2));
    assert_eq!(pylon(&["run", "--config", "x", "--port-map", "80=9000,81=9000"]).status.code(), Some(2));
}

#[test]
fn routes_prints_the_bookinfo_virtual_host() {
    let out =
        pylon(&["routes", "--config", "conf/tests/istio-samples/S2.yaml", "--config", "conf/tests/istio-services"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.contains("0.0.0.0:8080 HTTP"), "{text}");
    assert!(text.contains("virtual host *"), "{text}");
    assert!(text.contains("1. default/bookinfo http[0] match[0]: path exact \"/productpage\""), "{text}");
    assert!(text.contains("5. default/bookinfo http[0] match[4]: path prefix \"/api/v1/products\""), "{text}");
    assert!(text.contains("outbound|9080||productpage.default.svc.cluster.local STATIC HTTP"), "{text}");
}

#[test]
fn routes_egress_lists_the_external_hosts_each_gateway_port_reaches() {
    // Istio's egress TLS-origination task: S24's ServiceEntry with S26's Gateway, routes and
    // DestinationRule.
    let dir = std::env::temp_dir().join(format!("pylon-egress-view-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let s24 = std::fs::read_to_string("../conf/tests/istio-samples/S24.yaml").unwrap();
    let entry = s24.split("\n---\n").next().unwrap();
    let s26 = std::fs::read_to_string("../conf/tests/istio-samples/S26.yaml").unwrap();
    std::fs::write(dir.join("egress.yaml"), format!("{entry}\n---\n{s26}")).unwrap();
    let policy = "apiVersion: gateway.pylon.dev/v1alpha1\nkind: GatewayPolicy\nmetadata: {name: source}\nspec:\n  upstreamBind: {sourceAddress: 192.0.2.10}\n";
    std::fs::write(dir.join("policy.yaml"), policy).unwrap();
    let config = dir.display().to_string();
    let out = pylon(&["routes", "--egress", "--labels", "istio=egressgateway", "--config", &config]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        stdout(&out),
        "EGRESS (ServiceEntry hosts reachable through this gateway)\n  edition.cnn.com:443 ← gateway port 80 (DNS, TLS origination SIMPLE, from 192.0.2.10)\n"
    );
    let ingress = pylon(&["routes", "--egress", "--config", "conf/tests/istio-samples/S25.yaml"]);
    assert_eq!(stdout(&ingress), "EGRESS (ServiceEntry hosts reachable through this gateway)\n  (none)\n");
}

#[test]
fn routes_json_is_the_table() {
    let out = pylon(&["routes", "--output", "json", "--config", "conf/examples/demo"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["listeners"][0]["port"], 8080);
    // Istio names a route table after its port, and its bind address when it has one.
    assert_eq!(v["route_configs"][0]["name"], "http.8080.127.0.0.1");
    assert_eq!(v["clusters"].as_array().unwrap().len(), 2);
}

#[test]
fn routes_refuses_an_invalid_configuration() {
    let out = pylon(&["routes", "--config", "gateway/tests/broken"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
}

#[test]
fn run_refuses_an_invalid_configuration() {
    let out = pylon(&["run", "--config", "gateway/tests/broken"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error[name] Gateway default/edge.gateway"));
}

#[test]
fn version_prints_the_version() {
    let out = pylon(&["version"]);
    assert_eq!(stdout(&out).trim(), format!("pylon {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn explain_prints_the_route_a_request_takes_and_why_the_others_missed() {
    let out = pylon(&[
        "explain",
        "--config",
        "conf/examples/demo",
        "GET",
        "http://127.0.0.1:8080/echo/x",
        "-H",
        "x-version: v1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = stdout(&out);
    for line in [
        "listener  127.0.0.1:8080 HTTP (plaintext HTTP/1.1, h2c)",
        r#"  ✗ 3. default/demo http[2] match[0] "echo-v2": header x-version exact "v2" ≠ "v1""#,
        r#"  ✓ 4. default/demo http[3] match[0] "echo": matched"#,
        "  → outbound|80|v1|echo.demo.svc.cluster.local 100% (weight 100)",
        "result    forwarded",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
}

#[test]
fn explain_json_carries_the_action() {
    let out =
        pylon(&["explain", "--config", "conf/examples/demo", "--output", "json", "GET", "http://h:8080/old/a?q=1"]);
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["action"]["type"], "redirect");
    assert_eq!(json["action"]["location"], "http://h:8080/echo/moved?q=1");
    assert_eq!(json["status"], 301);
    assert_eq!(json["routes"][1]["miss"], serde_json::Value::Null, "the second route matched");
}

#[test]
fn explain_runs_the_authorization_policies_before_routing() {
    let dir = std::env::temp_dir().join(format!("pylon-explain-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("policy.yaml"),
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: no-admin}\nspec:\n  selector: {matchLabels: {istio: ingressgateway}}\n  action: DENY\n  rules:\n  - to: [{operation: {paths: [\"/echo/admin*\"]}}]\n",
    )
    .unwrap();
    let policy = dir.join("policy.yaml");
    let ask = |path: &str| {
        let url = format!("http://127.0.0.1:8080{path}");
        stdout(&pylon(&[
            "explain",
            "--config",
            "conf/examples/demo",
            "--config",
            policy.to_str().unwrap(),
            "GET",
            &url,
        ]))
    };
    let denied = ask("/echo/admin/users");
    assert!(denied.contains("policy    AuthorizationPolicy default/no-admin (selector)"), "{denied}");
    assert!(
        denied
            .contains("decision: denied 403 (rbac_access_denied_matched_policy[ns[default]-policy[no-admin]-rule[0]])"),
        "{denied}"
    );
    assert!(denied.contains("result    403, answered by the gateway"), "{denied}");
    let allowed = ask("/echo/public");
    assert!(allowed.contains("decision: allowed") && allowed.contains("result    forwarded"), "{allowed}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn explain_exit_statuses_tell_bad_requests_from_bad_configuration() {
    let bad_url = pylon(&["explain", "--config", "conf/examples/demo", "GET", "127.0.0.1:8080/x"]);
    assert_eq!(bad_url.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_url.stderr).contains("expected scheme://host[:port]/path"));
    let invalid = pylon(&["explain", "--config", "gateway/tests/broken", "GET", "http://a/"]);
    assert_eq!(invalid.status.code(), Some(1));
}

#[test]
fn diff_exit_status_says_whether_anything_changes() {
    let dir = std::env::temp_dir().join(format!("pylon-diff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let demo = std::fs::read_to_string(root().join("conf/examples/demo/gateway.yaml")).unwrap();
    std::fs::write(dir.join("gateway.yaml"), demo.replace("exact: /hello", "exact: /hi")).unwrap();
    let new = dir.to_str().unwrap();
    let same = pylon(&["diff", "--config", "conf/examples/demo", "--against", "conf/examples/demo"]);
    assert_eq!((same.status.code(), stdout(&same)), (Some(0), "no change\n".to_string()));
    let changed = pylon(&["diff", "--config", "conf/examples/demo", "--against", new]);
    assert_eq!(changed.status.code(), Some(1));
    let text = stdout(&changed);
    assert!(
        text.contains("changed route http.8080.127.0.0.1 *: default/demo http[0] match[0] \"hello\"\n    matcher.path.exact: \"/hello\" → \"/hi\""),
        "{text}"
    );
    let json = pylon(&["diff", "--config", "conf/examples/demo", "--against", new, "--output", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["changes"][0]["kind"], "changed");
    std::fs::write(dir.join("broken.yaml"), "kind: Gateway\n").unwrap();
    let invalid = pylon(&["diff", "--config", "conf/examples/demo", "--against", new]);
    assert_eq!(invalid.status.code(), Some(2));
    assert!(stdout(&invalid).contains("not compared: the new configuration is invalid"), "{}", stdout(&invalid));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn routes_shows_the_workload_identity_of_the_identity_dir() {
    use openssl::asn1::Asn1Time;
    use openssl::x509::extension::SubjectAlternativeName;
    let key = openssl::pkey::PKey::from_ec_key(
        openssl::ec::EcKey::generate(
            &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let mut b = openssl::x509::X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
    b.set_not_after(&Asn1Time::days_from_now(90).unwrap()).unwrap();
    let mut san = SubjectAlternativeName::new();
    let san = san.uri("spiffe://corp.example/ns/edge/sa/pylon").build(&b.x509v3_context(None, None)).unwrap();
    b.append_extension(san).unwrap();
    b.sign(&key, openssl::hash::MessageDigest::sha256()).unwrap();
    let dir = std::env::temp_dir().join(format!("pylon-cli-identity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert-chain.pem"), b.build().to_pem().unwrap()).unwrap();
    let out = pylon(&["routes", "--config", "conf/examples/demo", "--identity-dir", dir.to_str().unwrap()]);
    let first = stdout(&out).lines().next().unwrap_or_default().to_string();
    assert!(first.starts_with("IDENTITY spiffe://corp.example/ns/edge/sa/pylon, valid until "), "{first}");
    assert!(first.ends_with("(89 days)") || first.ends_with("(90 days)"), "{first}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn validate_prints_the_gateway_api_status_and_gateway_class_picks_the_class() {
    let config = "tests/fixtures/gateway-api/istio-samples/helloworld-helloworld-gateway.yaml";
    let selection = ["--config", config, "--labels", "gateway.networking.k8s.io/gateway-name=helloworld-gateway"];
    let out = pylon(&[&["validate"][..], &selection[..]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("GATEWAY API STATUS"), "{text}");
    assert!(text.contains("HTTPRoute default/helloworld parent default/helloworld-gateway\n      Accepted=True Accepted: Route was valid\n      ResolvedRefs=True ResolvedRefs"), "{text}");
    assert!(
        text.contains("warning[unknown-host] Gateway API backends: the configuration has no Kubernetes Service"),
        "{text}"
    );
    // The sample's class is Istio's: served as `istio` only, not as another class.
    let other = pylon(&[&["validate"][..], &selection[..], &["--gateway-class", "other"][..]].concat());
    assert!(
        stdout(&other).contains("GatewayClass \"istio\": this workload serves class \"other\""),
        "{}",
        stdout(&other)
    );
    assert!(!stdout(&other).contains("GATEWAY API STATUS"), "{}", stdout(&other));
}
