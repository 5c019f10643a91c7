//! Reading a `multipart/form-data` upload form as it streams: the fields
//! before the file are collected (bounded), and the reader stops at the
//! `file` part, whose bytes are left in the stream for the upload.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use pin_project_lite::pin_project;

use super::error::PostError;

/// Largest total size of the fields before the file, as S3 allows (20 KB);
/// more is `MaxPostPreDataLengthExceeded`.
pub const MAX_PRE_DATA: usize = 20 * 1024;

/// The form's fields, names in lower case (S3 reads them case-insensitively),
/// in the order sent. A field sent twice keeps its first value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FormFields {
    fields: Vec<(String, String)>,
}

impl FormFields {
    /// Adds a field unless one of that name is already there.
    pub fn insert(&mut self, name: &str, value: String) {
        let name = name.to_ascii_lowercase();
        if self.get(&name).is_none() {
            self.fields.push((name, value));
        }
    }

    /// The value of `name` (lower case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name` (lower case) to `value`, replacing a value sent.
    pub fn set(&mut self, name: &str, value: String) {
        match self.fields.iter_mut().find(|(n, _)| n == name) {
            Some(field) => field.1 = value,
            None => self.fields.push((name.to_owned(), value)),
        }
    }

    /// Every field, in the order sent.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

/// The file part: where its bytes come from and what its head said.
pub struct FilePart<'r> {
    /// The part's bytes, streamed by multer.
    pub field: multer::Field<'r>,
    /// The part's `filename`, for `${filename}` in the key.
    pub file_name: Option<String>,
    /// A `Content-Length` header on the part itself, when a client sent one.
    pub declared_length: Option<u64>,
}

impl std::fmt::Debug for FilePart<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilePart")
            .field("file_name", &self.file_name)
            .field("declared_length", &self.declared_length)
            .finish_non_exhaustive()
    }
}

/// The boundary of a `multipart/form-data` content type, `None` for any
/// other type.
pub fn form_boundary(content_type: &str) -> Option<String> {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    multer::parse_boundary(content_type).ok()
}

/// Reads the fields before the `file` part of a form streamed by `stream`,
/// and returns them with the file part, ready to stream. Fields after the
/// file are never read (S3 ignores them).
pub async fn read_form<'r, S, E>(
    stream: S,
    boundary: &str,
) -> Result<(FormFields, FilePart<'r>), PostError>
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'r,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'r,
{
    let mut multipart = multer::Multipart::new(OneChunkPerPoll::new(stream), boundary);
    let mut fields = FormFields::default();
    let mut pre_data = 0usize;
    loop {
        let Some(mut field) = multipart
            .next_field()
            .await
            .map_err(PostError::from_multer)?
        else {
            return Err(PostError::NoFile);
        };
        let name = field.name().unwrap_or_default().to_ascii_lowercase();
        pre_data += name.len();
        if name == "file" {
            let declared_length = field
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok());
            let file_name = field.file_name().map(str::to_owned);
            return Ok((
                fields,
                FilePart {
                    field,
                    file_name,
                    declared_length,
                },
            ));
        }
        let mut value = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(PostError::from_multer)? {
            pre_data += chunk.len();
            if pre_data > MAX_PRE_DATA {
                return Err(PostError::PreDataTooLarge);
            }
            value.extend_from_slice(&chunk);
        }
        fields.insert(&name, String::from_utf8_lossy(&value).into_owned());
    }
}

pin_project! {
    /// Hands multer at most one chunk per poll. multer reads from its
    /// stream until the stream has nothing ready; over a body that is
    /// always ready (in memory, or a fast local client) that would gather
    /// the whole file in its buffer. One chunk per poll keeps its buffer to
    /// about one chunk.
    struct OneChunkPerPoll<S> {
        #[pin]
        inner: S,
        yielded: bool,
    }
}

impl<S> OneChunkPerPoll<S> {
    fn new(inner: S) -> Self {
        OneChunkPerPoll {
            inner,
            yielded: false,
        }
    }
}

impl<S: Stream> Stream for OneChunkPerPoll<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = self.project();
        if *this.yielded {
            *this.yielded = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let item = this.inner.poll_next(cx);
        *this.yielded = matches!(item, Poll::Ready(Some(_)));
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_form_data_has_a_boundary() {
        assert_eq!(
            form_boundary("multipart/form-data; boundary=abc").as_deref(),
            Some("abc")
        );
        assert_eq!(
            form_boundary("Multipart/Form-Data; boundary=\"a b\"").as_deref(),
            Some("a b")
        );
        assert_eq!(form_boundary("multipart/mixed; boundary=abc"), None);
        assert_eq!(form_boundary("multipart/form-data"), None);
        assert_eq!(form_boundary("text/plain"), None);
    }

    #[test]
    fn first_value_wins_and_names_ignore_case() {
        let mut fields = FormFields::default();
        fields.insert("Key", "a".into());
        fields.insert("KEY", "b".into());
        assert_eq!(fields.get("key"), Some("a"));
        fields.set("key", "c".into());
        assert_eq!(fields.iter().collect::<Vec<_>>(), vec![("key", "c")]);
    }
}
