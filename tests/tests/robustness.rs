//! Malformed traffic never takes the gateway down: garbage, truncated requests and odd framings get
//! an error or a closed connection, and the next good request is served.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::io::Write;
use std::time::Duration;

use e2e::client::{get, http1};
use e2e::yaml::{gateway, service, virtual_service};
use e2e::{TestGateway, Upstream};

/// A small deterministic pseudo-random generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn inputs() -> Vec<Vec<u8>> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let good = b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello".to_vec();
    let mut out: Vec<Vec<u8>> = vec![
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03".to_vec(),
        b"GET / HTTP/9.9\r\n\r\n".to_vec(),
        b"GET /\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".to_vec(),
        b"GET http://[::1 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"GET /%zz/../..%2f HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n".to_vec(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00".to_vec(),
    ];
    for cut in 1..good.len() {
        out.push(good[..cut].to_vec());
    }
    for _ in 0..100 {
        let len = (rng.next() % 300) as usize;
        out.push((0..len).map(|_| (rng.next() & 0xff) as u8).collect());
    }
    out
}

static PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_traffic_does_not_stop_the_gateway() {
    // A panic in a connection task would be swallowed by tokio: count them (this binary has one test).
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        previous(info);
    }));
    let up = Upstream::start("up").await;
    let yaml = gateway(80, &["*"])
        + &service("up", "up.internal", &[&up])
        + &virtual_service("vs", &["*"], "- route: [{destination: {host: up.internal}}]");
    let gw = TestGateway::start(&yaml);
    let addr = gw.addr(80);
    let sends = tokio::task::spawn_blocking(move || {
        for bytes in inputs() {
            let mut tcp = std::net::TcpStream::connect(addr).unwrap();
            let _ = tcp.write_all(&bytes);
            // Half-close so the gateway sees the end of the input, then move on without waiting.
            let _ = tcp.shutdown(std::net::Shutdown::Write);
            let _ = tcp.set_read_timeout(Some(Duration::from_millis(50)));
            let _ = std::io::Read::read(&mut tcp, &mut [0u8; 512]);
        }
    });
    sends.await.unwrap();
    let r = get(&http1(), &gw.url(80), "x", "/after", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(gw.ready_status(), Some(200));
    assert_eq!(PANICS.load(std::sync::atomic::Ordering::SeqCst), 0, "a connection task panicked");
}
