//! Event notifications: the [`NotifyLayer`], the [`Event`] model, S3
//! operation classification ([`classify()`]), the event-type vocabularies
//! ([`event_types`]), routing [`rules`], the wire [`format`](mod@format)s and
//! the dispatcher, with the [`RoutingEmitter`] that joins the layer to it
//! through the rules (feature `dispatcher`).
//!
//! [`NotifyLayer`] sits outermost in a stack: it classifies each request
//! (PutObject, CompleteMultipartUpload, DeleteObjects, ...), lets it through
//! untouched, and when the response head arrives (or, by option, when the
//! body has been sent) hands an [`Event`] to an [`EventEmitter`]: a queue,
//! never a network call, so the response is never delayed. Inner layers
//! (verification, re-signing) add what they learn (the client's key id, the
//! upstream URL) through the [`Observed`](crate::verified::Observed) request
//! extension. A DeleteObjects request yields one event per deleted key, read
//! from the result while it streams to the client, or, for a quiet request
//! (whose result lists only errors), from the key list the request body
//! named, read on the way up. CompleteMultipartUpload and copies answer
//! `200` before their outcome is known: their events wait for the result
//! body, which gives the ETag, or an `<Error>` that makes the event a
//! failure ([`Event::succeeded`]). A completion's size is the sum of the
//! parts uploaded through the layer, or what a [`SizeLookup`] finds.
//!
//! The inner service gets the request body as a [`NotifyRequestBody`].
//!
//! A layer in front that needs the classification first (the s3tap proxy's
//! request log labels its metrics with the operation) can classify the
//! request itself and put the [`Classified`] in the request's extensions:
//! the layer takes it from there instead of classifying again. It must be
//! classified with the same client addressing the layer has (virtual-host
//! suffix, path prefix).
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use s3tap::notify::{Event, NotifyLayer, NotifyRequestBody};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let events = Arc::new(Mutex::new(Vec::<Event>::new()));
//! let sink = events.clone();
//! let service = ServiceBuilder::new()
//!     .layer(NotifyLayer::new(move |event: Event| sink.lock().unwrap().push(event)))
//!     .service_fn(|_request: http::Request<NotifyRequestBody<String>>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
//!     });
//! let request = http::Request::put("/photos/cat.jpg").body(String::from("meow")).unwrap();
//! service.oneshot(request).await.unwrap();
//! let events = events.lock().unwrap();
//! assert_eq!(events[0].bucket.as_deref(), Some("photos"));
//! assert_eq!(events[0].key.as_deref(), Some("cat.jpg"));
//! # }
//! ```

mod body;
pub mod classify;
#[cfg(feature = "dispatcher")]
pub mod dispatcher;
mod event;
pub mod event_types;
pub mod format;
mod future;
mod layer;
mod parts;
#[cfg(feature = "dispatcher")]
mod routing;
pub mod rules;
pub(crate) mod scan;
mod service;

pub use body::{NotifyBody, NotifyRequestBody};
pub use classify::{classify, Classified};
#[cfg(feature = "dispatcher")]
pub use dispatcher::retry::RetryPolicy;
#[cfg(feature = "dispatcher")]
pub use dispatcher::spool::{DeadLetter, DeadLetterFilter, FsyncPolicy, SpoolError};
#[cfg(feature = "dispatcher")]
pub use dispatcher::{
    Dispatcher, DispatcherBuilder, DispatcherError, DispatcherStats, DispatcherTask, EmitError,
    OverflowPolicy, SinkStats,
};
pub use event::{ContentChecksum, Event, EventId, S3Operation};
pub use future::ResponseFuture;
pub use layer::{Commit, EmitOn, EventEmitter, NotifyLayer, SizeLookup};
#[cfg(feature = "dispatcher")]
pub use routing::{Outbox, RoutingEmitter, SharedRules};
pub use rules::{Rule, Rules, StatusFilter};
pub use scan::{
    parse_delete_objects_result, DeleteResultScanner, DeletedKey, MAX_DELETE_KEYS,
    MAX_DELETE_REQUEST_BYTES,
};
pub use service::Notify;
