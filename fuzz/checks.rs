//! The properties every fuzz target checks, one function a target, each taking the raw
//! fuzz input. Shared by the libFuzzer targets (`fuzz/fuzz_targets/*.rs`) and by the corpus
//! replay in `cargo test` (`tests/fuzz_corpus_replay.rs`), so both check the same thing.
//! Structured inputs (split sizes, capacities, strings) are carved out of the bytes here,
//! so the corpus files stay plain bytes.
#![allow(dead_code)]

use std::io::{self, Read};
use std::time::{Duration, Instant};

use chunkwire::proto::body::{BodyDecoder, BodyEvent};
use chunkwire::proto::conn::{
    Connection, ExchangeOptions, Notice, Phase, RATE_CREDIT, SOURCE_RETRY, Timeouts, Transmit,
};
use chunkwire::proto::dechunk::{ChunkEvent, Dechunker};
use chunkwire::proto::exchange::{BodyStep, Exchange, SendWant};
use chunkwire::proto::head::{BodyFraming, HeaderField, RequestHead};
use chunkwire::proto::response::{HeadParse, parse_response_head};
use chunkwire::{FixedBuf, Limits, PeerError, Progress, RequestError, Target, TimeoutKind};

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
        // `Transfer-Encoding: chunked` was taken as what chunked framing sends anyway; a
        // framing set after it decides (the client refuses the pair before this point).
        if field.name().eq_ignore_ascii_case("transfer-encoding") {
            // Written once, as the framing writes it, whatever the case it was given in.
            let written = request
                .headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
            assert_eq!(written, head.framing() == BodyFraming::Chunked);
            continue;
        }
        assert!(
            request
                .headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case(field.name()) && h.value == field.value()),
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

// The `exchange` target: a whole upload through `Exchange`, driven by operations decoded
// from the input.
//
// Input: `[flags, capacity, length, (op, param)*]`.
// - flags: bit 0 Content-Length (else chunked), bit 1 `Expect: 100-continue`, bit 2 a
//   trailer field from the start, bit 3 no body at all (`BodyFraming::None`; bit 4 then
//   makes it a HEAD request).
// - capacity: chunk payload capacity, `(capacity & 0x3f) + 1`, so 1 to 64 bytes.
// - length: the Content-Length, 0 to 255.
// - op % 9, with param p:
//   0 the socket accepts min(p, offered) bytes (p >= 0xf0: all; 0 is allowed)
//   1 the source fills min(p, offered) bytes (p = 0: end of source; 0xff: all)
//   2 the server queues canned message `p % EXCHANGE_CANNED.len()`
//   3 the server queues `p % 64` raw bytes taken from the input
//   4 min(p, queued, room) queued bytes arrive (p >= 0xf0: as many as fit)
//   5 the peer closes
//   6 the `100 Continue` wait times out (the driver does this only while it waits)
//   7 a driver-like pump: up to 16 steps of "write all, fill p bytes" (with
//     Content-Length, never more than owed: 0 once the length is read)
//   8 a trailer field is added (chunked, before the end of the source)
// After the operations, unless the upload failed or a response stopped it, the upload is
// finished as the driver would (write all, end the source, time out the wait).

/// What a server may say, whole; raw bytes (op 3) cover the rest.
pub const EXCHANGE_CANNED: &[&[u8]] = &[
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 102 Processing\r\n\r\n",
    b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
    b"HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Length: 9\r\n\r\ntoo large",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.0 200 OK\r\n\r\nuntil close",
    b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nerr\r\n0\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
    b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n",
];

/// Most operations taken from one input.
const EXCHANGE_MAX_OPS: usize = 4096;
/// Most steps finishing an upload may take (a 255-byte body in 1-byte chunks needs ~520).
const EXCHANGE_MAX_FINISH_STEPS: usize = 10_000;
/// Steps of one pump operation.
const EXCHANGE_PUMP_STEPS: usize = 16;

/// The body byte at offset `i`: not periodic over short spans, so a byte sent twice, out of
/// order or from the wrong offset shows.
fn body_byte(i: usize) -> u8 {
    let x = (i as u32).wrapping_add(1).wrapping_mul(0x9e37_79b1);
    (x >> 24) as u8 ^ (x >> 11) as u8
}

/// The request options carved from the first bytes.
#[derive(Debug, Clone, Copy)]
struct ExchangeSetup {
    framing: BodyFraming,
    expect: bool,
    capacity: usize,
    method: &'static str,
    /// Exchange rule 7: the head waits for the first fill, the last chunk goes with the
    /// last data chunk.
    coalesce: bool,
}

/// Where an independent decoder of the accepted request bytes stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WireState {
    Head,
    Length { left: u64 },
    SizeLine { size: u64, digits: usize },
    SizeLf { size: u64 },
    Data { left: u64 },
    DataCr,
    DataLf,
    Trailers,
    Done,
}

/// The bytes the socket accepted, decoded as they come: every prefix must be the prefix of
/// a valid request whose body is the source's bytes.
#[derive(Debug)]
struct RequestWire {
    setup: ExchangeSetup,
    bytes: Vec<u8>,
    head_len: Option<usize>,
    expect_header: bool,
    state: WireState,
    /// Body bytes decoded (each checked against the source's byte at its offset).
    body: usize,
    trailer_line: Vec<u8>,
    trailers: Vec<Vec<u8>>,
}

impl RequestWire {
    fn new(setup: ExchangeSetup) -> Self {
        RequestWire {
            setup,
            bytes: Vec::new(),
            head_len: None,
            expect_header: false,
            state: WireState::Head,
            body: 0,
            trailer_line: Vec::new(),
            trailers: Vec::new(),
        }
    }

    fn complete(&self) -> bool {
        matches!(self.state, WireState::Done | WireState::Length { left: 0 })
    }

    /// Bytes accepted after the head.
    fn after_head(&self) -> usize {
        self.head_len.map_or(0, |len| self.bytes.len() - len)
    }

    fn feed(&mut self, new: &[u8], filled: &[u8]) {
        for &b in new {
            self.bytes.push(b);
            self.byte(b, filled);
        }
        if self.state == WireState::Head && !self.bytes.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let parsed = httparse::Request::new(&mut headers).parse(&self.bytes);
            assert!(
                matches!(parsed, Ok(httparse::Status::Partial)),
                "the accepted bytes are not a prefix of a request head: {parsed:?} {:?}",
                String::from_utf8_lossy(&self.bytes)
            );
        }
    }

    fn body_byte(&mut self, b: u8, filled: &[u8]) {
        let i = self.body;
        assert!(
            i < filled.len(),
            "body byte {i} accepted, but the source gave only {} bytes",
            filled.len()
        );
        assert_eq!(b, filled[i], "body byte {i} is not the source's byte");
        self.body += 1;
    }

    fn byte(&mut self, b: u8, filled: &[u8]) {
        let capacity = self.setup.capacity as u64;
        self.state = match self.state {
            WireState::Head => {
                if self.bytes.ends_with(b"\r\n\r\n") {
                    self.head_done()
                } else {
                    assert!(self.bytes.len() < 4096, "endless request head");
                    WireState::Head
                }
            }
            WireState::Done | WireState::Length { left: 0 } => panic!(
                "byte {b:#04x} accepted after the end of the request (wire offset {})",
                self.bytes.len() - 1
            ),
            WireState::Length { left } => {
                self.body_byte(b, filled);
                WireState::Length { left: left - 1 }
            }
            WireState::SizeLine { size, digits } => match (b as char).to_digit(16) {
                Some(d) => {
                    assert!(digits < 16, "chunk-size line too long");
                    WireState::SizeLine {
                        size: size * 16 + u64::from(d),
                        digits: digits + 1,
                    }
                }
                None => {
                    assert!(
                        b == b'\r' && digits > 0,
                        "byte {b:#04x} in a chunk-size line"
                    );
                    WireState::SizeLf { size }
                }
            },
            WireState::SizeLf { size } => {
                assert_eq!(b, b'\n', "chunk-size line without LF");
                if size == 0 {
                    WireState::Trailers
                } else {
                    assert!(
                        size <= capacity,
                        "chunk of {size} bytes, capacity {capacity}"
                    );
                    WireState::Data { left: size }
                }
            }
            WireState::Data { left } => {
                self.body_byte(b, filled);
                if left == 1 {
                    WireState::DataCr
                } else {
                    WireState::Data { left: left - 1 }
                }
            }
            WireState::DataCr => {
                assert_eq!(b, b'\r', "chunk data longer than its size");
                WireState::DataLf
            }
            WireState::DataLf => {
                assert_eq!(b, b'\n', "chunk data without CRLF");
                WireState::SizeLine { size: 0, digits: 0 }
            }
            WireState::Trailers => {
                self.trailer_line.push(b);
                if b != b'\n' {
                    WireState::Trailers
                } else {
                    let line = std::mem::take(&mut self.trailer_line);
                    let Some(field) = line.strip_suffix(b"\r\n") else {
                        panic!("bare LF in the trailer section: {line:?}");
                    };
                    if field.is_empty() {
                        WireState::Done
                    } else {
                        self.trailers.push(field.to_vec());
                        WireState::Trailers
                    }
                }
            }
        };
    }

    /// The head is complete: httparse reads it whole, with the framing asked for.
    fn head_done(&mut self) -> WireState {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut request = httparse::Request::new(&mut headers);
        let parsed = request.parse(&self.bytes);
        assert_eq!(
            parsed,
            Ok(httparse::Status::Complete(self.bytes.len())),
            "head {:?}",
            String::from_utf8_lossy(&self.bytes)
        );
        self.head_len = Some(self.bytes.len());
        assert_eq!(request.method, Some(self.setup.method));
        assert_eq!(request.path, Some("/upload"));
        assert_eq!(request.version, Some(1));
        let values = |name: &str| -> Vec<&[u8]> {
            request
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value)
                .collect()
        };
        assert_eq!(values("host"), [&b"fuzz.example"[..]]);
        let te = values("transfer-encoding");
        let cl = values("content-length");
        let expect = values("expect");
        let framing = self.setup.framing;
        let wants_expect = self.setup.expect && !framing.is_empty();
        assert_eq!(
            expect,
            if wants_expect {
                vec![&b"100-continue"[..]]
            } else {
                vec![]
            },
            "Expect field"
        );
        self.expect_header = wants_expect;
        match framing {
            BodyFraming::Chunked => {
                assert_eq!(te, [&b"chunked"[..]]);
                assert!(cl.is_empty());
                WireState::SizeLine { size: 0, digits: 0 }
            }
            BodyFraming::Length(len) => {
                assert!(te.is_empty());
                assert_eq!(cl, [len.to_string().as_bytes()]);
                WireState::Length { left: len }
            }
            BodyFraming::None => {
                assert!(te.is_empty() && cl.is_empty());
                WireState::Done
            }
        }
    }
}

