//! Binary upgrade: a successor takes the listening sockets over from the running process
//! (`--upgrade-from` its `--upgrade-socket`), serves on them, and only then does the old process
//! stop accepting and drain. No connection is refused or reset on the way, the request the old
//! process has in flight finishes, and a successor that fails leaves the old process serving.
//!
//! Both processes run in this test process: the hand-over is the same Unix-socket exchange of
//! descriptors as between two processes (`gateway/tests/run.rs` covers SIGUSR2 with real ones).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use e2e::client::{get, h2c, http1};
use e2e::gateway::TempDir;
use e2e::yaml::{gateway, service, virtual_service};
use e2e::Upstream;
use gateway::server::{Options, Running};

/// Port 80 for every host, everything to `up`.
fn config(dir: &Path, up: &Upstream) -> PathBuf {
    let yaml = gateway(80, &["*"])
        + &service(&up.name, &format!("{}.internal", up.name), &[up])
        + &virtual_service("vs", &["*"], &format!("- route: [{{destination: {{host: {}.internal}}}}]", up.name));
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.yaml"), yaml).unwrap();
    dir.to_path_buf()
}

fn options(config: PathBuf, socket: &Path, from: Option<&Path>) -> Options {
    let mut opts = Options::local(vec![config], conf::Selection::default(), [(80, 0)].into_iter().collect());
    opts.upgrade_socket = Some(socket.to_path_buf());
    opts.upgrade_from = from.map(Path::to_path_buf);
    opts
}

async fn start(opts: Options) -> Result<Running, gateway::server::StartError> {
    tokio::task::spawn_blocking(move || gateway::server::start(&opts)).await.unwrap()
}

/// How requests ended.
#[derive(Default)]
struct Counts {
    ok: AtomicUsize,
    /// Refused or reset connections: what a restart without hand-over causes.
    refused: AtomicUsize,
    /// Never sent: a request hyper had queued for a kept-alive connection that the old process
    /// closed before it was written, or an HTTP/2 stream after the final GOAWAY (RFC 9113 §6.8).
    not_sent: AtomicUsize,
    lost: AtomicUsize,
}

