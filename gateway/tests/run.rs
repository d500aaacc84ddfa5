//! `pylon run` as a process: startup errors, readiness, and the SIGTERM drain (CONTRACT.md).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn write_config(name: &str, yaml: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pylon-run-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.yaml"), yaml).unwrap();
    dir
}

const DIRECT: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    bind: 127.0.0.1
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - directResponse: {status: 200, body: {string: ok}}
"#;

/// A running `pylon run` and what its log said.
struct Pylon {
    child: Child,
    data: SocketAddr,
    status: SocketAddr,
    lines: mpsc::Receiver<String>,
}

impl Pylon {
    fn start(config: &Path, extra: &[&str]) -> Pylon {
        Self::start_with_env(config, extra, &[])
    }

    fn start_with_env(config: &Path, extra: &[&str], env: &[(&str, &str)]) -> Pylon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pylon"))
            .envs(env.iter().copied())
            .args([
                "run",
                "--config",
                config.to_str().unwrap(),
                "--port-map",
                "80=0",
                "--status-addr",
                "127.0.0.1:0",
                "--metrics-addr",
                "127.0.0.1:0",
                "--admin-addr",
                "127.0.0.1:0",
            ])
            .args(extra)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (mut data, mut status) = (None, None);
        while status.is_none() {
            let line = lines.recv_timeout(Duration::from_secs(20)).expect("pylon logs that it is ready");
            if let Some(rest) = line.split("listening on ").nth(1) {
                data = rest.split_whitespace().next().map(|a| a.parse().unwrap());
            }
            if let Some(rest) = line.split("status=").nth(1) {
                status = rest.split_whitespace().next().map(|a| a.parse().unwrap());
            }
        }
        Pylon { child, data: data.unwrap(), status: status.unwrap(), lines }
    }

    fn signal(&self, sig: &str) {
        assert!(Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success());
    }

    fn wait(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Pylon {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tcp.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn a_taken_port_is_a_startup_error_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = write_config("taken", DIRECT);
    let out = Command::new(env!("CARGO_BIN_EXE_pylon"))
        .args([
            "run",
            "--config",
            dir.to_str().unwrap(),
            "--port-map",
            &format!("80={port}"),
            "--status-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("cannot listen on 127.0.0.1:{port} (Gateway port 80)")), "{stderr}");
}

#[test]
fn ready_once_listening_and_draining_on_sigterm() {
    let dir = write_config("drain", DIRECT);
    let mut pylon = Pylon::start(&dir, &["--drain-seconds", "1"]);
    assert!(http_get(pylon.status, "/healthz/ready").starts_with("HTTP/1.1 200"));
    assert!(http_get(pylon.data, "/").starts_with("HTTP/1.1 200"));
    pylon.signal("TERM");
    // Readiness turns 503 at once; the listener keeps serving during the drain, closing connections.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !http_get(pylon.status, "/healthz/ready").starts_with("HTTP/1.1 503") {
        assert!(Instant::now() < deadline, "readiness did not turn 503");
    }
    let during = http_get(pylon.data, "/");
    assert!(during.starts_with("HTTP/1.1 200"), "{during}");
    assert!(during.to_ascii_lowercase().contains("connection: close"), "{during}");
    assert_eq!(pylon.wait(Duration::from_secs(15)), Some(0));
    let log: Vec<String> = pylon.lines.try_iter().collect();
    assert!(log.iter().any(|l| l.contains("draining")), "{log:?}");
}

#[test]
fn no_gateway_for_this_workload_starts_ready_with_a_warning() {
    let dir = write_config("none", DIRECT);
    let mut child = Command::new(env!("CARGO_BIN_EXE_pylon"))
        .args([
            "run",
            "--config",
            dir.to_str().unwrap(),
            "--labels",
            "app=other",
            "--status-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let reader = BufReader::new(child.stderr.take().unwrap());
    let mut log = Vec::new();
    for line in reader.lines().map_while(Result::ok) {
        let ready = line.contains(" ready ");
        log.push(line);
        if ready {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(log.iter().any(|l| l.contains("warning[no-gateway]")), "{log:?}");
    assert!(log.iter().any(|l| l.contains(" ready ") && l.contains("listeners=0")), "{log:?}");
}

#[test]
fn sigint_also_drains_and_exits_0() {
    let dir = write_config("int", DIRECT);
    let mut pylon = Pylon::start(&dir, &["--drain-seconds", "0"]);
    pylon.signal("INT");
    assert_eq!(pylon.wait(Duration::from_secs(15)), Some(0));
}

#[test]
fn the_demo_configuration_starts() {
    let demo = root().join("conf/examples/demo");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pylon"))
        .args([
            "run",
            "--config",
            demo.to_str().unwrap(),
            "--port-map",
            "8080=0,8443=0",
            "--status-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !line.contains(" ready ") && Instant::now() < deadline {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.contains(" ready "), "last line: {line}");
}

#[test]
fn sighup_reloads_the_configuration() {
    let dir = write_config("sighup", DIRECT);
    let pylon = Pylon::start(&dir, &[]);
    assert!(http_get(pylon.data, "/").ends_with("ok"));
    // SIGHUP reloads even when no file changed (a new generation of the same configuration).
    pylon.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let line =
            pylon.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("a reload log line");
        if line.contains("configuration reloaded") {
            assert!(line.contains("generation=2"), "{line}");
            break;
        }
    }
    assert!(http_get(pylon.data, "/").ends_with("ok"), "still serving");
}

#[test]
fn a_second_sigterm_ends_the_drain_at_once() {
    let dir = write_config("second-term", DIRECT);
    let mut pylon = Pylon::start(&dir, &["--drain-seconds", "30"]);
    pylon.signal("TERM");
    // Wait until the drain has started, then ask again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pylon.lines.recv_timeout(Duration::from_secs(10)).unwrap_or_default().contains("draining") {
        assert!(Instant::now() < deadline, "no drain");
    }
    let asked = Instant::now();
    pylon.signal("TERM");
    assert_eq!(pylon.wait(Duration::from_secs(5)), Some(0), "a second SIGTERM ends the 30 s drain at once");
    assert!(asked.elapsed() < Duration::from_secs(5));
}

#[test]
fn sigusr1_reopens_the_access_log_after_logrotate_moved_it() {
    let dir = write_config("usr1", DIRECT);
    let log = dir.join("access.log");
    let pylon = Pylon::start(&dir, &["--access-log", log.to_str().unwrap()]);
    let wait_for_line = |path: &Path, text: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(path).unwrap_or_default().contains(text) {
            assert!(Instant::now() < deadline, "{} has no line with {text}", path.display());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    http_get(pylon.data, "/before-rotation");
    wait_for_line(&log, "/before-rotation");
    let rotated = dir.join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    pylon.signal("USR1");
    // The reopen is asynchronous: requests until one lands in the new file.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("/after-rotation") {
        assert!(Instant::now() < deadline, "no new access.log after SIGUSR1");
        http_get(pylon.data, "/after-rotation");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(std::fs::read_to_string(&rotated).unwrap().contains("/before-rotation"));
}

#[test]
fn systemd_hears_ready_reloading_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = write_config("notify", DIRECT);
    let socket_path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&socket_path);
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let next = || {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut pylon =
        Pylon::start_with_env(&dir, &["--drain-seconds", "0"], &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())]);
    let ready = next();
    assert!(ready.contains("READY=1"), "{ready}");
    assert!(http_get(pylon.data, "/").ends_with("ok"), "READY=1 came after the listeners were bound");
    pylon.signal("HUP");
    assert!(next().contains("RELOADING=1"));
    assert!(next().contains("READY=1"));
    pylon.signal("TERM");
    assert!(next().contains("STOPPING=1"));
    assert_eq!(pylon.wait(Duration::from_secs(15)), Some(0));
}
