//! VirtualService header operations (`headers.request` / `headers.response`), applied the same way
//! to the request sent upstream, the response sent downstream, and local replies.

use conf::table::HeaderOps;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::Result;

/// Headers that operations can change.
pub trait Target {
    /// Removes every value of `name`.
    fn remove(&mut self, name: &str);
    /// Replaces every value of `name` by `value`.
    fn set(&mut self, name: &str, value: &str) -> Result<()>;
    /// Adds a value of `name`.
    fn add(&mut self, name: &str, value: &str) -> Result<()>;
}

// Pingora's request and response headers have the same header methods.
macro_rules! pingora_target {
    ($($t:ty),*) => {$(
        impl Target for $t {
            fn remove(&mut self, name: &str) {
                self.remove_header(name);
            }
            fn set(&mut self, name: &str, value: &str) -> Result<()> {
                self.insert_header(name.to_string(), value)
            }
            fn add(&mut self, name: &str, value: &str) -> Result<()> {
                self.append_header(name.to_string(), value).map(|_| ())
            }
        }
    )*};
}

pingora_target!(RequestHeader, ResponseHeader);

/// Which side of a message the operations are for.
#[derive(Clone, Copy)]
pub enum Side {
    /// `headers.request`.
    Request,
    /// `headers.response`.
    Response,
}

/// Applies one set of operations: remove, then set, then add (Envoy's order).
pub fn apply(target: &mut impl Target, ops: &HeaderOps, side: Side) -> Result<()> {
    let (set, add, remove) = match side {
        Side::Request => (&ops.request_set, &ops.request_add, &ops.request_remove),
        Side::Response => (&ops.response_set, &ops.response_add, &ops.response_remove),
    };
    for name in remove {
        target.remove(name);
    }
    for (k, v) in set {
        target.set(k, v)?;
    }
    for (k, v) in add {
        target.add(k, v)?;
    }
    Ok(())
}
