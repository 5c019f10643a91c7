//! The classifier against a table of every operation it knows, both
//! addressing styles, and URIs that must not make it panic.
use super::*;
use proptest::prelude::*;

fn run(method: Method, target: &str, headers: &[(&str, &str)], suffix: Option<&str>) -> Classified {
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