/// The response bytes, read with httparse alone: interim responses and the final status.
#[derive(Debug, Default)]
struct ResponseMirror {
    pending: Vec<u8>,
    interim: u32,
    continues: u32,
    final_status: Option<u16>,
    broken: bool,
}

impl ResponseMirror {
    fn feed(&mut self, bytes: &[u8]) {
        if self.final_status.is_some() || self.broken {
            return;
        }
        self.pending.extend_from_slice(bytes);
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            // Folded field lines are valid in a response (RFC 9112 section 5.2: a user
            // agent must accept obs-fold), as the exchange's parser takes them.
            let parsed = httparse::ParserConfig::default()
                .allow_obsolete_multiline_headers_in_responses(true)
                .parse_response(&mut response, &self.pending);
            let (consumed, code) = match parsed {
                Ok(httparse::Status::Complete(n)) => (n, response.code.unwrap_or(0)),
                Ok(httparse::Status::Partial) => return,
                Err(_) => {
                    self.broken = true;
                    return;
                }
            };
            self.pending.drain(..consumed);
            if (100..200).contains(&code) {
                self.interim += 1;
                self.continues += u32::from(code == 100);
            } else {
                self.final_status = Some(code);
                return;
            }
        }
    }
}

/// What `poll_send` offers, without the borrow: 0 write, 1 fill, 2 idle; and the length.
fn offer(exchange: &Exchange, buf: &mut FixedBuf) -> (u8, usize) {
    match exchange.poll_send(buf) {
        SendWant::Write(bytes) => (0, bytes.len()),
        SendWant::Fill(space) => (1, space.len()),
        SendWant::Idle => (2, 0),
    }
}

/// One upload through an `Exchange`, with everything needed to check it.
struct UploadRun {
    setup: ExchangeSetup,
    exchange: Exchange,
    buf: FixedBuf,
    wire: RequestWire,
    /// Every body byte the source gave and the exchange took.
    filled: Vec<u8>,
    source_ended: bool,
    /// The trailer fields the last chunk must carry (chunked only).
    trailers: Vec<HeaderField>,
    /// `100 Continue` arrived, or the wait for it timed out while the exchange waited.
    released: bool,
    outbox: Vec<u8>,
    received: u64,
    mirror: ResponseMirror,
    body_done: bool,
    peer_closed: bool,
    /// The driver would have given up: an error from the exchange, or a close before the
    /// response.
    over: bool,
}

impl UploadRun {
    fn new(setup: ExchangeSetup, trailer: bool) -> Self {
        let target = Target::parse("http://fuzz.example/upload").unwrap();
        let mut head = RequestHead::new(setup.method, &target).unwrap();
        head.set_framing(setup.framing);
        head.set_expect_continue(setup.expect);
        let limits = small_limits();
        let recv_capacity = limits
            .max_head_bytes
            .max(limits.max_chunk_line_bytes)
            .max(limits.max_trailer_bytes)
            + 1;
        let mut buf = if setup.coalesce {
            FixedBuf::with_lead(setup.capacity, recv_capacity, head.encoded_len())
        } else {
            FixedBuf::new(setup.capacity, recv_capacity, head.encoded_len())
        };
        let trailers = if trailer {
            vec![HeaderField::new("X-Fuzz-Trailer", "yes").unwrap()]
        } else {
            Vec::new()
        };
        let exchange = if setup.coalesce {
            Exchange::new_coalescing(&head, trailers.clone(), limits, &mut buf)
        } else {
            Exchange::new(&head, trailers.clone(), limits, &mut buf)
        }
        .expect("the send region holds the head");
        UploadRun {
            setup,
            exchange,
            buf,
            wire: RequestWire::new(setup),
            filled: Vec::new(),
            source_ended: false,
            trailers: if setup.framing == BodyFraming::Chunked {
                trailers
            } else {
                Vec::new()
            },
            released: false,
            outbox: Vec::new(),
            received: 0,
            mirror: ResponseMirror::default(),
            body_done: false,
            peer_closed: false,
            over: false,
        }
    }

    /// The socket accepts up to `limit` bytes of what is offered.
    fn write(&mut self, limit: usize) {
        let SendWant::Write(bytes) = self.exchange.poll_send(&mut self.buf) else {
            return;
        };
        assert!(!bytes.is_empty(), "an empty write is offered");
        let n = bytes.len().min(limit);
        self.wire.feed(&bytes[..n], &self.filled);
        self.exchange.on_sent(n);
        if self.wire.expect_header && self.wire.after_head() > 0 {
            assert!(
                self.released,
                "body bytes accepted before 100 Continue and before the wait timed out"
            );
        }
    }

    /// The source fills up to `want` bytes of what is offered (0: end of source).
    fn fill(&mut self, want: usize) {
        let owed = match self.setup.framing {
            BodyFraming::Length(len) => Some(len - self.filled.len() as u64),
            _ => None,
        };
        let SendWant::Fill(space) = self.exchange.poll_send(&mut self.buf) else {
            return;
        };
        // Coalescing: when the last chunk did not fit after the last data chunk, the
        // source is asked once more, and a source at its end answers 0 again.
        assert!(
            !self.source_ended || self.setup.coalesce,
            "a fill after the source ended"
        );
        let want = if self.source_ended { 0 } else { want };
        match (self.setup.framing, owed) {
            // Coalescing offers the rest of a chunk after a short fill.
            (BodyFraming::Chunked, _) if self.setup.coalesce => assert!(
                (1..=self.setup.capacity).contains(&space.len()),
                "fill space {} for chunks of {}",
                space.len(),
                self.setup.capacity
            ),
            (BodyFraming::Chunked, _) => assert_eq!(space.len(), self.setup.capacity),
            (BodyFraming::Length(_), Some(0)) => {
                assert_eq!(space.len(), 1, "the end-of-source probe is one byte")
            }
            (BodyFraming::Length(_), Some(owed)) => assert_eq!(
                space.len() as u64,
                owed.min(self.setup.capacity as u64),
                "fill space with {owed} bytes owed"
            ),
            _ => panic!("a fill for a request without a body"),
        }
        let n = want.min(space.len());
        let start = self.filled.len();
        for (i, slot) in space[..n].iter_mut().enumerate() {
            *slot = body_byte(start + i);
        }
        let last_chunk_needs = 3
            + self
                .trailers
                .iter()
                .map(HeaderField::encoded_len)
                .sum::<usize>()
            + 2;
        let region = self.buf.send_region().len();
        match self.exchange.on_filled(&mut self.buf, n) {
            Ok(()) => {
                if n == 0 {
                    self.source_ended = true;
                    // Coalescing sends a waiting head first and finds out at the next fill.
                    if self.setup.framing == BodyFraming::Chunked && !self.setup.coalesce {
                        assert!(last_chunk_needs <= region, "the last chunk cannot fit");
                    }
                } else {
                    assert_ne!(owed, Some(0), "a byte past the Content-Length accepted");
                    self.filled.extend((start..start + n).map(body_byte));
                }
            }
            Err(e) => {
                match (self.setup.framing, owed, n) {
                    (BodyFraming::Length(expected), Some(0), 1) => {
                        assert_eq!(e, RequestError::SourceLongerThanLength { expected })
                    }
                    (BodyFraming::Length(expected), Some(_), 0) => assert_eq!(
                        e,
                        RequestError::SourceShorterThanLength {
                            expected,
                            actual: self.filled.len() as u64
                        }
                    ),
                    (BodyFraming::Chunked, _, 0) => {
                        assert!(
                            matches!(
                                e,
                                RequestError::InvalidOption {
                                    option: "trailers",
                                    ..
                                }
                            ),
                            "{e:?}"
                        );
                        assert!(
                            last_chunk_needs > region,
                            "trailers refused that fit: {e:?}"
                        );
                    }
                    _ => panic!("fill of {n} (owed {owed:?}) refused: {e:?}"),
                }
                self.over = true;
            }
        }
    }

