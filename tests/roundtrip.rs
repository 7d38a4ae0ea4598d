//! Framer and decoder round trips at the edges, through the public sans-I/O core only:
//! what the exchange emits, decoded by the chunked decoder, equals what the source gave,
//! for sizes around the buffer size and for sources that read short or are interrupted.

use std::io::{self, Read};

use chunkwire::proto::dechunk::{ChunkEvent, Dechunker};
use chunkwire::proto::exchange::{Exchange, SendWant};
use chunkwire::proto::head::{HeaderField, RequestHead};
use chunkwire::{FixedBuf, Limits, Target};

/// A source that gives at most `max_read` bytes a call and fails every `interrupt_every`th
/// call with `Interrupted`, as a signal-interrupted pipe would.
struct AwkwardSource<'a> {
    data: &'a [u8],
    max_read: usize,
    interrupt_every: usize,
    calls: usize,
}

impl Read for AwkwardSource<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.calls += 1;
        if self.interrupt_every > 0 && self.calls.is_multiple_of(self.interrupt_every) {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = out.len().min(self.max_read).min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Runs the send side to the end; returns the wire bytes after the head and the chunk sizes.
fn upload(data: &[u8], capacity: usize, max_read: usize, interrupt_every: usize) -> Vec<u8> {
    let target = Target::parse("http://example.com/upload").unwrap();
    let head = RequestHead::new("PUT", &target).unwrap();
    let head_len = head.encoded_len();
    let mut buf = FixedBuf::new(capacity, 64, head_len);
    let trailers = vec![HeaderField::new("X-Check", "ok").unwrap()];
    let mut exchange = Exchange::new(&head, trailers, Limits::default(), &mut buf).unwrap();
    let mut source = AwkwardSource {
        data,
        max_read,
        interrupt_every,
        calls: 0,
    };
    let mut wire = Vec::new();
    loop {
        match exchange.poll_send(&mut buf) {
            SendWant::Write(bytes) => {
                // Partial writes: never more than 5000 bytes at a time.
                let n = bytes.len().min(5000);
                wire.extend_from_slice(&bytes[..n]);
                exchange.on_sent(n);
            }
            SendWant::Fill(space) => {
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
    assert_eq!(exchange.progress().body_bytes_sent, data.len() as u64);
    wire.split_off(head_len)
}

/// Body bytes, chunk sizes (the last chunk's 0 included) and trailer fields.
type Decoded = (Vec<u8>, Vec<u64>, Vec<(Vec<u8>, Vec<u8>)>);

/// Decodes a chunked body, feeding it `split` bytes at a time.
fn decode(wire: &[u8], split: usize) -> Decoded {
    let mut dechunker = Dechunker::new(&Limits::default());
    let (mut body, mut sizes, mut trailers) = (Vec::new(), Vec::new(), Vec::new());
    let mut pending: Vec<u8> = Vec::new();
    let mut fed = 0;
    loop {
        let (consumed, event) = dechunker.decode(&pending).unwrap();
        let done = match event {
            ChunkEvent::NeedMore => {
                assert!(fed < wire.len(), "decoder wants more after the whole body");
                let end = (fed + split).min(wire.len());
                pending.drain(..consumed);
                pending.extend_from_slice(&wire[fed..end]);
                fed = end;
                continue;
            }
            ChunkEvent::SizeLine { size, .. } => {
                sizes.push(size);
                false
            }
            ChunkEvent::Data(data) => {
                body.extend_from_slice(data);
                false
            }
            ChunkEvent::Trailer { name, value } => {
                trailers.push((name.to_vec(), value.to_vec()));
                false
            }
            ChunkEvent::End => true,
            _ => false,
        };
        pending.drain(..consumed);
        if done {
            assert!(
                pending.is_empty() && fed == wire.len(),
                "bytes after the end"
            );
            return (body, sizes, trailers);
        }
    }
}

#[test]
fn sizes_around_the_buffer_size_round_trip() {
    let capacity = 1024;
    for len in [
        0,
        1,
        capacity - 1,
        capacity,
        capacity + 1,
        2 * capacity,
        3 * capacity + 7,
    ] {
        let data = pattern(len);
        let wire = upload(&data, capacity, usize::MAX, 0);
        for split in [1, 7, usize::MAX] {
            let (body, sizes, trailers) = decode(&wire, split);
            assert_eq!(body, data, "len {len} split {split}");
            let full_chunks = len / capacity;
            let mut expected: Vec<u64> = vec![capacity as u64; full_chunks];
            if len % capacity != 0 {
                expected.push((len % capacity) as u64);
            }
            expected.push(0);
            assert_eq!(
                sizes, expected,
                "len {len}: full chunks, then the rest, then the last chunk"
            );
            assert_eq!(trailers, vec![(b"X-Check".to_vec(), b"ok".to_vec())]);
        }
    }
}

#[test]
fn short_and_interrupted_reads_give_short_chunks_not_an_early_end() {
    let data = pattern(10_000);
    let wire = upload(&data, 4096, 333, 3);
    let (body, sizes, _) = decode(&wire, 1000);
    assert_eq!(body, data);
    assert!(
        sizes[..sizes.len() - 1].iter().all(|&s| s > 0 && s <= 333),
        "{sizes:?}"
    );
    assert_eq!(
        sizes.iter().filter(|&&s| s == 0).count(),
        1,
        "exactly one last chunk"
    );
    assert_eq!(*sizes.last().unwrap(), 0);
}

#[test]
fn a_one_byte_buffer_still_works() {
    let data = pattern(50);
    let wire = upload(&data, 1, usize::MAX, 0);
    let (body, sizes, _) = decode(&wire, 3);
    assert_eq!(body, data);
    assert_eq!(sizes.len(), 51);
}
