//! The access log: one line per request in the format Istio configures for Envoy (the default TEXT
//! format of `pilot/pkg/model/telemetry_logging.go`, or the same fields as JSON). Lines are written
//! off the request path by a thread of their own through a bounded queue: a worker never waits on
//! the disk; when the writer falls behind, lines are dropped and counted. SIGUSR1 reopens the file
//! (logrotate).

use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::time::SystemTime;

use prometheus::IntCounter;

/// Lines waiting for the writer at most.
const QUEUE: usize = 16 * 1024;

/// One request, as the access log describes it. `None` and empty fields print as `-`.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    /// When the request started.
    pub start: Option<SystemTime>,
    /// `%REQ(:METHOD)%`.
    pub method: String,
    /// `%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%`.
    pub path: String,
    /// `%PROTOCOL%` (`HTTP/1.1`, `HTTP/2`).
    pub protocol: String,
    /// `%RESPONSE_CODE%` (0 when none was sent).
    pub code: u16,
    /// `%RESPONSE_FLAGS%`.
    pub flags: String,
    /// `%RESPONSE_CODE_DETAILS%` (`via_upstream`, `route_not_found`, ...).
    pub details: String,
    /// `%UPSTREAM_TRANSPORT_FAILURE_REASON%`.
    pub transport_failure: String,
    /// `%BYTES_RECEIVED%` (request body).
    pub bytes_received: u64,
    /// `%BYTES_SENT%` (response body).
    pub bytes_sent: u64,
    /// `%DURATION%` in milliseconds.
    pub duration_ms: u64,
    /// `%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%`.
    pub upstream_service_time: Option<u64>,
    /// `%REQ(X-FORWARDED-FOR)%` as received.
    pub forwarded_for: String,
    /// `%REQ(USER-AGENT)%`.
    pub user_agent: String,
    /// `%REQ(X-REQUEST-ID)%`.
    pub request_id: String,
    /// `%REQ(:AUTHORITY)%`.
    pub authority: String,
    /// `%UPSTREAM_HOST%`.
    pub upstream_host: String,
    /// `%UPSTREAM_CLUSTER_RAW%`.
    pub upstream_cluster: String,
    /// `%DOWNSTREAM_LOCAL_ADDRESS%`.
    pub downstream_local: String,
    /// `%DOWNSTREAM_REMOTE_ADDRESS%`.
    pub downstream_remote: String,
    /// `%REQUESTED_SERVER_NAME%` (SNI).
    pub sni: String,
    /// `%ROUTE_NAME%`.
    pub route_name: String,
}

fn dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// RFC 3339 in UTC with milliseconds, as Envoy's `%START_TIME%`.
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let (secs, millis) = (since.as_secs(), since.subsec_millis());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Istio's default TEXT format.
pub fn text(e: &Entry) -> String {
    let start = e.start.map(rfc3339).unwrap_or_default();
    let service_time = e.upstream_service_time.map(|t| t.to_string()).unwrap_or_default();
    format!(
        "[{}] \"{} {} {}\" {} {} {} - \"{}\" {} {} {} {} \"{}\" \"{}\" \"{}\" \"{}\" \"{}\" {} - {} {} {} {}",
        dash(&start),
        dash(&e.method),
        dash(&e.path),
        dash(&e.protocol),
        e.code,
        dash(&e.flags),
        dash(&e.details),
        dash(&e.transport_failure),
        e.bytes_received,
        e.bytes_sent,
        e.duration_ms,
        dash(&service_time),
        dash(&e.forwarded_for),
        dash(&e.user_agent),
        dash(&e.request_id),
        dash(&e.authority),
        dash(&e.upstream_host),
        dash(&e.upstream_cluster),
        dash(&e.downstream_local),
        dash(&e.downstream_remote),
        dash(&e.sni),
        dash(&e.route_name),
    )
}

/// The same fields as Istio's JSON encoding (`EnvoyJSONLogFormatIstio`).
pub fn json(e: &Entry) -> String {
    let opt = |s: &str| if s.is_empty() { serde_json::Value::Null } else { serde_json::Value::from(s) };
    serde_json::json!({
        "start_time": e.start.map(rfc3339),
        "route_name": opt(&e.route_name),
        "method": opt(&e.method),
        "path": opt(&e.path),
        "protocol": opt(&e.protocol),
        "response_code": e.code,
        "response_flags": opt(&e.flags),
        "response_code_details": opt(&e.details),
        "connection_termination_details": null,
        "bytes_received": e.bytes_received,
        "bytes_sent": e.bytes_sent,
        "duration": e.duration_ms,
        "upstream_service_time": e.upstream_service_time,
        "x_forwarded_for": opt(&e.forwarded_for),
        "user_agent": opt(&e.user_agent),
        "request_id": opt(&e.request_id),
        "authority": opt(&e.authority),
        "upstream_host": opt(&e.upstream_host),
        "upstream_cluster": opt(&e.upstream_cluster),
        "upstream_local_address": null,
        "downstream_local_address": opt(&e.downstream_local),
        "downstream_remote_address": opt(&e.downstream_remote),
        "requested_server_name": opt(&e.sni),
        "upstream_transport_failure_reason": opt(&e.transport_failure),
    })
    .to_string()
}

