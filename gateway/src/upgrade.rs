//! Binary upgrade without refusing or resetting a connection. The running process offers its
//! listening sockets (data-plane ports and operator endpoints) on a Unix socket
//! (`--upgrade-socket`); a successor started with `--upgrade-from` that path receives them
//! (`SCM_RIGHTS`), serves on them, and says when it is ready. From then on both processes hold the
//! same kernel sockets, so no accept queue is ever closed: the old process stops accepting and
//! drains, the successor accepts everything after. This is what Pingora's graceful upgrade
//! (<https://github.com/cloudflare/pingora/blob/main/docs/user_guide/graceful.md>) and nginx's
//! binary upgrade do; an `SO_REUSEPORT` overlap instead resets the connections still queued on the
//! old process's sockets when it closes them (unless `net.ipv4.tcp_migrate_req` is 1).
//!
//! The old process keeps serving until the successor reports ready: a successor that fails first
//! (invalid configuration, a port it cannot bind, a crash) changes nothing.
//!
//! Wire format, one exchange per connection: the old process sends a 4-byte big-endian length, a
//! JSON list of [`Offered`] sockets in that order, and their descriptors in one `SCM_RIGHTS`
//! message; the successor answers `READY <pid> <indices of the sockets it serves, or ->\n` once it
//! serves, and the old process confirms with `OK\n` before it stops accepting. A successor that
//! gets no confirmation while the old process lives stops again: exactly one of them serves.

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};
use serde::{Deserialize, Serialize};

use crate::listener::ListenerKey;

/// The most descriptors one hand-over carries (Linux's `SCM_MAX_FD`).
pub const MAX_SOCKETS: usize = 253;

/// How long the old process waits for the successor to report ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// How long the successor waits for the old process to confirm.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// What a socket serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A Gateway port.
    Data,
    /// `--status-addr`.
    Status,
    /// `--metrics-addr`.
    Metrics,
    /// `--admin-addr`.
    Admin,
}

/// One offered socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Offered {
    /// What it serves.
    pub role: Role,
    /// The Gateway port (data sockets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The servers' `bind` (data sockets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<IpAddr>,
    /// The bound address.
    pub local: SocketAddr,
}

/// Why a hand-over failed.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The socket or the exchange failed.
    #[error("cannot take over the sockets from {path}: {source}")]
    Io {
        /// The upgrade socket.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The old process sent something else.
    #[error("cannot take over the sockets from {path}: {why}")]
    Protocol {
        /// The upgrade socket.
        path: PathBuf,
        /// What was wrong.
        why: String,
    },
}

/// Sockets received from the old process, taken one by one as the successor binds.
#[derive(Default)]
pub struct Inherited {
    sockets: Vec<(Offered, Option<std::net::TcpListener>)>,
}

impl Inherited {
    /// The data socket for listener `key` when `listen` (its port after `--port-map`; 0: any) is
    /// what the old process bound.
    pub fn take_data(&mut self, key: ListenerKey, listen: u16) -> Option<(SocketAddr, std::net::TcpListener)> {
        self.take(|o| {
            o.role == Role::Data
                && o.port == Some(key.port)
                && o.bind == key.bind
                && (listen == 0 || listen == o.local.port())
        })
    }

    /// The operator socket `role` when `wanted` (port 0: any) matches what the old process bound.
    pub fn take_operator(&mut self, role: Role, wanted: SocketAddr) -> Option<std::net::TcpListener> {
        self.take(|o| {
            o.role == role && o.local.ip() == wanted.ip() && (wanted.port() == 0 || wanted.port() == o.local.port())
        })
        .map(|(_, socket)| socket)
    }

    fn take(&mut self, wanted: impl Fn(&Offered) -> bool) -> Option<(SocketAddr, std::net::TcpListener)> {
        let (offered, socket) = self.sockets.iter_mut().find(|(o, s)| s.is_some() && wanted(o))?;
        socket.take().map(|s| (offered.local, s))
    }

    /// How many sockets were received and not taken (the old configuration had them; this one
    /// does not). They close when this is dropped.
    pub fn untaken(&self) -> usize {
        self.sockets.iter().filter(|(_, s)| s.is_some()).count()
    }

    /// The positions, in the old process's list, of the sockets taken.
    pub fn adopted(&self) -> Vec<usize> {
        self.sockets.iter().enumerate().filter(|(_, (_, s))| s.is_none()).map(|(i, _)| i).collect()
    }
}

