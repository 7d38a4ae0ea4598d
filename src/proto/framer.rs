//! The chunk framer: turns payload bytes already in a [`FixedBuf`] into chunks, in place.
//!
//! RFC 9112 section 7.1:
//!
//! ```text
//! chunked-body   = *chunk last-chunk trailer-section CRLF
//! chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size     = 1*HEXDIG
//! last-chunk     = 1*("0") [ chunk-ext ] CRLF
//! trailer-section = *( field-line CRLF )
//! ```
//!
//! The size line is written right-aligned into the headroom just before the payload and
//! CRLF into the tail just after it, so a chunk is one contiguous range of the buffer: one
//! `write` on TCP, one record on TLS. Nothing is copied and nothing is allocated. An empty
//! chunk would end the body on the wire, so a zero-length payload is never framed as data.

use std::ops::Range;

use crate::buffer::{CRLF, FixedBuf, hex_digits};
use crate::proto::head::HeaderField;

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Where a framed chunk lies in the send region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The whole frame: size line, payload, CRLF.
    pub range: Range<usize>,
    /// The payload within it.
    pub payload: Range<usize>,
}

/// Frames the first `len` payload bytes as one chunk and returns where the frame lies.
///
/// # Panics
/// If `len` is 0 (an empty chunk is the last chunk) or larger than the payload capacity.
pub fn frame_chunk(buf: &mut FixedBuf, len: usize) -> Frame {
    assert!(
        len > 0 && len <= buf.payload_capacity(),
        "chunk length {len}"
    );
    let payload_start = buf.payload_offset();
    let digits = hex_digits(len);
    let line_start = payload_start - digits - CRLF.len();
    let region = buf.send_region_mut();
    let mut rest = len;
    for slot in region[line_start..line_start + digits].iter_mut().rev() {
        *slot = HEX_DIGITS[rest & 0xf];
        rest >>= 4;
    }
    region[payload_start - CRLF.len()..payload_start].copy_from_slice(CRLF);
    let payload_end = payload_start + len;
    region[payload_end..payload_end + CRLF.len()].copy_from_slice(CRLF);
    Frame {
        range: line_start..payload_end + CRLF.len(),
        payload: payload_start..payload_end,
    }
}

/// The bytes the last chunk and its trailer section take on the wire.
pub fn last_chunk_len(trailers: &[HeaderField]) -> usize {
    b"0\r\n".len() + trailers.iter().map(HeaderField::encoded_len).sum::<usize>() + CRLF.len()
}

/// Writes the last chunk, the trailer fields and the final CRLF at the start of the send
/// region. Returns the range written, or `Err(required)` when the region is too small.
pub fn write_last_chunk(
    buf: &mut FixedBuf,
    trailers: &[HeaderField],
) -> Result<Range<usize>, usize> {
    write_last_chunk_at(buf, 0, trailers)
}

/// Like [`write_last_chunk`], at offset `start` of the send region (right after the last
/// data chunk, so both go out in one write). `Err(required)` when it does not fit there.
pub fn write_last_chunk_at(
    buf: &mut FixedBuf,
    start: usize,
    trailers: &[HeaderField],
) -> Result<Range<usize>, usize> {
    let required = last_chunk_len(trailers);
    let region = buf.send_region_mut();
    if region.len() < start + required {
        return Err(required);
    }
    let mut at = start;
    let mut put = |bytes: &[u8]| {
        region[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(b"0\r\n");
    for field in trailers {
        field.write_with(&mut put);
    }
    put(CRLF);
    Ok(start..start + required)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_contiguous_and_sized_in_lowercase_hex() {
        for (capacity, len, line) in [
            (16, 1, "1"),
            (16, 15, "f"),
            (16, 16, "10"),
            (4096, 10, "a"),
            (65536, 65536, "10000"),
            (65537, 65535, "ffff"),
        ] {
            let mut buf = FixedBuf::new(capacity, 1, 0);
            let offset = buf.payload_offset();
            buf.send_region_mut()[offset..offset + len].fill(b'x');
            let frame = frame_chunk(&mut buf, len);
            let bytes = &buf.send_region()[frame.range.clone()];
            let expected = [line.as_bytes(), b"\r\n", &vec![b'x'; len], b"\r\n"].concat();
            assert_eq!(bytes, &expected[..], "capacity {capacity} len {len}");
            assert_eq!(frame.payload.len(), len);
            assert_eq!(frame.payload.start, offset, "the payload is never moved");
        }
    }

    #[test]
    #[should_panic(expected = "chunk length 0")]
    fn an_empty_payload_is_never_a_data_chunk() {
        let mut buf = FixedBuf::new(16, 1, 0);
        frame_chunk(&mut buf, 0);
    }

    #[test]
    fn last_chunk_with_and_without_trailers() {
        let mut buf = FixedBuf::new(64, 1, 0);
        let range = write_last_chunk(&mut buf, &[]).unwrap();
        assert_eq!(&buf.send_region()[range], b"0\r\n\r\n");

        let trailers = [
            HeaderField::new("Checksum-CRC32", "1234abcd").unwrap(),
            HeaderField::new("X-Done", "yes").unwrap(),
        ];
        let range = write_last_chunk(&mut buf, &trailers).unwrap();
        assert_eq!(
            &buf.send_region()[range.clone()],
            b"0\r\nChecksum-CRC32: 1234abcd\r\nX-Done: yes\r\n\r\n"
        );
        assert_eq!(range.len(), last_chunk_len(&trailers));

        let mut tiny = FixedBuf::new(1, 1, 0);
        assert_eq!(
            write_last_chunk(&mut tiny, &trailers),
            Err(last_chunk_len(&trailers))
        );
    }
}
