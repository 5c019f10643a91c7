//! [`BucketNotificationsLayer`]: who may manage notifications, and where
//! their configurations are stored.

use std::collections::HashSet;
use std::sync::Arc;

use tower_layer::Layer;

use super::service::{BucketNotifications, Shared};
use super::NotificationStore;

/// Answers `GET`/`PUT /bucket?notification` from a [`NotificationStore`]
/// and passes every other request to the inner service. Put it inside
/// [`SigV4VerifyLayer`](crate::verify::SigV4VerifyLayer): it authorizes by
/// the verified access key id.
#[derive(Clone, Debug)]
pub(crate) struct BucketNotificationsLayer {
    store: Arc<NotificationStore>,
    managers: HashSet<String>,
    virtual_host_suffix: Option<String>,
    check_payload_hash: bool,
}

impl BucketNotificationsLayer {
    /// A layer over `store` that lets no client manage anything yet.
    pub(crate) fn new(store: Arc<NotificationStore>) -> Self {
        BucketNotificationsLayer {
            store,
            managers: HashSet::new(),
            virtual_host_suffix: None,
            check_payload_hash: false,
        }
    }

    /// Lets the client with this access key id read and change the
    /// configurations.
    pub(crate) fn manager(mut self, access_key_id: impl Into<String>) -> Self {
        self.managers.insert(access_key_id.into());
        self
    }

    /// Recognises `bucket.<suffix>` Host headers, as the rest of the stack
    /// does.
    pub(crate) fn virtual_host_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.virtual_host_suffix = Some(suffix.into());
        self
    }

    /// Checks a hex `x-amz-content-sha256` against the body: needed when the
    /// verifier defers payload hashing to the upstream, which never sees
    /// these requests.
    pub(crate) fn check_payload_hash(mut self, check: bool) -> Self {
        self.check_payload_hash = check;
        self
    }
}

impl<S> Layer<S> for BucketNotificationsLayer {
    type Service = BucketNotifications<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BucketNotifications {
            inner,
            shared: Arc::new(Shared {
                store: self.store.clone(),
                managers: self.managers.clone(),
                virtual_host_suffix: self.virtual_host_suffix.clone(),
                check_payload_hash: self.check_payload_hash,
            }),
        }
    }
}
