//! [`RoutingEmitter`] and [`SharedRules`]: events from a
//! [`NotifyLayer`](super::NotifyLayer), through [`Rules`], to the sinks of a [`Dispatcher`].

use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use std::time::Duration;

use super::{Commit, Dispatcher, EmitError, Event, EventEmitter, Rules};
use crate::sink::{BoxFuture, SinkError};

/// A rule set that can be replaced while events are routed by it: clones
/// share it, and [`replace`](Self::replace) takes effect for the next event.
#[derive(Clone, Default)]
pub struct SharedRules(Arc<RwLock<Rules>>);

impl SharedRules {
    /// Shares `rules`.
    pub fn new(rules: Rules) -> Self {
        SharedRules(Arc::new(RwLock::new(rules)))
    }

    /// The current rules, for as long as the guard lives (one routing).
    pub fn read(&self) -> RwLockReadGuard<'_, Rules> {
        // A writer that panicked left whole rules behind (`replace` swaps
        // the value in one move), so a poisoned lock still holds good ones.
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Routes by `rules` from now on.
    pub fn replace(&self, rules: Rules) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = rules;
    }
}

impl fmt::Debug for SharedRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedRules").field(&*self.read()).finish()
    }
}

/// [`RoutingEmitter`]: the [`EventEmitter`] that joins a [`NotifyLayer`] to a
/// [`Dispatcher`], sending each event through [`Rules`] to the sinks they
/// name.
///
/// Each matching rule's sinks get a copy of the event with its
/// `matched_rule` set to the rule's name (a sink named by two matching
/// rules gets two, as B2 sends them); see [`Rules::route_events`]. Rules
/// that change while events flow (the s3tap proxy's rules made through S3's
/// bucket notification API) go in a [`SharedRules`] routed after the fixed
/// ones. Routing never blocks: the dispatcher queues, spills to its spool,
/// or refuses, and a refusal is logged, never returned to the request.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use s3tap::notify::{
///     Dispatcher, FsyncPolicy, NotifyLayer, NotifyRequestBody, RoutingEmitter, Rule, Rules,
///     StatusFilter,
/// };
/// use s3tap::sink::JsonLinesSink;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let log = dir.path().join("uploads.jsonl");
/// let (dispatcher, task) = Dispatcher::builder()
///     .sink("uploads", Arc::new(JsonLinesSink::file(&log)?))
///     .spool(dir.path().join("spool.redb"), FsyncPolicy::default())
///     .build()
///     .await?;
///
/// // New objects only, to the `uploads` sink.
/// let rules = Rules::new(vec![Rule {
///     name: "new-objects".into(),
///     event_types: vec!["s3:ObjectCreated:*".into()],
///     prefix: None,
///     suffix: None,
///     statuses: StatusFilter::SuccessOnly,
///     sinks: vec!["uploads".into()],
///     buckets: Vec::new(),
///     clients: Vec::new(),
/// }]);
/// let service = ServiceBuilder::new()
///     .layer(NotifyLayer::new(RoutingEmitter::new(rules, dispatcher.clone())))
///     .service_fn(|_request: http::Request<NotifyRequestBody<String>>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
///     });
///
/// let put = http::Request::put("/photos/cat.jpg").body(String::from("meow"))?;
/// service.clone().oneshot(put).await?;
/// let get = http::Request::get("/photos/cat.jpg").body(String::new())?;
/// service.oneshot(get).await?; // matches no rule: goes nowhere
///
/// let stats = dispatcher.shutdown(Duration::from_secs(5)).await;
/// task.await?;
/// assert_eq!(stats.sinks[0].delivered, 1);
/// let line = std::fs::read_to_string(&log)?;
/// assert!(line.contains("cat.jpg") && line.contains("new-objects"));
/// # Ok(())
/// # }
/// ```
///
/// [`NotifyLayer`]: super::NotifyLayer
pub struct RoutingEmitter {
    rules: Rules,
    shared: Option<SharedRules>,
    dispatcher: Dispatcher,
    outbox: Option<(Arc<dyn Outbox>, Duration)>,
}

/// A durable, shared log that routed events are committed to before a
/// client gets its answer: the fleet's outbox (NATS JetStream in
/// [`crate::outbox`] with the `outbox-nats` feature). Given to
/// [`RoutingEmitter::commit_through`].
pub trait Outbox: Send + Sync + 'static {
    /// Publishes one message per routed copy (sink name, event) and resolves
    /// `Ok` once the log stored every one of them. Whatever the caller does
    /// with the future, the messages are built before this returns.
    fn publish(&self, routed: &[(Arc<str>, Event)]) -> BoxFuture<'static, Result<(), SinkError>>;

    /// Whether the last publish failed and none succeeded since: the
    /// emitter then hands events to the local spool at once instead of
    /// making clients wait for a log that is away.
    fn is_degraded(&self) -> bool {
        false
    }
}

