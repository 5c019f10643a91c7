//! The `<...Result>` or `<Error>` body a `200` can carry (completions and
//! copies): the final ETag, or the error that makes it a failure.

use super::*;

/// Reads the body of an operation that answers `200` with a result
/// document (CompleteMultipartUpload, CopyObject, UploadPartCopy): the
/// root's `<ETag>`, or, when the root is `<Error>`, its `<Code>` (S3 can
/// fail such an operation after the `200` was sent).
#[derive(Debug)]
pub(crate) struct ResultScanner {
    tokens: Tokens,
    depth: usize,
    /// The root element was `<Error>`.
    pub(crate) error: bool,
    /// `<Error><Code>`.
    pub(crate) code: Option<String>,
    /// The root's `<ETag>`, quotes removed.
    pub(crate) etag: Option<String>,
    /// The root element closed.
    pub(crate) complete: bool,
}

impl ResultScanner {
    pub(crate) fn new() -> Self {
        ResultScanner {
            tokens: Tokens::new(),
            depth: 0,
            error: false,
            code: None,
            etag: None,
            complete: false,
        }
    }

    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        if self.complete {
            return;
        }
        let mut tokens = std::mem::replace(&mut self.tokens, Tokens::new());
        tokens.feed(chunk, &mut |event| self.on_event(event));
        self.tokens = tokens;
    }

    fn on_event(&mut self, event: XmlEvent<'_>) {
        match event {
            XmlEvent::Open(name) => {
                self.depth += 1;
                if self.depth == 1 && name == b"Error" {
                    self.error = true;
                }
            }
            XmlEvent::Close(name, text) => {
                self.depth = self.depth.saturating_sub(1);
                match (self.depth, name) {
                    (0, _) => self.complete = true,
                    (1, b"ETag") if !self.error => {
                        self.etag = text.map(|t| t.trim().trim_matches('"').to_owned());
                    }
                    (1, b"Code") if self.error => self.code = text.map(|t| t.trim().to_owned()),
                    _ => {}
                }
            }
        }
    }
}
