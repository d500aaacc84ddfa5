//! The command line (README "Command line"). Every flag of `run` parses from the first
//! release; a flag whose feature is not built yet is accepted with a warning.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Pylon: an Istio-compatible gateway workload on Pingora.
#[derive(Debug, Parser)]
#[command(name = "pylon", version, about, disable_help_subcommand = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the Gateways that select this workload.
    Run(Box<RunArgs>),
    /// Check the configuration and list every problem (exit 0 valid, 1 invalid, 2 unreadable).
    Validate(Selection),
    /// Print the listeners, virtual hosts, routes and clusters this workload would serve.
    Routes(RoutesArgs),
    /// Where one request goes, and why: listener, server, virtual host, every route tried,
    /// policies, action and cluster.
    Explain(Box<ExplainArgs>),
    /// What a configuration change changes in the compiled table (exit 0 nothing, 1 changes, 2
    /// the new configuration is invalid).
    Diff(Box<DiffArgs>),
    /// Print the version.
    Version,
}

/// What selects and resolves the configuration; shared by every verb.
#[derive(Debug, Clone, Args)]
pub struct Selection {
    /// Configuration files or directories (read in the order given; directories recursively).
    #[arg(long = "config", value_name = "PATH", required = true)]
    pub config: Vec<PathBuf>,
    /// This workload's labels, which Gateway selectors must match.
    #[arg(long, value_name = "k=v[,k=v...]", default_value = "istio=ingressgateway", value_parser = parse_labels)]
    pub labels: BTreeMap<String, String>,
    /// This workload's namespace, and that of resources without one.
    #[arg(long, value_name = "NS", default_value = "default")]
    pub namespace: String,
    /// credentialName NAME → DIR/NAME/{tls.crt,tls.key,ca.crt}.
    #[arg(long, value_name = "DIR")]
    pub credentials_dir: Option<PathBuf>,
    /// Istio MeshConfig YAML (the subset Pylon honours is listed in the README).
    #[arg(long, value_name = "FILE")]
    pub mesh_config: Option<PathBuf>,
    /// The mesh workload identity: DIR/{cert-chain.pem,key.pem,root-cert.pem}, Istio's
    /// file-mounted certificates (DestinationRule `ISTIO_MUTUAL`).
    #[arg(long, value_name = "DIR")]
    pub identity_dir: Option<PathBuf>,
    /// The Gateway API GatewayClass this workload serves (default: Istio's, `istio` or a class
    /// with controllerName istio.io/gateway-controller).
    #[arg(long, value_name = "NAME")]
    pub gateway_class: Option<String>,
    /// Listen on TO for servers that declare port FROM.
    #[arg(long, value_name = "FROM=TO[,FROM=TO...]", value_parser = parse_port_map)]
    pub port_map: Option<PortMap>,
}

/// `pylon routes`.
#[derive(Debug, Args)]
pub struct RoutesArgs {
    /// Selection and configuration.
    #[command(flatten)]
    pub selection: Selection,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Only the external hosts reachable through this gateway (ServiceEntry hosts its routes
    /// forward to), by gateway port, with resolution, TLS origination and source address.
    #[arg(long, conflicts_with = "output")]
    pub egress: bool,
}

/// `pylon explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Selection and configuration.
    #[command(flatten)]
    pub selection: Selection,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// The request method.
    #[arg(value_name = "METHOD")]
    pub method: String,
    /// The URL as a client would request it: `http://host[:port]/path?query`, `https://...`, or
    /// `tcp://host:port`. The port is the Gateway server's (before `--port-map`).
    #[arg(value_name = "URL")]
    pub url: String,
    /// A request header, `name: value` (repeatable); `Host:` replaces the URL's authority.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// The TLS server name sent (default: the URL's host).
    #[arg(long, value_name = "NAME")]
    pub sni: Option<String>,
    /// The client's address, for policies.
    #[arg(long, value_name = "IP")]
    pub client: Option<std::net::IpAddr>,
}

/// `pylon diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The old configuration (`--config`) and the selection both are compiled for.
    #[command(flatten)]
    pub selection: Selection,
    /// The new configuration: files or directories.
    #[arg(long, value_name = "PATH", required = true)]
    pub against: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// `pylon routes --output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable.
    Text,
    /// JSON.
    Json,
}

