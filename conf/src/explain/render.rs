//! The text form of an [`Explanation`].

use std::fmt::Write;

use super::{Action, Destination, Explanation};

/// Renders `e` as text, one fact per line, in the order the gateway decides.
pub fn text(e: &Explanation) -> String {
    let mut out = String::new();
    let r = &e.request;
    let _ = writeln!(out, "request   {} {}://{}{}", r.method, r.scheme, r.authority, r.path);
    let mut facts = vec![format!("port {}", r.port)];
    facts.extend(r.sni.as_ref().filter(|_| r.scheme == "https").map(|s| format!("SNI {s}")));
    facts.extend(r.client.map(|c| format!("client {c}")));
    facts.extend(e.normalized_path.as_ref().map(|p| format!("path normalized to {p}")));
    let _ = writeln!(out, "          {}", facts.join(", "));
    line(&mut out, "listener", e.listener.as_deref());
    for s in &e.servers {
        line(&mut out, "server", Some(s));
    }
    line(&mut out, "tls", e.sni.as_deref());
    if let Some(rc) = &e.route_config {
        let vhost = e.virtual_host.as_ref().map(|v| format!(", virtual host {} ({})", v.name, v.by));
        let _ = writeln!(out, "routes    {rc}{}", vhost.unwrap_or_default());
    }
    for c in &e.routes {
        let name = if c.name.is_empty() { String::new() } else { format!(" {:?}", c.name) };
        match &c.miss {
            Some(why) => writeln!(out, "  ✗ {}. {}{name}: {why}", c.position, c.origin),
            None => writeln!(out, "  ✓ {}. {}{name}: matched", c.position, c.origin),
        }
        .unwrap_or_default();
    }
    for p in &e.policies {
        line(&mut out, "policy", Some(p));
    }
    action(&mut out, &e.action);
    for n in &e.route_notes {
        line(&mut out, "also", Some(n));
    }
    let result = match e.status {
        Some(s) => format!("{s}, answered by the gateway"),
        None if matches!(e.action, Action::Refused { .. }) => "connection refused".to_string(),
        None => "forwarded".to_string(),
    };
    let _ = writeln!(out, "result    {result}");
    for n in &e.notes {
        line(&mut out, "note", Some(n));
    }
    out
}

fn line(out: &mut String, label: &str, value: Option<&str>) {
    if let Some(v) = value {
        let _ = writeln!(out, "{label:<9} {v}");
    }
}

fn action(out: &mut String, a: &Action) {
    match a {
        Action::Forward { destinations } => {
            out.push_str("action    forward\n");
            destinations.iter().for_each(|d| destination(out, d));
        }
        Action::TcpProxy { origin, destinations } => {
            let _ = writeln!(out, "action    proxy the connection's bytes ({origin})");
            destinations.iter().for_each(|d| destination(out, d));
        }
        Action::Redirect { status, location } => {
            let _ = writeln!(out, "action    redirect {status} Location: {location}");
        }
        Action::DirectResponse { status, body } => {
            let body = body.as_ref().map(|b| format!(" body {b:?}")).unwrap_or_default();
            let _ = writeln!(out, "action    direct response {status}{body}");
        }
        Action::Refused { status, reason } => {
            let status = status.map(|s| format!("{s}: ")).unwrap_or_default();
            let _ = writeln!(out, "action    refused: {status}{reason}");
        }
    }
}

fn destination(out: &mut String, d: &Destination) {
    let _ = writeln!(out, "  → {} {}% (weight {})", d.cluster, d.share, d.weight);
    if let Some(why) = &d.unavailable {
        let _ = writeln!(out, "      unavailable: {why}");
    } else {
        let _ = writeln!(out, "      endpoints {}", d.endpoints.join(", "));
    }
    if let (Some(path), Some(authority)) = (&d.path, &d.authority) {
        let _ = writeln!(out, "      upstream request: authority {authority}, path {path}");
    }
    for op in &d.header_operations {
        let _ = writeln!(out, "      {op}");
    }
}
