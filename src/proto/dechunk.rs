//! The chunked-body decoder: slices in, events and counts out, nothing copied or allocated.
//! It decodes response bodies in the client and request bodies in the sink.
//!
//! RFC 9112 section 7.1:
//!
//! ```text
//! chunked-body    = *chunk last-chunk trailer-section CRLF
//! chunk           = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size      = 1*HEXDIG
//! last-chunk      = 1*("0") [ chunk-ext ] CRLF
//! chunk-ext       = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//! trailer-section = *( field-line CRLF )
//! ```
//!
//! A line (size line or trailer field) is decoded only when it is complete in the input;
//! until then the decoder answers `NeedMore` and consumes nothing, so the caller keeps the
//! bytes and offers them again with more. Lines longer than the limits are errors, so a
//! caller's fixed buffer never needs to hold more than a limit.

use crate::proto::limits::Limits;
use crate::proto::message;
use crate::proto::peer_error::{PeerError, excerpt};
use crate::trace::Part;

/// One step of decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkEvent<'a> {
    /// The input holds no complete step: offer the unconsumed bytes again with more.
    NeedMore,
    /// A chunk-size line. Size 0 is the last chunk; trailer fields and the end follow.
    SizeLine {
        /// The chunk size.
        size: u64,
        /// The raw extensions after the size (with the leading `;`), possibly empty.
        extensions: &'a [u8],
    },
    /// Chunk data: as much of the current chunk as the input holds.
    Data(&'a [u8]),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// A trailer field.
    Trailer {
        /// The field name.
        name: &'a [u8],
        /// The field value, without surrounding whitespace.
        value: &'a [u8],
    },
    /// The final CRLF: the body is complete.
    End,
}

impl ChunkEvent<'_> {
    /// The part of the message this event's bytes are, for the wire trace.
    pub fn part(&self) -> Option<Part> {
        Some(match self {
            ChunkEvent::NeedMore => return None,
            ChunkEvent::SizeLine { size: 0, .. } => Part::LastChunk,
            ChunkEvent::SizeLine { size, .. } => Part::ChunkSize { size: *size },
            ChunkEvent::Data(_) => Part::ChunkData,
            ChunkEvent::DataEnd => Part::ChunkEnd,
            ChunkEvent::Trailer { .. } => Part::Trailer,
            ChunkEvent::End => Part::EndOfBody,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data { remaining: u64 },
    DataCrLf,
    Trailers { bytes: usize },
    Ended,
}

/// Decodes a chunked body. See the module docs.
#[derive(Debug, Clone)]
pub struct Dechunker {
    state: State,
    max_line: usize,
    max_trailer_bytes: usize,
}

impl Dechunker {
    /// A decoder at the start of a chunked body.
    pub fn new(limits: &Limits) -> Self {
        Dechunker {
            state: State::Size,
            max_line: limits.max_chunk_line_bytes,
            max_trailer_bytes: limits.max_trailer_bytes,
        }
    }

    /// True once the final CRLF has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Ended
    }

    /// Decodes one step from the start of `input`; returns the bytes consumed and the event.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<(usize, ChunkEvent<'a>), PeerError> {
        match self.state {
            State::Size => {
                let Some(line) = complete_line(input, self.max_line).map_err(|()| {
                    PeerError::ChunkLineTooLong {
                        limit: self.max_line,
                    }
                })?
                else {
                    return Ok((0, ChunkEvent::NeedMore));
                };
                let (size, extensions) = parse_size_line(line)?;
                self.state = if size == 0 {
                    State::Trailers { bytes: 0 }
                } else {
                    State::Data { remaining: size }
                };
                Ok((line.len(), ChunkEvent::SizeLine { size, extensions }))
            }
            State::Data { remaining } => {
                if input.is_empty() {
                    return Ok((0, ChunkEvent::NeedMore));
                }
                let take = usize::try_from(remaining).map_or(input.len(), |r| r.min(input.len()));
                let remaining = remaining - take as u64;
                self.state = if remaining == 0 {
                    State::DataCrLf
                } else {
                    State::Data { remaining }
                };
                Ok((take, ChunkEvent::Data(&input[..take])))
            }
            State::DataCrLf => match input {
                [b'\r', b'\n', ..] => {
                    self.state = State::Size;
                    Ok((2, ChunkEvent::DataEnd))
                }
                [] | [b'\r'] => Ok((0, ChunkEvent::NeedMore)),
                [b'\n', ..] => Err(PeerError::BareLfAfterChunkData),
                _ => Err(PeerError::MissingChunkCrLf),
            },
            State::Trailers { bytes } => {
                let budget = self.max_trailer_bytes.saturating_sub(bytes).max(2);
                let too_large = PeerError::TrailerTooLarge {
                    limit: self.max_trailer_bytes,
                };
                let Some(line) = complete_line(input, budget).map_err(|()| too_large.clone())?
                else {
                    return Ok((0, ChunkEvent::NeedMore));
                };
                if line == b"\r\n" {
                    self.state = State::Ended;
                    return Ok((2, ChunkEvent::End));
                }
                if !line.ends_with(b"\r\n") {
                    return Err(PeerError::BareLfInTrailer);
                }
                if bytes + line.len() > self.max_trailer_bytes {
                    return Err(too_large);
                }
                let (name, value) = parse_field_line(line)?;
                self.state = State::Trailers {
                    bytes: bytes + line.len(),
                };
                Ok((line.len(), ChunkEvent::Trailer { name, value }))
            }
            State::Ended => Ok((0, ChunkEvent::End)),
        }
    }
}

