//! Name, domain, port and header-name rules shared by every kind (Istio `agent/validation.go`,
//! `labels/instance.go`). Each returns Istio's message on failure.

use std::net::IpAddr;

/// Istio `IsDNS1123Label` (upper case allowed, at most 63 characters).
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// Istio `IsWildcardDNS1123Label`: `*`, or a label optionally prefixed by `*` or `*-`.
fn is_wildcard_label(s: &str) -> bool {
    if s == "*" {
        return true;
    }
    let rest = s.strip_prefix("*-").or_else(|| s.strip_prefix('*')).unwrap_or(s);
    s.len() <= 63 && is_dns1123_label(rest)
}

fn preconditions(name: &str) -> Result<(), String> {
    if name.len() > 255 {
        return Err(format!("domain name {name:?} too long (max 255)"));
    }
    if name.is_empty() {
        return Err("empty domain name not allowed".into());
    }
    Ok(())
}

fn dns1123_labels(domain: &str) -> Result<(), String> {
    let parts: Vec<&str> = domain.split('.').collect();
    let tld = parts.last().copied().unwrap_or_default();
    if tld.parse::<i64>().is_ok() {
        return Err(format!("domain name {domain:?} invalid (top level domain {tld:?} cannot be all-numeric)"));
    }
    for (i, label) in parts.iter().enumerate() {
        if i == parts.len() - 1 && label.is_empty() {
            return Ok(());
        }
        if !is_dns1123_label(label) {
            return Err(format!("domain name {domain:?} invalid (label {label:?} invalid)"));
        }
    }
    Ok(())
}

/// Istio `ValidateFQDN`.
pub fn validate_fqdn(fqdn: &str) -> Result<(), String> {
    preconditions(fqdn)?;
    dns1123_labels(fqdn)
}

/// Istio `ValidateWildcardDomainForVirtualServiceBoundToGateway`: a VirtualService bound to a
/// gateway may name, where SNI applies, the SNI Istio generates for mesh services
/// (`outbound_.<PORT>_._.<HOSTNAME>`, which is no DNS name); otherwise a wildcard domain.
pub fn validate_gateway_bound_domain(sni: bool, domain: &str) -> Result<(), String> {
    if domain.len() > 255 {
        return Err(format!("domain name {domain:?} too long (max 255)"));
    }
    if domain.is_empty() {
        return Err("empty domain name not allowed".into());
    }
    if !(sni && domain.starts_with("outbound_")) {
        return validate_wildcard_domain(domain);
    }
    const FORMAT: &str = "outbound_.<PORT>_._.<HOSTNAME>";
    let parts: Vec<&str> = domain.split('_').collect();
    if parts.len() < 4 {
        return Err(format!("domain name {domain} invalid, should follow '{FORMAT}' format"));
    }
    let (port, hostname) = (parts[1].trim_matches('.'), parts[3].trim_matches('.'));
    // Istio's checks: the port label holds a digit, the host label a letter.
    if !port.chars().any(|c| c.is_ascii_digit()) {
        return Err(format!("domain name {domain:?} invalid (label {port:?} invalid). should follow {FORMAT} format"));
    }
    if !hostname.chars().any(|c| c.is_ascii_alphabetic()) {
        return Err(format!(
            "domain name {domain:?} invalid (label {hostname:?} invalid). should follow {FORMAT} format"
        ));
    }
    Ok(())
}

/// Istio `ValidateWildcardDomain`: only the first label may be a wildcard.
pub fn validate_wildcard_domain(domain: &str) -> Result<(), String> {
    preconditions(domain)?;
    let (first, rest) = match domain.split_once('.') {
        Some((first, rest)) => (first, Some(rest)),
        None => (domain, None),
    };
    if !is_wildcard_label(first) {
        return Err(format!("domain name {domain:?} invalid (label {first:?} invalid)"));
    }
    rest.map_or(Ok(()), dns1123_labels)
}

/// Istio `ValidatePartialWildCard`.
pub fn validate_partial_wildcard(host: &str) -> Result<(), String> {
    if host.contains('*') && host.len() != 1 && !host.starts_with("*.") {
        return Err(format!("partial wildcard {host:?} not allowed"));
    }
    Ok(())
}

/// True for IPv4 and IPv6 addresses.
pub fn is_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

/// Istio `ValidatePort`.
pub fn validate_port(port: u32) -> Result<(), String> {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(format!("port number {port} must be in the range 1..65535"))
    }
}

/// Istio's HTTP header-name rule for matches: a token, a pseudo-header, or a JWT-claim key.
pub fn validate_match_header_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    if is_jwt_claim(name) || matches!(name, ":method" | ":scheme" | ":authority" | ":path" | ":status") {
        return Ok(());
    }
    if !is_token(name) {
        return Err(format!("header name {name} is not a valid header name"));
    }
    Ok(())
}

