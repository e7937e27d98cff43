//! Slows down clients that keep sending bad requests, so a flood of them cannot take the CPU
//! that well-behaved clients need.
//!
//! Answering a malformed request is cheap, but not free: at tens of thousands of 4xx a second
//! the gateway spends a core parsing garbage, and every good client's latency doubles. Each
//! client address gets a budget of client errors (a token bucket: a burst, refilled at a steady
//! rate). Once a client has spent it, each further 4xx answer to that address is held back for a
//! delay before it is sent: an attacker with N requests in flight then gets N answers per delay
//! instead of as many as the CPU can make, while valid requests from the same address are never
//! delayed. Held answers are bounded in number; past the bound the answer goes out at once and
//! closes its connection, which costs the attacker a new handshake.
//!
//! The key is the peer address of the TCP connection. Behind a reverse proxy every client shares
//! the proxy's address, so one client's errors would delay the others' error answers (never their
//! valid requests); `--client-error-delay-ms 0` turns the tarpit off for such deployments.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    http::{HeaderValue, header},
    response::Response,
};
use tokio::sync::Semaphore;

/// Addresses remembered at most; past it, those whose budget has refilled are forgotten.
const MAX_TRACKED_ADDRESSES: usize = 65_536;

/// How many client errors an address may cause before its error answers are delayed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TarpitPolicy {
    /// Client errors allowed at once.
    pub burst: u32,
    /// Client errors allowed per second after the burst.
    pub per_second: f64,
    /// How long an error answer beyond the budget is held; zero disables the tarpit.
    pub delay: Duration,
    /// Error answers held at the same time at most.
    pub max_held: usize,
}

/// The per-address budgets and the bound on held answers.
pub struct Tarpit {
    policy: TarpitPolicy,
    budgets: Mutex<Budgets>,
    held: Arc<Semaphore>,
}

struct Budgets {
    by_address: HashMap<IpAddr, Budget>,
    /// When the table was last swept of refilled budgets (at most once a second: a sweep walks
    /// the whole table).
    swept_at: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Budget {
    tokens: f64,
    refilled_at: Instant,
}

/// What to do with one client error answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the budget: answer now.
    Answer,
    /// Over the budget: hold the answer for the policy's delay.
    Delay,
}

