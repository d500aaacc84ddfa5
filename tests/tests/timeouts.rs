//! No client connection lives for ever without progress: a request head must arrive within the
//! request-headers timeout (slowloris), an idle HTTP/1.1 or HTTP/2 connection is closed after the
//! idle timeout, while a slow body, a long response and an upgraded connection are left alone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use e2e::gateway::Setup;
use e2e::yaml::{gateway, service, service_at, virtual_service};
use e2e::{TestGateway, Upstream};

fn start(up: &Upstream, head: Duration, idle: Duration) -> TestGateway {
    let yaml = gateway(80, &["*"])
        + &service("up", "up.internal", &[up])
        + &virtual_service("vs", &["*"], "- route: [{destination: {host: up.internal}}]");
    TestGateway::start_with(
        &yaml,
        Setup { request_headers_timeout: Some(head), idle_timeout: Some(idle), ..Setup::default() },
    )
}

/// Writes `lines` one by one, `gap` apart; how long until the gateway closed the connection (a
/// write or read failed, or it answered), or `None` if it never did.
fn trickle(addr: SocketAddr, prefix: &[u8], lines: usize, gap: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(gap)).unwrap();
    tcp.write_all(prefix).unwrap();
    let mut buf = [0u8; 4096];
    for i in 0..lines {
        if tcp.write_all(format!("x-slow-{i}: 1\r\n").as_bytes()).is_err() {
            return Some(started.elapsed());
        }
        match tcp.read(&mut buf) {
            Ok(_) => return Some(started.elapsed()), // closed (0) or answered
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

/// Reads until the peer closes (or `limit` passes); how long that took.
fn until_closed(tcp: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    tcp.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                return None
            }
            Err(_) => return Some(started.elapsed()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_arriving_line_by_line_is_cut_at_the_deadline() {
    let up = Upstream::start("up").await;
    let gw = start(&up, Duration::from_secs(1), Duration::from_secs(3600));
    let addr = gw.addr(80);
    // 20 header lines 200 ms apart: 4 s, well past the 1 s deadline.
    let first = tokio::task::spawn_blocking(move || {
        trickle(addr, b"GET / HTTP/1.1\r\nHost: x\r\n", 20, Duration::from_millis(200))
    });
    let cut = first.await.unwrap().expect("the gateway closed the connection");
    assert!(cut < Duration::from_secs(3), "cut after {cut:?}");
    // The same on a kept-alive connection's second request.
    let second = tokio::task::spawn_blocking(move || {
        trickle(
            addr,
            b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n",
            20,
            Duration::from_millis(200),
        )
    });
    assert!(second.await.unwrap().is_some());
    assert!(up.seen().iter().all(|s| s.path == "/1"), "the slow request never went upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_after_a_complete_head_is_not_cut() {
    // An upstream that reads the whole body before it answers.
    let reader = e2e::faulty::Faulty::start(e2e::faulty::Behaviour::Status(200, "")).await;
    let se = service_at("up", "up.internal", &[(reader.port, 1)]);
    let yaml =
        gateway(80, &["*"]) + &se + &virtual_service("vs", &["*"], "- route: [{destination: {host: up.internal}}]");
    let setup = Setup { request_headers_timeout: Some(Duration::from_secs(1)), ..Setup::default() };
    let gw = TestGateway::start_with(&yaml, setup);
    let addr = gw.addr(80);
    let out = tokio::task::spawn_blocking(move || {
        let mut tcp = TcpStream::connect(addr).unwrap();
        tcp.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n").unwrap();
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(250));
            tcp.write_all(b"a").unwrap();
        }
        let mut out = String::new();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = tcp.read_to_string(&mut out);
        out
    });
    let out = out.await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "a 2.5 s body with a 1 s head deadline: {out}");
    assert_eq!(reader.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http1_connection_is_closed_after_the_idle_timeout() {
    let up = Upstream::start("up").await;
    let gw = start(&up, Duration::from_secs(60), Duration::from_secs(1));
    let addr = gw.addr(80);
    let closed = tokio::task::spawn_blocking(move || {
        let mut tcp = TcpStream::connect(addr).unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        until_closed(&mut tcp, Duration::from_secs(5))
    });
    let after = closed.await.unwrap().expect("closed within 5 s");
    assert!(after >= Duration::from_millis(900), "kept for the idle timeout first: {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_connection_that_goes_silent_after_its_preface_is_closed() {
    let up = Upstream::start("up").await;
    let gw = start(&up, Duration::from_secs(60), Duration::from_secs(1));
    let addr = gw.addr(80);
    let closed = tokio::task::spawn_blocking(move || {
        let mut tcp = TcpStream::connect(addr).unwrap();
        // The preface and an empty SETTINGS frame, then nothing.
        tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").unwrap();
        until_closed(&mut tcp, Duration::from_secs(5))
    });
    assert!(closed.await.unwrap().is_some(), "the silent h2c connection was closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_connection_is_not_held_to_the_head_deadline() {
    let up = Upstream::start("up").await;
    let gw = start(&up, Duration::from_secs(1), Duration::from_secs(3600));
    let addr = gw.addr(80);
    let echoed = tokio::task::spawn_blocking(move || {
        let mut tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").unwrap();
        let mut buf = [0u8; 1024];
        let n = tcp.read(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"));
        // Longer than the head deadline, then bytes without any blank line.
        std::thread::sleep(Duration::from_millis(1500));
        tcp.write_all(b"ping").unwrap();
        let n = tcp.read(&mut buf).unwrap();
        buf[..n].to_vec()
    });
    assert_eq!(echoed.await.unwrap(), b"ping");
}

fn start_with_stream_idle(up: &Upstream, idle: Duration, route: &str) -> TestGateway {
    let yaml = gateway(80, &["*"])
        + &service("up", "up.internal", &[up])
        + &virtual_service("vs", &["*"], &format!("- route: [{{destination: {{host: up.internal}}}}]{route}"));
    TestGateway::start_with(&yaml, Setup { stream_idle_timeout: Some(idle), ..Setup::default() })
}

/// Envoy's `stream_idle_timeout`: an upstream silent that long gets 408 `stream timeout` (`SI`),
/// not retried; a route timeout shorter than it stays a 504 `UT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_silent_for_the_stream_idle_timeout_ends_the_request_with_408() {
    use e2e::client::{get, http1};
    let up = Upstream::start("up").await;
    let gw = start_with_stream_idle(&up, Duration::from_millis(400), "\n  retries: {attempts: 2, retryOn: 5xx}");
    let started = Instant::now();
    let reply = get(&http1(), &gw.url(80), "x", "/", &[("x-delay-ms", "3000")]).await;
    assert_eq!((reply.status, reply.body.as_str()), (408, "stream timeout"));
    assert!(started.elapsed() < Duration::from_millis(2500), "{:?}", started.elapsed());
    assert_eq!(up.seen().len(), 1, "not retried");
    assert_eq!(get(&http1(), &gw.url(80), "x", "/", &[("x-delay-ms", "100")]).await.status, 200, "activity in time");
    let gw = start_with_stream_idle(&up, Duration::from_millis(800), "\n  timeout: 200ms");
    let reply = get(&http1(), &gw.url(80), "x", "/", &[("x-delay-ms", "3000")]).await;
    assert_eq!((reply.status, reply.body.as_str()), (504, "upstream request timeout"));
}

/// A WebSocket is left alone while traffic flows, and closed once the upstream has been silent
/// for the stream idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_silent_for_the_stream_idle_timeout_is_closed() {
    let up = Upstream::start("up").await;
    let gw = start_with_stream_idle(&up, Duration::from_millis(500), "");
    let mut ws = e2e::client::websocket(gw.addr(80), "/ws").await.unwrap();
    for _ in 0..8 {
        e2e::client::echo(&mut ws, b"ping").await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut tcp = ws.into_std().unwrap();
    tcp.set_nonblocking(false).unwrap();
    let closed = tokio::task::spawn_blocking(move || until_closed(&mut tcp, Duration::from_secs(5))).await.unwrap();
    assert!(closed.is_some_and(|t| t < Duration::from_secs(3)), "{closed:?}");
}