/// True for `@request.auth.claims.<name>` and `@request.auth.claims[<name>]` keys.
pub fn is_jwt_claim(name: &str) -> bool {
    name.starts_with("@request.auth.claims")
}

/// RFC 7230 token characters.
pub fn is_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

/// Istio `ValidateHTTPHeaderWithAuthorityOperationName` (request `set` / `add`).
pub fn validate_request_header_op_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    if is_authority(name) {
        return Ok(());
    }
    if name.starts_with(':') {
        return Err(format!("invalid header {name:?}: header cannot have \":\" prefix"));
    }
    if !is_token(name) {
        return Err(format!("header name {name} is not a valid header name"));
    }
    Ok(())
}

/// Istio `ValidateHTTPHeaderOperationName` (request `remove`, every response operation).
pub fn validate_header_op_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    if name.eq_ignore_ascii_case("host") {
        return Err(format!("invalid header {name:?}: cannot set Host header"));
    }
    if name.starts_with(':') {
        return Err(format!("invalid header {name:?}: header cannot have \":\" prefix"));
    }
    if !is_token(name) {
        return Err(format!("header name {name} is not a valid header name"));
    }
    Ok(())
}

/// `:authority` or `host`, case-insensitive.
pub fn is_authority(name: &str) -> bool {
    name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host")
}

/// Istio `ValidateHTTPHeaderValue`: no control characters other than tab, and `%` only as `%%` or
/// around an Envoy variable (`%NAME%`).
pub fn validate_header_value(value: &str) -> Result<(), String> {
    if value.chars().any(|c| (c < ' ' && c != '\t') || c == '\u{7f}') {
        return Err(format!("header value configuration {value} is invalid"));
    }
    header_variables(value).map(|_| ()).map_err(|e| format!("header value configuration: {e}"))
}

/// Where [`header_variables`] is in a header value.
#[derive(Clone, Copy)]
enum Format {
    Literal,
    /// In a variable's name, which starts at this byte.
    Name(usize),
    ExpectArray,
    ExpectString,
    InString,
    ExpectDelimiterOrEnd,
    ExpectArgsEnd,
    ExpectVariableEnd,
}

/// The Envoy variables a header value uses, by name (`%NAME%`, or `%NAME(args)%` whose arguments
/// may hold `%` and quoted strings); `%%` is a literal `%`. Istio's `validateHeaderValue` state
/// machine (pkg/config/validation/header_value_validator.go), with its messages.
pub fn header_variables(value: &str) -> Result<Vec<&str>, String> {
    let fail = |why: &str| Err(format!("invalid header configuration. {why}"));
    let bytes = value.as_bytes();
    let (mut vars, mut state, mut pos) = (Vec::new(), Format::Literal, 0);
    while pos < bytes.len() {
        let (ch, next) = (bytes[pos], bytes.get(pos + 1).copied());
        state = match state {
            Format::Literal if ch == b'%' => match next {
                None => return fail("Un-escaped %"),
                Some(b'%') => {
                    pos += 1;
                    Format::Literal
                }
                Some(_) => Format::Name(pos + 1),
            },
            Format::Literal => Format::Literal,
            Format::Name(start) if ch == b'%' || ch == b'(' => {
                vars.push(&value[start..pos]);
                if ch == b'%' {
                    Format::Literal
                } else {
                    Format::ExpectArray
                }
            }
            Format::Name(start) => Format::Name(start),
            args => {
                let (state, skip) =
                    in_arguments(args, ch, next).map_err(|why| format!("invalid header configuration. {why}"))?;
                pos += usize::from(skip);
                state
            }
        };
        pos += 1;
    }
    if !matches!(state, Format::Literal) {
        return fail(&format!("Un-terminated variable expression '{value}'"));
    }
    Ok(vars)
}

