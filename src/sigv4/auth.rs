//! Parsing what a client sends to authenticate: the `Authorization` header,
//! the presigned-URL query parameters, the credential scope and the payload
//! mode named by `x-amz-content-sha256`.

use std::fmt;

use super::time::AmzDate;

/// The only algorithm s3tap verifies (SigV4A's ECDSA variant is refused).
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Longest presigned validity S3 accepts: seven days.
pub const MAX_PRESIGNED_EXPIRY_SECS: u64 = 604_800;

/// Why a client's authentication data could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthParseError {
    /// The header or query uses another scheme (SigV2, SigV4A, ...).
    #[error("unsupported authorization algorithm {0:?}; use AWS4-HMAC-SHA256")]
    UnsupportedAlgorithm(String),
    /// A required component is missing.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A component occurs twice.
    #[error("{0} is given more than once")]
    Duplicate(&'static str),
    /// The credential is not `key/date/region/service/aws4_request`.
    #[error(
        "malformed credential {0:?}; expected <key>/<YYYYMMDD>/<region>/<service>/aws4_request"
    )]
    MalformedCredential(String),
    /// SignedHeaders is empty or not lower-case names separated by `;`.
    #[error("malformed SignedHeaders {0:?}")]
    MalformedSignedHeaders(String),
    /// The signature is not 64 hex digits.
    #[error("malformed signature; expected 64 lower-case hex digits")]
    MalformedSignature,
    /// A part of the header could not be read at all.
    #[error("malformed authorization component {0:?}")]
    MalformedComponent(String),
    /// `X-Amz-Date` is not `YYYYMMDDTHHMMSSZ`.
    #[error("malformed X-Amz-Date {0:?}")]
    MalformedDate(String),
    /// `X-Amz-Expires` is not a whole number of seconds.
    #[error("X-Amz-Expires should be a number")]
    MalformedExpires,
    /// `X-Amz-Expires` is negative.
    #[error("X-Amz-Expires must be non-negative")]
    NegativeExpires,
    /// `X-Amz-Expires` is more than a week.
    #[error("X-Amz-Expires must be less than a week (in seconds) that is 604800")]
    ExpiresTooLong,
}

/// The credential scope: access key id, date, region and service.
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialScope {
    /// The access key id.
    pub access_key_id: String,
    /// The scope date, `YYYYMMDD`.
    pub date: String,
    /// The region, e.g. `us-east-1` or `us-west-004`.
    pub region: String,
    /// The service, `s3` for S3.
    pub service: String,
}

impl CredentialScope {
    /// Parses `AKID/20130524/us-east-1/s3/aws4_request`.
    pub fn parse(text: &str) -> Result<CredentialScope, AuthParseError> {
        let malformed = || AuthParseError::MalformedCredential(text.to_owned());
        let mut parts = text.rsplitn(5, '/');
        let terminator = parts.next().ok_or_else(malformed)?;
        let service = parts.next().ok_or_else(malformed)?;
        let region = parts.next().ok_or_else(malformed)?;
        let date = parts.next().ok_or_else(malformed)?;
        let access_key_id = parts.next().ok_or_else(malformed)?;
        let date_is_valid = date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit());
        if terminator != "aws4_request"
            || access_key_id.is_empty()
            || region.is_empty()
            || service.is_empty()
            || !date_is_valid
        {
            return Err(malformed());
        }
        Ok(CredentialScope {
            access_key_id: access_key_id.to_owned(),
            date: date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
        })
    }

    /// The scope as it appears in the string to sign:
    /// `20130524/us-east-1/s3/aws4_request`.
    pub fn scope_string(&self) -> String {
        credential_scope(&self.date, &self.region, &self.service)
    }
}

/// `<date>/<region>/<service>/aws4_request`, the scope a signer signs for.
/// Written into one buffer of the right size: the verifier and the
/// re-signer each build one per request.
pub(crate) fn credential_scope(date: &str, region: &str, service: &str) -> String {
    const TERMINATOR: &str = "/aws4_request";
    let mut scope =
        String::with_capacity(date.len() + region.len() + service.len() + 2 + TERMINATOR.len());
    for part in [date, "/", region, "/", service, TERMINATOR] {
        scope.push_str(part);
    }
    scope
}

impl fmt::Debug for CredentialScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}/aws4_request",
            self.access_key_id, self.date, self.region, self.service
        )
    }
}

/// Signed header names, lower case, in the order the client listed them.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    text: String,
    // Byte ranges into `text`, so the list costs one allocation.
    ranges: Vec<(usize, usize)>,
}

