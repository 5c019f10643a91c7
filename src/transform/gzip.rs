//! The built-in [`Gzip`] codec: RFC 1952 members around raw deflate
//! (through `flate2`), with the gzip framing written and read here so that
//! decoding is push-based with a bounded output window, as [`Decode`] wants
//! (`flate2`'s gzip readers and writers pull, or grow their output).
//!
//! Each frame is one gzip member; the concatenation of members is a valid
//! gzip file whose plaintext is the concatenation of theirs (RFC 1952 §2.2),
//! which `gzip -d` and every multi-member reader honour. Skippable frames
//! are empty members whose header carries the payload in its `FEXTRA`
//! field: they decode to nothing.

use std::io;

use flate2::{Compress, Compression, Crc, Decompress, FlushCompress, FlushDecompress, Status};

use super::codec::{Codec, Decode, Encode};

/// gzip at a level: each frame one gzip member (deflate through `flate2`),
/// so a stored object is one multi-member gzip file that `gzip -d` reads as
/// it is; skippable frames are empty members whose header's extra field
/// carries the bytes (at most 64 KiB a member), and decode to nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gzip {
    level: u32,
}

impl Gzip {
    /// The codec's name in object metadata.
    pub const NAME: &'static str = "gzip";

    /// gzip at `level` (1..=9; 6 is gzip's own default).
    pub fn new(level: u32) -> Gzip {
        Gzip { level }
    }

    /// The compression level.
    pub fn level(&self) -> u32 {
        self.level
    }
}

impl Default for Gzip {
    fn default() -> Self {
        Gzip::new(6)
    }
}

const ID: [u8; 2] = [0x1f, 0x8b];
const DEFLATE: u8 = 8;
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
/// RFC 1952's "unknown" operating system: the bytes do not depend on ours.
const OS_UNKNOWN: u8 = 255;
/// The fixed header: ID, CM, FLG, MTIME (0: none), XFL, OS.
const FIXED_HEADER: usize = 10;
/// The subfield id s3tap's skippable members carry in `FEXTRA`.
const SUBFIELD_ID: [u8; 2] = *b"S3";
/// One subfield's payload at most: `XLEN` is 16 bits and holds the
/// subfield's own 4-byte id and length too.
const MAX_SUBFIELD: usize = u16::MAX as usize - 4;
/// A final, empty block with fixed Huffman codes: the smallest valid
/// deflate stream, which decodes to nothing.
const EMPTY_DEFLATE: [u8; 2] = [0x03, 0x00];
/// CRC-32 and ISIZE of an empty member.
const EMPTY_TRAILER: [u8; 8] = [0; 8];
/// Bytes a skippable member adds around its payload: the fixed header,
/// `XLEN`, the subfield header, the empty deflate stream and the trailer.
const SKIPPABLE_MEMBER: usize = FIXED_HEADER + 2 + 4 + EMPTY_DEFLATE.len() + EMPTY_TRAILER.len();

fn header(flags: u8, level: u32, out: &mut Vec<u8>) {
    // XFL: 2 for the slowest level, 4 for the fastest (RFC 1952 §2.3.1).
    let xfl = match level {
        9 => 2,
        1 => 4,
        _ => 0,
    };
    out.extend_from_slice(&ID);
    out.extend_from_slice(&[DEFLATE, flags, 0, 0, 0, 0, xfl, OS_UNKNOWN]);
}

