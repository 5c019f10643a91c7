//! The answers to a form upload as S3 gives them: `204` by default, `200`
//! or `201` with a `PostResponse` document for `success_action_status`,
//! `303` to `success_action_redirect`; and [`PostResponseBody`].

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::body::StreamVerdict;
use super::error::PostError;
use super::service::rejection;
use crate::s3error::{escape_xml_into, RequestId};
use crate::sigv4::canonical::uri_encode;

pin_project! {
    /// Response body of [`PostObject`](super::PostObject): the wrapped
    /// stack's body, the form stack's body, or a document the layer wrote
    /// (an S3 error, a `PostResponse`).
    pub struct PostResponseBody<A, R> {
        #[pin]
        kind: Kind<A, R>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<A, R> {
        Other { #[pin] body: A },
        Form { #[pin] body: R },
        Fixed { bytes: Option<Bytes> },
    }
}

impl<A, R> PostResponseBody<A, R> {
    pub(crate) fn other(body: A) -> Self {
        PostResponseBody {
            kind: Kind::Other { body },
        }
    }

    fn form(body: R) -> Self {
        PostResponseBody {
            kind: Kind::Form { body },
        }
    }

    fn fixed(bytes: Bytes) -> Self {
        PostResponseBody {
            kind: Kind::Fixed {
                bytes: (!bytes.is_empty()).then_some(bytes),
            },
        }
    }
}

impl<A, R> Body for PostResponseBody<A, R>
where
    A: Body<Data = Bytes>,
    R: Body<Data = Bytes, Error = A::Error>,
{
    type Data = Bytes;
    type Error = A::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, A::Error>>> {
        match self.project().kind.project() {
            KindProj::Other { body } => body.poll_frame(cx),
            KindProj::Form { body } => body.poll_frame(cx),
            KindProj::Fixed { bytes } => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Other { body } => body.is_end_stream(),
            Kind::Form { body } => body.is_end_stream(),
            Kind::Fixed { bytes } => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Other { body } => body.size_hint(),
            Kind::Form { body } => body.size_hint(),
            Kind::Fixed { bytes } => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

/// The S3 error for a refused form upload.
pub(crate) fn refusal<A, R>(
    error: &PostError,
    resource: &str,
    request_id: &RequestId,
) -> Response<PostResponseBody<A, R>> {
    let mut response = error
        .to_s3_error()
        .to_response(resource, request_id.as_str(), false)
        .map(PostResponseBody::fixed);
    response.extensions_mut().insert(rejection(error));
    response
}

/// What the answer to an accepted form depends on.
pub(crate) struct Outcome {
    pub(crate) bucket: String,
    pub(crate) key: String,
    /// The object's URL, for `Location` and `PostResponse`.
    pub(crate) location: String,
    /// `success_action_redirect` (or the older `redirect`), when a URL.
    pub(crate) redirect: Option<String>,
    /// `success_action_status` as sent.
    pub(crate) status: Option<String>,
    /// A refusal found while the file streamed, if any.
    pub(crate) verdict: StreamVerdict,
}

impl Outcome {
    /// Turns the upstream's answer to the `PUT` into S3's answer to the form.
    pub(crate) fn finish<A, R>(
        self,
        response: Response<R>,
        resource: &str,
        request_id: &RequestId,
    ) -> Response<PostResponseBody<A, R>> {
        let refused = self
            .verdict
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(error) = refused {
            tracing::info!(
                reason = error.reason(),
                "form upload refused mid-stream: {error}"
            );
            return refusal(&error, resource, request_id);
        }
        if !response.status().is_success() {
            return response.map(PostResponseBody::form);
        }
        let (mut parts, _) = response.into_parts();
        let etag = parts
            .headers
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        parts.headers.remove(header::CONTENT_TYPE);
        let (status, body) = if let Some(redirect) = &self.redirect {
            let separator = if redirect.contains('?') { '&' } else { '?' };
            let target = format!(
                "{redirect}{separator}bucket={}&key={}&etag={}",
                uri_encode(self.bucket.as_bytes(), false),
                uri_encode(self.key.as_bytes(), false),
                uri_encode(etag.as_bytes(), false),
            );
            match HeaderValue::from_str(&target) {
                Ok(value) => {
                    parts.headers.insert(header::LOCATION, value);
                    (StatusCode::SEE_OTHER, Bytes::new())
                }
                Err(_) => (StatusCode::NO_CONTENT, Bytes::new()),
            }
        } else {
            if let Ok(value) = HeaderValue::from_str(&self.location) {
                parts.headers.insert(header::LOCATION, value);
            }
            match self.status.as_deref().map(str::trim) {
                Some("200") => (StatusCode::OK, Bytes::new()),
                Some("201") => {
                    parts.headers.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/xml"),
                    );
                    (StatusCode::CREATED, Bytes::from(self.post_response(&etag)))
                }
                _ => (StatusCode::NO_CONTENT, Bytes::new()),
            }
        };
        parts.status = status;
        if status == StatusCode::NO_CONTENT {
            parts.headers.remove(header::CONTENT_LENGTH);
        } else {
            parts
                .headers
                .insert(header::CONTENT_LENGTH, (body.len() as u64).into());
        }
        Response::from_parts(parts, PostResponseBody::fixed(body))
    }

    /// The `PostResponse` document of a `201`.
    fn post_response(&self, etag: &str) -> String {
        let mut xml =
            String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PostResponse><Location>");
        escape_xml_into(&mut xml, &self.location);
        xml.push_str("</Location><Bucket>");
        escape_xml_into(&mut xml, &self.bucket);
        xml.push_str("</Bucket><Key>");
        escape_xml_into(&mut xml, &self.key);
        xml.push_str("</Key><ETag>");
        escape_xml_into(&mut xml, etag);
        xml.push_str("</ETag></PostResponse>");
        xml
    }
}
