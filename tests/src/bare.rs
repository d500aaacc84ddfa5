//! The benchmark's floor: a Pingora proxy with Pingora's own listener and nothing else, every
//! request sent to one upstream over pooled HTTP/1.1. Two binaries run it, built with the
//! workspace's release profile as Pylon is and differing only in their allocator:
//! `bare-pingora` (jemalloc with Pylon's settings, which `.cargo/config.toml` gives every binary
//! that links it: the floor Pylon is measured against) and `bare-pingora-glibc` (Pingora's
//! default, the system allocator: what the allocator and its settings are worth on their own).

use std::net::SocketAddr;
use std::process::ExitCode;

use async_trait::async_trait;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::upstreams::peer::HttpPeer;

struct Bare {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> pingora::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

/// `NAME LISTEN UPSTREAM [THREADS]`: serves until killed.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(Ok(upstream))) = (args.get(1), args.get(2).map(|u| u.parse::<SocketAddr>())) else {
        eprintln!("usage: {} LISTEN UPSTREAM [THREADS]", args.first().map_or("bare-pingora", String::as_str));
        return ExitCode::from(2);
    };
    let threads = args.get(3).and_then(|t| t.parse().ok()).unwrap_or(1);
    let conf = ServerConf { threads, grace_period_seconds: Some(0), ..Default::default() };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let mut service = pingora::proxy::http_proxy_service(&server.configuration, Bare { upstream });
    service.add_tcp(listen);
    server.add_service(service);
    server.run_forever()
}
