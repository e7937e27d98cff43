//! The Rust `schema_registry_converter` client encodes and decodes through the real binary.

mod common;

use apache_avro::types::Value;
use common::{RunningRegistry, record_schema};
use schema_registry_converter::{
    async_impl::{
        avro::{AvroDecoder, AvroEncoder},
        schema_registry::SrSettings,
    },
    schema_registry_common::{SchemaType, SubjectNameStrategy, SuppliedSchema},
};

#[tokio::test]
async fn converter_encodes_with_auto_registration_and_decodes_back() {
    let dir = tempfile::tempdir().unwrap();
    let registry = RunningRegistry::start(&dir.path().join("data")).await;
    let schema = record_schema(
        "Order",
        r#"{"name":"id","type":"long"},{"name":"note","type":["null","string"],"default":null}"#,
    );
    let fields = || {
        vec![
            ("id", Value::Long(42)),
            (
                "note",
                Value::Union(1, Box::new(Value::String("rush".into()))),
            ),
        ]
    };

    // Supplying the schema makes the encoder register it under the topic's value subject.
    let encoder = AvroEncoder::new(SrSettings::new(registry.url.clone()));
    let supplied = SuppliedSchema::new(Some("test.Order".into()), SchemaType::Avro, schema);
    let strategy =
        SubjectNameStrategy::TopicNameStrategyWithSchema("orders".into(), false, supplied);
    let bytes = encoder.encode(fields(), strategy).await.unwrap();
    assert_eq!(bytes[..5], [0, 0, 0, 0, 1], "magic byte then schema id 1");

    // A fresh encoder without a schema finds the latest version of the subject itself.
    let encoder = AvroEncoder::new(SrSettings::new(registry.url.clone()));
    let strategy = SubjectNameStrategy::TopicNameStrategy("orders".into(), false);
    assert_eq!(encoder.encode(fields(), strategy).await.unwrap(), bytes);

    let decoder = AvroDecoder::new(SrSettings::new(registry.url.clone()));
    let decoded = decoder.decode(Some(&bytes)).await.unwrap();
    let expected = Value::Record(
        fields()
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect(),
    );
    assert_eq!(decoded.value, expected);

    let subjects: serde_json::Value = reqwest::get(format!("{}/subjects", registry.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(subjects, serde_json::json!(["orders-value"]));
}
