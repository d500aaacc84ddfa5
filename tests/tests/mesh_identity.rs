//! The gateway in an Istio mesh: DestinationRule `ISTIO_MUTUAL` presents the workload identity
//! of `--identity-dir` (Istio's file-mounted certificates) to a "sidecar" that requires a client
//! certificate from the mesh CA, verifies the sidecar against the mesh root and its SPIFFE trust
//! domain, sends Istio's outbound SNI, and picks up a rotated identity without losing a request.
//! A Gateway server with `tls.mode: ISTIO_MUTUAL` terminates with that identity, admits only
//! clients of the mesh CA in the trust domain, and hands their SPIFFE identity to
//! AuthorizationPolicy `principals` and `namespaces`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::certs::{write_atomically, Ca, Issued, Leaf};
use e2e::client::{get, http1};
use e2e::gateway::{Setup, TempDir};
use e2e::tls::{Client, TlsUpstream};
use e2e::yaml::gateway;
use e2e::{TestGateway, Upstream};

const GATEWAY_ID: &str = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account";
const REVIEWS_ID: &str = "spiffe://cluster.local/ns/default/sa/bookinfo-reviews";

/// The gateway's identity issued by `ca`, written as Istio mounts it.
fn write_identity(dir: &std::path::Path, ca: &Ca, id: &Issued) {
    write_atomically(&dir.join("root-cert.pem"), ca.pem().as_bytes());
    write_atomically(&dir.join("key.pem"), id.key_pem().as_bytes());
    write_atomically(&dir.join("cert-chain.pem"), id.cert_pem().as_bytes());
}

/// An Istio workload certificate (server and client use) for `spiffe`, issued by `ca`.
fn workload(ca: &Ca, spiffe: &str) -> Issued {
    ca.issue(&Leaf::workload(spiffe))
}

/// A Kubeflow-style pair: a route to a mesh service, and a DestinationRule that says the service
/// speaks Istio mutual TLS.
fn config(sidecar_port: u16) -> String {
    gateway(80, &["*"])
        + "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: ['*']\n  gateways: [gw]\n  http:\n  - route: [{destination: {host: reviews.default.svc.cluster.local, port: {number: 9080}}}]\n---\n"
        + &format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: reviews}}\nspec:\n  hosts: [reviews.default.svc.cluster.local]\n  location: MESH_INTERNAL\n  ports: [{{number: 9080, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{http: {sidecar_port}}}}}]\n---\n")
        + "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec:\n  host: reviews.default.svc.cluster.local\n  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}\n"
}

/// A mesh CA, and a directory holding the gateway's identity issued by it.
fn mesh_ca() -> (Ca, TempDir) {
    let (ca, identity) = (Ca::new("mesh root"), TempDir::new());
    write_identity(&identity.0, &ca, &workload(&ca, GATEWAY_ID));
    (ca, identity)
}

struct Mesh {
    ca: Ca,
    identity: TempDir,
    sidecar: TlsUpstream,
    gw: TestGateway,
}

