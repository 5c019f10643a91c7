//! [`Routes`]: what the proxy learned from the upstream's answers, in
//! bounded maps: which upstream serves each token it handed out, where each
//! upload URL really goes, and bucket names by id (for events).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;

use http::Uri;
use sha2::{Digest, Sha256};

/// The upstream URLs of one authorized account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Account {
    /// `apiUrl`: where the API calls go.
    pub(crate) api_url: String,
    /// `downloadUrl`: where downloads go.
    pub(crate) download_url: String,
    /// The application key id that authorized (for events; never the key).
    pub(crate) key_id: Option<String>,
}

/// What an upload URL handed out by the proxy stands for.
#[derive(Clone, Debug)]
pub(crate) struct UploadTarget {
    /// The upstream's upload URL.
    pub(crate) url: Uri,
    /// `b2_upload_file` (with its bucket id) or `b2_upload_part`.
    pub(crate) kind: UploadKind,
    /// The key id of the account that asked for the URL.
    pub(crate) key_id: Option<String>,
}

/// Which upload an upload URL is for.
#[derive(Clone, Debug)]
pub(crate) enum UploadKind {
    /// `b2_get_upload_url`: whole files into this bucket id.
    File { bucket_id: String },
    /// `b2_get_upload_part_url`: parts of this large file id.
    Part { file_id: String },
}

/// A map that forgets its oldest entry once it holds `capacity`.
#[derive(Debug)]
struct Bounded<K, V> {
    capacity: usize,
    map: HashMap<K, V>,
    order: VecDeque<K>,
}

impl<K: Eq + Hash + Clone, V> Bounded<K, V> {
    fn new(capacity: usize) -> Self {
        Bounded {
            capacity: capacity.max(1),
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn insert(&mut self, key: K, value: V) {
        if self.map.insert(key.clone(), value).is_none() {
            self.order.push_back(key);
            while self.map.len() > self.capacity {
                match self.order.pop_front() {
                    Some(oldest) => {
                        self.map.remove(&oldest);
                    }
                    None => break,
                }
            }
        }
    }

    fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

/// A token as the maps keep it: its SHA-256, so the proxy's memory holds no
/// usable token and a heap dump gives none away.
type TokenKey = [u8; 32];

fn token_key(token: &str) -> TokenKey {
    Sha256::digest(token.as_bytes()).into()
}

/// The proxy's routing state, shared by every clone of the service.
#[derive(Debug)]
pub(crate) struct Routes {
    accounts: Mutex<Bounded<TokenKey, Account>>,
    uploads: Mutex<Bounded<String, UploadTarget>>,
    buckets: Mutex<Bounded<String, String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Routes {
    pub(crate) fn new(max_tokens: usize, max_upload_urls: usize, max_buckets: usize) -> Self {
        Routes {
            accounts: Mutex::new(Bounded::new(max_tokens)),
            uploads: Mutex::new(Bounded::new(max_upload_urls)),
            buckets: Mutex::new(Bounded::new(max_buckets)),
        }
    }

    pub(crate) fn remember_token(&self, token: &str, account: Account) {
        lock(&self.accounts).insert(token_key(token), account);
    }

    pub(crate) fn account(&self, token: &str) -> Option<Account> {
        lock(&self.accounts).get(&token_key(token)).cloned()
    }

    /// Records an upload URL; returns the id the proxy's own URL carries.
    pub(crate) fn remember_upload(&self, target: UploadTarget) -> String {
        // Not a secret (the upstream still checks the upload token), only
        // unlikely to collide or be guessed.
        let id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        lock(&self.uploads).insert(id.clone(), target);
        id
    }

    pub(crate) fn upload(&self, id: &str) -> Option<UploadTarget> {
        lock(&self.uploads).get(&id.to_owned()).cloned()
    }

    pub(crate) fn remember_bucket(&self, id: &str, name: &str) {
        lock(&self.buckets).insert(id.to_owned(), name.to_owned());
    }

    pub(crate) fn bucket_name(&self, id: &str) -> Option<String> {
        lock(&self.buckets).get(&id.to_owned()).cloned()
    }

    /// How many tokens are mapped.
    #[cfg(test)]
    pub(crate) fn tokens(&self) -> usize {
        lock(&self.accounts).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(n: usize) -> Account {
        Account {
            api_url: format!("http://api{n}"),
            download_url: format!("http://dl{n}"),
            key_id: None,
        }
    }

    #[test]
    fn the_oldest_token_goes_first_when_full() {
        let routes = Routes::new(2, 2, 2);
        routes.remember_token("t1", account(1));
        routes.remember_token("t2", account(2));
        routes.remember_token("t2", account(22));
        assert_eq!(routes.tokens(), 2);
        routes.remember_token("t3", account(3));
        assert_eq!(routes.tokens(), 2);
        assert!(routes.account("t1").is_none());
        assert_eq!(routes.account("t2").unwrap().api_url, "http://api22");
        assert_eq!(routes.account("t3").unwrap().api_url, "http://api3");
    }

    #[test]
    fn the_map_holds_no_token() {
        let routes = Routes::new(4, 4, 4);
        routes.remember_token("secret-token-123", account(1));
        assert!(!format!("{routes:?}").contains("secret-token-123"));
    }
}
