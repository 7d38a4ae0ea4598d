//! The response body decoder: the framing from the head (length, chunked, until close,
//! none) applied to the bytes that follow it, with the optional body size limit.

use crate::proto::dechunk::{ChunkEvent, Dechunker};
use crate::proto::limits::Limits;
use crate::proto::message::BodyFraming;
use crate::proto::peer_error::PeerError;
use crate::trace::Part;

/// One step of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyEvent<'a> {
    /// More bytes are needed; offer the unconsumed ones again with more.
    NeedMore,
    /// Body bytes.
    Data(&'a [u8]),
    /// The body is complete.
    End,
}

#[derive(Debug, Clone)]
enum Mode {
    Length { remaining: u64, expected: u64 },
    Chunked(Dechunker),
    UntilClose { closed: bool },
    Done,
}

/// Decodes a response body. See the module docs.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    mode: Mode,
    body_bytes: u64,
    max_body_bytes: Option<u64>,
}

impl BodyDecoder {
    /// A decoder for a body framed as `framing`.
    pub fn new(framing: BodyFraming, limits: &Limits) -> Self {
        let mode = match framing {
            BodyFraming::Empty | BodyFraming::ContentLength(0) => Mode::Done,
            BodyFraming::ContentLength(len) => Mode::Length {
                remaining: len,
                expected: len,
            },
            BodyFraming::Chunked => Mode::Chunked(Dechunker::new(limits)),
            BodyFraming::CloseDelimited => Mode::UntilClose { closed: false },
        };
        BodyDecoder {
            mode,
            body_bytes: 0,
            max_body_bytes: limits.max_body_bytes,
        }
    }

    /// Body bytes decoded so far.
    pub fn body_bytes(&self) -> u64 {
        self.body_bytes
    }

    /// True once the body is complete.
    pub fn is_done(&self) -> bool {
        match &self.mode {
            Mode::Done => true,
            Mode::Chunked(dechunker) => dechunker.is_done(),
            Mode::UntilClose { closed } => *closed,
            Mode::Length { .. } => false,
        }
    }

