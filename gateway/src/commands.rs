//! The verbs: `validate`, `routes`, `explain`, `diff`, `run`, `version`. Each returns the process exit status.

use std::io::Write;
use std::time::Duration;

use crate::cli::{DiffArgs, ExplainArgs, Output, RoutesArgs, RunArgs, Selection};

/// Exit status: the configuration is valid.
pub const EXIT_OK: u8 = 0;
/// Exit status: the configuration is invalid.
pub const EXIT_INVALID: u8 = 1;
/// Exit status of `diff`: the configurations compile to different tables.
pub const EXIT_CHANGES: u8 = 1;
/// Exit status: unreadable input or bad usage.
pub const EXIT_USAGE: u8 = 2;

fn build(sel: &Selection) -> Result<conf::Built, u8> {
    let selection = sel.to_conf().map_err(|e| {
        eprintln!("pylon: {e}");
        EXIT_USAGE
    })?;
    conf::build(&sel.config, &selection).map_err(|e| {
        eprintln!("pylon: {e}");
        EXIT_USAGE
    })
}

/// `pylon validate`: diagnostics on stdout, one per line, then a summary on stderr.
pub fn validate(sel: &Selection) -> u8 {
    let built = match build(sel) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let mut stdout = std::io::stdout().lock();
    let _ = write!(stdout, "{}", built.diagnostics);
    // The Gateway API status a controller would write: every condition, not only those that fail.
    let _ = write!(stdout, "{}", conf::render::gateway_api_status(&built.table));
    let errors = built.diagnostics.error_count();
    let warnings = built.diagnostics.0.len() - errors;
    if built.is_valid() {
        eprintln!(
            "valid: {} listener(s), {} cluster(s), {warnings} warning(s)",
            built.table.listeners.len(),
            built.table.clusters.len()
        );
        EXIT_OK
    } else {
        eprintln!("invalid: {errors} error(s), {warnings} warning(s)");
        EXIT_INVALID
    }
}

/// `pylon routes`: the table on stdout; diagnostics on stderr; exit 1 when invalid.
pub fn routes(args: &RoutesArgs) -> u8 {
    let built = match build(&args.selection) {
        Ok(b) => b,
        Err(code) => return code,
    };
    eprint!("{}", built.diagnostics);
    if !built.is_valid() {
        eprintln!("invalid: {} error(s); fix them to see the routes", built.diagnostics.error_count());
        return EXIT_INVALID;
    }
    if args.egress {
        let _ = std::io::stdout().lock().write_all(conf::render::egress(&built.table).as_bytes());
        return EXIT_OK;
    }
    if let (Some(dir), Output::Text) = (&args.selection.identity_dir, args.output) {
        let identity =
            crate::tls::identity::read(dir).map_or_else(|why| format!("UNREADABLE: {why}"), |id| id.to_string());
        let _ = writeln!(std::io::stdout().lock(), "IDENTITY {identity}");
    }
    print(args.output, &built.table, conf::render::text)
}

/// `pylon explain`: the explanation on stdout; diagnostics on stderr; exit 1 when the
/// configuration is invalid, 2 when the request cannot be understood.
pub fn explain(args: &ExplainArgs) -> u8 {
    let mut probe = match conf::explain::Probe::parse(&args.method, &args.url, &args.headers) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pylon: {e}");
            return EXIT_USAGE;
        }
    };
    if let Some(sni) = &args.sni {
        probe.sni = Some(sni.clone());
    }
    probe.client = args.client;
    let built = match build(&args.selection) {
        Ok(b) => b,
        Err(code) => return code,
    };
    eprint!("{}", built.diagnostics);
    if !built.is_valid() {
        eprintln!("invalid: {} error(s); fix them to explain requests", built.diagnostics.error_count());
        return EXIT_INVALID;
    }
    let mut e = conf::explain::explain(&built.table, &probe);
    crate::explain::policies(&built.table, &mut e);
    print(args.output, &e, conf::explain::text)
}

/// `pylon diff`: what changes from `--config` to `--against`, on stdout. Exit 0: no change; 1:
/// changes; 2: the new configuration is invalid (its new errors are listed) or unreadable.
pub fn diff(args: &DiffArgs) -> u8 {
    let old = match build(&args.selection) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let against = Selection { config: args.against.clone(), ..args.selection.clone() };
    let new = match build(&against) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let report = conf::diff::compare(&old, &new);
    let printed = print(args.output, &report, conf::diff::render_text);
    if printed != EXIT_OK {
        printed
    } else if !report.new_valid {
        EXIT_USAGE
    } else if report.has_changes() {
        EXIT_CHANGES
    } else {
        EXIT_OK
    }
}

