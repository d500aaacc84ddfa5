//! DestinationRule validation (Istio `ValidateDestinationRule`, `validateTrafficPolicy`, `ValidateTLS`).

use std::collections::HashSet;

use super::names::{is_dns1123_label, validate_wildcard_domain};
use super::{check_duration, check_duration_or_zero, check_export_to, check_labels};
use crate::at::At;
use crate::config::Meta;
use crate::diagnostic::{Code, Reporter};
use crate::raw::{
    given, ClientTlsMode, ClientTlsSettings, ConnectionPoolSettings, ConsistentHashLb, DestinationRule,
    H2UpgradePolicy, LoadBalancerSettings, OutlierDetection, TrafficPolicy,
};

pub(super) fn validate(meta: &Meta, dr: &DestinationRule, r: &mut Reporter<'_>) {
    if let Err(e) = validate_wildcard_domain(&dr.host) {
        r.error(Code::Host, "spec.host", e);
    }
    if let Some(tp) = &dr.traffic_policy {
        validate_traffic_policy(tp, "spec.trafficPolicy", r);
    }
    let mut names = HashSet::new();
    for (i, subset) in dr.subsets.iter().enumerate() {
        let path = format!("spec.subsets[{i}]");
        if subset.name.is_empty() {
            r.error(Code::Subset, format!("{path}.name"), "subset name cannot be empty");
        } else if !is_dns1123_label(&subset.name) {
            r.error(Code::Subset, format!("{path}.name"), format!("subset name is invalid: {}", subset.name));
        }
        if !subset.name.is_empty() && !names.insert(subset.name.as_str()) {
            r.error(Code::Subset, format!("{path}.name"), format!("duplicate subset names: {}", subset.name));
        }
        check_labels(r, &format!("{path}.labels"), &subset.labels);
        if let Some(tp) = &subset.traffic_policy {
            validate_traffic_policy(tp, &format!("{path}.trafficPolicy"), r);
        }
    }
    check_export_to(r, "spec.exportTo", meta.namespace(), &dr.export_to, false);
    if dr.workload_selector.is_some() && dr.export_to.iter().any(|e| e != "." && e != meta.namespace()) {
        r.error(
            Code::ExportTo,
            "spec.exportTo",
            "destination rule with workload selector cannot have exportTo beyond current namespace",
        );
    }
    if let Some(sel) = &dr.workload_selector {
        let at = ("spec.workloadSelector", "matchLabels");
        super::check_workload_selector(&sel.match_labels, at, Code::Name, super::WITHOUT_LABELS, r);
    }
}

fn validate_traffic_policy(tp: &TrafficPolicy, path: &str, r: &mut Reporter<'_>) {
    let empty = tp.outlier_detection.is_none()
        && tp.connection_pool.is_none()
        && tp.load_balancer.is_none()
        && tp.tls.is_none()
        && tp.port_level_settings.is_empty()
        && tp.tunnel.is_none()
        && tp.proxy_protocol.is_none()
        && tp.retry_budget.is_none();
    if empty {
        r.error(Code::TrafficPolicy, path, "traffic policy must have at least one field");
        return;
    }
    if tp.tunnel.is_some() && tp.proxy_protocol.is_some() {
        r.error(Code::TrafficPolicy, path, "tunnel and proxyProtocol must not be set together");
        return;
    }
    validate_policy_parts(
        tp.outlier_detection.as_ref(),
        tp.connection_pool.as_ref(),
        tp.load_balancer.as_ref(),
        tp.tls.as_ref(),
        path,
        r,
    );
    for (i, pl) in tp.port_level_settings.iter().enumerate() {
        let at = format!("{path}.portLevelSettings[{i}]");
        if pl.port_number() == 0 {
            r.error(Code::TrafficPolicy, format!("{at}.port"), "portTrafficPolicy must have valid port");
        }
        if pl.outlier_detection.is_none()
            && pl.connection_pool.is_none()
            && pl.load_balancer.is_none()
            && pl.tls.is_none()
        {
            r.error(Code::TrafficPolicy, at.clone(), "port traffic policy must have at least one field");
        }
        validate_policy_parts(
            pl.outlier_detection.as_ref(),
            pl.connection_pool.as_ref(),
            pl.load_balancer.as_ref(),
            pl.tls.as_ref(),
            &at,
            r,
        );
    }
    unsupported_parts(tp, path, r);
}

