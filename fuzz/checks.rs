//! The properties every fuzz target checks, one function a target, each taking the raw
//! fuzz input. Shared by the libFuzzer targets (`fuzz/fuzz_targets/*.rs`) and by the corpus
//! replay in `cargo test` (`tests/fuzz_corpus_replay.rs`), so both check the same thing.
//! Structured inputs (split sizes, capacities, strings) are carved out of the bytes here,
//! so the corpus files stay plain bytes.
#![allow(dead_code)]

use std::io::{self, Read};

use chunkwire::proto::body::{BodyDecoder, BodyEvent};
use chunkwire::proto::dechunk::{ChunkEvent, Dechunker};
use chunkwire::proto::exchange::{Exchange, SendWant};
use chunkwire::proto::head::{BodyFraming, HeaderField, RequestHead};
use chunkwire::proto::response::{HeadParse, parse_response_head};
use chunkwire::{FixedBuf, Limits, PeerError, Target};

/// Small limits, so the fuzzer reaches them.
fn small_limits() -> Limits {
    Limits {
        max_head_bytes: 512,
        max_headers: 8,
        max_chunk_line_bytes: 32,
        max_trailer_bytes: 64,
        max_body_bytes: Some(4096),
        max_interim_responses: 4,
    }
}

/// The response head parser, then the body decoder over what follows; first byte: flags.
pub fn response_head(data: &[u8]) {
    let Some((&flags, input)) = data.split_first() else {
        return;
    };
    let limits = small_limits();
    let mut at = 0;
    loop {
        match parse_response_head(&input[at..], flags & 1 == 1, &limits) {
            Ok(HeadParse::Partial) | Err(_) => return,
            Ok(HeadParse::Interim { consumed, status }) => {
                assert!(
                    consumed > 0 && consumed <= input.len() - at,
                    "interim consumed {consumed}"
                );
                assert!((100..200).contains(&status));
                at += consumed;
            }
            Ok(HeadParse::Final {
                consumed,
                head,
                framing,
            }) => {
                assert!(
                    consumed > 0 && consumed <= input.len() - at,
                    "final consumed {consumed}"
                );
                assert!(!head.status.is_informational());
                at += consumed;
                let split = usize::from(flags >> 1).max(1);
                let _ = decode_body(BodyDecoder::new(framing, &limits), &input[at..], split);
                return;
            }
        }
    }
}

/// Feeds `input` to a body decoder `split` bytes at a time, keeping unconsumed bytes as a
/// caller must; returns the body or the error.
fn decode_body(mut decoder: BodyDecoder, input: &[u8], split: usize) -> Result<Vec<u8>, PeerError> {
    let mut pending = Vec::new();
    let mut fed = 0;
    let mut body = Vec::new();
    loop {
        let (consumed, event) = decoder.decode(&pending)?;
        assert!(consumed <= pending.len());
        match event {
            BodyEvent::Data(data) => {
                assert!(!data.is_empty() && within(data, &pending[..consumed]));
                body.extend_from_slice(data);
            }
            BodyEvent::End => return Ok(body),
            BodyEvent::NeedMore if fed == input.len() => {
                decoder.on_eof()?;
                return Ok(body);
            }
            BodyEvent::NeedMore => {
                let end = (fed + split).min(input.len());
                pending.extend_from_slice(&input[fed..end]);
                fed = end;
            }
        }
        pending.drain(..consumed);
    }
}

/// What decoding a chunked body gave: data, chunk sizes, trailers, whether it ended, and the
/// error.
#[derive(Debug, PartialEq)]
pub struct Dechunked {
    /// The body.
    pub data: Vec<u8>,
    /// Every chunk-size line's size, the last chunk's 0 included.
    pub sizes: Vec<u64>,
    /// Trailer fields, in order.
    pub trailers: Vec<(Vec<u8>, Vec<u8>)>,
    /// The final CRLF was decoded.
    pub ended: bool,
    /// Where decoding stopped with an error.
    pub error: Option<PeerError>,
    /// Input bytes after the end of the body.
    pub leftover: usize,
}

