//! The names of events: S3's, B2's, and s3tap's own for what neither notifies.
//!
//! AWS S3 and Backblaze B2 notify only writes and deletes. s3tap sees every
//! request, so for the rest it uses names in its own `s3tap:` namespace,
//! shaped like the others (`s3tap:<Category>:<Action>`), so that rules can
//! select them with the same wildcards and so that the original Worker's
//! "every request" behaviour stays expressible:
//!
//! | operation | S3 name ([`Event::s3_event_name`]) | B2 type ([`Event::b2_event_type`]) |
//! | --- | --- | --- |
//! | PutObject | `ObjectCreated:Put` | `b2:ObjectCreated:Upload` |
//! | PostObject | `ObjectCreated:Post` | `b2:ObjectCreated:Upload` |
//! | CopyObject | `ObjectCreated:Copy` | `b2:ObjectCreated:Copy` |
//! | CompleteMultipartUpload | `ObjectCreated:CompleteMultipartUpload` | `b2:ObjectCreated:MultipartUpload` |
//! | DeleteObject(s) | `ObjectRemoved:Delete` | `b2:ObjectDeleted:Delete` |
//! | DeleteObject(s), marker created | `ObjectRemoved:DeleteMarkerCreated` | `b2:HideMarkerCreated:Hide` |
//! | GetObject | `s3tap:ObjectAccessed:Get` | same |
//! | HeadObject | `s3tap:ObjectAccessed:Head` | same |
//! | ListObjects | `s3tap:BucketListed:ListObjects` | same |
//! | ListObjectsV2 | `s3tap:BucketListed:ListObjectsV2` | same |
//! | CreateMultipartUpload | `s3tap:MultipartUpload:Create` | same |
//! | UploadPart | `s3tap:MultipartUpload:UploadPart` | same |
//! | UploadPartCopy | `s3tap:MultipartUpload:UploadPartCopy` | same |
//! | AbortMultipartUpload | `s3tap:MultipartUpload:Abort` | same |
//! | CreateBucket | `s3tap:BucketCreated:Create` | same |
//! | DeleteBucket | `s3tap:BucketRemoved:Delete` | same |
//! | anything else | `s3tap:Request:Other` | same |
//!
//! A name says what the request *tried* to do; whether it succeeded is
//! [`Event::succeeded`] (a 2xx `status` and no `error_code` from a `200`
//! whose body was `<Error>`), which rules filter on separately (by default
//! only successes are notified, as S3 and B2 do).

use super::{Event, S3Operation};

/// The namespace of s3tap's own event names.
pub const S3TAP_NAMESPACE: &str = "s3tap";

