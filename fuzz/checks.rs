//! The properties every fuzz target checks, one function a target, each taking the raw
//! fuzz input. Shared by the libFuzzer targets (`fuzz/fuzz_targets/*.rs`) and by the corpus
//! replay in `cargo test` (`tests/fuzz_corpus_replay.rs`), so both check the same thing.
//! Structured inputs (split sizes, capacities, strings) are carved out of the bytes here,
//! so the corpus files stay plain bytes.
#![allow(dead_code)]

use std::io::{self, Read};

use chunkwire::proto::body::{BodyDecoder, BodyEvent};
use chunkwire::proto::dechunk::{ChunkEvent, Dechunker};
use chunkwire::proto::exchange::{BodyStep, Exchange, SendWant};
use chunkwire::proto::head::{BodyFraming, HeaderField, RequestHead};
use chunkwire::proto::response::{HeadParse, parse_response_head};
use chunkwire::{FixedBuf, Limits, PeerError, RequestError, Target};

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
            let (consumed, code) = match response.parse(&self.pending) {
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
        let mut buf = FixedBuf::new(setup.capacity, recv_capacity, head.encoded_len());
        let trailers = if trailer {
            vec![HeaderField::new("X-Fuzz-Trailer", "yes").unwrap()]
        } else {
            Vec::new()
        };
        let exchange = Exchange::new(&head, trailers.clone(), limits, &mut buf)
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
        assert!(!self.source_ended, "a fill after the source ended");
        match (self.setup.framing, owed) {
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
                    if self.setup.framing == BodyFraming::Chunked {
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
