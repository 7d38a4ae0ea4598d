//! Checksums computed while the body streams, sent as an RFC 9530 `Content-Digest` trailer:
//! what chunked uploads of unknown size have instead of a digest in the head. Each byte is
//! hashed once, from the buffer it was read into.

use sha2::Digest as _;

use crate::proto::head::HeaderField;

/// A checksum algorithm for the `Content-Digest` trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChecksumAlgorithm {
    /// SHA-256 (`sha-256` in RFC 9530).
    Sha256,
    /// CRC-32C, hardware-accelerated where the CPU has it (`crc32c`, 4 bytes big-endian).
    Crc32c,
}

impl ChecksumAlgorithm {
    /// The algorithm's key in `Content-Digest`.
    pub fn key(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Sha256 => "sha-256",
            ChecksumAlgorithm::Crc32c => "crc32c",
        }
    }
}

impl std::str::FromStr for ChecksumAlgorithm {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "sha256" | "sha-256" => Ok(ChecksumAlgorithm::Sha256),
            "crc32c" => Ok(ChecksumAlgorithm::Crc32c),
            _ => Err(format!("{text:?} is not a checksum (sha256 or crc32c)")),
        }
    }
}

/// A running checksum.
pub(crate) enum Checksum {
    Sha256(Box<sha2::Sha256>),
    Crc32c(u32),
}

impl Checksum {
    pub(crate) fn new(algorithm: ChecksumAlgorithm) -> Self {
        match algorithm {
            ChecksumAlgorithm::Sha256 => Checksum::Sha256(Box::default()),
            ChecksumAlgorithm::Crc32c => Checksum::Crc32c(0),
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match self {
            Checksum::Sha256(hasher) => hasher.update(bytes),
            Checksum::Crc32c(crc) => *crc = crc32c::crc32c_append(*crc, bytes),
        }
    }

    /// The `Content-Digest` field: `sha-256=:<base64>:`.
    pub(crate) fn into_field(self) -> HeaderField {
        let (key, digest) = match self {
            Checksum::Sha256(hasher) => ("sha-256", hasher.finalize().to_vec()),
            Checksum::Crc32c(crc) => ("crc32c", crc.to_be_bytes().to_vec()),
        };
        let value = format!("{key}=:{}:", base64(&digest));
        HeaderField::new("Content-Digest", value).expect("a digest is a valid field value")
    }
}

/// Standard base64 with padding (RFC 4648 section 4), as RFC 9530's byte sequences use.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, output) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), output);
        }
    }

    #[test]
    fn digests_of_known_inputs() {
        let mut sha = Checksum::new(ChecksumAlgorithm::Sha256);
        sha.update(b"hello ");
        sha.update(b"world");
        // sha256("hello world") = b94d27b9...; base64 of it:
        assert_eq!(
            sha.into_field().value(),
            b"sha-256=:uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=:"
        );
        let mut crc = Checksum::new(ChecksumAlgorithm::Crc32c);
        crc.update(b"123456789");
        // The CRC-32C check value is 0xe3069283.
        assert_eq!(crc.into_field().value(), b"crc32c=:4waSgw==:");
    }
}