impl Codec for Gzip {
    fn name(&self) -> &'static str {
        Gzip::NAME
    }

    fn encoder(&self) -> io::Result<Box<dyn Encode>> {
        Ok(Box::new(GzipEncoder {
            deflate: Compress::new(Compression::new(self.level), false),
            crc: Crc::new(),
            level: self.level,
            started: false,
        }))
    }

    fn decoder(&self) -> io::Result<Box<dyn Decode>> {
        Ok(Box::new(GzipDecoder::new()))
    }

    /// One empty member per `MAX_SUBFIELD` bytes of payload; the first
    /// takes the remainder, so the last one holds the payload's end whole
    /// (an index reader finds its footer there).
    fn skippable(&self, payload: &[u8], out: &mut Vec<u8>) {
        let members = payload.len().div_ceil(MAX_SUBFIELD).max(1);
        let first = payload.len() - (members - 1) * MAX_SUBFIELD;
        let mut rest = payload;
        for i in 0..members {
            let take = if i == 0 { first } else { MAX_SUBFIELD };
            let (chunk, after) = rest.split_at(take);
            rest = after;
            header(FEXTRA, 0, out);
            let len = u16::try_from(chunk.len()).expect("at most MAX_SUBFIELD");
            out.extend_from_slice(&(len + 4).to_le_bytes());
            out.extend_from_slice(&SUBFIELD_ID);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(chunk);
            out.extend_from_slice(&EMPTY_DEFLATE);
            out.extend_from_slice(&EMPTY_TRAILER);
        }
    }

    fn skippable_len(&self, payload: usize) -> usize {
        payload + SKIPPABLE_MEMBER * payload.div_ceil(MAX_SUBFIELD).max(1)
    }

    fn skippable_trailer(&self) -> usize {
        EMPTY_DEFLATE.len() + EMPTY_TRAILER.len()
    }

    fn skippable_payload(&self, mut frames: &[u8]) -> Option<Vec<u8>> {
        let mut payload = Vec::with_capacity(frames.len());
        while !frames.is_empty() {
            let fixed = frames.get(..FIXED_HEADER)?;
            if fixed[..2] != ID || fixed[2] != DEFLATE || fixed[3] != FEXTRA {
                return None;
            }
            let xlen = usize::from(u16::from_le_bytes(
                frames
                    .get(FIXED_HEADER..FIXED_HEADER + 2)?
                    .try_into()
                    .ok()?,
            ));
            let extra = frames.get(FIXED_HEADER + 2..FIXED_HEADER + 2 + xlen)?;
            let len = usize::from(u16::from_le_bytes(extra.get(2..4)?.try_into().ok()?));
            if extra[..2] != SUBFIELD_ID || len + 4 != xlen {
                return None;
            }
            payload.extend_from_slice(&extra[4..]);
            let end = FIXED_HEADER + 2 + xlen;
            let tail = frames.get(end..end + self.skippable_trailer())?;
            if tail[..2] != EMPTY_DEFLATE || tail[2..] != EMPTY_TRAILER {
                return None;
            }
            frames = &frames[end + self.skippable_trailer()..];
        }
        Some(payload)
    }
}

struct GzipEncoder {
    deflate: Compress,
    crc: Crc,
    level: u32,
    /// Whether the current member's header is written.
    started: bool,
}

/// Output room reserved per step; deflate fills what it can and is called
/// again for the rest.
const STEP: usize = 128 * 1024;

impl GzipEncoder {
    fn start(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            header(0, self.level, out);
            self.started = true;
        }
    }
}

impl Encode for GzipEncoder {
    fn write(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        self.start(out);
        self.crc.update(input);
        while !input.is_empty() {
            out.reserve(STEP);
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(input, out, FlushCompress::None)
                .map_err(io::Error::other)?;
            let read = (self.deflate.total_in() - before) as usize;
            input = &input[read..];
        }
        Ok(())
    }

    fn end_frame(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        // Ended even when nothing was written: an empty member decodes to
        // nothing, so an empty upload is still a valid gzip file.
        self.start(out);
        loop {
            out.reserve(STEP);
            let status = self
                .deflate
                .compress_vec(&[], out, FlushCompress::Finish)
                .map_err(io::Error::other)?;
            if status == Status::StreamEnd {
                break;
            }
        }
        out.extend_from_slice(&self.crc.sum().to_le_bytes());
        out.extend_from_slice(&self.crc.amount().to_le_bytes());
        self.deflate.reset();
        self.crc.reset();
        self.started = false;
        Ok(())
    }
}

/// Where the decoder is in the member it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The fixed header, `have` bytes of it read.
    Fixed { have: usize },
    /// `XLEN`, `have` bytes of it read.
    ExtraLen { have: usize },
    /// The extra field, `left` bytes to pass over.
    Extra { left: usize },
    /// The zero-terminated file name.
    Name,
    /// The zero-terminated comment.
    Comment,
    /// The header CRC, `left` bytes to pass over.
    HeaderCrc { left: usize },
    /// The deflate stream.
    Deflate,
    /// CRC-32 and ISIZE, `have` bytes of them read.
    Trailer { have: usize },
}

