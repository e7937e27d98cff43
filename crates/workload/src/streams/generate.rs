//! Pure, seeded generators of application traffic. Each stream keeps a virtual clock: the
//! timestamp of its next event, spaced to its configured rate. [`Traffic`] merges the enabled
//! streams by time, and they share a view of live sessions so clickstream and logs speak of
//! the same users, sessions and bookings as the journeys.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng, seq::IndexedRandom};
use rand_chacha::ChaCha8Rng;

use super::event::{
    AppEvent, ClickEvent, Device, DeviceType, Event, EventSource, ExternalRecord, ExternalSource,
    Interaction, LogEvent, LogLevel,
};
use crate::oltp::model::{BookingStatus, PaymentStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum StreamKind {
    Mobile,
    Web,
    BookingEvents,
    Clickstream,
    Logs,
    /// Readings of every external source (weather, maps, social media, market data, news,
    /// travel trends), fetched in batches of 50–100 and sent evenly, continuously.
    External,
}

impl StreamKind {
    pub const ALL: [StreamKind; 6] = [
        Self::Mobile,
        Self::Web,
        Self::BookingEvents,
        Self::Clickstream,
        Self::Logs,
        Self::External,
    ];

    /// Events per minute of the seed's default traffic (its event-distribution table: mobile
    /// 50–100, web 30–60, clickstream 60, external 20–40); together about 325/min.
    pub fn default_rate(self) -> f64 {
        match self {
            Self::Mobile => 70.0,
            Self::Web => 45.0,
            Self::BookingEvents => 40.0,
            Self::Clickstream => 60.0,
            Self::Logs => 80.0,
            Self::External => 30.0,
        }
    }
}

/// Users the traffic is about: ids 1..=population, like the OLTP database's user keys.
const DEFAULT_POPULATION: u32 = 5000;

const MAX_PENDING_CONVERSIONS: usize = 100;

/// A session seen recently, for streams that describe what happens inside sessions.
#[derive(Debug, Clone)]
struct LiveSession {
    session_id: String,
    user_id: Option<String>,
    booking_id: Option<String>,
    device_type: DeviceType,
    page_url: String,
    ends_at_ms: i64,
}

/// What the streams share: sessions in progress and bookings the apps converted.
#[derive(Default)]
struct Shared {
    sessions: Vec<LiveSession>,
    conversions: Vec<(String, String, String)>,
}

impl Shared {
    fn touch(&mut self, session: LiveSession) {
        match self
            .sessions
            .iter_mut()
            .find(|s| s.session_id == session.session_id)
        {
            Some(existing) => *existing = session,
            None => self.sessions.push(session),
        }
    }

    fn live(&mut self, now_ms: i64) -> &[LiveSession] {
        self.sessions.retain(|s| s.ends_at_ms >= now_ms);
        &self.sessions
    }
}

fn uuid(rng: &mut ChaCha8Rng) -> String {
    uuid::Builder::from_random_bytes(rng.random())
        .into_uuid()
        .to_string()
}

fn hex(rng: &mut ChaCha8Rng, bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

/// A gap with the given mean: exponential, as between independent arrivals.
fn exp_gap_ms(rng: &mut ChaCha8Rng, mean_ms: f64) -> i64 {
    let u: f64 = rng.random_range(0.0..1.0);
    (-(1.0 - u).ln() * mean_ms).round().max(1.0) as i64
}

const DESTINATIONS: &[&str] = &[
    "Ha Noi",
    "Ho Chi Minh",
    "Da Nang",
    "Hoi An",
    "Nha Trang",
    "Phu Quoc",
    "Da Lat",
    "Ha Long",
    "Can Tho",
    "Hai Phong",
];
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
const IOS_VERSIONS: &[&str] = &["iOS 17.6", "iOS 18.1", "iOS 18.3", "iOS 18.5"];
const ANDROID_VERSIONS: &[&str] = &["Android 12", "Android 13", "Android 14", "Android 15"];
const APP_VERSIONS: &[&str] = &["4.10.2", "4.11.0", "4.12.0", "4.12.1"];
const USER_AGENTS: &[(DeviceType, &str)] = &[
    (
        DeviceType::Desktop,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    ),
    (
        DeviceType::Desktop,
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    ),
    (
        DeviceType::Tablet,
        "Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    ),
    (
        DeviceType::MobileWeb,
        "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36",
    ),
    (
        DeviceType::MobileWeb,
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    ),
];

fn props(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect()
}

/// One step of a journey, planned when the journey starts.
#[derive(Debug, Clone)]
struct Step {
    event_type: &'static str,
    properties: BTreeMap<String, String>,
    page: String,
}

/// One user's visit in progress (a mobile journey or a web session).
#[derive(Debug, Clone)]
struct Visit {
    session_id: String,
    user_id: Option<String>,
    device: Device,
    steps: Vec<Step>,
    next_step: usize,
    next_at_ms: i64,
    booking_id: Option<String>,
}

/// Mobile journeys (app open → home → search → filters → booking view → CTA) or web sessions
/// (landing → navigation → search → filters → booking view → cart → checkout), several users at
/// once.
struct VisitStream {
    web: bool,
    rng: ChaCha8Rng,
    visits: Vec<Visit>,
    /// Mean gap between two events of one user.
    think_ms: f64,
    min_users: usize,
    max_users: usize,
    population: u32,
    started_journeys: u64,
    converted_journeys: u64,
}

/// Share of mobile journeys that end with the booking CTA.
pub const MOBILE_CONVERSION: f64 = 0.7;

impl VisitStream {
    fn new(web: bool, seed: u64, per_minute: f64, start_ms: i64, population: u32) -> Self {
        let (min_users, max_users) = if web { (4, 10) } else { (3, 7) };
        let mean_users = (min_users + max_users) as f64 / 2.0;
        let mut stream = Self {
            web,
            rng: ChaCha8Rng::seed_from_u64(seed),
            visits: Vec::new(),
            think_ms: mean_users * 60_000.0 / per_minute.max(1e-6),
            min_users,
            max_users,
            population,
            started_journeys: 0,
            converted_journeys: 0,
        };
        let users = stream.rng.random_range(min_users..=max_users);
        for _ in 0..users {
            let offset = exp_gap_ms(&mut stream.rng, stream.think_ms);
            stream.start_visit(start_ms + offset);
        }
        stream
    }

    fn next_at(&self) -> i64 {
        self.visits
            .iter()
            .map(|v| v.next_at_ms)
            .min()
            .unwrap_or(i64::MAX)
    }

    fn start_visit(&mut self, at_ms: i64) {
        let rng = &mut self.rng;
        let session_id = uuid(rng);
        let device = if self.web {
            web_device(rng)
        } else {
            mobile_device(rng)
        };
        // Most app users are signed in; a good share of web visitors are anonymous.
        let signed_in = rng.random_bool(if self.web { 0.6 } else { 0.9 });
        let user_id = signed_in.then(|| rng.random_range(1..=self.population).to_string());
        let (steps, converted) = if self.web {
            web_steps(rng)
        } else {
            mobile_steps(rng)
        };
        self.started_journeys += 1;
        self.converted_journeys += u64::from(converted);
        self.visits.push(Visit {
            session_id,
            user_id,
            device,
            steps,
            next_step: 0,
            next_at_ms: at_ms,
            booking_id: None,
        });
    }

    fn emit(&mut self, shared: &mut Shared) -> Option<Event> {
        let index = self
            .visits
            .iter()
            .enumerate()
            .min_by_key(|(_, v)| v.next_at_ms)?
            .0;
        let think_ms = self.think_ms;
        let rng = &mut self.rng;
        let visit = &mut self.visits[index];
        let now = visit.next_at_ms;
        let step = visit.steps[visit.next_step].clone();
        let mut properties = step.properties;
        if step.event_type == "click_cta" {
            let booking_id = uuid(rng);
            properties.insert("booking_id".into(), booking_id.clone());
            visit.booking_id = Some(booking_id.clone());
            // Bounded: without a booking stream nobody takes conversions off the list.
            if let Some(user) = visit
                .user_id
                .as_ref()
                .filter(|_| shared.conversions.len() < MAX_PENDING_CONVERSIONS)
            {
                shared
                    .conversions
                    .push((user.clone(), visit.session_id.clone(), booking_id));
            }
        }
        let event = AppEvent {
            event_id: uuid(rng),
            event_type: step.event_type.into(),
            source: if self.web {
                EventSource::WebApp
            } else {
                EventSource::MobileApp
            },
            user_id: visit.user_id.clone(),
            session_id: Some(visit.session_id.clone()),
            booking_id: visit.booking_id.clone(),
            device: Some(visit.device.clone()),
            timestamp_ms: now,
            properties,
        };
        visit.next_step += 1;
        visit.next_at_ms = now + exp_gap_ms(rng, think_ms);
        shared.touch(LiveSession {
            session_id: visit.session_id.clone(),
            user_id: visit.user_id.clone(),
            booking_id: visit.booking_id.clone(),
            device_type: visit.device.device_type,
            page_url: step.page,
            ends_at_ms: visit.next_at_ms,
        });
        if visit.next_step >= visit.steps.len() {
            let ended_at = visit.next_at_ms;
            self.visits.swap_remove(index);
            // The number of users online drifts within its range as visits end and begin.
            let wanted = self.rng.random_range(self.min_users..=self.max_users);
            while self.visits.len() < wanted.max(self.min_users) {
                let offset = exp_gap_ms(&mut self.rng, think_ms / 2.0);
                self.start_visit(ended_at + offset);
            }
        }
        Some(Event::App(event))
    }
}

fn mobile_device(rng: &mut ChaCha8Rng) -> Device {
    let ios = rng.random_bool(0.55);
    Device {
        device_type: if ios {
            DeviceType::Ios
        } else {
            DeviceType::Android
        },
        os_version: Some(
            (*if ios { IOS_VERSIONS } else { ANDROID_VERSIONS }
                .choose(rng)
                .unwrap_or(&"unknown"))
            .to_string(),
        ),
        app_version: APP_VERSIONS.choose(rng).map(|v| (*v).to_string()),
        user_agent: None,
    }
}

fn web_device(rng: &mut ChaCha8Rng) -> Device {
    let roll: f64 = rng.random_range(0.0..1.0);
    let device_type = if roll < 0.55 {
        DeviceType::Desktop
    } else if roll < 0.85 {
        DeviceType::MobileWeb
    } else {
        DeviceType::Tablet
    };
    let agents: Vec<&str> = USER_AGENTS
        .iter()
        .filter(|(d, _)| *d == device_type)
        .map(|(_, ua)| *ua)
        .collect();
    Device {
        device_type,
        os_version: None,
        app_version: None,
        user_agent: agents.choose(rng).map(|ua| (*ua).to_string()),
    }
}

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
fn mobile_steps(rng: &mut ChaCha8Rng) -> (Vec<Step>, bool) {
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
fn web_steps(rng: &mut ChaCha8Rng) -> (Vec<Step>, bool) {
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

/// A booking as the booking system sees it: status and the state of its payment.
struct TrackedBooking {
    booking_id: String,
    user_id: String,
    session_id: Option<String>,
    status: BookingStatus,
    payment: Option<PaymentStatus>,
    amount: String,
    destination: String,
}

/// Booking-system events driven by the same state machines as the OLTP driver.
struct BookingStream {
    rng: ChaCha8Rng,
    next_at_ms: i64,
    mean_gap_ms: f64,
    open: Vec<TrackedBooking>,
    population: u32,
}

impl BookingStream {
    fn emit(&mut self, shared: &mut Shared) -> Event {
        let now = self.next_at_ms;
        self.next_at_ms += exp_gap_ms(&mut self.rng, self.mean_gap_ms);
        let rng = &mut self.rng;
        let create =
            self.open.is_empty() || !shared.conversions.is_empty() || rng.random_bool(0.25);
        let (event_type, index) = if create {
            // Bookings the apps converted come first; others arrive from partners and agents.
            let (user_id, session_id, booking_id) = if shared.conversions.is_empty() {
                (
                    rng.random_range(1..=self.population).to_string(),
                    None,
                    uuid(rng),
                )
            } else {
                let (user, session, booking) = shared.conversions.remove(0);
                (user, Some(session), booking)
            };
            self.open.push(TrackedBooking {
                booking_id,
                user_id,
                session_id,
                status: BookingStatus::Pending,
                payment: None,
                amount: format!("{}.00", rng.random_range(600..=30_000) * 1000),
                destination: (*DESTINATIONS.choose(rng).unwrap_or(&"Da Nang")).to_string(),
            });
            ("booking_created", self.open.len() - 1)
        } else {
            let index = rng.random_range(0..self.open.len());
            (advance(rng, &mut self.open[index]), index)
        };
        let booking = &self.open[index];
        let mut properties = props(&[
            ("status", booking.status.as_sql().into()),
            ("amount", booking.amount.clone()),
            ("currency", "VND".into()),
            ("destination", booking.destination.clone()),
        ]);
        if let Some(payment) = booking.payment {
            properties.insert("payment_status".into(), payment.as_sql().into());
        }
        let event = AppEvent {
            event_id: uuid(rng),
            event_type: event_type.into(),
            source: EventSource::BookingSystem,
            user_id: Some(booking.user_id.clone()),
            session_id: booking.session_id.clone(),
            booking_id: Some(booking.booking_id.clone()),
            device: None,
            timestamp_ms: now,
            properties,
        };
        if finished(booking) {
            self.open.swap_remove(index);
        }
        Event::App(event)
    }
}

/// Moves a booking one step: payment initiated → confirmed → captured → check-in → check-out,
/// with the occasional failure, cancellation and refund. Event names are the gateway's.
fn advance(rng: &mut ChaCha8Rng, booking: &mut TrackedBooking) -> &'static str {
    use BookingStatus as B;
    use PaymentStatus as P;
    let (event, status, payment) = match (booking.status, booking.payment) {
        (B::Pending, None | Some(P::Failed)) if rng.random_bool(0.1) => {
            ("booking_cancelled", B::Cancelled, booking.payment)
        }
        (B::Pending, None | Some(P::Failed)) if rng.random_bool(0.08) => {
            ("payment_failed", B::Pending, Some(P::Failed))
        }
        (B::Pending, None | Some(P::Failed)) => {
            ("payment_initiated", B::Pending, Some(P::Authorized))
        }
        (B::Pending, Some(_)) => ("booking_confirmed", B::Confirmed, booking.payment),
        (B::Confirmed, Some(P::Authorized)) => {
            ("payment_captured", B::Confirmed, Some(P::Captured))
        }
        (B::Confirmed, _) if rng.random_bool(0.1) => {
            ("booking_cancelled", B::Cancelled, booking.payment)
        }
        (B::Confirmed, _) => ("check_in", B::CheckedIn, booking.payment),
        (B::CheckedIn, _) => ("check_out", B::Completed, booking.payment),
        (B::Cancelled, Some(P::Captured)) => ("refund_issued", B::Cancelled, Some(P::Refunded)),
        (B::Cancelled, Some(P::Authorized)) => ("payment_failed", B::Cancelled, Some(P::Failed)),
        // Finished bookings leave the open list, so nothing else is ever advanced.
        (status, payment) => ("booking_modified", status, payment),
    };
    booking.status = status;
    booking.payment = payment;
    event
}

/// Whether nothing more will happen to the booking.
fn finished(booking: &TrackedBooking) -> bool {
    match (booking.status, booking.payment) {
        (BookingStatus::Completed, _) => true,
        (BookingStatus::Cancelled, Some(PaymentStatus::Captured | PaymentStatus::Authorized)) => {
            false
        }
        (BookingStatus::Cancelled, _) => true,
        _ => false,
    }
}

/// Low-level interactions inside live sessions (or anonymous ones when none is live).
struct ClickStream {
    rng: ChaCha8Rng,
    next_at_ms: i64,
    mean_gap_ms: f64,
    anonymous: Vec<LiveSession>,
}

const ELEMENTS: &[&str] = &[
    "search-box",
    "date-picker",
    "guest-selector",
    "filter-price",
    "filter-stars",
    "hotel-card",
    "book-now",
    "nav-deals",
    "nav-home",
    "map-toggle",
    "gallery-next",
    "promo-banner",
];

impl ClickStream {
    fn emit(&mut self, shared: &mut Shared) -> Event {
        let now = self.next_at_ms;
        self.next_at_ms += exp_gap_ms(&mut self.rng, self.mean_gap_ms);
        let rng = &mut self.rng;
        let live = shared.live(now);
        let session = if !live.is_empty() && rng.random_bool(0.85) {
            live[rng.random_range(0..live.len())].clone()
        } else {
            if self.anonymous.len() < 3 || rng.random_bool(0.1) {
                let device_type = *[
                    DeviceType::Desktop,
                    DeviceType::MobileWeb,
                    DeviceType::Tablet,
                ]
                .choose(rng)
                .unwrap_or(&DeviceType::Desktop);
                self.anonymous.push(LiveSession {
                    session_id: uuid(rng),
                    user_id: None,
                    booking_id: None,
                    device_type,
                    page_url: "https://travel.example.vn/".into(),
                    ends_at_ms: i64::MAX,
                });
                if self.anonymous.len() > 5 {
                    self.anonymous.remove(0);
                }
            }
            self.anonymous[rng.random_range(0..self.anonymous.len())].clone()
        };
        let (width, height) = match session.device_type {
            DeviceType::Desktop => (1440, 900),
            DeviceType::Tablet => (820, 1180),
            _ => (390, 844),
        };
        let interaction = if session.device_type == DeviceType::Desktop {
            *[
                Interaction::Click,
                Interaction::Click,
                Interaction::Hover,
                Interaction::Scroll,
                Interaction::Input,
                Interaction::View,
            ]
            .choose(rng)
            .unwrap_or(&Interaction::Click)
        } else {
            *[
                Interaction::Tap,
                Interaction::Tap,
                Interaction::Scroll,
                Interaction::View,
                Interaction::Input,
            ]
            .choose(rng)
            .unwrap_or(&Interaction::Tap)
        };
        Event::Click(ClickEvent {
            event_id: uuid(rng),
            session_id: session.session_id,
            user_id: session.user_id,
            interaction,
            page_url: session.page_url,
            element_id: (interaction != Interaction::Scroll)
                .then(|| (*ELEMENTS.choose(rng).unwrap_or(&"hotel-card")).to_string()),
            x: rng.random_range(0..width),
            y: rng.random_range(0..height),
            viewport_width: Some(width),
            viewport_height: Some(height),
            device_type: session.device_type,
            referrer: rng.random_bool(0.3).then(|| {
                (*[
                    "https://www.google.com/",
                    "https://www.facebook.com/",
                    "https://zalo.me/",
                ]
                .choose(rng)
                .unwrap_or(&""))
                .to_string()
            }),
            timestamp_ms: now,
        })
    }
}

const SERVICES: &[(&str, &str)] = &[
    ("booking-api", "com.travel.booking.BookingController"),
    ("payment-service", "com.travel.payment.PaymentProcessor"),
    ("search-service", "search::query"),
    ("mobile-bff", "bff.handlers"),
    ("web-frontend", "next.server"),
    ("notification-service", "notify.dispatch"),
    ("inventory-service", "inventory.sync"),
    ("gateway", "gateway::ingest"),
];

/// Share of each level: mostly INFO and DEBUG, errors rare, fatal very rare.
const LEVEL_WEIGHTS: [(LogLevel, u32); 5] = [
    (LogLevel::Debug, 25),
    (LogLevel::Info, 55),
    (LogLevel::Warn, 12),
    (LogLevel::Error, 7),
    (LogLevel::Fatal, 1),
];

fn log_message(
    rng: &mut ChaCha8Rng,
    service: &str,
    level: LogLevel,
    booking: Option<&str>,
) -> String {
    let ms = rng.random_range(3..900);
    let booking = booking.unwrap_or("n/a");
    match level {
        LogLevel::Debug => format!(
            "{service}: cache {} for key {}",
            if rng.random_bool(0.7) { "hit" } else { "miss" },
            hex(rng, 4)
        ),
        LogLevel::Info => match service {
            "booking-api" => format!("booking {booking} updated in {ms} ms"),
            "payment-service" => {
                format!("payment for booking {booking} processed by provider in {ms} ms")
            }
            "search-service" => format!(
                "search returned {} hotels in {ms} ms",
                rng.random_range(0..250)
            ),
            _ => format!("request completed with status 200 in {ms} ms"),
        },
        LogLevel::Warn => format!("slow upstream call: {ms}0 ms exceeds the 2000 ms budget"),
        LogLevel::Error => match service {
            "payment-service" => {
                format!("payment provider declined booking {booking}: insufficient funds")
            }
            _ => format!(
                "upstream returned 502 after {} retries",
                rng.random_range(1..4)
            ),
        },
        LogLevel::Fatal => "database connection pool exhausted; shutting down worker".into(),
    }
}

/// Application logs from every service, many tied to a live session.
struct LogStream {
    rng: ChaCha8Rng,
    next_at_ms: i64,
    mean_gap_ms: f64,
}

impl LogStream {
    fn emit(&mut self, shared: &mut Shared) -> Event {
        let now = self.next_at_ms;
        self.next_at_ms += exp_gap_ms(&mut self.rng, self.mean_gap_ms);
        let rng = &mut self.rng;
        let (service, logger) = *SERVICES.choose(rng).unwrap_or(&SERVICES[0]);
        let total: u32 = LEVEL_WEIGHTS.iter().map(|(_, w)| w).sum();
        let mut roll = rng.random_range(0..total);
        let mut level = LogLevel::Info;
        for (candidate, weight) in LEVEL_WEIGHTS {
            if roll < weight {
                level = candidate;
                break;
            }
            roll -= weight;
        }
        let live = shared.live(now);
        let session = (!live.is_empty() && rng.random_bool(0.6))
            .then(|| live[rng.random_range(0..live.len())].clone());
        let booking_id = session.as_ref().and_then(|s| s.booking_id.clone());
        let message = log_message(rng, service, level, booking_id.as_deref());
        let mut attributes = props(&[("env", "dev".into()), ("region", "ap-southeast-1".into())]);
        if level >= LogLevel::Error {
            attributes.insert(
                "error_kind".into(),
                (*["Timeout", "UpstreamError", "Declined", "PoolExhausted"]
                    .choose(rng)
                    .unwrap_or(&"Timeout"))
                .to_string(),
            );
        }
        Event::Log(LogEvent {
            log_id: uuid(rng),
            service: service.into(),
            level,
            message,
            logger: Some(logger.into()),
            host: Some(format!(
                "{service}-{}-{}",
                hex(rng, 2),
                rng.random_range(0..4)
            )),
            trace_id: Some(hex(rng, 16)),
            request_id: Some(format!("req_{}", hex(rng, 6))),
            user_id: session.as_ref().and_then(|s| s.user_id.clone()),
            session_id: session.as_ref().map(|s| s.session_id.clone()),
            booking_id,
            attributes,
            timestamp_ms: now,
        })
    }
}

/// Readings in a batch of the external simulator.
pub const EXTERNAL_BATCH: std::ops::RangeInclusive<usize> = 50..=100;

/// The continuous external-data simulator: takes each external source in turn, fetches a batch
/// of 50–100 readings through the pipelines' own synthetic fetch, transform and validate code
/// (the shipped pipelines file), and sends them one by one, evenly spaced (gaps of 0.75–1.25 of
/// the mean), so every minute carries readings.
struct ExternalStream {
    rng: ChaCha8Rng,
    next_at_ms: i64,
    mean_gap_ms: f64,
    sources: Vec<crate::external::PipelineConfig>,
    next_source: usize,
    batch: std::collections::VecDeque<ExternalRecord>,
    batches: u64,
}

impl ExternalStream {
    fn new(rng: ChaCha8Rng, first_at_ms: i64, mean_gap_ms: f64) -> Self {
        let sources = crate::external::parse_pipelines(crate::external::DEFAULT_PIPELINES)
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.config)
            .filter(|c| matches!(c.fetch, crate::external::FetchConfig::Synthetic { .. }))
            .collect();
        Self {
            rng,
            next_at_ms: first_at_ms,
            mean_gap_ms,
            sources,
            next_source: 0,
            batch: std::collections::VecDeque::new(),
            batches: 0,
        }
    }

    fn fetch_batch(&mut self, now: i64) {
        if self.sources.is_empty() {
            return;
        }
        let config = &self.sources[self.next_source % self.sources.len()];
        self.next_source += 1;
        self.batches += 1;
        let crate::external::FetchConfig::Synthetic { fields } = &config.fetch else {
            return;
        };
        let size = self.rng.random_range(EXTERNAL_BATCH);
        let source_type =
            ExternalSource::from_symbol(&config.source_type).unwrap_or(ExternalSource::Other);
        for _ in 0..size {
            let location = config.locations.choose(&mut self.rng).cloned();
            let raw = crate::external::synthesize_fields(fields, &mut self.rng);
            let payload = crate::external::transform_record(config, location.as_deref(), raw);
            let Ok(quality_warnings) = crate::external::validate_record(&config.validate, &payload)
            else {
                continue;
            };
            self.batch.push_back(ExternalRecord {
                record_id: uuid(&mut self.rng),
                source_type,
                pipeline: format!("{}-stream", config.name),
                location,
                observed_at_ms: now,
                fetched_at_ms: now,
                payload_json: serde_json::Value::Object(payload).to_string(),
                quality_warnings,
            });
        }
    }

    fn emit(&mut self) -> Option<Event> {
        let now = self.next_at_ms;
        if self.batch.is_empty() {
            self.fetch_batch(now);
        }
        let gap = self.mean_gap_ms * self.rng.random_range(0.75..1.25);
        self.next_at_ms += (gap.round() as i64).max(1);
        let mut record = self.batch.pop_front()?;
        record.observed_at_ms = now;
        Some(Event::External(record))
    }
}

enum Stream {
    Visits(VisitStream),
    Bookings(BookingStream),
    Clicks(ClickStream),
    Logs(LogStream),
    External(ExternalStream),
}

impl Stream {
    fn next_at(&self) -> i64 {
        match self {
            Self::Visits(s) => s.next_at(),
            Self::Bookings(s) => s.next_at_ms,
            Self::Clicks(s) => s.next_at_ms,
            Self::Logs(s) => s.next_at_ms,
            Self::External(s) => s.next_at_ms,
        }
    }
}

/// All enabled streams merged by event time; an endless, reproducible sequence of events.
pub struct Traffic {
    streams: Vec<Stream>,
    shared: Shared,
}

impl Traffic {
    /// `rates` gives each enabled stream's events per minute; `start_ms` is the first instant.
    pub fn new(seed: u64, rates: &[(StreamKind, f64)], start_ms: i64) -> Self {
        let population = DEFAULT_POPULATION;
        let streams = rates
            .iter()
            .filter(|(_, rate)| *rate > 0.0)
            .map(|(kind, rate)| {
                // Each stream has its own sequence, so enabling one does not reshuffle another.
                let seed = seed ^ (0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(*kind as u64 + 1));
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let mean_gap_ms = 60_000.0 / rate;
                let first = start_ms + exp_gap_ms(&mut rng, mean_gap_ms);
                match kind {
                    StreamKind::Mobile => {
                        Stream::Visits(VisitStream::new(false, seed, *rate, start_ms, population))
                    }
                    StreamKind::Web => {
                        Stream::Visits(VisitStream::new(true, seed, *rate, start_ms, population))
                    }
                    StreamKind::BookingEvents => Stream::Bookings(BookingStream {
                        rng,
                        next_at_ms: first,
                        mean_gap_ms,
                        open: Vec::new(),
                        population,
                    }),
                    StreamKind::Clickstream => Stream::Clicks(ClickStream {
                        rng,
                        next_at_ms: first,
                        mean_gap_ms,
                        anonymous: Vec::new(),
                    }),
                    StreamKind::Logs => Stream::Logs(LogStream {
                        rng,
                        next_at_ms: first,
                        mean_gap_ms,
                    }),
                    StreamKind::External => {
                        Stream::External(ExternalStream::new(rng, first, mean_gap_ms))
                    }
                }
            })
            .collect();
        Self {
            streams,
            shared: Shared::default(),
        }
    }

    /// When the next event happens (`None` with no stream enabled).
    pub fn next_at(&self) -> Option<i64> {
        self.streams.iter().map(Stream::next_at).min()
    }

    pub fn next_event(&mut self) -> Option<Event> {
        let index = self
            .streams
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.next_at())?
            .0;
        let shared = &mut self.shared;
        match &mut self.streams[index] {
            Stream::Visits(s) => s.emit(shared),
            Stream::Bookings(s) => Some(s.emit(shared)),
            Stream::Clicks(s) => Some(s.emit(shared)),
            Stream::Logs(s) => Some(s.emit(shared)),
            Stream::External(s) => s.emit(),
        }
    }

    /// Batches the external simulator has fetched, if it is enabled.
    pub fn external_batches(&self) -> Option<u64> {
        self.streams.iter().find_map(|s| match s {
            Stream::External(e) => Some(e.batches),
            _ => None,
        })
    }

    /// (journeys started, journeys converted) of the mobile stream, if enabled.
    pub fn mobile_conversions(&self) -> Option<(u64, u64)> {
        self.streams.iter().find_map(|s| match s {
            Stream::Visits(v) if !v.web => Some((v.started_journeys, v.converted_journeys)),
            _ => None,
        })
    }

    /// Users currently in a mobile journey, if the stream is enabled.
    pub fn mobile_users_online(&self) -> Option<usize> {
        self.streams.iter().find_map(|s| match s {
            Stream::Visits(v) if !v.web => Some(v.visits.len()),
            _ => None,
        })
    }
}
