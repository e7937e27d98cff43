//! The event log: state survives restarts and crashes of the real binary.

mod common;

use std::{fs::OpenOptions, io::Write, path::Path};

use common::{RunningRegistry, record_schema};
use serde_json::{Value, json};

const LOG_FILE: &str = "registry-events.jsonl";

async fn get(registry: &RunningRegistry, path: &str) -> Value {
    reqwest::get(format!("{}{path}", registry.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn send(
    registry: &RunningRegistry,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> Value {
    let response = reqwest::Client::new()
        .request(method, format!("{}{path}", registry.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

async fn register(registry: &RunningRegistry, subject: &str, schema: &str) -> u64 {
    let path = format!("/subjects/{subject}/versions");
    let answer = send(
        registry,
        reqwest::Method::POST,
        &path,
        json!({ "schema": schema }),
    )
    .await;
    answer["id"].as_u64().unwrap()
}

fn append_to_log(data_dir: &Path, bytes: &[u8]) {
    let mut log = OpenOptions::new()
        .append(true)
        .open(data_dir.join(LOG_FILE))
        .unwrap();
    log.write_all(bytes).unwrap();
}

fn user(fields: &str) -> String {
    record_schema("User", fields)
}

#[tokio::test]
async fn everything_survives_a_kill_and_restart_and_ids_continue() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let v1 = user(r#"{"name":"id","type":"long"}"#);
    let v2 = user(r#"{"name":"id","type":"long"},{"name":"name","type":"string","default":""}"#);

    let registry = RunningRegistry::start(&data).await;
    assert_eq!(register(&registry, "users-value", &v1).await, 1);
    assert_eq!(register(&registry, "users-value", &v2).await, 2);
    assert_eq!(register(&registry, "other-value", &v1).await, 1);
    assert_eq!(register(&registry, "gone-value", r#""bytes""#).await, 3);
    send(
        &registry,
        reqwest::Method::DELETE,
        "/subjects/gone-value",
        json!(null),
    )
    .await;
    send(
        &registry,
        reqwest::Method::PUT,
        "/config",
        json!({ "compatibility": "FULL" }),
    )
    .await;
    send(
        &registry,
        reqwest::Method::PUT,
        "/config/other-value",
        json!({ "compatibility": "NONE" }),
    )
    .await;
    registry.kill();

    let registry = RunningRegistry::start(&data).await;
    assert_eq!(
        get(&registry, "/subjects").await,
        json!(["other-value", "users-value"])
    );
    assert_eq!(
        get(&registry, "/subjects/users-value/versions").await,
        json!([1, 2])
    );
    let latest = get(&registry, "/subjects/users-value/versions/latest").await;
    assert_eq!(
        (latest["id"].as_u64(), latest["version"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(
        get(&registry, "/schemas/ids/3").await,
        json!({ "schema": r#""bytes""# })
    );
    assert_eq!(
        get(&registry, "/config").await,
        json!({ "compatibilityLevel": "FULL" })
    );
    assert_eq!(
        get(&registry, "/config/other-value").await,
        json!({ "compatibilityLevel": "NONE" })
    );

    // Ids continue after the highest one, and re-registering reuses the old id.
    assert_eq!(register(&registry, "new-value", r#""string""#).await, 4);
    assert_eq!(register(&registry, "new-key", &v2).await, 2);
}

#[tokio::test]
async fn a_torn_last_line_is_ignored_and_later_writes_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let registry = RunningRegistry::start(&data).await;
    assert_eq!(register(&registry, "a-value", r#""string""#).await, 1);
    registry.kill();
    // What a crash halfway through appending an event leaves behind.
    append_to_log(
        &data,
        br#"{"event":"schema_registered","subject":"b-value","vers"#,
    );

    let registry = RunningRegistry::start(&data).await;
    assert!(
        registry.stderr().contains("unterminated line"),
        "{}",
        registry.stderr()
    );
    assert_eq!(get(&registry, "/subjects").await, json!(["a-value"]));
    assert_eq!(register(&registry, "b-value", r#""long""#).await, 2);
    registry.kill();

    let registry = RunningRegistry::start(&data).await;
    assert_eq!(
        get(&registry, "/subjects").await,
        json!(["a-value", "b-value"])
    );
}

#[tokio::test]
async fn a_corrupt_line_before_the_end_stops_startup_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let registry = RunningRegistry::start(&data).await;
    register(&registry, "a-value", r#""string""#).await;
    registry.kill();
    append_to_log(&data, b"this is not an event\n");

    let error = match RunningRegistry::try_start(&data).await {
        Ok(_) => panic!("the registry started on a corrupt log"),
        Err(error) => error,
    };
    assert!(error.contains("exited during start-up"), "{error}");
    assert!(error.contains("is corrupt at line 2"), "{error}");
}
