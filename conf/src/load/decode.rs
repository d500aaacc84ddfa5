//! Decoding a YAML value into a typed spec, reporting every unknown field and the first type error
//! with its YAML path.

use serde::de::DeserializeOwned;
use serde_yaml::Value;

use crate::diagnostic::{Code, Reporter};

/// Decodes `value` (found at `root`, e.g. `spec`) into `T`.
///
/// Every field `T` does not have is an error naming it (README "Configuration": a misspelled field is an error),
/// unless `lenient` (kinds without a spec, like Secret). A wrong type or unknown enum value stops the
/// decoding of this resource; it is reported with its path and `None` is returned.
pub(super) fn decode<T: DeserializeOwned>(value: Value, root: &str, r: &mut Reporter<'_>, lenient: bool) -> Option<T> {
    let mut unknown = Vec::new();
    let mut record = |path: serde_ignored::Path<'_>| unknown.push(ignored_path(root, &path));
    let de = serde_ignored::Deserializer::new(value, &mut record);
    let result: Result<T, _> = serde_path_to_error::deserialize(de);
    if !lenient {
        for path in &unknown {
            let field = path.rsplit(['.', ']']).next().unwrap_or(path);
            r.error(Code::UnknownField, path.clone(), format!("unknown field `{field}`")).hint = Some(
                "check the spelling against the Istio API reference; Pylon rejects fields it does not know".into(),
            );
        }
    }
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            let path = join(root, &error_path(e.path()));
            r.error(Code::InvalidValue, path, e.inner().to_string());
            None
        }
    }
}

fn join(root: &str, rest: &str) -> String {
    match (root.is_empty(), rest.is_empty()) {
        (_, true) => root.to_string(),
        (true, false) => rest.trim_start_matches('.').to_string(),
        (false, false) if rest.starts_with('[') => format!("{root}{rest}"),
        (false, false) => format!("{root}.{}", rest.trim_start_matches('.')),
    }
}

fn error_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => push_key(&mut out, key),
            Segment::Enum { variant } => push_key(&mut out, variant),
            Segment::Unknown => {}
        }
    }
    out
}

fn ignored_path(root: &str, path: &serde_ignored::Path<'_>) -> String {
    fn walk(path: &serde_ignored::Path<'_>, out: &mut String) {
        use serde_ignored::Path;
        match path {
            Path::Root => {}
            Path::Seq { parent, index } => {
                walk(parent, out);
                out.push_str(&format!("[{index}]"));
            }
            Path::Map { parent, key } => {
                walk(parent, out);
                push_key(out, key);
            }
            Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => {
                walk(parent, out)
            }
        }
    }
    let mut rest = String::new();
    walk(path, &mut rest);
    join(root, &rest)
}

fn push_key(out: &mut String, key: &str) {
    if key.is_empty() || key.contains(['.', '[', ']', ' ', '/']) {
        out.push_str(&format!("[{key:?}]"));
    } else {
        out.push('.');
        out.push_str(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::{Diagnostics, ResourceRef};
    use crate::raw;

    fn run<T: DeserializeOwned>(yaml: &str) -> (Option<T>, Vec<String>) {
        let id = ResourceRef { kind: "Gateway".into(), namespace: "default".into(), name: "gw".into() };
        let mut out = Diagnostics::default();
        let v: Value = serde_yaml::from_str(yaml).unwrap();
        let t = decode::<T>(v, "spec", &mut Reporter::new(&id, &mut out), false);
        (t, out.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn every_unknown_field_is_reported_with_its_path() {
        let (gw, diags) = run::<raw::Gateway>(
            "servers:\n- port: {number: 80, name: http, protocol: HTTP, numbr: 1}\n  hostz: [a]\nselectr: {}\n",
        );
        assert!(gw.is_some());
        assert_eq!(
            diags,
            vec![
                "error[unknown-field] Gateway default/gw spec.servers[0].port.numbr: unknown field `numbr`; fix: check the spelling against the Istio API reference; Pylon rejects fields it does not know",
                "error[unknown-field] Gateway default/gw spec.servers[0].hostz: unknown field `hostz`; fix: check the spelling against the Istio API reference; Pylon rejects fields it does not know",
                "error[unknown-field] Gateway default/gw spec.selectr: unknown field `selectr`; fix: check the spelling against the Istio API reference; Pylon rejects fields it does not know",
            ]
        );
    }

    #[test]
    fn a_wrong_type_is_reported_with_its_path() {
        let (gw, diags) = run::<raw::Gateway>("servers:\n- port: {number: eighty}\n");
        assert!(gw.is_none());
        assert_eq!(diags.len(), 1);
        assert!(
            diags[0].starts_with("error[invalid-value] Gateway default/gw spec.servers[0].port.number: invalid type"),
            "{diags:?}"
        );
    }

    #[test]
    fn an_unknown_enum_value_names_the_allowed_ones() {
        let (_, diags) = run::<raw::Gateway>("servers:\n- tls: {mode: SIMPEL}\n");
        assert!(diags[0].contains("spec.servers[0].tls.mode: unknown variant `SIMPEL`, expected one of"), "{diags:?}");
    }
}
