//! The compiled routing table: immutable, shared by every request of one configuration generation.
//!
//! Parts refer to each other by index ([`ServerId`], [`RouteConfigId`], [`ClusterId`]), never by
//! name lookups at request time. `pylon routes` prints this table (text or JSON).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Serialize;

use crate::matcher::{Re2, RouteMatch, StringMatcher, VirtualHostIndex};
use crate::model::{Duration, Protocol};
use crate::raw;

/// Index into [`RouteTable::servers`].
pub type ServerId = usize;
/// Index into [`RouteTable::route_configs`].
pub type RouteConfigId = usize;
/// Index into [`RouteTable::clusters`].
pub type ClusterId = usize;

/// Everything a gateway workload needs to serve one configuration.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RouteTable {
    /// The Gateways that select this workload (`namespace/name`), in Istio's order.
    pub gateways: Vec<String>,
    /// Every server of those gateways that is in use.
    pub servers: Vec<Server>,
    /// The bind plan: one listener per (bind address, port).
    pub listeners: Vec<Listener>,
    /// HTTP route tables (`http.<port>` shared by plaintext servers, one per HTTPS server).
    pub route_configs: Vec<RouteConfig>,
    /// Upstream clusters `(host, subset, port)`.
    pub clusters: Vec<Cluster>,
    /// The security policies that apply to this workload, in Istio's order.
    pub security: Security,
    /// Local rate limits, referred to by routes.
    pub rate_limits: Vec<RateLimitRule>,
    /// `GatewayPolicy` header settings, referred to by routes.
    pub header_policies: Vec<HeaderPolicyRule>,
    /// `GatewayPolicy` caches, referred to by routes.
    pub caches: Vec<CacheRule>,
    /// Gateway server port → the port this workload listens on, from its own Kubernetes Service
    /// (`port` → `targetPort`), as Istio's gateway listeners translate; `--port-map` wins.
    pub port_translation: BTreeMap<u16, u16>,
    /// Proxies in front of this gateway trusted to append to `X-Forwarded-For`: the client
    /// address (`remote.ip`) is the one this many entries from the right.
    pub num_trusted_proxies: u32,
    /// Every connection starts with a PROXY protocol header giving the client's address
    /// (MeshConfig `gatewayTopology.proxyProtocol`); one without is closed.
    pub proxy_protocol: bool,
    /// How request paths are normalized before routing (MeshConfig `pathNormalization`).
    pub path_normalization: PathNormalization,
    /// What happens to `x-forwarded-client-cert` (MeshConfig
    /// `gatewayTopology.forwardClientCertDetails`).
    pub forward_client_cert: ForwardClientCert,
    /// The Gateway API status this workload's resources would have (no API server to write it
    /// to): its Gateway's listeners and the routes attached to it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gateway_api: Vec<ApiStatus>,
}

/// MeshConfig `pathNormalization.normalization`
/// (<https://istio.io/latest/docs/reference/config/istio.mesh.v1alpha1/#MeshConfig-ProxyPathNormalization-NormalizationType>).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum PathNormalization {
    /// Paths as sent.
    None,
    /// RFC 3986 normalization, unreserved escapes decoded (Istio's default).
    #[default]
    Base,
    /// `BASE`, then `//` merged into `/`.
    MergeSlashes,
    /// `MERGE_SLASHES`, after decoding `%2F` and `%5C` (as `/` and `\`, then `/`).
    DecodeAndMergeSlashes,
}

/// MeshConfig `gatewayTopology.forwardClientCertDetails` (Envoy's `forward_client_cert_details`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum ForwardClientCert {
    /// The client's header is removed and not replaced.
    Sanitize,
    /// The client's header is passed on as it is, on mutual-TLS connections (removed otherwise).
    ForwardOnly,
    /// The client's header is always passed on as it is.
    AlwaysForwardOnly,
    /// The gateway's element is appended to the client's header, on mutual-TLS connections
    /// (removed otherwise).
    AppendForward,
    /// The client's header is replaced by the gateway's (Istio's default at gateways).
    #[default]
    SanitizeSet,
}

