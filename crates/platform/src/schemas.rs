//! The Avro schemas of every topic, compiled in from `schemas/*.avsc`, the single source of truth.

use apache_avro::Schema;

use crate::topics::{self, TopicSpec};

pub const CDC_CHANGE: &str = include_str!("../../../schemas/CDCChange.avsc");
pub const CDC_TRANSACTION: &str = include_str!("../../../schemas/CDCTransaction.avsc");
pub const CDC_MESSAGE: &str = include_str!("../../../schemas/CDCMessage.avsc");
pub const APP_EVENT: &str = include_str!("../../../schemas/AppEvent.avsc");
pub const CLICKSTREAM: &str = include_str!("../../../schemas/Clickstream.avsc");
pub const APP_LOG: &str = include_str!("../../../schemas/AppLog.avsc");
pub const EXTERNAL_DATA: &str = include_str!("../../../schemas/ExternalData.avsc");

/// Which schema the values of each topic use.
pub const BY_TOPIC: &[(TopicSpec, &str)] = &[
    (topics::CDC_CHANGES, CDC_CHANGE),
    (topics::CDC_TRANSACTIONS, CDC_TRANSACTION),
    (topics::CDC_MESSAGES, CDC_MESSAGE),
    (topics::APP_EVENTS, APP_EVENT),
    (topics::CLICKSTREAM, CLICKSTREAM),
    (topics::APP_LOGS, APP_LOG),
    (topics::EXTERNAL_DATA, EXTERNAL_DATA),
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
        // Every topic but the connector's JSON state topic carries Avro.
        assert_eq!(BY_TOPIC.len() + 1, topics::ALL.len());
    }
}
