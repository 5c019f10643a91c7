//! The AWS query protocol as SNS and SQS speak it: form-encoded POSTs signed
//! with the crate's own SigV4 signer, XML answers read into a small tree, and
//! AWS error codes sorted into [`SinkError`]s.

pub(crate) use crate::xml::Element;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use sha2::{Digest, Sha256};
use tower_service::Service;

use super::SinkError;
use crate::credentials::UpstreamCredentials;
use crate::sigv4::auth::credential_scope;
use crate::sigv4::canonical::uri_encode_into;
use crate::sigv4::{
    authorization_value, sign_request, AmzDate, CanonicalRequest, SigningKeyCache, UriEncoding,
};
use crate::upstream::UpstreamClient;

/// The longest a whole call may take, answer body included (the client's own
/// timeouts cover connecting and the response head).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Error codes that mean the request's credentials or signature were
/// refused: no retry fixes them, the operator must.
const AUTH_CODES: &[&str] = &[
    "SignatureDoesNotMatch",
    "InvalidClientTokenId",
    "IncompleteSignature",
    "InvalidAccessKeyId",
    "UnrecognizedClientException",
    "MissingAuthenticationToken",
    "ExpiredToken",
    "AccessDenied",
    "AccessDeniedException",
    "AuthorizationError",
    "InvalidSignatureException",
];

/// Error codes that mean "slow down".
const THROTTLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestThrottled",
    "RequestLimitExceeded",
    "KMSThrottling",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
];

/// A signed query-protocol client for one service at one endpoint.
#[derive(Clone)]
pub(crate) struct QueryClient {
    pub(crate) service: &'static str,
    pub(crate) version: &'static str,
    pub(crate) region: String,
    pub(crate) endpoint: Uri,
    pub(crate) credentials: UpstreamCredentials,
    pub(crate) http: UpstreamClient,
    keys: std::sync::Arc<SigningKeyCache>,
}

impl std::fmt::Debug for QueryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryClient")
            .field("service", &self.service)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.credentials.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Appends `name=value` to a form body, encoded as the AWS SDKs encode
/// query-protocol bodies (Python's `urlencode`): unreserved bytes as they
/// are, space as `+`, everything else percent-encoded. AWS hashes the body
/// as sent, but moto re-encodes the parameters it parsed before checking the
/// signature, so any other (equally valid) encoding of a space fails there.
pub(crate) fn push_param(body: &mut String, name: &str, value: &str) {
    if !body.is_empty() {
        body.push('&');
    }
    form_encode_into(body, name);
    body.push('=');
    form_encode_into(body, value);
}

fn form_encode_into(body: &mut String, text: &str) {
    for piece in text.split(' ').enumerate() {
        if piece.0 > 0 {
            body.push('+');
        }
        uri_encode_into(body, piece.1.as_bytes(), false);
    }
}

impl QueryClient {
    pub(crate) fn new(
        service: &'static str,
        version: &'static str,
        region: String,
        endpoint: Uri,
        credentials: UpstreamCredentials,
    ) -> Self {
        QueryClient {
            service,
            version,
            region,
            endpoint,
            credentials,
            http: UpstreamClient::new(),
            keys: std::sync::Arc::new(SigningKeyCache::new(8)),
        }
    }

    /// The form body of `action` with `params` (already `name=value&...`).
    pub(crate) fn form(&self, action: &str, params: &str) -> String {
        let mut body = String::with_capacity(params.len() + 48);
        push_param(&mut body, "Action", action);
        push_param(&mut body, "Version", self.version);
        if !params.is_empty() {
            body.push('&');
            body.push_str(params);
        }
        body
    }

    /// The signed request for a form body, at `now`.
    pub(crate) fn request(&self, body: String, now: SystemTime) -> Request<Full<Bytes>> {
        let date = AmzDate::from_system_time(now);
        let date_text = date.to_string();
        let authority = self
            .endpoint
            .authority()
            .map(|a| a.as_str())
            .unwrap_or_default();
        let mut headers = HeaderMap::new();
        headers.insert(
            HOST,
            HeaderValue::from_str(authority).unwrap_or(HeaderValue::from_static("")),
        );
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
        );
        headers.insert(
            "x-amz-date",
            HeaderValue::from_str(&date_text).expect("an AmzDate is ASCII"),
        );
        let mut signed: Vec<&str> = vec!["content-type", "host", "x-amz-date"];
        if let Some(token) = &self.credentials.session_token {
            if let Ok(mut value) = HeaderValue::from_str(token.expose()) {
                value.set_sensitive(true);
                headers.insert("x-amz-security-token", value);
                signed.push("x-amz-security-token");
            }
        }
        let payload_hash = hex::encode(Sha256::digest(body.as_bytes()));
        let path = self.endpoint.path();
        let canonical = CanonicalRequest {
            method: "POST",
            path: if path.is_empty() { "/" } else { path },
            query: None,
            skip_query_param: None,
            headers: &headers,
            authority: None,
            signed_headers: &signed,
            payload_hash: &payload_hash,
            uri_encoding: UriEncoding::Generic { normalize: true },
        };
        let date_stamp = date.date_stamp();
        let scope = credential_scope(&date_stamp, &self.region, self.service);
        let key = self.keys.get(
            self.credentials.secret.expose(),
            &date_stamp,
            &self.region,
            self.service,
        );
        let signature = sign_request(&canonical, &key, &date, &scope);
        let authorization = authorization_value(
            &self.credentials.access_key_id,
            &scope,
            &signed.join(";"),
            &signature.signature,
        );
        let mut request = Request::post(self.endpoint.clone())
            .body(Full::new(Bytes::from(body)))
            .expect("method and URI are valid");
        *request.headers_mut() = headers;
        request.headers_mut().insert(
            AUTHORIZATION,
            HeaderValue::from_str(&authorization).expect("an Authorization value is ASCII"),
        );
        request
    }

    /// Sends `action` and returns the parsed XML answer of a 2xx response;
    /// any other answer or a network failure is a [`SinkError`].
    pub(crate) async fn call(&self, action: &str, params: &str) -> Result<Element, SinkError> {
        let request = self.request(self.form(action, params), SystemTime::now());
        let what = format!("{} {action}", self.service.to_uppercase());
        let mut http = self.http.clone();
        let exchange = async {
            let response = http
                .call(request)
                .await
                .unwrap_or_else(|never| match never {});
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes());
            (parts, body)
        };
        let (parts, body) = match tokio::time::timeout(CALL_TIMEOUT, exchange).await {
            Ok(answer) => answer,
            Err(_) => {
                return Err(SinkError::transient(format!(
                    "{what}: no complete answer within {} s",
                    CALL_TIMEOUT.as_secs()
                )))
            }
        };
        let body = body.map_err(|error| {
            SinkError::transient(format!("{what}: the answer broke off: {error}"))
        })?;
        if parts.status.is_success() {
            return Element::parse(&body).map_err(|error| {
                SinkError::transient(format!("{what}: unreadable answer: {error}"))
            });
        }
        Err(classify_failure(
            &what,
            parts.status,
            &parts.headers,
            &body,
            SystemTime::now(),
        ))
    }
}

