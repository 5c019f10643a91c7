//! [`ResponseFuture`] of [`Notify`](super::Notify): builds the event from the
//! response head, and emits it now or hands it to the body (which reads a
//! DeleteObjects result, or the result of a completion or copy, first).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Instant, SystemTime};

use http::{header, Response};
use pin_project_lite::pin_project;

use super::body::{lock, BodyWatch, NotifyBody, QuietDelete, RequestScan, ResultWatch, SharedScan};
use super::classify::Classified;
use super::layer::{Commit, EmitOn, NotifyConfig};
use super::parts::UploadKey;
use super::scan::ResultScanner;
use super::{ContentChecksum, Event, EventId, S3Operation};
use crate::body::ResponseBody;
use crate::s3error::{new_request_id, S3Error};
use crate::verified::{Observed, Rejection};

pub(crate) struct PendingEvent {
    pub(crate) started: Instant,
    pub(crate) time: SystemTime,
    pub(crate) classified: Classified,
    pub(crate) method: String,
    pub(crate) request_uri: String,
    pub(crate) content_length: Option<u64>,
    pub(crate) decoded_content_length: Option<u64>,
    pub(crate) content_type: Option<String>,
    pub(crate) amz_date: Option<String>,
    pub(crate) source_ip: Option<IpAddr>,
    pub(crate) request_id: Option<String>,
    pub(crate) observed: Observed,
    pub(crate) config: Arc<NotifyConfig>,
    /// The request body's key or part list, as it is read.
    pub(crate) scan: Option<SharedScan>,
    /// The multipart upload an UploadPart, completion or abort is about.
    pub(crate) upload: Option<UploadKey>,
    /// An UploadPart's part number.
    pub(crate) part_number: Option<u32>,
    /// The request asked B2 for Live Read (`x-backblaze-live-read-enabled`).
    pub(crate) live_read: bool,
}