/// One byte of a variable's arguments (`(["a", "b"])`, or a bare string up to `)`): the next state,
/// and whether the byte after it is skipped (escaped).
fn in_arguments(state: Format, ch: u8, next: Option<u8>) -> Result<(Format, bool), &'static str> {
    Ok(match (state, ch) {
        (Format::ExpectArray, b'[') => (Format::ExpectString, false),
        (Format::ExpectArray, b' ') => (Format::ExpectArray, false),
        (Format::ExpectArray, _) => (Format::InString, false),
        (Format::ExpectDelimiterOrEnd, b',') => (Format::ExpectString, false),
        (Format::ExpectDelimiterOrEnd, b']') => (Format::ExpectArgsEnd, false),
        (Format::ExpectDelimiterOrEnd, b' ') => (Format::ExpectDelimiterOrEnd, false),
        (Format::ExpectDelimiterOrEnd, _) => return Err("Expecting ',', ']', or whitespace"),
        (Format::ExpectString, b'"') => (Format::InString, false),
        (Format::ExpectString, b' ') => (Format::ExpectString, false),
        (Format::ExpectString, _) => return Err("Expecting '\"'"),
        (Format::InString, b'\\') if next.is_none() => return Err("Un-terminated backslash in JSON string"),
        (Format::InString, b'\\') => (Format::InString, true),
        (Format::InString, b')') => (Format::ExpectVariableEnd, false),
        (Format::InString, b'"') => (Format::ExpectDelimiterOrEnd, false),
        (Format::InString, _) => (Format::InString, false),
        (Format::ExpectArgsEnd, b')') => (Format::ExpectVariableEnd, false),
        (Format::ExpectArgsEnd, b' ') => (Format::ExpectArgsEnd, false),
        (Format::ExpectArgsEnd, _) => return Err("Expecting ')' or whitespace after '{}', but found '{}'"),
        (Format::ExpectVariableEnd, b'%') => (Format::Literal, false),
        (Format::ExpectVariableEnd, b' ') => (Format::ExpectVariableEnd, false),
        (Format::ExpectVariableEnd, _) => return Err("Expecting '%' or whitespace after"),
        (Format::Literal | Format::Name(_), _) => (state, false),
    })
}

/// Kubernetes label key/value rules, as Istio's `labels.Instance.Validate` applies them.
pub fn validate_labels(labels: &std::collections::BTreeMap<String, String>) -> Result<(), String> {
    for (k, v) in labels {
        let name = k.rsplit_once('/').map_or(k.as_str(), |(_, n)| n);
        if !is_label_value(name) || name.is_empty() {
            return Err(format!("invalid tag key: {k:?}"));
        }
        if !is_label_value(v) {
            return Err(format!("invalid tag value: {v:?}"));
        }
    }
    Ok(())
}

fn is_label_value(v: &str) -> bool {
    let b = v.as_bytes();
    b.is_empty()
        || (b.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_follow_istio_examples() {
        for ok in ["foo.bar.com", "*", "*.com", "reviews", "istio.io.", "Example.org", "123"] {
            assert!(validate_wildcard_domain(ok).is_ok(), "{ok}");
        }
        // Istio validates the labels after the first as a domain of their own, and names that part.
        assert_eq!(
            validate_wildcard_domain("foo.*.bar.com").unwrap_err(),
            r#"domain name "*.bar.com" invalid (label "*" invalid)"#
        );
        assert_eq!(
            validate_wildcard_domain("a.123").unwrap_err(),
            r#"domain name "123" invalid (top level domain "123" cannot be all-numeric)"#
        );
        assert_eq!(validate_wildcard_domain("").unwrap_err(), "empty domain name not allowed");
        assert!(validate_wildcard_domain("a_b.com").is_err());
        assert!(validate_partial_wildcard("*bar.com").is_err());
        assert!(validate_partial_wildcard("*.bar.com").is_ok());
    }

    #[test]
    fn header_values_allow_escaped_percent_and_name_variables() {
        assert_eq!(header_variables("100%%").unwrap(), Vec::<&str>::new());
        assert_eq!(header_variables("ip=%DOWNSTREAM_REMOTE_ADDRESS%").unwrap(), vec!["DOWNSTREAM_REMOTE_ADDRESS"]);
        assert_eq!(
            validate_header_value("50% off").unwrap_err(),
            "header value configuration: invalid header configuration. Un-terminated variable expression '50% off'"
        );
        assert_eq!(
            validate_header_value("100%").unwrap_err(),
            "header value configuration: invalid header configuration. Un-escaped %"
        );
        // Arguments may hold `%` and quoted strings (Envoy's format strings).
        assert_eq!(header_variables("%START_TIME(%s.%3f)%").unwrap(), vec!["START_TIME"]);
        assert_eq!(header_variables(r#"%REQ(x-a)% and %METADATA(["a", "b\"c"])%"#).unwrap(), vec!["REQ", "METADATA"]);
        assert!(header_variables(r#"%METADATA(["a" x])%"#).is_err());
        assert!(validate_header_value("a\nb").is_err());
    }

    #[test]
    fn header_names() {
        assert!(validate_match_header_name(":method").is_ok());
        assert!(validate_match_header_name(":uri").is_err());
        assert!(validate_match_header_name("x-foo").is_ok());
        assert!(validate_match_header_name("x foo").is_err());
        assert_eq!(validate_header_op_name("Host").unwrap_err(), r#"invalid header "Host": cannot set Host header"#);
        assert!(validate_request_header_op_name(":authority").is_ok());
        assert!(validate_request_header_op_name(":path").is_err());
    }
}
