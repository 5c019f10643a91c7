//! aws-chunked framing: an incremental decoder that slices payload bytes out
//! of the frames it is given (no copy), the chunk and trailer signature
//! chain, and the encoder side used when re-framing.
//!
//! ```text
//! signed:    <hex>;chunk-signature=<sig>\r\n<data>\r\n ... 0;chunk-signature=<sig>\r\n
//!            [trailer lines, x-amz-trailer-signature:<sig>\r\n] \r\n
//! unsigned:  <hex>\r\n<data>\r\n ... 0\r\n [trailer lines] \r\n
//! ```

use std::fmt::Write as _;

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};

use super::key::SigningKey;
use super::time::AmzDate;
use crate::crypto::hmac_sha256_parts;

/// SHA-256 of the empty string, part of every chunk's string to sign.
pub const EMPTY_SHA256_HEX: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The trailer line that carries the trailer signature.
pub const TRAILER_SIGNATURE_NAME: &str = "x-amz-trailer-signature";

/// What went wrong in the framing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkedError {
    /// A chunk header is not `<hex>[;chunk-signature=<64 hex>]`.
    #[error("malformed chunk header {0:?}")]
    MalformedChunkHeader(String),
    /// A chunk's data is not followed by CRLF.
    #[error("chunk data is not followed by CRLF")]
    MissingChunkTerminator,
    /// A chunk is larger than the configured cap.
    #[error("chunk of {size} bytes exceeds the limit of {limit} bytes")]
    ChunkTooLarge {
        /// The declared size.
        size: u64,
        /// The cap.
        limit: u64,
    },
    /// A header or trailer line is longer than the cap.
    #[error("framing line longer than {0} bytes")]
    LineTooLong(usize),
    /// A trailer line is not `name:value`.
    #[error("malformed trailer line {0:?}")]
    MalformedTrailer(String),
    /// The trailer section is larger than the cap.
    #[error("trailer section larger than {0} bytes")]
    TrailerTooLarge(usize),
    /// Bytes follow the end of the stream.
    #[error("unexpected bytes after the final chunk")]
    TrailingBytes,
    /// The stream ended before the final chunk and its terminator.
    #[error("the stream ended before the final chunk")]
    Truncated,
}

/// One step of a decoded stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkEvent {
    /// A data chunk of `size` bytes starts; its signature, in signed mode.
    ChunkStart {
        /// Declared size.
        size: u64,
        /// The `chunk-signature` extension.
        signature: Option<[u8; 32]>,
    },
    /// Payload bytes of the current chunk (a slice of the input).
    Data(Bytes),
    /// The current data chunk and its CRLF are complete.
    ChunkEnd,
    /// The zero-size chunk; its signature, in signed mode.
    FinalChunk {
        /// The `chunk-signature` extension.
        signature: Option<[u8; 32]>,
    },
    /// One trailing header, name lower-cased, value trimmed.
    Trailer {
        /// Lower-case name.
        name: String,
        /// Trimmed value.
        value: String,
    },
    /// The `x-amz-trailer-signature` line.
    TrailerSignature([u8; 32]),
    /// The stream is complete.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    ChunkHeader,
    ChunkData { remaining: u64 },
    ChunkCrlf { seen: u8 },
    Trailers,
    Done,
}

/// Limits the decoder enforces.
#[derive(Debug, Clone, Copy)]
pub struct ChunkedLimits {
    /// Largest chunk accepted (S3: 16 MiB for signed chunks).
    pub max_chunk_size: u64,
    /// Longest chunk-header or trailer line.
    pub max_line_len: usize,
    /// Largest trailer section.
    pub max_trailer_size: usize,
}

impl Default for ChunkedLimits {
    fn default() -> Self {
        ChunkedLimits {
            max_chunk_size: 16 * 1024 * 1024,
            max_line_len: 4096,
            max_trailer_size: 16 * 1024,
        }
    }
}

