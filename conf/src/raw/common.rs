//! Types shared by several kinds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A string field as Istio's protos see it: an empty string is unset.
pub fn given(field: &Option<String>) -> bool {
    field.as_deref().is_some_and(|v| !v.is_empty())
}

/// Istio `StringMatch`: exactly one of `exact`, `prefix`, `regex` (validation checks the "one of").
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StringMatch {
    /// Exact string match (case-sensitive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// String prefix match (case-sensitive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// RE2 regular expression, matched against the whole value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Written as `null` (a header match Istio refuses: `header match NAME cannot be null`).
    #[serde(skip)]
    pub null: bool,
}

/// A map of string matches whose `null` values are kept (as [`StringMatch::null`]) for validation
/// to refuse, instead of reading as empty matches.
pub fn nullable_matches<'de, D>(d: D) -> Result<BTreeMap<String, StringMatch>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let map: BTreeMap<String, Option<StringMatch>> = Deserialize::deserialize(d)?;
    Ok(map.into_iter().map(|(k, v)| (k, v.unwrap_or(StringMatch { null: true, ..StringMatch::default() }))).collect())
}

/// A list held at its length. Decoded from a parser's events (YAML's or JSON's), whose lists do
/// not say their length, a `Vec` doubles as it grows: a route's one match took four places of 528 bytes, and
/// 100,000 routes held over 200 MB more than their value trees gave them.
pub fn exact_vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    let mut v: Vec<T> = Deserialize::deserialize(d)?;
    v.shrink_to_fit();
    Ok(v)
}

/// Istio `Percent`: a double in 0..=100.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Percent {
    /// The percentage.
    pub value: f64,
}

/// Istio `PortSelector`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct PortSelector {
    /// The port number.
    pub number: u32,
}

/// Istio `WorkloadSelector` (ServiceEntry) — `labels`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct WorkloadSelector {
    /// Labels a workload must carry.
    pub labels: BTreeMap<String, String>,
}

/// Istio `type.v1beta1.WorkloadSelector` (DestinationRule and security kinds) — `matchLabels`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LabelSelector {
    /// Labels a workload must carry.
    pub match_labels: BTreeMap<String, String>,
}

/// Istio `Headers` (request and response header operations).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct Headers {
    /// Operations on the request sent upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<HeaderOperations>,
    /// Operations on the response sent downstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<HeaderOperations>,
}

/// Istio `Headers.HeaderOperations`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct HeaderOperations {
    /// Overwrite or add.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Append (or add).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    /// Remove.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}
