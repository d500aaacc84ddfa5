//! `pylon explain`'s policy step: the security policies the request's listener applies, run by
//! the same policy modules as the data plane (`policy::Chain`), before routing as in Envoy.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::SystemTime;

use conf::explain::{Action, Explanation, Probe};
use conf::RouteTable;
use pingora::http::RequestHeader;

/// The client address assumed when `--client` is not given (TEST-NET-1, RFC 5737).
const UNKNOWN_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

/// Runs the policies of the request's route table and records their decision in `e`; a denial
/// replaces the routing outcome (policies run first).
pub fn policies(table: &RouteTable, e: &mut Explanation) {
    let rc = e.route_config.as_ref().and_then(|name| table.route_configs.iter().position(|rc| &rc.name == name));
    if rc.is_none() {
        return; // not an HTTP request on a listener: nothing to check
    }
    let security = table.security_for(rc);
    if security.is_empty() {
        return;
    }
    let chain = match policy::Chain::build(&security) {
        Ok(c) => c,
        Err(err) => {
            e.policies.push(format!("cannot be built: {err} (the configuration would be refused)"));
            return;
        }
    };
    let Some(mut req) = request(&e.request) else {
        e.notes.push("the request cannot be written as an HTTP request head: policies not evaluated".into());
        return;
    };
    let mut cx = policy::Context::new(e.request.client.unwrap_or(UNKNOWN_CLIENT), e.request.port);
    cx.sni = e.request.sni.clone().filter(|_| e.request.scheme == "https");
    if e.request.client.is_none() {
        e.notes.push(format!("no --client: policies see the client address {UNKNOWN_CLIENT}"));
    }
    let asked = Asked::default();
    let remote_keys = chain.authenticator().is_some_and(|a| !a.remote_key_sets().is_empty());
    let decision = if remote_keys {
        e.notes.push(
            "tokens are not verified: the key sets come from jwksUri, which explain does not fetch; rules are \
             evaluated as for a request without a verified token"
                .into(),
        );
        chain.authorize(&req, &cx)
    } else {
        match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt.block_on(chain.request(&mut req, &mut cx, SystemTime::now(), &asked)),
            Err(err) => {
                e.notes.push(format!("policies not evaluated: {err}"));
                return;
            }
        }
    };
    record(e, &security, &asked, cx.identity.as_ref(), decision);
}

fn record(
    e: &mut Explanation,
    security: &conf::table::Security,
    asked: &Asked,
    identity: Option<&policy::Identity>,
    decision: policy::Decision,
) {
    for p in &security.request_authentications {
        e.policies.push(format!("RequestAuthentication {} ({})", p.name, p.bound_by));
    }
    for p in &security.authorization_policies {
        let dry = if p.dry_run { ", dry run" } else { "" };
        e.policies.push(format!("AuthorizationPolicy {} ({}{dry})", p.name, p.bound_by));
    }
    for provider in asked.0.lock().map(|v| v.clone()).unwrap_or_default() {
        let name = security.ext_authz.get(provider).map_or("?", |p| p.name.as_str());
        e.notes.push(format!(
            "a CUSTOM policy asks the external authorizer {name:?}; explain does not call it and goes on as if it allowed"
        ));
    }
    if let Some(id) = identity {
        e.policies.push(format!("token verified: principal {}", id.principal));
    }
    match decision {
        policy::Decision::Allow => e.policies.push("decision: allowed".into()),
        policy::Decision::Deny(reply) => {
            e.policies.push(format!("decision: denied {} ({})", reply.status, reply.details));
            e.status = Some(reply.status);
            e.action =
                Action::Refused { status: Some(reply.status), reason: format!("denied by policy: {}", reply.details) };
        }
    }
}

/// The request head the policies read.
fn request(p: &Probe) -> Option<RequestHeader> {
    let mut req = RequestHeader::build(p.method.as_str(), p.path.as_bytes(), None).ok()?;
    req.insert_header(http::header::HOST, p.authority.as_str()).ok()?;
    for (k, v) in &p.headers {
        req.append_header(k.clone(), v.as_str()).ok()?;
    }
    Some(req)
}

/// An external authorizer that is not asked: it records the provider and allows.
#[derive(Default)]
struct Asked(Mutex<Vec<usize>>);

#[async_trait::async_trait]
impl policy::External for Asked {
    async fn check(&self, provider: usize, _req: &mut RequestHeader, _cx: &policy::Context) -> policy::Decision {
        if let Ok(mut v) = self.0.lock() {
            v.push(provider);
        }
        policy::Decision::Allow
    }
}
