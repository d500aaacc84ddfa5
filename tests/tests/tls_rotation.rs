//! Certificate rotation without a restart: the gateway watches its certificate files; new
//! handshakes get the new certificate, open connections keep working, no request is lost, and a
//! bad new certificate (unparsable, expired, not matching its key) is refused while the old one
//! keeps serving.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::certs::{write_atomically, Ca, Leaf};
use e2e::gateway::TempDir;
use e2e::tls::Client;
use e2e::yaml::service;
use e2e::{TestGateway, Upstream};

fn config(cert: &std::path::Path, key: &std::path::Path, up: &Upstream) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: 443, name: https, protocol: HTTPS}}\n    hosts: [a.example.com]\n    tls: {{mode: SIMPLE, serverCertificate: {}, privateKey: {}}}\n---\n",
        cert.display(),
        key.display()
    ) + &service("app", "app.internal", &[up])
        + "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\nspec:\n  hosts: [a.example.com]\n  gateways: [gw]\n  http:\n  - route: [{destination: {host: app.internal}}]\n---\n"
}

/// Polls new handshakes until one presents the certificate with `serial` (10 s at most).
async fn wait_for_serial(client: &Client, addr: std::net::SocketAddr, serial: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = client.connect(addr).await.map(|c| c.server_serial());
        if seen.as_deref() == Ok(serial) {
            return;
        }
        assert!(Instant::now() < deadline, "the new certificate was not served: {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_reaches_new_handshakes_without_losing_a_request() {
    let ca = Ca::new("test-ca");
    let dir = TempDir::new();
    let old = ca.issue(&Leaf::server(&["a.example.com"]));
    let (cert, key) = old.write(&dir.0, "site");
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&config(&cert, &key, &up));
    let addr = gw.addr(443);
    let client = Client { alpn: vec!["http/1.1"], ..Client::to("a.example.com", &ca.cert) };

    // A kept-alive connection made with the old certificate.
    let open = client.connect(addr).await.unwrap();
    assert_eq!(open.server_serial(), old.serial());
    let (first, kept) = e2e::tls::request(open, "a.example.com", "/before", &[]).await.unwrap();
    assert_eq!(first.status, 200);
    let mut kept = kept.unwrap();

    // Load: new connections, one request each, while the certificate changes twice.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (client, stop, ok, failed) = (client.clone(), stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client.get(addr, "a.example.com", "/load", &[]).await {
                    Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let second = ca.issue(&Leaf::server(&["a.example.com"]));
    second.write(&dir.0, "site");
    wait_for_serial(&client, addr, &second.serial()).await;
    let third = ca.issue(&Leaf::server(&["a.example.com"]));
    third.write(&dir.0, "site");
    wait_for_serial(&client, addr, &third.serial()).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("requests during two rotations: {ok} served, {failed} lost");
    assert_eq!(failed, 0, "requests lost during rotation");
    assert!(ok > 0);

    // The connection opened before the rotations still serves.
    let r = kept.get("a.example.com", "/after", &[]).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(up.last().path, "/after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_rotated_certificate_is_refused_and_the_old_one_keeps_serving() {
    let ca = Ca::new("test-ca");
    let dir = TempDir::new();
    let good = ca.issue(&Leaf::server(&["a.example.com"]));
    let (cert, key) = good.write(&dir.0, "site");
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&config(&cert, &key, &up));
    let addr = gw.addr(443);
    let client = Client::to("a.example.com", &ca.cert);
    let store = gw.running.state.snapshot().tls.clone();
    let expired = ca.issue(&Leaf { days: (-30, -1), ..Leaf::server(&["a.example.com"]) });
    let stranger = ca.issue(&Leaf::server(&["a.example.com"]));
    // (what is written, the reason the refusal must give)
    let cases: [(&str, Vec<u8>, &str); 3] = [
        (
            "unparsable",
            b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n".to_vec(),
            "not a PEM certificate",
        ),
        ("expired", expired.cert_pem().into_bytes(), "expired"),
        ("a stranger's certificate", stranger.cert_pem().into_bytes(), "the private key does not match"),
    ];
    for (what, bytes, reason) in cases {
        // The expired certificate comes with its own key: only its dates are wrong.
        let key_pem = if what == "expired" { expired.key_pem() } else { good.key_pem() };
        write_atomically(&key, key_pem.as_bytes());
        write_atomically(&cert, &bytes);
        let written = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(10);
        let refused = |problems: &[(String, e2e::gateway::MaterialError)]| {
            problems.iter().any(|(_, e)| e.why.contains(reason) && e.place == cert.display().to_string())
        };
        while !store.refreshed_since(written) || !refused(&store.problems()) {
            assert!(Instant::now() < deadline, "{what}: not refused as {reason:?}: {:?}", store.problems());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let conn = client.connect(addr).await.unwrap();
        assert_eq!(conn.server_serial(), good.serial(), "{what}: the old certificate keeps serving");
    }
    // Putting a good certificate back is taken at once.
    let fixed = ca.issue(&Leaf::server(&["a.example.com"]));
    fixed.write(&dir.0, "site");
    wait_for_serial(&client, addr, &fixed.serial()).await;
    assert!(store.problems().is_empty(), "{:?}", store.problems());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_crl_refuses_a_revoked_client_from_the_next_handshake() {
    let ca = Ca::new("test-ca");
    let dir = TempDir::new();
    let (cert, key) = ca.issue(&Leaf::server(&["a.example.com"])).write(&dir.0, "site");
    let ca_file = ca.write(&dir.0, "ca.crt");
    let crl = dir.0.join("ca.crl");
    write_atomically(&crl, ca.crl(&[], 30).as_bytes());
    let up = Upstream::start("app").await;
    let yaml = config(&cert, &key, &up).replace(
        "tls: {mode: SIMPLE,",
        &format!("tls: {{mode: MUTUAL, caCertificates: {}, caCrl: {},", ca_file.display(), crl.display()),
    );
    let gw = TestGateway::start(&yaml);
    let addr = gw.addr(443);
    let client_cert = ca.issue(&Leaf::client("soon-revoked"));
    let client = Client { alpn: vec!["http/1.1"], ..Client::to("a.example.com", &ca.cert).with_cert(&client_cert) };
    let (r, kept) = e2e::tls::request(client.connect(addr).await.unwrap(), "a.example.com", "/", &[]).await.unwrap();
    assert_eq!(r.status, 200);
    let mut kept = kept.unwrap();
    write_atomically(&crl, ca.crl(&[&client_cert], 30).as_bytes());
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.get(addr, "a.example.com", "/", &[]).await.is_ok() {
        assert!(Instant::now() < deadline, "the revocation was not applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Verification happens at the handshake: the connection made before keeps serving.
    assert_eq!(kept.get("a.example.com", "/still", &[]).await.unwrap().status, 200);
}