/// True if `part` is empty or lies inside `whole` (pointer ranges): it borrows the input
/// it was decoded from, not a copy or other memory.
fn within(part: &[u8], whole: &[u8]) -> bool {
    let whole = whole.as_ptr_range();
    let part_range = part.as_ptr_range();
    part.is_empty() || (whole.start <= part_range.start && part_range.end <= whole.end)
}

/// Feeds `input` to a dechunker in pieces whose sizes are taken from `splits` in turn
/// (cycled; each at least 1), keeping unconsumed bytes as a caller must.
pub fn dechunk_in_splits(input: &[u8], splits: &[usize], limits: &Limits) -> Dechunked {
    let mut dechunker = Dechunker::new(limits);
    let mut out = Dechunked {
        data: Vec::new(),
        sizes: Vec::new(),
        trailers: Vec::new(),
        ended: false,
        error: None,
        leftover: 0,
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut feeds = 0;
    loop {
        let (consumed, event) = match dechunker.decode(&pending) {
            Ok(step) => step,
            Err(e) => {
                out.error = Some(e);
                return out;
            }
        };
        assert!(
            consumed <= pending.len(),
            "consumed {consumed} of {}",
            pending.len()
        );
        let taken = &pending[..consumed];
        match event {
            ChunkEvent::NeedMore => {
                assert_eq!(consumed, 0, "NeedMore consumes nothing");
                if fed == input.len() {
                    return out;
                }
                let split = splits.get(feeds % splits.len().max(1)).copied();
                feeds += 1;
                let end = fed + split.unwrap_or(usize::MAX).max(1).min(input.len() - fed);
                pending.extend_from_slice(&input[fed..end]);
                fed = end;
                continue;
            }
            ChunkEvent::Data(data) => {
                assert!(!data.is_empty());
                assert!(
                    data.len() == consumed && within(data, taken),
                    "data is not the consumed input"
                );
                out.data.extend_from_slice(data);
            }
            ChunkEvent::SizeLine { size, extensions } => {
                assert!(consumed > 0 && within(extensions, taken));
                out.sizes.push(size);
            }
            ChunkEvent::Trailer { name, value } => {
                assert!(consumed > 0 && within(name, taken) && within(value, taken));
                out.trailers.push((name.to_vec(), value.to_vec()))
            }
            ChunkEvent::End => {
                assert!(dechunker.is_done());
                out.ended = true;
                out.leftover = pending.len() - consumed + input.len() - fed;
                return out;
            }
            ChunkEvent::DataEnd => assert_eq!(consumed, 2),
        }
        pending.drain(..consumed);
    }
}

/// The chunked decoder: the same input fed whole and in splits (first byte) decodes the same.
pub fn dechunk(data: &[u8]) {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    let limits = small_limits();
    let whole = dechunk_in_splits(input, &[], &limits);
    let split = dechunk_in_splits(input, &[usize::from(split % 64).max(1)], &limits);
    assert_eq!(whole, split, "whole and split decodes differ");
    if whole.ended {
        assert_eq!(whole.sizes.last(), Some(&0), "ended without a last chunk");
    }
}

/// Strings carved from the input at 0xff bytes.
fn strings(data: &[u8]) -> Vec<String> {
    data.split(|&b| b == 0xff)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// The request head writer: whatever it accepts, httparse reads back whole and the same.
pub fn request_head(data: &[u8]) {
    let parts = strings(data);
    let (Some(method), Some(url)) = (parts.first(), parts.get(1)) else {
        return;
    };
    let Ok(target) = Target::parse(url) else {
        return;
    };
    let Ok(mut head) = RequestHead::new(method, &target) else {
        return;
    };
    let mut accepted = Vec::new();
    for pair in parts[2..].chunks(2) {
        let [name, value] = pair else { break };
        let Ok(field) = HeaderField::new(name, value) else {
            continue;
        };
        if head.push(field.clone()).is_ok() {
            accepted.push(field);
        }
    }
    if data.len() % 2 == 1 {
        head.set_framing(BodyFraming::Length(data.len() as u64));
    }
    let mut out = vec![0u8; head.encoded_len()];
    let range = head.write_to(&mut out).expect("sized by encoded_len");
    assert_eq!(range.len(), out.len());
    for (i, &b) in out.iter().enumerate() {
        assert_ne!(b, 0, "NUL in the head");
        if b == b'\r' {
            assert_eq!(out.get(i + 1), Some(&b'\n'), "bare CR at {i}");
        }
        if b == b'\n' {
            assert!(i > 0 && out[i - 1] == b'\r', "bare LF at {i}");
        }
    }
    // Room for every field written: Host, User-Agent, the accepted ones, framing, Expect.
    let mut headers = vec![httparse::EMPTY_HEADER; accepted.len() + 8];
    let mut request = httparse::Request::new(&mut headers);
    let parsed = request.parse(&out);
    assert!(
        matches!(parsed, Ok(httparse::Status::Complete(n)) if n == out.len()),
        "httparse does not read the head back: {parsed:?} {:?}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(request.method, Some(method.as_str()));
    assert_eq!(request.path, Some(target.request_target.as_str()));
    for field in accepted {
        assert!(
            request
                .headers
                .iter()
                .any(|h| h.name == field.name() && h.value == field.value()),
            "field {} lost",
            field.name()
        );
    }
}

/// How a round trip moves its bytes. Each list is used in turn and cycled; an empty list
/// means no limit (or, for `interrupts`, none).
#[derive(Debug, Clone, Default)]
pub struct Splits {
    /// The most bytes each source read gives (at least 1).
    pub reads: Vec<usize>,
    /// Whether each source read call fails with `Interrupted` instead (never twice in a row).
    pub interrupts: Vec<bool>,
    /// The most bytes the transport accepts per write (at least 1).
    pub writes: Vec<usize>,
}

fn nth(list: &[usize], i: usize) -> usize {
    list.get(i % list.len().max(1))
        .copied()
        .unwrap_or(usize::MAX)
        .max(1)
}

/// A source that reads as `Splits` say and is interrupted where they say.
struct Scripted<'a> {
    data: &'a [u8],
    splits: &'a Splits,
    calls: usize,
    reads: usize,
    interrupted: bool,
}

impl Read for Scripted<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let interrupts = &self.splits.interrupts;
        let interrupt = !interrupts.is_empty() && interrupts[self.calls % interrupts.len()];
        self.calls += 1;
        if interrupt && !self.interrupted {
            self.interrupted = true;
            return Err(io::ErrorKind::Interrupted.into());
        }
        self.interrupted = false;
        let n = out
            .len()
            .min(nth(&self.splits.reads, self.reads))
            .min(self.data.len());
        self.reads += 1;
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Sends `body` through an exchange with chunks of up to `capacity` bytes, reading and
/// writing as `splits` say; returns the wire bytes after the head.
pub fn send_through_exchange(
    body: &[u8],
    capacity: usize,
    splits: &Splits,
    content_length: bool,
) -> Vec<u8> {
    let target = Target::parse("http://fuzz.example/upload").unwrap();
    let mut head = RequestHead::new("PUT", &target).unwrap();
    if content_length {
        head.set_framing(BodyFraming::Length(body.len() as u64));
    }
    let head_len = head.encoded_len();
    let mut buf = FixedBuf::new(capacity, 64, head_len);
    let mut exchange = Exchange::new(&head, Vec::new(), Limits::default(), &mut buf).unwrap();
    let mut source = Scripted {
        data: body,
        splits,
        calls: 0,
        reads: 0,
        interrupted: false,
    };
    let mut wire = Vec::new();
    let mut writes = 0;
    loop {
        match exchange.poll_send(&mut buf) {
            SendWant::Write(bytes) => {
                assert!(!bytes.is_empty(), "an empty write is never asked for");
                let n = bytes.len().min(nth(&splits.writes, writes));
                writes += 1;
                wire.extend_from_slice(&bytes[..n]);
                exchange.on_sent(n);
            }
            SendWant::Fill(space) => {
                assert!(!space.is_empty());
                let n = loop {
                    match source.read(space) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        other => break other.unwrap(),
                    }
                };
                exchange.on_filled(&mut buf, n).unwrap();
            }
            SendWant::Idle => break,
        }
    }
    assert!(exchange.request_sent());
    assert_eq!(exchange.progress().body_bytes_read, body.len() as u64);
    assert_eq!(exchange.progress().body_bytes_sent, body.len() as u64);
    assert_eq!(exchange.progress().wire_bytes_sent, wire.len() as u64);
    let head_bytes = wire[..head_len].to_vec();
    let body_wire = wire.split_off(head_len);
    let mut headers = [httparse::EMPTY_HEADER; 8];
    let mut request = httparse::Request::new(&mut headers);
    assert_eq!(
        request.parse(&head_bytes),
        Ok(httparse::Status::Complete(head_len))
    );
    body_wire
}

/// The round-trip property: `body` sent with this capacity and these splits is, on the
/// wire, exactly `body` (Content-Length) or a chunked body of chunks of 1 to `capacity`
/// bytes that decodes, fed in `decode_splits`, to `body` with exactly one last chunk and
/// nothing after it.
pub fn round_trip(
    body: &[u8],
    capacity: usize,
    splits: &Splits,
    decode_splits: &[usize],
    content_length: bool,
) {
    let wire = send_through_exchange(body, capacity, splits, content_length);
    if content_length {
        assert_eq!(wire, body);
        return;
    }
    let decoded = dechunk_in_splits(&wire, decode_splits, &Limits::default());
    assert_eq!(decoded.error, None);
    assert!(decoded.ended, "the body has its last chunk");
    assert_eq!(decoded.data, body);
    let (last, chunks) = decoded.sizes.split_last().expect("at least the last chunk");
    assert_eq!(*last, 0);
    assert!(
        chunks
            .iter()
            .all(|&size| size >= 1 && size <= capacity as u64),
        "chunk sizes {chunks:?} outside 1..={capacity}"
    );
    assert!(decoded.trailers.is_empty());
    assert_eq!(
        decoded.leftover, 0,
        "bytes after the last chunk: a second last chunk?"
    );
}

/// The framer: what the exchange emits, decoded, equals what the source gave, for any
/// capacity and read/write splits (the first four bytes choose them).
pub fn framer_roundtrip(data: &[u8]) {
    let [capacity, read_max, write_max, flags, body @ ..] = data else {
        return;
    };
    let capacity = usize::from(*capacity).max(1);
    let interrupt_every = usize::from(flags % 8);
    let splits = Splits {
        reads: vec![usize::from(*read_max)],
        interrupts: (0..interrupt_every)
            .map(|i| i + 1 == interrupt_every)
            .collect(),
        writes: vec![usize::from(*write_max)],
    };
    let content_length = flags & 0x80 != 0;
    round_trip(body, capacity, &splits, &splits.writes, content_length);
}

/// The URL parser: never panics, and what it accepts can be connected to.
pub fn url(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(target) = Target::parse(&text) else {
        return;
    };
    assert!(!target.host.is_empty());
    assert_ne!(target.port, 0);
    assert!(
        target.request_target.starts_with('/'),
        "{:?}",
        target.request_target
    );
    assert!(target.host_header.contains(target.host.as_str()));
    assert!(
        !target
            .request_target
            .bytes()
            .any(|b| b <= b' ' || b == 0x7f),
        "{:?}",
        target.request_target
    );
}
