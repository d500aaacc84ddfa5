//! One YAML or JSON document decoded straight into its typed resource, without the value tree.
//!
//! Building a value tree per document, then decoding it, was the larger part of reading a large
//! file: on one core, the 25 MB of a 100,000-route table decoded in 1.09 s through value trees and
//! in 0.69 s straight from the parser's events (libyaml's own work being 0.66 s of that). A document
//! is decoded from events (by the value tree's rules: [`super::strict`]) when its top-level
//! `apiVersion:` and `kind:` lines name a kind with a `spec`, it has no tag, and it decodes without
//! any problem. Anything else, including every document with a problem to report, is read through
//! the value tree, which words each problem with its path; the two give the same resource.
//!
//! The events come from [`super::block`] when the document is block-style YAML of its subset (the
//! form generators and `kubectl` write, with flow collections on one line), and from libyaml
//! otherwise.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::block::Block;
use super::document::{self, Kind, Loaded, SpecSource};
use super::strict::{Seen, Strict};
use crate::config::{Meta, Origin};
use crate::diagnostic::Diagnostics;
use crate::raw::ObjectMeta;

/// The resource `text` (one YAML document) holds, or `None` if it is to be read through the value
/// tree. Reports nothing unless it returns the resource (a creation time it cannot parse is a
/// warning, as from the value tree).
pub(super) fn read(text: &str, origin: &Origin, namespace: &str, out: &mut Diagnostics) -> Option<Loaded> {
    let (api_version, kind) = kind_lines(text)?;
    decode(Format::Yaml, text, (api_version, kind), origin, namespace, out)
}

/// [`read`] for one JSON document: the same rules, the kind read from the first `"apiVersion"` and
/// `"kind"` members (checked against the decoded ones).
pub(super) fn read_json(text: &str, origin: &Origin, namespace: &str, out: &mut Diagnostics) -> Option<Loaded> {
    let kind = (json_member(text, "\"apiVersion\"")?, json_member(text, "\"kind\"")?);
    decode(Format::Json, text, kind, origin, namespace, out)
}

fn decode(
    format: Format,
    text: &str,
    (api_version, kind): (&str, &str),
    origin: &Origin,
    namespace: &str,
    out: &mut Diagnostics,
) -> Option<Loaded> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let routed = document::routed_kind(group, version, kind)?;
    if matches!(routed, Kind::Secret | Kind::Endpoints | Kind::EndpointSlice) {
        return None;
    }
    let mut source = Events { format, text, api_version, kind, origin, namespace, out };
    document::with_spec(routed, &mut source)
}

/// The string value of the first `key` member in `text`, if it has no escape.
fn json_member<'t>(text: &'t str, key: &str) -> Option<&'t str> {
    let rest = &text[text.find(key)? + key.len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
    let value = &rest[..rest.find('"')?];
    (!value.is_empty() && !value.contains('\\')).then_some(value)
}

/// The values of the top-level `apiVersion:` and `kind:` lines, each found once.
fn kind_lines(text: &str) -> Option<(&str, &str)> {
    Some((top_level_line(text, "apiVersion:")?, top_level_line(text, "kind:")?))
}

/// The value of the one line starting with `key`.
fn top_level_line<'t>(text: &'t str, key: &'t str) -> Option<&'t str> {
    let mut starts = super::line_starts(text, key);
    let start = starts.next()? + key.len();
    if starts.next().is_some() {
        return None;
    }
    let line = &text[start..];
    scalar(&line[..line.find('\n').unwrap_or(line.len())])
}

/// A one-line scalar without escapes or comment: plain, or in single or double quotes.
fn scalar(raw: &str) -> Option<&str> {
    let v = raw.trim();
    let quoted = |q: char| v.strip_prefix(q)?.strip_suffix(q).filter(|s| !s.contains([q, '\\']));
    let value = match v.chars().next()? {
        '"' => quoted('"')?,
        '\'' => quoted('\'')?,
        _ if v.contains(['#', ' ', '{', '[', '&', '*', '|', '>']) => return None,
        _ => v,
    };
    (!value.is_empty()).then_some(value)
}

#[derive(Clone, Copy)]
enum Format {
    Yaml,
    Json,
}

/// The document's events, with the kind its text named.
struct Events<'a> {
    format: Format,
    text: &'a str,
    api_version: &'a str,
    kind: &'a str,
    origin: &'a Origin,
    namespace: &'a str,
    out: &'a mut Diagnostics,
}

