//! `pylon explain` and the gateway decide alike: 1,000 generated requests against a realistic
//! 50-host configuration (prefix, exact, regex, header, method, query and withoutHeaders matches,
//! ignoreUriCase, weighted destinations, redirects, direct responses, unknown hosts) are explained,
//! then sent to a live gateway; every answer must be the one explained.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use conf::explain::{explain, Action, Explanation, Probe};
use e2e::client::{get, http1, Reply};
use e2e::yaml::{gateway, service, virtual_service};
use e2e::{TestGateway, Upstream};

const HOSTS: usize = 50;
const RULES: usize = 20;
const REQUESTS: usize = 1_000;

/// One rule of host `h`, kind by `r % 10`; each names itself in an `x-route` response header.
fn rule(h: usize, r: usize) -> String {
    let (m, action) = match r % 10 {
        0 => (format!("uri: {{exact: /h{h}/exact/{r}}}"), "route: [{destination: {host: svc-a.test}}]".to_string()),
        1 => (
            format!("uri: {{prefix: /h{h}/p{r}/}}"),
            "route: [{destination: {host: svc-a.test}, weight: 70}, {destination: {host: svc-b.test}, weight: 30}]"
                .to_string(),
        ),
        2 => (format!("uri: {{regex: '/h{h}/re{r}/[0-9]+'}}"), "route: [{destination: {host: svc-c.test}}]".into()),
        3 => (
            format!("uri: {{prefix: /h{h}/}}, headers: {{x-tenant: {{exact: t{r}}}}}"),
            "route: [{destination: {host: svc-b.test}}]".into(),
        ),
        4 => (format!("uri: {{prefix: /h{h}/old{r}/}}"), format!("redirect: {{uri: /new/{r}, redirectCode: 308}}")),
        5 => (
            format!("uri: {{exact: /h{h}/direct{r}}}"),
            format!("directResponse: {{status: 418, body: {{string: \"teapot {h}-{r}\"}}}}"),
        ),
        6 => (
            format!("uri: {{prefix: /h{h}/m{r}}}, method: {{exact: GET}}"),
            "route: [{destination: {host: svc-a.test}}]".into(),
        ),
        7 => (
            format!("uri: {{prefix: /h{h}/q/}}, queryParams: {{v: {{exact: \"{r}\"}}}}"),
            "route: [{destination: {host: svc-c.test}}]".into(),
        ),
        8 => (
            format!("uri: {{prefix: /h{h}/w{r}}}, withoutHeaders: {{x-block: {{exact: \"1\"}}}}"),
            "route: [{destination: {host: svc-b.test}}]".into(),
        ),
        _ => (
            format!("uri: {{prefix: /H{h}/CI{r}}}, ignoreUriCase: true"),
            "route: [{destination: {host: svc-a.test}}]".into(),
        ),
    };
    format!("- match: [{{{m}}}]\n  {action}\n  headers: {{response: {{set: {{x-route: h{h}-r{r}}}}}}}\n")
}

fn configuration(a: &Upstream, b: &Upstream, c: &Upstream) -> String {
    let mut yaml = gateway(80, &["*"]);
    for (name, up) in [("a", a), ("b", b), ("c", c)] {
        yaml += &service(&format!("svc-{name}"), &format!("svc-{name}.test"), &[up]);
    }
    for h in 0..HOSTS {
        let rules: String = (0..RULES).map(|r| rule(h, r)).collect();
        yaml += &virtual_service(&format!("host-{h}"), &[&format!("h{h}.example.com")], &rules);
    }
    yaml
}