/// Where the log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Standard output.
    Stdout,
    /// A file, appended to and reopened on SIGUSR1.
    File(PathBuf),
}

enum Message {
    Line(String),
    Reopen,
}

/// A running access log.
pub struct AccessLog {
    tx: SyncSender<Message>,
    json: bool,
    dropped: IntCounter,
}

impl AccessLog {
    /// Starts the writer thread for `target`; lines dropped when it falls behind count on
    /// `dropped`.
    pub fn start(target: Target, json: bool, dropped: IntCounter) -> std::io::Result<Self> {
        let mut out = open(&target)?;
        let (tx, rx) = sync_channel::<Message>(QUEUE);
        std::thread::Builder::new().name("pylon-access-log".into()).spawn(move || {
            while let Ok(first) = rx.recv() {
                // Write what is queued, then flush once.
                for m in std::iter::once(first).chain(rx.try_iter()) {
                    match m {
                        Message::Line(line) => {
                            let _ = out.write_all(line.as_bytes());
                            let _ = out.write_all(b"\n");
                        }
                        Message::Reopen => match open(&target) {
                            Ok(new) => {
                                let _ = out.flush();
                                out = new;
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "cannot reopen the access log; writing to the old file")
                            }
                        },
                    }
                }
                let _ = out.flush();
            }
        })?;
        Ok(AccessLog { tx, json, dropped })
    }

    /// Queues the line for `e`; never waits.
    pub fn log(&self, e: &Entry) {
        let line = if self.json { json(e) } else { text(e) };
        if let Err(TrySendError::Full(_)) = self.tx.try_send(Message::Line(line)) {
            self.dropped.inc();
        }
    }

    /// Reopens the file (after logrotate moved it).
    pub fn reopen(&self) {
        let _ = self.tx.try_send(Message::Reopen);
    }
}

fn open(target: &Target) -> std::io::Result<Box<dyn Write + Send>> {
    Ok(match target {
        Target::Stdout => Box::new(std::io::BufWriter::new(std::io::stdout())),
        Target::File(path) => {
            Box::new(std::io::BufWriter::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry() -> Entry {
        Entry {
            start: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_441_788_123)),
            method: "GET".into(),
            path: "/status/418".into(),
            protocol: "HTTP/1.1".into(),
            code: 418,
            flags: "-".into(),
            details: "via_upstream".into(),
            bytes_received: 0,
            bytes_sent: 135,
            duration_ms: 4,
            upstream_service_time: Some(3),
            forwarded_for: "10.0.0.1".into(),
            user_agent: "curl/8.0".into(),
            request_id: "abc".into(),
            authority: "httpbin.example.com".into(),
            upstream_host: "10.1.2.3:8000".into(),
            upstream_cluster: "outbound|8000||httpbin.default.svc.cluster.local".into(),
            downstream_local: "10.0.0.2:8080".into(),
            downstream_remote: "10.0.0.1:51234".into(),
            sni: String::new(),
            route_name: String::new(),
            transport_failure: String::new(),
        }
    }

    #[test]
    fn text_lines_follow_istios_format() {
        assert_eq!(
            text(&entry()),
            "[2025-11-29T18:43:08.123Z] \"GET /status/418 HTTP/1.1\" 418 - via_upstream - \"-\" 0 135 4 3 \"10.0.0.1\" \"curl/8.0\" \"abc\" \"httpbin.example.com\" \"10.1.2.3:8000\" outbound|8000||httpbin.default.svc.cluster.local - 10.0.0.2:8080 10.0.0.1:51234 - -"
        );
    }

    #[test]
    fn json_lines_have_istios_keys() {
        let v: serde_json::Value = serde_json::from_str(&json(&entry())).unwrap();
        assert_eq!(v["response_code"], 418);
        assert_eq!(v["upstream_cluster"], "outbound|8000||httpbin.default.svc.cluster.local");
        assert_eq!(v["start_time"], "2025-11-29T18:43:08.123Z");
        assert!(v["requested_server_name"].is_null());
    }

    #[test]
    fn start_times_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(951_782_400_500)),
            "2000-02-29T00:00:00.500Z"
        );
    }
}