/// The successor's side of the connection to the old process, to report readiness on.
pub struct Handoff {
    stream: UnixStream,
    path: PathBuf,
    /// The old process (`SO_PEERCRED`).
    old: Option<u32>,
}

impl Handoff {
    /// Tells the old process that this one serves the sockets at positions `adopted`, and waits
    /// for it to confirm that it stops accepting. `Err` when it does not while it lives (it gave up
    /// waiting and goes on serving): this process must then stop.
    pub fn ready(mut self, adopted: &[usize]) -> Result<(), UpgradeError> {
        let io = |source| UpgradeError::Io { path: self.path.clone(), source };
        let list: Vec<String> = adopted.iter().map(usize::to_string).collect();
        let list = if list.is_empty() { "-".to_string() } else { list.join(",") };
        let sent = self
            .stream
            .write_all(format!("READY {} {list}\n", std::process::id()).as_bytes())
            .and_then(|()| self.stream.set_read_timeout(Some(CONFIRM_TIMEOUT)))
            .and_then(|()| read_line(&mut self.stream));
        match sent {
            Ok(answer) if answer == "OK" => Ok(()),
            _ if !self.old.is_some_and(alive) => {
                tracing::warn!(path = %self.path.display(), "the previous process is gone before it confirmed; serving");
                Ok(())
            }
            Ok(answer) => Err(UpgradeError::Protocol {
                path: self.path.clone(),
                why: format!("the previous process did not confirm (it said {answer:?}) and keeps serving"),
            }),
            Err(e) => Err(io(e)),
        }
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// One line (without its `\n`), at most 4 KiB.
fn read_line(stream: &mut UnixStream) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 4096 {
        match stream.read(&mut byte)? {
            0 => break,
            _ if byte[0] == b'\n' => break,
            _ => line.push(byte[0]),
        }
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// The successor: connects to the old process at `path` and receives its sockets.
pub fn take_over(path: &Path) -> Result<(Inherited, Handoff), UpgradeError> {
    let io = |source| UpgradeError::Io { path: path.to_path_buf(), source };
    let protocol = |why: String| UpgradeError::Protocol { path: path.to_path_buf(), why };
    let mut stream = UnixStream::connect(path).map_err(io)?;
    let peer = rustix::net::sockopt::get_socket_peercred(&stream).map_err(|e| io(e.into()))?;
    if peer.uid != rustix::process::getuid() {
        return Err(protocol("the process offering the sockets runs as another user".into()));
    }
    let old = u32::try_from(peer.pid.as_raw_nonzero().get()).ok();
    stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(io)?;
    let mut head = [0u8; 4];
    let mut space = vec![0u8; rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    // The descriptors arrive with the first bytes; CLOEXEC keeps them out of any process this one
    // starts (a later upgrade's successor gets them only through this protocol).
    let got = rustix::net::recvmsg(&stream, &mut [IoSliceMut::new(&mut head)], &mut control, RecvFlags::CMSG_CLOEXEC)
        .map_err(|e| io(e.into()))?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if got.bytes == 0 {
        return Err(protocol(
            "the old process closed the connection (it is draining, or it runs as another user)".into(),
        ));
    }
    stream.read_exact(&mut head[got.bytes..]).map_err(io)?;
    let len = u32::from_be_bytes(head) as usize;
    if len > 1 << 20 {
        return Err(protocol(format!("a {len}-byte description")));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).map_err(io)?;
    let offered: Vec<Offered> = serde_json::from_slice(&body).map_err(|e| protocol(format!("bad description: {e}")))?;
    if offered.len() != fds.len() {
        // Also what more than MAX_SOCKETS descriptors look like: the kernel drops the rest.
        return Err(protocol(format!("{} sockets described, {} received", offered.len(), fds.len())));
    }
    let mut sockets = Vec::with_capacity(fds.len());
    for (o, fd) in offered.into_iter().zip(fds) {
        let socket = std::net::TcpListener::from(fd);
        socket.set_nonblocking(true).map_err(io)?;
        if socket.local_addr().ok() != Some(o.local) {
            return Err(protocol(format!("the socket described as {} is something else", o.local)));
        }
        sockets.push((o, Some(socket)));
    }
    stream.set_read_timeout(None).map_err(io)?;
    Ok((Inherited { sockets }, Handoff { stream, path: path.to_path_buf(), old }))
}

/// A successor that reported ready, before the old process confirms.
pub struct Ready {
    stream: UnixStream,
    /// Its process id.
    pub pid: u32,
    /// The positions, in the list sent, of the sockets it serves.
    pub adopted: Vec<usize>,
}

impl Ready {
    /// Tells the successor that this process stops accepting now.
    pub fn confirm(mut self) -> std::io::Result<()> {
        self.stream.write_all(b"OK\n")
    }
}

/// The old process: sends `sockets` to the successor connected on `stream`, then waits for it to
/// report ready. `Err` says why the hand-over did not complete (the old process goes on serving).
pub fn hand_over(mut stream: UnixStream, sockets: Vec<(Offered, OwnedFd)>) -> std::io::Result<Ready> {
    let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
    if sockets.len() > MAX_SOCKETS {
        return Err(invalid(format!("{} sockets; one hand-over carries at most {MAX_SOCKETS}", sockets.len())));
    }
    let description: Vec<&Offered> = sockets.iter().map(|(o, _)| o).collect();
    let body = serde_json::to_vec(&description).map_err(|e| invalid(e.to_string()))?;
    let len = u32::try_from(body.len()).map_err(|e| invalid(e.to_string()))?;
    let head = len.to_be_bytes();
    {
        let fds: Vec<_> = sockets.iter().map(|(_, fd)| fd.as_fd()).collect();
        let mut space = vec![0u8; rustix::cmsg_space!(ScmRights(sockets.len().max(1)))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(invalid("the control message does not fit".into()));
        }
        let sent = rustix::net::sendmsg(&stream, &[IoSlice::new(&head)], &mut control, SendFlags::empty())?;
        stream.write_all(&head[sent..])?;
    }
    // The descriptors in flight hold the sockets now. These copies must not: a listener this
    // process closes meanwhile (a reload, the drain) must really close.
    drop(sockets);
    stream.write_all(&body)?;
    stream.set_read_timeout(Some(READY_TIMEOUT))?;
    let answer = read_line(&mut stream)?;
    let mut words = answer.strip_prefix("READY ").unwrap_or_default().split_whitespace();
    let pid = words.next().and_then(|pid| pid.parse().ok());
    let adopted = match words.next() {
        Some("-") => Some(Vec::new()),
        Some(list) => list.split(',').map(|i| i.parse().ok()).collect(),
        None => None,
    };
    match (pid, adopted) {
        (Some(pid), Some(adopted)) => Ok(Ready { stream, pid, adopted }),
        _ => Err(invalid(format!("the successor did not report ready (it said {answer:?})"))),
    }
}

/// The data-plane listeners among `offered` that a successor did not take (not at a position in
/// `adopted`): the old process drains them as a reload that removes them would.
pub fn not_adopted(offered: &[Offered], adopted: &[usize]) -> Vec<ListenerKey> {
    offered
        .iter()
        .enumerate()
        .filter(|(i, o)| o.role == Role::Data && !adopted.contains(i))
        .filter_map(|(_, o)| Some(ListenerKey { port: o.port?, bind: o.bind }))
        .collect()
}

/// The upgrade socket of a process, bound under a staging name until it serves: a successor
/// binds its own while the process it replaces still listens on the path.
pub struct Offer {
    listener: Option<std::os::unix::net::UnixListener>,
    staged: PathBuf,
    path: PathBuf,
}

impl Drop for Offer {
    /// A process that does not get to serve leaves no staged socket behind.
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.staged);
    }
}

impl Offer {
    /// Binds the socket for `path` under a staging name beside it. A file at `path` that is not a
    /// socket is an error (a mistyped path must not delete anything).
    pub fn bind(path: &Path) -> std::io::Result<Offer> {
        use std::os::unix::fs::FileTypeExt;
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                let why = format!("{} exists and is not a socket; refusing to replace it", path.display());
                return Err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, why));
            }
        }
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".{}.staged", std::process::id()));
        let staged = path.with_file_name(name);
        let _ = std::fs::remove_file(&staged);
        let listener = std::os::unix::net::UnixListener::bind(&staged)?;
        listener.set_nonblocking(true)?;
        Ok(Offer { listener: Some(listener), staged, path: path.to_path_buf() })
    }

    /// Puts the socket at its path (replacing the previous process's or a stale one) and offers
    /// this process's sockets on it until a successor takes them over: the data-plane listeners
    /// open at that moment, and `operator`. The successor's process id arrives on the returned
    /// channel once it serves; the caller then stops accepting and drains. Must be called inside a
    /// tokio runtime.
    pub fn serve(
        mut self,
        plane: std::sync::Arc<crate::reload::Plane>,
        operator: Vec<(Offered, OwnedFd)>,
    ) -> std::io::Result<tokio::sync::mpsc::UnboundedReceiver<u32>> {
        std::fs::rename(&self.staged, &self.path)?;
        let listener = self.listener.take().ok_or_else(|| std::io::Error::other("served twice"))?;
        let listener = tokio::net::UnixListener::from_std(listener)?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let path = self.path.clone();
        tokio::spawn(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "upgrade socket accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if let Some(pid) = exchange(stream, &plane, &operator, &path).await {
                    let _ = tx.send(pid);
                    return;
                }
            }
        });
        Ok(rx)
    }
}

