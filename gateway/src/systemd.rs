//! systemd's readiness protocol (`Type=notify`): READY=1 once every listener is bound, RELOADING=1
//! then READY=1 around a reload, STOPPING=1 when the drain starts. Without `NOTIFY_SOCKET` (not
//! under systemd) every call does nothing.

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!(error = %e, "cannot notify systemd");
    }
}

/// Every listener is bound and the configuration is serving.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// The successor of a binary upgrade serves: it is the unit's main process from now on (the unit
/// needs `NotifyAccess=all`, since the message comes from a process that is not yet the main one).
pub fn ready_as_main(status: &str) {
    send(&[NotifyState::MainPid(std::process::id()), NotifyState::Ready, NotifyState::Status(status)]);
}

/// A successor (binary upgrade) serves: it is the unit's main process from now on. Sent by the
/// current main process.
pub fn main_pid(pid: u32) {
    send(&[NotifyState::MainPid(pid), NotifyState::Status("handed over to a successor; draining")]);
}

/// A reload starts.
pub fn reloading() {
    send(&[NotifyState::Reloading, NotifyState::Status("reloading the configuration")]);
}

/// The drain starts.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("draining")]);
}
