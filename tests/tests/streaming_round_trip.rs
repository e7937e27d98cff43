//! INSERT, UPDATE (status change) and DELETE on users, bookings and payments, typed into SQL,
//! read back from `topic_cdc_changes` through the registry: operation, key, before/after values
//! with their types, in commit order.

use std::time::Duration;

use e2e::{CdcRecord, cdc_records, json_row, run_sql};
use local_stack::{Stack, StackOptions};
use serde_json::{Value, json};

const STATEMENTS: &[(&str, &str, &str)] = &[
    (
        "public.users",
        "INSERT",
        "INSERT INTO users (email, full_name, phone, preferences) VALUES ('linh@example.vn', 'Linh Trần', '+84 90 111 2222', '{\"lang\": \"vi\", \"newsletter\": true}')",
    ),
    (
        "public.bookings",
        "INSERT",
        "INSERT INTO bookings (user_id, destination, hotel_name, check_in_date, check_out_date, guests, total_amount) VALUES (1, 'Da Nang', 'Furama Resort', '2026-12-20', '2026-12-24', 2, 12500000.50)",
    ),
    (
        "public.payments",
        "INSERT",
        "INSERT INTO payments (booking_id, amount, method, card_last4) VALUES (1, 12500000.50, 'card', '4242')",
    ),
    (
        "public.users",
        "UPDATE",
        "UPDATE users SET loyalty_tier = 'gold' WHERE user_id = 1",
    ),
    (
        "public.bookings",
        "UPDATE",
        "UPDATE bookings SET status = 'confirmed' WHERE booking_id = 1",
    ),
    (
        "public.payments",
        "UPDATE",
        "UPDATE payments SET status = 'authorized' WHERE payment_id = 1",
    ),
    (
        "public.payments",
        "DELETE",
        "DELETE FROM payments WHERE payment_id = 1",
    ),
    (
        "public.bookings",
        "DELETE",
        "DELETE FROM bookings WHERE booking_id = 1",
    ),
    (
        "public.users",
        "DELETE",
        "DELETE FROM users WHERE user_id = 1",
    ),
];

