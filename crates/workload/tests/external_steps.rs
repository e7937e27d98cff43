//! `workload external-step`: the pipeline steps one at a time through files (what the Airflow
//! DAGs run) publish exactly the records the native scheduler publishes for the same seed and
//! virtual time; a step retried alone redoes the same work; a step without its input says which
//! step to run first.

use std::{collections::BTreeMap, path::Path, process::Command};

use serde_json::Value;
use workload::external::{DEFAULT_PIPELINES, parse_pipelines};

const BIN: &str = env!("CARGO_BIN_EXE_workload");
const SEED: &str = "20260301";
/// The native run starts one second before the window, so the slots at its first instant run
/// too (the scheduler runs slots strictly after its start).
const NATIVE_START: &str = "2026-02-28T23:59:59Z";
const WINDOW_START_MS: i64 = 1_772_323_200_000; // 2026-03-01T00:00:00Z
const HOURS: i64 = 12;

fn workload(args: &[&str]) -> String {
    let output = Command::new(BIN)
        .args(args)
        .env_remove("WORKLOAD_CONFIG")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run workload");
    assert!(
        output.status.success(),
        "workload {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

/// The events a stdout sink printed, by record id.
fn published(stdout: &str) -> BTreeMap<String, Value> {
    stdout
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| {
            let value: Value = serde_json::from_str(line).expect("a JSON line");
            assert_eq!(value["topic"], "topic_external_data", "{line}");
            let event = value["event"].clone();
            (event["record_id"].as_str().unwrap().to_string(), event)
        })
        .collect()
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339()
}

fn step(work_dir: &Path, step: &str, pipeline: &str, logical_date: &str, run_id: &str) -> String {
    workload(&[
        "external-step",
        step,
        "--pipeline",
        pipeline,
        "--logical-date",
        logical_date,
        "--run-id",
        run_id,
        "--work-dir",
        work_dir.to_str().unwrap(),
        "--seed",
        SEED,
        "--fetched-at",
        NATIVE_START,
        "--sink",
        "stdout",
    ])
}

#[test]
fn workload_steps_one_at_a_time_publish_what_the_native_scheduler_publishes() {
    // Native: 12 virtual hours of schedules, no waiting (scale 0: the clock stays at its
    // start, which is every record's fetched_at).
    let native = published(&workload(&[
        "external",
        "--sink",
        "stdout",
        "--seed",
        SEED,
        "--time-scale",
        "0",
        "--virtual-start",
        NATIVE_START,
        "--virtual-hours",
        &format!("{}", HOURS as f64 + 1.0 / 3600.0),
    ]));

    // Orchestrated: a run per DAG schedule tick, as Airflow would trigger them: hourly
    // pipelines on the hour (the step maps the hour to the pipeline's slot, e.g. :05), every
    // other pipeline at its own cron times.
    let work = tempfile::tempdir().unwrap();
    let pipelines = parse_pipelines(DEFAULT_PIPELINES).unwrap();
    let end = WINDOW_START_MS + HOURS * 3_600_000;
    let mut orchestrated = BTreeMap::new();
    let mut runs = 0;
    for pipeline in &pipelines {
        let name = &pipeline.config.name;
        let hourly = pipeline.config.schedule.split_whitespace().nth(2) == Some("*");
        let mut ticks = Vec::new();
        if hourly {
            ticks.extend((0..HOURS).map(|h| WINDOW_START_MS + h * 3_600_000));
        } else {
            let mut at = WINDOW_START_MS - 1;
            while let Some(next) = pipeline.next_run_after(at).filter(|t| *t < end) {
                ticks.push(next);
                at = next;
            }
        }
        assert!(!ticks.is_empty(), "{name} runs in the window");
        for tick in ticks {
            let logical_date = rfc3339(tick);
            let run_id = format!("scheduled__{logical_date}");
            for s in ["fetch", "transform", "validate"] {
                step(work.path(), s, name, &logical_date, &run_id);
            }
            let out = step(work.path(), "publish", name, &logical_date, &run_id);
            orchestrated.extend(published(&out));
            runs += 1;
        }
    }
    assert!(runs >= 40, "{runs} runs");
    assert!(native.len() > 100, "{} native records", native.len());
    let native_ids: Vec<_> = native.keys().collect();
    let step_ids: Vec<_> = orchestrated.keys().collect();
    assert_eq!(native_ids, step_ids, "the same record ids");
    for (id, record) in &native {
        assert_eq!(record, &orchestrated[id], "record {id}");
    }
}

#[test]
fn workload_step_retried_alone_redoes_the_same_work_and_missing_input_is_named() {
    let work = tempfile::tempdir().unwrap();
    let date = "2026-03-01T06:00:00+00:00";
    step(work.path(), "fetch", "weather", date, "r1");
    let dir = work.path().join("weather").join("r1");
    let fetched = std::fs::read_to_string(dir.join("fetched.json")).unwrap();
    // A retry of the fetch (same run, same seed and virtual time) fetches the same records.
    step(work.path(), "fetch", "weather", date, "r1");
    assert_eq!(
        fetched,
        std::fs::read_to_string(dir.join("fetched.json")).unwrap()
    );
    step(work.path(), "transform", "weather", date, "r1");
    step(work.path(), "validate", "weather", date, "r1");
    let first = published(&step(work.path(), "publish", "weather", date, "r1"));
    let again = published(&step(work.path(), "publish", "weather", date, "r1"));
    assert_eq!(first.len(), 5, "one reading per location");
    assert_eq!(first, again, "a retried publish sends the same ids");
    for record in first.values() {
        assert_eq!(record["observed_at"], "2026-03-01T06:00:00.000Z");
        let t = record["payload"]["temperature_c"].as_f64().unwrap();
        assert!((-5.0..=45.0).contains(&t), "{t}");
        assert_eq!(record["payload"]["provider"], "synthetic-weather");
    }

    let output = Command::new(BIN)
        .args([
            "external-step",
            "validate",
            "--pipeline",
            "weather",
            "--logical-date",
            date,
            "--run-id",
            "never-fetched",
            "--work-dir",
            work.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("run `transform` for this run first"),
        "{stderr}"
    );
}
