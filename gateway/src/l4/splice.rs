//! Bidirectional copy between two streams, as Envoy's `tcp_proxy` does it: a FIN from one side is
//! passed on as a write shutdown of the other (half-close) and the connection lives until both
//! directions have ended; an error on either side ends both; no bytes in either direction for the
//! idle timeout ends both.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{sleep_until, Instant};

const BUFFER: usize = 16 * 1024;

/// How a spliced connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Both sides closed their direction.
    Closed,
    /// Nothing moved for the idle timeout.
    Idle,
    /// A read or write failed.
    Error,
}

/// Bytes moved each way, and how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spliced {
    /// Downstream → upstream.
    pub sent: u64,
    /// Upstream → downstream.
    pub received: u64,
    /// Why it stopped.
    pub ended: Ended,
}

/// Copies `down` ↔ `up` until both directions end, one fails, or nothing moves for `idle`.
pub async fn splice<D, U>(down: D, up: U, idle: Duration) -> Spliced
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut down_r, mut down_w) = tokio::io::split(down);
    let (mut up_r, mut up_w) = tokio::io::split(up);
    let (mut to_up, mut to_down) = (vec![0u8; BUFFER], vec![0u8; BUFFER]);
    let mut out = Spliced { sent: 0, received: 0, ended: Ended::Closed };
    let (mut up_open, mut down_open) = (true, true);
    let mut deadline = Instant::now() + idle;
    while up_open || down_open {
        tokio::select! {
            n = down_r.read(&mut to_up), if up_open => match pass(n, &to_up, &mut up_w).await {
                Some(0) => up_open = false,
                Some(n) => { out.sent += n as u64; deadline = Instant::now() + idle; }
                None => { out.ended = Ended::Error; break; }
            },
            n = up_r.read(&mut to_down), if down_open => match pass(n, &to_down, &mut down_w).await {
                Some(0) => down_open = false,
                Some(n) => { out.received += n as u64; deadline = Instant::now() + idle; }
                None => { out.ended = Ended::Error; break; }
            },
            () = sleep_until(deadline) => { out.ended = Ended::Idle; break; }
        }
    }
    if out.ended != Ended::Closed {
        let _ = up_w.shutdown().await;
        let _ = down_w.shutdown().await;
    }
    out
}

/// Writes what was read to `to`; on end of stream shuts `to` down (half-close). `Some(0)` at end
/// of stream, `None` on error.
async fn pass<W: AsyncWrite + Unpin>(read: std::io::Result<usize>, buf: &[u8], to: &mut W) -> Option<usize> {
    match read {
        Ok(0) => {
            let _ = to.shutdown().await;
            Some(0)
        }
        Ok(n) => {
            to.write_all(&buf[..n]).await.ok()?;
            to.flush().await.ok()?;
            Some(n)
        }
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    #[tokio::test]
    async fn bytes_flow_both_ways_and_half_close_is_passed_on() {
        let (client, down) = duplex(1024);
        let (up, server) = duplex(1024);
        let task = tokio::spawn(splice(down, up, Duration::from_secs(60)));
        let (mut client, mut server) = (client, server);
        client.write_all(b"ping").await.unwrap();
        client.shutdown().await.unwrap(); // the client is done sending
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap(); // ends: the FIN was passed on
        assert_eq!(got, b"ping");
        // The other direction still works after the half-close.
        server.write_all(b"pong").await.unwrap();
        server.shutdown().await.unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"pong");
        let done = task.await.unwrap();
        assert_eq!(done, Spliced { sent: 4, received: 4, ended: Ended::Closed });
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed_after_the_timeout() {
        let (mut client, down) = duplex(1024);
        let (up, _server) = duplex(1024);
        let started = Instant::now();
        let task = tokio::spawn(splice(down, up, Duration::from_secs(3600)));
        client.write_all(b"x").await.unwrap();
        let done = task.await.unwrap();
        assert_eq!(done.ended, Ended::Idle);
        assert!(started.elapsed() >= Duration::from_secs(3600));
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap(); // the client sees the close
    }
}
