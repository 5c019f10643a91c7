//! The checks of the verify layer: what the request head claims
//! ([`Claim`], read before any secret is looked up) and the signature and
//! payload plan once the secret is known ([`complete`]).

use std::sync::Arc;

use http::header::{self, HeaderName};
use http::{HeaderMap, Request};

use super::body::{PayloadPlan, VerifyBody};
use super::error::VerifyError;
use super::layer::{PayloadHashing, VerifyConfig};
use crate::credentials::Credential;
use crate::crypto::constant_time_eq;
use crate::sigv4::{
    sign_request, AmzDate, AuthorizationHeader, CanonicalRequest, ChecksumAlgorithm, ChunkSigner,
    CredentialScope, PayloadMode, PresignedQuery, SignedHeaders,
};
use crate::verified::{AuthKind, ChunkDigests, Verified};

/// Everything read from the request head, waiting for the secret.
pub(crate) struct Claim {
    pub(crate) kind: AuthKind,
    pub(crate) scope: CredentialScope,
    pub(crate) signed_headers: SignedHeaders,
    pub(crate) signature: [u8; 32],
    pub(crate) date: AmzDate,
    pub(crate) payload: PayloadMode,
    pub(crate) payload_hash_text: String,
    pub(crate) security_token: Option<String>,
    pub(crate) content_length: Option<u64>,
    pub(crate) decoded_content_length: Option<u64>,
    pub(crate) checksum_header: Option<(ChecksumAlgorithm, Vec<u8>)>,
    pub(crate) trailer_checksum: Option<ChecksumAlgorithm>,
    pub(crate) declared_trailers: Vec<String>,
}

// Header names as constants: a look-up by `&str` parses and checks the
// name on every request first.
const X_AMZ_DATE: HeaderName = HeaderName::from_static("x-amz-date");
const X_AMZ_SECURITY_TOKEN: HeaderName = HeaderName::from_static("x-amz-security-token");
const X_AMZ_CONTENT_SHA256: HeaderName = HeaderName::from_static("x-amz-content-sha256");
const X_AMZ_DECODED_CONTENT_LENGTH: HeaderName =
    HeaderName::from_static("x-amz-decoded-content-length");
const X_AMZ_COPY_SOURCE: HeaderName = HeaderName::from_static("x-amz-copy-source");
const X_AMZ_TRAILER: HeaderName = HeaderName::from_static("x-amz-trailer");