impl SignedHeaders {
    /// Parses `host;x-amz-content-sha256;x-amz-date`.
    pub fn parse(text: &str) -> Result<SignedHeaders, AuthParseError> {
        let malformed = || AuthParseError::MalformedSignedHeaders(text.to_owned());
        if text.is_empty() {
            return Err(malformed());
        }
        let mut ranges = Vec::with_capacity(8);
        let mut start = 0;
        for name in text.split(';') {
            let valid = !name.is_empty()
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.!#$%&'*+^`|~".contains(&b)
                });
            if !valid {
                return Err(malformed());
            }
            ranges.push((start, start + name.len()));
            start += name.len() + 1;
        }
        Ok(SignedHeaders {
            text: text.to_owned(),
            ranges,
        })
    }

    /// The names, in signed order.
    pub fn names(&self) -> Vec<&str> {
        self.ranges.iter().map(|&(a, b)| &self.text[a..b]).collect()
    }

    /// Whether `name` (lower case) was signed.
    pub fn contains(&self, name: &str) -> bool {
        self.ranges.iter().any(|&(a, b)| &self.text[a..b] == name)
    }

    /// The list as the client sent it.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for SignedHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn parse_signature(text: &str) -> Result<[u8; 32], AuthParseError> {
    let mut signature = [0u8; 32];
    if text.len() != 64 || hex::decode_to_slice(text, &mut signature).is_err() {
        return Err(AuthParseError::MalformedSignature);
    }
    Ok(signature)
}

/// A parsed `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthorizationHeader {
    /// Who signed and for which scope.
    pub credential: CredentialScope,
    /// Which headers were signed.
    pub signed_headers: SignedHeaders,
    /// The request signature.
    pub signature: [u8; 32],
}

impl AuthorizationHeader {
    /// Parses the header value. Components may come in any order, separated
    /// by `,` with optional spaces, as the SDKs and MinIO accept.
    pub fn parse(value: &str) -> Result<AuthorizationHeader, AuthParseError> {
        let value = value.trim();
        let (algorithm, rest) = value.split_once(' ').unwrap_or((value, ""));
        if algorithm != ALGORITHM {
            return Err(AuthParseError::UnsupportedAlgorithm(algorithm.to_owned()));
        }
        let mut credential = None;
        let mut signed_headers = None;
        let mut signature = None;
        for component in rest.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            let (name, field_value) = component
                .split_once('=')
                .ok_or_else(|| AuthParseError::MalformedComponent(component.to_owned()))?;
            let (slot_name, slot) = match name.trim() {
                "Credential" => ("Credential", &mut credential),
                "SignedHeaders" => ("SignedHeaders", &mut signed_headers),
                "Signature" => ("Signature", &mut signature),
                _ => return Err(AuthParseError::MalformedComponent(component.to_owned())),
            };
            if slot.replace(field_value.trim()).is_some() {
                return Err(AuthParseError::Duplicate(slot_name));
            }
        }
        Ok(AuthorizationHeader {
            credential: CredentialScope::parse(
                credential.ok_or(AuthParseError::Missing("Credential"))?,
            )?,
            signed_headers: SignedHeaders::parse(
                signed_headers.ok_or(AuthParseError::Missing("SignedHeaders"))?,
            )?,
            signature: parse_signature(signature.ok_or(AuthParseError::Missing("Signature"))?)?,
        })
    }
}

impl fmt::Debug for AuthorizationHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationHeader")
            .field("credential", &self.credential)
            .field("signed_headers", &self.signed_headers)
            .finish_non_exhaustive()
    }
}

/// The SigV4 parameters of a presigned URL.
#[derive(Clone, PartialEq, Eq)]
pub struct PresignedQuery {
    /// Who signed and for which scope.
    pub credential: CredentialScope,
    /// `X-Amz-Date`.
    pub date: AmzDate,
    /// `X-Amz-Expires`, seconds, at most [`MAX_PRESIGNED_EXPIRY_SECS`].
    pub expires_secs: u64,
    /// Which headers were signed.
    pub signed_headers: SignedHeaders,
    /// The request signature.
    pub signature: [u8; 32],
    /// `X-Amz-Security-Token`, when the URL was made with session credentials.
    pub security_token: Option<String>,
    /// `X-Amz-Content-Sha256`, when the signer put the payload hash in the URL.
    pub content_sha256: Option<String>,
}

impl PresignedQuery {
    /// Whether the raw query string carries presigned-URL parameters at all.
    pub fn is_presigned(query: Option<&str>) -> bool {
        query.is_some_and(|q| {
            q.split('&')
                .any(|pair| pair.starts_with("X-Amz-Algorithm=") || pair == "X-Amz-Algorithm")
        })
    }

