//! The loaded configuration: every resource Pylon reads, in Istio's order, with where it came from.

use std::collections::BTreeMap;
use std::fmt;

use crate::diagnostic::ResourceRef;
use crate::raw;

/// Where a resource was read: a file and the 1-based document number in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file path as found.
    pub file: String,
    /// 1-based document number in the file (items of a `List` share their document's number).
    pub document: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {})", self.file, self.document)
    }
}

/// What every resource carries besides its spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Kind, namespace and name.
    pub id: ResourceRef,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// `metadata.creationTimestamp` as seconds since the Unix epoch.
    pub created: Option<i64>,
    /// Position in load order (0-based; a replaced duplicate keeps the first position).
    pub load_index: usize,
    /// Where the resource was read.
    pub origin: Origin,
}

impl Meta {
    /// The resource namespace.
    pub fn namespace(&self) -> &str {
        &self.id.namespace
    }

    /// The resource name.
    pub fn name(&self) -> &str {
        &self.id.name
    }

    /// `namespace/name`, as Istio refers to resources (gateway references, origins in messages).
    pub fn key(&self) -> String {
        // Pushed, not formatted: a 100,000-route table asks for it twice a route, and the
        // formatting machinery cost ten times the copy.
        let (namespace, name) = (&self.id.namespace, &self.id.name);
        let mut key = String::with_capacity(namespace.len() + 1 + name.len());
        key.push_str(namespace);
        key.push('/');
        key.push_str(name);
        key
    }
}

/// One resource with its typed spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource<T> {
    /// Identity, labels, creation order and origin.
    pub meta: Meta,
    /// The spec as written.
    pub spec: T,
}

/// A resource of a kind Pylon does not route with, kept so it can be checked for applicability
/// (fail closed: security and traffic kinds that select this workload are errors).
#[derive(Debug, Clone, PartialEq)]
pub struct Foreign {
    /// Identity, labels, creation order and origin.
    pub meta: Meta,
    /// The API group (`security.istio.io`, `""` for core).
    pub group: String,
    /// Workload labels the resource selects (`spec.selector.matchLabels` or
    /// `spec.workloadSelector.labels`); `None` when it has no selector.
    pub selector: Option<BTreeMap<String, String>>,
    /// True when the resource targets objects with `targetRef(s)` instead of a selector.
    pub has_target_refs: bool,
}

/// Every resource that was loaded, each list in Istio's order (creation time, then load order;
/// ties by name, then namespace).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// `Gateway` resources.
    pub gateways: Vec<Resource<raw::Gateway>>,
    /// `VirtualService` resources.
    pub virtual_services: Vec<Resource<raw::VirtualService>>,
    /// `DestinationRule` resources.
    pub destination_rules: Vec<Resource<raw::DestinationRule>>,
    /// `ServiceEntry` resources.
    pub service_entries: Vec<Resource<raw::ServiceEntry>>,
    /// `WorkloadEntry` resources.
    pub workload_entries: Vec<Resource<raw::WorkloadEntry>>,
    /// Core `Secret` resources.
    pub secrets: Vec<Resource<raw::Secret>>,
    /// Core `Service` resources.
    pub kube_services: Vec<Resource<raw::KubeService>>,
    /// Core `Endpoints` resources.
    pub endpoints: Vec<Resource<raw::Endpoints>>,
    /// `discovery.k8s.io` `EndpointSlice` resources.
    pub endpoint_slices: Vec<Resource<raw::EndpointSlice>>,
    /// `RequestAuthentication` resources.
    pub request_authentications: Vec<Resource<raw::RequestAuthentication>>,
    /// `AuthorizationPolicy` resources.
    pub authorization_policies: Vec<Resource<raw::AuthorizationPolicy>>,
    /// `PeerAuthentication` resources.
    pub peer_authentications: Vec<Resource<raw::PeerAuthentication>>,
    /// Pylon `GatewayPolicy` resources.
    pub gateway_policies: Vec<Resource<raw::GatewayPolicy>>,
    /// Gateway API `GatewayClass` resources.
    pub gateway_classes: Vec<Resource<raw::gateway_api::GatewayClass>>,
    /// Gateway API `Gateway` resources.
    pub kube_gateways: Vec<Resource<raw::gateway_api::KubeGateway>>,
    /// Gateway API `HTTPRoute` resources.
    pub http_routes: Vec<Resource<raw::gateway_api::KubeHttpRoute>>,
    /// Gateway API `GRPCRoute` resources.
    pub grpc_routes: Vec<Resource<raw::gateway_api::GrpcRoute>>,
    /// Gateway API `TLSRoute` resources.
    pub tls_routes: Vec<Resource<raw::gateway_api::L4Route>>,
    /// Gateway API `TCPRoute` resources.
    pub tcp_routes: Vec<Resource<raw::gateway_api::L4Route>>,
    /// Gateway API `ReferenceGrant` resources.
    pub reference_grants: Vec<Resource<raw::gateway_api::ReferenceGrant>>,

    /// Resources of other kinds.
    pub foreign: Vec<Foreign>,
}

