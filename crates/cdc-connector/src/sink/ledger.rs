//! The acknowledgement ledger: which records Kafka has answered, as a watermark over sequence
//! numbers, and which positions that releases.
//!
//! Every record handed to the producer gets the next sequence number; the producer's delivery
//! report (librdkafka's callback, on its polling thread, in whatever order the partitions
//! answer) marks it answered. The watermark is the lowest sequence number not yet answered: a
//! checkpoint taken after sequence `n` is released once the watermark passes `n`, never before.
//! This costs a mutex and a slot in a ring per record, instead of a future, a channel message
//! and a task wake-up per record; the session hears only of released positions.
//!
//! Released positions reach the session through a watch, whose every change wakes it (and it
//! answers with a status update to PostgreSQL). With small transactions that was a wake-up and
//! a status update per acknowledged batch of records, hundreds a second: while records are
//! still in flight a released position is published at most every [`PUBLISH_INTERVAL`], and at
//! once when nothing is left in flight, before a barrier is passed, or after a delivery failed.
//! A position is never published early, only up to that interval late.
//!
//! One sink at a time uses a ledger ([`Ledger::open`]). Records of an earlier session that are
//! still in flight keep their place: the new session's positions wait for them too, and their
//! failures are not the new session's (it resumed from before them).

use std::{
    collections::VecDeque,
    sync::Mutex,
    time::{Duration, Instant},
};

use pgoutput::copy::Lsn;
use tokio::sync::{oneshot, watch};

use super::AckState;
use crate::error::ConnectorError;

/// The least time between two publications of a released position while records are in flight.
pub const PUBLISH_INTERVAL: Duration = Duration::from_millis(10);

/// What the session marked between records: released once everything sent before it is answered.
pub enum Mark {
    Checkpoint {
        lsn: Lsn,
        commit_time_unix_micros: Option<i64>,
    },
    /// Answered (by sending) once everything before it was delivered; dropped on a failure.
    Barrier(oneshot::Sender<()>),
}

pub struct Ledger {
    state: Mutex<LedgerState>,
    /// Read only when a released position waits to be published.
    clock: Box<dyn Fn() -> Instant + Send + Sync>,
}

impl Default for Ledger {
    fn default() -> Self {
        Self::with_clock(Instant::now)
    }
}

#[derive(Default)]
struct LedgerState {
    /// The sequence number of the oldest record not yet answered, i.e. of `records[0]`.
    watermark: u64,
    /// One entry per record from the watermark on, in send order.
    records: VecDeque<Record>,
    session: Option<Session>,
    next_session: u64,
}

struct Record {
    answered: bool,
    /// Incremented once the record is delivered (the per table and operation change count).
    delivered: Option<metrics::Counter>,
}

struct Session {
    id: u64,
    /// Failures of records before this one belong to an earlier session.
    first_sequence: u64,
    /// Marks in send order, each with the sequence number of the first record after it.
    marks: VecDeque<(u64, Mark)>,
    acks: watch::Sender<AckState>,
    /// The earliest of its records Kafka refused: no mark after it is ever released.
    failed_at: Option<u64>,
    /// The latest released checkpoint not yet published, with its commit time if it has one.
    unpublished: Option<(Lsn, Option<i64>)>,
    published_at: Option<Instant>,
    acked_gauge: metrics::Gauge,
    lag_gauge: metrics::Gauge,
}

impl LedgerState {
    fn next_sequence(&self) -> u64 {
        self.watermark + self.records.len() as u64
    }

