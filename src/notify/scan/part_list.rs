//! The CompleteMultipartUpload request: the parts it lists, for the
//! completed object's size.

use super::*;

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
