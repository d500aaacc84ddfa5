//! The chain of policies that applies to this workload: authentication, then authorization.

use std::time::SystemTime;

use pingora_http::RequestHeader;

use crate::authz::Authorizer;
use crate::jwt::Authenticator;
use crate::{Context, Decision, External};

/// A policy that cannot be built. It rejects the whole configuration: Pylon never serves without
/// a policy that applies.
#[derive(Debug, thiserror::Error)]
#[error("{policy}: {message}")]
pub struct BuildError {
    /// The policy resource, `Kind namespace/name`.
    pub policy: String,
    /// What is wrong.
    pub message: String,
}

/// The policies of one configuration, built once and run for every request.
#[derive(Default)]
pub struct Chain {
    authn: Option<Authenticator>,
    authz: Option<Authorizer>,
}

impl Chain {
    /// Builds the chain of `security`; `Err` when any policy cannot be enforced as written.
    pub fn build(security: &conf::table::Security) -> Result<Chain, BuildError> {
        Ok(Chain {
            authn: Authenticator::build(&security.request_authentications)?,
            authz: Authorizer::build(&security.authorization_policies, &security.ext_authz)?,
        })
    }

    /// True when no policy applies (requests skip the chain).
    pub fn is_empty(&self) -> bool {
        self.authn.is_none() && self.authz.is_none()
    }

    /// The authenticator, for the gateway's key-set fetchers.
    pub fn authenticator(&self) -> Option<&Authenticator> {
        self.authn.as_ref()
    }

    /// Decides on a connection before anything is read from it (`cx` holds its addresses and
    /// port): only DENY rules that depend on nothing else can refuse it here.
    pub fn connection(&self, cx: &Context) -> Decision {
        self.authz.as_ref().map_or(Decision::Allow, |a| a.connection(cx))
    }

    /// Decides on a TCP connection (no HTTP request on it): authorization only, as Istio's
    /// network RBAC filter; `RequestAuthentication` has nothing to read there.
    pub fn l4(&self, cx: &Context) -> Decision {
        self.authz.as_ref().map_or(Decision::Allow, |a| a.decide_l4(cx))
    }

    /// True when [`Chain::connection`] can refuse a connection (the listener checks then).
    pub fn checks_connections(&self) -> bool {
        self.authz.as_ref().is_some_and(|a| a.denies_connections())
    }

    /// Authorization alone, for a request whose token was not verified (`pylon explain` does
    /// not fetch remote key sets): `ALLOW`/`DENY`/`AUDIT` rules as for a request with no
    /// verified identity beyond `cx.identity`.
    pub fn authorize(&self, req: &RequestHeader, cx: &Context) -> Decision {
        self.authz.as_ref().map_or(Decision::Allow, |a| a.decide(req, cx))
    }

    /// Runs the request phase in Istio's filter order: a `CUSTOM` policy's external authorizer
    /// (asked through `external`), authentication (which may rewrite the request's token
    /// headers and sets `cx.identity`), then authorization.
    pub async fn request(
        &self,
        req: &mut RequestHeader,
        cx: &mut Context,
        now: SystemTime,
        external: &dyn External,
    ) -> Decision {
        if let Some(provider) = self.authz.as_ref().and_then(|a| a.custom(req, cx)) {
            if let Decision::Deny(reply) = external.check(provider, req, cx).await {
                return Decision::Deny(reply);
            }
        }
        if let Some(authn) = &self.authn {
            match authn.authenticate(req, now).await {
                Ok(identity) => cx.identity = identity,
                Err(reply) => return Decision::Deny(reply),
            }
        }
        match &self.authz {
            Some(authz) => authz.decide(req, cx),
            None => Decision::Allow,
        }
    }
}
