//! The idempotency window: an event id acknowledged by the broker is remembered for a while, so
//! a client retry with the same id answers "duplicate" instead of producing a second record.
//!
//! An id is recorded only after the acknowledgement; while one request for an id is waiting for
//! the broker, concurrent requests with that id wait for its outcome instead of producing too.
//! If that attempt fails (or its request is dropped), one of the waiters tries in its place.

use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::watch;

/// What [`Dedup::run`] did.
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
    /// Waiters watch the channel; it closes when the attempt ends either way.
    InFlight {
        attempt: u64,
        closed: watch::Receiver<()>,
    },
}

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

enum Claim<'a, R: Clone> {
    Duplicate(R),
    Mine(Attempt<'a, R>),
    Wait(watch::Receiver<()>),
}

/// The right to produce one id. Dropping it unfinished (the attempt failed, or the request was
/// cancelled mid-way) releases the id for the next caller.
struct Attempt<'a, R: Clone> {
    dedup: &'a Dedup<R>,
    key: Key,
    attempt: u64,
    _closes_on_drop: watch::Sender<()>,
}

impl<R: Clone> Drop for Attempt<'_, R> {
    fn drop(&mut self) {
        let mut state = self.dedup.lock();
        if matches!(state.slots.get(&self.key), Some(Slot::InFlight { attempt, .. }) if *attempt == self.attempt)
        {
            state.slots.remove(&self.key);
        }
    }
}

impl<R: Clone> Dedup<R> {
    pub fn new(window: Duration, capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                slots: HashMap::new(),
                order: VecDeque::new(),
                next_attempt: 0,
            }),
            window,
            capacity: capacity.max(1),
        }
    }

    /// Runs `produce` for `key` unless the key was acknowledged within the window or another
    /// call is producing it (then waits for that one's outcome).
    pub async fn run<E, F, Fut>(&self, key: &str, produce: F) -> Result<Claimed<R>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<R, E>>,
    {
        let attempt = loop {
            match self.claim(key) {
                Claim::Duplicate(receipt) => return Ok(Claimed::Duplicate(receipt)),
                Claim::Mine(attempt) => break attempt,
                // Returns once the other attempt ended; then look again.
                Claim::Wait(mut closed) => while closed.changed().await.is_ok() {},
            }
        };
        let receipt = produce().await?;
        let now = Instant::now();
        let mut state = self.lock();
        // Replacing the in-flight slot makes the attempt's drop below a no-op.
        state.slots.insert(
            attempt.key.clone(),
            Slot::Done {
                at: now,
                receipt: receipt.clone(),
            },
        );
        state.order.push_back((now, attempt.key.clone()));
        self.evict(&mut state, now);
        drop(state);
        drop(attempt);
        Ok(Claimed::Fresh(receipt))
    }

    /// Ids remembered as acknowledged (expired ones may linger until the next call).
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn claim(&self, key: &str) -> Claim<'_, R> {
        let mut state = self.lock();
        let now = Instant::now();
        self.evict(&mut state, now);
        match state.slots.get(key) {
            Some(Slot::Done { receipt, .. }) => return Claim::Duplicate(receipt.clone()),
            Some(Slot::InFlight { closed, .. }) => return Claim::Wait(closed.clone()),
            None => {}
        }
        let (sender, closed) = watch::channel(());
        let attempt = state.next_attempt;
        state.next_attempt += 1;
        let key = Key::from(key);
        state
            .slots
            .insert(key.clone(), Slot::InFlight { attempt, closed });
        Claim::Mine(Attempt {
            dedup: self,
            key,
            attempt,
            _closes_on_drop: sender,
        })
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
            if matches!(state.slots.get(&key), Some(Slot::Done { at: done, .. }) if *done == at) {
                state.slots.remove(&key);
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

    fn window() -> Dedup<u32> {
        Dedup::new(Duration::from_secs(60), 100)
    }

    #[tokio::test]
    async fn a_retry_after_the_ack_is_a_duplicate_with_the_first_receipt() {
        let dedup = window();
        assert_eq!(
            dedup.run::<(), _, _>("a", || async { Ok(1) }).await,
            Ok(Claimed::Fresh(1))
        );
        assert_eq!(
            dedup.run::<(), _, _>("a", || async { Ok(2) }).await,
            Ok(Claimed::Duplicate(1))
        );
        assert_eq!(
            dedup.run::<(), _, _>("b", || async { Ok(3) }).await,
            Ok(Claimed::Fresh(3))
        );
    }

    #[tokio::test]
    async fn a_failed_attempt_is_not_remembered() {
        let dedup = window();
        assert_eq!(
            dedup
                .run("a", || async { Err::<u32, _>("broker down") })
                .await,
            Err("broker down")
        );
        assert_eq!(
            dedup.run::<(), _, _>("a", || async { Ok(2) }).await,
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
                    dedup
                        .run::<(), _, _>("same", || async move {
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
                dedup
                    .run("k", || async move {
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
            tokio::spawn(async move { dedup.run::<&str, _, _>("k", || async { Ok(9) }).await })
        };
        fail.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Err("timeout"));
        assert_eq!(second.await.unwrap(), Ok(Claimed::Fresh(9)));
    }

    #[tokio::test]
    async fn ids_expire_after_the_window_and_beyond_the_capacity() {
        let dedup = Dedup::new(Duration::ZERO, 10);
        dedup
            .run::<(), _, _>("a", || async { Ok(1) })
            .await
            .unwrap();
        assert_eq!(
            dedup.run::<(), _, _>("a", || async { Ok(2) }).await,
            Ok(Claimed::Fresh(2))
        );

        let dedup = Dedup::new(Duration::from_secs(60), 2);
        for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
            dedup
                .run::<(), _, _>(key, || async move { Ok(i) })
                .await
                .unwrap();
        }
        assert_eq!(dedup.len(), 2);
        assert_eq!(
            dedup.run::<(), _, _>("a", || async { Ok(7) }).await,
            Ok(Claimed::Fresh(7))
        );
        assert_eq!(
            dedup.run::<(), _, _>("c", || async { Ok(8) }).await,
            Ok(Claimed::Duplicate(2))
        );
    }
}