    /// Parses the raw query string of a presigned URL.
    pub fn parse(query: &str) -> Result<PresignedQuery, AuthParseError> {
        let mut algorithm = None;
        let mut credential = None;
        let mut date = None;
        let mut expires = None;
        let mut signed_headers = None;
        let mut signature = None;
        let mut security_token = None;
        let mut content_sha256 = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let (name, slot) = match raw_name {
                "X-Amz-Algorithm" => ("X-Amz-Algorithm", &mut algorithm),
                "X-Amz-Credential" => ("X-Amz-Credential", &mut credential),
                "X-Amz-Date" => ("X-Amz-Date", &mut date),
                "X-Amz-Expires" => ("X-Amz-Expires", &mut expires),
                "X-Amz-SignedHeaders" => ("X-Amz-SignedHeaders", &mut signed_headers),
                "X-Amz-Signature" => ("X-Amz-Signature", &mut signature),
                "X-Amz-Security-Token" => ("X-Amz-Security-Token", &mut security_token),
                "X-Amz-Content-Sha256" => ("X-Amz-Content-Sha256", &mut content_sha256),
                _ => continue,
            };
            let decoded = super::canonical::percent_decode(raw_value, true);
            let decoded = String::from_utf8(decoded)
                .map_err(|_| AuthParseError::MalformedComponent(name.to_owned()))?;
            if slot.replace(decoded).is_some() {
                return Err(AuthParseError::Duplicate(name));
            }
        }
        let algorithm = algorithm.ok_or(AuthParseError::Missing("X-Amz-Algorithm"))?;
        if algorithm != ALGORITHM {
            return Err(AuthParseError::UnsupportedAlgorithm(algorithm));
        }
        let credential = CredentialScope::parse(
            &credential.ok_or(AuthParseError::Missing("X-Amz-Credential"))?,
        )?;
        let date_text = date.ok_or(AuthParseError::Missing("X-Amz-Date"))?;
        let date = AmzDate::parse(&date_text).ok_or(AuthParseError::MalformedDate(date_text))?;
        let expires = expires.ok_or(AuthParseError::Missing("X-Amz-Expires"))?;
        let expires: i64 = expires
            .parse()
            .map_err(|_| AuthParseError::MalformedExpires)?;
        if expires < 0 {
            return Err(AuthParseError::NegativeExpires);
        }
        if expires as u64 > MAX_PRESIGNED_EXPIRY_SECS {
            return Err(AuthParseError::ExpiresTooLong);
        }
        let signed_headers = SignedHeaders::parse(
            &signed_headers.ok_or(AuthParseError::Missing("X-Amz-SignedHeaders"))?,
        )?;
        let signature =
            parse_signature(&signature.ok_or(AuthParseError::Missing("X-Amz-Signature"))?)?;
        Ok(PresignedQuery {
            credential,
            date,
            expires_secs: expires as u64,
            signed_headers,
            signature,
            security_token,
            content_sha256,
        })
    }
}

impl fmt::Debug for PresignedQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresignedQuery")
            .field("credential", &self.credential)
            .field("date", &self.date)
            .field("expires_secs", &self.expires_secs)
            .field("signed_headers", &self.signed_headers)
            .finish_non_exhaustive()
    }
}

/// What `x-amz-content-sha256` says about the payload.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadMode {
    /// The hex SHA-256 of the whole payload.
    Hex([u8; 32]),
    /// `UNSIGNED-PAYLOAD`: the payload is not covered by the signature.
    Unsigned,
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`: aws-chunked, each chunk signed.
    StreamingSigned,
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`: signed chunks and a
    /// signed trailer.
    StreamingSignedTrailer,
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: aws-chunked, chunks unsigned,
    /// integrity from a checksum trailer.
    StreamingUnsignedTrailer,
}

impl PayloadMode {
    /// The literal for `UNSIGNED-PAYLOAD`.
    pub const UNSIGNED: &'static str = "UNSIGNED-PAYLOAD";
    /// The literal for signed aws-chunked.
    pub const STREAMING_SIGNED: &'static str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
    /// The literal for signed aws-chunked with a trailer.
    pub const STREAMING_SIGNED_TRAILER: &'static str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
    /// The literal for unsigned aws-chunked with a trailer.
    pub const STREAMING_UNSIGNED_TRAILER: &'static str = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";

    /// Reads an `x-amz-content-sha256` value; `None` for anything S3 refuses
    /// (including the SigV4A `STREAMING-AWS4-ECDSA-...` modes).
    pub fn parse(value: &str) -> Option<PayloadMode> {
        match value {
            Self::UNSIGNED => Some(PayloadMode::Unsigned),
            Self::STREAMING_SIGNED => Some(PayloadMode::StreamingSigned),
            Self::STREAMING_SIGNED_TRAILER => Some(PayloadMode::StreamingSignedTrailer),
            Self::STREAMING_UNSIGNED_TRAILER => Some(PayloadMode::StreamingUnsignedTrailer),
            hex_digest if hex_digest.len() == 64 => {
                let mut digest = [0u8; 32];
                hex::decode_to_slice(hex_digest, &mut digest).ok()?;
                Some(PayloadMode::Hex(digest))
            }
            _ => None,
        }
    }

