//! An upstream that misbehaves in one set way on every request, counting the requests it read:
//! it answers a fixed status, closes the connection without answering, answers after a delay, or
//! holds every request until the test releases it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How a [`Faulty`] upstream answers.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// `status`, with `extra` header lines (each ending in CRLF).
    Status(u16, &'static str),
    /// Reads the request and closes the connection.
    Close,
    /// Answers 200 after the delay.
    Slow(Duration),
    /// Writes these bytes as its answer (not necessarily HTTP) and closes.
    Raw(&'static [u8]),
    /// Answers the first request of a connection with 200 and keeps it open, then closes it
    /// when the next request arrives (a pooled connection the upstream gave up on).
    OnceThenClose,
    /// Answers 200 once it takes a permit from the semaphore: the test decides when each request
    /// completes (no timing to race against).
    Held(Arc<tokio::sync::Semaphore>),
}

/// The running upstream.
pub struct Faulty {
    /// Its port on 127.0.0.1.
    pub port: u16,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Faulty {
    /// Starts an upstream behaving as `b` on an ephemeral loopback port.
    pub async fn start(b: Behaviour) -> Faulty {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        let task = tokio::spawn(async move {
            let mut open = tokio::task::JoinSet::new();
            while let Ok((mut tcp, _)) = listener.accept().await {
                while open.try_join_next().is_some() {}
                let (counted, b) = (counted.clone(), b.clone());
                open.spawn(async move {
                    let mut buf = vec![0u8; 256 * 1024];
                    let mut served = 0;
                    while read_request(&mut tcp, &mut buf).await {
                        counted.fetch_add(1, Ordering::Relaxed);
                        served += 1;
                        let reply = match &b {
                            Behaviour::Close => return,
                            Behaviour::OnceThenClose if served > 1 => return,
                            Behaviour::OnceThenClose => "HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nonce".to_string(),
                            Behaviour::Raw(bytes) => {
                                let _ = tcp.write_all(bytes).await;
                                return;
                            }
                            Behaviour::Status(code, extra) => {
                                format!("HTTP/1.1 {code} Faulty\r\ncontent-length: 6\r\n{extra}\r\nfaulty")
                            }
                            Behaviour::Slow(d) => {
                                tokio::time::sleep(*d).await;
                                "HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow".to_string()
                            }
                            Behaviour::Held(gate) => {
                                let Ok(permit) = gate.acquire().await else { return };
                                permit.forget();
                                "HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nheld".to_string()
                            }
                        };
                        if tcp.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Faulty { port, requests, task }
    }

    /// Requests read so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for Faulty {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request (head, and a `content-length` body); false when the connection ended.
async fn read_request(tcp: &mut tokio::net::TcpStream, buf: &mut [u8]) -> bool {
    let mut len = 0;
    loop {
        let Ok(n) = tcp.read(&mut buf[len..]).await else { return false };
        if n == 0 {
            return false;
        }
        len += n;
        let Some(end) = buf[..len].windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let body: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while len < end + 4 + body {
            match tcp.read(&mut buf[len..]).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => len += n,
            }
        }
        return true;
    }
}