/// An incremental aws-chunked decoder. Feed it frames in order; it yields
/// events whose data are slices of those frames, whatever the frame split.
#[derive(Debug)]
pub struct ChunkedDecoder {
    signed: bool,
    trailer: bool,
    limits: ChunkedLimits,
    state: State,
    line: BytesMut,
    trailer_bytes: usize,
}

impl ChunkedDecoder {
    /// A decoder for signed (`chunk-signature` on every chunk) or unsigned
    /// chunks, with or without a trailer section.
    pub fn new(signed: bool, trailer: bool, limits: ChunkedLimits) -> Self {
        ChunkedDecoder {
            signed,
            trailer,
            limits,
            state: State::ChunkHeader,
            line: BytesMut::new(),
            trailer_bytes: 0,
        }
    }

    /// Whether the whole stream has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes all of `input`, appending events to `events`.
    pub fn decode(
        &mut self,
        mut input: Bytes,
        events: &mut Vec<ChunkEvent>,
    ) -> Result<(), ChunkedError> {
        while !input.is_empty() {
            match self.state {
                State::ChunkHeader => {
                    let Some(line) = self.take_line(&mut input)? else {
                        break;
                    };
                    let (size, signature) = self.parse_chunk_header(&line)?;
                    if size == 0 {
                        events.push(ChunkEvent::FinalChunk { signature });
                        self.state = State::Trailers;
                    } else {
                        events.push(ChunkEvent::ChunkStart { size, signature });
                        self.state = State::ChunkData { remaining: size };
                    }
                }
                State::ChunkData { remaining } => {
                    let take = remaining.min(input.len() as u64) as usize;
                    events.push(ChunkEvent::Data(input.split_to(take)));
                    let remaining = remaining - take as u64;
                    self.state = if remaining == 0 {
                        State::ChunkCrlf { seen: 0 }
                    } else {
                        State::ChunkData { remaining }
                    };
                }
                State::ChunkCrlf { seen } => {
                    let expected = b"\r\n"[usize::from(seen)];
                    if input[0] != expected {
                        return Err(ChunkedError::MissingChunkTerminator);
                    }
                    let _ = input.split_to(1);
                    if seen == 1 {
                        events.push(ChunkEvent::ChunkEnd);
                        self.state = State::ChunkHeader;
                    } else {
                        self.state = State::ChunkCrlf { seen: 1 };
                    }
                }
                State::Trailers => {
                    let before = input.len();
                    let line = self.take_line(&mut input)?;
                    self.trailer_bytes += before - input.len();
                    if self.trailer_bytes > self.limits.max_trailer_size {
                        return Err(ChunkedError::TrailerTooLarge(self.limits.max_trailer_size));
                    }
                    let Some(line) = line else {
                        break;
                    };
                    if line.is_empty() {
                        events.push(ChunkEvent::End);
                        self.state = State::Done;
                    } else {
                        events.push(self.parse_trailer_line(&line)?);
                    }
                }
                State::Done => return Err(ChunkedError::TrailingBytes),
            }
        }
        Ok(())
    }

    /// Checks that the stream is complete once the input has ended.
    pub fn finish(&self) -> Result<(), ChunkedError> {
        if self.is_done() {
            Ok(())
        } else {
            Err(ChunkedError::Truncated)
        }
    }

