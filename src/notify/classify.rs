//! Which S3 operation a request is, and which keys a DeleteObjects response
//! says were deleted.
//!
//! [`classify`] looks only at the request head (method, path, query, a few
//! headers), so the layer can decide before any body byte moves. Both S3
//! addressing styles are understood: path style (`/bucket/key`) and virtual
//! hosted (`Host: bucket.<suffix>`).
//!
//! ```
//! use http::{HeaderMap, Method, Uri};
//! use s3tap::notify::{classify, S3Operation};
//!
//! let uri: Uri = "/photos/2024/a%20b+c.jpg?x-id=PutObject".parse().unwrap();
//! let c = classify(&Method::PUT, &uri, &HeaderMap::new(), None);
//! assert_eq!(c.operation, S3Operation::PutObject);
//! assert_eq!(c.bucket.as_deref(), Some("photos"));
//! assert_eq!(c.key.as_deref(), Some("2024/a b+c.jpg"));
//! ```
//!
//! [`parse_delete_objects_result`] and the incremental [`DeleteResultScanner`]
//! read the `<DeleteResult>` body of `POST /bucket?delete`, so the layer can
//! emit one event per deleted key while the response streams through. The
//! document is tiny and regular, so a small scanner is used instead of an XML
//! crate: it needs no DTDs, namespaces or attributes, and it must hold at most
//! one `<Deleted>` element at a time, which a pull parser over chunks would
//! make awkward anyway.

use http::{HeaderMap, Method, Uri};

use super::S3Operation;
use crate::sigv4::canonical::percent_decode;

/// What [`classify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classified {
    /// The operation.
    pub operation: S3Operation,
    /// The bucket, if the request names one.
    pub bucket: Option<String>,
    /// The object key, percent-decoded once (`+` stays a literal `+`, as in
    /// S3 paths), if the request names one.
    pub key: Option<String>,
}

/// Query parameters that never change what an object or bucket request is:
/// presigned-URL auth and the `x-id` the AWS SDKs add for their own logs.
fn is_neutral_param(name: &str) -> bool {
    // Bytes, not a str slice: the name may hold non-ASCII (fuzzing found a
    // panic on a char boundary here).
    name.eq_ignore_ascii_case("x-id")
        || name.len() > 6 && name.as_bytes()[..6].eq_ignore_ascii_case(b"x-amz-")
}

/// Sub-resources of an object that turn `GET`/`PUT`/`DELETE`/`POST` on the
/// object into something other than reading, writing or deleting its data.
const OBJECT_SUBRESOURCES: &[&str] = &[
    "acl",
    "attributes",
    "legal-hold",
    "restore",
    "retention",
    "select",
    "tagging",
    "torrent",
    "renameObject",
];

/// Sub-resources of a bucket that turn `GET /bucket` into something other
/// than a listing of objects.
const BUCKET_SUBRESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "delete",
    "encryption",
    "intelligent-tiering",
    "inventory",
    "lifecycle",
    "location",
    "logging",
    "metadataConfiguration",
    "metadataTable",
    "metrics",
    "notification",
    "object-lock",
    "ownershipControls",
    "policy",
    "policyStatus",
    "publicAccessBlock",
    "replication",
    "requestPayment",
    "session",
    "tagging",
    "uploads",
    "versioning",
    "versions",
    "website",
];

/// The decoded names of the query's parameters (values are not needed).
struct Query {
    names: Vec<String>,
}

impl Query {
    fn parse(query: Option<&str>) -> Query {
        let names = query
            .unwrap_or("")
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let name = pair.split_once('=').map_or(pair, |(name, _)| name);
                String::from_utf8_lossy(&percent_decode(name, true)).into_owned()
            })
            .collect();
        Query { names }
    }

    /// `?name` or `?name=...`.
    fn has(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    fn has_any(&self, names: &[&str]) -> bool {
        names.iter().any(|name| self.has(name))
    }

    /// Any parameter that is not auth or SDK bookkeeping.
    fn has_non_neutral(&self) -> bool {
        self.names.iter().any(|n| !is_neutral_param(n))
    }
}

