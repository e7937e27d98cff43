//! Compatibility levels and the Avro schema-evolution checks behind them.
//!
//! The levels mean what they mean in Confluent Schema Registry: BACKWARD lets consumers on
//! the new schema read data written with the latest registered one, FORWARD lets consumers
//! on the latest registered schema read data written with the new one, FULL is both, and
//! the `_TRANSITIVE` variants check every registered version instead of only the latest.

use std::{fmt, str::FromStr};

use apache_avro::{
    Schema,
    schema_compatibility::{Compatibility, SchemaCompatibility},
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CompatibilityLevel {
    None,
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "Invalid compatibility level `{0}`. Valid values are NONE, BACKWARD, BACKWARD_TRANSITIVE, \
     FORWARD, FORWARD_TRANSITIVE, FULL and FULL_TRANSITIVE"
)]
pub struct InvalidCompatibilityLevel(pub String);

/// A registered version the candidate schema is checked against.
pub struct RegisteredVersion<'a> {
    pub version: u32,
    pub schema: &'a Schema,
}

impl CompatibilityLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Backward => "BACKWARD",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::Forward => "FORWARD",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::Full => "FULL",
            Self::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    fn new_schema_must_read_old_data(self) -> bool {
        matches!(
            self,
            Self::Backward | Self::BackwardTransitive | Self::Full | Self::FullTransitive
        )
    }

    fn old_schemas_must_read_new_data(self) -> bool {
        matches!(
            self,
            Self::Forward | Self::ForwardTransitive | Self::Full | Self::FullTransitive
        )
    }

    fn is_transitive(self) -> bool {
        matches!(
            self,
            Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive
        )
    }

    /// Why `candidate` may not follow `registered` (oldest first) under this level; empty
    /// when it may. Non-transitive levels look at the last registered version only.
    pub fn incompatibilities(
        self,
        candidate: &Schema,
        registered: &[RegisteredVersion<'_>],
    ) -> Vec<String> {
        let checked = if self.is_transitive() {
            registered
        } else {
            registered
                .len()
                .checked_sub(1)
                .map_or(&[][..], |last| &registered[last..])
        };
        let mut reasons = Vec::new();
        for old in checked {
            if self.new_schema_must_read_old_data()
                && let Some(why) = why_unreadable(old.schema, candidate)
            {
                reasons.push(format!(
                    "the new schema cannot read data written with version {}: {why}",
                    old.version
                ));
            }
            if self.old_schemas_must_read_new_data()
                && let Some(why) = why_unreadable(candidate, old.schema)
            {
                reasons.push(format!(
                    "version {} cannot read data written with the new schema: {why}",
                    old.version
                ));
            }
        }
        reasons
    }
}

/// Why data written with `writer` cannot always be read with `reader`, if it cannot.
fn why_unreadable(writer: &Schema, reader: &Schema) -> Option<String> {
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(Compatibility::Full) => None,
        // Partial means some writer union branches have no reader counterpart: reading
        // fails for exactly those values, which Confluent counts as incompatible.
        Ok(Compatibility::Partial) => {
            Some("only some of the writer's union branches can be read by the reader".to_owned())
        }
        Err(error) => Some(error.to_string()),
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CompatibilityLevel {
    type Err = InvalidCompatibilityLevel;

    /// Case-insensitive, as clients are not consistent about it.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let level = match text.trim().to_ascii_uppercase().as_str() {
            "NONE" => Self::None,
            "BACKWARD" => Self::Backward,
            "BACKWARD_TRANSITIVE" => Self::BackwardTransitive,
            "FORWARD" => Self::Forward,
            "FORWARD_TRANSITIVE" => Self::ForwardTransitive,
            "FULL" => Self::Full,
            "FULL_TRANSITIVE" => Self::FullTransitive,
            _ => return Err(InvalidCompatibilityLevel(text.to_owned())),
        };
        Ok(level)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &str) -> Schema {
        Schema::parse_str(&format!(
            r#"{{"type":"record","name":"User","fields":[{fields}]}}"#
        ))
        .unwrap()
    }

    fn versions(schemas: &[Schema]) -> Vec<RegisteredVersion<'_>> {
        schemas
            .iter()
            .zip(1..)
            .map(|(schema, version)| RegisteredVersion { version, schema })
            .collect()
    }

    #[test]
    fn backward_accepts_a_field_with_default_and_rejects_one_without() {
        let old = [record(r#"{"name":"id","type":"long"}"#)];
        let with_default =
            record(r#"{"name":"id","type":"long"},{"name":"email","type":"string","default":""}"#);
        let without_default =
            record(r#"{"name":"id","type":"long"},{"name":"email","type":"string"}"#);
        let level = CompatibilityLevel::Backward;
        assert!(
            level
                .incompatibilities(&with_default, &versions(&old))
                .is_empty()
        );
        let reasons = level.incompatibilities(&without_default, &versions(&old));
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(reasons[0].contains("version 1"), "{reasons:?}");
    }

    #[test]
    fn forward_is_the_reverse_direction() {
        let old = [record(
            r#"{"name":"id","type":"long"},{"name":"email","type":"string"}"#,
        )];
        let dropped_field = record(r#"{"name":"id","type":"long"}"#);
        assert!(
            CompatibilityLevel::Backward
                .incompatibilities(&dropped_field, &versions(&old))
                .is_empty()
        );
        assert!(
            !CompatibilityLevel::Forward
                .incompatibilities(&dropped_field, &versions(&old))
                .is_empty()
        );
    }

    #[test]
    fn only_transitive_levels_look_past_the_latest_version() {
        let old = [
            record(r#"{"name":"id","type":"long"}"#),
            record(r#"{"name":"id","type":"long"},{"name":"email","type":"string","default":""}"#),
        ];
        // Without a default it cannot read version 1's data, but version 2 supplies the field.
        let candidate = record(r#"{"name":"id","type":"long"},{"name":"email","type":"string"}"#);
        assert!(
            CompatibilityLevel::Backward
                .incompatibilities(&candidate, &versions(&old))
                .is_empty()
        );
        let reasons =
            CompatibilityLevel::BackwardTransitive.incompatibilities(&candidate, &versions(&old));
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(reasons[0].contains("version 1"), "{reasons:?}");
    }

    #[test]
    fn levels_parse_case_insensitively_and_reject_unknown_names() {
        assert_eq!(
            "full_transitive".parse::<CompatibilityLevel>().unwrap(),
            CompatibilityLevel::FullTransitive
        );
        let err = "SIDEWAYS".parse::<CompatibilityLevel>().unwrap_err();
        assert!(err.to_string().contains("SIDEWAYS"), "{err}");
    }
}