    /// Takes one CRLF-terminated line, buffering a partial line across
    /// frames. Only framing lines are copied, never payload.
    fn take_line(&mut self, input: &mut Bytes) -> Result<Option<Bytes>, ChunkedError> {
        let newline = input.iter().position(|&b| b == b'\n');
        let taken = match newline {
            Some(index) => input.split_to(index + 1),
            None => input.split_to(input.len()),
        };
        if self.line.len() + taken.len() > self.limits.max_line_len + 2 {
            return Err(ChunkedError::LineTooLong(self.limits.max_line_len));
        }
        if newline.is_none() {
            self.line.extend_from_slice(&taken);
            return Ok(None);
        }
        let mut line = if self.line.is_empty() {
            taken
        } else {
            self.line.extend_from_slice(&taken);
            self.line.split().freeze()
        };
        // Every framing line ends in CRLF; a bare LF is a framing error.
        if line.len() < 2 || line[line.len() - 2] != b'\r' {
            let text = String::from_utf8_lossy(&line).into_owned();
            return Err(match self.state {
                State::Trailers => ChunkedError::MalformedTrailer(text),
                _ => ChunkedError::MalformedChunkHeader(text),
            });
        }
        line.truncate(line.len() - 2);
        Ok(Some(line))
    }

    fn parse_chunk_header(&self, line: &[u8]) -> Result<(u64, Option<[u8; 32]>), ChunkedError> {
        let malformed =
            || ChunkedError::MalformedChunkHeader(String::from_utf8_lossy(line).into_owned());
        let (size_text, extension) = match line.iter().position(|&b| b == b';') {
            Some(index) => (&line[..index], Some(&line[index + 1..])),
            None => (line, None),
        };
        if size_text.is_empty()
            || size_text.len() > 16
            || !size_text.iter().all(u8::is_ascii_hexdigit)
        {
            return Err(malformed());
        }
        let size =
            u64::from_str_radix(std::str::from_utf8(size_text).map_err(|_| malformed())?, 16)
                .map_err(|_| malformed())?;
        if size > self.limits.max_chunk_size {
            return Err(ChunkedError::ChunkTooLarge {
                size,
                limit: self.limits.max_chunk_size,
            });
        }
        let signature = match (self.signed, extension) {
            (true, Some(extension)) => {
                let hex_signature = extension
                    .strip_prefix(b"chunk-signature=")
                    .filter(|s| s.len() == 64)
                    .ok_or_else(malformed)?;
                let mut signature = [0u8; 32];
                hex::decode_to_slice(hex_signature, &mut signature).map_err(|_| malformed())?;
                Some(signature)
            }
            (false, None) => None,
            _ => return Err(malformed()),
        };
        Ok((size, signature))
    }

    fn parse_trailer_line(&self, line: &[u8]) -> Result<ChunkEvent, ChunkedError> {
        let malformed =
            || ChunkedError::MalformedTrailer(String::from_utf8_lossy(line).into_owned());
        if !self.trailer {
            // Without a trailer the zero chunk must be followed by CRLF alone.
            return Err(malformed());
        }
        let text = std::str::from_utf8(line).map_err(|_| malformed())?;
        let (name, value) = text.split_once(':').ok_or_else(malformed)?;
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim();
        let name_is_valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_is_valid {
            return Err(malformed());
        }
        if name == TRAILER_SIGNATURE_NAME {
            if !self.signed {
                return Err(malformed());
            }
            let mut signature = [0u8; 32];
            if value.len() != 64 || hex::decode_to_slice(value, &mut signature).is_err() {
                return Err(malformed());
            }
            return Ok(ChunkEvent::TrailerSignature(signature));
        }
        Ok(ChunkEvent::Trailer {
            name,
            value: value.to_owned(),
        })
    }
}

/// The running chunk-signature chain: each signature covers the previous
/// one, starting from the request's seed signature.
#[derive(Clone)]
pub struct ChunkSigner {
    key: SigningKey,
    // `AWS4-HMAC-SHA256-PAYLOAD\n<date>\n<scope>\n`, built once.
    payload_prefix: Vec<u8>,
    trailer_prefix: Vec<u8>,
    previous_hex: [u8; 64],
}

