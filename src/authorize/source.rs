//! [`PolicySource`]: where the layer finds a verified client's policy, and
//! [`StaticPolicies`], a fixed map from access key id to policy.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::policy::Policy;
use crate::verified::Verified;

/// Finds the policy attached to a verified client. `None` means no policy
/// is attached; [`AuthorizeLayer::allow_without_policy`] decides what such
/// a client may do (by default: nothing).
///
/// Implemented for closures `Fn(&Verified) -> Option<Arc<Policy>>`, so a
/// policy can come from the identity, a tenant table, a database cache...
///
/// [`AuthorizeLayer::allow_without_policy`]: super::AuthorizeLayer::allow_without_policy
pub trait PolicySource: Send + Sync + 'static {
    /// The policy for this client, if one is attached.
    fn policy(&self, client: &Verified) -> Option<Arc<Policy>>;
}

impl<F> PolicySource for F
where
    F: Fn(&Verified) -> Option<Arc<Policy>> + Send + Sync + 'static,
{
    fn policy(&self, client: &Verified) -> Option<Arc<Policy>> {
        self(client)
    }
}

/// Policies by access key id, fixed when built.
#[derive(Clone, Default)]
pub struct StaticPolicies {
    by_key: HashMap<String, Arc<Policy>>,
}

impl StaticPolicies {
    /// No policy for anyone.
    pub fn new() -> Self {
        Self::default()
    }

    /// Attaches `policy` to the client signing with `access_key_id`.
    pub fn with_policy(mut self, access_key_id: impl Into<String>, policy: Policy) -> Self {
        self.insert(access_key_id, policy);
        self
    }

    /// Attaches `policy` to the client signing with `access_key_id`.
    pub fn insert(&mut self, access_key_id: impl Into<String>, policy: Policy) {
        self.by_key.insert(access_key_id.into(), Arc::new(policy));
    }
}

impl PolicySource for StaticPolicies {
    fn policy(&self, client: &Verified) -> Option<Arc<Policy>> {
        self.by_key.get(&client.access_key_id).cloned()
    }
}

impl fmt::Debug for StaticPolicies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<&String> = self.by_key.keys().collect();
        keys.sort();
        f.debug_struct("StaticPolicies")
            .field("clients", &keys)
            .finish()
    }
}