struct GzipDecoder {
    state: State,
    flags: u8,
    /// The fixed header, `XLEN` or the trailer as it arrives.
    buffer: [u8; FIXED_HEADER],
    inflate: Decompress,
    crc: Crc,
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("gzip: {what}"))
}

impl GzipDecoder {
    fn new() -> Self {
        GzipDecoder {
            state: State::Fixed { have: 0 },
            flags: 0,
            buffer: [0; FIXED_HEADER],
            inflate: Decompress::new(false),
            crc: Crc::new(),
        }
    }

    /// The header part after the one `done` stands for, as `flags` ask.
    fn after(&self, done: State) -> State {
        let order = [
            (FEXTRA, State::ExtraLen { have: 0 }),
            (FNAME, State::Name),
            (FCOMMENT, State::Comment),
            (FHCRC, State::HeaderCrc { left: 2 }),
        ];
        let from = match done {
            State::Fixed { .. } => 0,
            State::Extra { .. } => 1,
            State::Name => 2,
            State::Comment => 3,
            _ => 4,
        };
        order[from..]
            .iter()
            .find(|(flag, _)| self.flags & flag != 0)
            .map_or(State::Deflate, |&(_, state)| state)
    }

    /// Reads header or trailer bytes from `input`; returns how many.
    fn framing(&mut self, input: &[u8]) -> io::Result<usize> {
        match self.state {
            State::Fixed { have } => {
                let take = (FIXED_HEADER - have).min(input.len());
                self.buffer[have..have + take].copy_from_slice(&input[..take]);
                let have = have + take;
                self.state = State::Fixed { have };
                if have == FIXED_HEADER {
                    if self.buffer[..2] != ID {
                        return Err(corrupt("not a gzip member"));
                    }
                    if self.buffer[2] != DEFLATE {
                        return Err(corrupt("compression method is not deflate"));
                    }
                    self.flags = self.buffer[3];
                    self.state = self.after(self.state);
                }
                Ok(take)
            }
            State::ExtraLen { have } => {
                let take = (2 - have).min(input.len());
                self.buffer[have..have + take].copy_from_slice(&input[..take]);
                self.state = if have + take == 2 {
                    State::Extra {
                        left: usize::from(u16::from_le_bytes([self.buffer[0], self.buffer[1]])),
                    }
                } else {
                    State::ExtraLen { have: have + take }
                };
                Ok(take)
            }
            State::Extra { left } => {
                let take = left.min(input.len());
                self.state = if take == left {
                    self.after(self.state)
                } else {
                    State::Extra { left: left - take }
                };
                Ok(take)
            }
            State::Name | State::Comment => Ok(match input.iter().position(|&b| b == 0) {
                Some(end) => {
                    self.state = self.after(self.state);
                    end + 1
                }
                None => input.len(),
            }),
            State::HeaderCrc { left } => {
                let take = left.min(input.len());
                self.state = if take == left {
                    State::Deflate
                } else {
                    State::HeaderCrc { left: left - take }
                };
                Ok(take)
            }
            State::Trailer { have } => {
                let take = (8 - have).min(input.len());
                self.buffer[have..have + take].copy_from_slice(&input[..take]);
                let have = have + take;
                self.state = State::Trailer { have };
                if have == 8 {
                    let word = |at: usize| {
                        u32::from_le_bytes(self.buffer[at..at + 4].try_into().expect("4 bytes"))
                    };
                    if word(0) != self.crc.sum() || word(4) != self.crc.amount() {
                        return Err(corrupt("CRC-32 or length mismatch"));
                    }
                    self.crc.reset();
                    self.inflate.reset(false);
                    self.state = State::Fixed { have: 0 };
                }
                Ok(take)
            }
            State::Deflate => unreachable!("deflate data is not framing"),
        }
    }
}

impl Decode for GzipDecoder {
    fn decode(&mut self, input: &[u8], out: &mut [u8]) -> io::Result<(usize, usize)> {
        let (mut read, mut written) = (0, 0);
        while read < input.len() && written < out.len() {
            if self.state != State::Deflate {
                let in_trailer = matches!(self.state, State::Trailer { .. });
                read += self.framing(&input[read..])?;
                if in_trailer && self.frame_complete() {
                    // A member ends here: the caller may stop at it.
                    break;
                }
                continue;
            }
            let (before_in, before_out) = (self.inflate.total_in(), self.inflate.total_out());
            let status = self
                .inflate
                .decompress(&input[read..], &mut out[written..], FlushDecompress::None)
                .map_err(|e| corrupt(&e.to_string()))?;
            let produced = (self.inflate.total_out() - before_out) as usize;
            let consumed = (self.inflate.total_in() - before_in) as usize;
            self.crc.update(&out[written..written + produced]);
            read += consumed;
            written += produced;
            match status {
                Status::StreamEnd => self.state = State::Trailer { have: 0 },
                // Stuck for want of input or room: the caller comes back.
                _ if consumed == 0 && produced == 0 => break,
                Status::Ok | Status::BufError => {}
            }
        }
        Ok((read, written))
    }

