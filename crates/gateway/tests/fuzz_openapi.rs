//! Property-based fuzzing with schemathesis against the generated OpenAPI document: thousands of
//! valid and malformed requests (wrong types, missing fields, odd strings, wrong content types)
//! on every operation, against the real broker and registry. Fails on any 5xx or a crash.

mod common;

use std::process::Stdio;

use common::stack_with_gateway;
use serde_json::Value;

/// Requests the run must at least make, so that a broken generator cannot pass unnoticed.
const MIN_REQUESTS: u64 = 2_000;

#[tokio::test(flavor = "multi_thread")]
async fn thousands_of_generated_requests_never_get_a_5xx() {
    let python = local_stack::python().expect("the project's venv (scripts/install-deps.sh)");
    let schemathesis = python.with_file_name("schemathesis");
    assert!(
        schemathesis.is_file(),
        "{} missing: run scripts/install-deps.sh",
        schemathesis.display()
    );
    // schemathesis sends thousands of bad requests on purpose, as fast as it can: the tarpit
    // for floods of client errors (tested in tarpit.rs) would hold most of them for a second.
    let stack = stack_with_gateway("gw-fuzz", &["--client-error-delay-ms", "0"]).await;
    let base = stack.gateway_url();
    let report_dir = stack.root().join("schemathesis");

    let output = tokio::process::Command::new(&schemathesis)
        .arg("run")
        .arg(format!("{base}/openapi.json"))
        .args([
            "--checks",
            "not_a_server_error",
            "--mode",
            "all",
            "--max-examples",
            "300",
            // A bound for a slow machine only: the examples above end the run first on a quick
            // one. At 60 s a slow day's machine made 1,399-1,985 requests, under the minimum.
            "--max-time",
            "180",
        ])
        .args([
            "--phases",
            "examples,coverage,fuzzing",
            "--workers",
            "2",
            "--seed",
            "20260501",
            "--suppress-health-check",
            "all",
        ])
        .arg("--report-dir")
        .arg(&report_dir)
        // schemathesis keeps a cache in its working directory: the stack's, removed afterwards.
        .current_dir(stack.root())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found failures ({}):\n{stdout}\n{stderr}\ngateway log:\n{}",
        output.status,
        stack.log_tail("gateway", 40)
    );

    let stats: Value = reqwest::get(format!("{base}/stats"))
        .await
        .expect("the gateway still answers")
        .json()
        .await
        .unwrap();
    let mut requests = 0;
    // /health is left out: it answers 503 by design until the gateway is ready.
    for (endpoint, by_status) in stats["requests"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(e, _)| *e != "/health")
    {
        for (status, count) in by_status.as_object().unwrap() {
            assert!(
                !status.starts_with('5'),
                "{endpoint} answered {status}: {stats}"
            );
            requests += count.as_u64().unwrap();
        }
    }
    assert!(
        requests >= MIN_REQUESTS,
        "only {requests} requests made:\n{stdout}"
    );
    println!("{requests} requests, none answered 5xx\n{stdout}");
    assert_eq!(
        reqwest::get(format!("{base}/health"))
            .await
            .unwrap()
            .status(),
        200,
        "still alive and ready"
    );
    stack.shutdown().await.unwrap();
}
