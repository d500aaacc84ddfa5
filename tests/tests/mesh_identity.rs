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

struct Mesh {
    ca: Ca,
    identity: TempDir,
    sidecar: TlsUpstream,
    gw: TestGateway,
}

/// A mesh CA, the gateway's identity from it, and a sidecar presenting `sidecar_cert` that
/// requires a client certificate from the mesh CA.
async fn mesh(sidecar_cert: impl Fn(&Ca) -> Issued) -> Mesh {
    let ca = Ca::new("mesh root");
    let identity = TempDir::new();
    write_identity(&identity.0, &ca, &workload(&ca, GATEWAY_ID));
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
    let ca = Ca::new("mesh root");
    let identity = TempDir::new();
    write_identity(&identity.0, &ca, &workload(&ca, GATEWAY_ID));
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
