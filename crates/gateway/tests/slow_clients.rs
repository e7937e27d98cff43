//! A client that stalls in the middle of its body gets a 4xx once `--body-read-timeout-secs`
//! has passed (never a 5xx, never a connection held forever), and the gateway keeps answering
//! well-behaved clients meanwhile.

mod common;

use std::time::{Duration, Instant};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_body_is_refused_after_the_timeout() {
    let stack =
        common::stack_with_gateway("gateway-slow-body", &["--body-read-timeout-secs", "1"]).await;
    let address = stack.gateway_url().trim_start_matches("http://").to_owned();
    let mut slow = TcpStream::connect(&address).await.expect("connect");
    let started = Instant::now();
    slow.write_all(
        b"POST /events/logs HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n\
          Content-Length: 400\r\nConnection: close\r\n\r\n{\"log_id\": \"slow",
    )
    .await
    .expect("send the head and a little body");

    // A well-behaved client is served while the slow one waits.
    let client = reqwest::Client::new();
    let health = client
        .get(format!("{}/health/live", stack.gateway_url()))
        .send()
        .await
        .expect("a normal request");
    assert!(health.status().is_success());

    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), slow.read_to_string(&mut answer))
        .await
        .expect("the gateway answers the stalled client")
        .expect("read the answer");
    let elapsed = started.elapsed();
    let status: u16 = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("an HTTP answer: {answer:?}"));
    assert!((400..500).contains(&status), "{status}: {answer}");
    assert!(
        elapsed >= Duration::from_millis(900),
        "answered before the timeout: {elapsed:?}"
    );
}