/// `RequestAuthentication` and `AuthorizationPolicy` resources bound to this workload
/// (selector in its namespace, the root namespace, or a `targetRef` to its Gateway). They
/// apply to every request the workload serves, as Istio's do.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Security {
    /// `RequestAuthentication` resources.
    pub request_authentications: Vec<BoundPolicy<raw::RequestAuthentication>>,
    /// `AuthorizationPolicy` resources.
    pub authorization_policies: Vec<BoundPolicy<raw::AuthorizationPolicy>>,
    /// The external authorizers `CUSTOM` policies name, resolved to clusters.
    pub ext_authz: Vec<ExtAuthz>,
}

/// An HTTP external authorizer (MeshConfig `extensionProviders[].envoyExtAuthzHttp`).
#[derive(Debug, Clone, Serialize)]
pub struct ExtAuthz {
    /// The provider name `CUSTOM` policies use.
    pub name: String,
    /// The cluster of `service:port`.
    pub cluster: ClusterId,
    /// How long a check may take.
    pub timeout: std::time::Duration,
    /// The provider's settings as written.
    pub provider: crate::mesh::ExtAuthzHttp,
}

impl Security {
    /// True when no policy applies.
    pub fn is_empty(&self) -> bool {
        self.request_authentications.is_empty() && self.authorization_policies.is_empty()
    }
}

/// A validated policy resource that applies to this workload.
#[derive(Debug, Clone, Serialize)]
pub struct BoundPolicy<T> {
    /// `namespace/name`.
    pub name: String,
    /// Why it applies: `selector`, `root namespace`, `targetRef` or `namespace`.
    pub bound_by: &'static str,
    /// `istio.io/dry-run: "true"`: evaluated and logged, never enforced.
    pub dry_run: bool,
    /// The spec as validated.
    pub spec: T,
}

/// The conditions of one Gateway API resource (or of one of its listeners or parents), as the
/// Gateway API defines them and Istio's controller sets them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiStatus {
    /// `Gateway`, `HTTPRoute`, ...
    pub kind: String,
    /// `namespace/name`.
    pub name: String,
    /// The listener (for a Gateway) or the parent reference (for a route) the conditions are
    /// about; empty for the resource itself.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scope: String,
    /// The conditions, by type.
    pub conditions: Vec<Condition>,
    /// For a listener: the routes attached to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attached_routes: Option<usize>,
}

/// One Gateway API condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Condition {
    /// `Accepted`, `ResolvedRefs`, `Programmed`, ...
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The condition holds.
    pub status: bool,
    /// The reason (`Accepted`, `NotAllowedByListeners`, `RefNotPermitted`, ...).
    pub reason: String,
    /// Istio's message.
    pub message: String,
}

/// One Gateway server, with its TLS settings resolved.
#[derive(Debug, Clone, Serialize)]
pub struct Server {
    /// The owning Gateway, `namespace/name`.
    pub gateway: String,
    /// Position in the Gateway's `spec.servers`.
    pub index: usize,
    /// `port.number`: what routing, redirects and `match.port` see.
    pub port: u16,
    /// `port.name`.
    pub port_name: String,
    /// `port.protocol`.
    pub protocol: Protocol,
    /// The address to bind; `None` = every address.
    pub bind: Option<IpAddr>,
    /// Hosts with namespaces resolved (`ns/host` entries keep their namespace).
    pub hosts: Vec<String>,
    /// `tls.httpsRedirect` on an HTTP server.
    pub https_redirect: bool,
    /// TLS handling, for HTTPS and TLS servers.
    pub tls: Option<ServerTls>,
}

/// How a server handles TLS.
#[derive(Debug, Clone, Serialize)]
pub struct ServerTls {
    /// The mode.
    pub mode: TlsMode,
    /// Certificates to present (empty for passthrough).
    pub certificates: Vec<Certificate>,
    /// CA bundle for client certificates (MUTUAL, OPTIONAL_MUTUAL).
    pub client_ca: Option<PemSource>,
    /// Certificate revocation list for client certificates (`caCrl`, or the credential's
    /// `ca.crl`).
    pub ca_crl: Option<PemSource>,
    /// Accepted client certificate SANs.
    pub subject_alt_names: Vec<String>,
    /// Accepted client certificate SPKI hashes.
    pub verify_certificate_spki: Vec<String>,
    /// Accepted client certificate hashes.
    pub verify_certificate_hash: Vec<String>,
    /// Minimum TLS version (TLS 1.2 when unset).
    pub min_version: raw::TlsProtocol,
    /// Maximum TLS version (TLS 1.3 when unset).
    pub max_version: raw::TlsProtocol,
    /// Allowed cipher suites (invalid and duplicate names dropped, as Istio does).
    pub cipher_suites: Vec<String>,
    /// Allowed ECDH curves.
    pub ecdh_curves: Vec<String>,
    /// Accept client certificates that fail verification.
    pub insecure_skip_verify: bool,
    /// `ISTIO_MUTUAL` without `subjectAltNames`: the client certificate must carry a SPIFFE
    /// identity (`spiffe://<domain>/...`) in one of these trust domains.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trust_domains: Vec<String>,
}

