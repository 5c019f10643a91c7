//! [`TransformLayer`]: payload transforms between a verified client and the
//! upstream; built in, zstd or gzip compression of uploads and transparent
//! decompression of downloads, chosen per bucket and key prefix.
//!
//! # Where it sits
//!
//! `SigV4VerifyLayer → (AuthorizeLayer) → TransformLayer → ResignLayer →
//! upstream`. The client's payload hash and checksums cover the
//! **plaintext** and are checked by the verifier before a byte reaches
//! the encoder; the layer consumes the verified body and sends the
//! re-signer new requests whose payload is the encoded bytes, with
//! `x-amz-content-sha256` set to their hex SHA-256 (hashed once, here,
//! from a buffer of at most one part), so the upstream checks the bytes it
//! stores. The client's `x-amz-checksum-*` and `Content-MD5` describe the
//! plaintext and are not forwarded. Requests the layer does not concern
//! pass through untouched, with no copy and no boxing.
//!
//! # What is stored
//!
//! An object written through a rule is a stream of independently
//! decodable frames (a new frame every [`frame_size`](TransformLayer::frame_size)
//! plaintext bytes, and at each client part), possibly skippable padding
//! frames, and at the end one skippable frame holding s3tap's **frame
//! index** (stored and plaintext length of each run of frames). The
//! format's own tool decompresses the stored object as it is: `zstd -d`
//! passes over zstd's skippable frames, and `gzip -d` reads the
//! [`Gzip`] codec's frames as the members of one gzip file, its skippable
//! ones being empty members that carry their bytes in the header's extra
//! field (which is why a codec may write a payload as several frames: a
//! gzip extra field holds at most 64 KiB). Object metadata: `x-amz-meta-s3tap-transform` names the codec;
//! `x-amz-meta-s3tap-length` holds the plaintext length when it was known
//! before the upload was stored (a single `PUT` that fits one part). The
//! object's `Content-Type` and the client's other metadata are stored as
//! sent. Clients never see the `x-amz-meta-s3tap-*` keys, and cannot set
//! them.
//!
//! # Uploads
//!
//! - `PutObject`: encoded into a buffer; if the whole object fits one part
//!   ([`part_size`](TransformLayer::part_size), 8 MiB by default) it is one
//!   `PUT` with a known length. Otherwise the layer opens an upstream
//!   multipart upload and sends each full buffer as a part (each at least
//!   `part_size`), the rest and the index as the last part, and completes
//!   it; a failed body aborts it. Memory per upload: one part.
//! - Client multipart uploads: each `UploadPart` is encoded alone (frames
//!   end at the part's end) and held (at most [`MAX_CLIENT_PART`] encoded
//!   bytes) until its length is known. Every client part is padded to the
//!   upstream's 5 MiB minimum with skippable frames, since the index is
//!   uploaded as one more part after the client's last and so no client
//!   part is last upstream. The part ETag the client gets carries the
//!   part's plaintext and stored lengths; the client hands it back in
//!   `CompleteMultipartUpload`, which gives the layer the index with no
//!   state kept between requests.
//!
//! # Reads
//!
//! A `GET`/`HEAD` is forwarded as it came; when the answer carries
//! `x-amz-meta-s3tap-transform`, the layer answers the client's view:
//! `Content-Length` of the plaintext (from the metadata, or from the
//! index, one small ranged read of the object's end), checksums of the
//! stored bytes removed, and the body decoded as it streams, through a
//! fixed 256 KiB window. A `Range` is served from the index: the layer
//! fetches the stored bytes of the frames that hold the range and decodes
//! those only, dropping the plaintext before the range's start (at most
//! one frame, or one client part). Objects without the metadata read
//! through unchanged, whatever the rules. `GetObject` by `partNumber` on a
//! transformed object is refused (`NotImplemented`).
//!
//! # ETags
//!
//! The ETag is the upstream's, of the stored (encoded) bytes: it is stable
//! and changes with the content, but it is not the MD5 of the plaintext.
//! Where it is MD5-shaped (a single `PUT`), clients get it with the codec's
//! name appended (`"<md5>.zstd"`, `"<md5>.gzip"`), so that clients that compare an
//! MD5-shaped ETag with their file do not take it for corrupt; the layer
//! removes the suffix from `If-Match`/`If-None-Match` on the way up.
//!
//! # Limits
//!
//! Listings report stored sizes. `UploadPartCopy` into a transformed key is
//! refused; `CopyObject` copies the stored bytes and their metadata (a
//! copy with `x-amz-metadata-directive: REPLACE` drops the layer's keys and
//! is not detected).
//!
//! ```
//! use s3tap::transform::{TransformLayer, TransformRule, Zstd};
//!
//! let layer = TransformLayer::new()
//!     .rule(TransformRule::new(Zstd::new(3)).buckets(["logs"]).prefix("app/"));
//! # let _ = layer;
//! ```

mod body;
mod codec;
mod error;
mod future;
mod gzip;
mod layer;
mod read;
mod service;
mod write;

pub use body::{ResponseBody, TransformBody};
pub use codec::{Codec, Decode, Encode, Zstd};
pub use error::TransformError;
pub use future::ResponseFuture;
pub use gzip::Gzip;
pub use layer::{TransformLayer, TransformRule, MIN_PART_SIZE};
pub use service::{Transform, MAX_CLIENT_PART, META_LENGTH, META_TRANSFORM};
