//! Streaming readers for the small XML documents around an S3 operation:
//! the DeleteObjects request and result, the CompleteMultipartUpload part
//! list, and the `<...Result>`/`<Error>` body a `200` can carry.
//!
//! The layer reads these while they stream (request up, response down), in
//! whatever chunks the network cut them, and never holds a whole document:
//! a tag, the text of one element and the few fields it needs. The documents
//! are tiny and regular, so a small tokenizer is used instead of an XML
//! crate: no DTDs, attributes or namespaces are needed, and a pull parser
//! over chunks would make holding "at most one element" awkward anyway.
//!
//! [`parse_delete_objects_result`] and the incremental
//! [`DeleteResultScanner`] are public; the others serve the layer.

/// Longest tag kept: names are short and S3 puts at most an `xmlns` on the
/// root, so anything longer is cut (the name at its start survives).
const MAX_TAG: usize = 512;
/// Longest text kept for one element: a key is at most 1024 bytes of UTF-8,
/// and the worst entity spelling (`&#x10FFFF;`) is 10 bytes per character.
pub(crate) const MAX_TEXT: usize = 16 * 1024;

/// Most keys one DeleteObjects request may name (S3's limit; more is
/// `MalformedXML`).
pub const MAX_DELETE_KEYS: usize = 1000;

/// Most bytes of a DeleteObjects request body the layer reads: 1000 keys of
/// the longest 1024 bytes with version ids fit in about 1.2 MB of plain
/// XML; 4 MiB leaves room for entity-escaped keys. A longer body is refused
/// with `MalformedXML` (S3 refuses such a document as well: it cannot name
/// at most 1000 valid keys).
pub const MAX_DELETE_REQUEST_BYTES: u64 = 4 * 1024 * 1024;

/// Most parts a CompleteMultipartUpload request may list (S3's limit).
const MAX_PARTS: usize = 10_000;

/// Most bytes of a CompleteMultipartUpload request read for its part list:
/// 10000 parts with checksums fit in about 3 MB. Past it the part list is
/// unknown (the request is still forwarded: the upstream judges it).
pub(crate) const MAX_COMPLETE_REQUEST_BYTES: u64 = 4 * 1024 * 1024;

