//! AuthorizeLayer's policy table: each request is signed by the independent
//! `aws-sigv4` signer, verified by `SigV4VerifyLayer`, then decided by
//! `AuthorizeLayer`. An allowed request reaches the inner service (with its
//! body intact); a denied one gets S3's `AccessDenied` XML with a request id
//! and never reaches it.
//!
//! Next to each case: the AWS document (by title) its expected answer
//! follows from, or "s3tap" for a decision the README documents where AWS
//! has no equivalent. Abbreviations:
//! - EVAL: IAM User Guide, "Policy evaluation logic" (an explicit Deny
//!   overrides any Allow; without an applying Allow the request is denied
//!   by default; statement order does not matter)
//! - ACTION: "IAM JSON policy elements: Action" (wildcards `*` and `?`,
//!   action names are case-insensitive)
//! - NOTACTION: "IAM JSON policy elements: NotAction"
//! - RESOURCE: "IAM JSON policy elements: Resource" (wildcards in ARNs,
//!   `*` spans `/`, ARNs are case-sensitive)
//! - COND: "IAM JSON policy elements: Condition operators" (string, IP
//!   address, Boolean and date operators; a key absent from the request
//!   makes a condition false, except for negated operators)
//! - MULTI: "Creating a condition with multiple context keys or values"
//!   (keys ANDed, values of one key ORed)
//! - GLOBAL: "AWS global condition context keys" (aws:SourceIp,
//!   aws:SecureTransport, aws:CurrentTime)
//! - S3KEYS: "Actions, resources, and condition keys for Amazon S3"
//!   (action names, bucket vs object resource types, s3:prefix,
//!   s3:delimiter, ListAllMyBuckets on `*`)
//! - S3PERMS: "Required permissions for Amazon S3 API operations"
//!   (HeadObject needs s3:GetObject, HeadBucket s3:ListBucket, multipart
//!   steps s3:PutObject, CopyObject read on the source and write on the
//!   target, DeleteObjects s3:DeleteObject on each key, versionId requests
//!   the ...Version actions)
//! - S3EX: "Bucket policy examples using condition keys" / "Examples of
//!   Amazon S3 bucket policies" (listing restricted with s3:prefix and
//!   s3:delimiter)

#![cfg(feature = "authorize")]

mod signing;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::SignableBody;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use s3tap::authorize::{Access, AuthorizeLayer, Denied, Policy, StaticPolicies};
use s3tap::credentials::StaticCredentials;
use s3tap::verified::ClientAddr;
use s3tap::verify::SigV4VerifyLayer;
use signing::*;
use tower::{Layer, ServiceExt};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Allow,
    Deny,
}
use Expect::*;

/// A policy attached to the test client.
#[derive(Clone)]
enum Attached {
    Json(&'static str),
    Shorthand(Access, &'static [&'static str]),
    None,
}

struct Case {
    name: &'static str,
    source: &'static str,
    policy: Attached,
    method: &'static str,
    target: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    body: &'static str,
    from: Option<&'static str>,
    secure: bool,
    /// Signed as a presigned URL instead of an `Authorization` header.
    presigned: bool,
    /// Virtual-hosted: the bucket `bkt` in the Host header, the layer told
    /// the suffix `s3.example.com`.
    vhost: bool,
    now: SystemTime,
    expect: Expect,
}

fn case(
    name: &'static str,
    source: &'static str,
    policy: &'static str,
    method: &'static str,
    target: &'static str,
    expect: Expect,
) -> Case {
    Case {
        name,
        source,
        policy: Attached::Json(policy),
        method,
        target,
        headers: Vec::new(),
        body: "",
        from: None,
        secure: false,
        presigned: false,
        vhost: false,
        now: fixed_time(),
        expect,
    }
}

impl Case {
    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }
    fn body(mut self, body: &'static str) -> Self {
        self.body = body;
        self
    }
    fn from(mut self, ip: &'static str) -> Self {
        self.from = Some(ip);
        self
    }
    fn presigned(mut self) -> Self {
        self.presigned = true;
        self
    }
    fn vhost(mut self) -> Self {
        self.vhost = true;
        self
    }
    fn secure(mut self) -> Self {
        self.secure = true;
        self
    }
    fn at(mut self, now: SystemTime) -> Self {
        self.now = now;
        self
    }
    fn attached(mut self, policy: Attached) -> Self {
        self.policy = policy;
        self
    }
}

