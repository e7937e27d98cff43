//! Mobile and web visits in progress: several users at once, each playing out a planned journey
//! at its own pace, and the devices they use. Converted journeys feed the booking stream.

use rand::{Rng, SeedableRng, seq::IndexedRandom};
use rand_chacha::ChaCha8Rng;

use super::{
    common::{exp_gap_ms, uuid},
    journeys::{Step, mobile_steps, web_steps},
    shared::{LiveSession, MAX_PENDING_CONVERSIONS, Shared},
};
use crate::streams::event::{AppEvent, Device, DeviceType, Event, EventSource};

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

/// One user's visit in progress (a mobile journey or a web session).
#[derive(Debug, Clone)]
pub(super) struct Visit {
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
pub(super) struct VisitStream {
    pub(super) web: bool,
    rng: ChaCha8Rng,
    pub(super) visits: Vec<Visit>,
    /// Mean gap between two events of one user.
    think_ms: f64,
    min_users: usize,
    max_users: usize,
    population: u32,
    pub(super) started_journeys: u64,
    pub(super) converted_journeys: u64,
}

impl VisitStream {
    pub(super) fn new(
        web: bool,
        seed: u64,
        per_minute: f64,
        start_ms: i64,
        population: u32,
    ) -> Self {
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

    pub(super) fn next_at(&self) -> i64 {
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

    pub(super) fn emit(&mut self, shared: &mut Shared) -> Option<Event> {
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
