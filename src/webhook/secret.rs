//! The webhook keys' type: the crate's one [`Secret`](crate::secret::Secret)
//! holding raw bytes (an HMAC key need not be UTF-8).

/// A shared webhook signing key: [`crate::secret::Secret`] over bytes,
/// zeroized when the last clone is dropped, printed as `Secret(<redacted>)`.
pub type Secret = crate::secret::Secret<Vec<u8>>;
