//! Loading: files and directories → YAML documents → typed resources (README "Configuration").
//!
//! Arguments are read in the order given; a directory is walked recursively in sorted path order,
//! reading `*.yaml`, `*.yml` and `*.json` and skipping names that start with `.` (a mounted
//! ConfigMap's `..data` and `..TIMESTAMP` entries). A resource defined twice is replaced by the later
//! definition (keeping the first one's place in load order) with a warning naming both places.

mod block;
mod decode;
mod document;
mod flow;
mod stream;
mod strict;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{Config, Origin};
use crate::diagnostic::{Code, Diagnostic, Diagnostics, Location, ResourceRef, Severity};

pub use document::Loaded as LoadedResource;

/// Input that cannot be read at all (exit status 2), as opposed to invalid configuration.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A path given on the command line does not exist or cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The result of loading: the resources and every problem found while reading them.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// The resources, sorted into Istio's order.
    pub config: Config,
    /// YAML, document, field and duplicate problems.
    pub diagnostics: Diagnostics,
}

/// Loads every file under `paths`; `namespace` is given to resources without one.
pub fn load_paths(paths: &[PathBuf], namespace: &str) -> Result<Loaded, LoadError> {
    let mut files = Vec::new();
    for path in paths {
        collect_files(path, true, &mut files)?;
    }
    let mut loader = Loader::new(namespace);
    for file in files {
        let text = std::fs::read_to_string(&file)
            .map_err(|source| LoadError::Io { path: file.display().to_string(), source })?;
        loader.add_source(&file.display().to_string(), &text);
    }
    Ok(loader.finish())
}

/// Loads YAML text given in memory (tests, admin API); `name` stands in for the file name.
pub fn load_str(name: &str, text: &str, namespace: &str) -> Loaded {
    let mut loader = Loader::new(namespace);
    loader.add_source(name, text);
    loader.finish()
}

fn collect_files(path: &Path, explicit: bool, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let io = |source| LoadError::Io { path: path.display().to_string(), source };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')))
            .collect();
        entries.sort();
        for entry in entries {
            collect_files(&entry, false, out)?;
        }
    } else if explicit || is_config_file(path) {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// The resources of one file, each with where it was read, and the problems found reading them.
type Read = (Vec<(document::Loaded, Origin)>, Diagnostics);

/// Decodes document number `index` (0-based) of `file` into `into`.
fn read_value(into: &mut Read, file: &str, namespace: &str, index: usize, value: serde_yaml::Value) {
    let origin = Origin { file: file.to_string(), document: index + 1 };
    for l in document::read(value, &origin, namespace, &mut into.1) {
        into.0.push((l, origin.clone()));
    }
}

fn yaml_documents(file: &str, text: &str, namespace: &str) -> Result<Read, serde_yaml::Error> {
    match yaml_documents_by_part(file, text, namespace) {
        Some(read) => Ok(read),
        None => yaml_documents_in_order(file, text, namespace),
    }
}

fn yaml_documents_in_order(file: &str, text: &str, namespace: &str) -> Result<Read, serde_yaml::Error> {
    let mut read: Read = Default::default();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        // Decoded as it comes: one value tree alive at a time.
        read_value(&mut read, file, namespace, i, serde_yaml::Value::deserialize(doc)?);
    }
    Ok(read)
}

/// A file of YAML documents read document by document (a large one on every core), when its
/// `---` lines split it into parts that each parse as exactly one document; `None` otherwise (a
/// YAML error, an empty part, a part holding two documents), and the file is read in order, which
/// reports each problem exactly.
fn yaml_documents_by_part(file: &str, text: &str, namespace: &str) -> Option<Read> {
    let mut parts: Vec<&str> = split_documents(text).collect();
    // Comments or blank lines before the first `---` are not a document.
    if parts.first().is_some_and(|p| holds_nothing(p)) {
        parts.remove(0);
    }
    if parts.is_empty() || parts.iter().any(|p| holds_nothing(p)) {
        return None;
    }
    on_every_core(&parts, |first, part| {
        let mut out: Read = Default::default();
        for (i, text) in part.iter().enumerate() {
            let origin = Origin { file: file.to_string(), document: first + i + 1 };
            if let Some(loaded) = stream::read(text, &origin, namespace, &mut out.1) {
                out.0.push((loaded, origin));
                continue;
            }
            let mut docs = serde_yaml::Deserializer::from_str(text);
            let value = serde_yaml::Value::deserialize(docs.next()?).ok()?;
            if docs.next().is_some() {
                return None;
            }
            read_value(&mut out, file, namespace, first + i, value);
        }
        Some(out)
    })
}

