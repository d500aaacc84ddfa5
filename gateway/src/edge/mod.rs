//! What Envoy's connection manager does to a request before routing and forwarding, as plain
//! functions on the request header: the trusted-hop headers (XFF, XFP, XFCC) and the request id;
//! the PROXY protocol header that may precede a connection; and the client socket as Pingora sees it.

pub mod buffered;
pub mod forwarded;
pub mod head_deadline;
pub mod proxy_protocol;