/// Parts of a traffic policy Pylon does not implement.
fn unsupported_parts(tp: &TrafficPolicy, path: &str, r: &mut Reporter<'_>) {
    if tp.tunnel.is_some() {
        r.error(
            Code::Unsupported,
            format!("{path}.tunnel"),
            "tunneling to upstreams (CONNECT or POST) is not supported by this version",
        );
    }
    if tp.proxy_protocol.is_some() {
        r.error(
            Code::Unsupported,
            format!("{path}.proxyProtocol"),
            "sending the PROXY protocol to upstreams is not supported by this version",
        );
    }
    if tp.retry_budget.is_some() {
        r.warn(
            Code::NoEffect,
            format!("{path}.retryBudget"),
            "retry budgets are not implemented; retries are bounded by the route's attempts only",
        );
    }
}

fn validate_policy_parts(
    od: Option<&OutlierDetection>,
    cp: Option<&ConnectionPoolSettings>,
    lb: Option<&LoadBalancerSettings>,
    tls: Option<&ClientTlsSettings>,
    path: &str,
    r: &mut Reporter<'_>,
) {
    if let Some(od) = od {
        validate_outlier(od, &format!("{path}.outlierDetection"), r);
    }
    if let Some(cp) = cp {
        validate_pool(cp, &format!("{path}.connectionPool"), r);
    }
    if let Some(lb) = lb {
        validate_lb(lb, od.is_some(), &format!("{path}.loadBalancer"), r);
    }
    if let Some(tls) = tls {
        validate_client_tls(tls, &format!("{path}.tls"), r);
    }
}

fn validate_outlier(od: &OutlierDetection, path: &str, r: &mut Reporter<'_>) {
    // The CRD's bounds (istio/api: list-value-validation Minimum=100, Maximum=599).
    if let Some(code) = od.outlier_detection_http_error_codes.iter().find(|c| !(100..=599).contains(*c)) {
        r.error(
            Code::TrafficPolicy,
            format!("{path}.outlierDetectionHttpErrorCodes"),
            format!("status code {code} is not in range [100, 599]"),
        );
    } else if !od.outlier_detection_http_error_codes.is_empty() {
        r.warn(
            Code::NoEffect,
            format!("{path}.outlierDetectionHttpErrorCodes"),
            "not implemented: outlier detection counts 5xx responses (and gateway errors) as errors",
        );
    }
    if let Some(t) = &od.base_ejection_time {
        check_duration(r, &format!("{path}.baseEjectionTime"), t);
    }
    if od.consecutive_errors.is_some_and(|e| e != 0) {
        r.warn(
            Code::TrafficPolicy,
            format!("{path}.consecutiveErrors"),
            "outlier detection consecutive errors is deprecated, use consecutiveGatewayErrors or consecutive5xxErrors instead",
        );
    }
    if !od.split_external_local_origin_errors.unwrap_or(false)
        && od.consecutive_local_origin_failures.is_some_and(|n| n > 0)
    {
        r.error(
            Code::TrafficPolicy,
            format!("{path}.consecutiveLocalOriginFailures"),
            "outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false",
        );
    }
    if let Some(t) = &od.interval {
        check_duration(r, &format!("{path}.interval"), t);
    }
    for (field, v) in [("maxEjectionPercent", od.max_ejection_percent), ("minHealthPercent", od.min_health_percent)] {
        if let Some(v) = v.filter(|v| !(0..=100).contains(v)) {
            r.error(Code::TrafficPolicy, format!("{path}.{field}"), format!("percentage {v} is not in range 0..100"));
        }
    }
}