/// A mesh CA, the gateway's identity from it, and a sidecar presenting `sidecar_cert` that
/// requires a client certificate from the mesh CA.
async fn mesh(sidecar_cert: impl Fn(&Ca) -> Issued) -> Mesh {
    let (ca, identity) = mesh_ca();
    let sidecar = TlsUpstream::start_with("reviews", &sidecar_cert(&ca), Some(&ca.cert)).await;
    let setup = Setup { identity_dir: Some(identity.0.clone()), ..Setup::default() };
    let gw = TestGateway::start_with(&config(sidecar.addr.port()), setup);
    Mesh { ca, identity, sidecar, gw }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_mutual_presents_the_workload_identity_to_the_sidecar() {
    let m = mesh(|ca| workload(ca, REVIEWS_ID)).await;
    let r = get(&http1(), &m.gw.url(80), "bookinfo.example", "/reviews/1", &[]).await;
    assert_eq!((r.status, r.upstream()), (200, Some("reviews")), "{}", r.body);
    let clients = m.sidecar.clients.lock().unwrap().clone();
    assert_eq!(clients.first().map(|(uris, _)| uris.clone()), Some(vec![GATEWAY_ID.to_string()]));
    let sni = m.sidecar.sni.lock().unwrap().clone();
    assert_eq!(sni.first().map(String::as_str), Some("outbound_.9080_._.reviews.default.svc.cluster.local"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_certificate_from_another_ca_is_refused() {
    let m = mesh(|_| workload(&Ca::new("another mesh"), REVIEWS_ID)).await;
    let r = get(&http1(), &m.gw.url(80), "bookinfo.example", "/reviews/1", &[]).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("TLS_error"), "{}", r.body);
    assert_eq!(m.sidecar.served.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_outside_the_trust_domain_is_refused() {
    let m = mesh(|ca| workload(ca, "spiffe://other.domain/ns/default/sa/bookinfo-reviews")).await;
    let r = get(&http1(), &m.gw.url(80), "bookinfo.example", "/reviews/1", &[]).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(m.sidecar.served.load(Ordering::Relaxed), 0, "no request reaches an upstream outside the mesh");
}

#[test]
fn istio_mutual_without_an_identity_names_the_flag_that_gives_one() {
    let built = conf::build_str("kubeflow.yaml", &config(15000), &conf::Selection::default());
    let text = built.diagnostics.to_string();
    assert!(!built.is_valid());
    assert!(
        text.contains("ISTIO_MUTUAL needs the mesh's workload identity") && text.contains("--identity-dir DIR"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_identity_is_presented_without_losing_a_request() {
    let m = mesh(|ca| workload(ca, REVIEWS_ID)).await;
    let (url, stop, sent, failed) =
        (m.gw.url(80), Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop, sent, failed) = (url.clone(), stop.clone(), sent.clone(), failed.clone());
            tokio::spawn(async move {
                let client = http1();
                while !stop.load(Ordering::Relaxed) {
                    let r = get(&client, &url, "bookinfo.example", "/reviews/1", &[]).await;
                    sent.fetch_add(1, Ordering::Relaxed);
                    if r.status != 200 {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rotated = workload(&m.ca, GATEWAY_ID);
    write_identity(&m.identity.0, &m.ca, &rotated);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !m.sidecar.clients.lock().unwrap().iter().any(|(_, serial)| *serial == rotated.serial()) {
        assert!(Instant::now() < deadline, "the sidecar never saw the rotated identity");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("identity rotation under load: {sent} requests, {failed} failed");
    assert!(sent > 50, "too little load to tell: {sent}");
    assert_eq!(failed, 0, "requests lost while the identity rotated ({sent} sent)");
}

/// An east-west style server: `ISTIO_MUTUAL` on 15443 in front of `ledger`, open to
/// payments/checkout and to namespace billing only.
fn istio_mutual_server(ledger_port: u16) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: eastwest}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 15443, name: https-mesh, protocol: HTTPS}}
    hosts: ['*']
    tls: {{mode: ISTIO_MUTUAL}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: ledger}}
spec:
  hosts: ['*']
  gateways: [eastwest]
  http:
  - route: [{{destination: {{host: ledger.internal}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ledger}}
spec:
  hosts: [ledger.internal]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {ledger_port}}}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: mesh-peers}}
spec:
  action: ALLOW
  rules:
  - from: [{{source: {{principals: [cluster.local/ns/payments/sa/checkout]}}}}]
  - from: [{{source: {{namespaces: [billing]}}}}]
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_istio_mutual_server_admits_mesh_peers_by_principal_and_namespace() {
    let (ca, identity) = mesh_ca();
    let ledger = Upstream::start("ledger").await;
    let setup = Setup { identity_dir: Some(identity.0.clone()), ..Setup::default() };
    let gw = TestGateway::start_with(&istio_mutual_server(ledger.port()), setup);
    let addr = gw.addr(15443);
    // A sidecar checks the gateway's SPIFFE identity, not a host name.
    let peer = |who: &Issued| {
        Client { verify_host: false, ..Client::to("ledger.payments.svc.cluster.local", &ca.cert) }.with_cert(who)
    };
    let status = |c: Client| async move { c.get(addr, "ledger.internal", "/", &[]).await.map(|r| r.status) };

    let checkout = workload(&ca, "spiffe://cluster.local/ns/payments/sa/checkout");
    assert_eq!(status(peer(&checkout)).await, Ok(200), "the principal");
    let invoices = workload(&ca, "spiffe://cluster.local/ns/billing/sa/invoices");
    assert_eq!(status(peer(&invoices)).await, Ok(200), "the namespace");
    let refunds = workload(&ca, "spiffe://cluster.local/ns/payments/sa/refunds");
    assert_eq!(status(peer(&refunds)).await, Ok(403), "neither");
    assert_eq!(ledger.seen().len(), 2);
    let xfcc = ledger.seen()[0].header("x-forwarded-client-cert").unwrap_or_default().to_string();
    assert!(xfcc.contains("URI=spiffe://cluster.local/ns/payments/sa/checkout"), "{xfcc}");

    // The gateway presents its workload identity, issued by the mesh CA.
    let conn = peer(&checkout).connect(addr).await.unwrap();
    let presented = conn.stream.ssl().peer_certificate().unwrap();
    let uris: Vec<String> =
        presented.subject_alt_names().unwrap().iter().filter_map(|n| n.uri().map(str::to_string)).collect();
    assert_eq!(uris, [GATEWAY_ID]);

    // Only mesh peers complete the handshake.
    let plain = Client { verify_host: false, ..Client::to("ledger.payments.svc.cluster.local", &ca.cert) };
    let outsider = workload(&Ca::new("another mesh"), "spiffe://cluster.local/ns/payments/sa/checkout");
    let foreign = workload(&ca, "spiffe://other.domain/ns/payments/sa/checkout");
    for (client, who) in
        [(plain, "no certificate"), (peer(&outsider), "another CA"), (peer(&foreign), "another trust domain")]
    {
        let why = client.refusal(addr).await;
        assert!(!why.is_empty(), "{who}");
    }
    assert_eq!(ledger.seen().len(), 2, "no refused peer reached the upstream");
}

/// A ServiceEntry `name` in `namespace` for `<name>.<namespace>.svc.cluster.local` at
/// `location`, port 9080, with `endpoints` (`(port, labels in YAML flow)`) on 127.0.0.1.
fn service_entry(name: &str, namespace: &str, location: &str, endpoints: &[(u16, &str)]) -> String {
    let host = format!("{name}.{namespace}.svc.cluster.local");
    let endpoints: Vec<String> = endpoints
        .iter()
        .map(|(port, labels)| format!("{{address: 127.0.0.1, ports: {{http: {port}}}, labels: {labels}}}"))
        .collect();
    format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  hosts: [{host}]\n  location: {location}\n  ports: [{{number: 9080, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints: [{}]\n---\n", endpoints.join(", "))
}

fn peer_authentication(name: &str, namespace: &str, mode: &str) -> String {
    format!("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec: {{mtls: {{mode: {mode}}}}}\n---\n")
}

const MESH_WORKLOAD: &str = "{security.istio.io/tlsMode: istio}";

/// Routes `/<prefix>` to `<prefix>.<namespace>.svc.cluster.local:9080` for each `(prefix, namespace)`;
/// no DestinationRule sets TLS.
fn routes(to: &[(&str, &str)]) -> String {
    let http: String = to
        .iter()
        .map(|(prefix, ns)| format!("  - match: [{{uri: {{prefix: /{prefix}}}}}]\n    route: [{{destination: {{host: {prefix}.{ns}.svc.cluster.local}}}}]\n"))
        .collect();
    gateway(80, &["*"]) + &format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: routes}}\nspec:\n  hosts: ['*']\n  gateways: [gw]\n  http:\n{http}---\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_authentication_strict_reaches_mesh_workloads_with_automatic_mtls() {
    let (ca, identity) = mesh_ca();
    let sidecar = TlsUpstream::start_with("reviews-sidecar", &workload(&ca, REVIEWS_ID), Some(&ca.cert)).await;
    let (no_sidecar, external) = (Upstream::start("reviews-no-sidecar").await, Upstream::start("external").await);
    // One service, two endpoints: only the labelled one is a mesh workload (Istio's
    // transport-socket match on `tlsMode: istio`). A MESH_EXTERNAL service is never reached with
    // mesh mTLS, whatever its endpoints' labels.
    let yaml = routes(&[("reviews", "default"), ("external", "default")])
        + &service_entry(
            "reviews",
            "default",
            "MESH_INTERNAL",
            &[(sidecar.addr.port(), MESH_WORKLOAD), (no_sidecar.port(), "{}")],
        )
        + &service_entry("external", "default", "MESH_EXTERNAL", &[(external.port(), MESH_WORKLOAD)])
        + &peer_authentication("default", "istio-system", "STRICT");
    let setup = Setup { identity_dir: Some(identity.0.clone()), ..Setup::default() };
    let gw = TestGateway::start_with(&yaml, setup);
    for _ in 0..20 {
        let r = get(&http1(), &gw.url(80), "bookinfo.example", "/reviews/1", &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let through_mtls = sidecar.served.load(Ordering::Relaxed);
    assert!(through_mtls > 0 && !no_sidecar.seen().is_empty(), "both endpoints served: {through_mtls} over mTLS");
    assert_eq!(through_mtls + no_sidecar.seen().len(), 20);
    let clients = sidecar.clients.lock().unwrap().clone();
    assert!(clients.iter().all(|(uris, _)| uris == &[GATEWAY_ID.to_string()]), "{clients:?}");
    let sni = sidecar.sni.lock().unwrap().clone();
    assert_eq!(sni.first().map(String::as_str), Some("outbound_.9080_._.reviews.default.svc.cluster.local"));
    let r = get(&http1(), &gw.url(80), "bookinfo.example", "/external", &[]).await;
    assert_eq!((r.status, r.upstream()), (200, Some("external")), "MESH_EXTERNAL: plaintext");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_with_peer_authentication_disable_gets_plaintext() {
    let (_ca, identity) = mesh_ca();
    // A workload labelled as a mesh workload that speaks plaintext only.
    let legacy = Upstream::start("legacy").await;
    let yaml = routes(&[("legacy", "legacy")])
        + &service_entry("legacy", "legacy", "MESH_INTERNAL", &[(legacy.port(), MESH_WORKLOAD)])
        + &peer_authentication("default", "istio-system", "STRICT");
    let setup = || Setup { identity_dir: Some(identity.0.clone()), ..Setup::default() };
    let strict = TestGateway::start_with(&yaml, setup());
    let r = get(&http1(), &strict.url(80), "x", "/legacy", &[]).await;
    assert_eq!(r.status, 503, "mesh-wide STRICT: mutual TLS, which the plaintext workload cannot answer");
    let disabled = TestGateway::start_with(&(yaml + &peer_authentication("legacy", "legacy", "DISABLE")), setup());
    let r = get(&http1(), &disabled.url(80), "x", "/legacy", &[]).await;
    assert_eq!((r.status, r.upstream()), (200, Some("legacy")), "namespace DISABLE: plaintext");
}

#[test]
fn mesh_workloads_under_strict_without_an_identity_name_the_flag() {
    let yaml = routes(&[("reviews", "default")])
        + &service_entry("reviews", "default", "MESH_INTERNAL", &[(15000, MESH_WORKLOAD)]);
    let strict = conf::build_str(
        "strict.yaml",
        &(yaml.clone() + &peer_authentication("default", "istio-system", "STRICT")),
        &conf::Selection::default(),
    );
    let text = strict.diagnostics.to_string();
    assert!(!strict.is_valid(), "{text}");
    assert!(text.contains("whose PeerAuthentication mode is STRICT") && text.contains("--identity-dir DIR"), "{text}");
    let permissive = conf::build_str("permissive.yaml", &yaml, &conf::Selection::default());
    let text = permissive.diagnostics.to_string();
    assert!(permissive.is_valid(), "{text}");
    assert!(text.contains("without a workload identity they get plaintext, which PERMISSIVE accepts"), "{text}");
}

#[test]
fn mesh_config_enable_auto_mtls_false_sends_plaintext() {
    let yaml = routes(&[("reviews", "default")])
        + &service_entry("reviews", "default", "MESH_INTERNAL", &[(15000, MESH_WORKLOAD)]);
    let identity = TempDir::new();
    let mut sel = conf::Selection { identity_dir: Some(identity.0.clone()), ..conf::Selection::default() };
    let origination = |sel: &conf::Selection| {
        let built = conf::build_str("auto.yaml", &yaml, sel);
        built.table.clusters.iter().find(|c| c.host.starts_with("reviews.")).unwrap().policy.origination.clone()
    };
    assert!(origination(&sel).is_some_and(|o| o.auto), "automatic mTLS is on by default");
    conf::mesh::MeshConfig::parse("enableAutoMtls: false").unwrap().apply(&mut sel);
    assert!(origination(&sel).is_none());
}

#[test]
fn a_service_known_only_from_dns_under_strict_is_warned_about() {
    let yaml = routes(&[("reviews", "default")]) + &peer_authentication("default", "istio-system", "STRICT");
    let built = conf::build_str("dns.yaml", &yaml, &conf::Selection::default());
    let text = built.diagnostics.to_string();
    assert!(built.is_valid(), "{text}");
    assert!(
        text.contains(
            "namespace default is STRICT, but reviews.default.svc.cluster.local is reached through the cluster's DNS"
        ),
        "{text}"
    );
}

/// The expiry of `cert` in seconds since the Unix epoch, as the metric prints it.
fn expiry_of(cert: &openssl::x509::X509Ref) -> String {
    let left = openssl::asn1::Asn1Time::from_unix(0).unwrap().diff(cert.not_after()).unwrap();
    (i64::from(left.days) * 86_400 + i64::from(left.secs)).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_identity_expiry_is_exported_and_follows_rotation() {
    let m = mesh(|ca| workload(ca, REVIEWS_ID)).await;
    let series = |cert: &openssl::x509::X509Ref| {
        format!("pylon_workload_certificate_expiry_timestamp_seconds{{spiffe_id=\"{GATEWAY_ID}\"}} {}", expiry_of(cert))
    };
    let first = openssl::x509::X509::from_pem(&std::fs::read(m.identity.0.join("cert-chain.pem")).unwrap()).unwrap();
    let text = m.gw.metrics_when(|t| t.contains(&series(&first))).await;
    assert!(text.contains(&series(&first)), "{text}");
    // A shorter-lived certificate replaces it: the metric says so at the next scrape.
    let rotated = m.ca.issue(&Leaf { days: (-1, 30), ..Leaf::workload(GATEWAY_ID) });
    write_identity(&m.identity.0, &m.ca, &rotated);
    let text = m.gw.metrics_when(|t| t.contains(&series(&rotated.cert))).await;
    assert!(text.contains(&series(&rotated.cert)), "{text}");
}
