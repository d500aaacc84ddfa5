//! Response caching (`GatewayPolicy` `cache`): the zones that store responses. The HTTP rules
//! (what is stored, for how long, under which key) live in `proxy::cache`.

pub mod store;
pub mod zones;

pub use store::{Zone, ZoneStats};
pub use zones::Zones;
