//! The embedded store's S3 implementation: s3s-fs, with its listings made to
//! answer as AWS does where s3s-fs 0.14.1 does not.
//!
//! Two gaps, both seen by real clients against the README's run command:
//! - with `encoding-type=url` s3s-fs echoes the parameter but returns keys
//!   unencoded, so boto3 (which then URL-decodes them, `+` as a space) lists
//!   `a+b.txt` as `a b.txt`;
//! - an empty `delimiter=` is taken as a real delimiter, so a recursive
//!   listing that sends one (rclone) sees nothing.
//!
//! Every other operation is passed to s3s-fs unchanged.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, S3};
use s3s_fs::FileSystem;

use crate::sigv4::canonical::uri_encode;

/// s3s-fs behind the listing fixes.
pub(super) struct EmbeddedS3(pub(super) FileSystem);

/// What AWS's `encoding-type=url` does to a listed name: percent-encoding of
/// everything but the unreserved characters and `/`, so `+` travels as `%2B`
/// and a client's URL-decoding gives the key back byte for byte.
fn url_encoded(text: String) -> String {
    uri_encode(text.as_bytes(), true)
}

fn wants_url_encoding(encoding: Option<&EncodingType>) -> bool {
    encoding.is_some_and(|e| e.as_str().eq_ignore_ascii_case(EncodingType::URL))
}

/// An empty delimiter means "no delimiter", as on AWS.
fn no_empty_delimiter(delimiter: &mut Option<Delimiter>) {
    if delimiter.as_deref() == Some("") {
        *delimiter = None;
    }
}

fn encode_objects(contents: Option<&mut ObjectList>, prefixes: Option<&mut CommonPrefixList>) {
    for object in contents.into_iter().flatten() {
        object.key = object.key.take().map(url_encoded);
    }
    for prefix in prefixes.into_iter().flatten() {
        prefix.prefix = prefix.prefix.take().map(url_encoded);
    }
}

/// Implements `S3` for [`EmbeddedS3`]: each named operation goes to s3s-fs as
/// it is, the listed bodies follow. One macro for the whole impl, because
/// `async_trait` must see the expanded methods.
macro_rules! embedded_s3 {
    ($($op:ident: $input:ty => $output:ty),* $(,)?; $($own:item)*) => {
        #[async_trait::async_trait]
        impl S3 for EmbeddedS3 {
            $(
                async fn $op(&self, req: S3Request<$input>) -> S3Result<S3Response<$output>> {
                    self.0.$op(req).await
                }
            )*
            $($own)*
        }
    };
}

embedded_s3! {
    create_bucket: CreateBucketInput => CreateBucketOutput,
    copy_object: CopyObjectInput => CopyObjectOutput,
    delete_bucket: DeleteBucketInput => DeleteBucketOutput,
    delete_object: DeleteObjectInput => DeleteObjectOutput,
    delete_objects: DeleteObjectsInput => DeleteObjectsOutput,
    get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput,
    get_object: GetObjectInput => GetObjectOutput,
    head_bucket: HeadBucketInput => HeadBucketOutput,
    head_object: HeadObjectInput => HeadObjectOutput,
    list_buckets: ListBucketsInput => ListBucketsOutput,
    put_object: PutObjectInput => PutObjectOutput,
    create_multipart_upload: CreateMultipartUploadInput => CreateMultipartUploadOutput,
    upload_part: UploadPartInput => UploadPartOutput,
    upload_part_copy: UploadPartCopyInput => UploadPartCopyOutput,
    list_parts: ListPartsInput => ListPartsOutput,
    complete_multipart_upload: CompleteMultipartUploadInput => CompleteMultipartUploadOutput,
    abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput;

    async fn list_objects(
        &self,
        mut req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        no_empty_delimiter(&mut req.input.delimiter);
        let encode = wants_url_encoding(req.input.encoding_type.as_ref());
        let mut response = self.0.list_objects(req).await?;
        if encode {
            let out = &mut response.output;
            encode_objects(out.contents.as_mut(), out.common_prefixes.as_mut());
            out.prefix = out.prefix.take().map(url_encoded);
            out.delimiter = out.delimiter.take().map(url_encoded);
            out.marker = out.marker.take().map(url_encoded);
            out.next_marker = out.next_marker.take().map(url_encoded);
        }
        Ok(response)
    }

    async fn list_objects_v2(
        &self,
        mut req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        no_empty_delimiter(&mut req.input.delimiter);
        let encode = wants_url_encoding(req.input.encoding_type.as_ref());
        let mut response = self.0.list_objects_v2(req).await?;
        if encode {
            let out = &mut response.output;
            encode_objects(out.contents.as_mut(), out.common_prefixes.as_mut());
            out.prefix = out.prefix.take().map(url_encoded);
            out.delimiter = out.delimiter.take().map(url_encoded);
            out.start_after = out.start_after.take().map(url_encoded);
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_keeps_plus_and_percent_apart_from_space() {
        assert_eq!(url_encoded("a+b c%/d.txt".into()), "a%2Bb%20c%25/d.txt");
    }

    #[test]
    fn empty_delimiter_is_none() {
        let mut d = Some(Delimiter::from(String::new()));
        no_empty_delimiter(&mut d);
        assert_eq!(d, None);
        let mut d = Some(Delimiter::from("/".to_owned()));
        no_empty_delimiter(&mut d);
        assert_eq!(d.as_deref(), Some("/"));
    }
}
