//! TLS for the tests: an OpenSSL client with full control of SNI, ALPN, client certificate and
//! versions, HTTP/1.1 and HTTP/2 over it with hyper; an HTTPS echo upstream; and a TCP upstream
//! that says its name and echoes what it receives.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use openssl::ssl::{SslAcceptor, SslConnector, SslMethod, SslVerifyMode, SslVersion};
use openssl::x509::X509;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_openssl::SslStream;

use crate::certs::Issued;
use crate::client::Reply;

/// How the test client connects.
#[derive(Clone, Default)]
pub struct Client {
    /// SNI to send (none: no SNI extension).
    pub sni: Option<String>,
    /// The CA the server certificate must chain to (none: not verified).
    pub ca: Option<X509>,
    /// Check the certificate's name against the SNI.
    pub verify_host: bool,
    /// A client certificate.
    pub cert: Option<Issued>,
    /// ALPN protocols to offer.
    pub alpn: Vec<&'static str>,
    /// The highest TLS version to offer.
    pub max_version: Option<SslVersion>,
    /// Signature algorithms to offer (OpenSSL list syntax).
    pub sigalgs: Option<&'static str>,
    /// Key-exchange groups to offer (OpenSSL list syntax).
    pub groups: Option<&'static str>,
    /// TLS 1.2 and older cipher list (OpenSSL syntax; `DEFAULT:@SECLEVEL=0` lets OpenSSL 3 offer
    /// TLS 1.0 and 1.1 at all).
    pub ciphers: Option<&'static str>,
}

/// A finished handshake.
pub struct Connected {
    /// The TLS stream.
    pub stream: SslStream<TcpStream>,
}

impl Connected {
    /// The server certificate.
    pub fn server_cert(&self) -> X509 {
        self.stream.ssl().peer_certificate().expect("a server certificate")
    }

    /// The server certificate's serial, decimal.
    pub fn server_serial(&self) -> String {
        self.server_cert().serial_number().to_bn().unwrap().to_dec_str().unwrap().to_string()
    }

    /// The negotiated ALPN protocol.
    pub fn alpn(&self) -> Option<String> {
        self.stream.ssl().selected_alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned())
    }

    /// The negotiated TLS version (`TLSv1.3`).
    pub fn version(&self) -> String {
        self.stream.ssl().version_str().to_string()
    }
}

impl Client {
    /// A client sending `sni`, verifying the server against `ca` and the SNI.
    pub fn to(sni: &str, ca: &X509) -> Client {
        Client { sni: Some(sni.to_string()), ca: Some(ca.clone()), verify_host: true, ..Client::default() }
    }

    /// The same client presenting `cert`.
    pub fn with_cert(mut self, cert: &Issued) -> Client {
        self.cert = Some(cert.clone());
        self
    }

    /// Connects to `addr` and hand-shakes; `Err` with OpenSSL's reason when it fails.
    pub async fn connect(&self, addr: SocketAddr) -> Result<Connected, String> {
        let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
        match &self.ca {
            Some(ca) => {
                b.cert_store_mut().add_cert(ca.clone()).map_err(|e| e.to_string())?;
                b.set_verify(SslVerifyMode::PEER);
            }
            None => b.set_verify(SslVerifyMode::NONE),
        }
        if let Some(c) = &self.cert {
            b.set_certificate(&c.cert).map_err(|e| e.to_string())?;
            b.set_private_key(&c.key).map_err(|e| e.to_string())?;
        }
        if !self.alpn.is_empty() {
            let wire: Vec<u8> =
                self.alpn.iter().flat_map(|p| std::iter::once(p.len() as u8).chain(p.bytes())).collect();
            b.set_alpn_protos(&wire).map_err(|e| e.to_string())?;
        }
        b.set_max_proto_version(self.max_version).map_err(|e| e.to_string())?;
        if let Some(list) = self.sigalgs {
            b.set_sigalgs_list(list).map_err(|e| e.to_string())?;
        }
        if let Some(list) = self.ciphers {
            b.set_cipher_list(list).map_err(|e| e.to_string())?;
        }
        if let Some(list) = self.groups {
            b.set_groups_list(list).map_err(|e| e.to_string())?;
        }
        let mut config = b.build().configure().map_err(|e| e.to_string())?;
        config.set_use_server_name_indication(self.sni.is_some());
        config.set_verify_hostname(self.verify_host && self.sni.is_some());
        let ssl = config.into_ssl(self.sni.as_deref().unwrap_or("no-sni.invalid")).map_err(|e| e.to_string())?;
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut stream = SslStream::new(ssl, tcp).map_err(|e| e.to_string())?;
        Pin::new(&mut stream).connect().await.map_err(|e| e.to_string())?;
        // TLS 1.3 servers reject a client certificate after the handshake: a read shows it.
        Ok(Connected { stream })
    }

