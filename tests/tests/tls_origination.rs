//! TLS origination to upstreams (DestinationRule `tls` SIMPLE and MUTUAL): the upstream certificate
//! is verified against `caCertificates`, its SANs against `subjectAltNames` or else the SNI (the
//! request's host by default, Istio's auto SNI and SAN validation); a failure answers 503 and
//! nothing reaches the upstream (istio.io/latest/docs/reference/config/networking/destination-rule/#ClientTLSSettings).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;

use e2e::certs::{Ca, Leaf};
use e2e::client::{get, http1};
use e2e::gateway::TempDir;
use e2e::tls::TlsUpstream;
use e2e::yaml::gateway;
use e2e::TestGateway;

/// A STATIC ServiceEntry `host` on port 443 (`protocol`) at `addr`, a DestinationRule originating
/// TLS with `tls`, and a VirtualService sending `*` to it.
fn config(host: &str, protocol: &str, addr: SocketAddr, tls: &str) -> String {
    gateway(80, &["*"])
        + &format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: se}}\nspec:\n  hosts: [{host}]\n  ports: [{{number: 443, name: p, protocol: {protocol}}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{p: {}}}}}]\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: dr}}\nspec:\n  host: {host}\n  trafficPolicy:\n    tls: {{{tls}}}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs}}\nspec:\n  hosts: ['*']\n  gateways: [gw]\n  http:\n  - route: [{{destination: {{host: {host}, port: {{number: 443}}}}}}]\n---\n",
            addr.port()
        )
}

