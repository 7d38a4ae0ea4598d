//! The memory cost of many uploads at once ([`chunkwire::Uploads`]), counted in bytes by a
//! counting allocator on the thread that runs them: heap per active upload at 1, 100 and
//! 1,000 at once, and allocations per chunk while they all stream. The README's formula
//! (`chunk size + N bytes`) comes from what this prints.
#![cfg(feature = "sink")]

use std::cell::RefCell;
use std::io::{self, Read};
use std::rc::Rc;
use std::time::Duration;

use chunkwire::sink::Sink;

mod support;
use support::{counters, take_peak};

#[global_allocator]
static GLOBAL: support::CountingAllocator = support::CountingAllocator;

/// What the sources saw, shared by all of them.
#[derive(Default)]
struct Watch {
    uploads: usize,
    /// Sources that have given their first chunk (so their upload is connected and
    /// streaming); each waits at this gate until all have.
    at_gate: usize,
    reads: u64,
    /// (allocations, live bytes, reads) when the gate opened: every upload streaming.
    all_streaming: Option<(u64, i64, u64)>,
    /// The same when the first source reached its end.
    first_done: Option<(u64, i64, u64)>,
}

/// `left` bytes, in reads of at most a chunk, reporting to the shared watch. After its
/// first chunk it returns `WouldBlock` until every source has given one, so the window
/// measured holds every upload streaming and none finished.
struct Watched {
    watch: Rc<RefCell<Watch>>,
    left: usize,
    reads: u32,
    counted: bool,
}

impl Read for Watched {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut watch = self.watch.borrow_mut();
        if self.reads == 1 && !self.counted {
            // Counted once: a source held at the gate is asked again every few ms.
            self.counted = true;
            watch.at_gate += 1;
            if watch.at_gate == watch.uploads {
                let (allocations, live) = counters();
                watch.all_streaming = Some((allocations, live, watch.reads));
            }
        }
        if self.reads >= 1 && watch.at_gate < watch.uploads {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.reads += 1;
        watch.reads += 1;
        let n = out.len().min(self.left);
        out[..n].fill(0x5A);
        self.left -= n;
        if self.left == 0 && watch.first_done.is_none() && watch.all_streaming.is_some() {
            let (allocations, live) = counters();
            watch.first_done = Some((allocations, live, watch.reads));
        }
        Ok(n)
    }
}

/// More open files than the default soft limit of 1,024: 1,000 uploads and the sink's
/// side of each run in this one process.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < 4096 {
            limit.rlim_cur = limit.rlim_max.min(4096);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

struct Measured {
    per_upload: i64,
    allocations_per_chunk: f64,
}

/// Runs `n` uploads of `chunks` chunks each, all at once, and measures the heap while they
/// all stream.
fn measure(n: usize, chunk: usize, chunks: usize, tls: bool) -> Measured {
    raise_open_file_limit();
    let mut sink = Sink::bind("127.0.0.1:0").unwrap().max_connections(n + 16);
    let mut builder = chunkwire::Client::builder().chunk_size(chunk);
    if tls {
        let server = chunkwire::ServerTls::self_signed().unwrap();
        let config = chunkwire::TlsConfig::builder()
            .add_ca_pem(server.ca_pem().as_bytes())
            .unwrap()
            .build()
            .unwrap();
        builder = builder.tls_config(config);
        sink = sink.with_tls(server);
    }
    let sink = sink.spawn().unwrap();
    let client = builder.build().unwrap();
    let urls: Vec<String> = (0..n).map(|i| sink.url(&format!("/m/{i}"))).collect();
    let watch = Rc::new(RefCell::new(Watch {
        uploads: n,
        ..Watch::default()
    }));
    let (_, live_empty) = counters();
    let mut uploads = client.uploads().unwrap().max_active(n);
    // The set's own cost (its poller's event list, its waker) is paid once, not per upload.
    let (_, live_before) = counters();
    let set_cost = live_before - live_empty;
    for url in &urls {
        let source = Watched {
            watch: Rc::clone(&watch),
            left: chunk * chunks,
            reads: 0,
            counted: false,
        };
        uploads.add(client.upload(url), source);
    }
    let mut ok = 0;
    for finished in uploads.by_ref() {
        let completed = finished.result.unwrap();
        assert_eq!(completed.status, 200);
        assert_eq!(completed.progress.body_bytes_sent, (chunk * chunks) as u64);
        ok += 1;
    }
    assert_eq!(ok, n);
    drop(uploads);
    for _ in 0..n {
        sink.next_report(Duration::from_secs(30)).unwrap();
    }
    let watch = watch.borrow();
    let (allocs_all, live_all, reads_all) = watch.all_streaming.expect("all streamed at once");
    let (allocs_first, _, reads_first) = watch.first_done.expect("one finished");
    let per_upload = (live_all - live_before) / n as i64;
    let window_reads = reads_first - reads_all;
    let allocations_per_chunk = (allocs_first - allocs_all) as f64 / window_reads.max(1) as f64;
    println!(
        "{n:>5} at once, {} KiB chunks{}: {per_upload} heap bytes per active upload \
         (chunk + {}), {} allocations over {window_reads} chunks ({allocations_per_chunk:.3} a chunk); \
         the set itself {set_cost} bytes",
        chunk / 1024,
        if tls { ", TLS" } else { "" },
        per_upload - chunk as i64,
        allocs_first - allocs_all,
    );
    Measured {
        per_upload,
        allocations_per_chunk,
    }
}

