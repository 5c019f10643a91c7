//! [`B2Error`]: why the B2 native proxy refused a request, answered in B2's
//! own JSON error shape.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};

/// A request the proxy answered itself. Each maps to the status and `code`
/// B2 uses for the same fault, so clients (b2sdk, the `b2` CLI) react as they
/// would to B2: `expired_auth_token` makes them authorize again or fetch a
/// new upload URL, `bad_request` is final.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum B2Error {
    /// The token is not one this proxy handed out (it was evicted from the
    /// bounded map, or issued before the proxy restarted).
    #[error("this proxy does not know the authorization token (expired, or issued before a restart): authorize again")]
    UnknownToken,
    /// The upload URL is not one this proxy handed out (evicted or stale).
    #[error("this proxy does not know the upload URL (expired, or issued before a restart): get a new upload URL")]
    UnknownUploadUrl,
    /// A download without a token, and no upstream download URL is
    /// configured for public buckets.
    #[error("a download without an authorization token needs the proxy's download_url for public buckets, which is not set")]
    NoAnonymousDownload,
    /// A request with no `Authorization` header where one is needed.
    #[error("the Authorization header is missing")]
    MissingAuthorization,
    /// An upload without a usable `X-Bz-Content-Sha1`.
    #[error("X-Bz-Content-Sha1 must be 40 hex digits, hex_digits_at_end or do_not_verify")]
    BadSha1Header,
    /// An upload without a `Content-Length`.
    #[error("an upload needs a Content-Length")]
    MissingContentLength,
    /// `hex_digits_at_end` with fewer than 40 bytes.
    #[error("with hex_digits_at_end the Content-Length must count the 40 hex digits at the end")]
    TooShortForDigits,
    /// The body's SHA-1 is not the one the client sent.
    #[error(
        "the SHA-1 of the data received ({computed}) does not match X-Bz-Content-Sha1 ({claimed})"
    )]
    Sha1Mismatch {
        /// What the client claimed (hex).
        claimed: String,
        /// What the proxy computed over the bytes it received (hex).
        computed: String,
    },
    /// With `hex_digits_at_end`, the last 40 bytes are not hex.
    #[error("with hex_digits_at_end the last 40 bytes of the body must be hex digits")]
    DigitsAtEndNotHex,
    /// The body is not as long as `Content-Length` said.
    #[error("the body is {received} bytes, Content-Length said {declared}")]
    LengthMismatch {
        /// `Content-Length`.
        declared: u64,
        /// What arrived.
        received: u64,
    },
    /// A JSON request or answer larger than the proxy buffers.
    #[error("the JSON body is larger than {limit} bytes")]
    JsonTooLarge {
        /// The bound.
        limit: usize,
    },
    /// A JSON request body that could not be read or parsed.
    #[error("the request body is not valid JSON")]
    BadJson,
    /// The upstream's answer could not be read or was not the JSON B2 sends.
    #[error("the upstream's answer to {operation} could not be read: {reason}")]
    BadUpstreamAnswer {
        /// The API operation.
        operation: String,
        /// What was wrong.
        reason: String,
    },
    /// The upstream could not be reached or did not answer in time.
    #[error("the upstream {upstream} did not answer ({status})")]
    Gateway {
        /// 502 (unreachable), 503 or 504 (no answer in time).
        status: u16,
        /// `host:port`, never a path (upload URLs are capabilities).
        upstream: String,
    },
    /// A path under `/b2api/` or `/file/` that names no operation.
    #[error("no such B2 native API path")]
    NotFound,
    /// An upload URL called with a method other than POST.
    #[error("uploads are POST requests")]
    MethodNotAllowed,
}

impl B2Error {
    /// The HTTP status B2 answers this fault with.
    pub fn status(&self) -> StatusCode {
        match self {
            B2Error::UnknownToken | B2Error::UnknownUploadUrl => StatusCode::UNAUTHORIZED,
            B2Error::NoAnonymousDownload | B2Error::MissingAuthorization => {
                StatusCode::UNAUTHORIZED
            }
            B2Error::NotFound => StatusCode::NOT_FOUND,
            B2Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            B2Error::MissingContentLength => StatusCode::LENGTH_REQUIRED,
            B2Error::BadUpstreamAnswer { .. } => StatusCode::BAD_GATEWAY,
            B2Error::Gateway { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// B2's `code` for this fault.
    pub fn code(&self) -> &'static str {
        match self {
            B2Error::UnknownToken | B2Error::UnknownUploadUrl => "expired_auth_token",
            B2Error::NoAnonymousDownload | B2Error::MissingAuthorization => "unauthorized",
            B2Error::NotFound => "not_found",
            B2Error::MethodNotAllowed => "method_not_allowed",
            B2Error::BadUpstreamAnswer { .. } => "bad_gateway",
            // B2's own code for "try again later", which its clients retry.
            B2Error::Gateway { status: 503, .. } => "service_unavailable",
            B2Error::Gateway { status: 504, .. } => "gateway_timeout",
            B2Error::Gateway { .. } => "bad_gateway",
            _ => "bad_request",
        }
    }

    /// The JSON document: `{"status":..,"code":"..","message":".."}`.
    pub fn to_json(&self) -> Bytes {
        let document = serde_json::json!({
            "status": self.status().as_u16(),
            "code": self.code(),
            "message": self.to_string(),
        });
        Bytes::from(document.to_string())
    }

    /// The whole response, as B2 would send it.
    pub fn to_response(&self) -> Response<Bytes> {
        let mut response = Response::new(self.to_json());
        *response.status_mut() = self.status();
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json;charset=utf-8"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_b2s_json_shape() {
        let error = B2Error::Sha1Mismatch {
            claimed: "a".repeat(40),
            computed: "b".repeat(40),
        };
        let json: serde_json::Value = serde_json::from_slice(&error.to_json()).unwrap();
        assert_eq!(json["status"], 400);
        assert_eq!(json["code"], "bad_request");
        assert!(json["message"].as_str().unwrap().contains("does not match"));
        assert_eq!(B2Error::UnknownToken.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(B2Error::UnknownToken.code(), "expired_auth_token");
    }
}