    /// Releases the marks the watermark has passed, up to a failed record, and publishes the
    /// latest released position when it is due.
    fn release(&mut self, clock: &dyn Fn() -> Instant) {
        let watermark = self.watermark;
        let in_flight = !self.records.is_empty();
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let limit = session.failed_at.map_or(watermark, |f| f.min(watermark));
        while session
            .marks
            .front()
            .is_some_and(|(after, _)| *after <= limit)
        {
            let Some((_, mark)) = session.marks.pop_front() else {
                break;
            };
            match mark {
                Mark::Checkpoint {
                    lsn,
                    commit_time_unix_micros,
                } => {
                    let (latest, commit_time) = session.unpublished.get_or_insert((lsn, None));
                    *latest = (*latest).max(lsn);
                    *commit_time = commit_time_unix_micros.or(*commit_time);
                }
                Mark::Barrier(reached) => {
                    // Whoever waits on it reads the position next: publish what came before.
                    if session.unpublished.is_some() {
                        session.publish(clock());
                    }
                    let _ = reached.send(());
                }
            }
        }
        if session.unpublished.is_some() {
            session.publish_if_due(in_flight, clock);
        }
    }
}

impl Session {
    /// Publishes the unpublished position unless records are in flight and the last
    /// publication is less than [`PUBLISH_INTERVAL`] ago. After a failure nothing more is
    /// released, so what was is published at once.
    fn publish_if_due(&mut self, in_flight: bool, clock: &dyn Fn() -> Instant) {
        let now = clock();
        let due = !in_flight
            || self.failed_at.is_some()
            || self
                .published_at
                .is_none_or(|at| now.saturating_duration_since(at) >= PUBLISH_INTERVAL);
        if due {
            self.publish(now);
        }
    }

    fn publish(&mut self, now: Instant) {
        let Some((lsn, commit_time)) = self.unpublished.take() else {
            return;
        };
        self.published_at = Some(now);
        if let Some(commit) = commit_time {
            let lag = (crate::unix_micros_now() - commit).max(0) as f64 / 1000.0;
            self.lag_gauge.set(lag);
        }
        self.acked_gauge.set(lsn as f64);
        self.acks.send_modify(|state| {
            state.acked_lsn = state.acked_lsn.max(lsn);
        });
    }
}

