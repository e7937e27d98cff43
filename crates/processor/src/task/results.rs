//! The results a window yields. Apart from the task because the query layer builds the same
//! results from the changelog's copy of an open window, and both must agree to the field.

use crate::{
    output::{ResultKind, Session, WindowResult},
    routed::Lane,
};

use super::{Agg, stream_of};

/// The results of one window of `lane` for `group`: what a task emits when the window closes,
/// and what the query layer shows while it is still open (from the changelog's copy of `agg`).
pub fn window_results(
    lane: Lane,
    start: i64,
    end: i64,
    group: String,
    agg: Agg,
    heatmap_cell_px: u32,
) -> Vec<WindowResult> {
    let job = stream_of(lane).job();
    let mut results = Vec::new();
    match agg {
        Agg::Counted {
            labels,
            events,
            mut users,
        } => {
            let (kind, group) = if lane == Lane::AppEventGroups {
                let mut labels = labels.into_iter();
                (
                    ResultKind::AppEventCount,
                    vec![
                        ("event_type", labels.next().unwrap_or_default()),
                        ("source", labels.next().unwrap_or_default()),
                    ],
                )
            } else {
                (ResultKind::AppEventTotals, Vec::new())
            };
            let mut result = WindowResult::new(job, kind, start, end, group, events);
            result.unique_users = Some(users.count());
            results.push(result);
        }
        Agg::Page {
            clicks,
            interactions,
            cells,
        } => {
            let mut result = WindowResult::new(
                job,
                ResultKind::PageClicks,
                start,
                end,
                vec![("page_url", group.clone())],
                clicks,
            );
            result.interactions = Some(interactions);
            results.push(result);
            let mut heatmap = WindowResult::new(
                job,
                ResultKind::PageHeatmap,
                start,
                end,
                vec![("page_url", group)],
                clicks,
            );
            heatmap.heatmap = Some((
                heatmap_cell_px,
                cells.into_iter().map(|((x, y), n)| (x, y, n)).collect(),
            ));
            results.push(heatmap);
        }
        Agg::Session {
            clicks,
            interactions,
            pages,
            first,
            last,
        } => {
            let mut result = WindowResult::new(
                job,
                ResultKind::SessionEngagement,
                start,
                end,
                vec![("session_id", group)],
                clicks,
            );
            result.session = Some(Session {
                interactions,
                pages: u32::try_from(pages.len()).unwrap_or(u32::MAX),
                first_event: first,
                last_event: last,
            });
            results.push(result);
        }
        Agg::Table { ops, .. } => {
            for (op, count) in ops {
                results.push(WindowResult::new(
                    job,
                    ResultKind::CdcOperations,
                    start,
                    end,
                    vec![
                        ("table", group.clone()),
                        ("operation", op.as_str().to_string()),
                    ],
                    count,
                ));
            }
        }
        Agg::UserPayments { .. } => {}
        Agg::Logs { levels } => {
            let total: u64 = levels.values().sum();
            let errors = levels.get("ERROR").copied().unwrap_or(0)
                + levels.get("FATAL").copied().unwrap_or(0);
            for (level, count) in levels {
                results.push(WindowResult::new(
                    job,
                    ResultKind::LogLevelCount,
                    start,
                    end,
                    vec![("service", group.clone()), ("level", level)],
                    count,
                ));
            }
            let mut rate = WindowResult::new(
                job,
                ResultKind::LogErrorRate,
                start,
                end,
                vec![("service", group)],
                total,
            );
            rate.error_rate = Some(if total == 0 {
                0.0
            } else {
                errors as f64 / total as f64
            });
            results.push(rate);
        }
    }
    results
}
