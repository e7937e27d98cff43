//! The external-data DAGs on a real Airflow (2.10.5, installed by scripts/install-deps.sh into
//! .stack/airflow-venv) against the local stack: `airflow dags test` of each DAG, each with its
//! own AIRFLOW_HOME (sqlite), runs `workload external-step` task by task; every run's records
//! are then read back from `topic_external_data` through the registry and checked against the
//! pipeline's validate rules. A DAG whose source fails once shows the failed fetch (cause in the
//! task log) and retries it to success; one whose source stays down ends with the fetch failed
//! after its retries and nothing published.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    net::TcpListener,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use e2e::{CdcRecord, read_topic_until};
use local_stack::{Stack, StackOptions};
use serde_json::Value;
use workload::external::{DEFAULT_PIPELINES, PipelineConfig, parse_pipelines};

const SEED: &str = "4242";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// The `airflow` command: AIRFLOW_BIN, else the venv scripts/install-deps.sh creates.
fn airflow_bin() -> PathBuf {
    let path = std::env::var_os("AIRFLOW_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".stack/airflow-venv/bin/airflow"));
    assert!(
        path.exists(),
        "Airflow is not installed ({} is missing): run scripts/install-deps.sh, which installs \
         apache-airflow 2.10.5 with airflow/constraints-2.10.5.txt into .stack/airflow-venv \
         (or set AIRFLOW_BIN)",
        path.display()
    );
    path
}

struct Airflow {
    bin: PathBuf,
    home: PathBuf,
    env: Vec<(String, String)>,
}

struct Outcome {
    success: bool,
    output: String,
}

impl Airflow {
    fn new(dir: &Path, stack: &Stack, workload_bin: &Path, pipelines: Option<&Path>) -> Airflow {
        let home = dir.join("airflow-home");
        std::fs::create_dir_all(&home).unwrap();
        let mut env = vec![
            ("AIRFLOW_HOME", home.display().to_string()),
            ("AIRFLOW__CORE__LOAD_EXAMPLES", "False".into()),
            (
                "AIRFLOW__CORE__DAGS_FOLDER",
                repo().join("airflow/dags").display().to_string(),
            ),
            ("AIRFLOW__LOGGING__COLORED_CONSOLE_LOG", "False".into()),
            ("WORKLOAD_BIN", workload_bin.display().to_string()),
            ("WORKLOAD_WORK_DIR", dir.join("work").display().to_string()),
            ("WORKLOAD_SEED", SEED.into()),
            ("WORKLOAD_SINK", "kafka".into()),
            ("WORKLOAD_KAFKA_BROKERS", stack.kafka_brokers()),
            ("WORKLOAD_SCHEMA_REGISTRY_URL", stack.registry_url()),
            ("NO_COLOR", "1".into()),
        ];
        if let Some(path) = pipelines {
            env.push(("WORKLOAD_PIPELINES", path.display().to_string()));
        }
        Airflow {
            bin: airflow_bin(),
            home,
            env: env.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        }
    }

    async fn run(&self, args: &[&str]) -> Outcome {
        let mut command = tokio::process::Command::new(&self.bin);
        command
            .args(args)
            .env_remove("WORKLOAD_CONFIG")
            .env_remove("WORKLOAD_PIPELINES")
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .kill_on_drop(true);
        let output = tokio::time::timeout(Duration::from_secs(300), command.output())
            .await
            .unwrap_or_else(|_| panic!("airflow {args:?} took over 5 minutes"))
            .unwrap_or_else(|e| panic!("running {}: {e}", self.bin.display()));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let log = self
            .home
            .join(format!("{}.log", args.join("_").replace(['/', ':'], "_")));
        std::fs::write(&log, &text).ok();
        Outcome {
            success: output.status.success(),
            output: text,
        }
    }

    async fn dags_test(&self, dag: &str, date: &str) -> Outcome {
        let migrate = self.run(&["db", "migrate"]).await;
        assert!(
            migrate.success,
            "airflow db migrate failed:\n{}",
            migrate.output
        );
        self.run(&["dags", "test", dag, date]).await
    }

    /// (state, try_number) of every task of the DAG's runs, from the metadata database.
    fn task_states(&self, dag: &str) -> BTreeMap<String, (String, i64)> {
        let python = self.bin.with_file_name("python");
        let output = std::process::Command::new(python)
            .args([
                "-c",
                "import json, sqlite3, sys\n\
                 db = sqlite3.connect(sys.argv[1])\n\
                 rows = db.execute('select task_id, state, try_number from task_instance where dag_id = ?', (sys.argv[2],))\n\
                 print(json.dumps({t: [s, n] for t, s, n in rows}))",
                self.home.join("airflow.db").to_str().unwrap(),
                dag,
            ])
            .output()
            .expect("python of the Airflow venv");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let map: BTreeMap<String, (String, i64)> =
            serde_json::from_slice(&output.stdout).expect("task states");
        map
    }
}

/// Records of `topic_external_data` whose observed_at falls at `slot_ms`, by pipeline.
fn of_slot<'a>(records: &'a [CdcRecord], pipeline: &str, slot_ms: i64) -> Vec<&'a Value> {
    records
        .iter()
        .map(|r| &r.value)
        .filter(|v| v["pipeline"] == pipeline && v["observed_at"].as_i64() == Some(slot_ms))
        .collect()
}