impl Ledger {
    /// A ledger that asks `clock` for the time (a test's own clock).
    pub fn with_clock(clock: impl Fn() -> Instant + Send + Sync + 'static) -> Self {
        Self {
            state: Mutex::default(),
            clock: Box::new(clock),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LedgerState> {
        // The state stays consistent between statements: a panic elsewhere cannot corrupt it.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a session whose position is `start_lsn`; the previous session's marks are dropped
    /// (its barriers fail). Returns the session's id and its view of the acknowledged position.
    pub fn open(&self, start_lsn: Lsn) -> (u64, watch::Receiver<AckState>) {
        let (acks, receiver) = watch::channel(AckState {
            acked_lsn: start_lsn,
            failure: None,
        });
        let mut state = self.lock();
        let id = state.next_session;
        state.next_session += 1;
        state.session = Some(Session {
            id,
            first_sequence: state.next_sequence(),
            marks: VecDeque::new(),
            acks,
            failed_at: None,
            unpublished: None,
            published_at: None,
            acked_gauge: metrics::gauge!("cdc_acked_lsn"),
            lag_gauge: metrics::gauge!("cdc_lag_milliseconds"),
        });
        (id, receiver)
    }

    /// Ends session `id` if it is still the current one.
    pub fn close(&self, id: u64) {
        let mut state = self.lock();
        if state.session.as_ref().is_some_and(|s| s.id == id) {
            state.session = None;
        }
    }

    /// The sequence number for the next record, reserved until [`Ledger::unregister_last`].
    pub fn register(&self, delivered: Option<metrics::Counter>) -> u64 {
        let mut state = self.lock();
        state.records.push_back(Record {
            answered: false,
            delivered,
        });
        state.next_sequence() - 1
    }

    /// Takes back the last registered sequence number: the producer did not take its record.
    pub fn unregister_last(&self) {
        let mut state = self.lock();
        if state.records.back().is_some_and(|r| !r.answered) {
            state.records.pop_back();
        }
    }

    /// Marks what was sent so far: released once all of it is answered.
    pub fn mark(&self, mark: Mark) {
        let mut state = self.lock();
        let after = state.next_sequence();
        let Some(session) = state.session.as_mut() else {
            return;
        };
        if session.failed_at.is_some_and(|failed| after > failed) {
            // Never released: dropping it ends a wait on a barrier at once.
            return;
        }
        session.marks.push_back((after, mark));
        state.release(&self.clock);
    }

    /// Kafka's answer for record `sequence`.
    pub fn answered(&self, sequence: u64, answer: Result<(), ConnectorError>) {
        let mut state = self.lock();
        let Some(index) = sequence
            .checked_sub(state.watermark)
            .and_then(|i| usize::try_from(i).ok())
            .filter(|i| *i < state.records.len())
        else {
            // Not registered, or answered before: librdkafka answers each record once.
            return;
        };
        // A failure is the session's if the record is one of its own and the earliest refused.
        let session = state
            .session
            .as_mut()
            .filter(|s| sequence >= s.first_sequence && s.failed_at.is_none_or(|f| sequence < f));
        if let (Err(failure), Some(session)) = (answer, session) {
            session.failed_at = Some(sequence);
            // Marks after the failed record are never released: dropping them ends the waits
            // on their barriers.
            session.marks.retain(|(after, _)| *after <= sequence);
            session
                .acks
                .send_modify(|state| state.failure = Some(failure));
        }
        state.records[index].answered = true;
        let mut moved = false;
        while state.records.front().is_some_and(|r| r.answered) {
            if let Some(Record {
                delivered: Some(counter),
                ..
            }) = state.records.pop_front()
            {
                counter.increment(1);
            }
            state.watermark += 1;
            moved = true;
        }
        if moved {
            state.release(&self.clock);
        }
    }

    /// Records handed over and not answered yet (including answered ones behind an unanswered).
    pub fn unanswered(&self) -> usize {
        self.lock().records.len()
    }

    /// Where the answers stand, for a watcher (no clock is read per record): `None` with
    /// nothing in flight, otherwise the watermark, which stays the same for as long as Kafka
    /// answers nothing (emptying the ring moves it, so an idle spell between two looks shows).
    pub fn progress(&self) -> Option<u64> {
        let state = self.lock();
        (!state.records.is_empty()).then_some(state.watermark)
    }
}

/// Turns looks at [`Ledger::progress`] into how long Kafka has answered nothing while records
/// were in flight.
#[derive(Default)]
pub struct StallClock {
    unchanged_since: Option<(u64, Instant)>,
}

impl StallClock {
    pub fn observe(&mut self, progress: Option<u64>, now: Instant) -> Option<Duration> {
        let Some(progress) = progress else {
            self.unchanged_since = None;
            return None;
        };
        match self.unchanged_since {
            Some((seen, since)) if seen == progress => Some(now.saturating_duration_since(since)),
            _ => {
                self.unchanged_since = Some((progress, now));
                Some(Duration::ZERO)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    };

    use super::*;
    use crate::error::ErrorKind;

    fn failure() -> ConnectorError {
        ConnectorError::new(ErrorKind::KafkaRejected, "delivering", "message too large")
    }

    fn checkpoint(lsn: Lsn) -> Mark {
        Mark::Checkpoint {
            lsn,
            commit_time_unix_micros: None,
        }
    }

    #[test]
    fn the_watermark_moves_over_answered_prefixes_only() {
        let ledger = Ledger::default();
        let (_, acks) = ledger.open(1);
        let first = ledger.register(None);
        ledger.mark(checkpoint(10));
        let second = ledger.register(None);
        let third = ledger.register(None);
        ledger.mark(checkpoint(20));
        assert_eq!((first, second, third), (0, 1, 2));

        ledger.answered(third, Ok(()));
        ledger.answered(second, Ok(()));
        assert_eq!(acks.borrow().acked_lsn, 1, "the first is still in flight");
        assert_eq!(ledger.unanswered(), 3);

        ledger.answered(first, Ok(()));
        assert_eq!(acks.borrow().acked_lsn, 20);
        assert_eq!(ledger.unanswered(), 0);
        assert!(ledger.progress().is_none());
    }

    #[test]
    fn a_mark_with_nothing_in_flight_is_released_at_once() {
        let ledger = Ledger::default();
        let (_, acks) = ledger.open(0);
        ledger.mark(checkpoint(5));
        assert_eq!(acks.borrow().acked_lsn, 5);
        let (reached, wait) = oneshot::channel();
        ledger.mark(Mark::Barrier(reached));
        assert!(wait.blocking_recv().is_ok());
    }

    #[test]
    fn an_unregistered_record_does_not_hold_the_watermark() {
        let ledger = Ledger::default();
        let (_, acks) = ledger.open(0);
        ledger.register(None);
        ledger.unregister_last();
        ledger.mark(checkpoint(7));
        assert_eq!(acks.borrow().acked_lsn, 7);
        assert_eq!(ledger.register(None), 0, "the number is given again");
    }

    #[test]
    fn a_failure_freezes_the_session_and_fails_its_barriers() {
        let ledger = Ledger::default();
        let (_, acks) = ledger.open(0);
        let first = ledger.register(None);
        ledger.mark(checkpoint(3));
        let failing = ledger.register(None);
        let (reached, wait) = oneshot::channel();
        ledger.mark(Mark::Barrier(reached));
        ledger.answered(failing, Err(failure()));
        assert!(wait.blocking_recv().is_err(), "the barrier fails");
        assert!(acks.borrow().failure.is_some());
        let next = ledger.register(None);
        ledger.mark(checkpoint(9));
        let (reached, wait) = oneshot::channel();
        ledger.mark(Mark::Barrier(reached));
        assert!(
            wait.blocking_recv().is_err(),
            "a barrier after the failure fails"
        );
        ledger.answered(next, Ok(()));
        ledger.answered(first, Ok(()));
        assert_eq!(
            acks.borrow().acked_lsn,
            3,
            "what came before the failed record is released, nothing after it"
        );
    }

    #[test]
    fn an_earlier_sessions_records_hold_the_new_sessions_marks_but_not_its_failures() {
        let ledger = Ledger::default();
        let (first_session, _) = ledger.open(0);
        let old = ledger.register(None);
        let older_failure = ledger.register(None);
        ledger.close(first_session);

        let (_, acks) = ledger.open(3);
        let new = ledger.register(None);
        ledger.mark(checkpoint(30));
        ledger.answered(new, Ok(()));
        ledger.answered(older_failure, Err(failure()));
        assert_eq!(acks.borrow().acked_lsn, 3, "an earlier record is in flight");
        ledger.answered(old, Ok(()));
        let state = acks.borrow();
        assert_eq!(state.acked_lsn, 30);
        assert!(state.failure.is_none(), "the earlier session's failure");
    }

    #[test]
    fn closing_an_old_session_leaves_the_current_one() {
        let ledger = Ledger::default();
        let (old, _) = ledger.open(0);
        let (_, acks) = ledger.open(0);
        ledger.close(old);
        ledger.mark(checkpoint(4));
        assert_eq!(acks.borrow().acked_lsn, 4);
    }

    #[test]
    fn an_answer_twice_or_unknown_is_ignored() {
        let ledger = Ledger::default();
        let (_, acks) = ledger.open(0);
        let first = ledger.register(None);
        let second = ledger.register(None);
        ledger.mark(checkpoint(8));
        ledger.answered(first, Ok(()));
        ledger.answered(first, Ok(()));
        ledger.answered(99, Ok(()));
        assert_eq!(acks.borrow().acked_lsn, 0);
        ledger.answered(second, Ok(()));
        assert_eq!(acks.borrow().acked_lsn, 8);
    }

    /// A ledger on a clock the test moves by hand, in milliseconds.
    fn ledger_on_a_hand_clock() -> (Ledger, Arc<AtomicU64>) {
        let millis = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let reading = millis.clone();
        let ledger = Ledger::with_clock(move || {
            start + Duration::from_millis(reading.load(Ordering::Relaxed))
        });
        (ledger, millis)
    }

    #[test]
    fn while_records_are_in_flight_positions_are_published_at_most_every_interval() {
        let (ledger, millis) = ledger_on_a_hand_clock();
        let (_, acks) = ledger.open(0);
        let sequences: Vec<u64> = (1..=4)
            .map(|lsn| {
                let sequence = ledger.register(None);
                ledger.mark(checkpoint(lsn * 10));
                sequence
            })
            .collect();

        ledger.answered(sequences[0], Ok(()));
        assert_eq!(
            acks.borrow().acked_lsn,
            10,
            "the first is published at once"
        );
        millis.store(9, Ordering::Relaxed);
        ledger.answered(sequences[1], Ok(()));
        assert_eq!(acks.borrow().acked_lsn, 10, "9 ms later, 20 waits");
        millis.store(10, Ordering::Relaxed);
        ledger.answered(sequences[2], Ok(()));
        assert_eq!(
            acks.borrow().acked_lsn,
            30,
            "10 ms later, the latest is published"
        );
        millis.store(11, Ordering::Relaxed);
        ledger.answered(sequences[3], Ok(()));
        assert_eq!(
            acks.borrow().acked_lsn,
            40,
            "with nothing left in flight, at once"
        );
    }

    #[test]
    fn a_barrier_or_a_failure_publishes_what_was_released_before_it() {
        let (ledger, _millis) = ledger_on_a_hand_clock();
        let (_, acks) = ledger.open(0);
        let first = ledger.register(None);
        ledger.mark(checkpoint(10));
        let second = ledger.register(None);
        ledger.mark(checkpoint(20));
        let (reached, wait) = oneshot::channel();
        ledger.mark(Mark::Barrier(reached));
        let third = ledger.register(None);
        ledger.mark(checkpoint(30));
        let failing = ledger.register(None);
        let _still_in_flight = ledger.register(None);

        ledger.answered(first, Ok(()));
        assert_eq!(acks.borrow().acked_lsn, 10);
        ledger.answered(second, Ok(()));
        assert!(wait.blocking_recv().is_ok());
        assert_eq!(
            acks.borrow().acked_lsn,
            20,
            "published before the barrier is passed, within the interval"
        );
        ledger.answered(third, Ok(()));
        assert_eq!(acks.borrow().acked_lsn, 20, "30 waits for the interval");
        ledger.answered(failing, Err(failure()));
        let state = acks.borrow();
        assert_eq!(state.acked_lsn, 30, "after a failure, at once");
        assert!(state.failure.is_some());
    }

    #[test]
    fn a_stall_is_measured_from_the_last_look_that_saw_progress() {
        let ledger = Ledger::default();
        ledger.open(0);
        let mut clock = StallClock::default();
        let start = Instant::now();
        let at = |seconds| start + Duration::from_secs(seconds);
        assert_eq!(clock.observe(ledger.progress(), at(0)), None, "idle");

        let first = ledger.register(None);
        ledger.register(None);
        assert_eq!(
            clock.observe(ledger.progress(), at(1)),
            Some(Duration::ZERO)
        );
        assert_eq!(
            clock.observe(ledger.progress(), at(12)),
            Some(Duration::from_secs(11))
        );
        ledger.answered(first, Ok(()));
        assert_eq!(
            clock.observe(ledger.progress(), at(13)),
            Some(Duration::ZERO),
            "an answer came"
        );
    }

    #[test]
    fn records_sent_after_an_idle_spell_are_not_a_stall() {
        let ledger = Ledger::default();
        ledger.open(0);
        let mut clock = StallClock::default();
        let start = Instant::now();
        let first = ledger.register(None);
        clock.observe(ledger.progress(), start);
        ledger.answered(first, Ok(()));
        // No look while nothing was in flight; then the next record.
        ledger.register(None);
        assert_eq!(
            clock.observe(ledger.progress(), start + Duration::from_secs(30)),
            Some(Duration::ZERO)
        );
    }
}
