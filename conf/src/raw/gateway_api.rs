//! Kubernetes Gateway API kinds (`gateway.networking.k8s.io` v1, and v1beta1/v1alpha2 where a
//! kind still lives there), as the API defines them (kubernetes-sigs/gateway-api `apis/v1`).
//! Fields Pylon does not act on are still part of the schema, so a valid resource is never
//! refused for naming them; what they do (or that they do nothing) is said at translation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A value kept as written (fields Pylon reads but does not interpret).
pub type Opaque = serde_yaml::Value;

/// `GatewayClass` spec.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GatewayClass {
    /// The controller that manages Gateways of this class (`istio.io/gateway-controller`).
    pub controller_name: String,
    /// Controller-specific parameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters_ref: Option<Opaque>,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `Gateway` spec (`gateway.networking.k8s.io`; not Istio's `networking.istio.io` Gateway).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KubeGateway {
    /// The GatewayClass.
    pub gateway_class_name: String,
    /// Where the Gateway accepts traffic.
    pub listeners: Vec<Listener>,
    /// Requested addresses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Opaque>,
    /// Labels and annotations for the resources the controller makes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub infrastructure: Option<Opaque>,
    /// Gateway-wide TLS (frontend client validation, backend client certificate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<Opaque>,
    /// Which ListenerSets may attach.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_listeners: Option<Opaque>,
    /// Backend TLS (client certificate), in older versions.
    #[serde(rename = "backendTLS", skip_serializing_if = "Option::is_none")]
    pub backend_tls: Option<Opaque>,
}

/// `Listener`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Listener {
    /// Unique within the Gateway.
    pub name: String,
    /// Host name (possibly `*.` wildcard) the listener serves; unset: any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The port.
    pub port: u32,
    /// `HTTP`, `HTTPS`, `TLS`, `TCP` (or `UDP`).
    pub protocol: String,
    /// TLS settings (HTTPS and TLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<GatewayTls>,
    /// Which routes may attach.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_routes: Option<AllowedRoutes>,
}

/// `GatewayTLSConfig`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GatewayTls {
    /// `Terminate` (default) or `Passthrough`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Certificates to present (Secrets).
    pub certificate_refs: Vec<ObjectReference>,
    /// Client validation (experimental).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frontend_validation: Option<Opaque>,
    /// Implementation-specific options.
    pub options: BTreeMap<String, String>,
}

/// `AllowedRoutes`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AllowedRoutes {
    /// Namespaces routes may come from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<RouteNamespaces>,
    /// Route kinds that may attach.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kinds: Option<Vec<RouteGroupKind>>,
}

/// `RouteNamespaces`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RouteNamespaces {
    /// `Same` (default), `All` or `Selector`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// With `Selector`: the namespaces' labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// A Kubernetes label selector.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LabelSelector {
    /// Labels that must be present with these values.
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// A set-based label requirement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LabelSelectorRequirement {
    /// The label.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// Values for `In` and `NotIn`.
    pub values: Vec<String>,
}

/// `RouteGroupKind`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RouteGroupKind {
    /// API group (default `gateway.networking.k8s.io`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The kind.
    pub kind: String,
}

/// `SecretObjectReference` and the like: group, kind, name, namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ObjectReference {
    /// API group (`""`: core).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind (default depends on the field: Secret, Service).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name.
    pub name: String,
    /// Namespace (default: the referring resource's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// `ParentReference`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ParentReference {
    /// API group (default `gateway.networking.k8s.io`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind (default `Gateway`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Namespace (default: the route's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The Gateway's name.
    pub name: String,
    /// A listener name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    /// A listener port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
}

/// The spec every route kind shares: the Gateways (and listeners) it attaches to, the host names
/// it serves (none: every host of the listener; TCPRoute has none), and its rules.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RouteSpec<R> {
    /// The Gateways (and listeners) it attaches to.
    pub parent_refs: Vec<ParentReference>,
    /// Host names it serves.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// The rules.
    pub rules: Vec<R>,
}

/// `HTTPRoute` spec.
pub type KubeHttpRoute = RouteSpec<HttpRouteRule>;
/// `GRPCRoute` spec.
pub type GrpcRoute = RouteSpec<GrpcRouteRule>;
/// `TLSRoute` and `TCPRoute` spec.
pub type L4Route = RouteSpec<L4RouteRule>;

/// `HTTPRouteRule`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRouteRule {
    /// Optional rule name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Matches, ORed (none: `PathPrefix /`).
    pub matches: Vec<HttpRouteMatch>,
    /// Filters, in order.
    pub filters: Vec<HttpRouteFilter>,
    /// Backends, weighted.
    pub backend_refs: Vec<HttpBackendRef>,
    /// Timeouts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<HttpRouteTimeouts>,
    /// Retries (experimental).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<HttpRouteRetry>,
    /// Session persistence (experimental).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_persistence: Option<Opaque>,
}

/// `HTTPRouteMatch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRouteMatch {
    /// The path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<HttpPathMatch>,
    /// Headers, ANDed.
    pub headers: Vec<HttpValueMatch>,
    /// Query parameters, ANDed.
    pub query_params: Vec<HttpValueMatch>,
    /// The method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// `HTTPPathMatch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpPathMatch {
    /// `Exact`, `PathPrefix` (default) or `RegularExpression`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The value (default `/`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// `HTTPHeaderMatch` and `HTTPQueryParamMatch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpValueMatch {
    /// `Exact` (default) or `RegularExpression`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The header or parameter name.
    pub name: String,
    /// The value.
    pub value: String,
}

