//! [`BucketNotifications`]: answers `GET`/`PUT /bucket?notification` itself,
//! passes everything else on.

use std::collections::HashSet;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use sha2::{Digest, Sha256};
use tower_service::Service;

use super::document;
use super::future::ResponseFuture;
use super::NotificationStore;
use crate::body::BoxError;
use crate::s3error::{new_request_id, RequestId, S3Error, S3ErrorCode};
use crate::sigv4::PayloadMode;
use crate::verified::Verified;

/// The largest configuration document read. S3 documents no limit; a
/// hundred configurations fit in a few tens of KiB.
pub(super) const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

pub(super) struct Shared {
    pub(super) store: Arc<NotificationStore>,
    pub(super) managers: HashSet<String>,
    pub(super) virtual_host_suffix: Option<String>,
    pub(super) check_payload_hash: bool,
}

/// The service [`BucketNotificationsLayer`](super::BucketNotificationsLayer)
/// makes.
#[derive(Clone)]
pub(crate) struct BucketNotifications<S> {
    pub(super) inner: S,
    pub(super) shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for BucketNotifications<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketNotifications")
            .field("managers", &self.shared.managers.len())
            .finish_non_exhaustive()
    }
}

/// The bucket of a `?notification` request on a bucket (not an object).
fn notification_bucket<B>(
    request: &Request<B>,
    virtual_host_suffix: Option<&str>,
) -> Option<String> {
    let query = request.uri().query()?;
    if !query
        .split('&')
        .any(|param| param.split('=').next() == Some("notification"))
    {
        return None;
    }
    let classified = crate::notify::classify(
        request.method(),
        request.uri(),
        request.headers(),
        virtual_host_suffix,
    );
    match (classified.bucket, classified.key) {
        (Some(bucket), None) => Some(bucket),
        _ => None,
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for BucketNotifications<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: http_body::Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
{
    type Response = Response<crate::body::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        match notification_bucket(&request, self.shared.virtual_host_suffix.as_deref()) {
            None => ResponseFuture::inner(self.inner.call(request)),
            Some(bucket) => {
                if let Some(verified) = request.extensions().get::<Verified>() {
                    tracing::Span::current()
                        .record("access_key_id", verified.access_key_id.as_str());
                }
                ResponseFuture::local(Box::pin(answer(self.shared.clone(), bucket, request)))
            }
        }
    }
}

async fn answer<B>(shared: Arc<Shared>, bucket: String, request: Request<B>) -> Response<Bytes>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map_or_else(new_request_id, |id| id.as_str().to_owned());
    let resource = format!("/{bucket}");
    let is_head = request.method() == Method::HEAD;
    let fail = |error: S3Error| error.to_response(&resource, &request_id, is_head);
    match respond(&shared, &bucket, request).await {
        Ok(response) => {
            let mut response = response;
            if let Ok(value) = HeaderValue::from_str(&request_id) {
                response.headers_mut().insert("x-amz-request-id", value);
            }
            response
        }
        Err(error) => {
            tracing::debug!(bucket, "bucket notification request refused: {error}");
            fail(error)
        }
    }
}

async fn respond<B>(
    shared: &Shared,
    bucket: &str,
    request: Request<B>,
) -> Result<Response<Bytes>, S3Error>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let verified = request.extensions().get::<Verified>();
    let allowed = verified.is_some_and(|v| shared.managers.contains(&v.access_key_id));
    if !allowed {
        return Err(S3Error::new(S3ErrorCode::AccessDenied, "Access Denied"));
    }
    let payload = verified.map(|v| v.payload);
    match *request.method() {
        Method::GET => {
            let xml = document::render(&shared.store.get(bucket));
            let mut response = Response::new(Bytes::from(xml));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/xml"),
            );
            Ok(response)
        }
        Method::PUT => {
            let body =
                read_document(request.into_body(), payload, shared.check_payload_hash).await?;
            let store = &shared.store;
            let configs = document::parse(
                &body,
                |sink| store.has_sink(sink),
                || uuid::Uuid::now_v7().to_string(),
            )?;
            let count = configs.len();
            let store = shared.store.clone();
            let owned_bucket = bucket.to_owned();
            tokio::task::spawn_blocking(move || store.put(&owned_bucket, configs))
                .await
                .map_err(|e| internal(format!("the store task failed: {e}")))?
                .map_err(|e| {
                    tracing::error!(
                        "bucket {bucket}: cannot store the notification configuration: {e}"
                    );
                    internal("The notification configuration could not be stored.".to_owned())
                })?;
            tracing::info!(
                bucket,
                configurations = count,
                "bucket notification configuration replaced"
            );
            let mut response = Response::new(Bytes::new());
            *response.status_mut() = StatusCode::OK;
            Ok(response)
        }
        _ => Err(S3Error::new(
            S3ErrorCode::MethodNotAllowed,
            "The specified method is not allowed against this resource.",
        )
        .with_detail("Method", request.method().as_str())
        .with_detail("ResourceType", "BUCKET")),
    }
}

fn internal(message: String) -> S3Error {
    S3Error::new(S3ErrorCode::InternalError, message)
}

/// The request body, at most [`MAX_DOCUMENT_BYTES`], its hex payload hash
/// checked when the verifier left that to the upstream.
async fn read_document<B>(
    body: B,
    payload: Option<PayloadMode>,
    check_payload_hash: bool,
) -> Result<Bytes, S3Error>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let too_large = || {
        S3Error::new(
            S3ErrorCode::InvalidRequest,
            format!("The notification configuration is larger than {MAX_DOCUMENT_BYTES} bytes."),
        )
    };
    if http_body::Body::size_hint(&body)
        .upper()
        .is_some_and(|len| len > MAX_DOCUMENT_BYTES as u64)
    {
        return Err(too_large());
    }
    let body = Limited::new(body, MAX_DOCUMENT_BYTES)
        .collect()
        .await
        .map_err(|error| {
            if error.downcast_ref::<LengthLimitError>().is_some() {
                too_large()
            } else {
                // A verification failure: the verifier answers with the
                // precise error in place of this one.
                S3Error::new(
                    S3ErrorCode::IncompleteBody,
                    "The request body could not be read.",
                )
            }
        })?
        .to_bytes();
    if let (true, Some(PayloadMode::Hex(expected))) = (check_payload_hash, payload) {
        if Sha256::digest(&body).as_slice() != expected {
            return Err(S3Error::new(
                S3ErrorCode::XAmzContentSHA256Mismatch,
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            ));
        }
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bucket_notification_requests_are_taken() {
        let request = |method: &str, uri: &str, host: &str| {
            Request::builder()
                .method(method)
                .uri(uri)
                .header("host", host)
                .body(())
                .unwrap()
        };
        let cases: &[(&str, &str, Option<&str>, Option<&str>)] = &[
            ("/photos?notification", "h", None, Some("photos")),
            ("/photos?notification=", "h", None, Some("photos")),
            ("/photos/?notification", "h", None, Some("photos")),
            ("/photos?x-id=Get&notification", "h", None, Some("photos")),
            ("/photos/key?notification", "h", None, None),
            ("/photos?notifications", "h", None, None),
            ("/photos?list-type=2&prefix=notification", "h", None, None),
            ("/photos", "h", None, None),
            ("/?notification", "h", None, None),
            (
                "/?notification",
                "photos.s3.local",
                Some("s3.local"),
                Some("photos"),
            ),
        ];
        for (uri, host, suffix, want) in cases {
            let got = notification_bucket(&request("GET", uri, host), *suffix);
            assert_eq!(got.as_deref(), *want, "{uri} {host}");
        }
    }
}
