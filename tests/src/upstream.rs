//! An in-process echo upstream: answers every request with a JSON report of what it received
//! (method, path, version, headers) and its own name, over HTTP/1 and h2c. A request with
//! `x-delay-ms: N` (or, as the Gateway API conformance echo server takes it, a `delay=1s` query
//! parameter) is answered after that long. An HTTP/1.1 `Upgrade: websocket` request is
//! answered 101, and the connection then echoes every byte back (what a proxy sees of a WebSocket).
//! A request can shape the answer: each `x-reply-header: name: value` is added to the response,
//! `x-reply-status: N` sets the status and `x-reply-body-bytes: N` replaces the report with N bytes.
//! When the reply carries an `etag` that the request's `if-none-match` names, the answer is 304.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpListener;

/// What an upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path with query.
    pub path: String,
    /// `HTTP/1.1`, `HTTP/2.0`...
    pub version: String,
    /// Headers, lower-case names, in order.
    pub headers: Vec<(String, String)>,
    /// The address the connection came from.
    pub peer: SocketAddr,
}

impl Seen {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A running echo upstream.
pub struct Upstream {
    /// Its name, echoed in every response.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    /// Starts an upstream on an ephemeral loopback port.
    pub async fn start(name: &str) -> Upstream {
        Self::start_on(name, "127.0.0.1:0").await.unwrap()
    }

    /// Starts an upstream on `addr`.
    pub async fn start_on(name: &str, addr: &str) -> std::io::Result<Upstream> {
        Self::serve(name, TcpListener::bind(addr).await?)
    }

    /// Starts an upstream on a listening socket made elsewhere (in another network namespace).
    pub fn start_with(name: &str, listener: std::net::TcpListener) -> std::io::Result<Upstream> {
        listener.set_nonblocking(true)?;
        Self::serve(name, TcpListener::from_std(listener)?)
    }

    fn serve(name: &str, listener: TcpListener) -> std::io::Result<Upstream> {
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (n, s, c) = (name.to_string(), seen.clone(), connections.clone());
        // Connections are tasks of the accept loop: dropping the upstream closes them too (an
        // upstream that dies, not one that only stops accepting).
        let task = tokio::spawn(async move {
            let mut open = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, peer)) = listener.accept().await else { continue };
                while open.try_join_next().is_some() {}
                c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (n, s) = (n.clone(), s.clone());
                open.spawn(async move {
                    let service = hyper::service::service_fn(move |req| answer(req, n.clone(), s.clone(), peer));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Ok(Upstream { name: name.to_string(), addr, seen, connections, task })
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The last request seen.
    pub fn last(&self) -> Seen {
        self.seen().last().cloned().expect("the upstream saw a request")
    }

    /// How many connections it accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    mut req: Request<Incoming>,
    name: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.headers().get("upgrade").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket")) {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let (mut read, mut write) = tokio::io::split(TokioIo::new(upgraded));
                let _ = tokio::io::copy(&mut read, &mut write).await;
            }
        });
        let resp = Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("x-upstream", name.as_str())
            .body(Full::new(Bytes::new()))
            .unwrap();
        return Ok(resp);
    }
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let s = Seen {
        method: req.method().to_string(),
        path: req.uri().path_and_query().map_or("/".to_string(), |p| p.to_string()),
        version: format!("{:?}", req.version()),
        headers: headers.clone(),
        peer,
    };
    let delay = s.header("x-delay-ms").and_then(|v| v.parse::<u64>().ok()).or_else(|| query_delay(&s.path));
    let body = json!({"upstream": name, "method": s.method, "path": s.path, "version": s.version, "headers": headers});
    seen.lock().unwrap().push(s);
    if let Some(ms) = delay {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    Ok(shaped(req.headers(), &name, body.to_string()))
}

/// The response a request asked for with `x-reply-*` headers (see the module documentation).
fn shaped(req: &hyper::HeaderMap, name: &str, report: String) -> Response<Full<Bytes>> {
    let value = |h: &str| req.get(h).and_then(|v| v.to_str().ok());
    let mut builder = Response::builder().header("content-type", "application/json").header("x-upstream", name);
    let mut etag = None;
    for v in req.get_all("x-reply-header").iter().filter_map(|v| v.to_str().ok()) {
        let Some((k, v)) = v.split_once(':') else { continue };
        if k.trim().eq_ignore_ascii_case("etag") {
            etag = Some(v.trim().to_string());
        }
        builder = builder.header(k.trim(), v.trim());
    }
    let not_modified = etag.is_some() && value("if-none-match") == etag.as_deref();
    let status = value("x-reply-status").and_then(|v| v.parse::<u16>().ok()).unwrap_or(200);
    let body = match value("x-reply-body-bytes").and_then(|v| v.parse::<usize>().ok()) {
        _ if not_modified => Bytes::new(),
        Some(n) => Bytes::from(vec![b'a'; n]),
        None => Bytes::from(report),
    };
    builder.status(if not_modified { 304 } else { status }).body(Full::new(body)).unwrap()
}

/// The `delay` query parameter in milliseconds (`500ms`, `1s`).
fn query_delay(path: &str) -> Option<u64> {
    let query = path.split_once('?')?.1;
    let value = query.split('&').find_map(|kv| kv.strip_prefix("delay="))?;
    match value.strip_suffix("ms") {
        Some(ms) => ms.parse().ok(),
        None => value.strip_suffix('s')?.parse::<u64>().ok().map(|s| s * 1000),
    }
}
