//! [`PostError`]: why a form upload is refused, and the S3 error for each.

use super::policy::{PolicyError, PolicyViolation};
use crate::s3error::{S3Error, S3ErrorCode};

/// Why a browser form upload (presigned POST) was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostError {
    /// The body is not a readable `multipart/form-data` form.
    #[error("the form is not valid multipart/form-data: {0}")]
    Malformed(String),
    /// The fields before the file are larger than S3 allows.
    #[error("the fields before the file are larger than 20 KB")]
    PreDataTooLarge,
    /// The form has no `file` field.
    #[error("the form has no file field")]
    NoFile,
    /// A required field is missing.
    #[error("the form has no {0} field")]
    MissingField(&'static str),
    /// No `policy` field: an anonymous form upload, which s3tap does not accept.
    #[error("the form carries no policy (anonymous form uploads are not accepted)")]
    Anonymous,
    /// A SigV2 form (`AWSAccessKeyId` and `signature`).
    #[error("SigV2 form uploads are not supported")]
    SigV2,
    /// `x-amz-algorithm` is not `AWS4-HMAC-SHA256`.
    #[error("unsupported x-amz-algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// `x-amz-credential` could not be read.
    #[error("malformed x-amz-credential")]
    MalformedCredential,
    /// `x-amz-date` could not be read or is not the credential's day.
    #[error("malformed x-amz-date")]
    MalformedDate,
    /// The credential's region or service is not accepted here.
    #[error("the credential is scoped to {0:?}, which is not accepted here")]
    WrongScope(String),
    /// The access key id is unknown.
    #[error("unknown access key id")]
    UnknownAccessKey,
    /// The credential store failed.
    #[error("the credential store failed: {0}")]
    CredentialStore(String),
    /// `x-amz-signature` does not sign the policy.
    #[error("the policy signature does not match")]
    SignatureMismatch,
    /// The policy document is malformed.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The form breaks its policy.
    #[error(transparent)]
    Violation(#[from] PolicyViolation),
    /// The file is larger than the policy's `content-length-range` (or the
    /// layer's spool limit).
    #[error("the file is larger than allowed ({max} bytes)")]
    TooLarge {
        /// The largest size allowed.
        max: u64,
    },
    /// The file is smaller than the policy's `content-length-range`.
    #[error("the file is smaller than allowed ({min} bytes)")]
    TooSmall {
        /// The smallest size allowed.
        min: u64,
    },
    /// The file part's stated length and its bytes differ.
    #[error("the file part's Content-Length does not match its bytes")]
    LengthMismatch,
    /// The temporary file could not be written or read.
    #[error("the upload spool failed: {0}")]
    Spool(String),
}

impl PostError {
    pub(crate) fn from_multer(error: multer::Error) -> PostError {
        PostError::Malformed(error.to_string())
    }

    /// A short stable label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            PostError::Malformed(_) => "post_malformed",
            PostError::PreDataTooLarge => "post_fields_too_large",
            PostError::NoFile => "post_no_file",
            PostError::MissingField(_) => "post_missing_field",
            PostError::Anonymous => "missing_authentication",
            PostError::SigV2 | PostError::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            PostError::MalformedCredential | PostError::MalformedDate => {
                "post_malformed_credential"
            }
            PostError::WrongScope(_) => "wrong_scope",
            PostError::UnknownAccessKey => "unknown_access_key",
            PostError::CredentialStore(_) => "credential_store",
            PostError::SignatureMismatch => "signature_mismatch",
            PostError::Policy(_) => "post_policy_malformed",
            PostError::Violation(PolicyViolation::Expired) => "post_policy_expired",
            PostError::Violation(_) => "post_policy_condition",
            PostError::TooLarge { .. } => "post_too_large",
            PostError::TooSmall { .. } => "post_too_small",
            PostError::LengthMismatch => "post_length_mismatch",
            PostError::Spool(_) => "post_spool",
        }
    }

    /// The S3 error a client gets, with the codes and statuses AWS and
    /// MinIO answer form uploads with.
    pub fn to_s3_error(&self) -> S3Error {
        use S3ErrorCode::*;
        match self {
            PostError::Malformed(_) | PostError::LengthMismatch => S3Error::new(
                MalformedPOSTRequest,
                "The body of your POST request is not well-formed multipart/form-data.",
            ),
            PostError::PreDataTooLarge => S3Error::new(
                MaxPostPreDataLengthExceeded,
                "Your POST request fields preceeding the upload file was too large.",
            ),
            PostError::NoFile => S3Error::new(
                IncorrectNumberOfFilesInPostRequest,
                "POST requires exactly one file upload per request.",
            ),
            PostError::MissingField(name) => S3Error::new(
                InvalidArgument,
                format!("Bucket POST must contain a field named '{name}'.  If it is specified, please check the order of the fields."),
            )
            .with_detail("ArgumentName", *name),
            PostError::Anonymous => S3Error::new(
                AccessDenied,
                "Anonymous form uploads are not allowed: sign a policy (presigned POST).",
            ),
            PostError::SigV2 => S3Error::new(
                InvalidRequest,
                "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.",
            ),
            PostError::UnsupportedAlgorithm(_) => S3Error::new(
                InvalidArgument,
                "Only AWS4-HMAC-SHA256 is supported for x-amz-algorithm.",
            )
            .with_detail("ArgumentName", "x-amz-algorithm"),
            PostError::MalformedCredential => S3Error::new(
                InvalidArgument,
                "The x-amz-credential field is not <key>/<YYYYMMDD>/<region>/s3/aws4_request.",
            )
            .with_detail("ArgumentName", "x-amz-credential"),
            PostError::MalformedDate => S3Error::new(
                InvalidArgument,
                "The x-amz-date field is not YYYYMMDDTHHMMSSZ on the credential's day.",
            )
            .with_detail("ArgumentName", "x-amz-date"),
            PostError::WrongScope(scope) => S3Error::new(
                AuthorizationQueryParametersError,
                format!("The credential scope {scope} is not accepted by this endpoint."),
            ),
            PostError::UnknownAccessKey => S3Error::new(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records.",
            ),
            PostError::CredentialStore(_) => S3Error::new(
                ServiceUnavailable,
                "The credentials could not be looked up. Please retry.",
            ),
            PostError::SignatureMismatch => S3Error::new(
                SignatureDoesNotMatch,
                "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
            ),
            PostError::Policy(error) => S3Error::new(InvalidPolicyDocument, error.to_string()),
            PostError::Violation(violation) => S3Error::new(AccessDenied, violation.to_string()),
            PostError::TooLarge { max } => S3Error::new(
                EntityTooLarge,
                "Your proposed upload exceeds the maximum allowed size",
            )
            .with_detail("MaxSizeAllowed", max.to_string()),
            PostError::TooSmall { min } => S3Error::new(
                EntityTooSmall,
                "Your proposed upload is smaller than the minimum allowed size",
            )
            .with_detail("MinSizeAllowed", min.to_string()),
            PostError::Spool(_) => S3Error::new(
                InternalError,
                "We encountered an internal error. Please try again.",
            ),
        }
    }
}
