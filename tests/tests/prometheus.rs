//! A real Prometheus server (Debian's `prometheus` package) scrapes Pylon's `/stats/prometheus`, and
//! PromQL over `istio_requests_total` returns the requests sent, by response code; `promtool check
//! metrics` finds nothing to complain about in the exposition but the one name Istio fixes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::client::{get, http1, raw};
use e2e::gateway::TempDir;
use e2e::yaml::{gateway, service, virtual_service};
use e2e::{TestGateway, Upstream};

fn config(up: &Upstream) -> String {
    gateway(80, &["*"])
        + &service("up", "up.internal", &[up])
        + &virtual_service(
            "vs",
            &["*"],
            "- match: [{uri: {prefix: /ok}}]\n  route: [{destination: {host: up.internal}}]",
        )
}

async fn metrics_text(gw: &TestGateway) -> String {
    let addr = gw.running.metrics_addr.unwrap();
    tokio::task::spawn_blocking(move || raw(addr, b"GET /stats/prometheus HTTP/1.1\r\nHost: m\r\n\r\n")).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_finds_the_exposition_clean() {
    let up = Upstream::start("up").await;
    let gw = TestGateway::start(&config(&up));
    get(&http1(), &gw.url(80), "x", "/ok", &[]).await;
    get(&http1(), &gw.url(80), "x", "/missing", &[]).await;
    let text = metrics_text(&gw).await;
    let body = text.split_once("\r\n\r\n").unwrap().1.to_string();
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (apt-get install prometheus)");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), body.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // Istio's dashboards query `istio_request_duration_milliseconds`: the one lint promtool has
    // (Prometheus prefers seconds) is the price of Istio's name, which Envoy's exposition pays too.
    let istio_name = "istio_request_duration_milliseconds use base unit \"seconds\" instead of \"milliseconds\"";
    let other: Vec<&str> = said.lines().filter(|l| !l.trim().is_empty() && l.trim() != istio_name).collect();
    assert!(other.is_empty(), "promtool: {said}");
    assert!(said.contains(istio_name) || out.status.success(), "promtool: {said}");
}

/// Kills the Prometheus server when the test ends.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_server_counts_requests_by_response_code() {
    let up = Upstream::start("up").await;
    let gw = TestGateway::start(&config(&up));
    let c = http1();
    for _ in 0..7 {
        assert_eq!(get(&c, &gw.url(80), "x", "/ok", &[]).await.status, 200);
    }
    for _ in 0..3 {
        assert_eq!(get(&c, &gw.url(80), "x", "/missing", &[]).await.status, 404);
    }
    let dir = TempDir::new();
    let web = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    std::fs::write(
        dir.0.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s}}\nscrape_configs:\n- job_name: pylon\n  metrics_path: /stats/prometheus\n  static_configs: [{{targets: ['{}']}}]\n",
            gw.running.metrics_addr.unwrap()
        ),
    )
    .unwrap();
    let _server = Server(
        Command::new("prometheus")
            .arg(format!("--config.file={}", dir.0.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.0.join("data").display()))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (apt-get install prometheus)"),
    );
    let query = "sum by (response_code) (istio_requests_total{reporter=\"source\",destination_service=~\"up.internal|unknown\"})";
    let url = format!("http://{web}/api/v1/query");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = c.get(&url).query(&[("query", query)]).send().await;
        let counts = match answer {
            Ok(r) => by_code(&r.text().await.unwrap_or_default()),
            Err(_) => Vec::new(),
        };
        if counts == vec![("200".to_string(), 7.0), ("404".to_string(), 3.0)] {
            break;
        }
        assert!(Instant::now() < deadline, "Prometheus did not see the requests: {counts:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// (response_code, value) pairs of a Prometheus vector answer, sorted.
fn by_code(body: &str) -> Vec<(String, f64)> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else { return Vec::new() };
    let mut out: Vec<(String, f64)> = v["data"]["result"]
        .as_array()
        .map(|results| {
            results
                .iter()
                .filter_map(|r| {
                    let code = r["metric"]["response_code"].as_str()?.to_string();
                    let value = r["value"][1].as_str()?.parse().ok()?;
                    Some((code, value))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}
