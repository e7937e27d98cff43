//! Logging, Prometheus metrics and the `/metrics` + `/health` endpoints every service exposes.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Json, Router, http::StatusCode, response::IntoResponse, routing::get};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use tower_layer::Layer;

/// Logs to stderr; `RUST_LOG` filters (default `info`), `LOG_FORMAT=json` switches to JSON lines.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests starting several services in-process) is harmless.
    let _ = if std::env::var("LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Installs the global Prometheus recorder and returns the handle that renders it.
pub fn install_prometheus() -> anyhow::Result<PrometheusHandle> {
    Ok(PrometheusBuilder::new().install_recorder()?)
}

/// Like [`install_prometheus`], but metrics whose names end in `_seconds` are rendered as
/// Prometheus histograms with these bucket bounds (instead of summaries), so latencies can be
/// aggregated across instances and queried with `histogram_quantile`.
pub fn install_prometheus_with_latency_buckets(
    buckets: &[f64],
) -> anyhow::Result<PrometheusHandle> {
    Ok(PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), buckets)?
        .install_recorder()?)
}

/// What `/health` reports: whether the service does its job right now, and why not.
#[derive(Clone, Default)]
pub struct Health {
    inner: Arc<Mutex<HealthReport>>,
}

#[derive(Clone, Default, Serialize)]
pub struct HealthReport {
    pub ready: bool,
    pub status: String,
}

impl Health {
    pub fn set(&self, ready: bool, status: impl Into<String>) {
        let mut report = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        report.ready = ready;
        report.status = status.into();
    }

    pub fn report(&self) -> HealthReport {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// `GET /metrics` (Prometheus text) and `GET /health` (200 when ready, 503 otherwise, JSON body).
pub fn router(prometheus: PrometheusHandle, health: Health) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || std::future::ready(prometheus.render())),
        )
        .route(
            "/health",
            get(move || {
                let report = health.report();
                let code = if report.ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                std::future::ready((code, Json(report)).into_response())
            }),
        )
}

/// How long a client may take to send a request's head (request line and headers). A client
/// that trickles bytes (slowloris) is disconnected after this instead of holding a connection
/// and a task forever; hyper enforces it only with a timer, which `axum::serve` does not set.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `listen` (failing now, with the address, if it cannot) and serves `router` in the
/// background until the process ends.
pub async fn serve(
    listen: SocketAddr,
    router: Router,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    serve_with_shutdown(listen, router, std::future::pending()).await
}

/// Like [`serve`], but stops accepting connections once `shutdown` completes and then lets the
/// requests in flight finish; the returned task ends when they have.
pub async fn serve_with_shutdown(
    listen: SocketAddr,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    serve_listener(listen, router, HEADER_READ_TIMEOUT, shutdown).await
}

/// Connections the kernel completes and queues for a listener before it accepts them.
/// tokio's `TcpListener::bind` asks for 1,024: when more clients connect at once (a fleet
/// reconnecting after a deploy, a load balancer opening its pool), the kernel drops the
/// handshakes beyond it and each of those clients retries a second later, so its first request
/// waits a second or more. The kernel caps this at `net.core.somaxconn` (4,096 by default).
pub const LISTEN_BACKLOG: u32 = 4096;

/// A listening socket on `listen` with [`LISTEN_BACKLOG`]: every service's HTTP server
/// ([`serve_listener`]) and the processor's SQL server listen through it.
pub fn listen_on(listen: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if listen.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restarted service may bind while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(listen)?;
    socket.listen(LISTEN_BACKLOG)
}

/// [`serve_with_shutdown`] with the head-read timeout given (tests shorten it).
pub async fn serve_listener(
    listen: SocketAddr,
    router: Router,
    header_read_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use hyper_util::{
        rt::{TokioExecutor, TokioIo, TokioTimer},
        server::{conn::auto::Builder, graceful::GracefulShutdown},
        service::TowerToHyperService,
    };
    let listener =
        listen_on(listen).map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    Ok(tokio::spawn(async move {
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout);
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            // Out of file descriptors and the like: back off, keep serving.
                            tracing::warn!(%error, "accepting a connection failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    // Handlers may ask for the peer's address (`ConnectInfo<SocketAddr>`).
                    let service = TowerToHyperService::new(
                        axum::Extension(axum::extract::ConnectInfo(peer)).layer(router.clone()),
                    );
                    let connection = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        if let Err(error) = connection.await {
                            tracing::debug!(%error, "HTTP connection ended");
                        }
                    });
                }
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        graceful.shutdown().await;
    }))
}
