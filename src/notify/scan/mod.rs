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

mod delete_request;
mod delete_result;
mod part_list;
mod result;
#[cfg(test)]
mod tests;

pub(crate) use delete_request::{too_long_error, DeleteRequestScanner};
pub use delete_result::{parse_delete_objects_result, DeleteResultScanner, DeletedKey};
pub(crate) use part_list::PartListScanner;
pub(crate) use result::ResultScanner;
