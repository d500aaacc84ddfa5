//! External authorizers (`CUSTOM` AuthorizationPolicies): the policy decides when one must be
//! asked; the gateway, which has sockets, asks it.

use pingora_http::RequestHeader;

use crate::{Context, Decision, LocalReply};

/// Asks an external authorizer about a request.
#[async_trait::async_trait]
pub trait External: Send + Sync {
    /// Asks provider `provider` (an index into the configuration's `ext_authz` list). On allow
    /// it may add the authorizer's headers to `req` (`headersToUpstreamOnAllow`).
    async fn check(&self, provider: usize, req: &mut RequestHeader, cx: &Context) -> Decision;
}

/// For a chain with no `CUSTOM` policy: asking is a configuration error, so it denies.
pub struct NoExternal;

#[async_trait::async_trait]
impl External for NoExternal {
    async fn check(&self, _provider: usize, _req: &mut RequestHeader, _cx: &Context) -> Decision {
        Decision::Deny(LocalReply {
            status: 403,
            body: String::new(),
            headers: Vec::new(),
            details: "ext_authz_error".into(),
        })
    }
}
