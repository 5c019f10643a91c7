//! Trailer sections after the final chunk: any bytes decode or fail cleanly,
//! and whatever decodes has lower-case names and trimmed values.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use s3tap::sigv4::{ChunkEvent, ChunkedDecoder, ChunkedLimits};

fuzz_target!(|data: &[u8]| {
    for signed in [false, true] {
        let mut input = if signed {
            format!("0;chunk-signature={}\r\n", "0".repeat(64)).into_bytes()
        } else {
            b"0\r\n".to_vec()
        };
        input.extend_from_slice(data);
        let mut decoder = ChunkedDecoder::new(signed, true, ChunkedLimits::default());
        let mut events = Vec::new();
        if decoder.decode(Bytes::from(input), &mut events).is_ok() {
            for event in events {
                if let ChunkEvent::Trailer { name, value } = event {
                    assert_eq!(name, name.to_ascii_lowercase());
                    assert_eq!(value, value.trim());
                }
            }
        }
    }
});
