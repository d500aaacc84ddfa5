//! The HTTP external authorizer of `CUSTOM` AuthorizationPolicies (Envoy's `ext_authz` HTTP
//! service as Istio configures it from MeshConfig `extensionProviders[].envoyExtAuthzHttp`,
//! istio.io/latest/docs/tasks/security/authorization/authz-custom/): the check request carries
//! the request's method, `pathPrefix` + path, Host, the headers named by
//! `includeRequestHeadersInCheck`, `includeAdditionalHeadersInCheck`, and no body. A 200 allows
//! the request (with `headersToUpstreamOnAllow` copied onto it); any other status denies it with
//! the authorizer's status, body and `headersToDownstreamOnDeny`. An authorizer that cannot be
//! reached in time, or answers 5xx, denies with `statusOnError` (403), unless `failOpen`.

use std::sync::OnceLock;

use conf::table::ExtAuthz;
use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::upstreams::peer::HttpPeer;
use policy::authz::matchers::Pattern;
use policy::{Context, Decision, LocalReply};

use crate::snapshot::Snapshot;

/// The largest authorizer body passed on to a denied client.
const MAX_BODY: usize = 64 * 1024;

/// One connector (and connection pool) for every check.
fn connector() -> &'static Connector {
    static CONNECTOR: OnceLock<Connector> = OnceLock::new();
    CONNECTOR.get_or_init(|| Connector::new(None))
}

/// Asks the authorizers of one snapshot.
pub struct Authorizers<'a>(pub &'a Snapshot);

#[async_trait::async_trait]
impl policy::External for Authorizers<'_> {
    async fn check(&self, provider: usize, req: &mut RequestHeader, _cx: &Context) -> Decision {
        let Some(p) = self.0.table.security.ext_authz.get(provider) else { return error(None) };
        match tokio::time::timeout(p.timeout, ask(self.0, p, req)).await {
            Ok(Ok((resp, _))) if resp.status.as_u16() == 200 => {
                copy(&resp, &p.provider.headers_to_upstream_on_allow, |k, v| {
                    let _ = req.insert_header(k, v);
                });
                Decision::Allow
            }
            // Envoy's HTTP client counts a 5xx from the authorizer as its error, not its verdict.
            Ok(Ok((resp, _))) if resp.status.is_server_error() => {
                tracing::warn!(provider = %p.name, status = resp.status.as_u16(), "external authorizer answered with an error");
                failed(p)
            }
            Ok(Ok((resp, body_denied))) => {
                let mut headers = Vec::new();
                copy(&resp, &p.provider.headers_to_downstream_on_deny, |k, v| headers.push((k, v)));
                Decision::Deny(LocalReply {
                    status: resp.status.as_u16(),
                    body: String::from_utf8_lossy(&body_denied).into_owned(),
                    headers,
                    details: "ext_authz_denied".into(),
                })
            }
            Ok(Err(e)) => {
                tracing::warn!(provider = %p.name, error = %e, "external authorizer failed");
                failed(p)
            }
            Err(_) => {
                tracing::warn!(provider = %p.name, timeout = ?p.timeout, "external authorizer did not answer in time");
                failed(p)
            }
        }
    }
}

/// `failOpen`, else `statusOnError`.
fn failed(p: &ExtAuthz) -> Decision {
    if p.provider.fail_open {
        return Decision::Allow;
    }
    error(p.provider.status_on_error.parse().ok())
}

fn error(status: Option<u16>) -> Decision {
    let status = status.filter(|s| (200..=599).contains(s)).unwrap_or(403);
    Decision::Deny(LocalReply { status, body: String::new(), headers: Vec::new(), details: "ext_authz_error".into() })
}

/// Copies the response headers whose names match `names` (Istio's exact, `prefix*` and
/// `*suffix` forms, without case).
fn copy(resp: &ResponseHeader, names: &[String], mut put: impl FnMut(String, String)) {
    let patterns: Vec<Pattern> = names.iter().map(|n| Pattern::new(n, true)).collect();
    for (k, v) in &resp.headers {
        if patterns.iter().any(|p| p.matches(k.as_str())) {
            if let Ok(v) = v.to_str() {
                put(k.as_str().to_string(), v.to_string());
            }
        }
    }
}

/// Sends the check request; the authorizer's response head and body.
async fn ask(snap: &Snapshot, p: &ExtAuthz, req: &RequestHeader) -> Result<(ResponseHeader, Vec<u8>), String> {
    let upstream = snap.upstreams.get(p.cluster).ok_or("no cluster")?;
    let chosen = upstream.pick(&[]).ok_or_else(|| format!("{} has no endpoint", upstream.name))?;
    let mut peer = HttpPeer::new(chosen.endpoint().addr, false, String::new());
    upstream.bind_source(&mut peer);
    peer.options.connection_timeout = Some(upstream.connect_timeout);
    let (mut session, _) = connector().get_http_session(&peer).await.map_err(|e| e.to_string())?;
    session.write_request_header(Box::new(check_request(p, req)?)).await.map_err(|e| e.to_string())?;
    session.finish_request_body().await.map_err(|e| e.to_string())?;
    session.read_response_header().await.map_err(|e| e.to_string())?;
    let resp = session.response_header().cloned().ok_or("no response")?;
    let mut body = Vec::new();
    while let Some(chunk) = session.read_response_body().await.map_err(|e| e.to_string())? {
        if body.len() < MAX_BODY {
            body.extend_from_slice(&chunk);
        }
    }
    body.truncate(MAX_BODY);
    connector().release_http_session(session, &peer, Some(std::time::Duration::from_secs(60))).await;
    Ok((resp, body))
}

/// The check request for `req`.
fn check_request(p: &ExtAuthz, req: &RequestHeader) -> Result<RequestHeader, String> {
    let path = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let target = format!("{}{path}", p.provider.path_prefix);
    let mut check = RequestHeader::build(req.method.clone(), target.as_bytes(), None).map_err(|e| e.to_string())?;
    let host = crate::proxy::request::authority(req).into_owned();
    check.insert_header("host", host).map_err(|e| e.to_string())?;
    check.insert_header("content-length", "0").map_err(|e| e.to_string())?;
    let patterns: Vec<Pattern> =
        p.provider.include_request_headers_in_check.iter().map(|n| Pattern::new(n, true)).collect();
    for (k, v) in &req.headers {
        let name = k.as_str();
        if name != "host" && name != "content-length" && patterns.iter().any(|pt| pt.matches(name)) {
            check.append_header(name.to_string(), v.clone()).map_err(|e| e.to_string())?;
        }
    }
    for (k, v) in &p.provider.include_additional_headers_in_check {
        check.insert_header(k.clone(), v.clone()).map_err(|e| e.to_string())?;
    }
    Ok(check)
}