    /// Up to `want` queued server bytes arrive; body bytes are decoded as the driver does.
    fn deliver(&mut self, want: usize) {
        if self.peer_closed || self.body_done || self.outbox.is_empty() {
            return;
        }
        let space = self.exchange.recv_space(&mut self.buf);
        assert!(
            !space.is_empty(),
            "the receive region is full while the response is not done"
        );
        let n = want.min(space.len()).min(self.outbox.len());
        if n == 0 {
            return;
        }
        space[..n].copy_from_slice(&self.outbox[..n]);
        let bytes: Vec<u8> = self.outbox.drain(..n).collect();
        let had_response = self.mirror.final_status.is_some();
        let was_awaiting = self.exchange.awaits_continue();
        let continues = self.mirror.continues;
        let result = self.exchange.on_received(&self.buf, n);
        self.received += n as u64;
        self.mirror.feed(&bytes);
        let head = match result {
            Ok(head) => head,
            Err(_) => {
                self.over = true;
                return;
            }
        };
        assert_eq!(
            self.exchange.interim_responses(),
            self.mirror.interim,
            "interim responses"
        );
        assert_eq!(
            self.exchange.has_response(),
            self.mirror.final_status.is_some(),
            "final response seen by httparse and by the exchange"
        );
        match head {
            Some(head) => {
                assert!(!had_response, "a second final head");
                assert_eq!(Some(head.status.as_u16()), self.mirror.final_status);
            }
            None => assert_eq!(self.mirror.final_status.is_some(), had_response),
        }
        if self.mirror.continues > continues {
            self.released = true;
            if was_awaiting {
                assert!(
                    !self.exchange.awaits_continue(),
                    "still waiting after 100 Continue"
                );
            }
        }
        // An early 2xx is a go-ahead too: the body goes on to its end (exchange rule 4).
        if let Some(status) = self.exchange.answered_early() {
            assert!((200..300).contains(&status), "went on after {status}");
            self.released = true;
        }
        if self.exchange.has_response() {
            self.decode_body();
        }
    }

    fn decode_body(&mut self) {
        for _ in 0..4096 {
            match self.exchange.decode_body(&self.buf) {
                Ok(BodyStep::Data(range)) => assert!(
                    !range.is_empty() && range.end <= self.buf.recv_region().len(),
                    "body data at {range:?}"
                ),
                Ok(BodyStep::NeedMore) => return,
                Ok(BodyStep::End) => {
                    self.body_done = true;
                    return;
                }
                Err(_) => {
                    self.over = true;
                    return;
                }
            }
        }
        panic!("decode_body never asks for more");
    }

    fn peer_close(&mut self) {
        if self.peer_closed {
            return;
        }
        self.peer_closed = true;
        if !self.exchange.has_response() {
            assert_eq!(self.exchange.on_peer_closed(), Err(None));
            self.over = true;
            return;
        }
        let result = self.exchange.on_peer_closed();
        if self.body_done {
            assert_eq!(result, Ok(()), "close after a complete body");
        }
        if result.is_err() {
            self.over = true;
        }
    }

    fn continue_timeout(&mut self) {
        let awaiting = self.exchange.awaits_continue();
        let before = offer(&self.exchange, &mut self.buf);
        self.exchange.continue_timed_out();
        if awaiting {
            self.released = true;
            assert!(
                !self.exchange.awaits_continue(),
                "still waiting after the timeout"
            );
        } else {
            assert_eq!(
                offer(&self.exchange, &mut self.buf),
                before,
                "a timeout outside the wait changed the send side"
            );
        }
    }

    fn add_trailer(&mut self, value: u8) {
        if self.source_ended || self.setup.framing != BodyFraming::Chunked {
            return;
        }
        let name = format!("X-Added-{}", self.trailers.len());
        let field = HeaderField::new(&name, value.to_string()).unwrap();
        self.exchange.add_trailers([field.clone()]);
        self.trailers.push(field);
    }

    /// Writes everything and reads `fill` bytes a time from a source that, with
    /// Content-Length, is exactly as long as stated (`fill` 0: the source is at its end).
    fn pump(&mut self, fill: usize) {
        for _ in 0..EXCHANGE_PUMP_STEPS {
            match offer(&self.exchange, &mut self.buf).0 {
                0 => self.write(usize::MAX),
                1 => match self.setup.framing {
                    BodyFraming::Length(len) => {
                        let owed = usize::try_from(len).unwrap() - self.filled.len();
                        self.fill(fill.min(owed))
                    }
                    _ => self.fill(fill),
                },
                _ => return,
            }
            if self.over {
                return;
            }
            self.check();
        }
    }

    /// Ends the upload as the driver would: everything written, the source ended (with the
    /// bytes a Content-Length still owes), the wait for 100 Continue timed out.
    fn finish(&mut self) {
        for _ in 0..EXCHANGE_MAX_FINISH_STEPS {
            if self.over {
                return;
            }
            match offer(&self.exchange, &mut self.buf) {
                (0, _) => self.write(usize::MAX),
                (1, space) => {
                    let owed = match self.setup.framing {
                        BodyFraming::Length(len) => len - self.filled.len() as u64,
                        _ => 0,
                    };
                    self.fill(if owed > 0 { space } else { 0 });
                }
                _ if self.exchange.awaits_continue() => self.continue_timeout(),
                _ => {
                    assert!(
                        self.exchange.request_sent() || self.exchange.stopped_by_response(),
                        "idle with the request neither sent nor stopped"
                    );
                    return;
                }
            }
            self.check();
        }
        panic!("the upload did not finish in {EXCHANGE_MAX_FINISH_STEPS} steps");
    }

    /// What must hold between any two operations.
    fn check(&mut self) {
        let progress = self.exchange.progress();
        assert_eq!(
            progress.wire_bytes_sent,
            self.wire.bytes.len() as u64,
            "wire bytes sent vs accepted"
        );
        assert_eq!(
            progress.body_bytes_sent, self.wire.body as u64,
            "body bytes sent vs body bytes on the wire"
        );
        assert_eq!(progress.body_bytes_read, self.filled.len() as u64);
        assert!(progress.body_bytes_sent <= progress.body_bytes_read);
        assert_eq!(progress.wire_bytes_received, self.received);
        let complete = self.wire.complete();
        assert_eq!(
            self.exchange.request_sent(),
            complete,
            "request_sent vs a complete request on the wire"
        );
        if complete {
            assert_eq!(self.wire.body, self.filled.len(), "filled bytes never sent");
            if matches!(self.setup.framing, BodyFraming::Chunked)
                || matches!(self.setup.framing, BodyFraming::Length(len) if len > 0)
            {
                assert!(self.source_ended, "the request ended before the source did");
            }
            if self.setup.framing == BodyFraming::Chunked {
                let expected: Vec<Vec<u8>> = self
                    .trailers
                    .iter()
                    .map(|f| [f.name().as_bytes(), b": ", f.value()].concat())
                    .collect();
                assert_eq!(self.wire.trailers, expected, "trailer section");
            }
        }
        let (kind, _) = offer(&self.exchange, &mut self.buf);
        if self.exchange.has_response() {
            // Only an early 2xx lets the body go on (exchange rule 4), until it is complete.
            match self.exchange.answered_early() {
                None => {
                    assert_eq!(kind, 2, "the send side goes on after a final refusal");
                    assert!(self.exchange.request_sent() || self.exchange.stopped_by_response());
                }
                Some(status) => {
                    assert!((200..300).contains(&status), "went on after {status}");
                    assert!(!self.exchange.stopped_by_response());
                    assert!(!self.exchange.awaits_continue(), "a 2xx is a go-ahead");
                }
            }
        }
        if self.exchange.stopped_by_response() {
            assert!(self.exchange.has_response() && !complete);
        }
        if self.exchange.awaits_continue() {
            assert!(
                self.wire.expect_header && self.wire.head_len.is_some(),
                "waiting for 100 Continue without having sent the Expect head"
            );
            assert_eq!(self.wire.after_head(), 0);
            assert_eq!(kind, 2, "waiting for 100 Continue, yet offering to send");
        }
        if kind == 2 && !self.over {
            assert!(
                complete || self.exchange.stopped_by_response() || self.exchange.awaits_continue(),
                "idle with nothing to wait for"
            );
        }
    }
}

