//! Client certificates at a terminating server (MUTUAL, OPTIONAL_MUTUAL) and the
//! `x-forwarded-client-cert` header Istio's gateway sets from them (SANITIZE_SET): a client's own
//! XFCC never reaches the upstream.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::path::Path;

use e2e::certs::{Ca, Issued, Leaf};
use e2e::client::{get, http1};
use e2e::gateway::TempDir;
use e2e::tls::Client;
use e2e::yaml::service;
use e2e::{TestGateway, Upstream};
use openssl::hash::MessageDigest;

const XFCC: &str = "x-forwarded-client-cert";

struct Pki {
    ca: Ca,
    dir: TempDir,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    ca_file: std::path::PathBuf,
}

fn pki() -> Pki {
    let ca = Ca::new("test-ca");
    let dir = TempDir::new();
    let (cert, key) = ca.issue(&Leaf::server(&["*.example.com"])).write(&dir.0, "server");
    let ca_file = ca.write(&dir.0, "ca.crt");
    Pki { ca, dir, cert, key, ca_file }
}

/// A gateway with an HTTPS server per `(host, tls settings)` on port 443 and a plaintext port 80,
/// everything routed to `up`.
fn gateway(p: &Pki, servers: &[(&str, String)], up: &Upstream) -> TestGateway {
    let mut yaml = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: ['*']\n".to_string();
    for (i, (host, tls)) in servers.iter().enumerate() {
        yaml += &format!(
            "  - port: {{number: 443, name: https-{i}, protocol: HTTPS}}\n    hosts: [{host}]\n    tls: {{serverCertificate: {}, privateKey: {}, {tls}}}\n",
            p.cert.display(),
            p.key.display()
        );
    }
    yaml += "---\n";
    yaml += &service("app", "app.internal", &[up]);
    yaml += "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\nspec:\n  hosts: ['*']\n  gateways: [gw]\n  http:\n  - route: [{destination: {host: app.internal}}]\n---\n";
    TestGateway::start(&yaml)
}

fn mutual(ca_file: &Path, extra: &str) -> String {
    format!("mode: MUTUAL, caCertificates: {}{extra}", ca_file.display())
}

