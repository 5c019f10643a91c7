//! A bounded memory of recently accepted messages, to refuse re-sent ones.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::scheme::ReplayId;

/// Remembers the replay ids of accepted messages for a fixed time.
///
/// Every entry lives equally long, so insertion order is expiry order and a
/// queue is enough: expired entries are dropped from the front, and when the
/// cache is full the oldest entry makes room even if it has not expired. A
/// flood of valid messages can therefore push an id out early; the capacity
/// bounds memory, the tolerance bounds how old a message can be.
#[derive(Debug)]
pub(crate) struct ReplayCache {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    by_age: VecDeque<(SystemTime, ReplayId)>,
    seen: HashSet<ReplayId>,
}

impl ReplayCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            state: Mutex::new(State::default()),
        }
    }

    /// Records `id` as seen at `now` for `ttl`; returns `false` when it was
    /// already there, i.e. the message is a replay.
    pub(crate) fn insert_new(&self, id: ReplayId, now: SystemTime, ttl: Duration) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn refuses_within_the_window_and_forgets_after() {
        let cache = ReplayCache::new(10);
        let ttl = Duration::from_secs(600);
        assert!(cache.insert_new("a".into(), at(1000), ttl));
        assert!(!cache.insert_new("a".into(), at(1599), ttl));
        assert!(cache.insert_new("a".into(), at(1600), ttl));
    }

    #[test]
    fn stays_within_capacity() {
        let cache = ReplayCache::new(2);
        let ttl = Duration::from_secs(600);
        for id in ["a", "b", "c"] {
            assert!(cache.insert_new(id.into(), at(1000), ttl));
        }
        assert!(!cache.insert_new("c".into(), at(1000), ttl));
        // "a" was evicted to make room for "c".
        assert!(cache.insert_new("a".into(), at(1000), ttl));
        let state = cache.state.lock().unwrap();
        assert_eq!(state.by_age.len(), 2);
        assert_eq!(state.seen.len(), 2);
    }
}