fn non_negative(v: Option<i32>, path: String, msg: &str, r: &mut Reporter<'_>) {
    if v.is_some_and(|v| v < 0) {
        r.error(Code::TrafficPolicy, path, msg);
    }
}

fn validate_pool(cp: &ConnectionPoolSettings, path: &str, r: &mut Reporter<'_>) {
    if cp.http.is_none() && cp.tcp.is_none() {
        r.error(Code::TrafficPolicy, path, "connection pool must have at least one field");
        return;
    }
    if let Some(h) = &cp.http {
        validate_http_pool(h, &format!("{path}.http"), r);
    }
    if let Some(t) = &cp.tcp {
        let at = format!("{path}.tcp");
        non_negative(t.max_connections, format!("{at}.maxConnections"), "max connections must be non-negative", r);
        if let Some(d) = &t.connect_timeout {
            check_duration(r, &format!("{at}.connectTimeout"), d);
        }
        if let Some(d) = &t.max_connection_duration {
            check_duration(r, &format!("{at}.maxConnectionDuration"), d);
        }
        if let Some(d) = &t.idle_timeout {
            check_duration_or_zero(r, &format!("{at}.idleTimeout"), d);
        }
        if let Some(ka) = &t.tcp_keepalive {
            for (field, v) in [("time", &ka.time), ("interval", &ka.interval)] {
                if let Some(d) = v {
                    check_duration(r, &format!("{at}.tcpKeepalive.{field}"), d);
                }
            }
        }
    }
}

/// `connectionPool.http`, as Istio's `validateConnectionPool` checks it.
fn validate_http_pool(h: &crate::raw::HttpSettings, at: &str, r: &mut Reporter<'_>) {
    non_negative(
        h.http1_max_pending_requests,
        format!("{at}.http1MaxPendingRequests"),
        "http1 max pending requests must be non-negative",
        r,
    );
    non_negative(h.http2_max_requests, format!("{at}.http2MaxRequests"), "http2 max requests must be non-negative", r);
    non_negative(
        h.max_requests_per_connection,
        format!("{at}.maxRequestsPerConnection"),
        "max requests per connection must be non-negative",
        r,
    );
    non_negative(h.max_retries, format!("{at}.maxRetries"), "max retries must be non-negative", r);
    non_negative(
        h.max_concurrent_streams,
        format!("{at}.maxConcurrentStreams"),
        "max concurrent streams must be non-negative",
        r,
    );
    // Unlike `tcp.idleTimeout`, Istio takes no `0s` here (`validateConnectionPool`).
    if let Some(t) = &h.idle_timeout {
        check_duration(r, &format!("{at}.idleTimeout"), t);
    }
    if let Some(ka) = &h.http2_keep_alive {
        validate_http2_keepalive(ka, &format!("{at}.http2KeepAlive"), r);
    }
    if h.h2_upgrade_policy == Some(H2UpgradePolicy::Upgrade) && h.use_client_protocol == Some(true) {
        r.error(Code::TrafficPolicy, at, "use client protocol must not be true when H2UpgradePolicy is UPGRADE");
    }
}

fn is_prime(n: u64) -> bool {
    n >= 2 && (2..).take_while(|i| i * i <= n).all(|i| !n.is_multiple_of(i))
}