#[test]
fn each_active_upload_costs_its_chunk_and_a_few_kib() {
    for chunk in [16 * 1024, 48 * 1024] {
        for n in [1, 100, 1000] {
            let m = measure(n, chunk, 40, false);
            assert!(
                m.per_upload <= chunk as i64 + 8 * 1024,
                "{n} at once: {} bytes per upload for {chunk}-byte chunks",
                m.per_upload
            );
            // Nothing per chunk: the rare allocation in the window is the set's, not a
            // chunk's (a vector of ready uploads growing once, say).
            assert!(
                m.allocations_per_chunk < 0.01,
                "{n} at once: {} allocations a chunk",
                m.allocations_per_chunk
            );
        }
    }
}

#[test]
fn over_tls_rustls_adds_its_buffers_and_nothing_grows_per_chunk() {
    for n in [1, 100] {
        let chunk = 16 * 1024;
        let m = measure(n, chunk, 40, true);
        // rustls keeps a session of its own (keys, a record being built, a receive buffer):
        // the README states the measured figure; this bounds it.
        assert!(
            m.per_upload <= chunk as i64 + 64 * 1024,
            "{n} at once over TLS: {} bytes per upload",
            m.per_upload
        );
        // rustls 0.23 builds each record (at most 16 KiB) in a fresh Vec.
        assert!(
            m.allocations_per_chunk <= 4.0,
            "{n} at once over TLS: {} allocations a chunk",
            m.allocations_per_chunk
        );
    }
}

#[test]
fn queued_uploads_hold_no_buffer_only_running_ones_do() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let chunk = 48 * 1024;
    let client = chunkwire::Client::builder()
        .chunk_size(chunk)
        .build()
        .unwrap();
    let queued = 2000;
    let active = 20;
    let urls: Vec<String> = (0..queued).map(|i| sink.url(&format!("/q/{i}"))).collect();
    let body = vec![1u8; 3 * chunk];
    let (_, live_empty) = counters();
    let mut uploads = client.uploads().unwrap().max_active(active);
    for url in &urls {
        uploads.add(client.upload(url), &body[..]);
    }
    let (_, live_queued) = counters();
    let per_queued = (live_queued - live_empty) / queued as i64;
    take_peak();
    let mut done = 0;
    for finished in uploads.by_ref() {
        finished.result.unwrap();
        done += 1;
    }
    assert_eq!(done, queued);
    let running = take_peak() - live_queued;
    println!(
        "{queued} queued: {per_queued} bytes each; running {active} at a time added at most \
         {running} bytes ({} per running upload)",
        running / active as i64
    );
    assert!(
        per_queued < 2048,
        "a queued upload holds {per_queued} bytes"
    );
    // 20 buffers (and connections), not 2,000.
    assert!(
        running <= active as i64 * (chunk as i64 + 16 * 1024),
        "running {active} at a time peaked at {running} bytes"
    );
}