    /// Decodes from the start of `input`; returns the bytes consumed and the event.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<(usize, BodyEvent<'a>), PeerError> {
        self.decode_with(input, &mut |_, _| {})
    }

    /// [`BodyDecoder::decode`], passing every consumed byte, labelled, to `emit` (the chunk
    /// framing included, which `decode` consumes silently).
    pub fn decode_with<'a>(
        &mut self,
        input: &'a [u8],
        emit: &mut dyn FnMut(Part, &[u8]),
    ) -> Result<(usize, BodyEvent<'a>), PeerError> {
        // The dechunker may still finish on no input (after a trailer, say); the others not.
        let chunked = matches!(self.mode, Mode::Chunked(_));
        let (consumed, event) = match &mut self.mode {
            Mode::Done => return Ok((0, BodyEvent::End)),
            Mode::UntilClose { closed: true } => return Ok((0, BodyEvent::End)),
            _ if input.is_empty() && !chunked => return Ok((0, BodyEvent::NeedMore)),
            Mode::Length { remaining, .. } => {
                let take = usize::try_from(*remaining).map_or(input.len(), |r| r.min(input.len()));
                *remaining -= take as u64;
                if *remaining == 0 {
                    self.mode = Mode::Done;
                }
                (take, BodyEvent::Data(&input[..take]))
            }
            Mode::UntilClose { .. } => (input.len(), BodyEvent::Data(input)),
            Mode::Chunked(dechunker) => {
                let mut consumed = 0;
                loop {
                    let (used, event) = dechunker.decode(&input[consumed..])?;
                    if let Some(part) = event.part() {
                        emit(part, &input[consumed..consumed + used]);
                    }
                    consumed += used;
                    match event {
                        ChunkEvent::Data(data) => break (consumed, BodyEvent::Data(data)),
                        ChunkEvent::NeedMore => break (consumed, BodyEvent::NeedMore),
                        ChunkEvent::End => break (consumed, BodyEvent::End),
                        ChunkEvent::SizeLine { .. }
                        | ChunkEvent::DataEnd
                        | ChunkEvent::Trailer { .. } => {}
                    }
                }
            }
        };
        if let BodyEvent::Data(data) = &event {
            if !chunked {
                emit(Part::Body, data);
            }
            self.body_bytes += data.len() as u64;
            if let Some(limit) = self.max_body_bytes.filter(|&limit| self.body_bytes > limit) {
                return Err(PeerError::BodyTooLarge { limit });
            }
        }
        Ok((consumed, event))
    }

    /// The peer closed the connection: the end of a close-delimited body, or a truncated one.
    pub fn on_eof(&mut self) -> Result<(), PeerError> {
        match &mut self.mode {
            Mode::UntilClose { closed } => {
                *closed = true;
                Ok(())
            }
            Mode::Done => Ok(()),
            Mode::Chunked(dechunker) if dechunker.is_done() => Ok(()),
            Mode::Chunked(_) => Err(PeerError::Truncated {
                received: self.body_bytes,
                expected: None,
            }),
            Mode::Length { expected, .. } => Err(PeerError::Truncated {
                received: self.body_bytes,
                expected: Some(*expected),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` `step` bytes at a time; then the peer closes if `close` is set.
    fn decode(
        framing: BodyFraming,
        input: &[u8],
        step: usize,
        limits: &Limits,
        close: bool,
    ) -> Result<(Vec<u8>, usize), PeerError> {
        let mut decoder = BodyDecoder::new(framing, limits);
        let (mut body, mut pending, mut fed) = (Vec::new(), Vec::new(), 0);
        loop {
            let (consumed, event) = decoder.decode(&pending)?;
            match event {
                BodyEvent::Data(data) => body.extend_from_slice(data),
                BodyEvent::End => {
                    pending.drain(..consumed);
                    return Ok((body, pending.len() + input.len() - fed));
                }
                BodyEvent::NeedMore if fed == input.len() => {
                    if close {
                        decoder.on_eof()?;
                        continue;
                    }
                    panic!("needs more after all input");
                }
                BodyEvent::NeedMore => {
                    let end = (fed + step).min(input.len());
                    pending.extend_from_slice(&input[fed..end]);
                    fed = end;
                }
            }
            pending.drain(..consumed);
        }
    }

    #[test]
    fn each_framing_three_ways() {
        let limits = Limits::default();
        let cases: &[(BodyFraming, &[u8], &[u8], bool)] = &[
            (BodyFraming::ContentLength(5), b"hello", b"hello", false),
            (
                BodyFraming::Chunked,
                b"2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n",
                b"hello",
                false,
            ),
            (BodyFraming::CloseDelimited, b"hello", b"hello", true),
            (BodyFraming::Empty, b"", b"", false),
            (BodyFraming::ContentLength(0), b"", b"", false),
        ];
        for (framing, input, body, close) in cases {
            for step in [1, usize::MAX] {
                assert_eq!(
                    decode(*framing, input, step, &limits, *close).unwrap(),
                    (body.to_vec(), 0),
                    "{framing:?}"
                );
            }
            if !*close {
                let mut trailing = input.to_vec();
                trailing.extend_from_slice(b"NEXT");
                let (decoded, left) = decode(*framing, &trailing, 2, &limits, false).unwrap();
                assert_eq!(
                    (decoded.as_slice(), left),
                    (*body, 4),
                    "{framing:?} leaves what follows"
                );
            }
        }
    }

    #[test]
    fn truncation_and_the_body_limit_are_errors() {
        let limits = Limits::default();
        assert_eq!(
            decode(BodyFraming::ContentLength(10), b"short", 2, &limits, true).unwrap_err(),
            PeerError::Truncated {
                received: 5,
                expected: Some(10)
            }
        );
        assert_eq!(
            decode(BodyFraming::Chunked, b"5\r\nhel", 2, &limits, true).unwrap_err(),
            PeerError::Truncated {
                received: 3,
                expected: None
            }
        );
        let small = Limits {
            max_body_bytes: Some(4),
            ..Limits::default()
        };
        assert_eq!(
            decode(BodyFraming::CloseDelimited, b"hello", 1, &small, true).unwrap_err(),
            PeerError::BodyTooLarge { limit: 4 }
        );
        assert!(decode(BodyFraming::ContentLength(4), b"hell", 1, &small, false).is_ok());
    }
}
