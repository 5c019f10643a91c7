//! The streaming transform trait ([`Codec`], [`Encode`], [`Decode`]), the
//! built-in [`Zstd`] codec, and the frame index s3tap appends to every
//! transformed object.

use std::fmt;
use std::io;

use super::gzip::Gzip;

/// One upload's encoder: fed the plaintext in pieces, it appends the
/// transformed bytes to a buffer the caller owns (and drains).
pub trait Encode: Send {
    /// Transforms `input`, appending output to `out`.
    fn write(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()>;
    /// Ends the current frame: the bytes appended so far decode on their
    /// own, and the next [`write`](Encode::write) starts a new frame.
    fn end_frame(&mut self, out: &mut Vec<u8>) -> io::Result<()>;
}

/// One download's decoder: reads transformed bytes, writes plaintext into a
/// window of fixed size, so memory never depends on the ratio.
pub trait Decode: Send {
    /// Decodes from `input` into `out`; returns (bytes read, bytes written).
    /// Frames the codec marks as skippable (padding, the index) produce
    /// nothing.
    fn decode(&mut self, input: &[u8], out: &mut [u8]) -> io::Result<(usize, usize)>;
    /// Whether every frame begun so far was decoded to its end, its
    /// checksum (where the format has one) checked and its plaintext all
    /// written: true before the first byte and between frames. A call to
    /// [`decode`](Decode::decode) returns at the end of a frame, so a reader
    /// can stop there without reading the next one.
    fn frame_complete(&self) -> bool;
}

/// A payload transform: a name stored with each object it wrote, an encoder
/// for uploads, a decoder for downloads, and a way to write frames its
/// decoder passes over (padding to the upstream's minimum part size, and
/// s3tap's frame index).
///
/// The format must decode the concatenation of independently encoded
/// frames as the concatenation of their plaintexts: that is what lets each
/// part of a multipart upload be encoded alone.
pub trait Codec: Send + Sync + fmt::Debug {
    /// Stored in `x-amz-meta-s3tap-transform`; how reads find the decoder.
    fn name(&self) -> &'static str;
    /// A fresh encoder.
    fn encoder(&self) -> io::Result<Box<dyn Encode>>;
    /// A fresh decoder.
    fn decoder(&self) -> io::Result<Box<dyn Decode>>;
    /// Appends skippable frames carrying `payload` to `out` (one frame, or
    /// several where the format bounds a frame's size).
    fn skippable(&self, payload: &[u8], out: &mut Vec<u8>);
    /// How many bytes [`skippable`](Codec::skippable) writes for a payload
    /// of `payload` bytes; never less than `payload` plus the length for an
    /// empty one, so padding can be sized from it.
    fn skippable_len(&self, payload: usize) -> usize;
    /// How many bytes [`skippable`](Codec::skippable) writes after the
    /// payload's last byte. The payload's last 16 bytes stay contiguous
    /// (the index's footer is read from them).
    fn skippable_trailer(&self) -> usize;
    /// The payload of `frames`, which [`skippable`](Codec::skippable)
    /// wrote (exactly those bytes); `None` when they are not such frames.
    fn skippable_payload(&self, frames: &[u8]) -> Option<Vec<u8>>;
}

/// zstd (RFC 8878) at a level, through libzstd. Frames are standard zstd
/// frames; padding and the index are skippable frames, which the `zstd`
/// command line tool and every conforming decoder pass over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Zstd {
    level: i32,
}

impl Zstd {
    /// The codec's name in object metadata.
    pub const NAME: &'static str = "zstd";

    /// zstd at `level` (1..=22; 3 is zstd's own default).
    pub fn new(level: i32) -> Zstd {
        Zstd { level }
    }

    /// The compression level.
    pub fn level(&self) -> i32 {
        self.level
    }
}

impl Default for Zstd {
    fn default() -> Self {
        Zstd::new(3)
    }
}

/// The magic of the skippable frames s3tap writes (one of the sixteen
/// RFC 8878 reserves for skippable frames).
const SKIPPABLE_MAGIC: u32 = 0x184D_2A53;

impl Codec for Zstd {
    fn name(&self) -> &'static str {
        Zstd::NAME
    }

    fn encoder(&self) -> io::Result<Box<dyn Encode>> {
        let mut encoder = zstd::stream::raw::Encoder::new(self.level)?;
        // Each frame ends with a checksum of its plaintext (4 bytes, XXH64),
        // which every decoder checks: damage to stored bytes that still
        // decodes is found, as gzip's CRC-32 finds it. libzstd leaves it off
        // by default; the `zstd` CLI turns it on.
        encoder.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
        Ok(Box::new(ZstdEncoder(encoder)))
    }

    fn decoder(&self) -> io::Result<Box<dyn Decode>> {
        Ok(Box::new(ZstdDecoder {
            decoder: zstd::stream::raw::Decoder::new()?,
            frame_complete: true,
        }))
    }

    fn skippable(&self, payload: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
        let len = u32::try_from(payload.len()).expect("skippable frames stay below 4 GiB");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(payload);
    }

    fn skippable_len(&self, payload: usize) -> usize {
        8 + payload
    }

    fn skippable_trailer(&self) -> usize {
        0
    }

    fn skippable_payload(&self, frames: &[u8]) -> Option<Vec<u8>> {
        let magic = u32::from_le_bytes(frames.get(..4)?.try_into().ok()?);
        let len = u32::from_le_bytes(frames.get(4..8)?.try_into().ok()?);
        (magic == SKIPPABLE_MAGIC && len as usize == frames.len() - 8).then(|| frames[8..].to_vec())
    }
}