/// What the tokenizer reports.
enum XmlEvent<'a> {
    /// `<name ...>` (local name, namespace prefix dropped).
    Open(&'a [u8]),
    /// `</name>` or the end of `<name/>`, with the element's text when it
    /// had no child element and the text decoded (`None` if it did not, or
    /// was longer than [`MAX_TEXT`]).
    Close(&'a [u8], Option<String>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ScanState {
    /// Between tags.
    Text,
    /// After `<`, up to `>`.
    Tag,
    /// Inside `<!-- ... -->`.
    Comment,
    /// Inside `<![CDATA[ ... ]]>`.
    CData,
}

/// The tokenizer: bytes in, open and close events out, wherever the chunks
/// split (inside a tag, an entity or a multi-byte character).
#[derive(Debug)]
struct Tokens {
    state: ScanState,
    tag: Vec<u8>,
    tag_len: usize,
    /// The last bytes seen in a comment or CDATA section, to find its end.
    tail: [u8; 2],
    text: Vec<u8>,
    text_overflow: bool,
    /// No child element opened since the innermost open tag.
    leaf: bool,
}

impl Tokens {
    fn new() -> Self {
        Tokens {
            state: ScanState::Text,
            tag: Vec::new(),
            tag_len: 0,
            tail: [0; 2],
            text: Vec::new(),
            text_overflow: false,
            leaf: false,
        }
    }

    fn feed(&mut self, chunk: &[u8], on: &mut dyn FnMut(XmlEvent<'_>)) {
        for &byte in chunk {
            self.step(byte, on);
        }
    }

    fn push_text(&mut self, byte: u8) {
        if self.text.len() < MAX_TEXT {
            self.text.push(byte);
        } else {
            self.text_overflow = true;
        }
    }

    fn step(&mut self, byte: u8, on: &mut dyn FnMut(XmlEvent<'_>)) {
        match self.state {
            ScanState::Text => {
                if byte == b'<' {
                    self.state = ScanState::Tag;
                    self.tag.clear();
                    self.tag_len = 0;
                } else if self.leaf {
                    self.push_text(byte);
                }
            }
            ScanState::Tag => {
                if byte == b'>' {
                    self.state = ScanState::Text;
                    self.end_tag(on);
                    return;
                }
                self.tag_len += 1;
                if self.tag.len() < MAX_TAG {
                    self.tag.push(byte);
                }
                if self.tag_len == 3 && self.tag == b"!--" {
                    self.state = ScanState::Comment;
                    self.tail = [0; 2];
                } else if self.tag_len == 8 && self.tag == b"![CDATA[" {
                    self.state = ScanState::CData;
                    self.tail = [0; 2];
                }
            }
            ScanState::Comment => {
                if byte == b'>' && self.tail == *b"--" {
                    self.state = ScanState::Text;
                }
                self.tail = [self.tail[1], byte];
            }
            ScanState::CData => {
                if byte == b'>' && self.tail == *b"]]" {
                    // The two `]` were pushed as text; take them back.
                    if self.leaf && !self.text_overflow {
                        self.text.truncate(self.text.len().saturating_sub(2));
                    }
                    self.state = ScanState::Text;
                    return;
                }
                self.tail = [self.tail[1], byte];
                if !self.leaf {
                    return;
                }
                // CDATA content is literal: protect `&` from entity decoding.
                if byte == b'&' {
                    for &b in b"&amp;" {
                        self.push_text(b);
                    }
                } else {
                    self.push_text(byte);
                }
            }
        }
    }

    fn end_tag(&mut self, on: &mut dyn FnMut(XmlEvent<'_>)) {
        let tag = std::mem::take(&mut self.tag);
        let (closing, body) = match tag.strip_prefix(b"/") {
            Some(rest) => (true, rest),
            None => (false, &tag[..]),
        };
        if body.first().is_some_and(|&b| b == b'?' || b == b'!') {
            self.tag = tag;
            return;
        }
        let self_closing = !closing && body.last() == Some(&b'/');
        let name_end = body
            .iter()
            .position(|b| b.is_ascii_whitespace() || *b == b'/')
            .unwrap_or(body.len());
        let name = &body[..name_end];
        // Drop a namespace prefix (`s3:Key`); S3 uses none, others might.
        let name = match name.iter().rposition(|&b| b == b':') {
            Some(colon) => &name[colon + 1..],
            None => name,
        };
        if closing {
            let text = if self.leaf && !self.text_overflow {
                decode_entities(&self.text)
            } else {
                None
            };
            on(XmlEvent::Close(name, text));
            self.leaf = false;
        } else {
            on(XmlEvent::Open(name));
            if self_closing {
                on(XmlEvent::Close(name, Some(String::new())));
                self.leaf = false;
            } else {
                self.leaf = true;
            }
        }
        self.text.clear();
        self.text_overflow = false;
        self.tag = tag;
    }
}

/// Decodes the five predefined XML entities and numeric character
/// references. `None` if the text is not UTF-8 or a reference is malformed.
pub(crate) fn decode_entities(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    if !text.contains('&') {
        return Some(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp + 1..];
        let semi = rest.find(';')?;
        let entity = &rest[..semi];
        rest = &rest[semi + 1..];
        let ch = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                {
                    u32::from_str_radix(hex, 16).ok()?
                } else if let Some(dec) = entity.strip_prefix('#') {
                    dec.parse::<u32>().ok()?
                } else {
                    return None;
                };
                char::from_u32(code)?
            }
        };
        out.push(ch);
    }
    out.push_str(rest);
    Some(out)
}

// ---- DeleteObjects result -------------------------------------------------

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

// ---- DeleteObjects request ------------------------------------------------

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

// ---- CompleteMultipartUpload request ---------------------------------------

/// The part numbers a CompleteMultipartUpload request lists.
#[derive(Debug)]
pub(crate) struct PartListScanner {
    tokens: Tokens,
    depth: usize,
    bytes: u64,
    in_part: bool,
    number: Option<u32>,
    /// Each `<Part>`'s `<PartNumber>`, in order.
    pub(crate) parts: Vec<u32>,
    /// The root element closed.
    pub(crate) complete: bool,
    /// A part without a readable number, too many parts or bytes.
    pub(crate) unreadable: bool,
}

impl PartListScanner {
    pub(crate) fn new() -> Self {
        PartListScanner {
            tokens: Tokens::new(),
            depth: 0,
            bytes: 0,
            in_part: false,
            number: None,
            parts: Vec::new(),
            complete: false,
            unreadable: false,
        }
    }

    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        if self.unreadable {
            return;
        }
        self.bytes += chunk.len() as u64;
        if self.bytes > MAX_COMPLETE_REQUEST_BYTES {
            self.unreadable = true;
            self.parts = Vec::new();
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
                if self.depth == 2 && name == b"Part" {
                    self.in_part = true;
                    self.number = None;
                }
            }
            XmlEvent::Close(name, text) => {
                self.depth = self.depth.saturating_sub(1);
                match (self.depth, name) {
                    (0, _) => self.complete = true,
                    (1, b"Part") if self.in_part => {
                        self.in_part = false;
                        match self.number.take() {
                            Some(number) if self.parts.len() < MAX_PARTS => self.parts.push(number),
                            _ => self.unreadable = true,
                        }
                    }
                    (2, b"PartNumber") if self.in_part => {
                        self.number = text.and_then(|t| t.trim().parse().ok());
                    }
                    _ => {}
                }
            }
        }
    }
}

// ---- `<...Result>` or `<Error>` ---------------------------------------------

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

#[cfg(test)]
mod tests {
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
}
