//! The canonical request: URI, query, headers and payload hash laid out the
//! way SigV4 hashes them.
//!
//! S3 differs from other AWS services in one place that matters: the path is
//! encoded exactly once and never normalized, so object keys with `//`, `.`,
//! `..`, spaces, `+` or unicode sign as they are. [`UriEncoding::Generic`] is
//! the rule of every other service and exists so AWS's full test suite runs.

use http::HeaderMap;

/// How the path enters the canonical request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UriEncoding {
    /// S3: the request path is percent-decoded once and re-encoded once with
    /// the SigV4 rules; nothing is normalized.
    S3,
    /// Every other service: the raw path is encoded again (so `%3D` becomes
    /// `%253D`), after removing dot segments and empty segments when
    /// `normalize` is set.
    Generic {
        /// Remove `.`, `..` and repeated slashes first.
        normalize: bool,
    },
}

/// Whether SigV4 leaves this byte as it is in an encoded component.
#[inline]
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~')
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `bytes` to `out`, percent-encoding every byte but the unreserved
/// ones (and `/` when `keep_slash`), with upper-case hex as SigV4 requires.
pub fn uri_encode_into(out: &mut String, bytes: &[u8], keep_slash: bool) {
    for &byte in bytes {
        if is_unreserved(byte) || (keep_slash && byte == b'/') {
            out.push(byte as char);
        } else {
            out.push('%');
            out.push(HEX_UPPER[usize::from(byte >> 4)] as char);
            out.push(HEX_UPPER[usize::from(byte & 0x0f)] as char);
        }
    }
}

/// `bytes` percent-encoded with the SigV4 rules.
pub fn uri_encode(bytes: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len() * 3 / 2);
    uri_encode_into(&mut out, bytes, keep_slash);
    out
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes. A `%` that does not start a valid escape stays a
/// literal `%`, as S3 and MinIO read it. With `plus_as_space`, `+` decodes to
/// a space (form encoding, used in query strings).
pub fn percent_decode(text: &str, plus_as_space: bool) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                    (Some(high), Some(low)) => {
                        out.push(high << 4 | low);
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    out
}

/// The canonical URI of `path` (the path as it appeared on the request line).
pub fn canonical_uri(path: &str, encoding: UriEncoding) -> String {
    let mut out = String::with_capacity(path.len() + 16);
    canonical_uri_into(&mut out, path, encoding);
    out
}

fn canonical_uri_into(out: &mut String, path: &str, encoding: UriEncoding) {
    let start = out.len();
    match encoding {
        UriEncoding::S3 => uri_encode_into(out, &percent_decode(path, false), true),
        UriEncoding::Generic { normalize: false } => uri_encode_into(out, path.as_bytes(), true),
        UriEncoding::Generic { normalize: true } => {
            uri_encode_into(out, normalize_path(path).as_bytes(), true)
        }
    }
    if out.len() == start {
        out.push('/');
    }
}

/// Removes dot segments and empty segments, keeping a trailing slash.
fn normalize_path(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    let ends_in_directory = path.ends_with('/')
        || path.ends_with("/.")
        || path.ends_with("/..")
        || path == "."
        || path == "..";
    if out.is_empty() || (ends_in_directory && !segments.is_empty()) {
        out.push('/');
    }
    out
}

/// One query parameter, decoded then re-encoded with the SigV4 rules.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct EncodedParam {
    name: String,
    value: String,
}

/// The canonical query string: parameters decoded, re-encoded, sorted by
/// encoded name then value. `skip` names a parameter left out (the presigned
/// `X-Amz-Signature`).
pub fn canonical_query(query: Option<&str>, skip: Option<&str>) -> String {
    let mut out = String::new();
    canonical_query_into(&mut out, query, skip);
    out
}

fn canonical_query_into(out: &mut String, query: Option<&str>, skip: Option<&str>) {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return;
    };
    let mut params: Vec<EncodedParam> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = uri_encode(&percent_decode(raw_name, true), false);
            if skip == Some(name.as_str()) {
                return None;
            }
            let value = uri_encode(&percent_decode(raw_value, true), false);
            Some(EncodedParam { name, value })
        })
        .collect();
    params.sort_unstable();
    for (index, param) in params.iter().enumerate() {
        if index > 0 {
            out.push('&');
        }
        out.push_str(&param.name);
        out.push('=');
        out.push_str(&param.value);
    }
}

/// Appends the SigV4 form of one header value: trimmed, with every run of
/// spaces and tabs folded to one space.
fn push_trimmed_value(out: &mut Vec<u8>, value: &[u8]) {
    let is_blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value
        .iter()
        .position(|b| !is_blank(b))
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_blank(b))
        .map_or(start, |i| i + 1);
    let mut in_blank_run = false;
    for byte in &value[start..end] {
        if is_blank(byte) {
            if !in_blank_run {
                out.push(b' ');
            }
            in_blank_run = true;
        } else {
            out.push(*byte);
            in_blank_run = false;
        }
    }
}

