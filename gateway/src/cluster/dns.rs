//! Background DNS for ServiceEntry `resolution: DNS` / `DNS_ROUND_ROBIN` clusters (hickory-resolver).
//!
//! Names are resolved off the request path: once before the gateway reports ready (bounded), then
//! again when the answer's TTL runs out. A lookup that fails (a timeout, a server failure) keeps the
//! last good addresses and is retried sooner than the TTL; an answer that the name has no address
//! (NXDOMAIN, or no A/AAAA record) removes them, and requests get 503 UH until it resolves again.
//! That is Envoy's `STRICT_DNS` behaviour (with its default `dns_nodata_noname_is_success`): an
//! external host that is gone is not reached at an old address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use conf::raw::Resolution;
use conf::table::Cluster;
use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RecordType;
use hickory_resolver::TokioResolver;

use crate::cluster::{Endpoint, Upstream};

/// Shortest and longest time between two lookups of a name.
const MIN_REFRESH: Duration = Duration::from_secs(1);
const MAX_REFRESH: Duration = Duration::from_secs(3600);
/// Retry delay after a failed lookup.
const FAILURE_RETRY: Duration = Duration::from_secs(5);

/// A resolver: the system's (`/etc/resolv.conf`), or one name server (`--dns-server`).
pub struct Dns {
    resolver: TokioResolver,
}

impl Dns {
    /// Builds the resolver; `server` replaces the system configuration.
    pub fn new(server: Option<SocketAddr>) -> Result<Arc<Self>, String> {
        let builder = match server {
            Some(addr) => {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                ns.connections.iter_mut().for_each(|c| c.port = addr.port());
                let mut config = ResolverConfig::default();
                config.add_name_server(ns);
                TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            }
            None => match TokioResolver::builder_tokio() {
                Ok(builder) => builder,
                // A host or container without /etc/resolv.conf still serves everything but DNS
                // ServiceEntries (whose clusters answer 503 UH until a lookup succeeds).
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the system DNS configuration; DNS ServiceEntries will not resolve");
                    return Self::without_servers();
                }
            },
        };
        Self::build(builder)
    }

    /// A resolver with no name server: every lookup fails (the last addresses are kept).
    pub fn without_servers() -> Result<Arc<Self>, String> {
        Self::build(TokioResolver::builder_with_config(ResolverConfig::default(), TokioRuntimeProvider::default()))
    }

    fn build(mut builder: hickory_resolver::ResolverBuilder<TokioRuntimeProvider>) -> Result<Arc<Self>, String> {
        let opts = builder.options_mut();
        opts.ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
        opts.timeout = Duration::from_secs(2);
        let resolver = builder.build().map_err(|e| format!("cannot build the DNS resolver: {e}"))?;
        Ok(Arc::new(Dns { resolver }))
    }

    /// The addresses of `name` (none: the name has none) and until when they are valid.
    async fn lookup(&self, name: &str) -> Result<(Vec<IpAddr>, Instant), String> {
        // A trailing dot makes the name absolute: no search-domain queries.
        let fqdn = if name.ends_with('.') { name.to_string() } else { format!("{name}.") };
        match self.resolver.lookup_ip(fqdn.as_str()).await {
            Ok(answer) if answer.iter().next().is_some() => Ok((answer.iter().collect(), answer.valid_until())),
            Ok(_) => self.confirm_no_address(&fqdn).await,
            Err(e) if says_no_address(&e) => self.confirm_no_address(&fqdn).await,
            Err(e) => Err(e.to_string()),
        }
    }

    /// Asks for `fqdn`'s A records again on their own: hickory answers an IPv4-then-IPv6 lookup
    /// whose A query failed (a timeout, SERVFAIL) with the AAAA query's answer, and an empty one
    /// there must not remove addresses the failed A query would have kept.
    async fn confirm_no_address(&self, fqdn: &str) -> Result<(Vec<IpAddr>, Instant), String> {
        match self.resolver.lookup(fqdn, RecordType::A).await {
            Ok(answer) => {
                let ips: Vec<IpAddr> = answer.answers().iter().filter_map(|r| r.data.ip_addr()).collect();
                let until = if ips.is_empty() { Instant::now() + FAILURE_RETRY } else { answer.valid_until() };
                Ok((ips, until))
            }
            Err(e) if says_no_address(&e) => Ok((Vec::new(), Instant::now() + FAILURE_RETRY)),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// True when the server answered that the name has no address: NXDOMAIN, or NOERROR without an
/// A/AAAA record. Hickory also reports a SERVFAIL or REFUSED answer as "no records", which says
/// nothing about the name.
fn says_no_address(e: &NetError) -> bool {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(none)) => {
            matches!(none.response_code, ResponseCode::NXDomain | ResponseCode::NoError)
        }
        _ => false,
    }
}

/// One endpoint of a cluster to resolve: a host name (or an IP address) and what each of its
/// addresses becomes.
#[derive(Debug, Clone)]
pub struct Name {
    /// The host name, or an IP address.
    pub host: String,
    /// The endpoint port.
    pub port: u16,
    /// The load-balancing weight of each address.
    pub weight: u32,
    /// A mesh workload (automatic mTLS).
    pub istio_mtls: bool,
}

