//! Clusters outlive snapshots: a cluster is kept by its identity, everything that
//! defines it (host, subset, port, the service's endpoints and resolution, the DestinationRule
//! policy). A reload that leaves a cluster unchanged hands the new snapshot the same run-time
//! cluster: its endpoints, DNS refresher, least-request counters and round-robin position carry on.
//! A cluster no snapshot uses any more is dropped with the last snapshot that did, and its DNS
//! refresher stops. Cache zones outlive snapshots the same way (`crate::cache::Zones`).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use conf::table::Cluster;
use tokio::task::JoinHandle;

use super::dns::{self, Dns, Refresher};
use super::Upstream;

/// How long the first DNS lookups of new clusters may delay readiness or a reload.
const FIRST_RESOLUTION_TIMEOUT: Duration = Duration::from_secs(5);

/// One cluster at run time, shared by every snapshot that routes to it.
pub struct ClusterRuntime {
    /// Endpoints and load-balancer state.
    pub upstream: Arc<Upstream>,
    /// Keeps DNS endpoints current; stopped when the cluster is dropped.
    refresher: Option<JoinHandle<()>>,
}

impl ClusterRuntime {
    /// A cluster without background discovery (static endpoints, or tests).
    pub fn fixed(cluster: &Cluster) -> Arc<Self> {
        Arc::new(ClusterRuntime { upstream: Arc::new(Upstream::new(cluster)), refresher: None })
    }
}

impl Drop for ClusterRuntime {
    fn drop(&mut self) {
        if let Some(task) = &self.refresher {
            task.abort();
        }
    }
}

/// The clusters alive in any snapshot, by identity.
pub struct Registry {
    /// The cache zones, by `GatewayPolicy`.
    pub caches: crate::cache::Zones,
    dns: Arc<Dns>,
    live: Mutex<HashMap<u64, Weak<ClusterRuntime>>>,
}

/// A cluster's identity: the digest of everything that defines it.
fn identity(cluster: &Cluster) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(cluster).unwrap_or_default().hash(&mut h);
    h.finish()
}

impl Registry {
    /// An empty registry resolving with `dns`.
    pub fn new(dns: Arc<Dns>) -> Self {
        Registry { caches: crate::cache::Zones::default(), dns, live: Mutex::new(HashMap::new()) }
    }

    /// The run-time clusters for `clusters` (in order): the live ones reused, new ones created,
    /// their DNS names resolved once (bounded in time) and then kept fresh in the background on the
    /// current runtime.
    pub async fn clusters(&self, clusters: &[Cluster]) -> Vec<Arc<ClusterRuntime>> {
        let mut out: Vec<Option<Arc<ClusterRuntime>>> = Vec::with_capacity(clusters.len());
        let mut fresh = Vec::new();
        {
            let Ok(live) = self.live.lock() else { return Vec::new() };
            for (i, c) in clusters.iter().enumerate() {
                match live.get(&identity(c)).and_then(Weak::upgrade) {
                    Some(reused) => out.push(Some(reused)),
                    None => {
                        out.push(None);
                        fresh.push(i);
                    }
                }
            }
        }
        let created = self.create(clusters, &fresh).await;
        if let Ok(mut live) = self.live.lock() {
            live.retain(|_, w| w.strong_count() > 0);
            for (i, runtime) in fresh.iter().zip(created) {
                live.insert(identity(&clusters[*i]), Arc::downgrade(&runtime));
                out[*i] = Some(runtime);
            }
        }
        out.into_iter().flatten().collect()
    }

    /// Creates the clusters at `indices`, resolving their DNS names concurrently first.
    async fn create(&self, clusters: &[Cluster], indices: &[usize]) -> Vec<Arc<ClusterRuntime>> {
        let mut set = tokio::task::JoinSet::new();
        for (slot, &i) in indices.iter().enumerate() {
            let upstream = Arc::new(Upstream::new(&clusters[i]));
            let names = dns::names(&clusters[i]);
            let dns = self.dns.clone();
            set.spawn(async move {
                if names.iter().all(|n| n.host.parse::<std::net::IpAddr>().is_ok()) {
                    return (slot, ClusterRuntime { upstream, refresher: None });
                }
                let mut r = Refresher::new(dns, upstream.clone(), names);
                let wait = tokio::time::timeout(FIRST_RESOLUTION_TIMEOUT, r.refresh()).await.unwrap_or(Duration::ZERO);
                (slot, ClusterRuntime { upstream, refresher: Some(tokio::spawn(r.run(wait))) })
            });
        }
        let mut made: Vec<Option<Arc<ClusterRuntime>>> = indices.iter().map(|_| None).collect();
        while let Some(done) = set.join_next().await {
            match done {
                Ok((slot, runtime)) => made[slot] = Some(Arc::new(runtime)),
                Err(e) => tracing::error!(error = %e, "creating a cluster failed"),
            }
        }
        // A cluster whose creation task failed still serves: without DNS endpoints (503 UH).
        made.into_iter().zip(indices).map(|(m, &i)| m.unwrap_or_else(|| ClusterRuntime::fixed(&clusters[i]))).collect()
    }
}
