//! The processor's own outputs: the schemas of results, alerts, late events and dead letters
//! (registered once at start-up), and turning a task's outputs, or a record that cannot be
//! used, into the records of their topics.

use platform::{
    avro::RegisteredSchema,
    registry::RegistryClient,
    schemas,
    topics::{self, TopicSpec},
};
use rdkafka::message::{BorrowedMessage, Message};

use crate::{
    decode::{Out, Unusable},
    error::ProcessorError,
    output::Output,
};

use super::Core;

/// Output schemas, registered once.
pub(super) struct OutputSchemas {
    result: RegisteredSchema,
    alert: RegisteredSchema,
    late: RegisteredSchema,
    dead_letter: RegisteredSchema,
}

pub(super) async fn register_outputs(
    registry: &RegistryClient,
) -> Result<OutputSchemas, ProcessorError> {
    // A schema that does not parse is a RegistryError too (not retryable).
    let register = |topic: &'static TopicSpec, text: &'static str| async move {
        platform::registry::register_topic_schema(registry, topic, text)
            .await
            .map_err(ProcessorError::from)
    };
    // State topics carry their input's records unchanged; registering their subjects lets
    // registry-aware tools find the schema by topic.
    for (topic, text) in [
        (&topics::USER_STATE, schemas::CDC_CHANGE),
        (&topics::BOOKING_STATE, schemas::CDC_CHANGE),
        (&topics::CDC_STATE, schemas::CDC_CHANGE),
        (&topics::EXTERNAL_STATE, schemas::EXTERNAL_DATA),
    ] {
        register(topic, text).await?;
    }
    Ok(OutputSchemas {
        result: register(&topics::PROCESSED_EVENTS, schemas::PROCESSED_RESULT).await?,
        alert: register(&topics::PROCESSOR_ALERTS, schemas::PROCESSOR_ALERT).await?,
        late: register(&topics::PROCESSOR_LATE_EVENTS, schemas::LATE_EVENT).await?,
        dead_letter: register(&topics::PROCESSOR_DEAD_LETTERS, schemas::DEAD_LETTER).await?,
    })
}

impl Core {
    pub(super) fn dead_letter(
        &mut self,
        message: &BorrowedMessage<'_>,
        reason: &Unusable,
    ) -> Result<(), ProcessorError> {
        metrics::counter!("processor_dead_letters_total", "topic" => message.topic().to_string())
            .increment(1);
        tracing::warn!(topic = message.topic(), partition = message.partition(), offset = message.offset(), %reason, "record dead-lettered");
        let optional_bytes = |b: Option<&[u8]>| match b {
            Some(b) => apache_avro::types::Value::Union(
                1,
                Box::new(apache_avro::types::Value::Bytes(b.to_vec())),
            ),
            None => apache_avro::types::Value::Union(0, Box::new(apache_avro::types::Value::Null)),
        };
        use apache_avro::types::Value;
        let value = Value::Record(vec![
            ("source_topic".into(), Value::String(message.topic().into())),
            ("source_partition".into(), Value::Int(message.partition())),
            ("source_offset".into(), Value::Long(message.offset())),
            ("reason".into(), Value::String(reason.0.clone())),
            ("key".into(), optional_bytes(message.key())),
            ("payload".into(), optional_bytes(message.payload())),
        ]);
        let key = format!(
            "{}/{}/{}",
            message.topic(),
            message.partition(),
            message.offset()
        );
        self.send_avro(
            |o| &o.dead_letter,
            topics::PROCESSOR_DEAD_LETTERS.name,
            &key,
            value,
        )
    }

    /// Encodes `value` with one of the registered output schemas and sends it keyed by `key`.
    fn send_avro(
        &mut self,
        schema: fn(&OutputSchemas) -> &RegisteredSchema,
        topic: &str,
        key: &str,
        value: apache_avro::types::Value,
    ) -> Result<(), ProcessorError> {
        let bytes = schema(&self.outputs)
            .encode(value)
            .map_err(|e| ProcessorError::Encode {
                topic: topic.to_string(),
                reason: e.to_string(),
            })?;
        self.send(topic, None, key.as_bytes(), Some(&bytes))
    }

    pub(super) fn emit(&mut self, outputs: &mut Vec<Output>) -> Result<(), ProcessorError> {
        for output in outputs.drain(..) {
            match output {
                Output::Result(result) => {
                    tracing::debug!(id = %result.id(), "window result");
                    self.send_avro(
                        |o| &o.result,
                        topics::PROCESSED_EVENTS.name,
                        &result.id(),
                        result.to_avro(),
                    )?;
                    metrics::counter!("processor_windows_emitted_total", "job" => result.job, "kind" => result.kind.as_str()).increment(1);
                }
                Output::Alert(alert) => {
                    self.send_avro(
                        |o| &o.alert,
                        topics::PROCESSOR_ALERTS.name,
                        &alert.id(),
                        alert.to_avro(),
                    )?;
                    metrics::counter!("processor_alerts_total", "kind" => alert.kind.as_str())
                        .increment(1);
                }
                Output::Late(late) => {
                    self.send_avro(
                        |o| &o.late,
                        topics::PROCESSOR_LATE_EVENTS.name,
                        &late.id(),
                        late.to_avro(),
                    )?;
                    metrics::counter!("processor_late_events_total", "job" => late.job)
                        .increment(1);
                }
                Output::State { topic, key, record } => {
                    self.send(topic, None, key.as_bytes(), record.as_deref())?;
                }
                Output::Derived { key, routed } => {
                    self.send_routed(&Out {
                        key,
                        routed,
                        broadcast: false,
                    })?;
                }
            }
        }
        Ok(())
    }
}