/// `pylon run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Selection and configuration.
    #[command(flatten)]
    pub selection: Selection,
    /// source_workload in metrics (default: the `app` label, else "pylon").
    #[arg(long, value_name = "NAME")]
    pub workload_name: Option<String>,
    /// Readiness endpoint address.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:15021")]
    pub status_addr: SocketAddr,
    /// Prometheus endpoint address.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:15090")]
    pub metrics_addr: SocketAddr,
    /// Admin endpoint address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:15000")]
    pub admin_addr: SocketAddr,
    /// Data-plane worker threads (default: available CPUs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// Seconds to keep serving after SIGTERM.
    #[arg(long, value_name = "S", default_value_t = 5)]
    pub drain_seconds: u64,
    /// Seconds an HTTP/1.1 request head may take to arrive, from its first byte (slowloris guard;
    /// nginx's `client_header_timeout`).
    #[arg(long, value_name = "S", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_headers_timeout: u64,
    /// Seconds a client connection may stay without a request before it is closed (Istio's idle
    /// timeout).
    #[arg(long, value_name = "S", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: u64,
    /// Seconds a request may wait for a byte from the upstream, response or upgraded connection
    /// (Envoy's `stream_idle_timeout`).
    #[arg(long, value_name = "S", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub stream_idle_timeout: u64,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Access log destination: a file, `-` for stdout, or `off`.
    #[arg(long, value_name = "PATH|-|off", default_value = "-")]
    pub access_log: String,
    /// A DNS server (IP:PORT) for ServiceEntry DNS resolution instead of the system's resolv.conf.
    #[arg(long, value_name = "ADDR")]
    pub dns_server: Option<SocketAddr>,
    /// Offer the listening sockets to a successor process on this Unix socket (binary upgrade:
    /// SIGUSR2 starts the successor).
    #[arg(long, value_name = "PATH")]
    pub upgrade_socket: Option<PathBuf>,
    /// Start by taking over the listening sockets of the process offering them on this Unix
    /// socket; it drains once this one serves.
    #[arg(long, value_name = "PATH")]
    pub upgrade_from: Option<PathBuf>,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `--port-map`: declared port → listening port (0 = ephemeral).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortMap(pub BTreeMap<u16, u16>);

impl PortMap {
    /// The port to listen on for a declared port.
    pub fn listen_port(&self, declared: u16) -> u16 {
        self.0.get(&declared).copied().unwrap_or(declared)
    }
}

fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for pair in s.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| format!("label {pair:?} is not k=v"))?;
        if k.is_empty() {
            return Err(format!("label {pair:?} has an empty key"));
        }
        labels.insert(k.to_string(), v.to_string());
    }
    Ok(labels)
}

fn parse_port_map(s: &str) -> Result<PortMap, String> {
    let mut map = BTreeMap::new();
    for pair in s.split(',').filter(|p| !p.is_empty()) {
        let (from, to) = pair.split_once('=').ok_or_else(|| format!("port mapping {pair:?} is not FROM=TO"))?;
        let from: u16 = from.parse().map_err(|_| format!("{from:?} is not a port"))?;
        let to: u16 = to.parse().map_err(|_| format!("{to:?} is not a port"))?;
        if to != 0 {
            if let Some((other, _)) = map.iter().find(|(_, t)| **t == to) {
                return Err(format!("ports {other} and {from} are both mapped to {to}"));
            }
        }
        map.insert(from, to);
    }
    Ok(PortMap(map))
}

impl Selection {
    /// The `conf` selection these flags describe.
    pub fn to_conf(&self) -> Result<conf::Selection, String> {
        let mut sel = conf::Selection {
            labels: self.labels.clone(),
            namespace: self.namespace.clone(),
            credentials_dir: self.credentials_dir.clone(),
            identity_dir: self.identity_dir.clone(),
            gateway_class: self.gateway_class.clone(),
            ..conf::Selection::default()
        };
        if let Some(path) = &self.mesh_config {
            let mesh = conf::mesh::MeshConfig::read(path)?;
            for field in &mesh.ignored {
                eprintln!("warning[no-effect] MeshConfig {field}: not used by a Pylon gateway; it has no effect");
            }
            mesh.apply(&mut sel);
        }
        Ok(sel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_as_pairs() {
        let l = parse_labels("istio=ingressgateway,app=edge").unwrap();
        assert_eq!(l.get("app").map(String::as_str), Some("edge"));
        assert!(parse_labels("nokey").is_err());
    }

    #[test]
    fn two_ports_mapped_to_one_is_an_error() {
        assert!(parse_port_map("80=8080,443=8080").is_err());
        assert_eq!(parse_port_map("80=0,443=0").unwrap().listen_port(443), 0);
        assert_eq!(parse_port_map("80=8080").unwrap().listen_port(9090), 9090);
    }

    #[test]
    fn every_run_flag_parses() {
        let cli = Cli::try_parse_from([
            "pylon",
            "run",
            "--config",
            "a",
            "--config",
            "b",
            "--labels",
            "istio=ingressgateway",
            "--namespace",
            "ns",
            "--workload-name",
            "w",
            "--port-map",
            "80=8080",
            "--mesh-config",
            "m.yaml",
            "--credentials-dir",
            "/c",
            "--status-addr",
            "127.0.0.1:1",
            "--metrics-addr",
            "127.0.0.1:2",
            "--admin-addr",
            "127.0.0.1:3",
            "--threads",
            "2",
            "--drain-seconds",
            "1",
            "--request-headers-timeout",
            "10",
            "--idle-timeout",
            "600",
            "--stream-idle-timeout",
            "30",
            "--log-format",
            "json",
            "--access-log",
            "off",
        ]);
        assert!(cli.is_ok(), "{cli:?}");
    }
}
