//! The front door every request passes through: its request id, its count and timing by
//! endpoint, and the tarpit for repeated client errors ([`crate::tarpit`]).
//!
//! One hand-written layer instead of tower-http's request-id and trace layers and two axum
//! `from_fn` middlewares: each `from_fn` boxed a clone of the whole inner service and its future
//! per request, and the trace layer's span formatted the request id, method and path into a
//! string per request, although only two log lines (an event not stored) ever used it; those
//! now name the request id themselves ([`request_id`]). At a single event per request this
//! plumbing was about a tenth of the gateway's CPU (bench/gateway/NOTES.md).

use std::{
    net::SocketAddr,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use axum::{
    extract::{ConnectInfo, MatchedPath, Request},
    http::{HeaderMap, HeaderName, HeaderValue},
    response::Response,
};
use futures::future::BoxFuture;
use tower_layer::Layer;
use tower_service::Service;

use crate::{stats::Stats, tarpit::Tarpit};

/// The header that carries a request's id, on the request (as sent, or set here) and the answer.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of a request that passed the front door (empty for one that did not, in unit tests).
pub fn request_id(headers: &HeaderMap) -> &str {
    headers
        .get(&X_REQUEST_ID)
        .and_then(|id| id.to_str().ok())
        .unwrap_or_default()
}

#[derive(Clone)]
pub struct FrontDoorLayer {
    stats: Arc<Stats>,
    tarpit: Arc<Tarpit>,
}

impl FrontDoorLayer {
    pub fn new(stats: Arc<Stats>, tarpit: Arc<Tarpit>) -> Self {
        Self { stats, tarpit }
    }
}

impl<S> Layer<S> for FrontDoorLayer {
    type Service = FrontDoor<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FrontDoor {
            inner,
            stats: self.stats.clone(),
            tarpit: self.tarpit.clone(),
        }
    }
}

#[derive(Clone)]
pub struct FrontDoor<S> {
    inner: S,
    stats: Arc<Stats>,
    tarpit: Arc<Tarpit>,
}

impl<S> Service<Request> for FrontDoor<S>
where
    S: Service<Request, Response = Response> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let started = Instant::now();
        // A client's own id is kept, so its logs and ours name the same request.
        let id = match request.headers().get(&X_REQUEST_ID) {
            Some(id) => id.clone(),
            None => {
                let id = new_request_id();
                request.headers_mut().insert(X_REQUEST_ID, id.clone());
                id
            }
        };
        // The route pattern, so the label set is bounded; set by the router for every route.
        let endpoint = request.extensions().get::<MatchedPath>().cloned();
        // Set by the server for every connection (absent when a test calls the router directly).
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip());
        let in_flight = self.stats.request_in_flight();
        let answer = self.inner.call(request);
        let (stats, tarpit) = (self.stats.clone(), self.tarpit.clone());
        Box::pin(async move {
            let mut response = answer.await?;
            drop(in_flight);
            let endpoint = endpoint.as_ref().map_or("unmatched", MatchedPath::as_str);
            stats.record_request(endpoint, response.status().as_u16(), started.elapsed());
            response.headers_mut().insert(X_REQUEST_ID, id);
            if let Some(peer) = peer {
                tarpit.hold_if_over_budget(peer, &mut response).await;
            }
            Ok(response)
        })
    }
}

/// A random (version 4) UUID, from uuid's thread-local generator, written without a `String`.
fn new_request_id() -> HeaderValue {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
    HeaderValue::from_str(text).expect("a hyphenated UUID is a valid header value")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::{Router, body::Body, http::StatusCode, routing::get};
    use tower::ServiceExt;

    use super::*;
    use crate::tarpit::TarpitPolicy;

    /// A tarpit that never holds an answer: these tests are about the other two jobs.
    fn no_tarpit() -> Arc<Tarpit> {
        Arc::new(Tarpit::new(TarpitPolicy {
            burst: 1,
            per_second: 1.0,
            delay: Duration::ZERO,
            max_held: 1,
        }))
    }

    fn app() -> Router {
        Router::new()
            .route(
                "/echo/{name}",
                get(|headers: HeaderMap| async move { request_id(&headers).to_owned() }),
            )
            .layer(FrontDoorLayer::new(Arc::new(Stats::default()), no_tarpit()))
    }

    async fn get_echo(sent_id: Option<&str>) -> (StatusCode, String, String) {
        let mut request = Request::get("/echo/x");
        if let Some(id) = sent_id {
            request = request.header("x-request-id", id);
        }
        let response = app()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let answered_id = request_id(response.headers()).to_owned();
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        (
            status,
            answered_id,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn a_request_without_an_id_gets_a_fresh_uuid_seen_by_the_handler_and_the_client() {
        let (status, answered, seen) = get_echo(None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            answered, seen,
            "the handler and the answer carry the same id"
        );
        let parsed = uuid::Uuid::parse_str(&answered).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 4);
        assert_ne!(get_echo(None).await.1, answered, "each request its own id");
    }

    #[tokio::test]
    async fn a_client_id_is_kept() {
        let (_, answered, seen) = get_echo(Some("client-chosen-7")).await;
        assert_eq!(
            (answered.as_str(), seen.as_str()),
            ("client-chosen-7", "client-chosen-7")
        );
    }

    #[tokio::test]
    async fn answers_are_counted_by_route_pattern() {
        let stats = Arc::new(Stats::default());
        let app = Router::new()
            .route("/echo/{name}", get(|| async { "hi" }))
            .layer(FrontDoorLayer::new(stats.clone(), no_tarpit()));
        for path in ["/echo/a", "/echo/b", "/nowhere"] {
            app.clone()
                .oneshot(Request::get(path).body(Body::empty()).unwrap())
                .await
                .unwrap();
        }
        let report = stats.report();
        assert_eq!(report.requests["/echo/{name}"]["200"], 2);
        assert_eq!(report.requests["unmatched"]["404"], 1);
    }
}
