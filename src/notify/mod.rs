//! Event notifications: the [`Event`] model, S3 operation classification
//! ([`classify()`]), the event-type vocabularies ([`event_types`]), routing
//! [`rules`], the wire [`format`](mod@format)s, and (in this module's other files) the
//! `NotifyLayer` and the `Dispatcher`.

pub mod classify;
mod event;
pub mod event_types;
pub mod format;
pub mod rules;

pub use classify::{
    classify, parse_delete_objects_result, Classified, DeleteResultScanner, DeletedKey,
};
pub use event::{Event, EventId, S3Operation};
pub use rules::{Rule, Rules, StatusFilter};