fn sha256_hex(cert: &Issued) -> String {
    cert.cert.digest(MessageDigest::sha256()).unwrap().iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_accepts_a_trusted_certificate_and_sets_xfcc_from_it() {
    let p = pki();
    let up = Upstream::start("app").await;
    let gw = gateway(&p, &[("m.example.com", mutual(&p.ca_file, ""))], &up);
    let client_cert = p.ca.issue(&Leaf {
        uris: vec!["spiffe://example.org/ns/a/sa/b".into()],
        dns: vec!["client.example.org".into()],
        ..Leaf::client("client-a")
    });
    let c = Client::to("m.example.com", &p.ca.cert).with_cert(&client_cert);
    let r = c.get(gw.addr(443), "m.example.com", "/", &[(XFCC, "Hash=forged;Subject=\"CN=admin\"")]).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let xfcc = up.last().header(XFCC).unwrap().to_string();
    let pem = client_cert
        .cert_pem()
        .replace('\n', "%0A")
        .replace(' ', "%20")
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    assert_eq!(
        xfcc,
        format!(
            "Hash={};Cert=\"{pem}\";Subject=\"O=Example,CN=client-a\";URI=spiffe://example.org/ns/a/sa/b;DNS=client.example.org",
            sha256_hex(&client_cert)
        )
    );
    assert_eq!(up.seen().iter().filter(|s| s.headers.iter().any(|(k, _)| k == XFCC)).count(), 1);
    assert_eq!(
        up.last().headers.iter().filter(|(k, _)| k == XFCC).count(),
        1,
        "the forged value is replaced, not kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_refuses_untrusted_revoked_and_missing_certificates() {
    let p = pki();
    let good = p.ca.issue(&Leaf::client("good"));
    let revoked = p.ca.issue(&Leaf::client("revoked"));
    let crl = p.dir.0.join("ca.crl");
    std::fs::write(&crl, p.ca.crl(&[&revoked], 30)).unwrap();
    let stranger = Ca::new("other-ca").issue(&Leaf::client("stranger"));
    let up = Upstream::start("app").await;
    let settings = mutual(&p.ca_file, &format!(", caCrl: {}", crl.display()));
    let gw = gateway(&p, &[("m.example.com", settings)], &up);
    let addr = gw.addr(443);
    let client = || Client::to("m.example.com", &p.ca.cert);
    let ok = client().with_cert(&good).get(addr, "m.example.com", "/", &[]).await.unwrap();
    assert_eq!(ok.status, 200);
    // With TLS 1.3 the server's verdict on a client certificate arrives after the client's side
    // of the handshake, so the refusal shows on the first request.
    let refused = client().with_cert(&stranger).refusal(addr).await;
    assert!(refused.contains("unknown ca"), "untrusted CA: {refused}");
    // A revoked certificate fails Pylon's own check: OpenSSL reports it as a handshake failure.
    let refused = client().with_cert(&revoked).refusal(addr).await;
    assert!(refused.contains("handshake failure"), "revoked: {refused}");
    let refused = client().refusal(addr).await;
    assert!(refused.contains("certificate required"), "no certificate: {refused}");
    assert_eq!(up.seen().len(), 1, "only the trusted, unrevoked client got through");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_mutual_serves_clients_with_and_without_a_certificate() {
    let p = pki();
    let up = Upstream::start("app").await;
    let settings = format!("mode: OPTIONAL_MUTUAL, caCertificates: {}", p.ca_file.display());
    let gw = gateway(&p, &[("o.example.com", settings)], &up);
    let addr = gw.addr(443);
    let anonymous = Client::to("o.example.com", &p.ca.cert);
    let r = anonymous.get(addr, "o.example.com", "/", &[(XFCC, "Hash=forged")]).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(up.last().header(XFCC), None, "no certificate: a client's XFCC is removed");
    let cert = p.ca.issue(&Leaf::client("known"));
    let r = anonymous.clone().with_cert(&cert).get(addr, "o.example.com", "/", &[]).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(up.last().header(XFCC).unwrap().starts_with(&format!("Hash={};", sha256_hex(&cert))));
    let stranger = Ca::new("other-ca").issue(&Leaf::client("stranger"));
    let refused = anonymous.with_cert(&stranger).refusal(addr).await;
    assert!(refused.contains("unknown ca"), "a presented certificate is still verified: {refused}");
    assert_eq!(up.seen().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_xfcc_is_removed_on_plaintext_and_simple_connections() {
    let p = pki();
    let up = Upstream::start("app").await;
    let gw = gateway(&p, &[("s.example.com", "mode: SIMPLE".to_string())], &up);
    let forged = [(XFCC, "By=spiffe://x;Hash=00;Subject=\"CN=admin\"")];
    let r = get(&http1(), &gw.url(80), "s.example.com", "/", &forged).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.last().header(XFCC), None, "plaintext");
    let r = Client::to("s.example.com", &p.ca.cert).get(gw.addr(443), "s.example.com", "/", &forged).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(up.last().header(XFCC), None, "SIMPLE TLS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_alt_names_and_certificate_pins_narrow_the_accepted_clients() {
    let p = pki();
    let alice = p.ca.issue(&Leaf { uris: vec!["spiffe://example.org/alice".into()], ..Leaf::client("alice") });
    let bob = p.ca.issue(&Leaf { uris: vec!["spiffe://example.org/bob".into()], ..Leaf::client("bob") });
    let up = Upstream::start("app").await;
    let sans = mutual(&p.ca_file, ", subjectAltNames: ['spiffe://example.org/alice']");
    let pinned = mutual(&p.ca_file, &format!(", verifyCertificateHash: ['{}']", sha256_hex(&bob).to_uppercase()));
    let gw = gateway(&p, &[("sans.example.com", sans), ("pin.example.com", pinned)], &up);
    let addr = gw.addr(443);
    let to = |sni: &str, who: &Issued| Client::to(sni, &p.ca.cert).with_cert(who);
    assert_eq!(to("sans.example.com", &alice).get(addr, "sans.example.com", "/", &[]).await.unwrap().status, 200);
    let refused = to("sans.example.com", &bob).refusal(addr).await;
    assert!(refused.contains("handshake failure"), "SAN not listed: {refused}");
    assert_eq!(to("pin.example.com", &bob).get(addr, "pin.example.com", "/", &[]).await.unwrap().status, 200);
    let refused = to("pin.example.com", &alice).refusal(addr).await;
    assert!(refused.contains("handshake failure"), "hash not pinned: {refused}");
    assert_eq!(up.seen().len(), 2, "only alice on the SAN server and bob on the pinned one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_mutual_with_subject_alt_names_requires_a_certificate() {
    let p = pki();
    let up = Upstream::start("app").await;
    let settings = format!(
        "mode: OPTIONAL_MUTUAL, caCertificates: {}, subjectAltNames: [client.example.org]",
        p.ca_file.display()
    );
    let gw = gateway(&p, &[("o.example.com", settings)], &up);
    // Envoy asks for a certificate, whatever the mode, once it has SANs to match.
    let refused = Client::to("o.example.com", &p.ca.cert).refusal(gw.addr(443)).await;
    assert!(refused.contains("certificate required"), "{refused}");
    assert!(up.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_skip_verify_accepts_an_untrusted_certificate_and_reports_it() {
    let p = pki();
    let up = Upstream::start("app").await;
    let gw = gateway(&p, &[("i.example.com", mutual(&p.ca_file, ", insecureSkipVerify: true"))], &up);
    let stranger = Ca::new("other-ca").issue(&Leaf::client("stranger"));
    let r =
        Client::to("i.example.com", &p.ca.cert).with_cert(&stranger).get(gw.addr(443), "i.example.com", "/", &[]).await;
    assert_eq!(r.unwrap().status, 200);
    let xfcc = up.last().header(XFCC).unwrap().to_string();
    assert!(xfcc.starts_with(&format!("Hash={};", sha256_hex(&stranger))), "{xfcc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_spki_pin_accepts_only_the_pinned_key() {
    let p = pki();
    let pinned = p.ca.issue(&Leaf::client("pinned"));
    let other = p.ca.issue(&Leaf::client("other"));
    let spki = {
        use base64::Engine;
        let der = pinned.cert.public_key().unwrap().public_key_to_der().unwrap();
        base64::engine::general_purpose::STANDARD.encode(openssl::sha::sha256(&der))
    };
    let up = Upstream::start("app").await;
    let gw =
        gateway(&p, &[("s.example.com", mutual(&p.ca_file, &format!(", verifyCertificateSpki: ['{spki}']")))], &up);
    let client = Client::to("s.example.com", &p.ca.cert);
    let r = client.clone().with_cert(&pinned).get(gw.addr(443), "s.example.com", "/", &[]).await.unwrap();
    assert_eq!(r.status, 200);
    let refused = client.with_cert(&other).refusal(gw.addr(443)).await;
    assert!(refused.contains("handshake failure"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_bundle_with_only_the_issuing_intermediate_is_enough() {
    let p = pki();
    let intermediate = p.ca.intermediate("issuing-ca");
    let only_intermediate = intermediate.write(&p.dir.0, "intermediate.crt");
    let up = Upstream::start("app").await;
    let gw = gateway(&p, &[("m.example.com", mutual(&only_intermediate, ""))], &up);
    let cert = intermediate.issue(&Leaf::client("leaf"));
    let r = Client::to("m.example.com", &p.ca.cert).with_cert(&cert).get(gw.addr(443), "m.example.com", "/", &[]).await;
    assert_eq!(r.unwrap().status, 200, "the intermediate is a trust anchor, as in Envoy");
    let refused = Client::to("m.example.com", &p.ca.cert)
        .with_cert(&p.ca.issue(&Leaf::client("root-issued")))
        .refusal(gw.addr(443))
        .await;
    assert!(refused.contains("unknown ca"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutual_credential_that_appears_later_brings_its_ca() {
    let p = pki();
    let creds = TempDir::new();
    let up = Upstream::start("app").await;
    let yaml = format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: 443, name: https, protocol: HTTPS}}\n    hosts: [m.example.com]\n    tls: {{mode: MUTUAL, credentialName: late}}\n---\n{}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs}}\nspec:\n  hosts: ['*']\n  gateways: [gw]\n  http:\n  - route: [{{destination: {{host: app.internal}}}}]\n---\n",
        service("app", "app.internal", &[&up])
    );
    let gw = TestGateway::start_with(
        &yaml,
        e2e::gateway::Setup { credentials_dir: Some(creds.0.clone()), ..Default::default() },
    );
    let client = Client::to("m.example.com", &p.ca.cert).with_cert(&p.ca.issue(&Leaf::client("c")));
    assert!(client.connect(gw.addr(443)).await.is_err(), "no credential yet");
    let dir = creds.0.join("late");
    std::fs::create_dir_all(&dir).unwrap();
    p.ca.write(&dir, "ca.crt");
    p.ca.issue(&Leaf::server(&["m.example.com"])).write_credential(&dir);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match client.get(gw.addr(443), "m.example.com", "/", &[]).await {
            Ok(r) => break assert_eq!(r.status, 200),
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "the credential and its CA were not picked up: {e}")
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