const GET_OBJECTS: &str = r#"{"Version":"2012-10-17","Statement":[
  {"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::bkt/*"}]}"#;
const ALL_BUT_DELETE: &str = r#"{"Version":"2012-10-17","Statement":[
  {"Effect":"Allow","Action":"s3:*","Resource":"*"},
  {"Effect":"Deny","Action":"s3:DeleteObject","Resource":"arn:aws:s3:::bkt/*"}]}"#;
const DENY_FIRST: &str = r#"{"Statement":[
  {"Effect":"Deny","Action":"s3:DeleteObject","Resource":"arn:aws:s3:::bkt/*"},
  {"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
const GET_STAR: &str =
    r#"{"Statement":{"Effect":"Allow","Action":"s3:Get*","Resource":"arn:aws:s3:::bkt/*"}}"#;
const MIXED_CASE: &str =
    r#"{"Statement":{"Effect":"Allow","Action":"S3:getobject","Resource":"arn:aws:s3:::bkt/*"}}"#;
const QUESTION: &str =
    r#"{"Statement":{"Effect":"Allow","Action":"s3:?etObject","Resource":"arn:aws:s3:::bkt/*"}}"#;
const EVERYTHING: &str = r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#;
const NOT_DELETE: &str = r#"{"Statement":{"Effect":"Allow","NotAction":["s3:DeleteObject"],"Resource":"arn:aws:s3:::bkt/*"}}"#;
const ONLY_READS: &str = r#"{"Statement":[
  {"Effect":"Allow","Action":"s3:*","Resource":"*"},
  {"Effect":"Deny","NotAction":"s3:GetObject","Resource":"*"}]}"#;
const PHOTOS: &str = r#"{"Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::bkt/photos/*"}}"#;
const PHOTOS_CAPITAL: &str = r#"{"Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::bkt/Photos/*"}}"#;
const REPORTS: &str = r#"{"Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::bkt/*/report.csv"}}"#;
const LIST_BUCKET: &str =
    r#"{"Statement":{"Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::bkt"}}"#;
const LIST_ON_OBJECTS: &str =
    r#"{"Statement":{"Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::bkt/*"}}"#;
const LIST_PHOTOS: &str = r#"{"Statement":{"Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::bkt",
  "Condition":{"StringLike":{"s3:prefix":"photos/*"}}}}"#;
const LIST_TOP: &str = r#"{"Statement":{"Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::bkt",
  "Condition":{"StringEquals":{"s3:prefix":["","photos/"],"s3:delimiter":"/"}}}}"#;
const FROM_NET: &str = r#"{"Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::bkt/*",
  "Condition":{"IpAddress":{"aws:SourceIp":["203.0.113.0/24","2001:db8::/32"]}}}}"#;
const ONLY_FROM_TEN: &str = r#"{"Statement":[
  {"Effect":"Allow","Action":"*","Resource":"*"},
  {"Effect":"Deny","Action":"*","Resource":"*","Condition":{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}]}"#;
const TLS_ONLY: &str = r#"{"Statement":[
  {"Effect":"Allow","Action":"*","Resource":"*"},
  {"Effect":"Deny","Action":"*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}"#;
const ALLOW_IF_TLS: &str = r#"{"Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"*",
  "Condition":{"Bool":{"aws:SecureTransport":true}}}}"#;
const UNTIL_2030: &str = r#"{"Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"*",
  "Condition":{"DateLessThan":{"aws:CurrentTime":"2030-01-01T00:00:00Z"}}}}"#;
const UNTIL_2020: &str = r#"{"Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"*",
  "Condition":{"DateLessThan":{"aws:CurrentTime":"2020-01-01T00:00:00Z"}}}}"#;
const COPY: &str = r#"{"Statement":[
  {"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::src/*"},
  {"Effect":"Allow","Action":"s3:PutObject","Resource":"arn:aws:s3:::dst/*"}]}"#;
const PUT_ONLY: &str =
    r#"{"Statement":{"Effect":"Allow","Action":"s3:PutObject","Resource":"arn:aws:s3:::bkt/*"}}"#;