/// The bucket from a virtual-hosted `Host`, if the host is `<bucket>.<suffix>`.
fn virtual_host_bucket(uri: &Uri, headers: &HeaderMap, suffix: &str) -> Option<String> {
    let suffix = suffix.trim_matches('.');
    if suffix.is_empty() {
        return None;
    }
    let host = headers
        .get(http::header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))?;
    // Drop a port; IPv6 literals never carry a bucket, so `]` ends the search.
    let host = match host.rfind(':') {
        Some(colon) if !host[colon..].contains(']') => &host[..colon],
        _ => host,
    };
    let host = host.trim_end_matches('.');
    if host.len() <= suffix.len() + 1 {
        return None;
    }
    let (bucket, rest) = host.split_at(host.len() - suffix.len());
    if !rest.eq_ignore_ascii_case(suffix) || !bucket.ends_with('.') {
        return None;
    }
    let bucket = &bucket[..bucket.len() - 1];
    (!bucket.is_empty()).then(|| bucket.to_owned())
}

fn decode_once(raw: &str) -> String {
    String::from_utf8_lossy(&percent_decode(raw, false)).into_owned()
}

/// Classifies one S3 request from its head.
///
/// `virtual_host_suffix` is the endpoint's own host name (for example
/// `s3.us-west-004.backblazeb2.com`); when the `Host` header is
/// `<bucket>.<suffix>` the bucket comes from the host and the whole path is
/// the key. Without a suffix, or when the host does not match it, the path is
/// read as `/bucket/key`.
///
/// Never panics, whatever the URI or headers hold.
pub fn classify(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    virtual_host_suffix: Option<&str>,
) -> Classified {
    let path = uri.path();
    let path = path.strip_prefix('/').unwrap_or(path);
    let (bucket, key) =
        match virtual_host_suffix.and_then(|suffix| virtual_host_bucket(uri, headers, suffix)) {
            Some(bucket) => (Some(bucket), (!path.is_empty()).then(|| decode_once(path))),
            None => {
                let (bucket, key) = match path.split_once('/') {
                    Some((bucket, key)) => (bucket, key),
                    None => (path, ""),
                };
                (
                    (!bucket.is_empty()).then(|| decode_once(bucket)),
                    (!key.is_empty()).then(|| decode_once(key)),
                )
            }
        };
    let query = Query::parse(uri.query());
    let operation = match (&bucket, &key) {
        (None, _) => S3Operation::Other,
        (Some(_), Some(_)) => object_operation(method, &query, headers),
        (Some(_), None) => bucket_operation(method, &query, headers),
    };
    Classified {
        operation,
        bucket,
        key,
    }
}

fn object_operation(method: &Method, query: &Query, headers: &HeaderMap) -> S3Operation {
    let copy = headers.contains_key("x-amz-copy-source");
    let sub_resource = query.has_any(OBJECT_SUBRESOURCES);
    match *method {
        Method::PUT if query.has("uploadId") && query.has("partNumber") => {
            if copy {
                S3Operation::UploadPartCopy
            } else {
                S3Operation::UploadPart
            }
        }
        Method::PUT if sub_resource || query.has("uploadId") => S3Operation::Other,
        Method::PUT if copy => S3Operation::CopyObject,
        Method::PUT => S3Operation::PutObject,
        Method::POST if sub_resource => S3Operation::Other,
        Method::POST if query.has("uploads") => S3Operation::CreateMultipartUpload,
        Method::POST if query.has("uploadId") => S3Operation::CompleteMultipartUpload,
        Method::DELETE if sub_resource => S3Operation::Other,
        Method::DELETE if query.has("uploadId") => S3Operation::AbortMultipartUpload,
        Method::DELETE => S3Operation::DeleteObject,
        // GET ?uploadId is ListParts.
        Method::GET if sub_resource || query.has("uploadId") => S3Operation::Other,
        Method::GET => S3Operation::GetObject,
        Method::HEAD => S3Operation::HeadObject,
        _ => S3Operation::Other,
    }
}