impl Config {
    /// Sorts every list into Istio's order: creation time first (resources without one after those
    /// with one, in load order); ties by name, then namespace.
    pub fn sort(&mut self) {
        sort_resources(&mut self.gateways);
        sort_resources(&mut self.virtual_services);
        sort_resources(&mut self.destination_rules);
        sort_resources(&mut self.service_entries);
        sort_resources(&mut self.workload_entries);
        sort_resources(&mut self.secrets);
        sort_resources(&mut self.kube_services);
        sort_resources(&mut self.endpoints);
        sort_resources(&mut self.endpoint_slices);
        sort_resources(&mut self.request_authentications);
        sort_resources(&mut self.authorization_policies);
        sort_resources(&mut self.peer_authentications);
        sort_resources(&mut self.gateway_policies);
        sort_resources(&mut self.gateway_classes);
        sort_resources(&mut self.kube_gateways);
        sort_resources(&mut self.http_routes);
        sort_resources(&mut self.grpc_routes);
        sort_resources(&mut self.tls_routes);
        sort_resources(&mut self.tcp_routes);
        sort_resources(&mut self.reference_grants);
        self.foreign.sort_by(|a, b| order_key(&a.meta).cmp(&order_key(&b.meta)));
    }
}

fn sort_resources<T>(list: &mut [Resource<T>]) {
    list.sort_by(|a, b| order_key(&a.meta).cmp(&order_key(&b.meta)));
}

// Istio: sortConfigByCreationTime orders by creation time, then name, then namespace.
// Resources without a timestamp come after, in load order (README "Configuration").
fn order_key(m: &Meta) -> (bool, i64, usize, &str, &str) {
    match m.created {
        Some(t) => (false, t, 0, m.name(), m.namespace()),
        None => (true, 0, m.load_index, m.name(), m.namespace()),
    }
}

/// Parses an RFC 3339 timestamp (`2024-05-01T10:00:00Z`, fractions and offsets allowed) into
/// seconds since the Unix epoch.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut rest = s.get(19..)?;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = frac.get(digits..)?;
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = (rest.get(1..3)?.parse::<i64>().ok()?, rest.get(4..6)?.parse::<i64>().ok()?);
            sign * (h * 3600 + m * 60)
        }
    };
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec - offset)
}

// Howard Hinnant's days_from_civil: days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_to_unix_seconds() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_timestamp("2024-03-01T00:00:01Z"), Some(1_709_251_201));
        assert_eq!(parse_timestamp("2024-03-01T02:00:01+02:00"), Some(1_709_251_201));
        assert_eq!(parse_timestamp("2024-03-01T00:00:01.250Z"), Some(1_709_251_201));
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(parse_timestamp("2024-13-01T00:00:00Z"), None);
    }
}