/// Server TLS modes Pylon implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TlsMode {
    /// Route by SNI without terminating.
    Passthrough,
    /// Terminate.
    Simple,
    /// Terminate and require a verified client certificate.
    Mutual,
    /// Terminate and verify a client certificate when one is presented.
    OptionalMutual,
    /// Terminate with the workload identity and require a client certificate from the mesh CA
    /// (`MUTUAL` with the files of `--identity-dir`).
    IstioMutual,
}

/// A certificate and key to present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Certificate {
    /// Where the certificate chain comes from.
    pub cert: PemSource,
    /// Where the private key comes from.
    pub key: PemSource,
    /// The credential this came from, if any (`credentialName`).
    pub credential: Option<String>,
}

/// Where PEM data comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "source")]
pub enum PemSource {
    /// A file (watched for rotation).
    File {
        /// The path.
        path: PathBuf,
    },
    /// Inline data from a Secret in the configuration.
    Secret {
        /// `namespace/name` of the Secret.
        secret: String,
        /// The key inside it (`tls.crt`).
        key: String,
        /// The PEM bytes (never printed).
        #[serde(skip)]
        pem: Vec<u8>,
    },
    /// A credential that could not be found: the server refuses handshakes until it appears.
    Missing {
        /// What was looked for.
        credential: String,
    },
}

/// One listening socket and what it serves.
#[derive(Debug, Clone, Serialize)]
pub struct Listener {
    /// Bind address; `None` = every address.
    pub bind: Option<IpAddr>,
    /// The declared port (`--port-map` may listen elsewhere).
    pub port: u16,
    /// What the listener does with connections.
    pub kind: ListenerKind,
}

impl Listener {
    /// The chain a TLS connection with this ClientHello SNI is served by (Envoy filter-chain
    /// match: exact name, then the longest `*.suffix`, then a chain without names); `None` =
    /// refuse the handshake. `None` also for listeners that are not TLS.
    pub fn chain(&self, sni: Option<&str>) -> Option<(usize, &FilterChain)> {
        let ListenerKind::Tls { chains, index } = &self.kind else { return None };
        let name = sni.unwrap_or("").trim_end_matches('.').to_ascii_lowercase();
        let id = index.find(&name)?;
        chains.get(id).map(|c| (id, c))
    }
}

/// What a listener serves.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "lowercase", tag = "type")]
pub enum ListenerKind {
    /// Plaintext HTTP (HTTP/1.x and h2c) for the merged servers.
    Http {
        /// The servers merged onto this port.
        servers: Vec<ServerId>,
        /// Their shared route table.
        route_config: RouteConfigId,
    },
    /// TLS: the ClientHello's SNI selects a filter chain.
    Tls {
        /// Chains in server order.
        chains: Vec<FilterChain>,
        /// SNI lookup over `chains` (exact > longest wildcard > any).
        #[serde(skip)]
        index: VirtualHostIndex,
    },
    /// Opaque TCP proxying.
    Tcp {
        /// The server.
        server: ServerId,
        /// Where connections go.
        route: TcpRoute,
    },
}

/// One SNI-selected chain of a TLS listener.
#[derive(Debug, Clone, Serialize)]
pub struct FilterChain {
    /// The server.
    pub server: ServerId,
    /// SNI names (exact or `*.suffix`); empty = any SNI, including none.
    pub sni: Vec<String>,
    /// What follows the handshake.
    pub action: ChainAction,
}

/// What a TLS chain does.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "lowercase", tag = "type")]
pub enum ChainAction {
    /// Terminate, then route HTTP with the server's own route table.
    Http {
        /// The route table.
        route_config: RouteConfigId,
    },
    /// Terminate, then proxy TCP.
    Tcp {
        /// Where connections go.
        route: TcpRoute,
    },
    /// Do not terminate: proxy the bytes.
    Passthrough {
        /// Where connections go.
        route: TcpRoute,
    },
}

