//! `pylon run` as a process: startup errors, readiness, and the SIGTERM drain (README "Operations").

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
        Self::start_exe(Path::new(env!("CARGO_BIN_EXE_pylon")), config, extra, env)
    }

    fn start_exe(exe: &Path, config: &Path, extra: &[&str], env: &[(&str, &str)]) -> Pylon {
        let mut child = Command::new(exe)
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

/// One request on a new connection; `Err` says how it failed.
fn try_get(addr: SocketAddr) -> Result<String, String> {
    let mut tcp = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").map_err(|e| format!("write: {e}"))?;
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).map_err(|e| format!("read: {e}"))?;
    if answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok") {
        Ok(answer)
    } else {
        Err(format!("answer: {answer:?}"))
    }
}

/// Clients each sending one request per new connection to `addr` until stopped.
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    clients: Vec<std::thread::JoinHandle<(usize, Vec<String>)>>,
}

impl Load {
    fn start(addr: SocketAddr, clients: usize) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients = (0..clients)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let (mut ok, mut failed) = (0, Vec::new());
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        match try_get(addr) {
                            Ok(_) => ok += 1,
                            Err(e) => failed.push(e),
                        }
                    }
                    (ok, failed)
                })
            })
            .collect();
        Load { stop, clients }
    }

    /// Requests served, and how the others failed.
    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (mut ok, mut failed) = (0, Vec::new());
        for c in self.clients {
            let (o, f) = c.join().unwrap();
            ok += o;
            failed.extend(f);
        }
        (ok, failed)
    }
}

/// SIGTERM to a process that is not a child of the test, when dropped.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.to_string()).status();
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
}

#[test]
fn sigusr2_replaces_the_process_with_the_binary_on_disk_refusing_no_connection() {
    let dir = write_config("usr2", DIRECT);
    // The binary at a path of its own, replaced on disk (as a package upgrade does) before SIGUSR2.
    let exe = dir.join("pylon");
    std::fs::copy(env!("CARGO_BIN_EXE_pylon"), &exe).unwrap();
    let socket = dir.join("upgrade.sock");
    let mut pylon = Pylon::start_exe(
        &exe,
        &dir,
        &["--upgrade-socket", socket.to_str().unwrap(), "--drain-seconds", "1", "--access-log", "off"],
        &[],
    );
    let old = pylon.child.id();
    let load = Load::start(pylon.data, 3);
    std::thread::sleep(Duration::from_millis(300));
    let staged = dir.join("pylon.new");
    std::fs::copy(env!("CARGO_BIN_EXE_pylon"), &staged).unwrap();
    std::fs::rename(&staged, &exe).unwrap();
    pylon.signal("USR2");
    let deadline = Instant::now() + Duration::from_secs(20);
    let successor: u32 = loop {
        let line = pylon.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("a hand-over");
        if line.contains("serves; stopping accepting") {
            break line.split("successor=").nth(1).and_then(|s| s.split_whitespace().next()).unwrap().parse().unwrap();
        }
    };
    assert_ne!(successor, old);
    // The successor is not our child: stopped here however the test ends.
    let successor_process = KillOnDrop(successor);
    // The successor runs the file now on disk; the old process the one it replaced.
    let exe_of = |pid: u32| std::fs::read_link(format!("/proc/{pid}/exe")).unwrap().to_string_lossy().into_owned();
    assert_eq!(exe_of(successor), exe.to_string_lossy());
    assert!(exe_of(old).ends_with("(deleted)"), "{}", exe_of(old));
    assert_eq!(pylon.wait(Duration::from_secs(15)), Some(0), "the old process drained and exited 0");
    std::thread::sleep(Duration::from_millis(300));
    let (ok, failed) = load.finish();
    println!("binary upgrade by SIGUSR2: {ok} requests on new connections served, {} failed", failed.len());
    let still = try_get(pylon.data);
    let ready = http_get(pylon.status, "/healthz/ready");
    drop(successor_process);
    let deadline = Instant::now() + Duration::from_secs(15);
    while alive(successor) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(failed.is_empty(), "{failed:?}");
    assert!(ok > 20, "the load ran: {ok}");
    assert!(still.is_ok(), "the successor serves after the old process exited: {still:?}");
    assert!(ready.starts_with("HTTP/1.1 200"), "the successor answers on the status address: {ready}");
    assert!(!alive(successor), "the successor drained on SIGTERM");
    let _ = std::fs::remove_dir_all(&dir);
}

/// DIRECT answering `body`; with `broken`, also an unknown field (the version must be refused).
fn direct(body: &str, broken: bool) -> String {
    let yaml = DIRECT.replace("string: ok", &format!("string: {body}"));
    if broken {
        yaml.replace("  gateways: [gw]", "  gateways: [gw]\n  httpp: []")
    } else {
        yaml
    }
}

#[test]
fn reloads_by_sighup_file_edits_and_configmap_swaps_under_load_fail_no_request() {
    use std::os::unix::fs::symlink;
    // The configuration as the kubelet mounts a ConfigMap: config.yaml -> ..data/config.yaml,
    // ..data -> ..VERSION.
    let mount = std::env::temp_dir().join(format!("pylon-run-{}-reloads", std::process::id()));
    let _ = std::fs::remove_dir_all(&mount);
    std::fs::create_dir_all(mount.join("..v0")).unwrap();
    std::fs::write(mount.join("..v0/config.yaml"), direct("ok", false)).unwrap();
    symlink("..v0", mount.join("..data")).unwrap();
    symlink("..data/config.yaml", mount.join("config.yaml")).unwrap();
    let pylon = Pylon::start(&mount, &["--access-log", "off"]);
    // `try_get` accepts only a 200 whose body is "ok": a refused version would answer "bad".
    let load = Load::start(pylon.data, 3);
    for round in 1..=12 {
        // Every third version is invalid and would answer "bad".
        let yaml = direct(if round % 3 == 0 { "bad" } else { "ok" }, round % 3 == 0);
        match round % 4 {
            0 => pylon.signal("HUP"),
            1 => {
                // The kubelet's swap: a new folder, then `..data` replaced in one rename.
                let version = format!("..v{round}");
                std::fs::create_dir_all(mount.join(&version)).unwrap();
                std::fs::write(mount.join(&version).join("config.yaml"), &yaml).unwrap();
                symlink(&version, mount.join("..data_tmp")).unwrap();
                std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
            }
            _ => {
                // An edit through the symlink, as a person on the host would make it.
                std::fs::write(mount.join("config.yaml"), &yaml).unwrap();
                pylon.signal("HUP");
            }
        }
        std::thread::sleep(Duration::from_millis(400));
    }
    let (ok, failed) = load.finish();
    let (mut applied, mut refused) = (0, 0);
    while let Ok(line) = pylon.lines.try_recv() {
        applied += usize::from(line.contains("configuration reloaded"));
        refused += usize::from(line.contains("configuration refused"));
    }
    println!("12 changes by SIGHUP, file edits and ..data swaps: {applied} reloads applied, {refused} refused; {ok} requests served, {} failed", failed.len());
    assert!(failed.is_empty(), "{failed:?}");
    assert!(ok > 50, "the load ran: {ok}");
    assert!(refused >= 3, "the invalid versions were refused: {refused}");
    assert!(applied >= 6, "the valid versions were applied: {applied}");
    let _ = std::fs::remove_dir_all(&mount);
}
