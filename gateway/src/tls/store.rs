//! The TLS material of a snapshot, kept current: one acceptor per terminating server and one
//! origination setting per cluster that originates TLS. [`TlsStore::refresh`] re-reads every
//! source and rebuilds what changed; new handshakes take the new material, open connections keep
//! theirs. Material that cannot be used (unparsable, key mismatch, expired) is refused with a log
//! line naming the file, and the previous material keeps serving.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use conf::table::{
    Certificate, ChainAction, ClusterId, ListenerKind, PemSource, RouteTable, ServerId, ServerTls, TlsMode,
};
use openssl::ssl::SslAcceptor;

use super::acceptor::{self, ServerMaterial};
use super::material::{self, MaterialError, Raw, Role};
use crate::cluster::tls::Origination;
use crate::cluster::Endpoint;

/// Whether an expired certificate is refused (rotation) or only reported (start-up, where the
/// alternative would be serving nothing at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Refuse,
    Warn,
}

/// One rebuildable piece of TLS material.
struct Slot<T> {
    /// What it is, for logs: `default/gw servers[0] (port 443)`.
    name: String,
    /// The sources, in a fixed order.
    sources: Vec<(PemSource, Role)>,
    /// The bytes last tried (built or refused).
    loaded: Mutex<Option<Vec<Raw>>>,
    /// The last problem reported, so a missing file is not reported at every refresh.
    reported: Mutex<Option<MaterialError>>,
    current: ArcSwapOption<T>,
}

impl<T> Slot<T> {
    fn new(name: String, sources: Vec<(PemSource, Role)>) -> Self {
        Slot { name, sources, loaded: Mutex::new(None), reported: Mutex::new(None), current: ArcSwapOption::empty() }
    }

    /// Re-reads the sources; when they changed, builds and installs the new value.
    fn refresh(
        &self,
        dir: Option<&Path>,
        expiry: Expiry,
        build: impl FnOnce(&[Raw], Expiry) -> Result<T, MaterialError>,
    ) {
        let raws: Result<Vec<Raw>, MaterialError> =
            self.sources.iter().map(|(src, role)| material::read(src, *role, dir)).collect();
        let Ok(mut loaded) = self.loaded.lock() else { return };
        let raws = match raws {
            Ok(r) => r,
            Err(e) => {
                self.refuse(&e);
                return;
            }
        };
        if loaded.as_ref() == Some(&raws) {
            return;
        }
        match build(&raws, expiry) {
            Ok(value) => {
                if let Ok(mut last) = self.reported.lock() {
                    *last = None;
                }
                let first = self.current.load().is_none();
                self.current.store(Some(Arc::new(value)));
                if expiry == Expiry::Refuse || !first {
                    tracing::info!(what = %self.name, "TLS material loaded: new handshakes use it");
                }
            }
            Err(e) => self.refuse(&e),
        }
        // Remember what was tried, so one bad file is reported once, not at every refresh.
        *loaded = Some(raws);
    }

    /// The problem last reported and not fixed since.
    fn problem(&self) -> Option<(String, MaterialError)> {
        let last = self.reported.lock().ok()?.clone()?;
        Some((self.name.clone(), last))
    }

    fn refuse(&self, e: &MaterialError) {
        if let Ok(mut last) = self.reported.lock() {
            if last.as_ref() == Some(e) {
                return;
            }
            *last = Some(e.clone());
        }
        if self.current.load().is_some() {
            tracing::error!(what = %self.name, error = %e, "TLS material refused; the previous material keeps serving");
        } else {
            tracing::error!(what = %self.name, error = %e, "TLS material unusable; TLS for it fails until it is fixed");
        }
    }
}

/// The TLS material a cluster needs is missing or unusable (logged when it was read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the TLS material is missing or unusable")]
pub struct Unusable;

/// Where the TLS material of a snapshot comes from, and what was built from it.
pub struct TlsStore {
    credentials_dir: Option<PathBuf>,
    servers: Vec<Option<ServerSlot>>,
    clusters: Vec<Option<ClusterSlot>>,
    /// When the last finished refresh started.
    refreshed: Mutex<Option<Instant>>,
}

struct ServerSlot {
    slot: Slot<SslAcceptor>,
    tls: ServerTls,
    http: bool,
    session_id: Vec<u8>,
}

struct ClusterSlot {
    slot: Slot<Origination>,
    tls: conf::table::ClientTls,
    cluster: String,
}

impl TlsStore {
    /// The material of `table`, loaded once (failures are logged; those servers refuse
    /// handshakes and those clusters answer 503 until the material is fixed).
    pub fn new(table: &RouteTable, credentials_dir: Option<PathBuf>) -> Self {
        let servers = table.servers.iter().enumerate().map(|(id, s)| server_slot(table, id, s)).collect();
        let clusters = table
            .clusters
            .iter()
            .map(|c| {
                let tls = c.policy.origination.clone()?;
                let sources = client_sources(&tls);
                Some(ClusterSlot {
                    slot: Slot::new(format!("cluster {}", c.name), sources),
                    tls,
                    cluster: c.name.clone(),
                })
            })
            .collect();
        let store = TlsStore { credentials_dir, servers, clusters, refreshed: Mutex::new(None) };
        store.load(Expiry::Warn);
        store
    }

    /// Re-reads every source; rebuilds and installs what changed (a bad new file is refused and
    /// the old material kept).
    pub fn refresh(&self) {
        self.load(Expiry::Refuse);
    }

