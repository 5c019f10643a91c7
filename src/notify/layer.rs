//! [`NotifyLayer`]: the builder users configure, and the [`EventEmitter`]
//! that receives what it produces.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::parts::PartSizes;
use super::service::Notify;
use super::Event;
use crate::addressing::ClientAddressing;

/// Receives events from [`NotifyLayer`]. Called on the response path, so it
/// must not block: queue the event and return (the
/// [`Dispatcher`](super) does exactly that).
///
/// An emitter that can make an event durable somewhere else (an outbox on
/// a replicated log) also implements
/// [`emit_committed`](Self::emit_committed); a layer built with
/// [`NotifyLayer::commit_before_answer`] then holds the answer to a
/// request that changed the store until the commit resolved.
pub trait EventEmitter: Send + Sync + 'static {
    /// Takes one event.
    fn emit(&self, event: Event);

    /// Takes one event and returns a future that resolves once the event is
    /// durable, or `None` when it already is as far as this emitter can
    /// tell. The default emits and returns `None`.
    ///
    /// The event is taken whether or not the future is polled: dropping
    /// the future (a client that went away) only stops the waiting. The
    /// future never fails: an emitter that cannot commit in time keeps the
    /// event by other means (a local spool) and resolves.
    fn emit_committed(&self, event: Event) -> Option<Commit> {
        self.emit(event);
        None
    }
}

/// A commit in progress, from [`EventEmitter::emit_committed`].
pub type Commit = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>>;

impl<F> EventEmitter for F
where
    F: Fn(Event) + Send + Sync + 'static,
{
    fn emit(&self, event: Event) {
        self(event)
    }
}

/// Completes an event whose object size the layer could not see (a copy, a
/// multipart upload whose parts did not all pass through it), for example
/// with a `HEAD` of the object at the upstream. Set with
/// [`NotifyLayer::size_lookup`]; the proxy's `[notify] head_for_size`.
///
/// Called on the response path, so it must not block: start the lookup
/// (spawn it) and return.
pub trait SizeLookup: Send + Sync + 'static {
    /// Sets `event.size` if it can find it, then hands the event to
    /// `emitter`: exactly once, with or without a size, whatever happens.
    fn complete(&self, event: Event, emitter: Arc<dyn EventEmitter>);
}

/// When an event is emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EmitOn {
    /// As soon as the response head arrives (the default, as the original
    /// Worker did): the operation's outcome is known.
    #[default]
    ResponseHead,
    /// When the response body has been sent (or dropped early, flagged as
    /// aborted), with the number of bytes sent.
    BodyEnd,
}

#[derive(Clone)]
pub(crate) struct NotifyConfig {
    pub(crate) emitter: Arc<dyn EventEmitter>,
    pub(crate) emit_on: EmitOn,
    pub(crate) addressing: ClientAddressing,
    pub(crate) size_lookup: Option<Arc<dyn SizeLookup>>,
    /// Part sizes of the multipart uploads in progress, shared by every
    /// service the layer makes.
    pub(crate) parts: Arc<PartSizes>,
    /// Hold the answer to a request that changed the store until its
    /// events are committed.
    pub(crate) commit: bool,
}

/// Emits an [`Event`] for every request that passes through, without ever
/// delaying the response.
///
/// See the [module docs](crate::notify).
#[derive(Clone)]
pub struct NotifyLayer {
    config: NotifyConfig,
}

impl NotifyLayer {
    /// Emits events to `emitter`, at response head.
    pub fn new(emitter: impl EventEmitter) -> Self {
        Self::from_arc(Arc::new(emitter))
    }

    /// Emits events to a shared emitter.
    pub fn from_arc(emitter: Arc<dyn EventEmitter>) -> Self {
        NotifyLayer {
            config: NotifyConfig {
                emitter,
                emit_on: EmitOn::ResponseHead,
                addressing: ClientAddressing::default(),
                size_lookup: None,
                parts: Arc::new(PartSizes::default()),
                commit: false,
            },
        }
    }

    /// Emits when the response body has been sent instead of at its head.
    pub fn emit_on_body_end(mut self) -> Self {
        self.config.emit_on = EmitOn::BodyEnd;
        self
    }

    /// Chooses when events are emitted.
    pub fn emit_on(mut self, emit_on: EmitOn) -> Self {
        self.config.emit_on = emit_on;
        self
    }

    /// Recognises `bucket.<suffix>` Host headers (virtual-hosted clients).
    pub fn client_virtual_host_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.config.addressing.set_virtual_host_suffix(suffix);
        self
    }

    /// Takes S3 requests under `prefix` (an app's `/s3/bucket/key` route):
    /// the bucket is the path segment after it. Give
    /// [`ResignLayer::client_path_prefix`](crate::resign::ResignLayer::client_path_prefix)
    /// the same prefix.
    pub fn client_path_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.addressing.set_path_prefix(prefix);
        self
    }

    /// Holds the answer to every request that may have changed the store
    /// (any method but `GET` and `HEAD`) until the emitter's
    /// [`emit_committed`](EventEmitter::emit_committed) resolved for each
    /// of its events: the head of an answer that carries its event there,
    /// the last bytes of a result the events are read from (DeleteObjects,
    /// a completion, a copy). A client that got its answer then knows the
    /// events are wherever the emitter commits them. Reads are never held.
    ///
    /// An event that waits for a [`size_lookup`](Self::size_lookup) is
    /// emitted after the lookup, not committed before the answer.
    pub fn commit_before_answer(mut self) -> Self {
        self.config.commit = true;
        self
    }

    /// Asks `lookup` for the size of an object created by a copy, or by a
    /// multipart upload whose parts the layer did not all see, before the
    /// event is emitted. Without it such events carry no size.
    pub fn size_lookup(mut self, lookup: impl SizeLookup) -> Self {
        self.config.size_lookup = Some(Arc::new(lookup));
        self
    }
}

impl<S> Layer<S> for NotifyLayer {
    type Service = Notify<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Notify::new(inner, Arc::new(self.config.clone()))
    }
}

impl fmt::Debug for NotifyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifyLayer")
            .field("emit_on", &self.config.emit_on)
            .field("addressing", &self.config.addressing)
            .field("size_lookup", &self.config.size_lookup.is_some())
            .field("commit_before_answer", &self.config.commit)
            .finish_non_exhaustive()
    }
}
