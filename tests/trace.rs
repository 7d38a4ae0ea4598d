//! The wire trace shows exactly the bytes that crossed the wire, labelled correctly.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread;

use chunkwire::Client;
use chunkwire::trace::{Direction, Part, Trace, TraceFormat, TraceWriter};

/// One traced piece: which way, which part, which bytes.
type Event = (Direction, Part, Vec<u8>);
type Events = Arc<Mutex<Vec<Event>>>;

/// Keeps every traced event.
struct Collect(Events);

impl Trace for Collect {
    fn bytes(&mut self, direction: Direction, part: Part, bytes: &[u8]) {
        self.0
            .lock()
            .unwrap()
            .push((direction, part, bytes.to_vec()));
    }

    fn note(&mut self, _: Direction, _: &str) {}
}

const REPLY: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n3\r\nabc\r\n0\r\nT: 2\r\n\r\n";

/// A server that records every byte of a chunked request, then sends `REPLY`.
fn recording_server() -> (String, thread::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/traced", listener.local_addr().unwrap());
    let handle = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        while !received.ends_with(b"0\r\nX-Sum: 7\r\n\r\n") {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "client closed early");
            received.extend_from_slice(&buf[..n]);
        }
        stream.write_all(REPLY).unwrap();
        received
    });
    (url, handle)
}

fn traced_upload(data: &[u8], chunk: usize) -> (Vec<Event>, Vec<u8>) {
    let (url, server) = recording_server();
    let events: Events = Arc::default();
    let client = Client::builder().chunk_size(chunk).build().unwrap();
    let mut response = client
        .upload(&url)
        .trailer("X-Sum", "7")
        .trace(Collect(events.clone()))
        .send(data)
        .unwrap();
    assert_eq!(response.text().unwrap(), "abc");
    drop(response);
    let received = server.join().unwrap();
    let events = Arc::try_unwrap(events).unwrap().into_inner().unwrap();
    (events, received)
}

fn joined(events: &[Event], direction: Direction) -> Vec<u8> {
    events
        .iter()
        .filter(|(d, ..)| *d == direction)
        .flat_map(|(.., bytes)| bytes.clone())
        .collect()
}

#[test]
fn the_trace_is_exactly_what_crossed_the_wire() {
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let (events, received) = traced_upload(&data, 64);
    assert_eq!(
        joined(&events, Direction::Sent),
        received,
        "sent bytes differ from what the server got"
    );
    assert_eq!(
        joined(&events, Direction::Received),
        REPLY,
        "received bytes differ from what the server sent"
    );
    let received_parts: Vec<Part> = events
        .iter()
        .filter(|(d, ..)| *d == Direction::Received)
        .map(|(_, part, _)| *part)
        .collect();
    assert_eq!(
        received_parts,
        [
            Part::InterimStatusLine,
            Part::EndOfHead,
            Part::StatusLine,
            Part::Header,
            Part::Header,
            Part::EndOfHead,
            Part::ChunkSize { size: 3 },
            Part::ChunkData,
            Part::ChunkEnd,
            Part::LastChunk,
            Part::Trailer,
            Part::EndOfBody,
        ]
    );
}

#[test]
fn chunks_trailers_and_the_last_chunk_are_labelled_around_the_buffer_size() {
    let chunk = 8;
    for len in [chunk - 1, chunk, chunk + 1, 2 * chunk + 3] {
        let data = vec![b'd'; len];
        let (events, _) = traced_upload(&data, chunk);
        let sent: Vec<&Event> = events
            .iter()
            .filter(|(d, ..)| *d == Direction::Sent)
            .collect();
        let head_end = sent
            .iter()
            .position(|(_, p, _)| *p == Part::EndOfHead)
            .unwrap();
        assert_eq!(sent[0].1, Part::RequestLine);
        assert!(sent[1..head_end].iter().all(|(_, p, _)| *p == Part::Header));
        let body: Vec<(Part, &[u8])> = sent[head_end + 1..]
            .iter()
            .map(|(_, p, b)| (*p, b.as_slice()))
            .collect();
        let mut expected: Vec<(Part, Vec<u8>)> = Vec::new();
        let mut left = len;
        while left > 0 {
            let size = left.min(chunk);
            expected.push((
                Part::ChunkSize { size: size as u64 },
                format!("{size:x}\r\n").into_bytes(),
            ));
            expected.push((Part::ChunkData, vec![b'd'; size]));
            expected.push((Part::ChunkEnd, b"\r\n".to_vec()));
            left -= size;
        }
        expected.push((Part::LastChunk, b"0\r\n".to_vec()));
        expected.push((Part::Trailer, b"X-Sum: 7\r\n".to_vec()));
        expected.push((Part::EndOfBody, b"\r\n".to_vec()));
        let expected: Vec<(Part, &[u8])> =
            expected.iter().map(|(p, b)| (*p, b.as_slice())).collect();
        assert_eq!(body, expected, "len {len}");
    }
}

#[test]
fn the_json_trace_round_trips_to_the_same_bytes() {
    // The machine-readable form: every event a line, every byte in hex.
    let (url, server) = recording_server();
    let out = Arc::new(Mutex::new(Vec::new()));
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut response = Client::new()
        .upload(&url)
        .trailer("X-Sum", "7")
        .trace(TraceWriter::new(Shared(out.clone()), TraceFormat::Json))
        .send(&b"json please"[..])
        .unwrap();
    response.text().unwrap();
    drop(response);
    let received = server.join().unwrap();
    let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
    let mut sent = Vec::new();
    for line in text
        .lines()
        .filter(|l| l.contains("\"dir\":\"send\"") && l.contains("\"hex\""))
    {
        let hex = line
            .split("\"hex\":\"")
            .nth(1)
            .unwrap()
            .trim_end_matches("\"}");
        for pair in hex.as_bytes().chunks(2) {
            sent.push(u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap());
        }
    }
    assert_eq!(sent, received);
    assert!(
        text.contains("\"part\":\"chunk size\",\"size\":11,"),
        "{text}"
    );
    assert!(
        text.contains("\"note\":\"body framing: chunked\""),
        "{text}"
    );
}
