//! Gateway validation (Istio `validateGateway`, `validateServer`, `validateTLSOptions`).

use std::collections::HashSet;

use super::names::{is_dns1123_label, is_ip, validate_partial_wildcard, validate_port, validate_wildcard_domain};
use crate::config::Meta;
use crate::diagnostic::{Code, Reporter};
use crate::model::Protocol;
use crate::raw::{given, Gateway, Port, Server, ServerTlsMode, ServerTlsSettings, TlsProtocol};

/// Cipher suites Istio accepts on a Gateway server (`ValidCipherSuites` in Istio's
/// `pkg/config/security/security.go`: BoringSSL's names without PSK suites).
const CIPHERS: &[&str] = &[
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA",
    "AES256-SHA",
    "DES-CBC3-SHA",
];

/// ECDH curves Istio knows (`ValidECDHCurves` in Istio's `pkg/config/security/security.go`).
const ECDH_CURVES: &[&str] = &["P-224", "P-256", "P-521", "P-384", "X25519", "X25519Kyber768Draft00", "X25519MLKEM768"];

/// True for a cipher suite name Istio accepts on a Gateway server (others are dropped): a known
/// name, `ALL`, or an OpenSSL operator entry (`!aNULL`, `+RSA`), as Istio's `IsValidCipherSuite`.
pub fn is_valid_cipher_suite(name: &str) -> bool {
    name.is_empty() || name == "ALL" || !name.starts_with(|c: char| c.is_alphanumeric()) || CIPHERS.contains(&name)
}

/// True for an ECDH curve name Istio knows (others are dropped with a warning).
pub fn is_valid_ecdh_curve(name: &str) -> bool {
    ECDH_CURVES.contains(&name)
}

pub(super) fn validate(meta: &Meta, gw: &Gateway, r: &mut Reporter<'_>) {
    if !is_dns1123_label(meta.name()) {
        r.error(Code::Name, "metadata.name", format!("invalid gateway name: {:?}", meta.name())).hint =
            Some("a Gateway name is a DNS-1123 label: letters, digits and '-', no dots".into());
    }
    if gw.servers.is_empty() {
        r.error(Code::Port, "spec.servers", "gateway must have at least one server");
    }
    let mut port_names = HashSet::new();
    for (i, server) in gw.servers.iter().enumerate() {
        let path = format!("spec.servers[{i}]");
        validate_server(server, &path, r);
        let Some(port) = &server.port else { continue };
        if !port_names.insert(port.name.as_str()) {
            r.error(
                Code::Port,
                format!("{path}.port.name"),
                format!("port names in servers must be unique: duplicate name {}", port.name),
            );
        }
        let https_redirect = server.tls.as_ref().is_some_and(|t| t.https_redirect);
        if https_redirect && !Protocol::parse(&port.protocol).is_some_and(Protocol::is_http) {
            r.warn(
                Code::Tls,
                format!("{path}.tls.httpsRedirect"),
                "tls.httpsRedirect should only be used with http servers",
            );
        }
    }
}

