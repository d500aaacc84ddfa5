//! The operator endpoints, each a tiny HTTP/1 server on its own address (answers close the
//! connection): readiness on `--status-addr`, Prometheus on `--metrics-addr`, and the admin
//! endpoints on `--admin-addr` (loopback by default, as Envoy's admin must be):
//!
//! | endpoint | what |
//! |---|---|
//! | `GET /healthz/ready` | 200 `ready`, 503 before and while draining |
//! | `GET /stats/prometheus` (also `/stats` on admin) | every metric |
//! | `GET /config_dump` | the compiled table as JSON; certificates and keys only by source |
//! | `GET /clusters` | every cluster with its endpoints, weights and requests in flight |
//! | `GET /listeners` | the open listeners: Gateway port, address, kind |
//! | `GET /reload` | how reloads went: generation, applied, refused, the last error |
//! | `POST /reload` | reload now: 200 with the generation, 400 with every diagnostic |

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::reload::{Plane, ReloadError};
use crate::telemetry::Telemetry;

const MAX_REQUEST: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// An answer: status line text, content type, body.
pub struct Reply(pub &'static str, pub &'static str, pub String);

impl Reply {
    fn text(status: &'static str, body: impl Into<String>) -> Self {
        Reply(status, "text/plain; charset=utf-8", body.into())
    }

    fn json(value: &serde_json::Value) -> Self {
        Reply("200 OK", "application/json", serde_json::to_string_pretty(value).unwrap_or_default() + "\n")
    }
}

/// Answers `(method, path, query)`.
pub type Handler = Arc<dyn Fn(String, String, String) -> Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync>;

/// Serves `handler` on `listener` until the runtime stops or `released` turns true (a successor
/// process serves the same socket after a binary upgrade).
pub async fn serve(listener: std::net::TcpListener, handler: Handler, mut released: watch::Receiver<bool>) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return tracing::error!(error = %e, "cannot serve an operator endpoint"),
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => drop(tokio::spawn(answer(tcp, handler.clone()))),
                Err(e) => {
                    tracing::warn!(error = %e, "operator endpoint accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = released.changed() => return,
        }
    }
}

