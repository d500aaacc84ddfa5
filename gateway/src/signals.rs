//! SIGTERM and SIGINT. Handlers are installed before the gateway starts, so a signal that arrives
//! during start-up still leads to a drain and exit 0 rather than the default termination.

use tokio::runtime::Runtime;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Installed handlers for SIGTERM and SIGINT.
pub struct Signals {
    rt: Runtime,
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Installs the handlers; from now on these signals are queued instead of ending the process.
    pub fn install() -> std::io::Result<Signals> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (term, int) = {
            let _entered = rt.enter();
            (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?)
        };
        Ok(Signals { rt, term, int })
    }

    /// Blocks until SIGTERM or SIGINT arrives (or arrived since `install`); returns its name.
    pub fn wait(mut self) -> &'static str {
        let (term, int) = (&mut self.term, &mut self.int);
        self.rt.block_on(async {
            tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            }
        })
    }
}
