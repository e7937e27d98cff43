//! Filtering and privacy against a real PostgreSQL and broker: the connector runs with table and
//! column include/exclude lists, masking and salted hashing, and what reaches
//! `topic_cdc_changes` is compared with what was written. The expected hashes are computed by
//! PostgreSQL's own `sha256()`, independently of the connector's implementation.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::File,
    process::Stdio,
    time::Duration,
};

use e2e::{
    CdcRecord, connector_args_with, read_cdc_until, run_sql, stack_without_connector,
    wait_for_health_status, wait_until_slot_confirms_current_wal,
};
use local_stack::Stack;
use serde_json::{Value, json};

const SALT: &str = "e2e-salt-3f9a1c7d";

const STATEMENTS: &[&str] = &[
    "INSERT INTO users (email, full_name, phone, preferences) VALUES ('linh@example.vn', 'Linh Trần', '+84 90 111 2222', '{\"lang\": \"vi\"}')",
    "INSERT INTO users (email, full_name) VALUES ('an@example.vn', 'An Nguyễn')",
    "INSERT INTO bookings (user_id, destination, check_in_date, check_out_date, total_amount) VALUES (1, 'Hue', '2026-12-20', '2026-12-22', 3000000)",
    "INSERT INTO payments (booking_id, amount, method, card_last4) VALUES (1, 3000000, 'card', '4242')",
    "UPDATE bookings SET status = 'confirmed' WHERE booking_id = 1",
    "UPDATE payments SET status = 'authorized' WHERE payment_id = 1",
    "DELETE FROM payments WHERE payment_id = 1",
    "DELETE FROM users WHERE user_id = 2",
];

/// The records the statements above must give: none for bookings.
const EXPECTED_RECORDS: usize = 6;

/// What PostgreSQL computes for the connector's hash: hex SHA-256 of the salt followed by the
/// value's text.
async fn expected_hash(stack: &Stack, value_text: &str) -> String {
    let sql =
        format!("SELECT encode(sha256(convert_to('{SALT}' || '{value_text}', 'UTF8')), 'hex')");
    let hash = stack
        .psql(&sql)
        .await
        .expect("sha256 in PostgreSQL")
        .trim()
        .to_string();
    assert_eq!(hash.len(), 64, "{hash}");
    hash
}

/// The changes the connector had Kafka acknowledge, per table, from its `cdc_events_total`
/// metric (counted on each delivery report, before the position after it may be confirmed).
async fn acknowledged_per_table(connector_url: &str) -> BTreeMap<String, u64> {
    let metrics = e2e::metrics_text(connector_url)
        .await
        .expect("the connector's metrics");
    let mut per_table = BTreeMap::new();
    for line in metrics
        .lines()
        .filter(|line| line.starts_with("cdc_events_total{"))
    {
        let table = line
            .split("table=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a table label");
        let count: u64 = line
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("a count");
        *per_table.entry(table.to_string()).or_default() += count;
    }
    per_table
}

fn find<'a>(records: &'a [CdcRecord], table: &str, operation: &str, key: &Value) -> &'a CdcRecord {
    records
        .iter()
        .find(|r| {
            r.table() == table && r.operation() == operation && &r.value["primary_key"] == key
        })
        .unwrap_or_else(|| panic!("no {operation} of {table} with key {key}: {records:#?}"))
}

fn column_names(values: &Value) -> BTreeSet<&str> {
    values
        .as_object()
        .expect("a column map")
        .keys()
        .map(String::as_str)
        .collect()
}

