//! `AuthorizationPolicy` specs → compiled rules. Validation in `conf` reports problems with
//! Istio's messages; this is the backstop: anything that cannot be enforced exactly as written
//! is a [`BuildError`], never skipped.

use conf::raw::{self, bracketed, Action};
use conf::table::BoundPolicy;

use super::matchers::{IpBlock, PathPattern, Pattern, PrincipalPattern};
use super::rule::{Condition, Field, HeaderKey, Operation, Rule, Source};
use super::{Authorizer, Compiled};
use crate::BuildError;

type Result<T> = std::result::Result<T, String>;

impl Authorizer {
    /// Compiles `policies`; `None` when there are none.
    pub fn build(
        policies: &[BoundPolicy<raw::AuthorizationPolicy>],
        providers: &[conf::table::ExtAuthz],
    ) -> std::result::Result<Option<Self>, BuildError> {
        if policies.is_empty() {
            return Ok(None);
        }
        let mut a = Authorizer::default();
        for p in policies {
            let error = |message: String| BuildError { policy: format!("AuthorizationPolicy {}", p.name), message };
            let ns = p.name.split_once('/').map_or("", |(ns, _)| ns);
            let rules = p.spec.rules.iter().map(|r| rule(r, ns)).collect::<Result<Vec<_>>>().map_err(error)?;
            let compiled = Compiled { name: p.name.clone(), dry_run: p.dry_run, rules };
            match p.spec.action {
                Action::Allow => a.allow.push(compiled),
                Action::Deny => a.deny.push(compiled),
                Action::Audit => a.audit.push(compiled),
                Action::Custom => {
                    let name = p.spec.provider.as_ref().map_or("", |pr| pr.name.as_str());
                    let provider = providers
                        .iter()
                        .position(|e| e.name == name)
                        .ok_or_else(|| error(format!("CUSTOM provider {name:?} is not defined")))?;
                    a.custom.push((provider, compiled));
                }
            }
        }
        Ok(Some(a))
    }
}

fn rule(r: &raw::Rule, ns: &str) -> Result<Rule> {
    let from = r
        .from
        .as_ref()
        .map(|f| {
            f.iter().map(|f| source(f.source.as_ref().cloned().unwrap_or_default(), ns)).collect::<Result<Vec<_>>>()
        })
        .transpose()?;
    let to = r
        .to
        .as_ref()
        .map(|t| {
            t.iter().map(|t| operation(t.operation.as_ref().cloned().unwrap_or_default())).collect::<Result<Vec<_>>>()
        })
        .transpose()?;
    let when = r.when.iter().flatten().map(|c| condition(c, ns)).collect::<Result<Vec<_>>>()?;
    Ok(Rule { from, to, when })
}

fn patterns(list: Option<Vec<String>>, fold: bool) -> Option<Vec<Pattern>> {
    list.map(|l| l.iter().map(|v| Pattern::new(v, fold)).collect())
}

fn strings(values: Option<Vec<String>>, not: Option<Vec<String>>, fold: bool) -> Field<Pattern> {
    Field::new(patterns(values, fold), patterns(not, fold))
}

fn principals(values: Option<Vec<String>>, not: Option<Vec<String>>) -> Field<PrincipalPattern> {
    let parse = |l: Option<Vec<String>>| l.map(|l| l.iter().map(|v| PrincipalPattern::new(v)).collect());
    Field::new(parse(values), parse(not))
}

fn blocks(list: Option<Vec<String>>) -> Result<Option<Vec<IpBlock>>> {
    list.map(|l| {
        l.iter().map(|v| IpBlock::parse(v).ok_or_else(|| format!("{v:?} is not an IP address or CIDR range"))).collect()
    })
    .transpose()
}

fn ip_field(values: Option<Vec<String>>, not: Option<Vec<String>>) -> Result<Field<IpBlock>> {
    Ok(Field::new(blocks(values)?, blocks(not)?))
}

