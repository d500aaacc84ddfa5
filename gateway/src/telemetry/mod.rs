//! Telemetry: Istio's metrics and the access log, fed once per finished request or TCP connection
//! (README "Operations": metrics and the access log).

pub mod access_log;
pub mod metrics;
pub mod record;
mod series;

use std::sync::Arc;

use access_log::AccessLog;
use metrics::Metrics;

/// Where finished requests are reported.
pub struct Telemetry {
    /// Every metric.
    pub metrics: Arc<Metrics>,
    /// The access log, unless `--access-log off`.
    pub access_log: Option<AccessLog>,
}