/// A TCP or TLS route: weighted destinations and where the rule came from.
#[derive(Debug, Clone, Serialize)]
pub struct TcpRoute {
    /// `namespace/name` of the VirtualService, and the rule index (`tcp[0]`, `tls[1]`).
    pub origin: String,
    /// Weighted clusters.
    pub destinations: Vec<WeightedCluster>,
}

/// One HTTP route table.
#[derive(Debug, Clone, Serialize)]
pub struct RouteConfig {
    /// Istio's name: `http.80`, `https.443.https.gw.ns`.
    pub name: String,
    /// The servers that use it.
    pub servers: Vec<ServerId>,
    /// Virtual hosts, sorted by name.
    pub virtual_hosts: Vec<VirtualHost>,
    /// Host lookup (exact > longest wildcard > `*`).
    #[serde(skip)]
    pub index: VirtualHostIndex,
    /// How the client address is found for requests on these servers (`GatewayPolicy`
    /// `clientAddress`); `None`: MeshConfig's `numTrustedProxies`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_address: Option<ClientAddressRule>,
    /// Security checks `GatewayPolicy`s add for these servers, besides [`RouteTable::security`].
    #[serde(skip_serializing_if = "Security::is_empty")]
    pub security: Security,
}

/// A `GatewayPolicy` `clientAddress` module, resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClientAddressRule {
    /// The `GatewayPolicy`, `namespace/name`.
    pub policy: String,
    /// Trusted hops (`numTrustedProxies`).
    pub num_trusted_proxies: u32,
    /// Trusted proxy addresses (`trustedCidrs`); when set, they decide instead of the count.
    pub trusted_cidrs: Vec<ipnet::IpNet>,
}

impl RouteConfig {
    /// The virtual host for a request's authority (port ignored, case-insensitive); `None` = 404 NR.
    pub fn virtual_host(&self, authority: &str) -> Option<&VirtualHost> {
        self.virtual_hosts.get(self.virtual_host_index(authority)?)
    }

    /// The index of [`RouteConfig::virtual_host`].
    pub fn virtual_host_index(&self, authority: &str) -> Option<usize> {
        self.index.find(&crate::matcher::authority_host(authority))
    }
}

/// One virtual host: a domain and its ordered routes.
#[derive(Debug, Clone, Serialize)]
pub struct VirtualHost {
    /// The domain (lower-case; `*`, `*.suffix` or exact).
    pub name: String,
    /// `httpsRedirect`: plaintext requests get a 301 to https before any route is consulted.
    pub require_tls: bool,
    /// Routes, first match wins.
    pub routes: Vec<Route>,
}

impl VirtualHost {
    /// The first route whose match holds (Istio: first matching route wins).
    pub fn route(&self, req: &crate::matcher::Request<'_>) -> Option<&Route> {
        self.routes.iter().find(|r| r.matcher.matches(req))
    }
}

/// One route: a match and what to do.
#[derive(Debug, Clone, Serialize)]
pub struct Route {
    /// Istio's route name (`rule` or `rule.match`); may be empty.
    pub name: String,
    /// Where it came from: `namespace/name http[i] match[j]`.
    pub origin: String,
    /// The conditions.
    pub matcher: RouteMatch,
    /// The action.
    pub action: RouteAction,
    /// Header operations of the rule.
    #[serde(skip_serializing_if = "HeaderOps::is_empty")]
    pub headers: HeaderOps,
    /// A Gateway API route (Istio's gateway route semantics): a destination that is not found
    /// answers 500, as the Gateway API requires, instead of 503.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub gateway_api: bool,
    /// `rewrite` (this and the other rarely set actions are boxed: a route table holds 100,000
    /// routes in a large configuration, each paying for every field inline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Box<Rewrite>>,
    /// `timeout` (none = no timeout, Istio's default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// `retries` (none = Istio's default policy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<Box<RetryPolicy>>,
    /// `fault`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<Box<Fault>>,
    /// `mirror` / `mirrors`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<Mirror>,
    /// `corsPolicy`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<Box<Cors>>,
    /// The VirtualService that declares the rule (`namespace/name`), for `GatewayPolicy` targets.
    #[serde(skip)]
    pub virtual_service: String,
    /// The rule's own `name` (without a match name), for `GatewayPolicy` `sectionName`.
    #[serde(skip)]
    pub rule_name: String,
    /// The local rate limit of this route: an index into [`RouteTable::rate_limits`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<usize>,
    /// The `GatewayPolicy` header settings of this route: an index into
    /// [`RouteTable::header_policies`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_policy: Option<usize>,
    /// The cache of this route: an index into [`RouteTable::caches`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<usize>,
}