/// The `x-amz-checksum-*` header of each algorithm, in
/// [`ChecksumAlgorithm::ALL`]'s order.
fn checksum_header_name(algorithm: ChecksumAlgorithm) -> HeaderName {
    const CRC32: HeaderName = HeaderName::from_static("x-amz-checksum-crc32");
    const CRC32C: HeaderName = HeaderName::from_static("x-amz-checksum-crc32c");
    const CRC64NVME: HeaderName = HeaderName::from_static("x-amz-checksum-crc64nvme");
    const SHA1: HeaderName = HeaderName::from_static("x-amz-checksum-sha1");
    const SHA256: HeaderName = HeaderName::from_static("x-amz-checksum-sha256");
    match algorithm {
        ChecksumAlgorithm::Crc32 => CRC32,
        ChecksumAlgorithm::Crc32c => CRC32C,
        ChecksumAlgorithm::Crc64Nvme => CRC64NVME,
        ChecksumAlgorithm::Sha1 => SHA1,
        ChecksumAlgorithm::Sha256 => SHA256,
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn parse_length(
    headers: &HeaderMap,
    header: &HeaderName,
    name: &'static str,
) -> Result<Option<u64>, VerifyError> {
    match headers.get(header) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or(VerifyError::InvalidLength(name)),
    }
}

/// A SigV2 presigned URL (`?AWSAccessKeyId=...&Signature=...&Expires=...`,
/// what boto3 still makes by default for a custom endpoint): refused as an
/// unsupported mechanism, as AWS refuses it for SigV4-only buckets, rather
/// than as an unauthenticated request.
fn is_sigv2_presigned(query: Option<&str>) -> bool {
    let has = |name: &str| {
        query.is_some_and(|q| {
            q.split('&')
                .any(|pair| pair.split_once('=').map_or(pair, |(n, _)| n) == name)
        })
    };
    has("AWSAccessKeyId") && has("Signature")
}

/// Reads and checks the signature claim from the head alone.
pub(crate) fn read_claim(
    config: &VerifyConfig,
    parts: &http::request::Parts,
) -> Result<Claim, VerifyError> {
    let headers = &parts.headers;
    let query = parts.uri.query();
    let presigned = PresignedQuery::is_presigned(query);
    let authorization = headers.get(header::AUTHORIZATION);
    let now = AmzDate::from_system_time(config.now());

    let (kind, scope, signed_headers, signature, date, security_token, presigned_hash) =
        match (authorization, presigned) {
            (Some(_), true) => return Err(VerifyError::BothAuthMechanisms),
            (None, false) if is_sigv2_presigned(query) => {
                return Err(VerifyError::UnsupportedAlgorithm(
                    "AWS (SigV2 presigned)".into(),
                ))
            }
            (None, false) => return Err(VerifyError::MissingAuthentication),
            (Some(value), false) => {
                let value = value.to_str().map_err(|_| {
                    VerifyError::MalformedAuthorization(
                        crate::sigv4::AuthParseError::MalformedSignature,
                    )
                })?;
                let auth = AuthorizationHeader::parse(value).map_err(|error| match error {
                    crate::sigv4::AuthParseError::UnsupportedAlgorithm(name) => {
                        VerifyError::UnsupportedAlgorithm(name)
                    }
                    other => VerifyError::MalformedAuthorization(other),
                })?;
                let date = header_str(headers, &X_AMZ_DATE)
                    .and_then(AmzDate::parse)
                    .ok_or(VerifyError::MissingDate)?;
                let skew = now.seconds_until(&date).unsigned_abs();
                if skew > config.max_clock_skew.as_secs() {
                    return Err(VerifyError::ClockSkew {
                        signed: date.to_string(),
                        now: now.to_string(),
                        max_secs: config.max_clock_skew.as_secs(),
                    });
                }
                let token = header_str(headers, &X_AMZ_SECURITY_TOKEN).map(str::to_owned);
                (
                    AuthKind::Header,
                    auth.credential,
                    auth.signed_headers,
                    auth.signature,
                    date,
                    token,
                    None,
                )
            }
            (None, true) => {
                let presigned = PresignedQuery::parse(query.unwrap_or_default()).map_err(
                    |error| match error {
                        crate::sigv4::AuthParseError::UnsupportedAlgorithm(name) => {
                            VerifyError::UnsupportedAlgorithm(name)
                        }
                        other => VerifyError::MalformedPresigned(other),
                    },
                )?;
                let age = presigned.date.seconds_until(&now);
                if age < -(config.max_clock_skew.as_secs() as i64) {
                    return Err(VerifyError::NotYetValid);
                }
                // A URL valid for zero seconds is never usable: AWS and s3s
                // answer it "Request has expired" (their clocks count the
                // fraction of a second a whole-second age leaves out).
                if presigned.expires_secs == 0 || age > presigned.expires_secs as i64 {
                    return Err(VerifyError::Expired);
                }
                let token = presigned
                    .security_token
                    .clone()
                    .or_else(|| header_str(headers, &X_AMZ_SECURITY_TOKEN).map(str::to_owned));
                (
                    AuthKind::Presigned {
                        expires_secs: presigned.expires_secs,
                    },
                    presigned.credential,
                    presigned.signed_headers,
                    presigned.signature,
                    presigned.date,
                    token,
                    presigned.content_sha256,
                )
            }
        };

    if scope.date != date.basic_form().date_stamp() {
        return Err(VerifyError::ScopeDateMismatch {
            scope: scope.date.clone(),
            date: date.date_stamp(),
        });
    }
    if let Some(regions) = &config.regions {
        if !regions.contains(&scope.region) {
            return Err(VerifyError::WrongRegion {
                got: scope.region.clone(),
                expected: regions.join(", "),
            });
        }
    }
    if scope.service != config.service {
        return Err(VerifyError::WrongService {
            got: scope.service.clone(),
            expected: config.service.clone(),
        });
    }

    // Nothing the client did not sign may be trusted: host and every
    // x-amz-* header must be covered by the signature.
    let mut unsigned: Vec<String> = Vec::new();
    if !signed_headers.contains("host") {
        unsigned.push("host".to_owned());
    }
    for name in headers.keys() {
        let name = name.as_str();
        if name.starts_with("x-amz-")
            && !signed_headers.contains(name)
            && !unsigned.iter().any(|n| n == name)
        {
            unsigned.push(name.to_owned());
        }
    }
    if !unsigned.is_empty() {
        return Err(VerifyError::HeadersNotSigned(unsigned));
    }

    let payload_hash_text = match kind {
        // The verifier never reads form uploads (`post` does).
        AuthKind::Header | AuthKind::PostPolicy => header_str(headers, &X_AMZ_CONTENT_SHA256)
            .ok_or(VerifyError::MissingContentSha256)?
            .to_owned(),
        AuthKind::Presigned { .. } => presigned_hash
            .or_else(|| header_str(headers, &X_AMZ_CONTENT_SHA256).map(str::to_owned))
            .unwrap_or_else(|| PayloadMode::UNSIGNED.to_owned()),
    };
    let payload = PayloadMode::parse(&payload_hash_text)
        .ok_or_else(|| VerifyError::InvalidContentSha256(payload_hash_text.clone()))?;

    let content_length = parse_length(headers, &header::CONTENT_LENGTH, "content-length")?;
    let decoded_content_length = parse_length(
        headers,
        &X_AMZ_DECODED_CONTENT_LENGTH,
        "x-amz-decoded-content-length",
    )?;
    if payload.is_chunked() && decoded_content_length.is_none() {
        return Err(VerifyError::MissingContentLength(
            "x-amz-decoded-content-length",
        ));
    }
    let has_chunked_transfer = header_str(headers, &header::TRANSFER_ENCODING)
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if config.require_content_length
        && parts.method == http::Method::PUT
        && !payload.is_chunked()
        && content_length.is_none()
        && has_chunked_transfer
    {
        return Err(VerifyError::MissingContentLength("content-length"));
    }

    // A checksum header describes the body only for uploads of object data;
    // on CompleteMultipartUpload it describes the assembled object instead.
    let uploads_data =
        parts.method == http::Method::PUT && !headers.contains_key(X_AMZ_COPY_SOURCE);
    let mut checksum_header = None;
    for algorithm in ChecksumAlgorithm::ALL {
        if let Some(value) = headers.get(checksum_header_name(algorithm)) {
            let digest = value
                .to_str()
                .ok()
                .and_then(|v| algorithm.decode_value(v))
                .ok_or(VerifyError::InvalidChecksumHeader(algorithm.header_name()))?;
            if checksum_header.replace((algorithm, digest)).is_some() {
                return Err(VerifyError::MultipleChecksumHeaders);
            }
        }
    }
    if !uploads_data {
        checksum_header = None;
    }
    let declared_trailers: Vec<String> = header_str(headers, &X_AMZ_TRAILER)
        .map(|v| {
            v.split(',')
                .map(|name| name.trim().to_ascii_lowercase())
                .filter(|name| !name.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let trailer_checksum = if payload.has_trailer() {
        declared_trailers
            .iter()
            .find_map(|name| ChecksumAlgorithm::from_header_name(name))
    } else {
        None
    };

    Ok(Claim {
        kind,
        scope,
        signed_headers,
        signature,
        date,
        payload,
        payload_hash_text,
        security_token,
        content_length,
        decoded_content_length,
        checksum_header,
        trailer_checksum,
        declared_trailers,
    })
}

/// Checks the signature once the secret is known, and builds the request the
/// inner service gets.
pub(crate) fn complete<B>(
    config: &VerifyConfig,
    mut parts: http::request::Parts,
    body: B,
    claim: Claim,
    credential: Credential,
    failure: super::body::FailureSlot,
) -> Result<Request<VerifyBody<B>>, VerifyError> {
    match (&credential.session_token, &claim.security_token) {
        (None, None) => {}
        (Some(expected), Some(given))
            if constant_time_eq(expected.expose().as_bytes(), given.as_bytes()) => {}
        _ => return Err(VerifyError::InvalidToken),
    }

    let names = claim.signed_headers.names();
    let canonical = CanonicalRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        skip_query_param: match claim.kind {
            AuthKind::Presigned { .. } => Some("X-Amz-Signature"),
            AuthKind::Header | AuthKind::PostPolicy => None,
        },
        headers: &parts.headers,
        authority: parts.uri.authority().map(|a| a.as_str()),
        signed_headers: &names,
        payload_hash: &claim.payload_hash_text,
        uri_encoding: config.uri_encoding,
    };
    let key = config.key_cache.get(
        credential.secret.expose(),
        &claim.scope.date,
        &claim.scope.region,
        &claim.scope.service,
    );
    let scope_string = claim.scope.scope_string();
    let computed = sign_request(&canonical, &key, &claim.date, &scope_string);
    if !constant_time_eq(&computed.signature, &claim.signature) {
        return Err(VerifyError::SignatureMismatch {
            access_key_id: claim.scope.access_key_id.clone(),
            string_to_sign: computed.string_to_sign,
            canonical_request: String::from_utf8_lossy(&computed.canonical_request).into_owned(),
        });
    }

    let chunk_digests =
        (config.publish_chunk_digests && claim.payload.is_chunked()).then(ChunkDigests::default);
    let chunk_signer = claim
        .payload
        .has_chunk_signatures()
        .then(|| ChunkSigner::new(key.clone(), &claim.date, &scope_string, &claim.signature));
    let defer = config.payload_hashing == PayloadHashing::DeferToUpstream;
    let plan = match claim.payload {
        PayloadMode::Hex(_) | PayloadMode::Unsigned if defer => PayloadPlan::Passthrough,
        PayloadMode::Unsigned if claim.checksum_header.is_none() => PayloadPlan::Passthrough,
        PayloadMode::Hex(digest) => PayloadPlan::Whole {
            sha256: Some(digest),
            checksum: claim.checksum_header.clone(),
            expected_len: claim.content_length,
        },
        PayloadMode::Unsigned => PayloadPlan::Whole {
            sha256: None,
            checksum: claim.checksum_header.clone(),
            expected_len: claim.content_length,
        },
        _ => PayloadPlan::Chunked {
            mode: claim.payload,
            signer: chunk_signer,
            limits: config.chunked_limits,
            decoded_len: claim.decoded_content_length.unwrap_or(0),
            checksum_header: claim.checksum_header.clone(),
            trailer_checksum: claim.trailer_checksum,
            declared_trailers: claim.declared_trailers.clone(),
            digests: chunk_digests.clone(),
        },
    };

    let original_content_encoding = parts.headers.get(header::CONTENT_ENCODING).cloned();
    if claim.payload.is_chunked() {
        // The inner service sees the decoded payload: its real length, no
        // aws-chunked framing, no transfer coding.
        let decoded = claim.decoded_content_length.unwrap_or(0);
        parts.headers.insert(header::CONTENT_LENGTH, decoded.into());
        parts.headers.remove(header::TRANSFER_ENCODING);
        strip_aws_chunked_encoding(&mut parts.headers);
    }

    let verified = Verified {
        access_key_id: claim.scope.access_key_id.clone(),
        identity: credential.identity.clone(),
        region: claim.scope.region.clone(),
        service: claim.scope.service.clone(),
        signing_time: claim.date,
        signed_headers: claim.signed_headers,
        payload: claim.payload,
        auth: claim.kind,
        content_length: claim.content_length,
        decoded_content_length: claim.decoded_content_length,
        seed_signature: claim.signature,
        chunk_digests,
        original_content_encoding,
        credential: Arc::new(credential),
    };
    let observed = parts.extensions.get::<crate::verified::Observed>().cloned();
    if let Some(observed) = &observed {
        observed.record(|facts| {
            facts.access_key_id = Some(verified.access_key_id.clone());
            facts.identity = Some(verified.identity.name().to_owned());
            facts.signature_timestamp = Some(verified.signing_time.to_string());
            facts.decoded_content_length = verified.decoded_content_length;
        });
    }
    parts.extensions.insert(verified);
    Ok(Request::from_parts(
        parts,
        VerifyBody::new(body, plan, failure, observed),
    ))
}

fn strip_aws_chunked_encoding(headers: &mut HeaderMap) {
    let Some(value) = header_str(headers, &header::CONTENT_ENCODING) else {
        return;
    };
    let remaining: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    if remaining.is_empty() {
        headers.remove(header::CONTENT_ENCODING);
    } else if let Ok(value) = remaining.join(",").parse() {
        headers.insert(header::CONTENT_ENCODING, value);
    }
}