const UPLOADS_LIST: &str = r#"{"Statement":{"Effect":"Allow","Action":"s3:ListBucketMultipartUploads","Resource":"arn:aws:s3:::bkt"}}"#;
const DELETE_PHOTOS: &str = r#"{"Statement":{"Effect":"Allow","Action":"s3:DeleteObject","Resource":"arn:aws:s3:::bkt/photos/*"}}"#;
const TAGS: &str = r#"{"Statement":{"Effect":"Allow","Action":"s3:GetObjectTagging","Resource":"arn:aws:s3:::bkt/*"}}"#;
const LIST_ALL_BUCKETS: &str =
    r#"{"Statement":{"Effect":"Allow","Action":"s3:ListAllMyBuckets","Resource":"*"}}"#;
const S3_ARN_STAR: &str =
    r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::*"}}"#;
const NO_STATEMENTS: &str = r#"{"Version":"2012-10-17","Statement":[]}"#;

const DELETE_PHOTOS_BODY: &str = "<Delete><Object><Key>photos/a.jpg</Key></Object><Object><Key>photos/b.jpg</Key></Object></Delete>";
const DELETE_MIXED_BODY: &str = "<Delete><Object><Key>photos/a.jpg</Key></Object><Object><Key>other/b.jpg</Key></Object></Delete>";
const DELETE_VERSION_BODY: &str =
    "<Delete><Object><Key>photos/a.jpg</Key><VersionId>v1</VersionId></Object></Delete>";

fn year(y: u64) -> SystemTime {
    // Close enough to mid-year for date comparisons far from the limits.
    SystemTime::UNIX_EPOCH + Duration::from_secs((y - 1970) * 365 * 86_400 + 180 * 86_400)
}

