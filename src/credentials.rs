//! Where secrets come from: the [`CredentialStore`] trait (async lookup by
//! access key id), [`StaticCredentials`], an in-memory store, and
//! [`ReloadingCredentials`], an in-memory store whose whole set can be
//! swapped while requests are served.
//!
//! A store returns, for a client's access key id, the secret to verify with,
//! an [`Identity`] that later layers read from request extensions, an optional
//! session token, and optionally the [`UpstreamCredentials`] to re-sign that
//! client's requests with (so clients never hold keys that work upstream).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, RwLock};

/// A secret string (secret access key, session token): the crate's one
/// [`Secret`](crate::secret::Secret) holding text, zeroized on drop and
/// printed as `Secret(<redacted>)`.
pub type Secret = crate::secret::Secret<String>;

/// Who a verified client is, as the store names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    name: Arc<str>,
}

impl Identity {
    /// An identity with this name (a user, a tenant, a service account).
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Identity { name: name.into() }
    }

    /// The identity's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Credentials for the upstream, used when re-signing.
#[derive(Clone, Debug)]
pub struct UpstreamCredentials {
    /// Upstream access key id.
    pub access_key_id: String,
    /// Upstream secret.
    pub secret: Secret,
    /// Upstream session token, for temporary credentials.
    pub session_token: Option<Secret>,
}

impl UpstreamCredentials {
    /// Upstream credentials from a key pair.
    pub fn new(access_key_id: impl Into<String>, secret: impl Into<Secret>) -> Self {
        UpstreamCredentials {
            access_key_id: access_key_id.into(),
            secret: secret.into(),
            session_token: None,
        }
    }
}

/// What a store knows about one access key.
#[derive(Clone, Debug)]
pub struct Credential {
    /// The secret the client signs with.
    pub secret: Secret,
    /// Who the client is.
    pub identity: Identity,
    /// The session token the client must present, for temporary credentials.
    pub session_token: Option<Secret>,
    /// The credentials to re-sign this client's requests with, if mapped.
    pub upstream: Option<UpstreamCredentials>,
}

impl Credential {
    /// A credential whose identity is named after the access key id.
    pub fn new(access_key_id: &str, secret: impl Into<Secret>) -> Self {
        Credential {
            secret: secret.into(),
            identity: Identity::new(access_key_id),
            session_token: None,
            upstream: None,
        }
    }

    /// Names the identity.
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = identity;
        self
    }

    /// Requires a session token (`x-amz-security-token`).
    pub fn session_token(mut self, token: impl Into<Secret>) -> Self {
        self.session_token = Some(token.into());
        self
    }

    /// Maps this client to upstream credentials.
    pub fn upstream(mut self, upstream: UpstreamCredentials) -> Self {
        self.upstream = Some(upstream);
        self
    }
}

/// A store could not answer (database down, timeout, ...). Distinct from an
/// unknown key, which is `Ok(None)`.
#[derive(Debug, thiserror::Error)]
#[error("credential store unavailable: {message}")]
pub struct CredentialStoreError {
    message: String,
}

impl CredentialStoreError {
    /// An error with a message for operators (never include secrets).
    pub fn new(message: impl Into<String>) -> Self {
        CredentialStoreError {
            message: message.into(),
        }
    }
}

/// Looks up credentials by access key id.
///
/// The lookup is async so a store may ask a database or a secrets manager;
/// it runs before the request body is touched, so `Expect: 100-continue`
/// clients are answered before they send their payload.
pub trait CredentialStore: Send + Sync + 'static {
    /// The credential for `access_key_id`, `Ok(None)` when the key is
    /// unknown.
    fn lookup(
        &self,
        access_key_id: &str,
    ) -> impl Future<Output = Result<Option<Credential>, CredentialStoreError>> + Send;
}

impl<T: CredentialStore> CredentialStore for Arc<T> {
    fn lookup(
        &self,
        access_key_id: &str,
    ) -> impl Future<Output = Result<Option<Credential>, CredentialStoreError>> + Send {
        (**self).lookup(access_key_id)
    }
}

/// A fixed set of credentials held in memory.
///
/// ```
/// use s3tap::credentials::{StaticCredentials, UpstreamCredentials, Credential};
///
/// let store = StaticCredentials::new()
///     .with_key("AKIDCLIENT", "client-secret")
///     .with_credential(
///         "AKIDMAPPED",
///         Credential::new("AKIDMAPPED", "other-secret")
///             .upstream(UpstreamCredentials::new("upstream-key", "upstream-secret")),
///     );
/// assert_eq!(store.len(), 2);
/// ```
#[derive(Clone, Default)]
pub struct StaticCredentials {
    keys: HashMap<String, Credential>,
}

