//! Why a request failed verification, and the S3 error each reason maps to.

use crate::s3error::{S3Error, S3ErrorCode};
use crate::sigv4::{AuthParseError, ChecksumAlgorithm, ChunkedError};

/// Every way a request can fail SigV4 verification, before or while its
/// body streams. [`VerifyError::to_s3_error`] gives the code MinIO and S3
/// answer with.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Neither an `Authorization` header nor presigned parameters.
    #[error("the request carries no signature")]
    MissingAuthentication,
    /// Both an `Authorization` header and presigned parameters.
    #[error("the request uses more than one authentication mechanism")]
    BothAuthMechanisms,
    /// SigV2, SigV4A or an unknown scheme.
    #[error("unsupported authorization mechanism {0:?}")]
    UnsupportedAlgorithm(String),
    /// The `Authorization` header could not be read.
    #[error("malformed Authorization header: {0}")]
    MalformedAuthorization(AuthParseError),
    /// The presigned parameters could not be read.
    #[error("malformed presigned URL: {0}")]
    MalformedPresigned(AuthParseError),
    /// No usable `x-amz-date`.
    #[error("missing or malformed x-amz-date")]
    MissingDate,
    /// The scope date is not the date of `x-amz-date`.
    #[error("credential scope date {scope} does not match x-amz-date {date}")]
    ScopeDateMismatch {
        /// The scope date.
        scope: String,
        /// The x-amz-date day.
        date: String,
    },
    /// The scope names a region this layer does not serve.
    #[error("region {got:?} is wrong; expecting {expected:?}")]
    WrongRegion {
        /// The scope's region.
        got: String,
        /// The configured region(s).
        expected: String,
    },
    /// The scope names another service.
    #[error("service {got:?} is wrong; expecting {expected:?}")]
    WrongService {
        /// The scope's service.
        got: String,
        /// The configured service.
        expected: String,
    },
    /// The signing time is too far from now.
    #[error("signing time {signed} differs from server time {now} by more than {max_secs} s")]
    ClockSkew {
        /// The request's time.
        signed: String,
        /// The server's time.
        now: String,
        /// The allowed skew.
        max_secs: u64,
    },
    /// The presigned URL has expired.
    #[error("presigned URL expired")]
    Expired,
    /// The presigned URL's date is in the future.
    #[error("presigned URL is not valid yet")]
    NotYetValid,
    /// `host` or some `x-amz-*` headers were not signed.
    #[error("headers present in the request were not signed: {0:?}")]
    HeadersNotSigned(Vec<String>),
    /// Header auth without `x-amz-content-sha256`.
    #[error("missing x-amz-content-sha256")]
    MissingContentSha256,
    /// `x-amz-content-sha256` is neither a digest nor a known mode.
    #[error("invalid x-amz-content-sha256 {0:?}")]
    InvalidContentSha256(String),
    /// aws-chunked without `x-amz-decoded-content-length`, or a chunked PUT
    /// without any length.
    #[error("missing {0}")]
    MissingContentLength(&'static str),
    /// A length header is not a number.
    #[error("invalid {0}")]
    InvalidLength(&'static str),
    /// A checksum header's value is not a valid digest.
    #[error("invalid value for {0}")]
    InvalidChecksumHeader(&'static str),
    /// More than one `x-amz-checksum-*` header.
    #[error("more than one x-amz-checksum header")]
    MultipleChecksumHeaders,
    /// The access key id is unknown.
    #[error("unknown access key id {0:?}")]
    UnknownAccessKey(String),
    /// The credential store could not answer.
    #[error("{0}")]
    StoreUnavailable(String),
    /// The session token is missing or wrong.
    #[error("session token missing or invalid")]
    InvalidToken,
    /// The request signature does not match.
    #[error("signature does not match for access key {access_key_id}")]
    SignatureMismatch {
        /// The access key id.
        access_key_id: String,
        /// The string s3tap signed (no secret in it).
        string_to_sign: String,
        /// The canonical request s3tap hashed.
        canonical_request: String,
    },
    /// The payload's SHA-256 differs from `x-amz-content-sha256`.
    #[error("payload SHA-256 {computed} does not match x-amz-content-sha256 {claimed}")]
    PayloadHashMismatch {
        /// The client's claim.
        claimed: String,
        /// What the payload hashes to.
        computed: String,
    },
    /// A checksum header or trailer does not match the payload.
    #[error("the {0} checksum does not match the payload")]
    ChecksumMismatch(ChecksumAlgorithm),
    /// A chunk signature does not match.
    #[error("chunk signature does not match")]
    ChunkSignatureMismatch,
    /// The trailer signature does not match or is missing.
    #[error("trailer signature does not match or is missing")]
    TrailerSignatureMismatch,
    /// `x-amz-trailer` named a checksum the trailer did not carry.
    #[error("the trailer {0} announced by x-amz-trailer is missing")]
    MissingTrailer(String),
    /// The aws-chunked framing is broken.
    #[error("aws-chunked framing: {0}")]
    Framing(ChunkedError),
    /// The payload is shorter or longer than declared.
    #[error("payload of {received} bytes where {declared} were declared")]
    LengthMismatch {
        /// Declared length.
        declared: u64,
        /// Received so far.
        received: u64,
    },
    /// The client's body stream failed (disconnect, reset).
    #[error("the request body ended with an error: {0}")]
    BodyAborted(String),
}

impl VerifyError {
    /// The S3 error a client gets for this failure.
    pub fn to_s3_error(&self) -> S3Error {
        use S3ErrorCode::*;
        let (code, message): (S3ErrorCode, String) = match self {
            VerifyError::MissingAuthentication => (AccessDenied, "Unauthenticated requests are not allowed for this api".into()),
            VerifyError::BothAuthMechanisms => (InvalidArgument, "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or the Authorization header should be specified".into()),
            VerifyError::UnsupportedAlgorithm(_) => (InvalidRequest, "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.".into()),
            VerifyError::MalformedAuthorization(reason) => (AuthorizationHeaderMalformed, format!("The authorization header is malformed; {reason}.")),
            VerifyError::MalformedPresigned(reason) => (AuthorizationQueryParametersError, format!("Error parsing the X-Amz-Credential parameters; {reason}.")),
            VerifyError::MissingDate => (AccessDenied, "AWS authentication requires a valid Date or x-amz-date header".into()),
            VerifyError::ScopeDateMismatch { scope, date } => (AuthorizationHeaderMalformed, format!("The authorization header is malformed; Invalid credential date \"{scope}\". This date is not the same as X-Amz-Date: \"{date}\".")),
            VerifyError::WrongRegion { got, expected } => (AuthorizationHeaderMalformed, format!("The authorization header is malformed; the region '{got}' is wrong; expecting '{expected}'")),
            VerifyError::WrongService { got, expected } => (AuthorizationHeaderMalformed, format!("The authorization header is malformed; the service '{got}' is wrong; expecting '{expected}'")),
            VerifyError::ClockSkew { .. } => (RequestTimeTooSkewed, "The difference between the request time and the server's time is too large.".into()),
            VerifyError::Expired => (AccessDenied, "Request has expired".into()),
            VerifyError::NotYetValid => (AccessDenied, "Request is not valid yet".into()),
            VerifyError::HeadersNotSigned(_) => (AccessDenied, "There were headers present in the request which were not signed".into()),
            VerifyError::MissingContentSha256 => (InvalidRequest, "Missing required header for this request: x-amz-content-sha256".into()),
            VerifyError::InvalidContentSha256(_) => (InvalidArgument, "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER or a valid sha256 value.".into()),
            VerifyError::MissingContentLength(_) => (MissingContentLength, "You must provide the Content-Length HTTP header.".into()),
            VerifyError::InvalidLength(header) => (InvalidArgument, format!("The {header} header is not a valid length.")),
            VerifyError::InvalidChecksumHeader(header) => (InvalidRequest, format!("Value for {header} header is invalid.")),
            VerifyError::MultipleChecksumHeaders => (InvalidRequest, "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.".into()),
            VerifyError::UnknownAccessKey(_) => (InvalidAccessKeyId, "The AWS Access Key Id you provided does not exist in our records.".into()),
            VerifyError::StoreUnavailable(_) => (ServiceUnavailable, "The credential store is unavailable; please retry.".into()),
            VerifyError::InvalidToken => (InvalidToken, "The provided token is malformed or otherwise invalid.".into()),
            VerifyError::SignatureMismatch { .. } => (SignatureDoesNotMatch, "The request signature we calculated does not match the signature you provided. Check your key and signing method.".into()),
            VerifyError::PayloadHashMismatch { .. } => (XAmzContentSHA256Mismatch, "The provided 'x-amz-content-sha256' header does not match what was computed.".into()),
            VerifyError::ChecksumMismatch(algorithm) => (BadDigest, format!("The {algorithm} you specified did not match the calculated checksum.")),
            VerifyError::ChunkSignatureMismatch | VerifyError::TrailerSignatureMismatch => (SignatureDoesNotMatch, "The request signature we calculated does not match the signature you provided. Check your key and signing method.".into()),
            VerifyError::MissingTrailer(name) => (InvalidRequest, format!("The trailer {name} announced in x-amz-trailer was not sent.")),
            VerifyError::Framing(ChunkedError::ChunkTooLarge { .. }) => (EntityTooLarge, "Your proposed upload exceeds the maximum allowed chunk size.".into()),
            VerifyError::Framing(ChunkedError::Truncated) => (IncompleteBody, "You did not provide the number of bytes specified by the Content-Length HTTP header.".into()),
            VerifyError::Framing(reason) => (InvalidRequest, format!("Invalid aws-chunked encoding: {reason}.")),
            VerifyError::LengthMismatch { .. } => (IncompleteBody, "You did not provide the number of bytes specified by the Content-Length HTTP header.".into()),
            VerifyError::BodyAborted(_) => (IncompleteBody, "The request body was not received completely.".into()),
        };
        let error = S3Error::new(code, message);
        match self {
            VerifyError::SignatureMismatch {
                access_key_id,
                string_to_sign,
                canonical_request,
            } => error
                .with_detail("AWSAccessKeyId", access_key_id.clone())
                .with_detail("StringToSign", string_to_sign.clone())
                .with_detail("CanonicalRequest", canonical_request.clone()),
            VerifyError::UnknownAccessKey(key) => error.with_detail("AWSAccessKeyId", key.clone()),
            VerifyError::HeadersNotSigned(names) => {
                error.with_detail("HeadersNotSigned", names.join(", "))
            }
            VerifyError::ClockSkew {
                signed,
                now,
                max_secs,
            } => error
                .with_detail("RequestTime", signed.clone())
                .with_detail("ServerTime", now.clone())
                .with_detail("MaxAllowedSkewMilliseconds", (max_secs * 1000).to_string()),
            VerifyError::PayloadHashMismatch { claimed, computed } => error
                .with_detail("ClientComputedContentSHA256", claimed.clone())
                .with_detail("S3ComputedContentSHA256", computed.clone()),
            _ => error,
        }
    }

    /// A short, stable label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::MissingAuthentication => "missing_authentication",
            VerifyError::BothAuthMechanisms => "both_auth_mechanisms",
            VerifyError::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            VerifyError::MalformedAuthorization(_) => "malformed_authorization",
            VerifyError::MalformedPresigned(_) => "malformed_presigned",
            VerifyError::MissingDate => "missing_date",
            VerifyError::ScopeDateMismatch { .. } => "scope_date_mismatch",
            VerifyError::WrongRegion { .. } => "wrong_region",
            VerifyError::WrongService { .. } => "wrong_service",
            VerifyError::ClockSkew { .. } => "clock_skew",
            VerifyError::Expired => "expired",
            VerifyError::NotYetValid => "not_yet_valid",
            VerifyError::HeadersNotSigned(_) => "headers_not_signed",
            VerifyError::MissingContentSha256 => "missing_content_sha256",
            VerifyError::InvalidContentSha256(_) => "invalid_content_sha256",
            VerifyError::MissingContentLength(_) => "missing_content_length",
            VerifyError::InvalidLength(_) => "invalid_length",
            VerifyError::InvalidChecksumHeader(_) => "invalid_checksum_header",
            VerifyError::MultipleChecksumHeaders => "multiple_checksum_headers",
            VerifyError::UnknownAccessKey(_) => "unknown_access_key",
            VerifyError::StoreUnavailable(_) => "store_unavailable",
            VerifyError::InvalidToken => "invalid_token",
            VerifyError::SignatureMismatch { .. } => "signature_mismatch",
            VerifyError::PayloadHashMismatch { .. } => "payload_hash_mismatch",
            VerifyError::ChecksumMismatch(_) => "checksum_mismatch",
            VerifyError::ChunkSignatureMismatch => "chunk_signature_mismatch",
            VerifyError::TrailerSignatureMismatch => "trailer_signature_mismatch",
            VerifyError::MissingTrailer(_) => "missing_trailer",
            VerifyError::Framing(_) => "framing",
            VerifyError::LengthMismatch { .. } => "length_mismatch",
            VerifyError::BodyAborted(_) => "body_aborted",
        }
    }
}
