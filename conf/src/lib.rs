//! Istio configuration for Pylon: load, validate and compile into an immutable routing table.
//!
//! Pure: no sockets, no async, no Pingora. The pipeline is
//! [`load`] (files → typed resources) → [`validate`] (Istio's rules, every problem at once) →
//! [`compile`] (gateway selection, server merging, virtual hosts, routes, clusters).

#![forbid(unsafe_code)]

pub(crate) mod at;
pub mod compile;
pub mod config;
pub mod decide;
pub mod diagnostic;
pub mod diff;
pub mod explain;
pub mod load;
pub mod matcher;
pub mod mesh;
pub mod model;
mod parallel;
pub mod raw;
pub mod render;
pub mod table;
pub mod validate;

use std::path::PathBuf;

pub use compile::Selection;
pub use config::Config;
pub use diagnostic::{Code, Diagnostic, Diagnostics, Severity};
pub use load::LoadError;
pub use table::RouteTable;

/// A configuration taken through the whole pipeline.
#[derive(Debug, Clone)]
pub struct Built {
    /// The compiled table (only meaningful when there are no errors).
    pub table: RouteTable,
    /// Every problem found: loading, validation and compilation, in that order.
    pub diagnostics: Diagnostics,
}

impl Built {
    /// True when the configuration has no errors (warnings allowed).
    pub fn is_valid(&self) -> bool {
        !self.diagnostics.has_errors()
    }
}

/// Loads, validates and compiles the files under `paths` for the workload `sel`.
///
/// `Err` only when input cannot be read at all; every configuration problem is a diagnostic.
pub fn build(paths: &[PathBuf], sel: &Selection) -> Result<Built, LoadError> {
    let loaded = load::load_paths(paths, &sel.namespace)?;
    Ok(finish(loaded, sel))
}

/// [`build`] for YAML text held in memory; `name` stands in for the file name in messages.
pub fn build_str(name: &str, text: &str, sel: &Selection) -> Built {
    finish(load::load_str(name, text, &sel.namespace), sel)
}

fn finish(loaded: load::Loaded, sel: &Selection) -> Built {
    let mut diagnostics = loaded.diagnostics;
    let mut regexes = validate::validate(&loaded.config, &sel.namespace, &mut diagnostics);
    let mut config = loaded.config;
    // The Gateway API resources this workload serves, as the Istio resources they amount to.
    let translated = compile::gateway_api::translate(&config, sel, &mut diagnostics);
    config.gateways.extend(translated.gateways);
    config.virtual_services.extend(translated.virtual_services);
    let mut table = compile::compile(&config, sel, &mut regexes, &mut diagnostics);
    table.gateway_api = translated.status;
    // What compilation warns about generated resources was said of the Gateway API resources.
    diagnostics.0.retain(|d| match &d.location {
        diagnostic::Location::Resource { resource, .. } => {
            d.severity == Severity::Error || !compile::gateway_api::is_generated(resource)
        }
        _ => true,
    });
    parallel::drop_elsewhere(config, |c| c.virtual_services.len());
    // A VirtualService bound on several ports reports the same destination problem once.
    let mut seen = std::collections::HashSet::new();
    diagnostics.0.retain(|d| seen.insert(d.to_string()));
    Built { table, diagnostics }
}