/// A part of a YAML stream with nothing but blank lines and comments.
fn holds_nothing(part: &str) -> bool {
    part.lines().map(str::trim_start).all(|l| l.is_empty() || l.starts_with('#'))
}

/// The file as JSON documents, when every document is a JSON object; `None` otherwise. Large
/// files are split among the available cores, and their resources kept in document order.
fn json_documents(file: &str, text: &str, namespace: &str) -> Option<Read> {
    if !text.trim_start().starts_with('{') {
        // Not JSON from its first document on: not worth splitting 25 MB of YAML to find out.
        return None;
    }
    let chunks: Vec<&str> = split_documents(text).map(str::trim).filter(|c| !c.is_empty()).collect();
    if !chunks.iter().all(|c| c.starts_with('{')) {
        return None;
    }
    let parse = |first: usize, part: &[&str]| -> Option<Read> {
        let mut out: Read = Default::default();
        for (i, chunk) in part.iter().enumerate() {
            let origin = Origin { file: file.to_string(), document: first + i + 1 };
            if let Some(loaded) = stream::read_json(chunk, &origin, namespace, &mut out.1) {
                out.0.push((loaded, origin));
                continue;
            }
            read_value(&mut out, file, namespace, first + i, serde_json::from_str(chunk).ok()?);
        }
        Some(out)
    };
    on_every_core(&chunks, parse)
}

/// `read(first, part)` over consecutive parts of `documents`, one per core, the results joined in
/// document order; `None` if any part gives `None`.
fn on_every_core(documents: &[&str], read: impl Fn(usize, &[&str]) -> Option<Read> + Sync) -> Option<Read> {
    let mut out: Read = Default::default();
    for part in crate::parallel::in_parts(documents, read) {
        let (l, d) = part?;
        out.0.extend(l);
        out.1.extend(d);
    }
    Some(out)
}

/// Where each line of `text` starting with `prefix` (which holds no newline) starts: found by
/// substring search, not by walking every line of a 25 MB file.
fn line_starts<'t>(text: &'t str, prefix: &'t str) -> impl Iterator<Item = usize> + 't {
    text.match_indices(prefix).map(|(i, _)| i).filter(move |&i| i == 0 || text.as_bytes()[i - 1] == b'\n')
}

/// `text` split at `---` lines (YAML's document separator).
fn split_documents(text: &str) -> impl Iterator<Item = &str> {
    let mut separators = line_starts(text, "---").filter_map(move |start| {
        let end = text[start..].find('\n').map_or(text.len(), |e| start + e + 1);
        (text[start..end].trim_end() == "---").then_some((start, end))
    });
    let mut from = Some(0);
    std::iter::from_fn(move || {
        let at = from?;
        match separators.next() {
            Some((start, end)) => {
                from = Some(end);
                Some(&text[at..start])
            }
            None => {
                from = None;
                Some(&text[at..])
            }
        }
    })
}

