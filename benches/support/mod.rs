//! Shared by the SigV4 benches: a fixed signing identity and clock, request
//! heads signed with the crate's own signer, aws-chunked framing, and a body
//! that hands out a buffer in socket-sized frames.
#![allow(dead_code)]

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request};
use http_body::{Body, Frame, SizeHint};
use s3tap::credentials::StaticCredentials;
use s3tap::sigv4::chunked::{chunk_header, empty_sha256};
use s3tap::sigv4::{
    authorization_value, sign_request, AmzDate, CanonicalRequest, ChunkSigner, SigningKey,
    UriEncoding,
};
use s3tap::verify::SigV4VerifyLayer;
use sha2::{Digest, Sha256};

pub const ACCESS_KEY_ID: &str = "AKIDBENCHEXAMPLE";
pub const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
pub const REGION: &str = "us-east-1";
pub const HOST: &str = "examplebucket.s3.amazonaws.com";
/// The signing time of every request, and the layer's clock.
pub const AMZ_DATE: &str = "20240115T120000Z";

/// How a socket typically hands a body over: 16 KiB at a time.
pub const FRAME_SIZE: usize = 16 * 1024;

pub fn date() -> AmzDate {
    AmzDate::parse(AMZ_DATE).expect("valid date")
}

pub fn scope() -> String {
    format!("{}/{REGION}/s3/aws4_request", date().date_stamp())
}

pub fn signing_key() -> SigningKey {
    SigningKey::derive(SECRET, &date().date_stamp(), REGION, "s3")
}

pub fn fixed_clock() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(date().unix_seconds() as u64)
}

/// The layer every bench uses: one static key, the fixed clock.
pub fn layer() -> SigV4VerifyLayer<StaticCredentials> {
    SigV4VerifyLayer::new(StaticCredentials::new().with_key(ACCESS_KEY_ID, SECRET))
        .region(REGION)
        .clock(fixed_clock)
}

