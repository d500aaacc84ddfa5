//! The status endpoint: `GET /healthz/ready` answers 200 once every listener is bound and a
//! configuration is loaded, and 503 before that and while draining (CONTRACT.md).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::state::SharedState;

const MAX_REQUEST: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the status endpoint on `listener` forever.
pub async fn serve(listener: std::net::TcpListener, state: Arc<SharedState>) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot serve the status endpoint");
            return;
        }
    };
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                tokio::spawn(answer(tcp, state.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "status accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn answer(mut tcp: TcpStream, state: Arc<SharedState>) {
    let Ok(Some(head)) = tokio::time::timeout(READ_TIMEOUT, read_head(&mut tcp)).await else { return };
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = match (method, path.split('?').next().unwrap_or("")) {
        ("GET" | "HEAD", "/healthz/ready") if state.is_ready() => ("200 OK", "ready\n"),
        ("GET" | "HEAD", "/healthz/ready") if state.is_draining() => ("503 Service Unavailable", "draining\n"),
        ("GET" | "HEAD", "/healthz/ready") => ("503 Service Unavailable", "not ready\n"),
        _ => ("404 Not Found", "not found\n"),
    };
    let body = if method == "HEAD" { "" } else { body };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tcp.write_all(response.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

/// The request line of a request, once its head has arrived.
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
    let text = String::from_utf8_lossy(&buf);
    text.lines().next().map(str::to_string)
}
