//! What Envoy's connection manager does to a request before routing and forwarding, as plain
//! functions on the request header: the trusted-hop headers (XFF, XFP, XFCC) and the request id.

pub mod forwarded;
