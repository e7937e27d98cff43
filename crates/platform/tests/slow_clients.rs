//! Every service's HTTP server (`telemetry::serve*`) drops a client that trickles its request
//! head (slowloris) once the head-read timeout has passed, while it keeps answering others.

use std::time::{Duration, Instant};

use axum::{Router, routing::get};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

async fn get_ok(address: std::net::SocketAddr) -> String {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream
        .write_all(b"GET /ping HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    answer
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_dropped_and_others_are_served() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = probe.local_addr().unwrap();
    drop(probe);
    let router = Router::new().route("/ping", get(|| async { "pong" }));
    let _server = platform::telemetry::serve_listener(
        address,
        router,
        Duration::from_secs(1),
        std::future::pending(),
    )
    .await
    .expect("serve");

    let mut slow = TcpStream::connect(address).await.expect("connect");
    let started = Instant::now();
    let head = b"GET /ping HTTP/1.1\r\nHost: test\r\nX-Slow: ";
    let mut dropped_after = None;
    for byte in head
        .iter()
        .chain(b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter())
    {
        if slow.write_all(&[*byte]).await.is_err() {
            dropped_after = Some(started.elapsed());
            break;
        }
        // Others are answered meanwhile.
        if started.elapsed() < Duration::from_millis(300) {
            assert!(get_ok(address).await.contains("pong"));
        }
        let mut buffer = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(200), slow.read(&mut buffer)).await {
            Ok(Ok(_)) | Ok(Err(_)) => {
                // The server answered (408) or closed: either way it let go.
                dropped_after = Some(started.elapsed());
                break;
            }
            Err(_) => {}
        }
    }
    let dropped_after = dropped_after.expect("the server never dropped the slow client");
    assert!(
        dropped_after >= Duration::from_millis(900),
        "dropped before the timeout: {dropped_after:?}"
    );
    assert!(get_ok(address).await.contains("pong"));
}