fn cases() -> Vec<Case> {
    vec![
        // --- default deny and deny-overrides ---
        case(
            "exact action on a wildcard resource",
            "ACTION, RESOURCE",
            GET_OBJECTS,
            "GET",
            "/bkt/a.txt",
            Allow,
        ),
        case(
            "action not named is denied by default",
            "EVAL",
            GET_OBJECTS,
            "PUT",
            "/bkt/a.txt",
            Deny,
        ),
        case(
            "a policy without statements denies",
            "EVAL",
            NO_STATEMENTS,
            "GET",
            "/bkt/a.txt",
            Deny,
        ),
        case(
            "no policy attached: denied by the layer's default",
            "EVAL; s3tap (allow_without_policy off)",
            "",
            "GET",
            "/bkt/a.txt",
            Deny,
        )
        .attached(Attached::None),
        case(
            "explicit deny overrides allow",
            "EVAL",
            ALL_BUT_DELETE,
            "DELETE",
            "/bkt/a.txt",
            Deny,
        ),
        case(
            "allow stands where no deny applies",
            "EVAL",
            ALL_BUT_DELETE,
            "GET",
            "/bkt/a.txt",
            Allow,
        ),
        case(
            "deny wins whatever the statement order",
            "EVAL",
            DENY_FIRST,
            "DELETE",
            "/bkt/a.txt",
            Deny,
        ),
        // --- actions ---
        case(
            "action wildcard s3:Get*",
            "ACTION",
            GET_STAR,
            "GET",
            "/bkt/a.txt",
            Allow,
        ),
        case(
            "HeadObject needs s3:GetObject",
            "S3PERMS, ACTION",
            GET_STAR,
            "HEAD",
            "/bkt/a.txt",
            Allow,
        ),
        case(
            "action wildcard does not cover PutObject",
            "ACTION",
            GET_STAR,
            "PUT",
            "/bkt/a.txt",
            Deny,
        ),
        case(
            "action names are case-insensitive",
            "ACTION",
            MIXED_CASE,
            "GET",
            "/bkt/a.txt",
            Allow,
        ),
        case(
            "? matches one character in an action",
            "ACTION",
            QUESTION,
            "GET",
            "/bkt/a.txt",
            Allow,
        ),
        case(
            "Action * allows everything",
            "ACTION",
            EVERYTHING,
            "DELETE",
            "/bkt/a.txt",
            Allow,
        ),
        case(
            "NotAction allows what it does not name",
            "NOTACTION",
            NOT_DELETE,
            "GET",
            "/bkt/a.txt",
            Allow,
        ),
        case(
            "NotAction does not allow what it names",
            "NOTACTION, EVAL",
            NOT_DELETE,
            "DELETE",
            "/bkt/a.txt",
            Deny,
        ),
        case(
            "Deny with NotAction refuses all other actions",
            "NOTACTION, EVAL",
            ONLY_READS,
            "PUT",
            "/bkt/a.txt",
            Deny,
        ),
        case(
            "Deny with NotAction leaves the named action allowed",
            "NOTACTION, EVAL",
            ONLY_READS,
            "GET",
            "/bkt/a.txt",
            Allow,
        ),
        // --- resources ---
        case(
            "resource prefix wildcard matches inside",
            "RESOURCE",
            PHOTOS,
            "GET",
            "/bkt/photos/a.jpg",
            Allow,
        ),
        case(
            "resource prefix wildcard excludes other keys",
            "RESOURCE",
            PHOTOS,
            "GET",
            "/bkt/other/a.jpg",
            Deny,
        ),
        case(
            "resource names the bucket",
            "RESOURCE",
            PHOTOS,
            "GET",
            "/bkt2/photos/a.jpg",
            Deny,
        ),
        case(
            "resource ARNs are case-sensitive",
            "RESOURCE",
            PHOTOS_CAPITAL,
            "GET",
            "/bkt/photos/a.jpg",
            Deny,
        ),
        case(
            "* in a resource spans slashes",
            "RESOURCE",
            REPORTS,
            "GET",
            "/bkt/2024/q1/report.csv",
            Allow,
        ),
        case(
            "ListObjectsV2 is s3:ListBucket on the bucket ARN",
            "S3KEYS",
            LIST_BUCKET,
            "GET",
            "/bkt?list-type=2",
            Allow,
        ),
        case(
            "s3:ListBucket on object ARNs does not allow listing",
            "S3KEYS, RESOURCE",
            LIST_ON_OBJECTS,
            "GET",
            "/bkt?list-type=2",
            Deny,
        ),
        case(
            "HeadBucket needs s3:ListBucket",
            "S3PERMS",
            LIST_BUCKET,
            "HEAD",
            "/bkt",
            Allow,
        ),
        // --- listing with s3:prefix and s3:delimiter ---
        case(
            "StringLike s3:prefix allows a listing inside",
            "COND, S3EX",
            LIST_PHOTOS,
            "GET",
            "/bkt?list-type=2&prefix=photos%2F",
            Allow,
        ),
        case(
            "StringLike s3:prefix refuses another prefix",
            "COND, S3EX",
            LIST_PHOTOS,
            "GET",
            "/bkt?list-type=2&prefix=other%2F",
            Deny,
        ),
        case(
            "a listing without prefix lacks the key: condition false",
            "COND",
            LIST_PHOTOS,
            "GET",
            "/bkt?list-type=2",
            Deny,
        ),
        case(
            "a prefix short of the pattern is refused",
            "COND",
            LIST_PHOTOS,
            "GET",
            "/bkt?list-type=2&prefix=photos",
            Deny,
        ),
        case(
            "ListObjects (v1) is checked against s3:prefix too",
            "S3KEYS, COND",
            LIST_PHOTOS,
            "GET",
            "/bkt?prefix=photos%2F2024%2F",
            Allow,
        ),
        case(
            "StringEquals on prefix and delimiter",
            "COND, MULTI, S3EX",
            LIST_TOP,
            "GET",
            "/bkt?delimiter=%2F&list-type=2&prefix=photos%2F",
            Allow,
        ),
        case(
            "keys are ANDed: the delimiter is missing",
            "MULTI",
            LIST_TOP,
            "GET",
            "/bkt?list-type=2&prefix=photos%2F",
            Deny,
        ),
        case(
            "values are ORed: the empty prefix",
            "MULTI, S3EX",
            LIST_TOP,
            "GET",
            "/bkt?delimiter=%2F&list-type=2&prefix=",
            Allow,
        ),
        case(
            "StringEquals is exact",
            "COND",
            LIST_TOP,
            "GET",
            "/bkt?delimiter=%2F&list-type=2&prefix=photos%2Fsub%2F",
            Deny,
        ),
        // --- aws:SourceIp ---
        case(
            "IpAddress inside the CIDR block",
            "COND, GLOBAL",
            FROM_NET,
            "GET",
            "/bkt/a.txt",
            Allow,
        )
        .from("203.0.113.7"),
        case(
            "IpAddress outside the block",
            "COND, GLOBAL",
            FROM_NET,
            "GET",
            "/bkt/a.txt",
            Deny,
        )
        .from("198.51.100.1"),
        case(
            "IpAddress with an IPv6 block",
            "COND, GLOBAL",
            FROM_NET,
            "GET",
            "/bkt/a.txt",
            Allow,
        )
        .from("2001:db8::5"),
        case(
            "NotIpAddress deny spares the listed network",
            "COND, EVAL",
            ONLY_FROM_TEN,
            "PUT",
            "/bkt/a.txt",
            Allow,
        )
        .from("10.1.2.3"),
        case(
            "NotIpAddress deny refuses other addresses",
            "COND, EVAL",
            ONLY_FROM_TEN,
            "PUT",
            "/bkt/a.txt",
            Deny,
        )
        .from("192.0.2.1"),
        // --- aws:SecureTransport ---
        case(
            "Bool SecureTransport false: deny over plain HTTP",
            "COND, GLOBAL, EVAL",
            TLS_ONLY,
            "GET",
            "/bkt/a.txt",
            Deny,
        ),
        case(
            "Bool SecureTransport false does not apply over TLS",
            "COND, GLOBAL",
            TLS_ONLY,
            "GET",
            "/bkt/a.txt",
            Allow,
        )
        .secure(),
        case(
            "Allow only over TLS, asked over HTTP",
            "COND, GLOBAL",
            ALLOW_IF_TLS,
            "GET",
            "/bkt/a.txt",
            Deny,
        ),
        // --- aws:CurrentTime ---
        case(
            "DateLessThan before the limit",
            "COND, GLOBAL",
            UNTIL_2030,
            "GET",
            "/bkt/a.txt",
            Allow,
        ),
        case(
            "DateLessThan after the limit",
            "COND, GLOBAL",
            UNTIL_2020,
            "GET",
            "/bkt/a.txt",
            Deny,
        ),
        case(
            "DateLessThan after the limit, by the layer's clock",
            "COND, GLOBAL",
            UNTIL_2030,
            "GET",
            "/bkt/a.txt",
            Deny,
        )
        .at(year(2031)),
        // --- copies ---
        case(
            "CopyObject: read on the source, write on the target",
            "S3PERMS",
            COPY,
            "PUT",
            "/dst/copy.txt",
            Allow,
        )
        .header("x-amz-copy-source", "/src/a.txt"),
        case(
            "CopyObject from an unreadable source",
            "S3PERMS",
            COPY,
            "PUT",
            "/dst/copy.txt",
            Deny,
        )
        .header("x-amz-copy-source", "/secret/a.txt"),
        case(
            "CopyObject into an unwritable target",
            "S3PERMS",
            COPY,
            "PUT",
            "/src/copy.txt",
            Deny,
        )
        .header("x-amz-copy-source", "src/a.txt"),
        case(
            "UploadPartCopy reads its source too",
            "S3PERMS",
            PUT_ONLY,
            "PUT",
            "/bkt/big?partNumber=1&uploadId=u1",
            Deny,
        )
        .header("x-amz-copy-source", "/bkt/other"),
        // --- multipart uploads ---
        case(
            "CreateMultipartUpload is s3:PutObject",
            "S3PERMS",
            PUT_ONLY,
            "POST",
            "/bkt/big?uploads",
            Allow,
        ),
        case(
            "UploadPart is s3:PutObject",
            "S3PERMS",
            PUT_ONLY,
            "PUT",
            "/bkt/big?partNumber=1&uploadId=u1",
            Allow,
        ),
        case(
            "CompleteMultipartUpload is s3:PutObject",
            "S3PERMS",
            PUT_ONLY,
            "POST",
            "/bkt/big?uploadId=u1",
            Allow,
        )
        .body("<CompleteMultipartUpload></CompleteMultipartUpload>"),
        case(
            "AbortMultipartUpload needs its own action",
            "S3KEYS",
            PUT_ONLY,
            "DELETE",
            "/bkt/big?uploadId=u1",
            Deny,
        ),
        case(
            "ListParts needs s3:ListMultipartUploadParts",
            "S3KEYS",
            PUT_ONLY,
            "GET",
            "/bkt/big?uploadId=u1",
            Deny,
        ),
        case(
            "ListMultipartUploads is s3:ListBucketMultipartUploads",
            "S3KEYS",
            UPLOADS_LIST,
            "GET",
            "/bkt?uploads",
            Allow,
        ),
        case(
            "ListMultipartUploads is not s3:ListBucket",
            "S3KEYS",
            LIST_BUCKET,
            "GET",
            "/bkt?uploads",
            Deny,
        ),
        // --- DeleteObjects ---
        case(
            "DeleteObjects with every key allowed",
            "S3PERMS",
            DELETE_PHOTOS,
            "POST",
            "/bkt?delete",
            Allow,
        )
        .body(DELETE_PHOTOS_BODY),
        case(
            "DeleteObjects with one key denied refuses the request",
            "S3PERMS; s3tap (whole request)",
            DELETE_PHOTOS,
            "POST",
            "/bkt?delete",
            Deny,
        )
        .body(DELETE_MIXED_BODY),
        case(
            "DeleteObjects of a version needs s3:DeleteObjectVersion",
            "S3PERMS",
            DELETE_PHOTOS,
            "POST",
            "/bkt?delete",
            Deny,
        )
        .body(DELETE_VERSION_BODY),
        // --- versions, sub-resources, the service ---
        case(
            "GetObject with versionId needs s3:GetObjectVersion",
            "S3PERMS",
            GET_OBJECTS,
            "GET",
            "/bkt/a.txt?versionId=v1",
            Deny,
        ),
        case(
            "GetObjectTagging is not s3:GetObject",
            "S3KEYS",
            GET_OBJECTS,
            "GET",
            "/bkt/a.txt?tagging",
            Deny,
        ),
        case(
            "GetObjectTagging is s3:GetObjectTagging",
            "S3KEYS",
            TAGS,
            "GET",
            "/bkt/a.txt?tagging",
            Allow,
        ),
        case(
            "ListBuckets is s3:ListAllMyBuckets on *",
            "S3KEYS",
            LIST_ALL_BUCKETS,
            "GET",
            "/",
            Allow,
        ),
        case(
            "ListBuckets is not on an S3 ARN",
            "S3KEYS, RESOURCE",
            S3_ARN_STAR,
            "GET",
            "/",
            Deny,
        ),
        case(
            "an operation without an IAM action here is refused",
            "s3tap (unknown operations are denied)",
            EVERYTHING,
            "PUT",
            "/bkt/a.txt?uploadId=u1",
            Deny,
        ),
        // --- shorthands ---
        case(
            "readonly reads inside its prefix",
            "S3KEYS; s3tap shorthand",
            "",
            "GET",
            "/bkt/photos/a.jpg",
            Allow,
        )
        .attached(Attached::Shorthand(Access::ReadOnly, &["bkt/photos/"])),
        case(
            "readonly does not read outside its prefix",
            "RESOURCE; s3tap shorthand",
            "",
            "GET",
            "/bkt/other/a.jpg",
            Deny,
        )
        .attached(Attached::Shorthand(Access::ReadOnly, &["bkt/photos/*"])),
        case(
            "readonly lists inside its prefix",
            "S3EX; s3tap shorthand",
            "",
            "GET",
            "/bkt?list-type=2&prefix=photos%2F",
            Allow,
        )
        .attached(Attached::Shorthand(Access::ReadOnly, &["bkt/photos/*"])),
        case(
            "readonly does not list the whole bucket",
            "COND; s3tap shorthand",
            "",
            "GET",
            "/bkt?list-type=2&prefix=",
            Deny,
        )
        .attached(Attached::Shorthand(Access::ReadOnly, &["bkt/photos/*"])),
        case(
            "readonly does not write",
            "EVAL; s3tap shorthand",
            "",
            "PUT",
            "/bkt/photos/a.jpg",
            Deny,
        )
        .attached(Attached::Shorthand(Access::ReadOnly, &["bkt"])),
        case(
            "writeonly writes",
            "S3KEYS; s3tap shorthand",
            "",
            "PUT",
            "/bkt/a.jpg",
            Allow,
        )
        .attached(Attached::Shorthand(Access::WriteOnly, &["bkt"])),
        case(
            "writeonly does not read",
            "EVAL; s3tap shorthand",
            "",
            "GET",
            "/bkt/a.jpg",
            Deny,
        )
        .attached(Attached::Shorthand(Access::WriteOnly, &["bkt"])),
        case(
            "readwrite deletes",
            "S3KEYS; s3tap shorthand",
            "",
            "DELETE",
            "/bkt/a.jpg",
            Allow,
        )
        .attached(Attached::Shorthand(Access::ReadWrite, &["bkt"])),
        case(
            "readonly lists versions inside its prefix",
            "S3KEYS (s3:prefix on ListBucketVersions); s3tap shorthand",
            "",
            "GET",
            "/bkt?versions&prefix=photos%2F",
            Allow,
        )
        .attached(Attached::Shorthand(Access::ReadOnly, &["bkt/photos/"])),
        case(
            "writeonly on a bucket lists its uploads",
            "S3KEYS; s3tap shorthand",
            "",
            "GET",
            "/bkt?uploads",
            Allow,
        )
        .attached(Attached::Shorthand(Access::WriteOnly, &["bkt"])),
        case(
            "writeonly on a prefix does not list the bucket's uploads",
            "S3KEYS (no s3:prefix on ListBucketMultipartUploads); s3tap shorthand",
            "",
            "GET",
            "/bkt?prefix=photos%2F&uploads",
            Deny,
        )
        .attached(Attached::Shorthand(Access::WriteOnly, &["bkt/photos/"])),
        // --- other ways to sign and address ---
        case(
            "a presigned GET is decided as a signed one",
            "EVAL, RESOURCE",
            PHOTOS,
            "GET",
            "/bkt/photos/a.jpg",
            Allow,
        )
        .presigned(),
        case(
            "a presigned GET outside the resource",
            "EVAL, RESOURCE",
            PHOTOS,
            "GET",
            "/bkt/other/a.jpg",
            Deny,
        )
        .presigned(),
        case(
            "a presigned PUT the policy does not allow",
            "EVAL",
            PHOTOS,
            "PUT",
            "/bkt/photos/a.jpg",
            Deny,
        )
        .presigned(),
        case(
            "virtual-hosted: the bucket from the Host header",
            "RESOURCE",
            PHOTOS,
            "GET",
            "/photos/a.jpg",
            Allow,
        )
        .vhost(),
        case(
            "virtual-hosted: outside the resource",
            "RESOURCE",
            PHOTOS,
            "GET",
            "/other/a.jpg",
            Deny,
        )
        .vhost(),
    ]
}

