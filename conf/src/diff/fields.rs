//! Field-by-field comparison of two JSON values: the leaves that differ, as
//! `path: old → new`, `path: added new` or `path: removed old`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// Fields that name an element of a list: lists whose elements all carry one (and no two the same)
/// are compared by it, so that inserting a destination, filter chain or endpoint reads as one
/// addition.
const IDENTITY: &[&str] = &["name", "server", "endpoint"];

/// The fields that say which variant an enum value is (`type`, and `source` for PEM data).
const TAGS: &[&str] = &["type", "source"];

/// Every leaf where `new` differs from `old`, in path order. A missing field and `null` are the
/// same: both mean "not set".
pub(super) fn differences(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk("", old, new, &mut out);
    out
}

fn walk(path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    if old == new {
        return;
    }
    match (old, new) {
        (Value::Null, _) => out.push(format!("{path}: added {new}")),
        (_, Value::Null) => out.push(format!("{path}: removed {old}")),
        // Another kind of thing (a passthrough chain for an HTTP one, a missing certificate for a
        // Secret's) is one change, not one per field of either.
        (Value::Object(a), Value::Object(b)) if TAGS.iter().any(|t| a.get(*t) != b.get(*t)) => {
            out.push(format!("{path}: {old} → {new}"));
        }
        (Value::Object(a), Value::Object(b)) => {
            let field = |k: &str| if path.is_empty() { k.to_string() } else { format!("{path}.{k}") };
            members(field, a.clone().into_iter().collect(), b.clone().into_iter().collect(), out);
        }
        (Value::Array(a), Value::Array(b)) => match (keyed(a), keyed(b)) {
            (Some(a), Some(b)) => members(|k| format!("{path}[{k}]"), a, b, out),
            // Same-length lists of objects compare element by element; lists of scalars (hosts,
            // SNI names) read best whole.
            _ if a.len() == b.len() && a.iter().chain(b).all(Value::is_object) => {
                a.iter().zip(b).enumerate().for_each(|(i, (x, y))| walk(&format!("{path}[{i}]"), x, y, out));
            }
            _ => out.push(format!("{path}: {old} → {new}")),
        },
        _ => out.push(format!("{path}: {old} → {new}")),
    }
}

/// Compares the members of two maps, each at the path `at` gives its key.
fn members(
    at: impl Fn(&str) -> String,
    old: BTreeMap<String, Value>,
    new: BTreeMap<String, Value>,
    out: &mut Vec<String>,
) {
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for k in keys {
        walk(&at(k), old.get(k).unwrap_or(&Value::Null), new.get(k).unwrap_or(&Value::Null), out);
    }
}

/// A list of named objects as a map from the name to the rest of the object; `None` when the list
/// is not one (an element without an identity field, or two with the same). An empty list is an
/// empty map, so that the first destination or mirror added reads as an addition.
fn keyed(list: &[Value]) -> Option<BTreeMap<String, Value>> {
    let mut map = BTreeMap::new();
    let Some(first) = list.first() else { return Some(map) };
    let field = IDENTITY.iter().find(|f| first.get(**f).is_some_and(Value::is_string))?;
    for item in list {
        let mut item = item.as_object()?.clone();
        let Some(Value::String(key)) = item.remove(*field) else { return None };
        if map.insert(key, Value::Object(item)).is_some() {
            return None;
        }
    }
    Some(map)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::differences;

    #[test]
    fn nested_fields_are_reported_by_path() {
        let old = json!({"tls": {"mode": "SIMPLE", "sni": ["a"]}, "timeout": "5s"});
        let new = json!({"tls": {"mode": "MUTUAL", "sni": ["a", "b"]}, "retries": 3});
        assert_eq!(
            differences(&old, &new),
            [
                "retries: added 3",
                "timeout: removed \"5s\"",
                "tls.mode: \"SIMPLE\" → \"MUTUAL\"",
                "tls.sni: [\"a\"] → [\"a\",\"b\"]",
            ]
        );
    }

    #[test]
    fn named_elements_are_compared_by_name_not_position() {
        let old = json!({"destinations": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50}]});
        let new = json!({"destinations": [{"name": "c", "weight": 20}, {"name": "a", "weight": 40}, {"name": "b", "weight": 40}]});
        assert_eq!(
            differences(&old, &new),
            [
                "destinations[a].weight: 50 → 40",
                "destinations[b].weight: 50 → 40",
                "destinations[c]: added {\"weight\":20}",
            ]
        );
    }

    #[test]
    fn a_value_of_another_variant_is_one_change() {
        let old = json!({"action": {"type": "http", "route_config": "https.443"}});
        let new = json!({"action": {"type": "passthrough", "route": {"origin": "default/vs tls[0]"}}});
        assert_eq!(
            differences(&old, &new),
            ["action: {\"route_config\":\"https.443\",\"type\":\"http\"} → {\"route\":{\"origin\":\"default/vs tls[0]\"},\"type\":\"passthrough\"}"]
        );
    }

    #[test]
    fn unnamed_lists_of_objects_of_one_length_compare_by_position() {
        let old = json!({"rules": [{"to": 1}, {"to": 2}]});
        let new = json!({"rules": [{"to": 1}, {"to": 3}]});
        assert_eq!(differences(&old, &new), ["rules[1].to: 2 → 3"]);
        let longer = json!({"rules": [{"to": 1}, {"to": 2}, {"to": 3}]});
        assert_eq!(differences(&old, &longer), ["rules: [{\"to\":1},{\"to\":2}] → [{\"to\":1},{\"to\":2},{\"to\":3}]"]);
    }
}
