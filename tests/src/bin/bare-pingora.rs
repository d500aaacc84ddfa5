//! `bare-pingora LISTEN UPSTREAM [THREADS]`: the baseline of `scripts/bench`. A Pingora proxy with
//! Pingora's own listener and nothing else: every request goes to UPSTREAM over pooled HTTP/1.1.

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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(Ok(upstream))) = (args.get(1), args.get(2).map(|u| u.parse::<SocketAddr>())) else {
        eprintln!("usage: bare-pingora LISTEN UPSTREAM [THREADS]");
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