/// What reached the inner service: its method, path and body.
type Reached = Arc<Mutex<Vec<(String, String, Bytes)>>>;

async fn run(case: &Case) -> (u16, String, Reached, Option<Denied>) {
    let mut policies = StaticPolicies::new();
    match &case.policy {
        Attached::Json(json) => policies.insert(ACCESS_KEY, Policy::from_json(json).unwrap()),
        Attached::Shorthand(access, scopes) => {
            policies.insert(ACCESS_KEY, Policy::shorthand(*access, *scopes).unwrap())
        }
        Attached::None => {}
    }
    let now = case.now;
    let reached: Reached = Arc::default();
    let seen = reached.clone();
    let inner = tower::service_fn(move |request: Request<_>| {
        let seen = seen.clone();
        async move {
            let (parts, body) = request.into_parts();
            let bytes = BodyExt::collect(body).await.expect("body").to_bytes();
            seen.lock()
                .unwrap()
                .push((parts.method.to_string(), parts.uri.to_string(), bytes));
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
        }
    });
    let mut authorize = AuthorizeLayer::new(policies)
        .secure_transport(case.secure)
        .clock(move || now);
    let host = if case.vhost {
        authorize = authorize.client_virtual_host_suffix("s3.example.com");
        "bkt.s3.example.com"
    } else {
        "s3.example.com"
    };
    let verify = SigV4VerifyLayer::new(StaticCredentials::new().with_key(ACCESS_KEY, SECRET))
        .clock(fixed_time);
    let service = verify.layer(authorize.layer(inner));

    let mut builder = Request::builder()
        .method(case.method)
        .uri(format!("http://{host}{}", case.target))
        .header("host", host);
    if !case.body.is_empty() || case.method == "PUT" || case.method == "POST" {
        builder = builder.header("content-length", case.body.len());
    }
    for (name, value) in &case.headers {
        builder = builder.header(*name, *value);
    }
    let mut request = builder
        .body(Bytes::from_static(case.body.as_bytes()))
        .unwrap();
    let options = SignOptions {
        presign_for: case.presigned.then_some(Duration::from_secs(300)),
        ..SignOptions::default()
    };
    let body = if case.presigned {
        SignableBody::UnsignedPayload
    } else {
        SignableBody::Bytes(case.body.as_bytes())
    };
    sign_with(&mut request, body, &options);
    let mut request = request.map(Full::new);
    let ip: IpAddr = case.from.unwrap_or("127.0.0.1").parse().unwrap();
    request
        .extensions_mut()
        .insert(ClientAddr(SocketAddr::new(ip, 40_000)));
    let response = service.oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    // Set by AuthorizeLayer only: a refusal from the verifier has none.
    let denied = response.extensions().get::<Denied>().cloned();
    let body = BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (
        status,
        String::from_utf8_lossy(&body).into_owned(),
        reached,
        denied,
    )
}

