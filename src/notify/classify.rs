//! Which S3 operation a request is.
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

use http::{HeaderMap, Method, Uri};

use super::S3Operation;
use crate::addressing::ClientAddressing;
use crate::sigv4::canonical::percent_decode;

/// What [`classify`] found. Left in a request's extensions, it is what
/// [`NotifyLayer`](super::NotifyLayer) uses instead of classifying the
/// request again (see the [module docs](super)).
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

/// The value of query parameter `name`, percent-decoded (`uploadId`,
/// `partNumber`); `None` when the query lacks it.
pub(crate) fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| percent_decode(key, true) == name.as_bytes())
        .map(|(_, value)| String::from_utf8_lossy(&percent_decode(value, true)).into_owned())
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
    let mut addressing = ClientAddressing::default();
    if let Some(suffix) = virtual_host_suffix {
        addressing.set_virtual_host_suffix(suffix);
    }
    classify_addressed(method, uri, headers, &addressing)
}

/// [`classify`] with the layer's own view of how clients address buckets
/// (virtual-host suffix, path prefix).
pub(crate) fn classify_addressed(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    addressing: &ClientAddressing,
) -> Classified {
    let host = headers
        .get(http::header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let target = addressing.target(host, uri.path());
    let key_path = target.key_path.strip_prefix('/').unwrap_or(target.key_path);
    let bucket = target
        .bucket
        .filter(|b| !b.is_empty())
        .map(|b| decode_once(&b));
    let key = (!key_path.is_empty()).then(|| decode_once(key_path));
    let query = Query::parse(uri.query());
    let operation = match (&bucket, &key) {
        (None, None) if *method == Method::GET => S3Operation::ListBuckets,
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

/// Object sub-resources and the operation each method performs on them:
/// `(parameter, GET, PUT, DELETE, POST)`.
type SubResourceOps = (
    &'static str,
    Option<S3Operation>,
    Option<S3Operation>,
    Option<S3Operation>,
    Option<S3Operation>,
);

const OBJECT_OPERATIONS: &[SubResourceOps] = {
    use S3Operation::*;
    &[
        (
            "tagging",
            Some(GetObjectTagging),
            Some(PutObjectTagging),
            Some(DeleteObjectTagging),
            None,
        ),
        ("acl", Some(GetObjectAcl), Some(PutObjectAcl), None, None),
        (
            "retention",
            Some(GetObjectRetention),
            Some(PutObjectRetention),
            None,
            None,
        ),
        (
            "legal-hold",
            Some(GetObjectLegalHold),
            Some(PutObjectLegalHold),
            None,
            None,
        ),
        ("restore", None, None, None, Some(RestoreObject)),
        ("attributes", Some(GetObjectAttributes), None, None, None),
        ("select", None, None, None, Some(SelectObjectContent)),
        ("torrent", Some(GetObjectTorrent), None, None, None),
    ]
};

/// Bucket sub-resources and their operations, as for objects.
const BUCKET_OPERATIONS: &[SubResourceOps] = {
    use S3Operation::*;
    &[
        (
            "versioning",
            Some(GetBucketVersioning),
            Some(PutBucketVersioning),
            None,
            None,
        ),
        (
            "policy",
            Some(GetBucketPolicy),
            Some(PutBucketPolicy),
            Some(DeleteBucketPolicy),
            None,
        ),
        (
            "policyStatus",
            Some(GetBucketPolicyStatus),
            None,
            None,
            None,
        ),
        (
            "cors",
            Some(GetBucketCors),
            Some(PutBucketCors),
            Some(DeleteBucketCors),
            None,
        ),
        (
            "lifecycle",
            Some(GetBucketLifecycleConfiguration),
            Some(PutBucketLifecycleConfiguration),
            Some(DeleteBucketLifecycle),
            None,
        ),
        (
            "tagging",
            Some(GetBucketTagging),
            Some(PutBucketTagging),
            Some(DeleteBucketTagging),
            None,
        ),
        (
            "encryption",
            Some(GetBucketEncryption),
            Some(PutBucketEncryption),
            Some(DeleteBucketEncryption),
            None,
        ),
        (
            "notification",
            Some(GetBucketNotificationConfiguration),
            Some(PutBucketNotificationConfiguration),
            None,
            None,
        ),
        ("acl", Some(GetBucketAcl), Some(PutBucketAcl), None, None),
        (
            "website",
            Some(GetBucketWebsite),
            Some(PutBucketWebsite),
            Some(DeleteBucketWebsite),
            None,
        ),
        (
            "logging",
            Some(GetBucketLogging),
            Some(PutBucketLogging),
            None,
            None,
        ),
        (
            "replication",
            Some(GetBucketReplication),
            Some(PutBucketReplication),
            Some(DeleteBucketReplication),
            None,
        ),
        (
            "object-lock",
            Some(GetObjectLockConfiguration),
            Some(PutObjectLockConfiguration),
            None,
            None,
        ),
        (
            "publicAccessBlock",
            Some(GetPublicAccessBlock),
            Some(PutPublicAccessBlock),
            Some(DeletePublicAccessBlock),
            None,
        ),
        (
            "ownershipControls",
            Some(GetBucketOwnershipControls),
            Some(PutBucketOwnershipControls),
            Some(DeleteBucketOwnershipControls),
            None,
        ),
        (
            "accelerate",
            Some(GetBucketAccelerateConfiguration),
            Some(PutBucketAccelerateConfiguration),
            None,
            None,
        ),
        (
            "requestPayment",
            Some(GetBucketRequestPayment),
            Some(PutBucketRequestPayment),
            None,
            None,
        ),
        ("location", Some(GetBucketLocation), None, None, None),
        ("uploads", Some(ListMultipartUploads), None, None, None),
        ("versions", Some(ListObjectVersions), None, None, None),
        ("delete", None, None, None, Some(DeleteObjects)),
    ]
};

/// The operation of the first sub-resource in `table` the query names, for
/// `method`; `Other` for a sub-resource that method does not apply to, or
/// `None` when the query names no sub-resource of the table.
fn sub_resource_operation(
    table: &[SubResourceOps],
    method: &Method,
    query: &Query,
) -> Option<S3Operation> {
    let (_, get, put, delete, post) = table.iter().find(|entry| query.has(entry.0))?;
    let operation = match *method {
        Method::GET => *get,
        Method::PUT => *put,
        Method::DELETE => *delete,
        Method::POST => *post,
        _ => None,
    };
    Some(operation.unwrap_or(S3Operation::Other))
}

fn object_operation(method: &Method, query: &Query, headers: &HeaderMap) -> S3Operation {
    let copy = headers.contains_key("x-amz-copy-source");
    if let Some(operation) = sub_resource_operation(OBJECT_OPERATIONS, method, query) {
        return operation;
    }
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
        Method::GET if sub_resource => S3Operation::Other,
        Method::GET if query.has("uploadId") => S3Operation::ListParts,
        Method::GET => S3Operation::GetObject,
        Method::HEAD => S3Operation::HeadObject,
        _ => S3Operation::Other,
    }
}

fn bucket_operation(method: &Method, query: &Query, headers: &HeaderMap) -> S3Operation {
    if let Some(operation) = sub_resource_operation(BUCKET_OPERATIONS, method, query) {
        return operation;
    }
    match *method {
        Method::GET if query.has_any(BUCKET_SUBRESOURCES) => S3Operation::Other,
        Method::GET if query.has("list-type") => S3Operation::ListObjectsV2,
        Method::GET => S3Operation::ListObjects,
        Method::HEAD if !query.has_non_neutral() => S3Operation::HeadBucket,
        Method::PUT if query.has_non_neutral() => S3Operation::Other,
        Method::PUT => S3Operation::CreateBucket,
        Method::DELETE if query.has_non_neutral() => S3Operation::Other,
        Method::DELETE => S3Operation::DeleteBucket,
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
        let cases: &[Case<'_>] = &[
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
            (Method::GET, "/b/k?uploadId=u1", &[], ListParts),
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
            (Method::GET, "/", &[], ListBuckets),
            (Method::HEAD, "/b", &[], HeadBucket),
            (Method::GET, "/b?acl", &[], GetBucketAcl),
            (Method::GET, "/b?tagging", &[], GetBucketTagging),
            (Method::PUT, "/b?versioning", &[], PutBucketVersioning),
            (Method::GET, "/b?versioning=", &[], GetBucketVersioning),
            (Method::GET, "/b?uploads", &[], ListMultipartUploads),
            (Method::GET, "/b?versions&prefix=a", &[], ListObjectVersions),
            (Method::GET, "/b?location", &[], GetBucketLocation),
            (Method::DELETE, "/b?policy", &[], DeleteBucketPolicy),
            (
                Method::PUT,
                "/b?lifecycle",
                &[],
                PutBucketLifecycleConfiguration,
            ),
            (Method::GET, "/b/k?tagging", &[], GetObjectTagging),
            (Method::PUT, "/b/k?tagging", &[], PutObjectTagging),
            (Method::DELETE, "/b/k?tagging", &[], DeleteObjectTagging),
            (Method::PUT, "/b/k?acl", &[], PutObjectAcl),
            (Method::GET, "/b/k?acl=", &[], GetObjectAcl),
            (Method::PUT, "/b/k?retention", &[], PutObjectRetention),
            (Method::PUT, "/b/k?legal-hold", &[], PutObjectLegalHold),
            (Method::POST, "/b/k?restore", &[], RestoreObject),
            (Method::GET, "/b/k?attributes", &[], GetObjectAttributes),
            (
                Method::GET,
                "/?x-id=ListBuckets&max-buckets=10",
                &[],
                ListBuckets,
            ),
            (Method::PUT, "/", &[], Other),
            (Method::HEAD, "/b?x-id=HeadBucket", &[], HeadBucket),
            (Method::HEAD, "/b?acl", &[], Other),
            (Method::GET, "/b/k?uploadId=u1&max-parts=5", &[], ListParts),
            (Method::GET, "/b/k?legal-hold", &[], GetObjectLegalHold),
            (Method::GET, "/b/k?retention", &[], GetObjectRetention),
            (Method::GET, "/b/k?torrent", &[], GetObjectTorrent),
            (
                Method::POST,
                "/b/k?select&select-type=2",
                &[],
                SelectObjectContent,
            ),
            (Method::DELETE, "/b/k?acl", &[], Other),
            (Method::PUT, "/b/k?attributes", &[], Other),
            (Method::PUT, "/b/k?renameObject", &[], Other),
            (Method::PUT, "/b?acl", &[], PutBucketAcl),
            (Method::PUT, "/b?tagging", &[], PutBucketTagging),
            (Method::DELETE, "/b?tagging", &[], DeleteBucketTagging),
            (Method::GET, "/b?policy", &[], GetBucketPolicy),
            (Method::PUT, "/b?policy", &[], PutBucketPolicy),
            (Method::GET, "/b?policyStatus", &[], GetBucketPolicyStatus),
            (Method::GET, "/b?cors", &[], GetBucketCors),
            (Method::PUT, "/b?cors", &[], PutBucketCors),
            (Method::DELETE, "/b?cors", &[], DeleteBucketCors),
            (
                Method::GET,
                "/b?lifecycle",
                &[],
                GetBucketLifecycleConfiguration,
            ),
            (Method::DELETE, "/b?lifecycle", &[], DeleteBucketLifecycle),
            (Method::GET, "/b?encryption", &[], GetBucketEncryption),
            (Method::PUT, "/b?encryption", &[], PutBucketEncryption),
            (Method::DELETE, "/b?encryption", &[], DeleteBucketEncryption),
            (
                Method::GET,
                "/b?notification",
                &[],
                GetBucketNotificationConfiguration,
            ),
            (
                Method::PUT,
                "/b?notification",
                &[],
                PutBucketNotificationConfiguration,
            ),
            (Method::DELETE, "/b?notification", &[], Other),
            (Method::GET, "/b?website", &[], GetBucketWebsite),
            (Method::PUT, "/b?website", &[], PutBucketWebsite),
            (Method::DELETE, "/b?website", &[], DeleteBucketWebsite),
            (Method::GET, "/b?logging", &[], GetBucketLogging),
            (Method::PUT, "/b?logging", &[], PutBucketLogging),
            (Method::GET, "/b?replication", &[], GetBucketReplication),
            (Method::PUT, "/b?replication", &[], PutBucketReplication),
            (
                Method::DELETE,
                "/b?replication",
                &[],
                DeleteBucketReplication,
            ),
            (
                Method::GET,
                "/b?object-lock",
                &[],
                GetObjectLockConfiguration,
            ),
            (
                Method::PUT,
                "/b?object-lock",
                &[],
                PutObjectLockConfiguration,
            ),
            (
                Method::GET,
                "/b?publicAccessBlock",
                &[],
                GetPublicAccessBlock,
            ),
            (
                Method::PUT,
                "/b?publicAccessBlock",
                &[],
                PutPublicAccessBlock,
            ),
            (
                Method::DELETE,
                "/b?publicAccessBlock",
                &[],
                DeletePublicAccessBlock,
            ),
            (
                Method::GET,
                "/b?ownershipControls",
                &[],
                GetBucketOwnershipControls,
            ),
            (
                Method::PUT,
                "/b?ownershipControls",
                &[],
                PutBucketOwnershipControls,
            ),
            (
                Method::DELETE,
                "/b?ownershipControls",
                &[],
                DeleteBucketOwnershipControls,
            ),
            (
                Method::GET,
                "/b?accelerate",
                &[],
                GetBucketAccelerateConfiguration,
            ),
            (
                Method::PUT,
                "/b?accelerate",
                &[],
                PutBucketAccelerateConfiguration,
            ),
            (
                Method::GET,
                "/b?requestPayment",
                &[],
                GetBucketRequestPayment,
            ),
            (
                Method::PUT,
                "/b?requestPayment",
                &[],
                PutBucketRequestPayment,
            ),
            (Method::PUT, "/b?location", &[], Other),
            (Method::GET, "/b?delete", &[], Other),
            (Method::GET, "/b?analytics&id=a", &[], Other),
            (Method::GET, "/b?session", &[], Other),
            (Method::PATCH, "/b/k", &[], Other),
            (Method::OPTIONS, "/b/k", &[], Other),
        ];
        for (method, target, headers, expected) in cases {
            let got = run(method.clone(), target, headers, None);
            assert_eq!(got.operation, *expected, "{method} {target}");
            // The metric label and log name is the AWS API name.
            assert_eq!(got.operation.as_str(), format!("{expected:?}"));
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
        assert_eq!(got.operation, S3Operation::ListBuckets);
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
}
