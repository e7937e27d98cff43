//! One consumed record: stage 1 decodes an input record (reading its writer schema from the
//! registry once) and routes it to the repartition topic, or dead-letters it; stage 2 applies
//! a routed record to the task of its partition and emits what that yields.

use std::{sync::Arc, time::Duration};

use apache_avro::Schema;
use platform::topics;
use rdkafka::message::{BorrowedMessage, Message};

use crate::{
    decode::{self, DatumReader, Unusable},
    error::ProcessorError,
    routed::{Routed, Source, Stream},
};

use super::Core;

impl Core {
    fn reader(
        &mut self,
        id: u32,
    ) -> Result<Result<Arc<DatumReader<'static>>, Unusable>, ProcessorError> {
        if let Some(reader) = self.readers.get(&id) {
            return Ok(Ok(reader.clone()));
        }
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.runtime.block_on(self.registry.schema_by_id(id)) {
                Ok(schema) => {
                    return Ok(DatumReader::leaked(Schema::clone(&schema)).map(|reader| {
                        let reader = Arc::new(reader);
                        self.readers.insert(id, reader.clone());
                        reader
                    }));
                }
                Err(error) if error.is_retryable() => {
                    // The registry being away is not the record's fault: wait, never
                    // dead-letter it.
                    self.health
                        .set(false, format!("schema registry unavailable: {error}"));
                    tracing::warn!(%error, "schema registry unavailable; retrying in {backoff:?}");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(error) => return Ok(Err(Unusable(format!("writer schema {id}: {error}")))),
            }
        }
    }

    /// One consumed record.
    pub(super) fn handle(&mut self, message: &BorrowedMessage<'_>) -> Result<(), ProcessorError> {
        let topic = if message.topic() == topics::PROCESSOR_REPARTITION.name {
            self.stage_two(message)?;
            topics::PROCESSOR_REPARTITION.name
        } else if let Some(stream) = Stream::from_topic(message.topic()) {
            self.stage_one(stream, message)?;
            stream.topic()
        } else {
            return Ok(());
        };
        self.positions
            .insert((topic, message.partition()), message.offset() + 1);
        self.dirty_positions = true;
        Ok(())
    }

    fn stage_one(
        &mut self,
        stream: Stream,
        message: &BorrowedMessage<'_>,
    ) -> Result<(), ProcessorError> {
        let source = Source {
            stream,
            partition: message.partition(),
            offset: message.offset(),
        };
        metrics::counter!("processor_input_records_total", "job" => stream.job()).increment(1);
        let routed = match message.payload() {
            None => Err(Unusable("record without a value".into())),
            Some(payload) => match platform::avro::split_wire_format(payload) {
                Err(e) => Err(Unusable(e.to_string())),
                Ok((id, datum)) => match self.reader(id)? {
                    Err(e) => Err(e),
                    Ok(reader) => reader
                        .read(datum)
                        .and_then(|value| decode::route(stream, source, &value, payload)),
                },
            },
        };
        match routed {
            Ok((event_time, outs)) => {
                let was_idle = self.note_input(stream, source.partition, event_time);
                if was_idle {
                    // Every task learns at once that the partition is active again.
                    self.announce(stream, source.partition, source.offset)?;
                }
                for out in &outs {
                    self.send_routed(out)?;
                }
            }
            Err(reason) => self.dead_letter(message, &reason)?,
        }
        Ok(())
    }

    fn stage_two(&mut self, message: &BorrowedMessage<'_>) -> Result<(), ProcessorError> {
        let q = message.partition();
        let routed = match message.payload().map(Routed::decode) {
            Some(Ok(routed)) => routed,
            other => {
                let reason = match other {
                    Some(Err(e)) => format!("internal record does not decode: {e}"),
                    _ => "internal record without a value".to_string(),
                };
                return self.dead_letter(message, &Unusable(reason));
            }
        };
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.clear();
        match self.tasks.get_mut(&q) {
            Some(task) => task.apply(routed, &mut buffer),
            None => {
                return Err(ProcessorError::Restore {
                    partition: q,
                    reason: "a record arrived for a partition whose state was not restored".into(),
                });
            }
        }
        let result = self.emit(&mut buffer);
        self.buffer = buffer;
        result
    }
}
