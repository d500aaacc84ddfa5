//! A deadline on each HTTP/1.1 request head: from its first byte, the whole head (up to the blank
//! line) must arrive within the timeout, or the connection is closed. Pingora bounds each read
//! only (and not at all between keep-alive requests), so a client sending one header line every
//! few seconds could hold a connection for ever (slowloris); nginx closes such a client after
//! `client_header_timeout` (60 s).
//!
//! It sits between Pingora and the connection (plaintext, or TLS with HTTP/1.1) and watches the
//! bytes: reading, it looks for the end of the head; a response written starts the next head (an
//! interim `100 Continue` does not, and after `101 Switching Protocols` nothing is watched).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, UniqueID};
use pingora::protocols::{SocketDigest, TimingDigest, UniqueIDType};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Where the connection is.
#[derive(Debug)]
enum Phase {
    /// Reading a request head: `matched` bytes of the blank line seen; the deadline is set once
    /// its first byte arrives; `spaces` counted in its request line while it lasts.
    Head { matched: u8, deadline: Option<Pin<Box<Sleep>>>, spaces: Option<u8> },
    /// The head is complete: body, response, or waiting for the response to start.
    Rest,
    /// A response was written: the next bytes start the next request's head (a body still
    /// arriving after the response is held to the deadline too; the exchange is over anyway).
    Next,
    /// Upgraded (WebSocket): no longer HTTP.
    Off,
}

/// A stream whose request heads must each arrive within `timeout`.
#[derive(Debug)]
pub struct HeadDeadline<S> {
    inner: S,
    timeout: Duration,
    phase: Phase,
    /// Some exchange on this connection read past its request's head (a body, or pipelined
    /// requests). From then on the scan cannot tell where a head begins: Pingora may hold the
    /// start of the next request (its pipelined prefix, which it does not expose), so a read after
    /// a response may begin in the middle of a head. It stays set.
    read_ahead: bool,
}

impl<S> HeadDeadline<S> {
    /// `inner`, each of whose request heads must arrive within `timeout`.
    pub fn new(inner: S, timeout: Duration) -> Self {
        HeadDeadline {
            inner,
            timeout,
            phase: Phase::Head { matched: 0, deadline: None, spaces: Some(0) },
            read_ahead: false,
        }
    }

    /// The stream under the deadline.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// True when a response was written and every byte read on this connection belonged to the
    /// heads of its requests: the parser can hold nothing of a next request, so the connection may
    /// wait for one on its socket alone. Once a body or pipelined bytes were read ahead, never:
    /// Pingora may hold (part of) the next request.
    pub fn between_requests(&self) -> bool {
        matches!(self.phase, Phase::Next) && !self.read_ahead
    }

    /// Follows `bytes` read from the client.
    ///
    /// A request line has two spaces (`GET /a HTTP/1.1`). A third means a raw space in the target
    /// (or junk after the version): Envoy and nginx answer 400, while Pingora would percent-encode
    /// it and forward the request. That space becomes a line feed, which no parser accepts in a
    /// request line, so Pingora answers 400 too.
    fn saw(&mut self, bytes: &mut [u8]) {
        if bytes.is_empty() {
            return;
        }
        if matches!(self.phase, Phase::Next) {
            // After a read-ahead these bytes may continue a head Pingora holds the start of: the
            // request-line rule (a third space) would then hit a header value.
            let spaces = if self.read_ahead { None } else { Some(0) };
            self.phase = Phase::Head { matched: 0, deadline: None, spaces };
        }
        let Phase::Head { matched, deadline, spaces } = &mut self.phase else {
            self.read_ahead = true;
            return;
        };
        // Only spaces (in the request line), CR and LF matter: the bytes between them are
        // skipped with `memchr`, since this runs on every read of every HTTP/1.1 connection; the
        // CR and LF that follow a match are taken at once, without searching again.
        let mut i = 0;
        while i < bytes.len() {
            let rest = &bytes[i..];
            let found = if spaces.is_some() {
                memchr::memchr3(b' ', b'\r', b'\n', rest)
            } else {
                memchr::memchr2(b'\r', b'\n', rest)
            };
            let Some(skipped) = found else {
                *matched = 0;
                break;
            };
            if skipped > 0 {
                *matched = 0;
            }
            let mut at = i + skipped;
            loop {
                if head_byte(matched, spaces, bytes, at) {
                    self.phase = Phase::Rest;
                    self.read_ahead |= at + 1 < bytes.len();
                    return;
                }
                at += 1;
                if !matches!(bytes.get(at), Some(b'\r' | b'\n')) {
                    break;
                }
            }
            i = at;
        }
        // The head goes on past these bytes: its deadline starts now (their arrival). A head read
        // whole, the usual case, never needs a timer.
        if deadline.is_none() {
            *deadline = Some(Box::pin(tokio::time::sleep_until(Instant::now() + self.timeout)));
        }
    }

