//! Nothing is allocated per chunk: a counting global allocator watches the uploading thread
//! from the second read of the source to the last one, across hundreds of chunks.
#![cfg(feature = "sink")]

use std::io::{self, Read};
use std::time::Duration;

use chunkwire::sink::Sink;

mod support;
use support::counters;

#[global_allocator]
static GLOBAL: support::CountingAllocator = support::CountingAllocator;

/// Zero bytes, `left` of them, recording the allocation counters at each read.
struct Recording {
    left: usize,
    reads: usize,
    at_second_read: Option<(u64, i64)>,
    at_last_read: Option<(u64, i64)>,
}

impl Read for Recording {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.reads += 1;
        if self.reads == 2 {
            self.at_second_read = Some(counters());
        }
        let n = out.len().min(self.left);
        out[..n].fill(0xA5);
        self.left -= n;
        if self.left == 0 && self.at_last_read.is_none() {
            self.at_last_read = Some(counters());
        }
        Ok(n)
    }
}

#[test]
fn streaming_the_body_allocates_nothing_per_chunk() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let chunk = 16 * 1024;
    let chunks = 2000;
    let mut source = Recording {
        left: chunk * chunks,
        reads: 0,
        at_second_read: None,
        at_last_read: None,
    };
    let client = chunkwire::Client::builder()
        .chunk_size(chunk)
        .build()
        .unwrap();
    let mut response = client.upload(&sink.url("/mem")).send(&mut source).unwrap();
    assert_eq!(response.status(), 200);
    response.text().unwrap();
    let report = sink.next_report(Duration::from_secs(10)).unwrap();
    assert_eq!(report.bytes, (chunk * chunks) as u64);
    assert!(report.chunks >= chunks as u64);

    let (allocs_before, live_before) = source.at_second_read.unwrap();
    let (allocs_after, live_after) = source.at_last_read.unwrap();
    println!(
        "{} chunks streamed: {} allocations, live heap {} -> {} bytes",
        source.reads - 1,
        allocs_after - allocs_before,
        live_before,
        live_after
    );
    assert_eq!(
        allocs_after - allocs_before,
        0,
        "allocations while the body streamed"
    );
    assert_eq!(
        live_after, live_before,
        "the live heap grew while the body streamed"
    );
}

#[test]
fn the_buffer_is_sized_by_the_chunk_size_not_the_upload() {
    // Live heap on the uploading thread while the body streams, for two upload sizes.
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let mut live = Vec::new();
    for total in [1 << 20, 64 << 20] {
        let mut source = Recording {
            left: total,
            reads: 0,
            at_second_read: None,
            at_last_read: None,
        };
        let before = counters().1;
        let client = chunkwire::Client::builder()
            .chunk_size(64 * 1024)
            .build()
            .unwrap();
        let mut response = client.upload(&sink.url("/mem")).send(&mut source).unwrap();
        response.text().unwrap();
        sink.next_report(Duration::from_secs(10)).unwrap();
        live.push(source.at_last_read.unwrap().1 - before);
    }
    println!("live heap while streaming: {live:?} bytes");
    assert_eq!(live[0], live[1], "memory grew with the upload's size");
    assert!(
        live[0] < 256 * 1024,
        "one buffer of about 64 KiB + the receive region: {}",
        live[0]
    );
}

#[test]
fn over_tls_the_heap_stays_flat_and_allocations_per_record_are_bounded() {
    let tls = chunkwire::ServerTls::self_signed().unwrap();
    let sink = Sink::bind("127.0.0.1:0")
        .unwrap()
        .with_tls(tls.clone())
        .spawn()
        .unwrap();
    let chunk = 32 * 1024;
    let chunks = 1000;
    let mut source = Recording {
        left: chunk * chunks,
        reads: 0,
        at_second_read: None,
        at_last_read: None,
    };
    let config = chunkwire::TlsConfig::builder()
        .add_ca_pem(tls.ca_pem().as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let client = chunkwire::Client::builder()
        .chunk_size(chunk)
        .tls_config(config)
        .build()
        .unwrap();
    let mut response = client.upload(&sink.url("/mem")).send(&mut source).unwrap();
    assert_eq!(response.status(), 200);
    response.text().unwrap();
    assert_eq!(
        sink.next_report(Duration::from_secs(10)).unwrap().bytes,
        (chunk * chunks) as u64
    );

    let (allocs_before, live_before) = source.at_second_read.unwrap();
    let (allocs_after, live_after) = source.at_last_read.unwrap();
    let streamed = (chunks - 1) as u64; // chunks framed between the second and the last read
    let records = streamed * (chunk as u64).div_ceil(16 * 1024); // TLS records of at most 16 KiB
    let allocations = allocs_after - allocs_before;
    println!(
        "TLS: {streamed} chunks, {records} records: {allocations} allocations ({:.2} per record), \
         live heap {live_before} -> {live_after} bytes",
        allocations as f64 / records as f64
    );
    // rustls 0.23 builds each record in a fresh Vec; nothing of ours is allocated per chunk.
    assert!(
        allocations <= 2 * records,
        "{allocations} allocations for {records} records"
    );
    // Records may be waiting in rustls's bounded buffer at either moment, never more.
    let drift = (live_after - live_before).unsigned_abs();
    assert!(
        drift <= 2 * chunk as u64 + 16 * 1024,
        "live heap moved by {drift} bytes"
    );
}

/// Counts traced bytes by part, allocating nothing.
struct CountingTrace {
    data: std::sync::Arc<std::sync::atomic::AtomicU64>,
    framing: u64,
}

impl chunkwire::trace::Trace for CountingTrace {
    fn bytes(
        &mut self,
        _: chunkwire::trace::Direction,
        part: chunkwire::trace::Part,
        bytes: &[u8],
    ) {
        if part.is_data() {
            self.data
                .fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        } else {
            self.framing += bytes.len() as u64;
        }
    }

    fn note(&mut self, _: chunkwire::trace::Direction, _: &str) {}
}

#[test]
fn labelling_the_trace_allocates_nothing_per_chunk_either() {
    // Tracing off is the test above; with a trace that does not allocate itself, the
    // labelling in the core adds nothing per chunk.
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let chunk = 16 * 1024;
    let mut source = Recording {
        left: chunk * 500,
        reads: 0,
        at_second_read: None,
        at_last_read: None,
    };
    let client = chunkwire::Client::builder()
        .chunk_size(chunk)
        .build()
        .unwrap();
    let traced_data = std::sync::Arc::default();
    let mut response = client
        .upload(&sink.url("/mem"))
        .trace(CountingTrace {
            data: std::sync::Arc::clone(&traced_data),
            framing: 0,
        })
        .send(&mut source)
        .unwrap();
    response.text().unwrap();
    let (before, _) = source.at_second_read.unwrap();
    let (after, _) = source.at_last_read.unwrap();
    assert_eq!(
        after - before,
        0,
        "allocations while the traced body streamed"
    );
    let traced = traced_data.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        traced >= (chunk * 500) as u64,
        "every body byte was traced: {traced}"
    );
}