/// A whole upload through `Exchange`, driven by the operations in `data` (see above): every
/// accepted byte keeps the wire a prefix of a valid request whose body is the source's bytes,
/// progress counts what was accepted, no body byte goes before `100 Continue` (or the end of
/// the wait), nothing is offered after the final response, and the upload always ends.
pub fn exchange(data: &[u8]) {
    let [flags, capacity, length, ops @ ..] = data else {
        return;
    };
    let framing = if flags & 0x08 != 0 {
        BodyFraming::None
    } else if flags & 0x01 != 0 {
        BodyFraming::Length(u64::from(*length))
    } else {
        BodyFraming::Chunked
    };
    let setup = ExchangeSetup {
        framing,
        expect: flags & 0x02 != 0,
        capacity: usize::from(capacity & 0x3f) + 1,
        method: if framing == BodyFraming::None && flags & 0x10 != 0 {
            "HEAD"
        } else {
            "PUT"
        },
        coalesce: flags & 0x20 != 0,
    };
    let mut run = UploadRun::new(setup, flags & 0x04 != 0);
    run.check();
    let mut bytes = ops.iter().copied();
    let amount = |p: u8| {
        if p >= 0xf0 {
            usize::MAX
        } else {
            usize::from(p)
        }
    };
    for _ in 0..EXCHANGE_MAX_OPS {
        let (Some(op), Some(p)) = (bytes.next(), bytes.next()) else {
            break;
        };
        match op % 9 {
            0 => run.write(amount(p)),
            1 => run.fill(if p == 0xff {
                usize::MAX
            } else {
                usize::from(p)
            }),
            2 => run
                .outbox
                .extend_from_slice(EXCHANGE_CANNED[usize::from(p) % EXCHANGE_CANNED.len()]),
            3 => run.outbox.extend(bytes.by_ref().take(usize::from(p % 64))),
            4 => run.deliver(amount(p)),
            5 => run.peer_close(),
            6 => run.continue_timeout(),
            7 => run.pump(usize::from(p)),
            _ => run.add_trailer(p),
        }
        run.check();
        if run.over {
            return;
        }
    }
    run.finish();
    run.check();
    if !run.over && !run.exchange.has_response() {
        assert!(run.exchange.request_sent(), "the upload did not finish");
    }
}

// The `conn` target: one `Connection` driven through its whole life by operations decoded
// from the input, with a fake clock (`Instant::now()` at the start plus scripted offsets).
//
// Input: `[flags, connect, stall, total, options, length, (op, param)*]`.
// - flags: bit 0 Content-Length (else chunked), bit 1 `Expect: 100-continue`, bit 2 TLS (a
//   handshake phase), bit 3 open at once (resolve, connect, handshake and start the
//   exchange before the operations); bits 4-7: chunk capacity `(flags >> 4) * 4 + 1`.
// - connect: bits 0-3 the connect timeout `CONN_DURATIONS[..]`; bits 4-7 how long before
//   the connection the upload started (a redirect or retry used that much of it).
// - stall, total: bit 7 set: none; else `CONN_DURATIONS[b & 0x0f]`.
// - options: bits 0-3 the expect timeout (15: none, else `CONN_DURATIONS[..]`); bits 4-7:
//   below 8 no rate limit, else `CONN_RATES[b - 8]` bytes per second.
// - length: the Content-Length, 0 to 255.
// - op % 14, with param p:
//   0 the clock advances `p & 0x3f` units of `CONN_UNITS[p >> 6]`
//   1 the clock goes to `poll_timeout` (plus p µs if p is odd), then `handle_timeout`
//   2 the clock goes to 1 ns before `poll_timeout`, then `handle_timeout` (nothing is due)
//   3 the connection's next step: an attempt with `p % 4 + 1` addresses while resolving;
//     while connecting, connected (or, bit 7, the next address); the handshake done;
//     when ready or idle, an exchange starts (on an idle one, bit 0 Content-Length, bit 1
//     expect, bit 2 a new upload starting now rather than the same one)
//   4 one `poll_transmit`: a Write accepts `p` bytes (0: would block, >= 0xf0: all); a Fill,
//     by `p >> 6`: 0 gives `p & 0x3f` bytes (0: the end; with Content-Length at least 1
//     while bytes are owed, 0 once none are), 1 would block (`on_source_blocked`), 2 would
//     block, watched (`on_source_waiting`), 3 fills it all
//   5 the watched source is readable (`on_source_ready`)
//   6 the server queues canned message `p % EXCHANGE_CANNED.len()`
//   7 the server queues `p % 64` raw bytes taken from the input
//   8 min(p, queued, room) queued bytes arrive (p >= 0xf0: as many as fit); the response
//     body is decoded as far as it goes
//   9 the peer closes
//   10 a driver-like pump: up to 16 `poll_transmit`, writing all, filling as op 4 says
//   11 `finish_exchange` once the final head is in (bit 0: as if the body was not read)
//   12 `handle_timeout` now, whether due or not
//   13 the response body is decoded as far as it goes
// After the operations, the connection is driven as the driver would (open it, pump, let
// the server's bytes in, sleep until `poll_timeout`) until it fails or the request is done.

/// Durations a timeout or a delay is picked from (at most a year: see the report on
/// durations whose deadline does not fit an `Instant`).
pub const CONN_DURATIONS: [Duration; 16] = [
    Duration::ZERO,
    Duration::from_millis(1),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(3600),
    Duration::from_secs(365 * 24 * 3600),
];

/// Rate limits, bytes per second.
pub const CONN_RATES: [u64; 8] = [1, 3, 10, 100, 1000, 65_536, 10_000_000, u64::MAX];

/// Units of a clock advance.
const CONN_UNITS: [Duration; 4] = [
    Duration::from_micros(1),
    Duration::from_millis(1),
    Duration::from_millis(50),
    Duration::from_secs(1),
];

/// Most operations taken from one input.
const CONN_MAX_OPS: usize = 4096;
/// Most rounds of the final drive (a 255-byte body at 1 byte a second, in 1-byte chunks,
/// takes about 2,000).
const CONN_MAX_FINISH_ROUNDS: usize = 20_000;

fn conn_duration(b: u8) -> Option<Duration> {
    (b & 0x80 == 0).then(|| CONN_DURATIONS[usize::from(b & 0x0f)])
}

fn min_instant(all: impl IntoIterator<Item = Option<Instant>>) -> Option<Instant> {
    all.into_iter().flatten().min()
}

/// What the harness expects of the machine's timers: the deadlines of the module docs'
/// rules, kept from the calls the harness made.
#[derive(Debug)]
struct ConnModel {
    phase: Phase,
    connect_started: Instant,
    connect_deadline: Option<Instant>,
    attempt_deadline: Option<Instant>,
    upload_started: Instant,
    total_deadline: Option<Instant>,
    /// The last instant a byte moved (rule 4), or the exchange started.
    last_progress: Instant,
    /// The first `poll_transmit` that found the body waiting for `100 Continue`.
    continue_started: Option<Instant>,
    paced_until: Option<Instant>,
    retry_at: Option<Instant>,
    waiting: bool,
    /// Where the rate limit counts from: the instant and the bytes sent then.
    rate_since: Option<(Instant, u64)>,
    /// Notices the machine owes the driver.
    notices: Vec<Notice>,
}

impl ConnModel {
    fn connecting(&self) -> bool {
        matches!(
            self.phase,
            Phase::Resolving | Phase::Connecting | Phase::Handshaking
        )
    }