fn find<'a>(records: &'a [CdcRecord], table: &str, operation: &str) -> &'a Value {
    &records
        .iter()
        .find(|r| r.table() == table && r.operation() == operation)
        .unwrap_or_else(|| panic!("no {operation} of {table}"))
        .value
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_on_every_table_arrive_typed_and_in_commit_order() {
    let mut options = StackOptions::for_tests("round-trip");
    options.start_connector = true;
    let stack = Stack::start(options).await.expect("start the stack");

    let mut images = Vec::new();
    for (index, (_, _, sql)) in STATEMENTS.iter().enumerate() {
        run_sql(&stack, sql).await;
        // Capture what PostgreSQL holds after the inserts and updates, to compare values.
        if index == 2 || index == 5 {
            images.push((
                json_row(&stack, "SELECT json_build_object('user_id', user_id, 'external_id', external_id, 'preferences', preferences::text, 'created_at', (extract(epoch FROM created_at) * 1000000)::bigint, 'updated_at', (extract(epoch FROM updated_at) * 1000000)::bigint) FROM users WHERE user_id = 1").await,
                json_row(&stack, "SELECT json_build_object('booking_ref', booking_ref, 'check_in_days', check_in_date - DATE '1970-01-01', 'check_out_days', check_out_date - DATE '1970-01-01', 'updated_at', (extract(epoch FROM updated_at) * 1000000)::bigint) FROM bookings WHERE booking_id = 1").await,
            ));
        }
    }

    let records = cdc_records(&stack, Duration::from_secs(60), |r| {
        r.len() >= STATEMENTS.len()
    })
    .await;
    assert_eq!(
        records.len(),
        STATEMENTS.len(),
        "exactly one record per statement"
    );

    // Commit order: sorting by source position gives the statements' order.
    let mut by_position = records.clone();
    by_position.sort_by_key(CdcRecord::position);
    let order: Vec<(&str, &str)> = by_position
        .iter()
        .map(|r| (r.table(), r.operation()))
        .collect();
    let expected: Vec<(&str, &str)> = STATEMENTS
        .iter()
        .map(|(table, op, _)| (*table, *op))
        .collect();
    assert_eq!(order, expected);
    // Per key, Kafka's order is commit order.
    for pair in by_position.windows(2) {
        if pair[0].key == pair[1].key {
            assert_eq!(
                pair[0].partition, pair[1].partition,
                "one key, one partition"
            );
            assert!(
                pair[0].offset < pair[1].offset,
                "per-key order: {:?} then {:?}",
                pair[0],
                pair[1]
            );
        }
    }
    let ids: std::collections::HashSet<&str> = records.iter().map(CdcRecord::change_id).collect();
    assert_eq!(ids.len(), records.len(), "change ids are unique");

    let (users_inserted, bookings_inserted) = &images[0];
    let (users_updated, bookings_updated) = &images[1];

    // users INSERT: every column with its type.
    let insert = find(&records, "public.users", "INSERT");
    assert_eq!(insert["primary_key"], json!({"user_id": 1}));
    assert_eq!(insert["before_values"], Value::Null);
    let after = &insert["after_values"];
    assert_eq!(after["user_id"], 1);
    assert_eq!(after["email"], "linh@example.vn");
    assert_eq!(after["full_name"], "Linh Trần");
    assert_eq!(after["phone"], "+84 90 111 2222");
    assert_eq!(after["country_code"], "VN");
    assert_eq!(after["is_active"], true);
    assert_eq!(
        after["external_id"],
        json!({"value": users_inserted["external_id"]})
    );
    assert_eq!(
        after["preferences"],
        json!({"value": users_inserted["preferences"]})
    );
    assert_eq!(
        after["created_at"],
        json!({"micros": users_inserted["created_at"]})
    );
    assert_eq!(insert["source_database"], "travel");

    // bookings INSERT: numeric exact, dates as days, smallint, enum, NULL-able text.
    let insert = find(&records, "public.bookings", "INSERT");
    let after = &insert["after_values"];
    assert_eq!(insert["primary_key"], json!({"booking_id": 1}));
    assert_eq!(after["total_amount"], json!({"value": "12500000.50"}));
    assert_eq!(
        after["check_in_date"],
        json!({"days": bookings_inserted["check_in_days"]})
    );
    assert_eq!(
        after["check_out_date"],
        json!({"days": bookings_inserted["check_out_days"]})
    );
    assert_eq!(after["guests"], 2);
    assert_eq!(after["user_id"], 1);
    assert_eq!(
        after["booking_ref"],
        json!({"value": bookings_inserted["booking_ref"]})
    );
    assert_eq!(
        after["status"],
        json!({"type_name": "public.booking_status", "label": "pending"})
    );
    assert_eq!(after["details"], json!({"value": "{}"}));

    // payments INSERT.
    let after = &find(&records, "public.payments", "INSERT")["after_values"];
    assert_eq!(after["amount"], json!({"value": "12500000.50"}));
    assert_eq!(after["card_last4"], "4242");
    assert_eq!(after["method"], "card");

    // UPDATEs: the new image; no old image under REPLICA IDENTITY DEFAULT when the key stays.
    let update = find(&records, "public.users", "UPDATE");
    assert_eq!(update["before_values"], Value::Null);
    assert_eq!(update["after_values"]["loyalty_tier"], "gold");
    assert_eq!(
        update["after_values"]["updated_at"],
        json!({"micros": users_updated["updated_at"]})
    );
    let update = find(&records, "public.bookings", "UPDATE");
    assert_eq!(
        update["after_values"]["status"],
        json!({"type_name": "public.booking_status", "label": "confirmed"})
    );
    assert_eq!(
        update["after_values"]["updated_at"],
        json!({"micros": bookings_updated["updated_at"]})
    );
    assert_eq!(
        find(&records, "public.payments", "UPDATE")["after_values"]["status"],
        json!({"type_name": "public.payment_status", "label": "authorized"})
    );

    // DELETEs: the key, the other columns explicitly unavailable (never a fake NULL).
    for (table, key) in [
        ("public.users", "user_id"),
        ("public.bookings", "booking_id"),
        ("public.payments", "payment_id"),
    ] {
        let delete = find(&records, table, "DELETE");
        assert_eq!(delete["after_values"], Value::Null);
        assert_eq!(delete["primary_key"], json!({ key: 1 }));
        let before = delete["before_values"].as_object().expect("an old image");
        assert_eq!(before[key], 1);
        for (column, value) in before {
            if column != key {
                assert_eq!(
                    value,
                    &json!({"reason": "NOT_IN_REPLICA_IDENTITY"}),
                    "{table}.{column}"
                );
            }
        }
    }
    let delete = records
        .iter()
        .find(|r| r.table() == "public.bookings" && r.operation() == "DELETE")
        .unwrap();
    assert_eq!(delete.key, "public.bookings/{\"booking_id\":1}");

    // Everything acknowledged is confirmed to PostgreSQL: the slot catches up with the WAL
    // written by the last statement.
    e2e::wait_until_slot_confirms_current_wal(&stack, "cdc_connector", Duration::from_secs(30))
        .await
        .expect("the slot's confirmed position follows Kafka's acknowledgements");

    let metrics = e2e::metrics_text(&stack.connector_url()).await.unwrap();
    assert!(
        metrics.contains("cdc_events_total{table=\"public.bookings\",operation=\"UPDATE\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("cdc_acked_lsn"), "{metrics}");
    stack.shutdown().await.unwrap();
}