fn is_config_file(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

/// Accumulates documents from several sources.
struct Loader {
    namespace: String,
    config: Config,
    diagnostics: Diagnostics,
    /// (kind, namespace, name) → where it was first defined.
    seen: HashMap<ResourceRef, Origin>,
    next_index: usize,
}

impl Loader {
    fn new(namespace: &str) -> Self {
        Loader {
            namespace: namespace.to_string(),
            config: Config::default(),
            diagnostics: Diagnostics::default(),
            seen: HashMap::new(),
            next_index: 0,
        }
    }

    /// Reads every document of one file. Each is decoded as soon as it is parsed, so only one
    /// document's value tree is alive at a time per thread; a file with a YAML error anywhere loads
    /// nothing (its resources are only kept once the whole file has parsed).
    fn add_source(&mut self, file: &str, text: &str) {
        // Documents that are all JSON objects (what `kubectl get -o json` and generators write)
        // parse several times faster with serde_json, and on every core; anything else is YAML.
        let read = match json_documents(file, text, &self.namespace) {
            Some(read) => read,
            None => match yaml_documents(file, text, &self.namespace) {
                Ok(read) => read,
                Err(e) => {
                    self.yaml_error(file, &e);
                    return;
                }
            },
        };
        let (loaded, diagnostics) = read;
        self.diagnostics.extend(diagnostics);
        for (l, origin) in loaded {
            self.insert(l, origin);
        }
    }

    fn yaml_error(&mut self, file: &str, e: &serde_yaml::Error) {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        self.diagnostics.push(Diagnostic {
            severity: Severity::Error,
            code: Code::Yaml,
            location: Location::File { file: file.to_string(), line, column },
            message: e.to_string(),
            hint: None,
        });
    }

    fn insert(&mut self, mut loaded: document::Loaded, origin: Origin) {
        let id = loaded.meta().id.clone();
        if let Some(first) = self.seen.get(&id) {
            self.diagnostics.push(Diagnostic {
                severity: Severity::Warning,
                code: Code::Duplicate,
                location: Location::Resource { resource: id.clone(), path: String::new() },
                message: format!("defined in {first} and again in {origin}; the later definition is used"),
                hint: Some("keep one definition of each resource".into()),
            });
            let index = document::remove(&mut self.config, &id).unwrap_or(self.next_index);
            loaded.meta_mut().load_index = index;
        } else {
            self.seen.insert(id, origin);
            loaded.meta_mut().load_index = self.next_index;
            self.next_index += 1;
        }
        document::store(&mut self.config, loaded);
    }

    fn finish(mut self) -> Loaded {
        self.config.sort();
        Loaded { config: self.config, diagnostics: self.diagnostics }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(name: &str) -> String {
        format!("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}}}\nspec:\n  servers: []\n")
    }

    #[test]
    fn json_documents_load_as_their_yaml_would() {
        let json = "{\"apiVersion\":\"networking.istio.io/v1\",\"kind\":\"Gateway\",\"metadata\":{\"name\":\"a\"},\"spec\":{\"servers\":[],\"selectr\":{}}}\n---\n{\"apiVersion\":\"networking.istio.io/v1\",\"kind\":\"Gateway\",\"metadata\":{\"name\":\"b\"}}\n";
        let yaml = format!("{}---\n{}", gateway("a").replace("spec:\n", "spec:\n  selectr: {}\n"), gateway("b"));
        let (from_json, from_yaml) = (load_str("f", json, "default"), load_str("f", &yaml, "default"));
        let names = |l: &Loaded| l.config.gateways.iter().map(|g| g.meta.name().to_string()).collect::<Vec<_>>();
        assert_eq!(names(&from_json), ["a", "b"]);
        assert_eq!(names(&from_json), names(&from_yaml));
        assert_eq!(
            from_json.diagnostics.to_string(),
            from_yaml.diagnostics.to_string(),
            "the unknown field, at document 1"
        );
        assert_eq!(from_json.config.gateways[1].meta.origin.document, 2);
    }

    #[test]
    fn a_large_json_file_is_read_on_several_cores_in_document_order() {
        let doc = |i: usize| {
            format!("{{\"apiVersion\":\"networking.istio.io/v1\",\"kind\":\"Gateway\",\"metadata\":{{\"name\":\"g{i}\"}},\"spec\":{{\"x{i}\":1}}}}")
        };
        let text = (0..600).map(doc).collect::<Vec<_>>().join("\n---\n");
        let loaded = load_str("f", &text, "default");
        // Istio's order for resources without a creation time is load order.
        let docs: Vec<(String, usize)> =
            loaded.config.gateways.iter().map(|g| (g.meta.name().to_string(), g.meta.origin.document)).collect();
        assert_eq!(docs.len(), 600);
        assert!(docs.iter().enumerate().all(|(i, (name, n))| *name == format!("g{i}") && *n == i + 1), "{docs:?}");
        let unknown: Vec<String> = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
        assert_eq!(unknown.len(), 600);
        assert!(unknown[599].contains("g599") && unknown[599].contains("spec.x599"), "{}", unknown[599]);
        // One document that is not JSON (a YAML flow mapping): the whole file is read as YAML.
        let mixed =
            text.replacen(&doc(450), "{apiVersion: networking.istio.io/v1, kind: Gateway, metadata: {name: g450}}", 1);
        let loaded = load_str("f", &mixed, "default");
        assert_eq!(loaded.config.gateways.len(), 600);
        assert_eq!(loaded.config.gateways[450].meta.name(), "g450");
    }

    #[test]
    fn a_yaml_file_read_document_by_document_loads_as_it_does_in_order() {
        let summary = |r: &Read| {
            let ids: Vec<String> = r.0.iter().map(|(l, o)| format!("{:?} {}", l.meta().id, o.document)).collect();
            (ids, r.1.to_string())
        };
        let many = |doc: &dyn Fn(usize) -> String| (0..300).map(doc).collect::<Vec<_>>().join("---\n");
        let plain = many(&|i| gateway(&format!("g{i}")).replace("spec:\n", &format!("spec:\n  x{i}: 1\n")));
        let block = many(&|i| format!("# gateway {i}\n{}  # a comment\n", gateway(&format!("b{i}"))));
        let cases = [
            // (text, read document by document)
            (plain.clone(), true),
            (format!("# generated\n\n---\n{plain}"), true),
            (block, true),
            (format!("{plain}---\n"), false),
            (plain.replacen("---\n", "---\n# nothing here\n---\n", 1), false),
            (plain.replacen("---\n", "--- \n", 1), true),
            (plain.replacen("[]\n---\n", "[]\n--- {kind: Gateway, metadata: {name: extra}}\n---\n", 1), false),
            (plain.replacen("---\n", "...\n---\n", 1), true),
        ];
        for (n, (text, parallel)) in cases.iter().enumerate() {
            let in_order = yaml_documents_in_order("f", text, "default").unwrap();
            assert!(in_order.0.len() >= 300, "case {n}");
            assert_eq!(yaml_documents_by_part("f", text, "default").is_some(), *parallel, "case {n}");
            assert_eq!(summary(&yaml_documents("f", text, "default").unwrap()), summary(&in_order), "case {n}");
        }
        let broken = plain.replacen("x5: 1", "x5: [unclosed", 1);
        assert!(yaml_documents_by_part("f", &broken, "default").is_none());
        assert!(yaml_documents("f", &broken, "default").is_err(), "the error is reported by the in-order reader");
    }

    #[test]
    fn documents_split_at_lines_of_three_dashes_only() {
        let parts: Vec<&str> = split_documents("---\na: 1\n--- \r\nb: 2\n---x\nc: ---\n---").collect();
        assert_eq!(parts, ["", "a: 1\n", "b: 2\n---x\nc: ---\n", ""]);
        assert_eq!(split_documents("a: 1\n").collect::<Vec<_>>(), ["a: 1\n"]);
    }

    #[test]
    fn a_file_with_a_yaml_error_anywhere_loads_none_of_its_documents() {
        let text = format!("{}---\nkind: [unclosed\n", gateway("a"));
        let loaded = load_str("f", &text, "default");
        assert!(loaded.config.gateways.is_empty());
        assert_eq!(loaded.diagnostics.iter().count(), 1, "{}", loaded.diagnostics);
        let half_json = format!("{{\"apiVersion\":\"networking.istio.io/v1\",\"kind\":\"Gateway\",\"metadata\":{{\"name\":\"j\"}}}}\n---\n{}", gateway("y"));
        let mixed = load_str("f", &half_json, "default");
        let names: Vec<&str> = mixed.config.gateways.iter().map(|g| g.meta.name()).collect();
        assert_eq!(names, ["j", "y"], "JSON, then YAML: the whole file is read as YAML");
    }

    #[test]
    fn directories_load_recursively_in_sorted_order_skipping_dot_entries() {
        let root = std::env::temp_dir().join(format!("pylon-load-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(root.join("..2024_01_01")).unwrap();
        std::fs::write(root.join("b.yaml"), gateway("b")).unwrap();
        std::fs::write(root.join("a.yml"), gateway("a")).unwrap();
        std::fs::write(
            root.join("c.json"),
            r#"{"apiVersion":"networking.istio.io/v1","kind":"Gateway","metadata":{"name":"c"},"spec":{}}"#,
        )
        .unwrap();
        std::fs::write(root.join("notes.txt"), gateway("ignored-txt")).unwrap();
        std::fs::write(root.join(".hidden.yaml"), gateway("ignored-hidden")).unwrap();
        std::fs::write(root.join("..2024_01_01/mounted.yaml"), gateway("mounted")).unwrap();
        std::os::unix::fs::symlink("..2024_01_01", root.join("..data")).unwrap();
        // A mounted ConfigMap: the visible name links into the `..data` folder, read once.
        std::os::unix::fs::symlink("..data/mounted.yaml", root.join("m.yaml")).unwrap();
        std::fs::write(root.join("sub/d.yaml"), gateway("d")).unwrap();
        let loaded = load_paths(std::slice::from_ref(&root), "default").unwrap();
        let names: Vec<&str> = loaded.config.gateways.iter().map(|g| g.meta.name()).collect();
        assert_eq!(names, vec!["a", "b", "c", "mounted", "d"]);
        assert!(loaded.diagnostics.is_empty(), "{}", loaded.diagnostics);
        // A file named on the command line is read whatever its extension.
        let explicit = load_paths(&[root.join("notes.txt")], "default").unwrap();
        assert_eq!(explicit.config.gateways.len(), 1);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