fn bucket_operation(method: &Method, query: &Query, headers: &HeaderMap) -> S3Operation {
    match *method {
        Method::GET if query.has_any(BUCKET_SUBRESOURCES) => S3Operation::Other,
        Method::GET if query.has("list-type") => S3Operation::ListObjectsV2,
        Method::GET => S3Operation::ListObjects,
        Method::PUT if query.has_non_neutral() => S3Operation::Other,
        Method::PUT => S3Operation::CreateBucket,
        Method::DELETE if query.has_non_neutral() => S3Operation::Other,
        Method::DELETE => S3Operation::DeleteBucket,
        Method::POST if query.has("delete") => S3Operation::DeleteObjects,
        Method::POST if !query.has_non_neutral() && is_form_upload(headers) => {
            S3Operation::PostObject
        }
        _ => S3Operation::Other,
    }
}

fn is_form_upload(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            value
                .trim_start()
                .get(..19)
                .is_some_and(|start| start.eq_ignore_ascii_case("multipart/form-data"))
        })
        .unwrap_or(false)
}

/// One `<Deleted>` entry of a DeleteObjects result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeletedKey {
    /// The key, XML entities decoded.
    pub key: String,
    /// `<VersionId>`: the version that was deleted, when the request named one.
    pub version_id: Option<String>,
    /// `<DeleteMarker>true</DeleteMarker>`: a delete marker was created (or
    /// the version deleted was one).
    pub delete_marker: bool,
    /// `<DeleteMarkerVersionId>`: the version id of that delete marker.
    pub delete_marker_version_id: Option<String>,
}

/// Reads a complete DeleteObjects response body. `<Error>` entries (keys
/// that were not deleted) are left out.
pub fn parse_delete_objects_result(xml: &[u8]) -> Vec<DeletedKey> {
    let mut scanner = DeleteResultScanner::new();
    let mut keys = scanner.feed(xml);
    keys.extend(scanner.finish());
    keys
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Key,
    VersionId,
    DeleteMarker,
    DeleteMarkerVersionId,
}