#[tokio::test]
async fn the_policy_table() {
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let (status, body, reached, denied) = run(case).await;
        let reached = reached.lock().unwrap().clone();
        let outcome = match case.expect {
            Allow => {
                if status == 200 && reached.len() == 1 && reached[0].2 == case.body.as_bytes() {
                    Ok(())
                } else {
                    Err(format!(
                        "expected allow: {status} {body}, reached {reached:?}"
                    ))
                }
            }
            Deny => {
                let xml_ok = case.method == "HEAD"
                    || (body.contains("<Code>AccessDenied</Code>") && body.contains("<RequestId>"));
                if status == 403 && xml_ok && reached.is_empty() && denied.is_some() {
                    Ok(())
                } else {
                    Err(format!(
                        "expected AccessDenied: {status} {body}, reached {reached:?}"
                    ))
                }
            }
        };
        if let Err(why) = outcome {
            failures.push(format!(
                "{} ({} {}; source: {}): {why}",
                case.name, case.method, case.target, case.source
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn without_verification_nothing_is_allowed() {
    let policies =
        StaticPolicies::new().with_policy(ACCESS_KEY, Policy::from_json(EVERYTHING).unwrap());
    let service = AuthorizeLayer::new(policies).layer(tower::service_fn(
        |_r: Request<s3tap::authorize::AuthorizeBody<Full<Bytes>>>| async {
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new())))
        },
    ));
    let request = Request::get("http://s3.example.com/bkt/a.txt")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 403);
    let denied = response
        .extensions()
        .get::<s3tap::authorize::Denied>()
        .expect("a Denied extension");
    assert_eq!(denied.reason, "unauthenticated");
}