/// A `GatewayPolicy` `cache` module, resolved: one store per policy, shared by the routes it
/// reaches.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheRule {
    /// The `GatewayPolicy`, `namespace/name` (also the store's name).
    pub policy: String,
    /// How it was bound (`route`, `server`, `gateway`, `workload`), where it was first bound.
    pub level: &'static str,
    /// The most bytes stored.
    pub max_bytes: u64,
    /// The largest body stored.
    pub max_entry_bytes: u64,
    /// Freshness of responses that carry none, in seconds; `None`: they are not stored.
    pub default_ttl_secs: Option<u32>,
    /// `stale-while-revalidate` when the response does not say, in seconds.
    pub stale_while_revalidate_secs: u32,
    /// `stale-if-error` when the response does not say, in seconds.
    pub stale_if_error_secs: u32,
    /// Request headers a stored response may vary on (lower case).
    pub vary: Vec<String>,
    /// Request headers in the key (lower case).
    pub key_headers: Vec<String>,
    /// Add `x-cache` to responses.
    pub status_header: bool,
    /// How long a request waits for another one fetching the same response, in milliseconds.
    pub lock_timeout_ms: u64,
}

impl CacheRule {
    /// `maxSize` when unset: 64 MiB.
    pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;
    /// `maxEntrySize` when unset: 1 MiB.
    pub const DEFAULT_MAX_ENTRY_BYTES: u64 = 1 << 20;
    /// `lockTimeout` when unset: 5 s.
    pub const DEFAULT_LOCK_TIMEOUT_MS: u64 = 5_000;
}

/// A `GatewayPolicy` `headers` module, resolved.
#[derive(Debug, Clone, Serialize)]
pub struct HeaderPolicyRule {
    /// The `GatewayPolicy`, `namespace/name`.
    pub policy: String,
    /// How it was bound (`route`, `server`, `gateway`, `workload`).
    pub level: &'static str,
    /// `x-forwarded-for` is the client address alone.
    pub replace_forwarded_for: bool,
    /// Append an RFC 7239 `Forwarded` element.
    pub forwarded: bool,
    /// Always a new `x-request-id`.
    pub generate_request_id: bool,
    /// Response headers set (lower-case names).
    pub response_set: Vec<(String, String)>,
    /// Response headers removed (lower-case names).
    pub response_remove: Vec<String>,
}

/// One route's local rate limit (a `GatewayPolicy` `rateLimit`), with its own buckets.
#[derive(Debug, Clone, Serialize)]
pub struct RateLimitRule {
    /// The `GatewayPolicy`, `namespace/name`.
    pub policy: String,
    /// How it was bound: `route`, `server`, `gateway` or `workload` (the most specific wins).
    pub level: &'static str,
    /// Tokens added per second.
    pub per_second: f64,
    /// The bucket size.
    pub burst: u32,
    /// What one bucket counts.
    pub key: RateLimitKey,
    /// The most host or client buckets kept.
    pub max_keys: usize,
    /// Add `x-ratelimit-*` response headers.
    pub response_headers: bool,
}

/// What one token bucket counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitKey {
    /// Every request of the route.
    Route,
    /// Requests per `Host`.
    Host,
    /// Requests per client address (after trusted proxies and the PROXY protocol).
    Client,
}

/// What a route does.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum RouteAction {
    /// Forward to one of these clusters, chosen by weight per request.
    Forward {
        /// Weighted clusters (weight-0 entries dropped when there are several).
        destinations: Vec<WeightedCluster>,
        /// The rule lists several destinations (Envoy weighted clusters): header operations of the
        /// rule then win over the destination's.
        weighted: bool,
    },
    /// Answer with a redirect.
    Redirect(Redirect),
    /// Answer locally.
    DirectResponse {
        /// Status code.
        status: u16,
        /// Body, if any.
        #[serde(skip_serializing_if = "Option::is_none", serialize_with = "lossy_text")]
        body: Option<Vec<u8>>,
    },
}

fn lossy_text<S: serde::Serializer>(body: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match body {
        Some(b) => s.serialize_str(&String::from_utf8_lossy(b)),
        None => s.serialize_none(),
    }
}

