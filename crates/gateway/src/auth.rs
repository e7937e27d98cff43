//! Optional API-key authentication of the /events endpoints.

use std::{
    future::{Ready, ready},
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    extract::Request,
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
};
use futures::future::Either;
use subtle::ConstantTimeEq;
use tower_layer::Layer;
use tower_service::Service;

use crate::errors::ApiError;

/// The accepted keys; none means authentication is off.
#[derive(Clone, Default)]
pub struct ApiKeys(Arc<Vec<Vec<u8>>>);

impl ApiKeys {
    pub fn new(keys: &[String]) -> Self {
        Self(Arc::new(
            keys.iter()
                .map(|k| k.trim())
                .filter(|k| !k.is_empty())
                .map(|k| k.as_bytes().to_vec())
                .collect(),
        ))
    }

    pub fn enabled(&self) -> bool {
        !self.0.is_empty()
    }

    /// Compares in constant time against every key (never stopping at the first match), so the
    /// answer time does not tell how much of a guess was right.
    pub fn accepts(&self, presented: &[u8]) -> bool {
        let mut matched = subtle::Choice::from(0);
        for key in self.0.iter() {
            matched |= key.as_slice().ct_eq(presented);
        }
        matched.into()
    }
}

/// The key a request presents: `X-API-Key: KEY` or `Authorization: Bearer KEY`.
fn presented(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(key) = headers.get("x-api-key") {
        return Some(key.as_bytes());
    }
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    value
        .strip_prefix(b"Bearer ")
        .or_else(|| value.strip_prefix(b"bearer "))
}

/// Answers 401 to a request without an accepted key (when keys are configured), before its body
/// is read. A hand-written layer: axum's `from_fn` boxed a clone of the inner service and its
/// future per request.
impl<S> Layer<S> for ApiKeys {
    type Service = RequireApiKey<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireApiKey {
            inner,
            keys: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RequireApiKey<S> {
    inner: S,
    keys: ApiKeys,
}

impl<S> Service<Request> for RequireApiKey<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let keys = &self.keys;
        if !keys.enabled() || presented(request.headers()).is_some_and(|key| keys.accepts(key)) {
            Either::Left(self.inner.call(request))
        } else {
            Either::Right(ready(Ok(ApiError::Unauthorized.into_response())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_keys_are_accepted() {
        let keys = ApiKeys::new(&["alpha".into(), " beta ".into(), "".into()]);
        assert!(keys.enabled());
        assert!(keys.accepts(b"alpha") && keys.accepts(b"beta"));
        assert!(!keys.accepts(b"alph") && !keys.accepts(b"") && !keys.accepts(b"alphaa"));
        assert!(!ApiKeys::new(&[]).enabled());
    }

    #[test]
    fn keys_come_from_either_header() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer k1".parse().unwrap());
        assert_eq!(presented(&headers), Some(&b"k1"[..]));
        headers.insert("x-api-key", "k2".parse().unwrap());
        assert_eq!(presented(&headers), Some(&b"k2"[..]));
    }
}
