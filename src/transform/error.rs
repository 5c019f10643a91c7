//! [`TransformError`]: what can go wrong between the client's plaintext and
//! the stored, transformed bytes; mapped to S3 errors at the edge.

use crate::s3error::{S3Error, S3ErrorCode};

/// Errors of the transform layer.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// The codec could not encode the upload.
    #[error("cannot encode the payload: {0}")]
    Encode(#[source] std::io::Error),
    /// The stored object does not decode (it is damaged, or not what its
    /// metadata says).
    #[error("the stored object does not decode: {0}")]
    Decode(#[source] std::io::Error),
    /// The stored object ended before its plaintext did.
    #[error("the stored object ended {missing} plaintext bytes early")]
    Truncated {
        /// Plaintext bytes that were announced and never came.
        missing: u64,
    },
    /// The object names a codec this proxy does not know.
    #[error("the object was written with the unknown transform {0:?}")]
    UnknownCodec(String),
    /// The stored object's frame index is missing or unreadable.
    #[error("the stored object has no readable frame index")]
    BadIndex,
    /// The client's upload body failed (its signature or checksum did not
    /// verify, or the connection broke).
    #[error("the upload body failed: {0}")]
    Body(String),
    /// The verifier refused the upload's body (payload hash, checksum or
    /// chunk signature): its own S3 error goes to the client.
    #[error("the upload was refused: {0}")]
    Refused(S3Error),
    /// A request the transform cannot serve on a transformed object.
    #[error("{0}")]
    Unsupported(&'static str),
    /// A request the client got wrong.
    #[error("{0}")]
    Invalid(String),
    /// The upstream refused one of the layer's own requests.
    #[error("the upstream answered {status} to the {step} request")]
    Upstream {
        /// Which request (`UploadPart`, `CompleteMultipartUpload`, ...).
        step: &'static str,
        /// Its status.
        status: http::StatusCode,
    },
}

impl TransformError {
    /// The S3 error a client gets.
    pub fn to_s3_error(&self) -> S3Error {
        if let TransformError::Refused(error) = self {
            return error.clone();
        }
        let code = match self {
            TransformError::Refused(error) => error.code(),
            TransformError::Body(_) => S3ErrorCode::IncompleteBody,
            TransformError::Unsupported(_) => S3ErrorCode::NotImplemented,
            TransformError::Invalid(_) => S3ErrorCode::InvalidRequest,
            TransformError::Upstream { .. } => S3ErrorCode::BadGateway,
            TransformError::Encode(_)
            | TransformError::Decode(_)
            | TransformError::Truncated { .. }
            | TransformError::UnknownCodec(_)
            | TransformError::BadIndex => S3ErrorCode::InternalError,
        };
        S3Error::new(code, self.to_string())
    }
}
