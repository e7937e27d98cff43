//! No name or value can inject SQL: a publication, a table and a column named like an attack,
//! and key values full of quotes and backslashes, go through publication creation, the
//! snapshot, the stream and a re-snapshot (whose keyset queries quote key values as literals)
//! on a server left with `standard_conforming_strings = off`, where a backslash would otherwise
//! escape a quote. Every row arrives on every path, under its exact name, and nothing else
//! happens to the database.

use std::time::Duration;

use e2e::{
    CdcRecord, cdc_records, connector_args_with, connector_command, stack_without_connector,
    wait_for_health_status,
};
use serde_json::json;

const TABLE: &str = "Trip; DROP TABLE users; --";
const PUBLICATION: &str = "pub\"; DROP TABLE users; --";

/// Key values that break naive quoting: quotes, backslashes before quotes, dollar quotes.
const KEYS: &[&str] = &[
    "o'brien",
    "\\'; DROP TABLE users; --",
    "back\\slash\\",
    "\"quoted\"",
    "$$; DROP TABLE users; $$",
    "Hà Nội",
];

/// An escape-string literal, which reads the same whatever `standard_conforming_strings` says.
fn literal(text: &str) -> String {
    format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

async fn insert_rows(stack: &local_stack::Stack, suffix: &str) {
    for key in KEYS {
        stack
            .psql(&format!(
                "INSERT INTO \"{}\" (id, \"we\"\"ird\") VALUES ({}, 'x')",
                TABLE.replace('"', "\"\""),
                literal(&format!("{key}{suffix}")),
            ))
            .await
            .unwrap_or_else(|e| panic!("insert {key}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_names_and_keys_are_quoted_on_every_path() {
    let stack = stack_without_connector("hostile-names").await;
    stack
        .psql(&format!(
            "CREATE TABLE \"{}\" (id text PRIMARY KEY, \"we\"\"ird\" text)",
            TABLE.replace('"', "\"\"")
        ))
        .await
        .expect("create the table");
    for statement in [
        "ALTER SYSTEM SET standard_conforming_strings = off",
        "SELECT pg_reload_conf()",
    ] {
        stack.psql(statement).await.expect(statement);
    }
    insert_rows(&stack, "").await;
    let (args, health) = connector_args_with(
        &stack,
        &[
            ("--publication-name", PUBLICATION),
            ("--tables", &format!("public.{TABLE}")),
            ("--slot-name", "hostile_names"),
            // One row per re-snapshot chunk: every key becomes a keyset literal.
            ("--resnapshot-chunk-rows", "1"),
        ],
    );
    let _connector = connector_command(&stack, &args)
        .spawn()
        .expect("start the connector");
    wait_for_health_status(&health, "streaming", Duration::from_secs(60))
        .await
        .expect("the connector streams");
    insert_rows(&stack, " (streamed)").await;
    let signal = json!({"type": "execute-snapshot", "tables": [format!("public.{TABLE}")]});
    stack
        .psql(&format!(
            "SELECT pg_logical_emit_message(true, 'cdc_connector.signal', {})",
            literal(&signal.to_string())
        ))
        .await
        .expect("request a re-snapshot");

    let table = format!("public.{TABLE}");
    // Snapshot READs, stream INSERTs, then a re-snapshot READ of every row.
    let expected = 4 * KEYS.len();
    let records = cdc_records(&stack, Duration::from_secs(60), |records| {
        records.iter().filter(|r| r.table() == table).count() >= expected
    })
    .await;
    let rows: Vec<&CdcRecord> = records.iter().filter(|r| r.table() == table).collect();
    assert_eq!(rows.len(), expected);
    for key in KEYS {
        for (suffix, operation, copies) in [("", "READ", 2), (" (streamed)", "INSERT", 1)] {
            let id = format!("{key}{suffix}");
            let found = rows
                .iter()
                .filter(|r| r.operation() == operation && r.value["primary_key"]["id"] == id)
                .count();
            assert_eq!(found, copies, "{operation} of {id:?}");
        }
        let streamed_read = rows.iter().any(|r| {
            r.operation() == "READ" && r.value["primary_key"]["id"] == format!("{key} (streamed)")
        });
        assert!(streamed_read, "the re-snapshot read {key:?} (streamed)");
    }
    let row = rows.first().expect("a row");
    assert_eq!(row.value["after_values"]["we\"ird"], "x");

    // The attack strings stayed names: the publication is called exactly that, and users is there.
    let publication = stack
        .psql("SELECT pubname FROM pg_publication WHERE pubname LIKE 'pub%DROP%'")
        .await
        .unwrap();
    assert_eq!(publication.trim(), PUBLICATION);
    let users = stack
        .psql("SELECT count(*) FROM pg_tables WHERE tablename = 'users'")
        .await
        .unwrap();
    assert_eq!(users.trim(), "1", "users still exists");
    stack.shutdown().await.unwrap();
}
