//! [`Secret`]: the one wrapper for keys, passwords and tokens: zeroized on
//! drop, redacted in `Debug`, compared in constant time.
//!
//! One type, two contents: `Secret<String>` for what is text where it is
//! used (AWS secret access keys and session tokens, admin tokens; the
//! [`credentials::Secret`](crate::credentials::Secret) alias) and
//! `Secret<Vec<u8>>` for raw HMAC keys, which need not be UTF-8 (a decoded
//! Standard Webhooks key; the `webhook::Secret` alias, also the default).
//! Keeping the content's type means a text secret needs no UTF-8 check where
//! it is used, and a binary key is never forced into a string.
//!
//! ```
//! use s3tap::secret::Secret;
//!
//! let key: Secret = Secret::from(&b"\x00\xffkey"[..]);
//! let token: Secret<String> = Secret::from("t0ken");
//! assert_eq!(format!("{key:?} {token:?}"), "Secret(<redacted>) Secret(<redacted>)");
//! assert_eq!(token.expose(), "t0ken");
//! assert_eq!(token, Secret::<String>::new("t0ken"));
//! ```

use std::fmt;
use std::sync::Arc;

use zeroize::{Zeroize, Zeroizing};

/// A secret: wiped from memory when the last clone is dropped, printed as
/// `Secret(<redacted>)`, equal to another only by a constant-time compare.
///
/// Clones share one allocation, so cloning a layer or a credential does not
/// scatter copies of the key around the heap. See the [module docs](self)
/// for why the content is a type parameter.
pub struct Secret<T: Zeroize = Vec<u8>>(Arc<Zeroizing<T>>);

impl<T: Zeroize> Clone for Secret<T> {
    fn clone(&self) -> Self {
        Secret(self.0.clone())
    }
}

impl<T: Zeroize> Secret<T> {
    /// The secret itself. Call only where it is used (signing, a header
    /// that must carry it).
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl<T: Zeroize + AsRef<[u8]>> PartialEq for Secret<T> {
    /// Constant time in the length of the shorter secret: no early exit on
    /// the first differing byte.
    fn eq(&self, other: &Self) -> bool {
        crate::crypto::constant_time_eq((*self.0).as_ref(), (*other.0).as_ref())
    }
}

impl<T: Zeroize + AsRef<[u8]>> Eq for Secret<T> {}

impl Secret<String> {
    /// A text secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Secret(Arc::new(Zeroizing::new(secret.into())))
    }
}

impl From<&str> for Secret<String> {
    fn from(secret: &str) -> Self {
        Secret::<String>::new(secret)
    }
}

impl From<String> for Secret<String> {
    fn from(secret: String) -> Self {
        Secret::<String>::new(secret)
    }
}

impl Secret<Vec<u8>> {
    /// A key made of these bytes (copied; the caller's copy is its own to
    /// wipe).
    pub fn new(key: impl AsRef<[u8]>) -> Self {
        Secret(Arc::new(Zeroizing::new(key.as_ref().to_vec())))
    }

    pub(crate) fn from_zeroizing(key: Zeroizing<Vec<u8>>) -> Self {
        Secret(Arc::new(key))
    }
}

impl From<&str> for Secret<Vec<u8>> {
    fn from(key: &str) -> Self {
        Secret::<Vec<u8>>::new(key)
    }
}

impl From<String> for Secret<Vec<u8>> {
    fn from(key: String) -> Self {
        Secret::from_zeroizing(Zeroizing::new(key.into_bytes()))
    }
}

impl From<&[u8]> for Secret<Vec<u8>> {
    fn from(key: &[u8]) -> Self {
        Secret::<Vec<u8>>::new(key)
    }
}

impl From<Vec<u8>> for Secret<Vec<u8>> {
    fn from(key: Vec<u8>) -> Self {
        Secret::from_zeroizing(Zeroizing::new(key))
    }
}

impl From<&Secret<String>> for Secret<Vec<u8>> {
    /// The text's bytes as a key (a configured signing secret).
    fn from(secret: &Secret<String>) -> Self {
        Secret::<Vec<u8>>::new(secret.expose().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let key = Secret::<Vec<u8>>::from("hunter2-very-secret");
        let text = Secret::<String>::from("hunter2-very-secret");
        let printed = format!("{key:?} {:?} {text:?}", vec![key.clone()]);
        assert!(!printed.contains("hunter2"), "{printed}");
        assert_eq!(printed.matches("Secret(<redacted>)").count(), 3);
        assert_eq!(key.expose(), b"hunter2-very-secret");
        assert_eq!(text.expose(), "hunter2-very-secret");
    }

    #[test]
    fn equality_compares_the_bytes() {
        let a = Secret::<Vec<u8>>::from("abc");
        assert_eq!(a, Secret::<Vec<u8>>::from(&Secret::<String>::from("abc")));
        assert_ne!(a, Secret::<Vec<u8>>::from("abd"));
        assert_ne!(a, Secret::<Vec<u8>>::from("ab"));
    }
}
