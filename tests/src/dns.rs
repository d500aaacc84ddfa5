//! A DNS server the test controls: answers A queries from a table, on a loopback UDP port.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;

/// A running test DNS server.
pub struct TestDns {
    /// Where it listens.
    pub addr: SocketAddr,
    records: Records,
    queries: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestDns {
    /// Starts the server on an ephemeral loopback port.
    pub async fn start() -> TestDns {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let records: Records = Arc::default();
        let queries: Arc<Mutex<Vec<String>>> = Arc::default();
        let (r, q) = (records.clone(), queries.clone());
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else { continue };
                if let Some(reply) = respond(&buf[..n], &r, &q) {
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
        });
        TestDns { addr, records, queries, task }
    }

    /// Answers `name` with `ips` and `ttl` from now on (an empty list answers NXDOMAIN).
    pub fn set(&self, name: &str, ips: &[Ipv4Addr], ttl: u32) {
        self.records.lock().unwrap().insert(name.trim_end_matches('.').to_ascii_lowercase(), (ips.to_vec(), ttl));
    }

    /// Answers `name` with a server failure (SERVFAIL) from now on: a lookup that failed, which
    /// says nothing of the name, unlike NXDOMAIN.
    pub fn fail(&self, name: &str) {
        self.records.lock().unwrap().insert(name.trim_end_matches('.').to_ascii_lowercase(), (Vec::new(), SERVFAIL));
    }

    /// Answers `name`'s A queries with SERVFAIL and its other queries with no data: a resolver
    /// that falls back to AAAA after a failed A query then hears "no address", which is not what
    /// the server said of the name's IPv4 addresses.
    pub fn fail_ipv4(&self, name: &str) {
        self.records.lock().unwrap().insert(name.trim_end_matches('.').to_ascii_lowercase(), (Vec::new(), SERVFAIL_A));
    }

    /// The names asked so far (A queries).
    pub fn queries(&self) -> Vec<String> {
        self.queries.lock().unwrap().clone()
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The TTL that stands for "answer SERVFAIL" in [`Records`].
const SERVFAIL: u32 = u32::MAX;
/// The TTL that stands for "answer SERVFAIL to A queries only".
const SERVFAIL_A: u32 = u32::MAX - 1;

/// Name → (addresses, TTL).
type Records = Arc<Mutex<HashMap<String, (Vec<Ipv4Addr>, u32)>>>;

/// Builds the reply to one query (RFC 1035 wire format; one question).
fn respond(q: &[u8], records: &Records, queries: &Arc<Mutex<Vec<String>>>) -> Option<Vec<u8>> {
    if q.len() < 12 {
        return None;
    }
    let (name, end) = read_name(q, 12)?;
    let qtype = u16::from_be_bytes([*q.get(end)?, *q.get(end + 1)?]);
    let question = q.get(12..end + 4)?;
    let answer = if qtype == 1 {
        queries.lock().unwrap().push(name.clone());
        records.lock().unwrap().get(&name).cloned()
    } else {
        // AAAA and others: no data (but the name may exist), or the same server failure.
        let failing = records.lock().unwrap().get(&name).is_some_and(|(_, ttl)| *ttl == SERVFAIL);
        Some((Vec::new(), if failing { SERVFAIL } else { 5 }))
    };
    let (ips, ttl, rcode) = match answer {
        Some((_, SERVFAIL)) => (Vec::new(), 0, 2u8),
        Some((_, SERVFAIL_A)) if qtype == 1 => (Vec::new(), 0, 2u8),
        Some((_, SERVFAIL_A)) => (Vec::new(), 5, 0u8),
        Some((ips, ttl)) if !ips.is_empty() || qtype != 1 => (ips, ttl, 0u8),
        _ => (Vec::new(), 0, 3),
    };
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&q[0..2]);
    out.extend_from_slice(&[0x81, 0x80 | rcode]);
    out.extend_from_slice(&[0, 1]);
    out.extend_from_slice(&(ips.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question);
    for ip in ips {
        out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&[0, 4]);
        out.extend_from_slice(&ip.octets());
    }
    Some(out)
}

fn read_name(q: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut labels = Vec::new();
    loop {
        let len = *q.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    Some((labels.join("."), at))
}
