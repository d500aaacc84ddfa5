//! GRPCRoutes as the HTTPRoutes they amount to (istio/istio `conversion.go` `convertGRPCRoute`,
//! `createGRPCURIMatch`): a service and method match is a path match on `/<service>/<method>`,
//! and the rules then join the HTTPRoutes of the same listener and host (Istio merges both kinds
//! into one VirtualService).
//!
//! | type | service only | method only | both |
//! |---|---|---|---|
//! | `Exact` (default) | prefix `/<service>/` | regex `/[^/]+/<method>` | exact `/<service>/<method>` |
//! | `RegularExpression` | regex `/<service>/.+` | regex `/[^/]+/<method>` | regex `/<service>/<method>` |

use crate::config::Resource;
use crate::raw::gateway_api::{
    GrpcMethodMatch, GrpcRoute, HttpPathMatch, HttpRouteMatch, HttpRouteRule, KubeHttpRoute,
};

/// The HTTPRoute a GRPCRoute amounts to.
pub(super) fn as_http_route(route: &Resource<GrpcRoute>) -> Resource<KubeHttpRoute> {
    let rules = route
        .spec
        .rules
        .iter()
        .map(|r| HttpRouteRule {
            name: r.name.clone(),
            matches: r
                .matches
                .iter()
                .map(|m| HttpRouteMatch {
                    path: m.method.as_ref().and_then(path),
                    headers: m.headers.clone(),
                    ..HttpRouteMatch::default()
                })
                .collect(),
            filters: r.filters.clone(),
            backend_refs: r.backend_refs.clone(),
            ..HttpRouteRule::default()
        })
        .collect();
    Resource {
        meta: route.meta.clone(),
        spec: KubeHttpRoute {
            parent_refs: route.spec.parent_refs.clone(),
            hostnames: route.spec.hostnames.clone(),
            rules,
        },
    }
}

/// Istio `createGRPCURIMatch`.
fn path(m: &GrpcMethodMatch) -> Option<HttpPathMatch> {
    let regex = m.kind.as_deref() == Some("RegularExpression");
    let service = m.service.as_deref().filter(|s| !s.is_empty());
    let method = m.method.as_deref().filter(|s| !s.is_empty());
    let (kind, value) = match (service, method, regex) {
        (None, None, _) => return None,
        (Some(s), None, false) => ("PathPrefix", format!("/{s}/")),
        (Some(s), None, true) => ("RegularExpression", format!("/{s}/.+")),
        (None, Some(m), _) => ("RegularExpression", format!("/[^/]+/{m}")),
        (Some(s), Some(m), false) => ("Exact", format!("/{s}/{m}")),
        (Some(s), Some(m), true) => ("RegularExpression", format!("/{s}/{m}")),
    };
    Some(HttpPathMatch { kind: Some(kind.into()), value: Some(value) })
}