    fn stall_deadline(&self, timeouts: &Timeouts) -> Option<Instant> {
        // The machine's own pacing wait is not a stall: counted from its end.
        let since = match self.paced_until {
            Some(until) => self.last_progress.max(until),
            None => self.last_progress,
        };
        timeouts.stall.and_then(|s| since.checked_add(s))
    }

    fn continue_deadline(&self, awaiting: bool, expect: Duration) -> Option<Instant> {
        self.continue_started
            .filter(|_| awaiting)
            .and_then(|since| since.checked_add(expect))
    }

    fn poll_timeout(
        &self,
        timeouts: &Timeouts,
        awaiting: bool,
        expect: Duration,
    ) -> Option<Instant> {
        if self.connecting() {
            min_instant([
                self.connect_deadline,
                self.attempt_deadline,
                self.total_deadline,
            ])
        } else if self.phase == Phase::Exchanging {
            min_instant([
                self.total_deadline,
                self.stall_deadline(timeouts),
                self.continue_deadline(awaiting, expect),
                self.paced_until,
                self.retry_at,
            ])
        } else {
            None
        }
    }

    /// What `handle_timeout(now)` must do: the error due, or which waits end. Returns
    /// whether the wait for `100 Continue` ended.
    fn fire(
        &mut self,
        now: Instant,
        timeouts: &Timeouts,
        awaiting: bool,
        expect: Duration,
    ) -> Result<bool, TimeoutKind> {
        let connecting = self.connecting();
        if (connecting || self.phase == Phase::Exchanging)
            && self.total_deadline.is_some_and(|d| now >= d)
        {
            return Err(TimeoutKind::Total);
        }
        if connecting {
            if self.connect_deadline.is_some_and(|d| now >= d) {
                return Err(TimeoutKind::Connect);
            }
            if self.attempt_deadline.is_some_and(|d| now >= d) {
                self.attempt_deadline = None;
                self.notices.push(Notice::NextAddress);
            }
            return Ok(false);
        }
        if self.phase != Phase::Exchanging {
            return Ok(false);
        }
        if self.stall_deadline(timeouts).is_some_and(|d| now >= d) {
            return Err(TimeoutKind::Stall);
        }
        let mut released = false;
        if let Some(deadline) = self.continue_deadline(awaiting, expect)
            && now >= deadline
        {
            let since = self.continue_started.expect("a deadline has a start");
            self.notices.push(Notice::ContinueWaitOver(now - since));
            released = true;
        }
        if let Some(until) = self.paced_until
            && now >= until
        {
            self.paced_until = None;
            self.last_progress = self.last_progress.max(until);
        }
        if self.retry_at.is_some_and(|d| now >= d) {
            self.retry_at = None;
        }
        Ok(released)
    }
}

/// The harness's side of one exchange on the connection.
#[derive(Debug)]
struct ConnExchange {
    setup: ExchangeSetup,
    wire: RequestWire,
    filled: Vec<u8>,
    source_ended: bool,
    /// `100 Continue` or a final 2xx arrived, or the wait for it timed out.
    released: bool,
    outbox: Vec<u8>,
    received: u64,
    mirror: ResponseMirror,
    /// The final status that came before the request was complete.
    early: Option<u16>,
    body_done: bool,
    /// When the first Write of the exchange was handed out (the rate limit counts from it).
    first_write: Option<Instant>,
}

/// How many bytes the source gives into a Fill of `len` bytes, by `fill` (op 4); `None`
/// if it would block.
fn fill_amount(ex: Option<&ConnExchange>, len: usize, fill: u8) -> Option<usize> {
    let ex = ex?;
    let n = match fill >> 6 {
        1 | 2 => return None,
        3 => len,
        _ => usize::from(fill & 0x3f),
    };
    Some(match ex.setup.framing {
        BodyFraming::Length(length) if length == ex.filled.len() as u64 => 0,
        BodyFraming::Length(_) => n.clamp(1, len),
        _ => n.min(len),
    })
}

/// What one `poll_transmit` gave, without the borrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gave {
    Write(usize),
    Fill(usize),
    Wait,
    Done,
    Failed,
}

/// One connection with its fake clock, its model and its exchange.
struct ConnRun {
    start: Instant,
    now: Instant,
    conn: Connection,
    buf: FixedBuf,
    timeouts: Timeouts,
    options: ExchangeOptions,
    tls: bool,
    capacity: usize,
    length: u8,
    /// The first exchange's framing (Content-Length or chunked) and expect flag.
    first: (bool, bool),
    model: ConnModel,
    ex: Option<ConnExchange>,
    /// The driver would have given up (an error), or the connection is closed.
    over: bool,
}

/// The send region and the receive region for the largest head this target writes.
fn conn_buffer(capacity: usize) -> FixedBuf {
    let limits = small_limits();
    let recv_capacity = limits
        .max_head_bytes
        .max(limits.max_chunk_line_bytes)
        .max(limits.max_trailer_bytes)
        + 1;
    let target = Target::parse("http://fuzz.example/upload").unwrap();
    let head_len = [BodyFraming::Length(255), BodyFraming::Chunked]
        .into_iter()
        .map(|framing| {
            let mut head = RequestHead::new("PUT", &target).unwrap();
            head.set_framing(framing);
            head.set_expect_continue(true);
            head.encoded_len()
        })
        .max()
        .unwrap();
    FixedBuf::new(capacity, recv_capacity, head_len)
}

impl ConnRun {
    fn new(config: [u8; 6]) -> Self {
        let [flags, connect, stall, total, options, length] = config;
        let start = Instant::now();
        let now = start + CONN_DURATIONS[usize::from(connect >> 4)];
        let timeouts = Timeouts {
            connect: CONN_DURATIONS[usize::from(connect & 0x0f)],
            stall: conn_duration(stall),
            total: conn_duration(total),
        };
        let options = ExchangeOptions {
            expect_timeout: (options & 0x0f != 0x0f)
                .then(|| CONN_DURATIONS[usize::from(options & 0x0f)]),
            rate_limit: (options >> 4 >= 8).then(|| CONN_RATES[usize::from(options >> 4) - 8]),
        };
        let capacity = usize::from(flags >> 4) * 4 + 1;
        let conn = Connection::new(timeouts, start, now);
        let model = ConnModel {
            phase: Phase::Resolving,
            connect_started: now,
            connect_deadline: now.checked_add(timeouts.connect),
            attempt_deadline: None,
            upload_started: start,
            total_deadline: timeouts.total.and_then(|t| start.checked_add(t)),
            last_progress: now,
            continue_started: None,
            paced_until: None,
            retry_at: None,
            waiting: false,
            rate_since: None,
            notices: Vec::new(),
        };
        let mut run = ConnRun {
            start,
            now,
            conn,
            buf: conn_buffer(capacity),
            timeouts,
            options,
            tls: flags & 0x04 != 0,
            capacity,
            length,
            first: (flags & 0x01 != 0, flags & 0x02 != 0),
            model,
            ex: None,
            over: false,
        };
        run.check();
        if flags & 0x08 != 0 {
            run.connect_step(0);
            run.connect_step(0);
            if run.tls {
                run.connect_step(0);
            }
            run.connect_step(0);
        }
        run
    }

    fn expect(&self) -> Duration {
        self.options.expect_timeout.unwrap_or(Duration::ZERO)
    }

    fn awaiting(&self) -> bool {
        self.conn.exchange().is_some_and(Exchange::awaits_continue)
    }

    /// The notices the machine gives must be the ones the model owes.
    fn check_notices(&mut self) {
        let mut given = Vec::new();
        while let Some(notice) = self.conn.poll_notice() {
            given.push(notice);
        }
        assert_eq!(given, self.model.notices, "notices");
        self.model.notices.clear();
    }

    /// A timeout error of `kind` from the machine must be the one the model has due.
    fn check_error(&mut self, err: &chunkwire::Error, due: Result<bool, TimeoutKind>, call: &str) {
        let Err(kind) = due else {
            panic!(
                "{call} at +{:?} failed with nothing due: {err}",
                self.now - self.start
            );
        };
        assert_eq!(
            err.timeout_kind(),
            Some(kind),
            "{call} at +{:?}: the wrong error ({err})",
            self.now - self.start
        );
        self.over = true;
    }