async fn load(client: reqwest::Client, url: String, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    while !stop.load(Ordering::Relaxed) {
        let counter = match client.get(&url).header("x-delay-ms", "10").send().await {
            Ok(r) => {
                let status = r.status();
                if status == 200 && r.bytes().await.is_ok() {
                    &counts.ok
                } else {
                    eprintln!("lost: status {status}");
                    &counts.lost
                }
            }
            Err(e) => {
                let text = format!("{e:?}");
                if e.is_connect() || text.contains("ConnectionReset") || text.contains("connection reset") {
                    eprintln!("refused or reset: {e:?}");
                    &counts.refused
                } else if text.contains("GoAway(b\"\", NO_ERROR, Remote)") || text.contains("Canceled") {
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

/// A client that opens a new connection for every request: what reaches the accept queues.
fn fresh_connections() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_upgrade_under_load_refuses_resets_and_loses_nothing() {
    let (old_up, new_up) = (Upstream::start("old").await, Upstream::start("new").await);
    let dir = TempDir::new();
    let socket = dir.0.join("upgrade.sock");
    let mut old = start(options(config(&dir.0.join("old"), &old_up), &socket, None)).await.unwrap();
    let addr = old.addr(80).unwrap();
    let url = format!("http://{addr}/load");
    let (stop, counts) = (Arc::new(AtomicBool::new(false)), Arc::new(Counts::default()));
    // Three kept-alive HTTP/1.1 clients, one HTTP/2 client, two opening a connection per request.
    let clients = [http1(), http1(), http1(), h2c(), fresh_connections(), fresh_connections()];
    let load: Vec<_> =
        clients.into_iter().map(|c| tokio::spawn(load(c, url.clone(), stop.clone(), counts.clone()))).collect();
    // A request the old process has in flight through the hand-over (2 s).
    let long = {
        let url = format!("http://{addr}/long");
        tokio::spawn(async move { http1().get(url).header("x-delay-ms", "2000").send().await.map(|r| r.status()) })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The successor: a new version of the configuration, on the same sockets.
    let new = start(options(config(&dir.0.join("new"), &new_up), &socket, Some(&socket))).await.unwrap();
    assert_eq!(new.addr(80), Some(addr), "the successor serves the same socket");
    assert_eq!(new.status_addr, old.status_addr, "and the same status endpoint");
    let successor = tokio::time::timeout(Duration::from_secs(10), old.handed_over.as_mut().unwrap().recv())
        .await
        .expect("the old process heard that the successor serves");
    assert_eq!(successor, Some(std::process::id()));
    let left = tokio::task::spawn_blocking(move || old.hand_over(Duration::from_secs(1), Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(left, 0, "everything in flight on the old process finished");
    assert_eq!(long.await.unwrap().unwrap(), 200, "the long request on the old process finished");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }

    let (ok, refused, not_sent, lost) = (
        counts.ok.load(Ordering::Relaxed),
        counts.refused.load(Ordering::Relaxed),
        counts.not_sent.load(Ordering::Relaxed),
        counts.lost.load(Ordering::Relaxed),
    );
    println!("binary upgrade under load: {ok} served, {refused} refused or reset, {not_sent} never sent, {lost} lost");
    assert_eq!((refused, lost), (0, 0));
    assert!(ok > 100, "the load ran: {ok}");
    assert!(!old_up.seen().is_empty() && !new_up.seen().is_empty(), "both versions served");
    // Only the successor serves now, on the old address, status endpoint included.
    for _ in 0..10 {
        assert_eq!(get(&fresh_connections(), &format!("http://{addr}"), "x", "/", &[]).await.upstream(), Some("new"));
    }
    let ready = reqwest::get(format!("http://{}/healthz/ready", new.status_addr)).await.unwrap();
    assert_eq!(ready.status(), 200);
    tokio::task::spawn_blocking(move || drop(new)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_that_fails_leaves_the_old_process_serving() {
    let (old_up, new_up) = (Upstream::start("old").await, Upstream::start("new").await);
    let dir = TempDir::new();
    let socket = dir.0.join("upgrade.sock");
    let mut old = start(options(config(&dir.0.join("old"), &old_up), &socket, None)).await.unwrap();
    let addr = old.addr(80).unwrap();

    // Invalid configuration: refused before the old process is even asked.
    let invalid = config(&dir.0.join("invalid"), &new_up);
    std::fs::write(
        invalid.join("config.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec: {selectorr: {}}\n",
    )
    .unwrap();
    assert!(matches!(
        start(options(invalid, &socket, Some(&socket))).await,
        Err(gateway::server::StartError::Invalid(_))
    ));

    // A successor that takes the sockets but cannot bind a port its configuration adds.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let more = config(&dir.0.join("more"), &new_up);
    let yaml = std::fs::read_to_string(more.join("config.yaml")).unwrap().replace(
        "  servers:\n",
        "  servers:\n  - port: {number: 81, name: http-81, protocol: HTTP}\n    bind: 127.0.0.1\n    hosts: ['*']\n",
    );
    std::fs::write(more.join("config.yaml"), yaml).unwrap();
    let mut opts = options(more, &socket, Some(&socket));
    opts.port_map.insert(81, taken.local_addr().unwrap().port());
    assert!(matches!(start(opts).await, Err(gateway::server::StartError::Bind(_))));

    // The old process never heard of a successor and serves as before; a later successor works.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(old.handed_over.as_mut().unwrap().try_recv().is_err());
    assert!(old.state.is_ready());
    assert_eq!(get(&http1(), &format!("http://{addr}"), "x", "/", &[]).await.upstream(), Some("old"));
    let new = start(options(config(&dir.0.join("new"), &new_up), &socket, Some(&socket))).await.unwrap();
    let successor = tokio::time::timeout(Duration::from_secs(10), old.handed_over.as_mut().unwrap().recv()).await;
    assert_eq!(successor.unwrap(), Some(std::process::id()));
    assert_eq!(new.addr(80), Some(addr));
    tokio::task::spawn_blocking(move || {
        old.hand_over(Duration::from_secs(1), Duration::from_secs(5));
        drop(new);
    })
    .await
    .unwrap();
}