fn validate_lb(lb: &LoadBalancerSettings, outlier: bool, path: &str, r: &mut Reporter<'_>) {
    if lb.simple.is_some() && lb.consistent_hash.is_some() {
        r.error(Code::TrafficPolicy, path, "only one of simple or consistentHash may be set");
    }
    if let Some(ch) = &lb.consistent_hash {
        validate_consistent_hash(ch, &format!("{path}.consistentHash"), r);
    }
    if lb.locality_lb_setting.is_some() && lb.zone_aware_lb_setting.is_some() {
        r.error(Code::TrafficPolicy, path, "only one of localityLbSetting and zoneAwareLbSetting can be set");
    }
    if let Some(zone_aware) = &lb.zone_aware_lb_setting {
        let at = format!("{path}.zoneAwareLbSetting");
        validate_zone_aware_lb(zone_aware, outlier, &at, r);
        r.warn(Code::NoEffect, at, "zone-aware load balancing has no effect: Pylon endpoints carry no locality");
    }
    if let Some(locality) = &lb.locality_lb_setting {
        let at = format!("{path}.localityLbSetting");
        validate_locality_lb(locality, outlier, &at, r);
        r.warn(Code::NoEffect, at, "locality load balancing has no effect: Pylon endpoints carry no locality");
    }
    if let Some(w) = &lb.warmup {
        validate_warmup(w, &format!("{path}.warmup"), r);
    }
}

/// The region, zone and subzone labels (Istio `label.LabelTopologyRegion`, ...).
const TOPOLOGY_LABELS: [&str; 3] =
    ["topology.kubernetes.io/region", "topology.kubernetes.io/zone", "topology.istio.io/subzone"];

/// Istio `ValidateLocalityLbSetting`, which stops at the first of some problems.
fn validate_locality_lb(lb: &crate::raw::LocalityLbSetting, outlier: bool, at: &str, r: &mut Reporter<'_>) {
    let error = |r: &mut Reporter<'_>, msg: &str| {
        r.error(Code::TrafficPolicy, at, msg);
    };
    if !lb.distribute.is_empty() && !lb.failover.is_empty() {
        return error(r, "can not simultaneously specify 'distribute' and 'failover'");
    }
    if !lb.failover.is_empty() {
        if let Some(label) = lb.failover_priority.iter().find(|l| TOPOLOGY_LABELS.contains(&l.as_str())) {
            return error(
                r,
                &format!("can not simultaneously set 'failover' and topology label '{label}' in 'failover_priority'"),
            );
        }
    }
    for d in &lb.distribute {
        if d.to.values().any(|w| *w == 0 || *w > 100) {
            return error(r, "locality weight must be in range [1, 100]");
        }
        let total: u64 = d.to.values().map(|w| u64::from(*w)).sum();
        if total != 100 {
            return error(r, &format!("total locality weight {total} != 100"));
        }
        if let Err(e) = validate_localities(d.to.keys().map(String::as_str)) {
            error(r, &e);
        }
    }
    if let Err(e) = validate_localities(lb.distribute.iter().map(|d| d.from.as_str())) {
        error(r, &e);
    }
    if (!lb.failover.is_empty() || !lb.failover_priority.is_empty()) && !outlier {
        r.warn(Code::TrafficPolicy, at, "outlier detection policy must be provided for failover");
    }
    for f in &lb.failover {
        if f.from == f.to {
            error(r, "locality lb failover settings must specify different regions");
        }
        if f.from.contains('/') || f.to.contains('/') {
            error(r, "locality lb failover only specify region");
        }
        if f.from.contains('*') || f.to.contains('*') {
            error(r, "locality lb failover region should not contain '*' wildcard");
        }
    }
}

/// Istio `ValidateZoneAwareLbSetting`.
fn validate_zone_aware_lb(lb: &crate::raw::ZoneAwareLbSetting, outlier: bool, at: &str, r: &mut Reporter<'_>) {
    // The CRD's bound (istio/api: kubebuilder Minimum=1).
    if lb.min_cluster_size == Some(0) {
        r.error(Code::TrafficPolicy, format!("{at}.minClusterSize"), "minClusterSize must be at least 1");
    }
    for label in lb.failover_priority.iter().filter(|l| TOPOLOGY_LABELS.contains(&l.as_str())) {
        r.error(
            Code::TrafficPolicy,
            at,
            format!("'failover_priority' for zone aware lb must not use topology label '{label}'; region- and zone-level routing are handled automatically"),
        );
    }
    if (!lb.failover.is_empty() || !lb.failover_priority.is_empty()) && !outlier {
        r.warn(Code::TrafficPolicy, at, "outlier detection policy must be provided for failover");
    }
    for f in &lb.failover {
        if f.from == f.to {
            r.error(Code::TrafficPolicy, at, "zone aware lb failover settings must specify different regions");
        }
        if f.from.contains('/') || f.to.contains('/') {
            r.error(
                Code::TrafficPolicy,
                at,
                "zone aware lb failover only specifies region; zone and subzone failover are handled automatically",
            );
        }
        if f.from.contains('*') || f.to.contains('*') {
            r.error(Code::TrafficPolicy, at, "zone aware lb failover region should not contain '*' wildcard");
        }
    }
}