impl SpecSource for Events<'_> {
    fn decode<S: DeserializeOwned>(&mut self, lenient: bool) -> Option<(Meta, S)> {
        let seen = Seen::default();
        let doc: Document<S> = match self.format {
            Format::Yaml => match from_block(self.text) {
                Some(doc) => doc,
                // A tag, which the block reader gives up on (or a `!` in a value: rare enough to
                // read through the value tree).
                None if self.text.contains('!') => return None,
                None => {
                    let mut documents = serde_yaml::Deserializer::from_str(self.text);
                    let doc = top(documents.next()?, &seen)?;
                    documents.next().is_none().then_some(doc)?
                }
            },
            Format::Json => {
                let mut de = serde_json::Deserializer::from_str(self.text);
                let doc = top(&mut de, &seen)?;
                de.end().ok().map(|()| doc)?
            }
        };
        let decoded = doc.api_version == self.api_version && doc.kind == self.kind && (lenient || !doc.spec_ignored);
        let (Some(metadata), Some(spec), true) = (doc.metadata, doc.spec, decoded) else { return None };
        if metadata.name.is_empty() {
            return None;
        }
        let meta = document::meta_from(metadata, self.kind, self.origin, self.namespace, self.out)?;
        Some((meta, spec))
    }
}

/// The document read without libyaml, if it is block-style YAML of [`block`]'s subset.
fn from_block<S: DeserializeOwned>(text: &str) -> Option<Document<S>> {
    let mut block = Block::new(text)?;
    let doc = top(block.document(), &Seen::default())?;
    block.end().ok().map(|()| doc)
}

/// The top-level fields of the one document `de` holds.
fn top<'de, S: DeserializeOwned, D: Deserializer<'de>>(de: D, seen: &Seen) -> Option<Document<S>> {
    Strict::new(de, seen).deserialize_map(Top::<S> { seen, spec: PhantomData }).ok()
}

/// A document's top-level fields.
struct Document<S> {
    api_version: String,
    kind: String,
    metadata: Option<ObjectMeta>,
    spec: Option<S>,
    /// The spec had a field `S` does not have.
    spec_ignored: bool,
}

/// Reads a document's top-level mapping: `spec` as `S`, other fields (`status`) read through.
struct Top<'s, S> {
    seen: &'s Seen,
    spec: PhantomData<S>,
}

impl<'de, S: DeserializeOwned> Visitor<'de> for Top<'_, S> {
    type Value = Document<S>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a resource")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Document<S>, A::Error> {
        let mut doc = Document {
            api_version: String::new(),
            kind: String::new(),
            metadata: None,
            spec: None,
            spec_ignored: false,
        };
        // A key given twice is refused by the strict mapping this visits.
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "apiVersion" => doc.api_version = map.next_value()?,
                "kind" => doc.kind = map.next_value()?,
                "metadata" => doc.metadata = Some(map.next_value()?),
                "spec" => {
                    let before = self.seen.ignored.replace(false);
                    doc.spec = map.next_value()?;
                    doc.spec_ignored = self.seen.ignored.replace(before);
                }
                _ => drop(map.next_value::<IgnoredAny>()?),
            }
        }
        if doc.api_version.is_empty() || doc.kind.is_empty() {
            return Err(de::Error::custom("no apiVersion or kind"));
        }
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: vs
  labels: {app: web}
spec:
  hosts: [a.example]
  gateways: [gw]
  http:
  - match:
    - uri: {prefix: /api}
      headers:
        x-user: {exact: dev}
    route:
    - destination: {host: a.svc, subset: v1}
      weight: 90
    - destination: {host: b.svc}
      weight: 10
    headers:
      request:
        set: {x-route: api}
";

    /// [`VS`] in block style, as `kubectl` and generators write it (read without libyaml).
    const VS_BLOCK: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: vs
  labels:
    app: web
spec:
  hosts:
  - a.example
  gateways:
  - gw
  http:
  - match:
    - uri:
        prefix: /api
      headers:
        x-user:
          exact: dev
    route:
    - destination:
        host: a.svc
        subset: v1
      weight: 90
    - destination:
        host: b.svc
      weight: 10
    headers:
      request:
        set:
          x-route: api
