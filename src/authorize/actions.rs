//! Which IAM actions on which resources a classified S3 request needs, as
//! "Actions defined by Amazon S3" names them.

use http::HeaderMap;

use crate::notify::classify::query_value;
use crate::notify::{Classified, S3Operation};
use crate::sigv4::canonical::percent_decode;

/// One action the request needs on one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Check {
    pub(crate) action: &'static str,
    pub(crate) resource: String,
    /// A listing: `s3:prefix` and `s3:delimiter` come from its query.
    pub(crate) listing: bool,
}

/// What authorizing a request takes.
#[derive(Debug)]
pub(crate) enum Needs {
    /// These checks, all of which must allow.
    Checks(Vec<Check>),
    /// `s3:DeleteObject` (or `s3:DeleteObjectVersion`) on every key the
    /// DeleteObjects body names, in this bucket.
    DeleteObjects { bucket: String },
    /// An operation s3tap cannot map to an action (`Other`, a form upload
    /// whose key is in its body): denied whenever a policy applies.
    Unknown,
}

pub(crate) fn bucket_arn(bucket: &str) -> String {
    format!("arn:aws:s3:::{bucket}")
}

pub(crate) fn object_arn(bucket: &str, key: &str) -> String {
    format!("arn:aws:s3:::{bucket}/{key}")
}

pub(crate) fn delete_action(version_id: Option<&str>) -> &'static str {
    if version_id.is_some() {
        "s3:DeleteObjectVersion"
    } else {
        "s3:DeleteObject"
    }
}

/// The IAM action of a bucket-level operation.
fn bucket_action(operation: S3Operation) -> Option<&'static str> {
    use S3Operation::*;
    Some(match operation {
        ListObjects | ListObjectsV2 | HeadBucket => "s3:ListBucket",
        ListObjectVersions => "s3:ListBucketVersions",
        ListMultipartUploads => "s3:ListBucketMultipartUploads",
        CreateBucket => "s3:CreateBucket",
        DeleteBucket => "s3:DeleteBucket",
        GetBucketLocation => "s3:GetBucketLocation",
        GetBucketVersioning => "s3:GetBucketVersioning",
        PutBucketVersioning => "s3:PutBucketVersioning",
        GetBucketPolicy => "s3:GetBucketPolicy",
        PutBucketPolicy => "s3:PutBucketPolicy",
        DeleteBucketPolicy => "s3:DeleteBucketPolicy",
        GetBucketPolicyStatus => "s3:GetBucketPolicyStatus",
        GetBucketCors => "s3:GetBucketCORS",
        PutBucketCors | DeleteBucketCors => "s3:PutBucketCORS",
        GetBucketLifecycleConfiguration => "s3:GetLifecycleConfiguration",
        PutBucketLifecycleConfiguration | DeleteBucketLifecycle => "s3:PutLifecycleConfiguration",
        GetBucketTagging => "s3:GetBucketTagging",
        PutBucketTagging | DeleteBucketTagging => "s3:PutBucketTagging",
        GetBucketEncryption => "s3:GetEncryptionConfiguration",
        PutBucketEncryption | DeleteBucketEncryption => "s3:PutEncryptionConfiguration",
        GetBucketNotificationConfiguration => "s3:GetBucketNotification",
        PutBucketNotificationConfiguration => "s3:PutBucketNotification",
        GetBucketAcl => "s3:GetBucketAcl",
        PutBucketAcl => "s3:PutBucketAcl",
        GetBucketWebsite => "s3:GetBucketWebsite",
        PutBucketWebsite => "s3:PutBucketWebsite",
        DeleteBucketWebsite => "s3:DeleteBucketWebsite",
        GetBucketLogging => "s3:GetBucketLogging",
        PutBucketLogging => "s3:PutBucketLogging",
        GetBucketReplication => "s3:GetReplicationConfiguration",
        PutBucketReplication | DeleteBucketReplication => "s3:PutReplicationConfiguration",
        GetObjectLockConfiguration => "s3:GetBucketObjectLockConfiguration",
        PutObjectLockConfiguration => "s3:PutBucketObjectLockConfiguration",
        GetPublicAccessBlock => "s3:GetBucketPublicAccessBlock",
        PutPublicAccessBlock | DeletePublicAccessBlock => "s3:PutBucketPublicAccessBlock",
        GetBucketOwnershipControls => "s3:GetBucketOwnershipControls",
        PutBucketOwnershipControls | DeleteBucketOwnershipControls => {
            "s3:PutBucketOwnershipControls"
        }
        GetBucketAccelerateConfiguration => "s3:GetAccelerateConfiguration",
        PutBucketAccelerateConfiguration => "s3:PutAccelerateConfiguration",
        GetBucketRequestPayment => "s3:GetBucketRequestPayment",
        PutBucketRequestPayment => "s3:PutBucketRequestPayment",
        _ => return None,
    })
}

