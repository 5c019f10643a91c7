//! [`PolicyError`]: why a policy document or shorthand was refused.

/// A policy that cannot be used. Each message is one line naming the
/// element at fault; a policy is never partly applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The text is not JSON.
    #[error("not valid JSON: {0}")]
    Json(String),
    /// The JSON is not a policy document's shape.
    #[error("{0}")]
    Shape(String),
    /// An element, operator or condition key outside the supported subset:
    /// refused rather than ignored, so a policy never means less than it says.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A value that cannot be read (an address, a date, a bool, an ARN).
    #[error("invalid value: {0}")]
    Value(String),
}
