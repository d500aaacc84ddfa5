//! TLS termination at the gateway: the ClientHello's SNI chooses the Gateway server (exact name,
//! longest wildcard, `*`; a miss refuses the handshake), each server presents its own
//! certificate and routes only its own hosts, with Envoy's defaults for versions, ciphers and
//! ALPN (istio.io/latest/docs/reference/config/networking/gateway/#ServerTLSSettings; Envoy's
//! `DownstreamTlsContext` defaults).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use e2e::certs::{Ca, KeyType, Leaf};
use e2e::client::raw;
use e2e::gateway::{Setup, TempDir};
use e2e::tls::Client;
use e2e::yaml::service;
use e2e::{TestGateway, Upstream};
use openssl::ssl::SslVersion;

const SIMPLE: &str = "mode: SIMPLE";

const GW: &str = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n";

/// A VirtualService for `hosts` on `gw` sending everything to `dest`.
fn vs(name: &str, hosts: &[&str], dest: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\nspec:\n  hosts: {hosts:?}\n  gateways: [gw]\n  http:\n  - route: [{{destination: {{host: {dest}}}}}]\n---\n"
    )
}

/// An HTTPS server block with the given certificate files and other `tls` settings (`mode: SIMPLE`).
fn https_server(name: &str, hosts: &[&str], cert: &std::path::Path, key: &std::path::Path, settings: &str) -> String {
    format!(
        "  - port: {{number: 443, name: {name}, protocol: HTTPS}}\n    hosts: {hosts:?}\n    tls: {{serverCertificate: {}, privateKey: {}, {settings}}}\n",
        cert.display(),
        key.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_termination_serves_http1_and_http2_with_the_servers_certificate() {
    let ca = Ca::new("test-ca");
    let dir = TempDir::new();
    let site = ca.issue(&Leaf::server(&["a.example.com"]));
    let (cert, key) = site.write(&dir.0, "a");
    let up = Upstream::start("app").await;
    let yaml = format!("{GW}{}---\n", https_server("https", &["a.example.com"], &cert, &key, SIMPLE))
        + &service("app", "app.internal", &[&up])
        + &vs("vs", &["a.example.com"], "app.internal");
    let gw = TestGateway::start(&yaml);
    let addr = gw.addr(443);

    let h1 = Client { alpn: vec!["http/1.1"], ..Client::to("a.example.com", &ca.cert) };
    let conn = h1.connect(addr).await.unwrap();
    assert_eq!(conn.server_serial(), site.serial());
    assert_eq!(conn.version(), "TLSv1.3");
    let (r, _) = e2e::tls::request(conn, "a.example.com", "/hello", &[("x-forwarded-proto", "http")]).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.upstream(), Some("app"));
    let seen = up.last();
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"), "the client's value is not trusted");
    assert_eq!(seen.version, "HTTP/1.1");

    let h2 = Client { alpn: vec!["h2", "http/1.1"], ..Client::to("a.example.com", &ca.cert) };
    let conn = h2.connect(addr).await.unwrap();
    assert_eq!(conn.alpn().as_deref(), Some("h2"), "HTTPS servers offer h2 first");
    let (r, _) = e2e::tls::request(conn, "a.example.com", "/h2", &[]).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(up.last().path, "/h2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_with_two_certificates_share_one_port() {
    let ca = Ca::new("test-ca");
    let creds = TempDir::new();
    let a = ca.issue(&Leaf::server(&["a.example.com"]));
    let b = ca.issue(&Leaf::server(&["b.example.com"]));
    a.write_credential(&creds.0.join("a-cred"));
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: b-cred}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}\n  tls.key: |\n{}\n---\n",
        indent(&b.cert_pem()),
        indent(&b.key_pem())
    );
    let (ua, ub) = (Upstream::start("a").await, Upstream::start("b").await);
    let servers = "  - port: {number: 443, name: https-a, protocol: HTTPS}\n    hosts: [a.example.com]\n    tls: {mode: SIMPLE, credentialName: a-cred}\n  - port: {number: 443, name: https-b, protocol: HTTPS}\n    hosts: [b.example.com]\n    tls: {mode: SIMPLE, credentialName: b-cred}\n---\n";
    let yaml = format!("{GW}{servers}")
        + &secret
        + &service("a", "a.internal", &[&ua])
        + &service("b", "b.internal", &[&ub])
        + &vs("va", &["a.example.com"], "a.internal")
        + &vs("vb", &["b.example.com"], "b.internal");
    let gw = TestGateway::start_with(&yaml, Setup { credentials_dir: Some(creds.0.clone()), ..Setup::default() });
    let addr = gw.addr(443);
    let conn = Client::to("a.example.com", &ca.cert).connect(addr).await.unwrap();
    assert_eq!(conn.server_serial(), a.serial());
    let conn = Client::to("b.example.com", &ca.cert).connect(addr).await.unwrap();
    assert_eq!(conn.server_serial(), b.serial());
    let r = Client::to("b.example.com", &ca.cert).get(addr, "b.example.com", "/", &[]).await.unwrap();
    assert_eq!(r.upstream(), Some("b"));
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exact_server_wins_over_a_wildcard_server_and_a_miss_is_refused() {
    let ca = Ca::new("test-ca");
    let dir = TempDir::new();
    let wild = ca.issue(&Leaf::server(&["*.example.com"]));
    let exact = ca.issue(&Leaf::server(&["api.example.com"]));
    let (wc, wk) = wild.write(&dir.0, "wild");
    let (ec, ek) = exact.write(&dir.0, "exact");
    let up = Upstream::start("app").await;
    let yaml = format!(
        "{GW}{}{}---\n",
        https_server("https-wild", &["*.example.com"], &wc, &wk, SIMPLE),
        https_server("https-api", &["api.example.com"], &ec, &ek, SIMPLE)
    ) + &service("app", "app.internal", &[&up])
        + &vs("vs", &["*.example.com"], "app.internal");
    let gw = TestGateway::start(&yaml);
    let addr = gw.addr(443);
    let serial = |sni: &'static str| {
        let client = Client { verify_host: false, ..Client::to(sni, &ca.cert) };
        async move { client.connect(addr).await.map(|c| c.server_serial()) }
    };
    assert_eq!(serial("api.example.com").await.unwrap(), exact.serial());
    assert_eq!(serial("www.example.com").await.unwrap(), wild.serial());
    assert_eq!(serial("x.y.example.com").await.unwrap(), wild.serial(), "a wildcard server covers deeper names");
    assert!(serial("example.org").await.is_err(), "no server for the SNI: handshake refused");
    let no_sni = Client { sni: None, ..Client::to("unused", &ca.cert) };
    assert!(no_sni.connect(addr).await.is_err(), "no SNI and no `*` server: refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_star_server_takes_connections_without_sni() {
    let ca = Ca::new("test-ca");
    let dir = TempDir::new();
    let any = ca.issue(&Leaf::server(&["gateway.example.com"]));
    let (c, k) = any.write(&dir.0, "any");
    let up = Upstream::start("app").await;
    let yaml = format!("{GW}{}---\n", https_server("https", &["*"], &c, &k, SIMPLE))
        + &service("app", "app.internal", &[&up])
        + &vs("vs", &["*"], "app.internal");
    let gw = TestGateway::start(&yaml);
    let no_sni = Client { sni: None, ..Client::to("unused", &ca.cert) };
    let r = no_sni.get(gw.addr(443), "anything.example.org", "/", &[]).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_of_another_server_on_the_port_gets_404() {
    let ca = Ca::new("test-ca");
    let dir = TempDir::new();
    let shared = ca.issue(&Leaf::server(&["a.example.com", "b.example.com"]));
    let (c, k) = shared.write(&dir.0, "shared");
    let (ua, ub) = (Upstream::start("a").await, Upstream::start("b").await);
    let yaml = format!(
        "{GW}{}{}---\n",
        https_server("https-a", &["a.example.com"], &c, &k, SIMPLE),
        https_server("https-b", &["b.example.com"], &c, &k, SIMPLE)
    ) + &service("a", "a.internal", &[&ua])
        + &service("b", "b.internal", &[&ub])
        + &vs("va", &["a.example.com"], "a.internal")
        + &vs("vb", &["b.example.com"], "b.internal");
    let gw = TestGateway::start(&yaml);
    // HTTP/2 connection coalescing: SNI chose server a; a request for b stays within a's table.
    let client = Client { alpn: vec!["h2"], ..Client::to("a.example.com", &ca.cert) };
    let r = client.get(gw.addr(443), "b.example.com", "/", &[]).await.unwrap();
    assert_eq!(r.status, 404);
    assert!(ub.seen().is_empty());
    let r = client.get(gw.addr(443), "a.example.com", "/", &[]).await.unwrap();
    assert_eq!(r.upstream(), Some("a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_versions_follow_the_server_settings() {
    let ca = Ca::new("test-ca");
    let dir = TempDir::new();
    let site = ca.issue(&Leaf::server(&["a.example.com", "b.example.com", "c.example.com"]));
    let (c, k) = site.write(&dir.0, "site");
    let up = Upstream::start("app").await;
    let old_ciphers = "mode: SIMPLE, minProtocolVersion: TLSV1_1, cipherSuites: [ECDHE-ECDSA-AES128-SHA]";
    let yaml = format!(
        "{GW}{}{}{}---\n",
        https_server("https-a", &["a.example.com"], &c, &k, SIMPLE),
        https_server("https-b", &["b.example.com"], &c, &k, "mode: SIMPLE, minProtocolVersion: TLSV1_3"),
        https_server("https-c", &["c.example.com"], &c, &k, old_ciphers)
    ) + &service("app", "app.internal", &[&up])
        + &vs("vs", &["a.example.com", "b.example.com", "c.example.com"], "app.internal");
    let gw = TestGateway::start(&yaml);
    let addr = gw.addr(443);
    // OpenSSL 3 offers TLS 1.1 only at security level 0.
    let tls11 = |sni| Client {
        max_version: Some(SslVersion::TLS1_1),
        ciphers: Some("DEFAULT:@SECLEVEL=0"),
        ..Client::to(sni, &ca.cert)
    };
    assert!(tls11("a.example.com").connect(addr).await.is_err(), "TLS 1.1 is below the default minimum (1.2)");
    let old = tls11("c.example.com").connect(addr).await.unwrap();
    assert_eq!(old.version(), "TLSv1.1", "server c asks for TLS 1.1 at least");
    let tls12 = Client { max_version: Some(SslVersion::TLS1_2), ..Client::to("a.example.com", &ca.cert) };
    assert_eq!(tls12.connect(addr).await.unwrap().version(), "TLSv1.2");
    let tls12_b = Client { max_version: Some(SslVersion::TLS1_2), ..Client::to("b.example.com", &ca.cert) };
    assert!(tls12_b.connect(addr).await.is_err(), "server b asks for TLS 1.3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_and_ecdsa_certificates_are_chosen_by_what_the_client_supports() {
    let ca = Ca::new("test-ca");
    let dir = TempDir::new();
    let rsa = ca.issue(&Leaf { key: KeyType::Rsa, ..Leaf::server(&["a.example.com"]) });
    let ec = ca.issue(&Leaf::server(&["a.example.com"]));
    let (rc, rk) = rsa.write(&dir.0, "rsa");
    let (ecc, eck) = ec.write(&dir.0, "ec");
    let up = Upstream::start("app").await;
    let server = format!(
        "  - port: {{number: 443, name: https, protocol: HTTPS}}\n    hosts: [a.example.com]\n    tls:\n      mode: SIMPLE\n      tlsCertificates:\n      - {{serverCertificate: {}, privateKey: {}}}\n      - {{serverCertificate: {}, privateKey: {}}}\n---\n",
        rc.display(), rk.display(), ecc.display(), eck.display()
    );
    let yaml = format!("{GW}{server}")
        + &service("app", "app.internal", &[&up])
        + &vs("vs", &["a.example.com"], "app.internal");
    let gw = TestGateway::start(&yaml);
    let addr = gw.addr(443);
    let only = |sigalgs: &'static str| Client { sigalgs: Some(sigalgs), ..Client::to("a.example.com", &ca.cert) };
    let got = only("RSA-PSS+SHA256:rsa_pss_rsae_sha256").connect(addr).await.unwrap();
    assert_eq!(got.server_serial(), rsa.serial(), "an RSA-only client gets the RSA certificate");
    let got = only("ECDSA+SHA256").connect(addr).await.unwrap();
    assert_eq!(got.server_serial(), ec.serial(), "an ECDSA-only client gets the ECDSA certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_credential_refuses_only_its_server_until_it_appears() {
    let ca = Ca::new("test-ca");
    let creds = TempDir::new();
    let a = ca.issue(&Leaf::server(&["a.example.com"]));
    let b = ca.issue(&Leaf::server(&["b.example.com"]));
    a.write_credential(&creds.0.join("a-cred"));
    let up = Upstream::start("app").await;
    let servers = "  - port: {number: 443, name: https-a, protocol: HTTPS}\n    hosts: [a.example.com]\n    tls: {mode: SIMPLE, credentialName: a-cred}\n  - port: {number: 443, name: https-b, protocol: HTTPS}\n    hosts: [b.example.com]\n    tls: {mode: SIMPLE, credentialName: b-cred}\n---\n";
    let yaml = format!("{GW}{servers}")
        + &service("app", "app.internal", &[&up])
        + &vs("vs", &["a.example.com", "b.example.com"], "app.internal");
    let gw = TestGateway::start_with(&yaml, Setup { credentials_dir: Some(creds.0.clone()), ..Setup::default() });
    let addr = gw.addr(443);
    assert!(Client::to("b.example.com", &ca.cert).connect(addr).await.is_err(), "b has no certificate yet");
    assert!(Client::to("a.example.com", &ca.cert).connect(addr).await.is_ok(), "a is not affected");
    b.write_credential(&creds.0.join("b-cred"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Client::to("b.example.com", &ca.cert).connect(addr).await {
            Ok(c) => {
                assert_eq!(c.server_serial(), b.serial());
                break;
            }
            Err(e) if std::time::Instant::now() > deadline => panic!("b-cred was not picked up: {e}"),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_on_a_tls_port_is_closed_without_a_reply() {
    let ca = Ca::new("test-ca");
    let dir = TempDir::new();
    let (c, k) = ca.issue(&Leaf::server(&["a.example.com"])).write(&dir.0, "a");
    let up = Upstream::start("app").await;
    let yaml = format!("{GW}{}---\n", https_server("https", &["*"], &c, &k, SIMPLE))
        + &service("app", "app.internal", &[&up])
        + &vs("vs", &["*"], "app.internal");
    let gw = TestGateway::start(&yaml);
    let addr = gw.addr(443);
    let out = tokio::task::spawn_blocking(move || raw(addr, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")).await.unwrap();
    assert_eq!(out, "", "nothing is answered to plaintext on a TLS port");
}

/// Runs `openssl s_client` with `args` (stdin closed) and returns what it printed.
fn s_client(args: &[&str]) -> String {
    let out = std::process::Command::new("openssl")
        .arg("s_client")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the openssl command (apt-get install openssl)");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_resumes_only_on_the_server_that_issued_it() {
    let ca = Ca::new("test-ca");
    let dir = TempDir::new();
    let site = ca.issue(&Leaf::server(&["a.example.com", "b.example.com"]));
    let (c, k) = site.write(&dir.0, "site");
    let ca_file = ca.write(&dir.0, "ca.crt");
    let up = Upstream::start("app").await;
    let yaml = format!(
        "{GW}{}{}---\n",
        https_server("https-a", &["a.example.com"], &c, &k, SIMPLE),
        https_server(
            "https-b",
            &["b.example.com"],
            &c,
            &k,
            &format!("mode: MUTUAL, caCertificates: {}", ca_file.display())
        )
    ) + &service("app", "app.internal", &[&up])
        + &vs("vs", &["a.example.com", "b.example.com"], "app.internal");
    let gw = TestGateway::start(&yaml);
    let addr = gw.addr(443).to_string();
    let session = dir.0.join("session.pem");
    let session = session.to_str().unwrap().to_string();
    let result = tokio::task::spawn_blocking(move || {
        let first = s_client(&["-connect", &addr, "-servername", "a.example.com", "-tls1_2", "-sess_out", &session]);
        let again = s_client(&["-connect", &addr, "-servername", "a.example.com", "-tls1_2", "-sess_in", &session]);
        let other = s_client(&["-connect", &addr, "-servername", "b.example.com", "-tls1_2", "-sess_in", &session]);
        (first, again, other)
    })
    .await
    .unwrap();
    let (first, again, other) = result;
    assert!(first.contains("New, TLSv1.2"), "{first}");
    assert!(again.contains("Reused, TLSv1.2"), "the issuing server resumes: {again}");
    assert!(!other.contains("Reused"), "a session of server a must not resume on server b: {other}");
    assert!(
        other.contains("alert") || other.contains("error"),
        "server b still asks for a client certificate: {other}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cipher_suites_and_curves_restrict_what_is_negotiated() {
    let ca = Ca::new("test-ca");
    let dir = TempDir::new();
    let (c, k) = ca.issue(&Leaf::server(&["a.example.com", "b.example.com"])).write(&dir.0, "site");
    let up = Upstream::start("app").await;
    let yaml = format!(
        "{GW}{}{}---\n",
        https_server(
            "https-a",
            &["a.example.com"],
            &c,
            &k,
            "mode: SIMPLE, cipherSuites: [ECDHE-ECDSA-AES256-GCM-SHA384]"
        ),
        https_server("https-b", &["b.example.com"], &c, &k, "mode: SIMPLE, ecdhCurves: [P-384]")
    ) + &service("app", "app.internal", &[&up])
        + &vs("vs", &["a.example.com", "b.example.com"], "app.internal");
    let gw = TestGateway::start(&yaml);
    let addr = gw.addr(443);
    let tls12 = |sni: &'static str| Client { max_version: Some(SslVersion::TLS1_2), ..Client::to(sni, &ca.cert) };
    let conn = tls12("a.example.com").connect(addr).await.unwrap();
    assert_eq!(conn.stream.ssl().current_cipher().unwrap().name(), "ECDHE-ECDSA-AES256-GCM-SHA384");
    let x25519_only = Client { groups: Some("X25519"), ..Client::to("b.example.com", &ca.cert) };
    assert!(x25519_only.connect(addr).await.is_err(), "server b only takes P-384");
    let p384 = Client { groups: Some("P-384"), ..Client::to("b.example.com", &ca.cert) };
    assert!(p384.connect(addr).await.is_ok());
}
