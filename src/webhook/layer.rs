//! `VerifyWebhookLayer`: the builder that configures webhook verification.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tower_layer::Layer;

use super::error::InvalidSecret;
use super::replay::{MemoryReplayStore, ReplayStore};
use super::scheme::WebhookScheme;
use super::secret::Secret;
use super::service::VerifyWebhook;
use super::{FrameIo, GitHub, StandardWebhooks, Stripe, B2};

/// The body limit unless [`max_body_size`](VerifyWebhookLayer::max_body_size)
/// says otherwise: 1 MiB, far above what B2, Frame.io, GitHub or Stripe send.
pub const DEFAULT_MAX_BODY_SIZE: usize = 1 << 20;

/// The timestamp tolerance unless [`tolerance`](VerifyWebhookLayer::tolerance)
/// says otherwise: 5 minutes either way, what Frame.io, Stripe and Standard
/// Webhooks recommend.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

pub(crate) type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Verifies signed webhooks before the inner service sees them.
///
/// Build one per sender, e.g.
/// `VerifyWebhookLayer::b2(secret).max_body_size(1 << 20).replay_cache(10_000)`,
/// and wrap the route that receives its webhooks. See the [module
/// docs](super) for what is checked and what a refusal looks like.
///
/// Cloning is cheap and clones share the replay store.
#[derive(Clone)]
pub struct VerifyWebhookLayer {
    pub(crate) config: Config,
}

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) scheme: Arc<dyn WebhookScheme>,
    pub(crate) max_body_size: usize,
    pub(crate) tolerance: Duration,
    pub(crate) replay_store: Option<Arc<dyn ReplayStore>>,
    pub(crate) clock: Clock,
}

impl VerifyWebhookLayer {
    /// Verifies with any scheme: one of the built-in ones (with several
    /// secrets, say) or your own [`WebhookScheme`].
    pub fn new(scheme: impl WebhookScheme) -> Self {
        Self {
            config: Config {
                scheme: Arc::new(scheme),
                max_body_size: DEFAULT_MAX_BODY_SIZE,
                tolerance: DEFAULT_TOLERANCE,
                replay_store: None,
                clock: Arc::new(SystemTime::now),
            },
        }
    }

    /// Verifies Backblaze B2 Event Notifications signed with `secret`
    /// (see [`B2`]).
    pub fn b2(secret: impl Into<Secret>) -> Self {
        Self::new(B2::new(secret))
    }

    /// Verifies Frame.io custom actions signed with `secret` (see [`FrameIo`]).
    pub fn frameio(secret: impl Into<Secret>) -> Self {
        Self::new(FrameIo::new(secret))
    }

    /// Verifies Standard Webhooks signed with a `whsec_<base64>` secret (see
    /// [`StandardWebhooks`]); fails when the base64 part does not decode.
    pub fn standard_webhooks(secret: &str) -> Result<Self, InvalidSecret> {
        Ok(Self::new(StandardWebhooks::new(secret)?))
    }

    /// Verifies GitHub webhooks signed with `secret` (see [`GitHub`]).
    pub fn github(secret: impl Into<Secret>) -> Self {
        Self::new(GitHub::new(secret))
    }

    /// Verifies Stripe webhooks signed with the endpoint's `whsec_...` secret
    /// (see [`Stripe`]).
    pub fn stripe(secret: impl Into<Secret>) -> Self {
        Self::new(Stripe::new(secret))
    }

    /// Refuses bodies longer than `bytes` with `413`, without reading past
    /// the limit (default [`DEFAULT_MAX_BODY_SIZE`]).
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.config.max_body_size = bytes;
        self
    }

    /// Accepts signed timestamps at most this far from now, either way
    /// (default [`DEFAULT_TOLERANCE`]). Also sets how long the replay cache
    /// remembers a message: twice this, the width of the acceptance window.
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.config.tolerance = tolerance;
        self
    }

    /// Remembers up to `capacity` accepted messages and refuses any of them
    /// sent again within the replay window, with `401` and error code
    /// `replayed`. Messages are recognised by their scheme's replay id: the
    /// `webhook-id` for Standard Webhooks, the verified signature otherwise.
    ///
    /// The cache lives in this process's memory: several replicas behind a
    /// load balancer each have their own, and a restart empties it. For a
    /// fleet, share one store with [`replay_store`](Self::replay_store).
    /// Same as `.replay_store(MemoryReplayStore::new(capacity))`.
    pub fn replay_cache(self, capacity: usize) -> Self {
        self.replay_store(MemoryReplayStore::new(capacity))
    }

    /// Remembers accepted messages in `store` (replacing any earlier
    /// [`replay_cache`](Self::replay_cache)), with the same effect on a
    /// repeat: refused with `401 replayed`, or marked as a
    /// [`Redelivery`](super::Redelivery) for schemes without a signed
    /// timestamp. Each id is remembered for twice the tolerance.
    ///
    /// A shared store (`RedisReplayStore`, feature `webhook-redis`) lets a
    /// fleet of receivers refuse a message replayed to any of them. When the
    /// store cannot answer, the message is refused with `503
    /// replay_store_unavailable` ([`WebhookError::ReplayStoreUnavailable`](super::WebhookError::ReplayStoreUnavailable))
    /// so the sender retries later.
    pub fn replay_store(mut self, store: impl ReplayStore) -> Self {
        self.config.replay_store = Some(Arc::new(store));
        self
    }

    /// Reads the current time from `clock` instead of the system clock, so
    /// tests can pin or move time.
    pub fn clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.config.clock = Arc::new(clock);
        self
    }
}

impl<S> Layer<S> for VerifyWebhookLayer {
    type Service = VerifyWebhook<S>;

    fn layer(&self, inner: S) -> Self::Service {
        VerifyWebhook::new(inner, Arc::new(self.config.clone()))
    }
}

impl fmt::Debug for VerifyWebhookLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyWebhookLayer")
            .field("config", &self.config)
            .finish()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("scheme", &self.scheme)
            .field("max_body_size", &self.max_body_size)
            .field("tolerance", &self.tolerance)
            .field("replay_store", &self.replay_store)
            .finish_non_exhaustive()
    }
}
