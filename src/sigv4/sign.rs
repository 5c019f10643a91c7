//! The string to sign, request signatures and the `Authorization` header a
//! signer emits. The verifier recomputes signatures with the same code.

use sha2::{Digest, Sha256};

use super::auth::ALGORITHM;
use super::canonical::CanonicalRequest;
use super::key::SigningKey;
use super::time::AmzDate;

/// `AWS4-HMAC-SHA256\n<date>\n<scope>\n<hex sha256(canonical request)>`.
pub fn string_to_sign(date: &AmzDate, scope: &str, canonical_request: &[u8]) -> String {
    let digest = Sha256::digest(canonical_request);
    // Written into one buffer of the right size: this runs twice per
    // proxied request (verify, re-sign).
    let mut out = String::with_capacity(ALGORITHM.len() + 16 + 3 + scope.len() + 1 + 64);
    out.push_str(ALGORITHM);
    out.push('\n');
    out.push_str(date.basic_form().as_str());
    out.push('\n');
    out.push_str(scope);
    out.push('\n');
    push_hex(&mut out, &digest);
    out
}

/// Appends the lower-case hex of a 32-byte digest without an intermediate
/// `String`.
fn push_hex(out: &mut String, bytes: &[u8]) {
    let mut hex = [0u8; 64];
    let hex = &mut hex[..bytes.len() * 2];
    hex::encode_to_slice(bytes, hex).expect("twice the length");
    out.push_str(std::str::from_utf8(hex).expect("hex is ASCII"));
}

/// A request's signature, with the intermediate texts kept so that a
/// mismatch can be explained (S3 returns both in SignatureDoesNotMatch).
#[derive(Debug, Clone)]
pub struct Signature {
    /// The signature bytes.
    pub signature: [u8; 32],
    /// The canonical request that was hashed.
    pub canonical_request: Vec<u8>,
    /// The string that was signed.
    pub string_to_sign: String,
}

/// Signs `request` with `key` for `scope` (`date/region/service/aws4_request`)
/// at `date`.
pub fn sign_request(
    request: &CanonicalRequest<'_>,
    key: &SigningKey,
    date: &AmzDate,
    scope: &str,
) -> Signature {
    let canonical_request = request.to_bytes();
    let string_to_sign = string_to_sign(date, scope, &canonical_request);
    Signature {
        signature: key.sign(string_to_sign.as_bytes()),
        canonical_request,
        string_to_sign,
    }
}

/// The signature of a browser form upload's policy (presigned POST): the
/// string to sign is the base64 policy document itself, as the form carries
/// it, signed with the scope's key.
pub fn sign_post_policy(key: &SigningKey, policy_base64: &str) -> [u8; 32] {
    key.sign(policy_base64.as_bytes())
}

/// The `Authorization` header value for a signature.
pub fn authorization_value(
    access_key_id: &str,
    scope: &str,
    signed_headers: &str,
    signature: &[u8; 32],
) -> String {
    let mut out = String::with_capacity(
        ALGORITHM.len() + 64 + access_key_id.len() + scope.len() + signed_headers.len() + 64,
    );
    out.push_str(ALGORITHM);
    out.push_str(" Credential=");
    out.push_str(access_key_id);
    out.push('/');
    out.push_str(scope);
    out.push_str(", SignedHeaders=");
    out.push_str(signed_headers);
    out.push_str(", Signature=");
    push_hex(&mut out, signature);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sigv4::canonical::UriEncoding;
    use http::HeaderMap;

    #[test]
    fn signs_the_documented_s3_get_object_example() {
        // "GET Object" example of the S3 SigV4 header-auth documentation.
        let mut headers = HeaderMap::new();
        headers.insert("host", "examplebucket.s3.amazonaws.com".parse().unwrap());
        headers.insert("range", "bytes=0-9".parse().unwrap());
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        headers.insert("x-amz-content-sha256", empty.parse().unwrap());
        headers.insert("x-amz-date", "20130524T000000Z".parse().unwrap());
        let request = CanonicalRequest {
            method: "GET",
            path: "/test.txt",
            query: None,
            skip_query_param: None,
            headers: &headers,
            authority: None,
            signed_headers: &["host", "range", "x-amz-content-sha256", "x-amz-date"],
            payload_hash: empty,
            uri_encoding: UriEncoding::S3,
        };
        let date = AmzDate::parse("20130524T000000Z").unwrap();
        let key = SigningKey::derive(
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "20130524",
            "us-east-1",
            "s3",
        );
        let signed = sign_request(&request, &key, &date, "20130524/us-east-1/s3/aws4_request");
        assert_eq!(
            hex::encode(signed.signature),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }
}
