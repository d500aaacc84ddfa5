//! A snapshot: one compiled configuration with everything the data plane needs to serve it.

use std::sync::Arc;
use std::time::Duration;

use conf::RouteTable;
use tokio::task::JoinHandle;

use crate::cluster::dns::{self, Dns, Refresher};
use crate::cluster::Upstream;
use crate::tls::store::TlsStore;

/// How long the first DNS lookups may delay readiness.
const FIRST_RESOLUTION_TIMEOUT: Duration = Duration::from_secs(5);

/// One configuration generation: the routing table and its clusters' run-time state.
pub struct Snapshot {
    /// Increases with every applied configuration.
    pub generation: u64,
    /// The compiled table.
    pub table: RouteTable,
    /// Run-time clusters, indexed like `table.clusters`.
    pub upstreams: Vec<Arc<Upstream>>,
    /// Server certificates and origination settings, kept current by rotation.
    pub tls: Arc<TlsStore>,
    /// [`crate::conn::fingerprint`] of each server, indexed like `table.servers`.
    pub server_fingerprints: Vec<u64>,
    /// Background DNS refreshers, stopped when the snapshot is dropped.
    tasks: Vec<JoinHandle<()>>,
}

impl Snapshot {
    /// The run-time form of `table`, its TLS material read (a credential missing at compile time
    /// is looked up again in `credentials_dir`); DNS clusters are resolved by
    /// [`Snapshot::start_discovery`].
    pub fn new(table: RouteTable, generation: u64, credentials_dir: Option<std::path::PathBuf>) -> Self {
        let upstreams = table.clusters.iter().map(|c| Arc::new(Upstream::new(c))).collect();
        let tls = Arc::new(TlsStore::new(&table, credentials_dir));
        let server_fingerprints = table.servers.iter().map(crate::conn::fingerprint).collect();
        Snapshot { generation, table, upstreams, tls, server_fingerprints, tasks: Vec::new() }
    }

    /// Keeps the TLS material current (rotation) while the snapshot lives, on the current runtime.
    pub fn start_rotation(&mut self) {
        if !self.tls.is_empty() {
            self.tasks.push(crate::tls::watch::spawn(self.tls.clone()));
        }
    }

    /// Resolves every DNS cluster once (bounded in time), then keeps them fresh in the background
    /// on `runtime`.
    pub async fn start_discovery(&mut self, dns: &Arc<Dns>, runtime: &tokio::runtime::Handle) {
        let mut first = Vec::new();
        for (cluster, upstream) in self.table.clusters.iter().zip(&self.upstreams) {
            let names = dns::names(cluster);
            if names.iter().all(|(n, _, _)| n.parse::<std::net::IpAddr>().is_ok()) {
                continue;
            }
            first.push(Refresher::new(dns.clone(), upstream.clone(), names));
        }
        let resolved = futures_join_all(first).await;
        for (refresher, wait) in resolved {
            self.tasks.push(runtime.spawn(refresher.run(wait)));
        }
    }
}

/// Runs the first refresh of every refresher concurrently, within the startup bound.
async fn futures_join_all(refreshers: Vec<Refresher>) -> Vec<(Refresher, Duration)> {
    let mut set = tokio::task::JoinSet::new();
    for mut r in refreshers {
        set.spawn(async move {
            let wait = match tokio::time::timeout(FIRST_RESOLUTION_TIMEOUT, r.refresh()).await {
                Ok(wait) => wait,
                Err(_) => Duration::ZERO,
            };
            (r, wait)
        });
    }
    let mut out = Vec::new();
    while let Some(done) = set.join_next().await {
        match done {
            Ok(pair) => out.push(pair),
            Err(e) => tracing::error!(error = %e, "a DNS refresher stopped; its cluster keeps its current endpoints"),
        }
    }
    out
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
