//! The scanners against hand-written and generated documents, fed in chunks
//! cut at any byte.
use super::*;
use proptest::prelude::*;

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
    let mut scanner = DeleteResultScanner::new();
    scanner.feed(SMALL.as_bytes());
    assert_eq!(scanner.failed(), &[("locked".to_owned(), None)]);
    assert!(!scanner.is_error_document());
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
fn an_error_document_is_not_a_result() {
    let mut scanner = DeleteResultScanner::new();
    let keys = scanner.feed(b"<Error><Code>InternalError</Code><Key>k</Key></Error>");
    assert!(keys.is_empty());
    assert!(scanner.is_error_document());
    assert!(scanner.failed().is_empty());
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

fn delete_request(count: usize, quiet: bool) -> String {
    let mut doc = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    for i in 0..count {
        doc.push_str(&format!("<Object><Key>k/{i} &amp; x</Key>"));
        if i % 2 == 1 {
            doc.push_str(&format!("<VersionId>v{i}</VersionId>"));
        }
        doc.push_str("</Object>");
    }
    if quiet {
        doc.push_str("<Quiet>true</Quiet>");
    }
    doc.push_str("</Delete>");
    doc
}

#[test]
fn delete_request_lists_keys_and_quiet_at_any_split() {
    let doc = delete_request(3, true);
    let bytes = doc.as_bytes();
    for split in 0..=bytes.len() {
        let mut scanner = DeleteRequestScanner::new();
        assert!(scanner.feed(&bytes[..split]));
        assert!(scanner.feed(&bytes[split..]));
        assert!(scanner.complete && scanner.quiet && !scanner.unreadable);
        assert_eq!(
            scanner.objects,
            vec![
                ("k/0 & x".to_owned(), None),
                ("k/1 & x".to_owned(), Some("v1".to_owned())),
                ("k/2 & x".to_owned(), None),
            ],
            "split at {split}"
        );
    }
    let mut scanner = DeleteRequestScanner::new();
    scanner.feed(delete_request(2, false).as_bytes());
    assert!(scanner.complete && !scanner.quiet);
    let mut scanner = DeleteRequestScanner::new();
    scanner.feed(b"<Delete><Quiet>false</Quiet><Object><Key>a</Key></Object>");
    assert!(!scanner.complete && !scanner.quiet);
}

#[test]
fn delete_request_limits() {
    let mut scanner = DeleteRequestScanner::new();
    assert!(scanner.feed(delete_request(MAX_DELETE_KEYS, true).as_bytes()));
    assert!(!scanner.over_limit);
    assert_eq!(scanner.objects.len(), MAX_DELETE_KEYS);

    let mut scanner = DeleteRequestScanner::new();
    assert!(!scanner.feed(delete_request(MAX_DELETE_KEYS + 1, true).as_bytes()));
    assert!(scanner.over_limit);

    let mut scanner = DeleteRequestScanner::new();
    let filler = vec![b' '; 1024 * 1024];
    assert!(scanner.feed(b"<Delete>"));
    for _ in 0..4 {
        scanner.feed(&filler);
    }
    assert!(scanner.over_limit);
    assert!(!scanner.feed(b"</Delete>"));

    let mut scanner = DeleteRequestScanner::new();
    scanner.feed(b"<Delete><Object><Key>a</Key></Object><Object><Key></Key></Object></Delete>");
    assert!(scanner.unreadable);
}

#[test]
fn part_list() {
    let doc = b"<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
        <Part><ETag>\"a\"</ETag><PartNumber>1</PartNumber></Part>\
        <Part><PartNumber> 3 </PartNumber><ChecksumCRC32>x</ChecksumCRC32><ETag>&quot;b&quot;</ETag></Part>\
        </CompleteMultipartUpload>";
    for split in 0..=doc.len() {
        let mut scanner = PartListScanner::new();
        scanner.feed(&doc[..split]);
        scanner.feed(&doc[split..]);
        assert!(scanner.complete && !scanner.unreadable, "split at {split}");
        assert_eq!(scanner.parts, vec![1, 3]);
    }
    let mut scanner = PartListScanner::new();
    scanner.feed(b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber></Part></CompleteMultipartUpload>");
    assert!(scanner.unreadable);
}

#[test]
fn result_or_error() {
    let ok = b"<?xml version=\"1.0\"?>\n\n  <CompleteMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
        <Location>http://x/b/k</Location><Bucket>b</Bucket><Key>k</Key>\
        <ETag>&quot;3858f62230ac3c915f300c664312c11f-9&quot;</ETag></CompleteMultipartUploadResult>";
    for split in 0..=ok.len() {
        let mut scanner = ResultScanner::new();
        scanner.feed(&ok[..split]);
        scanner.feed(&ok[split..]);
        assert!(scanner.complete && !scanner.error);
        assert_eq!(
            scanner.etag.as_deref(),
            Some("3858f62230ac3c915f300c664312c11f-9")
        );
    }
    let copy = b"<CopyObjectResult><LastModified>2024</LastModified><ETag>\"9b2cf535f27731c974343645a3985328\"</ETag></CopyObjectResult>";
    let mut scanner = ResultScanner::new();
    scanner.feed(copy);
    assert_eq!(
        scanner.etag.as_deref(),
        Some("9b2cf535f27731c974343645a3985328")
    );
    let error = b"\n<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message><ETag>no</ETag></Error>";
    let mut scanner = ResultScanner::new();
    scanner.feed(error);
    assert!(scanner.complete && scanner.error);
    assert_eq!(scanner.code.as_deref(), Some("InternalError"));
    assert_eq!(scanner.etag, None);
}

proptest! {
    #[test]
    fn scanners_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..256), split in 0usize..256) {
        let split = split.min(raw.len());
        let mut scanner = DeleteResultScanner::new();
        let _ = scanner.feed(&raw[..split]);
        let _ = scanner.feed(&raw[split..]);
        let mut request = DeleteRequestScanner::new();
        request.feed(&raw[..split]);
        request.feed(&raw[split..]);
        let mut parts = PartListScanner::new();
        parts.feed(&raw);
        let mut result = ResultScanner::new();
        result.feed(&raw);
    }
}