impl Tarpit {
    pub fn new(policy: TarpitPolicy) -> Self {
        Self {
            policy,
            budgets: Mutex::new(Budgets {
                by_address: HashMap::new(),
                swept_at: None,
            }),
            held: Arc::new(Semaphore::new(policy.max_held)),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.policy.delay.is_zero()
    }

    /// Spends one client error of `address`'s budget at `now`.
    ///
    /// When the table is full of addresses still over their budget (a distributed flood), a new
    /// address is not remembered and its error answers are delayed.
    pub fn charge(&self, address: IpAddr, now: Instant) -> Verdict {
        let policy = self.policy;
        let mut guard = self.budgets.lock().unwrap_or_else(|p| p.into_inner());
        let budgets = &mut *guard;
        if budgets.by_address.len() >= MAX_TRACKED_ADDRESSES
            && !budgets.by_address.contains_key(&address)
        {
            let sweep_due = budgets
                .swept_at
                .is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(1));
            if sweep_due {
                budgets.swept_at = Some(now);
                budgets
                    .by_address
                    .retain(|_, budget| budget.refill(policy, now) < f64::from(policy.burst));
            }
            if budgets.by_address.len() >= MAX_TRACKED_ADDRESSES {
                return Verdict::Delay;
            }
        }
        let budget = budgets.by_address.entry(address).or_insert(Budget {
            tokens: f64::from(self.policy.burst),
            refilled_at: now,
        });
        budget.refill(self.policy, now);
        if budget.tokens >= 1.0 {
            budget.tokens -= 1.0;
            Verdict::Answer
        } else {
            Verdict::Delay
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.budgets.lock().unwrap().by_address.len()
    }
}

impl Budget {
    /// Adds the tokens earned since the last refill (up to the burst); returns the new level.
    fn refill(&mut self, policy: TarpitPolicy, now: Instant) -> f64 {
        let earned = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64()
            * policy.per_second;
        self.tokens = (self.tokens + earned).min(f64::from(policy.burst));
        self.refilled_at = now;
        self.tokens
    }
}

impl Tarpit {
    /// Charges a 4xx answer to its peer address and, when over budget, holds it for the
    /// policy's delay (or, past the bound on held answers, marks it to close its connection).
    /// Called by the front door ([`crate::front`]) for every answer.
    pub async fn hold_if_over_budget(&self, peer: IpAddr, response: &mut Response) {
        if !self.enabled()
            || !response.status().is_client_error()
            || self.charge(peer, Instant::now()) == Verdict::Answer
        {
            return;
        }
        match self.held.clone().try_acquire_owned() {
            Ok(_slot) => {
                metrics::counter!("gateway_client_errors_delayed_total").increment(1);
                tokio::time::sleep(self.policy.delay).await;
            }
            Err(_) => {
                metrics::counter!("gateway_client_errors_closed_total").increment(1);
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> TarpitPolicy {
        TarpitPolicy {
            burst: 3,
            per_second: 2.0,
            delay: Duration::from_millis(500),
            max_held: 2,
        }
    }

    const ATTACKER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn errors_within_the_burst_are_answered_at_once_and_the_next_is_delayed() {
        let tarpit = Tarpit::new(policy());
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(tarpit.charge(ATTACKER, now), Verdict::Answer);
        }
        assert_eq!(tarpit.charge(ATTACKER, now), Verdict::Delay);
        // Another address has its own budget.
        assert_eq!(tarpit.charge(OTHER, now), Verdict::Answer);
    }

    #[test]
    fn the_budget_refills_at_the_steady_rate_and_no_further_than_the_burst() {
        let tarpit = Tarpit::new(policy());
        let start = Instant::now();
        for _ in 0..3 {
            tarpit.charge(ATTACKER, start);
        }
        // Half a second at 2 per second earns one error.
        let later = start + Duration::from_millis(500);
        assert_eq!(tarpit.charge(ATTACKER, later), Verdict::Answer);
        assert_eq!(tarpit.charge(ATTACKER, later), Verdict::Delay);
        // An hour of good behaviour earns the burst back, not more.
        let much_later = later + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(tarpit.charge(ATTACKER, much_later), Verdict::Answer);
        }
        assert_eq!(tarpit.charge(ATTACKER, much_later), Verdict::Delay);
    }

    #[test]
    fn addresses_whose_budget_refilled_are_forgotten_when_the_table_is_full() {
        let tarpit = Tarpit::new(policy());
        let start = Instant::now();
        for i in 0..MAX_TRACKED_ADDRESSES as u32 {
            tarpit.charge(IpAddr::V4(i.into()), start);
        }
        assert_eq!(tarpit.tracked(), MAX_TRACKED_ADDRESSES);
        // A second later every budget has refilled, except the attacker's, spent meanwhile.
        let later = start + Duration::from_secs(1);
        for _ in 0..10 {
            tarpit.charge(ATTACKER, later);
        }
        assert_eq!(tarpit.tracked(), 1, "only the attacker is still remembered");
        assert_eq!(tarpit.charge(ATTACKER, later), Verdict::Delay);
    }

    #[test]
    fn a_new_address_is_delayed_while_the_table_is_full_of_spent_budgets() {
        let tarpit = Tarpit::new(TarpitPolicy {
            burst: 1,
            ..policy()
        });
        let start = Instant::now();
        for i in 0..MAX_TRACKED_ADDRESSES as u32 {
            tarpit.charge(IpAddr::V4(i.into()), start);
        }
        assert_eq!(tarpit.charge(ATTACKER, start), Verdict::Delay);
        assert_eq!(tarpit.tracked(), MAX_TRACKED_ADDRESSES);
    }

    #[test]
    fn a_zero_delay_disables_the_tarpit() {
        assert!(
            !Tarpit::new(TarpitPolicy {
                delay: Duration::ZERO,
                ..policy()
            })
            .enabled()
        );
        assert!(Tarpit::new(policy()).enabled());
    }
}
