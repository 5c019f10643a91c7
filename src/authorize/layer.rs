//! [`AuthorizeLayer`]: the builder users configure.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use tower_layer::Layer;

use super::service::Authorize;
use super::source::PolicySource;
use crate::addressing::ClientAddressing;

type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

#[derive(Clone)]
pub(crate) struct AuthorizeConfig {
    pub(crate) secure_transport: bool,
    pub(crate) allow_without_policy: bool,
    pub(crate) addressing: ClientAddressing,
    pub(crate) clock: Clock,
}

/// Decides, before anything goes further, whether the verified client's
/// policy allows the request; refuses it with S3's `AccessDenied` otherwise.
///
/// See the [module docs](crate::authorize) for what is checked.
#[derive(Clone)]
pub struct AuthorizeLayer<P> {
    source: Arc<P>,
    config: AuthorizeConfig,
}

impl<P: PolicySource> AuthorizeLayer<P> {
    /// A layer that finds each client's policy in `source`. Clients without
    /// a policy are denied (see [`allow_without_policy`](Self::allow_without_policy)).
    pub fn new(source: P) -> Self {
        AuthorizeLayer {
            source: Arc::new(source),
            config: AuthorizeConfig {
                secure_transport: false,
                allow_without_policy: false,
                addressing: ClientAddressing::default(),
                clock: Arc::new(SystemTime::now),
            },
        }
    }

    /// Whether requests arrive over TLS: the value of `aws:SecureTransport`
    /// (default false).
    pub fn secure_transport(mut self, secure: bool) -> Self {
        self.config.secure_transport = secure;
        self
    }

    /// Lets clients with no policy attached do anything (the s3tap binary
    /// does this, so configs without policies keep full access). Default:
    /// they are denied, as IAM denies a principal with no policy.
    pub fn allow_without_policy(mut self, allow: bool) -> Self {
        self.config.allow_without_policy = allow;
        self
    }

    /// Recognises `Host: bucket.<suffix>` (virtual-hosted buckets), as
    /// [`NotifyLayer::client_virtual_host_suffix`](crate::notify::NotifyLayer::client_virtual_host_suffix) does.
    pub fn client_virtual_host_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.config.addressing.set_virtual_host_suffix(suffix);
        self
    }

    /// Reads `aws:CurrentTime` from `clock` instead of the system clock.
    pub fn clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.config.clock = Arc::new(clock);
        self
    }
}

impl<S, P: PolicySource> Layer<S> for AuthorizeLayer<P> {
    type Service = Authorize<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorize::new(inner, self.source.clone(), Arc::new(self.config.clone()))
    }
}

impl<P> fmt::Debug for AuthorizeLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizeLayer")
            .field("secure_transport", &self.config.secure_transport)
            .field("allow_without_policy", &self.config.allow_without_policy)
            .field("addressing", &self.config.addressing)
            .finish_non_exhaustive()
    }
}