/// Milliseconds of `2026-03-DDTHH:MM:00Z` (UTC).
fn ms(text: &str) -> i64 {
    const MARCH_1_2026: i64 = 1_772_323_200_000;
    let number = |range: std::ops::Range<usize>| text[range].parse::<i64>().expect(text);
    assert!(
        text.starts_with("2026-03-") && text.ends_with(":00Z"),
        "{text}"
    );
    MARCH_1_2026
        + (number(8..10) - 1) * 86_400_000
        + number(11..13) * 3_600_000
        + number(14..16) * 60_000
}

/// Required fields present, every ranged value inside its range (the synthetic sources stay
/// inside the plausible ranges, so no quality warning either).
fn assert_valid(config: &PipelineConfig, record: &Value) {
    let payload: Value =
        serde_json::from_str(record["payload_json"].as_str().expect("payload_json")).unwrap();
    for field in &config.validate.required {
        assert!(
            payload.get(field).is_some_and(|v| !v.is_null()),
            "{}: `{field}` missing in {payload}",
            config.name
        );
    }
    for (field, [low, high]) in &config.validate.ranges {
        if let Some(value) = payload.get(field) {
            let number = value.as_f64().expect("a number");
            assert!(
                (*low..=*high).contains(&number),
                "{}: {field}={number} outside [{low}, {high}]",
                config.name
            );
        }
    }
    assert_eq!(record["quality_warnings"], Value::Array(vec![]), "{record}");
    for (key, value) in &config.enrich {
        assert_eq!(&payload[key], value, "{}: enrichment {key}", config.name);
    }
    if let Some(location) = record["location"].as_str() {
        assert!(config.locations.iter().any(|l| l == location), "{location}");
    }
}

fn expected_count(config: &PipelineConfig) -> usize {
    config.locations.len().max(1) * config.records_per_location.max(1) as usize
}

/// An HTTP source on this machine: `/weather/...` answers 503 to its first request, then a
/// reading; `/down/...` always answers 503.
fn serve_sources() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let weather_calls = Arc::new(AtomicUsize::new(0));
    let calls = weather_calls.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).ok();
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let (status, body) = if request_line.contains("/weather/") {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    ("503 Service Unavailable", "warming up".to_string())
                } else {
                    (
                        "200 OK",
                        r#"{"temperature_c": 27.5, "humidity_pct": 81, "condition": "rain"}"#
                            .to_string(),
                    )
                }
            } else {
                ("503 Service Unavailable", "maintenance".to_string())
            };
            write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .ok();
        }
    });
    (base, weather_calls)
}

