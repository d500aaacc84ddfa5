//! Request-time decisions that need no sockets: which route table a request on a listener
//! reads, which virtual host and route it reaches, where a redirect points, how the path is
//! rewritten and in which order header operations apply.
//!
//! The data plane and `pylon explain` call these same functions, so what `explain` prints is
//! what the gateway does.

pub mod redirect;
pub mod rewrite;

use std::net::IpAddr;

use crate::matcher::{Request, StringMatcher};
use crate::table::{
    ClusterId, HeaderOps, ListenerKind, Route, RouteAction, RouteConfig, RouteConfigId, RouteTable, Security,
};

/// Where a request lands in one route table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// No virtual host has the request's host: 404 (`NR`).
    NoVirtualHost,
    /// The virtual host has `httpsRedirect` and the request is plaintext: 301 to `https`, before
    /// any route is consulted.
    HttpsRedirect {
        /// Index into `virtual_hosts`.
        vhost: usize,
    },
    /// The virtual host has no route whose match holds: 404 (`NR`); Istio never falls back to
    /// another virtual host.
    NoRoute {
        /// Index into `virtual_hosts`.
        vhost: usize,
    },
    /// The first route whose match holds.
    Route {
        /// Index into `virtual_hosts`.
        vhost: usize,
        /// Index into the virtual host's `routes`.
        route: usize,
    },
}

impl RouteConfig {
    /// Istio's route selection: the virtual host of `req.authority` (exact, then the longest
    /// wildcard, then `*`), then its first route whose match holds.
    pub fn find(&self, req: &Request<'_>) -> Found {
        let Some(vhost) = self.virtual_host_index(req.authority) else { return Found::NoVirtualHost };
        let Some(v) = self.virtual_hosts.get(vhost) else { return Found::NoVirtualHost };
        if v.require_tls && req.scheme != "https" {
            return Found::HttpsRedirect { vhost };
        }
        match v.routes.iter().position(|r| r.matcher.matches(req)) {
            Some(route) => Found::Route { vhost, route },
            None => Found::NoRoute { vhost },
        }
    }
}

impl RouteTable {
    /// The security policies requests read through route table `rc` are checked against: the
    /// workload's, and those `GatewayPolicy`s add for its servers.
    pub fn security_for(&self, rc: Option<RouteConfigId>) -> std::borrow::Cow<'_, Security> {
        let Some(extra) = rc.and_then(|rc| self.route_configs.get(rc)).map(|rc| &rc.security).filter(|s| !s.is_empty())
        else {
            return std::borrow::Cow::Borrowed(&self.security);
        };
        let mut merged = self.security.clone();
        merged.request_authentications.extend(extra.request_authentications.iter().cloned());
        merged.authorization_policies.extend(extra.authorization_policies.iter().cloned());
        std::borrow::Cow::Owned(merged)
    }

    /// The plaintext HTTP route table of the listener for Gateway port `port`: the listener bound
    /// to `local` if there is one, else the one bound to every address.
    pub fn http_route_config(&self, port: u16, local: Option<IpAddr>) -> Option<RouteConfigId> {
        let http = |l: &&crate::table::Listener| matches!(l.kind, ListenerKind::Http { .. }) && l.port == port;
        let listener = self
            .listeners
            .iter()
            .filter(http)
            .find(|l| l.bind.is_some() && l.bind == local)
            .or_else(|| self.listeners.iter().filter(http).find(|l| l.bind.is_none()))?;
        match listener.kind {
            ListenerKind::Http { route_config, .. } => Some(route_config),
            _ => None,
        }
    }
}

impl Route {
    /// The route's header operations in Istio's order for a request sent to `cluster`: with one
    /// destination, the route's and then the destination's (which win); with weighted
    /// destinations, the destination's and then the route's (which win).
    pub fn header_ops(&self, cluster: Option<ClusterId>) -> impl Iterator<Item = &HeaderOps> {
        let destination = match &self.action {
            RouteAction::Forward { destinations, weighted } => cluster
                .and_then(|c| destinations.iter().find(|d| d.cluster == c))
                .and_then(|d| d.headers.as_deref())
                .map(|h| (h, *weighted)),
            _ => None,
        };
        // No allocation: the data plane runs this for every request, up to three times.
        let (first, last) = match destination {
            Some((d, true)) => (Some(d), None),
            Some((d, false)) => (None, Some(d)),
            None => (None, None),
        };
        first.into_iter().chain(std::iter::once(&self.headers)).chain(last)
    }

    /// The authority sent upstream instead of the request's, if the route changes it. Istio's
    /// precedence: `rewrite.authority` (compiled into the route's operations) > route-level
    /// header > destination-level header.
    pub fn authority_override(&self, cluster: Option<ClusterId>) -> Option<&str> {
        self.headers.authority.as_deref().or_else(|| self.header_ops(cluster).find_map(|o| o.authority.as_deref()))
    }

    /// The route's path prefix, when it matches by prefix (what `prefixRewrite` and
    /// `rewrite.uri` replace).
    pub fn matched_prefix(&self) -> Option<&str> {
        match &self.matcher.path.matcher {
            StringMatcher::Prefix(p) => Some(p.as_str()),
            _ => None,
        }
    }
}
