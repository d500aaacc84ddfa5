//! The benchmark's reference proxies (`e2e::bare`). `bare-pingora-istio` stands for Istio's
//! per-request work done on Pingora and nothing else: `scripts/bench` reads Pylon against it as
//! Pylon's own overhead, so it must send upstream what Pylon sends, no less.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::client::{get, http1};
use e2e::upstream::Seen;
use e2e::yaml::{gateway, service, virtual_service};
use e2e::{TestGateway, Upstream};

/// A reference proxy's process, killed when dropped.
struct Reference(Child);

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `bare-pingora-istio` in front of `upstream`; its address once it listens.
fn start_istio_floor(upstream: &Upstream) -> (Reference, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_bare-pingora-istio"))
        .args([format!("127.0.0.1:{port}"), format!("127.0.0.1:{}", upstream.port()), "1".into()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let reference = Reference(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "bare-pingora-istio never listened on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    (reference, format!("http://127.0.0.1:{port}"))
}

fn names(seen: &Seen) -> BTreeSet<String> {
    seen.headers.iter().map(|(k, _)| k.to_ascii_lowercase()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floor_with_istios_work_sends_upstream_the_headers_pylon_sends() {
    let up = Upstream::start("a").await;
    let yaml = gateway(80, &["*"])
        + &service("a", "a.internal", &[&up])
        + &virtual_service("vs", &["*"], "- route: [{destination: {host: a.internal}}]");
    let gw = TestGateway::start(&yaml);
    let (_floor, floor_url) = start_istio_floor(&up);
    let c = http1();
    // A client's Envoy control header and proxy-only forwarding header: both are removed.
    let sent = [("x-envoy-retry-on", "5xx"), ("x-forwarded-host", "elsewhere")];
    assert_eq!(get(&c, &gw.url(80), "x", "/", &sent).await.status, 200);
    let reply = get(&c, &floor_url, "x", "/", &sent).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("server"), Some("istio-envoy"));

    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    let (pylon, floor) = (&seen[0], &seen[1]);
    assert_eq!(names(floor), names(pylon), "the same header names upstream");
    for name in ["x-forwarded-for", "x-envoy-external-address", "x-forwarded-proto", "x-envoy-attempt-count"] {
        assert_eq!(floor.header(name), pylon.header(name), "{name}");
    }
    let id = floor.header("x-request-id").unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_ne!(Some(id), pylon.header("x-request-id"), "one id per request");
    assert_eq!(floor.header("x-envoy-retry-on"), None);
}
