//! The processor's results in SQL and on the live page, end to end: rows inserted into the
//! real PostgreSQL (through the real connector) and known events written into the source
//! topics, the real processor binary, then
//! - every statement of the README's psql session, run by `psql`, answers with rows;
//! - a second driver (tokio-postgres, extended protocol) sees the exact values: counts, the
//!   hottest heat-map cell, a join of bookings with users;
//! - bad SQL gets a PostgreSQL error with its SQLSTATE and the connection stays usable;
//! - the live page, loaded in headless Chromium, shows the hottest cell where the clicks were
//!   (screenshot saved under `target/test-artifacts/`).

use std::time::Duration;

use anyhow::{Context, bail};
use e2e::{
    eventually,
    processor::{self, SourceWriter},
    psql_command,
};
use local_stack::{Stack, StackOptions};
use platform::topics;

const MIN: i64 = 60_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The statements of the README's psql session (between the `sql-session` markers).
fn readme_session() -> anyhow::Result<Vec<String>> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))?;
    let start = readme
        .find("-- sql-session")
        .context("README has no `-- sql-session` block")?;
    let block = &readme[start..];
    let block = &block[..block
        .find("```")
        .context("unterminated sql-session block")?];
    let statements: Vec<String> = block
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .split(';')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if statements.len() < 10 {
        bail!(
            "the README's session has only {} statements",
            statements.len()
        );
    }
    Ok(statements)
}

