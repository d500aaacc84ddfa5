//! Compilation: the validated configuration → the [`RouteTable`] this workload serves.
//!
//! Pure and deterministic. Steps, in Istio's order (Istio's `pilot/pkg/networking/core` gateway builder):
//! select Gateways by `selector` ⊆ labels; merge servers per (port, bind) in creation order;
//! build one route table per plaintext port and per terminating HTTPS server from the bound
//! VirtualServices (host intersection, routes in declaration order, catch-alls last); resolve
//! clusters `(host, subset, port)` against ServiceEntries, WorkloadEntries and DestinationRules.

mod applicability;
pub mod auto_mtls;
mod clusters;
pub mod credentials;
mod delegate;
mod extras;
pub(crate) mod gateway_api;
pub use gateway_api::GATEWAY_NAME_LABEL;
mod gateway_policy;
mod http;
mod kubernetes;
mod l4;
mod route;
mod security;
mod select;
mod servers;

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::config::Config;
use crate::diagnostic::Diagnostics;
use crate::table::RouteTable;
use crate::validate::Regexes;

/// Who this workload is: what selects Gateways and resolves names.
#[derive(Debug, Clone)]
pub struct Selection {
    /// This workload's labels (`--labels`).
    pub labels: BTreeMap<String, String>,
    /// This workload's namespace (`--namespace`).
    pub namespace: String,
    /// Where `credentialName` entries are looked up when no Secret defines them.
    pub credentials_dir: Option<PathBuf>,
    /// The DNS suffix short names expand with (`cluster.local`).
    pub domain: String,
    /// Istio's root namespace (mesh-wide policies and DestinationRules).
    pub root_namespace: String,
    /// Proxies in front of this gateway trusted to append to `X-Forwarded-For` (MeshConfig
    /// `defaultConfig.gatewayTopology.numTrustedProxies`).
    pub num_trusted_proxies: u32,
    /// MeshConfig `defaultConfig.gatewayTopology.proxyProtocol`: connections carry a PROXY
    /// protocol header.
    pub proxy_protocol: bool,
    /// MeshConfig `extensionProviders` (the authorizers of `CUSTOM` policies).
    pub extension_providers: Vec<crate::mesh::ExtensionProvider>,
    /// MeshConfig `defaultHttpRetryPolicy`: the retries of routes without their own (`None`:
    /// Istio's built-in default).
    pub default_http_retry_policy: Option<crate::raw::HttpRetry>,
    /// MeshConfig `pathNormalization.normalization`.
    pub path_normalization: crate::table::PathNormalization,
    /// MeshConfig `connectTimeout`: the connect timeout of clusters whose DestinationRule sets none.
    pub connect_timeout: Option<String>,
    /// MeshConfig `defaultConfig.gatewayTopology.forwardClientCertDetails`.
    pub forward_client_cert: crate::table::ForwardClientCert,
    /// `--identity-dir`: the mesh workload identity, Istio's file-mounted layout
    /// (`cert-chain.pem`, `key.pem`, `root-cert.pem`); `None`: no identity, and `ISTIO_MUTUAL`
    /// is refused.
    pub identity_dir: Option<PathBuf>,
    /// MeshConfig `trustDomain` (default `cluster.local`): the SPIFFE trust domain mesh
    /// upstreams must be in.
    pub trust_domain: String,
    /// MeshConfig `trustDomainAliases`: other trust domains accepted as this one.
    pub trust_domain_aliases: Vec<String>,
    /// MeshConfig `enableAutoMtls` (default true): Istio's automatic mutual TLS to mesh workloads
    /// whose DestinationRule sets no `tls`.
    pub auto_mtls: bool,
    /// `--gateway-class`: the Gateway API class this workload serves (default: Istio's, `istio` or
    /// any GatewayClass with controller `istio.io/gateway-controller`).
    pub gateway_class: Option<String>,
}

impl Default for Selection {
    fn default() -> Self {
        Selection {
            labels: BTreeMap::from([("istio".to_string(), "ingressgateway".to_string())]),
            namespace: "default".into(),
            credentials_dir: None,
            domain: "cluster.local".into(),
            root_namespace: "istio-system".into(),
            num_trusted_proxies: 0,
            proxy_protocol: false,
            extension_providers: Vec::new(),
            default_http_retry_policy: None,
            path_normalization: crate::table::PathNormalization::default(),
            connect_timeout: None,
            forward_client_cert: crate::table::ForwardClientCert::default(),
            identity_dir: None,
            trust_domain: "cluster.local".into(),
            trust_domain_aliases: Vec::new(),
            auto_mtls: true,
            gateway_class: None,
        }
    }
}

impl Selection {
    /// `k=v,k=v` as written on the command line.
    pub fn labels_text(&self) -> String {
        self.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
    }
}

/// Compiles `config` for the workload described by `sel`. Problems that only show for this
/// workload (server conflicts, unknown destinations, missing credentials) go to `out`.
pub fn compile(config: &Config, sel: &Selection, regexes: &mut Regexes, out: &mut Diagnostics) -> RouteTable {
    applicability::check(config, sel, out);
    let selected = select::gateways(config, sel, out);
    let kube_services = kubernetes::service_entries(config, sel, out);
    let mut registry = clusters::Registry::new(config, sel, &kube_services, out);
    let mut table = RouteTable { gateways: selected.iter().map(|g| g.key.clone()).collect(), ..RouteTable::default() };
    let plan = servers::plan(&selected, config, sel, out);
    let bound = select::BoundServices::new(config, sel, out);
    let mut ctx = Ctx { config, sel, regexes, registry: &mut registry, bound: &bound, out };
    table.listeners = http::listeners(&plan, &mut table.route_configs, &mut ctx);
    table.servers = plan.servers;
    table.security = security::bind(config, sel, &mut registry, out);
    gateway_policy::bind(config, sel, &mut table, out);
    table.clusters = registry.into_clusters();
    gateway_policy::bind_upstream(config, sel, &mut table.clusters, out);
    table.port_translation = kubernetes::port_translation(config, sel, out);
    table.num_trusted_proxies = sel.num_trusted_proxies;
    table.proxy_protocol = sel.proxy_protocol;
    table.path_normalization = sel.path_normalization;
    table.forward_client_cert = sel.forward_client_cert;
    table
}

/// What the compile steps share.
pub(crate) struct Ctx<'a, 'c> {
    pub config: &'c Config,
    pub sel: &'c Selection,
    pub regexes: &'a mut Regexes,
    pub registry: &'a mut clusters::Registry<'c>,
    pub bound: &'a select::BoundServices<'c>,
    pub out: &'a mut Diagnostics,
}
