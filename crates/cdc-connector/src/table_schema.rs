//! Column metadata of the published tables (`CDCTableSchema` on `topic_cdc_table_schemas`):
//! what a sink needs to type a column without guessing — the declared type with its precision,
//! scale or length, nullability, the key columns, an enum's labels.
//!
//! pgoutput's Relation message carries names, type OIDs, modifiers and replica-identity flags;
//! the rest comes from the catalog when the Relation message arrives (and when a snapshot plans
//! its tables). The catalog describes the table as it is now, so a change decoded long after a
//! DDL gets today's nullability; a column the catalog no longer has is published with
//! `nullable = null`. Each distinct column list is one *version*, a hash of the metadata: the
//! same table definition has the same version across restarts and between snapshot and stream,
//! and every `CDCChange` names the version it was decoded with (`table_schema`).

use std::sync::Arc;

use apache_avro::types::Value;
use pgoutput::{message::Relation, row::TypeNames};
use sha2::{Digest, Sha256};

use crate::privacy::{ChangeFilter, ColumnTreatment, FilterError};

/// One column as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogColumn {
    pub name: String,
    /// `format_type` of the declared type: `numeric(10,2)`, `public.mood`, `integer[]`.
    pub type_name: String,
    pub type_oid: u32,
    /// The modifier that applies (a domain's own for a domain column), -1 for none.
    pub type_modifier: i32,
    pub nullable: bool,
    /// For an enum column or an array of enums: the labels in sort order.
    pub enum_labels: Option<Vec<String>>,
}

/// What the catalog says about one table: its columns, and the user types among them that
/// pgoutput cannot classify (enums; range types and their subtypes), named as
/// [`TypeNames::name`] spells them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogTable {
    pub columns: Vec<CatalogColumn>,
    pub enum_types: Vec<String>,
    pub range_types: Vec<(String, String)>,
}

