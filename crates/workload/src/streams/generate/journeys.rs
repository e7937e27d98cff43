//! The step plans of mobile journeys and web sessions: what a visit will do, drawn when it
//! starts. Separate from the visit stream, which only plays the plans out over time.

use std::collections::BTreeMap;

use rand::{Rng, seq::IndexedRandom};
use rand_chacha::ChaCha8Rng;

use super::common::{DESTINATIONS, props};

const FILTERS: &[(&str, &[&str])] = &[
    ("price_max", &["1000000", "2000000", "3500000", "5000000"]),
    ("stars", &["3", "4", "5"]),
    (
        "amenities",
        &["pool", "breakfast", "free_cancellation", "beach_front"],
    ),
    ("sort", &["price_asc", "rating_desc", "distance"]),
    ("guests", &["1", "2", "3", "4"]),
];

/// One step of a journey, planned when the journey starts.
#[derive(Debug, Clone)]
pub(super) struct Step {
    pub(super) event_type: &'static str,
    pub(super) properties: BTreeMap<String, String>,
    pub(super) page: String,
}

/// Share of mobile journeys that end with the booking CTA.
pub const MOBILE_CONVERSION: f64 = 0.7;

fn search_and_filters(rng: &mut ChaCha8Rng, steps: &mut Vec<Step>, base: &str) -> (String, String) {
    let destination = (*DESTINATIONS.choose(rng).unwrap_or(&"Da Nang")).to_string();
    let check_in = format!(
        "2026-{:02}-{:02}",
        rng.random_range(1..=12),
        rng.random_range(1..=28)
    );
    let guests = rng.random_range(1..=4).to_string();
    let query_page = format!("{base}/search?q={}", destination.replace(' ', "+"));
    steps.push(Step {
        event_type: "search",
        properties: props(&[
            ("query", destination.clone()),
            ("check_in", check_in),
            ("guests", guests),
        ]),
        page: query_page.clone(),
    });
    for _ in 0..rng.random_range(0..=2) {
        let (name, values) = *FILTERS.choose(rng).unwrap_or(&FILTERS[0]);
        steps.push(Step {
            event_type: "filter",
            properties: props(&[
                ("filter", name.into()),
                ("value", (*values.choose(rng).unwrap_or(&"")).to_string()),
            ]),
            page: query_page.clone(),
        });
    }
    let hotel_id = format!("htl_{:05}", rng.random_range(1..=20_000));
    let price = (rng.random_range(600..=6000) * 1000).to_string();
    steps.push(Step {
        event_type: "booking_view",
        properties: props(&[
            ("hotel_id", hotel_id.clone()),
            ("destination", destination),
            ("price", price.clone()),
            ("currency", "VND".into()),
        ]),
        page: format!("{base}/hotels/{hotel_id}"),
    });
    (hotel_id, price)
}

/// app_open → home → search → 0–2 filters → booking_view → click_cta (converted) or app_close.
pub(super) fn mobile_steps(rng: &mut ChaCha8Rng) -> (Vec<Step>, bool) {
    let base = "app://travel";
    let mut steps = vec![
        Step {
            event_type: "app_open",
            properties: props(&[(
                "launch",
                (*["cold", "warm", "push"].choose(rng).unwrap_or(&"cold")).to_string(),
            )]),
            page: format!("{base}/splash"),
        },
        Step {
            event_type: "page_view",
            properties: props(&[("screen", "home".into())]),
            page: format!("{base}/home"),
        },
    ];
    let (hotel_id, price) = search_and_filters(rng, &mut steps, base);
    let converted = rng.random_bool(MOBILE_CONVERSION);
    steps.push(if converted {
        Step {
            event_type: "click_cta",
            properties: props(&[
                ("cta", "book_now".into()),
                ("hotel_id", hotel_id.clone()),
                ("amount", price),
            ]),
            page: format!("{base}/hotels/{hotel_id}/book"),
        }
    } else {
        Step {
            event_type: "app_close",
            properties: props(&[("screen", "booking_view".into())]),
            page: format!("{base}/hotels/{hotel_id}"),
        }
    });
    (steps, converted)
}

/// landing → 0–2 pages → search → filters → booking_view → cart → checkout → pay (click_cta),
/// each later stage reached by a share of the sessions.
pub(super) fn web_steps(rng: &mut ChaCha8Rng) -> (Vec<Step>, bool) {
    let base = "https://travel.example.vn";
    let landing = (*[
        "/",
        "/deals",
        "/destinations/da-nang",
        "/blog/top-10-beaches",
    ]
    .choose(rng)
    .unwrap_or(&"/"))
    .to_string();
    let mut steps = vec![Step {
        event_type: "page_view",
        properties: props(&[
            ("path", landing.clone()),
            (
                "referrer",
                (*["google", "facebook", "direct", "newsletter"]
                    .choose(rng)
                    .unwrap_or(&"direct"))
                .to_string(),
            ),
        ]),
        page: format!("{base}{landing}"),
    }];
    for _ in 0..rng.random_range(0..=2) {
        let path = (*["/destinations", "/deals", "/about", "/help/cancellation"]
            .choose(rng)
            .unwrap_or(&"/deals"))
        .to_string();
        steps.push(Step {
            event_type: "page_view",
            properties: props(&[("path", path.clone())]),
            page: format!("{base}{path}"),
        });
    }
    let (hotel_id, price) = search_and_filters(rng, &mut steps, base);
    let mut converted = false;
    if rng.random_bool(0.55) {
        steps.push(Step {
            event_type: "click",
            properties: props(&[
                ("action", "add_to_cart".into()),
                ("hotel_id", hotel_id.clone()),
                ("price", price.clone()),
            ]),
            page: format!("{base}/cart"),
        });
        if rng.random_bool(0.7) {
            steps.push(Step {
                event_type: "click",
                properties: props(&[
                    ("action", "checkout_start".into()),
                    ("items", "1".into()),
                    ("amount", price.clone()),
                ]),
                page: format!("{base}/checkout"),
            });
            if rng.random_bool(0.75) {
                let method = (*["card", "e_wallet", "bank_transfer"]
                    .choose(rng)
                    .unwrap_or(&"card"))
                .to_string();
                steps.push(Step {
                    event_type: "click_cta",
                    properties: props(&[
                        ("cta", "pay_now".into()),
                        ("amount", price),
                        ("payment_method", method),
                    ]),
                    page: format!("{base}/checkout/done"),
                });
                converted = true;
            }
        }
    }
    (steps, converted)
}