    /// `handle_timeout(now)`, checked against the model.
    fn handle_timeout(&mut self) {
        if self.over {
            return;
        }
        let awaiting = self.awaiting();
        let (timeouts, expect, now) = (self.timeouts, self.expect(), self.now);
        let due = self.model.fire(now, &timeouts, awaiting, expect);
        match self.conn.handle_timeout(now) {
            Ok(()) => {
                assert!(
                    due.is_ok(),
                    "handle_timeout at +{:?} passed a {due:?} deadline",
                    now - self.start
                );
                self.released_by(due);
                let next = self.conn.poll_timeout();
                assert!(
                    next.is_none_or(|at| at > now),
                    "poll_timeout {:?} is not after the handle_timeout that just handled it",
                    next.map(|at| at - self.start)
                );
            }
            Err(err) => self.check_error(&err, due, "handle_timeout"),
        }
        self.check_notices();
    }

    fn released_by(&mut self, due: Result<bool, TimeoutKind>) {
        if due == Ok(true)
            && let Some(ex) = &mut self.ex
        {
            ex.released = true;
        }
    }

    /// One `poll_transmit`, checked against the model and the rules, then acted on: a Write
    /// accepts `write` bytes, a Fill does what `fill` says (see op 4).
    fn transmit(&mut self, write: usize, fill: u8) -> Gave {
        if self.over {
            return Gave::Failed;
        }
        let now = self.now;
        let awaiting = self.awaiting();
        let (timeouts, expect) = (self.timeouts, self.expect());
        let sent = self.conn.progress().wire_bytes_sent;
        let total_passed = self.model.total_deadline.is_some_and(|d| now >= d);
        let stalled = self.model.phase == Phase::Exchanging
            && self
                .model
                .stall_deadline(&timeouts)
                .is_some_and(|d| now >= d);
        let due = if self
            .model
            .poll_timeout(&timeouts, awaiting, expect)
            .is_some_and(|at| now >= at)
        {
            self.model.fire(now, &timeouts, awaiting, expect)
        } else {
            Ok(false)
        };
        // What comes after the timers, as the rules say.
        let awaiting_after = awaiting && due != Ok(true);
        let mut wait = due.is_ok()
            && (self.model.paced_until.is_some()
                || self.model.retry_at.is_some()
                || self.model.waiting);
        if due.is_ok() && !wait && self.ex.is_some() {
            if awaiting_after {
                self.model.continue_started.get_or_insert(now);
                wait = true;
            } else if let Some(rate) = self.options.rate_limit {
                let rate = rate.max(1);
                let (since, base) = *self.model.rate_since.get_or_insert((now, sent));
                let due_at = Duration::try_from_secs_f64((sent - base) as f64 / rate as f64)
                    .ok()
                    .and_then(|d| since.checked_add(d));
                match due_at {
                    Some(due_at) if now < due_at => {
                        self.model.paced_until = Some(due_at);
                        wait = true;
                    }
                    // Lateness beyond the credit is not caught up in a burst.
                    Some(due_at) if now.saturating_duration_since(due_at) <= RATE_CREDIT => {}
                    _ => self.model.rate_since = Some((now, sent)),
                }
            }
        }
        let mut filled = None;
        let result = self.conn.poll_transmit(&mut self.buf, now);
        let gave = match result {
            Err(err) => {
                self.check_error(&err, due, "poll_transmit");
                self.check_notices();
                return Gave::Failed;
            }
            Ok(Transmit::Write(bytes)) => {
                let n = bytes.len().min(write);
                let accepted = bytes[..n].to_vec();
                (Gave::Write(bytes.len()), accepted)
            }
            Ok(Transmit::Fill(space)) => {
                let len = space.len();
                let n = fill_amount(self.ex.as_ref(), len, fill);
                let start = self.ex.as_ref().map_or(0, |ex| ex.filled.len());
                for (i, slot) in space[..n.unwrap_or(0)].iter_mut().enumerate() {
                    *slot = body_byte(start + i);
                }
                filled = n;
                (Gave::Fill(len), Vec::new())
            }
            Ok(Transmit::Wait) => (Gave::Wait, Vec::new()),
            Ok(Transmit::Done) => (Gave::Done, Vec::new()),
        };
        let (gave, accepted) = gave;
        assert!(
            due.is_ok(),
            "poll_transmit at +{:?} gave {gave:?} with a {due:?} deadline passed",
            now - self.start
        );
        assert!(
            !total_passed || !self.model.connecting() && self.model.phase != Phase::Exchanging,
            "poll_transmit gave {gave:?} after the total deadline"
        );
        assert!(
            !stalled,
            "poll_transmit gave {gave:?} after the stall deadline"
        );
        self.released_by(due);
        self.check_notices();
        if matches!(gave, Gave::Write(_) | Gave::Fill(_)) {
            assert!(
                !total_passed,
                "{gave:?} handed out at +{:?}, after the total deadline",
                now - self.start
            );
            assert!(
                !self.model.waiting,
                "{gave:?} handed out while the watched source waits"
            );
            if self.options.rate_limit.is_some() {
                self.model.rate_since.get_or_insert((now, sent));
            }
        }
        assert_eq!(
            gave == Gave::Wait,
            wait,
            "poll_transmit gave {gave:?}; the rules say {}",
            if wait { "wait" } else { "do not wait" }
        );
        if gave == Gave::Wait && self.model.phase == Phase::Exchanging {
            assert!(
                self.conn.poll_timeout().is_some() || self.model.waiting,
                "a Wait with no timer and no watched source to wake the driver"
            );
        }
        if let Some(next) = self.conn.poll_timeout() {
            assert!(
                next >= now,
                "poll_timeout {:?} is before the poll_transmit at +{:?}",
                next - self.start,
                now - self.start
            );
        }
        match gave {
            Gave::Write(len) => self.on_write(len, accepted),
            Gave::Fill(len) => self.on_fill(len, fill, filled),
            Gave::Done => {
                if let Some(exchange) = self.conn.exchange() {
                    assert!(
                        exchange.request_sent() || exchange.stopped_by_response(),
                        "Done with the request neither sent nor stopped"
                    );
                }
            }
            Gave::Wait | Gave::Failed => {}
        }
        self.check();
        gave
    }

    fn on_write(&mut self, len: usize, accepted: Vec<u8>) {
        let now = self.now;
        let sent = self.conn.progress().wire_bytes_sent;
        let ex = self.ex.as_mut().expect("a Write belongs to an exchange");
        assert!(len > 0, "an empty Write");
        if let Some(status) = ex.early {
            assert!(
                (200..300).contains(&status),
                "a Write after an early {status}"
            );
        }
        if let Some(rate) = self.options.rate_limit {
            // The bound the code gives: a write goes only once the bytes before it are due
            // at `rate` since the first write, and it is at most a tenth of a second's worth
            // (at least 1 byte). So by `t`, what was handed out is at most
            // rate * (t - first write) + allowance; one byte and rate * 1 ns more for the
            // rounding of the due instant to nanoseconds.
            let rate = rate.max(1);
            let allowance = usize::try_from(rate / 10).unwrap_or(usize::MAX).max(1);
            assert!(
                len <= allowance,
                "a Write of {len} bytes, more than the allowance {allowance}"
            );
            let first = *ex.first_write.get_or_insert(now);
            let elapsed = (now - first).as_nanos();
            let bound = u128::from(rate) * elapsed / 1_000_000_000
                + u128::from(rate).div_ceil(1_000_000_000)
                + 1
                + allowance as u128;
            assert!(
                u128::from(sent) + len as u128 <= bound,
                "rate {rate}/s: {} bytes handed out {elapsed} ns after the first write, bound {bound}",
                u128::from(sent) + len as u128
            );
        }
        if accepted.is_empty() {
            return; // The transport would block.
        }
        ex.wire.feed(&accepted, &ex.filled);
        let n = accepted.len();
        self.conn.on_sent(n, now);
        self.model.last_progress = now;
        let ex = self.ex.as_ref().unwrap();
        if ex.wire.expect_header && ex.wire.after_head() > 0 {
            assert!(
                ex.released,
                "a body byte sent before 100 Continue, a 2xx or the expect timeout"
            );
        }
    }

    fn on_fill(&mut self, len: usize, fill: u8, filled: Option<usize>) {
        let now = self.now;
        let ex = self.ex.as_mut().expect("a Fill belongs to an exchange");
        assert!(len > 0, "an empty Fill");
        assert!(!ex.source_ended, "a Fill after the source ended");
        if ex.wire.expect_header {
            assert!(
                ex.released,
                "the source is read before 100 Continue, a 2xx or the expect timeout"
            );
        }
        if let Some(status) = ex.early {
            assert!(
                (200..300).contains(&status),
                "a Fill after an early {status}"
            );
        }
        let Some(n) = filled else {
            if fill >> 6 == 1 {
                self.conn.on_source_blocked(now);
                self.model.retry_at = now.checked_add(SOURCE_RETRY);
            } else {
                self.conn.on_source_waiting();
                self.model.waiting = true;
            }
            return;
        };
        let start = ex.filled.len();
        self.model.last_progress = now;
        match self.conn.on_filled(&mut self.buf, n, now) {
            Ok(()) => {
                if n == 0 {
                    ex.source_ended = true;
                } else {
                    ex.filled.extend((start..start + n).map(body_byte));
                }
            }
            Err(err) => {
                assert!(err.request_error().is_some(), "on_filled: {err}");
                self.over = true;
            }
        }
    }