struct ZstdEncoder(zstd::stream::raw::Encoder<'static>);

/// Output room reserved per step; libzstd fills what it can and is called
/// again for the rest.
const STEP: usize = 128 * 1024;

impl Encode for ZstdEncoder {
    fn write(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
        let mut input = InBuffer::around(input);
        while input.pos() < input.src.len() {
            out.reserve(STEP);
            let pos = out.len();
            let mut buffer = OutBuffer::around_pos(out, pos);
            self.0.run(&mut input, &mut buffer)?;
        }
        Ok(())
    }

    fn end_frame(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        use zstd::stream::raw::{Operation, OutBuffer};
        // Ended even when nothing was written: an empty frame decodes to
        // nothing, so an empty upload is still a valid zstd file.
        loop {
            out.reserve(STEP);
            let pos = out.len();
            let left = {
                let mut buffer = OutBuffer::around_pos(out, pos);
                self.0.finish(&mut buffer, true)?
            };
            if left == 0 {
                break;
            }
        }
        self.0.reinit()?;
        Ok(())
    }
}

struct ZstdDecoder {
    decoder: zstd::stream::raw::Decoder<'static>,
    frame_complete: bool,
}

impl Decode for ZstdDecoder {
    fn decode(&mut self, input: &[u8], out: &mut [u8]) -> io::Result<(usize, usize)> {
        use zstd::stream::raw::Operation;
        let status = self.decoder.run_on_buffers(input, out)?;
        // libzstd's hint is 0 exactly when a frame was decoded, its content
        // checksum checked and its output flushed; a call stops there.
        if status.bytes_read > 0 || status.bytes_written > 0 {
            self.frame_complete = status.remaining == 0;
        }
        Ok((status.bytes_read, status.bytes_written))
    }

    fn frame_complete(&self) -> bool {
        self.frame_complete
    }
}

/// The built-in codecs' names, as objects carry them in their metadata and
/// clients in the ETags they were given.
pub(crate) const CODEC_NAMES: [&str; 2] = [Zstd::NAME, Gzip::NAME];

/// The codec called `name`, as objects name it in their metadata.
pub(crate) fn by_name(name: &str) -> Option<Box<dyn Codec>> {
    match name {
        Zstd::NAME => Some(Box::new(Zstd::default())),
        Gzip::NAME => Some(Box::new(Gzip::default())),
        _ => None,
    }
}

// ---- the frame index --------------------------------------------------------

/// Ends every index: how a reader knows the last bytes of an object are one.
const INDEX_MAGIC: &[u8; 8] = b"S3TAPIX1";

/// Bytes after the entries: their count and the magic.
pub(crate) const INDEX_FOOTER: usize = 16;

/// One run of frames: how many bytes it takes in the stored object
/// (padding included) and how many plaintext bytes it decodes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub(crate) stored: u64,
    pub(crate) plain: u64,
}

/// Where each run of frames starts in the stored object and in the
/// plaintext: what a `Range` read needs to start decoding at the right frame.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FrameIndex {
    pub(crate) entries: Vec<IndexEntry>,
}

impl FrameIndex {
    /// The plaintext length.
    pub(crate) fn plain_len(&self) -> u64 {
        self.entries.iter().map(|e| e.plain).sum()
    }

    /// Appends the index, as one skippable frame, to `out`.
    pub(crate) fn write(&self, codec: &dyn Codec, out: &mut Vec<u8>) {
        let mut payload = Vec::with_capacity(self.entries.len() * 16 + INDEX_FOOTER);
        for entry in &self.entries {
            payload.extend_from_slice(&entry.stored.to_le_bytes());
            payload.extend_from_slice(&entry.plain.to_le_bytes());
        }
        payload.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        payload.extend_from_slice(INDEX_MAGIC);
        codec.skippable(&payload, out);
    }

    /// How many bytes at the end of an object hold an index of `count`
    /// entries (the skippable frames' framing included); `None` for a count
    /// no index of an object could have.
    pub(crate) fn stored_size(codec: &dyn Codec, count: u64) -> Option<u64> {
        let payload = usize::try_from(count.checked_mul(16)?)
            .ok()?
            .checked_add(INDEX_FOOTER)?;
        // Bounds the count before the codec sizes its frames.
        (payload <= 1 << 30).then(|| codec.skippable_len(payload) as u64)
    }

