//! Configuration reload: all or nothing, from the admin call, from file changes (a Kubernetes
//! ConfigMap's `..data` swap included), with listeners following the configuration, unchanged
//! clusters kept, and no request lost while it happens.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::client::{echo, get, h2c, http1, websocket};
use e2e::gateway::Setup;
use e2e::yaml::{gateway, service, virtual_service};
use e2e::{TestGateway, Upstream};
use gateway::reload::ReloadError;

/// Port 80 for every host, all requests to `dest`, with the `v1` and `v2` services defined.
fn routing_to(dest: &str, v1: &Upstream, v2: &Upstream) -> String {
    gateway(80, &["*"])
        + &service("v1", "v1.internal", &[v1])
        + &service("v2", "v2.internal", &[v2])
        + &virtual_service("vs", &["*"], &format!("- route: [{{destination: {{host: {dest}}}}}]"))
}

/// A configuration with an error (an unknown field) that would send everything to `bad`: it must
/// never serve.
fn broken(v1: &Upstream, v2: &Upstream, bad: &Upstream) -> String {
    (routing_to("bad.internal", v1, v2) + &service("bad", "bad.internal", &[bad]))
        .replace("  gateways: [gw]", "  gateways: [gw]\n  httpp: []")
}

/// Polls until a request to port 80 is answered by `upstream` (10 s at most).
async fn wait_for(gw: &TestGateway, upstream: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = get(&http1(), &gw.url(80), "x", "/", &[]).await;
        if r.upstream() == Some(upstream) {
            return;
        }
        assert!(Instant::now() < deadline, "still answered by {:?}", r.upstream());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_configuration_is_applied_and_an_invalid_one_refused() {
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let gw = TestGateway::start(&routing_to("v1.internal", &v1, &v2));
    assert_eq!(get(&http1(), &gw.url(80), "x", "/", &[]).await.upstream(), Some("v1"));
    std::fs::write(gw.dir.0.join("config.yaml"), routing_to("v2.internal", &v1, &v2)).unwrap();
    let generation = gw.running.reload().await.unwrap();
    assert!(generation >= 2);
    assert_eq!(get(&http1(), &gw.url(80), "x", "/", &[]).await.upstream(), Some("v2"));

    let bad = Upstream::start("bad").await;
    std::fs::write(gw.dir.0.join("config.yaml"), broken(&v1, &v2, &bad)).unwrap();
    match gw.running.reload().await {
        Err(ReloadError::Invalid(d)) => assert!(d.to_string().contains("httpp"), "{d}"),
        other => panic!("an invalid configuration was not refused: {other:?}"),
    }
    assert_eq!(get(&http1(), &gw.url(80), "x", "/", &[]).await.upstream(), Some("v2"), "the last good one serves");
    assert!(bad.seen().is_empty());
    let reloads = &gw.running.state.reloads;
    assert!(reloads.rejected.load(Ordering::Relaxed) >= 1);
    assert!(reloads.last_error.lock().unwrap().as_deref().unwrap_or("").contains("httpp"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_configuration_file_is_reloaded() {
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let gw = TestGateway::start(&routing_to("v1.internal", &v1, &v2));
    gw.write_config(&routing_to("v2.internal", &v1, &v2));
    wait_for(&gw, "v2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_written_in_pieces_is_reloaded_once_whole() {
    use std::io::Write;
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let gw = TestGateway::start(&routing_to("v1.internal", &v1, &v2));
    let whole = routing_to("v2.internal", &v1, &v2);
    let (first, rest) = whole.split_at(whole.len() / 2);
    // A writer that truncates, then writes in two pieces 200 ms apart, each pause shorter than
    // the settle time: no reload may read the empty or the half-written file.
    let mut file = std::fs::File::create(gw.dir.0.join("config.yaml")).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    file.write_all(first.as_bytes()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    file.write_all(rest.as_bytes()).unwrap();
    drop(file);
    wait_for(&gw, "v2").await;
    let reloads = &gw.running.state.reloads;
    assert_eq!(reloads.rejected.load(Ordering::Relaxed), 0, "{:?}", reloads.last_error.lock().unwrap());
    assert_eq!(reloads.applied.load(Ordering::Relaxed), 1, "only the whole file was applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_data_swap_is_reloaded() {
    use std::os::unix::fs::symlink;
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    // A started gateway to own a temporary folder; the ConfigMap mount is a folder inside it.
    let gw = TestGateway::start(&routing_to("v1.internal", &v1, &v2));
    let mount = gw.dir.0.join("mount");
    std::fs::create_dir_all(mount.join("..2026_11_29_a")).unwrap();
    std::fs::write(mount.join("..2026_11_29_a/config.yaml"), routing_to("v1.internal", &v1, &v2)).unwrap();
    symlink("..2026_11_29_a", mount.join("..data")).unwrap();
    symlink("..data/config.yaml", mount.join("config.yaml")).unwrap();
    let opts = gateway::server::Options::local(
        vec![mount.clone()],
        conf::Selection::default(),
        [(80, 0)].into_iter().collect(),
    );
    let running = tokio::task::spawn_blocking(move || gateway::server::start(&opts)).await.unwrap().unwrap();
    let url = format!("http://127.0.0.1:{}", running.addr(80).unwrap().port());
    assert_eq!(get(&http1(), &url, "x", "/", &[]).await.upstream(), Some("v1"));
    // What the kubelet does: a new timestamped folder, then `..data` swapped in one rename.
    std::fs::create_dir_all(mount.join("..2026_11_29_b")).unwrap();
    std::fs::write(mount.join("..2026_11_29_b/config.yaml"), routing_to("v2.internal", &v1, &v2)).unwrap();
    symlink("..2026_11_29_b", mount.join("..data_tmp")).unwrap();
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&http1(), &url, "x", "/", &[]).await.upstream() != Some("v2") {
        assert!(Instant::now() < deadline, "the ..data swap was not reloaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::task::spawn_blocking(move || drop(running)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_open_and_close_with_the_configuration() {
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let setup = Setup { extra_ports: vec![8081], ..Setup::default() };
    let gw = TestGateway::start_with(&routing_to("v1.internal", &v1, &v2), setup);
    assert!(gw.running.addr(8081).is_none());
    let two_ports = routing_to("v1.internal", &v1, &v2).replace(
        "  servers:\n",
        "  servers:\n  - port: {number: 8081, name: http-8081, protocol: HTTP}\n    hosts: ['*']\n",
    );
    std::fs::write(gw.dir.0.join("config.yaml"), &two_ports).unwrap();
    gw.running.reload().await.unwrap();
    let added = gw.running.addr(8081).expect("port 8081 opened");
    let r = get(&http1(), &format!("http://127.0.0.1:{}", added.port()), "x", "/", &[]).await;
    assert_eq!(r.upstream(), Some("v1"));
    std::fs::write(gw.dir.0.join("config.yaml"), routing_to("v1.internal", &v1, &v2)).unwrap();
    gw.running.reload().await.unwrap();
    assert!(gw.running.addr(8081).is_none());
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", added.port())).is_ok() {
        assert!(Instant::now() < deadline, "port 8081 still accepts");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get(&http1(), &gw.url(80), "x", "/", &[]).await.upstream(), Some("v1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_that_cannot_be_bound_refuses_the_whole_reload() {
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let gw = TestGateway::start(&routing_to("v1.internal", &v1, &v2));
    let more = routing_to("v2.internal", &v1, &v2).replace(
        "  servers:\n",
        &format!("  servers:\n  - port: {{number: {port}, name: http-taken, protocol: HTTP}}\n    bind: 127.0.0.1\n    hosts: ['*']\n"),
    );
    std::fs::write(gw.dir.0.join("config.yaml"), more).unwrap();
    assert!(matches!(gw.running.reload().await, Err(ReloadError::Bind(_))));
    assert_eq!(get(&http1(), &gw.url(80), "x", "/", &[]).await.upstream(), Some("v1"), "nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_cluster_keeps_its_state_across_reloads() {
    let (a, b, c) = (Upstream::start("a").await, Upstream::start("b").await, Upstream::start("c").await);
    // Round robin over three endpoints: its position survives a reload that does not touch it.
    let rr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: rr}\nspec:\n  host: pool.internal\n  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}\n---\n";
    let config = |header: &str| {
        gateway(80, &["*"])
            + &service("pool", "pool.internal", &[&a, &b, &c])
            + rr
            + &virtual_service("vs", &["*"], &format!("- headers: {{request: {{set: {{x-config: {header}}}}}}}\n  route: [{{destination: {{host: pool.internal}}}}]"))
    };
    let gw = TestGateway::start(&config("one"));
    let c1 = http1();
    let first = get(&c1, &gw.url(80), "x", "/", &[]).await.upstream().unwrap().to_string();
    std::fs::write(gw.dir.0.join("config.yaml"), config("two")).unwrap();
    gw.running.reload().await.unwrap();
    let second = get(&c1, &gw.url(80), "x", "/", &[]).await.upstream().unwrap().to_string();
    let order = ["a", "b", "c"];
    let next = order[(order.iter().position(|n| *n == first).unwrap() + 1) % 3];
    assert_eq!(second, next, "the round-robin position carried over the reload");
    assert!([&a, &b, &c].iter().any(|u| u.seen().iter().any(|s| s.header("x-config") == Some("two"))));
}

/// A WebSocket through the gateway at `addr`, exchanging a message every 20 ms until `stop`;
/// returns how many were echoed. Panics when one is not.
async fn websocket_until(addr: std::net::SocketAddr, stop: Arc<AtomicBool>) -> usize {
    let mut ws = websocket(addr, "/ws").await.expect("the WebSocket opens");
    let mut exchanged = 0;
    while !stop.load(Ordering::Relaxed) {
        echo(&mut ws, format!("message {exchanged}\n").as_bytes()).await.expect("the WebSocket keeps working");
        exchanged += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    exchanged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_lose_no_request_and_invalid_versions_never_serve() {
    let (v1, v2, bad) = (Upstream::start("v1").await, Upstream::start("v2").await, Upstream::start("bad").await);
    let gw = Arc::new(TestGateway::start(&routing_to("v1.internal", &v1, &v2)));
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for i in 0..5 {
        // Four kept-alive HTTP/1.1 clients and one HTTP/2 client.
        let client = if i == 4 { h2c() } else { http1() };
        let (gw, stop, ok, failed) = (gw.clone(), stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = client.get(format!("{}/load", gw.url(80))).send().await;
                match r.map(|r| (r.status().as_u16(), r.headers().get("x-upstream").cloned())) {
                    Ok((200, Some(up))) if up == "v1" || up == "v2" => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let ws = tokio::spawn(websocket_until(gw.running.addr(80).unwrap(), stop.clone()));
    // A long request (3 s) open across the reloads.
    let long = tokio::spawn(http1().get(format!("{}/long", gw.url(80))).header("x-delay-ms", "3000").send());
    let mut applied = 0;
    for round in 0..30 {
        let yaml = match round % 3 {
            0 => routing_to("v2.internal", &v1, &v2),
            1 => broken(&v1, &v2, &bad),
            _ => routing_to("v1.internal", &v1, &v2),
        };
        if round % 2 == 0 {
            gw.write_config(&yaml);
            tokio::time::sleep(Duration::from_millis(60)).await;
        } else {
            gw.write_config(&yaml);
            match gw.running.reload().await {
                Ok(_) => applied += 1,
                Err(ReloadError::Invalid(_)) => {
                    assert_eq!(round % 3, 1, "round {round}: a valid configuration was refused")
                }
                Err(e) => panic!("round {round}: {e}"),
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    assert_eq!(long.await.unwrap().unwrap().status(), 200, "the long request open across the reloads finished");
    let exchanged = ws.await.unwrap();
    assert!(exchanged > 10, "the WebSocket exchanged messages across the reloads: {exchanged}");
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "30 configuration changes ({applied} explicit reloads applied): {ok} requests served, {failed} failed, \
         {exchanged} WebSocket messages echoed"
    );
    assert_eq!(failed, 0);
    assert!(ok > 100, "the load ran: {ok}");
    assert!(bad.seen().is_empty(), "an invalid version served");
    assert!(gw.running.state.reloads.rejected.load(Ordering::Relaxed) >= 5, "the broken versions were refused");
}