fn validate_server(server: &Server, path: &str, r: &mut Reporter<'_>) {
    if server.hosts.is_empty() {
        r.error(Code::Host, format!("{path}.hosts"), "server config must contain at least one host");
    }
    for (i, host) in server.hosts.iter().enumerate() {
        for e in server_host_errors(host) {
            r.error(Code::Host, format!("{path}.hosts[{i}]"), e);
        }
    }
    let port_ok = validate_server_port(server.port.as_ref(), server.bind.as_deref(), path, r);
    validate_bind(server, path, r);
    if let Some(tls) = &server.tls {
        validate_tls(tls, &format!("{path}.tls"), r);
    }
    if let (true, Some(port)) = (port_ok, &server.port) {
        let protocol = Protocol::parse(&port.protocol);
        match (protocol, &server.tls) {
            (Some(p), None) if p.is_tls() => {
                r.error(Code::Tls, format!("{path}.tls"), "server must have TLS settings for HTTPS/TLS protocols")
                    .hint = Some("add tls with mode SIMPLE (and credentialName) to terminate, or PASSTHROUGH".into());
            }
            (Some(p), Some(tls)) if p.is_http() && !only_redirect(tls) => {
                r.error(
                    Code::Tls,
                    format!("{path}.tls"),
                    "server cannot have TLS settings for plain text HTTP ports",
                )
                .hint =
                    Some("use protocol HTTPS to terminate TLS; an HTTP server may only set tls.httpsRedirect".into());
            }
            (Some(p), Some(_)) if !p.is_tls() && !p.is_http() => {
                r.error(Code::Tls, format!("{path}.tls"), "server cannot have TLS settings for non HTTPS/TLS ports");
            }
            _ => {}
        }
    }
    if server.default_endpoint.is_some() {
        r.warn(
            Code::NoEffect,
            format!("{path}.defaultEndpoint"),
            "defaultEndpoint is not implemented by Istio and has no effect",
        );
    }
}

/// Istio: an HTTP server may carry `tls` only for `httpsRedirect` (mode PASSTHROUGH, no files).
fn only_redirect(tls: &ServerTlsSettings) -> bool {
    matches!(tls.mode, ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough)
        && tls.ca_certificates.is_none()
        && tls.private_key.is_none()
        && tls.server_certificate.is_none()
}

/// Istio `validateNamespaceSlashWildcardHostname` for gateways.
fn server_host_errors(entry: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let name = match entry.split_once('/') {
        None => entry,
        Some((ns, name)) => {
            if ns.is_empty() || name.is_empty() {
                errs.push("config namespace and dnsName in host entry cannot be empty".to_string());
            }
            if ns != "*" && ns != "." && !is_dns1123_label(ns) {
                errs.push(format!("invalid namespace value {ns:?} in gateway"));
            }
            name
        }
    };
    if name != "*" && !name.contains('.') {
        errs.push("short names (non FQDN) are not allowed".into());
    }
    if let Err(e) = validate_wildcard_domain(name) {
        if !is_ip(name) {
            errs.push(e);
        }
    }
    if let Err(e) = validate_partial_wildcard(name) {
        errs.push(e);
    }
    errs
}

fn port_text(port: &Port) -> String {
    format!("number:{} protocol:{:?} name:{:?}", port.number, port.protocol, port.name)
}

/// Istio `validateServerPort`; true when the port is usable for the protocol checks.
fn validate_server_port(port: Option<&Port>, bind: Option<&str>, path: &str, r: &mut Reporter<'_>) -> bool {
    let Some(port) = port else {
        r.error(Code::Port, format!("{path}.port"), "port is required");
        return false;
    };
    let mut ok = true;
    if Protocol::parse(&port.protocol).is_none() {
        r.error(
            Code::Port,
            format!("{path}.port.protocol"),
            format!(
                "invalid protocol {:?}, supported protocols are HTTP, HTTP2, GRPC, GRPC-WEB, MONGO, REDIS, MYSQL, TCP",
                port.protocol
            ),
        );
        ok = false;
    }
    let unix = bind.is_some_and(|b| b.starts_with("unix://"));
    if port.number > 0 || !unix {
        if let Err(e) = validate_port(port.number) {
            r.error(Code::Port, format!("{path}.port.number"), e);
            ok = false;
        }
    }
    if port.target_port.is_some_and(|t| t > 0) {
        r.error(Code::Port, format!("{path}.port.targetPort"), "targetPort has no impact on Gateways").hint =
            Some("remove targetPort; use --port-map to listen on another port".into());
        ok = false;
    }
    if port.name.is_empty() {
        r.error(Code::Port, format!("{path}.port.name"), format!("port name must be set: {}", port_text(port)));
        ok = false;
    }
    ok
}