impl Event {
    /// S3's event name, without the `s3:` prefix (as in the `eventName` of
    /// an S3 record), for the operations S3 notifies; `None` for the others,
    /// which have an [`Event::s3tap_event_name`] instead.
    pub fn s3_event_name(&self) -> Option<&'static str> {
        Some(match self.operation {
            S3Operation::PutObject => "ObjectCreated:Put",
            S3Operation::PostObject => "ObjectCreated:Post",
            S3Operation::CopyObject => "ObjectCreated:Copy",
            S3Operation::CompleteMultipartUpload => "ObjectCreated:CompleteMultipartUpload",
            S3Operation::DeleteObject | S3Operation::DeleteObjects if self.delete_marker => {
                "ObjectRemoved:DeleteMarkerCreated"
            }
            S3Operation::DeleteObject | S3Operation::DeleteObjects => "ObjectRemoved:Delete",
            _ => return None,
        })
    }

    /// s3tap's name (`s3tap:...`) for the operations neither S3 nor B2
    /// notifies; `None` for the ones they do.
    pub fn s3tap_event_name(&self) -> Option<&'static str> {
        Some(match self.operation {
            S3Operation::GetObject => "s3tap:ObjectAccessed:Get",
            S3Operation::HeadObject => "s3tap:ObjectAccessed:Head",
            S3Operation::ListObjects => "s3tap:BucketListed:ListObjects",
            S3Operation::ListObjectsV2 => "s3tap:BucketListed:ListObjectsV2",
            S3Operation::CreateMultipartUpload => "s3tap:MultipartUpload:Create",
            S3Operation::UploadPart => "s3tap:MultipartUpload:UploadPart",
            S3Operation::UploadPartCopy => "s3tap:MultipartUpload:UploadPartCopy",
            S3Operation::AbortMultipartUpload => "s3tap:MultipartUpload:Abort",
            S3Operation::CreateBucket => "s3tap:BucketCreated:Create",
            S3Operation::DeleteBucket => "s3tap:BucketRemoved:Delete",
            S3Operation::PutObject
            | S3Operation::PostObject
            | S3Operation::CopyObject
            | S3Operation::CompleteMultipartUpload
            | S3Operation::DeleteObject
            | S3Operation::DeleteObjects => return None,
            _ => "s3tap:Request:Other",
        })
    }

    /// The name in S3's vocabulary: S3's name without `s3:` (as an S3
    /// record's `eventName` carries it), or the `s3tap:` name.
    pub fn s3_or_s3tap_name(&self) -> &'static str {
        self.s3_event_name()
            .or_else(|| self.s3tap_event_name())
            .unwrap_or("s3tap:Request:Other")
    }

    /// B2's event type (`b2:...`) for the operations B2 notifies, or the
    /// `s3tap:` name for the others.
    ///
    /// A form upload (`PostObject`) is reported as `b2:ObjectCreated:Upload`:
    /// B2 has no separate type for it, and it is a plain upload.
    pub fn b2_event_type(&self) -> &'static str {
        match self.operation {
            S3Operation::PutObject | S3Operation::PostObject => "b2:ObjectCreated:Upload",
            S3Operation::CopyObject => "b2:ObjectCreated:Copy",
            S3Operation::CompleteMultipartUpload => "b2:ObjectCreated:MultipartUpload",
            S3Operation::DeleteObject | S3Operation::DeleteObjects if self.delete_marker => {
                "b2:HideMarkerCreated:Hide"
            }
            S3Operation::DeleteObject | S3Operation::DeleteObjects => "b2:ObjectDeleted:Delete",
            _ => self.s3tap_event_name().unwrap_or("s3tap:Request:Other"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(operation: S3Operation, delete_marker: bool) -> Event {
        let mut event = Event::new(operation, "GET", 200, "https://example/b/k");
        event.delete_marker = delete_marker;
        event
    }

    #[test]
    fn names_per_operation() {
        use S3Operation::*;
        let table: &[(S3Operation, bool, Option<&str>, &str)] = &[
            (
                PutObject,
                false,
                Some("ObjectCreated:Put"),
                "b2:ObjectCreated:Upload",
            ),
            (
                PostObject,
                false,
                Some("ObjectCreated:Post"),
                "b2:ObjectCreated:Upload",
            ),
            (
                CopyObject,
                false,
                Some("ObjectCreated:Copy"),
                "b2:ObjectCreated:Copy",
            ),
            (
                CompleteMultipartUpload,
                false,
                Some("ObjectCreated:CompleteMultipartUpload"),
                "b2:ObjectCreated:MultipartUpload",
            ),
            (
                DeleteObject,
                false,
                Some("ObjectRemoved:Delete"),
                "b2:ObjectDeleted:Delete",
            ),
            (
                DeleteObject,
                true,
                Some("ObjectRemoved:DeleteMarkerCreated"),
                "b2:HideMarkerCreated:Hide",
            ),
            (
                DeleteObjects,
                false,
                Some("ObjectRemoved:Delete"),
                "b2:ObjectDeleted:Delete",
            ),
            (
                DeleteObjects,
                true,
                Some("ObjectRemoved:DeleteMarkerCreated"),
                "b2:HideMarkerCreated:Hide",
            ),
            (GetObject, false, None, "s3tap:ObjectAccessed:Get"),
            (HeadObject, false, None, "s3tap:ObjectAccessed:Head"),
            (ListObjects, false, None, "s3tap:BucketListed:ListObjects"),
            (
                ListObjectsV2,
                false,
                None,
                "s3tap:BucketListed:ListObjectsV2",
            ),
            (
                CreateMultipartUpload,
                false,
                None,
                "s3tap:MultipartUpload:Create",
            ),
            (UploadPart, false, None, "s3tap:MultipartUpload:UploadPart"),
            (
                UploadPartCopy,
                false,
                None,
                "s3tap:MultipartUpload:UploadPartCopy",
            ),
            (
                AbortMultipartUpload,
                false,
                None,
                "s3tap:MultipartUpload:Abort",
            ),
            (CreateBucket, false, None, "s3tap:BucketCreated:Create"),
            (DeleteBucket, false, None, "s3tap:BucketRemoved:Delete"),
            (Other, false, None, "s3tap:Request:Other"),
            // A marker flag on something that is not a delete changes nothing.
            (GetObject, true, None, "s3tap:ObjectAccessed:Get"),
        ];
        for &(operation, marker, s3, b2) in table {
            let e = event(operation, marker);
            assert_eq!(e.s3_event_name(), s3, "{operation:?}");
            assert_eq!(e.b2_event_type(), b2, "{operation:?}");
            // Exactly one of the S3 name and the s3tap name exists.
            assert_ne!(e.s3_event_name().is_some(), e.s3tap_event_name().is_some());
            match s3 {
                None => {
                    assert_eq!(e.s3tap_event_name(), Some(b2));
                    assert_eq!(e.s3_or_s3tap_name(), b2);
                }
                Some(s3) => assert_eq!(e.s3_or_s3tap_name(), s3),
            }
        }
    }
}