    /// Follows `bytes` written to the client: a response starts the next head.
    fn wrote(&mut self, bytes: &[u8]) {
        if matches!(self.phase, Phase::Off) || bytes.is_empty() {
            return;
        }
        if bytes.starts_with(b"HTTP/1.1 101") || bytes.starts_with(b"HTTP/1.0 101") {
            self.phase = Phase::Off;
        } else if !bytes.starts_with(b"HTTP/1.1 100 ") && matches!(self.phase, Phase::Rest) {
            self.phase = Phase::Next;
        } else if let (true, Phase::Head { deadline, .. }) = (self.read_ahead, &mut self.phase) {
            // After a read-ahead the scan may have missed a head's end (it began in Pingora's
            // buffer): a response shows that request was whole, so no head is being waited for.
            // The phase stays: the scan cannot know where the next head starts either.
            *deadline = None;
        }
    }
}

/// Follows `bytes[at]`, a space, CR or LF of a request head: `matched` bytes of the blank line
/// seen, `spaces` counted in the request line while it lasts (a third one becomes a line feed, see
/// `HeadDeadline::saw`). True at the end of the head.
#[inline]
fn head_byte(matched: &mut u8, spaces: &mut Option<u8>, bytes: &mut [u8], at: usize) -> bool {
    if let Some(n) = spaces {
        match bytes[at] {
            b' ' if *n == 2 => {
                bytes[at] = b'\n';
                *spaces = None;
            }
            b' ' => *n += 1,
            // Empty lines before a request line are allowed (RFC 9112 §2.2).
            b'\r' | b'\n' if *n == 0 && *matched < 2 => {}
            _ => *spaces = None,
        }
    }
    // `\r\n\r\n`, or a bare `\n\n` (which Pingora's parser also accepts).
    *matched = match (*matched, bytes[at]) {
        (0 | 2, b'\r') => *matched + 1,
        (1, b'\n') | (3, b'\n') => *matched + 1,
        (0, b'\n') => 2,
        (2, b'\n') => 4,
        _ => 0,
    };
    *matched == 4
}