fn validate_bind(server: &Server, path: &str, r: &mut Reporter<'_>) {
    let Some(bind) = server.bind.as_deref().filter(|b| !b.is_empty()) else {
        return;
    };
    let at = format!("{path}.bind");
    if let Some(socket) = bind.strip_prefix("unix://") {
        if !socket.starts_with('/') && !socket.starts_with('@') {
            r.error(Code::Bind, at.clone(), format!("{socket} is not an absolute path to a file"));
        }
        if let Some(port) = server.port.as_ref().filter(|p| p.number != 0) {
            r.error(
                Code::Bind,
                at.clone(),
                format!("port number must be 0 for unix domain socket: {}", port_text(port)),
            );
        }
        r.error(Code::Unsupported, at, "unix domain socket binds are not supported by this version").hint =
            Some("bind an IP address instead".into());
    } else if !is_ip(bind) {
        r.error(Code::Bind, at, format!("{bind} is not a valid IP"));
    }
}

/// Istio `validateTLSOptions`, in its order.
fn validate_tls(tls: &ServerTlsSettings, path: &str, r: &mut Reporter<'_>) {
    validate_ciphers(tls, path, r);
    if tls.mode == ServerTlsMode::IstioMutual {
        validate_istio_mutual(tls, path, r);
        return;
    }
    if tls.mode == ServerTlsMode::AutoPassthrough {
        r.error(
            Code::Unsupported,
            format!("{path}.mode"),
            "AUTO_PASSTHROUGH is not supported: it routes by SNI-encoded mesh clusters",
        )
        .hint = Some("use PASSTHROUGH with VirtualService tls routes".into());
    }
    let credential = given(&tls.credential_name) || !tls.credential_names.is_empty();
    let any_certificate =
        [&tls.ca_crl, &tls.server_certificate, &tls.private_key, &tls.ca_certificates].into_iter().any(given)
            || !tls.tls_certificates.is_empty()
            || credential;
    if matches!(tls.mode, ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough) && any_certificate {
        r.warn(Code::Tls, path, format!("{} mode does not use certificates, they will be ignored", tls.mode.as_str()));
    }
    // Only a certificate together with its key counts as a source.
    let sources = [
        given(&tls.credential_name),
        !tls.credential_names.is_empty(),
        given(&tls.server_certificate) && given(&tls.private_key),
        !tls.tls_certificates.is_empty(),
    ];
    if sources.iter().filter(|s| **s).count() > 1 {
        let e = r.error(Code::Tls, path, "only one of credential_name, credential_names, server_certificate/private_key, tls_certificates should be specified");
        let sds = |f: &Option<String>| f.as_deref() == Some("sds");
        if given(&tls.credential_name) && sds(&tls.server_certificate) && sds(&tls.private_key) {
            e.hint = Some("remove serverCertificate: sds and privateKey: sds, placeholders older Istio versions wanted next to credentialName (refused since Istio 1.27)".into());
        }
    }
    if tls.credential_names.len() > 2 {
        r.error(
            Code::Tls,
            format!("{path}.credentialNames"),
            "credentialNames can support up to 2 server certificates",
        );
    }
    let terminates = matches!(tls.mode, ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual);
    if terminates && credential {
        // The credential holds everything, CRL included: Istio checks nothing more.
        return;
    }
    if terminates {
        validate_required_files(tls, path, r);
    }
    if given(&tls.ca_crl) {
        if given(&tls.credential_name) {
            r.error(
                Code::Tls,
                format!("{path}.caCrl"),
                "CRL is not supported with credentialName. CRL has to be specified in the credential",
            );
        }
        if tls.mode == ServerTlsMode::Simple {
            r.error(Code::Tls, format!("{path}.caCrl"), "CRL is not supported with SIMPLE TLS");
        }
    }
}