/// Istio `validateLocalities`: `region[/zone[/subzone]]`, a `*` only at the end, none empty, and
/// none overlapping another (a region and one of its zones, the same zone twice, ...).
fn validate_localities<'a>(localities: impl Iterator<Item = &'a str>) -> Result<(), String> {
    use std::collections::{BTreeMap, BTreeSet};
    // region → zone → subzones; `*` stands for "all of them".
    let mut seen: BTreeMap<&str, BTreeMap<&str, BTreeSet<&str>>> = BTreeMap::new();
    for locality in localities {
        let stars = locality.matches('*').count();
        if stars > 1 || (stars == 1 && !locality.ends_with('*')) {
            return Err(format!("locality {locality} wildcard '*' number can not exceed 1 and must be in the end"));
        }
        let overlap = || Err(format!("locality {locality} overlap with previous specified ones"));
        if seen.contains_key("*") {
            return overlap();
        }
        let parts: Vec<&str> = locality.splitn(3, '/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(format!("locality {locality} must not contain empty region/zone/subzone info"));
        }
        match parts[..] {
            [region] => {
                if seen.contains_key(region) {
                    return overlap();
                }
                seen.insert(region, BTreeMap::from([("*", BTreeSet::from(["*"]))]));
            }
            [region, zone] => {
                let zones = seen.entry(region).or_default();
                if zones.contains_key("*") || zones.contains_key(zone) {
                    return overlap();
                }
                zones.insert(zone, BTreeSet::from(["*"]));
            }
            [region, zone, subzone] => {
                let zones = seen.entry(region).or_default();
                if zones.contains_key("*") {
                    return overlap();
                }
                let subzones = zones.entry(zone).or_default();
                if subzones.contains("*") || !subzones.insert(subzone) {
                    return overlap();
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Istio `validateConnectionPool`: `http.http2KeepAlive` needs both durations.
fn validate_http2_keepalive(ka: &crate::raw::ConnectionKeepalive, at: &str, r: &mut Reporter<'_>) {
    for (field, value) in [("interval", &ka.interval), ("timeout", &ka.timeout)] {
        match value {
            None => {
                r.error(Code::TrafficPolicy, at, format!("http2 keepalive {field} is required"));
            }
            Some(d) => {
                check_duration(r, &At::Field(&at, field), d);
            }
        }
    }
    r.warn(Code::NoEffect, at, "HTTP/2 keepalive pings to upstreams are not sent by this version");
}

/// Istio `validateWarmupConfiguration`.
fn validate_warmup(w: &crate::raw::WarmupConfiguration, at: &str, r: &mut Reporter<'_>) {
    match &w.duration {
        None => {
            r.error(Code::TrafficPolicy, format!("{at}.duration"), "duration is required");
        }
        Some(d) => {
            check_duration(r, &format!("{at}.duration"), d);
        }
    }
    if w.minimum_percent.is_some_and(|p| !(0.0..=100.0).contains(&p)) {
        r.error(
            Code::TrafficPolicy,
            format!("{at}.minimumPercent"),
            "minimumPercent value should be less than or equal to 100",
        );
    }
    if w.aggression.is_some_and(|a| a <= 0.0) {
        r.error(Code::TrafficPolicy, format!("{at}.aggression"), "aggression should be greater than 0");
    }
}

fn validate_consistent_hash(ch: &ConsistentHashLb, at: &str, r: &mut Reporter<'_>) {
    let keys = [
        ch.http_header_name.is_some(),
        ch.http_cookie.is_some(),
        ch.use_source_ip.is_some(),
        ch.http_query_parameter_name.is_some(),
    ];
    if keys.iter().filter(|k| **k).count() > 1 {
        r.error(
            Code::TrafficPolicy,
            at,
            "only one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName may be set",
        );
    }
    if let Some(cookie) = &ch.http_cookie {
        if cookie.name.is_empty() {
            r.error(Code::TrafficPolicy, format!("{at}.httpCookie.name"), "name required for HttpCookie");
        }
        let mut seen = HashSet::new();
        for a in &cookie.attributes {
            if a.name.is_empty() {
                r.error(
                    Code::TrafficPolicy,
                    format!("{at}.httpCookie.attributes"),
                    "cookie attribute name cannot be empty",
                );
                continue;
            }
            if !seen.insert(a.name.as_str()) {
                r.error(
                    Code::TrafficPolicy,
                    format!("{at}.httpCookie.attributes"),
                    format!("duplicate cookie attribute name: {}", a.name),
                );
            }
        }
        if let Some(ttl) = &cookie.ttl {
            if let Err(e) = crate::model::Duration::parse(ttl) {
                r.error(Code::Duration, format!("{at}.httpCookie.ttl"), e);
            }
        }
    }
    if ch.minimum_ring_size.is_some_and(|n| n != 0) && (ch.ring_hash.is_some() || ch.maglev.is_some()) {
        r.error(Code::TrafficPolicy, at, "only one of MinimumRingSize or Maglev/Ringhash can be specified");
    }
    if let Some(m) = &ch.maglev {
        let msg = match m.table_size {
            0 => Some("tableSize must be set for maglev"),
            n if n >= 5_000_011 => Some("tableSize must be less than 5000011 for maglev"),
            n if !is_prime(n) => Some("tableSize must be a prime number for maglev"),
            _ => None,
        };
        if let Some(msg) = msg {
            r.error(Code::TrafficPolicy, format!("{at}.maglev.tableSize"), msg);
        }
    }
}

/// Istio `agent.ValidateTLS`. An empty string counts as unset, as in Istio's protos.
fn validate_client_tls(tls: &ClientTlsSettings, path: &str, r: &mut Reporter<'_>) {
    let (ca, credential, sans) =
        (given(&tls.ca_certificates), given(&tls.credential_name), !tls.subject_alt_names.is_empty());
    if tls.insecure_skip_verify == Some(true) {
        // SIMPLE takes its CA from caCertificates or credentialName; MUTUAL's credentialName
        // holds the client certificate too, so only there may it go with insecureSkipVerify.
        match tls.mode {
            ClientTlsMode::Simple if ca || credential || sans => {
                r.error(
                    Code::Tls,
                    path,
                    "cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set true",
                );
            }
            ClientTlsMode::Mutual if ca || sans => {
                r.error(
                    Code::Tls,
                    path,
                    "cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true",
                );
            }
            _ => {}
        }
    }
    if matches!(tls.mode, ClientTlsMode::Simple | ClientTlsMode::Mutual) && credential {
        if given(&tls.client_certificate) || ca || given(&tls.private_key) || given(&tls.ca_crl) {
            r.error(
                Code::Tls,
                path,
                "cannot specify client certificates or CA certificate or CA CRL If credentialName is set",
            );
        }
        return;
    }
    if tls.mode == ClientTlsMode::Mutual {
        if !given(&tls.client_certificate) {
            r.error(Code::Tls, format!("{path}.clientCertificate"), "client certificate required for mutual tls");
        }
        if !given(&tls.private_key) {
            r.error(Code::Tls, format!("{path}.privateKey"), "private key required for mutual tls");
        }
    }
}
