use apache_avro::types::Value;

use super::*;
use crate::output::{Session, WindowResult};

fn heatmap_result() -> WindowResult {
    let mut r = WindowResult::new(
        "clickstream",
        ResultKind::PageHeatmap,
        600_000,
        1_200_000,
        vec![("page_url", "/search".into())],
        7,
    );
    r.heatmap = Some((50, vec![(1, 2, 5), (3, 0, 2)]));
    r
}

#[test]
fn a_closed_result_read_back_from_avro_equals_the_open_one_but_final() {
    let mut session = WindowResult::new(
        "clickstream",
        ResultKind::SessionEngagement,
        0,
        600_000,
        vec![("session_id", "s1".into())],
        4,
    );
    session.session = Some(Session {
        interactions: 6,
        pages: 1,
        first_event: 10,
        last_event: 110,
    });
    let mut counts = WindowResult::new(
        "app_events",
        ResultKind::AppEventCount,
        0,
        300_000,
        vec![("event_type", "search".into()), ("source", "WEB".into())],
        9,
    );
    counts.unique_users = Some((3, true));
    for result in [heatmap_result(), session, counts] {
        let closed = ResultRow::closed(&result.to_avro()).unwrap();
        let mut open = ResultRow::open(result);
        assert!(!open.is_final);
        open.is_final = true;
        assert_eq!(closed, open);
    }
}

#[test]
fn a_heat_map_has_one_row_per_cell_and_final_results_replace_open_ones() {
    let mut store = Store::default();
    store.put_open(
        0,
        b"k".to_vec(),
        "k",
        vec![ResultRow::open(heatmap_result())],
    );
    let rows = store.rows(TableId::HeatmapCells).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0][3], Cell::Int(50), "cell_px");
    assert_eq!(rows[0][7], Cell::Bool(false), "open");

    store.put_closed(ResultRow::closed(&heatmap_result().to_avro()).unwrap());
    let rows = store.rows(TableId::HeatmapCells).unwrap();
    assert_eq!(rows.len(), 2, "the open copy is not shown twice");
    assert!(rows.iter().all(|r| r[7] == Cell::Bool(true)));
    // The page-clicks table is not fed by heat-map results.
    assert!(store.rows(TableId::PageClicks).unwrap().is_empty());
    // The changelog entry removed: the window is closed and stays shown as final.
    store.put_open(0, b"k".to_vec(), "k", Vec::new());
    assert_eq!(store.rows(TableId::HeatmapCells).unwrap().len(), 2);
}

#[test]
fn eviction_drops_old_windows_then_the_oldest_beyond_the_row_limit() {
    let mut store = Store::default();
    for start in [0, 300_000, 600_000, 900_000] {
        let r = WindowResult::new(
            "cdc",
            ResultKind::CdcOperations,
            start,
            start + 300_000,
            vec![
                ("table", "public.users".into()),
                ("operation", "INSERT".into()),
            ],
            1,
        );
        store.put_closed(ResultRow::closed(&r.to_avro()).unwrap());
    }
    store.evict(
        1_200_000,
        Limits {
            retention_ms: 700_000,
            max_rows: 10,
        },
    );
    assert_eq!(store.rows(TableId::CdcOperations).unwrap().len(), 3);
    store.evict(
        1_200_000,
        Limits {
            retention_ms: 700_000,
            max_rows: 2,
        },
    );
    let rows = store.rows(TableId::CdcOperations).unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r[0] != Cell::Millis(300_000)));
}

fn change(after: Vec<(&str, Value)>) -> Value {
    Value::Record(vec![(
        "after_values".into(),
        Value::Union(
            1,
            Box::new(Value::Map(
                after.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            )),
        ),
    )])
}

fn one(name: &str, v: Value) -> Value {
    Value::Record(vec![(name.to_string(), v)])
}

#[test]
fn state_rows_are_typed_and_unchanged_toast_keeps_the_previous_value() {
    let bookings = def(TableId::Bookings);
    let first = change(vec![
        ("booking_id", Value::Long(7)),
        ("user_id", Value::Long(3)),
        ("total_amount", one("value", Value::String("1250.5".into()))),
        ("check_in_date", one("days", Value::Date(20_000))),
        (
            "created_at",
            one("micros", Value::TimestampMicros(1_700_000_000_000_000)),
        ),
        ("details", one("value", Value::String("{\"a\":1}".into()))),
        (
            "status",
            Value::Record(vec![
                (
                    "type_name".into(),
                    Value::String("public.booking_status".into()),
                ),
                ("label".into(), Value::String("pending".into())),
            ]),
        ),
        ("hotel_name", Value::Null),
    ]);
    let row = state_row(bookings, &first, None).unwrap();
    let col = |name: &str| bookings.columns.iter().position(|c| c.0 == name).unwrap();
    assert_eq!(row[col("booking_id")], Cell::Int(7));
    assert_eq!(row[col("total_amount")], Cell::Decimal(125_050));
    assert_eq!(row[col("check_in_date")], Cell::Days(20_000));
    assert_eq!(row[col("created_at")], Cell::Micros(1_700_000_000_000_000));
    assert_eq!(row[col("status")], Cell::Text("pending".into()));
    assert_eq!(row[col("hotel_name")], Cell::Null);
    assert!(matches!(&row[col("row_json")], Cell::Text(j) if j.contains("booking_id")));

    let toast = change(vec![
        ("booking_id", Value::Long(7)),
        (
            "details",
            Value::Record(vec![(
                "reason".into(),
                Value::Enum(0, "UNCHANGED_TOAST".into()),
            )]),
        ),
    ]);
    let next = state_row(bookings, &toast, Some(&row)).unwrap();
    assert_eq!(next[col("details")], Cell::Text("{\"a\":1}".into()));

    let bad = change(vec![("guests", Value::String("two".into()))]);
    let error = state_row(bookings, &bad, None).unwrap_err();
    assert!(error.contains("column guests"), "{error}");
}

#[test]
fn an_unreadable_record_fails_its_table_until_a_record_with_its_key_replaces_it() {
    let mut store = Store::default();
    store.break_table(
        TableId::Users,
        "k".into(),
        "topic_user_state[0]@5: bad".into(),
    );
    store.put_state(TableId::Users, "other".into(), Some(vec![Cell::Int(2)]));
    let error = store.rows(TableId::Users).unwrap_err();
    assert!(
        error.contains("users") && error.contains("topic_user_state[0]@5"),
        "{error}"
    );
    store.put_state(TableId::Users, "k".into(), Some(vec![Cell::Int(1)]));
    assert_eq!(store.rows(TableId::Users).unwrap().len(), 2);
}
