//! The request `pylon explain` reasons about, as a user types it: `METHOD URL -H 'k: v'`.

use std::net::IpAddr;

use serde::Serialize;

/// A request described the way `curl` would send it.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// The method (`GET`).
    pub method: String,
    /// `http` or `https` (or `tcp` for a plain TCP connection).
    pub scheme: String,
    /// What routing sees as `:authority`: a `Host` header when one is given, else the URL's
    /// host and port as written.
    pub authority: String,
    /// The Gateway server port the connection reaches: the URL's, else 80 / 443.
    pub port: u16,
    /// The path and query string as sent (before normalization).
    pub path: String,
    /// The headers, lower-case names, without `Host`.
    pub headers: Vec<(String, String)>,
    /// The ClientHello SNI (`https`): `--sni`, else the URL's host, as curl sends it.
    pub sni: Option<String>,
    /// The client address (`--client`), for policies.
    pub client: Option<IpAddr>,
}

impl Probe {
    /// Parses `METHOD URL` and `name: value` header lines; `Err` says what is wrong.
    pub fn parse(method: &str, url: &str, headers: &[String]) -> Result<Probe, String> {
        let (scheme, rest) =
            url.split_once("://").ok_or_else(|| format!("{url:?}: expected scheme://host[:port]/path"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            "tcp" => 0,
            other => return Err(format!("{url:?}: scheme {other:?} is not http, https or tcp")),
        };
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (url_authority, path) = rest.split_at(end);
        if url_authority.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        let (host, port) = crate::matcher::split_authority(url_authority);
        let port = match port {
            Some(p) => p.parse().map_err(|_| format!("{url:?}: port {p:?} is not a number from 1 to 65535"))?,
            None if default_port == 0 => return Err(format!("{url:?}: a tcp:// URL needs a port")),
            None => default_port,
        };
        let mut probe = Probe {
            method: method.to_ascii_uppercase(),
            scheme: scheme.clone(),
            authority: url_authority.to_string(),
            port,
            path: if path.starts_with('/') { path.to_string() } else { format!("/{path}") },
            headers: Vec::new(),
            sni: (scheme == "https").then(|| host.trim_start_matches('[').trim_end_matches(']').to_string()),
            client: None,
        };
        for line in headers {
            let (name, value) =
                line.split_once(':').ok_or_else(|| format!("header {line:?}: expected 'name: value'"))?;
            let name = name.trim().to_ascii_lowercase();
            if name.is_empty() {
                return Err(format!("header {line:?}: the name is empty"));
            }
            if name == "host" {
                value.trim().clone_into(&mut probe.authority);
            } else {
                probe.headers.push((name, value.trim().to_string()));
            }
        }
        Ok(probe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_gives_port_authority_path_and_sni() {
        let p = Probe::parse("get", "https://a.example.com/x?y=1", &[]).unwrap();
        assert_eq!(
            (p.method.as_str(), p.port, p.authority.as_str(), p.path.as_str()),
            ("GET", 443, "a.example.com", "/x?y=1")
        );
        assert_eq!(p.sni.as_deref(), Some("a.example.com"));
        let p = Probe::parse("GET", "http://a:8080", &[]).unwrap();
        assert_eq!((p.port, p.authority.as_str(), p.path.as_str(), p.sni), (8080, "a:8080", "/", None));
    }

    #[test]
    fn a_host_header_is_the_authority() {
        let p = Probe::parse("GET", "http://127.0.0.1/", &["Host: b.example".into(), "X-A: 1".into()]).unwrap();
        assert_eq!(p.authority, "b.example");
        assert_eq!(p.headers, vec![("x-a".to_string(), "1".to_string())]);
    }

    #[test]
    fn bad_input_says_what_is_wrong() {
        assert!(Probe::parse("GET", "a.example.com/x", &[]).unwrap_err().contains("scheme://"));
        assert!(Probe::parse("GET", "ftp://a/", &[]).unwrap_err().contains("ftp"));
        assert!(Probe::parse("GET", "http://a:99999/", &[]).unwrap_err().contains("port"));
        assert!(Probe::parse("GET", "http://a/", &["novalue".into()]).unwrap_err().contains("name: value"));
    }
}