fn ports(list: Option<Vec<String>>) -> Result<Option<Vec<u16>>> {
    list.map(|l| {
        l.iter()
            .map(|v| v.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("{v:?} is not a port number")))
            .collect()
    })
    .transpose()
}

fn port_field(values: Option<Vec<String>>, not: Option<Vec<String>>) -> Result<Field<u16>> {
    Ok(Field::new(ports(values)?, ports(not)?))
}

/// `serviceAccounts` entries without a namespace are in the policy's namespace.
fn accounts(list: Option<Vec<String>>, ns: &str) -> Option<Vec<String>> {
    list.map(|l| l.into_iter().map(|a| if a.contains('/') { a } else { format!("{ns}/{a}") }).collect())
}

fn source(s: raw::Source, ns: &str) -> Result<Source> {
    Ok(Source {
        principals: strings(s.principals, s.not_principals, false),
        request_principals: principals(s.request_principals, s.not_request_principals),
        namespaces: strings(s.namespaces, s.not_namespaces, false),
        service_accounts: strings(accounts(s.service_accounts, ns), accounts(s.not_service_accounts, ns), false),
        trust_domains: strings(s.trust_domains, s.not_trust_domains, false),
        ip_blocks: ip_field(s.ip_blocks, s.not_ip_blocks)?,
        remote_ip_blocks: ip_field(s.remote_ip_blocks, s.not_remote_ip_blocks)?,
    })
}

fn operation(o: raw::Operation) -> Result<Operation> {
    let paths = |l: Option<Vec<String>>| -> Result<Option<Vec<PathPattern>>> {
        l.map(|l| l.iter().map(|p| PathPattern::new(p)).collect()).transpose()
    };
    Ok(Operation {
        hosts: strings(o.hosts, o.not_hosts, true),
        ports: port_field(o.ports, o.not_ports)?,
        methods: strings(o.methods, o.not_methods, false),
        paths: Field::new(paths(o.paths)?, paths(o.not_paths)?),
    })
}

/// The keys of `when` conditions Pylon enforces (Istio's list minus the experimental keys,
/// istio.io/latest/docs/reference/config/security/conditions/).
fn condition(c: &raw::Condition, ns: &str) -> Result<Condition> {
    let (values, not) = (c.values.clone(), c.not_values.clone());
    let s = || strings(values.clone(), not.clone(), false);
    Ok(match c.key.as_str() {
        "source.ip" => Condition::SourceIp(ip_field(values, not)?),
        "remote.ip" => Condition::RemoteIp(ip_field(values, not)?),
        "destination.ip" => Condition::DestinationIp(ip_field(values, not)?),
        "destination.port" => Condition::DestinationPort(port_field(values, not)?),
        "source.principal" => Condition::SourcePrincipal(s()),
        "source.namespace" => Condition::SourceNamespace(s()),
        "source.serviceAccount" => {
            Condition::SourceServiceAccount(strings(accounts(values, ns), accounts(not, ns), false))
        }
        "source.trustDomain" => Condition::SourceTrustDomain(s()),
        "request.auth.principal" => Condition::AuthPrincipal(principals(values, not)),
        "request.auth.audiences" => Condition::AuthAudiences(s()),
        "request.auth.presenter" => Condition::AuthPresenter(s()),
        "connection.sni" => Condition::Sni(s()),
        key => {
            if let Some(name) = bracketed(key, "request.headers") {
                let [name] = name.as_slice() else { return Err(format!("condition key {key:?}: one header name")) };
                let header = match name.to_ascii_lowercase().as_str() {
                    ":authority" | "host" => HeaderKey::Authority,
                    ":method" => HeaderKey::Method,
                    ":path" => HeaderKey::Path,
                    _ => HeaderKey::Named(
                        http::HeaderName::try_from(name.as_str())
                            .map_err(|_| format!("condition key {key:?}: {name:?} is not a header name"))?,
                    ),
                };
                Condition::Header(header, s())
            } else if let Some(path) = bracketed(key, "request.auth.claims") {
                Condition::AuthClaim(path, s())
            } else {
                return Err(format!("condition key {key:?} is not supported"));
            }
        }
    })
}
