//! Hostile and broken servers beyond tests/faults.rs: a slow reader (backpressure, memory
//! flat, the upload completes), a close or a half-close right after the head, garbage
//! bytes, a huge header line, a chunked response cut short anywhere before its end. Each
//! ends in the right response or a specific error, in bounded time.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use chunkwire::{Client, Limits, PeerError, Stage, TimeoutKind};

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
    assert!(
        err.to_string()
            .contains("head larger than the limit of 32768 bytes"),
        "{err}"
    );
}

/// Reads the request head and its chunked body, through the last chunk.
fn read_request(stream: &mut TcpStream) {
    let mut seen = read_head(stream);
    let mut more = [0u8; 4096];
    while !seen.ends_with(b"0\r\n\r\n") {
        let n = stream.read(&mut more).unwrap();
        assert!(n > 0, "the client closed before its last chunk");
        seen.extend_from_slice(&more[..n]);
    }
}

#[test]
fn a_chunked_response_cut_before_its_end_is_a_truncation_error() {
    // Where the server stops, and the body bytes the client has decoded by then.
    let cuts: [(&[u8], u64); 8] = [
        (b"", 0),
        (b"5", 0),
        (b"5;ext=1\r", 0),
        (b"5\r\nhel", 3),
        (b"5\r\nhello", 5),
        (b"5\r\nhello\r\n", 5),
        (b"5\r\nhello\r\n3\r\nab", 7),
        (b"5\r\nhello\r\n0\r\nX-T: 1\r\n", 5),
    ];
    for (cut, received) in cuts {
        let shown = String::from_utf8_lossy(cut).into_owned();
        let (url, server) = serve_once(move |mut stream| {
            read_request(&mut stream);
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                .unwrap();
            stream.write_all(cut).unwrap();
            // Dropping the stream closes it: a clean FIN, since the request was read whole.
        });
        let started = Instant::now();
        let mut response = client().upload(&url).send(&b"body"[..]).unwrap();
        assert_eq!(response.status(), 200, "{shown:?}");
        let err = response.text().unwrap_err();
        server.join().unwrap();
        assert_eq!(err.stage(), Stage::Receive, "{shown:?}: {err}");
        assert_eq!(
            err.peer_error(),
            Some(&PeerError::Truncated {
                received,
                expected: None
            }),
            "{shown:?}: {err}"
        );
        assert!(
            err.to_string()
                .contains(&format!("connection closed after {received} body bytes")),
            "{shown:?}: {err}"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{shown:?}");
    }
}

#[test]
fn a_half_close_right_after_the_head_is_closed_before_response() {
    let (url, server) = serve_once(|mut stream| {
        read_head(&mut stream);
        // No response, ever: the server shuts its side and drains whatever comes.
        stream.shutdown(Shutdown::Write).unwrap();
        let _ = io::copy(&mut stream, &mut io::sink());
    });
    let started = Instant::now();
    let err = client()
        .upload(&url)
        .send(io::repeat(b'x').take(256 * 1024))
        .unwrap_err();
    server.join().unwrap();
    assert!(err.is_closed_before_response(), "{err}");
    // Send if the close was seen before the last chunk went out, Receive after.
    assert!(matches!(err.stage(), Stage::Send | Stage::Receive), "{err}");
    assert!(
        err.to_string()
            .contains("server closed the connection without a complete response"),
        "{err}"
    );
    assert!(
        err.peer_error().is_none() && err.timeout_kind().is_none(),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Sends `reply` after reading the whole request; returns the client's result.
fn reply_with_limits(reply: Vec<u8>, limits: Limits) -> chunkwire::Result<String> {
    let (url, server) = serve_once(move |mut stream| {
        read_request(&mut stream);
        // The client may stop reading at the limit and close: a failed write is expected.
        let _ = stream.write_all(&reply);
    });
    let client = Client::builder()
        .limits(limits)
        .stall_timeout(Some(Duration::from_secs(10)))
        .build()
        .unwrap();
    let result = client
        .upload(&url)
        .send(&b"body"[..])
        .and_then(|mut response| response.text());
    server.join().unwrap();
    result
}

#[test]
fn each_limit_past_its_default_is_a_receive_error_naming_it() {
    let head = b"HTTP/1.1 200 OK\r\n".to_vec();
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let mut many_fields = head.clone();
    for i in 0..101 {
        many_fields.extend_from_slice(format!("X-F{i}: v\r\n").as_bytes());
    }
    many_fields.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    let mut long_extension = chunked.clone();
    long_extension.extend_from_slice(b"3;");
    long_extension.extend(std::iter::repeat_n(b'e', 5000));
    long_extension.extend_from_slice(b"\r\nabc\r\n0\r\n\r\n");
    let mut big_trailers = chunked.clone();
    big_trailers.extend_from_slice(b"3\r\nabc\r\n0\r\n");
    for i in 0..20 {
        big_trailers.extend_from_slice(format!("X-T{i}: {}\r\n", "t".repeat(1000)).as_bytes());
    }
    big_trailers.extend_from_slice(b"\r\n");
    let cases: Vec<(Vec<u8>, PeerError, &str)> = vec![
        (
            many_fields,
            PeerError::TooManyHeaders { limit: 100 },
            "more header fields than the limit of 100",
        ),
        (
            long_extension,
            PeerError::ChunkLineTooLong { limit: 4096 },
            "chunk size line longer than the limit of 4096 bytes",
        ),
        (
            big_trailers,
            PeerError::TrailerTooLarge { limit: 16 * 1024 },
            "trailer section larger than the limit of 16384 bytes",
        ),
    ];
    for (reply, expected, message) in cases {
        let err = reply_with_limits(reply, Limits::default()).unwrap_err();
        assert_eq!(err.stage(), Stage::Receive, "{err}");
        assert_eq!(err.peer_error(), Some(&expected), "{err}");
        assert!(err.to_string().contains(message), "{err}");
    }
    // The same limits set lower through the builder are the ones that apply.
    let small = Limits {
        max_head_bytes: 1024,
        max_headers: 4,
        ..Limits::default()
    };
    let mut long_head = head.clone();
    long_head.extend_from_slice(format!("X-Long: {}\r\n\r\n", "l".repeat(2000)).as_bytes());
    let err = reply_with_limits(long_head, small).unwrap_err();
    assert_eq!(
        err.peer_error(),
        Some(&PeerError::HeadTooLarge { limit: 1024 }),
        "{err}"
    );
    let mut five_fields = head;
    five_fields.extend_from_slice(b"A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nContent-Length: 0\r\n\r\n");
    let err = reply_with_limits(five_fields, small).unwrap_err();
    assert_eq!(
        err.peer_error(),
        Some(&PeerError::TooManyHeaders { limit: 4 }),
        "{err}"
    );
}

#[test]
fn an_endless_body_past_max_body_bytes_stops_without_growing_memory() {
    for chunked in [false, true] {
        let (url, server) = serve_once(move |mut stream| {
            read_request(&mut stream);
            let (head, block): (&[u8], Vec<u8>) = if chunked {
                let mut block = b"4000\r\n".to_vec();
                block.extend(std::iter::repeat_n(b'r', 0x4000));
                block.extend_from_slice(b"\r\n");
                (
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                    block,
                )
            } else {
                (b"HTTP/1.1 200 OK\r\n\r\n", vec![b'r'; 0x4000])
            };
            let _ = stream.write_all(head);
            // Never ends: only the client's body limit stops this.
            while stream.write_all(&block).is_ok() {}
        });
        let client = Client::builder()
            .limits(Limits {
                max_body_bytes: Some(4 << 20),
                ..Limits::default()
            })
            .stall_timeout(Some(Duration::from_secs(10)))
            .build()
            .unwrap();
        let mut response = client.upload(&url).send(&b"body"[..]).unwrap();
        let (allocations_before, _) = counters();
        let err = response.copy_to(&mut io::sink()).unwrap_err();
        let (allocations_after, _) = counters();
        assert_eq!(
            err.peer_error(),
            Some(&PeerError::BodyTooLarge { limit: 4 << 20 }),
            "chunked {chunked}: {err}"
        );
        assert_eq!(err.stage(), Stage::Receive);
        assert!(err.to_string().contains("4194304"), "{err}");
        // 4 MiB went through the one buffer: only the error itself allocates.
        assert!(
            allocations_after - allocations_before < 16,
            "chunked {chunked}: {} allocations while reading the body",
            allocations_after - allocations_before
        );
        drop(response);
        server.join().unwrap();
    }
}

/// A server that answers the request with interim responses, endlessly and fast.
fn serve_endless_interim() -> String {
    let (url, _server) = serve_once(|mut stream| {
        read_request(&mut stream);
        let interim = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(512);
        // Ends when the client closes; not joined, so a client that never stops cannot
        // hang the test.
        while stream.write_all(&interim).is_ok() {}
    });
    url
}

/// Uploads to `url` on a thread of its own, so that a client that never returns fails the
/// test after `patience` instead of hanging it; returns the error's stage, timeout kind,
/// protocol error and message.
fn upload_with_patience(
    url: String,
    client: Client,
    patience: Duration,
) -> (Stage, Option<TimeoutKind>, Option<PeerError>, String) {
    let (done, outcome) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let result = client.upload(&url).send(&b"body"[..]).map(|r| r.status());
        let _ = done.send(result.map_err(|e| {
            (
                e.stage(),
                e.timeout_kind(),
                e.peer_error().cloned(),
                e.to_string(),
            )
        }));
    });
    let result = outcome
        .recv_timeout(patience)
        .unwrap_or_else(|_| panic!("send() still running after {patience:?}"));
    result.expect_err("a final response never came")
}

#[test]
fn an_endless_stream_of_interim_responses_ends_at_the_total_timeout() {
    // With no interim limit to stop it first, only the deadline can.
    let client = Client::builder()
        .limits(chunkwire::Limits {
            max_interim_responses: u32::MAX,
            ..chunkwire::Limits::default()
        })
        .max_time(Some(Duration::from_millis(500)))
        .build()
        .unwrap();
    let (stage, timeout, _, message) =
        upload_with_patience(serve_endless_interim(), client, Duration::from_secs(5));
    assert_eq!(timeout, Some(TimeoutKind::Total), "{message}");
    assert_eq!(stage, Stage::Receive, "{message}");
}

#[test]
fn an_endless_stream_of_interim_responses_is_refused_without_a_total_timeout() {
    let client = Client::builder()
        .stall_timeout(Some(Duration::from_secs(2)))
        .build()
        .unwrap();
    let (stage, _, peer_error, message) =
        upload_with_patience(serve_endless_interim(), client, Duration::from_secs(5));
    assert_eq!(stage, Stage::Receive, "{message}");
    assert!(
        peer_error.is_some(),
        "a protocol error naming a limit: {message}"
    );
    assert!(message.contains("limit"), "{message}");
}
