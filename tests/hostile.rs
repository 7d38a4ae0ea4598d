//! Hostile and broken servers beyond tests/faults.rs: a slow reader (backpressure, memory
//! flat, the upload completes), a close right after the head, a reset, garbage bytes, a
//! huge header line. Each ends in the right response or a specific error.

use std::io::{self, Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use chunkwire::{Client, PeerError, Stage};

mod support;
use support::{counters, read_head, serve_once};

#[global_allocator]
static GLOBAL: support::CountingAllocator = support::CountingAllocator;

fn client() -> Client {
    Client::builder()
        .chunk_size(16 * 1024)
        .stall_timeout(Some(Duration::from_secs(10)))
        .max_time(Some(Duration::from_secs(30)))
        .build()
        .unwrap()
}

/// `len` bytes, recording the live heap of the reading thread at the second and last read.
struct Watched {
    left: usize,
    reads: usize,
    at_second: Option<(i64, u64)>,
    at_last: Option<(i64, u64)>,
}

impl Read for Watched {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.reads += 1;
        let (allocations, live) = counters();
        let now = (live, allocations);
        if self.reads == 2 {
            self.at_second = Some(now);
        }
        let n = out.len().min(self.left);
        out[..n].fill(b's');
        self.left -= n;
        if self.left == 0 && self.at_last.is_none() {
            self.at_last = Some(now);
        }
        Ok(n)
    }
}

#[test]
fn a_slow_reader_gets_the_whole_upload_and_memory_stays_flat() {
    const TOTAL: usize = 6 << 20;
    let (url, server) = serve_once(|mut stream| {
        let mut body = read_head(&mut stream);
        // 64 KiB every 40 ms: the socket buffers fill, and the client must wait on them.
        let mut block = vec![0u8; 64 * 1024];
        while !body.ends_with(b"0\r\n\r\n") {
            let n = stream.read(&mut block).unwrap();
            assert!(n > 0, "the client closed early");
            body.extend_from_slice(&block[..n]);
            thread::sleep(Duration::from_millis(40));
        }
        let payload = body.iter().filter(|&&b| b == b's').count();
        assert!(payload >= TOTAL, "payload bytes {payload}");
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .unwrap();
    });
    let mut source = Watched {
        left: TOTAL,
        reads: 0,
        at_second: None,
        at_last: None,
    };
    let started = Instant::now();
    let mut response = client().upload(&url).send(&mut source).unwrap();
    assert_eq!(response.text().unwrap(), "ok");
    server.join().unwrap();
    let (live_before, allocs_before) = source.at_second.unwrap();
    let (live_after, allocs_after) = source.at_last.unwrap();
    assert_eq!(
        live_after, live_before,
        "the live heap moved while the server was slow"
    );
    assert_eq!(
        allocs_after, allocs_before,
        "allocations while the server was slow"
    );
    assert!(
        started.elapsed() > Duration::from_millis(500),
        "the server really was slow"
    );
}

#[test]
fn a_close_right_after_the_head_is_a_send_error() {
    let (url, server) = serve_once(|mut stream| {
        read_head(&mut stream);
        // Closing with unread bytes pending makes the kernel reset the connection.
    });
    let err = client()
        .upload(&url)
        .send(io::repeat(b'x').take(64 << 20))
        .unwrap_err();
    server.join().unwrap();
    assert!(matches!(err.stage(), Stage::Send | Stage::Receive), "{err}");
    assert!(
        err.is_closed_before_response()
            || err.io_error().is_some_and(|e| matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            )),
        "{err}"
    );
    assert!(err.progress().body_bytes_sent < 64 << 20, "{err}");
}

#[test]
fn garbage_instead_of_http_is_a_bad_status_line() {
    let (url, server) = serve_once(|mut stream| {
        read_head(&mut stream);
        let garbage: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let _ = stream.write_all(&garbage);
        thread::sleep(Duration::from_millis(200));
    });
    let err = client()
        .upload(&url)
        .send(io::repeat(b'x').take(1 << 20))
        .unwrap_err();
    server.join().unwrap();
    assert_eq!(err.stage(), Stage::Receive, "{err}");
    assert!(
        matches!(err.peer_error(), Some(PeerError::BadStatusLine { .. })),
        "{err}"
    );
}

#[test]
fn a_megabyte_header_line_is_refused_at_the_head_limit() {
    let (url, server) = serve_once(|mut stream| {
        read_head(&mut stream);
        let mut reply = b"HTTP/1.1 200 OK\r\nX-Huge: ".to_vec();
        reply.extend(std::iter::repeat_n(b'h', 1 << 20));
        let _ = stream.write_all(&reply);
    });
    let err = client().upload(&url).send(&b"x"[..]).unwrap_err();
    server.join().unwrap();
    assert_eq!(
        err.peer_error(),
        Some(&PeerError::HeadTooLarge { limit: 32 * 1024 }),
        "{err}"
    );
    assert!(err.to_string().contains("32768"), "{err}");
}
