//! [`Notify`]: records what the request was, then lets it through untouched.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use http::{header, Request, Response};
use tower_service::Service;

use super::body::{NotifyRequestBody, RequestScan};
use super::classify::{classify_addressed, query_value, Classified};
use super::future::{PendingEvent, ResponseFuture};
use super::layer::NotifyConfig;
use super::scan::{
    too_long_error, DeleteRequestScanner, PartListScanner, MAX_DELETE_REQUEST_BYTES,
};
use super::S3Operation;
use crate::s3error::RequestId;
use crate::verified::{ClientAddr, Observed};

/// The service made by [`NotifyLayer`](super::NotifyLayer).
pub struct Notify<S> {
    inner: S,
    config: Arc<NotifyConfig>,
}

impl<S> Notify<S> {
    pub(crate) fn new(inner: S, config: Arc<NotifyConfig>) -> Self {
        Notify { inner, config }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The layer that wraps services in this one
    /// ([`NotifyLayer::new`](super::NotifyLayer::new)).
    pub fn layer(emitter: impl super::EventEmitter) -> super::NotifyLayer {
        super::NotifyLayer::new(emitter)
    }
}

impl<S: Clone> Clone for Notify<S> {
    fn clone(&self) -> Self {
        Notify {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Notify<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notify")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

fn header_text(headers: &http::HeaderMap, name: impl header::AsHeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn header_number(headers: &http::HeaderMap, name: impl header::AsHeaderName) -> Option<u64> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Whether the body is aws-chunked: its bytes are then framing and XML
/// mixed, which the layer does not try to read.
fn is_aws_chunked(headers: &http::HeaderMap) -> bool {
    headers
        .get("x-amz-content-sha256")
        .is_some_and(|v| v.as_bytes().starts_with(b"STREAMING-"))
        || headers.get_all(header::CONTENT_ENCODING).iter().any(|v| {
            const CHUNKED: &[u8] = b"aws-chunked";
            v.as_bytes()
                .windows(CHUNKED.len())
                .any(|w| w.eq_ignore_ascii_case(CHUNKED))
        })
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Notify<S>
where
    S: Service<Request<NotifyRequestBody<ReqBody>>, Response = Response<ResBody>>,
{
    type Response = Response<super::body::NotifyBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // An outer layer that classified the request already (the s3tap
        // proxy's request log does, for its metrics) leaves its result here.
        let classified = match request.extensions_mut().remove::<Classified>() {
            Some(classified) => classified,
            None => classify_addressed(
                request.method(),
                request.uri(),
                request.headers(),
                &self.config.addressing,
            ),
        };
        let headers = request.headers();
        let operation = classified.operation;
        let content_length = header_number(headers, header::CONTENT_LENGTH);
        // The key list of a DeleteObjects (for quiet requests, whose result
        // lists only errors) and the part list of a completion (for the
        // object's size) are read on the way up.
        let reads_body = matches!(
            operation,
            S3Operation::DeleteObjects | S3Operation::CompleteMultipartUpload
        );
        let scan = if !reads_body {
            None
        } else if is_aws_chunked(headers) {
            tracing::debug!(
                operation = operation.as_str(),
                "aws-chunked request body not read; events come from the response alone"
            );
            None
        } else if operation == S3Operation::DeleteObjects {
            Some(Arc::new(Mutex::new(RequestScan::Delete(
                DeleteRequestScanner::new(),
            ))))
        } else {
            Some(Arc::new(Mutex::new(RequestScan::Parts(
                PartListScanner::new(),
            ))))
        };
        let upload = match operation {
            S3Operation::UploadPart
            | S3Operation::CompleteMultipartUpload
            | S3Operation::AbortMultipartUpload => {
                match (
                    &classified.bucket,
                    &classified.key,
                    query_value(request.uri().query(), "uploadId"),
                ) {
                    (Some(bucket), Some(key), Some(id)) => Some((bucket.clone(), key.clone(), id)),
                    _ => None,
                }
            }
            _ => None,
        };
        let part_number = (operation == S3Operation::UploadPart)
            .then(|| query_value(request.uri().query(), "partNumber"))
            .flatten()
            .and_then(|n| n.parse().ok());
        let too_long = operation == S3Operation::DeleteObjects
            && scan.is_some()
            && content_length.is_some_and(|len| len > MAX_DELETE_REQUEST_BYTES);
        let observed = Observed::default();
        let pending = PendingEvent {
            started: Instant::now(),
            time: SystemTime::now(),
            classified,
            method: request.method().as_str().to_owned(),
            request_uri: request.uri().to_string(),
            content_length,
            decoded_content_length: header_number(headers, "x-amz-decoded-content-length"),
            content_type: header_text(headers, header::CONTENT_TYPE),
            amz_date: header_text(headers, "x-amz-date"),
            source_ip: request.extensions().get::<ClientAddr>().map(|a| a.0.ip()),
            request_id: request
                .extensions()
                .get::<RequestId>()
                .map(|r| r.as_str().to_owned()),
            observed: observed.clone(),
            config: self.config.clone(),
            scan: scan.clone(),
            upload,
            part_number,
            live_read: headers
                .get("x-backblaze-live-read-enabled")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
        };
        if too_long {
            // Refused before a byte moves, as S3 refuses a document that
            // cannot be a valid key list.
            return ResponseFuture::rejected(pending, too_long_error());
        }
        request.extensions_mut().insert(observed);
        let request = request.map(|body| NotifyRequestBody::new(body, scan));
        ResponseFuture::new(self.inner.call(request), pending)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tower::{Layer, ServiceExt};

    use crate::notify::{Classified, Event, NotifyLayer, NotifyRequestBody, S3Operation};

    async fn event_for(request: http::Request<String>) -> Event {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let service = NotifyLayer::new(move |event: Event| sink.lock().unwrap().push(event)).layer(
            tower::service_fn(|_: http::Request<NotifyRequestBody<String>>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
            }),
        );
        service.oneshot(request).await.unwrap();
        let mut events = events.lock().unwrap();
        assert_eq!(events.len(), 1);
        events.remove(0)
    }

    /// The proxy's request log classifies each request for its metrics and
    /// leaves the result in the extensions; the layer takes it as it is
    /// instead of classifying a second time.
    #[tokio::test]
    async fn a_classification_in_the_extensions_is_used_not_redone() {
        let mut request = http::Request::put("/photos/cat.jpg")
            .body(String::from("meow"))
            .unwrap();
        request.extensions_mut().insert(Classified {
            operation: S3Operation::PutObject,
            bucket: Some("classified-outside".into()),
            key: Some("by-the-request-log".into()),
        });
        let event = event_for(request).await;
        assert_eq!(event.bucket.as_deref(), Some("classified-outside"));
        assert_eq!(event.key.as_deref(), Some("by-the-request-log"));

        // Alone, the layer classifies the request itself.
        let request = http::Request::put("/photos/cat.jpg")
            .body(String::from("meow"))
            .unwrap();
        let event = event_for(request).await;
        assert_eq!(event.bucket.as_deref(), Some("photos"));
        assert_eq!(event.key.as_deref(), Some("cat.jpg"));
    }
}
