//! The names of events: S3's (AWS's and MinIO's), B2's, and s3tap's own for
//! what neither names.
//!
//! Every event has up to three names, one per vocabulary, and rules select by
//! any of them (see [`rules`](super::rules)):
//!
//! - the **S3 name** (`s3:...`): AWS's event names, and MinIO's for what AWS
//!   does not notify (`s3:ObjectAccessed:*`, `s3:BucketCreated:*`,
//!   `s3:BucketRemoved:*`; the bucket names carry a literal `*`, as MinIO's
//!   do). S3 records carry it without `s3:` in `eventName`
//!   ([`Event::s3_event_name`]);
//! - the **B2 type** (`b2:...`) for what B2 notifies
//!   ([`Event::b2_event_type`]; for the rest it is the s3tap or S3 name);
//! - the **s3tap name** (`s3tap:<Category>:<Action>`) for what has no S3
//!   name, and, for the operations that gained an S3 name later, the name
//!   s3tap used before, kept as an alias so that rules written for it still
//!   match ([`Event::s3tap_event_name`]).
//!
//! | operation | S3 name | s3tap name | B2 type |
//! | --- | --- | --- | --- |
//! | PutObject | `s3:ObjectCreated:Put` | | `b2:ObjectCreated:Upload` |
//! | PostObject | `s3:ObjectCreated:Post` | | `b2:ObjectCreated:Upload` |
//! | CopyObject | `s3:ObjectCreated:Copy` | | `b2:ObjectCreated:Copy` |
//! | CompleteMultipartUpload | `s3:ObjectCreated:CompleteMultipartUpload` | | `b2:ObjectCreated:MultipartUpload` |
//! | DeleteObject(s) | `s3:ObjectRemoved:Delete` | | `b2:ObjectDeleted:Delete` |
//! | DeleteObject(s), marker created | `s3:ObjectRemoved:DeleteMarkerCreated` | | `b2:HideMarkerCreated:Hide` |
//! | GetObject | `s3:ObjectAccessed:Get` | `s3tap:ObjectAccessed:Get` (alias) | the s3tap name |
//! | HeadObject | `s3:ObjectAccessed:Head` | `s3tap:ObjectAccessed:Head` (alias) | the s3tap name |
//! | CreateBucket | `s3:BucketCreated:*` | `s3tap:BucketCreated:Create` (alias) | the s3tap name |
//! | DeleteBucket | `s3:BucketRemoved:*` | `s3tap:BucketRemoved:Delete` (alias) | the s3tap name |
//! | PutObjectTagging | `s3:ObjectTagging:Put` | | the S3 name |
//! | DeleteObjectTagging | `s3:ObjectTagging:Delete` | | the S3 name |
//! | PutObjectAcl | `s3:ObjectAcl:Put` | | the S3 name |
//! | RestoreObject | `s3:ObjectRestore:Post` | | the S3 name |
//! | CreateMultipartUpload | | `s3tap:MultipartUpload:Create` | the s3tap name |
//! | CreateMultipartUpload with `x-backblaze-live-read-enabled: true` | | `s3tap:MultipartUpload:Create` | `b2:MultipartUploadCreated:LiveRead` |
//! | UploadPart | | `s3tap:MultipartUpload:UploadPart` | the s3tap name |
//! | UploadPartCopy | | `s3tap:MultipartUpload:UploadPartCopy` | the s3tap name |
//! | AbortMultipartUpload | | `s3tap:MultipartUpload:Abort` | the s3tap name |
//! | ListObjects | | `s3tap:BucketListed:ListObjects` | the s3tap name |
//! | ListObjectsV2 | | `s3tap:BucketListed:ListObjectsV2` | the s3tap name |
//! | anything else | | `s3tap:Request:Other` | the s3tap name |
//!
//! A name says what the request *tried* to do; whether it succeeded is
//! [`Event::succeeded`] (a 2xx `status` and no `error_code` from a `200`
//! whose body was `<Error>`), which rules filter on separately (by default
//! only successes are notified, as S3 and B2 do).

use super::{Event, S3Operation};

/// The namespace of s3tap's own event names.
pub const S3TAP_NAMESPACE: &str = "s3tap";

/// The fallback name, for what nothing else names.
const OTHER: &str = "s3tap:Request:Other";

