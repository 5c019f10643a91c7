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
use super::replay::ReplayCheck;
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
        // Waiting for the replay store's answer on a verified message.
        Checking {
            check: ReplayCheck,
            // Taken when the store answers; `None` only after that.
            verified: Option<(Parts, Bytes, S)>,
            signs_timestamp: bool,
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
                        let (parts, inner) = head.take().expect("the body ends once");
                        let body = collected.split().freeze();
                        match verify(config, &parts, &body) {
                            Ok(Verdict::Fresh) => State::call(inner, parts, body, false),
                            Ok(Verdict::Check(check)) => State::Checking {
                                check,
                                verified: Some((parts, body, inner)),
                                signs_timestamp: config.scheme.signs_timestamp(),
                            },
                            Err(error) => State::refused(error),
                        }
                    }
                },
                StateProj::Checking {
                    check,
                    verified,
                    signs_timestamp,
                } => {
                    let answer = ready!(check.as_mut().poll(cx));
                    let (parts, body, inner) = verified.take().expect("the store answers once");
                    match answer {
                        Ok(true) => State::call(inner, parts, body, false),
                        Ok(false) if *signs_timestamp => State::refused(WebhookError::Replayed),
                        Ok(false) => State::call(inner, parts, body, true),
                        Err(error) => {
                            // Fail closed: a 503 makes the sender retry later,
                            // accepting could let a replay through.
                            tracing::warn!("webhook refused with 503: {error}");
                            State::refused(WebhookError::ReplayStoreUnavailable)
                        }
                    }
                }
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

    fn call(mut inner: S, mut parts: Parts, body: Bytes, redelivery: bool) -> Self {
        if redelivery {
            parts.extensions.insert(Redelivery);
        }
        State::Calling {
            future: inner.call(Request::from_parts(parts, Full::new(body))),
        }
    }
}

/// What the signature check leaves to do.
enum Verdict {
    /// No replay store, or no replay id: call the inner service.
    Fresh,
    /// Ask the replay store first.
    Check(ReplayCheck),
}

/// Verifies the complete body, then starts the replay store's check: only
/// a message with a valid signature may occupy a slot in the store. What a
/// repeat gets (refusal, or the [`Redelivery`] mark for schemes without a
/// signed timestamp) is decided when the store answers.
fn verify(config: &Config, parts: &Parts, body: &[u8]) -> Result<Verdict, WebhookError> {
    let now = (config.clock)();
    let context = WebhookContext::new(&parts.headers, now, config.tolerance);
    let replay_id = config.scheme.verify(&context, body)?;
    Ok(match (&config.replay_store, replay_id) {
        (Some(store), Some(id)) => {
            Verdict::Check(store.insert_new(id, now, config.tolerance.saturating_mul(2)))
        }
        _ => Verdict::Fresh,
    })
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<Full<Bytes>>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
