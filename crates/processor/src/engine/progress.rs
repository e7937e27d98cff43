//! What stage 1 knows of the input partitions it owns, announced to every task so each
//! stream's watermark can advance: the highest event time seen, and idleness (a partition read
//! to its end that has had no record for the idle timeout).

use std::time::Instant;

use platform::topics;

use crate::{
    error::ProcessorError,
    routed::{Routed, Stream},
};

use super::Core;

/// Per owned input partition: what stage 1 has told stage 2 about it. A partition is idle
/// when it has been read to its end (librdkafka's statistics say so after its last record)
/// and no record came for the idle timeout: a partition with a backlog not yet fetched is
/// never idle, or a restart with a backlog would close windows before their data is read.
pub(super) struct InputPartition {
    pub(super) max_event_time: Option<i64>,
    pub(super) last_record: Instant,
    pub(super) read_to_end: bool,
    pub(super) idle: bool,
    pub(super) announced: Option<(Option<i64>, bool)>,
}

impl Core {
    /// Records activity on an input partition; true if it was idle.
    pub(super) fn note_input(&mut self, stream: Stream, partition: i32, event_time: i64) -> bool {
        let now = Instant::now();
        let entry = self
            .inputs
            .entry((stream, partition))
            .or_insert(InputPartition {
                max_event_time: None,
                last_record: now,
                read_to_end: false,
                idle: false,
                announced: None,
            });
        entry.last_record = now;
        entry.read_to_end = false;
        entry.max_event_time = Some(
            entry
                .max_event_time
                .map_or(event_time, |m| m.max(event_time)),
        );
        std::mem::replace(&mut entry.idle, false)
    }

    /// Sends the partition's progress to every repartition partition.
    pub(super) fn announce(
        &mut self,
        stream: Stream,
        partition: i32,
        next_offset: i64,
    ) -> Result<(), ProcessorError> {
        let Some(entry) = self.inputs.get_mut(&(stream, partition)) else {
            return Ok(());
        };
        let state = (entry.max_event_time, entry.idle);
        entry.announced = Some(state);
        let routed = Routed::Progress {
            stream,
            partition,
            next_offset,
            max_event_time: state.0,
            idle: state.1,
        };
        let bytes = routed.encode();
        for q in 0..self.repartition_partitions {
            self.send(
                topics::PROCESSOR_REPARTITION.name,
                Some(q),
                b"progress",
                Some(&bytes),
            )?;
        }
        Ok(())
    }

    /// Idle detection and progress announcements (once per commit interval).
    pub(super) fn tick(&mut self) {
        let idle_after = self.settings.idle_timeout;
        let mut to_announce = Vec::new();
        for (&(stream, partition), entry) in self.inputs.iter_mut() {
            if !entry.idle && entry.read_to_end && entry.last_record.elapsed() >= idle_after {
                entry.idle = true;
            }
            if entry.announced != Some((entry.max_event_time, entry.idle)) {
                to_announce.push((stream, partition));
            }
        }
        for (stream, partition) in to_announce {
            let next = self
                .positions
                .get(&(stream.topic(), partition))
                .copied()
                .unwrap_or(0);
            if let Err(error) = self.announce(stream, partition, next) {
                tracing::warn!(%error, "announcing progress failed; the commit will fail and say why");
            }
        }
    }
}
