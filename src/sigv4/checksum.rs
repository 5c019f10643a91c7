//! The S3 additional checksums (`x-amz-checksum-*`): CRC32, CRC32C,
//! CRC64NVME, SHA1 and SHA256, each carried as base64 of the big-endian
//! digest.

use std::fmt;

use base64::Engine as _;
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

/// One of the checksum algorithms S3 accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChecksumAlgorithm {
    /// CRC32 (ISO-HDLC, as zlib).
    Crc32,
    /// CRC32C (Castagnoli, iSCSI).
    Crc32c,
    /// CRC64 of NVMe.
    Crc64Nvme,
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
}

impl ChecksumAlgorithm {
    /// Every algorithm, in S3's documentation order.
    pub const ALL: [ChecksumAlgorithm; 5] = [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32c,
        ChecksumAlgorithm::Crc64Nvme,
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256,
    ];

    /// The header (or trailer) that carries this checksum.
    pub fn header_name(&self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "x-amz-checksum-crc32",
            ChecksumAlgorithm::Crc32c => "x-amz-checksum-crc32c",
            ChecksumAlgorithm::Crc64Nvme => "x-amz-checksum-crc64nvme",
            ChecksumAlgorithm::Sha1 => "x-amz-checksum-sha1",
            ChecksumAlgorithm::Sha256 => "x-amz-checksum-sha256",
        }
    }

    /// The algorithm whose header is `name` (lower case).
    pub fn from_header_name(name: &str) -> Option<ChecksumAlgorithm> {
        Self::ALL.into_iter().find(|a| a.header_name() == name)
    }

    /// The name S3 uses in messages and in `x-amz-sdk-checksum-algorithm`.
    pub fn name(&self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "CRC32",
            ChecksumAlgorithm::Crc32c => "CRC32C",
            ChecksumAlgorithm::Crc64Nvme => "CRC64NVME",
            ChecksumAlgorithm::Sha1 => "SHA1",
            ChecksumAlgorithm::Sha256 => "SHA256",
        }
    }

    /// Length in bytes of the raw digest.
    pub fn digest_len(&self) -> usize {
        match self {
            ChecksumAlgorithm::Crc32 | ChecksumAlgorithm::Crc32c => 4,
            ChecksumAlgorithm::Crc64Nvme => 8,
            ChecksumAlgorithm::Sha1 => 20,
            ChecksumAlgorithm::Sha256 => 32,
        }
    }

    /// A fresh running checksum.
    pub fn hasher(&self) -> Checksummer {
        let state = match self {
            ChecksumAlgorithm::Crc32 => {
                State::Crc(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32IsoHdlc))
            }
            ChecksumAlgorithm::Crc32c => {
                State::Crc(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi))
            }
            ChecksumAlgorithm::Crc64Nvme => {
                State::Crc(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Nvme))
            }
            ChecksumAlgorithm::Sha1 => State::Sha1(Sha1::new()),
            ChecksumAlgorithm::Sha256 => State::Sha256(Sha256::new()),
        };
        Checksummer {
            algorithm: *self,
            state,
        }
    }

    /// The base64 checksum of `data` in one call.
    pub fn checksum_base64(&self, data: &[u8]) -> String {
        let mut hasher = self.hasher();
        hasher.update(data);
        hasher.finalize_base64()
    }

    /// Decodes a header value to raw digest bytes, checking its length.
    pub fn decode_value(&self, value: &str) -> Option<Vec<u8>> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .ok()?;
        (raw.len() == self.digest_len()).then_some(raw)
    }
}

impl fmt::Display for ChecksumAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

enum State {
    Crc(crc_fast::Digest),
    Sha1(Sha1),
    Sha256(Sha256),
}

/// A running checksum over a payload that arrives in pieces.
pub struct Checksummer {
    algorithm: ChecksumAlgorithm,
    state: State,
}

impl Checksummer {
    /// The algorithm this computes.
    pub fn algorithm(&self) -> ChecksumAlgorithm {
        self.algorithm
    }

    /// Feeds the next piece of the payload.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            State::Crc(digest) => digest.update(data),
            State::Sha1(digest) => digest.update(data),
            State::Sha256(digest) => digest.update(data),
        }
    }

    /// The raw big-endian digest.
    pub fn finalize(self) -> Vec<u8> {
        match self.state {
            State::Crc(digest) => {
                let value = digest.finalize();
                match self.algorithm {
                    ChecksumAlgorithm::Crc64Nvme => value.to_be_bytes().to_vec(),
                    _ => (value as u32).to_be_bytes().to_vec(),
                }
            }
            State::Sha1(digest) => digest.finalize().to_vec(),
            State::Sha256(digest) => digest.finalize().to_vec(),
        }
    }

    /// The digest as S3 carries it: base64.
    pub fn finalize_base64(self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.finalize())
    }
}

impl fmt::Debug for Checksummer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checksummer")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers_for_the_check_string() {
        // The catalogue "check" values of each CRC over "123456789", and the
        // FIPS digests of the same string, as S3 encodes them.
        let check = b"123456789";
        let raw = |a: ChecksumAlgorithm| {
            let mut h = a.hasher();
            h.update(&check[..4]);
            h.update(&check[4..]);
            hex::encode(h.finalize())
        };
        assert_eq!(raw(ChecksumAlgorithm::Crc32), "cbf43926");
        assert_eq!(raw(ChecksumAlgorithm::Crc32c), "e3069283");
        assert_eq!(raw(ChecksumAlgorithm::Crc64Nvme), "ae8b14860a799888");
        assert_eq!(
            raw(ChecksumAlgorithm::Sha1),
            "f7c3bc1d808e04732adf679965ccc34ca7ae3441"
        );
        assert_eq!(ChecksumAlgorithm::Crc32.checksum_base64(check), "y/Q5Jg==");
    }

    #[test]
    fn header_names_round_trip_and_values_are_length_checked() {
        for algorithm in ChecksumAlgorithm::ALL {
            assert_eq!(
                ChecksumAlgorithm::from_header_name(algorithm.header_name()),
                Some(algorithm)
            );
            let value = algorithm.checksum_base64(b"abc");
            assert_eq!(
                algorithm.decode_value(&value).unwrap().len(),
                algorithm.digest_len()
            );
        }
        assert!(ChecksumAlgorithm::Crc32.decode_value("AAAAAAAA").is_none());
        assert!(ChecksumAlgorithm::from_header_name("x-amz-checksum-md5").is_none());
    }
}
