//! The machine's HTTP ceiling for single events: the gateway's own HTTP server
//! ([`platform::telemetry::serve`]: hyper, HTTP/1.1 keep-alive, tokio on every core) answering
//! every request with a gateway-sized `201` as soon as its body is read, with no other work: no
//! middleware, no validation, no encoding, no broker.
//!
//! It runs in a process of its own, loaded by the same generator, in the same run as the two
//! gateways. Whatever the gateway does per event comes on top of what this costs, so no gateway
//! on this machine can answer more single events per second than this server does; the report
//! puts the reference's rate times the target ratio beside it.

use std::{net::SocketAddr, time::Duration};

use axum::{
    Router,
    body::Bytes,
    http::{StatusCode, header},
};
use platform::shutdown::StopSignals;

/// The size of the gateway's answer to a stored single event (`status`, `id`, `topic`,
/// `partition`, `offset`).
const ANSWER: &str = r#"{"status":"stored","id":"rust-1234567","topic":"topic_app_events","partition":0,"offset":1234567}"#;

/// Serves on 127.0.0.1:`port` until SIGTERM, SIGINT or SIGHUP.
pub async fn serve(port: u16) -> anyhow::Result<()> {
    let mut signals = StopSignals::install()?;
    let router = Router::new().fallback(|body: Bytes| async move {
        // The body is read whole, as the gateway reads it, then dropped.
        drop(body);
        (
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "application/json")],
            ANSWER,
        )
    });
    let server = platform::telemetry::serve_listener(
        SocketAddr::from(([127, 0, 0, 1], port)),
        router,
        Duration::from_secs(10),
        async move {
            signals.recv().await;
        },
    )
    .await?;
    server.await?;
    Ok(())
}
