//! Route features the compiled table carries but this version's data plane does not apply yet.
//! They are reported at start-up so that nothing is silently ignored.

use conf::table::RouteTable;

/// One warning per feature in use that the data plane does not serve yet.
pub fn not_served(table: &RouteTable) -> Vec<String> {
    let routes: Vec<&conf::table::Route> =
        table.route_configs.iter().flat_map(|rc| rc.virtual_hosts.iter().flat_map(|v| v.routes.iter())).collect();
    let count = |f: &dyn Fn(&conf::table::Route) -> bool| routes.iter().filter(|r| f(r)).count();
    let features: [(&str, usize); 5] = [
        ("timeout", count(&|r| r.timeout.is_some())),
        ("retries other than on connect failure", count(&|r| r.retries.is_some())),
        ("fault", count(&|r| r.fault.is_some())),
        ("mirror", count(&|r| !r.mirrors.is_empty())),
        ("corsPolicy", count(&|r| r.cors.is_some())),
    ];
    features
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(what, n)| format!("{n} route(s) use {what}, which this version does not apply yet; it has no effect"))
        .collect()
}