    /// Why the server refuses this client: the handshake error, or (TLS 1.3, where the server
    /// judges the client's certificate after the client's side of the handshake) the alert that
    /// ends the connection. Panics when the server accepts the client.
    pub async fn refusal(&self, addr: SocketAddr) -> String {
        let mut conn = match self.connect(addr).await {
            Ok(conn) => conn,
            Err(e) => return e,
        };
        let mut byte = [0u8; 1];
        match tokio::time::timeout(std::time::Duration::from_secs(5), conn.stream.read(&mut byte)).await {
            Ok(Err(e)) => e.to_string(),
            other => panic!("the server accepted the client: {other:?}"),
        }
    }

    /// One GET on a new connection, over HTTP/2 when ALPN chose it.
    pub async fn get(
        &self,
        addr: SocketAddr,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Reply, String> {
        let conn = self.connect(addr).await?;
        request(conn, host, path, headers).await.map(|(r, _)| r)
    }
}

/// Sends one GET on `conn`; returns the reply and, for HTTP/1.1, the connection for more.
pub async fn request(
    conn: Connected,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(Reply, Option<Http1>), String> {
    let h2 = conn.alpn().as_deref() == Some("h2");
    let io = TokioIo::new(conn.stream);
    if h2 {
        let (mut send, c) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.map_err(|e| e.to_string())?;
        tokio::spawn(c);
        let uri = format!("https://{host}{path}");
        let reply = send_on(&mut send, build(&uri, None, headers)).await?;
        return Ok((reply, None));
    }
    let (send, c) = hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
    tokio::spawn(c);
    let mut h1 = Http1(send);
    let reply = h1.get(host, path, headers).await?;
    Ok((reply, Some(h1)))
}

/// A kept-alive HTTP/1.1 connection.
pub struct Http1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>);

impl Http1 {
    /// Another GET on the same connection.
    pub async fn get(&mut self, host: &str, path: &str, headers: &[(&str, &str)]) -> Result<Reply, String> {
        self.0.ready().await.map_err(|e| e.to_string())?;
        let req = build(path, Some(host), headers);
        let resp = self.0.send_request(req).await.map_err(|e| e.to_string())?;
        reply(resp).await
    }
}

fn build(uri: &str, host: Option<&str>, headers: &[(&str, &str)]) -> hyper::Request<Empty<Bytes>> {
    let mut b = hyper::Request::get(uri);
    if let Some(h) = host {
        b = b.header("host", h);
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Empty::new()).unwrap()
}

async fn send_on(
    send: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    req: hyper::Request<Empty<Bytes>>,
) -> Result<Reply, String> {
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    reply(resp).await
}

async fn reply(resp: hyper::Response<hyper::body::Incoming>) -> Result<Reply, String> {
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Reply { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

/// An acceptor presenting `cert`, offering ALPN h2 and http/1.1; with `client_ca`, it requires a
/// client certificate issued by it.
pub fn acceptor(cert: &Issued, client_ca: Option<&X509>) -> SslAcceptor {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
    b.set_certificate(&cert.cert).unwrap();
    b.set_private_key(&cert.key).unwrap();
    if let Some(ca) = client_ca {
        b.cert_store_mut().add_cert(ca.clone()).unwrap();
        b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    }
    b.set_alpn_select_callback(|_, offered| {
        openssl::ssl::select_next_proto(b"\x02h2\x08http/1.1", offered).ok_or(openssl::ssl::AlpnError::NOACK)
    });
    b.build()
}

/// A client certificate an upstream saw: its URI SANs and its serial number (decimal).
pub type ClientCert = (Vec<String>, String);

/// An HTTPS echo upstream (the same report as [`crate::Upstream`]) presenting `cert`.
pub struct TlsUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Requests served.
    pub served: Arc<AtomicUsize>,
    /// TLS handshakes completed.
    pub handshakes: Arc<AtomicUsize>,
    /// The SNI of each handshake (empty: none sent).
    pub sni: Arc<std::sync::Mutex<Vec<String>>>,
    /// The client certificate of each handshake that presented one: its URI SANs and serial.
    pub clients: Arc<std::sync::Mutex<Vec<ClientCert>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsUpstream {
    /// Starts it on `addr` (a loopback address standing for a public host's).
    pub async fn start_on(name: &str, cert: &Issued, addr: SocketAddr) -> TlsUpstream {
        Self::serve(name, cert, None, TcpListener::bind(addr).await.unwrap())
    }

    /// Starts it on an ephemeral loopback port.
    pub async fn start(name: &str, cert: &Issued) -> TlsUpstream {
        Self::start_with(name, cert, None).await
    }

    /// Starts it requiring a client certificate issued by `client_ca`, if given.
    pub async fn start_with(name: &str, cert: &Issued, client_ca: Option<&X509>) -> TlsUpstream {
        Self::serve(name, cert, client_ca, TcpListener::bind("127.0.0.1:0").await.unwrap())
    }

    fn serve(name: &str, cert: &Issued, client_ca: Option<&X509>, listener: TcpListener) -> TlsUpstream {
        let addr = listener.local_addr().unwrap();
        let acceptor = Arc::new(acceptor(cert, client_ca));
        let (served, handshakes) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let sni: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let clients: Arc<std::sync::Mutex<Vec<ClientCert>>> = Arc::default();
        let (name, s, h, n, c) = (name.to_string(), served.clone(), handshakes.clone(), sni.clone(), clients.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let (acceptor, name, s, h, n, c) =
                    (acceptor.clone(), name.clone(), s.clone(), h.clone(), n.clone(), c.clone());
                tokio::spawn(async move {
                    let ssl = openssl::ssl::Ssl::new(acceptor.context()).unwrap();
                    let mut tls = SslStream::new(ssl, tcp).unwrap();
                    if Pin::new(&mut tls).accept().await.is_err() {
                        return;
                    }
                    h.fetch_add(1, Ordering::Relaxed);
                    let server_name = tls.ssl().servername(openssl::ssl::NameType::HOST_NAME).unwrap_or("");
                    n.lock().unwrap().push(server_name.to_string());
                    if let Some(cert) = tls.ssl().peer_certificate() {
                        let uris = cert
                            .subject_alt_names()
                            .map(|names| names.iter().filter_map(|n| n.uri().map(str::to_string)).collect())
                            .unwrap_or_default();
                        let serial = cert.serial_number().to_bn().unwrap().to_dec_str().unwrap().to_string();
                        c.lock().unwrap().push((uris, serial));
                    }
                    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        s.fetch_add(1, Ordering::Relaxed);
                        let body = format!("{name} {} {:?}", req.uri().path(), req.version());
                        let headers: Vec<String> =
                            req.headers().iter().map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or(""))).collect();
                        let resp = hyper::Response::builder()
                            .header("x-upstream", name.as_str())
                            .header("x-seen-headers", headers.join(" | "))
                            .body(http_body_util::Full::new(Bytes::from(body)))
                            .unwrap();
                        async move { Ok::<_, std::convert::Infallible>(resp) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        TlsUpstream { addr, served, handshakes, sni, clients, task }
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TCP upstream: sends `<name>\n` on every connection, then echoes what it receives until the
/// client closes its side, then closes.
pub struct TcpUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Connections accepted.
    pub connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpUpstream {
    /// Starts it on an ephemeral loopback port.
    pub async fn start(name: &str) -> TcpUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let (name, c) = (name.to_string(), connections.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut tcp, _)) = listener.accept().await else { continue };
                c.fetch_add(1, Ordering::Relaxed);
                let name = name.clone();
                tokio::spawn(async move {
                    let _ = tcp.write_all(format!("{name}\n").as_bytes()).await;
                    let mut buf = [0u8; 4096];
                    loop {
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if tcp.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = tcp.shutdown().await;
                });
            }
        });
        TcpUpstream { addr, connections, task }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for TcpUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Opens a plain TCP connection, sends `data`, half-closes, and reads everything until the peer
/// closes; panics when the peer has not closed within 5 s.
pub async fn tcp_exchange(addr: SocketAddr, data: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(data).await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
    assert!(closed.is_ok(), "the connection was not closed within 5 s; got {:?}", String::from_utf8_lossy(&out));
    String::from_utf8_lossy(&out).into_owned()
}
