//! S3 error codes and the XML error responses S3 clients understand.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

/// An S3 error code with the HTTP status S3 (and MinIO) answer it with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum S3ErrorCode {
    /// 403: access denied (no signature, expired presigned URL, unsigned headers).
    AccessDenied,
    /// 400: the `Authorization` header could not be used.
    AuthorizationHeaderMalformed,
    /// 400: presigned-URL parameters could not be used.
    AuthorizationQueryParametersError,
    /// 400: a checksum or Content-MD5 did not match the payload.
    BadDigest,
    /// 400: a chunk is larger than allowed.
    EntityTooLarge,
    /// 400: the body ended before the declared length.
    IncompleteBody,
    /// 500: something failed inside s3tap.
    InternalError,
    /// 403: the access key id is unknown.
    InvalidAccessKeyId,
    /// 400: an argument is invalid.
    InvalidArgument,
    /// 400: the request is invalid (framing, unsupported mechanism).
    InvalidRequest,
    /// 400: the session token is wrong.
    InvalidToken,
    /// 411: Content-Length is required.
    MissingContentLength,
    /// 501: not implemented.
    NotImplemented,
    /// 403: the clock skew is larger than allowed.
    RequestTimeTooSkewed,
    /// 503: the service cannot answer now.
    ServiceUnavailable,
    /// 403: the signature does not match.
    SignatureDoesNotMatch,
    /// 400: the payload does not match `x-amz-content-sha256`.
    XAmzContentSHA256Mismatch,
    /// 502: the upstream could not be reached or answered badly.
    BadGateway,
    /// 504: the upstream did not answer in time.
    GatewayTimeout,
    /// 400: the request target could not be used (too long, malformed).
    InvalidURI,
    /// 400: the client stopped sending in the middle of the request.
    RequestTimeout,
    /// 400: the XML body is not well-formed or not S3's schema.
    MalformedXML,
    /// 405: the method is not allowed on this resource.
    MethodNotAllowed,
    /// 400: an upload is smaller than a POST policy's `content-length-range`.
    EntityTooSmall,
    /// 400: a POST form is not `multipart/form-data` S3 can read.
    MalformedPOSTRequest,
    /// 400: a POST form's fields before the file are too large.
    MaxPostPreDataLengthExceeded,
    /// 400: a POST policy document cannot be read.
    InvalidPolicyDocument,
    /// 400: a POST form has no file (or more than one).
    IncorrectNumberOfFilesInPostRequest,
    /// 416: a `Range` outside the object.
    InvalidRange,
}

