//! `ResponseFuture`: reads the body up to the limit, verifies it, then runs
//! the inner service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::body::ResponseBody;
use super::error::WebhookError;
use super::layer::Config;
use super::scheme::WebhookContext;
use super::Redelivery;

pin_project! {
    /// The response future of [`VerifyWebhook`](super::VerifyWebhook).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<Full<Bytes>>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<Full<Bytes>>>,
    {
        Refused { error: Option<WebhookError> },
        Reading {
            #[pin]
            body: B,
            collected: BytesMut,
            // Taken when the body ends; `None` only after that.
            head: Option<(Parts, S)>,
            config: Arc<Config>,
        },
        Calling { #[pin] future: S::Future },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<Full<Bytes>>>,
    B: Body,
{
    pub(crate) fn refused(error: WebhookError) -> Self {
        Self {
            state: State::Refused { error: Some(error) },
        }
    }

    pub(crate) fn reading(request: Request<B>, inner: S, config: Arc<Config>) -> Self {
        let (parts, body) = request.into_parts();
        // Reserve what the sender announced, but never more than the limit,
        // so a lying Content-Length cannot make us allocate.
        let expected = body.size_hint().exact().unwrap_or(0);
        let capacity = usize::try_from(expected)
            .unwrap_or(usize::MAX)
            .min(config.max_body_size);
        Self {
            state: State::Reading {
                body,
                collected: BytesMut::with_capacity(capacity),
                head: Some((parts, inner)),
                config,
            },
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>>,
    B: Body,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Refused { error } => {
                    let error = error
                        .take()
                        .expect("ResponseFuture polled after completion");
                    tracing::debug!(code = error.code(), %error, "webhook refused");
                    return Poll::Ready(Ok(error.to_response().map(ResponseBody::refusal)));
                }
                StateProj::Calling { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                StateProj::Reading {
                    body,
                    collected,
                    head,
                    config,
                } => match ready!(body.poll_frame(cx)) {
                    Some(Ok(frame)) => {
                        // Trailers are not signed by any supported scheme and
                        // the inner body has none: they are dropped.
                        let Ok(mut data) = frame.into_data() else {
                            continue;
                        };
                        if collected.len().saturating_add(data.remaining()) > config.max_body_size {
                            State::refused(WebhookError::BodyTooLarge {
                                limit: config.max_body_size,
                            })
                        } else {
                            collected.put(&mut data);
                            continue;
                        }
                    }
                    Some(Err(_)) => State::refused(WebhookError::BodyUnreadable),
                    None => {
                        let (parts, mut inner) = head.take().expect("the body ends once");
                        let body = collected.split().freeze();
                        match accept(config, &parts, &body) {
                            Ok(redelivery) => {
                                let mut parts = parts;
                                if redelivery {
                                    parts.extensions.insert(Redelivery);
                                }
                                State::Calling {
                                    future: inner.call(Request::from_parts(parts, Full::new(body))),
                                }
                            }
                            Err(error) => State::refused(error),
                        }
                    }
                },
            };
            this.state.set(next);
        }
    }
}

impl<S, B> State<S, B>
where
    S: Service<Request<Full<Bytes>>>,
{
    fn refused(error: WebhookError) -> Self {
        State::Refused { error: Some(error) }
    }
}

/// Verifies the complete body, then consults the replay cache: only a
/// message with a valid signature may occupy a cache slot. Answers whether
/// the message is a redelivery the cache has seen (schemes without a
/// signed timestamp only; a timestamped repeat is refused).
fn accept(config: &Config, parts: &Parts, body: &[u8]) -> Result<bool, WebhookError> {
    let now = (config.clock)();
    let context = WebhookContext::new(&parts.headers, now, config.tolerance);
    let replay_id = config.scheme.verify(&context, body)?;
    if let (Some(cache), Some(id)) = (&config.replay_cache, replay_id) {
        if !cache.insert_new(id, now, config.tolerance.saturating_mul(2)) {
            if config.scheme.signs_timestamp() {
                return Err(WebhookError::Replayed);
            }
            return Ok(true);
        }
    }
    Ok(false)
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<Full<Bytes>>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