    /// Advances to the next step of the connection (op 3).
    fn connect_step(&mut self, p: u8) {
        if self.over {
            return;
        }
        let now = self.now;
        match self.model.phase {
            Phase::Resolving => self.attempt(usize::from(p % 4) + 1),
            Phase::Connecting if p & 0x80 != 0 => self.attempt(usize::from(p % 4) + 1),
            Phase::Connecting => {
                self.conn.on_connected(now, self.tls);
                self.model.attempt_deadline = None;
                self.model.last_progress = now;
                if self.tls {
                    self.model.phase = Phase::Handshaking;
                } else {
                    self.ready();
                }
            }
            Phase::Handshaking => {
                self.conn.on_handshake_done(now);
                self.model.last_progress = now;
                self.ready();
            }
            Phase::Ready => {
                let (content_length, expect) = self.first;
                self.start_exchange(content_length, expect, false)
            }
            Phase::Idle => self.start_exchange(p & 1 != 0, p & 2 != 0, p & 4 != 0),
            Phase::Exchanging | Phase::Closed => {}
        }
        self.check();
    }

    fn attempt(&mut self, addresses: usize) {
        let now = self.now;
        self.conn.on_connect_attempt(now, addresses);
        self.model.phase = Phase::Connecting;
        if let Some(deadline) = self.model.connect_deadline {
            let left = deadline.saturating_duration_since(now);
            self.model.attempt_deadline = now.checked_add(left / addresses as u32);
        }
    }

    fn ready(&mut self) {
        self.model.phase = Phase::Ready;
        self.model.connect_deadline = None;
        self.model.attempt_deadline = None;
    }

    fn start_exchange(&mut self, content_length: bool, expect: bool, new_upload: bool) {
        if !matches!(self.model.phase, Phase::Ready | Phase::Idle) || self.over {
            return;
        }
        let framing = if content_length {
            BodyFraming::Length(u64::from(self.length))
        } else {
            BodyFraming::Chunked
        };
        let setup = ExchangeSetup {
            framing,
            expect,
            capacity: self.capacity,
            method: "PUT",
            coalesce: false,
        };
        let target = Target::parse("http://fuzz.example/upload").unwrap();
        let mut head = RequestHead::new("PUT", &target).unwrap();
        head.set_framing(framing);
        head.set_expect_continue(expect);
        let exchange = Exchange::new(&head, Vec::new(), small_limits(), &mut self.buf)
            .expect("the send region holds the head");
        let now = self.now;
        if new_upload {
            self.model.upload_started = now;
        }
        let upload_started = self.model.upload_started;
        let exchanges = self.conn.exchanges();
        self.conn
            .start_exchange(exchange, self.options, upload_started, now);
        assert_eq!(self.conn.exchanges(), exchanges + 1, "exchanges counted");
        let m = &mut self.model;
        m.phase = Phase::Exchanging;
        m.total_deadline = self
            .timeouts
            .total
            .and_then(|t| upload_started.checked_add(t));
        m.last_progress = now;
        m.continue_started = None;
        m.paced_until = None;
        m.retry_at = None;
        m.waiting = false;
        m.rate_since = None;
        self.ex = Some(ConnExchange {
            setup,
            wire: RequestWire::new(setup),
            filled: Vec::new(),
            source_ended: false,
            released: false,
            outbox: Vec::new(),
            received: 0,
            mirror: ResponseMirror::default(),
            early: None,
            body_done: false,
            first_write: None,
        });
    }

    /// Up to `want` queued server bytes arrive, and the body is decoded (op 8).
    fn deliver(&mut self, want: usize) {
        if self.over || self.conn.peer_closed() {
            return;
        }
        let now = self.now;
        let Some(ex) = &mut self.ex else { return };
        if ex.body_done || ex.outbox.is_empty() {
            return;
        }
        let space = self.conn.recv_space(&mut self.buf);
        assert!(
            !space.is_empty(),
            "the receive region is full while the response is not done"
        );
        let n = want.min(space.len()).min(ex.outbox.len());
        if n == 0 {
            return;
        }
        space[..n].copy_from_slice(&ex.outbox[..n]);
        let bytes: Vec<u8> = ex.outbox.drain(..n).collect();
        let sent_before = self.conn.exchange().is_some_and(Exchange::request_sent);
        let result = self.conn.on_received(&self.buf, n, now, &mut |_, _| {});
        self.model.last_progress = now;
        ex.received += n as u64;
        ex.mirror.feed(&bytes);
        if ex.mirror.continues > 0
            || ex
                .mirror
                .final_status
                .is_some_and(|s| (200..300).contains(&s))
        {
            ex.released = true;
        }
        match result {
            Err(_) => self.over = true,
            Ok(Some(head)) => {
                let status = head.status.as_u16();
                assert_eq!(Some(status), ex.mirror.final_status, "final status");
                if !sent_before {
                    ex.early = Some(status);
                }
                self.decode();
            }
            Ok(None) => {
                if self.conn.exchange().is_some_and(Exchange::has_response) {
                    self.decode();
                }
            }
        }
        self.check();
    }

    /// Decodes the response body as far as the bytes in go (ops 8, 13).
    fn decode(&mut self) {
        if self.over || !self.conn.exchange().is_some_and(Exchange::has_response) {
            return;
        }
        let Some(ex) = &mut self.ex else { return };
        if ex.body_done {
            return;
        }
        for _ in 0..4096 {
            match self.conn.decode_body(&self.buf, &mut |_, _| {}) {
                Ok(BodyStep::Data(range)) => assert!(!range.is_empty(), "empty body data"),
                Ok(BodyStep::NeedMore) => return,
                Ok(BodyStep::End) => {
                    ex.body_done = true;
                    return;
                }
                Err(_) => {
                    self.over = true;
                    return;
                }
            }
        }
        panic!("decode_body never asks for more");
    }

    fn peer_close(&mut self) {
        if self.over || self.conn.peer_closed() {
            return;
        }
        let has_response = self.conn.exchange().is_some_and(Exchange::has_response);
        match self.conn.on_peer_closed() {
            Ok(()) => {
                if let Some(ex) = &mut self.ex
                    && has_response
                {
                    // A close-delimited body ends here.
                    ex.body_done = true;
                }
                assert!(
                    self.ex.is_none() || has_response,
                    "a close before the response is not an error"
                );
            }
            Err(_) => self.over = true,
        }
        self.check();
    }

    /// Ends the exchange once its final head is in (op 11).
    fn finish(&mut self, p: u8) {
        if self.over || !self.conn.exchange().is_some_and(Exchange::has_response) {
            return;
        }
        let ex = self.ex.take().expect("an exchange");
        let exchange = self.conn.exchange().unwrap();
        let request_sent = exchange.request_sent();
        let read_to_end = ex.body_done && p & 1 == 0;
        let kept = self.conn.finish_exchange(read_to_end);
        if kept {
            assert!(
                read_to_end && request_sent && !self.conn.peer_closed(),
                "kept a connection whose exchange did not end cleanly"
            );
        }
        self.model.phase = if kept { Phase::Idle } else { Phase::Closed };
        // The waits of the exchange end with it.
        self.model.paced_until = None;
        self.model.retry_at = None;
        self.model.waiting = false;
        self.model.continue_started = None;
        if !kept {
            self.over = true;
        }
        self.check();
        assert_eq!(
            self.conn.poll_timeout(),
            None,
            "timers on a connection between exchanges"
        );
        // Done: a Wait here would have nothing to end it (found by this target; the
        // machine now ends an exchange's waits with it).
        let transmit = self.conn.poll_transmit(&mut self.buf, self.now);
        assert!(
            matches!(transmit, Ok(Transmit::Done)),
            "a connection between exchanges gives {transmit:?}"
        );
    }

    /// A driver-like pump: up to 16 `poll_transmit`, writing all (op 10).
    fn pump(&mut self, fill: u8) {
        for _ in 0..16 {
            match self.transmit(usize::MAX, fill) {
                Gave::Write(_) | Gave::Fill(_) if !self.over && !self.model.waiting => {}
                _ => return,
            }
        }
    }

