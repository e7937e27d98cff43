//! The idempotency window: an event id acknowledged by the broker is remembered for a while, so
//! a client retry with the same id answers "duplicate" instead of producing a second record.
//!
//! An id is recorded only after the acknowledgement; while one request for an id is waiting for
//! the broker, concurrent requests with that id wait for its outcome instead of producing too.
//! If that attempt fails (or its request is dropped), one of the waiters tries in its place.

use std::{
    collections::{HashMap, VecDeque, hash_map::Entry},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::watch;

/// What became of an id: see [`Dedup::claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed<R> {
    /// This call produced and was acknowledged.
    Fresh(R),
    /// The id was acknowledged before (by an earlier or a concurrent call) within the window.
    Duplicate(R),
}

enum Slot<R> {
    Done {
        at: Instant,
        receipt: R,
    },
    /// Being produced by `attempt`. The channel its waiters watch is made by the first waiter
    /// (almost every id is never waited for); it closes when the slot is replaced or removed,
    /// that is when the attempt ends either way.
    InFlight {
        attempt: u64,
        ended: Option<watch::Sender<()>>,
    },
}

/// Ids being produced the window's table has room for beyond its acknowledged ones, before it
/// grows: more than the events a gateway has in flight under any load measured (bench/gateway:
/// up to 512 batch requests of 50 events, 25,600).
const IN_FLIGHT_HEADROOM: usize = 65_536;

/// An id as the table keeps it: shared by its slot, its place in the expiry order and the
/// attempt producing it, so recording an event copies no string.
type Key = Arc<str>;

struct State<R> {
    slots: HashMap<Key, Slot<R>>,
    /// Acknowledged ids, oldest first, for expiry and the capacity bound.
    order: VecDeque<(Instant, Key)>,
    next_attempt: u64,
}

pub struct Dedup<R> {
    state: Mutex<State<R>>,
    window: Duration,
    capacity: usize,
}

/// What [`Dedup::claim`] found.
pub enum Claim<'a, R: Clone> {
    /// Acknowledged within the window: the first acknowledgement's receipt.
    Duplicate(R),
    /// Nobody has it: the caller produces it.
    Mine(Attempt<'a, R>),
    /// Another call is producing it: wait for that attempt to end, then claim again.
    Busy(Busy),
}

/// The right to produce one id. Dropping it without [`Attempt::acknowledged`] (the attempt
/// failed, or the request was cancelled mid-way) releases the id for the next caller.
pub struct Attempt<'a, R: Clone> {
    dedup: &'a Dedup<R>,
    key: Key,
    attempt: u64,
    recorded: bool,
}

impl<R: Clone> Attempt<'_, R> {
    /// The broker acknowledged the id: it is a duplicate for the rest of the window.
    pub fn acknowledged(mut self, receipt: R) {
        let now = Instant::now();
        let mut state = self.dedup.lock();
        // Only this attempt replaces or removes its in-flight slot (expiry removes only
        // acknowledged ones); replacing it closes the waiters' channel.
        state
            .slots
            .insert(self.key.clone(), Slot::Done { at: now, receipt });
        state.order.push_back((now, self.key.clone()));
        self.dedup.evict(&mut state, now);
        self.recorded = true;
    }
}

impl<R: Clone> Drop for Attempt<'_, R> {
    fn drop(&mut self) {
        if self.recorded {
            return;
        }
        let mut state = self.dedup.lock();
        // Looked up by the key's text: the failure path clones no key.
        let still_ours = matches!(
            state.slots.get(&*self.key),
            Some(Slot::InFlight { attempt, .. }) if *attempt == self.attempt
        );
        if still_ours {
            state.slots.remove(&*self.key);
        }
    }
}

/// Another call's attempt at an id, still in flight.
pub struct Busy(watch::Receiver<()>);

impl Busy {
    /// Returns once that attempt ended, acknowledged or not.
    pub async fn ended(mut self) {
        while self.0.changed().await.is_ok() {}
    }
}

