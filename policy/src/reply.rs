//! The local reply of a denial, as Envoy's filters send it.

/// A response the gateway writes itself instead of proxying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// The status code.
    pub status: u16,
    /// The body (`text/plain`).
    pub body: String,
    /// Extra response headers (`www-authenticate`).
    pub headers: Vec<(String, String)>,
    /// Why, for the access log's response flags and details (`rbac_access_denied_matched_policy[...]`).
    pub details: String,
}

impl LocalReply {
    /// Envoy's RBAC denial: 403 `RBAC: access denied`.
    pub fn rbac_denied(details: impl Into<String>) -> Self {
        LocalReply { status: 403, body: "RBAC: access denied".into(), headers: Vec::new(), details: details.into() }
    }
}