impl S3ErrorCode {
    /// The code as it appears in `<Code>`.
    pub fn as_str(&self) -> &'static str {
        match self {
            S3ErrorCode::AccessDenied => "AccessDenied",
            S3ErrorCode::AuthorizationHeaderMalformed => "AuthorizationHeaderMalformed",
            S3ErrorCode::AuthorizationQueryParametersError => "AuthorizationQueryParametersError",
            S3ErrorCode::BadDigest => "BadDigest",
            S3ErrorCode::EntityTooLarge => "EntityTooLarge",
            S3ErrorCode::IncompleteBody => "IncompleteBody",
            S3ErrorCode::InternalError => "InternalError",
            S3ErrorCode::InvalidAccessKeyId => "InvalidAccessKeyId",
            S3ErrorCode::InvalidArgument => "InvalidArgument",
            S3ErrorCode::InvalidRequest => "InvalidRequest",
            S3ErrorCode::InvalidToken => "InvalidToken",
            S3ErrorCode::MissingContentLength => "MissingContentLength",
            S3ErrorCode::NotImplemented => "NotImplemented",
            S3ErrorCode::RequestTimeTooSkewed => "RequestTimeTooSkewed",
            S3ErrorCode::ServiceUnavailable => "ServiceUnavailable",
            S3ErrorCode::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            S3ErrorCode::XAmzContentSHA256Mismatch => "XAmzContentSHA256Mismatch",
            S3ErrorCode::BadGateway => "BadGateway",
            S3ErrorCode::GatewayTimeout => "GatewayTimeout",
            S3ErrorCode::InvalidURI => "InvalidURI",
            S3ErrorCode::RequestTimeout => "RequestTimeout",
            S3ErrorCode::MalformedXML => "MalformedXML",
            S3ErrorCode::MethodNotAllowed => "MethodNotAllowed",
            S3ErrorCode::EntityTooSmall => "EntityTooSmall",
            S3ErrorCode::MalformedPOSTRequest => "MalformedPOSTRequest",
            S3ErrorCode::MaxPostPreDataLengthExceeded => "MaxPostPreDataLengthExceeded",
            S3ErrorCode::InvalidPolicyDocument => "InvalidPolicyDocument",
            S3ErrorCode::IncorrectNumberOfFilesInPostRequest => {
                "IncorrectNumberOfFilesInPostRequest"
            }
            S3ErrorCode::InvalidRange => "InvalidRange",
        }
    }

    /// The HTTP status for this code.
    pub fn status(&self) -> StatusCode {
        match self {
            S3ErrorCode::AccessDenied
            | S3ErrorCode::InvalidAccessKeyId
            | S3ErrorCode::RequestTimeTooSkewed
            | S3ErrorCode::SignatureDoesNotMatch => StatusCode::FORBIDDEN,
            S3ErrorCode::AuthorizationHeaderMalformed
            | S3ErrorCode::AuthorizationQueryParametersError
            | S3ErrorCode::BadDigest
            | S3ErrorCode::EntityTooLarge
            | S3ErrorCode::IncompleteBody
            | S3ErrorCode::InvalidArgument
            | S3ErrorCode::InvalidRequest
            | S3ErrorCode::InvalidToken
            | S3ErrorCode::XAmzContentSHA256Mismatch
            | S3ErrorCode::InvalidURI
            | S3ErrorCode::RequestTimeout
            | S3ErrorCode::MalformedXML
            | S3ErrorCode::EntityTooSmall
            | S3ErrorCode::MalformedPOSTRequest
            | S3ErrorCode::MaxPostPreDataLengthExceeded
            | S3ErrorCode::InvalidPolicyDocument
            | S3ErrorCode::IncorrectNumberOfFilesInPostRequest => StatusCode::BAD_REQUEST,
            S3ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            S3ErrorCode::InvalidRange => StatusCode::RANGE_NOT_SATISFIABLE,
            S3ErrorCode::MissingContentLength => StatusCode::LENGTH_REQUIRED,
            S3ErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            S3ErrorCode::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            S3ErrorCode::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            S3ErrorCode::BadGateway => StatusCode::BAD_GATEWAY,
            S3ErrorCode::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

impl fmt::Display for S3ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An S3 error: code, message and optional extra elements (S3 adds, for
/// example, `StringToSign` to SignatureDoesNotMatch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Error {
    code: S3ErrorCode,
    message: Cow<'static, str>,
    details: Vec<(&'static str, String)>,
}

impl S3Error {
    /// An error with a code and a message for the client.
    pub fn new(code: S3ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        S3Error {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// Adds an element to the XML body (never put a secret here).
    pub fn with_detail(mut self, element: &'static str, value: impl Into<String>) -> Self {
        self.details.push((element, value.into()));
        self
    }

    /// The code.
    pub fn code(&self) -> S3ErrorCode {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The extra elements.
    pub fn details(&self) -> &[(&'static str, String)] {
        &self.details
    }

    /// The XML body, as S3 writes it.
    pub fn to_xml(&self, resource: &str, request_id: &str) -> String {
        let mut xml = String::with_capacity(256);
        xml.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>");
        xml.push_str(self.code.as_str());
        xml.push_str("</Code><Message>");
        escape_xml_into(&mut xml, &self.message);
        xml.push_str("</Message>");
        for (element, value) in &self.details {
            xml.push('<');
            xml.push_str(element);
            xml.push('>');
            escape_xml_into(&mut xml, value);
            xml.push_str("</");
            xml.push_str(element);
            xml.push('>');
        }
        xml.push_str("<Resource>");
        escape_xml_into(&mut xml, resource);
        xml.push_str("</Resource><RequestId>");
        escape_xml_into(&mut xml, request_id);
        xml.push_str("</RequestId></Error>");
        xml
    }

    /// The full HTTP response: status, `x-amz-request-id`, XML body (none
    /// for HEAD, which S3 answers with headers only).
    pub fn to_response(&self, resource: &str, request_id: &str, is_head: bool) -> Response<Bytes> {
        let body = if is_head {
            Bytes::new()
        } else {
            Bytes::from(self.to_xml(resource, request_id))
        };
        let mut response = Response::new(body);
        *response.status_mut() = self.code.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
        if let Ok(value) = HeaderValue::from_str(request_id) {
            headers.insert("x-amz-request-id", value);
        }
        response
    }
}

impl fmt::Display for S3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for S3Error {}

/// Escapes the five XML special characters, and drops characters XML 1.0
/// cannot carry at all.
pub fn escape_xml_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
}

/// A new request id: 16 upper-case hex digits, like S3's, unique within the
/// process and unlikely to repeat across processes.
pub fn new_request_id() -> String {
    let id = request_id_digits();
    std::str::from_utf8(&id).expect("hex digits").to_owned()
}

/// The digits of [`new_request_id`], on the stack: the proxy makes one per
/// request and keeps it in an `Arc<str>` without a `String` in between.
fn request_id_digits() -> [u8; 16] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        nanos ^ (u64::from(std::process::id()) << 32)
    });
    // splitmix64: a bijection, so distinct counter values never collide.
    let mut z = seed.wrapping_add(
        COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut digits = [0u8; 16];
    for (i, digit) in digits.iter_mut().enumerate() {
        *digit = DIGITS[(z >> (60 - 4 * i)) as usize & 0xF];
    }
    digits
}

/// The request id of one request, as a request extension: set it early (the
/// proxy's server does) and the layers behind that answer with an S3 error
/// use it, so the id a client sees is the one in the logs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(std::sync::Arc<str>);

impl RequestId {
    /// An id given by the caller (another system's request id, a test's).
    pub fn new(id: impl Into<std::sync::Arc<str>>) -> Self {
        RequestId(id.into())
    }

    /// A fresh id from [`new_request_id`].
    pub fn generate() -> Self {
        let id = request_id_digits();
        RequestId(std::str::from_utf8(&id).expect("hex digits").into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id in `extensions`, or a fresh one when there is none.
    pub fn from_extensions_or_new(extensions: &http::Extensions) -> Self {
        extensions
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(RequestId::generate)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_s3_xml_with_escaping() {
        let error = S3Error::new(S3ErrorCode::SignatureDoesNotMatch, "bad <sig> & \"more\"")
            .with_detail("AWSAccessKeyId", "AKID");
        let xml = error.to_xml("/bucket/a&b", "REQ1");
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SignatureDoesNotMatch</Code>\
             <Message>bad &lt;sig&gt; &amp; &quot;more&quot;</Message><AWSAccessKeyId>AKID</AWSAccessKeyId>\
             <Resource>/bucket/a&amp;b</Resource><RequestId>REQ1</RequestId></Error>"
        );
        let response = error.to_response("/", "REQ1", false);
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(response.headers()["x-amz-request-id"], "REQ1");
        assert!(error.to_response("/", "REQ1", true).body().is_empty());
    }

    #[test]
    fn request_ids_are_distinct() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| id.len() == 16));
        assert!(ids.iter().all(|id| id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))));
        assert_eq!(RequestId::generate().as_str().len(), 16);
    }
}
