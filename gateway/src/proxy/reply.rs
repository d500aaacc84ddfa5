//! Local replies: redirects, direct responses, 404 NR, 503s. Written with
//! `write_response_header` + body (not `respond_error`, which closes the connection and adds
//! `Server: Pingora`).

use bytes::Bytes;
use conf::table::HeaderOps;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

use crate::error::Outcome;

/// How long a local reply waits for an unread request body to arrive and be discarded.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The `server` header on every response (Istio writes `istio-envoy`; see the README).
pub const SERVER: &str = "pylon";

/// A response the gateway writes itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// Status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body (may be empty).
    pub body: Bytes,
}

impl LocalReply {
    /// A reply for an outcome, with Envoy's body (`text/plain` when not empty).
    pub fn outcome(o: Outcome) -> Self {
        let body = Bytes::from_static(o.body().as_bytes());
        let headers = if body.is_empty() { Vec::new() } else { vec![("content-type".into(), "text/plain".into())] };
        LocalReply { status: o.status(), headers, body }
    }

    /// A redirect to `location`.
    pub fn redirect(status: u16, location: String) -> Self {
        LocalReply { status, headers: vec![("location".into(), location)], body: Bytes::new() }
    }

    /// Applies a route's response header operations (Istio applies them to local replies too).
    pub fn with_response_ops(mut self, ops: &HeaderOps) -> Self {
        // Operations on a plain header list cannot fail.
        let _ = super::header_ops::apply(&mut self, ops, super::header_ops::Side::Response);
        self
    }

    /// Applies the matched route's (and chosen destination's) response header operations: Envoy's
    /// router adds them to the replies it makes itself (503 UH/UF/UC, 504 UT) as to proxied ones.
    pub fn with_route_ops(self, ctx: &super::ctx::Ctx) -> Self {
        let Some(route) = ctx.route() else { return self };
        route.header_ops(ctx.cluster).fold(self, |reply, ops| reply.with_response_ops(ops))
    }

    /// Writes the reply. A request body is read and discarded first (bounded), so the client sees
    /// the reply rather than a reset; a body too large or too slow closes the connection after it.
    pub async fn write(self, session: &mut Session) -> Result<()> {
        let this = if is_grpc(session.req_header()) { self.as_grpc() } else { self };
        this.write_as_is(session).await
    }

    /// The reply a gRPC client understands, as Envoy sends local replies to gRPC requests: HTTP 200
    /// and `content-type: application/grpc`, the status mapped to `grpc-status` (Envoy's
    /// `Grpc::Utility::httpToGrpcStatus`) and the body as `grpc-message`; no body (trailers-only).
    pub fn as_grpc(mut self) -> Self {
        if self.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("grpc-status")) || self.status < 200 {
            return self;
        }
        let code = match self.status {
            200 => 0,
            400 => 13,
            401 => 16,
            403 => 7,
            404 => 12,
            429 | 502 | 503 | 504 => 14,
            _ => 2,
        };
        let message = if self.body.is_empty() {
            http::StatusCode::from_u16(self.status).ok().and_then(|s| s.canonical_reason()).unwrap_or("").to_string()
        } else {
            String::from_utf8_lossy(&self.body).into_owned()
        };
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"));
        self.headers.push(("content-type".into(), "application/grpc".into()));
        self.headers.push(("grpc-status".into(), code.to_string()));
        self.headers.push(("grpc-message".into(), grpc_message(&message)));
        self.status = 200;
        self.body = Bytes::new();
        self
    }

    async fn write_as_is(self, session: &mut Session) -> Result<()> {
        let mut resp = ResponseHeader::build(self.status, Some(self.headers.len() + 2))?;
        for (k, v) in self.headers {
            resp.append_header(k, v)?;
        }
        resp.insert_header("server", SERVER)?;
        // 1xx, 204 and 304 carry no body (RFC 9110).
        let bodiless = self.status < 200 || self.status == 204 || self.status == 304;
        if !bodiless {
            resp.insert_header("content-length", self.body.len().to_string())?;
        }
        if super::request::expects_continue(session.req_header()) && !session.as_downstream().is_http2() {
            // The client waits for `100 Continue` before sending its body: answer now, and close
            // (a body may still come). RFC 9110 §10.1.1.
            session.set_keepalive(None);
        } else if request_has_body(session) {
            let drained = tokio::time::timeout(DRAIN_TIMEOUT, session.as_downstream_mut().drain_request_body()).await;
            if !matches!(drained, Ok(Ok(()))) {
                session.set_keepalive(None);
            }
        }
        let head_only = session.req_header().method == http::Method::HEAD;
        let end = self.body.is_empty() || head_only || bodiless;
        session.write_response_header(Box::new(resp), end).await?;
        if !end {
            session.write_response_body(Some(self.body), true).await?;
        }
        Ok(())
    }
}

impl super::header_ops::Target for LocalReply {
    fn remove(&mut self, name: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }
    fn set(&mut self, name: &str, value: &str) -> Result<()> {
        self.remove(name);
        self.add(name, value)
    }
    fn add(&mut self, name: &str, value: &str) -> Result<()> {
        self.headers.push((name.to_string(), value.to_string()));
        Ok(())
    }
}

/// True when the request carries a body (which may not have been read).
pub fn request_has_body(session: &Session) -> bool {
    let h = &session.req_header().headers;
    h.contains_key(http::header::TRANSFER_ENCODING)
        || h.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim() != "0")
}

/// True for a gRPC request (`content-type: application/grpc`, `application/grpc+proto`, ...).
pub fn is_grpc(req: &pingora::http::RequestHeader) -> bool {
    req.headers.get(http::header::CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes().starts_with(b"application/grpc") && !v.as_bytes().starts_with(b"application/grpc-web")
    })
}

/// `grpc-message` as the gRPC spec encodes it: percent-encoding outside printable ASCII and `%`.
fn grpc_message(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