    /// The entry count an object's last bytes announce, or `None` when they
    /// are not an s3tap index.
    pub(crate) fn count_from_tail(codec: &dyn Codec, tail: &[u8]) -> Option<u64> {
        let end = tail.len().checked_sub(codec.skippable_trailer())?;
        let payload_end = &tail[..end];
        if payload_end.len() < INDEX_FOOTER || &payload_end[end - 8..] != INDEX_MAGIC {
            return None;
        }
        let n = &payload_end[end - 16..end - 8];
        Some(u64::from_le_bytes(n.try_into().ok()?))
    }

    /// Reads the index from an object's last bytes (at least
    /// [`stored_size`](FrameIndex::stored_size) of them).
    pub(crate) fn from_tail(codec: &dyn Codec, tail: &[u8]) -> Option<FrameIndex> {
        let count = FrameIndex::count_from_tail(codec, tail)?;
        let size = usize::try_from(FrameIndex::stored_size(codec, count)?).ok()?;
        if size > tail.len() {
            return None;
        }
        let payload = codec.skippable_payload(&tail[tail.len() - size..])?;
        if payload.len() != INDEX_FOOTER + 16 * count as usize {
            return None;
        }
        let entries = payload[..payload.len() - INDEX_FOOTER]
            .chunks_exact(16)
            .map(|c| IndexEntry {
                stored: u64::from_le_bytes(c[..8].try_into().expect("8 bytes")),
                plain: u64::from_le_bytes(c[8..].try_into().expect("8 bytes")),
            })
            .collect();
        Some(FrameIndex { entries })
    }

    /// The stored byte range (inclusive) to fetch for plaintext bytes
    /// `first..=last`, and how many plaintext bytes to skip at its start.
    pub(crate) fn plan(&self, first: u64, last: u64) -> Option<(u64, u64, u64)> {
        let (mut stored_at, mut plain_at) = (0u64, 0u64);
        let mut start = None;
        for entry in &self.entries {
            let plain_end = plain_at + entry.plain;
            if start.is_none() && first < plain_end {
                start = Some((stored_at, plain_at));
            }
            if let Some((stored_start, plain_start)) = start {
                if last < plain_end {
                    return Some((
                        stored_start,
                        stored_at + entry.stored - 1,
                        first - plain_start,
                    ));
                }
            }
            stored_at += entry.stored;
            plain_at = plain_end;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(codec: &dyn Codec, frames: &[&[u8]]) -> Vec<u8> {
        let mut enc = codec.encoder().unwrap();
        let mut stored = Vec::new();
        for frame in frames {
            enc.write(frame, &mut stored).unwrap();
            enc.end_frame(&mut stored).unwrap();
            codec.skippable(&[0; 100], &mut stored);
        }
        let index = FrameIndex {
            entries: vec![IndexEntry {
                stored: 1,
                plain: 2,
            }],
        };
        index.write(codec, &mut stored);
        assert_eq!(FrameIndex::from_tail(codec, &stored), Some(index));
        let mut dec = codec.decoder().unwrap();
        let (mut input, mut plain) = (&stored[..], Vec::new());
        let mut window = [0u8; 1000];
        while !input.is_empty() {
            let (read, written) = dec.decode(input, &mut window).unwrap();
            plain.extend_from_slice(&window[..written]);
            input = &input[read..];
        }
        plain
    }

    #[test]
    fn frames_padding_and_index_decode_to_the_plaintext() {
        let big = vec![7u8; 300_000];
        for codec in [
            &Zstd::default() as &dyn Codec,
            &super::super::Gzip::default(),
        ] {
            assert_eq!(
                roundtrip(codec, &[b"hello ", &big, b""]),
                [&b"hello "[..], &big].concat()
            );
            assert_eq!(roundtrip(codec, &[b""]), b"");
        }
    }

    #[test]
    fn a_range_starts_at_the_run_that_holds_it() {
        let index = FrameIndex {
            entries: vec![
                IndexEntry {
                    stored: 10,
                    plain: 100,
                },
                IndexEntry {
                    stored: 20,
                    plain: 100,
                },
                IndexEntry {
                    stored: 5,
                    plain: 50,
                },
            ],
        };
        assert_eq!(index.plan(0, 0), Some((0, 9, 0)));
        assert_eq!(index.plan(150, 199), Some((10, 29, 50)));
        assert_eq!(index.plan(150, 200), Some((10, 34, 50)));
        assert_eq!(index.plan(249, 249), Some((30, 34, 49)));
        assert_eq!(index.plan(250, 250), None);
        assert_eq!(index.plan_len(), 250);
    }

    impl FrameIndex {
        fn plan_len(&self) -> u64 {
            self.plain_len()
        }
    }
}