impl Field {
    fn from_name(name: &[u8]) -> Option<Field> {
        match name {
            b"Key" => Some(Field::Key),
            b"VersionId" => Some(Field::VersionId),
            b"DeleteMarker" => Some(Field::DeleteMarker),
            b"DeleteMarkerVersionId" => Some(Field::DeleteMarkerVersionId),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ScanState {
    /// Between tags.
    Text,
    /// After `<`, up to `>`.
    Tag,
    /// Inside `<!-- ... -->`.
    Comment,
    /// Inside `<![CDATA[ ... ]]>`.
    CData,
}

/// Longest tag kept: names are short and S3 puts at most an `xmlns` on the
/// root, so anything longer is cut (the name at its start survives).
const MAX_TAG: usize = 512;
/// Longest text kept for one field: a key is at most 1024 bytes of UTF-8,
/// and the worst entity spelling (`&#x10FFFF;`) is 10 bytes per character.
const MAX_TEXT: usize = 16 * 1024;

/// Reads a DeleteObjects `<DeleteResult>` body chunk by chunk, wherever the
/// chunks split (inside a tag, an entity or a multi-byte character), and
/// hands out each deleted key as soon as its `</Deleted>` closes.
///
/// It holds the current tag and the fields of one `<Deleted>` element, never
/// more; a field longer than any valid key makes that entry be dropped.
///
/// ```
/// use s3tap::notify::DeleteResultScanner;
///
/// let mut scanner = DeleteResultScanner::new();
/// assert!(scanner.feed(b"<DeleteResult><Deleted><Ke").is_empty());
/// let keys = scanner.feed(b"y>a &amp; b</Key></Deleted></DeleteResult>");
/// assert_eq!(keys[0].key, "a & b");
/// ```
#[derive(Debug)]
pub struct DeleteResultScanner {
    state: ScanState,
    tag: Vec<u8>,
    tag_len: usize,
    /// The last bytes seen in a comment or CDATA section, to find its end.
    tail: [u8; 2],
    text: Vec<u8>,
    text_overflow: bool,
    in_deleted: bool,
    field: Option<Field>,
    current: DeletedKey,
    has_key: bool,
    broken: bool,
}

impl Default for DeleteResultScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl DeleteResultScanner {
    /// A scanner at the start of a document.
    pub fn new() -> Self {
        DeleteResultScanner {
            state: ScanState::Text,
            tag: Vec::new(),
            tag_len: 0,
            tail: [0; 2],
            text: Vec::new(),
            text_overflow: false,
            in_deleted: false,
            field: None,
            current: DeletedKey::default(),
            has_key: false,
            broken: false,
        }
    }

    /// Feeds the next chunk of the body; returns the keys whose `<Deleted>`
    /// element closed within it.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<DeletedKey> {
        let mut out = Vec::new();
        for &byte in chunk {
            self.step(byte, &mut out);
        }
        out
    }

    /// Ends the document. A `<Deleted>` element left open (a truncated body)
    /// is not reported: without its closing tag it may be incomplete.
    pub fn finish(self) -> Vec<DeletedKey> {
        Vec::new()
    }

    fn push_text(&mut self, byte: u8) {
        if self.field.is_none() {
            return;
        }
        if self.text.len() < MAX_TEXT {
            self.text.push(byte);
        } else {
            self.text_overflow = true;
        }
    }

    fn step(&mut self, byte: u8, out: &mut Vec<DeletedKey>) {
        match self.state {
            ScanState::Text => {
                if byte == b'<' {
                    self.state = ScanState::Tag;
                    self.tag.clear();
                    self.tag_len = 0;
                } else {
                    self.push_text(byte);
                }
            }
            ScanState::Tag => {
                if byte == b'>' {
                    self.state = ScanState::Text;
                    self.end_tag(out);
                    return;
                }
                self.tag_len += 1;
                if self.tag.len() < MAX_TAG {
                    self.tag.push(byte);
                }
                if self.tag_len == 3 && self.tag == b"!--" {
                    self.state = ScanState::Comment;
                    self.tail = [0; 2];
                } else if self.tag_len == 8 && self.tag == b"![CDATA[" {
                    self.state = ScanState::CData;
                    self.tail = [0; 2];
                }
            }
            ScanState::Comment => {
                if byte == b'>' && self.tail == *b"--" {
                    self.state = ScanState::Text;
                }
                self.tail = [self.tail[1], byte];
            }
            ScanState::CData => {
                if byte == b'>' && self.tail == *b"]]" {
                    // The two `]` were pushed as text; take them back.
                    if self.field.is_some() && !self.text_overflow {
                        self.text.truncate(self.text.len().saturating_sub(2));
                    }
                    self.state = ScanState::Text;
                    return;
                }
                self.tail = [self.tail[1], byte];
                // CDATA content is literal: protect `&` from entity decoding.
                if byte == b'&' {
                    for &b in b"&amp;" {
                        self.push_text(b);
                    }
                } else {
                    self.push_text(byte);
                }
            }
        }
    }

    fn end_tag(&mut self, out: &mut Vec<DeletedKey>) {
        let tag = std::mem::take(&mut self.tag);
        let (closing, body) = match tag.strip_prefix(b"/") {
            Some(rest) => (true, rest),
            None => (false, &tag[..]),
        };
        if body.first().is_some_and(|&b| b == b'?' || b == b'!') {
            self.tag = tag;
            return;
        }
        let self_closing = !closing && body.last() == Some(&b'/');
        let name_end = body
            .iter()
            .position(|b| b.is_ascii_whitespace() || *b == b'/')
            .unwrap_or(body.len());
        let name = &body[..name_end];
        // Drop a namespace prefix (`s3:Key`); S3 uses none, others might.
        let name = match name.iter().rposition(|&b| b == b':') {
            Some(colon) => &name[colon + 1..],
            None => name,
        };
        if name == b"Deleted" {
            if closing {
                if self.in_deleted && self.has_key && !self.broken {
                    out.push(std::mem::take(&mut self.current));
                }
                self.in_deleted = false;
            } else if !self_closing {
                self.in_deleted = true;
            }
            self.current = DeletedKey::default();
            self.has_key = false;
            self.broken = false;
            self.field = None;
        } else if self.in_deleted {
            match (closing, Field::from_name(name)) {
                (false, Some(field)) if !self_closing => {
                    self.field = Some(field);
                    self.text.clear();
                    self.text_overflow = false;
                }
                (false, Some(Field::Key)) => {
                    // `<Key/>`: an empty key is not a key S3 could delete.
                    self.broken = true;
                }
                (true, Some(field)) if self.field == Some(field) => {
                    self.close_field(field);
                }
                _ => {}
            }
        }
        self.tag = tag;
    }

    fn close_field(&mut self, field: Field) {
        self.field = None;
        if self.text_overflow {
            self.broken = true;
            return;
        }
        let value = match decode_entities(&self.text) {
            Some(value) => value,
            None => {
                self.broken = true;
                return;
            }
        };
        match field {
            Field::Key => {
                self.has_key = !value.is_empty();
                self.current.key = value;
            }
            Field::VersionId => self.current.version_id = Some(value),
            Field::DeleteMarker => self.current.delete_marker = value.trim() == "true",
            Field::DeleteMarkerVersionId => self.current.delete_marker_version_id = Some(value),
        }
        self.text.clear();
    }
}

/// Decodes the five predefined XML entities and numeric character
/// references. `None` if the text is not UTF-8 or a reference is malformed.
pub(crate) fn decode_entities(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    if !text.contains('&') {
        return Some(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp + 1..];
        let semi = rest.find(';')?;
        let entity = &rest[..semi];
        rest = &rest[semi + 1..];
        let ch = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                {
                    u32::from_str_radix(hex, 16).ok()?
                } else if let Some(dec) = entity.strip_prefix('#') {
                    dec.parse::<u32>().ok()?
                } else {
                    return None;
                };
                char::from_u32(code)?
            }
        };
        out.push(ch);
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(
        method: Method,
        target: &str,
        headers: &[(&str, &str)],
        suffix: Option<&str>,
    ) -> Classified {
        let uri: Uri = target.parse().expect(target);
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        classify(&method, &uri, &map, suffix)
    }

    #[test]
    fn operation_table() {
        use S3Operation::*;
        let copy = [("x-amz-copy-source", "/src/a")];
        let form = [("content-type", "multipart/form-data; boundary=xyz")];
        type Case<'a> = (Method, &'a str, &'a [(&'a str, &'a str)], S3Operation);
        let cases: &[Case] = &[
            (Method::PUT, "/b/k", &[], PutObject),
            (Method::PUT, "/b/k?x-id=PutObject", &[], PutObject),
            (
                Method::PUT,
                "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=ab",
                &[],
                PutObject,
            ),
            (Method::PUT, "/b/k", &copy, CopyObject),
            (Method::POST, "/b/k?uploads", &[], CreateMultipartUpload),
            (Method::POST, "/b/k?uploads=", &[], CreateMultipartUpload),
            (
                Method::PUT,
                "/b/k?partNumber=2&uploadId=u1",
                &[],
                UploadPart,
            ),
            (
                Method::PUT,
                "/b/k?uploadId=u1&partNumber=2",
                &copy,
                UploadPartCopy,
            ),
            (
                Method::POST,
                "/b/k?uploadId=u1",
                &[],
                CompleteMultipartUpload,
            ),
            (
                Method::DELETE,
                "/b/k?uploadId=u1",
                &[],
                AbortMultipartUpload,
            ),
            (Method::GET, "/b/k?uploadId=u1", &[], Other),
            (Method::DELETE, "/b/k", &[], DeleteObject),
            (Method::DELETE, "/b/k?versionId=v1", &[], DeleteObject),
            (Method::POST, "/b?delete", &[], DeleteObjects),
            (Method::POST, "/b?delete=", &[], DeleteObjects),
            (Method::POST, "/b/?delete", &[], DeleteObjects),
            (Method::GET, "/b/k", &[], GetObject),
            (
                Method::GET,
                "/b/k?versionId=v&response-content-type=x",
                &[],
                GetObject,
            ),
            (Method::GET, "/b/k?partNumber=1", &[], GetObject),
            (Method::HEAD, "/b/k", &[], HeadObject),
            (Method::GET, "/b", &[], ListObjects),
            (Method::GET, "/b/", &[], ListObjects),
            (Method::GET, "/b?prefix=a/&delimiter=/", &[], ListObjects),
            (Method::GET, "/b?list-type=2&prefix=a", &[], ListObjectsV2),
            (Method::PUT, "/b", &[], CreateBucket),
            (Method::DELETE, "/b", &[], DeleteBucket),
            (Method::POST, "/b", &form, PostObject),
            (Method::POST, "/b", &[], Other),
            (Method::GET, "/", &[], Other),
            (Method::HEAD, "/b", &[], Other),
            (Method::GET, "/b?acl", &[], Other),
            (Method::GET, "/b?tagging", &[], Other),
            (Method::PUT, "/b?versioning", &[], Other),
            (Method::GET, "/b?versioning=", &[], Other),
            (Method::GET, "/b?uploads", &[], Other),
            (Method::GET, "/b?versions&prefix=a", &[], Other),
            (Method::GET, "/b?location", &[], Other),
            (Method::DELETE, "/b?policy", &[], Other),
            (Method::PUT, "/b?lifecycle", &[], Other),
            (Method::GET, "/b/k?tagging", &[], Other),
            (Method::PUT, "/b/k?tagging", &[], Other),
            (Method::DELETE, "/b/k?tagging", &[], Other),
            (Method::PUT, "/b/k?acl", &[], Other),
            (Method::GET, "/b/k?acl=", &[], Other),
            (Method::PUT, "/b/k?retention", &[], Other),
            (Method::PUT, "/b/k?legal-hold", &[], Other),
            (Method::POST, "/b/k?restore", &[], Other),
            (Method::GET, "/b/k?attributes", &[], Other),
            (Method::PATCH, "/b/k", &[], Other),
            (Method::OPTIONS, "/b/k", &[], Other),
        ];
        for (method, target, headers, expected) in cases {
            let got = run(method.clone(), target, headers, None);
            assert_eq!(got.operation, *expected, "{method} {target}");
        }
    }

    #[test]
    fn keys_are_decoded_once_with_plus_literal() {
        let cases = [
            ("/b/a%20b.txt", "a b.txt"),
            ("/b/a+b.txt", "a+b.txt"),
            ("/b/a%2Bb.txt", "a+b.txt"),
            ("/b/%C3%BC/%E6%97%A5%E6%9C%AC.txt", "ü/日本.txt"),
            ("/b/dir//file", "dir//file"),
            ("/b//lead", "/lead"),
            ("/b/trail/", "trail/"),
            ("/b/100%25", "100%"),
            ("/b/%2525", "%25"),
            ("/b/bad%zz", "bad%zz"),
            ("/b/a%2Fb", "a/b"),
            ("/b/a&b=c", "a&b=c"),
        ];
        for (target, key) in cases {
            let got = run(Method::GET, target, &[], None);
            assert_eq!(got.bucket.as_deref(), Some("b"), "{target}");
            assert_eq!(got.key.as_deref(), Some(key), "{target}");
            assert_eq!(got.operation, S3Operation::GetObject, "{target}");
        }
    }

    #[test]
    fn virtual_hosted_style() {
        let suffix = Some("s3.us-west-004.backblazeb2.com");
        let host = [("host", "photos.s3.us-west-004.backblazeb2.com")];
        let got = run(Method::PUT, "/2024/a%20b.jpg", &host, suffix);
        assert_eq!(got.operation, S3Operation::PutObject);
        assert_eq!(got.bucket.as_deref(), Some("photos"));
        assert_eq!(got.key.as_deref(), Some("2024/a b.jpg"));

        // A key whose first segment looks like a bucket stays whole.
        let got = run(Method::GET, "/photos/x", &host, suffix);
        assert_eq!(got.key.as_deref(), Some("photos/x"));

        // Bucket-level requests on a virtual host.
        let got = run(Method::GET, "/?list-type=2", &host, suffix);
        assert_eq!(got.operation, S3Operation::ListObjectsV2);
        assert_eq!(got.key, None);
        let got = run(Method::POST, "/?delete", &host, suffix);
        assert_eq!(got.operation, S3Operation::DeleteObjects);

        // Port, case and a dotted bucket name.
        let host = [("host", "my.bucket.S3.US-WEST-004.backblazeb2.com:443")];
        let got = run(Method::GET, "/k", &host, suffix);
        assert_eq!(got.bucket.as_deref(), Some("my.bucket"));
        assert_eq!(got.key.as_deref(), Some("k"));

        // The bare endpoint host is path style.
        let host = [("host", "s3.us-west-004.backblazeb2.com")];
        let got = run(Method::GET, "/b/k", &host, suffix);
        assert_eq!(got.bucket.as_deref(), Some("b"));
        assert_eq!(got.key.as_deref(), Some("k"));

        // An unrelated host is path style too.
        let host = [("host", "localhost:9000")];
        let got = run(Method::GET, "/b/k", &host, suffix);
        assert_eq!(got.bucket.as_deref(), Some("b"));

        // Absolute-form URI, no Host header.
        let got = run(
            Method::GET,
            "http://b.s3.us-west-004.backblazeb2.com/k",
            &[],
            suffix,
        );
        assert_eq!(got.bucket.as_deref(), Some("b"));
        assert_eq!(got.key.as_deref(), Some("k"));

        // ListBuckets on the endpoint.
        let host = [("host", "s3.us-west-004.backblazeb2.com")];
        let got = run(Method::GET, "/", &host, suffix);
        assert_eq!(got.operation, S3Operation::Other);
        assert_eq!(got.bucket, None);
    }

    proptest! {
        #[test]
        fn classify_never_panics(
            target in "[ -~]{0,80}",
            host in "[ -~]{0,40}",
            suffix in proptest::option::of("[a-z0-9.:\\]\\[-]{0,20}"),
            method in prop::sample::select(vec!["GET", "PUT", "POST", "DELETE", "HEAD", "PATCH"]),
            copy in any::<bool>(),
        ) {
            if let Ok(uri) = target.parse::<Uri>() {
                let mut headers = HeaderMap::new();
                if let Ok(value) = host.parse() {
                    headers.insert(http::header::HOST, value);
                }
                if copy {
                    headers.insert("x-amz-copy-source", "/a/b".parse().unwrap());
                }
                let method: Method = method.parse().unwrap();
                let _ = classify(&method, &uri, &headers, suffix.as_deref());
            }
        }

        #[test]
        fn classify_never_panics_on_bytes(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(uri) = Uri::try_from(raw.as_slice()) {
                let _ = classify(&Method::GET, &uri, &HeaderMap::new(), Some("s3.example.com"));
            }
        }
    }

    const SMALL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Deleted><Key>a &amp; b&lt;c&gt;&quot;&apos;&#233;&#x1F600;</Key></Deleted><Error><Key>locked</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error><!-- a comment with <Deleted><Key>no</Key></Deleted> inside --><Deleted><Key><![CDATA[x&y]]></Key><VersionId>v1</VersionId><DeleteMarker>true</DeleteMarker><DeleteMarkerVersionId>dm1</DeleteMarkerVersionId></Deleted>
<Deleted>
  <Key>ü/日本</Key>
  <DeleteMarker>false</DeleteMarker>
</Deleted></DeleteResult>"#;

    fn small_expected() -> Vec<DeletedKey> {
        vec![
            DeletedKey {
                key: "a & b<c>\"'é😀".into(),
                ..Default::default()
            },
            DeletedKey {
                key: "x&y".into(),
                version_id: Some("v1".into()),
                delete_marker: true,
                delete_marker_version_id: Some("dm1".into()),
            },
            DeletedKey {
                key: "ü/日本".into(),
                ..Default::default()
            },
        ]
    }

    #[test]
    fn parses_deleted_and_skips_errors() {
        assert_eq!(
            parse_delete_objects_result(SMALL.as_bytes()),
            small_expected()
        );
    }

    #[test]
    fn every_split_point_gives_the_same_keys() {
        let bytes = SMALL.as_bytes();
        for split in 0..=bytes.len() {
            let mut scanner = DeleteResultScanner::new();
            let mut keys = scanner.feed(&bytes[..split]);
            keys.extend(scanner.feed(&bytes[split..]));
            keys.extend(scanner.finish());
            assert_eq!(keys, small_expected(), "split at {split}");
        }
        // One byte at a time.
        let mut scanner = DeleteResultScanner::new();
        let mut keys = Vec::new();
        for byte in bytes {
            keys.extend(scanner.feed(std::slice::from_ref(byte)));
        }
        assert_eq!(keys, small_expected());
    }

    #[test]
    fn keys_come_out_as_each_deleted_closes() {
        let mut doc = String::from("<DeleteResult>");
        for i in 0..100 {
            doc.push_str(&format!(
                "<Deleted><Key>dir/file {i} &amp; co</Key></Deleted>"
            ));
        }
        doc.push_str("</DeleteResult>");
        assert_eq!(parse_delete_objects_result(doc.as_bytes()).len(), 100);

        let mut scanner = DeleteResultScanner::new();
        let mut seen = 0;
        for (n, piece) in doc.split_inclusive("</Deleted>").enumerate() {
            let keys = scanner.feed(piece.as_bytes());
            if n < 100 {
                assert_eq!(keys.len(), 1);
                assert_eq!(keys[0].key, format!("dir/file {n} & co"));
                seen += 1;
            } else {
                assert!(keys.is_empty());
            }
        }
        assert_eq!(seen, 100);
    }

    #[test]
    fn broken_entries_are_dropped() {
        let doc = b"<DeleteResult><Deleted><Key>bad &bogus; entity</Key></Deleted>\
            <Deleted><Key/></Deleted><Deleted><VersionId>v</VersionId></Deleted>\
            <Deleted><Key>ok</Key></Deleted><Deleted><Key>truncated";
        let keys = parse_delete_objects_result(doc);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].key, "ok");

        let long = format!(
            "<DeleteResult><Deleted><Key>{}</Key></Deleted><Deleted><Key>next</Key></Deleted></DeleteResult>",
            "x".repeat(MAX_TEXT + 10)
        );
        let keys = parse_delete_objects_result(long.as_bytes());
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].key, "next");
    }

    #[test]
    fn entity_decoding() {
        assert_eq!(
            decode_entities(b"a&#65;&#x42;&#X43;").as_deref(),
            Some("aABC")
        );
        assert_eq!(decode_entities(b"&amp;amp;").as_deref(), Some("&amp;"));
        assert_eq!(decode_entities(b"&#xD800;"), None);
        assert_eq!(decode_entities(b"a & b"), None);
        assert_eq!(decode_entities(b"&unknown;"), None);
    }

    proptest! {
        #[test]
        fn scanner_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..256), split in 0usize..256) {
            let split = split.min(raw.len());
            let mut scanner = DeleteResultScanner::new();
            let _ = scanner.feed(&raw[..split]);
            let _ = scanner.feed(&raw[split..]);
        }
    }
}
