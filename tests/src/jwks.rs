//! JSON Web Tokens made at test time: signing keys (RSA 2048, P-256) with their public JWKs, tokens
//! with any claims, and a JSON Web Key Set served over HTTPS on loopback by a CA the gateway trusts
//! (`SSL_CERT_FILE`, set once per test binary by [`trust`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_openssl::SslStream;

use crate::certs::{Ca, Issued, Leaf};

/// A private signing key and its public JWK.
pub struct SigningKey {
    /// The JWS algorithm it signs with.
    pub alg: Algorithm,
    /// The `kid` of its JWK and of the tokens it signs.
    pub kid: String,
    /// Its public JWK.
    pub jwk: Value,
    encoding: EncodingKey,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl SigningKey {
    /// A fresh RSA 2048 key for RS256.
    pub fn rsa(kid: &str) -> SigningKey {
        let rsa = Rsa::generate(2048).unwrap();
        let jwk = json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
            "n": b64(&rsa.n().to_vec()), "e": b64(&rsa.e().to_vec())});
        let pem = PKey::from_rsa(rsa).unwrap().private_key_to_pem_pkcs8().unwrap();
        SigningKey { alg: Algorithm::RS256, kid: kid.into(), jwk, encoding: EncodingKey::from_rsa_pem(&pem).unwrap() }
    }

    /// A fresh P-256 key for ES256 (its JWK names no `alg`, as many issuers publish them).
    pub fn ec(kid: &str) -> SigningKey {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let ec = EcKey::generate(&group).unwrap();
        let (mut x, mut y) = (BigNum::new().unwrap(), BigNum::new().unwrap());
        ec.public_key().affine_coordinates(&group, &mut x, &mut y, &mut BigNumContext::new().unwrap()).unwrap();
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid,
            "x": b64(&x.to_vec_padded(32).unwrap()), "y": b64(&y.to_vec_padded(32).unwrap())});
        let pem = PKey::from_ec_key(ec).unwrap().private_key_to_pem_pkcs8().unwrap();
        SigningKey { alg: Algorithm::ES256, kid: kid.into(), jwk, encoding: EncodingKey::from_ec_pem(&pem).unwrap() }
    }

    /// A token carrying `claims`, signed with this key, its header naming this key's `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// The JSON Web Key Set document of `keys`.
pub fn jwks(keys: &[&SigningKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// The test binary's JWKS trust: a CA whose certificate file is `SSL_CERT_FILE`, and a server
/// certificate it issued for `localhost`, `127.0.0.1` and `::1`.
pub struct Trust {
    /// The CA.
    pub ca: Ca,
    /// The certificate the JWKS servers present.
    pub server: Issued,
    /// The CA certificate file (`SSL_CERT_FILE`).
    pub ca_file: PathBuf,
}

/// Makes the CA and points `SSL_CERT_FILE` at it, once per test binary. Call it first in every
/// test of a binary that fetches keys over HTTPS, before any gateway starts: the variable is then
/// set while no other thread of the binary reads the environment, and every `Connector` the
/// gateways build afterwards loads this CA as the default store.
pub fn trust() -> &'static Trust {
    static TRUST: OnceLock<Trust> = OnceLock::new();
    TRUST.get_or_init(|| {
        let ca = Ca::new("Pylon JWKS test CA");
        let mut leaf = Leaf::server(&["localhost"]);
        leaf.ips = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        let server = ca.issue(&leaf);
        remove_stale_trust_dirs();
        let dir = std::env::temp_dir().join(format!("{TRUST_DIR_PREFIX}{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_file = ca.write(&dir, "ca.pem");
        std::env::set_var("SSL_CERT_FILE", &ca_file);
        Trust { ca, server, ca_file }
    })
}

/// The CA file lives in `<temp>/pylon-e2e-jwks-ca-<pid>/` for the whole run (the static is never
/// dropped).
const TRUST_DIR_PREFIX: &str = "pylon-e2e-jwks-ca-";

/// Removes the CA folders of earlier test binaries that have exited.
fn remove_stale_trust_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(TRUST_DIR_PREFIX) else { continue };
        if pid.parse::<u32>().is_ok() && !std::path::Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// An HTTPS server for one JWKS document at `/jwks.json` (404 elsewhere) that counts its fetches.
pub struct JwksServer {
    /// Where it listens.
    pub addr: SocketAddr,
    body: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    /// Serves `body` with the certificate of [`trust`].
    pub async fn start(body: &str) -> JwksServer {
        Self::start_with(body, &trust().server).await
    }

    /// Serves `body` presenting `cert`, on the address `localhost` resolves to first (the one
    /// the gateway's fetcher connects to).
    pub async fn start_with(body: &str, cert: &Issued) -> JwksServer {
        let local = tokio::net::lookup_host(("localhost", 0)).await.unwrap().next().expect("localhost resolves");
        let listener = TcpListener::bind(local).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = Arc::new(crate::tls::acceptor(cert, None));
        let (body, fetches) = (Arc::new(Mutex::new(body.to_string())), Arc::new(AtomicUsize::new(0)));
        let (b, f) = (body.clone(), fetches.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let (acceptor, b, f) = (acceptor.clone(), b.clone(), f.clone());
                tokio::spawn(async move {
                    let mut tls = SslStream::new(openssl::ssl::Ssl::new(acceptor.context()).unwrap(), tcp).unwrap();
                    if Pin::new(&mut tls).accept().await.is_err() {
                        return;
                    }
                    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let found = req.uri().path() == "/jwks.json";
                        if found {
                            f.fetch_add(1, Ordering::SeqCst);
                        }
                        let text = if found { b.lock().unwrap().clone() } else { String::new() };
                        let resp = hyper::Response::builder()
                            .status(if found { 200 } else { 404 })
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(text)))
                            .unwrap();
                        async move { Ok::<_, Infallible>(resp) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        JwksServer { addr, body, fetches, task }
    }

    /// `https://localhost:<port>/jwks.json`.
    pub fn uri(&self) -> String {
        format!("https://localhost:{}/jwks.json", self.addr.port())
    }

    /// Serves `body` from now on.
    pub fn serve(&self, body: &str) {
        *self.body.lock().unwrap() = body.to_string();
    }

    /// How many times `/jwks.json` was fetched.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