impl<R: Clone> Dedup<R> {
    /// A window remembering up to `capacity` ids, its tables allocated for that many now.
    /// Grown on demand, each doubling of the id table rehashed every id under the lock every
    /// request takes: up to 38 ms with the default capacity, and every request in flight waited
    /// (bench/gateway/NOTES.md). The memory is only reserved: its
    /// pages are touched as ids arrive, as a growing table would have touched them.
    pub fn new(window: Duration, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            state: Mutex::new(State {
                slots: HashMap::with_capacity(capacity + IN_FLIGHT_HEADROOM),
                // One more than the capacity: an acknowledgement is recorded before the oldest
                // beyond the capacity is forgotten.
                order: VecDeque::with_capacity(capacity + 1),
                next_attempt: 0,
            }),
            window,
            capacity,
        }
    }

    /// Ids the table can hold without growing.
    #[cfg(test)]
    fn reserved(&self) -> usize {
        self.lock().slots.capacity()
    }

    /// Whether `key` was acknowledged within the window, is being produced by another call,
    /// or is the caller's to produce (then nobody else produces it until the attempt ends).
    pub fn claim(&self, key: &str) -> Claim<'_, R> {
        let mut state = self.lock();
        self.evict(&mut state, Instant::now());
        let State {
            slots,
            next_attempt,
            ..
        } = &mut *state;
        // The key is allocated before the look-up, to hash it once: almost every id is new, and
        // a new one keeps it.
        match slots.entry(Key::from(key)) {
            Entry::Occupied(mut slot) => match slot.get_mut() {
                Slot::Done { receipt, .. } => Claim::Duplicate(receipt.clone()),
                Slot::InFlight { ended, .. } => Claim::Busy(Busy(
                    ended
                        .get_or_insert_with(|| watch::channel(()).0)
                        .subscribe(),
                )),
            },
            Entry::Vacant(slot) => {
                let attempt = *next_attempt;
                *next_attempt += 1;
                let key = slot.key().clone();
                slot.insert(Slot::InFlight {
                    attempt,
                    ended: None,
                });
                Claim::Mine(Attempt {
                    dedup: self,
                    key,
                    attempt,
                    recorded: false,
                })
            }
        }
    }

    /// Ids remembered as acknowledged (expired ones may linger until the next call).
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn evict(&self, state: &mut State<R>, now: Instant) {
        while let Some((at, _)) = state.order.front() {
            let expired = now.saturating_duration_since(*at) >= self.window;
            if !expired && state.order.len() <= self.capacity {
                break;
            }
            let Some((at, key)) = state.order.pop_front() else {
                break;
            };
            // The slot may have been re-acknowledged since (after expiry): keep the newer one.
            if let Entry::Occupied(slot) = state.slots.entry(key)
                && matches!(slot.get(), Slot::Done { at: done, .. } if *done == at)
            {
                slot.remove();
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<R>> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Produces `key` the way the publisher does: claims it, waits out another call's attempt,
    /// records the acknowledgement.
    async fn run<R: Clone, E, F, Fut>(
        dedup: &Dedup<R>,
        key: &str,
        produce: F,
    ) -> Result<Claimed<R>, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<R, E>>,
    {
        let mut produce = Some(produce);
        loop {
            match dedup.claim(key) {
                Claim::Duplicate(receipt) => return Ok(Claimed::Duplicate(receipt)),
                Claim::Busy(busy) => busy.ended().await,
                Claim::Mine(attempt) => {
                    let produce = produce.take().expect("an id is claimed once per call");
                    let receipt = produce().await?;
                    attempt.acknowledged(receipt.clone());
                    return Ok(Claimed::Fresh(receipt));
                }
            }
        }
    }

    fn window() -> Dedup<u32> {
        Dedup::new(Duration::from_secs(60), 100)
    }

    #[tokio::test]
    async fn a_retry_after_the_ack_is_a_duplicate_with_the_first_receipt() {
        let dedup = window();
        assert_eq!(
            run::<_, (), _, _>(&dedup, "a", || async { Ok(1) }).await,
            Ok(Claimed::Fresh(1))
        );
        assert_eq!(
            run::<_, (), _, _>(&dedup, "a", || async { Ok(2) }).await,
            Ok(Claimed::Duplicate(1))
        );
        assert_eq!(
            run::<_, (), _, _>(&dedup, "b", || async { Ok(3) }).await,
            Ok(Claimed::Fresh(3))
        );
    }

    /// How a batch meets its own id twice: the second claim waits for the first attempt and
    /// then finds its receipt; a third after a dropped attempt may produce.
    #[tokio::test]
    async fn a_claim_of_an_id_in_flight_waits_for_that_attempt() {
        let dedup = window();
        let Claim::Mine(first) = dedup.claim("a") else {
            panic!("a new id is the caller's")
        };
        let Claim::Busy(busy) = dedup.claim("a") else {
            panic!("an id in flight is busy")
        };
        let Claim::Busy(other) = dedup.claim("a") else {
            panic!("an id in flight is busy")
        };
        let waited = tokio::spawn(busy.ended());
        tokio::task::yield_now().await;
        assert!(!waited.is_finished(), "the attempt has not ended yet");
        first.acknowledged(4);
        waited.await.unwrap();
        other.ended().await;
        assert!(matches!(dedup.claim("a"), Claim::Duplicate(4)));

        let Claim::Mine(dropped) = dedup.claim("b") else {
            panic!("a new id is the caller's")
        };
        let Claim::Busy(busy) = dedup.claim("b") else {
            panic!("an id in flight is busy")
        };
        drop(dropped);
        busy.ended().await;
        assert!(matches!(dedup.claim("b"), Claim::Mine(_)));
        assert_eq!(dedup.len(), 1);
    }

    #[tokio::test]
    async fn a_failed_attempt_is_not_remembered() {
        let dedup = window();
        assert_eq!(
            run(&dedup, "a", || async { Err::<u32, _>("broker down") }).await,
            Err("broker down")
        );
        assert_eq!(
            run::<_, (), _, _>(&dedup, "a", || async { Ok(2) }).await,
            Ok(Claimed::Fresh(2))
        );
    }

    #[tokio::test]
    async fn concurrent_calls_with_one_id_produce_once() {
        let dedup = Arc::new(window());
        let produced = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let calls: Vec<_> = (0..8)
            .map(|i| {
                let (dedup, produced, mut released) =
                    (dedup.clone(), produced.clone(), released.clone());
                tokio::spawn(async move {
                    run::<_, (), _, _>(&dedup, "same", || async move {
                        produced.fetch_add(1, Ordering::SeqCst);
                        // Hold the attempt until every call has started.
                        while !*released.borrow_and_update() {
                            let _ = released.changed().await;
                        }
                        Ok(i)
                    })
                    .await
                })
            })
            .collect();
        while produced.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        release.send(true).unwrap();
        let mut fresh = 0;
        for call in calls {
            if let Ok(Claimed::Fresh(_)) = call.await.unwrap() {
                fresh += 1;
            }
        }
        assert_eq!((fresh, produced.load(Ordering::SeqCst)), (1, 1));
    }

    #[tokio::test]
    async fn a_waiter_takes_over_when_the_attempt_fails() {
        let dedup = Arc::new(window());
        let (fail, failing) = tokio::sync::oneshot::channel::<()>();
        let first = {
            let dedup = dedup.clone();
            tokio::spawn(async move {
                run(&dedup, "k", || async move {
                    let _ = failing.await;
                    Err::<u32, _>("timeout")
                })
                .await
            })
        };
        while dedup.lock().slots.is_empty() {
            tokio::task::yield_now().await;
        }
        let second = {
            let dedup = dedup.clone();
            tokio::spawn(async move { run::<_, &str, _, _>(&dedup, "k", || async { Ok(9) }).await })
        };
        fail.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Err("timeout"));
        assert_eq!(second.await.unwrap(), Ok(Claimed::Fresh(9)));
    }

    /// A full window with requests in flight never grows (rehashes) its table.
    #[tokio::test]
    async fn a_full_window_with_ids_in_flight_does_not_grow_its_table() {
        let capacity = 50_000;
        let dedup = Dedup::new(Duration::from_secs(60), capacity);
        let reserved = dedup.reserved();
        assert!(reserved >= capacity + IN_FLIGHT_HEADROOM, "{reserved}");
        for i in 0..capacity + 1000 {
            run::<_, (), _, _>(&dedup, &i.to_string(), || async { Ok(()) })
                .await
                .unwrap();
        }
        let in_flight: Vec<_> = (0..IN_FLIGHT_HEADROOM)
            .map(|i| match dedup.claim(&format!("in flight {i}")) {
                Claim::Mine(attempt) => attempt,
                _ => panic!("a new id is the caller's"),
            })
            .collect();
        assert_eq!(dedup.len(), capacity);
        assert_eq!(dedup.reserved(), reserved);
        drop(in_flight);
    }

    #[tokio::test]
    async fn ids_expire_after_the_window_and_beyond_the_capacity() {
        let dedup = Dedup::new(Duration::ZERO, 10);
        run::<_, (), _, _>(&dedup, "a", || async { Ok(1) })
            .await
            .unwrap();
        assert_eq!(
            run::<_, (), _, _>(&dedup, "a", || async { Ok(2) }).await,
            Ok(Claimed::Fresh(2))
        );

        let dedup = Dedup::new(Duration::from_secs(60), 2);
        for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
            run::<_, (), _, _>(&dedup, key, || async move { Ok(i) })
                .await
                .unwrap();
        }
        assert_eq!(dedup.len(), 2);
        assert_eq!(
            run::<_, (), _, _>(&dedup, "a", || async { Ok(7) }).await,
            Ok(Claimed::Fresh(7))
        );
        assert_eq!(
            run::<_, (), _, _>(&dedup, "c", || async { Ok(8) }).await,
            Ok(Claimed::Duplicate(2))
        );
    }
}
