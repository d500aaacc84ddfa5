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
