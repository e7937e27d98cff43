//! Running the CDC connector beside (or instead of) the stack's own: a stack without one, its
//! command line with some options replaced, its health and metrics, and its slot's progress.

use std::time::{Duration, Instant};

use anyhow::bail;
use local_stack::{Stack, StackOptions};
use serde_json::Value;

/// A test stack (`StackOptions::for_tests(name)`) without the connector, for tests that run
/// their own.
pub async fn stack_without_connector(name: &str) -> Stack {
    let mut options = StackOptions::for_tests(name);
    options.start_connector = false;
    Stack::start(options).await.expect("start the stack")
}

/// The connector's `/metrics` text.
pub async fn metrics_text(connector_url: &str) -> anyhow::Result<String> {
    Ok(reqwest::get(format!("{connector_url}/metrics"))
        .await?
        .text()
        .await?)
}

/// The connector's arguments with some options replaced (`--listen` always on a fresh port, so
/// it can run beside the stack's own connector). Returns the arguments and the health URL.
pub fn connector_args_with(stack: &Stack, replacements: &[(&str, &str)]) -> (Vec<String>, String) {
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "127.0.0.1:39464".into());
    let mut args = stack.connector_args();
    let all = replacements
        .iter()
        .copied()
        .chain([("--listen", listen.as_str())]);
    for (flag, value) in all {
        match args.iter().position(|a| a == flag) {
            Some(index) => args[index + 1] = value.to_string(),
            None => args.extend([flag.to_string(), value.to_string()]),
        }
    }
    (args, format!("http://{listen}"))
}

/// Polls `GET {base}/health` until its JSON `status` contains `needle`; returns the body.
pub async fn wait_for_health_status(
    base: &str,
    needle: &str,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + timeout;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Ok(response) = reqwest::get(format!("{base}/health")).await
            && let Ok(body) = response.json::<Value>().await
        {
            if body["status"].as_str().unwrap_or_default().contains(needle) {
                return Ok(body);
            }
            last = body;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("health never reported {needle:?}; last: {last}")
}

/// Waits until the slot confirmed everything written so far: the connector has then had
/// every change acknowledged by Kafka.
pub async fn wait_until_slot_confirms_current_wal(
    stack: &Stack,
    slot: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let written = stack.psql("SELECT pg_current_wal_lsn()").await?;
    let query = format!(
        "SELECT confirmed_flush_lsn >= '{}' FROM pg_replication_slots WHERE slot_name = '{slot}'",
        written.trim()
    );
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if stack.psql(&query).await?.trim() == "t" {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!(
        "slot {slot} did not confirm {} within {timeout:?}",
        written.trim()
    )
}

/// Records of `table` the connector has had acknowledged, from its `cdc_events_total` metric.
pub fn delivered_events(metrics: &str, table: &str) -> u64 {
    let prefix = format!("cdc_events_total{{table=\"{table}\",");
    metrics
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The connector binary with `args`, killed when dropped. Its output is discarded; a test that
/// reads stderr sets `.stderr(Stdio::piped())` and must then read it (`output()`,
/// `wait_with_output()`), or the connector blocks on a full pipe.
pub fn connector_command(stack: &Stack, args: &[String]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(stack.connector_binary());
    command
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    command
}

/// The value of the first sample of `name` in Prometheus text, 0 when absent.
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Runs a connector expected to stop by itself on a definite error; returns its stderr after
/// checking it exited non-zero without a panic.
pub async fn connector_stderr_after_failure(stack: &Stack, args: &[String]) -> String {
    let mut command = connector_command(stack, args);
    command.stderr(std::process::Stdio::piped());
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the connector stops on a definite error")
        .expect("run the connector");
    assert!(!output.status.success(), "a definite error exits non-zero");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}