/// `HTTPRouteFilter`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRouteFilter {
    /// The filter type.
    #[serde(rename = "type")]
    pub kind: String,
    /// `RequestHeaderModifier`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_header_modifier: Option<HeaderModifier>,
    /// `ResponseHeaderModifier`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_header_modifier: Option<HeaderModifier>,
    /// `RequestMirror`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_mirror: Option<RequestMirror>,
    /// `RequestRedirect`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_redirect: Option<RequestRedirect>,
    /// `URLRewrite`.
    #[serde(rename = "urlRewrite", skip_serializing_if = "Option::is_none")]
    pub url_rewrite: Option<UrlRewrite>,
    /// `CORS` (experimental).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<Opaque>,
    /// `ExternalAuth` (experimental).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_auth: Option<Opaque>,
    /// `ExtensionRef`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extension_ref: Option<Opaque>,
}

/// `HTTPHeaderFilter`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HeaderModifier {
    /// Headers to set (replace).
    pub set: Vec<HttpHeader>,
    /// Headers to add (append).
    pub add: Vec<HttpHeader>,
    /// Header names to remove.
    pub remove: Vec<String>,
}

/// `HTTPHeader`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpHeader {
    /// The name.
    pub name: String,
    /// The value.
    pub value: String,
}

/// `HTTPRequestMirrorFilter`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RequestMirror {
    /// Where to mirror.
    pub backend_ref: BackendRef,
    /// Percent of requests mirrored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent: Option<u32>,
    /// Fraction of requests mirrored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fraction: Option<Fraction>,
}

/// `Fraction`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Fraction {
    /// Numerator.
    pub numerator: u32,
    /// Denominator (default 100).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denominator: Option<u32>,
}

/// `HTTPRequestRedirectFilter`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RequestRedirect {
    /// `http` or `https`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// The host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
    /// The port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// 301 (default) or 302 (303, 307, 308 extended).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
}

/// `HTTPURLRewriteFilter`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UrlRewrite {
    /// The host name sent upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The path sent upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
}

/// `HTTPPathModifier`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PathModifier {
    /// `ReplaceFullPath` or `ReplacePrefixMatch`.
    #[serde(rename = "type")]
    pub kind: String,
    /// With `ReplaceFullPath`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replace_full_path: Option<String>,
    /// With `ReplacePrefixMatch`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replace_prefix_match: Option<String>,
}

/// `BackendRef` (and `BackendObjectReference` with a weight).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BackendRef {
    /// API group (`""`: core).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind (default `Service`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name.
    pub name: String,
    /// Namespace (default: the route's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The port (required for Services).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Weight (default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

/// `HTTPBackendRef`: a backend with its own filters (the fields of [`BackendRef`], written out:
/// strict decoding does not see through a flattened struct).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpBackendRef {
    /// API group (`""`: core).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind (default `Service`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name.
    pub name: String,
    /// Namespace (default: the route's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The port (required for Services).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Weight (default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Filters for requests to this backend.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<HttpRouteFilter>,
}

impl HttpBackendRef {
    /// The backend without its filters.
    pub fn backend(&self) -> BackendRef {
        BackendRef {
            group: self.group.clone(),
            kind: self.kind.clone(),
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            port: self.port,
            weight: self.weight,
        }
    }
}

/// `HTTPRouteTimeouts`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRouteTimeouts {
    /// The whole request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// Each request to a backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_request: Option<String>,
}

/// `HTTPRouteRetry`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRouteRetry {
    /// Status codes retried.
    pub codes: Vec<u16>,
    /// Attempts (default 2 in Istio).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Back-off between attempts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff: Option<String>,
}

/// `ReferenceGrant` spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReferenceGrant {
    /// Who may refer.
    pub from: Vec<ReferenceGrantFrom>,
    /// To what in this namespace.
    pub to: Vec<ReferenceGrantTo>,
}

/// `ReferenceGrantFrom`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReferenceGrantFrom {
    /// API group of the referrer.
    pub group: String,
    /// Kind of the referrer.
    pub kind: String,
    /// Namespace of the referrer.
    pub namespace: String,
}

/// `ReferenceGrantTo`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReferenceGrantTo {
    /// API group of the referent.
    pub group: String,
    /// Kind of the referent.
    pub kind: String,
    /// Name of the referent (none: any).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `GRPCRouteRule`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GrpcRouteRule {
    /// Optional rule name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Matches, ORed.
    pub matches: Vec<GrpcRouteMatch>,
    /// Filters, in order.
    pub filters: Vec<HttpRouteFilter>,
    /// Backends, weighted.
    pub backend_refs: Vec<HttpBackendRef>,
    /// Session persistence (experimental).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_persistence: Option<Opaque>,
}

/// `GRPCRouteMatch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GrpcRouteMatch {
    /// The gRPC service and method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<GrpcMethodMatch>,
    /// Headers, ANDed.
    pub headers: Vec<HttpValueMatch>,
}

/// `GRPCMethodMatch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GrpcMethodMatch {
    /// `Exact` (default) or `RegularExpression`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The service (`package.Service`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// `TLSRouteRule` / `TCPRouteRule`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct L4RouteRule {
    /// Optional rule name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Backends, weighted.
    pub backend_refs: Vec<BackendRef>,
}
