//! `GET /stats`: what the gateway did since it started, by endpoint, event type, topic and
//! outcome, with rates. The same counts go to Prometheus as `gateway_events_total` and
//! `gateway_requests_total` (with `gateway_request_duration_seconds`): each count keeps the
//! handle of its Prometheus series beside it, so a request or event costs no look-up of a series
//! by its labels.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

use metrics::{Counter, Gauge, Histogram};
use serde::Serialize;
use utoipa::ToSchema;

/// What became of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Stored,
    Duplicate,
    Rejected,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Duplicate => "duplicate",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
        }
    }
}

/// Seconds of history behind the recent rates.
const RECENT_SECS: u64 = 60;

pub struct Stats {
    started: Instant,
    started_at: String,
    counts: Mutex<Counts>,
    requests_in_flight: Gauge,
}

#[derive(Default)]
struct Counts {
    requests: BTreeMap<String, EndpointCounts>,
    events: BTreeMap<(&'static str, &'static str, Outcome), Count>,
    /// Events per outcome in each of the last seconds: (second since start, counts).
    recent: VecDeque<(u64, [u64; 4])>,
}

/// A count and its Prometheus counter.
struct Count {
    n: u64,
    counter: Counter,
}

impl Count {
    fn new(counter: Counter) -> Self {
        Self { n: 0, counter }
    }

    fn add(&mut self) {
        self.n += 1;
        self.counter.increment(1);
    }
}

/// The answers of one endpoint: how long they took, how many by status.
struct EndpointCounts {
    duration: Histogram,
    by_status: BTreeMap<u16, Count>,
}

impl EndpointCounts {
    fn new(endpoint: &str) -> Self {
        Self {
            duration: metrics::histogram!("gateway_request_duration_seconds", "endpoint" => endpoint.to_string()),
            by_status: BTreeMap::new(),
        }
    }

    fn record(&mut self, endpoint: &str, status: u16, took: Duration) {
        self.duration.record(took.as_secs_f64());
        self.by_status
            .entry(status)
            .or_insert_with(|| {
                Count::new(metrics::counter!("gateway_requests_total", "endpoint" => endpoint.to_string(), "status" => status.to_string()))
            })
            .add();
    }
}

/// Counts one unit in a gauge while alive: the decrement happens also when the future holding
/// it is dropped mid-way (a client that hung up).
pub struct InFlight(Gauge);