/// One kind of event's names, each with its prefix (`s3:`, `s3tap:`, `b2:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Names {
    /// S3's (AWS's or MinIO's) name.
    pub s3: Option<&'static str>,
    /// s3tap's own name, or its alias for an operation that has an S3 name.
    pub s3tap: Option<&'static str>,
    /// B2's type, for what B2 notifies.
    pub b2: Option<&'static str>,
}

const fn n(
    s3: Option<&'static str>,
    s3tap: Option<&'static str>,
    b2: Option<&'static str>,
) -> Names {
    Names { s3, s3tap, b2 }
}

/// The names of an event: the table above, one line per kind of event.
pub fn names(event: &Event) -> Names {
    use S3Operation::*;
    match event.operation {
        PutObject => n(
            Some("s3:ObjectCreated:Put"),
            None,
            Some("b2:ObjectCreated:Upload"),
        ),
        // B2 has no type of its own for a form upload: it is a plain upload.
        PostObject => n(
            Some("s3:ObjectCreated:Post"),
            None,
            Some("b2:ObjectCreated:Upload"),
        ),
        CopyObject => n(
            Some("s3:ObjectCreated:Copy"),
            None,
            Some("b2:ObjectCreated:Copy"),
        ),
        CompleteMultipartUpload => n(
            Some("s3:ObjectCreated:CompleteMultipartUpload"),
            None,
            Some("b2:ObjectCreated:MultipartUpload"),
        ),
        DeleteObject | DeleteObjects if event.delete_marker => n(
            Some("s3:ObjectRemoved:DeleteMarkerCreated"),
            None,
            Some("b2:HideMarkerCreated:Hide"),
        ),
        DeleteObject | DeleteObjects => n(
            Some("s3:ObjectRemoved:Delete"),
            None,
            Some("b2:ObjectDeleted:Delete"),
        ),
        GetObject => n(
            Some("s3:ObjectAccessed:Get"),
            Some("s3tap:ObjectAccessed:Get"),
            None,
        ),
        HeadObject => n(
            Some("s3:ObjectAccessed:Head"),
            Some("s3tap:ObjectAccessed:Head"),
            None,
        ),
        CreateBucket => n(
            Some("s3:BucketCreated:*"),
            Some("s3tap:BucketCreated:Create"),
            None,
        ),
        DeleteBucket => n(
            Some("s3:BucketRemoved:*"),
            Some("s3tap:BucketRemoved:Delete"),
            None,
        ),
        PutObjectTagging => n(Some("s3:ObjectTagging:Put"), None, None),
        DeleteObjectTagging => n(Some("s3:ObjectTagging:Delete"), None, None),
        PutObjectAcl => n(Some("s3:ObjectAcl:Put"), None, None),
        RestoreObject => n(Some("s3:ObjectRestore:Post"), None, None),
        CreateMultipartUpload if event.live_read => n(
            None,
            Some("s3tap:MultipartUpload:Create"),
            Some("b2:MultipartUploadCreated:LiveRead"),
        ),
        CreateMultipartUpload => n(None, Some("s3tap:MultipartUpload:Create"), None),
        UploadPart => n(None, Some("s3tap:MultipartUpload:UploadPart"), None),
        UploadPartCopy => n(None, Some("s3tap:MultipartUpload:UploadPartCopy"), None),
        AbortMultipartUpload => n(None, Some("s3tap:MultipartUpload:Abort"), None),
        ListObjects => n(None, Some("s3tap:BucketListed:ListObjects"), None),
        ListObjectsV2 => n(None, Some("s3tap:BucketListed:ListObjectsV2"), None),
        _ => n(None, Some(OTHER), None),
    }
}

impl Event {
    /// This event's names in every vocabulary.
    pub fn names(&self) -> Names {
        names(self)
    }

