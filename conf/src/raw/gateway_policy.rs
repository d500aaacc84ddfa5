//! `gateway.pylon.dev/v1alpha1` `GatewayPolicy`: Pylon's own resource for what Istio has no
//! resource for, bound to this workload, to a Gateway (or one of its servers), or to a
//! VirtualService (or one of its HTTP routes).

use serde::{Deserialize, Serialize};

use super::LabelSelector;

/// `GatewayPolicy` spec.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GatewayPolicy {
    /// Workloads it applies to (in its namespace, or every namespace from the root namespace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// The Gateways, servers, VirtualServices or routes it applies to (instead of a selector).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<GatewayPolicyTarget>,
    /// Local rate limiting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// What the forwarded headers and the response headers are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<HeaderPolicy>,
    /// Response caching (RFC 9111 shared cache), in a store of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<Cache>,
    /// How the client address is found behind proxies (workload, Gateway or server level only:
    /// it is needed before a route is chosen).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_address: Option<ClientAddress>,
    /// An AuthorizationPolicy spec (without `selector` or `targetRefs`) checked on the requests
    /// of the servers this policy targets, besides the AuthorizationPolicies that apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization: Option<super::AuthorizationPolicy>,
    /// A RequestAuthentication spec (without `selector` or `targetRefs`), likewise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_authentication: Option<super::RequestAuthentication>,
    /// The local address upstream connections are made from (workload or ServiceEntry level).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_bind: Option<UpstreamBind>,
}

/// The `upstreamBind` module (Envoy's cluster `upstream_bind_config`): the local address, and
/// optionally the port range, that connections to the upstreams are made from, so that a firewall
/// beyond an egress gateway can allow its traffic by source address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UpstreamBind {
    /// An IP address of this host.
    pub source_address: String,
    /// `LOW-HIGH`: the local ports the kernel picks from (Linux `IP_LOCAL_PORT_RANGE`). Unset:
    /// any ephemeral port.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source_ports: String,
}

/// The `clientAddress` module.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClientAddress {
    /// Proxies in front of the gateway that append to `x-forwarded-for` (as MeshConfig
    /// `gatewayTopology.numTrustedProxies`, which this overrides).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_trusted_proxies: Option<u32>,
    /// Addresses of trusted proxies: the client is the rightmost `x-forwarded-for` entry outside
    /// them (Envoy's `xff_trusted_cidrs`), when the peer is one of them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trusted_cidrs: Vec<String>,
}

/// The `headers` module: forwarded request headers and response headers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HeaderPolicy {
    /// `append` (default: the peer address is appended, as Envoy) or `replace` (the header is
    /// the client address alone, hiding the hops before the gateway).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub x_forwarded_for: String,
    /// Also send an RFC 7239 `Forwarded` element (`for`, `proto`, `host`), appended to the
    /// client's.
    pub forwarded: bool,
    /// `keep` (default: a client's `x-request-id` is kept, one is made when absent) or `generate`
    /// (always a new one).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub request_id: String,
    /// Response headers set or removed before the response leaves the gateway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<ResponseHeaders>,
}

/// Response headers a `GatewayPolicy` sets or removes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ResponseHeaders {
    /// Headers set (replacing any value), such as `server`.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub set: std::collections::BTreeMap<String, String>,
    /// Headers removed, such as `server` or `x-envoy-upstream-service-time`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// What a `GatewayPolicy` attaches to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GatewayPolicyTarget {
    /// `networking.istio.io` (the default).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// `Gateway`, `VirtualService` or (for `upstreamBind`) `ServiceEntry`.
    pub kind: String,
    /// The resource's name, in the policy's namespace.
    pub name: String,
    /// A Gateway server's `port.name`, or a VirtualService HTTP route's `name`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub section_name: String,
}

/// A token bucket: `requests` per `unit`, up to `burst` at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RateLimit {
    /// Tokens added per `unit`.
    pub requests: u32,
    /// `second`, `minute` or `hour`.
    pub unit: String,
    /// The bucket's size (default: `requests`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// What one bucket counts: `route` (default), `host` or `client` (the client address).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// The most client or host buckets kept (least recently used ones are dropped; default 10000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<u32>,
    /// Add `x-ratelimit-limit`, `x-ratelimit-remaining` and `x-ratelimit-reset` to responses.
    pub response_headers: bool,
}

/// The `cache` module: a shared HTTP cache (RFC 9111) of its own, bounded in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Cache {
    /// The most bytes stored (a Kubernetes quantity such as `64Mi`; default `64Mi`). The least
    /// recently used responses are evicted beyond it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_size: Option<String>,
    /// The largest response body stored (default `1Mi`); larger ones are passed through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_entry_size: Option<String>,
    /// How long a response without freshness information (no `max-age`, `s-maxage` or `Expires`)
    /// stays fresh. Unset (the default): such responses are not stored (no heuristic freshness).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_ttl: Option<String>,
    /// How long a stale response may be served while it is revalidated in the background, when
    /// the response does not say (`stale-while-revalidate`; default 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_while_revalidate: Option<String>,
    /// How long a stale response may be served when the upstream fails, when the response does
    /// not say (`stale-if-error`; default 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_if_error: Option<String>,
    /// Request headers a response may vary on (default `[accept-encoding]`). A response whose
    /// `Vary` names another header, or `*`, is not stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vary: Option<Vec<String>>,
    /// Request headers added to the key (scheme, host, path and query always are).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub key_headers: Vec<String>,
    /// Add `x-cache: HIT|MISS|EXPIRED|STALE|UPDATING|REVALIDATED|BYPASS` to responses.
    pub status_header: bool,
    /// How long a request waits for another request fetching the same response (default `5s`);
    /// then it goes to the upstream itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_timeout: Option<String>,
}