/// The first line of `input` through its LF, if complete; `Err` if no LF appears within
/// `limit` bytes.
fn complete_line(input: &[u8], limit: usize) -> Result<Option<&[u8]>, ()> {
    let window = &input[..input.len().min(limit)];
    match window.iter().position(|&b| b == b'\n') {
        Some(lf) => Ok(Some(&input[..=lf])),
        None if input.len() >= limit => Err(()),
        None => Ok(None),
    }
}

/// Parses `chunk-size [ chunk-ext ] CRLF`; `line` ends with LF.
fn parse_size_line(line: &[u8]) -> Result<(u64, &[u8]), PeerError> {
    let bad = || PeerError::BadChunkSize {
        line: excerpt(line),
    };
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(bad());
    }
    let mut size: u64 = 0;
    for &digit in &line[..digits] {
        // Leading zeros are allowed however many there are; a 17th significant digit is not.
        if size > u64::MAX >> 4 {
            return Err(PeerError::ChunkSizeOverflow);
        }
        size = (size << 4) | u64::from(hex_value(digit));
    }
    // RFC 9112 section 7.1 ends the line with CRLF. A bare LF gets its own message, so a
    // peer's author sees the real fault instead of "expected hex digits".
    let Some(rest) = line[digits..].strip_suffix(b"\r\n") else {
        let rest = &line[digits..];
        return Err(match rest.iter().position(|&b| b == b';') {
            Some(semicolon) if !rest[..semicolon].contains(&b'\r') => PeerError::BareLfInExtension,
            _ if !rest.contains(&b'\r') => PeerError::BareLfInChunkSize,
            _ => bad(),
        });
    };
    let extensions = rest.trim_ascii_start();
    if extensions.is_empty() {
        return Ok((size, extensions));
    }
    // BWS before ";" is allowed; anything else after the digits must be an extension.
    if extensions[0] != b';' {
        return Err(bad());
    }
    // The line ends at its first LF, so the only line break left to find is a stray CR;
    // it and other controls (HTAB is whitespace) are not allowed in an extension.
    if extensions
        .iter()
        .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return Err(PeerError::BadChunkExtension {
            extension: excerpt(extensions),
        });
    }
    Ok((size, extensions))
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