async fn psql_rows(port: u16, sql: &str) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("psql")
        .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"])
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            "travel",
        ])
        .args(["-c", sql])
        .output()
        .await
        .context("running psql")?;
    if !out.status.success() {
        bail!(
            "psql failed on {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_answer_in_sql_and_on_the_live_page() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::for_tests("processor-query")).await?;
    let writer = SourceWriter::new(&stack.kafka_brokers(), &stack.registry_url()).await?;
    let listen = processor::free_listen();
    let sql_listen = processor::free_listen();
    let sql_port: u16 = sql_listen.rsplit(':').next().unwrap_or("0").parse()?;
    let mut child =
        processor::processor_command(&stack, &listen, &[("--sql-listen", sql_listen.as_str())])
            .spawn()
            .context("starting the processor")?;

    // OLTP rows through the real connector.
    let status = psql_command(
        &stack,
        "INSERT INTO users (email, full_name, loyalty_tier) VALUES ('an@example.vn', 'An', 'gold'), ('binh@example.vn', 'Binh', 'basic');
         INSERT INTO bookings (user_id, destination, check_in_date, check_out_date, total_amount)
           SELECT user_id, 'Da Nang', '2026-12-20', '2026-12-23', 1250.50 FROM users WHERE email = 'an@example.vn';
         INSERT INTO payments (booking_id, amount, method, status)
           SELECT booking_id, 1250.50, 'card', 'captured' FROM bookings;",
    )
    .status()
    .await?;
    anyhow::ensure!(status.success(), "inserting OLTP rows failed");

    // Known events, all within the last half hour, so `now() - interval '1 hour'` sees them.
    let base = (now_ms() / (10 * MIN)) * (10 * MIN) - 30 * MIN;
    for i in 0..30i64 {
        let event_type = if i % 3 == 0 {
            "booking_started"
        } else {
            "search"
        };
        writer
            .write(
                topics::APP_EVENTS.name,
                (i % 6) as i32,
                "s",
                processor::app_event(
                    &format!("e{i}"),
                    event_type,
                    "WEB_APP",
                    Some(&format!("u{}", i % 4)),
                    "s",
                    base + i * 10_000,
                ),
            )
            .await?;
    }
    // Clicks on /search: 9 in cell (6, 2) (pixels 300-349 x 100-149), 2 elsewhere.
    for i in 0..11i64 {
        let (x, y) = if i < 9 {
            (310 + i as i32, 120)
        } else {
            (20, 700)
        };
        writer
            .write(
                topics::CLICKSTREAM.name,
                (i % 8) as i32,
                "sess-1",
                processor::click(
                    &format!("c{i}"),
                    "sess-1",
                    "/search",
                    "CLICK",
                    x,
                    y,
                    base + i * 1_000,
                ),
            )
            .await?;
    }
    writer
        .write(
            topics::APP_LOGS.name,
            0,
            "gateway",
            processor::log_line("l1", "gateway", "FATAL", base + 5_000),
        )
        .await?;
    writer
        .write(
            topics::APP_LOGS.name,
            1,
            "gateway",
            processor::log_line("l2", "gateway", "INFO", base + 6_000),
        )
        .await?;
    writer
        .write(
            topics::EXTERNAL_DATA.name,
            0,
            "weather",
            processor::external("x1", "Da Nang", 31.5, base + 1_000),
        )
        .await?;
    // Later events on every partition close the first windows; the latest stay open.
    let later = base + 25 * MIN;
    for p in 0..6 {
        writer
            .write(
                topics::APP_EVENTS.name,
                p,
                "late",
                processor::app_event(&format!("f{p}"), "search", "WEB_APP", None, "f", later),
            )
            .await?;
    }
    for p in 0..8 {
        writer
            .write(
                topics::CLICKSTREAM.name,
                p,
                "later",
                processor::click(&format!("f{p}"), "sess-2", "/home", "CLICK", 5, 5, later),
            )
            .await?;
    }

    // Every table of the README's session answers with rows.
    let statements = readme_session()?;
    for sql in &statements {
        eventually(
            &format!("rows for `{sql}`"),
            Duration::from_secs(90),
            || async {
                let out = psql_rows(sql_port, sql).await?;
                Ok((!out.is_empty()).then_some(out))
            },
        )
        .await?;
    }

    // Exact values through a second driver.
    let (client, connection) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={sql_port} user=postgres dbname=travel"),
        tokio_postgres::NoTls,
    )
    .await
    .context("tokio-postgres connecting to the SQL port")?;
    tokio::spawn(connection);
    let app_events: i64 = eventually("final app-event windows", Duration::from_secs(60), || async {
        let row = client
            .query_one(
                "SELECT CAST(sum(events) AS BIGINT) FROM app_event_counts WHERE is_final AND window_start < $1",
                &[&(std::time::UNIX_EPOCH + Duration::from_millis((base + 10 * MIN) as u64))],
            )
            .await?;
        Ok(row.get::<_, Option<i64>>(0).filter(|n| *n == 30))
    })
    .await?;
    assert_eq!(app_events, 30);
    let hottest = client
        .query_one(
            "SELECT x, y, CAST(sum(clicks) AS BIGINT) AS n FROM heatmap_cells WHERE page_url = '/search' GROUP BY x, y ORDER BY n DESC LIMIT 1",
            &[],
        )
        .await?;
    assert_eq!(
        (
            hottest.get::<_, i64>(0),
            hottest.get::<_, i64>(1),
            hottest.get::<_, i64>(2)
        ),
        (6, 2, 9)
    );
    let joined = client
        .query(
            "SELECT u.email, b.destination, CAST(b.total_amount AS VARCHAR) FROM bookings b JOIN users u ON u.user_id = b.user_id",
            &[],
        )
        .await?;
    let joined: Vec<(String, String, String)> = joined
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        joined,
        vec![("an@example.vn".into(), "Da Nang".into(), "1250.50".into())]
    );

    // Bad SQL: a PostgreSQL error with its SQLSTATE, and the connection stays usable.
    for (sql, code) in [
        ("SELEC 1", "42601"),
        ("SELECT * FROM no_such_table", "42P01"),
        ("SELECT no_such_column FROM users", "42703"),
    ] {
        let error = client
            .simple_query(sql)
            .await
            .err()
            .with_context(|| format!("{sql} succeeded"))?;
        let db = error
            .as_db_error()
            .with_context(|| format!("{sql}: not a server error: {error}"))?;
        assert_eq!(db.code().code(), code, "{sql}: {}", db.message());
    }
    let one: i64 = client
        .query_one("SELECT CAST(count(*) AS BIGINT) FROM users", &[])
        .await?
        .get(0);
    assert_eq!(one, 2);
    // psql's catalog commands work.
    let tables = psql_rows(sql_port, "\\dt").await?;
    assert!(tables.contains("heatmap_cells"), "\\dt listed: {tables}");

    // The live page in a real browser shows the hottest cell of /search.
    let browser = e2e::browser::Browser::start().await?;
    browser.open(&format!("http://{listen}/")).await?;
    let hottest = browser
        .wait_for(
            "the /search heat map",
            "const f = [...document.querySelectorAll('figure.heatmap')].find(f => f.dataset.page === '/search'); return f ? [f.dataset.hottest, f.innerText] : null;",
            serde_json::json!([]),
            Duration::from_secs(20),
        )
        .await?;
    assert_eq!(hottest[0], "6,2", "hottest cell shown: {hottest}");
    assert!(
        hottest[1]
            .as_str()
            .unwrap_or("")
            .contains("hottest cell (6, 2): 9 clicks"),
        "{hottest}"
    );
    let canvas_painted = browser
        .eval(
            "const f = [...document.querySelectorAll('figure.heatmap')].find(f => f.dataset.page === '/search'); const c = f.querySelector('canvas'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; return d.some(v => v !== 0);",
            serde_json::json!([]),
        )
        .await?;
    assert_eq!(
        canvas_painted,
        serde_json::json!(true),
        "the heat map canvas is blank"
    );
    browser
        .wait_for(
            "the FATAL_LOG alert",
            "return document.getElementById('alerts').innerText.includes('FATAL_LOG');",
            serde_json::json!([]),
            Duration::from_secs(10),
        )
        .await?;
    browser
        .screenshot(&e2e::browser::artifact("processor-page.png"))
        .await?;

    child.start_kill()?;
    let _ = child.wait().await;
    stack.shutdown().await?;
    Ok(())
}