/// Sorts a non-2xx answer of an AWS query API into a [`SinkError`].
pub(crate) fn classify_failure(
    what: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    _now: SystemTime,
) -> SinkError {
    let (code, message) = Element::parse(body)
        .ok()
        .and_then(|root| {
            let error = root.find("Error")?;
            Some((
                error.child_text("Code").unwrap_or_default().to_owned(),
                error.child_text("Message").unwrap_or_default().to_owned(),
            ))
        })
        .unwrap_or_default();
    let detail = match (code.is_empty(), message.is_empty()) {
        (true, _) => format!("HTTP {}", status.as_u16()),
        (false, true) => format!("HTTP {} {code}", status.as_u16()),
        (false, false) => format!("HTTP {} {code}: {message}", status.as_u16()),
    };
    let retry_after = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    if AUTH_CODES.contains(&code.as_str()) {
        let error = SinkError::permanent(format!(
            "{what} refused the credentials or the signature ({detail}); check the access key id and secret"
        ));
        tracing::warn!(%error, "AWS refused the sink's credentials");
        return error;
    }
    if status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
        || THROTTLE_CODES.contains(&code.as_str())
        || code.ends_with("Throttled")
    {
        return SinkError::Transient {
            message: format!("{what}: {detail}"),
            retry_after,
        };
    }
    if status == StatusCode::REQUEST_TIMEOUT {
        return SinkError::transient(format!("{what}: {detail}"));
    }
    SinkError::permanent(format!("{what}: {detail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_are_encoded() {
        let mut body = String::new();
        push_param(&mut body, "Message", "a b&c=d/é+~ ");
        push_param(&mut body, "X.1.Name", "k");
        assert_eq!(body, "Message=a+b%26c%3Dd%2F%C3%A9%2B~+&X.1.Name=k");
    }

    #[test]
    fn reads_error_answers() {
        let xml = br#"<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
  <Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code>
    <Message>The request signature we calculated does not match &amp; so on &#x41;</Message></Error>
  <RequestId>x</RequestId></ErrorResponse>"#;
        let error = classify_failure(
            "SNS Publish",
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            xml,
            SystemTime::now(),
        );
        match error {
            SinkError::Permanent { message } => {
                assert!(message.contains("SignatureDoesNotMatch"), "{message}");
                assert!(message.contains("does not match & so on A"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let throttled = br#"<ErrorResponse><Error><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>"#;
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        let error = classify_failure(
            "SNS Publish",
            StatusCode::BAD_REQUEST,
            &headers,
            throttled,
            SystemTime::now(),
        );
        assert!(
            matches!(error, SinkError::Transient { retry_after: Some(d), .. } if d == Duration::from_secs(3)),
            "{error:?}"
        );
        let error = classify_failure(
            "SQS SendMessageBatch",
            StatusCode::SERVICE_UNAVAILABLE,
            &HeaderMap::new(),
            b"",
            SystemTime::now(),
        );
        assert!(matches!(error, SinkError::Transient { .. }), "{error:?}");
        let error = classify_failure(
            "SNS Publish",
            StatusCode::NOT_FOUND,
            &HeaderMap::new(),
            br#"<ErrorResponse><Error><Code>NotFound</Code><Message>Topic does not exist</Message></Error></ErrorResponse>"#,
            SystemTime::now(),
        );
        assert!(matches!(error, SinkError::Permanent { .. }), "{error:?}");
    }

    #[test]
    fn signs_content_type_host_and_date() {
        // The signature itself is checked by moto in tests/sink_sns.rs.
        let client = QueryClient::new(
            "iam",
            "2010-05-08",
            "us-east-1".into(),
            "https://iam.amazonaws.com/".parse().unwrap(),
            UpstreamCredentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        );
        let when = AmzDate::parse("20150830T123600Z").unwrap().to_system_time();
        let request = client.request(client.form("ListUsers", ""), when);
        let authorization = request.headers()[AUTHORIZATION].to_str().unwrap();
        assert!(authorization.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, Signature="
        ));
        assert_eq!(request.headers()[HOST], "iam.amazonaws.com");
    }
}
