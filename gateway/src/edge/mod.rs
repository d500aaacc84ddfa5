//! What Envoy's connection manager does to a request before routing and forwarding, as plain
//! functions on the request header: the trusted-hop headers (XFF, XFP, XFCC) and the request id;
//! and the PROXY protocol header that may precede a connection.

pub mod forwarded;
pub mod head_deadline;
pub mod proxy_protocol;
