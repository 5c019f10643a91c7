//! [`UpstreamBody`]: the upstream's response body, streamed, or the XML of an
//! error the client made up itself.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;

use crate::body::BoxError;

pin_project! {
    /// Response body of [`UpstreamClient`](super::UpstreamClient).
    pub struct UpstreamBody {
        #[pin]
        kind: Kind,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind {
        Streaming { #[pin] body: Incoming },
        Error { bytes: Option<Bytes> },
    }
}

impl UpstreamBody {
    pub(crate) fn streaming(body: Incoming) -> Self {
        UpstreamBody {
            kind: Kind::Streaming { body },
        }
    }

    pub(crate) fn error(bytes: Bytes) -> Self {
        UpstreamBody {
            kind: Kind::Error {
                bytes: (!bytes.is_empty()).then_some(bytes),
            },
        }
    }

    /// Whether this is an error the client produced (the upstream was not
    /// reached or did not answer) rather than the upstream's own response.
    pub fn is_gateway_error(&self) -> bool {
        matches!(self.kind, Kind::Error { .. })
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Streaming { body } => body.poll_frame(cx).map_err(Into::into),
            KindProj::Error { bytes } => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Streaming { body } => body.is_end_stream(),
            Kind::Error { bytes } => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Streaming { body } => body.size_hint(),
            Kind::Error { bytes } => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("gateway_error", &self.is_gateway_error())
            .finish_non_exhaustive()
    }
}
