//! The S3 documentation's aws-chunked examples (66560 bytes of `a` in
//! 64 KiB chunks, with and without a signed CRC32C trailer), stored as data
//! in `tests/data/s3-streaming-examples.json`: s3tap's canonical request,
//! chunk-signature chain and decoder must reproduce every published value.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use s3tap::sigv4::chunked::{chunk_header, encoded_length};
use s3tap::sigv4::{
    sign_request, AmzDate, CanonicalRequest, ChecksumAlgorithm, ChunkEvent, ChunkSigner,
    ChunkedDecoder, ChunkedLimits, SigningKey, UriEncoding,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn examples() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/s3-streaming-examples.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap()
}

fn signature(value: &Value) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text(value), &mut out).unwrap();
    out
}

/// The shared facts of both examples.
struct Common {
    secret: String,
    date: AmzDate,
    region: String,
    service: String,
    method: String,
    path: String,
    object: Vec<u8>,
    chunk_size: usize,
}

impl Common {
    fn load(data: &Value) -> Common {
        let byte = text(&data["object_byte"]).as_bytes()[0];
        Common {
            secret: text(&data["secret_access_key"]).into(),
            date: AmzDate::parse(text(&data["date"])).unwrap(),
            region: text(&data["region"]).into(),
            service: text(&data["service"]).into(),
            method: text(&data["method"]).into(),
            path: text(&data["path"]).into(),
            object: vec![byte; data["object_size"].as_u64().unwrap() as usize],
            chunk_size: data["chunk_size"].as_u64().unwrap() as usize,
        }
    }

    fn scope(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date.date_stamp(),
            self.region,
            self.service
        )
    }

    fn key(&self) -> SigningKey {
        SigningKey::derive(
            &self.secret,
            &self.date.date_stamp(),
            &self.region,
            &self.service,
        )
    }

    fn chunks(&self) -> Vec<&[u8]> {
        self.object.chunks(self.chunk_size).collect()
    }
}

/// The seed signature from the documented headers.
fn seed_signature(common: &Common, example: &Value) -> [u8; 32] {
    let mut headers = HeaderMap::new();
    let mut names = Vec::new();
    for pair in example["canonical_headers"].as_array().unwrap() {
        let name = text(&pair[0]);
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(text(&pair[1])).unwrap(),
        );
        names.push(name);
    }
    let request = CanonicalRequest {
        method: &common.method,
        path: &common.path,
        query: None,
        skip_query_param: None,
        headers: &headers,
        authority: None,
        signed_headers: &names,
        payload_hash: text(&example["payload_hash"]),
        uri_encoding: UriEncoding::S3,
    };
    let signed = sign_request(&request, &common.key(), &common.date, &common.scope());
    assert_eq!(
        hex::encode(Sha256::digest(&signed.canonical_request)),
        text(&example["canonical_request_sha256"]),
        "{}: canonical request",
        example["name"]
    );
    signed.signature
}

fn trailer_line(example: &Value) -> Option<String> {
    let trailer = example.get("trailer")?;
    Some(format!("{}:{}\n", text(&trailer[0]), text(&trailer[1])))
}

#[test]
fn seed_chunk_and_trailer_signatures_match_the_documentation() {
    let data = examples();
    let common = Common::load(&data);
    let chunks = common.chunks();
    assert_eq!(chunks.len(), 2);
    let digests: Vec<[u8; 32]> = chunks
        .iter()
        .map(|chunk| Sha256::digest(chunk).into())
        .chain([Sha256::digest([]).into()])
        .collect();
    for (digest, expected) in digests
        .iter()
        .zip(data["chunk_data_sha256"].as_array().unwrap())
    {
        assert_eq!(hex::encode(digest), text(expected));
    }
    for example in data["examples"].as_array().unwrap() {
        let name = &example["name"];
        let seed = seed_signature(&common, example);
        assert_eq!(seed, signature(&example["seed_signature"]), "{name}: seed");
        let mut signer = ChunkSigner::new(common.key(), &common.date, &common.scope(), &seed);
        let expected = example["chunk_signatures"].as_array().unwrap();
        assert_eq!(expected.len(), digests.len());
        for (index, (digest, expected)) in digests.iter().zip(expected).enumerate() {
            assert_eq!(
                signer.next_chunk(digest),
                signature(expected),
                "{name}: chunk {index}"
            );
        }
        if let Some(line) = trailer_line(example) {
            // The published checksum is the CRC32C of the object.
            assert_eq!(
                ChecksumAlgorithm::Crc32c.checksum_base64(&common.object),
                text(&example["trailer"][1])
            );
            assert_eq!(
                hex::encode(Sha256::digest(line.as_bytes())),
                text(&example["trailer_sha256"])
            );
            assert_eq!(
                signer.trailer(line.as_bytes()),
                signature(&example["trailer_signature"]),
                "{name}: trailer"
            );
        }
    }
}

