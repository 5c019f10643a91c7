//! Shared HMAC keys that are wiped from memory on drop and never printed.

use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

/// A shared webhook signing key.
///
/// The bytes are zeroized when the last clone is dropped, and `Debug` prints
/// `Secret(<redacted>)`, so a key cannot leak through logs or panics. Clones
/// share one allocation, so cloning a layer does not scatter copies of the key
/// around the heap.
#[derive(Clone)]
pub struct Secret(Arc<Zeroizing<Vec<u8>>>);

impl Secret {
    /// A key made of these bytes (copied; the caller's copy is its own to
    /// wipe).
    pub fn new(key: impl AsRef<[u8]>) -> Self {
        Self(Arc::new(Zeroizing::new(key.as_ref().to_vec())))
    }

    pub(crate) fn from_zeroizing(key: Zeroizing<Vec<u8>>) -> Self {
        Self(Arc::new(key))
    }

    /// The raw key bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl From<&str> for Secret {
    fn from(key: &str) -> Self {
        Self::new(key)
    }
}

impl From<String> for Secret {
    fn from(key: String) -> Self {
        Self::from_zeroizing(Zeroizing::new(key.into_bytes()))
    }
}

impl From<&[u8]> for Secret {
    fn from(key: &[u8]) -> Self {
        Self::new(key)
    }
}

impl From<Vec<u8>> for Secret {
    fn from(key: Vec<u8>) -> Self {
        Self::from_zeroizing(Zeroizing::new(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_key() {
        let secret = Secret::from("hunter2-very-secret");
        let printed = format!("{secret:?} {:?}", vec![secret.clone()]);
        assert!(!printed.contains("hunter2"), "{printed}");
        assert_eq!(secret.expose(), b"hunter2-very-secret");
    }
}
