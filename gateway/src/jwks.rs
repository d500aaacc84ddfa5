//! Keeps the remote JSON Web Key Sets of `RequestAuthentication` `jwksUri`s fresh: fetched when a
//! snapshot is built, refreshed every 20 minutes (Istio's `PILOT_JWT_PUB_KEY_REFRESH_INTERVAL`),
//! at once when a token names a key the set does not have (the policy asks, rate-limited), and
//! retried every minute after a failure. A failed fetch keeps the last good keys; with none,
//! tokens are refused (`Jwks remote fetch is failed`), never accepted.
//!
//! HTTPS fetches verify the server against the system's CA store (`SSL_CERT_FILE` and
//! `SSL_CERT_DIR` override it, as for every OpenSSL client).

use std::sync::Arc;
use std::time::Duration;

use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
use policy::jwt::RemoteJwks;
use tokio::task::JoinHandle;

/// How often a key set that was fetched is fetched again.
const REFRESH: Duration = Duration::from_secs(20 * 60);
/// How soon a failed fetch is tried again.
const RETRY: Duration = Duration::from_secs(60);
/// The largest key set accepted.
const MAX_BODY: usize = 1 << 20;

/// One task per remote key set of `chain`; they stop with the snapshot.
pub fn spawn_fetchers(chain: &policy::Chain) -> Vec<JoinHandle<()>> {
    let sets = chain.authenticator().map(|a| a.remote_key_sets()).unwrap_or_default();
    sets.into_iter().map(|set| tokio::spawn(keep_fresh(set))).collect()
}

async fn keep_fresh(set: Arc<RemoteJwks>) {
    let connector = Connector::new(None);
    loop {
        let fetched = tokio::time::timeout(set.timeout, fetch(&connector, &set.uri)).await;
        let outcome = match fetched {
            Ok(Ok(body)) => set.install(&body).map(|keys| tracing::info!(uri = %set.uri, keys, "JWKS fetched")),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("no answer within {:?}", set.timeout)),
        };
        let ok = outcome.is_ok();
        if let Err(e) = outcome {
            tracing::warn!(uri = %set.uri, error = %e, kept_last_good = set.has_keys(), "JWKS fetch failed");
        }
        set.fetch_done();
        let wait = if ok { REFRESH } else { RETRY };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = set.refetch_wanted() => {}
        }
    }
}

/// GET `uri`; the body when the answer is 200.
async fn fetch(connector: &Connector, uri: &str) -> Result<String, String> {
    let url: http::Uri = uri.parse().map_err(|e| format!("{e}"))?;
    let https = url.scheme_str() == Some("https");
    let host = url.host().ok_or("no host")?.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let peer = HttpPeer::new(addr, https, host.clone());
    let (mut session, _) = connector.get_http_session(&peer).await.map_err(|e| e.to_string())?;
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    let mut req = RequestHeader::build("GET", path.as_bytes(), None).map_err(|e| e.to_string())?;
    let authority = url.authority().map_or(host.as_str(), |a| a.as_str());
    req.insert_header("host", authority).map_err(|e| e.to_string())?;
    req.insert_header("accept", "application/json").map_err(|e| e.to_string())?;
    req.insert_header("user-agent", concat!("pylon/", env!("CARGO_PKG_VERSION"))).map_err(|e| e.to_string())?;
    session.write_request_header(Box::new(req)).await.map_err(|e| e.to_string())?;
    session.finish_request_body().await.map_err(|e| e.to_string())?;
    session.read_response_header().await.map_err(|e| e.to_string())?;
    let status = session.response_header().map_or(0, |h| h.status.as_u16());
    if status != 200 {
        return Err(format!("status {status}"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = session.read_response_body().await.map_err(|e| e.to_string())? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
            return Err(format!("the key set is larger than {MAX_BODY} bytes"));
        }
    }
    String::from_utf8(body).map_err(|_| "the key set is not UTF-8".into())
}
