//! What a request names, validated before the registry is locked: the version selector and
//! the candidate schema reduced to the canonical form that decides its identity.

use std::str::FromStr;

use apache_avro::Schema;
use serde_json::Value;

use super::RegistryError;

/// Which version of a subject a request means.
#[derive(Debug, Clone, Copy)]
pub enum VersionSelector {
    Latest,
    Number(u32),
}

impl FromStr for VersionSelector {
    type Err = RegistryError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "latest" || text == "-1" {
            return Ok(Self::Latest);
        }
        match text.parse::<u32>() {
            Ok(number) if (1..=i32::MAX as u32).contains(&number) => Ok(Self::Number(number)),
            _ => Err(RegistryError::InvalidVersion(text.to_owned())),
        }
    }
}

/// A schema from a request, validated and reduced to the form that identifies it.
pub struct CandidateSchema {
    pub(super) parsed: Schema,
    /// Compact JSON with sorted keys: formatting and key order carry no meaning in a schema,
    /// so schemas that differ only in them get the same id.
    pub(super) canonical: String,
}

impl CandidateSchema {
    /// Validates a schema as sent to the API; only Avro is supported, without references.
    pub fn parse(
        text: &str,
        schema_type: Option<&str>,
        has_references: bool,
    ) -> Result<Self, RegistryError> {
        if let Some(other) = schema_type.filter(|t| !t.eq_ignore_ascii_case("AVRO")) {
            return Err(RegistryError::InvalidSchema(format!(
                "schema type {other} is not supported; this registry only stores AVRO schemas"
            )));
        }
        if has_references {
            return Err(RegistryError::InvalidSchema(
                "schema references are not supported; inline the referenced types".to_owned(),
            ));
        }
        let parsed = Schema::parse_str(text)
            .map_err(|error| RegistryError::InvalidSchema(error.to_string()))?;
        let canonical = canonical_json(text).map_err(|error| {
            RegistryError::InvalidSchema(format!("schema is not valid JSON: {error}"))
        })?;
        Ok(Self { parsed, canonical })
    }
}

fn canonical_json(text: &str) -> Result<String, serde_json::Error> {
    fn sort_keys(value: Value) -> Value {
        match value {
            // Sorted explicitly: serde_json keeps insertion order when any crate in the
            // build enables its `preserve_order` feature.
            Value::Object(map) => {
                let mut entries: Vec<(String, Value)> = map.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k, sort_keys(v)))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.into_iter().map(sort_keys).collect()),
            other => other,
        }
    }
    Ok(sort_keys(serde_json::from_str(text)?).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER_V1: &str =
        r#"{"type":"record","name":"User","fields":[{"name":"id","type":"long"}]}"#;

    fn candidate(text: &str) -> CandidateSchema {
        CandidateSchema::parse(text, None, false).unwrap()
    }

    #[test]
    fn formatting_and_key_order_do_not_change_identity() {
        let reordered = "{ \"fields\": [{\"type\": \"long\", \"name\": \"id\"}],\n  \"name\": \"User\", \"type\": \"record\" }";
        assert_eq!(candidate(USER_V1).canonical, candidate(reordered).canonical);
    }

    #[test]
    fn unsupported_types_and_references_are_invalid_schemas() {
        let protobuf = CandidateSchema::parse("syntax = \"proto3\";", Some("PROTOBUF"), false);
        assert!(matches!(protobuf, Err(RegistryError::InvalidSchema(m)) if m.contains("PROTOBUF")));
        let with_refs = CandidateSchema::parse(USER_V1, Some("AVRO"), true);
        assert!(
            matches!(with_refs, Err(RegistryError::InvalidSchema(m)) if m.contains("references"))
        );
    }
}
