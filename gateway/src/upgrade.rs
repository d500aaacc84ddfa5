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
//! message; the successor answers `READY <pid>\n` once it serves.

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
}

/// The successor's side of the connection to the old process, to report readiness on.
pub struct Handoff {
    stream: UnixStream,
    path: PathBuf,
}

impl Handoff {
    /// Tells the old process that this one serves; it stops accepting and drains.
    pub fn ready(mut self) -> Result<(), UpgradeError> {
        let line = format!("READY {}\n", std::process::id());
        self.stream.write_all(line.as_bytes()).map_err(|source| UpgradeError::Io { path: self.path.clone(), source })
    }
}

/// The successor: connects to the old process at `path` and receives its sockets.
pub fn take_over(path: &Path) -> Result<(Inherited, Handoff), UpgradeError> {
    let io = |source| UpgradeError::Io { path: path.to_path_buf(), source };
    let protocol = |why: String| UpgradeError::Protocol { path: path.to_path_buf(), why };
    let mut stream = UnixStream::connect(path).map_err(io)?;
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
        return Err(protocol("the old process closed the connection (is it draining?)".into()));
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
        sockets.push((o, Some(socket)));
    }
    stream.set_read_timeout(None).map_err(io)?;
    Ok((Inherited { sockets }, Handoff { stream, path: path.to_path_buf() }))
}

/// The old process: sends `sockets` to the successor connected on `stream`, then waits for it to
/// report ready. Returns the successor's process id, or why the hand-over did not complete (the
/// old process then goes on serving).
pub fn hand_over(mut stream: UnixStream, sockets: &[(Offered, OwnedFd)]) -> std::io::Result<u32> {
    let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
    if sockets.len() > MAX_SOCKETS {
        return Err(invalid(format!("{} sockets; one hand-over carries at most {MAX_SOCKETS}", sockets.len())));
    }
    let description: Vec<&Offered> = sockets.iter().map(|(o, _)| o).collect();
    let body = serde_json::to_vec(&description).map_err(|e| invalid(e.to_string()))?;
    let len = u32::try_from(body.len()).map_err(|e| invalid(e.to_string()))?;
    let fds: Vec<_> = sockets.iter().map(|(_, fd)| fd.as_fd()).collect();
    let mut space = vec![0u8; rustix::cmsg_space!(ScmRights(sockets.len().max(1)))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(invalid("the control message does not fit".into()));
    }
    let head = len.to_be_bytes();
    let sent = rustix::net::sendmsg(&stream, &[IoSlice::new(&head)], &mut control, SendFlags::empty())?;
    stream.write_all(&head[sent..])?;
    stream.write_all(&body)?;
    stream.set_read_timeout(Some(READY_TIMEOUT))?;
    let mut answer = String::new();
    let mut byte = [0u8; 1];
    while answer.len() < 64 {
        match stream.read(&mut byte)? {
            0 => break,
            _ if byte[0] == b'\n' => break,
            _ => answer.push(char::from(byte[0])),
        }
    }
    answer
        .strip_prefix("READY ")
        .and_then(|pid| pid.trim().parse().ok())
        .ok_or_else(|| invalid(format!("the successor did not report ready (it said {answer:?})")))
}

/// The old process: offers its sockets on the Unix socket `path` (created now, replacing a stale
/// one) until a successor takes them over. The successor's process id arrives on the returned
/// channel once it serves; the caller then stops accepting and drains. Only a successor running
/// as the same user is answered. Must be called inside a tokio runtime.
pub fn offer(
    path: &Path,
    plane: std::sync::Arc<crate::reload::Plane>,
    operator: Vec<(Offered, OwnedFd)>,
) -> std::io::Result<tokio::sync::mpsc::UnboundedReceiver<u32>> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let path = path.to_path_buf();
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
            match rustix::net::sockopt::get_socket_peercred(&stream) {
                Ok(peer) if peer.uid == rustix::process::getuid() => {}
                Ok(peer) => {
                    tracing::warn!(
                        pid = peer.pid.as_raw_nonzero().get(),
                        "upgrade refused: the process runs as another user"
                    );
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "upgrade refused: cannot tell who connected");
                    continue;
                }
            }
            if plane.env().state.is_draining() {
                tracing::warn!("upgrade refused: this process is draining");
                continue;
            }
            let mut sockets = plane.offered().await;
            sockets.extend(operator.iter().filter_map(|(o, fd)| Some((o.clone(), fd.try_clone().ok()?))));
            let Ok(stream) = stream.into_std().and_then(|s| s.set_nonblocking(false).map(|()| s)) else { continue };
            tracing::info!(sockets = sockets.len(), path = %path.display(), "handing the listening sockets to a successor");
            match tokio::task::spawn_blocking(move || hand_over(stream, &sockets)).await {
                Ok(Ok(pid)) => {
                    tracing::info!(
                        successor = pid,
                        "the successor (pid {pid}) serves; stopping accepting and draining"
                    );
                    let _ = tx.send(pid);
                    return;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "the upgrade did not complete; still serving"),
                Err(e) => tracing::warn!(error = %e, "the upgrade did not complete; still serving"),
            }
        }
    });
    Ok(rx)
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

    #[test]
    fn sockets_and_their_description_cross_a_unix_socket() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("pylon-upgrade-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("upgrade.sock");
        let _ = std::fs::remove_file(&path);
        let offer = std::os::unix::net::UnixListener::bind(&path)?;
        let data = std::net::TcpListener::bind("127.0.0.1:0")?;
        let status = std::net::TcpListener::bind("127.0.0.1:0")?;
        let (data_addr, status_addr) = (data.local_addr()?, status.local_addr()?);
        let sockets = vec![
            (Offered { role: Role::Data, port: Some(80), bind: None, local: data_addr }, OwnedFd::from(data)),
            (Offered { role: Role::Status, port: None, bind: None, local: status_addr }, OwnedFd::from(status)),
        ];
        let old = std::thread::spawn(move || -> std::io::Result<u32> {
            let (stream, _) = offer.accept()?;
            hand_over(stream, &sockets)
        });
        let (mut inherited, handoff) = take_over(&path)?;
        let key = ListenerKey { port: 80, bind: None };
        assert!(inherited.take_data(ListenerKey { port: 81, bind: None }, 0).is_none());
        assert!(inherited.take_data(key, data_addr.port().wrapping_add(1)).is_none(), "another port was asked for");
        let (local, socket) = inherited.take_data(key, 0).ok_or("the data socket")?;
        assert_eq!((local, socket.local_addr()?), (data_addr, data_addr));
        let status = inherited.take_operator(Role::Status, "127.0.0.1:0".parse()?).ok_or("the status socket")?;
        assert_eq!(status.local_addr()?, status_addr);
        assert_eq!(inherited.untaken(), 0);
        handoff.ready()?;
        assert_eq!(old.join().map_err(|_| "old side panicked")??, std::process::id());
        // The received socket is the same kernel socket: a connection to the address is accepted on it.
        let _client = std::net::TcpStream::connect(data_addr)?;
        socket.set_nonblocking(false)?;
        let _ = socket.accept()?;
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