    /// Moves the clock to `poll_timeout` (plus `extra`) and handles it (op 1).
    fn wake(&mut self, extra: Duration) {
        if let Some(at) = self.conn.poll_timeout() {
            self.now = self.now.max(at) + extra;
        }
        self.handle_timeout();
        self.check();
    }

    /// What must hold between any two operations.
    fn check(&mut self) {
        assert_eq!(self.conn.phase(), self.model.phase, "phase");
        let awaiting = self.awaiting();
        let model = self
            .model
            .poll_timeout(&self.timeouts, awaiting, self.expect());
        let timeout = self.conn.poll_timeout();
        assert_eq!(
            timeout.map(|at| at - self.start),
            model.map(|at| at - self.start),
            "poll_timeout (since the start) is not the rules' next deadline; model {:?}",
            self.model
        );
        if self.model.waiting && self.model.phase == Phase::Exchanging {
            let allowed = [
                self.model.total_deadline,
                self.model.stall_deadline(&self.timeouts),
            ];
            assert!(
                timeout.is_none() || allowed.contains(&timeout),
                "a watched source has a retry timer"
            );
        }
        let progress = self.conn.progress();
        let Some(ex) = &self.ex else {
            assert_eq!(progress, Progress::default(), "progress with no exchange");
            return;
        };
        assert_eq!(
            progress.wire_bytes_sent,
            ex.wire.bytes.len() as u64,
            "wire bytes sent vs the sum of accepted writes"
        );
        assert_eq!(
            progress.body_bytes_sent, ex.wire.body as u64,
            "body bytes sent vs body bytes on the wire"
        );
        assert_eq!(
            progress.body_bytes_read,
            ex.filled.len() as u64,
            "body bytes read"
        );
        assert!(
            progress.body_bytes_sent <= progress.body_bytes_read,
            "more body bytes sent than read"
        );
        assert_eq!(progress.wire_bytes_received, ex.received, "bytes received");
        let exchange = self.conn.exchange().expect("the exchange is on");
        assert_eq!(
            exchange.request_sent(),
            ex.wire.complete(),
            "request_sent vs the wire"
        );
        if let Some(status) = ex.early {
            if (200..300).contains(&status) {
                assert!(
                    !exchange.stopped_by_response(),
                    "an early {status} stopped the body"
                );
            } else {
                assert!(
                    exchange.stopped_by_response(),
                    "an early {status} did not stop the body"
                );
            }
        }
    }
}

/// One connection driven by the operations in `data` (see above) and a fake clock: the
/// timers are the rules' (model), nothing is handed out after the total or stall deadline,
/// the rate limit holds, a watched source waits without a retry timer, no body byte goes
/// before `100 Continue`, progress counts what was accepted, and an early final answer
/// stops the body unless it is a 2xx.
pub fn conn(data: &[u8]) {
    let [a, b, c, d, e, f, ops @ ..] = data else {
        return;
    };
    let mut run = ConnRun::new([*a, *b, *c, *d, *e, *f]);
    let mut bytes = ops.iter().copied();
    let amount = |p: u8| {
        if p >= 0xf0 {
            usize::MAX
        } else {
            usize::from(p)
        }
    };
    for _ in 0..CONN_MAX_OPS {
        let (Some(op), Some(p)) = (bytes.next(), bytes.next()) else {
            break;
        };
        match op % 14 {
            0 => run.now += CONN_UNITS[usize::from(p >> 6)] * u32::from(p & 0x3f),
            1 => run.wake(if p & 1 == 1 {
                Duration::from_micros(u64::from(p))
            } else {
                Duration::ZERO
            }),
            2 => {
                if let Some(at) = run.conn.poll_timeout()
                    && at > run.now
                {
                    run.now = at - Duration::from_nanos(1);
                    run.handle_timeout();
                    run.check();
                }
            }
            3 => run.connect_step(p),
            4 => {
                run.transmit(amount(p), p);
            }
            5 => {
                run.conn.on_source_ready();
                run.model.waiting = false;
                run.check();
            }
            6 => {
                if let Some(ex) = &mut run.ex {
                    ex.outbox
                        .extend_from_slice(EXCHANGE_CANNED[usize::from(p) % EXCHANGE_CANNED.len()]);
                }
            }
            7 => {
                let raw: Vec<u8> = bytes.by_ref().take(usize::from(p % 64)).collect();
                if let Some(ex) = &mut run.ex {
                    ex.outbox.extend_from_slice(&raw);
                }
            }
            8 => run.deliver(amount(p)),
            9 => run.peer_close(),
            10 => run.pump(p),
            11 => run.finish(p),
            12 => {
                run.handle_timeout();
                run.check();
            }
            _ => {
                run.decode();
                run.check();
            }
        }
        if run.over {
            return;
        }
    }
    run.drive_to_end();
}

impl ConnRun {
    /// Drives the connection as the driver would until it fails or the request is done.
    fn drive_to_end(&mut self) {
        for _ in 0..CONN_MAX_FINISH_ROUNDS {
            if self.over {
                return;
            }
            match self.model.phase {
                Phase::Resolving | Phase::Connecting | Phase::Handshaking | Phase::Ready => {
                    self.connect_step(0);
                    continue;
                }
                Phase::Idle | Phase::Closed => return,
                Phase::Exchanging => {}
            }
            if self.model.waiting {
                self.conn.on_source_ready();
                self.model.waiting = false;
            }
            // Fill all, until 255 body bytes are read: then the source ends.
            let enough = self.ex.as_ref().is_some_and(|ex| ex.filled.len() >= 255);
            let gave = self.transmit(usize::MAX, if enough { 0 } else { 0xc0 });
            if self.over {
                return;
            }
            self.deliver(usize::MAX);
            let exchange = self.conn.exchange().expect("exchanging");
            let done = exchange.request_sent() || exchange.stopped_by_response();
            if done {
                return;
            }
            if gave == Gave::Wait {
                self.wake(Duration::ZERO);
            }
        }
        panic!("the connection did not end in {CONN_MAX_FINISH_ROUNDS} rounds");
    }
}

// The `proxy` target: proxy URLs, no-proxy lists and the CONNECT answer.
//
// Input: `proxy URL \n no-proxy list \n host \n answer bytes`. The URL either parses to
// a proxy with a host and a port whose display never shows the password, or is refused;
// the list matches `host` only through one of its own entries; the answer, fed in pieces
// of the first byte's size, opens the tunnel only after a 2xx head, and otherwise ends in
// an error at the proxy stage, never a panic.
pub fn proxy(data: &[u8]) {
    let mut parts = data.splitn(4, |&b| b == b'\n');
    let url = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let list = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let host = String::from_utf8_lossy(parts.next().unwrap_or_default()).to_ascii_lowercase();
    let answer = parts.next().unwrap_or_default();
    if let Ok(proxy) = chunkwire::Proxy::parse(&url) {
        assert!(!proxy.host().is_empty());
        assert_ne!(proxy.port(), 0);
        if let Some(credentials) = proxy.credentials()
            && credentials.password.len() > 3
        {
            let shown = format!("{proxy} {proxy:?}");
            assert!(
                !shown.contains(&format!(":{}@", credentials.password)),
                "{shown}"
            );
        }
    }
    let no_proxy = chunkwire::NoProxy::parse(&list);
    if let Some(entry) = no_proxy.matching(&host, 443) {
        assert!(list.contains(entry), "{entry:?} is not in {list:?}");
    }
    let step = usize::from(answer.first().copied().unwrap_or(1)).max(1);
    let mut tunnel = chunkwire::proto::tunnel::TunnelSetup::new("h:443", &[], small_limits());
    let mut buf = FixedBuf::new(16, 32, 64).growable_to(1024);
    for piece in answer.chunks(step) {
        let mut rest = piece;
        while !rest.is_empty() {
            let space = match tunnel.recv_space(&mut buf) {
                Ok(space) => space,
                Err(e) => {
                    assert_eq!(e.stage(), chunkwire::Stage::Proxy);
                    return;
                }
            };
            let n = rest.len().min(space.len());
            space[..n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            match tunnel.on_received(&mut buf, n, &mut |_, _| {}) {
                Ok(chunkwire::proto::tunnel::TunnelStep::NeedMore) => {}
                Ok(chunkwire::proto::tunnel::TunnelStep::Open) => {
                    // The head ended: at an empty line (LF or CRLF line ends, as the
                    // response parser takes them).
                    let ends = |w: &[u8]| w.ends_with(b"\n\n") || w == b"\n\r\n";
                    assert!(answer.windows(3).any(ends), "{answer:?}");
                    return;
                }
                Err(e) => {
                    assert_eq!(e.stage(), chunkwire::Stage::Proxy, "{e}");
                    return;
                }
            }
        }
    }
}
