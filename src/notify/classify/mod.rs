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
mod tests;
