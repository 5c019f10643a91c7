//! The DeleteObjects result: which keys a `<DeleteResult>` says were
//! deleted (public: [`parse_delete_objects_result`], [`DeleteResultScanner`]).

use super::*;

/// One `<Deleted>` entry of a DeleteObjects result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeletedKey {
    /// The key, XML entities decoded.
    pub key: String,
    /// `<VersionId>`: the version that was deleted, when the request named one.
    pub version_id: Option<String>,
    /// `<DeleteMarker>true</DeleteMarker>`: a delete marker was created (or
    /// the version deleted was one).
    pub delete_marker: bool,
    /// `<DeleteMarkerVersionId>`: the version id of that delete marker.
    pub delete_marker_version_id: Option<String>,
}

/// Reads a complete DeleteObjects response body. `<Error>` entries (keys
/// that were not deleted) are left out.
pub fn parse_delete_objects_result(xml: &[u8]) -> Vec<DeletedKey> {
    let mut scanner = DeleteResultScanner::new();
    let mut keys = scanner.feed(xml);
    keys.extend(scanner.finish());
    keys
}

/// Which kind of entry of a result is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    Deleted,
    Error,
}

/// Reads a DeleteObjects `<DeleteResult>` body chunk by chunk, wherever the
/// chunks split (inside a tag, an entity or a multi-byte character), and
/// hands out each deleted key as soon as its `</Deleted>` closes.
///
/// It holds the current tag and the fields of one entry, never more; a field
/// longer than any valid key makes that entry be dropped. The keys of
/// `<Error>` entries (not deleted) are kept too, up to 1000, for a quiet
/// request whose result lists only those.
///
/// ```
/// use s3tap::notify::DeleteResultScanner;
///
/// let mut scanner = DeleteResultScanner::new();
/// assert!(scanner.feed(b"<DeleteResult><Deleted><Ke").is_empty());
/// let keys = scanner.feed(b"y>a &amp; b</Key></Deleted></DeleteResult>");
/// assert_eq!(keys[0].key, "a & b");
/// ```
#[derive(Debug)]
pub struct DeleteResultScanner {
    tokens: Tokens,
    depth: usize,
    entry: Option<Entry>,
    current: DeletedKey,
    has_key: bool,
    broken: bool,
    failed: Vec<(String, Option<String>)>,
    /// The document is an `<Error>` itself, not a result.
    error_document: bool,
}

impl Default for DeleteResultScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl DeleteResultScanner {
    /// A scanner at the start of a document.
    pub fn new() -> Self {
        DeleteResultScanner {
            tokens: Tokens::new(),
            depth: 0,
            entry: None,
            current: DeletedKey::default(),
            has_key: false,
            broken: false,
            failed: Vec::new(),
            error_document: false,
        }
    }

    /// Feeds the next chunk of the body; returns the keys whose `<Deleted>`
    /// element closed within it.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<DeletedKey> {
        let mut out = Vec::new();
        let mut tokens = std::mem::replace(&mut self.tokens, Tokens::new());
        tokens.feed(chunk, &mut |event| self.on_event(event, &mut out));
        self.tokens = tokens;
        out
    }

    /// Ends the document. An entry left open (a truncated body) is not
    /// reported: without its closing tag it may be incomplete.
    pub fn finish(self) -> Vec<DeletedKey> {
        Vec::new()
    }

    /// The `(key, version id)` of each `<Error>` entry seen so far.
    pub(crate) fn failed(&self) -> &[(String, Option<String>)] {
        &self.failed
    }

    /// Whether the whole document was an `<Error>` (the operation failed).
    pub(crate) fn is_error_document(&self) -> bool {
        self.error_document
    }

    fn on_event(&mut self, event: XmlEvent<'_>, out: &mut Vec<DeletedKey>) {
        match event {
            XmlEvent::Open(name) => {
                self.depth += 1;
                if self.depth == 1 && name == b"Error" {
                    self.error_document = true;
                }
                let entry = match name {
                    b"Deleted" => Some(Entry::Deleted),
                    // `<Error>` entries are children of the root; the root
                    // itself being `<Error>` is a failed request.
                    b"Error" if self.depth == 2 => Some(Entry::Error),
                    _ => None,
                };
                if entry.is_some() {
                    self.entry = entry;
                    self.current = DeletedKey::default();
                    self.has_key = false;
                    self.broken = false;
                }
            }
            XmlEvent::Close(name, text) => {
                self.depth = self.depth.saturating_sub(1);
                let Some(entry) = self.entry else {
                    return;
                };
                match (entry, name) {
                    (Entry::Deleted, b"Deleted") | (Entry::Error, b"Error") => {
                        self.entry = None;
                        if !self.has_key || self.broken {
                            return;
                        }
                        let current = std::mem::take(&mut self.current);
                        if entry == Entry::Deleted {
                            out.push(current);
                        } else if self.failed.len() < MAX_DELETE_KEYS {
                            self.failed.push((current.key, current.version_id));
                        }
                    }
                    (_, b"Key") => match text {
                        // `<Key/>`: an empty key is not a key S3 could delete.
                        Some(key) if !key.is_empty() => {
                            self.current.key = key;
                            self.has_key = true;
                        }
                        _ => self.broken = true,
                    },
                    (_, b"VersionId") => match text {
                        Some(value) => self.current.version_id = Some(value),
                        None => self.broken = true,
                    },
                    (Entry::Deleted, b"DeleteMarker") => match text {
                        Some(value) => self.current.delete_marker = value.trim() == "true",
                        None => self.broken = true,
                    },
                    (Entry::Deleted, b"DeleteMarkerVersionId") => match text {
                        Some(value) => self.current.delete_marker_version_id = Some(value),
                        None => self.broken = true,
                    },
                    _ => {}
                }
            }
        }
    }
}
