//! Where the layer remembers accepted messages, to recognise re-sent ones:
//! the [`ReplayStore`] trait and [`MemoryReplayStore`], a bounded memory in
//! this process.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::scheme::ReplayId;

/// What [`ReplayStore::insert_new`] returns: a boxed future, so stores can
/// be used as `Arc<dyn ReplayStore>`.
pub type ReplayCheck =
    Pin<Box<dyn Future<Output = Result<bool, ReplayStoreError>> + Send + 'static>>;

/// Remembers the replay ids of accepted messages for a while, possibly
/// shared by several receivers.
///
/// The layer calls [`insert_new`](Self::insert_new) once per verified
/// message (never for one whose signature failed). It must be atomic:
/// when two receivers insert the same id at once, exactly one of them may
/// be told it was new.
///
/// [`MemoryReplayStore`] (what
/// [`replay_cache`](super::VerifyWebhookLayer::replay_cache) installs) keeps
/// ids in this process; `RedisReplayStore` (feature `webhook-redis`) shares
/// them between every receiver using the same Redis.
pub trait ReplayStore: fmt::Debug + Send + Sync + 'static {
    /// Remembers `id` for `ttl` from `now` (the layer's clock; a shared store
    /// may use its own clock instead) and answers whether it was new:
    /// `Ok(false)` means the message was seen inside the window. An error
    /// means the store could not answer; the layer then refuses the message
    /// with `503` rather than risk accepting a replay.
    fn insert_new(&self, id: ReplayId, now: SystemTime, ttl: Duration) -> ReplayCheck;
}

/// A replay store could not answer (connection refused, timeout, ...).
/// The message is for operators and never holds a secret.
#[derive(Debug, Clone, thiserror::Error)]
#[error("replay store unavailable: {message}")]
pub struct ReplayStoreError {
    message: String,
}

impl ReplayStoreError {
    /// An error with a message for operators.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// Remembers the replay ids of accepted messages for a fixed time, in this
/// process's memory.
///
/// Every entry lives equally long, so insertion order is expiry order and a
/// queue is enough: expired entries are dropped from the front, and when the
/// cache is full the oldest entry makes room even if it has not expired. A
/// flood of valid messages can therefore push an id out early; the capacity
/// bounds memory, the tolerance bounds how old a message can be.
///
/// Clones of a layer share one store; separate processes (replicas behind a
/// load balancer) do not, and a restart empties it.
pub struct MemoryReplayStore {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    by_age: VecDeque<(SystemTime, ReplayId)>,
    seen: HashSet<ReplayId>,
}

impl MemoryReplayStore {
    /// A store of at most `capacity` ids (`0` remembers nothing).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            state: Mutex::new(State::default()),
        }
    }

    /// Records `id` as seen at `now` for `ttl`; returns `false` when it was
    /// already there, i.e. the message is a replay.
    fn remember(&self, id: ReplayId, now: SystemTime, ttl: Duration) -> bool {
        if self.capacity == 0 {
            return true;
        }
        // A poisoned lock only means another request panicked mid-insert; the
        // queue and set are still consistent enough to keep protecting.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while let Some((expires, _)) = state.by_age.front() {
            if *expires > now {
                break;
            }
            let (_, expired) = state.by_age.pop_front().expect("front exists");
            state.seen.remove(&expired);
        }
        if state.seen.contains(&id) {
            return false;
        }
        if state.by_age.len() >= self.capacity {
            if let Some((_, oldest)) = state.by_age.pop_front() {
                state.seen.remove(&oldest);
            }
        }
        state.seen.insert(id.clone());
        state.by_age.push_back((now + ttl, id));
        true
    }
}

impl fmt::Debug for MemoryReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryReplayStore")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl ReplayStore for MemoryReplayStore {
    fn insert_new(&self, id: ReplayId, now: SystemTime, ttl: Duration) -> ReplayCheck {
        let new = self.remember(id, now, ttl);
        Box::pin(std::future::ready(Ok(new)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn refuses_within_the_window_and_forgets_after() {
        let cache = MemoryReplayStore::new(10);
        let ttl = Duration::from_secs(600);
        assert!(cache.remember("a".into(), at(1000), ttl));
        assert!(!cache.remember("a".into(), at(1599), ttl));
        assert!(cache.remember("a".into(), at(1600), ttl));
    }

    #[test]
    fn stays_within_capacity() {
        let cache = MemoryReplayStore::new(2);
        let ttl = Duration::from_secs(600);
        for id in ["a", "b", "c"] {
            assert!(cache.remember(id.into(), at(1000), ttl));
        }
        assert!(!cache.remember("c".into(), at(1000), ttl));
        // "a" was evicted to make room for "c".
        assert!(cache.remember("a".into(), at(1000), ttl));
        let state = cache.state.lock().unwrap();
        assert_eq!(state.by_age.len(), 2);
        assert_eq!(state.seen.len(), 2);
    }
}