async fn answer(mut tcp: TcpStream, handler: Handler) {
    let Ok(Some(head)) = tokio::time::timeout(READ_TIMEOUT, read_head(&mut tcp)).await else { return };
    let mut parts = head.split_whitespace();
    let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or(""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (path, query) = (path.to_string(), query.to_string());
    let head_only = method == "HEAD";
    let Reply(status, content_type, body) = handler(method, path, query).await;
    let body = if head_only { String::new() } else { body };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tcp.write_all(response.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

/// The request line, once the request head has arrived.
async fn read_head(tcp: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        let n = tcp.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() + n > MAX_REQUEST {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf).lines().next().map(str::to_string)
}

/// Readiness (`--status-addr`).
pub fn status(state: Arc<crate::state::SharedState>) -> Handler {
    Arc::new(move |method, path, _query| {
        let state = state.clone();
        Box::pin(async move {
            readiness(&state, &method, &path).unwrap_or_else(|| Reply::text("404 Not Found", "not found\n"))
        })
    })
}

fn readiness(state: &crate::state::SharedState, method: &str, path: &str) -> Option<Reply> {
    if !matches!(method, "GET" | "HEAD") || path != "/healthz/ready" {
        return None;
    }
    Some(if state.is_ready() {
        Reply::text("200 OK", "ready\n")
    } else if state.is_draining() {
        Reply::text("503 Service Unavailable", "draining\n")
    } else {
        Reply::text("503 Service Unavailable", "not ready\n")
    })
}

/// Prometheus (`--metrics-addr`).
pub fn metrics(plane: Arc<Plane>, telemetry: Arc<Telemetry>) -> Handler {
    Arc::new(move |method, path, _query| {
        let (plane, telemetry) = (plane.clone(), telemetry.clone());
        Box::pin(async move {
            match (method.as_str(), path.as_str()) {
                ("GET" | "HEAD", "/stats/prometheus") => prometheus(&plane, &telemetry),
                _ => Reply::text("404 Not Found", "not found\n"),
            }
        })
    })
}

fn prometheus(plane: &Plane, telemetry: &Telemetry) -> Reply {
    let m = &telemetry.metrics;
    m.connections_active.set(i64::try_from(plane.env().tracker.active()).unwrap_or(i64::MAX));
    m.config_generation.set(i64::try_from(plane.env().state.snapshot().generation).unwrap_or(i64::MAX));
    m.cache_zones(&plane.caches().stats());
    Reply("200 OK", "text/plain; version=0.0.4; charset=utf-8", m.render())
}

/// The admin endpoints (`--admin-addr`).
pub fn admin(plane: Arc<Plane>, telemetry: Arc<Telemetry>) -> Handler {
    Arc::new(move |method, path, query| {
        let (plane, telemetry) = (plane.clone(), telemetry.clone());
        Box::pin(async move {
            let state = plane.env().state.clone();
            if let Some(r) = readiness(&state, &method, &path) {
                return r;
            }
            match (method.as_str(), path.as_str()) {
                ("POST", "/reload") => reload(&plane).await,
                ("GET" | "HEAD", "/reload") => reloads(&plane),
                ("GET" | "HEAD", "/stats" | "/stats/prometheus") => prometheus(&plane, &telemetry),
                ("GET" | "HEAD", "/config_dump") => config_dump(&plane),
                ("GET" | "HEAD", "/clusters") => clusters(&plane),
                ("GET" | "HEAD", "/listeners") => listeners(&plane),
                ("POST", "/cache/purge") => purge(&plane, &query),
                ("GET" | "HEAD", "/cache") => caches(&plane),
                (_, "/cache/purge") => Reply::text("405 Method Not Allowed", "POST /cache/purge?url=URL purges\n"),
                (_, "/reload") => Reply::text("405 Method Not Allowed", "POST /reload reloads\n"),
                _ => Reply::text("404 Not Found", "not found\n"),
            }
        })
    })
}

async fn reload(plane: &Arc<Plane>) -> Reply {
    // The reload runs on the data runtime, where the clusters and listeners live.
    let p = plane.clone();
    let done = plane.env().runtime.spawn(async move { p.reload().await }).await;
    match done {
        Ok(Ok(generation)) => Reply::text("200 OK", format!("applied generation {generation}\n")),
        Ok(Err(e @ (ReloadError::Invalid(_) | ReloadError::Bind(_) | ReloadError::Load(_)))) => {
            Reply::text("400 Bad Request", format!("refused; the previous configuration keeps serving: {e}\n"))
        }
        Ok(Err(e)) => Reply::text("503 Service Unavailable", format!("{e}\n")),
        Err(_) => Reply::text("503 Service Unavailable", "the reload stopped\n"),
    }
}

fn reloads(plane: &Plane) -> Reply {
    let state = &plane.env().state;
    let r = &state.reloads;
    Reply::json(&serde_json::json!({
        "generation": state.snapshot().generation,
        "applied": r.applied.load(Ordering::Relaxed),
        "rejected": r.rejected.load(Ordering::Relaxed),
        "last_error": r.last_error.lock().ok().and_then(|e| e.clone()),
    }))
}

fn config_dump(plane: &Plane) -> Reply {
    let snap = plane.env().state.snapshot();
    // Secrets are serialized by source only (the PEM bytes are never serialized).
    Reply::json(&serde_json::json!({ "generation": snap.generation, "table": &snap.table }))
}

fn clusters(plane: &Plane) -> Reply {
    let snap = plane.env().state.snapshot();
    let list: Vec<serde_json::Value> = snap
        .upstreams
        .iter()
        .enumerate()
        .map(|(id, u)| {
            let endpoints: Vec<serde_json::Value> = u
                .endpoints
                .load()
                .iter()
                .map(|e| serde_json::json!({ "address": e.addr.to_string(), "weight": e.weight, "active_requests": e.active() }))
                .collect();
            serde_json::json!({
                "name": u.name,
                "refused": u.refusal().map(|o| o.flag()),
                "tls_origination": match snap.tls.origination_ready(id) {
                    None => "none",
                    Some(true) => "ready",
                    Some(false) => "material missing or unusable",
                },
                "endpoints": endpoints,
            })
        })
        .collect();
    Reply::json(&serde_json::json!({ "clusters": list }))
}

fn listeners(plane: &Plane) -> Reply {
    let snap = plane.env().state.snapshot();
    let ports = plane.env().state.ports();
    let list: Vec<serde_json::Value> = snap
        .table
        .listeners
        .iter()
        .map(|l| {
            let key = crate::listener::ListenerKey { port: l.port, bind: l.bind };
            serde_json::json!({
                "port": l.port,
                "bind": l.bind.map(|b| b.to_string()),
                "address": ports.local(l.port).map(|a| a.to_string()),
                "kind": crate::listener::kind_of(&snap, key).map(|k| format!("{k:?}")),
            })
        })
        .collect();
    Reply::json(&serde_json::json!({ "listeners": list }))
}

/// `POST /cache/purge?url=URL` drops the stored responses of one URL (every variant, in every
/// zone); `?prefix=URL` those of every URL starting with it (a whole host: `prefix=https://host/`).
fn purge(plane: &Plane, query: &str) -> Reply {
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let normalized = |v: &str| {
        let uri: http::Uri = v.parse().ok()?;
        let pq = uri.path_and_query().map_or("/", |p| p.as_str());
        Some(crate::proxy::cache::url(uri.scheme_str()?, uri.authority()?.as_str(), pq))
    };
    let purged = match params.first().map(|(k, v)| (k.as_str(), normalized(v))) {
        Some(("url", Some(url))) => plane.caches().purge(|u| u == url),
        Some(("prefix", Some(prefix))) => plane.caches().purge(|u| u.starts_with(&prefix)),
        _ => {
            return Reply::text(
                "400 Bad Request",
                "give url=<absolute URL> or prefix=<absolute URL>, such as url=https://shop.example.com/a?b=1\n",
            )
        }
    };
    Reply::text("200 OK", format!("purged {purged}\n"))
}

/// `GET /cache`: each zone's size, entries and evictions.
fn caches(plane: &Plane) -> Reply {
    let zones: Vec<serde_json::Value> = plane
        .caches()
        .stats()
        .into_iter()
        .map(|(name, z)| serde_json::json!({ "policy": name, "bytes": z.bytes, "entries": z.entries, "evictions": z.evictions }))
        .collect();
    Reply::json(&serde_json::json!({ "caches": zones }))
}
