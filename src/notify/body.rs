//! The bodies of [`Notify`](super::Notify): [`NotifyRequestBody`], the
//! request body passed on frame by frame and read on the way for the key
//! list of a DeleteObjects or the part list of a CompleteMultipartUpload;
//! and [`NotifyBody`], the response body, watched for its end (events at
//! body end), for the keys a DeleteObjects result lists, or for the result
//! (ETag or `<Error>`) of a completion or a copy.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::layer::{Commit, EmitOn, EventEmitter, SizeLookup};
use super::parts::{PartSizes, UploadKey};
use super::scan::{
    DeleteRequestScanner, DeleteResultScanner, DeletedKey, PartListScanner, ResultScanner,
};
use super::{Event, EventId, S3Operation};
use crate::body::{BoxError, ResponseBody};

// ---- the request body -------------------------------------------------------

/// What the request body is read for.
pub(crate) enum RequestScan {
    Delete(DeleteRequestScanner),
    Parts(PartListScanner),
}

/// The scan, shared between the request body (which feeds it) and the
/// response side (which reads it once the upstream has answered).
pub(crate) type SharedScan = Arc<Mutex<RequestScan>>;

pub(crate) fn lock(scan: &SharedScan) -> std::sync::MutexGuard<'_, RequestScan> {
    scan.lock().unwrap_or_else(|p| p.into_inner())
}

/// The request body ended early because it broke a limit of the layer.
#[derive(Debug, thiserror::Error)]
#[error("the DeleteObjects request is over {MAX} keys or {BYTES} bytes", MAX = super::MAX_DELETE_KEYS, BYTES = super::MAX_DELETE_REQUEST_BYTES)]
pub(crate) struct OverLimit;

pin_project! {
    /// Request body of [`Notify`](super::Notify): the client's body, frame
    /// for frame (no copy, no holding back). For DeleteObjects and
    /// CompleteMultipartUpload the bytes are also read, on the way, for the
    /// key or part list; a DeleteObjects body over
    /// [`MAX_DELETE_KEYS`](super::MAX_DELETE_KEYS) keys or
    /// [`MAX_DELETE_REQUEST_BYTES`](super::MAX_DELETE_REQUEST_BYTES) bytes
    /// ends with an error at the frame that breaks the limit, so the
    /// upstream never receives a complete document and deletes nothing.
    pub struct NotifyRequestBody<B> {
        #[pin]
        inner: B,
        scan: Option<SharedScan>,
    }
}

impl<B> NotifyRequestBody<B> {
    pub(crate) fn new(inner: B, scan: Option<SharedScan>) -> Self {
        NotifyRequestBody { inner, scan }
    }
}

