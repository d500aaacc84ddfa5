//! What Envoy's connection manager does to a request before routing and forwarding, as plain
//! functions on the request header: the trusted-hop headers (XFF, XFP, XFCC) and the request id;
//! the PROXY protocol header that may precede a connection; the client socket as Pingora sees it,
//! and how a keep-alive connection waits between requests.

pub mod buffered;
pub mod forwarded;
pub mod head_deadline;
pub mod keepalive;
pub mod proxy_protocol;
