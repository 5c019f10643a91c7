//! [`PostObjectLayer`]: the builder users configure.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use tower_layer::Layer;

use super::service::PostObject;
use crate::addressing::ClientAddressing;
use crate::credentials::CredentialStore;
use crate::sigv4::SigningKeyCache;

/// Largest file a form upload may carry unless the layer is told otherwise:
/// S3's limit for one `PUT` (5 GiB).
pub const DEFAULT_MAX_FILE_SIZE: u64 = 5 * 1024 * 1024 * 1024;

type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

pub(crate) struct PostConfig {
    pub(crate) regions: Option<Vec<String>>,
    pub(crate) service: String,
    pub(crate) clock: Clock,
    pub(crate) spool_dir: Option<PathBuf>,
    pub(crate) max_file_size: u64,
    pub(crate) addressing: ClientAddressing,
    pub(crate) key_cache: Arc<SigningKeyCache>,
    pub(crate) secure_transport: bool,
}

impl PostConfig {
    pub(crate) fn now(&self) -> SystemTime {
        (self.clock)()
    }

    pub(crate) fn scheme(&self) -> &'static str {
        if self.secure_transport {
            "https"
        } else {
            "http"
        }
    }
}

impl Clone for PostConfig {
    fn clone(&self) -> Self {
        PostConfig {
            regions: self.regions.clone(),
            service: self.service.clone(),
            clock: self.clock.clone(),
            spool_dir: self.spool_dir.clone(),
            max_file_size: self.max_file_size,
            addressing: self.addressing.clone(),
            key_cache: self.key_cache.clone(),
            secure_transport: self.secure_transport,
        }
    }
}

/// Accepts browser form uploads (presigned POST) in front of a stack that
/// verifies every other request.
///
/// The layer wraps the verifying stack (`SigV4VerifyLayer` and what is
/// behind it) and is given `form`, the service behind the verifier: a form
/// upload whose policy signature and conditions hold reaches `form` as a
/// `PUT` of its file carrying a [`Verified`](crate::verified::Verified)
/// extension (`auth: PostPolicy`), so authorization, re-signing and events
/// see an ordinary upload. See the [module docs](crate::post).
#[derive(Clone)]
pub struct PostObjectLayer<C, F> {
    store: Arc<C>,
    form: F,
    config: PostConfig,
}

impl<C: CredentialStore, F> PostObjectLayer<C, F> {
    /// Form uploads are checked against the secrets in `store` and sent to
    /// `form`; any region, the service `s3`, files up to 5 GiB spooled in
    /// the system's temporary directory.
    pub fn new(store: C, form: F) -> Self {
        PostObjectLayer::with_shared_store(Arc::new(store), form)
    }

    /// As [`new`](Self::new), with a store shared with other layers.
    pub fn with_shared_store(store: Arc<C>, form: F) -> Self {
        PostObjectLayer {
            store,
            form,
            config: PostConfig {
                regions: None,
                service: "s3".to_owned(),
                clock: Arc::new(SystemTime::now),
                spool_dir: None,
                max_file_size: DEFAULT_MAX_FILE_SIZE,
                addressing: ClientAddressing::default(),
                key_cache: Arc::new(SigningKeyCache::default()),
                secure_transport: false,
            },
        }
    }
}

impl<C, F> PostObjectLayer<C, F> {
    /// Accepts credentials scoped to `region` (call again to accept more);
    /// without a call, any region.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.config
            .regions
            .get_or_insert_with(Vec::new)
            .push(region.into());
        self
    }

    /// Accepts credentials scoped to `service` instead of `s3`.
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.config.service = service.into();
        self
    }

    /// Reads the time (for the policy's expiration) from `clock`.
    pub fn clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.config.clock = Arc::new(clock);
        self
    }

    /// Spools files whose length the form does not state in `dir` (default:
    /// the system's temporary directory). The files are unlinked from the
    /// start, so nothing is left behind, even after a crash.
    pub fn spool_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.spool_dir = Some(dir.into());
        self
    }

    /// Refuses files larger than `bytes` with `EntityTooLarge`, whatever
    /// the policy allows (default 5 GiB). Bounds the disk one upload takes.
    pub fn max_file_size(mut self, bytes: u64) -> Self {
        self.config.max_file_size = bytes;
        self
    }

    /// Recognises `bucket.<suffix>` Host headers (virtual-hosted buckets).
    pub fn client_virtual_host_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.config.addressing.set_virtual_host_suffix(suffix);
        self
    }

    /// The listener serves HTTPS: the object URLs in answers say `https`.
    pub fn secure_transport(mut self, secure: bool) -> Self {
        self.config.secure_transport = secure;
        self
    }
}

impl<S, C, F: Clone> Layer<S> for PostObjectLayer<C, F> {
    type Service = PostObject<S, F, C>;

    fn layer(&self, inner: S) -> Self::Service {
        PostObject::new(
            inner,
            self.form.clone(),
            self.store.clone(),
            Arc::new(self.config.clone()),
        )
    }
}

impl<C, F> fmt::Debug for PostObjectLayer<C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostObjectLayer")
            .field("regions", &self.config.regions)
            .field("service", &self.config.service)
            .field("spool_dir", &self.config.spool_dir)
            .field("max_file_size", &self.config.max_file_size)
            .finish_non_exhaustive()
    }
}
