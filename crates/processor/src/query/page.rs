//! The live page on the processor's HTTP port: `/` is a self-contained HTML page (no external
//! scripts or styles) that polls `/api/overview` every two seconds and draws the current and
//! recent windows of every job, the alerts, and each page's click heat map on a canvas.

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
};

use axum::{Json, Router, response::Html, routing::get};
use serde_json::{Value as Json_, json};

use super::{
    store::{ResultRow, Store},
    table::Cell,
};
use crate::output::ResultKind;

/// Windows per job shown on the page.
const WINDOWS_SHOWN: usize = 6;
/// Rows per table inside a window.
const TOP: usize = 10;
/// Heat maps shown (the pages with most clicks in their latest window).
const HEATMAPS_SHOWN: usize = 6;

pub fn router(store: Arc<RwLock<Store>>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/api/overview",
            get(move || {
                let store = store.clone();
                async move {
                    let store = store.read().unwrap_or_else(|p| p.into_inner());
                    Json(overview(&store))
                }
            }),
        )
}

fn window_key(r: &ResultRow) -> (i64, i64) {
    (r.window_start, r.window_end)
}

/// The newest windows of `rows`, each with its rows.
fn by_window(rows: Vec<&ResultRow>) -> Vec<((i64, i64), Vec<&ResultRow>)> {
    let mut windows: BTreeMap<std::cmp::Reverse<(i64, i64)>, Vec<&ResultRow>> = BTreeMap::new();
    for row in rows {
        windows
            .entry(std::cmp::Reverse(window_key(row)))
            .or_default()
            .push(row);
    }
    windows
        .into_iter()
        .take(WINDOWS_SHOWN)
        .map(|(k, v)| (k.0, v))
        .collect()
}

fn group<'a>(row: &'a ResultRow, name: &str) -> &'a str {
    row.group.get(name).map_or("", String::as_str)
}

fn windows_json(
    rows: Vec<&ResultRow>,
    line: impl Fn(&ResultRow) -> Json_,
    sort_key: impl Fn(&ResultRow) -> i64,
) -> Json_ {
    let windows: Vec<Json_> = by_window(rows)
        .into_iter()
        .map(|((start, end), mut rows)| {
            rows.sort_by_key(|r| std::cmp::Reverse(sort_key(r)));
            json!({
                "window_start": start,
                "window_end": end,
                "is_final": rows.iter().all(|r| r.is_final),
                "rows": rows.iter().take(TOP).map(|r| line(r)).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json_::Array(windows)
}

/// Everything the page shows, as JSON.
pub fn overview(store: &Store) -> Json_ {
    let totals: Vec<Json_> = store
        .results(&[ResultKind::AppEventTotals])
        .into_iter()
        .take(WINDOWS_SHOWN)
        .map(|r| {
            json!({
                "window_start": r.window_start, "window_end": r.window_end,
                "is_final": r.is_final, "events": r.events, "unique_users": r.unique_users,
            })
        })
        .collect();
    let app_events = windows_json(
        store.results(&[ResultKind::AppEventCount]),
        |r| {
            json!({"event_type": group(r, "event_type"), "source": group(r, "source"),
                   "events": r.events, "unique_users": r.unique_users})
        },
        |r| r.events,
    );
    let pages = windows_json(
        store.results(&[ResultKind::PageClicks]),
        |r| json!({"page_url": group(r, "page_url"), "clicks": r.events, "interactions": r.interactions}),
        |r| r.events,
    );
    let cdc = windows_json(
        store.results(&[ResultKind::CdcOperations]),
        |r| json!({"table": group(r, "table"), "operation": group(r, "operation"), "changes": r.events}),
        |r| r.events,
    );
    let logs = windows_json(
        store.results(&[ResultKind::LogErrorRate]),
        |r| json!({"service": group(r, "service"), "lines": r.events, "error_rate": r.error_rate}),
        |r| r.events,
    );
    // The latest window of each page, the pages with most clicks first.
    let mut latest: BTreeMap<&str, &ResultRow> = BTreeMap::new();
    for row in store.results(&[ResultKind::PageHeatmap]) {
        let page = group(row, "page_url");
        if latest
            .get(page)
            .is_none_or(|seen| seen.window_start < row.window_start)
        {
            latest.insert(page, row);
        }
    }
    let mut heatmaps: Vec<&ResultRow> = latest.into_values().collect();
    heatmaps.sort_by_key(|r| {
        (
            std::cmp::Reverse(r.events),
            group(r, "page_url").to_string(),
        )
    });
    let heatmaps: Vec<Json_> = heatmaps
        .into_iter()
        .take(HEATMAPS_SHOWN)
        .filter_map(|r| {
            let (cell_px, cells) = r.heatmap.as_ref()?;
            let hottest = cells
                .iter()
                .max_by_key(|(x, y, n)| (*n, std::cmp::Reverse((*y, *x))));
            Some(json!({
                "page_url": group(r, "page_url"),
                "window_start": r.window_start, "window_end": r.window_end,
                "is_final": r.is_final, "clicks": r.events, "cell_px": cell_px,
                "cells": cells.iter().map(|(x, y, n)| json!([x, y, n])).collect::<Vec<_>>(),
                "hottest": hottest.map(|(x, y, n)| json!({"x": x, "y": y, "clicks": n})),
            }))
        })
        .collect();
    let text = |cell: &Cell| match cell {
        Cell::Text(s) => Json_::String(s.clone()),
        Cell::Millis(t) => json!(t),
        _ => Json_::Null,
    };
    let alerts: Vec<Json_> = store
        .recent_alerts(20)
        .into_iter()
        .map(|row| {
            json!({"kind": text(&row[1]), "severity": text(&row[2]), "subject": text(&row[3]),
                   "message": text(&row[4]), "event_time": text(&row[5])})
        })
        .collect();
    json!({
        "generated_at": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0),
        "app_event_totals": totals,
        "app_events": app_events,
        "pages": pages,
        "heatmaps": heatmaps,
        "cdc": cdc,
        "logs": logs,
        "alerts": alerts,
    })
}

const PAGE: &str = include_str!("page.html");
