//! The drain loses nothing: readiness turns 503 at once, the listeners keep serving for the drain
//! window, then stop accepting, and every request already in flight finishes within the grace,
//! including one that starts at the last moment of the window and takes 2 s.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::client::{h2c, http1};
use e2e::yaml::{gateway, service, virtual_service};
use e2e::{TestGateway, Upstream};

/// Requests served, requests never sent to the gateway, requests lost.
#[derive(Default)]
struct Counts {
    ok: AtomicUsize,
    not_sent: AtomicUsize,
    lost: AtomicUsize,
}

/// Sends 20 ms requests one after another until `stop`, counting how each ended.
async fn load(client: reqwest::Client, url: String, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    while !stop.load(Ordering::Relaxed) {
        let sent = client.get(&url).header("x-delay-ms", "20").send().await;
        let counter = match sent {
            Ok(r) => {
                if r.status() == 200 && r.bytes().await.is_ok() {
                    &counts.ok
                } else {
                    &counts.lost
                }
            }
            // Never sent to the gateway, so never in flight: a refused connection once the
            // listeners are closed; an HTTP/2 stream the final GOAWAY did not take (RFC 9113
            // §6.8: not processed, safe to retry); a request hyper had queued for a connection
            // that closed after its GOAWAY, before sending it (`Canceled`), or could not hand to
            // a pooled connection whose task had already ended (`SendRequest` with
            // `ChannelClosed`: the request was never written).
            Err(e) => {
                let text = format!("{e:?}");
                let unsent = text.contains("Canceled") || text.contains("SendRequest, hyper::Error(ChannelClosed)");
                if e.is_connect() || text.contains("GoAway(b\"\", NO_ERROR, Remote)") || unsent {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    &counts.not_sent
                } else {
                    eprintln!("lost: {e:?}");
                    &counts.lost
                }
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// One route to `up`.
fn config(up: &Upstream) -> String {
    gateway(80, &["*"])
        + &service("up", "up.internal", &[up])
        + &virtual_service("vs", &["*"], "- route: [{destination: {host: up.internal}}]")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_finishes_in_flight_requests() {
    let up = Upstream::start("up").await;
    let gw = TestGateway::start(&config(&up));
    let url = format!("{}/load", gw.url(80));
    let (stop, counts) = (Arc::new(AtomicBool::new(false)), Arc::new(Counts::default()));
    // Four kept-alive HTTP/1.1 clients and one HTTP/2 client.
    let clients = (0..5).map(|i| if i == 4 { h2c() } else { http1() });
    let load: Vec<_> = clients.map(|c| tokio::spawn(load(c, url.clone(), stop.clone(), counts.clone()))).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let TestGateway { running, dir } = gw;
    let state = running.state.clone();
    let window = Duration::from_secs(1);
    let started = Instant::now();
    let draining = tokio::task::spawn_blocking(move || running.drain(window, Duration::from_secs(5)));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!state.is_ready(), "readiness turns 503 at once");
    // A request that starts at the last moment of the window and takes 2 s.
    tokio::time::sleep(window.saturating_sub(started.elapsed()).saturating_sub(Duration::from_millis(100))).await;
    let late = http1().get(&url).header("x-delay-ms", "2000").send().await.unwrap();
    let late_status = late.status().as_u16();
    let late_body = late.text().await;
    let left = draining.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    let (ok, not_sent, lost) = (
        counts.ok.load(Ordering::Relaxed),
        counts.not_sent.load(Ordering::Relaxed),
        counts.lost.load(Ordering::Relaxed),
    );
    println!("drain: {ok} requests served, {not_sent} not sent (refused or turned away by GOAWAY), {lost} lost");
    assert_eq!((late_status, late_body.is_ok()), (200, true), "the late 2 s request finished");
    assert_eq!(lost, 0, "requests lost during the drain");
    assert_eq!(left, 0, "connections cut at the end of the grace");
    assert!(ok > 20);
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_closes_keep_alive_connections_idle_between_requests() {
    use std::io::{Read, Write};
    let up = Upstream::start("up").await;
    let gw = TestGateway::start(&config(&up));
    let addr = gw.addr(80);
    // One connection answered once, another after a request with a body: both then idle.
    let idle = tokio::task::spawn_blocking(move || {
        let mut conns = Vec::new();
        for request in
            [&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok"]
        {
            let mut tcp = std::net::TcpStream::connect(addr).unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            tcp.write_all(request).unwrap();
            let mut buf = [0u8; 4096];
            let n = tcp.read(&mut buf).unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
            conns.push(tcp);
        }
        conns
    })
    .await
    .unwrap();
    let TestGateway { running, dir } = gw;
    let left = tokio::task::spawn_blocking(move || running.drain(Duration::from_millis(200), Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(left, 0, "idle connections are closed, not waited for");
    for mut tcp in idle {
        let mut buf = [0u8; 16];
        assert_eq!(tcp.read(&mut buf).unwrap(), 0, "the client sees the connection closed");
    }
    drop(dir);
}