/// A destination with its weight.
#[derive(Debug, Clone, Serialize)]
pub struct WeightedCluster {
    /// The cluster.
    pub cluster: ClusterId,
    /// Its name, for display and metrics.
    pub name: String,
    /// Relative weight.
    pub weight: u32,
    /// Destination-level header operations (boxed: most destinations have none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<Box<HeaderOps>>,
}

/// Request and response header operations. `authority` is the host rewrite they carry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HeaderOps {
    /// Request headers to overwrite.
    pub request_set: Vec<(String, String)>,
    /// Request headers to append.
    pub request_add: Vec<(String, String)>,
    /// Request headers to remove.
    pub request_remove: Vec<String>,
    /// Response headers to overwrite.
    pub response_set: Vec<(String, String)>,
    /// Response headers to append.
    pub response_add: Vec<(String, String)>,
    /// Response headers to remove.
    pub response_remove: Vec<String>,
    /// Host rewrite from a `:authority` / `host` set or add.
    pub authority: Option<String>,
}

impl HeaderOps {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        *self == HeaderOps::default()
    }
}

/// Istio `HTTPRedirect`, resolved for the server port.
#[derive(Debug, Clone, Serialize)]
pub struct Redirect {
    /// 301, 302, 303, 307 or 308.
    pub code: u16,
    /// New scheme; `None` keeps the request's.
    pub scheme: Option<String>,
    /// New host; `None` keeps the request's.
    pub authority: Option<String>,
    /// New port (from `port`, or the server port for `FROM_REQUEST_PORT`); `None` keeps the
    /// request's. Istio drops 80 for http and 443 for https.
    pub port: Option<u16>,
    /// Replaces the whole path (the query is kept unless this has one).
    pub uri: Option<String>,
    /// Replaces the matched prefix.
    pub prefix_rewrite: Option<String>,
}

/// Istio `HTTPRewrite`.
#[derive(Debug, Clone, Serialize)]
pub struct Rewrite {
    /// Replaces the matched prefix (prefix matches) or the whole path.
    pub uri: Option<String>,
    /// Regex replacement of the path.
    pub uri_regex: Option<(Re2, String)>,
    /// New Host / `:authority`.
    pub authority: Option<String>,
}

/// Istio `HTTPRetry`.
#[derive(Debug, Clone, Serialize)]
pub struct RetryPolicy {
    /// Retries (not counting the first try); 0 disables.
    pub attempts: u32,
    /// Per-try timeout.
    pub per_try_timeout: Option<Duration>,
    /// Retry conditions (numeric codes are listed in `retriable_status_codes`).
    pub retry_on: Vec<String>,
    /// Status codes that are retried.
    pub retriable_status_codes: Vec<u16>,
    /// Base backoff (Envoy default 25ms).
    pub backoff: Option<Duration>,
    /// Retries prefer endpoints not tried yet (`retryIgnorePreviousHosts`, default true).
    pub ignore_previous_hosts: bool,
}

/// Istio `HTTPFaultInjection`.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    /// Delay and the share of requests delayed (percent).
    pub delay: Option<(Duration, f64)>,
    /// Abort and the share of requests aborted (percent).
    pub abort: Option<(FaultAbort, f64)>,
}

/// What an abort answers.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultAbort {
    /// An HTTP status.
    Http(u16),
    /// A gRPC status name.
    Grpc(String),
}

/// A mirror destination.
#[derive(Debug, Clone, Serialize)]
pub struct Mirror {
    /// The cluster.
    pub cluster: ClusterId,
    /// Its name.
    pub name: String,
    /// Share of requests mirrored (percent).
    pub percent: f64,
}

/// Istio `CorsPolicy`.
#[derive(Debug, Clone, Serialize)]
pub struct Cors {
    /// Allowed origins.
    pub allow_origins: Vec<StringMatcher>,
    /// Allowed methods.
    pub allow_methods: Vec<String>,
    /// Allowed headers.
    pub allow_headers: Vec<String>,
    /// Exposed headers.
    pub expose_headers: Vec<String>,
    /// Preflight cache time.
    pub max_age: Option<Duration>,
    /// Allow credentials.
    pub allow_credentials: Option<bool>,
    /// Forward preflights whose origin does not match (default true).
    pub forward_unmatched_preflights: bool,
}