/// The names a cluster resolves.
pub fn names(cluster: &Cluster) -> Vec<Name> {
    match &cluster.service {
        Ok(s) if matches!(s.resolution, Resolution::Dns | Resolution::DnsRoundRobin) => s
            .endpoints
            .iter()
            .map(|e| Name { host: e.address.clone(), port: e.port, weight: e.weight, istio_mtls: e.istio_mtls })
            .collect(),
        _ => Vec::new(),
    }
}

/// Keeps one cluster's endpoints up to date.
pub struct Refresher {
    dns: Arc<Dns>,
    upstream: Arc<Upstream>,
    names: Vec<Name>,
    last_good: HashMap<String, Vec<IpAddr>>,
}

impl Refresher {
    /// A refresher for `upstream` (nothing is resolved until [`Refresher::refresh`]).
    pub fn new(dns: Arc<Dns>, upstream: Arc<Upstream>, names: Vec<Name>) -> Self {
        Refresher { dns, upstream, names, last_good: HashMap::new() }
    }

    /// Resolves every name once, stores the endpoints, and returns when to look again.
    pub async fn refresh(&mut self) -> Duration {
        let mut next = MAX_REFRESH;
        for Name { host: name, .. } in &self.names {
            if name.parse::<IpAddr>().is_ok() {
                continue;
            }
            match self.dns.lookup(name).await {
                Ok((ips, valid_until)) => {
                    if ips.is_empty() && self.last_good.get(name).is_none_or(|before| !before.is_empty()) {
                        tracing::warn!(cluster = %self.upstream.name, host = %name, "DNS: the name has no address; its endpoints are removed (503 UH until it resolves)");
                    }
                    let wait = if ips.is_empty() {
                        FAILURE_RETRY
                    } else {
                        valid_until.saturating_duration_since(Instant::now())
                    };
                    self.last_good.insert(name.clone(), ips);
                    next = next.min(wait);
                    // Store as we go: a bounded first refresh keeps what it resolved in time.
                    self.store();
                }
                Err(e) => {
                    tracing::warn!(cluster = %self.upstream.name, host = %name, error = %e, "DNS lookup failed; keeping the last addresses");
                    next = next.min(FAILURE_RETRY);
                }
            }
        }
        self.store();
        next.clamp(MIN_REFRESH, MAX_REFRESH)
    }

    fn store(&self) {
        let round_robin = self.upstream.resolution == Resolution::DnsRoundRobin;
        let mut endpoints = Vec::new();
        for n in &self.names {
            let ips = match n.host.parse::<IpAddr>() {
                Ok(ip) => vec![ip],
                Err(_) => self.last_good.get(&n.host).cloned().unwrap_or_default(),
            };
            // Istio DNS_ROUND_ROBIN (Envoy LOGICAL_DNS) uses the first address only.
            let take = if round_robin { 1 } else { ips.len() };
            endpoints.extend(
                ips.into_iter().take(take).map(|ip| Endpoint::of(SocketAddr::new(ip, n.port), n.weight, n.istio_mtls)),
            );
        }
        // An address that stays keeps its endpoint: requests in flight, outlier streaks and
        // ejections carry over a refresh.
        let current = self.upstream.endpoints.load();
        let endpoints: Vec<Arc<Endpoint>> = endpoints
            .into_iter()
            .map(|fresh| {
                current
                    .iter()
                    .find(|e| e.addr == fresh.addr && e.weight == fresh.weight && e.istio_mtls == fresh.istio_mtls)
                    .cloned()
                    .unwrap_or(fresh)
            })
            .collect();
        self.upstream.endpoints.store(Arc::new(endpoints));
    }

    /// Refreshes forever (the task is aborted when its snapshot is dropped).
    pub async fn run(mut self, first_wait: Duration) {
        let mut wait = first_wait;
        loop {
            tokio::time::sleep(wait).await;
            wait = self.refresh().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_resolver_without_servers_fails_lookups_instead_of_failing_start_up() {
        let dns = Dns::without_servers().unwrap();
        assert!(dns.lookup("example.com").await.is_err());
    }

    #[tokio::test]
    async fn an_address_that_stays_keeps_its_endpoint_across_a_refresh() {
        let yaml = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec:\n  selector: {istio: ingressgateway}\n  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\nspec:\n  hosts: [a.internal]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec:\n  hosts: ['*']\n  gateways: [g]\n  http: [{route: [{destination: {host: a.internal}}]}]\n";
        let built = conf::build_str("c.yaml", yaml, &conf::Selection::default());
        let cluster =
            built.table.clusters.first().cloned().unwrap_or_else(|| panic!("a cluster: {}", built.diagnostics));
        let upstream = Arc::new(Upstream::new(&cluster));
        let name = |host: &str| Name { host: host.to_string(), port: 80, weight: 1, istio_mtls: false };
        let names = vec![name("10.0.0.1"), name("10.0.0.2")];
        let refresher = Refresher::new(Dns::without_servers().unwrap(), upstream.clone(), names);
        refresher.store();
        let first = upstream.endpoints.load()[0].clone();
        refresher.store();
        assert!(Arc::ptr_eq(&first, &upstream.endpoints.load()[0]), "the same endpoint, with its state");
    }
}
