//! `echo-upstream NAME=ADDR [NAME=ADDR ...]`: echo upstreams for the demo (`make run`). Each answers
//! every request with a JSON report of what it received and its name.

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut servers = Vec::new();
    for arg in std::env::args().skip(1) {
        let Some((name, addr)) = arg.split_once('=') else {
            eprintln!("usage: echo-upstream NAME=ADDR [NAME=ADDR ...]");
            return ExitCode::from(2);
        };
        match e2e::upstream::Upstream::start_on(name, addr).await {
            Ok(up) => {
                eprintln!("echo-upstream {name} listening on {}", up.addr);
                servers.push(up);
            }
            Err(e) => {
                eprintln!("echo-upstream: cannot listen on {addr}: {e}");
                return ExitCode::from(1);
            }
        }
    }
    if servers.is_empty() {
        eprintln!("usage: echo-upstream NAME=ADDR [NAME=ADDR ...]");
        return ExitCode::from(2);
    }
    let _ = tokio::signal::ctrl_c().await;
    ExitCode::SUCCESS
}
