//! The Avro schemas of every topic, compiled in from `schemas/*.avsc`, the single source of truth.

use apache_avro::Schema;

use crate::topics::{self, TopicSpec};

pub const CDC_CHANGE: &str = include_str!("../../../schemas/CDCChange.avsc");
pub const CDC_TRANSACTION: &str = include_str!("../../../schemas/CDCTransaction.avsc");
pub const CDC_MESSAGE: &str = include_str!("../../../schemas/CDCMessage.avsc");
pub const CDC_TABLE_SCHEMA: &str = include_str!("../../../schemas/CDCTableSchema.avsc");
pub const APP_EVENT: &str = include_str!("../../../schemas/AppEvent.avsc");
pub const CLICKSTREAM: &str = include_str!("../../../schemas/Clickstream.avsc");
pub const APP_LOG: &str = include_str!("../../../schemas/AppLog.avsc");
pub const EXTERNAL_DATA: &str = include_str!("../../../schemas/ExternalData.avsc");
pub const PROCESSED_RESULT: &str = include_str!("../../../schemas/ProcessedResult.avsc");
pub const PROCESSOR_ALERT: &str = include_str!("../../../schemas/ProcessorAlert.avsc");
pub const LATE_EVENT: &str = include_str!("../../../schemas/LateEvent.avsc");
pub const DEAD_LETTER: &str = include_str!("../../../schemas/DeadLetter.avsc");

/// Which schema the values of each topic use.
pub const BY_TOPIC: &[(TopicSpec, &str)] = &[
    (topics::CDC_CHANGES, CDC_CHANGE),
    (topics::CDC_TRANSACTIONS, CDC_TRANSACTION),
    (topics::CDC_MESSAGES, CDC_MESSAGE),
    (topics::CDC_TABLE_SCHEMAS, CDC_TABLE_SCHEMA),
    (topics::APP_EVENTS, APP_EVENT),
    (topics::CLICKSTREAM, CLICKSTREAM),
    (topics::APP_LOGS, APP_LOG),
    (topics::EXTERNAL_DATA, EXTERNAL_DATA),
    (topics::PROCESSED_EVENTS, PROCESSED_RESULT),
    // State topics carry the input record that made the current state, unchanged.
    (topics::USER_STATE, CDC_CHANGE),
    (topics::BOOKING_STATE, CDC_CHANGE),
    (topics::CDC_STATE, CDC_CHANGE),
    (topics::EXTERNAL_STATE, EXTERNAL_DATA),
    (topics::PROCESSOR_ALERTS, PROCESSOR_ALERT),
    (topics::PROCESSOR_LATE_EVENTS, LATE_EVENT),
    (topics::PROCESSOR_DEAD_LETTERS, DEAD_LETTER),
];

/// Parses one of the schemas above; an error means a broken `.avsc` file.
pub fn parse(text: &str) -> Result<Schema, apache_avro::Error> {
    Schema::parse_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_parses_and_every_topic_has_one() {
        for (topic, text) in BY_TOPIC {
            parse(text).unwrap_or_else(|e| panic!("schema of {}: {e}", topic.name));
        }
        // Every topic carries Avro but the connector's JSON state topic and the processor's
        // internal repartition and changelog topics (binary).
        assert_eq!(BY_TOPIC.len() + 3, topics::ALL.len());
    }
}
