//! SIGTERM, SIGINT, SIGHUP and SIGUSR1. Handlers are installed before the gateway starts, so a signal that
//! arrives during start-up still leads to a drain and exit 0 (or a reload) rather than the default
//! termination.

use tokio::runtime::Runtime;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// SIGTERM or SIGINT: drain and exit.
    Stop(&'static str),
    /// SIGHUP: reload the configuration.
    Reload,
    /// SIGUSR1: reopen the access log file (logrotate).
    Reopen,
}

/// Installed handlers.
pub struct Signals {
    rt: Runtime,
    term: Signal,
    int: Signal,
    hup: Signal,
    usr1: Signal,
}

impl Signals {
    /// Installs the handlers; from now on these signals are queued instead of ending the process.
    pub fn install() -> std::io::Result<Signals> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (term, int, hup, usr1) = {
            let _entered = rt.enter();
            (
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
                signal(SignalKind::hangup())?,
                signal(SignalKind::user_defined1())?,
            )
        };
        Ok(Signals { rt, term, int, hup, usr1 })
    }

    /// Waits at most `limit` for a signal.
    pub fn wait_timeout(&mut self, limit: std::time::Duration) -> Option<Asked> {
        let (term, int, hup, usr1) = (&mut self.term, &mut self.int, &mut self.hup, &mut self.usr1);
        self.rt.block_on(async {
            tokio::select! {
                _ = term.recv() => Some(Asked::Stop("SIGTERM")),
                _ = int.recv() => Some(Asked::Stop("SIGINT")),
                _ = hup.recv() => Some(Asked::Reload),
                _ = usr1.recv() => Some(Asked::Reopen),
                () = tokio::time::sleep(limit) => None,
            }
        })
    }

    /// Blocks until a signal arrives (or arrived since the last call).
    pub fn wait(&mut self) -> Asked {
        let (term, int, hup, usr1) = (&mut self.term, &mut self.int, &mut self.hup, &mut self.usr1);
        self.rt.block_on(async {
            tokio::select! {
                _ = term.recv() => Asked::Stop("SIGTERM"),
                _ = int.recv() => Asked::Stop("SIGINT"),
                _ = hup.recv() => Asked::Reload,
                _ = usr1.recv() => Asked::Reopen,
            }
        })
    }
}