impl<S: AsyncRead + Unpin> AsyncRead for HeadDeadline<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Phase::Head { deadline: Some(d), .. } = &mut this.phase {
            if d.as_mut().poll(cx).is_ready() {
                tracing::debug!("request head not complete within the deadline; closing");
                return Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()));
            }
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if polled.is_ready() {
            // Scanned in place: this runs on every read of every HTTP/1.1 connection.
            this.saw(&mut buf.filled_mut()[before..]);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeadDeadline<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            let n = *n;
            self.wrote(&buf[..n]);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

// What Pingora asks of a stream, passed through.

#[async_trait]
impl<S: Shutdown + Send> Shutdown for HeadDeadline<S> {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl<S: UniqueID> UniqueID for HeadDeadline<S> {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl<S: Ssl> Ssl for HeadDeadline<S> {
    fn get_ssl(&self) -> Option<&pingora::tls::ssl::SslRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<pingora::protocols::ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl<S: GetTimingDigest> GetTimingDigest for HeadDeadline<S> {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl<S: GetProxyDigest> GetProxyDigest for HeadDeadline<S> {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl<S: GetSocketDigest> GetSocketDigest for HeadDeadline<S> {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

/// Only HTTP/1 connections get a head deadline: plaintext ones are told apart from h2c before
/// (`listener::classify`), TLS ones by ALPN. Pingora's h2c detection peeks for the 24-byte HTTP/2
/// preface, which would wait for 24 bytes a short HTTP/1 request may never send: answer at once
/// that there is no preface.
#[async_trait]
impl<S: Send> Peek for HeadDeadline<S> {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        buf.fill(0);
        Ok(true)
    }
}

/// Boxes `stream` for Pingora behind a head deadline.
pub fn wrap<S>(stream: S, timeout: Duration) -> pingora::protocols::Stream
where
    S: pingora::protocols::IO + 'static,
{
    Box::new(HeadDeadline::new(stream, timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase_after(reads: &[&[u8]]) -> HeadDeadline<()> {
        let mut h = HeadDeadline::new((), Duration::from_secs(60));
        for r in reads {
            h.saw(&mut r.to_vec());
        }
        h
    }

    #[tokio::test]
    async fn a_head_ends_at_the_blank_line_even_across_reads() {
        assert!(matches!(phase_after(&[b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]).phase, Phase::Rest));
        assert!(matches!(phase_after(&[b"GET / HTTP/1.1\r\nHost: x\r", b"\n\r", b"\n"]).phase, Phase::Rest));
        assert!(matches!(phase_after(&[b"GET / HTTP/1.0\n\n"]).phase, Phase::Rest));
        assert!(matches!(phase_after(&[b"GET / HTTP/1.1\r\nHost: x\r\n"]).phase, Phase::Head { .. }));
    }

    #[tokio::test]
    async fn only_a_head_that_goes_on_past_a_read_arms_its_deadline() {
        let mut h = phase_after(&[b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]);
        h.wrote(b"HTTP/1.1 200 OK\r\n");
        h.saw(&mut b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n".to_vec());
        assert!(matches!(h.phase, Phase::Rest), "read whole: no timer was made");
        let h = phase_after(&[b"GET / HTTP/1.1\r\nHo"]);
        assert!(matches!(h.phase, Phase::Head { deadline: Some(_), .. }));
    }

    #[tokio::test]
    async fn a_response_starts_the_next_head_but_not_100_continue_and_101_stops_watching() {
        let mut h = phase_after(&[b"POST / HTTP/1.1\r\nHost: x\r\n\r\n"]);
        h.wrote(b"HTTP/1.1 100 Continue\r\n\r\n");
        assert!(matches!(h.phase, Phase::Rest), "the body may still come");
        h.wrote(b"HTTP/1.1 200 OK\r\n");
        assert!(matches!(h.phase, Phase::Next));
        h.saw(&mut b"get / HTTP/1.1\r\nHost: x\r\n".to_vec());
        assert!(matches!(h.phase, Phase::Head { deadline: Some(_), .. }), "any byte starts the next head");
        h.saw(&mut b"\r\n".to_vec());
        h.wrote(b"HTTP/1.1 101 Switching Protocols\r\n\r\n");
        assert!(matches!(h.phase, Phase::Off));
        h.wrote(b"HTTP/1.1 200 OK\r\n");
        assert!(matches!(h.phase, Phase::Off));
    }

    #[tokio::test]
    async fn only_a_request_read_to_the_end_of_its_head_leaves_the_connection_between_requests() {
        let answered = |reads: &[&[u8]]| {
            let mut h = phase_after(reads);
            h.wrote(b"HTTP/1.1 200 OK\r\n");
            h.between_requests()
        };
        assert!(answered(&[b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]));
        assert!(answered(&[b"GET / HTTP/1.1\r\nHo", b"st: x\r\n\r\n"]));
        assert!(!answered(&[b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nok"]), "a body in the head's read");
        assert!(!answered(&[b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n", b"ok"]), "a body read after it");
        assert!(!answered(&[b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"]), "pipelined");
        let mut h = phase_after(&[b"GET / HTTP/1.1\r\n\r\n"]);
        assert!(!h.between_requests(), "no response yet");
        h.wrote(b"HTTP/1.1 200 OK\r\n");
        h.saw(&mut b"G".to_vec());
        assert!(!h.between_requests(), "the next request has begun");
        h.saw(&mut b"ET / HTTP/1.1\r\n\r\n".to_vec());
        h.wrote(b"HTTP/1.1 200 OK\r\n");
        assert!(h.between_requests(), "a second request read to the end of its head");
    }

    #[tokio::test]
    async fn after_a_read_ahead_a_connection_never_waits_on_its_socket_again() {
        // Pipelined: request 2 is cut inside its blank line, so Pingora holds `GET /2 ...\r\n` as
        // the start of the next request and the next read begins with the rest of that line.
        let mut h = phase_after(&[b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n"]);
        h.wrote(b"HTTP/1.1 200 OK\r\n");
        h.saw(&mut b"\r\nGET /3 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec());
        h.wrote(b"HTTP/1.1 200 OK\r\n");
        assert!(!h.between_requests(), "request 3 may still be Pingora's");
        // After a body, too: the next read cannot be known to start a head.
        let mut h = phase_after(&[b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n", b"ok"]);
        h.wrote(b"HTTP/1.1 200 OK\r\n");
        h.saw(&mut b"GET / HTTP/1.1\r\n\r\n".to_vec());
        h.wrote(b"HTTP/1.1 200 OK\r\n");
        assert!(!h.between_requests());
    }

    #[tokio::test]
    async fn after_a_read_ahead_a_response_disarms_a_deadline_the_scan_set_by_mistake() {
        // Request 2 is cut after `\r\n\r`: the next read's `\n` ends it, but the scan, starting
        // over, sees only part of a blank line and waits for the rest of a head.
        let mut h = phase_after(&[b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r"]);
        h.wrote(b"HTTP/1.1 200 OK\r\n");
        h.saw(&mut b"\nGET /3 HTTP/1.1\r\nHo".to_vec());
        assert!(matches!(h.phase, Phase::Head { deadline: Some(_), .. }));
        h.wrote(b"HTTP/1.1 200 OK\r\n");
        assert!(matches!(h.phase, Phase::Head { deadline: None, .. }), "answered: no head is late");
        assert!(!h.between_requests());
    }

    #[tokio::test]
    async fn a_head_resumed_after_a_read_ahead_keeps_the_spaces_of_its_header_values() {
        let mut h = phase_after(&[b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\nUser-Agent: a"]);
        h.wrote(b"HTTP/1.1 200 OK\r\n");
        let mut rest = b" b c d\r\n\r\n".to_vec();
        h.saw(&mut rest);
        assert_eq!(rest, b" b c d\r\n\r\n", "a header value, not a request line");
    }

    /// The scan byte by byte, as the rules read: the skipping scan must agree with it.
    fn reference(bytes: &mut [u8], matched: &mut u8, spaces: &mut Option<u8>) -> bool {
        for b in bytes.iter_mut() {
            if let Some(n) = spaces {
                match *b {
                    b' ' if *n == 2 => {
                        *b = b'\n';
                        *spaces = None;
                    }
                    b' ' => *n += 1,
                    b'\r' | b'\n' if *n == 0 && *matched < 2 => {}
                    b'\r' | b'\n' => *spaces = None,
                    _ => {}
                }
            }
            *matched = match (*matched, *b) {
                (0 | 2, b'\r') => *matched + 1,
                (1, b'\n') | (3, b'\n') => *matched + 1,
                (0, b'\n') => 2,
                (2, b'\n') => 4,
                _ => 0,
            };
            if *matched == 4 {
                return true;
            }
        }
        false
    }

    #[tokio::test]
    async fn the_skipping_scan_agrees_with_a_byte_by_byte_one() {
        let alphabet = b"GET /a\r\n :xX";
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let len = rng.usize(0..40);
            let input: Vec<u8> = (0..len).map(|_| alphabet[rng.usize(..alphabet.len())]).collect();
            let cut = rng.usize(0..=len);
            let (mut expected, mut matched, mut spaces, mut done) = (input.clone(), 0, Some(0), false);
            for part in [0..cut, cut..len] {
                if !done {
                    done = reference(&mut expected[part], &mut matched, &mut spaces);
                }
            }
            let mut h = HeadDeadline::new((), Duration::from_secs(60));
            let mut got = input.clone();
            let (first, second) = got.split_at_mut(cut);
            h.saw(first);
            h.saw(second);
            let input = String::from_utf8_lossy(&input);
            match h.phase {
                Phase::Rest => assert!(done, "{input:?} split at {cut}"),
                Phase::Head { matched: m, spaces: sp, .. } => {
                    assert!(!done && (m, sp) == (matched, spaces), "{input:?} split at {cut}");
                    assert_eq!(got, expected, "{input:?} split at {cut}");
                }
                _ => unreachable!(),
            }
        }
    }

    #[tokio::test]
    async fn a_third_space_in_a_request_line_becomes_a_line_feed() {
        let mut h = HeadDeadline::new((), Duration::from_secs(60));
        let (mut first, mut rest) = (b"\r\nGET /a".to_vec(), b" b HTTP/1.1\r\nX-A: a b c\r\n\r\n".to_vec());
        h.saw(&mut first);
        h.saw(&mut rest);
        assert_eq!(rest, b" b\nHTTP/1.1\r\nX-A: a b c\r\n\r\n", "across reads; header values untouched");
        let mut fine = b"GET /a HTTP/1.1\r\nX-A: a b c\r\n\r\n".to_vec();
        HeadDeadline::new((), Duration::from_secs(60)).saw(&mut fine);
        assert_eq!(fine, b"GET /a HTTP/1.1\r\nX-A: a b c\r\n\r\n");
    }
}