impl<B> Body for NotifyRequestBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let frame = match ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(error)) => return Poll::Ready(Some(Err(error.into()))),
            None => return Poll::Ready(None),
        };
        if let (Some(scan), Some(data)) = (this.scan.as_ref(), frame.data_ref()) {
            let within = match &mut *lock(scan) {
                RequestScan::Delete(scanner) => scanner.feed(data),
                RequestScan::Parts(scanner) => {
                    scanner.feed(data);
                    true
                }
            };
            if !within {
                *this.scan = None;
                return Poll::Ready(Some(Err(Box::new(OverLimit))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> std::fmt::Debug for NotifyRequestBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyRequestBody")
            .field("read", &self.scan.is_some())
            .finish_non_exhaustive()
    }
}

// ---- the response body ------------------------------------------------------

/// How a result body completes its event.
pub(crate) struct ResultWatch {
    pub(crate) scanner: ResultScanner,
    pub(crate) emit_on: EmitOn,
    pub(crate) started: Instant,
    /// A completion: the upload whose part sizes to sum, and the request's
    /// part list.
    pub(crate) upload: Option<(Arc<PartSizes>, UploadKey, Option<SharedScan>)>,
    pub(crate) size_lookup: Option<Arc<dyn SizeLookup>>,
}

/// A quiet DeleteObjects: the keys the request named, reported at the end
/// unless the result lists them as errors.
pub(crate) struct QuietDelete {
    pub(crate) requested: Vec<(String, Option<String>)>,
    /// `<Deleted>` entries an upstream listed anyway (some ignore
    /// `<Quiet>`), for their version and marker details.
    listed: HashMap<(String, Option<String>), DeletedKey>,
}

impl QuietDelete {
    pub(crate) fn new(requested: Vec<(String, Option<String>)>) -> Self {
        QuietDelete {
            requested,
            listed: HashMap::new(),
        }
    }
}

enum Watching {
    End {
        started: Instant,
    },
    DeleteResult {
        scanner: Box<DeleteResultScanner>,
        quiet: Option<QuietDelete>,
    },
    Result(Box<ResultWatch>),
}

/// What the body watches for, and the event it completes.
pub(crate) struct BodyWatch {
    template: Event,
    emitter: Arc<dyn EventEmitter>,
    watching: Watching,
    bytes_sent: u64,
    finished: bool,
    /// Commit the events before the body's last frame goes out
    /// (`NotifyLayer::commit_before_answer`).
    commit: bool,
    /// The commits still in progress.
    commits: Vec<Commit>,
}

impl BodyWatch {
    pub(crate) fn at_end(
        template: Event,
        emitter: Arc<dyn EventEmitter>,
        started: Instant,
    ) -> Self {
        Self::with(template, emitter, Watching::End { started })
    }

    /// One event per deleted key: as each `<Deleted>` closes, or, for a
    /// quiet request, per requested key at the end.
    pub(crate) fn delete_objects(
        template: Event,
        emitter: Arc<dyn EventEmitter>,
        quiet: Option<QuietDelete>,
    ) -> Self {
        Self::with(
            template,
            emitter,
            Watching::DeleteResult {
                scanner: Box::new(DeleteResultScanner::new()),
                quiet,
            },
        )
    }

    /// The event of a completion or copy, emitted once the result is read.
    pub(crate) fn result(
        template: Event,
        emitter: Arc<dyn EventEmitter>,
        watch: ResultWatch,
    ) -> Self {
        Self::with(template, emitter, Watching::Result(Box::new(watch)))
    }

    fn with(template: Event, emitter: Arc<dyn EventEmitter>, watching: Watching) -> Self {
        BodyWatch {
            template,
            emitter,
            watching,
            bytes_sent: 0,
            finished: false,
            commit: false,
            commits: Vec::new(),
        }
    }

    /// Holds the body's last frame until the events are committed.
    pub(crate) fn commit_before_end(mut self, commit: bool) -> Self {
        self.commit = commit;
        self
    }

    fn send(&mut self, event: Event) {
        if self.commit {
            if let Some(commit) = self.emitter.emit_committed(event) {
                self.commits.push(commit);
            }
        } else {
            self.emitter.emit(event);
        }
    }

    /// Waits for every commit started so far.
    fn poll_commits(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.commits
            .retain_mut(|commit| commit.as_mut().poll(cx).is_pending());
        if self.commits.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn deleted_event(&self, deleted: DeletedKey) -> Event {
        let mut event = self.template.clone();
        event.id = EventId::new();
        event.operation = S3Operation::DeleteObject;
        event.key = Some(deleted.key);
        event.delete_marker = deleted.delete_marker;
        event.version_id = deleted.delete_marker_version_id.or(deleted.version_id);
        event.size = None;
        event.etag = None;
        event
    }

    fn on_data(&mut self, data: &[u8]) {
        self.bytes_sent += data.len() as u64;
        match &mut self.watching {
            Watching::DeleteResult { scanner, quiet } => {
                let deleted = scanner.feed(data);
                match quiet {
                    Some(quiet) => {
                        for entry in deleted {
                            if quiet.listed.len() < super::MAX_DELETE_KEYS {
                                quiet
                                    .listed
                                    .insert((entry.key.clone(), entry.version_id.clone()), entry);
                            }
                        }
                    }
                    None => {
                        for entry in deleted {
                            let event = self.deleted_event(entry);
                            self.send(event);
                        }
                    }
                }
            }
            Watching::Result(watch) => watch.scanner.feed(data),
            Watching::End { .. } => {}
        }
    }

    fn finish(&mut self, aborted: bool) {
        if self.finished {
            return;
        }
        self.finished = true;
        match std::mem::replace(
            &mut self.watching,
            Watching::End {
                started: Instant::now(),
            },
        ) {
            Watching::End { started } => {
                let mut event = self.template.clone();
                event.bytes_sent = Some(self.bytes_sent);
                event.aborted = aborted;
                event.duration_ms = started.elapsed().as_millis() as u64;
                self.send(event);
            }
            Watching::DeleteResult {
                scanner,
                quiet: Some(mut quiet),
            } => {
                if scanner.is_error_document() {
                    return;
                }
                let failed = scanner.failed();
                for (key, version_id) in std::mem::take(&mut quiet.requested) {
                    // An error names the key, and the version when the
                    // request named one.
                    let refused = failed
                        .iter()
                        .any(|(k, v)| *k == key && (v.is_none() || *v == version_id));
                    if refused {
                        continue;
                    }
                    let entry = quiet
                        .listed
                        .remove(&(key.clone(), version_id.clone()))
                        .unwrap_or(DeletedKey {
                            key,
                            version_id,
                            ..DeletedKey::default()
                        });
                    let event = self.deleted_event(entry);
                    self.send(event);
                }
            }
            Watching::DeleteResult { quiet: None, .. } => {}
            Watching::Result(watch) => self.finish_result(*watch, aborted),
        }
    }

    fn finish_result(&mut self, watch: ResultWatch, aborted: bool) {
        let mut event = self.template.clone();
        let scanner = watch.scanner;
        let complete = scanner.complete;
        if scanner.error {
            event.error_code = Some(scanner.code.unwrap_or_else(|| "InternalError".to_owned()));
        } else if let Some(etag) = scanner.etag {
            event.etag = Some(etag);
        }
        event.aborted = aborted;
        if watch.emit_on == EmitOn::BodyEnd {
            event.bytes_sent = Some(self.bytes_sent);
            event.duration_ms = watch.started.elapsed().as_millis() as u64;
        }
        if let Some((parts, upload, scan)) = watch.upload {
            // A failed completion can be retried: keep its parts.
            if event.succeeded() && complete {
                let listed = scan.as_ref().and_then(|scan| match &*lock(scan) {
                    RequestScan::Parts(parts) if parts.complete && !parts.unreadable => {
                        Some(parts.parts.clone())
                    }
                    _ => None,
                });
                event.size = parts.take(&upload, listed.as_deref());
            }
        }
        match &watch.size_lookup {
            Some(lookup) if event.size.is_none() && event.succeeded() => {
                lookup.complete(event, self.emitter.clone())
            }
            _ => self.send(event),
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
    /// frame, or the S3 error the layer answered with.
    pub struct NotifyBody<B> {
        #[pin]
        inner: ResponseBody<B>,
        watch: Option<Box<BodyWatch>>,
        // With a commit before the answer: the frame held back until the
        // next one arrives or, for the last, until the events are
        // committed; and whether the inner body has ended.
        held: Option<Frame<Bytes>>,
        ended: bool,
    }
}

impl<B> NotifyBody<B> {
    pub(crate) fn new(inner: ResponseBody<B>, watch: Option<BodyWatch>) -> Self {
        NotifyBody {
            inner,
            watch: watch.map(Box::new),
            held: None,
            ended: false,
        }
    }
}

impl<B> Body for NotifyBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        if let Some(watch) = this.watch.as_mut().filter(|watch| watch.commit) {
            // One frame behind the inner body, so that the last one waits
            // for the commit: a client that has the whole answer knows its
            // events are durable.
            loop {
                if *this.ended {
                    ready!(watch.poll_commits(cx));
                    return Poll::Ready(this.held.take().map(Ok));
                }
                match ready!(this.inner.as_mut().poll_frame(cx)) {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            if !data.is_empty() {
                                watch.on_data(data);
                            }
                        }
                        let previous = this.held.replace(frame);
                        if this.inner.is_end_stream() {
                            watch.finish(false);
                            *this.ended = true;
                        }
                        if let Some(previous) = previous {
                            return Poll::Ready(Some(Ok(previous)));
                        }
                    }
                    Some(Err(error)) => {
                        watch.finish(true);
                        return Poll::Ready(Some(Err(error)));
                    }
                    None => {
                        watch.finish(false);
                        *this.ended = true;
                    }
                }
            }
        }
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if let Some(watch) = this.watch.as_mut() {
            match &frame {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        if !data.is_empty() {
                            watch.on_data(data);
                        }
                    }
                    // A server may stop polling once the body says it has
                    // ended, without asking for the final `None`.
                    if this.inner.is_end_stream() {
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
        self.held.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.held {
            None => self.inner.size_hint(),
            // The held frame's bytes are not the inner body's any more.
            Some(frame) => {
                let held = frame.data_ref().map_or(0, |data| data.len() as u64);
                let inner = self.inner.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + held);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + held);
                }
                hint
            }
        }
    }
}

impl<B> std::fmt::Debug for NotifyBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyBody")
            .field("watched", &self.watch.is_some())
            .finish_non_exhaustive()
    }
}
