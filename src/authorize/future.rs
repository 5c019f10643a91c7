//! [`ResponseFuture`]: calls the inner service, answers a refusal, or first
//! reads a DeleteObjects key list (bounded by the notify scanner's limits)
//! and decides on every key before a byte goes further.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::actions::{delete_action, object_arn, Check};
use super::body::AuthorizeBody;
use super::policy::Policy;
use super::service::{first_denied, Denied, Facts};
use crate::body::ResponseBody;
use crate::notify::scan::{too_long_error, DeleteRequestScanner};
use crate::s3error::{RequestId, S3Error, S3ErrorCode};
use crate::verified::Rejection;

/// A DeleteObjects request waiting for its key list.
pub(crate) struct Reading<S> {
    inner: S,
    parts: http::request::Parts,
    policy: Arc<Policy>,
    bucket: String,
    facts: Facts,
    scanner: DeleteRequestScanner,
    frames: VecDeque<Frame<Bytes>>,
}

pin_project! {
    /// Response future of [`Authorize`](super::Authorize).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<AuthorizeBody<B>>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<AuthorizeBody<B>>>,
    {
        Calling {
            #[pin]
            future: S::Future,
        },
        Reading {
            #[pin]
            body: B,
            reading: Option<Box<Reading<S>>>,
        },
        Refused {
            response: Option<Response<Bytes>>,
        },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<AuthorizeBody<B>>>,
{
    pub(crate) fn calling(future: S::Future) -> Self {
        ResponseFuture {
            state: State::Calling { future },
        }
    }

    pub(crate) fn denied(parts: &http::request::Parts, denied: Denied) -> Self {
        ResponseFuture {
            state: State::Refused {
                response: Some(access_denied(parts, denied)),
            },
        }
    }

    pub(crate) fn reading(
        inner: S,
        parts: http::request::Parts,
        body: B,
        policy: Arc<Policy>,
        bucket: String,
        facts: Facts,
    ) -> Self {
        ResponseFuture {
            state: State::Reading {
                body,
                reading: Some(Box::new(Reading {
                    inner,
                    parts,
                    policy,
                    bucket,
                    facts,
                    scanner: DeleteRequestScanner::new(),
                    frames: VecDeque::new(),
                })),
            },
        }
    }
}

fn request_id(parts: &http::request::Parts) -> String {
    RequestId::from_extensions_or_new(&parts.extensions)
        .as_str()
        .to_owned()
}

/// The `AccessDenied` answer, logged with who asked for what (never a
/// secret), carrying [`Denied`] and a [`Rejection`] for metrics.
fn access_denied(parts: &http::request::Parts, denied: Denied) -> Response<Bytes> {
    let request_id = request_id(parts);
    tracing::info!(
        access_key_id = denied.access_key_id.as_deref().unwrap_or("-"),
        identity = denied.identity.as_deref().unwrap_or("-"),
        action = denied.action,
        resource = %denied.resource,
        reason = denied.reason,
        %request_id,
        "access denied by policy"
    );
    let mut response = S3Error::new(S3ErrorCode::AccessDenied, "Access Denied").to_response(
        parts.uri.path(),
        &request_id,
        parts.method == http::Method::HEAD,
    );
    response.extensions_mut().insert(Rejection {
        layer: "authorize",
        reason: denied.reason,
    });
    response.extensions_mut().insert(denied);
    response
}

/// A DeleteObjects body that cannot be decided on.
fn unreadable(
    parts: &http::request::Parts,
    error: S3Error,
    reason: &'static str,
) -> Response<Bytes> {
    let request_id = request_id(parts);
    tracing::info!(reason, %request_id, "DeleteObjects refused: {}", error.message());
    let mut response = error.to_response(parts.uri.path(), &request_id, false);
    response.extensions_mut().insert(Rejection {
        layer: "authorize",
        reason,
    });
    response
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<AuthorizeBody<B>>, Response = Response<ResBody>>,
    B: http_body::Body<Data = Bytes>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                StateProj::Refused { response } => {
                    let response = response.take().expect("polled after completion");
                    return Poll::Ready(Ok(response.map(ResponseBody::error)));
                }
                StateProj::Reading { mut body, reading } => {
                    let state = reading.as_mut().expect("polled after completion");
                    let frame = ready!(body.as_mut().poll_frame(cx));
                    match frame {
                        Some(Ok(frame)) => {
                            if let Some(data) = frame.data_ref() {
                                if !state.scanner.feed(data) {
                                    let response = unreadable(
                                        &state.parts,
                                        too_long_error(),
                                        "delete_list_too_long",
                                    );
                                    this.state.set(State::Refused {
                                        response: Some(response),
                                    });
                                    continue;
                                }
                            }
                            state.frames.push_back(frame);
                        }
                        Some(Err(_)) => {
                            // A verifier outside answers with the precise
                            // cause it recorded; this stands in otherwise.
                            let error = S3Error::new(
                                S3ErrorCode::IncompleteBody,
                                "The DeleteObjects request body could not be read.",
                            );
                            let response =
                                unreadable(&state.parts, error, "delete_list_unreadable");
                            this.state.set(State::Refused {
                                response: Some(response),
                            });
                        }
                        None => {
                            let Reading {
                                mut inner,
                                parts,
                                policy,
                                bucket,
                                facts,
                                scanner,
                                frames,
                            } = *reading.take().expect("polled after completion");
                            if !scanner.complete || scanner.unreadable {
                                let error = S3Error::new(
                                    S3ErrorCode::MalformedXML,
                                    "The DeleteObjects key list could not be read.",
                                );
                                let response = unreadable(&parts, error, "delete_list_unreadable");
                                this.state.set(State::Refused {
                                    response: Some(response),
                                });
                                continue;
                            }
                            // Every key must be allowed: one denied key
                            // refuses the whole request (the body is passed
                            // on unchanged, so its Content-MD5 still holds).
                            let checks: Vec<Check> = scanner
                                .objects
                                .iter()
                                .map(|(key, version)| Check {
                                    action: delete_action(version.as_deref()),
                                    resource: object_arn(&bucket, key),
                                    listing: false,
                                })
                                .collect();
                            match first_denied(&policy, &checks, &facts) {
                                Some(denied) => {
                                    let response = access_denied(&parts, denied);
                                    this.state.set(State::Refused {
                                        response: Some(response),
                                    });
                                }
                                None => {
                                    let request =
                                        Request::from_parts(parts, AuthorizeBody::replay(frames));
                                    let future = inner.call(request);
                                    this.state.set(State::Calling { future });
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