";

    /// What the value tree makes of `text`, and what the event stream does (`None`: not decoded).
    fn both(text: &str) -> (String, Option<String>) {
        let origin = Origin { file: "f".into(), document: 1 };
        let show = |loaded: &[Loaded], out: &Diagnostics| format!("{loaded:?} {out}");
        let tree = match serde_yaml::from_str(text) {
            Ok(value) => {
                let mut out = Diagnostics::default();
                let loaded = document::read(value, &origin, "default", &mut out);
                show(&loaded, &out)
            }
            Err(e) => format!("YAML error: {e}"),
        };
        let mut out = Diagnostics::default();
        let events = read(text, &origin, "default", &mut out).map(|l| show(&[l], &out));
        if events.is_none() {
            assert!(out.is_empty(), "nothing reported when the value tree is to read it: {out}");
        }
        (tree, events)
    }

    #[test]
    fn a_document_decodes_from_events_to_what_its_value_tree_gives_or_is_left_to_the_tree() {
        let cases: &[(&str, String, bool)] = &[
            ("plain", VS.to_string(), true),
            ("block style", VS_BLOCK.to_string(), true),
            ("block style, null as an empty list", VS_BLOCK.replace("  gateways:\n  - gw\n", "  gateways: ~\n  exportTo:\n"), true),
            ("block style, a number label", VS_BLOCK.replace("app: web", "version: 1"), false),
            ("block style, a `!` in a value", VS_BLOCK.replace("x-route: api", "x-route: \"api!\""), true),
            ("block style, a boolean for a string", VS_BLOCK.replace("exact: dev", "exact: true"), false),
            ("block style, a quoted number for a number", VS_BLOCK.replace("weight: 90", "weight: \"90\""), false),
            ("block style, a field given twice", VS_BLOCK.replace("subset: v1", "subset: v1\n        subset: v2"), false),
            ("block style, an unknown field", VS_BLOCK.replace("weight: 10", "weight: 10\n      wieght: 5"), false),
            ("block style, spec given twice", format!("{VS_BLOCK}spec: {{}}\n"), false),
            ("block style, no name", VS_BLOCK.replace("  name: vs\n", ""), false),
            ("quoted kind lines", VS.replace("kind: VirtualService", "kind: \"VirtualService\"").replace("apiVersion: networking.istio.io/v1", "apiVersion: 'networking.istio.io/v1'"), true),
            ("null as an empty list", VS.replace("gateways: [gw]", "gateways: ~\n  exportTo: null"), true),
            ("anchor and alias", VS.replace("hosts: [a.example]", "hosts: &h [a.example]\n  exportTo: *h"), true),
            ("a creation time that is not one", VS.replace("  name: vs\n", "  name: vs\n  creationTimestamp: yesterday\n"), true),
            ("unknown metadata fields pass", VS.replace("  name: vs\n", "  name: vs\n  uid: 1234\n  generation: 3\n"), true),
            ("a status is read through", format!("{VS}status: {{conditions: [{{type: Ready}}]}}\n"), true),
            ("a Kubernetes Service, leniently", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports: [{port: 80, name: http}]\n  clusterIP: 10.0.0.1\n".into(), true),
            ("an enum", "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec:\n  servers:\n  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: ['*']\n    tls: {mode: SIMPLE, credentialName: c}\n".into(), true),
            ("an enum given a number", "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec:\n  servers:\n  - port: {number: 443, name: https, protocol: HTTPS}\n    tls: {mode: 1}\n".into(), false),
            ("a number label", VS.replace("{app: web}", "{version: 1}"), false),
            ("a number for a string", VS.replace("{exact: dev}", "{exact: 123}"), false),
            ("a boolean for a string", VS.replace("{exact: dev}", "{exact: true}"), false),
            ("a quoted number for a number", VS.replace("weight: 90", "weight: \"90\""), false),
            ("a fraction for an integer", VS.replace("weight: 90", "weight: 1.5"), false),
            ("a key given twice in a map", VS.replace("set: {x-route: api}", "set: {x-route: api, x-route: web}"), false),
            ("a number for a field's name", VS.replace("{host: b.svc}", "{0: b.svc}"), false),
            ("a field given twice", VS.replace("subset: v1}", "subset: v1, subset: v2}"), false),
            ("spec given twice", format!("{VS}spec: {{}}\n"), false),
            ("an unknown field", VS.replace("weight: 10", "weight: 10\n      wieght: 5"), false),
            ("a port given as 0 and as -0", "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p}\nspec:\n  portLevelMtls: {0: {mode: STRICT}, -0: {mode: DISABLE}}\n".into(), false),
            ("a tag", VS.replace("{prefix: /api}", "{prefix: !!str /api}"), false),
            ("no spec", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\n".into(), false),
            ("no name", VS.replace("  name: vs\n", ""), false),
            ("a comment on the kind line", VS.replace("kind: VirtualService", "kind: VirtualService # the routes"), false),
            ("a List", "apiVersion: v1\nkind: List\nitems: []\n".into(), false),
            ("a kind Pylon does not decode", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {}\n".into(), false),
            ("a Secret", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {}\n".into(), false),
        ];
        // Both styles are read without libyaml; an anchor is libyaml's.
        let anchored = VS.replace("hosts: [a.example]", "hosts: &h [a.example]\n  exportTo: *h");
        assert!(from_block::<crate::raw::VirtualService>(VS_BLOCK).is_some());
        assert!(from_block::<crate::raw::VirtualService>(VS).is_some());
        assert!(from_block::<crate::raw::VirtualService>(&anchored).is_none());
        for (name, text, decoded) in cases {
            let (tree, events) = both(text);
            assert_eq!(events.is_some(), *decoded, "{name}: {tree}");
            if let Some(events) = events {
                assert_eq!(events, tree, "{name}");
            }
        }
    }

    #[test]
    fn a_json_document_decodes_to_what_its_value_tree_gives_or_is_left_to_the_tree() {
        let origin = Origin { file: "f".into(), document: 1 };
        let vs = r#"{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"vs"},"spec":{"hosts":["a.example"],"http":[{"match":[{"uri":{"prefix":"/api"}}],"route":[{"destination":{"host":"a.svc"},"weight":90},{"destination":{"host":"b.svc"},"weight":10}]}]}}"#;
        let cases: &[(&str, String, bool)] = &[
            ("plain", vs.to_string(), true),
            (
                "spaced",
                vs.replace(r#""kind":"#, r#""kind" : "#).replace(r#""apiVersion":"#, "\"apiVersion\":\n  "),
                true,
            ),
            (
                "null as an empty list",
                vs.replace(r#""hosts":["a.example"],"#, r#""hosts":["a.example"],"gateways":null,"#),
                true,
            ),
            ("a status", vs.replace(r#"}}]}]}}"#, r#"}}]}]},"status":{"x":1}}"#), true),
            ("a number for a string", vs.replace(r#""prefix":"/api""#, r#""prefix":5"#), false),
            ("a string for a number", vs.replace(r#""weight":90"#, r#""weight":"90""#), false),
            ("a key given twice", vs.replace(r#""host":"a.svc""#, r#""host":"a.svc","host":"c.svc""#), false),
            ("an unknown field", vs.replace(r#""weight":10"#, r#""weight":10,"wieght":5"#), false),
            (
                "another kind named first",
                vs.replacen(r#"{"apiVersion""#, r#"{"status":{"kind":"Gateway"},"apiVersion""#, 1),
                false,
            ),
            ("two documents", format!("{vs} {vs}"), false),
            // TLSRoute and TCPRoute share a spec type: only the kind read back tells them apart.
            ("a kind of the same spec named first", r#"{"status":{"kind":"TLSRoute"},"apiVersion":"gateway.networking.k8s.io/v1alpha2","kind":"TCPRoute","metadata":{"name":"t"},"spec":{"parentRefs":[{"name":"gw"}],"rules":[{"backendRefs":[{"name":"svc","port":80}]}]}}"#.into(), false),
            ("a TCPRoute", r#"{"apiVersion":"gateway.networking.k8s.io/v1alpha2","kind":"TCPRoute","metadata":{"name":"t"},"spec":{"parentRefs":[{"name":"gw"}],"rules":[{"backendRefs":[{"name":"svc","port":80}]}]}}"#.into(), true),
        ];
        for (name, text, decoded) in cases {
            let tree = match serde_json::from_str(text) {
                Ok(value) => {
                    let mut out = Diagnostics::default();
                    let loaded = document::read(value, &origin, "default", &mut out);
                    format!("{loaded:?} {out}")
                }
                Err(e) => format!("JSON error: {e}"),
            };
            let mut out = Diagnostics::default();
            let events = read_json(text, &origin, "default", &mut out).map(|l| format!("{:?} {out}", [l]));
            assert_eq!(events.is_some(), *decoded, "{name}: {tree}");
            if let Some(events) = events {
                assert_eq!(events, tree, "{name}");
            }
        }
    }

    #[test]
    fn lists_decoded_from_events_are_held_at_their_length() {
        let origin = Origin { file: "f".into(), document: 1 };
        let loaded = read(VS, &origin, "default", &mut Diagnostics::default());
        let Some(Loaded::VirtualService(vs)) = loaded else { panic!("decoded from events: {loaded:?}") };
        let rule = &vs.spec.http[0];
        // One rule, one match, two destinations: a growing `Vec` would hold four places each.
        assert_eq!((vs.spec.http.capacity(), rule.matches.capacity(), rule.route.capacity()), (1, 1, 2));
    }

    #[test]
    fn kind_lines_are_top_level_one_line_scalars() {
        assert_eq!(kind_lines("apiVersion: v1\nkind: Service\n"), Some(("v1", "Service")));
        assert_eq!(kind_lines("kind: \"A\"\napiVersion: 'v1'\n"), Some(("v1", "A")));
        assert_eq!(kind_lines("apiVersion: v1\nmetadata:\n  kind: X\n"), None, "indented: not top-level");
        assert_eq!(kind_lines("apiVersion: v1\nkind: A\nkind: B\n"), None, "twice");
        assert_eq!(kind_lines("apiVersion: v1\nkind:\n  A\n"), None, "on the next line");
        assert_eq!(kind_lines("apiVersion: v1\nkind: \"A\\u0042\"\n"), None, "an escape");
        assert_eq!(kind_lines("apiVersion: v1\nkindness: A\n"), None);
    }
}
