//! The aws-chunked decoder: any split of the input into frames gives the
//! same events and the same verdict as one frame.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use s3tap::sigv4::{ChunkEvent, ChunkedDecoder, ChunkedLimits};

fn decode(pieces: &[&[u8]], signed: bool, trailer: bool) -> (Vec<ChunkEvent>, Result<(), s3tap::sigv4::ChunkedError>) {
    let limits = ChunkedLimits {
        max_chunk_size: 4096,
        max_line_len: 512,
        max_trailer_size: 1024,
    };
    let mut decoder = ChunkedDecoder::new(signed, trailer, limits);
    let mut events = Vec::new();
    for piece in pieces {
        if let Err(error) = decoder.decode(Bytes::copy_from_slice(piece), &mut events) {
            return (merge(events), Err(error));
        }
    }
    let verdict = decoder.finish();
    (merge(events), verdict)
}

/// Data events joined, so different splits compare equal.
fn merge(events: Vec<ChunkEvent>) -> Vec<ChunkEvent> {
    let mut merged: Vec<ChunkEvent> = Vec::new();
    for event in events {
        if let (Some(ChunkEvent::Data(previous)), ChunkEvent::Data(next)) = (merged.last_mut(), &event) {
            let mut joined = previous.to_vec();
            joined.extend_from_slice(next);
            *previous = Bytes::from(joined);
            continue;
        }
        if matches!(&event, ChunkEvent::Data(d) if d.is_empty()) {
            continue;
        }
        merged.push(event);
    }
    merged
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let signed = data[0] & 1 == 1;
    let trailer = data[0] & 2 == 2;
    let split_a = usize::from(data[1]);
    let split_b = usize::from(data[2]);
    let body = &data[3..];
    let a = split_a.min(body.len());
    let b = (a + split_b).min(body.len());
    let whole = decode(&[body], signed, trailer);
    let split = decode(&[&body[..a], &body[a..b], &body[b..]], signed, trailer);
    // Events before an error may stop at different points, but the verdict
    // and, on success, every event must agree.
    assert_eq!(whole.1.is_ok(), split.1.is_ok(), "verdict differs for split {a},{b}");
    if whole.1.is_ok() {
        assert_eq!(whole.0, split.0);
    }
});
