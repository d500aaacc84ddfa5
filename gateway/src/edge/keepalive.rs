//! A plaintext HTTP/1.x connection, served request after request. Between requests it waits here,
//! holding its socket and little else, for the next request's first byte.
//!
//! Pingora's own loop (`ServerApp::process_new`) starts the next request at once and waits inside
//! it: every idle keep-alive connection then holds that request's boxed state machine and a 4 KiB
//! buffer for its head, about 26 KB each in Pylon. nginx keeps an idle connection in well under
//! 1 KB ("keepalive connections ... do not allocate buffers", nginx docs, `http_core` module).
//!
//! The wait ends at the next request (served as Pingora would), when the client closes, when the
//! keep-alive timeout passes, or when a drain closes idle connections ([`Tracker::close_idle`]).
//! A connection that has ever read past a request head (a body, pipelined requests) is not parked:
//! Pingora may hold the start of its next request, and serves it without waiting.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;

use pingora::apps::HttpServerApp;
use pingora::protocols::http::ServerSession;
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use tokio::io::ReadBuf;

use super::buffered::Buffered;
use super::head_deadline::HeadDeadline;
use crate::lifecycle::Tracker;
use crate::proxy::Gateway;

/// The stream of a plaintext HTTP/1.x connection.
pub type Connection = HeadDeadline<Buffered>;

/// Serves `conn` until it closes.
pub async fn serve(conn: Connection, app: &Arc<HttpProxy<Gateway>>, shutdown: &ShutdownWatch, tracker: &Tracker) {
    let mut session = ServerSession::new_http1(Box::new(conn));
    // As `ServerApp::process_new` starts an HTTP/1 session (the proxy sets the timeout it wants
    // on each request).
    session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
    session.set_keepalive_reuses_remaining(app.server_options().and_then(|o| o.keepalive_request_limit));
    loop {
        let Some(reused) = app.process_new_http(session, shutdown).await else { return };
        let (stream, settings) = reused.consume();
        session = ServerSession::new_http1(stream);
        if let Some(settings) = settings {
            settings.apply_to_session(&mut session);
        }
        if !next_request(&session, tracker).await {
            return;
        }
    }
}

/// Waits until the next request's first byte arrives on a parked connection (`true`: serve it),
/// or until the connection is to close (`false`). A connection that cannot be parked is served
/// at once.
async fn next_request(session: &ServerSession, tracker: &Tracker) -> bool {
    let parked = session.stream().and_then(|s| s.as_any().downcast_ref::<Connection>());
    let Some(conn) = parked.filter(|c| c.between_requests()) else { return true };
    let tcp = conn.get_ref().tcp();
    // Readiness left over from the last read says nothing of a next request: look once. That
    // read finds nothing (the usual case: the client has only just been answered) and clears
    // it, so the wait below ends at the next bytes; a request already here is served at once.
    let mut byte = [0u8; 1];
    let looked = poll_fn(|cx| match tcp.poll_peek(cx, &mut ReadBuf::new(&mut byte)) {
        Poll::Ready(r) => Poll::Ready(Some(r)),
        Poll::Pending => Poll::Ready(None),
    })
    .await;
    match looked {
        Some(Ok(0)) | Some(Err(_)) => return false,
        Some(Ok(_)) => return true,
        None => {}
    }
    // `Some(0)` is Pingora's "no timeout". Counted in the tracker's ticks, one more than the
    // timeout: a connection parked just before a tick is kept at least the whole timeout (and at
    // most a second more).
    let keepalive = session.get_keepalive().filter(|s| *s > 0);
    let since = tracker.ticks();
    loop {
        tokio::select! {
            biased;
            // `poll_read_ready` keeps the waker in the socket's one reader slot; `readable()`
            // would queue a waiter in its list under a lock, and take it out again, every request
            // (~270 instructions net, `scripts/bench profile`). Nothing else reads this socket now.
            ready = poll_fn(|cx| tcp.poll_read_ready(cx)) => return ready.is_ok(),
            () = tracker.idle_wake() => {}
        }
        if tracker.closing_idle() || keepalive.is_some_and(|s| tracker.ticks().saturating_sub(since) > s) {
            return false;
        }
    }
}