pin_project! {
    /// Response future of [`Notify`](super::Notify).
    pub struct ResponseFuture<F, B> {
        #[pin]
        inner: Option<F>,
        pending: Option<Box<PendingEvent>>,
        rejected: Option<S3Error>,
        // The answer, held until its event is committed
        // (`NotifyLayer::commit_before_answer`).
        held: Option<(Commit, Response<NotifyBody<B>>)>,
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn new(inner: F, pending: PendingEvent) -> Self {
        ResponseFuture {
            inner: Some(inner),
            pending: Some(Box::new(pending)),
            rejected: None,
            held: None,
        }
    }

    /// Answers `error` without calling the inner service.
    pub(crate) fn rejected(pending: PendingEvent, error: S3Error) -> Self {
        ResponseFuture {
            inner: None,
            pending: Some(Box::new(pending)),
            rejected: Some(error),
            held: None,
        }
    }
}

impl PendingEvent {
    /// The S3 error response the layer answers with.
    fn error_response<B>(&self, error: &S3Error) -> Response<ResponseBody<B>> {
        let request_id = self.request_id.clone().unwrap_or_else(new_request_id);
        // The `<Resource>`: the request's path.
        let resource = self
            .request_uri
            .parse::<http::Uri>()
            .map(|uri| uri.path().to_owned())
            .unwrap_or_default();
        let mut response = error
            .to_response(&resource, &request_id, self.method == "HEAD")
            .map(ResponseBody::error);
        response.extensions_mut().insert(Rejection {
            layer: "notify",
            reason: "delete_objects_too_large",
        });
        response
    }

    /// Whether the request body broke a limit on the way up.
    fn over_limit(&self) -> bool {
        self.scan
            .as_ref()
            .is_some_and(|scan| matches!(&*lock(scan), RequestScan::Delete(s) if s.over_limit))
    }

    /// The requested keys of a quiet DeleteObjects whose list was read
    /// whole; `None` for a request that is not quiet or was not read.
    fn quiet_delete(&self) -> Option<QuietDelete> {
        let scan = self.scan.as_ref()?;
        let guard = lock(scan);
        let RequestScan::Delete(request) = &*guard else {
            return None;
        };
        if !request.quiet {
            return None;
        }
        if !request.complete || request.unreadable || request.over_limit {
            tracing::debug!(
                "quiet DeleteObjects request not read whole; events come from the response alone"
            );
            return None;
        }
        Some(QuietDelete::new(request.objects.clone()))
    }
}

fn header_text(headers: &http::HeaderMap, name: impl header::AsHeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The object size of a read: the total from `Content-Range` for a range
/// request, else the response length.
fn object_size_of_read(headers: &http::HeaderMap) -> Option<u64> {
    if let Some(total) = header_text(headers, header::CONTENT_RANGE)
        .and_then(|range| range.rsplit('/').next().and_then(|t| t.parse().ok()))
    {
        return Some(total);
    }
    header_text(headers, header::CONTENT_LENGTH).and_then(|v| v.parse().ok())
}

impl PendingEvent {
    fn build<B>(&self, response: &Response<B>) -> Event {
        let headers = response.headers();
        let facts = self.observed.facts();
        let operation = self.classified.operation;
        let uploaded_size = facts
            .decoded_content_length
            .or(self.decoded_content_length)
            .or(self.content_length);
        let (size, content_type) = match operation {
            S3Operation::PutObject | S3Operation::UploadPart | S3Operation::PostObject => {
                let content_type = facts.object_content_type.clone();
                (
                    uploaded_size,
                    content_type.or_else(|| self.content_type.clone()),
                )
            }
            S3Operation::GetObject | S3Operation::HeadObject => (
                object_size_of_read(headers),
                header_text(headers, header::CONTENT_TYPE),
            ),
            _ => (None, self.content_type.clone()),
        };
        // Digests the verifier checked describe the object only where the
        // request payload is the object's (or the part's) data; a
        // CompleteMultipartUpload's or DeleteObjects' body is XML.
        let payload_is_data = matches!(operation, S3Operation::PutObject | S3Operation::UploadPart);
        let content_sha256 = facts
            .payload_sha256
            .filter(|_| payload_is_data)
            .map(hex::encode);
        let checksum = facts
            .payload_checksum
            .clone()
            .filter(|_| payload_is_data)
            .map(|(algorithm, digest)| {
                use base64::Engine as _;
                ContentChecksum {
                    algorithm: algorithm.name().to_owned(),
                    value: base64::engine::general_purpose::STANDARD.encode(digest),
                }
            });
        let mut event = Event {
            id: EventId::new(),
            time: self.time,
            operation,
            bucket: self.classified.bucket.clone(),
            // A form upload names its key in the form (PostObjectLayer).
            key: facts
                .object_key
                .clone()
                .or_else(|| self.classified.key.clone()),
            version_id: header_text(headers, "x-amz-version-id"),
            size,
            etag: header_text(headers, header::ETAG).map(|e| e.trim_matches('"').to_owned()),
            content_type,
            status: response.status().as_u16(),
            method: self.method.clone(),
            url: facts
                .upstream_url
                .unwrap_or_else(|| self.request_uri.clone()),
            signature_timestamp: facts.signature_timestamp.or_else(|| self.amz_date.clone()),
            access_key_id: facts.access_key_id,
            source_ip: self.source_ip,
            upstream_request_id: header_text(headers, "x-amz-request-id"),
            request_id: self.request_id.clone(),
            content_length: self.content_length,
            duration_ms: self.started.elapsed().as_millis() as u64,
            bytes_sent: None,
            aborted: false,
            matched_rule: None,
            delete_marker: header_text(headers, "x-amz-delete-marker")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
            identity: facts.identity,
            error_code: None,
            live_read: false,
            content_sha256: None,
            checksum: None,
            request_content_type: None,
        };
        if matches!(operation, S3Operation::GetObject | S3Operation::HeadObject) {
            event.request_content_type = self.content_type.clone();
        }
        event.live_read = self.live_read && operation == S3Operation::CreateMultipartUpload;
        event.content_sha256 = content_sha256;
        event.checksum = checksum;
        event
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<NotifyBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some((commit, _)) = this.held.as_mut() {
            ready!(commit.as_mut().poll(cx));
            let (_, response) = this.held.take().expect("held above");
            return Poll::Ready(Ok(response));
        }
        let (response, layer_error) = match this.rejected.take() {
            Some(error) => {
                let pending = this.pending.as_ref().expect("polled after completion");
                (pending.error_response(&error), Some(error))
            }
            None => {
                let outcome = ready!(this
                    .inner
                    .as_pin_mut()
                    .expect("polled after completion")
                    .poll(cx));
                let pending = this.pending.as_ref().expect("polled after completion");
                // A body cut short for breaking a limit makes whatever the
                // inner service answered (an aborted upload's error) moot.
                if pending.over_limit() {
                    let error = super::scan::too_long_error();
                    (pending.error_response(&error), Some(error))
                } else {
                    (outcome?.map(ResponseBody::inner), None)
                }
            }
        };
        let pending = this.pending.take().expect("polled after completion");
        let mut event = pending.build(&response);
        let config = pending.config.clone();
        let success = response.status().is_success();
        if let Some(error) = &layer_error {
            event.error_code = Some(error.code().as_str().to_owned());
        }
        let operation = event.operation;
        // Whether the answer waits for the events' commit.
        let commit = config.commit && event.may_change_state();
        match (&pending.upload, operation) {
            (Some(upload), S3Operation::UploadPart) if success => {
                if let Some(number) = pending.part_number {
                    config.parts.record(upload.clone(), number, event.size);
                }
            }
            (Some(upload), S3Operation::AbortMultipartUpload) if success => {
                config.parts.take(upload, None);
            }
            _ => {}
        }
        let watch = if layer_error.is_some() {
            config.emitter.emit(event);
            None
        } else if operation == S3Operation::DeleteObjects && success {
            // One event per deleted key, read from the result while it
            // streams to the client (or, for a quiet request, per requested
            // key the result does not list as an error).
            Some(BodyWatch::delete_objects(
                event,
                config.emitter.clone(),
                pending.quiet_delete(),
            ))
            .map(|watch| watch.commit_before_end(commit))
        } else if success
            && matches!(
                operation,
                S3Operation::CompleteMultipartUpload
                    | S3Operation::CopyObject
                    | S3Operation::UploadPartCopy
            )
        {
            // A 200 whose body may still say `<Error>`: the event waits for
            // the (small) result, in either emit mode.
            let upload = match (operation, &pending.upload) {
                (S3Operation::CompleteMultipartUpload, Some(upload)) => {
                    Some((config.parts.clone(), upload.clone(), pending.scan.clone()))
                }
                _ => None,
            };
            let size_lookup = match operation {
                S3Operation::CompleteMultipartUpload | S3Operation::CopyObject => {
                    config.size_lookup.clone()
                }
                _ => None,
            };
            Some(
                BodyWatch::result(
                    event,
                    config.emitter.clone(),
                    ResultWatch {
                        scanner: ResultScanner::new(),
                        emit_on: config.emit_on,
                        started: pending.started,
                        upload,
                        size_lookup,
                    },
                )
                .commit_before_end(commit),
            )
        } else if config.emit_on == EmitOn::BodyEnd {
            Some(
                BodyWatch::at_end(event, config.emitter.clone(), pending.started)
                    .commit_before_end(commit),
            )
        } else if commit {
            let response = response.map(|body| NotifyBody::new(body, None));
            match config.emitter.emit_committed(event) {
                Some(mut commit) => {
                    if commit.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Ok(response));
                    }
                    *this.held = Some((commit, response));
                    return Poll::Pending;
                }
                None => return Poll::Ready(Ok(response)),
            }
        } else {
            config.emitter.emit(event);
            None
        };
        Poll::Ready(Ok(response.map(|body| NotifyBody::new(body, watch))))
    }
}
