//! Fault injection (VirtualService `fault`), as Envoy's fault filter applies it before the router:
//! first the delay (the request waits, flag `DI`), then the abort (a local reply with the
//! configured status, flag `FI`, body `fault filter abort`). Each happens to its percentage of
//! requests, drawn per million as Istio translates it (`TranslateFault`).

use std::time::Duration;

use bytes::Bytes;
use conf::table::{Fault, FaultAbort};

use super::ctx::Ctx;
use super::reply::LocalReply;

/// Envoy's body and `%RESPONSE_CODE_DETAILS%` for an abort.
pub const ABORT_BODY: &str = "fault filter abort";
/// Envoy's details for an aborted request.
pub const ABORT_DETAILS: &str = "fault_filter_abort";

/// True for `percent`% of calls (per million, as Envoy's fractional percent).
pub fn chance(percent: f64) -> bool {
    let per_million = (percent * 10_000.0).clamp(0.0, 1_000_000.0) as u32;
    fastrand::u32(0..1_000_000) < per_million
}

/// What the route's fault does to this request: `(delay, abort)`, each decided by its percentage.
pub fn draw(fault: &Fault) -> (Option<Duration>, Option<&FaultAbort>) {
    let delay = fault.delay.as_ref().filter(|(_, pct)| chance(*pct)).map(|(d, _)| d.to_std());
    let abort = fault.abort.as_ref().filter(|(_, pct)| chance(*pct)).map(|(a, _)| a);
    (delay, abort)
}

/// The abort's reply: the HTTP status, or for a gRPC status a `200` whose `grpc-status` says it
/// (a trailers-only gRPC response, as Envoy's local replies to gRPC).
pub fn abort_reply(abort: &FaultAbort) -> LocalReply {
    match abort {
        FaultAbort::Http(status) => LocalReply {
            status: *status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: Bytes::from_static(ABORT_BODY.as_bytes()),
        },
        FaultAbort::Grpc(name) => {
            let code = conf::model::grpc::status_code(name).unwrap_or(2);
            LocalReply {
                status: 200,
                headers: vec![
                    ("content-type".into(), "application/grpc".into()),
                    ("grpc-status".into(), code.to_string()),
                    ("grpc-message".into(), ABORT_BODY.into()),
                ],
                body: Bytes::new(),
            }
        }
    }
}

/// Applies the matched route's fault: waits out a drawn delay, and returns the reply of a drawn
/// abort. Records both in `ctx` for the access log and metrics.
pub async fn inject(ctx: &mut Ctx) -> Option<LocalReply> {
    let (delay, abort) = {
        let fault = ctx.route()?.fault.as_ref()?;
        let (delay, abort) = draw(fault);
        (delay, abort.map(abort_reply))
    };
    if let Some(d) = delay {
        ctx.fault_delayed = true;
        tokio::time::sleep(d).await;
    }
    if abort.is_some() {
        ctx.denied = Some(ABORT_DETAILS.to_string());
    }
    abort
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_percent_never_and_a_hundred_always() {
        assert!((0..1000).all(|_| !chance(0.0)));
        assert!((0..1000).all(|_| chance(100.0)));
        let hits = (0..100_000).filter(|_| chance(50.0)).count();
        assert!((45_000..55_000).contains(&hits), "{hits}");
    }

    #[test]
    fn a_grpc_abort_is_a_200_with_its_grpc_status() {
        let r = abort_reply(&FaultAbort::Grpc("UNAVAILABLE".into()));
        assert_eq!(r.status, 200);
        assert!(r.headers.contains(&("grpc-status".to_string(), "14".to_string())));
        let h = abort_reply(&FaultAbort::Http(503));
        assert_eq!((h.status, h.body.as_ref()), (503, ABORT_BODY.as_bytes()));
    }
}