impl RoutingEmitter {
    /// Routes by `rules` into `dispatcher`, whose sinks the rules name.
    pub fn new(rules: Rules, dispatcher: Dispatcher) -> Self {
        RoutingEmitter {
            rules,
            shared: None,
            dispatcher,
            outbox: None,
        }
    }

    /// Commits the events of requests that changed the store to `outbox`
    /// before their answer, when the [`NotifyLayer`](super::NotifyLayer) is
    /// built with
    /// [`commit_before_answer`](super::NotifyLayer::commit_before_answer):
    /// [`emit_committed`](EventEmitter::emit_committed) resolves once the
    /// outbox stored them, or after `timeout`, when they go to the
    /// dispatcher instead (whose sinks should publish to the same outbox:
    /// the spool is then the write-behind buffer). While the outbox is
    /// [degraded](Outbox::is_degraded) nothing waits. Other events go to
    /// the dispatcher as always.
    pub fn commit_through(mut self, outbox: Arc<dyn Outbox>, timeout: Duration) -> Self {
        self.outbox = Some((outbox, timeout));
        self
    }

    /// Also routes by `rules`, after the fixed ones, as they are when each
    /// event arrives.
    pub fn shared_rules(mut self, rules: SharedRules) -> Self {
        self.shared = Some(rules);
        self
    }

    /// The dispatcher events are queued in.
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }
}

impl fmt::Debug for RoutingEmitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoutingEmitter")
            .field("rules", &self.rules)
            .field("shared", &self.shared)
            .field("commit_through_outbox", &self.outbox.is_some())
            .finish_non_exhaustive()
    }
}

impl RoutingEmitter {
    fn routed(&self, event: Event) -> Vec<(Arc<str>, Event)> {
        let shared = self.shared.as_ref().map(SharedRules::read);
        let routed = match &shared {
            Some(more) => self.rules.route_events_with(more, event),
            None => self.rules.route_events(event),
        };
        routed
            .into_iter()
            .map(|(sink, event)| (Arc::from(sink), event))
            .collect()
    }
}

/// Queues each copy in the dispatcher, logging what it refuses (the
/// response path never sees a refusal).
fn dispatch(dispatcher: &Dispatcher, routed: Vec<(Arc<str>, Event)>) {
    for (sink, event) in routed {
        // The id is copied only for the message: `emit` takes the event.
        let id = event.id.clone();
        if let Err(error) = dispatcher.emit(&sink, event) {
            match error {
                EmitError::SinkDisabled(_) => {
                    tracing::debug!("event for disabled sink {sink} not queued")
                }
                other => tracing::error!("event {id} for sink {sink} not queued: {other}"),
            }
        }
    }
}

impl EventEmitter for RoutingEmitter {
    fn emit(&self, event: Event) {
        dispatch(&self.dispatcher, self.routed(event));
    }

    fn emit_committed(&self, event: Event) -> Option<Commit> {
        let Some((outbox, timeout)) = &self.outbox else {
            self.emit(event);
            return None;
        };
        let routed = self.routed(event);
        if routed.is_empty() {
            return None;
        }
        if outbox.is_degraded() {
            dispatch(&self.dispatcher, routed);
            return None;
        }
        let publish = outbox.publish(&routed);
        let (dispatcher, timeout) = (self.dispatcher.clone(), *timeout);
        // Its own task, so that the events reach the outbox or the spool
        // even when the client goes away and the commit is dropped.
        let (done, committed) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            match tokio::time::timeout(timeout, publish).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::warn!(%error, "outbox commit failed: events go to the local spool");
                    dispatch(&dispatcher, routed);
                }
                Err(_) => {
                    tracing::warn!(
                        timeout_ms = timeout.as_millis() as u64,
                        "outbox commit timed out: events go to the local spool"
                    );
                    dispatch(&dispatcher, routed);
                }
            }
            let _ = done.send(());
        });
        Some(Box::pin(async move {
            let _ = committed.await;
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{Rule, S3Operation, StatusFilter};

    fn rule(name: &str, events: &str, sink: &str) -> Rule {
        Rule {
            name: name.into(),
            event_types: vec![events.into()],
            prefix: None,
            suffix: None,
            statuses: StatusFilter::All,
            sinks: vec![sink.into()],
            buckets: Vec::new(),
            clients: Vec::new(),
        }
    }

    #[test]
    fn replaced_shared_rules_route_the_next_event() {
        let shared = SharedRules::default();
        let put = || Event::new(S3Operation::PutObject, "PUT", 200, "http://up/b/k");
        assert!(shared.read().route(&put()).is_empty());
        shared
            .clone()
            .replace(Rules::new(vec![rule("api", "*", "hook")]));
        let read = shared.read();
        let routes = read.route(&put());
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].1, "hook");
    }
}
