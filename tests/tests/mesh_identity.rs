//! The gateway in an Istio mesh: DestinationRule `ISTIO_MUTUAL` presents the workload identity
//! of `--identity-dir` (Istio's file-mounted certificates) to a "sidecar" that requires a client
//! certificate from the mesh CA, verifies the sidecar against the mesh root and its SPIFFE trust
//! domain, sends Istio's outbound SNI, and picks up a rotated identity without losing a request.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::certs::{write_atomically, Ca, Issued, Leaf};
use e2e::client::{get, http1};
use e2e::gateway::{Setup, TempDir};
use e2e::tls::TlsUpstream;
use e2e::yaml::gateway;
use e2e::TestGateway;

const GATEWAY_ID: &str = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account";
const REVIEWS_ID: &str = "spiffe://cluster.local/ns/default/sa/bookinfo-reviews";

/// The gateway's identity issued by `ca`, written as Istio mounts it.
fn write_identity(dir: &std::path::Path, ca: &Ca, id: &Issued) {
    write_atomically(&dir.join("root-cert.pem"), ca.pem().as_bytes());
    write_atomically(&dir.join("key.pem"), id.key_pem().as_bytes());
    write_atomically(&dir.join("cert-chain.pem"), id.cert_pem().as_bytes());
}

fn workload(ca: &Ca, spiffe: &str, client: bool) -> Issued {
    let leaf = if client { Leaf::client("workload") } else { Leaf::server(&[]) };
    ca.issue(&Leaf { uris: vec![spiffe.to_string()], ..leaf })
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
    write_identity(&identity.0, &ca, &workload(&ca, GATEWAY_ID, true));
    let sidecar = TlsUpstream::start_with("reviews", &sidecar_cert(&ca), Some(&ca.cert)).await;
    let setup = Setup { identity_dir: Some(identity.0.clone()), ..Setup::default() };
    let gw = TestGateway::start_with(&config(sidecar.addr.port()), setup);
    Mesh { ca, identity, sidecar, gw }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_mutual_presents_the_workload_identity_to_the_sidecar() {
    let m = mesh(|ca| workload(ca, REVIEWS_ID, false)).await;
    let r = get(&http1(), &m.gw.url(80), "bookinfo.example", "/reviews/1", &[]).await;
    assert_eq!((r.status, r.upstream()), (200, Some("reviews")), "{}", r.body);
    let clients = m.sidecar.clients.lock().unwrap().clone();
    assert_eq!(clients.first().map(|(uris, _)| uris.clone()), Some(vec![GATEWAY_ID.to_string()]));
    let sni = m.sidecar.sni.lock().unwrap().clone();
    assert_eq!(sni.first().map(String::as_str), Some("outbound_.9080_._.reviews.default.svc.cluster.local"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_certificate_from_another_ca_is_refused() {
    let m = mesh(|_| workload(&Ca::new("another mesh"), REVIEWS_ID, false)).await;
    let r = get(&http1(), &m.gw.url(80), "bookinfo.example", "/reviews/1", &[]).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("TLS_error"), "{}", r.body);
    assert_eq!(m.sidecar.served.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_outside_the_trust_domain_is_refused() {
    let m = mesh(|ca| workload(ca, "spiffe://other.domain/ns/default/sa/bookinfo-reviews", false)).await;
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
    let m = mesh(|ca| workload(ca, REVIEWS_ID, false)).await;
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
    let rotated = workload(&m.ca, GATEWAY_ID, true);
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