/// The whole aws-chunked body of an example, built with `chunk_header`.
fn wire_body(common: &Common, example: &Value) -> Vec<u8> {
    let mut body = Vec::new();
    let signatures = example["chunk_signatures"].as_array().unwrap();
    for (chunk, expected) in common.chunks().into_iter().zip(signatures) {
        body.extend_from_slice(&chunk_header(
            chunk.len() as u64,
            Some(&signature(expected)),
        ));
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
    }
    let last = signature(signatures.last().unwrap());
    body.extend_from_slice(&chunk_header(0, Some(&last)));
    if let Some(line) = trailer_line(example) {
        body.extend_from_slice(line.trim_end().as_bytes());
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(
            format!(
                "x-amz-trailer-signature:{}\r\n",
                text(&example["trailer_signature"])
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(b"\r\n");
    body
}

/// Decodes `body` cut at `cuts`, returning the events with data joined.
fn decode_split(body: &Bytes, cuts: &[usize], trailer: bool) -> Vec<ChunkEvent> {
    let mut decoder = ChunkedDecoder::new(true, trailer, ChunkedLimits::default());
    let mut events = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain([&body.len()]) {
        let cut = cut.clamp(start, body.len());
        decoder.decode(body.slice(start..cut), &mut events).unwrap();
        start = cut;
    }
    decoder.finish().unwrap();
    let mut merged: Vec<ChunkEvent> = Vec::new();
    for event in events {
        match (merged.last_mut(), event) {
            (Some(ChunkEvent::Data(previous)), ChunkEvent::Data(next)) => {
                let mut joined = previous.to_vec();
                joined.extend_from_slice(&next);
                *previous = Bytes::from(joined);
            }
            (_, event) => merged.push(event),
        }
    }
    merged
}

fn expected_events(common: &Common, example: &Value) -> Vec<ChunkEvent> {
    let signatures = example["chunk_signatures"].as_array().unwrap();
    let mut events = Vec::new();
    for (chunk, expected) in common.chunks().into_iter().zip(signatures) {
        events.push(ChunkEvent::ChunkStart {
            size: chunk.len() as u64,
            signature: Some(signature(expected)),
        });
        events.push(ChunkEvent::Data(Bytes::copy_from_slice(chunk)));
        events.push(ChunkEvent::ChunkEnd);
    }
    events.push(ChunkEvent::FinalChunk {
        signature: Some(signature(signatures.last().unwrap())),
    });
    if let Some(trailer) = example.get("trailer") {
        events.push(ChunkEvent::Trailer {
            name: text(&trailer[0]).into(),
            value: text(&trailer[1]).into(),
        });
        events.push(ChunkEvent::TrailerSignature(signature(
            &example["trailer_signature"],
        )));
    }
    events.push(ChunkEvent::End);
    events
}

#[test]
fn documented_bodies_have_the_documented_length() {
    let data = examples();
    let common = Common::load(&data);
    let plain = &data["examples"][0];
    let length = wire_body(&common, plain).len() as u64;
    // Content-Length of the signed example, and of the same body as
    // encoded_length computes it.
    assert_eq!(length, 66824);
    assert_eq!(
        encoded_length(66560, common.chunk_size as u64, true, None),
        length
    );
    let trailer = &data["examples"][1];
    let body = wire_body(&common, trailer);
    let trailer_section = body.len() as u64 - (length - 2);
    assert_eq!(
        encoded_length(66560, common.chunk_size as u64, true, Some(trailer_section)),
        body.len() as u64
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// However the body is cut into frames, the decoder yields the
    /// documented signatures and the 66560 data bytes.
    #[test]
    fn any_frame_split_yields_the_documented_events(
        cuts in proptest::collection::vec(0usize..67_000, 0..12),
        which in 0usize..2,
    ) {
        let data = examples();
        let common = Common::load(&data);
        let example = &data["examples"][which];
        let body = Bytes::from(wire_body(&common, example));
        let mut cuts = cuts;
        cuts.sort_unstable();
        let events = decode_split(&body, &cuts, example.get("trailer").is_some());
        prop_assert_eq!(events, expected_events(&common, example));
    }
}

/// Cuts at every byte of the framing (where a partial line must be held),
/// not only where proptest happens to land.
#[test]
fn every_cut_in_the_framing_is_handled() {
    let data = examples();
    let common = Common::load(&data);
    for example in data["examples"].as_array().unwrap() {
        let body = Bytes::from(wire_body(&common, example));
        let expected = expected_events(&common, example);
        let trailer = example.get("trailer").is_some();
        let framing: Vec<usize> = (0..120)
            .chain(65_600..65_800)
            .chain(body.len().saturating_sub(300)..body.len())
            .collect();
        for cut in framing {
            assert_eq!(decode_split(&body, &[cut], trailer), expected, "cut {cut}");
        }
    }
}

/// aws-sigv4's own chunk and trailer signers agree with the documentation
/// and with s3tap.
#[test]
fn aws_sigv4_chunk_helpers_agree() {
    let data = examples();
    let common = Common::load(&data);
    let identity: Identity = Credentials::new(
        text(&data["access_key_id"]),
        &common.secret,
        None,
        None,
        "documentation",
    )
    .into();
    let params = aws_sigv4::sign::v4::SigningParams::<()>::builder()
        .identity(&identity)
        .region(&common.region)
        .name(&common.service)
        .time(UNIX_EPOCH + Duration::from_secs(common.date.unix_seconds() as u64))
        .settings(())
        .build()
        .unwrap();
    for example in data["examples"].as_array().unwrap() {
        let mut running = text(&example["seed_signature"]).to_owned();
        let chunks = common.chunks();
        let pieces = chunks.iter().copied().chain([&[][..]]);
        for (chunk, expected) in pieces.zip(example["chunk_signatures"].as_array().unwrap()) {
            let out =
                aws_sigv4::sign::v4::sign_chunk(&Bytes::copy_from_slice(chunk), &running, &params)
                    .unwrap();
            assert_eq!(out.signature(), text(expected));
            running = out.signature().to_owned();
        }
        if let Some(trailer) = example.get("trailer") {
            let mut headers = aws_smithy_runtime_api::http::Headers::new();
            headers.insert(text(&trailer[0]).to_owned(), text(&trailer[1]).to_owned());
            let out = aws_sigv4::sign::v4::sign_trailer(&headers, &running, &params).unwrap();
            assert_eq!(out.signature(), text(&example["trailer_signature"]));
        }
    }
}
