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

/// Starts `bare-pingora-istio` in front of `upstream`; its address once it answers as itself.
async fn start_istio_floor(upstream: &Upstream) -> (Reference, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = std::env::temp_dir().join(format!("pylon-bare-pingora-istio-{port}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_bare-pingora-istio"))
        .args([format!("127.0.0.1:{port}"), format!("127.0.0.1:{}", upstream.port()), "1".into()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut reference = Reference(child);
    let url = format!("http://127.0.0.1:{port}");
    let client = http1();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = reference.0.try_wait().unwrap() {
            panic!("bare-pingora-istio exited ({status}): {}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        // Its own answer (not another listener's that took the port first).
        if let Ok(r) = client.get(format!("{url}/ready")).send().await {
            assert_eq!(
                r.headers().get("server").map(|v| v.as_bytes()),
                Some(&b"istio-envoy"[..]),
                "{url} is not the reference"
            );
            return (reference, url);
        }
        assert!(Instant::now() < deadline, "bare-pingora-istio never answered on {port}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    let (_floor, floor_url) = start_istio_floor(&up).await;
    let c = http1();
    // A client's Envoy control header and proxy-only forwarding header: both are removed.
    let sent = [("x-envoy-retry-on", "5xx"), ("x-forwarded-host", "elsewhere")];
    assert_eq!(get(&c, &gw.url(80), "x", "/via-pylon", &sent).await.status, 200);
    let reply = get(&c, &floor_url, "x", "/via-reference", &sent).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("server"), Some("istio-envoy"));

    let seen = up.seen();
    let by_path = |path: &str| seen.iter().find(|s| s.path == path).unwrap_or_else(|| panic!("no request for {path}"));
    let (pylon, floor) = (by_path("/via-pylon"), by_path("/via-reference"));
    assert_eq!(names(floor), names(pylon), "the same header names upstream");
    for name in ["x-forwarded-for", "x-envoy-external-address", "x-forwarded-proto", "x-envoy-attempt-count"] {
        assert_eq!(floor.header(name), pylon.header(name), "{name}");
    }
    let id = floor.header("x-request-id").unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_ne!(Some(id), pylon.header("x-request-id"), "one id per request");
    for removed in ["x-envoy-retry-on", "x-forwarded-host"] {
        assert_eq!((pylon.header(removed), floor.header(removed)), (None, None), "{removed}");
    }
}
