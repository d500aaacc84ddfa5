//! TLS origination credentials (DestinationRule `tls.credentialName`): the client certificate and
//! the CA come from the credential, and a credential without a CA never falls back to the system's
//! CAs (Istio fetches `<name>-cacert` and the cluster fails until it exists).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use conf::table::PemSource;

fn build(yaml: &str, creds: &std::path::Path) -> conf::RouteTable {
    let dir = std::env::temp_dir().join(format!("pylon-origination-{}-{}", std::process::id(), yaml.len()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.yaml"), yaml).unwrap();
    let sel = conf::Selection { credentials_dir: Some(creds.to_path_buf()), ..conf::Selection::default() };
    let built = conf::build(std::slice::from_ref(&dir), &sel).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(built.is_valid(), "{}", built.diagnostics);
    built.table
}

const CONFIG: &str = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: ['*']\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: api}\nspec:\n  hosts: [api.example.com]\n  ports: [{number: 443, name: https, protocol: HTTPS}]\n  resolution: STATIC\n  endpoints: [{address: 127.0.0.1}]\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: api}\nspec:\n  host: api.example.com\n  trafficPolicy:\n    tls: {mode: MUTUAL, credentialName: api-client}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\nspec:\n  hosts: ['*']\n  gateways: [gw]\n  http:\n  - route: [{destination: {host: api.example.com, port: {number: 443}}}]\n";

#[test]
fn a_credential_without_a_ca_waits_for_one_instead_of_trusting_the_system() {
    let creds = std::env::temp_dir().join(format!("pylon-creds-{}", std::process::id()));
    let cred = creds.join("api-client");
    std::fs::create_dir_all(&cred).unwrap();
    std::fs::write(cred.join("tls.crt"), "cert").unwrap();
    std::fs::write(cred.join("tls.key"), "key").unwrap();
    let table = build(CONFIG, &creds);
    let tls = table.clusters[0].policy.origination.clone().expect("origination");
    assert_eq!(tls.ca, Some(PemSource::Missing { credential: "api-client".into() }));
    assert_eq!(tls.client_certificate.unwrap().cert, PemSource::File { path: cred.join("tls.crt") });
    std::fs::write(cred.join("ca.crt"), "ca").unwrap();
    let table = build(CONFIG, &creds);
    let tls = table.clusters[0].policy.origination.clone().expect("origination");
    assert_eq!(tls.ca, Some(PemSource::File { path: cred.join("ca.crt") }));
    let _ = std::fs::remove_dir_all(&creds);
}
