//! What one routed record does to the task's state, lane by lane: the windowed lanes add to
//! their window's aggregate, the external lane keeps the latest reading per entity, and the
//! CDC key and booking-reference lanes hand over to [`super::keys`] and [`super::bookings`].

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    output::{Alert, AlertKind, Output},
    routed::{Body, Lane, Source},
    sketch::{Distinct, hash_value},
};

use super::{Agg, ExternalLatest, StateKey, Task};

impl Task {
    pub(super) fn data(
        &mut self,
        lane: Lane,
        source: Source,
        t: i64,
        body: Body,
        out: &mut Vec<Output>,
    ) {
        match (lane, body) {
            (
                Lane::AppEventGroups | Lane::AppEventTotals,
                Body::AppEvent {
                    event_type,
                    source: origin,
                    user,
                },
            ) => {
                let Some(start) = self.window_for(lane, source, t, out) else {
                    return;
                };
                let (group, labels) = if lane == Lane::AppEventGroups {
                    (format!("{event_type}|{origin}"), vec![event_type, origin])
                } else {
                    (String::new(), Vec::new())
                };
                if let Agg::Counted { events, users, .. } =
                    self.window_agg(lane, start, &group, || Agg::Counted {
                        labels,
                        events: 0,
                        users: Distinct::default(),
                    })
                {
                    *events += 1;
                    if let Some(u) = user {
                        users.insert_hash(u);
                    }
                }
            }
            (
                Lane::PageClicks,
                Body::Click {
                    page,
                    is_click,
                    x,
                    y,
                    ..
                },
            ) => {
                let Some(start) = self.window_for(lane, source, t, out) else {
                    return;
                };
                let cell = i32::try_from(self.settings.heatmap_cell_px).unwrap_or(i32::MAX);
                if let Agg::Page {
                    clicks,
                    interactions,
                    cells,
                } = self.window_agg(lane, start, &page, || Agg::Page {
                    clicks: 0,
                    interactions: 0,
                    cells: BTreeMap::new(),
                }) {
                    *interactions += 1;
                    if is_click {
                        *clicks += 1;
                        *cells
                            .entry((x.div_euclid(cell), y.div_euclid(cell)))
                            .or_default() += 1;
                    }
                }
            }
            (
                Lane::Sessions,
                Body::Click {
                    page,
                    session,
                    is_click,
                    ..
                },
            ) => {
                let Some(start) = self.window_for(lane, source, t, out) else {
                    return;
                };
                if let Agg::Session {
                    clicks,
                    interactions,
                    pages,
                    first,
                    last,
                } = self.window_agg(lane, start, &session, || Agg::Session {
                    clicks: 0,
                    interactions: 0,
                    pages: BTreeSet::new(),
                    first: t,
                    last: t,
                }) {
                    *interactions += 1;
                    if is_click {
                        *clicks += 1;
                    }
                    pages.insert(page);
                    *first = (*first).min(t);
                    *last = (*last).max(t);
                }
            }
            (Lane::CdcTables, Body::Change(change)) => {
                let Some(start) = self.window_for(lane, source, t, out) else {
                    return;
                };
                if let Agg::Table { ops, seen } =
                    self.window_agg(lane, start, &change.table, || Agg::Table {
                        ops: BTreeMap::new(),
                        seen: BTreeSet::new(),
                    })
                {
                    if seen.insert(hash_value(&change.change_id)) {
                        *ops.entry(change.op).or_default() += 1;
                    } else {
                        self.stats.duplicates += 1;
                    }
                }
            }
            (Lane::CdcKeys, Body::ChangeWithRecord { change, record }) => {
                self.key_change(*change, record, t, out);
            }
            (Lane::BookingRefs, Body::Change(change)) => self.booking_ref(*change, t),
            (
                Lane::UserPayments,
                Body::FailedPayment {
                    user_id,
                    payment_key,
                    change_id,
                },
            ) => {
                let Some(start) = self.window_for(lane, source, t, out) else {
                    return;
                };
                let threshold = self.settings.failed_payments_threshold;
                let size = self.window_ms(lane);
                let mut reached = false;
                if let Agg::UserPayments { failed } =
                    self.window_agg(lane, start, &user_id, || Agg::UserPayments { failed: 0 })
                {
                    *failed += 1;
                    reached = *failed == threshold;
                }
                if reached {
                    self.alert(
                        out,
                        Alert {
                            kind: AlertKind::FailedPayments,
                            id_suffix: format!("{user_id}/{start}"),
                            subject: format!("user {user_id}"),
                            message: format!(
                                "{threshold} failed payments for user {user_id} within the window starting {start} ({size} ms)"
                            ),
                            event_time: t,
                            window_start: Some(start),
                            details: BTreeMap::from([
                                ("last_payment".into(), payment_key),
                                ("last_change_id".into(), change_id),
                            ]),
                        },
                    );
                }
            }
            (
                Lane::Logs,
                Body::Log {
                    service,
                    level,
                    log_id,
                },
            ) => {
                if level == "FATAL" {
                    self.alert(
                        out,
                        Alert {
                            kind: AlertKind::FatalLog,
                            id_suffix: log_id.clone(),
                            subject: service.clone(),
                            message: format!("FATAL log line from {service}"),
                            event_time: t,
                            window_start: None,
                            details: BTreeMap::from([("log_id".into(), log_id)]),
                        },
                    );
                }
                let Some(start) = self.window_for(lane, source, t, out) else {
                    return;
                };
                if let Agg::Logs { levels } = self.window_agg(lane, start, &service, || Agg::Logs {
                    levels: BTreeMap::new(),
                }) {
                    *levels.entry(level).or_default() += 1;
                }
            }
            (Lane::External, Body::External { entity, record }) => {
                let newer = self.external.get(&entity).is_none_or(|latest| {
                    (t, source.partition, source.offset)
                        > (latest.observed_at, latest.partition, latest.offset)
                });
                if newer {
                    self.external.insert(
                        entity.clone(),
                        ExternalLatest {
                            observed_at: t,
                            offset: source.offset,
                            partition: source.partition,
                        },
                    );
                    self.dirty.insert(StateKey::External(entity.clone()));
                    out.push(Output::State {
                        topic: platform::topics::EXTERNAL_STATE.name,
                        key: entity,
                        record: Some(record),
                    });
                }
            }
            (lane, body) => {
                // Stage 1 never routes these together; a record that does is from another
                // version of the processor. It is counted, not silently ignored.
                tracing::error!(
                    lane = lane.name(),
                    ?body,
                    "routed record with a body its lane does not take"
                );
                metrics::counter!("processor_misrouted_records_total").increment(1);
            }
        }
    }
}
