//! Bidirectional copy between two streams, as Envoy's `tcp_proxy` does it: a FIN from one side is
//! passed on as a write shutdown of the other (half-close) and the connection lives until both
//! directions have ended; an error on either side ends both; no bytes in either direction for the
//! idle timeout ends both.

use std::time::Duration;

use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use tokio::time::Instant;

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

/// Copies `down` ↔ `up` until both directions end, one fails, or nothing moves for `idle`. The
/// two directions run concurrently, so a side that is not reading never stops the other one, and
/// the idle clock runs while a write waits.
pub async fn splice<D, U>(down: D, up: U, idle: Duration) -> Spliced
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut down_r, mut down_w) = tokio::io::split(down);
    let (mut up_r, mut up_w) = tokio::io::split(up);
    let start = Instant::now();
    let last = AtomicU64::new(0);
    let (sent, received) = (AtomicU64::new(0), AtomicU64::new(0));
    let both = async {
        tokio::try_join!(
            copy(&mut down_r, &mut up_w, &sent, &last, start),
            copy(&mut up_r, &mut down_w, &received, &last, start)
        )
    };
    let ended = tokio::select! {
        done = both => if done.is_ok() { Ended::Closed } else { Ended::Error },
        () = idle_for(idle, &last, start) => Ended::Idle,
    };
    if ended != Ended::Closed {
        // Closing must not hang on a peer that does not read (a TLS close_notify is a write).
        let _ = tokio::time::timeout(CLOSE_WAIT, up_w.shutdown()).await;
        let _ = tokio::time::timeout(CLOSE_WAIT, down_w.shutdown()).await;
    }
    Spliced { sent: sent.into_inner(), received: received.into_inner(), ended }
}

/// How long closing a side may take after an error or the idle timeout.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// One direction: read until end of stream, then shut the writer down (half-close). Counts the
/// bytes and records the time of the last activity (milliseconds since `start`).
async fn copy<R, W>(r: &mut R, w: &mut W, count: &AtomicU64, last: &AtomicU64, start: Instant) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return w.shutdown().await;
        }
        w.write_all(&buf[..n]).await?;
        w.flush().await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
        last.store(millis(start), Ordering::Relaxed);
    }
}

/// Ends when nothing has moved for `idle`.
async fn idle_for(idle: Duration, last: &AtomicU64, start: Instant) {
    loop {
        let quiet = Duration::from_millis(millis(start).saturating_sub(last.load(Ordering::Relaxed)));
        if quiet >= idle {
            return;
        }
        tokio::time::sleep(idle - quiet).await;
    }
}

fn millis(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
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

    #[tokio::test]
    async fn a_blocked_direction_does_not_stop_the_other() {
        // The upstream reads nothing until it has sent everything; the client reads while it
        // writes. Directly connected they finish; a proxy that served one direction at a time
        // would wait forever on its write to the upstream.
        let (client, down) = duplex(4096);
        let (up, mut server) = duplex(4096);
        let task = tokio::spawn(splice(down, up, Duration::from_secs(60)));
        let big = vec![7u8; 256 * 1024];
        let (mut client_r, mut client_w) = tokio::io::split(client);
        let c = big.clone();
        let writer = tokio::spawn(async move {
            client_w.write_all(&c).await.unwrap();
            client_w.shutdown().await.unwrap();
        });
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client_r.read_to_end(&mut got).await.unwrap();
            got.len()
        });
        let s = big.clone();
        let server_side = tokio::spawn(async move {
            server.write_all(&s).await.unwrap();
            server.shutdown().await.unwrap();
            let mut got = Vec::new();
            server.read_to_end(&mut got).await.unwrap();
            got.len()
        });
        let within = Duration::from_secs(10);
        assert_eq!(tokio::time::timeout(within, server_side).await.unwrap().unwrap(), big.len());
        assert_eq!(tokio::time::timeout(within, reader).await.unwrap().unwrap(), big.len());
        writer.await.unwrap();
        let done = task.await.unwrap();
        assert_eq!((done.sent, done.received, done.ended), (big.len() as u64, big.len() as u64, Ended::Closed));
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_never_reads_is_closed_after_the_idle_timeout() {
        let (client, down) = duplex(1024);
        let (up, mut server) = duplex(1024);
        let started = Instant::now();
        let task = tokio::spawn(splice(down, up, Duration::from_secs(3600)));
        // The upstream sends far more than the client (which never reads) can take.
        let _ = tokio::time::timeout(Duration::from_secs(7200), server.write_all(&vec![1u8; 1 << 20])).await;
        let done = task.await.unwrap();
        assert_eq!(done.ended, Ended::Idle);
        assert!(started.elapsed() >= Duration::from_secs(3600));
        drop(client);
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
