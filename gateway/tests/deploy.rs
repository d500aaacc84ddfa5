//! The shipped Kubernetes manifest's command line, run as-is (only paths, the namespace and ports
//! made local): the configuration from a ConfigMap-style mount and the certificate from a
//! Secret-style mount, both updated the way the kubelet updates them (a new timestamped folder, then
//! the `..data` link swapped in one rename), are picked up without a restart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The container args of `deploy/kubernetes/pylon.yaml`.
fn manifest_args() -> Vec<String> {
    let manifest = std::fs::read_to_string(root().join("deploy/kubernetes/pylon.yaml")).unwrap();
    manifest.lines().filter_map(|l| l.trim().strip_prefix("- --")).map(|a| format!("--{a}")).collect()
}

/// A kubelet-style volume: `..<version>/<files>`, `..data` → it, and `<file>` → `..data/<file>`.
fn publish(volume: &Path, version: &str, files: &[(&str, &[u8])]) {
    let dir = volume.join(format!("..{version}"));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
        let link = volume.join(name);
        if link.symlink_metadata().is_err() {
            symlink(format!("..data/{name}"), &link).unwrap();
        }
    }
    let tmp = volume.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, volume.join("..data")).unwrap();
}

/// A self-signed certificate and key for `host` (PEM), made with the openssl command.
fn certificate(dir: &Path, host: &str, name: &str) -> (Vec<u8>, Vec<u8>) {
    let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    let ok = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
        .args(["-subj", &format!("/CN={host}"), "-addext", &format!("subjectAltName=DNS:{host}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl req failed");
    (std::fs::read(cert).unwrap(), std::fs::read(key).unwrap())
}

fn config(body: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: pylon}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: 80, name: http, protocol: HTTP}}\n    hosts: ['*']\n  - port: {{number: 443, name: https, protocol: HTTPS}}\n    hosts: [httpbin.example.com]\n    tls: {{mode: SIMPLE, credentialName: httpbin-credential}}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs, namespace: pylon}}\nspec:\n  hosts: ['*']\n  gateways: [gw]\n  http:\n  - directResponse: {{status: 200, body: {{string: {body}}}}}\n"
    )
}

fn http_body(addr: SocketAddr) -> String {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = tcp.read_to_string(&mut out);
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
}

/// The certificate the server presents for `host`, as PEM (openssl s_client).
fn presented(addr: SocketAddr, host: &str) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), "-servername", host])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let start = text.find("-----BEGIN CERTIFICATE-----").unwrap_or(0);
    let end = text.find("-----END CERTIFICATE-----").map_or(0, |e| e + 25);
    text.get(start..end).unwrap_or("").to_string()
}

/// The manifest's args with the mounts at `config` and `credentials`, the namespace `pylon`, and
/// every port ephemeral on loopback.
fn local_args(config: &Path, credentials: &Path) -> Vec<String> {
    manifest_args()
        .into_iter()
        .map(|a| {
            let a = a
                .replace("/etc/pylon/config", config.to_str().unwrap())
                .replace("/etc/pylon/credentials", credentials.to_str().unwrap())
                .replace("$(POD_NAMESPACE)", "pylon");
            match a.split_once('=') {
                Some(("--port-map", _)) => "--port-map=80=0,443=0".to_string(),
                Some((flag @ ("--status-addr" | "--metrics-addr" | "--admin-addr"), _)) => {
                    format!("{flag}=127.0.0.1:0")
                }
                _ => a,
            }
        })
        .collect()
}

/// Starts `pylon run args`; returns it and the address of each Gateway port it opened.
fn start(args: &[String]) -> (Pylon, HashMap<u16, SocketAddr>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pylon"))
        .arg("run")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let pylon = Pylon(child);
    let mut ports = HashMap::new();
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ports.len() < 2 {
        assert!(Instant::now() < deadline, "pylon did not open its two ports");
        let line = lines.next().expect("pylon is running").unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            let addr: SocketAddr = rest.split_whitespace().next().unwrap().parse().unwrap();
            let port: u16 =
                rest.split("Gateway port ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
            ports.insert(port, SocketAddr::from(([127, 0, 0, 1], addr.port())));
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    (pylon, ports)
}

struct Pylon(Child);

impl Drop for Pylon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_kubernetes_command_line_serves_configmap_and_secret_mounts_and_follows_their_updates() {
    let root_dir = std::env::temp_dir().join(format!("pylon-deploy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root_dir);
    let (config_volume, cred_volume) = (root_dir.join("config"), root_dir.join("credentials/httpbin-credential"));
    std::fs::create_dir_all(&config_volume).unwrap();
    std::fs::create_dir_all(&cred_volume).unwrap();
    publish(&config_volume, "2026_11_29_a", &[("gateway.yaml", config("v1").as_bytes())]);
    let (cert_a, key_a) = certificate(&root_dir, "httpbin.example.com", "a");
    publish(&cred_volume, "2026_11_29_a", &[("tls.crt", &cert_a), ("tls.key", &key_a)]);

    let args = local_args(&config_volume, &root_dir.join("credentials"));
    assert!(args.iter().any(|a| a.starts_with("--credentials-dir=")), "{args:?}");
    let (_pylon, ports) = start(&args);
    let (http, https) = (ports[&80], ports[&443]);
    let until = |what: &str, check: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    until("the first configuration serves", &|| http_body(http) == "v1");
    let cert_a_text = String::from_utf8(cert_a).unwrap();
    until("the Secret's certificate is presented", &|| {
        presented(https, "httpbin.example.com").trim() == cert_a_text.trim()
    });

    // The kubelet updates the ConfigMap, then the Secret.
    publish(&config_volume, "2026_11_29_b", &[("gateway.yaml", config("v2").as_bytes())]);
    until("the ConfigMap update is served", &|| http_body(http) == "v2");
    let (cert_b, key_b) = certificate(&root_dir, "httpbin.example.com", "b");
    publish(&cred_volume, "2026_11_29_b", &[("tls.crt", &cert_b), ("tls.key", &key_b)]);
    let cert_b_text = String::from_utf8(cert_b).unwrap();
    until("the Secret update is presented", &|| presented(https, "httpbin.example.com").trim() == cert_b_text.trim());
    let _ = std::fs::remove_dir_all(&root_dir);
}
