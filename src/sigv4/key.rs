//! Signing-key derivation (`AWS4` + secret → date → region → service →
//! `aws4_request`) and a small cache, since the four HMACs cost more than the
//! signature itself and the key only changes once a day.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::crypto::hmac_sha256;

/// A derived SigV4 signing key. Holding one lets anyone sign for its scope,
/// so it is wiped on drop and never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SigningKey([u8; 32]);

impl SigningKey {
    /// Derives the key for `secret` on `date` (`YYYYMMDD`) in `region` for
    /// `service`.
    pub fn derive(secret: &str, date: &str, region: &str, service: &str) -> SigningKey {
        let mut prefixed = Vec::with_capacity(4 + secret.len());
        prefixed.extend_from_slice(b"AWS4");
        prefixed.extend_from_slice(secret.as_bytes());
        let mut k_date = hmac_sha256(&prefixed, date.as_bytes());
        prefixed.zeroize();
        let mut k_region = hmac_sha256(&k_date, region.as_bytes());
        let mut k_service = hmac_sha256(&k_region, service.as_bytes());
        let key = SigningKey(hmac_sha256(&k_service, b"aws4_request"));
        k_date.zeroize();
        k_region.zeroize();
        k_service.zeroize();
        key
    }

    /// The signature of `string_to_sign` under this key.
    pub fn sign(&self, string_to_sign: &[u8]) -> [u8; 32] {
        hmac_sha256(&self.0, string_to_sign)
    }

    /// The raw key bytes, for HMACs over several parts.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// One digest of the secret and the scope: the cache holds no copy of the
/// secret, a rotated secret misses instead of hitting a stale key, and a hit
/// allocates nothing (this runs twice per proxied request). Each part is
/// length-prefixed, so no two scopes hash the same bytes.
type CacheKey = [u8; 32];

fn cache_key(secret: &str, date: &str, region: &str, service: &str) -> CacheKey {
    let mut hasher = Sha256::new();
    for part in [secret, date, region, service] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().into()
}

/// A bounded cache of derived signing keys, keyed by a digest of the secret
/// and the scope. When full it starts over: keys change daily, so a simple
/// reset costs one derivation per active key and keeps memory bounded.
pub struct SigningKeyCache {
    capacity: usize,
    entries: Mutex<HashMap<CacheKey, SigningKey>>,
}

impl SigningKeyCache {
    /// A cache holding at most `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        SigningKeyCache {
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The signing key for this secret and scope, derived once and reused.
    pub fn get(&self, secret: &str, date: &str, region: &str, service: &str) -> SigningKey {
        let cache_key = cache_key(secret, date, region, service);
        if let Some(key) = self.lock().get(&cache_key) {
            return key.clone();
        }
        let key = SigningKey::derive(secret, date, region, service);
        let mut entries = self.lock();
        if entries.len() >= self.capacity {
            entries.clear();
        }
        entries.insert(cache_key, key.clone());
        key
    }

    /// How many keys are cached now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the cache holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, SigningKey>> {
        // A panic while holding the lock cannot leave a half-written entry
        // (insert is atomic from our side), so a poisoned map is still valid.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Default for SigningKeyCache {
    fn default() -> Self {
        SigningKeyCache::new(1024)
    }
}

impl fmt::Debug for SigningKeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyCache")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_the_documented_example_key() {
        // The derivation example of AWS's SigV4 documentation (IAM, us-east-1).
        let key = SigningKey::derive(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20120215",
            "us-east-1",
            "iam",
        );
        assert_eq!(
            hex::encode(key.as_bytes()),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
        assert_eq!(format!("{key:?}"), "SigningKey(<redacted>)");
    }

    #[test]
    fn cache_keys_keep_parts_apart() {
        assert_ne!(
            cache_key("ab", "c", "r", "s"),
            cache_key("a", "bc", "r", "s")
        );
        assert_eq!(cache_key("a", "b", "c", "d"), cache_key("a", "b", "c", "d"));
    }

    #[test]
    fn cache_reuses_and_stays_bounded() {
        let cache = SigningKeyCache::new(2);
        let a = cache.get("secret", "20240101", "us-east-1", "s3");
        assert_eq!(
            a.as_bytes(),
            cache
                .get("secret", "20240101", "us-east-1", "s3")
                .as_bytes()
        );
        assert_eq!(cache.len(), 1);
        cache.get("secret", "20240102", "us-east-1", "s3");
        cache.get("other", "20240102", "us-east-1", "s3");
        assert!(cache.len() <= 2);
        assert_ne!(
            a.as_bytes(),
            cache
                .get("secret", "20240101", "eu-west-1", "s3")
                .as_bytes()
        );
    }
}