#[tokio::test]
async fn a_denial_names_the_client_action_and_resource_and_keeps_the_request_id() {
    let policies =
        StaticPolicies::new().with_policy(ACCESS_KEY, Policy::from_json(GET_OBJECTS).unwrap());
    let inner = tower::service_fn(|_r: Request<_>| async {
        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new())))
    });
    let service = SigV4VerifyLayer::new(StaticCredentials::new().with_key(ACCESS_KEY, SECRET))
        .clock(fixed_time)
        .layer(AuthorizeLayer::new(policies).layer(inner));
    let mut request = signed_put("/bkt/new.txt", b"data").map(Full::new);
    request
        .extensions_mut()
        .insert(s3tap::s3error::RequestId::new("REQ-42"));
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 403);
    let denied = response
        .extensions()
        .get::<s3tap::authorize::Denied>()
        .cloned()
        .expect("a Denied extension");
    assert_eq!(denied.access_key_id.as_deref(), Some(ACCESS_KEY));
    assert_eq!(denied.action, "s3:PutObject");
    assert_eq!(denied.resource, "arn:aws:s3:::bkt/new.txt");
    assert_eq!(denied.reason, "implicit_deny");
    let body = BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("<RequestId>REQ-42</RequestId>"), "{body}");
    assert!(!body.contains(SECRET));
}
