//! Malformed traffic never takes the gateway down: garbage, truncated requests and odd framings get
//! an error or a closed connection, on HTTP and on TLS ports (truncated and corrupted ClientHellos),
//! and the next good request is served.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::io::Write;
use std::time::Duration;

use e2e::certs::{Ca, Leaf};
use e2e::client::{get, http1};
use e2e::gateway::TempDir;
use e2e::tls::Client;
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

/// A real ClientHello (OpenSSL's, with SNI and ALPN), then every truncation of it and 300 copies
/// with bytes changed at random.
async fn client_hellos() -> Vec<Vec<u8>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = Client { sni: Some("a.example.com".into()), alpn: vec!["h2", "http/1.1"], ..Client::default() };
    let connecting = tokio::spawn(async move { client.connect(addr).await });
    let (mut tcp, _) = listener.accept().await.unwrap();
    let mut hello = vec![0u8; 4096];
    let n = tokio::io::AsyncReadExt::read(&mut tcp, &mut hello).await.unwrap();
    hello.truncate(n);
    drop(tcp);
    let _ = connecting.await;
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut out: Vec<Vec<u8>> = (1..hello.len()).map(|cut| hello[..cut].to_vec()).collect();
    for _ in 0..300 {
        let mut bad = hello.clone();
        for _ in 0..=(rng.next() % 4) {
            let i = (rng.next() as usize) % bad.len();
            bad[i] = (rng.next() & 0xff) as u8;
        }
        out.push(bad);
    }
    out.push(hello);
    out
}

/// Sends each input on its own connection, half-closes, and moves on.
fn send_all(addr: std::net::SocketAddr, inputs: Vec<Vec<u8>>) {
    for bytes in inputs {
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        let _ = tcp.write_all(&bytes);
        // Half-close so the gateway sees the end of the input, then move on without waiting.
        let _ = tcp.shutdown(std::net::Shutdown::Write);
        let _ = tcp.set_read_timeout(Some(Duration::from_millis(50)));
        let _ = std::io::Read::read(&mut tcp, &mut [0u8; 512]);
    }
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
    let ca = Ca::new("test-ca");
    let dir = TempDir::new();
    let (cert, key) = ca.issue(&Leaf::server(&["a.example.com"])).write(&dir.0, "a");
    let https = format!(
        "  - port: {{number: 443, name: https, protocol: HTTPS}}\n    hosts: ['*']\n    tls: {{mode: SIMPLE, serverCertificate: {}, privateKey: {}}}\n---\n",
        cert.display(),
        key.display()
    );
    let yaml = gateway(80, &["*"]).replace("---\n", &https)
        + &service("up", "up.internal", &[&up])
        + &virtual_service("vs", &["*"], "- route: [{destination: {host: up.internal}}]");
    let gw = TestGateway::start(&yaml);
    let (http, tls) = (gw.addr(80), gw.addr(443));
    let hellos = client_hellos().await;
    let sends = tokio::task::spawn_blocking(move || {
        send_all(http, inputs());
        send_all(tls, inputs());
        send_all(tls, hellos);
    });
    sends.await.unwrap();
    let r = get(&http1(), &gw.url(80), "x", "/after", &[]).await;
    assert_eq!(r.status, 200);
    let r = Client::to("a.example.com", &ca.cert).get(tls, "a.example.com", "/after-tls", &[]).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(gw.ready_status(), Some(200));
    assert_eq!(PANICS.load(std::sync::atomic::Ordering::SeqCst), 0, "a connection task panicked");
}
