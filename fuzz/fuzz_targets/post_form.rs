//! The form-upload reader and the POST policy parser on arbitrary bytes:
//! the input, cut into pieces of a size its first byte picks, is read as a
//! `multipart/form-data` body; any policy field it carries (and the raw
//! input as JSON) is parsed and checked against the fields. No panic, and
//! the file part's bytes are never more than the input's.
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use s3tap::post::{read_form, PostPolicy};

/// Polls a future whose input is all in memory to completion.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let piece = usize::from(data[0]).max(1);
    let body = &data[1..];
    if let Ok(policy) = PostPolicy::from_json(body) {
        let _ = policy.content_length_range();
    }
    let chunks: Vec<Result<Bytes, std::io::Error>> = body
        .chunks(piece)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let stream = futures_util::stream::iter(chunks);
    block_on(async {
        let Ok((fields, mut file)) = read_form(stream, "XyZ").await else {
            return;
        };
        if let Some(policy) = fields.get("policy") {
            if let Ok(policy) = PostPolicy::from_base64(policy) {
                let _ = policy.check(&fields, "bkt", 1_700_000_000);
            }
        }
        let mut seen = 0usize;
        while let Ok(Some(chunk)) = file.field.chunk().await {
            seen += chunk.len();
        }
        assert!(seen <= body.len());
    });
});