    fn frame_complete(&self) -> bool {
        self.state == State::Fixed { have: 0 }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn encode(codec: &Gzip, frames: &[&[u8]], padding: usize) -> Vec<u8> {
        let mut encoder = codec.encoder().unwrap();
        let mut stored = Vec::new();
        for frame in frames {
            // In odd pieces, as a body arrives.
            for piece in frame.chunks(7_777) {
                encoder.write(piece, &mut stored).unwrap();
            }
            encoder.end_frame(&mut stored).unwrap();
            codec.skippable(&vec![0xa5; padding], &mut stored);
        }
        stored
    }

    #[test]
    fn members_and_skippable_members_are_one_gzip_file_to_an_independent_reader() {
        let codec = Gzip::default();
        let big: Vec<u8> = (0..400_000u32).map(|i| (i % 251) as u8).collect();
        let stored = encode(&codec, &[b"hello ", &big, b""], 70_000);
        let mut plain = Vec::new();
        flate2::read::MultiGzDecoder::new(&stored[..])
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, [&b"hello "[..], &big].concat());
    }

    #[test]
    fn the_decoder_reads_any_split_of_the_input_into_a_small_window() {
        let codec = Gzip::new(1);
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 13) as u8).collect();
        let stored = encode(&codec, &[&big, b"tail"], 10);
        // A member written by another encoder, with a name and a comment.
        let mut foreign = flate2::GzBuilder::new()
            .filename("f.txt")
            .comment("made elsewhere")
            .extra(vec![1, 2, 3])
            .write(Vec::new(), Compression::fast());
        std::io::Write::write_all(&mut foreign, b" and more").unwrap();
        let stored = [stored, foreign.finish().unwrap()].concat();
        for split in [1, 9, 4096, stored.len()] {
            let mut decoder = codec.decoder().unwrap();
            let (mut plain, mut window) = (Vec::new(), [0u8; 1000]);
            for mut piece in stored.chunks(split) {
                while !piece.is_empty() {
                    let (read, written) = decoder.decode(piece, &mut window).unwrap();
                    assert!(read > 0 || written > 0, "progress at split {split}");
                    plain.extend_from_slice(&window[..written]);
                    piece = &piece[read..];
                }
            }
            assert_eq!(
                plain,
                [&big[..], b"tail and more"].concat(),
                "split {split}"
            );
        }
    }

    #[test]
    fn a_flipped_byte_is_an_error_not_wrong_bytes() {
        let codec = Gzip::default();
        let mut stored = encode(&codec, &[b"some text that is long enough"], 0);
        let crc_at = stored.len() - 8 - SKIPPABLE_MEMBER;
        stored[crc_at] ^= 1;
        let mut decoder = codec.decoder().unwrap();
        let mut window = [0u8; 100];
        let mut input = &stored[..];
        let error = loop {
            match decoder.decode(input, &mut window) {
                Ok((read, _)) => input = &input[read..],
                Err(e) => break e,
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn skippable_payloads_read_back_at_every_size() {
        let codec = Gzip::default();
        for len in [
            0,
            1,
            16,
            MAX_SUBFIELD,
            MAX_SUBFIELD + 1,
            3 * MAX_SUBFIELD + 5,
        ] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut frames = Vec::new();
            codec.skippable(&payload, &mut frames);
            assert_eq!(frames.len(), codec.skippable_len(len), "len {len}");
            assert_eq!(codec.skippable_payload(&frames), Some(payload.clone()));
            let last = &frames[frames.len() - codec.skippable_trailer() - len.min(16)..];
            assert_eq!(
                &last[..len.min(16)],
                &payload[len - len.min(16)..],
                "the payload's end is whole in the last member"
            );
        }
    }
}