/// A small deterministic generator (xorshift), so a failure can be replayed.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// A request aimed at some rule of some host, often slightly off (another host's path, a wrong
/// digit, a missing or wrong header), sometimes at a host no VirtualService has.
fn request(d: &mut Dice) -> (String, String, Vec<(String, String)>) {
    let aimed = d.below(HOSTS);
    let host = if d.below(20) == 0 { "unknown.example.com".to_string() } else { format!("h{aimed}.example.com") };
    // Mostly a path of the host's own rules; sometimes another host's.
    let (h, r) = (if d.below(5) == 0 { d.below(HOSTS) } else { aimed }, d.below(RULES));
    let off = d.below(3) == 0;
    let path = match r % 10 {
        0 => format!("/h{h}/exact/{r}{}", if off { "x" } else { "" }),
        1 => format!("/h{h}/p{r}/{}", if off { "" } else { "item?id=3" }),
        2 => format!("/h{h}/re{r}/{}", if off { "12a" } else { "123" }),
        3 => format!("/h{h}/tenant"),
        4 => format!("/h{h}/old{r}/{}?k=v", if off { "" } else { "page" }),
        5 => format!("/h{h}/direct{r}{}", if off { "/" } else { "" }),
        6 => format!("/h{h}/m{r}"),
        7 => format!("/h{h}/q/?v={}", if off { r + 1 } else { r }),
        8 => format!("/h{h}/w{r}"),
        _ => format!("/h{h}/ci{r}/{}", if off { "Z" } else { "z" }),
    };
    let mut headers = Vec::new();
    if d.below(3) == 0 {
        headers.push(("x-tenant".to_string(), format!("t{}", if off { r + 10 } else { r })));
    }
    if d.below(4) == 0 {
        headers.push(("x-block".to_string(), "1".to_string()));
    }
    (host, path, headers)
}

/// How the live answer differs from the explanation; `None` when they agree.
fn disagreement(t: &conf::RouteTable, e: &Explanation, got: &Reply) -> Option<String> {
    let route_name = e.route.and_then(|c| {
        let route = t.route_configs.get(c.config)?.virtual_hosts.get(c.vhost)?.routes.get(c.route)?;
        route.headers.response_set.iter().find(|(k, _)| k == "x-route").map(|(_, v)| v.clone())
    });
    if got.header("x-route").map(str::to_string) != route_name {
        return Some(format!("route: explained {route_name:?}, served {:?}", got.header("x-route")));
    }
    let agrees = match &e.action {
        Action::Forward { destinations } => {
            let upstream = got.upstream().unwrap_or("none");
            got.status == 200 && destinations.iter().any(|d| d.cluster.contains(&format!("svc-{upstream}.test")))
        }
        Action::Redirect { status, location } => got.status == *status && got.header("location") == Some(location),
        Action::DirectResponse { status, body } => got.status == *status && Some(got.body.as_str()) == body.as_deref(),
        Action::Refused { status, .. } => Some(got.status) == *status,
        Action::TcpProxy { .. } => false,
    };
    (!agrees).then(|| format!("action: explained {:?}, served {} {:?}", e.action, got.status, got.header("location")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_and_the_gateway_agree_on_a_thousand_generated_requests() {
    let (a, b, c) = (Upstream::start("a").await, Upstream::start("b").await, Upstream::start("c").await);
    let yaml = configuration(&a, &b, &c);
    let table = conf::build_str("agreement.yaml", &yaml, &conf::Selection::default()).table;
    let gw = TestGateway::start(&yaml);
    let client = http1();
    let mut dice = Dice(0x5eed_1234_abcd_0001);
    let (mut kinds, mut wrong) = (std::collections::BTreeMap::<&str, usize>::new(), Vec::new());
    for _ in 0..REQUESTS {
        let (host, path, headers) = request(&mut dice);
        let lines: Vec<String> =
            headers.iter().map(|(k, v)| format!("{k}: {v}")).chain([format!("host: {host}")]).collect();
        let e = explain(&table, &Probe::parse("GET", &format!("http://{host}{path}"), &lines).unwrap());
        let sent: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let got = get(&client, &gw.url(80), &host, &path, &sent).await;
        *kinds.entry(kind(&e.action)).or_default() += 1;
        if let Some(why) = disagreement(&table, &e, &got) {
            wrong.push(format!("GET http://{host}{path} {headers:?}: {why}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {REQUESTS} disagree, e.g.:\n{}",
        wrong.len(),
        wrong[..wrong.len().min(5)].join("\n")
    );
    // The generated requests exercise every outcome, so agreement is not agreement on 404s only.
    for k in ["forward", "redirect", "direct response", "404"] {
        assert!(kinds.get(k).copied().unwrap_or(0) >= 30, "too few {k}: {kinds:?}");
    }
}

fn kind(a: &Action) -> &'static str {
    match a {
        Action::Forward { .. } => "forward",
        Action::Redirect { .. } => "redirect",
        Action::DirectResponse { .. } => "direct response",
        Action::Refused { .. } => "404",
        Action::TcpProxy { .. } => "tcp",
    }
}