/// The IAM action of an object-level operation; `versioned` when the
/// request names a `versionId`.
fn object_action(operation: S3Operation, versioned: bool) -> Option<&'static str> {
    use S3Operation::*;
    Some(match operation {
        GetObject | HeadObject | SelectObjectContent if versioned => "s3:GetObjectVersion",
        GetObject | HeadObject | SelectObjectContent => "s3:GetObject",
        PutObject | CreateMultipartUpload | UploadPart | CompleteMultipartUpload => "s3:PutObject",
        AbortMultipartUpload => "s3:AbortMultipartUpload",
        ListParts => "s3:ListMultipartUploadParts",
        DeleteObject if versioned => "s3:DeleteObjectVersion",
        DeleteObject => "s3:DeleteObject",
        GetObjectTagging if versioned => "s3:GetObjectVersionTagging",
        GetObjectTagging => "s3:GetObjectTagging",
        PutObjectTagging if versioned => "s3:PutObjectVersionTagging",
        PutObjectTagging => "s3:PutObjectTagging",
        DeleteObjectTagging if versioned => "s3:DeleteObjectVersionTagging",
        DeleteObjectTagging => "s3:DeleteObjectTagging",
        GetObjectAcl if versioned => "s3:GetObjectVersionAcl",
        GetObjectAcl => "s3:GetObjectAcl",
        PutObjectAcl if versioned => "s3:PutObjectVersionAcl",
        PutObjectAcl => "s3:PutObjectAcl",
        GetObjectRetention => "s3:GetObjectRetention",
        PutObjectRetention => "s3:PutObjectRetention",
        GetObjectLegalHold => "s3:GetObjectLegalHold",
        PutObjectLegalHold => "s3:PutObjectLegalHold",
        RestoreObject => "s3:RestoreObject",
        GetObjectAttributes if versioned => "s3:GetObjectVersionAttributes",
        GetObjectAttributes => "s3:GetObjectAttributes",
        GetObjectTorrent => "s3:GetObjectTorrent",
        _ => return None,
    })
}

/// `x-amz-copy-source`: `[/]bucket/key[?versionId=..]`, URL-encoded.
fn copy_source(headers: &HeaderMap) -> Option<(String, String, bool)> {
    let raw = headers.get("x-amz-copy-source")?.to_str().ok()?;
    let (path, query) = raw.split_once('?').unwrap_or((raw, ""));
    let path = String::from_utf8(percent_decode(path, false)).ok()?;
    let path = path.strip_prefix('/').unwrap_or(&path);
    let (bucket, key) = path.split_once('/')?;
    if bucket.is_empty() || key.is_empty() {
        return None;
    }
    let versioned = query_value(Some(query), "versionId").is_some();
    Some((bucket.to_owned(), key.to_owned(), versioned))
}

/// What `classified` needs, reading the query and headers for versions
/// and copy sources.
pub(crate) fn needs(classified: &Classified, query: Option<&str>, headers: &HeaderMap) -> Needs {
    let versioned = query_value(query, "versionId").is_some();
    let operation = classified.operation;
    match (&classified.bucket, &classified.key) {
        (None, None) if operation == S3Operation::ListBuckets => Needs::Checks(vec![Check {
            action: "s3:ListAllMyBuckets",
            resource: "*".to_owned(),
            listing: false,
        }]),
        (Some(bucket), None) if operation == S3Operation::DeleteObjects => Needs::DeleteObjects {
            bucket: bucket.clone(),
        },
        (Some(bucket), None) => match bucket_action(operation) {
            Some(action) => Needs::Checks(vec![Check {
                action,
                resource: bucket_arn(bucket),
                // The actions s3:prefix and s3:delimiter apply to.
                listing: matches!(
                    operation,
                    S3Operation::ListObjects
                        | S3Operation::ListObjectsV2
                        | S3Operation::ListObjectVersions
                ),
            }]),
            None => Needs::Unknown,
        },
        (Some(bucket), Some(key)) => {
            let target = object_arn(bucket, key);
            if matches!(
                operation,
                S3Operation::CopyObject | S3Operation::UploadPartCopy
            ) {
                // Reading the source, writing the target.
                return match copy_source(headers) {
                    Some((source_bucket, source_key, source_versioned)) => Needs::Checks(vec![
                        Check {
                            action: if source_versioned {
                                "s3:GetObjectVersion"
                            } else {
                                "s3:GetObject"
                            },
                            resource: object_arn(&source_bucket, &source_key),
                            listing: false,
                        },
                        Check {
                            action: "s3:PutObject",
                            resource: target,
                            listing: false,
                        },
                    ]),
                    None => Needs::Unknown,
                };
            }
            match object_action(operation, versioned) {
                Some(action) => Needs::Checks(vec![Check {
                    action,
                    resource: target,
                    listing: false,
                }]),
                None => Needs::Unknown,
            }
        }
        _ => Needs::Unknown,
    }
}
