//! Diagnostics: every problem found in a configuration, collected in one pass.
//!
//! A diagnostic names the resource, the YAML path inside it, what is wrong (Istio's own wording where
//! Istio has one) and, where it helps, how to fix it. The one-line rendering is part of the user
//! contract (README "Diagnostics", `pylon validate`):
//! `error[CODE] Kind namespace/name spec.path: message; fix: hint`.

use std::fmt;

use serde::Serialize;

/// How bad a problem is: errors reject the configuration, warnings never do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The configuration is rejected.
    Error,
    /// The configuration is accepted; something in it probably does not do what was meant.
    Warning,
}

impl Severity {
    /// The lower-case word used in the rendered line.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

macro_rules! codes {
    ($($variant:ident = $text:literal : $about:literal,)*) => {
        /// The class of a problem; rendered in brackets (`error[host]`). The README lists them all.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code { $(#[doc = $about] $variant,)* }

        impl Code {
            /// Every code, in documentation order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The code as rendered (`unknown-field`).
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $text,)* }
            }

            /// One sentence saying what the code covers.
            pub fn about(self) -> &'static str {
                match self { $(Code::$variant => $about,)* }
            }
        }
    };
}

codes! {
    Yaml = "yaml": "the file is not valid YAML or JSON",
    Document = "document": "a document lacks apiVersion, kind or metadata.name, or is not a mapping",
    UnknownField = "unknown-field": "a field under spec that the kind does not have (usually a misspelling)",
    InvalidValue = "invalid-value": "a field has the wrong type or an unknown enum value",
    Duplicate = "duplicate": "the same resource (kind, namespace, name) is defined twice; the later one wins",
    Skipped = "skipped": "a resource that does not apply to this workload, or a kind Pylon does not read",
    Unsupported = "unsupported": "a kind or field that applies to this workload but this version does not implement",
    NoEffect = "no-effect": "a field that is accepted but has no effect at a gateway",
    Name = "name": "a resource or port name that Istio rejects",
    Host = "host": "a host or domain name that Istio rejects",
    Port = "port": "a port number, name or protocol that Istio rejects",
    Bind = "bind": "a server bind address that is not an IP or an absolute unix socket path",
    Tls = "tls": "server or client TLS settings that Istio rejects or ignores",
    Gateways = "gateways": "a VirtualService gateway reference that Istio rejects",
    Match = "match": "an HTTP, TLS or TCP match condition that Istio rejects",
    Regex = "regex": "a regular expression that is not valid RE2 syntax or is too large",
    Route = "route": "an HTTP, TLS or TCP rule without a valid action, or with clashing actions",
    Destination = "destination": "a route destination that Istio rejects",
    Weight = "weight": "route destination weights that Istio rejects",
    Redirect = "redirect": "an HTTP redirect that Istio rejects",
    DirectResponse = "direct-response": "a directResponse that Istio rejects",
    Rewrite = "rewrite": "an HTTP rewrite that Istio rejects",
    Delegate = "delegate": "a delegate VirtualService or a reference to one that Istio rejects",
    Header = "header": "a header match or header operation that Istio rejects",
    Duration = "duration": "a duration that is malformed, below 1ms or finer than milliseconds",
    Retry = "retry": "a retry policy that Istio rejects",
    Fault = "fault": "a fault injection that Istio rejects",
    Mirror = "mirror": "a mirror policy that Istio rejects",
    Cors = "cors": "a CORS policy that Istio rejects",
    ExportTo = "export-to": "an exportTo list that Istio rejects",
    Subset = "subset": "a DestinationRule subset that Istio rejects",
    TrafficPolicy = "traffic-policy": "a DestinationRule traffic policy that Istio rejects",
    Endpoint = "endpoint": "a ServiceEntry or WorkloadEntry endpoint that Istio rejects",
    Resolution = "resolution": "a ServiceEntry resolution that does not fit its hosts, addresses or endpoints",
    Secret = "secret": "a TLS Secret that lacks a certificate or key, or has undecodable data",
    Conflict = "conflict": "two servers that cannot share a port (Pylon rejects what Istio silently skips)",
    UnreachableRule = "unreachable-rule": "an HTTP rule that no request can reach (Istio IST0130)",
    IneffectiveMatch = "ineffective-match": "a match that an earlier match always wins over (Istio IST0131)",
    MeshOnly = "mesh-only": "a VirtualService bound to the mesh only, which no gateway uses",
    UnknownGateway = "unknown-gateway": "a VirtualService names a Gateway that is not in the configuration (Istio IST0101)",
    UnknownHost = "unknown-host": "a destination host no ServiceEntry defines: requests to it get 503 NC (Istio IST0101)",
    UnknownSubset = "unknown-subset": "a destination subset no DestinationRule defines: requests to it get 503 NC (Istio IST0101)",
    UnknownPort = "unknown-port": "a destination port the service does not declare: requests to it get 503 NC",
    NoEndpoints = "no-endpoints": "a destination that has no endpoints at a gateway: requests to it get 503 UH",
    Credential = "credential": "a server certificate that cannot be found; that server refuses TLS handshakes",
    NoGateway = "no-gateway": "no Gateway selects this workload: nothing listens on data ports",
    Unselected = "unselected": "a Gateway whose selector does not match this workload's labels",
    Policy = "policy": "an AuthorizationPolicy that Istio rejects, or that Pylon cannot enforce exactly as written",
    Jwt = "jwt": "a RequestAuthentication JWT rule that Istio rejects",
    GatewayApi = "gateway-api": "a Gateway API condition that is not met (the status Istio's controller would write)",
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies one resource: kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ResourceRef {
    /// The resource kind as written (`Gateway`, `VirtualService`, ...).
    pub kind: String,
    /// The namespace (the workload's namespace when the resource has none).
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// Where a problem is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "type")]
pub enum Location {
    /// A field (or, with an empty path, the whole) of one resource.
    Resource {
        /// The resource.
        resource: ResourceRef,
        /// The YAML path inside it, like `spec.servers[0].port.number`; empty for the whole resource.
        path: String,
    },
    /// A position in a file (YAML syntax errors, documents without a usable header).
    File {
        /// The file as given on the command line or found in a directory.
        file: String,
        /// 1-based line, 0 when unknown.
        line: usize,
        /// 1-based column, 0 when unknown.
        column: usize,
    },
    /// A document of a file (documents that cannot be read as a resource).
    Document {
        /// The file.
        file: String,
        /// 1-based document number.
        document: usize,
    },
    /// The configuration as a whole (for example: no Gateway selects this workload).
    Global {
        /// What the problem is about, like `labels istio=ingressgateway`.
        subject: String,
    },
}

/// One problem: severity, code, location, Istio's message and an optional hint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The class of problem.
    #[serde(serialize_with = "serialize_code")]
    pub code: Code,
    /// Where it is.
    pub location: Location,
    /// What is wrong, in Istio's words where Istio has them.
    pub message: String,
    /// How to fix it, when there is something useful to say.
    pub hint: Option<String>,
}

fn serialize_code<S: serde::Serializer>(code: &Code, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(code.as_str())
}

impl Diagnostic {
    /// Adds a hint (rendered after `; fix: `).
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}] ", self.severity.as_str(), self.code)?;
        match &self.location {
            Location::Resource { resource, path } if path.is_empty() => write!(f, "{resource}")?,
            Location::Resource { resource, path } => write!(f, "{resource} {path}")?,
            Location::File { file, line, column } => write!(f, "{file}:{line}:{column}")?,
            Location::Document { file, document } => write!(f, "{file} document {document}")?,
            Location::Global { subject } => write!(f, "{subject}")?,
        }
        write!(f, ": {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "; fix: {hint}")?;
        }
        Ok(())
    }
}