impl ChunkSigner {
    /// A chain that starts at the request's `seed_signature`.
    pub fn new(key: SigningKey, date: &AmzDate, scope: &str, seed_signature: &[u8; 32]) -> Self {
        let mut payload_prefix = String::with_capacity(96);
        let _ = write!(
            payload_prefix,
            "AWS4-HMAC-SHA256-PAYLOAD\n{date}\n{scope}\n"
        );
        let mut trailer_prefix = String::with_capacity(96);
        let _ = write!(
            trailer_prefix,
            "AWS4-HMAC-SHA256-TRAILER\n{date}\n{scope}\n"
        );
        let mut previous_hex = [0u8; 64];
        hex::encode_to_slice(seed_signature, &mut previous_hex).expect("64 hex digits");
        ChunkSigner {
            key,
            payload_prefix: payload_prefix.into_bytes(),
            trailer_prefix: trailer_prefix.into_bytes(),
            previous_hex,
        }
    }

    /// The signature of the next chunk, whose data has this SHA-256, and
    /// advances the chain. The final chunk uses the digest of no bytes.
    pub fn next_chunk(&mut self, chunk_sha256: &[u8; 32]) -> [u8; 32] {
        let mut digest_hex = [0u8; 64];
        hex::encode_to_slice(chunk_sha256, &mut digest_hex).expect("64 hex digits");
        let signature = hmac_sha256_parts(
            self.key.as_bytes(),
            &[
                &self.payload_prefix,
                &self.previous_hex,
                b"\n",
                EMPTY_SHA256_HEX.as_bytes(),
                b"\n",
                &digest_hex,
            ],
        );
        hex::encode_to_slice(signature, &mut self.previous_hex).expect("64 hex digits");
        signature
    }

    /// The trailer signature over the canonical trailer lines
    /// (`name:value\n` each, as sent), and advances the chain.
    pub fn trailer(&mut self, canonical_trailers: &[u8]) -> [u8; 32] {
        let mut digest_hex = [0u8; 64];
        hex::encode_to_slice(Sha256::digest(canonical_trailers), &mut digest_hex)
            .expect("64 hex digits");
        let signature = hmac_sha256_parts(
            self.key.as_bytes(),
            &[&self.trailer_prefix, &self.previous_hex, b"\n", &digest_hex],
        );
        hex::encode_to_slice(signature, &mut self.previous_hex).expect("64 hex digits");
        signature
    }
}

impl std::fmt::Debug for ChunkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkSigner").finish_non_exhaustive()
    }
}

/// The SHA-256 of no bytes, as raw digest (the final chunk's data digest).
pub fn empty_sha256() -> [u8; 32] {
    Sha256::digest([]).into()
}

/// The framing line that opens a chunk: `<hex>[;chunk-signature=<sig>]\r\n`.
pub fn chunk_header(size: u64, signature: Option<&[u8; 32]>) -> Bytes {
    let mut line = format!("{size:x}");
    if let Some(signature) = signature {
        line.push_str(";chunk-signature=");
        line.push_str(&hex::encode(signature));
    }
    line.push_str("\r\n");
    Bytes::from(line)
}