/// One hand-over on `stream`; the successor's process id when it serves and was confirmed.
async fn exchange(
    stream: tokio::net::UnixStream,
    plane: &crate::reload::Plane,
    operator: &[(Offered, OwnedFd)],
    path: &Path,
) -> Option<u32> {
    match rustix::net::sockopt::get_socket_peercred(&stream) {
        Ok(peer) if peer.uid == rustix::process::getuid() => {}
        Ok(peer) => {
            tracing::warn!(pid = peer.pid.as_raw_nonzero().get(), "upgrade refused: the process runs as another user");
            return None;
        }
        Err(e) => {
            tracing::warn!(error = %e, "upgrade refused: cannot tell who connected");
            return None;
        }
    }
    if plane.env().state.is_draining() {
        tracing::warn!("upgrade refused: this process is draining");
        return None;
    }
    let mut sockets = plane.offered().await;
    sockets.extend(operator.iter().filter_map(|(o, fd)| Some((o.clone(), fd.try_clone().ok()?))));
    let offered: Vec<Offered> = sockets.iter().map(|(o, _)| o.clone()).collect();
    let stream = stream.into_std().and_then(|s| s.set_nonblocking(false).map(|()| s)).ok()?;
    tracing::info!(sockets = sockets.len(), path = %path.display(), "handing the listening sockets to a successor");
    let confirmed = tokio::task::spawn_blocking(move || {
        let ready = hand_over(stream, sockets)?;
        let (pid, adopted) = (ready.pid, ready.adopted.clone());
        ready.confirm()?;
        Ok::<_, std::io::Error>((pid, adopted))
    })
    .await;
    match confirmed {
        Ok(Ok((pid, adopted))) => {
            tracing::info!(successor = pid, "the successor (pid {pid}) serves; stopping accepting and draining");
            // Before the drain, and from the unit's main process (NotifyAccess=main suffices).
            crate::systemd::main_pid(pid);
            plane.close_listeners(&not_adopted(&offered, &adopted)).await;
            Some(pid)
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "the upgrade did not complete; still serving");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "the upgrade did not complete; still serving");
            None
        }
    }
}