/// An ordered list of diagnostics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// True when at least one diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.0.iter().filter(|d| d.is_error()).count()
    }

    /// Appends one diagnostic.
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// Appends a problem about the configuration as a whole.
    pub fn global(&mut self, severity: Severity, code: Code, subject: String, message: String) -> &mut Diagnostic {
        self.0.push(Diagnostic { severity, code, location: Location::Global { subject }, message, hint: None });
        let last = self.0.len() - 1;
        &mut self.0[last]
    }

    /// Iterates in order.
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    /// Appends all of `other`.
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    /// True when there is nothing to report.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Collects the problems of one resource; paths are given relative to the resource root.
pub struct Reporter<'a> {
    resource: &'a ResourceRef,
    out: &'a mut Diagnostics,
}

impl<'a> Reporter<'a> {
    /// A reporter for `resource` appending to `out`.
    pub fn new(resource: &'a ResourceRef, out: &'a mut Diagnostics) -> Self {
        Reporter { resource, out }
    }

    /// The resource being reported on.
    pub fn resource(&self) -> &ResourceRef {
        self.resource
    }

    /// Records an error at `path` (written out only now: see `validate::at`); returns it so a
    /// hint can be added.
    pub fn error(&mut self, code: Code, path: impl std::fmt::Display, message: impl Into<String>) -> &mut Diagnostic {
        self.report(Severity::Error, code, path.to_string(), message.into())
    }

    /// Records a warning at `path`; returns it so a hint can be added.
    pub fn warn(&mut self, code: Code, path: impl std::fmt::Display, message: impl Into<String>) -> &mut Diagnostic {
        self.report(Severity::Warning, code, path.to_string(), message.into())
    }

    fn report(&mut self, severity: Severity, code: Code, path: String, message: String) -> &mut Diagnostic {
        self.out.0.push(Diagnostic {
            severity,
            code,
            location: Location::Resource { resource: self.resource.clone(), path },
            message,
            hint: None,
        });
        let last = self.out.0.len() - 1;
        &mut self.out.0[last]
    }
}

/// Extension used as `r.error(..).hint("...")`.
pub trait Hint {
    /// Sets the fix hint.
    fn hint(&mut self, hint: impl Into<String>);
}

impl Hint for Diagnostic {
    fn hint(&mut self, hint: impl Into<String>) {
        self.hint = Some(hint.into());
    }
}
