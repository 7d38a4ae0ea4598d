//! A form costs no memory per chunk or per part while it is sent: a counting global
//! allocator watches the uploading thread across hundreds of file parts (each opened,
//! read and closed), text parts and chunks, and the heap does not grow with file sizes.
#![cfg(feature = "sink")]

use std::cell::Cell;
use std::io::{self, Read};
use std::path::PathBuf;
use std::time::Duration;

use chunkwire::sink::Sink;
use chunkwire::{Form, FormPart};

mod support;
use support::counters;

#[global_allocator]
static GLOBAL: support::CountingAllocator = support::CountingAllocator;

/// `left` bytes of 0xA5, recording the allocation counters at its `at`th read and at the
/// read that gives its last byte.
struct Recording<'c> {
    left: usize,
    reads: usize,
    at: usize,
    at_read: &'c Cell<Option<(u64, i64)>>,
    at_last_read: &'c Cell<Option<(u64, i64)>>,
}

impl Read for Recording<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.reads += 1;
        if self.reads == self.at {
            self.at_read.set(Some(counters()));
        }
        let n = out.len().min(self.left);
        out[..n].fill(0xA5);
        self.left -= n;
        if n > 0 && self.left == 0 {
            self.at_last_read.set(Some(counters()));
        }
        Ok(n)
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("cw-fm-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Sends a form of a recording part, `files` file parts of `file_size` bytes (each after a
/// text field), and a recording part; returns the counters at the first part's second
/// read and at the last part's last read, and the live heap before the form was built.
fn send(files: usize, file_size: u64, chunk: usize) -> ((u64, i64), (u64, i64), i64) {
    send_traced(files, file_size, chunk, false)
}

/// Counts traced body bytes by label, allocating nothing.
struct CountingTrace {
    form_data: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl chunkwire::trace::Trace for CountingTrace {
    fn bytes(
        &mut self,
        _: chunkwire::trace::Direction,
        part: chunkwire::trace::Part,
        bytes: &[u8],
    ) {
        if part == chunkwire::trace::Part::FormPartData {
            self.form_data
                .fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn note(&mut self, _: chunkwire::trace::Direction, _: &str) {}
}

fn send_traced(
    files: usize,
    file_size: u64,
    chunk: usize,
    traced: bool,
) -> ((u64, i64), (u64, i64), i64) {
    // Fixed-width names: the paths held by the form are the same size for every file size.
    let dir = TempDir::new(&format!("{files}-{file_size:012}-{}", u8::from(traced)));
    let paths: Vec<PathBuf> = (0..files)
        .map(|i| {
            let path = dir.0.join(format!("f{i:05}.bin"));
            // Sparse: large files cost no disk and read as zeros.
            std::fs::File::create(&path)
                .unwrap()
                .set_len(file_size)
                .unwrap();
            path
        })
        .collect();
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let client = chunkwire::Client::builder()
        .chunk_size(chunk)
        .build()
        .unwrap();
    let (first, first_last) = (Cell::new(None), Cell::new(None));
    let (last_unused, last) = (Cell::new(None), Cell::new(None));
    let lead_len = 4 * chunk;
    let live_before = counters().1;
    let lead = Recording {
        left: lead_len,
        reads: 0,
        at: 2,
        at_read: &first,
        at_last_read: &first_last,
    };
    let tail = Recording {
        left: lead_len,
        reads: 0,
        at: usize::MAX,
        at_read: &last_unused,
        at_last_read: &last,
    };
    let mut form = Form::new().part("lead", FormPart::reader_with_length(lead, lead_len as u64));
    for (i, path) in paths.iter().enumerate() {
        form = form.text("i", i.to_string()).file("f", path);
    }
    form = form.part("tail", FormPart::reader_with_length(tail, lead_len as u64));
    let form_data = std::sync::Arc::default();
    let mut upload = client.upload(&sink.url("/form")).method("POST");
    if traced {
        upload = upload.trace(CountingTrace {
            form_data: std::sync::Arc::clone(&form_data),
        });
    }
    let mut response = upload.send_form(form).unwrap();
    assert_eq!(response.status(), 200);
    response.text().unwrap();
    let report = sink.next_report(Duration::from_secs(30)).unwrap();
    assert!(report.bytes > files as u64 * file_size + 2 * lead_len as u64);
    if traced {
        let data = form_data.load(std::sync::atomic::Ordering::Relaxed);
        let texts: u64 = (0..files).map(|i| i.to_string().len() as u64).sum();
        assert_eq!(data, files as u64 * file_size + 2 * lead_len as u64 + texts);
    }
    (first.get().unwrap(), last.get().unwrap(), live_before)
}

#[test]
fn sending_a_form_allocates_nothing_per_chunk_or_per_part() {
    let files = 300;
    let ((allocs_before, live_before), (allocs_after, live_after), _) =
        send(files, 20_000, 16 * 1024);
    println!(
        "{files} file parts and {files} text parts sent: {} allocations, live heap {live_before} -> {live_after} bytes",
        allocs_after - allocs_before
    );
    assert_eq!(
        allocs_after - allocs_before,
        0,
        "allocations while the form was sent"
    );
    assert_eq!(
        live_after, live_before,
        "the live heap grew while the form was sent"
    );
}

#[test]
fn the_heap_does_not_grow_with_the_files_sizes() {
    let mut live = Vec::new();
    // Sizes whose forms' lengths have as many digits, so the heads are as long.
    for file_size in [10u64 << 20, 40 << 20] {
        let (_, (_, at_end), before) = send(2, file_size, 64 * 1024);
        live.push(at_end - before);
    }
    println!("live heap at the end of the form, over the start: {live:?} bytes");
    assert_eq!(live[0], live[1], "memory grew with the files' sizes");
    assert!(live[0] < 256 * 1024, "about one 64 KiB buffer: {}", live[0]);
}

#[test]
fn labelling_a_forms_trace_allocates_nothing_per_part() {
    // The section log between the form and the trace grows to the most sections one write
    // holds, then is reused: as many allocations for 300 parts as for 100, and few.
    let mut allocations = Vec::new();
    for files in [100, 300] {
        let ((before, _), (after, _), _) = send_traced(files, 20_000, 16 * 1024, true);
        allocations.push(after - before);
    }
    println!("allocations while a traced form was sent (100, 300 file parts): {allocations:?}");
    assert_eq!(
        allocations[0], allocations[1],
        "allocations grew with the parts"
    );
    assert!(allocations[1] <= 4, "{allocations:?}");
}
