//! The DeleteObjects request: the keys a client asked to delete and its
//! `<Quiet>` flag, read as the request streams up.

use super::*;
use crate::s3error::{S3Error, S3ErrorCode};

/// What a DeleteObjects request body asked for.
#[derive(Debug)]
pub(crate) struct DeleteRequestScanner {
    tokens: Tokens,
    depth: usize,
    bytes: u64,
    in_object: bool,
    key: Option<String>,
    version_id: Option<String>,
    broken_object: bool,
    /// `(key, version id)` of each `<Object>`, in order.
    pub(crate) objects: Vec<(String, Option<String>)>,
    /// `<Quiet>true</Quiet>`.
    pub(crate) quiet: bool,
    /// The root element closed: the list is complete.
    pub(crate) complete: bool,
    /// Something could not be read (an entry without a usable key, text
    /// that does not decode): the list cannot be trusted.
    pub(crate) unreadable: bool,
    /// More than [`MAX_DELETE_KEYS`] objects or [`MAX_DELETE_REQUEST_BYTES`]
    /// bytes.
    pub(crate) over_limit: bool,
}

impl DeleteRequestScanner {
    pub(crate) fn new() -> Self {
        DeleteRequestScanner {
            tokens: Tokens::new(),
            depth: 0,
            bytes: 0,
            in_object: false,
            key: None,
            version_id: None,
            broken_object: false,
            objects: Vec::new(),
            quiet: false,
            complete: false,
            unreadable: false,
            over_limit: false,
        }
    }

    /// Feeds the next chunk; returns `false` once the body is over a limit
    /// (it is then not read further).
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> bool {
        if self.over_limit {
            return false;
        }
        self.bytes += chunk.len() as u64;
        if self.bytes > MAX_DELETE_REQUEST_BYTES {
            self.over_limit = true;
            return false;
        }
        let mut tokens = std::mem::replace(&mut self.tokens, Tokens::new());
        tokens.feed(chunk, &mut |event| self.on_event(event));
        self.tokens = tokens;
        !self.over_limit
    }

    fn on_event(&mut self, event: XmlEvent<'_>) {
        match event {
            XmlEvent::Open(name) => {
                self.depth += 1;
                if self.depth == 2 && name == b"Object" {
                    self.in_object = true;
                    self.key = None;
                    self.version_id = None;
                    self.broken_object = false;
                }
            }
            XmlEvent::Close(name, text) => {
                self.depth = self.depth.saturating_sub(1);
                match (self.depth, name) {
                    (0, _) => self.complete = true,
                    (1, b"Quiet") => {
                        self.quiet = text.is_some_and(|t| t.trim().eq_ignore_ascii_case("true"))
                    }
                    (1, b"Object") if self.in_object => {
                        self.in_object = false;
                        match self.key.take() {
                            Some(key) if !self.broken_object && !key.is_empty() => {
                                if self.objects.len() == MAX_DELETE_KEYS {
                                    self.over_limit = true;
                                } else {
                                    self.objects.push((key, self.version_id.take()));
                                }
                            }
                            _ => self.unreadable = true,
                        }
                    }
                    (2, b"Key") if self.in_object => match text {
                        Some(key) => self.key = Some(key),
                        None => self.broken_object = true,
                    },
                    (2, b"VersionId") if self.in_object => match text {
                        Some(id) => self.version_id = Some(id),
                        None => self.broken_object = true,
                    },
                    _ => {}
                }
            }
        }
    }
}

/// The answer to a DeleteObjects request over the layer's limits.
pub(crate) fn too_long_error() -> S3Error {
    S3Error::new(
        S3ErrorCode::MalformedXML,
        format!(
            "A DeleteObjects request names at most {} keys in at most {} bytes.",
            MAX_DELETE_KEYS, MAX_DELETE_REQUEST_BYTES
        ),
    )
}