impl StaticCredentials {
    /// An empty store.
    pub fn new() -> Self {
        StaticCredentials::default()
    }

    /// Adds a key pair whose identity is the access key id.
    pub fn with_key(self, access_key_id: impl Into<String>, secret: impl Into<Secret>) -> Self {
        let access_key_id = access_key_id.into();
        let credential = Credential::new(&access_key_id, secret);
        self.with_credential(access_key_id, credential)
    }

    /// Adds a full credential.
    pub fn with_credential(
        mut self,
        access_key_id: impl Into<String>,
        credential: Credential,
    ) -> Self {
        self.keys.insert(access_key_id.into(), credential);
        self
    }

    /// How many keys the store holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The credential for a key, synchronously.
    pub fn get(&self, access_key_id: &str) -> Option<&Credential> {
        self.keys.get(access_key_id)
    }
}

impl CredentialStore for StaticCredentials {
    fn lookup(
        &self,
        access_key_id: &str,
    ) -> impl Future<Output = Result<Option<Credential>, CredentialStoreError>> + Send {
        std::future::ready(Ok(self.keys.get(access_key_id).cloned()))
    }
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key ids are not secret, but listing them all helps nobody reading logs.
        f.debug_struct("StaticCredentials")
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// A [`StaticCredentials`] set that can be replaced as a whole while the
/// store is in use: reload keys from a file or a secrets manager without a
/// restart.
///
/// [`replace`](Self::replace) swaps the set in one step: a lookup sees the
/// old set or the new one, never a mix. A request already verified keeps
/// the [`Credential`] its lookup returned (a copy), so swapping never
/// affects requests in flight; the next lookup of a removed key finds
/// nothing (`InvalidAccessKeyId`). Clones share the set.
///
/// ```
/// use s3tap::credentials::{CredentialStore, ReloadingCredentials, StaticCredentials};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = ReloadingCredentials::new(StaticCredentials::new().with_key("AKIDOLD", "old-secret"));
/// let for_the_layer = store.clone(); // e.g. SigV4VerifyLayer::new(for_the_layer)
///
/// store.replace(StaticCredentials::new().with_key("AKIDNEW", "new-secret"));
/// assert!(for_the_layer.lookup("AKIDOLD").await.unwrap().is_none());
/// assert!(for_the_layer.lookup("AKIDNEW").await.unwrap().is_some());
/// # }
/// ```
#[derive(Clone, Default)]
pub struct ReloadingCredentials {
    current: Arc<RwLock<Arc<StaticCredentials>>>,
}

impl ReloadingCredentials {
    /// A store serving `initial` until the first [`replace`](Self::replace).
    pub fn new(initial: StaticCredentials) -> Self {
        ReloadingCredentials {
            current: Arc::new(RwLock::new(Arc::new(initial))),
        }
    }

    /// Serves `next` from now on, for every clone of this store.
    pub fn replace(&self, next: StaticCredentials) {
        let next = Arc::new(next);
        // The old set is dropped outside the lock, after the swap.
        let _old = {
            let mut current = self
                .current
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            std::mem::replace(&mut *current, next)
        };
    }

    /// The set in use now.
    pub fn current(&self) -> Arc<StaticCredentials> {
        // Readers only clone an `Arc`: a panic cannot leave it half-written.
        Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }
}

impl CredentialStore for ReloadingCredentials {
    fn lookup(
        &self,
        access_key_id: &str,
    ) -> impl Future<Output = Result<Option<Credential>, CredentialStoreError>> + Send {
        std::future::ready(Ok(self.current().get(access_key_id).cloned()))
    }
}

impl fmt::Debug for ReloadingCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCredentials")
            .field("keys", &self.current().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_secrets() {
        let credential = Credential::new("AKID", "very-secret-value")
            .session_token("token-value")
            .upstream(UpstreamCredentials::new("UP", "upstream-secret-value"));
        let printed = format!("{credential:?}");
        assert!(!printed.contains("very-secret-value"), "{printed}");
        assert!(!printed.contains("token-value"), "{printed}");
        assert!(!printed.contains("upstream-secret-value"), "{printed}");
        let store = StaticCredentials::new().with_credential("AKID", credential);
        assert!(!format!("{store:?}").contains("secret"));
    }

    #[tokio::test]
    async fn static_store_looks_up_by_key_id() {
        let store = StaticCredentials::new().with_key("AKID", "secret");
        let found = store.lookup("AKID").await.unwrap().unwrap();
        assert_eq!(found.secret.expose(), "secret");
        assert_eq!(found.identity.name(), "AKID");
        assert!(store.lookup("OTHER").await.unwrap().is_none());
    }
}
