//! Configuration the compiled table carries but this version's data plane does not apply yet. It is
//! reported at start-up so that nothing is silently ignored.

use conf::table::{Cluster, RouteTable};

/// One warning per feature in use that the data plane does not serve yet.
pub fn not_served(table: &RouteTable) -> Vec<String> {
    let clusters = |f: &dyn Fn(&Cluster) -> bool| table.clusters.iter().filter(|c| f(c)).count();
    let cluster_features: [(&str, usize); 3] = [
        (
            "connectionPool limits other than tcp.connectTimeout",
            clusters(&|c| c.policy.connection_pool.as_ref().is_some_and(limits_beyond_connect_timeout)),
        ),
        ("outlierDetection", clusters(&|c| c.policy.outlier_detection.is_some())),
        (
            "consistentHash load balancing",
            clusters(&|c| c.policy.load_balancer.as_ref().is_some_and(|lb| lb.consistent_hash.is_some())),
        ),
    ];
    cluster_features
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(what, n)| format!("{n} cluster(s) use {what}, which this version does not apply yet; it has no effect"))
        .collect()
}

fn limits_beyond_connect_timeout(p: &conf::raw::ConnectionPoolSettings) -> bool {
    let tcp_other = p.tcp.as_ref().is_some_and(|t| {
        t.max_connections.is_some()
            || t.tcp_keepalive.is_some()
            || t.max_connection_duration.is_some()
            || t.idle_timeout.is_some()
    });
    tcp_other || p.http.is_some()
}
