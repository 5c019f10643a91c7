//! The `aws-sigv4` crate (the Rust SDK's signer) as an oracle: random S3
//! requests are signed by it with S3's settings, and s3tap's core must
//! reproduce each signature from the signed request alone, as a verifier
//! sees it, and must reject every single-field change.

use std::time::{Duration, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
    SignatureLocation, SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use s3tap::sigv4::{
    sign_request, AmzDate, AuthorizationHeader, CanonicalRequest, PresignedQuery, SigningKey,
    UriEncoding,
};

/// Percent-encodes as the SDKs do for S3: every byte but `A-Za-z0-9-._~`
/// (and `/` in a key), upper-case hex. Written here rather than taken from
/// the crate so the test does not check the crate against itself.
fn sdk_encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && byte == b'/')
        {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[derive(Clone, Debug)]
enum Body {
    Bytes(Vec<u8>),
    Precomputed(String),
    Unsigned,
    StreamingUnsignedTrailer,
    StreamingSignedTrailer,
}

#[derive(Clone, Debug)]
struct Case {
    method: String,
    host: String,
    host_header: bool,
    bucket_in_path: bool,
    key: String,
    query: Vec<(String, Option<String>)>,
    headers: Vec<(String, String)>,
    body: Body,
    unix_seconds: u64,
    region: String,
    access_key_id: String,
    secret: String,
    token: Option<String>,
    expires_secs: u64,
    presigned: bool,
}

impl Case {
    fn path(&self) -> String {
        let mut path = String::from("/");
        if self.bucket_in_path {
            path.push_str("example-bucket/");
        }
        path.push_str(&sdk_encode(&self.key, true));
        path
    }

    fn query(&self) -> String {
        self.query
            .iter()
            .map(|(name, value)| match value {
                None => sdk_encode(name, false),
                Some(value) => format!("{}={}", sdk_encode(name, false), sdk_encode(value, false)),
            })
            .collect::<Vec<_>>()
            .join("&")
    }

    fn uri(&self) -> String {
        let query = self.query();
        if query.is_empty() {
            format!("http://{}{}", self.host, self.path())
        } else {
            format!("http://{}{}?{query}", self.host, self.path())
        }
    }
}

/// Key segments: reserved characters, spaces, `+`, unicode, and the `.`,
/// `..` and empty segments S3 keeps as they are.
fn key_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-zA-Z0-9 !*'();:@&=+$,?#\\[\\]%~._-]{1,8}",
        1 => "\\PC{1,4}",
        1 => Just(".".to_owned()),
        1 => Just("..".to_owned()),
        1 => Just(String::new()),
        1 => Just("a+b c".to_owned()),
    ]
}

fn key() -> impl Strategy<Value = String> {
    proptest::collection::vec(key_segment(), 1..5).prop_map(|segments| segments.join("/"))
}

fn query_name() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop_oneof![
            Just("prefix".to_owned()),
            Just("list-type".to_owned()),
            Just("uploads".to_owned()),
            Just("a b".to_owned()),
        ],
        2 => "[a-zA-Z0-9 !*'();:@&=+$,/?#\\[\\]%~._-]{1,8}",
        1 => "\\PC{1,3}",
    ]
}

fn query_value() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(String::new())),
        4 => "[a-zA-Z0-9 !*'();:@&=+$,/?#\\[\\]%~._-]{0,10}".prop_map(Some),
        1 => "\\PC{1,4}".prop_map(Some),
    ]
}