/// Writes `value` as text or JSON on stdout.
fn print<T: serde::Serialize>(output: Output, value: &T, text: fn(&T) -> String) -> u8 {
    let out = match output {
        Output::Text => text(value),
        Output::Json => match serde_json::to_string_pretty(value) {
            Ok(json) => json + "\n",
            Err(e) => {
                eprintln!("pylon: cannot encode the output: {e}");
                return EXIT_INVALID;
            }
        },
    };
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    EXIT_OK
}

/// `pylon run`: refuses invalid configuration (exit 1, diagnostics on stderr) and ports it cannot
/// bind (exit 1 naming the port); serves until SIGTERM or SIGINT, then drains and exits 0.
pub fn run(args: &RunArgs) -> u8 {
    if std::env::var_os(DETACH).is_some() {
        return detach();
    }
    crate::logging::init(args.log_format);
    let mut signals = match crate::signals::Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pylon: cannot install signal handlers: {e}");
            return EXIT_INVALID;
        }
    };
    let opts = match options(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("pylon: {e}");
            return EXIT_USAGE;
        }
    };
    // The binary as it was named at start-up: after a package upgrade replaced the file, this path
    // names the new binary (SIGUSR2 starts it), while /proc/self/exe then names the deleted one.
    let exe = std::env::current_exe();
    let mut running = match start(&opts) {
        Ok(r) => r,
        Err(code) => return code,
    };
    for d in running.diagnostics.iter() {
        tracing::warn!("{d}");
    }
    if let Some(dir) = &opts.selection.identity_dir {
        crate::tls::identity::log(dir);
    }
    tracing::info!(status = %running.status_addr, listeners = running.listeners.len(), "ready");
    let status = format!("serving generation {}", running.state.snapshot().generation);
    if opts.upgrade_from.is_some() {
        // The successor of a binary upgrade becomes the unit's main process.
        crate::systemd::ready_as_main(&status);
    } else {
        crate::systemd::ready(&status);
    }
    if let Some(rx) = running.handed_over.take() {
        signals.watch_upgrade(rx);
    }
    match serve(&running, &mut signals, &opts, exe.as_deref().ok()) {
        Ended::Signal(signal) => {
            tracing::info!(%signal, drain_seconds = args.drain_seconds, "draining");
            crate::systemd::stopping();
            let window = Duration::from_secs(args.drain_seconds);
            drain(running, signals, move |r| r.drain(window, DRAIN_GRACE));
        }
        Ended::HandedOver(pid) => {
            tracing::info!(successor = pid, "handed over to pid {pid}; draining what is in flight");
            let window = Duration::from_secs(args.drain_seconds);
            drain(running, signals, move |r| r.hand_over(window, DRAIN_GRACE));
        }
    }
    EXIT_OK
}

/// `pylon run`'s options for the server.
fn options(args: &RunArgs) -> Result<crate::server::Options, String> {
    Ok(crate::server::Options {
        config: args.selection.config.clone(),
        selection: args.selection.to_conf()?,
        port_map: args.selection.port_map.clone().unwrap_or_default().0,
        status_addr: args.status_addr,
        threads: args.threads.map_or_else(default_threads, usize::from),
        dns_server: args.dns_server,
        metrics_addr: Some(args.metrics_addr),
        admin_addr: Some(args.admin_addr),
        workload_name: args.workload_name.clone(),
        access_log: access_log(args),
        upgrade_socket: args.upgrade_socket.clone(),
        upgrade_from: args.upgrade_from.clone(),
        request_headers_timeout: Duration::from_secs(args.request_headers_timeout),
        idle_timeout: Duration::from_secs(args.idle_timeout),
        stream_idle_timeout: Duration::from_secs(args.stream_idle_timeout),
    })
}

/// Starts the gateway, or says why not and returns the exit status.
fn start(opts: &crate::server::Options) -> Result<crate::server::Running, u8> {
    crate::server::start(opts).map_err(|e| match e {
        crate::server::StartError::Invalid(diagnostics) => {
            eprint!("{diagnostics}");
            eprintln!("pylon: refusing to start: {} error(s) in the configuration", diagnostics.error_count());
            EXIT_INVALID
        }
        crate::server::StartError::Load(e) => {
            eprintln!("pylon: {e}");
            EXIT_USAGE
        }
        e => {
            eprintln!("pylon: {e}");
            EXIT_INVALID
        }
    })
}