    fn load(&self, expiry: Expiry) {
        let started = Instant::now();
        let dir = self.credentials_dir.as_deref();
        for s in self.servers.iter().flatten() {
            s.slot.refresh(dir, expiry, |raws, expiry| {
                let m = server_material(&s.slot.sources, raws, expiry)?;
                acceptor::build(&s.tls, m, s.http, &s.session_id)
            });
        }
        for c in self.clusters.iter().flatten() {
            c.slot.refresh(dir, expiry, |raws, expiry| {
                Origination::build(&c.cluster, &c.tls, &c.slot.sources, raws, expiry == Expiry::Refuse)
            });
        }
        if let Ok(mut last) = self.refreshed.lock() {
            *last = Some(started);
        }
    }

    /// True once a refresh that started after `t` has finished (tests wait on it).
    pub fn refreshed_since(&self, t: Instant) -> bool {
        self.refreshed.lock().ok().and_then(|last| *last).is_some_and(|last| last > t)
    }

    /// The material currently refused or missing: what it is for, and why.
    pub fn problems(&self) -> Vec<(String, MaterialError)> {
        let servers = self.servers.iter().flatten().filter_map(|s| s.slot.problem());
        servers.chain(self.clusters.iter().flatten().filter_map(|c| c.slot.problem())).collect()
    }

    /// The acceptor of a terminating server; `None` while its material is missing or unusable.
    pub fn acceptor(&self, server: ServerId) -> Option<Arc<SslAcceptor>> {
        self.servers.get(server)?.as_ref()?.slot.current.load_full()
    }

    /// The origination settings of a cluster for `endpoint`: `Ok(None)` for plaintext (and, under
    /// automatic mTLS, for an endpoint that is not a mesh workload), `Err` while its material is
    /// missing or unusable (the request fails; it never leaves in plaintext).
    pub fn origination(&self, cluster: ClusterId, endpoint: &Endpoint) -> Result<Option<Arc<Origination>>, Unusable> {
        match self.clusters.get(cluster).and_then(Option::as_ref) {
            None => Ok(None),
            Some(c) if c.tls.auto && !endpoint.istio_mtls => Ok(None),
            Some(c) => c.slot.current.load_full().map(Some).ok_or(Unusable),
        }
    }

    /// The state of a cluster's origination material: `None` when it originates no TLS.
    pub fn origination_ready(&self, cluster: ClusterId) -> Option<bool> {
        let c = self.clusters.get(cluster)?.as_ref()?;
        Some(c.slot.current.load_full().is_some())
    }

    /// True when no server and no cluster has TLS material (nothing to rotate).
    pub fn is_empty(&self) -> bool {
        self.servers.iter().flatten().next().is_none() && self.clusters.iter().flatten().next().is_none()
    }

    /// The directories to watch for rotation (and whether recursively).
    pub fn watch_dirs(&self) -> Vec<(PathBuf, bool)> {
        let dir = self.credentials_dir.as_deref();
        let sources = self
            .servers
            .iter()
            .flatten()
            .flat_map(|s| s.slot.sources.iter())
            .chain(self.clusters.iter().flatten().flat_map(|c| c.slot.sources.iter()));
        let mut dirs: Vec<(PathBuf, bool)> = sources.flat_map(|(src, _)| material::watch_dirs(src, dir)).collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }
}

/// A slot for every server that terminates TLS on a listener of the table.
fn server_slot(table: &RouteTable, id: ServerId, s: &conf::table::Server) -> Option<ServerSlot> {
    let tls = s.tls.as_ref().filter(|t| t.mode != TlsMode::Passthrough)?;
    let chain = table.listeners.iter().find_map(|l| match &l.kind {
        ListenerKind::Tls { chains, .. } => chains.iter().find(|c| c.server == id),
        _ => None,
    })?;
    let http = matches!(chain.action, ChainAction::Http { .. });
    let verifies_clients = tls.mode != TlsMode::Simple;
    let sources = sources(
        &tls.certificates,
        tls.client_ca.as_ref().filter(|_| verifies_clients),
        tls.ca_crl.as_ref().filter(|_| verifies_clients),
    );
    let name = format!("{} servers[{}] (port {})", s.gateway, s.index, s.port);
    // Sessions resume only on the server that issued them (Envoy hashes its filter chain into the
    // session id context). At most 32 bytes.
    let session_id = openssl::sha::sha256(name.as_bytes()).to_vec();
    Some(ServerSlot { slot: Slot::new(name, sources), tls: tls.clone(), http, session_id })
}

fn client_sources(tls: &conf::table::ClientTls) -> Vec<(PemSource, Role)> {
    sources(tls.client_certificate.as_slice(), tls.ca.as_ref(), tls.ca_crl.as_ref())
}

/// The sources to read, in the order [`material::parse`] expects: each certificate and its key,
/// then the CA, then the CRL.
fn sources(certificates: &[Certificate], ca: Option<&PemSource>, crl: Option<&PemSource>) -> Vec<(PemSource, Role)> {
    let pairs = certificates.iter().flat_map(|c| [(c.cert.clone(), Role::Chain), (c.key.clone(), Role::Key)]);
    let rest = ca.map(|c| (c.clone(), Role::Ca)).into_iter().chain(crl.map(|c| (c.clone(), Role::Crl)));
    pairs.chain(rest).collect()
}

/// A server's parsed material; it needs at least one certificate.
fn server_material(
    sources: &[(PemSource, Role)],
    raws: &[Raw],
    expiry: Expiry,
) -> Result<ServerMaterial, MaterialError> {
    let parsed = material::parse(sources, raws, expiry == Expiry::Refuse)?;
    if parsed.pairs.is_empty() {
        return Err(MaterialError::new("tls", "no server certificate"));
    }
    Ok(ServerMaterial { certificates: parsed.pairs, client_ca: parsed.ca.unwrap_or_default(), crls: parsed.crls })
}