impl InFlight {
    pub fn enter(gauge: &Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Counts keyed by name.
pub type Tally = BTreeMap<String, u64>;

#[derive(Debug, Serialize, ToSchema)]
pub struct StatsReport {
    pub started_at: String,
    pub uptime_seconds: f64,
    /// Answers by endpoint, then by HTTP status.
    pub requests: BTreeMap<String, Tally>,
    pub events: EventStats,
    /// Events per second by outcome.
    pub rates: Rates,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventStats {
    pub by_outcome: Tally,
    /// Topic, then outcome.
    pub by_topic: BTreeMap<String, Tally>,
    /// Event type (for logs the level, for clickstream the interaction, for external data the
    /// source), then outcome.
    pub by_event_type: BTreeMap<String, Tally>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Rates {
    pub since_start: BTreeMap<String, f64>,
    pub last_minute: BTreeMap<String, f64>,
}

const OUTCOMES: [Outcome; 4] = [
    Outcome::Stored,
    Outcome::Duplicate,
    Outcome::Rejected,
    Outcome::Failed,
];

impl Default for Stats {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            counts: Mutex::default(),
            requests_in_flight: metrics::gauge!("gateway_requests_in_flight"),
        }
    }
}

impl Stats {
    /// One request in `gateway_requests_in_flight` until the returned guard is dropped.
    pub fn request_in_flight(&self) -> InFlight {
        InFlight::enter(&self.requests_in_flight)
    }

    pub fn record_request(&self, endpoint: &str, status: u16, took: Duration) {
        let mut counts = self.lock();
        if let Some(of_endpoint) = counts.requests.get_mut(endpoint) {
            of_endpoint.record(endpoint, status, took);
            return;
        }
        let mut of_endpoint = EndpointCounts::new(endpoint);
        of_endpoint.record(endpoint, status, took);
        counts.requests.insert(endpoint.to_string(), of_endpoint);
    }

    pub fn record_event(&self, event_type: &'static str, topic: &'static str, outcome: Outcome) {
        let mut counts = self.lock();
        counts
            .events
            .entry((event_type, topic, outcome))
            .or_insert_with(|| {
                Count::new(metrics::counter!("gateway_events_total", "event_type" => event_type, "topic" => topic, "outcome" => outcome.as_str()))
            })
            .add();
        let second = self.started.elapsed().as_secs();
        if counts.recent.back().is_none_or(|(s, _)| *s != second) {
            counts.recent.push_back((second, [0; 4]));
        }
        while counts
            .recent
            .front()
            .is_some_and(|(s, _)| s + RECENT_SECS <= second)
        {
            counts.recent.pop_front();
        }
        if let Some((_, per_outcome)) = counts.recent.back_mut() {
            per_outcome[outcome as usize] += 1;
        }
    }

    pub fn report(&self) -> StatsReport {
        let uptime = self.started.elapsed();
        let now_second = uptime.as_secs();
        let counts = self.lock();
        let mut requests: BTreeMap<String, Tally> = BTreeMap::new();
        for (endpoint, of_endpoint) in &counts.requests {
            let tally = requests.entry(endpoint.clone()).or_default();
            for (status, count) in &of_endpoint.by_status {
                *tally.entry(status.to_string()).or_default() += count.n;
            }
        }
        let mut events = EventStats {
            by_outcome: Tally::new(),
            by_topic: BTreeMap::new(),
            by_event_type: BTreeMap::new(),
        };
        for ((event_type, topic, outcome), count) in &counts.events {
            let n = count.n;
            let outcome = outcome.as_str().to_string();
            *events.by_outcome.entry(outcome.clone()).or_default() += n;
            *events
                .by_topic
                .entry(topic.to_string())
                .or_default()
                .entry(outcome.clone())
                .or_default() += n;
            *events
                .by_event_type
                .entry(event_type.to_string())
                .or_default()
                .entry(outcome)
                .or_default() += n;
        }
        let uptime_seconds = uptime.as_secs_f64().max(1e-3);
        let mut recent = [0u64; 4];
        for (second, per_outcome) in &counts.recent {
            if second + RECENT_SECS > now_second {
                for (total, n) in recent.iter_mut().zip(per_outcome) {
                    *total += n;
                }
            }
        }
        let recent_span = uptime_seconds.min(RECENT_SECS as f64);
        let rates = Rates {
            since_start: OUTCOMES
                .iter()
                .map(|o| {
                    (
                        o.as_str().to_string(),
                        events.by_outcome.get(o.as_str()).copied().unwrap_or(0) as f64
                            / uptime_seconds,
                    )
                })
                .collect(),
            last_minute: OUTCOMES
                .iter()
                .map(|o| {
                    (
                        o.as_str().to_string(),
                        recent[*o as usize] as f64 / recent_span,
                    )
                })
                .collect(),
        };
        StatsReport {
            started_at: self.started_at.clone(),
            uptime_seconds,
            requests,
            events,
            rates,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_type_topic_and_outcome() {
        let stats = Stats::default();
        stats.record_event("click", "topic_app_events", Outcome::Stored);
        stats.record_event("click", "topic_app_events", Outcome::Duplicate);
        stats.record_event("error", "topic_app_logs", Outcome::Stored);
        stats.record_request("/events/user", 201, Duration::from_millis(3));
        stats.record_request("/events/user", 201, Duration::from_millis(4));
        stats.record_request("/events/user", 422, Duration::from_millis(1));
        let report = stats.report();
        assert_eq!(report.events.by_outcome["stored"], 2);
        assert_eq!(report.events.by_topic["topic_app_events"]["duplicate"], 1);
        assert_eq!(report.events.by_event_type["error"]["stored"], 1);
        assert_eq!(report.requests["/events/user"]["201"], 2);
        assert_eq!(report.requests["/events/user"]["422"], 1);
        assert!(report.rates.last_minute["stored"] > 0.0);
        assert_eq!(report.rates.since_start["failed"], 0.0);
    }

    #[test]
    fn a_request_dropped_mid_way_leaves_the_in_flight_gauge() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let prometheus = recorder.handle();
        let stats = metrics::with_local_recorder(&recorder, Stats::default);
        let gauge = || {
            prometheus
                .render()
                .lines()
                .find_map(|l| l.strip_prefix("gateway_requests_in_flight "))
                .map(str::to_string)
        };
        let in_flight = stats.request_in_flight();
        assert_eq!(gauge().as_deref(), Some("1"));
        // A handler future holding the guard, dropped before it finished (the client hung up).
        let handler = async move {
            let _held = in_flight;
            std::future::pending::<()>().await
        };
        drop(handler);
        assert_eq!(gauge().as_deref(), Some("0"));
    }
}