    /// Whether the body is aws-chunked framed.
    pub fn is_chunked(&self) -> bool {
        matches!(
            self,
            PayloadMode::StreamingSigned
                | PayloadMode::StreamingSignedTrailer
                | PayloadMode::StreamingUnsignedTrailer
        )
    }

    /// Whether every chunk carries a signature.
    pub fn has_chunk_signatures(&self) -> bool {
        matches!(
            self,
            PayloadMode::StreamingSigned | PayloadMode::StreamingSignedTrailer
        )
    }

    /// Whether the stream ends with trailing headers.
    pub fn has_trailer(&self) -> bool {
        matches!(
            self,
            PayloadMode::StreamingSignedTrailer | PayloadMode::StreamingUnsignedTrailer
        )
    }

    /// The `x-amz-content-sha256` value for this mode.
    pub fn header_value(&self) -> String {
        match self {
            PayloadMode::Hex(digest) => hex::encode(digest),
            PayloadMode::Unsigned => Self::UNSIGNED.to_owned(),
            PayloadMode::StreamingSigned => Self::STREAMING_SIGNED.to_owned(),
            PayloadMode::StreamingSignedTrailer => Self::STREAMING_SIGNED_TRAILER.to_owned(),
            PayloadMode::StreamingUnsignedTrailer => Self::STREAMING_UNSIGNED_TRAILER.to_owned(),
        }
    }
}

impl fmt::Debug for PayloadMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.header_value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-date,Signature=fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024";

    #[test]
    fn parses_the_documented_header() {
        let auth = AuthorizationHeader::parse(HEADER).unwrap();
        assert_eq!(auth.credential.access_key_id, "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(
            auth.credential.scope_string(),
            "20130524/us-east-1/s3/aws4_request"
        );
        assert_eq!(auth.signed_headers.names(), ["host", "range", "x-amz-date"]);
        assert_eq!(hex::encode(auth.signature)[..8], *"fe5f80f7");
        let spaced = HEADER.replace(",S", ", S");
        assert_eq!(AuthorizationHeader::parse(&spaced).unwrap(), auth);
    }

    #[test]
    fn rejects_malformed_headers() {
        let cases = [
            ("AWS AKID:sig", "unsupported"),
            (
                "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00",
                "missing",
            ),
            (
                &HEADER.replace("aws4_request", "aws5_request"),
                "credential",
            ),
            (&HEADER.replace("20130524", "2013052"), "credential"),
            (&HEADER.replace("host;range", "Host;range"), "SignedHeaders"),
            (
                &HEADER.replace("host;range", "host;;range"),
                "SignedHeaders",
            ),
            (&HEADER.replace("1024", "102"), "signature"),
            (&HEADER.replace("1024", "102g"), "signature"),
            (&format!("{HEADER},Signature=00"), "more than once"),
            (&format!("{HEADER},Foo=bar"), "component"),
        ];
        for (header, expected) in cases {
            let error = AuthorizationHeader::parse(header).unwrap_err().to_string();
            assert!(error.contains(expected), "{header}: {error}");
        }
    }

    #[test]
    fn parses_presigned_parameters() {
        let query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";
        assert!(PresignedQuery::is_presigned(Some(query)));
        let presigned = PresignedQuery::parse(query).unwrap();
        assert_eq!(presigned.expires_secs, 86400);
        assert_eq!(presigned.credential.region, "us-east-1");
        assert_eq!(
            PresignedQuery::parse(&query.replace("86400", "604801")).unwrap_err(),
            AuthParseError::ExpiresTooLong
        );
        assert_eq!(
            PresignedQuery::parse(&query.replace("86400", "-1")).unwrap_err(),
            AuthParseError::NegativeExpires
        );
        assert_eq!(
            PresignedQuery::parse(&query.replace("&X-Amz-Date=20130524T000000Z", "")).unwrap_err(),
            AuthParseError::Missing("X-Amz-Date")
        );
    }

    #[test]
    fn reads_payload_modes() {
        assert_eq!(
            PayloadMode::parse("UNSIGNED-PAYLOAD"),
            Some(PayloadMode::Unsigned)
        );
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(PayloadMode::parse(empty).unwrap().header_value(), empty);
        assert!(PayloadMode::parse("STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD").is_none());
        assert!(PayloadMode::parse("abc").is_none());
        assert!(PayloadMode::StreamingUnsignedTrailer.has_trailer());
        assert!(!PayloadMode::StreamingUnsignedTrailer.has_chunk_signatures());
    }
}