/// Why serving ended.
enum Ended {
    /// SIGTERM or SIGINT.
    Signal(&'static str),
    /// A successor serves (binary upgrade).
    HandedOver(u32),
}

/// Serves until SIGTERM or SIGINT, or until a successor serves; SIGHUP reloads, SIGUSR1 reopens
/// the access log, SIGUSR2 starts a successor.
fn serve(
    running: &crate::server::Running,
    signals: &mut crate::signals::Signals,
    opts: &crate::server::Options,
    exe: Option<&std::path::Path>,
) -> Ended {
    loop {
        match signals.wait() {
            crate::signals::Asked::Reload => {
                crate::systemd::reloading();
                // The outcome (applied or refused, with every diagnostic) is logged by the reload;
                // either way the gateway is serving again.
                let _ = running.reload_blocking();
                crate::systemd::ready(&format!("serving generation {}", running.state.snapshot().generation));
            }
            crate::signals::Asked::Reopen => {
                if let Some(log) = &running.telemetry.access_log {
                    log.reopen();
                }
            }
            crate::signals::Asked::Upgrade => start_successor(opts, exe),
            crate::signals::Asked::HandedOver(pid) => return Ended::HandedOver(pid),
            crate::signals::Asked::Stop(name) => return Ended::Signal(name),
        }
    }
}

/// SIGUSR2: starts the binary on disk with this process's arguments and `--upgrade-from`; it
/// takes the sockets over and this process drains once it serves (`crate::upgrade`). A successor
/// that fails leaves this process serving.
///
/// The successor is started through a short-lived intermediate process (the same binary with
/// [`DETACH`] set) that exits at once, so the successor is re-parented to the init process. Under
/// systemd (PID 1) that makes it a child of the service manager when it announces itself as the
/// unit's main process: systemd then sees it exit and drains it on stop like the first one, instead
/// of supervising a process "which is not our child" and killing it outright on `systemctl stop`.
fn start_successor(opts: &crate::server::Options, exe: Option<&std::path::Path>) {
    let Some(socket) = &opts.upgrade_socket else {
        return tracing::warn!("SIGUSR2 ignored: a binary upgrade needs --upgrade-socket");
    };
    let Some(exe) = exe else {
        return tracing::warn!("SIGUSR2 ignored: the path of this binary is unknown");
    };
    let args = crate::upgrade::successor_args(std::env::args_os().skip(1), socket);
    match std::process::Command::new(exe).args(&args).env(DETACH, "1").status() {
        Ok(status) if status.success() => {
            tracing::info!(exe = %exe.display(), "SIGUSR2: started a successor from {}", exe.display());
        }
        Ok(status) => tracing::error!(exe = %exe.display(), %status, "SIGUSR2: cannot start a successor"),
        Err(e) => tracing::error!(exe = %exe.display(), error = %e, "SIGUSR2: cannot start a successor"),
    }
}

/// In the environment of the intermediate process of a binary upgrade (see [`start_successor`]).
pub const DETACH: &str = "PYLON_UPGRADE_DETACH";

/// The intermediate process of a binary upgrade: starts this binary again with the same arguments
/// (without [`DETACH`]) and exits without waiting for it.
fn detach() -> u8 {
    let started = std::env::current_exe()
        .and_then(|exe| std::process::Command::new(exe).args(std::env::args_os().skip(1)).env_remove(DETACH).spawn());
    match started {
        Ok(_) => EXIT_OK,
        Err(e) => {
            eprintln!("pylon: cannot start the successor: {e}");
            EXIT_INVALID
        }
    }
}

/// Drains (`how`) on another thread; a second SIGTERM or SIGINT ends the process at once.
fn drain(
    running: crate::server::Running,
    mut signals: crate::signals::Signals,
    how: impl FnOnce(crate::server::Running) -> usize + Send + 'static,
) {
    let (done, drained) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(how(running));
    });
    loop {
        match drained.try_recv() {
            Ok(_) | Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
            Err(std::sync::mpsc::TryRecvError::Empty) => {}
        }
        if let Some(crate::signals::Asked::Stop(again)) = signals.wait_timeout(Duration::from_millis(50)) {
            tracing::warn!(signal = %again, "second signal: stopping without finishing the drain");
            return;
        }
    }
    tracing::info!("stopped");
}

/// In-flight requests, streams, WebSockets and TCP connections get this long to finish once
/// listeners stop accepting.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// `--access-log PATH|-|off` with `--log-format`.
fn access_log(args: &RunArgs) -> Option<(crate::telemetry::access_log::Target, bool)> {
    use crate::telemetry::access_log::Target;
    let json = args.log_format == crate::cli::LogFormat::Json;
    match args.access_log.as_str() {
        "off" => None,
        "-" => Some((Target::Stdout, json)),
        path => Some((Target::File(path.into()), json)),
    }
}

/// `pylon version`.
pub fn version() -> u8 {
    println!("pylon {}", env!("CARGO_PKG_VERSION"));
    EXIT_OK
}