/// Everything a canonical request is made of.
#[derive(Debug, Clone, Copy)]
pub struct CanonicalRequest<'a> {
    /// The HTTP method, as sent.
    pub method: &'a str,
    /// The path, as it appeared on the request line.
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: Option<&'a str>,
    /// A query parameter to leave out (the presigned `X-Amz-Signature`).
    pub skip_query_param: Option<&'a str>,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The `Host` value to use when the request has no `host` header (HTTP/2
    /// carries it as `:authority`, which lands in the URI, not the headers).
    pub authority: Option<&'a str>,
    /// The signed header names, lower case, in the order they were signed.
    pub signed_headers: &'a [&'a str],
    /// The payload hash: hex SHA-256, `UNSIGNED-PAYLOAD` or a streaming mode.
    pub payload_hash: &'a str,
    /// How the path is encoded.
    pub uri_encoding: UriEncoding,
}

impl CanonicalRequest<'_> {
    /// The canonical request text (what gets hashed into the string to sign).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out: Vec<u8> = Vec::with_capacity(512);
        out.extend_from_slice(self.method.as_bytes());
        out.push(b'\n');
        let mut text = String::with_capacity(self.path.len() + 64);
        canonical_uri_into(&mut text, self.path, self.uri_encoding);
        text.push('\n');
        canonical_query_into(&mut text, self.query, self.skip_query_param);
        text.push('\n');
        out.extend_from_slice(text.as_bytes());
        for name in self.signed_headers {
            out.extend_from_slice(name.as_bytes());
            out.push(b':');
            let mut values = self.headers.get_all(*name).iter().peekable();
            if values.peek().is_none() && *name == "host" {
                if let Some(authority) = self.authority {
                    push_trimmed_value(&mut out, authority.as_bytes());
                }
            }
            let mut first = true;
            for value in values {
                if !first {
                    out.push(b',');
                }
                first = false;
                push_trimmed_value(&mut out, value.as_bytes());
            }
            out.push(b'\n');
        }
        out.push(b'\n');
        for (index, name) in self.signed_headers.iter().enumerate() {
            if index > 0 {
                out.push(b';');
            }
            out.extend_from_slice(name.as_bytes());
        }
        out.push(b'\n');
        out.extend_from_slice(self.payload_hash.as_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_paths_are_encoded_once_and_never_normalized() {
        let s3 = UriEncoding::S3;
        assert_eq!(canonical_uri("", s3), "/");
        assert_eq!(canonical_uri("/", s3), "/");
        assert_eq!(canonical_uri("/bucket/a%20b", s3), "/bucket/a%20b");
        assert_eq!(canonical_uri("/bucket/a+b", s3), "/bucket/a%2Bb");
        assert_eq!(canonical_uri("/bucket/a%2Bb", s3), "/bucket/a%2Bb");
        assert_eq!(canonical_uri("/bucket//./../x", s3), "/bucket//./../x");
        assert_eq!(canonical_uri("/b/%E1%88%B4", s3), "/b/%E1%88%B4");
        assert_eq!(canonical_uri("/b/%e1%88%b4", s3), "/b/%E1%88%B4");
        assert_eq!(canonical_uri("/b/100%", s3), "/b/100%25");
        assert_eq!(canonical_uri("/b/%zz", s3), "/b/%25zz");
        assert_eq!(canonical_uri("/b/a=b!", s3), "/b/a%3Db%21");
    }

    #[test]
    fn generic_paths_are_encoded_twice_and_normalized_on_request() {
        let normalize = UriEncoding::Generic { normalize: true };
        let keep = UriEncoding::Generic { normalize: false };
        assert_eq!(canonical_uri("/a%3D", keep), "/a%253D");
        assert_eq!(canonical_uri("//example//", normalize), "/example/");
        assert_eq!(canonical_uri("/example/..", normalize), "/");
        assert_eq!(canonical_uri("/./", normalize), "/");
        assert_eq!(canonical_uri("/example/foo/..", normalize), "/example/");
        assert_eq!(canonical_uri("//example//", keep), "//example//");
    }

    #[test]
    fn query_is_decoded_reencoded_and_sorted() {
        assert_eq!(canonical_query(None, None), "");
        assert_eq!(
            canonical_query(Some("b=2&a=1&a=0&c"), None),
            "a=0&a=1&b=2&c="
        );
        assert_eq!(canonical_query(Some("prefix=a b"), None), "prefix=a%20b");
        assert_eq!(canonical_query(Some("prefix=a+b"), None), "prefix=a%20b");
        assert_eq!(canonical_query(Some("prefix=a%2Bb"), None), "prefix=a%2Bb");
        assert_eq!(
            canonical_query(Some("X-Amz-Signature=abc&x=1"), Some("X-Amz-Signature")),
            "x=1"
        );
    }

    #[test]
    fn header_values_are_trimmed_and_joined() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "example.com".parse().unwrap());
        headers.append("x-multi", "  a   b \t c  ".parse().unwrap());
        headers.append("x-multi", "d".parse().unwrap());
        let request = CanonicalRequest {
            method: "GET",
            path: "/",
            query: None,
            skip_query_param: None,
            headers: &headers,
            authority: None,
            signed_headers: &["host", "x-multi"],
            payload_hash: "UNSIGNED-PAYLOAD",
            uri_encoding: UriEncoding::S3,
        };
        assert_eq!(
            String::from_utf8(request.to_bytes()).unwrap(),
            "GET\n/\n\nhost:example.com\nx-multi:a b c,d\n\nhost;x-multi\nUNSIGNED-PAYLOAD"
        );
    }
}
