//! When to try a failed delivery again: exponential backoff with full
//! jitter, `Retry-After`, and when to give up.

use std::time::Duration;

/// How the dispatcher spaces retries of a sink that failed transiently.
///
/// The `n`-th retry (counting from 1) waits a random time between zero and
/// `min(max, initial * multiplier^(n-1))` ("full jitter": retries of many
/// producers spread out instead of arriving in waves), but never less than the
/// `Retry-After` the receiver asked for. An event is given up on, and moved to
/// the dead-letter table, after `max_attempts` failed deliveries or once it is
/// older than `max_age`, whichever comes first.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// The cap of the first retry's wait.
    pub initial: Duration,
    /// The largest cap, however many attempts failed.
    pub max: Duration,
    /// Growth of the cap per failed attempt (at least 1).
    pub multiplier: f64,
    /// Whether to draw the wait at random below the cap (full jitter) or to
    /// wait the cap itself.
    pub jitter: bool,
    /// Give up after this many failed deliveries (`None`: never).
    pub max_attempts: Option<u32>,
    /// Give up once the event has waited this long since it was spooled
    /// (`None`: never).
    pub max_age: Option<Duration>,
}

impl Default for RetryPolicy {
    /// 100 ms doubling up to 5 min with full jitter; give up after 24 hours.
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(300),
            multiplier: 2.0,
            jitter: true,
            max_attempts: None,
            max_age: Some(Duration::from_secs(24 * 3600)),
        }
    }
}

impl RetryPolicy {
    /// The cap of the wait after `failures` failed attempts (1 for the first
    /// retry).
    pub fn cap(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(64) as i32;
        let factor = self.multiplier.max(1.0).powi(exponent);
        let cap = self.initial.as_secs_f64() * factor;
        if !cap.is_finite() || cap >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(cap)
        }
    }

    /// The wait before the next attempt after `failures` failed attempts,
    /// at least `retry_after` when the receiver asked for one.
    pub fn delay(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        let cap = self.cap(failures);
        let backoff = if self.jitter {
            let nanos = cap.as_nanos().min(u64::MAX as u128) as u64;
            Duration::from_nanos(fastrand::u64(0..=nanos))
        } else {
            cap
        };
        match retry_after {
            Some(asked) => backoff.max(asked),
            None => backoff,
        }
    }

    /// Whether an event that failed `failures` times and has waited `age`
    /// since it was spooled should be given up on.
    pub fn gives_up(&self, failures: u32, age: Duration) -> bool {
        self.max_attempts.is_some_and(|max| failures >= max)
            || self.max_age.is_some_and(|max| age >= max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_grow_exponentially_up_to_max() {
        let policy = RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            multiplier: 2.0,
            jitter: false,
            max_attempts: Some(3),
            max_age: None,
        };
        assert_eq!(policy.cap(1), Duration::from_millis(100));
        assert_eq!(policy.cap(2), Duration::from_millis(200));
        assert_eq!(policy.cap(4), Duration::from_millis(800));
        assert_eq!(policy.cap(5), Duration::from_secs(1));
        assert_eq!(policy.cap(u32::MAX), Duration::from_secs(1));
        assert_eq!(policy.delay(2, None), Duration::from_millis(200));
        assert!(!policy.gives_up(2, Duration::from_secs(1_000_000)));
        assert!(policy.gives_up(3, Duration::ZERO));
    }

    #[test]
    fn full_jitter_stays_below_the_cap_and_retry_after_is_a_floor() {
        let policy = RetryPolicy::default();
        for failures in 1..20 {
            let delay = policy.delay(failures, None);
            assert!(delay <= policy.cap(failures));
            let delay = policy.delay(failures, Some(Duration::from_secs(7)));
            assert!(delay >= Duration::from_secs(7));
        }
        assert!(policy.gives_up(1, Duration::from_secs(24 * 3600)));
    }
}
