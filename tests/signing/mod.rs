//! Test helpers that sign requests with the `aws-sigv4` crate (an
//! independent signer, S3 settings) and build aws-chunked bodies.
#![allow(dead_code)]

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SessionTokenMode, SignableBody,
    SignableRequest, SignatureLocation, SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4::SigningParams;
use bytes::Bytes;
use s3tap::sigv4::chunked::{chunk_header, empty_sha256};
use s3tap::sigv4::{AmzDate, ChunkSigner, SigningKey};
use sha2::{Digest, Sha256};

pub const ACCESS_KEY: &str = "AKIDEXAMPLE";
pub const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
pub const REGION: &str = "us-east-1";

/// A fixed signing time used by tests that inject the same clock.
pub fn fixed_time() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

pub struct SignOptions<'a> {
    pub access_key: &'a str,
    pub secret: &'a str,
    pub session_token: Option<&'a str>,
    pub region: &'a str,
    pub time: SystemTime,
    pub presign_for: Option<Duration>,
}

impl Default for SignOptions<'_> {
    fn default() -> Self {
        SignOptions {
            access_key: ACCESS_KEY,
            secret: SECRET,
            session_token: None,
            region: REGION,
            time: fixed_time(),
            presign_for: None,
        }
    }
}

/// Signs `request` in place with aws-sigv4 (S3 rules: single encoding, no
/// normalization). `body` says how the payload hash is formed.
pub fn sign_with(
    request: &mut http::Request<Bytes>,
    body: SignableBody<'_>,
    options: &SignOptions<'_>,
) {
    let credentials = Credentials::new(
        options.access_key,
        options.secret,
        options.session_token.map(str::to_owned),
        None,
        "tests",
    );
    let identity = credentials.into();
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.session_token_mode = SessionTokenMode::Include;
    match options.presign_for {
        Some(expires) => {
            settings.signature_location = SignatureLocation::QueryParams;
            settings.expires_in = Some(expires);
            settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
        }
        None => settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256,
    }
    let params = SigningParams::builder()
        .identity(&identity)
        .region(options.region)
        .name("s3")
        .time(options.time)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
        .collect();
    let uri = request.uri().to_string();
    let signable = SignableRequest::new(
        request.method().as_str(),
        uri,
        headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        body,
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    instructions.apply_to_request_http1x(request);
}

/// A PUT of `payload` with a hex payload hash, signed with the defaults.
pub fn signed_put(path: &str, payload: &[u8]) -> http::Request<Bytes> {
    let mut request = http::Request::put(format!("http://s3.example.com{path}"))
        .header("host", "s3.example.com")
        .header("content-length", payload.len())
        .body(Bytes::copy_from_slice(payload))
        .unwrap();
    sign_with(
        &mut request,
        SignableBody::Bytes(payload),
        &SignOptions::default(),
    );
    request
}

/// A request to `http://{authority}{path}` carrying `payload` with a hex
/// payload hash, signed now with `(access key id, secret)`: what the tests
/// and benches that talk to a running proxy send.
pub fn signed_now(
    method: http::Method,
    authority: &str,
    path: &str,
    payload: &[u8],
    (access_key, secret): (&str, &str),
) -> http::Request<Bytes> {
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://{authority}{path}"))
        .header("host", authority)
        .header("content-length", payload.len())
        .body(Bytes::copy_from_slice(payload))
        .unwrap();
    sign_with(
        &mut request,
        SignableBody::Bytes(payload),
        &SignOptions {
            access_key,
            secret,
            time: SystemTime::now(),
            ..SignOptions::default()
        },
    );
    request
}

/// The crate's chunk signer for an aws-chunked body of `request`, seeded by
/// the request signature that `options` (time, region, secret) made.
pub fn chunk_signer_seeded_by<B>(request: &http::Request<B>, options: &SignOptions) -> ChunkSigner {
    let auth = request.headers()["authorization"].to_str().unwrap();
    let mut seed = [0u8; 32];
    hex::decode_to_slice(auth.rsplit("Signature=").next().unwrap(), &mut seed).unwrap();
    let date = AmzDate::from_system_time(options.time);
    let scope = format!("{}/{}/s3/aws4_request", date.date_stamp(), options.region);
    let key = SigningKey::derive(options.secret, &date.date_stamp(), options.region, "s3");
    ChunkSigner::new(key, &date, &scope, &seed)
}

/// A signed aws-chunked upload built with the crate's own chunk signer,
/// seeded by a request signed with aws-sigv4.
pub struct ChunkedUpload {
    pub request: http::Request<Bytes>,
    /// The framed body.
    pub body: Vec<u8>,
    /// Byte offsets where each chunk's data starts in `body`.
    pub data_offsets: Vec<usize>,
}

/// Builds a `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]` upload of `payload`
/// in `chunk_size` chunks; with `trailer`, a signed CRC32C trailer is added.
pub fn signed_chunked_upload(
    path: &str,
    payload: &[u8],
    chunk_size: usize,
    trailer: bool,
) -> ChunkedUpload {
    signed_chunked_upload_at(path, payload, chunk_size, trailer, fixed_time())
}

impl ChunkedUpload {
    /// The request with the framed body attached.
    pub fn request_with_body(&self) -> http::Request<Bytes> {
        let mut request = http::Request::new(Bytes::from(self.body.clone()));
        *request.method_mut() = self.request.method().clone();
        *request.uri_mut() = self.request.uri().clone();
        *request.headers_mut() = self.request.headers().clone();
        request
    }
}

/// [`signed_chunked_upload`] signed at `time`.
pub fn signed_chunked_upload_at(
    path: &str,
    payload: &[u8],
    chunk_size: usize,
    trailer: bool,
    time: SystemTime,
) -> ChunkedUpload {
    signed_chunked_upload_with(
        path,
        payload,
        chunk_size,
        trailer,
        &SignOptions {
            time,
            ..Default::default()
        },
    )
}

/// [`signed_chunked_upload`] signed with `options` (key, secret, region,
/// time; `presign_for` is ignored).
pub fn signed_chunked_upload_with(
    path: &str,
    payload: &[u8],
    chunk_size: usize,
    trailer: bool,
    options: &SignOptions<'_>,
) -> ChunkedUpload {
    let mode = if trailer {
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
    } else {
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    };
    let mut builder = http::Request::put(format!("http://s3.example.com{path}"))
        .header("host", "s3.example.com")
        .header("content-encoding", "aws-chunked")
        .header("x-amz-decoded-content-length", payload.len())
        .header("x-amz-content-sha256", mode);
    if trailer {
        builder = builder.header("x-amz-trailer", "x-amz-checksum-crc32c");
    }
    let mut request = builder.body(Bytes::new()).unwrap();
    let body_kind = if trailer {
        SignableBody::StreamingSignedPayloadTrailer
    } else {
        SignableBody::Precomputed(mode.to_owned())
    };
    sign_with(
        &mut request,
        body_kind,
        &SignOptions {
            presign_for: None,
            ..*options
        },
    );
    let mut signer = chunk_signer_seeded_by(&request, options);
    let mut body = Vec::new();
    let mut data_offsets = Vec::new();
    for chunk in payload.chunks(chunk_size) {
        let signature = signer.next_chunk(&Sha256::digest(chunk).into());
        body.extend_from_slice(&chunk_header(chunk.len() as u64, Some(&signature)));
        data_offsets.push(body.len());
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
    }
    let final_signature = signer.next_chunk(&empty_sha256());
    body.extend_from_slice(&chunk_header(0, Some(&final_signature)));
    if trailer {
        let crc = s3tap::sigv4::ChecksumAlgorithm::Crc32c.checksum_base64(payload);
        let line = format!("x-amz-checksum-crc32c:{crc}\n");
        let trailer_signature = signer.trailer(line.as_bytes());
        body.extend_from_slice(format!("x-amz-checksum-crc32c:{crc}\r\n").as_bytes());
        body.extend_from_slice(
            format!(
                "x-amz-trailer-signature:{}\r\n",
                hex::encode(trailer_signature)
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(b"\r\n");
    request
        .headers_mut()
        .insert("content-length", body.len().into());
    ChunkedUpload {
        request,
        body,
        data_offsets,
    }
}

/// The head of a request to `address` for `path` with a hex-hashed
/// `payload`, signed now, as raw HTTP/1.1 text (ending in the blank line;
/// `extra` headers go in unsigned before it). For tests that write to the
/// socket themselves: slow heads, stalled bodies, `Expect`.
pub fn signed_head(
    method: http::Method,
    path: &str,
    address: std::net::SocketAddr,
    payload: &[u8],
    extra: &[(&str, &str)],
) -> String {
    let request = signed_now(
        method.clone(),
        &address.to_string(),
        path,
        payload,
        (ACCESS_KEY, SECRET),
    );
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in request.headers() {
        head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// A signed request written to a raw socket with `connection: close` (and
/// the `extra` headers, unsigned); the whole answer as bytes (what came
/// within 10 s).
pub async fn raw_request(
    address: std::net::SocketAddr,
    method: http::Method,
    path: &str,
    payload: &[u8],
    extra: &[(&str, &str)],
) -> Vec<u8> {
    let mut headers = extra.to_vec();
    headers.push(("connection", "close"));
    let head = signed_head(method, path, address, payload, &headers);
    raw_exchange(address, &head, payload).await
}

/// `head` and `payload` written to a raw socket; the whole answer as bytes
/// (what came within 10 s). The head should ask for `connection: close`.
pub async fn raw_exchange(address: std::net::SocketAddr, head: &str, payload: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(payload).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    answer
}

/// A signed PUT written to a raw socket with `connection: close`; the whole
/// answer as text (empty if none came within 10 s).
pub async fn raw_put(address: std::net::SocketAddr, path: &str, payload: &[u8]) -> String {
    let answer = raw_request(address, http::Method::PUT, path, payload, &[]).await;
    String::from_utf8_lossy(&answer).into_owned()
}
