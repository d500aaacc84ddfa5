//! A client connection's socket as Pingora sees it. Writes are gathered until Pingora flushes, so a
//! response header and a small body leave in one `sendto` (Pingora writes them separately; Envoy
//! and nginx send them together). Reads go straight to the socket: Pingora reads a request head
//! into its own buffer, and a second buffer would only copy it.
//!
//! The write buffer exists only while a response is being written: an idle keep-alive connection
//! holds none (tokio's `BufStream` kept 8 KiB for reading and 8 KiB for writing on every
//! connection, idle or not).
//!
//! It is a stream Pingora can serve directly (plaintext HTTP/1.x, see [`super::keepalive`]), or,
//! as a virtual socket inside Pingora's own stream, the transport under TLS and h2c.

use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::SystemTime;

use async_trait::async_trait;
use pingora::protocols::l4::virt::{VirtualSockOpt, VirtualSocket};
use pingora::protocols::{GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, UniqueID};
use pingora::protocols::{SocketDigest, TimingDigest, UniqueIDType};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Writes smaller than this are gathered; a larger one goes to the socket as it is.
const GATHER_LIMIT: usize = 8 * 1024;

/// A TCP stream whose writes are gathered until a flush.
#[derive(Debug)]
pub struct Buffered {
    tcp: TcpStream,
    /// Bytes written and not yet sent; `written` of them are sent.
    out: Vec<u8>,
    written: usize,
    /// The addresses Pingora reports for the connection (the client's may be the PROXY
    /// protocol's), when it is served directly.
    digest: Option<Arc<SocketDigest>>,
    established: SystemTime,
}

impl Buffered {
    /// `tcp`, with nothing gathered.
    pub fn new(tcp: TcpStream) -> Self {
        Buffered { tcp, out: Vec::new(), written: 0, digest: None, established: SystemTime::now() }
    }

    /// `tcp`, served directly, with the addresses Pingora reports for it.
    pub fn with_digest(tcp: TcpStream, digest: SocketDigest) -> Self {
        let mut b = Buffered::new(tcp);
        b.digest = Some(Arc::new(digest));
        b
    }

    /// The socket, to wait on between requests.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Sends what was gathered, then lets the buffer go.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.written < self.out.len() {
            match ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.out[self.written..])) {
                Ok(0) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                Ok(n) => self.written += n,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        self.out = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Buffered {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Buffered {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.out.len() + buf.len() > GATHER_LIMIT {
            ready!(this.poll_send(cx))?;
        }
        if buf.len() >= GATHER_LIMIT {
            return Pin::new(&mut this.tcp).poll_write(cx, buf);
        }
        if this.out.capacity() == 0 {
            // Room for all that is gathered at once: grown write by write, a response's head and
            // body cost an allocation and a reallocation (measured: about 650 instructions a request).
            this.out.reserve_exact(GATHER_LIMIT);
        }
        this.out.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_send(cx))?;
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_send(cx))?;
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// What was gathered and not flushed is sent if the socket takes it now: a response cut short
/// (a route timeout in its body) ends with the bytes already given, as Pingora's own stream
/// does when dropped.
impl Drop for Buffered {
    fn drop(&mut self) {
        while self.written < self.out.len() {
            match self.tcp.try_write(&self.out[self.written..]) {
                Ok(n) if n > 0 => self.written += n,
                _ => break,
            }
        }
    }
}

impl VirtualSocket for Buffered {
    fn set_socket_option(&self, _opt: VirtualSockOpt) -> std::io::Result<()> {
        Ok(())
    }
}

// What Pingora asks of a stream it serves directly (as its own TCP stream answers them).

#[async_trait]
impl Shutdown for Buffered {
    async fn shutdown(&mut self) {
        if let Err(e) = AsyncWriteExt::shutdown(self).await {
            tracing::debug!(error = %e, "shutting down the client connection");
        }
    }
}

impl UniqueID for Buffered {
    fn id(&self) -> UniqueIDType {
        self.tcp.as_raw_fd()
    }
}

impl Ssl for Buffered {}

impl GetTimingDigest for Buffered {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        vec![Some(TimingDigest { established_ts: self.established, ..TimingDigest::default() })]
    }
}

impl GetProxyDigest for Buffered {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        None
    }
}

impl GetSocketDigest for Buffered {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.digest.clone()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.digest = Some(Arc::new(digest));
    }
}

impl Peek for Buffered {}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (Buffered, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        (Buffered::new(server), client)
    }

    #[tokio::test]
    async fn small_writes_leave_together_at_the_flush_and_the_buffer_goes() {
        let (mut server, mut client) = pair().await;
        server.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n").await.unwrap();
        server.write_all(b"ok").await.unwrap();
        let mut byte = [0u8; 1];
        let early = tokio::time::timeout(std::time::Duration::from_millis(50), client.read(&mut byte)).await;
        assert!(early.is_err(), "nothing is sent before the flush");
        server.flush().await.unwrap();
        assert_eq!(server.out.capacity(), 0, "an idle connection holds no buffer");
        let mut got = vec![0u8; 40];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
    }

    #[tokio::test]
    async fn what_was_gathered_is_sent_when_the_stream_is_dropped() {
        let (mut server, mut client) = pair().await;
        server.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n12345").await.unwrap();
        drop(server);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n12345");
    }

    #[tokio::test]
    async fn large_writes_pass_through_in_order_after_what_was_gathered() {
        let (mut server, mut client) = pair().await;
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            client.read_to_end(&mut all).await.unwrap();
            all
        });
        server.write_all(b"head").await.unwrap();
        server.write_all(&big).await.unwrap();
        server.write_all(b"tail").await.unwrap();
        AsyncWriteExt::shutdown(&mut server).await.unwrap();
        drop(server);
        let all = reader.await.unwrap();
        assert_eq!(all.len(), big.len() + 8);
        assert!(all.starts_with(b"head") && all.ends_with(b"tail") && all[4..4 + big.len()] == big[..]);
        let mut echo = Vec::new();
        let (mut server, mut client) = pair().await;
        client.write_all(b"request").await.unwrap();
        let mut buf = [0u8; 7];
        server.read_exact(&mut buf).await.unwrap();
        echo.extend_from_slice(&buf);
        assert_eq!(echo, b"request", "reads go straight to the socket");
    }
}
