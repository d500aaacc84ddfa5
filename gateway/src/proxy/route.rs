//! Routing one request: the route table's decision (`conf::decide`, shared with `pylon explain`),
//! then the action: forward, redirect or answer.

use conf::decide::{redirect, Found};
use conf::matcher::Request;

use conf::table::RouteAction;
use pingora::proxy::Session;

use super::ctx::{Ctx, RouteRef};
use super::reply::LocalReply;
use super::request::{authority, HeaderView};
use crate::cluster::pick_weighted;
use crate::error::Outcome;
use crate::snapshot::Snapshot;

/// What to do with a request.
pub enum Decision {
    /// Forward to `ctx.cluster`.
    Forward,
    /// Answer locally.
    Reply(LocalReply),
}

/// Routes the request: sets `ctx.route` and `ctx.cluster`, or returns the reply to send.
pub fn decide(session: &Session, ctx: &mut Ctx) -> Decision {
    let snap = ctx.snap.clone();
    let req = session.req_header();
    let host = authority(req);
    let path = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let Some(config) = ctx.route_config else { return no_route(ctx) };
    let Some(rc) = snap.table.route_configs.get(config) else { return no_route(ctx) };
    let headers = HeaderView(&req.headers);
    let view = Request::new(req.method.as_str(), ctx.scheme, &host, path, &headers);
    let (vhost_index, index) = match rc.find(&view) {
        Found::Route { vhost, route } => (vhost, route),
        // Istio httpsRedirect: every plaintext request to the host is redirected, before any route.
        Found::HttpsRedirect { .. } => {
            return Decision::Reply(LocalReply::redirect(301, redirect::https(&host, path)));
        }
        Found::NoVirtualHost | Found::NoRoute { .. } => return no_route(ctx),
    };
    ctx.route = Some(RouteRef { config, vhost: vhost_index, route: index });
    let Some(route) = rc.virtual_hosts.get(vhost_index).and_then(|v| v.routes.get(index)) else {
        return no_route(ctx);
    };
    if let Some(limited) = super::ratelimit::check(session, ctx, route.rate_limit) {
        return Decision::Reply(limited);
    }
    match &route.action {
        RouteAction::Redirect(r) => {
            let location = redirect::location(r, ctx.scheme, &host, path, route.matched_prefix());
            Decision::Reply(LocalReply::redirect(r.code, location).with_response_ops(&route.headers))
        }
        RouteAction::DirectResponse { status, body } => {
            let body = body.clone().map(bytes::Bytes::from).unwrap_or_default();
            let headers = if body.is_empty() { Vec::new() } else { vec![("content-type".into(), "text/plain".into())] };
            Decision::Reply(LocalReply { status: *status, headers, body }.with_response_ops(&route.headers))
        }
        RouteAction::Forward { destinations, .. } => {
            let Some(cluster) = pick_weighted(destinations, |d| d.weight).map(|d| d.cluster) else {
                return reply(ctx, Outcome::NoCluster);
            };
            ctx.cluster = Some(cluster);
            match unavailable(&snap, cluster) {
                None => Decision::Forward,
                Some(Outcome::NoCluster) if route.gateway_api => reply(ctx, Outcome::BackendNotFound),
                Some(o) => reply(ctx, o),
            }
        }
    }
}

fn no_route(ctx: &mut Ctx) -> Decision {
    reply(ctx, Outcome::NoRoute)
}

fn reply(ctx: &mut Ctx, o: Outcome) -> Decision {
    ctx.outcome = Some(o);
    Decision::Reply(LocalReply::outcome(o).with_route_ops(ctx))
}

/// Why a cluster cannot take requests (answered here, so the connection stays usable, as Envoy's).
fn unavailable(snap: &Snapshot, cluster: usize) -> Option<Outcome> {
    snap.upstreams.get(cluster).map_or(Some(Outcome::NoCluster), |u| u.refusal())
}