/// Signs `headers` (which must hold every header to sign, `host` included)
/// for `method path?query` and adds `authorization`. Returns the signature,
/// the seed of an aws-chunked chain.
pub fn sign_head(
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &mut HeaderMap,
    payload_hash: &str,
) -> [u8; 32] {
    let mut names: Vec<&str> = headers.keys().map(|name| name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let request = CanonicalRequest {
        method,
        path,
        query,
        skip_query_param: None,
        headers,
        authority: None,
        signed_headers: &names,
        payload_hash,
        uri_encoding: UriEncoding::S3,
    };
    let scope = scope();
    let signed = sign_request(&request, &signing_key(), &date(), &scope);
    let value = authorization_value(ACCESS_KEY_ID, &scope, &names.join(";"), &signed.signature);
    headers.insert("authorization", value.parse().expect("header value"));
    signed.signature
}

/// A signed request head, from which requests are cut cheaply (a clone of
/// the header map), so that benches time verification, not signing.
#[derive(Clone)]
pub struct SignedHead {
    pub method: http::Method,
    pub uri: http::Uri,
    pub headers: HeaderMap,
}

impl SignedHead {
    pub fn request<B>(&self, body: B) -> Request<B> {
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// A typical SDK `GetObject`: eight headers, four of them signed, empty
/// payload hash.
pub fn get_object() -> SignedHead {
    let path = "/photos/2024/01/IMG_0001.jpg";
    let query = "versionId=3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY";
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static(HOST));
    headers.insert("range", HeaderValue::from_static("bytes=0-1048575"));
    headers.insert(
        "x-amz-content-sha256",
        HeaderValue::from_static(s3tap::sigv4::chunked::EMPTY_SHA256_HEX),
    );
    headers.insert("x-amz-date", HeaderValue::from_static(AMZ_DATE));
    sign_head(
        "GET",
        path,
        Some(query),
        &mut headers,
        s3tap::sigv4::chunked::EMPTY_SHA256_HEX,
    );
    headers.insert(
        "user-agent",
        HeaderValue::from_static("aws-sdk-rust/1.3.0 os/linux lang/rust/1.85.0"),
    );
    headers.insert("accept-encoding", HeaderValue::from_static("identity"));
    headers.insert(
        "amz-sdk-invocation-id",
        HeaderValue::from_static("5c4e9a52-3f0b-4d1c-9d3e-7c1f3b0e2a11"),
    );
    headers.insert(
        "amz-sdk-request",
        HeaderValue::from_static("attempt=1; max=3"),
    );
    SignedHead {
        method: http::Method::GET,
        uri: format!("{path}?{query}").parse().expect("uri"),
        headers,
    }
}

/// Deterministic, incompressible-looking payload bytes.
pub fn payload(len: usize) -> Bytes {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

/// Payload modes the throughput bench sends.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`, chunks of this size.
    SignedChunked(usize),
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`, 64 KiB chunks, this trailer.
    UnsignedTrailer(s3tap::sigv4::ChecksumAlgorithm),
    /// `x-amz-content-sha256` = hex digest of the payload.
    Hex,
    /// `UNSIGNED-PAYLOAD`, no checksum header: passed through.
    Unsigned,
}

/// A signed `PutObject` head and the bytes on the wire for `payload`.
pub fn put_object(mode: Mode, payload: &Bytes) -> (HeaderMap, Bytes) {
    let path = "/uploads/bench/object.bin";
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static(HOST));
    headers.insert("x-amz-date", HeaderValue::from_static(AMZ_DATE));
    let decoded_len = payload.len();
    match mode {
        Mode::Hex | Mode::Unsigned => {
            let hash = match mode {
                Mode::Hex => hex::encode(Sha256::digest(payload)),
                _ => "UNSIGNED-PAYLOAD".to_owned(),
            };
            headers.insert("content-length", decoded_len.into());
            headers.insert("x-amz-content-sha256", hash.parse().unwrap());
            sign_head("PUT", path, None, &mut headers, &hash);
            (headers, payload.clone())
        }
        Mode::SignedChunked(chunk_size) => {
            let hash = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
            let wire_len = s3tap::sigv4::chunked::encoded_length(
                decoded_len as u64,
                chunk_size as u64,
                true,
                None,
            );
            headers.insert("content-encoding", HeaderValue::from_static("aws-chunked"));
            headers.insert("content-length", wire_len.into());
            headers.insert("x-amz-content-sha256", HeaderValue::from_static(hash));
            headers.insert("x-amz-decoded-content-length", decoded_len.into());
            let seed = sign_head("PUT", path, None, &mut headers, hash);
            let mut signer = ChunkSigner::new(signing_key(), &date(), &scope(), &seed);
            let mut wire = BytesMut::with_capacity(wire_len as usize);
            for chunk in payload.chunks(chunk_size) {
                let signature = signer.next_chunk(&Sha256::digest(chunk).into());
                wire.extend_from_slice(&chunk_header(chunk.len() as u64, Some(&signature)));
                wire.extend_from_slice(chunk);
                wire.extend_from_slice(b"\r\n");
            }
            let signature = signer.next_chunk(&empty_sha256());
            wire.extend_from_slice(&chunk_header(0, Some(&signature)));
            wire.extend_from_slice(b"\r\n");
            assert_eq!(wire.len() as u64, wire_len);
            (headers, wire.freeze())
        }
        Mode::UnsignedTrailer(algorithm) => {
            let hash = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
            let chunk_size = 64 * 1024;
            let trailer = format!(
                "{}:{}\r\n\r\n",
                algorithm.header_name(),
                algorithm.checksum_base64(payload)
            );
            let wire_len = s3tap::sigv4::chunked::encoded_length(
                decoded_len as u64,
                chunk_size as u64,
                false,
                Some(trailer.len() as u64),
            );
            headers.insert("content-encoding", HeaderValue::from_static("aws-chunked"));
            headers.insert("content-length", wire_len.into());
            headers.insert("x-amz-content-sha256", HeaderValue::from_static(hash));
            headers.insert("x-amz-decoded-content-length", decoded_len.into());
            headers.insert("x-amz-trailer", algorithm.header_name().parse().unwrap());
            sign_head("PUT", path, None, &mut headers, hash);
            let mut wire = BytesMut::with_capacity(wire_len as usize);
            for chunk in payload.chunks(chunk_size) {
                wire.extend_from_slice(&chunk_header(chunk.len() as u64, None));
                wire.extend_from_slice(chunk);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(&chunk_header(0, None));
            wire.extend_from_slice(trailer.as_bytes());
            assert_eq!(wire.len() as u64, wire_len);
            (headers, wire.freeze())
        }
    }
}

/// A request with `headers` whose body delivers `wire` in frames of
/// `frame_size` bytes (slices of `wire`, no copy).
pub fn put_request(headers: &HeaderMap, wire: &Bytes, frame_size: usize) -> Request<SliceBody> {
    let mut request = Request::put("/uploads/bench/object.bin")
        .body(SliceBody::new(wire.clone(), frame_size))
        .expect("request");
    *request.headers_mut() = headers.clone();
    request
}

/// A body that yields a buffer in fixed-size frames, as a socket would.
pub struct SliceBody {
    rest: Bytes,
    frame_size: usize,
}

impl SliceBody {
    pub fn new(rest: Bytes, frame_size: usize) -> Self {
        SliceBody { rest, frame_size }
    }
}

impl Body for SliceBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.rest.is_empty() {
            return Poll::Ready(None);
        }
        let take = self.frame_size.min(self.rest.len());
        Poll::Ready(Some(Ok(Frame::data(self.rest.split_to(take)))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
}

/// Reads a body to its end, counting payload bytes; errors if it fails.
pub async fn drain<B>(body: B) -> Result<u64, B::Error>
where
    B: Body<Data = Bytes>,
{
    use http_body_util::BodyExt;
    let mut body = std::pin::pin!(body);
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            received += data.len() as u64;
        }
    }
    Ok(received)
}