#[tokio::test(flavor = "multi_thread")]
async fn airflow_dags_publish_validated_records_and_retry_a_failed_fetch() {
    airflow_bin();
    let mut options = StackOptions::for_tests("airflow-dags");
    options.start_connector = false;
    let workload_bin = options.bin_dir.join("workload");
    assert!(
        workload_bin.exists(),
        "{} is missing: cargo build -p workload first",
        workload_bin.display()
    );
    let stack = Stack::start(options).await.expect("start the stack");
    let pipelines: BTreeMap<String, PipelineConfig> = parse_pipelines(DEFAULT_PIPELINES)
        .unwrap()
        .into_iter()
        .map(|p| (p.config.name.clone(), p.config))
        .collect();
    let dir = tempfile::tempdir().unwrap();

    // The shipped DAGs, each with its own AIRFLOW_HOME, at the same time.
    let runs = [
        (
            "weather_data_ingestion",
            "2026-03-01T06:00:00+00:00",
            vec![("weather", "2026-03-01T06:00:00Z")],
        ),
        (
            "maps_data_ingestion",
            "2026-03-01T02:00:00+00:00",
            vec![("maps", "2026-03-01T02:00:00Z")],
        ),
        (
            "config_driven_pipeline",
            "2026-03-01T10:00:00+00:00",
            vec![
                ("social-media", "2026-03-01T10:05:00Z"),
                ("market-data", "2026-03-01T10:15:00Z"),
                ("news", "2026-03-01T10:30:00Z"),
            ],
        ),
    ];
    let mut homes = Vec::new();
    for (dag, _, _) in &runs {
        let home = dir.path().join(dag);
        homes.push(Airflow::new(&home, &stack, &workload_bin, None));
    }
    let (weather, maps, config_driven) = tokio::join!(
        homes[0].dags_test(runs[0].0, runs[0].1),
        homes[1].dags_test(runs[1].0, runs[1].1),
        homes[2].dags_test(runs[2].0, runs[2].1),
    );
    let outcomes = [weather, maps, config_driven];
    for (((dag, date, _), outcome), home) in runs.iter().zip(&outcomes).zip(&homes) {
        assert!(
            outcome.success,
            "airflow dags test {dag} {date} failed (logs in {}):\n{}",
            home.home.display(),
            outcome.output
        );
        let states = home.task_states(dag);
        assert!(!states.is_empty(), "{dag}: no task instances");
        for (task, (state, _)) in &states {
            assert_eq!(state, "success", "{dag}.{task}: {states:?}");
        }
        for line in outcome.output.lines().filter(|l| {
            (l.contains(" records") && l.contains(" -> ") && !l.contains("INFO workload"))
                || l.contains("Marking task as")
        }) {
            eprintln!("{dag}: {line}");
        }
    }

    // The failing source: weather fails its first fetch and is retried; maps stays down.
    let (base, weather_calls) = serve_sources();
    let failing = DEFAULT_PIPELINES
        .lines()
        .map(|line| {
            if line.starts_with("fetch = ") && line.contains("temperature_c") {
                format!(
                    "fetch = {{ kind = \"http\", url = \"{base}/weather/{{location}}\" }}\nmax_attempts = 3\nretry_backoff_ms = 1000"
                )
            } else if line.starts_with("fetch = ") && line.contains("poi_type") {
                format!(
                    "fetch = {{ kind = \"http\", url = \"{base}/down/{{location}}\" }}\nmax_attempts = 2\nretry_backoff_ms = 1000"
                )
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let failing_path = dir.path().join("failing-pipelines.toml");
    std::fs::write(&failing_path, &failing).unwrap();
    let failing_config: BTreeMap<String, PipelineConfig> = parse_pipelines(&failing)
        .expect("the failing pipelines file parses")
        .into_iter()
        .map(|p| (p.config.name.clone(), p.config))
        .collect();
    let flaky_home = Airflow::new(
        &dir.path().join("flaky"),
        &stack,
        &workload_bin,
        Some(&failing_path),
    );
    let down_home = Airflow::new(
        &dir.path().join("down"),
        &stack,
        &workload_bin,
        Some(&failing_path),
    );
    let (flaky, down) = tokio::join!(
        flaky_home.dags_test("weather_data_ingestion", "2026-03-02T00:00:00+00:00"),
        down_home.dags_test("maps_data_ingestion", "2026-03-02T02:00:00+00:00"),
    );

    assert!(
        flaky.success,
        "the flaky weather run succeeds after a retry:\n{}",
        flaky.output
    );
    let retry_marker = "Marking task as UP_FOR_RETRY. dag_id=weather_data_ingestion, task_id=fetch";
    assert!(
        flaky.output.contains(retry_marker),
        "the failed fetch is marked for retry:\n{}",
        flaky.output
    );
    let cause = flaky
        .output
        .lines()
        .find(|l| l.contains("fetch failed:") && l.contains("HTTP 503"))
        .unwrap_or_else(|| panic!("the cause is in the task log:\n{}", flaky.output));
    eprintln!("flaky weather: {cause}");
    let retry_at = flaky.output.find(retry_marker).unwrap();
    assert!(
        flaky.output[retry_at..]
            .contains("Marking task as SUCCESS. dag_id=weather_data_ingestion, task_id=fetch"),
        "the retry succeeds:\n{}",
        flaky.output
    );
    let states = flaky_home.task_states("weather_data_ingestion");
    assert_eq!(states["fetch"], ("success".to_string(), 2), "{states:?}");
    assert_eq!(states["publish"].0, "success", "{states:?}");
    assert_eq!(weather_calls.load(Ordering::SeqCst), 1 + 5);

    assert!(
        !down.success,
        "a run whose source stays down fails:\n{}",
        down.output
    );
    let states = down_home.task_states("maps_data_ingestion");
    assert_eq!(states["fetch"], ("failed".to_string(), 2), "{states:?}");
    for task in ["transform", "validate", "publish"] {
        assert_eq!(states[task].0, "upstream_failed", "{states:?}");
    }
    assert!(
        down.output
            .contains("Marking task as UP_FOR_RETRY. dag_id=maps_data_ingestion, task_id=fetch")
            && down
                .output
                .contains("Marking task as FAILED. dag_id=maps_data_ingestion, task_id=fetch"),
        "{}",
        down.output
    );
    assert!(
        down.output
            .lines()
            .filter(|l| l.contains("fetch failed:") && l.contains("HTTP 503"))
            .count()
            >= 2,
        "the cause of both attempts is in the task log:\n{}",
        down.output
    );

    // Every run's records are in the topic, decodable through the registry.
    let mut expected: Vec<(&PipelineConfig, i64, usize)> = Vec::new();
    for (_, _, slots) in &runs {
        for (pipeline, slot) in slots {
            let config = &pipelines[*pipeline];
            expected.push((config, ms(slot), expected_count(config)));
        }
    }
    let flaky_weather = &failing_config["weather"];
    expected.push((
        flaky_weather,
        ms("2026-03-02T00:00:00Z"),
        expected_count(flaky_weather),
    ));
    let total: usize = expected.iter().map(|(_, _, n)| n).sum();
    let records = read_topic_until(
        &stack.kafka_brokers(),
        &stack.registry_url(),
        "topic_external_data",
        Duration::from_secs(60),
        |records| records.len() >= total,
    )
    .await
    .expect("the DAGs' records in topic_external_data");
    assert_eq!(records.len(), total, "nothing more than the runs published");
    for (config, slot, count) in &expected {
        let found = of_slot(&records, &config.name, *slot);
        assert_eq!(found.len(), *count, "{} at {slot}", config.name);
        for record in found {
            assert_eq!(record["source_type"], config.source_type.as_str());
            assert_valid(config, record);
        }
        eprintln!(
            "topic_external_data: {} records of {} at {slot}",
            count, config.name
        );
    }
    let flaky_records = of_slot(&records, "weather", ms("2026-03-02T00:00:00Z"));
    for record in flaky_records {
        let payload: Value =
            serde_json::from_str(record["payload_json"].as_str().unwrap()).unwrap();
        assert_eq!(payload["temperature_c"], 27.5, "the retried fetch's data");
    }
    assert!(
        of_slot(&records, "maps", ms("2026-03-02T02:00:00Z")).is_empty(),
        "the failed run published nothing"
    );
    stack.shutdown().await.expect("stop the stack");
}
