//! The generators are pure: these tests check their rules and their reproducibility exhaustively.

use proptest::prelude::*;
use workload::{
    oltp::{
        model::{BookingStatus, Operation, PaymentStatus, World},
        plan::{Mix, Planner},
    },
    streams::event::Event,
    streams::generate::{StreamKind, Traffic},
};

/// The legal transitions, written out independently of the model's tables.
fn booking_step_is_legal(from: BookingStatus, to: BookingStatus) -> bool {
    use BookingStatus::*;
    matches!(
        (from, to),
        (Pending, Confirmed)
            | (Pending, Cancelled)
            | (Confirmed, CheckedIn)
            | (Confirmed, Cancelled)
            | (CheckedIn, Completed)
    )
}

fn payment_step_is_legal(from: PaymentStatus, to: PaymentStatus) -> bool {
    use PaymentStatus::*;
    matches!(
        (from, to),
        (Pending, Authorized)
            | (Pending, Failed)
            | (Authorized, Captured)
            | (Authorized, Failed)
            | (Captured, Refunded)
            | (Captured, Reconciled)
            | (Refunded, Reconciled)
    )
}

fn mix_strategy() -> impl Strategy<Value = Mix> {
    prop::array::uniform7(0u32..20)
        .prop_filter("some weight", |w| w.iter().any(|x| *x > 0))
        .prop_map(|w| Mix {
            sign_up: w[0],
            edit_profile: w[1],
            delete_account: w[2],
            create_booking: w[3],
            booking_transition: w[4],
            create_payment: w[5],
            payment_transition: w[6],
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the seed and mix, a referee replaying the plan from scratch never sees an
    /// illegal transition, an operation on a missing entity, or a payment for a missing booking.
    #[test]
    fn plans_never_break_the_domain_rules(seed in any::<u64>(), mix in mix_strategy()) {
        let mut planner = Planner::new(seed, mix, "");
        let mut referee = World::default();
        for _ in 0..600 {
            let planned = planner.next_op().expect("the planner only proposes legal operations");
            match &planned.op {
                Operation::BookingTransition { booking, from, to } => {
                    prop_assert!(booking_step_is_legal(*from, *to), "{from:?} -> {to:?}");
                    prop_assert_eq!(referee.booking(*booking).map(|b| b.status), Ok(*from));
                }
                Operation::PaymentTransition { payment, from, to, .. } => {
                    prop_assert!(payment_step_is_legal(*from, *to), "{from:?} -> {to:?}");
                    prop_assert_eq!(referee.payment(*payment).map(|p| p.status), Ok(*from));
                }
                Operation::CreatePayment { booking, amount_cents, .. } => {
                    let state = referee.booking(*booking);
                    prop_assert!(state.is_ok(), "payment for missing booking {booking}");
                    prop_assert_eq!(state.map(|b| b.status), Ok(BookingStatus::Pending));
                    prop_assert!(*amount_cents > 0);
                }
                _ => {}
            }
            prop_assert_eq!(referee.owner(&planned.op), planned.owner);
            prop_assert!(referee.apply(&planned.op).is_ok(), "{:?}", planned.op);
        }
    }

    #[test]
    fn a_seed_replays_the_same_operations(seed in any::<u64>()) {
        let run = || {
            let mut planner = Planner::new(seed, Mix::default(), ".t");
            (0..300).map(|_| planner.next_op().expect("legal")).collect::<Vec<_>>()
        };
        prop_assert_eq!(run(), run());
    }
}

#[test]
fn the_referee_refuses_illegal_operations() {
    let mut world = World::default();
    assert!(
        world.apply(&Operation::DeleteAccount { user: 0 }).is_err(),
        "no such user"
    );
    let payment = Operation::CreatePayment {
        payment: 0,
        booking: 0,
        amount_cents: 100,
        currency: "VND",
        method: "card",
        card_last4: None,
    };
    assert!(
        world.apply(&payment).is_err(),
        "payment for a missing booking"
    );
    world
        .apply(&Operation::SignUp {
            user: 0,
            email: "a@b.c".into(),
            full_name: "A".into(),
            phone: None,
            country_code: "VN",
            preferences: "{}".into(),
        })
        .unwrap();
    world
        .apply(&Operation::CreateBooking {
            booking: 0,
            user: 0,
            destination: "Hue",
            hotel_name: None,
            check_in_in_days: 3,
            nights: 2,
            guests: 2,
            total_cents: 100,
            currency: "VND",
            details: "{}".into(),
        })
        .unwrap();
    let confirm = Operation::BookingTransition {
        booking: 0,
        from: BookingStatus::Pending,
        to: BookingStatus::Confirmed,
    };
    assert!(
        world.apply(&confirm).is_err(),
        "confirming needs an authorized payment"
    );
    let check_in = Operation::BookingTransition {
        booking: 0,
        from: BookingStatus::Pending,
        to: BookingStatus::CheckedIn,
    };
    assert!(
        world.apply(&check_in).is_err(),
        "pending cannot jump to checked-in"
    );
    world.apply(&payment).unwrap();
    assert!(
        world.apply(&payment.clone()).is_err(),
        "a second open payment"
    );
    let refund = Operation::PaymentTransition {
        payment: 0,
        from: PaymentStatus::Pending,
        to: PaymentStatus::Refunded,
        provider_ref: None,
    };
    assert!(world.apply(&refund).is_err());
    world
        .apply(&Operation::PaymentTransition {
            payment: 0,
            from: PaymentStatus::Pending,
            to: PaymentStatus::Authorized,
            provider_ref: None,
        })
        .unwrap();
    world.apply(&confirm).unwrap();
    world.apply(&Operation::DeleteAccount { user: 0 }).unwrap();
    assert!(
        world.booking(0).is_err() && world.payment(0).is_err(),
        "deleting the account removes its bookings and payments"
    );
}

#[test]
fn the_default_mix_reaches_every_status() {
    let mut planner = Planner::new(42, Mix::default(), "");
    let mut bookings = std::collections::HashSet::new();
    let mut payments = std::collections::HashSet::new();
    let mut deletes = 0;
    for _ in 0..5000 {
        match planner.next_op().unwrap().op {
            Operation::BookingTransition { to, .. } => {
                bookings.insert(to);
            }
            Operation::PaymentTransition { to, .. } => {
                payments.insert(to);
            }
            Operation::DeleteAccount { .. } => deletes += 1,
            _ => {}
        }
    }
    assert_eq!(bookings.len(), 4, "{bookings:?}");
    assert_eq!(payments.len(), 5, "{payments:?}");
    assert!(
        deletes > 0 && deletes < 200,
        "accounts are deleted rarely: {deletes}"
    );
}

fn events(seed: u64, rates: &[(StreamKind, f64)], n: usize) -> Vec<Event> {
    let mut traffic = Traffic::new(seed, rates, 1_780_000_000_000);
    (0..n)
        .map(|_| traffic.next_event().expect("endless"))
        .collect()
}

fn all_defaults() -> Vec<(StreamKind, f64)> {
    StreamKind::ALL
        .iter()
        .map(|k| (*k, k.default_rate()))
        .collect()
}

#[test]
fn a_seed_replays_the_same_events() {
    assert_eq!(
        events(9, &all_defaults(), 2000),
        events(9, &all_defaults(), 2000)
    );
    assert_ne!(
        events(9, &all_defaults(), 50),
        events(10, &all_defaults(), 50)
    );
}

#[test]
fn default_rates_add_up_to_about_three_hundred_events_a_minute() {
    let start = 1_780_000_000_000;
    let mut traffic = Traffic::new(3, &all_defaults(), start);
    let hour = start + 3_600_000;
    let mut count = 0;
    while traffic.next_at().is_some_and(|t| t < hour) {
        traffic.next_event();
        count += 1;
    }
    let per_minute = f64::from(count) / 60.0;
    assert!(
        (280.0..=350.0).contains(&per_minute),
        "{per_minute} events/min"
    );
}

#[test]
fn mobile_journeys_convert_about_seventy_percent_with_three_to_seven_users() {
    let mut traffic = Traffic::new(5, &[(StreamKind::Mobile, 70.0)], 0);
    let mut devices = std::collections::HashSet::new();
    let mut journeys = Vec::new();
    for _ in 0..20_000 {
        let users = traffic.mobile_users_online().unwrap();
        assert!((3..=7).contains(&users), "{users} users online");
        let Some(Event::App(event)) = traffic.next_event() else {
            panic!("mobile emits app events")
        };
        devices.insert(event.device.as_ref().map(|d| d.device_type));
        if event.event_type == "app_open" {
            journeys.push(vec![]);
        }
        if let Some(journey) = journeys.last_mut() {
            journey.push(event.event_type);
        }
    }
    assert_eq!(devices.len(), 2, "iOS and Android: {devices:?}");
    let (started, converted) = traffic.mobile_conversions().unwrap();
    let rate = converted as f64 / started as f64;
    assert!((0.65..=0.75).contains(&rate), "conversion {rate}");
}

#[test]
fn logs_cover_every_level_and_tie_to_live_sessions() {
    let sample = events(
        11,
        &[(StreamKind::Mobile, 70.0), (StreamKind::Logs, 80.0)],
        5000,
    );
    let logs: Vec<_> = sample
        .iter()
        .filter_map(|e| match e {
            Event::Log(l) => Some(l),
            _ => None,
        })
        .collect();
    let levels: std::collections::HashSet<_> = logs.iter().map(|l| l.level).collect();
    assert_eq!(levels.len(), 5, "DEBUG..FATAL");
    let sessions: std::collections::HashSet<_> = sample
        .iter()
        .filter_map(|e| match e {
            Event::App(a) => a.session_id.clone(),
            _ => None,
        })
        .collect();
    let tied = logs
        .iter()
        .filter(|l| l.session_id.as_ref().is_some_and(|s| sessions.contains(s)))
        .count();
    assert!(
        tied * 3 > logs.len(),
        "{tied} of {} log lines belong to a journey's session",
        logs.len()
    );
}