/// An upstream cluster: `outbound|port|subset|host`.
#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    /// Istio's cluster name.
    pub name: String,
    /// Destination host.
    pub host: String,
    /// Subset name, if any.
    pub subset: Option<String>,
    /// Service port.
    pub port: u16,
    /// The service: found in the registry, or why not (requests get 503 NC).
    pub service: Result<Service, String>,
    /// Effective DestinationRule policy for this port and subset.
    pub policy: ClusterPolicy,
    /// Where connections to it are made from (GatewayPolicy `upstreamBind`); unset: the kernel
    /// chooses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceBind>,
}

/// The local address (and port range) a cluster's connections are made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceBind {
    /// The GatewayPolicy that says so, `namespace/name`.
    pub policy: String,
    /// The local address.
    pub address: std::net::IpAddr,
    /// The local ports, `(low, high)` inclusive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<(u16, u16)>,
}

impl SourceBind {
    /// `LOW-HIGH` with `1 <= LOW < HIGH` (what Linux's `IP_LOCAL_PORT_RANGE` takes).
    pub fn port_range(text: &str) -> Option<(u16, u16)> {
        let (low, high) = text.split_once('-')?;
        let (low, high) = (low.trim().parse::<u16>().ok()?, high.trim().parse::<u16>().ok()?);
        (low >= 1 && low < high).then_some((low, high))
    }
}

/// What the registry knows of a cluster's service.
#[derive(Debug, Clone, Serialize)]
pub struct Service {
    /// The ServiceEntry that defines it, `namespace/name`.
    pub defined_by: String,
    /// The port's protocol (decides HTTP/1.1 or HTTP/2 upstream).
    pub protocol: Option<Protocol>,
    /// How endpoints are found.
    pub resolution: raw::Resolution,
    /// The endpoints (after subset selection). Empty = 503 UH.
    pub endpoints: Vec<Endpoint>,
}

/// One upstream endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// IP address or, for DNS resolution, a host name to resolve.
    pub address: String,
    /// Endpoint port.
    pub port: u16,
    /// Labels (subsets select on them).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Load-balancing weight (default 1).
    pub weight: u32,
    /// A mesh workload (`security.istio.io/tlsMode: istio`), which automatic mTLS reaches with
    /// `ISTIO_MUTUAL`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub istio_mtls: bool,
}

/// The DestinationRule policy that applies to one cluster (port-level settings and subset
/// overrides already merged, as Istio's `MergeTrafficPolicy` does).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterPolicy {
    /// The DestinationRule(s) it came from, `namespace/name`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<String>,
    /// Load balancing (default LEAST_REQUEST).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<raw::LoadBalancerSettings>,
    /// Circuit breakers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<raw::ConnectionPoolSettings>,
    /// Passive health checking.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<raw::OutlierDetection>,
    /// The DestinationRule `tls` as written (merged); see `origination` for what is served.
    #[serde(skip)]
    pub tls: Option<raw::ClientTlsSettings>,
    /// TLS origination with its credentials resolved (`None`: plaintext).
    #[serde(rename = "tls", skip_serializing_if = "Option::is_none")]
    pub origination: Option<ClientTls>,
}

/// DestinationRule `tls` (`ClientTLSSettings`) for SIMPLE and MUTUAL origination, with files and
/// `credentialName` resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientTls {
    /// `SIMPLE`, `MUTUAL` or `ISTIO_MUTUAL` (`MUTUAL` with the workload identity).
    pub mode: raw::ClientTlsMode,
    /// The client certificate (MUTUAL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<Certificate>,
    /// Trusted CAs for the upstream certificate; `None` = the system's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<PemSource>,
    /// Revoked upstream certificates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_crl: Option<PemSource>,
    /// SNI to send; `None` = the request's host (HTTP) or the destination host (TCP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// Accepted upstream certificate SANs; empty = the SNI.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    /// `ISTIO_MUTUAL` without `subjectAltNames`: the upstream's certificate must carry a SPIFFE
    /// URI SAN (`spiffe://<domain>/...`) in one of these trust domains.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trust_domains: Vec<String>,
    /// Istio's automatic mTLS (no DestinationRule `tls`): used only for the endpoints that are mesh
    /// workloads ([`Endpoint::istio_mtls`]); the others get plaintext.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub auto: bool,
    /// Do not verify the upstream certificate at all.
    pub insecure_skip_verify: bool,
}
