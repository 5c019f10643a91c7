//! Bodies shared by the layers: [`ResponseBody`], the inner service's
//! response body or an S3 error document.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::s3error::{new_request_id, S3Error};

/// Boxed error type of the request bodies the layers produce.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The S3 error response for `error`, with a fresh request id, as any
/// layer's response type.
pub fn s3_error_response<B>(
    error: &S3Error,
    resource: &str,
    is_head: bool,
) -> http::Response<ResponseBody<B>> {
    error
        .to_response(resource, &new_request_id(), is_head)
        .map(ResponseBody::error)
}

pin_project! {
    /// Response body of the s3tap layers: the inner service's body, or an S3
    /// XML error document the layer answered with.
    pub struct ResponseBody<B> {
        #[pin]
        inner: Option<B>,
        error: Option<Bytes>,
    }
}

impl<B> ResponseBody<B> {
    /// Wraps the inner service's body.
    pub fn inner(body: B) -> Self {
        ResponseBody {
            inner: Some(body),
            error: None,
        }
    }

    /// A fixed document (an S3 error); empty for HEAD responses.
    pub fn error(body: Bytes) -> Self {
        ResponseBody {
            inner: None,
            error: (!body.is_empty()).then_some(body),
        }
    }

    /// Whether this is an S3 error produced by the layer.
    pub fn is_error(&self) -> bool {
        self.inner.is_none()
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        match this.inner.as_pin_mut() {
            Some(body) => body.poll_frame(cx),
            None => Poll::Ready(this.error.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Some(body) => body.is_end_stream(),
            None => self.error.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(body) => body.size_hint(),
            None => SizeHint::with_exact(self.error.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

/// Helpers for the body tests of the layers that use them.
#[cfg(all(test, any(feature = "transform", feature = "b2-native")))]
pub(crate) mod testing {
    use bytes::Bytes;
    use http_body::Body;
    use http_body_util::BodyExt;

    /// Reads `body` frame by frame to its end: the data that came, and the
    /// error that ended it, if one did. Every frame must be data.
    pub(crate) async fn drain<B>(mut body: B) -> (Vec<u8>, Option<B::Error>)
    where
        B: Body<Data = Bytes> + Unpin,
    {
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    let data = frame
                        .into_data()
                        .unwrap_or_else(|_| panic!("a trailers frame"));
                    out.extend_from_slice(&data);
                }
                Err(error) => return (out, Some(error)),
            }
        }
        (out, None)
    }
}