/// Istio: a terminating server without a credential needs a certificate and a key (in every
/// `tlsCertificates` entry, when given), and a CA for MUTUAL.
fn validate_required_files(tls: &ServerTlsSettings, path: &str, r: &mut Reporter<'_>) {
    let mode = if tls.mode == ServerTlsMode::Simple { "SIMPLE TLS" } else { "MUTUAL TLS" };
    if tls.mode != ServerTlsMode::Simple && !given(&tls.ca_certificates) {
        r.error(Code::Tls, format!("{path}.caCertificates"), format!("{mode} requires a client CA bundle"));
    }
    if tls.tls_certificates.len() > 2 {
        r.warn(Code::Tls, format!("{path}.tlsCertificates"), format!("{mode} can support up to 2 server certificates"));
    }
    let pairs: Vec<(String, bool, bool)> = if tls.tls_certificates.is_empty() {
        vec![(path.to_string(), given(&tls.server_certificate), given(&tls.private_key))]
    } else {
        tls.tls_certificates
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (format!("{path}.tlsCertificates[{i}]"), !c.server_certificate.is_empty(), !c.private_key.is_empty())
            })
            .collect()
    };
    for (at, certificate, key) in pairs {
        if !certificate {
            r.error(Code::Tls, format!("{at}.serverCertificate"), format!("{mode} requires a server certificate"))
                .hint = Some("set credentialName, or serverCertificate and privateKey".into());
        }
        if !key {
            r.error(Code::Tls, format!("{at}.privateKey"), format!("{mode} requires a private key"));
        }
    }
}

fn validate_istio_mutual(tls: &ServerTlsSettings, path: &str, r: &mut Reporter<'_>) {
    let fields = [
        (tls.server_certificate.is_some(), "server certificate"),
        (tls.private_key.is_some(), "private key"),
        (tls.ca_certificates.is_some(), "CA bundle"),
        (!tls.tls_certificates.is_empty(), "tlsCertificates"),
        (tls.credential_name.is_some(), "credentialName"),
        (!tls.credential_names.is_empty(), "credentialNames"),
    ];
    for (set, what) in fields {
        if set {
            r.error(Code::Tls, path, format!("ISTIO_MUTUAL TLS cannot have associated {what}"));
        }
    }
}

fn validate_ciphers(tls: &ServerTlsSettings, path: &str, r: &mut Reporter<'_>) {
    let mut seen = HashSet::new();
    let (mut invalid, mut duplicate) = (Vec::new(), Vec::new());
    for c in &tls.cipher_suites {
        if !is_valid_cipher_suite(c) {
            invalid.push(c.as_str());
        } else if !seen.insert(c.as_str()) {
            duplicate.push(c.as_str());
        }
    }
    if !invalid.is_empty() {
        r.warn(Code::Tls, format!("{path}.cipherSuites"), format!("ignoring invalid cipher suites: {invalid:?}"));
    }
    if !duplicate.is_empty() {
        r.warn(Code::Tls, format!("{path}.cipherSuites"), format!("ignoring duplicate cipher suites: {duplicate:?}"));
    }
    let bad_curves: Vec<&str> =
        tls.ecdh_curves.iter().map(String::as_str).filter(|c| !is_valid_ecdh_curve(c)).collect();
    if !bad_curves.is_empty() {
        r.warn(Code::Tls, format!("{path}.ecdhCurves"), format!("ignoring invalid ecdh curves: {bad_curves:?}"));
    }
    let old = matches!(tls.min_protocol_version, TlsProtocol::V1_0 | TlsProtocol::V1_1);
    if old && tls.cipher_suites.is_empty() {
        r.warn(
            Code::Tls,
            format!("{path}.minProtocolVersion"),
            "TLS version below TLSV1_2 require setting compatible ciphers as by default they no longer include compatible ciphers.",
        );
    }
    if tls.max_protocol_version != TlsProtocol::Auto && tls.max_protocol_version < tls.min_protocol_version {
        r.error(
            Code::Tls,
            format!("{path}.maxProtocolVersion"),
            "maxProtocolVersion must not be lower than minProtocolVersion",
        );
    }
}