/// Header names in random case (a small pool, so repeats happen) with
/// values holding runs of spaces inside and around them.
fn header() -> impl Strategy<Value = (String, String)> {
    let name = prop_oneof![
        Just("x-amz-meta-a".to_owned()),
        Just("x-amz-meta-note".to_owned()),
        Just("content-type".to_owned()),
        Just("range".to_owned()),
        "x-amz-meta-[a-z0-9-]{1,10}",
        "x-custom-[a-z]{1,6}",
    ];
    let cased = (name, any::<u64>()).prop_map(|(name, bits)| {
        name.chars()
            .enumerate()
            .map(|(i, c)| {
                if bits >> (i % 64) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect::<String>()
    });
    // Spaces only: aws-sigv4 trims and folds spaces but keeps tabs as they
    // are, while s3tap treats tabs like spaces (as botocore does), so a value
    // with a tab inside signs differently. SDKs disagree there; which one S3
    // follows is an open question, so tabs are left out of the oracle.
    let value = "( {0,3}[!-~]{1,6}){0,4} {0,3}";
    (cased, value)
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Body::Bytes),
        "[0-9a-f]{64}".prop_map(Body::Precomputed),
        Just(Body::Unsigned),
        Just(Body::StreamingUnsignedTrailer),
        Just(Body::StreamingSignedTrailer),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let request = (
        prop_oneof![
            Just("GET".to_owned()),
            Just("PUT".to_owned()),
            Just("POST".to_owned()),
            Just("DELETE".to_owned()),
            Just("HEAD".to_owned()),
            "[A-Z]{3,8}",
        ],
        prop_oneof![
            Just("s3.us-west-004.backblazeb2.com".to_owned()),
            Just("example-bucket.s3.amazonaws.com".to_owned()),
            Just("127.0.0.1:9000".to_owned()),
            Just("minio.local:8080".to_owned()),
        ],
        any::<bool>(),
        any::<bool>(),
        key(),
        proptest::collection::vec((query_name(), query_value()), 0..5),
        proptest::collection::vec(header(), 0..6),
        body(),
    );
    let signer = (
        946_684_800u64..4_102_444_800,
        "[a-z]{2}-[a-z]{4,9}-[0-9]{1,3}",
        "AKIA[A-Z0-9]{16}",
        "[A-Za-z0-9/+]{40}",
        proptest::option::of("[A-Za-z0-9/+=]{16,64}"),
        1u64..=604_800,
        any::<bool>(),
    );
    (request, signer).prop_map(
        |(
            (method, host, host_header, bucket_in_path, key, query, headers, body),
            (unix_seconds, region, access_key_id, secret, token, expires_secs, presigned),
        )| Case {
            method,
            host,
            host_header,
            bucket_in_path,
            key,
            query,
            headers,
            body,
            unix_seconds,
            region,
            access_key_id,
            secret,
            token,
            expires_secs,
            presigned,
        },
    )
}

/// What aws-sigv4 put on the wire, and its signature.
struct Signed {
    request: http::Request<()>,
    signature: String,
}

fn sign_with_aws_sigv4(case: &Case) -> Signed {
    let identity: Identity = Credentials::new(
        &case.access_key_id,
        &case.secret,
        case.token.clone(),
        None,
        "oracle",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.signature_location = if case.presigned {
        SignatureLocation::QueryParams
    } else {
        SignatureLocation::Headers
    };
    settings.expires_in = Some(Duration::from_secs(case.expires_secs));
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&case.region)
        .name("s3")
        .time(UNIX_EPOCH + Duration::from_secs(case.unix_seconds))
        .settings(settings)
        .build()
        .unwrap()
        .into();

    let mut headers = case.headers.clone();
    if case.host_header {
        headers.insert(0, ("Host".to_owned(), case.host.clone()));
    }
    // A presigned URL cannot carry a payload hash, so S3 signs it unsigned.
    let body = match (&case.body, case.presigned) {
        (_, true) | (Body::Unsigned, _) => SignableBody::UnsignedPayload,
        (Body::Bytes(bytes), false) => SignableBody::Bytes(bytes),
        (Body::Precomputed(hash), false) => SignableBody::Precomputed(hash.clone()),
        (Body::StreamingUnsignedTrailer, false) => SignableBody::StreamingUnsignedPayloadTrailer,
        (Body::StreamingSignedTrailer, false) => SignableBody::StreamingSignedPayloadTrailer,
    };
    let uri = case.uri();
    let signable = SignableRequest::new(
        &case.method,
        uri.clone(),
        headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        body,
    )
    .unwrap();
    let (instructions, signature) = sign(signable, &params).unwrap().into_parts();

    let mut request = http::Request::builder()
        .method(case.method.as_str())
        .uri(uri);
    for (name, value) in &headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let mut request = request.body(()).unwrap();
    instructions.apply_to_request_http1x(&mut request);
    Signed { request, signature }
}

/// What a verifier reads off the signed request, owned so single fields
/// can be changed.
#[derive(Clone, Debug)]
struct Inputs {
    method: String,
    path: String,
    query: Option<String>,
    skip_query_param: Option<&'static str>,
    headers: Vec<(HeaderName, String)>,
    authority: String,
    signed_headers: Vec<String>,
    payload_hash: String,
    date: AmzDate,
    region: String,
    secret: String,
}

impl Inputs {
    fn from_signed(case: &Case, signed: &Signed) -> (Inputs, [u8; 32]) {
        let request = &signed.request;
        let headers: Vec<(HeaderName, String)> = request
            .headers()
            .iter()
            .map(|(n, v)| (n.clone(), v.to_str().unwrap().to_owned()))
            .collect();
        let header = |name: &str| request.headers().get(name).map(|v| v.to_str().unwrap());
        let query = request.uri().query().map(str::to_owned);
        let (signed_headers, date, payload_hash, signature, skip, region) = if case.presigned {
            let presigned = PresignedQuery::parse(query.as_deref().unwrap()).unwrap();
            assert_eq!(presigned.expires_secs, case.expires_secs);
            assert_eq!(presigned.security_token, case.token);
            (
                presigned
                    .signed_headers
                    .names()
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                presigned.date,
                presigned
                    .content_sha256
                    .clone()
                    .unwrap_or_else(|| "UNSIGNED-PAYLOAD".to_owned()),
                presigned.signature,
                Some("X-Amz-Signature"),
                presigned.credential.region.clone(),
            )
        } else {
            let auth = AuthorizationHeader::parse(header("authorization").unwrap()).unwrap();
            assert_eq!(header("x-amz-security-token"), case.token.as_deref());
            (
                auth.signed_headers
                    .names()
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                AmzDate::parse(header("x-amz-date").unwrap()).unwrap(),
                header("x-amz-content-sha256").unwrap().to_owned(),
                auth.signature,
                None,
                auth.credential.region.clone(),
            )
        };
        assert_eq!(date.unix_seconds() as u64, case.unix_seconds);
        assert_eq!(region, case.region);
        let inputs = Inputs {
            method: request.method().as_str().to_owned(),
            path: request.uri().path().to_owned(),
            query,
            skip_query_param: skip,
            headers,
            authority: request.uri().authority().unwrap().as_str().to_owned(),
            signed_headers,
            payload_hash,
            date,
            region,
            secret: case.secret.clone(),
        };
        (inputs, signature)
    }

    fn sign(&self) -> [u8; 32] {
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            headers.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        let signed: Vec<&str> = self.signed_headers.iter().map(String::as_str).collect();
        let request = CanonicalRequest {
            method: &self.method,
            path: &self.path,
            query: self.query.as_deref(),
            skip_query_param: self.skip_query_param,
            headers: &headers,
            // Without a Host header (as over HTTP/2) the URI's authority
            // stands in for it.
            authority: Some(&self.authority),
            signed_headers: &signed,
            payload_hash: &self.payload_hash,
            uri_encoding: UriEncoding::S3,
        };
        let scope = format!("{}/{}/s3/aws4_request", self.date.date_stamp(), self.region);
        let key = SigningKey::derive(&self.secret, &self.date.date_stamp(), &self.region, "s3");
        sign_request(&request, &key, &self.date, &scope).signature
    }
}

fn with_char_changed(text: &str, index: usize) -> String {
    text.chars()
        .enumerate()
        .map(|(i, c)| match (i == index, c) {
            (false, c) => c,
            (true, 'x') => 'y',
            (true, _) => 'x',
        })
        .collect()
}

fn check(case: &Case) -> Result<(), TestCaseError> {
    let signed = sign_with_aws_sigv4(case);
    let (inputs, wire_signature) = Inputs::from_signed(case, &signed);
    let ours = inputs.sign();
    prop_assert_eq!(hex::encode(wire_signature), signed.signature.clone());
    prop_assert_eq!(
        hex::encode(ours),
        signed.signature.clone(),
        "uri {} headers {:?}",
        signed.request.uri(),
        signed.request.headers()
    );

    let differs = |changed: &Inputs, what: String| -> Result<(), TestCaseError> {
        prop_assert_ne!(
            changed.sign(),
            ours,
            "{} left the signature as it was",
            what
        );
        Ok(())
    };
    for i in 0..inputs.method.len() {
        let mut changed = inputs.clone();
        changed.method = with_char_changed(&inputs.method, i);
        differs(&changed, format!("method char {i}"))?;
    }
    for i in 0..inputs.path.len() {
        let mut changed = inputs.clone();
        changed.path = with_char_changed(&inputs.path, i);
        differs(&changed, format!("path char {i} of {}", inputs.path))?;
    }
    if let Some(query) = &inputs.query {
        let signature_value = query.find("X-Amz-Signature=").map(|start| {
            let value = start + "X-Amz-Signature=".len();
            value..query[value..].find('&').map_or(query.len(), |e| value + e)
        });
        for i in 0..query.len() {
            if signature_value.as_ref().is_some_and(|r| r.contains(&i)) {
                continue;
            }
            let mut changed = inputs.clone();
            changed.query = Some(with_char_changed(query, i));
            differs(&changed, format!("query char {i} of {query}"))?;
        }
    }
    for (index, (name, value)) in inputs.headers.iter().enumerate() {
        if !inputs.signed_headers.iter().any(|s| s == name.as_str()) {
            continue;
        }
        for i in 0..value.len() {
            let mut changed = inputs.clone();
            changed.headers[index].1 = with_char_changed(value, i);
            differs(&changed, format!("header {name} char {i} of {value:?}"))?;
        }
    }
    for i in 0..inputs.payload_hash.len() {
        let mut changed = inputs.clone();
        changed.payload_hash = with_char_changed(&inputs.payload_hash, i);
        differs(&changed, format!("payload hash char {i}"))?;
    }
    let mut changed = inputs.clone();
    changed.date = AmzDate::from_unix_seconds(inputs.date.unix_seconds() + 1);
    differs(&changed, "signing time + 1 s".into())?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn s3tap_reproduces_aws_sigv4_s3_signatures(case in case()) {
        check(&case)?;
    }
}

/// A fixed request with every awkward part at once, so a failure here is
/// readable without shrinking.
#[test]
fn awkward_request_signs_the_same() {
    for presigned in [false, true] {
        let case = Case {
            method: "PUT".into(),
            host: "127.0.0.1:9000".into(),
            host_header: !presigned,
            bucket_in_path: true,
            key: "a+b c/./../x//ሴ/!*'();:@&=+$,?#[]".into(),
            query: vec![
                ("x-id".into(), Some("PutObject".into())),
                ("a b".into(), Some("+/ =".into())),
                ("a b".into(), None),
                ("empty".into(), Some(String::new())),
                ("ü".into(), Some("[]".into())),
            ],
            headers: vec![
                ("X-Amz-Meta-A".into(), "  two   spaces  ".into()),
                ("x-amz-meta-a".into(), "second".into()),
                ("Content-Type".into(), "text/plain; charset=utf-8".into()),
            ],
            body: Body::Bytes(b"hello".to_vec()),
            unix_seconds: 1_369_353_600,
            region: "us-west-004".into(),
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            token: Some("session/token+value=".into()),
            expires_secs: 3600,
            presigned,
        };
        check(&case).unwrap();
    }
}
