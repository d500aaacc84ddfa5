//! Fail closed: kinds Pylon reads but does not implement are errors when they apply to this
//! workload, and warnings otherwise (README "Configuration").

use super::Selection;
use crate::config::{Config, Foreign};
use crate::diagnostic::{Code, Diagnostics, Reporter};

/// How Pylon treats a kind it does not route with.
enum Treatment {
    /// Security or traffic policy: an error when it applies to this workload.
    FailClosed(&'static str),
    /// Accepted but without effect here.
    Ignored(&'static str),
}

fn treatment(group: &str, kind: &str) -> Treatment {
    use Treatment::*;
    match (group, kind) {
        ("networking.istio.io", "EnvoyFilter") => {
            FailClosed("EnvoyFilter patches Envoy configuration, which Pylon does not run")
        }
        ("extensions.istio.io", "WasmPlugin") => FailClosed("WasmPlugin is not supported"),
        ("gateway.pylon.dev", "GatewayPolicy") => {
            FailClosed("only gateway.pylon.dev/v1alpha1 GatewayPolicy is implemented by this version")
        }
        ("networking.istio.io", "ProxyConfig") => FailClosed("ProxyConfig is not implemented by this version"),
        ("networking.istio.io", "Sidecar") => Ignored("a Sidecar configures sidecar proxies, not gateways"),
        ("networking.istio.io", "WorkloadGroup") => {
            Ignored("WorkloadGroup only templates WorkloadEntries for auto-registration")
        }
        ("telemetry.istio.io", "Telemetry") => {
            Ignored("Telemetry is not implemented by this version; it has no effect")
        }
        ("gateway.networking.k8s.io", _) => {
            Ignored("this Gateway API kind is not served by this version (GatewayClass, Gateway, HTTPRoute and ReferenceGrant are)")
        }
        _ => Ignored("Pylon does not read this kind"),
    }
}

/// Istio scoping: a policy applies to workloads in its own namespace (or every namespace when it is
/// in the root namespace) whose labels include its selector; no selector = every such workload.
fn applies(f: &Foreign, sel: &Selection) -> bool {
    let ns = f.meta.namespace();
    let in_scope = ns == sel.namespace || ns == sel.root_namespace;
    let selected = f.selector.as_ref().is_none_or(|s| s.iter().all(|(k, v)| sel.labels.get(k) == Some(v)));
    in_scope && (selected || f.has_target_refs)
}

/// Reports every resource of a kind Pylon does not route with.
pub(super) fn check(config: &Config, sel: &Selection, out: &mut Diagnostics) {
    // Pods are read for their labels only (the labels of the endpoints subsets select on).
    for f in config.foreign.iter().filter(|f| !(f.group.is_empty() && f.meta.id.kind == "Pod")) {
        let mut r = Reporter::new(&f.meta.id, out);
        match treatment(&f.group, &f.meta.id.kind) {
            Treatment::FailClosed(why) if applies(f, sel) => {
                r.error(Code::Unsupported, "", format!("applies to this workload, but {why}"))
                    .hint = Some("remove it, or narrow its selector so that it does not select this workload; Pylon never ignores a policy that applies".into());
            }
            Treatment::FailClosed(_) => {
                r.warn(Code::Skipped, "", "does not apply to this workload; skipped");
            }
            Treatment::Ignored(why) => {
                r.warn(Code::Skipped, "", format!("skipped: {why}"));
            }
        }
    }
}