fn simple(ca: &Path, extra: &str) -> String {
    format!("mode: SIMPLE, caCertificates: {}{extra}", ca.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_origination_verifies_the_upstream_against_subject_alt_names() {
    let ca = Ca::new("upstream-ca");
    let dir = TempDir::new();
    let ca_file = ca.write(&dir.0, "ca.crt");
    let up = TlsUpstream::start("secure", &ca.issue(&Leaf::server(&["secure.internal"]))).await;
    let good = TestGateway::start(&config(
        "secure.internal",
        "HTTPS",
        up.addr,
        &simple(&ca_file, ", subjectAltNames: [secure.internal]"),
    ));
    let r = get(&http1(), &good.url(80), "www.example.com", "/pay", &[]).await;
    assert_eq!((r.status, r.upstream()), (200, Some("secure")), "{r:?}");
    assert_eq!(up.served.load(Ordering::Relaxed), 1);
    let bad = TestGateway::start(&config(
        "secure.internal",
        "HTTPS",
        up.addr,
        &simple(&ca_file, ", subjectAltNames: [billing.internal]"),
    ));
    let r = get(&http1(), &bad.url(80), "www.example.com", "/pay", &[]).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.body.starts_with("upstream connect error"), "{}", r.body);
    assert_eq!(up.served.load(Ordering::Relaxed), 1, "no request reached the upstream with the wrong SAN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_sni_or_sans_the_request_host_is_sent_and_verified() {
    let ca = Ca::new("upstream-ca");
    let dir = TempDir::new();
    let ca_file = ca.write(&dir.0, "ca.crt");
    let up = TlsUpstream::start("api", &ca.issue(&Leaf::server(&["api.example.com"]))).await;
    let gw = TestGateway::start(&config("api.internal", "HTTPS", up.addr, &simple(&ca_file, "")));
    let r = get(&http1(), &gw.url(80), "api.example.com", "/", &[]).await;
    assert_eq!(r.status, 200, "the Host is the SNI and matches the certificate: {r:?}");
    let r = get(&http1(), &gw.url(80), "other.example.com", "/", &[]).await;
    assert_eq!(r.status, 503, "the Host does not match the certificate: {r:?}");
    // An explicit sni is checked instead of the Host.
    let gw = TestGateway::start(&config("api.internal", "HTTPS", up.addr, &simple(&ca_file, ", sni: api.example.com")));
    let r = get(&http1(), &gw.url(80), "other.example.com", "/", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_upstream_is_refused_unless_verification_is_skipped() {
    let ca = Ca::new("upstream-ca");
    let other = Ca::new("other-ca");
    let dir = TempDir::new();
    let other_file = other.write(&dir.0, "other.crt");
    let up = TlsUpstream::start("secure", &ca.issue(&Leaf::server(&["secure.internal"]))).await;
    let gw = TestGateway::start(&config("secure.internal", "HTTPS", up.addr, &simple(&other_file, "")));
    assert_eq!(get(&http1(), &gw.url(80), "secure.internal", "/", &[]).await.status, 503);
    let gw = TestGateway::start(&config("secure.internal", "HTTPS", up.addr, "mode: SIMPLE, insecureSkipVerify: true"));
    assert_eq!(get(&http1(), &gw.url(80), "secure.internal", "/", &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_origination_presents_the_client_certificate() {
    let ca = Ca::new("mesh-ca");
    let dir = TempDir::new();
    let ca_file = ca.write(&dir.0, "ca.crt");
    let (cert, key) = ca.issue(&Leaf::client("gateway")).write(&dir.0, "client");
    let up = TlsUpstream::start_with("strict", &ca.issue(&Leaf::server(&["strict.internal"])), Some(&ca.cert)).await;
    let mutual = format!(
        "mode: MUTUAL, caCertificates: {}, clientCertificate: {}, privateKey: {}",
        ca_file.display(),
        cert.display(),
        key.display()
    );
    let gw = TestGateway::start(&config("strict.internal", "HTTPS", up.addr, &mutual));
    let r = get(&http1(), &gw.url(80), "strict.internal", "/", &[]).await;
    assert_eq!((r.status, r.upstream()), (200, Some("strict")), "{r:?}");
    let gw = TestGateway::start(&config("strict.internal", "HTTPS", up.addr, &simple(&ca_file, "")));
    assert_eq!(get(&http1(), &gw.url(80), "strict.internal", "/", &[]).await.status, 503, "no client certificate");
    // The same from a credential: tls.crt, tls.key and the CA that verifies the upstream.
    let creds = TempDir::new();
    ca.issue(&Leaf::client("gateway")).write_credential(&creds.0.join("client-cred"));
    ca.write(&creds.0.join("client-cred"), "ca.crt");
    let yaml = config("strict.internal", "HTTPS", up.addr, "mode: MUTUAL, credentialName: client-cred");
    let setup = e2e::gateway::Setup { credentials_dir: Some(creds.0.clone()), ..Default::default() };
    let gw = TestGateway::start_with(&yaml, setup);
    let r = get(&http1(), &gw.url(80), "strict.internal", "/", &[]).await;
    assert_eq!((r.status, r.upstream()), (200, Some("strict")), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_service_port_negotiates_h2_over_tls() {
    let ca = Ca::new("upstream-ca");
    let dir = TempDir::new();
    let ca_file = ca.write(&dir.0, "ca.crt");
    let up = TlsUpstream::start("grpc", &ca.issue(&Leaf::server(&["grpc.internal"]))).await;
    let gw = TestGateway::start(&config("grpc.internal", "HTTP2", up.addr, &simple(&ca_file, ", sni: grpc.internal")));
    let r = get(&http1(), &gw.url(80), "x", "/svc", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.ends_with("HTTP/2.0"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_a_host_gets_503_rather_than_an_unverified_connection() {
    let ca = Ca::new("upstream-ca");
    let dir = TempDir::new();
    let ca_file = ca.write(&dir.0, "ca.crt");
    let up = TlsUpstream::start("secure", &ca.issue(&Leaf::server(&["secure.internal"]))).await;
    let gw = TestGateway::start(&config("secure.internal", "HTTPS", up.addr, &simple(&ca_file, "")));
    // HTTP/1.0 without Host: no SNI to send and no name to verify. Pingora would skip
    // verification altogether for an empty SNI; Pylon refuses instead.
    let addr = gw.addr(80);
    let out = tokio::task::spawn_blocking(move || e2e::client::raw(addr, b"GET / HTTP/1.0\r\n\r\n")).await.unwrap();
    assert!(out.starts_with("HTTP/1.0 503") || out.starts_with("HTTP/1.1 503"), "{out}");
    assert_eq!(up.handshakes.load(Ordering::Relaxed), 0, "no connection to the upstream at all");
}