/// Parses `field-name ":" OWS field-value OWS CRLF` with the message layer's field rule;
/// `line` ends with LF.
fn parse_field_line(line: &[u8]) -> Result<(&[u8], &[u8]), PeerError> {
    line.strip_suffix(b"\r\n")
        .and_then(message::split_field_line)
        .ok_or_else(|| PeerError::BadTrailer {
            excerpt: excerpt(line),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything decoded: data, sizes, trailers, and the bytes left after the end.
    #[derive(Debug, Default, PartialEq)]
    struct Decoded {
        data: Vec<u8>,
        sizes: Vec<u64>,
        trailers: Vec<(String, String)>,
        rest: Vec<u8>,
    }

    /// Decodes `input` offered `step` bytes at a time (the caller keeps what is unconsumed).
    fn decode_in_steps(input: &[u8], step: usize, limits: &Limits) -> Result<Decoded, PeerError> {
        let mut dechunker = Dechunker::new(limits);
        let mut out = Decoded::default();
        let mut pending = Vec::new();
        let mut fed = 0;
        loop {
            let (consumed, event) = dechunker.decode(&pending)?;
            let mut done = false;
            match event {
                ChunkEvent::NeedMore => {
                    assert_eq!(consumed, 0);
                    if fed == input.len() {
                        return Err(PeerError::Truncated {
                            received: out.data.len() as u64,
                            expected: None,
                        });
                    }
                    let end = (fed + step).min(input.len());
                    pending.extend_from_slice(&input[fed..end]);
                    fed = end;
                    continue;
                }
                ChunkEvent::SizeLine { size, .. } => out.sizes.push(size),
                ChunkEvent::Data(d) => out.data.extend_from_slice(d),
                ChunkEvent::DataEnd => {}
                ChunkEvent::Trailer { name, value } => out.trailers.push((
                    String::from_utf8(name.to_vec()).unwrap(),
                    String::from_utf8(value.to_vec()).unwrap(),
                )),
                ChunkEvent::End => done = true,
            }
            pending.drain(..consumed);
            if done {
                assert!(dechunker.is_done());
                pending.extend_from_slice(&input[fed..]);
                out.rest = pending;
                return Ok(out);
            }
        }
    }

    /// h11's three ways: whole, one byte at a time, and with trailing bytes left unconsumed.
    fn three_ways(input: &[u8]) -> Result<Decoded, PeerError> {
        let limits = Limits::default();
        let whole = decode_in_steps(input, usize::MAX, &limits);
        let bytewise = decode_in_steps(input, 1, &limits);
        assert_eq!(whole, bytewise, "{:?}", String::from_utf8_lossy(input));
        let mut trailing = input.to_vec();
        trailing.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let with_rest = decode_in_steps(&trailing, 3, &limits);
        if let (Ok(a), Ok(b)) = (&whole, &with_rest) {
            assert_eq!(a.data, b.data);
            assert_eq!(
                b.rest, b"GET / HTTP/1.1\r\n",
                "bytes after the end are left alone"
            );
        }
        whole
    }

    #[test]
    fn valid_bodies() {
        let cases: &[(&[u8], &[u8], &[u64])] = &[
            (b"0\r\n\r\n", b"", &[0]),
            (b"1\r\na\r\n0\r\n\r\n", b"a", &[1, 0]),
            (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789", &[10, 0]),
            (b"a\r\n0123456789\r\n000\r\n\r\n", b"0123456789", &[10, 0]),
            (b"0005\r\nhello\r\n0\r\n\r\n", b"hello", &[5, 0]),
            (
                b"5;name=val;q=\"a;b\"\r\nhello\r\n0;last\r\n\r\n",
                b"hello",
                &[5, 0],
            ),
            (b"5 ;ext\r\nhello\r\n0\r\n\r\n", b"hello", &[5, 0]),
            (b"00000000000000000001\r\nx\r\n0\r\n\r\n", b"x", &[1, 0]),
        ];
        for (input, data, sizes) in cases {
            let decoded = three_ways(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(&decoded.data, data);
            assert_eq!(&decoded.sizes, sizes);
        }
    }

    #[test]
    fn trailers_are_decoded() {
        let decoded =
            three_ways(b"3\r\nabc\r\n0\r\nChecksum: 12ab\r\nX-Done:yes \r\n\r\n").unwrap();
        assert_eq!(
            decoded.trailers,
            vec![
                ("Checksum".into(), "12ab".into()),
                ("X-Done".into(), "yes".into())
            ]
        );
    }

    #[test]
    fn invalid_bodies() {
        type Check = fn(&PeerError) -> bool;
        let cases: &[(&[u8], Check)] = &[
            (b"zz\r\n", |e| matches!(e, PeerError::BadChunkSize { .. })),
            (b"\r\n", |e| matches!(e, PeerError::BadChunkSize { .. })),
            (b"-1\r\n", |e| matches!(e, PeerError::BadChunkSize { .. })),
            (b"5x\r\nhello\r\n", |e| {
                matches!(e, PeerError::BadChunkSize { .. })
            }),
            (b"5\nhello\r\n", |e| *e == PeerError::BareLfInChunkSize),
            (b"5 \nhello\r\n", |e| *e == PeerError::BareLfInChunkSize),
            (b"10000000000000000\r\n", |e| {
                *e == PeerError::ChunkSizeOverflow
            }),
            (b"5;ext\nhello\r\n", |e| *e == PeerError::BareLfInExtension),
            (b"5;a\rb\r\nhello\r\n", |e| {
                matches!(e, PeerError::BadChunkExtension { .. })
            }),
            (b"5;a\x01\r\nhello\r\n", |e| {
                matches!(e, PeerError::BadChunkExtension { .. })
            }),
            (b"5\r\nhelloXY", |e| *e == PeerError::MissingChunkCrLf),
            (b"5\r\nhello\n", |e| *e == PeerError::BareLfAfterChunkData),
            (b"0\r\nX: 1\n\r\n", |e| *e == PeerError::BareLfInTrailer),
            (b"0\r\n\n", |e| *e == PeerError::BareLfInTrailer),
            (b"0\r\nno colon\r\n\r\n", |e| {
                matches!(e, PeerError::BadTrailer { .. })
            }),
            (b"0\r\nBad Name: v\r\n\r\n", |e| {
                matches!(e, PeerError::BadTrailer { .. })
            }),
            (b"0\r\nX: a\x00\r\n\r\n", |e| {
                matches!(e, PeerError::BadTrailer { .. })
            }),
        ];
        for (input, check) in cases {
            let limits = Limits::default();
            for step in [1, usize::MAX] {
                let err = decode_in_steps(input, step, &limits)
                    .expect_err(&String::from_utf8_lossy(input));
                assert!(
                    check(&err),
                    "{:?} step {step}: {err:?}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn messages_say_what_is_wrong() {
        // Each message names the actual fault, not a neighbouring one (a bare LF is not
        // "expected hex digits"), and quotes the line where there is one.
        let cases: &[(&[u8], &str)] = &[
            (
                b"zz\r\n",
                "bad chunk-size line \"zz\\r\\n\": expected hex digits",
            ),
            (
                b"5\nhello\r\n",
                "bare LF in chunk-size line; RFC 9112 requires CRLF",
            ),
            (
                b"5;ext\nhello\r\n",
                "bare LF in a chunk extension; RFC 9112 requires CRLF",
            ),
            (
                b"5;a\x01\r\nhello\r\n",
                "bad chunk extension \";a\\x01\": a control character",
            ),
            (
                b"5\r\nhello\n",
                "bare LF after chunk data; RFC 9112 requires CRLF",
            ),
            (b"5\r\nhelloXY", "chunk data not followed by CRLF"),
            (
                b"0\r\nX: 1\n\r\n",
                "bare LF in the trailer section; RFC 9112 requires CRLF",
            ),
            (
                b"0\r\nno colon\r\n\r\n",
                "malformed trailer field \"no colon\\r\\n\"",
            ),
        ];
        for (input, message) in cases {
            let err = decode_in_steps(input, usize::MAX, &Limits::default()).unwrap_err();
            assert_eq!(
                err.to_string(),
                *message,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn limits_hold_at_the_edge() {
        let limits = Limits {
            max_chunk_line_bytes: 16,
            max_trailer_bytes: 20,
            ..Limits::default()
        };
        // A 16-byte size line (LF included) is fine; 17 bytes is not.
        let at_limit = b"1;abcdefghijk\r\nx\r\n0\r\n\r\n";
        assert_eq!(at_limit.iter().position(|&b| b == b'\n'), Some(14));
        assert!(decode_in_steps(at_limit, 1, &limits).is_ok());
        let line16 = b"1;abcdefghijkl\r\nx\r\n0\r\n\r\n";
        assert!(decode_in_steps(line16, 1, &limits).is_ok());
        let line17 = b"1;abcdefghijklm\r\nx\r\n0\r\n\r\n";
        for step in [1, usize::MAX] {
            assert_eq!(
                decode_in_steps(line17, step, &limits).unwrap_err(),
                PeerError::ChunkLineTooLong { limit: 16 }
            );
        }
        // Trailers: 20 bytes in all is fine, 21 is not.
        let trailer20 = b"0\r\nA: 123456789\r\nB: 1\r\n\r\n";
        assert!(decode_in_steps(trailer20, 1, &limits).is_ok());
        let trailer21 = b"0\r\nA: 123456789\r\nB: 12\r\n\r\n";
        for step in [1, usize::MAX] {
            assert_eq!(
                decode_in_steps(trailer21, step, &limits).unwrap_err(),
                PeerError::TrailerTooLarge { limit: 20 }
            );
        }
    }

    #[test]
    fn a_huge_declared_chunk_is_streamed_not_buffered() {
        let mut dechunker = Dechunker::new(&Limits::default());
        let (used, event) = dechunker.decode(b"ffffffffffffffff\r\nabc").unwrap();
        assert_eq!(
            event,
            ChunkEvent::SizeLine {
                size: u64::MAX,
                extensions: b""
            }
        );
        let (n, event) = dechunker
            .decode(&b"ffffffffffffffff\r\nabc"[used..])
            .unwrap();
        assert_eq!((n, event), (3, ChunkEvent::Data(b"abc")));
        assert!(!dechunker.is_done());
    }
}