/// Length on the wire of a whole aws-chunked body: the encoded length that
/// `Content-Length` must carry for `decoded_length` bytes cut into
/// `chunk_size` chunks, with an optional signed or unsigned trailer section
/// of `trailer_section_len` bytes (the lines after the zero chunk, final CRLF
/// included).
pub fn encoded_length(
    decoded_length: u64,
    chunk_size: u64,
    signed: bool,
    trailer_section_len: Option<u64>,
) -> u64 {
    let signature_len = if signed { 17 + 64 } else { 0 };
    let header_len = |size: u64| format!("{size:x}").len() as u64 + signature_len + 2;
    let full_chunks = decoded_length / chunk_size;
    let last = decoded_length % chunk_size;
    let mut total = full_chunks * (header_len(chunk_size) + chunk_size + 2);
    if last > 0 {
        total += header_len(last) + last + 2;
    }
    total += header_len(0);
    total + trailer_section_len.unwrap_or(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(
        decoder: &mut ChunkedDecoder,
        pieces: &[&[u8]],
    ) -> Result<Vec<ChunkEvent>, ChunkedError> {
        let mut events = Vec::new();
        for piece in pieces {
            decoder.decode(Bytes::copy_from_slice(piece), &mut events)?;
        }
        decoder.finish()?;
        Ok(merge_data(events))
    }

    fn merge_data(events: Vec<ChunkEvent>) -> Vec<ChunkEvent> {
        let mut merged: Vec<ChunkEvent> = Vec::new();
        for event in events {
            if let (Some(ChunkEvent::Data(previous)), ChunkEvent::Data(next)) =
                (merged.last_mut(), &event)
            {
                let mut joined = previous.to_vec();
                joined.extend_from_slice(next);
                *previous = Bytes::from(joined);
                continue;
            }
            merged.push(event);
        }
        merged
    }

    const UNSIGNED: &[u8] = b"5\r\nhello\r\n3\r\nabc\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n";

    #[test]
    fn any_split_gives_the_same_events() {
        let whole = decode_all(
            &mut ChunkedDecoder::new(false, true, ChunkedLimits::default()),
            &[UNSIGNED],
        )
        .unwrap();
        assert_eq!(
            whole,
            vec![
                ChunkEvent::ChunkStart {
                    size: 5,
                    signature: None
                },
                ChunkEvent::Data(Bytes::from_static(b"hello")),
                ChunkEvent::ChunkEnd,
                ChunkEvent::ChunkStart {
                    size: 3,
                    signature: None
                },
                ChunkEvent::Data(Bytes::from_static(b"abc")),
                ChunkEvent::ChunkEnd,
                ChunkEvent::FinalChunk { signature: None },
                ChunkEvent::Trailer {
                    name: "x-amz-checksum-crc32".into(),
                    value: "AAAAAA==".into()
                },
                ChunkEvent::End,
            ]
        );
        for split in 0..UNSIGNED.len() {
            for second in split..UNSIGNED.len() {
                let pieces = [
                    &UNSIGNED[..split],
                    &UNSIGNED[split..second],
                    &UNSIGNED[second..],
                ];
                let mut decoder = ChunkedDecoder::new(false, true, ChunkedLimits::default());
                assert_eq!(
                    decode_all(&mut decoder, &pieces).unwrap(),
                    whole,
                    "split at {split},{second}"
                );
            }
        }
    }

    #[test]
    fn framing_errors_are_reported() {
        let limits = ChunkedLimits {
            max_chunk_size: 8,
            ..ChunkedLimits::default()
        };
        let cases: [(&[u8], ChunkedError); 7] = [
            (
                b"zz\r\nhello\r\n",
                ChunkedError::MalformedChunkHeader("zz".into()),
            ),
            (b"5\r\nhelloXX", ChunkedError::MissingChunkTerminator),
            (b"9\r\n", ChunkedError::ChunkTooLarge { size: 9, limit: 8 }),
            (b"5\r\nhello\r\n", ChunkedError::Truncated),
            (b"0\r\n\r\nextra", ChunkedError::TrailingBytes),
            (
                b"5\nhello\r\n",
                ChunkedError::MalformedChunkHeader("5\n".into()),
            ),
            (
                b"5;chunk-signature=00\r\n",
                ChunkedError::MalformedChunkHeader("5;chunk-signature=00".into()),
            ),
        ];
        for (input, expected) in cases {
            let mut decoder = ChunkedDecoder::new(false, false, limits);
            assert_eq!(
                decode_all(&mut decoder, &[input]).unwrap_err(),
                expected,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let mut decoder = ChunkedDecoder::new(false, false, limits);
        assert!(matches!(
            decode_all(
                &mut decoder,
                &[b"0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"]
            ),
            Err(ChunkedError::MalformedTrailer(_))
        ));
    }

    #[test]
    fn encoded_length_matches_the_documented_example() {
        // 66560 bytes in 64 KiB signed chunks: the S3 documentation's example.
        assert_eq!(encoded_length(66560, 65536, true, None), 66824);
    }
}
