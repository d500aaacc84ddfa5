//! Configuration the compiled table carries but this version's data plane does not apply yet. It is
//! reported at start-up so that nothing is silently ignored.

use conf::table::{Cluster, RouteTable};

/// One warning per feature in use that the data plane does not serve yet.
pub fn not_served(table: &RouteTable) -> Vec<String> {
    let clusters = |f: &dyn Fn(&Cluster) -> bool| table.clusters.iter().filter(|c| f(c)).count();
    let cluster_features: [(&str, usize); 1] = [(
        "connectionPool settings other than tcp.connectTimeout, tcp.maxConnections, tcp.idleTimeout, http.http1MaxPendingRequests, http.http2MaxRequests, http.idleTimeout, http.maxRequestsPerConnection: 1, http.h2UpgradePolicy and http.useClientProtocol",
        clusters(&|c| c.policy.connection_pool.as_ref().is_some_and(unapplied_pool_settings)),
    )];
    cluster_features
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(what, n)| format!("{n} cluster(s) use {what}, which this version does not apply yet; it has no effect"))
        .collect()
}

/// Connection pool settings the data plane does not apply (the limits it applies are in
/// `cluster::max_active`, the timeouts in `cluster::Upstream`).
fn unapplied_pool_settings(p: &conf::raw::ConnectionPoolSettings) -> bool {
    let tcp = p.tcp.as_ref().is_some_and(|t| t.tcp_keepalive.is_some() || t.max_connection_duration.is_some());
    let http = p.http.as_ref().is_some_and(|h| {
        h.max_requests_per_connection.is_some_and(|n| n > 1)
            || h.max_retries.is_some()
            || h.max_concurrent_streams.is_some()
    });
    tcp || http
}
