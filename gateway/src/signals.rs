//! Waiting for SIGTERM or SIGINT.

use tokio::signal::unix::{signal, SignalKind};

/// Blocks until SIGTERM or SIGINT arrives; returns its name.
pub fn wait() -> &'static str {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        return "none (no signal runtime)";
    };
    rt.block_on(async {
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            return "none (signals unavailable)";
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}