fn names(list: &[&'static str]) -> BTreeSet<&'static str> {
    list.iter().copied().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn filtered_masked_and_hashed_changes_reach_kafka() {
    let stack = stack_without_connector("filtering").await;
    let (args, health) = connector_args_with(
        &stack,
        &[
            ("--table-include", "public.*"),
            ("--table-exclude", "public.bookings"),
            (
                "--column-include",
                "public.users.*,public.payments.amount,public.payments.card_last4,public.payments.status",
            ),
            // A key column is kept even when excluded: it forms the Kafka key.
            ("--column-exclude", "*.preferences,public.users.user_id"),
            (
                "--mask-columns",
                "public.users.phone,public.payments.card_last4",
            ),
            ("--mask-keep-last", "4"),
            ("--hash-columns", "*.email,public.payments.payment_id"),
            ("--hash-salt", SALT),
        ],
    );
    let log_path = stack.root().join("filtering-connector.log");
    let log = File::create(&log_path).unwrap();
    let mut connector = tokio::process::Command::new(stack.connector_binary())
        .args(&args)
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("start the connector");
    wait_for_health_status(&health, "streaming", Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", local_stack::log_tail(&log_path, 40)));

    for sql in STATEMENTS {
        run_sql(&stack, sql).await;
    }
    // The connector confirms a position only once Kafka acknowledged every record before it, so
    // afterwards the topic holds every record the statements gave.
    wait_until_slot_confirms_current_wal(&stack, "cdc_connector", Duration::from_secs(60))
        .await
        .unwrap();
    // Every record the connector produced was acknowledged by now: the excluded table's changes
    // were never sent, and exactly the others were.
    let acknowledged = acknowledged_per_table(&health).await;
    assert_eq!(
        acknowledged,
        BTreeMap::from([
            ("public.payments".to_string(), 3),
            ("public.users".to_string(), 3)
        ]),
        "the bookings changes are skipped"
    );
    let records = read_cdc_until(
        &stack.kafka_brokers(),
        &stack.registry_url(),
        Duration::from_secs(60),
        |r| r.len() >= EXPECTED_RECORDS,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", local_stack::log_tail(&log_path, 40)));
    assert!(
        records.iter().all(|r| r.table() != "public.bookings"),
        "{records:#?}"
    );

    // users: all columns but the excluded preferences; the key although excluded; phone masked
    // to its last 4 characters; email hashed with the salt.
    let linh = find(&records, "public.users", "INSERT", &json!({"user_id": 1}));
    let after = &linh.value["after_values"];
    assert_eq!(
        column_names(after),
        names(&[
            "user_id",
            "external_id",
            "email",
            "full_name",
            "phone",
            "country_code",
            "loyalty_tier",
            "is_active",
            "created_at",
            "updated_at"
        ])
    );
    assert_eq!(after["user_id"], 1);
    assert_eq!(
        after["email"],
        expected_hash(&stack, "linh@example.vn").await
    );
    assert_eq!(after["phone"], "****2222");
    assert_eq!(after["full_name"], "Linh Trần", "not masked");
    assert_eq!(linh.key, "public.users/{\"user_id\":1}");

    // NULL stays NULL when masked; equal inputs hash equally, different ones differently.
    let an = find(&records, "public.users", "INSERT", &json!({"user_id": 2}));
    assert_eq!(an.value["after_values"]["phone"], Value::Null);
    assert_eq!(
        an.value["after_values"]["email"],
        expected_hash(&stack, "an@example.vn").await
    );
    assert_ne!(an.value["after_values"]["email"], after["email"]);

    // A DELETE's old row: the key, and the unsent columns still unavailable (not masked).
    let deleted = find(&records, "public.users", "DELETE", &json!({"user_id": 2}));
    let before = &deleted.value["before_values"];
    assert!(!column_names(before).contains("preferences"), "{before}");
    assert_eq!(before["user_id"], 2);
    assert_eq!(
        before["phone"],
        json!({"reason": "NOT_IN_REPLICA_IDENTITY"})
    );
    assert_eq!(
        before["email"],
        json!({"reason": "NOT_IN_REPLICA_IDENTITY"})
    );

    // payments: only the included columns plus the key, which is hashed everywhere and so stays
    // the same Kafka key for every change of the row; card_last4 fully masked (4 characters
    // are not more than the 4 kept).
    let payment_key = json!({"payment_id": expected_hash(&stack, "1").await});
    let insert = find(&records, "public.payments", "INSERT", &payment_key);
    let after = &insert.value["after_values"];
    assert_eq!(
        column_names(after),
        names(&["payment_id", "amount", "card_last4", "status"])
    );
    assert_eq!(after["payment_id"], payment_key["payment_id"]);
    assert_eq!(after["card_last4"], "****");
    assert_eq!(after["amount"], json!({"value": "3000000.00"}));
    let update = find(&records, "public.payments", "UPDATE", &payment_key);
    assert_eq!(
        update.value["after_values"]["status"],
        json!({"type_name": "public.payment_status", "label": "authorized"})
    );
    let delete = find(&records, "public.payments", "DELETE", &payment_key);
    assert_eq!(
        delete.value["before_values"]["payment_id"],
        payment_key["payment_id"]
    );
    assert_eq!(
        column_names(&delete.value["before_values"]),
        names(&["payment_id", "amount", "card_last4", "status"])
    );
    assert!(
        insert.key.starts_with("public.payments/") && !insert.key.contains("\"payment_id\":1"),
        "{}",
        insert.key
    );
    assert_eq!(update.key, insert.key);
    assert_eq!(delete.key, insert.key);

    connector.kill().await.unwrap();
    let log_text = std::fs::read_to_string(&log_path).unwrap();
    assert!(!log_text.contains(SALT), "the salt was logged:\n{log_text}");
    assert!(!log_text.contains("panicked"), "{log_text}");

    // Masking a primary-key column would give different rows one Kafka key: the first change of
    // that table stops the connector with the reason, before it is published or confirmed.
    // (no_data: the existing rows would otherwise stop it already in the snapshot).
    let (args, health) = connector_args_with(
        &stack,
        &[
            ("--slot-name", "masked_key"),
            ("--mask-columns", "public.users.user_id"),
            ("--snapshot-mode", "no_data"),
        ],
    );
    let masked_key = e2e::connector_command(&stack, &args)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the connector");
    wait_for_health_status(&health, "streaming", Duration::from_secs(60))
        .await
        .unwrap();
    stack
        .psql("INSERT INTO users (email, full_name) VALUES ('minh@example.vn', 'Minh Lê')")
        .await
        .unwrap();
    let after_insert = stack.psql("SELECT pg_current_wal_lsn()").await.unwrap();
    let output = tokio::time::timeout(Duration::from_secs(60), masked_key.wait_with_output())
        .await
        .expect("the connector stops on a masked key column")
        .expect("run the connector");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("public.users.user_id is part of the primary key"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let unconfirmed = format!(
        "SELECT confirmed_flush_lsn < '{}' FROM pg_replication_slots WHERE slot_name = 'masked_key'",
        after_insert.trim()
    );
    assert_eq!(
        stack.psql(&unconfirmed).await.unwrap().trim(),
        "t",
        "the refused change was not confirmed"
    );

    // With the option fixed, the refused change is published from the slot: nothing was lost.
    let (args, _) = connector_args_with(
        &stack,
        &[
            ("--slot-name", "masked_key"),
            ("--snapshot-mode", "when_needed"),
        ],
    );
    let mut fixed = e2e::connector_command(&stack, &args)
        .spawn()
        .expect("start the connector");
    let minh_key = json!({"user_id": 3});
    let records = read_cdc_until(
        &stack.kafka_brokers(),
        &stack.registry_url(),
        Duration::from_secs(60),
        |r| {
            r.iter()
                .any(|r| r.table() == "public.users" && r.value["primary_key"] == minh_key)
        },
    )
    .await
    .unwrap();
    let minh = find(&records, "public.users", "INSERT", &minh_key);
    assert_eq!(minh.value["after_values"]["email"], "minh@example.vn");
    fixed.kill().await.unwrap();
    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_filter_options_stop_the_connector_before_it_connects() {
    let binary = local_stack::test_bin_dir().join("cdc-connector");
    // Nothing listens on these ports: the connector must stop on the options alone.
    let unreachable = [
        "--pg-url",
        "postgres://postgres@127.0.0.1:9/travel",
        "--kafka-brokers",
        "127.0.0.1:9",
        "--listen",
        "127.0.0.1:0",
    ];
    let cases: [(&[&str], &str); 4] = [
        (
            &["--hash-columns", "*.email"],
            "--hash-columns needs a salt",
        ),
        (
            &["--hash-columns", "*.email", "--hash-salt", ""],
            "--hash-columns needs a salt",
        ),
        (
            &["--column-exclude", "users.email"],
            "expected schema.table.column",
        ),
        (
            &[
                "--mask-columns",
                "*.email",
                "--hash-columns",
                "*.email",
                "--hash-salt",
                "s",
            ],
            "in both --mask-columns and --hash-columns",
        ),
    ];
    for (options, message) in cases {
        let output = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::process::Command::new(&binary)
                .args(unreachable)
                .args(options)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("{options:?}: the connector did not stop"))
        .expect("run the connector");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{options:?}: {stderr}");
        assert!(stderr.contains(message), "{options:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
