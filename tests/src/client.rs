//! Clients for the tests: a reqwest client (HTTP/1.1 or h2c prior knowledge, no proxy from the
//! environment) and raw socket exchanges for HTTP/1.0 and malformed requests.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

/// An HTTP/1.1 client that never uses a proxy and never follows redirects.
pub fn http1() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// An HTTP/2 client speaking h2c with prior knowledge.
pub fn h2c() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().http2_prior_knowledge().build().unwrap()
}

/// A response, simplified.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Body text.
    pub body: String,
}

impl Reply {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The upstream that answered (`x-upstream`), if any.
    pub fn upstream(&self) -> Option<&str> {
        self.header("x-upstream")
    }
}

/// Sends a GET with `host` (none when empty: the URL's authority) and extra `headers`.
pub async fn get(client: &reqwest::Client, base: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = client.get(format!("{base}{path}"));
    if !host.is_empty() {
        req = req.header("host", host);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
    let body = resp.text().await.unwrap_or_default();
    Reply { status, headers, body }
}

/// Writes `request` on a new connection and reads until the server closes it (or 5 s pass).
pub fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends `requests` one after the other on one connection, reading each response head (and a
/// `content-length` body) before the next; returns the responses.
pub fn sequential(addr: SocketAddr, requests: &[&[u8]]) -> Vec<String> {
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    for req in requests {
        tcp.write_all(req).unwrap();
        out.push(read_response(&mut tcp));
    }
    out
}

fn read_response(tcp: &mut std::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match tcp.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return String::from_utf8_lossy(&buf).into_owned(),
        }
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    let _ = tcp.read_exact(&mut body);
    buf.extend_from_slice(&body);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Opens a WebSocket through the gateway at `addr` (the HTTP/1.1 upgrade handshake); returns the
/// connection after the 101 answer, or the answer's head when it was something else.
pub async fn websocket(addr: SocketAddr, path: &str) -> Result<tokio::net::TcpStream, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: ws.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    // The head, byte by byte: nothing after it may be consumed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = tcp.read_u8().await.map_err(|e| format!("{e} after {:?}", String::from_utf8_lossy(&head)))?;
        head.push(byte);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    if head.starts_with("HTTP/1.1 101") {
        Ok(tcp)
    } else {
        Err(head)
    }
}

/// Sends `message` on an open WebSocket to the echoing upstream and reads it back.
pub async fn echo(ws: &mut tokio::net::TcpStream, message: &[u8]) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    ws.write_all(message).await?;
    let mut back = vec![0u8; message.len()];
    tokio::time::timeout(Duration::from_secs(5), ws.read_exact(&mut back)).await??;
    if back == message {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("echoed {:?}", String::from_utf8_lossy(&back))))
    }
}