    /// S3's event name without the `s3:` prefix (as an S3 record's
    /// `eventName` carries it), for the events AWS or MinIO name; `None` for
    /// the others, which have only an [`Event::s3tap_event_name`].
    pub fn s3_event_name(&self) -> Option<&'static str> {
        self.names().s3.map(|name| &name["s3:".len()..])
    }

    /// s3tap's name (`s3tap:...`): for the events without an S3 name, and
    /// the older alias of those that gained one; `None` otherwise.
    pub fn s3tap_event_name(&self) -> Option<&'static str> {
        self.names().s3tap
    }

    /// The name in S3's vocabulary: S3's name without `s3:` (as an S3
    /// record's `eventName` carries it), or the `s3tap:` name.
    pub fn s3_or_s3tap_name(&self) -> &'static str {
        self.s3_event_name()
            .or_else(|| self.s3tap_event_name())
            .unwrap_or(OTHER)
    }

    /// The full name in S3's vocabulary, with its prefix:
    /// `s3:ObjectCreated:Put`, or `s3tap:BucketListed:ListObjects`.
    pub fn event_name(&self) -> &'static str {
        let names = self.names();
        names.s3.or(names.s3tap).unwrap_or(OTHER)
    }

    /// B2's event type (`b2:...`) for the events B2 notifies, else the
    /// s3tap name, else the S3 name (`s3:ObjectTagging:Put`).
    pub fn b2_event_type(&self) -> &'static str {
        let names = self.names();
        names.b2.or(names.s3tap).or(names.s3).unwrap_or(OTHER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(operation: S3Operation, delete_marker: bool, live_read: bool) -> Event {
        let mut event = Event::new(operation, "GET", 200, "https://example/b/k");
        event.delete_marker = delete_marker;
        event.live_read = live_read;
        event
    }

    #[test]
    fn names_per_operation() {
        use S3Operation::*;
        // operation, delete marker, live read, S3 name, s3tap name, B2 type
        type Row = (
            S3Operation,
            bool,
            bool,
            Option<&'static str>,
            Option<&'static str>,
            &'static str,
        );
        let table: &[Row] = &[
            (
                PutObject,
                false,
                false,
                Some("ObjectCreated:Put"),
                None,
                "b2:ObjectCreated:Upload",
            ),
            (
                PostObject,
                false,
                false,
                Some("ObjectCreated:Post"),
                None,
                "b2:ObjectCreated:Upload",
            ),
            (
                CopyObject,
                false,
                false,
                Some("ObjectCreated:Copy"),
                None,
                "b2:ObjectCreated:Copy",
            ),
            (
                CompleteMultipartUpload,
                false,
                false,
                Some("ObjectCreated:CompleteMultipartUpload"),
                None,
                "b2:ObjectCreated:MultipartUpload",
            ),
            (
                DeleteObject,
                false,
                false,
                Some("ObjectRemoved:Delete"),
                None,
                "b2:ObjectDeleted:Delete",
            ),
            (
                DeleteObject,
                true,
                false,
                Some("ObjectRemoved:DeleteMarkerCreated"),
                None,
                "b2:HideMarkerCreated:Hide",
            ),
            (
                DeleteObjects,
                false,
                false,
                Some("ObjectRemoved:Delete"),
                None,
                "b2:ObjectDeleted:Delete",
            ),
            (
                DeleteObjects,
                true,
                false,
                Some("ObjectRemoved:DeleteMarkerCreated"),
                None,
                "b2:HideMarkerCreated:Hide",
            ),
            (
                GetObject,
                false,
                false,
                Some("ObjectAccessed:Get"),
                Some("s3tap:ObjectAccessed:Get"),
                "s3tap:ObjectAccessed:Get",
            ),
            (
                HeadObject,
                false,
                false,
                Some("ObjectAccessed:Head"),
                Some("s3tap:ObjectAccessed:Head"),
                "s3tap:ObjectAccessed:Head",
            ),
            (
                CreateBucket,
                false,
                false,
                Some("BucketCreated:*"),
                Some("s3tap:BucketCreated:Create"),
                "s3tap:BucketCreated:Create",
            ),
            (
                DeleteBucket,
                false,
                false,
                Some("BucketRemoved:*"),
                Some("s3tap:BucketRemoved:Delete"),
                "s3tap:BucketRemoved:Delete",
            ),
            (
                ListObjects,
                false,
                false,
                None,
                Some("s3tap:BucketListed:ListObjects"),
                "s3tap:BucketListed:ListObjects",
            ),
            (
                ListObjectsV2,
                false,
                false,
                None,
                Some("s3tap:BucketListed:ListObjectsV2"),
                "s3tap:BucketListed:ListObjectsV2",
            ),
            (
                CreateMultipartUpload,
                false,
                false,
                None,
                Some("s3tap:MultipartUpload:Create"),
                "s3tap:MultipartUpload:Create",
            ),
            (
                CreateMultipartUpload,
                false,
                true,
                None,
                Some("s3tap:MultipartUpload:Create"),
                "b2:MultipartUploadCreated:LiveRead",
            ),
            (
                UploadPart,
                false,
                false,
                None,
                Some("s3tap:MultipartUpload:UploadPart"),
                "s3tap:MultipartUpload:UploadPart",
            ),
            (
                UploadPartCopy,
                false,
                false,
                None,
                Some("s3tap:MultipartUpload:UploadPartCopy"),
                "s3tap:MultipartUpload:UploadPartCopy",
            ),
            (
                AbortMultipartUpload,
                false,
                false,
                None,
                Some("s3tap:MultipartUpload:Abort"),
                "s3tap:MultipartUpload:Abort",
            ),
            (
                Other,
                false,
                false,
                None,
                Some("s3tap:Request:Other"),
                "s3tap:Request:Other",
            ),
            // A marker or live-read flag where it means nothing changes nothing.
            (
                GetObject,
                true,
                true,
                Some("ObjectAccessed:Get"),
                Some("s3tap:ObjectAccessed:Get"),
                "s3tap:ObjectAccessed:Get",
            ),
            (
                PutObject,
                true,
                true,
                Some("ObjectCreated:Put"),
                None,
                "b2:ObjectCreated:Upload",
            ),
        ];
        for &(operation, marker, live_read, s3, s3tap, b2) in table {
            let e = event(operation, marker, live_read);
            assert_eq!(e.s3_event_name(), s3, "{operation:?}");
            assert_eq!(e.s3tap_event_name(), s3tap, "{operation:?}");
            assert_eq!(e.b2_event_type(), b2, "{operation:?}");
            // Every event has a name in S3's vocabulary: S3's, else s3tap's.
            assert_eq!(e.s3_or_s3tap_name(), s3.or(s3tap).unwrap());
            let full = s3.map(|s| format!("s3:{s}")).or(s3tap.map(str::to_owned));
            assert_eq!(e.event_name(), full.unwrap());
        }
    }

    #[test]
    fn rules_accept_the_s3_names_and_the_old_s3tap_ones() {
        use crate::notify::rules::pattern_matches;
        use S3Operation::*;
        let cases: &[(S3Operation, bool, &[&str], &[&str])] = &[
            (
                GetObject,
                false,
                &[
                    "s3:ObjectAccessed:Get",
                    "s3:ObjectAccessed:*",
                    "s3tap:ObjectAccessed:Get",
                    "*",
                ],
                &["s3:ObjectAccessed:Head", "b2:*", "s3:ObjectCreated:*"],
            ),
            (
                HeadObject,
                false,
                &["s3:ObjectAccessed:Head", "s3tap:ObjectAccessed:*"],
                &["s3:ObjectAccessed:Get"],
            ),
            (
                CreateBucket,
                false,
                &["s3:BucketCreated:*", "s3tap:BucketCreated:Create"],
                &["s3:BucketRemoved:*", "s3:ObjectCreated:*"],
            ),
            (
                DeleteBucket,
                false,
                &["s3:BucketRemoved:*", "s3tap:BucketRemoved:Delete"],
                &["s3:ObjectRemoved:*"],
            ),
            (
                CreateMultipartUpload,
                true,
                &[
                    "b2:MultipartUploadCreated:LiveRead",
                    "b2:*",
                    "s3tap:MultipartUpload:Create",
                ],
                &["s3:*", "b2:ObjectCreated:*"],
            ),
            (
                CreateMultipartUpload,
                false,
                &["s3tap:MultipartUpload:*"],
                &["b2:*", "b2:MultipartUploadCreated:LiveRead"],
            ),
        ];
        for &(operation, live_read, yes, no) in cases {
            let e = event(operation, false, live_read);
            for pattern in yes {
                assert!(
                    pattern_matches(pattern, &e),
                    "{pattern} must match {operation:?}"
                );
            }
            for pattern in no {
                assert!(
                    !pattern_matches(pattern, &e),
                    "{pattern} must not match {operation:?}"
                );
            }
        }
    }
}