/// The command line of a successor: this process's arguments without any `--upgrade-from`, then
/// `--upgrade-from socket`.
pub fn successor_args(args: impl IntoIterator<Item = std::ffi::OsString>, socket: &Path) -> Vec<std::ffi::OsString> {
    let mut out = Vec::new();
    let mut skip_value = false;
    for a in args {
        if skip_value {
            skip_value = false;
            continue;
        }
        if a == "--upgrade-from" {
            skip_value = true;
            continue;
        }
        if a.to_string_lossy().starts_with("--upgrade-from=") {
            continue;
        }
        out.push(a);
    }
    out.push("--upgrade-from".into());
    out.push(socket.as_os_str().to_owned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_successor_command_line_replaces_upgrade_from() {
        let args = ["run", "--config", "c", "--upgrade-from", "/old", "--upgrade-from=/older", "--threads", "2"];
        let out = successor_args(args.iter().map(Into::into), Path::new("/run/pylon/upgrade.sock"));
        let out: Vec<String> = out.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(out, ["run", "--config", "c", "--threads", "2", "--upgrade-from", "/run/pylon/upgrade.sock"]);
    }

    /// A folder of its own for each test.
    fn folder(name: &str) -> std::io::Result<PathBuf> {
        let dir = std::env::temp_dir().join(format!("pylon-upgrade-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// What the successor answered: its process id and the positions it took.
    type Answered = (u32, Vec<usize>);

    /// An old process on `path` handing over `sockets`; `confirm` decides whether it confirms.
    fn old_process(
        path: &Path,
        sockets: Vec<(Offered, OwnedFd)>,
        confirm: bool,
    ) -> std::io::Result<std::thread::JoinHandle<std::io::Result<Answered>>> {
        let offer = std::os::unix::net::UnixListener::bind(path)?;
        Ok(std::thread::spawn(move || {
            let (stream, _) = offer.accept()?;
            let ready = hand_over(stream, sockets)?;
            let (pid, adopted) = (ready.pid, ready.adopted.clone());
            if confirm {
                ready.confirm()?;
            }
            Ok((pid, adopted))
        }))
    }

    fn offered(role: Role, port: Option<u16>, local: SocketAddr) -> Offered {
        Offered { role, port, bind: None, local }
    }

    #[test]
    fn sockets_and_their_description_cross_a_unix_socket() -> Result<(), Box<dyn std::error::Error>> {
        let dir = folder("cross")?;
        let path = dir.join("upgrade.sock");
        let data = std::net::TcpListener::bind("127.0.0.1:0")?;
        let status = std::net::TcpListener::bind("127.0.0.1:0")?;
        let (data_addr, status_addr) = (data.local_addr()?, status.local_addr()?);
        let sockets = vec![
            (offered(Role::Data, Some(80), data_addr), OwnedFd::from(data)),
            (offered(Role::Status, None, status_addr), OwnedFd::from(status)),
        ];
        let old = old_process(&path, sockets, true)?;
        let (mut inherited, handoff) = take_over(&path)?;
        let key = ListenerKey { port: 80, bind: None };
        assert!(inherited.take_data(ListenerKey { port: 81, bind: None }, 0).is_none());
        assert!(inherited.take_data(key, data_addr.port().wrapping_add(1)).is_none(), "another port was asked for");
        let (local, socket) = inherited.take_data(key, 0).ok_or("the data socket")?;
        assert_eq!((local, socket.local_addr()?), (data_addr, data_addr));
        let status = inherited.take_operator(Role::Status, "127.0.0.1:0".parse()?).ok_or("the status socket")?;
        assert_eq!(status.local_addr()?, status_addr);
        assert_eq!(inherited.untaken(), 0);
        handoff.ready(&inherited.adopted())?;
        assert_eq!(old.join().map_err(|_| "old side panicked")??, (std::process::id(), vec![0, 1]));
        // The received socket is the same kernel socket: a connection to the address is accepted on it.
        let _client = std::net::TcpStream::connect(data_addr)?;
        socket.set_nonblocking(false)?;
        let _ = socket.accept()?;
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn a_successor_the_old_process_does_not_confirm_must_stop() -> Result<(), Box<dyn std::error::Error>> {
        let dir = folder("unconfirmed")?;
        let path = dir.join("upgrade.sock");
        // The old process (this one: alive) gave up waiting and goes on serving.
        let old = old_process(&path, Vec::new(), false)?;
        let (inherited, handoff) = take_over(&path)?;
        assert!(matches!(handoff.ready(&inherited.adopted()), Err(UpgradeError::Protocol { .. })));
        assert_eq!(old.join().map_err(|_| "old side panicked")??, (std::process::id(), vec![]));
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn listeners_the_successor_does_not_take_stay_with_the_old_process() {
        let local: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 1));
        let list = [
            offered(Role::Data, Some(80), local),
            offered(Role::Data, Some(81), local),
            offered(Role::Status, None, local),
        ];
        assert_eq!(not_adopted(&list, &[0, 2]), [ListenerKey { port: 81, bind: None }]);
        assert_eq!(not_adopted(&list, &[0, 1]), []);
    }

    #[test]
    fn a_file_that_is_not_a_socket_is_never_replaced() -> Result<(), Box<dyn std::error::Error>> {
        let dir = folder("not-a-socket")?;
        let path = dir.join("upgrade.sock");
        std::fs::write(&path, "precious")?;
        assert_eq!(Offer::bind(&path).err().map(|e| e.kind()), Some(std::io::ErrorKind::AlreadyExists));
        assert_eq!(std::fs::read_to_string(&path)?, "precious");
        // A stale socket is replaced, and nothing staged is left behind.
        std::fs::remove_file(&path)?;
        drop(std::os::unix::net::UnixListener::bind(&path)?);
        drop(Offer::bind(&path)?);
        assert_eq!(std::fs::read_dir(&dir)?.count(), 1, "only the stale socket");
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
