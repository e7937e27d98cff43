//! The gateway's `/docs` page in a real headless browser: it lists every operation of the
//! OpenAPI document, and sending its own example for `POST /events/user` shows a 2xx answer,
//! with the event then in `topic_app_events`. Screenshot: `target/test-artifacts/`.

use std::{collections::BTreeSet, time::Duration};

use anyhow::Context;
use e2e::{browser::Browser, read_topic_until};
use local_stack::{Stack, StackOptions};
use platform::topics;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_lists_every_endpoint_and_its_example_is_accepted() -> anyhow::Result<()> {
    let mut options = StackOptions::for_tests("gateway-docs");
    options.start_connector = false;
    options.start_gateway = true;
    let stack = Stack::start(options).await?;
    let base = stack.gateway_url();

    let spec: Value = reqwest::get(format!("{base}/openapi.json"))
        .await?
        .json()
        .await?;
    let mut expected = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().context("paths")? {
        for method in item.as_object().context("path item")?.keys() {
            expected.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    assert!(expected.contains("POST /events/user"), "{expected:?}");

    let browser = Browser::start().await?;
    browser.open(&format!("{base}/docs")).await?;
    let listed = browser
        .wait_for(
            "the operations list",
            "const s = [...document.querySelectorAll('#operations details summary')]; return s.length ? s.map(e => e.innerText) : null;",
            json!([]),
            Duration::from_secs(20),
        )
        .await?;
    let listed: BTreeSet<String> = listed
        .as_array()
        .context("summaries")?
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|s| {
            // "POST/events/user — summary" (the method is its own element).
            let s = s.split(" — ").next()?.trim();
            let slash = s.find('/')?;
            Some(format!("{} {}", s[..slash].trim(), &s[slash..]))
        })
        .collect();
    assert_eq!(
        listed, expected,
        "operations on the page vs the OpenAPI document"
    );

    // Open POST /events/user, send the example the page generated, read the answer.
    let example = browser
        .eval(
            "const d = [...document.querySelectorAll('#operations details')].find(d => d.querySelector('summary').innerText.includes('/events/user') && d.querySelector('.method.post'));
             d.open = true; const box = d.querySelector('textarea'); const example = box.value;
             d.querySelector('button').click(); return example;",
            json!([]),
        )
        .await?;
    let example: Value = serde_json::from_str(example.as_str().context("example text")?)?;
    let event_id = example["event_id"]
        .as_str()
        .context("the example has an event_id")?
        .to_string();
    let answer = browser
        .wait_for(
            "the answer to Send",
            "const d = [...document.querySelectorAll('#operations details')].find(d => d.open); const t = d.querySelector('.out').innerText; return t && t !== '…' ? t : null;",
            json!([]),
            Duration::from_secs(20),
        )
        .await?;
    let answer = answer.as_str().unwrap_or_default();
    assert!(answer.starts_with('2'), "the page showed: {answer}");
    browser
        .screenshot(&e2e::browser::artifact("gateway-docs.png"))
        .await?;

    read_topic_until(
        &stack.kafka_brokers(),
        &stack.registry_url(),
        topics::APP_EVENTS.name,
        Duration::from_secs(60),
        |records| {
            records
                .iter()
                .any(|r| r.value["event_id"].as_str() == Some(event_id.as_str()))
        },
    )
    .await
    .with_context(|| format!("event {event_id} sent from the docs page"))?;
    stack.shutdown().await?;
    Ok(())
}
