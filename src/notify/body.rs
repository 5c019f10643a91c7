//! [`NotifyBody`]: the response body, passed through frame by frame, watched
//! for its end (events at body end) or for the keys a DeleteObjects result
//! lists.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::classify::DeleteResultScanner;
use super::layer::EventEmitter;
use super::{Event, EventId};

enum Watching {
    End { started: Instant },
    DeleteResult { scanner: DeleteResultScanner },
}

/// What the body watches for, and the event it completes.
pub(crate) struct BodyWatch {
    template: Event,
    emitter: Arc<dyn EventEmitter>,
    watching: Watching,
    bytes_sent: u64,
    finished: bool,
}

impl BodyWatch {
    pub(crate) fn at_end(
        template: Event,
        emitter: Arc<dyn EventEmitter>,
        started: Instant,
    ) -> Self {
        BodyWatch {
            template,
            emitter,
            watching: Watching::End { started },
            bytes_sent: 0,
            finished: false,
        }
    }

    pub(crate) fn delete_objects(
        template: Event,
        emitter: Arc<dyn EventEmitter>,
        scanner: DeleteResultScanner,
    ) -> Self {
        BodyWatch {
            template,
            emitter,
            watching: Watching::DeleteResult { scanner },
            bytes_sent: 0,
            finished: false,
        }
    }

    fn on_data(&mut self, data: &[u8]) {
        self.bytes_sent += data.len() as u64;
        if let Watching::DeleteResult { scanner } = &mut self.watching {
            for deleted in scanner.feed(data) {
                let mut event = self.template.clone();
                event.id = EventId::new();
                event.operation = super::S3Operation::DeleteObject;
                event.key = Some(deleted.key);
                event.delete_marker = deleted.delete_marker;
                event.version_id = deleted.delete_marker_version_id.or(deleted.version_id);
                event.size = None;
                event.etag = None;
                self.emitter.emit(event);
            }
        }
    }

    fn finish(&mut self, aborted: bool) {
        if self.finished {
            return;
        }
        self.finished = true;
        if let Watching::End { started } = &self.watching {
            let mut event = self.template.clone();
            event.bytes_sent = Some(self.bytes_sent);
            event.aborted = aborted;
            event.duration_ms = started.elapsed().as_millis() as u64;
            self.emitter.emit(event);
        }
    }
}

impl Drop for BodyWatch {
    fn drop(&mut self) {
        // A body dropped before its end (client gone, error) still reports.
        self.finish(true);
    }
}

pin_project! {
    /// Response body of [`Notify`](super::Notify): the inner body, frame for
    /// frame.
    pub struct NotifyBody<B> {
        #[pin]
        inner: B,
        watch: Option<Box<BodyWatch>>,
    }
}

impl<B> NotifyBody<B> {
    pub(crate) fn new(inner: B, watch: Option<BodyWatch>) -> Self {
        NotifyBody {
            inner,
            watch: watch.map(Box::new),
        }
    }
}

impl<B> Body for NotifyBody<B>
where
    B: Body,
    B::Data: Buf,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let mut inner = this.inner;
        let frame = ready!(inner.as_mut().poll_frame(cx));
        if let Some(watch) = this.watch.as_mut() {
            match &frame {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        if data.has_remaining() {
                            watch.on_data(data.chunk());
                            // A Buf may be split in several chunks; Bytes never is.
                            let rest = data.remaining() - data.chunk().len();
                            if rest > 0 {
                                watch.bytes_sent += rest as u64;
                            }
                        }
                    }
                    // hyper stops polling a body that says it has ended
                    // (all of a Content-Length sent) and drops it without
                    // asking for the `None`: that end is not an abort.
                    if inner.is_end_stream() {
                        watch.finish(false);
                    }
                }
                Some(Err(_)) => watch.finish(true),
                None => watch.finish(false),
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> std::fmt::Debug for NotifyBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyBody")
            .field("watched", &self.watch.is_some())
            .finish_non_exhaustive()
    }
}