impl CatalogTable {
    /// Teaches `types` the enums and ranges of this table.
    pub fn teach(&self, types: &mut TypeNames) {
        for name in &self.enum_types {
            types.learn_enum(name);
        }
        for (range, subtype) in &self.range_types {
            types.learn_range(range, subtype);
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSchema {
    pub name: String,
    pub type_name: String,
    /// The type the value is decoded by (`text` for a masked or hashed column).
    pub value_type: String,
    pub type_oid: u32,
    pub type_modifier: i32,
    pub numeric_precision: Option<i32>,
    pub numeric_scale: Option<i32>,
    pub length: Option<i32>,
    pub time_precision: Option<i32>,
    pub nullable: Option<bool>,
    pub part_of_key: bool,
    pub enum_labels: Option<Vec<String>>,
}

/// One version of a table's column metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    /// `schema.table/version`: the Kafka key and what `CDCChange.table_schema` holds.
    pub id: Arc<str>,
    pub table: Arc<str>,
    pub version: String,
    pub columns: Vec<ColumnSchema>,
}

/// The metadata of `relation`'s published columns: the Relation message's columns (the ones
/// the records carry, after `filter`), completed from `catalog` by name. `key` says whether a
/// column is in the change's `primary_key` map.
pub fn describe(
    table: &Arc<str>,
    relation: &Relation,
    catalog: &CatalogTable,
    types: &TypeNames,
    filter: &ChangeFilter,
    key: impl Fn(&str) -> bool,
) -> Result<TableSchema, FilterError> {
    let mut columns = Vec::with_capacity(relation.columns.len());
    for column in &relation.columns {
        let part_of_key = key(&column.name);
        let treatment = filter.column_treatment(table, &column.name, part_of_key)?;
        if treatment == ColumnTreatment::Dropped {
            continue;
        }
        let described = catalog.columns.iter().find(|c| *c.name == *column.name);
        let decoded_as = types.name(column.type_id);
        let value_type = match treatment {
            ColumnTreatment::Rewritten => "text".to_owned(),
            _ => decoded_as.clone().into_owned(),
        };
        let type_modifier = described.map_or(column.type_modifier, |c| c.type_modifier);
        let modifiers = Modifiers::of(&decoded_as, type_modifier);
        columns.push(ColumnSchema {
            name: column.name.to_string(),
            type_name: described
                .map_or_else(|| decoded_as.clone().into_owned(), |c| c.type_name.clone()),
            value_type,
            type_oid: described.map_or(column.type_id, |c| c.type_oid),
            type_modifier,
            numeric_precision: modifiers.numeric_precision,
            numeric_scale: modifiers.numeric_scale,
            length: modifiers.length,
            time_precision: modifiers.time_precision,
            nullable: described.map(|c| c.nullable),
            part_of_key,
            enum_labels: described.and_then(|c| c.enum_labels.clone()),
        });
    }
    let version = version(&columns);
    Ok(TableSchema {
        id: format!("{table}/{version}").into(),
        table: table.clone(),
        version,
        columns,
    })
}

/// What a type modifier declares, by the decoded type's name.
#[derive(Debug, Default, PartialEq, Eq)]
struct Modifiers {
    numeric_precision: Option<i32>,
    numeric_scale: Option<i32>,
    length: Option<i32>,
    time_precision: Option<i32>,
}

impl Modifiers {
    fn of(value_type: &str, type_modifier: i32) -> Self {
        const VARHDRSZ: i32 = 4;
        let element = value_type.strip_prefix('_').unwrap_or(value_type);
        if type_modifier < 0 {
            return Self::default();
        }
        match element {
            "numeric" => match pgoutput::row::numeric_modifier(type_modifier) {
                Some((precision, scale)) => Self {
                    numeric_precision: Some(i32::from(precision)),
                    numeric_scale: Some(i32::from(scale)),
                    ..Self::default()
                },
                None => Self::default(),
            },
            "varchar" | "bpchar" => Self {
                length: Some(type_modifier - VARHDRSZ),
                ..Self::default()
            },
            "bit" | "varbit" => Self {
                length: Some(type_modifier),
                ..Self::default()
            },
            "time" | "timetz" | "timestamp" | "timestamptz" => Self {
                time_precision: Some(type_modifier),
                ..Self::default()
            },
            // An interval's modifier packs its field mask above the precision; 0xFFFF is "none".
            "interval" if type_modifier & 0xFFFF != 0xFFFF => Self {
                time_precision: Some(type_modifier & 0xFFFF),
                ..Self::default()
            },
            _ => Self::default(),
        }
    }
}

/// 16 hex digits of SHA-256 over the metadata, field by field, so equal metadata always has
/// the same version.
fn version(columns: &[ColumnSchema]) -> String {
    let mut hasher = Sha256::new();
    for column in columns {
        let fields = [
            column.name.as_str(),
            &column.type_name,
            &column.value_type,
            &column.type_oid.to_string(),
            &column.type_modifier.to_string(),
            &format!("{:?}", column.nullable),
            &column.part_of_key.to_string(),
            &column
                .enum_labels
                .as_ref()
                .map_or(String::new(), |labels| labels.join("\u{1}")),
        ];
        for field in fields {
            hasher.update((field.len() as u64).to_be_bytes());
            hasher.update(field.as_bytes());
        }
    }
    let digest = hasher.finalize();
    digest[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

impl TableSchema {
    /// The `CDCTableSchema` record, published at WAL position `source_lsn`.
    pub fn to_avro(&self, source_lsn: u64, captured_at_millis: i64) -> Value {
        let optional_int = |value: Option<i32>| match value {
            None => Value::Union(0, Box::new(Value::Null)),
            Some(value) => Value::Union(1, Box::new(Value::Int(value))),
        };
        let columns = self
            .columns
            .iter()
            .enumerate()
            .map(|(index, column)| {
                Value::Record(vec![
                    ("name".into(), Value::String(column.name.clone())),
                    ("position".into(), Value::Int(index as i32 + 1)),
                    ("type_name".into(), Value::String(column.type_name.clone())),
                    (
                        "value_type".into(),
                        Value::String(column.value_type.clone()),
                    ),
                    ("type_oid".into(), Value::Long(i64::from(column.type_oid))),
                    ("type_modifier".into(), Value::Int(column.type_modifier)),
                    (
                        "numeric_precision".into(),
                        optional_int(column.numeric_precision),
                    ),
                    ("numeric_scale".into(), optional_int(column.numeric_scale)),
                    ("length".into(), optional_int(column.length)),
                    ("time_precision".into(), optional_int(column.time_precision)),
                    (
                        "nullable".into(),
                        match column.nullable {
                            None => Value::Union(0, Box::new(Value::Null)),
                            Some(nullable) => Value::Union(1, Box::new(Value::Boolean(nullable))),
                        },
                    ),
                    ("part_of_key".into(), Value::Boolean(column.part_of_key)),
                    (
                        "enum_labels".into(),
                        match &column.enum_labels {
                            None => Value::Union(0, Box::new(Value::Null)),
                            Some(labels) => Value::Union(
                                1,
                                Box::new(Value::Array(
                                    labels.iter().cloned().map(Value::String).collect(),
                                )),
                            ),
                        },
                    ),
                ])
            })
            .collect();
        Value::Record(vec![
            ("id".into(), Value::String(self.id.to_string())),
            ("table_name".into(), Value::String(self.table.to_string())),
            ("version".into(), Value::String(self.version.clone())),
            ("columns".into(), Value::Array(columns)),
            (
                "source_lsn".into(),
                Value::Long(i64::try_from(source_lsn).unwrap_or(i64::MAX)),
            ),
            (
                "captured_at".into(),
                Value::TimestampMillis(captured_at_millis),
            ),
        ])
    }
}

/// Reads what the catalog says about the table `relation_id`: every column's declared type,
/// modifier and nullability (through a domain to its base type, as `information_schema` does),
/// and the enums and ranges among the column types or their array elements.
pub async fn read_catalog(
    client: &tokio_postgres::Client,
    relation_id: u32,
) -> Result<CatalogTable, tokio_postgres::Error> {
    // `et` is the type that classifies the value: the base type of a domain, or an array's
    // element type.
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.atttypid, \
                    information_schema._pg_truetypmod(a.*, t.*), NOT a.attnotnull, \
                    et.typtype::text, \
                    CASE WHEN en.nspname = 'pg_catalog' THEN et.typname::text \
                         ELSE en.nspname || '.' || et.typname END, \
                    (SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder) \
                       FROM pg_enum e WHERE e.enumtypid = et.oid), \
                    (SELECT CASE WHEN sn.nspname = 'pg_catalog' THEN st.typname::text \
                                 ELSE sn.nspname || '.' || st.typname END \
                       FROM pg_range r JOIN pg_type st ON st.oid = r.rngsubtype \
                       JOIN pg_namespace sn ON sn.oid = st.typnamespace \
                      WHERE r.rngtypid = et.oid) \
             FROM pg_attribute a \
             JOIN pg_type t ON t.oid = a.atttypid \
             JOIN pg_type bt ON bt.oid = information_schema._pg_truetypid(a.*, t.*) \
             JOIN pg_type et ON et.oid = CASE WHEN bt.typcategory = 'A' AND bt.typelem <> 0 \
                                              THEN bt.typelem ELSE bt.oid END \
             JOIN pg_namespace en ON en.oid = et.typnamespace \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            &[&relation_id],
        )
        .await?;
    let mut table = CatalogTable::default();
    for row in rows {
        let kind: String = row.get(5);
        let element_type: String = row.get(6);
        let enum_labels: Option<Vec<String>> = row.get(7);
        let range_subtype: Option<String> = row.get(8);
        if kind == "e" && !table.enum_types.contains(&element_type) {
            table.enum_types.push(element_type.clone());
        }
        if let Some(subtype) = range_subtype
            && !table
                .range_types
                .iter()
                .any(|(range, _)| *range == element_type)
        {
            table.range_types.push((element_type, subtype));
        }
        table.columns.push(CatalogColumn {
            name: row.get(0),
            type_name: row.get(1),
            type_oid: row.get(2),
            type_modifier: row.get(3),
            nullable: row.get(4),
            enum_labels: if kind == "e" { enum_labels } else { None },
        });
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use pgoutput::message::{Column, ReplicaIdentity};

    use super::*;

    fn relation() -> Relation {
        let column = |name: &str, type_id, type_modifier, is_key| Column {
            is_key,
            name: name.into(),
            type_id,
            type_modifier,
        };
        Relation {
            id: 16_384,
            namespace: "public".into(),
            name: "trips".into(),
            replica_identity: ReplicaIdentity::Default,
            columns: vec![
                column("trip_id", 20, -1, true),
                column("fare", 1700, (10 << 16 | 2) + 4, false),
                column("code", 1043, 12 + 4, false),
                column("mood", 70_000, -1, false),
                column("left_at", 1184, 3, false),
                column("dropped_later", 25, -1, false),
            ],
        }
    }

    fn catalog() -> CatalogTable {
        let column =
            |name: &str, type_name: &str, type_oid, type_modifier, nullable| CatalogColumn {
                name: name.into(),
                type_name: type_name.into(),
                type_oid,
                type_modifier,
                nullable,
                enum_labels: None,
            };
        let mut mood = column("mood", "public.mood", 70_000, -1, true);
        mood.enum_labels = Some(vec!["sad".into(), "ok".into(), "happy".into()]);
        CatalogTable {
            columns: vec![
                column("trip_id", "bigint", 20, -1, false),
                column("fare", "numeric(10,2)", 1700, (10 << 16 | 2) + 4, true),
                column("code", "character varying(12)", 1043, 16, false),
                mood,
                column("left_at", "timestamp(3) with time zone", 1184, 3, true),
            ],
            enum_types: vec!["public.mood".into()],
            range_types: vec![],
        }
    }

    fn types() -> TypeNames {
        let mut types = TypeNames::new();
        types.learn(70_000, "public", "mood");
        types
    }

    fn table() -> Arc<str> {
        "public.trips".into()
    }

    #[test]
    fn columns_get_declared_modifiers_nullability_keys_and_labels() {
        let schema = describe(
            &table(),
            &relation(),
            &catalog(),
            &types(),
            &ChangeFilter::default(),
            |name| name == "trip_id",
        )
        .unwrap();
        assert_eq!(
            schema.id.as_ref(),
            format!("public.trips/{}", schema.version)
        );
        let by_name = |name: &str| schema.columns.iter().find(|c| c.name == name).unwrap();
        let fare = by_name("fare");
        assert_eq!(
            (
                fare.type_name.as_str(),
                fare.value_type.as_str(),
                fare.numeric_precision,
                fare.numeric_scale
            ),
            ("numeric(10,2)", "numeric", Some(10), Some(2))
        );
        assert_eq!(by_name("code").length, Some(12));
        assert_eq!(by_name("left_at").time_precision, Some(3));
        assert_eq!(by_name("trip_id").nullable, Some(false));
        assert!(by_name("trip_id").part_of_key && !by_name("fare").part_of_key);
        assert_eq!(
            by_name("mood").enum_labels.as_deref(),
            Some(&["sad".to_owned(), "ok".to_owned(), "happy".to_owned()][..])
        );
        // A column the catalog no longer has (decoded after a DROP COLUMN): nullability unknown.
        assert_eq!(by_name("dropped_later").nullable, None);
        assert_eq!(by_name("dropped_later").type_name, "text");
        let encoded = platform::avro::RegisteredSchema {
            id: 1,
            schema: platform::schemas::parse(platform::schemas::CDC_TABLE_SCHEMA).unwrap(),
        }
        .encode(schema.to_avro(0x16B3_74D8, 1_751_328_123_457));
        assert!(encoded.is_ok(), "{encoded:?}");
    }

    #[test]
    fn the_version_follows_the_metadata_and_nothing_else() {
        let describe_with = |catalog: &CatalogTable| {
            describe(
                &table(),
                &relation(),
                catalog,
                &types(),
                &ChangeFilter::default(),
                |n| n == "trip_id",
            )
            .unwrap()
        };
        // Deterministic: the same definition read again (another session, another path).
        let first = describe_with(&catalog());
        assert_eq!(first.version, describe_with(&catalog()).version);
        let mut not_null = catalog();
        not_null.columns[1].nullable = false;
        assert_ne!(first.version, describe_with(&not_null).version);
        let mut relabelled = catalog();
        relabelled.columns[3].enum_labels = Some(vec!["sad".into(), "happy".into()]);
        assert_ne!(first.version, describe_with(&relabelled).version);
        assert_eq!(first.version.len(), 16);
    }

    #[test]
    fn modifiers_by_type() {
        assert_eq!(Modifiers::of("bpchar", 5 + 4).length, Some(5));
        assert_eq!(Modifiers::of("varbit", 7).length, Some(7));
        assert_eq!(
            Modifiers::of("_numeric", (5 << 16) + 4).numeric_precision,
            Some(5)
        );
        assert_eq!(
            Modifiers::of("interval", 0x7FFF_0000 | 2).time_precision,
            Some(2)
        );
        assert_eq!(Modifiers::of("interval", -1), Modifiers::default());
        assert_eq!(Modifiers::of("int4", 12), Modifiers::default());
    }
}
