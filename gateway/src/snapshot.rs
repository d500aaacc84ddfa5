//! A snapshot: one compiled configuration with everything the data plane needs to serve it.

use std::path::PathBuf;
use std::sync::Arc;

use conf::RouteTable;
use tokio::task::JoinHandle;

use crate::cluster::registry::{ClusterRuntime, Registry};
use crate::cluster::Upstream;
use crate::tls::store::TlsStore;

/// One configuration generation: the routing table, its clusters (shared with other generations
/// when unchanged) and its TLS material.
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
    /// The security policies, built from `table.security`.
    pub policies: Arc<policy::Chain>,
    /// Chains of route tables to which GatewayPolicies add checks (the workload's checks and
    /// theirs), indexed like `table.route_configs`.
    pub route_chains: Vec<Option<Arc<policy::Chain>>>,
    /// The routes' rate limiters, indexed like `table.rate_limits` (buckets start full with
    /// every configuration).
    pub limiters: Vec<Arc<policy::ratelimit::Limiter>>,
    /// The routes' cache zones, indexed like `table.caches` (kept across reloads by name).
    pub caches: Vec<&'static crate::cache::Zone>,
    /// The lock coalescing concurrent misses of one key (`None`: no cache zones).
    pub cache_lock: Option<&'static pingora::cache::lock::CacheKeyLockImpl>,
    /// Keeps this snapshot's clusters (and their DNS refreshers) alive.
    _clusters: Vec<Arc<ClusterRuntime>>,
    /// The rotation watcher, stopped when the snapshot is dropped.
    tasks: Vec<JoinHandle<()>>,
}

impl Snapshot {
    /// The run-time form of `table`: clusters from `registry` (reused when unchanged, new ones
    /// resolved once, bounded in time), TLS material read (a credential missing at compile time is
    /// looked up again in `credentials_dir`) and watched for rotation. Runs on the data runtime.
    /// `Err` when a policy cannot be built: the configuration is refused, never served without it.
    /// Remote JWT key sets start with the keys `previous` holds for the same URI.
    pub async fn build(
        table: RouteTable,
        generation: u64,
        credentials_dir: Option<PathBuf>,
        registry: &Registry,
        previous: Option<&Snapshot>,
    ) -> Result<Self, policy::BuildError> {
        let policies = Arc::new(policy::Chain::build(&table.security)?);
        let route_chains = route_chains(&table)?;
        let old_sets: Vec<_> = previous.map(|p| p.all_chains().flat_map(key_sets).collect()).unwrap_or_default();
        for set in std::iter::once(&policies).chain(route_chains.iter().flatten()).flat_map(key_sets) {
            old_sets.iter().filter(|o| o.uri == set.uri).for_each(|o| set.adopt(o));
        }
        let clusters = registry.clusters(&table.clusters).await;
        let mut snap = Self::assemble(table, generation, credentials_dir, clusters);
        snap.policies = policies;
        snap.route_chains = route_chains;
        snap.caches = registry.caches.resolve(&snap.table.caches);
        snap.cache_lock = Some(registry.caches.lock());
        if !snap.tls.is_empty() {
            snap.tasks.push(crate::tls::watch::spawn(snap.tls.clone()));
        }
        let fetchers: Vec<JoinHandle<()>> = snap.all_chains().flat_map(|c| crate::jwks::spawn_fetchers(c)).collect();
        snap.tasks.extend(fetchers);
        Ok(snap)
    }

    /// Every policy chain: the workload's, then the route tables' own.
    fn all_chains(&self) -> impl Iterator<Item = &Arc<policy::Chain>> {
        std::iter::once(&self.policies).chain(self.route_chains.iter().flatten())
    }

    /// The chain for requests on route table `rc`: its own when GatewayPolicies add checks to it,
    /// else the workload's.
    pub fn chain_for(&self, rc: Option<usize>) -> &Arc<policy::Chain> {
        rc.and_then(|i| self.route_chains.get(i)).and_then(Option::as_ref).unwrap_or(&self.policies)
    }

    /// A snapshot from clusters already made, without background tasks and without policies
    /// (tests, tools).
    pub fn assemble(
        table: RouteTable,
        generation: u64,
        credentials_dir: Option<PathBuf>,
        clusters: Vec<Arc<ClusterRuntime>>,
    ) -> Self {
        let upstreams = clusters.iter().map(|c| c.upstream.clone()).collect();
        let tls = Arc::new(TlsStore::new(&table, credentials_dir));
        let server_fingerprints = table.servers.iter().map(crate::conn::fingerprint).collect();
        let limiters = table.rate_limits.iter().map(|r| Arc::new(policy::ratelimit::Limiter::new(r.clone()))).collect();
        Snapshot {
            generation,
            table,
            upstreams,
            tls,
            server_fingerprints,
            policies: Arc::new(policy::Chain::default()),
            limiters,
            caches: Vec::new(),
            cache_lock: None,
            route_chains: Vec::new(),
            _clusters: clusters,
            tasks: Vec::new(),
        }
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The remote key sets of a chain.
fn key_sets(chain: &Arc<policy::Chain>) -> Vec<Arc<policy::jwt::RemoteJwks>> {
    chain.authenticator().map(|a| a.remote_key_sets()).unwrap_or_default()
}

/// A chain per route table that GatewayPolicies add checks to: the workload's policies and
/// theirs together.
fn route_chains(table: &RouteTable) -> Result<Vec<Option<Arc<policy::Chain>>>, policy::BuildError> {
    table
        .route_configs
        .iter()
        .enumerate()
        .map(|(id, rc)| {
            if rc.security.is_empty() {
                return Ok(None);
            }
            policy::Chain::build(&table.security_for(Some(id))).map(|c| Some(Arc::new(c)))
        })
        .collect()
}
