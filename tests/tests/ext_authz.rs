//! `CUSTOM` AuthorizationPolicies: the external HTTP authorizer named in MeshConfig
//! `extensionProviders` decides, as in Istio's task
//! (istio.io/latest/docs/tasks/security/authorization/authz-custom/).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use e2e::client::{get, http1};
use e2e::gateway::Setup;
use e2e::yaml::{gateway, service, virtual_service};
use e2e::{TestGateway, Upstream};
use http_body_util::Full;
use hyper::{Request, Response};

/// Istio's sample authorizer: allows requests carrying `x-ext-authz: allow`; records the paths
/// it was asked about.
struct Authorizer {
    addr: SocketAddr,
    asked: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Authorizer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn decide(
    req: Request<hyper::body::Incoming>,
    asked: Arc<Mutex<Vec<String>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    asked.lock().unwrap().push(format!("{} {}", req.method(), req.uri()));
    let allow = req.headers().get("x-ext-authz").is_some_and(|v| v == "allow");
    let broken = req.headers().get("x-ext-authz").is_some_and(|v| v == "break");
    let resp = if broken {
        Response::builder().status(500).body(Full::new(Bytes::from("authorizer failure")))
    } else if allow {
        Response::builder().status(200).header("x-ext-authz-check-result", "allowed").body(Full::new(Bytes::new()))
    } else {
        Response::builder()
            .status(403)
            .header("x-ext-authz-check-result", "denied")
            .header("x-internal", "secret")
            .body(Full::new(Bytes::from(
                "denied by ext_authz for not found header `x-ext-authz: allow` in the request",
            )))
    };
    Ok(resp.unwrap())
}

impl Authorizer {
    async fn start() -> Authorizer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| decide(req, log.clone()));
                    let io = hyper_util::rt::TokioIo::new(tcp);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        Authorizer { addr, asked, task }
    }
}

/// The gateway, the `app` service, the authorizer's ServiceEntry on `port`, and a CUSTOM policy
/// sending `/headers*` to the provider `sample`.
fn config(up: &Upstream, port: u16) -> String {
    gateway(80, &["*"])
        + &service("app", "app.internal", &[up])
        + &virtual_service("vs", &["*"], "- route: [{destination: {host: app.internal}}]")
        + &format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: authz}}\nspec:\n  hosts: [ext-authz.internal]\n  ports: [{{number: 8000, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}}}]\n---\n")
        + "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ext-authz}\nspec:\n  selector: {matchLabels: {istio: ingressgateway}}\n  action: CUSTOM\n  provider: {name: sample}\n  rules:\n  - to: [{operation: {paths: [\"/headers*\"]}}]\n"
}

fn mesh(extra: &str) -> String {
    format!(
        "extensionProviders:\n- name: sample\n  envoyExtAuthzHttp:\n    service: ext-authz.internal\n    port: 8000\n    timeout: 2s\n    includeRequestHeadersInCheck: [x-ext-authz]\n    headersToUpstreamOnAllow: [x-ext-authz-check-result]\n    headersToDownstreamOnDeny: [x-ext-authz-check-result]\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_policy_asks_the_external_authorizer_and_follows_its_answer() {
    let (up, authz) = (Upstream::start("app").await, Authorizer::start().await);
    let setup = Setup { mesh: Some(mesh("")), ..Setup::default() };
    let gw = TestGateway::start_with(&config(&up, authz.addr.port()), setup);
    let allowed = get(&http1(), &gw.url(80), "", "/headers?a=1", &[("x-ext-authz", "allow")]).await;
    assert_eq!(allowed.status, 200);
    assert_eq!(up.last().header("x-ext-authz-check-result"), Some("allowed"), "headersToUpstreamOnAllow");
    let denied = get(&http1(), &gw.url(80), "", "/headers", &[("x-ext-authz", "deny")]).await;
    assert_eq!(denied.status, 403);
    assert_eq!(denied.body, "denied by ext_authz for not found header `x-ext-authz: allow` in the request");
    assert_eq!(denied.header("x-ext-authz-check-result"), Some("denied"));
    assert_eq!(denied.header("x-internal"), None, "only headersToDownstreamOnDeny reach the client");
    assert_eq!(get(&http1(), &gw.url(80), "", "/other", &[]).await.status, 200, "no rule matches: not asked");
    let broken = get(&http1(), &gw.url(80), "", "/headers/x", &[("x-ext-authz", "break")]).await;
    assert_eq!((broken.status, broken.body.as_str()), (403, ""), "a 5xx is the authorizer's error: statusOnError");
    let asked = authz.asked.lock().unwrap().clone();
    assert_eq!(asked[..2], ["GET /headers?a=1".to_string(), "GET /headers".to_string()]);
    assert_eq!(up.seen().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_authorizer_denies_unless_the_provider_fails_open() {
    let up = Upstream::start("app").await;
    // A port bound but not listening: connections to it are refused, and while the socket lives
    // no other test can take the port (a listener dropped at once would free it for one).
    let reserved = tokio::net::TcpSocket::new_v4().unwrap();
    reserved.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let closed = reserved.local_addr().unwrap().port();
    let gw = TestGateway::start_with(&config(&up, closed), Setup { mesh: Some(mesh("")), ..Setup::default() });
    assert_eq!(get(&http1(), &gw.url(80), "", "/headers", &[]).await.status, 403);
    let setup = Setup { mesh: Some(mesh("    statusOnError: \"503\"\n")), ..Setup::default() };
    let gw = TestGateway::start_with(&config(&up, closed), setup);
    assert_eq!(get(&http1(), &gw.url(80), "", "/headers", &[]).await.status, 503);
    let setup = Setup { mesh: Some(mesh("    failOpen: true\n")), ..Setup::default() };
    let gw = TestGateway::start_with(&config(&up, closed), setup);
    assert_eq!(get(&http1(), &gw.url(80), "", "/headers", &[]).await.status, 200);
}

#[test]
fn a_custom_policy_whose_provider_is_not_defined_refuses_the_configuration() {
    let yaml = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ext-authz}\nspec:\n  action: CUSTOM\n  provider: {name: missing}\n  rules: [{}]\n";
    let built = conf::build_str("c.yaml", yaml, &conf::Selection::default());
    assert!(!built.is_valid());
    assert!(
        built.diagnostics.to_string().contains("provider \"missing\" is not defined in MeshConfig extensionProviders"),
        "{}",
        built.diagnostics
    );
}
