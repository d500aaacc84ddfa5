//! SIGTERM, SIGINT, SIGHUP, SIGUSR1 and SIGUSR2, and the end of a binary upgrade. Handlers are installed before the gateway starts, so a signal that
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
    /// SIGUSR2: start a successor process from the binary on disk (binary upgrade).
    Upgrade,
    /// A successor process serves on this one's sockets (its process id): drain.
    HandedOver(u32),
}

/// Installed handlers.
pub struct Signals {
    rt: Runtime,
    sources: Sources,
}

/// Where requests come from.
struct Sources {
    term: Signal,
    int: Signal,
    hup: Signal,
    usr1: Signal,
    usr2: Signal,
    handed_over: Option<tokio::sync::mpsc::UnboundedReceiver<u32>>,
}

impl Signals {
    /// Installs the handlers; from now on these signals are queued instead of ending the process.
    pub fn install() -> std::io::Result<Signals> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let sources = {
            let _entered = rt.enter();
            Sources {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
                hup: signal(SignalKind::hangup())?,
                usr1: signal(SignalKind::user_defined1())?,
                usr2: signal(SignalKind::user_defined2())?,
                handed_over: None,
            }
        };
        Ok(Signals { rt, sources })
    }

    /// Also reports the end of a binary upgrade ([`Asked::HandedOver`]) from `rx`.
    pub fn watch_upgrade(&mut self, rx: tokio::sync::mpsc::UnboundedReceiver<u32>) {
        self.sources.handed_over = Some(rx);
    }

    /// Waits at most `limit` for a signal.
    pub fn wait_timeout(&mut self, limit: std::time::Duration) -> Option<Asked> {
        let (rt, sources) = (&self.rt, &mut self.sources);
        rt.block_on(async {
            tokio::select! {
                asked = sources.next() => Some(asked),
                () = tokio::time::sleep(limit) => None,
            }
        })
    }

    /// Blocks until a signal arrives (or arrived since the last call).
    pub fn wait(&mut self) -> Asked {
        self.rt.block_on(self.sources.next())
    }
}

impl Sources {
    async fn next(&mut self) -> Asked {
        let successor = async {
            match &mut self.handed_over {
                Some(rx) => match rx.recv().await {
                    Some(pid) => pid,
                    None => std::future::pending().await,
                },
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.term.recv() => Asked::Stop("SIGTERM"),
            _ = self.int.recv() => Asked::Stop("SIGINT"),
            _ = self.hup.recv() => Asked::Reload,
            _ = self.usr1.recv() => Asked::Reopen,
            _ = self.usr2.recv() => Asked::Upgrade,
            pid = successor => Asked::HandedOver(pid),
        }
    }
}
