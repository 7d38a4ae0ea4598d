//! The sink keeps up with many uploads at once: 1,000 connections, each in the middle of a
//! 1 MiB body at the same moment (half chunked, half Content-Length), all served by
//! `chunkwire sink` on one thread, and each answered with the right byte count and CRC.
//!
//! The sink runs as its own process so that neither side needs more than the common
//! default limit of 1,024 open descriptors; the client is one mio loop in this test.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

const CONNECTIONS: usize = 1000;
const BODY: usize = 1 << 20;
/// Bodies differ between connections, so a mixed-up reply shows in its CRC.
const VARIANTS: usize = 8;
/// Connections opened but not yet answered `100 Continue`: keeps the sink's listen backlog
/// from overflowing (which costs a one-second SYN retry, not a failure). The 100 is the
/// sign that the sink has accepted the connection and read its head; bytes written are
/// not, since loopback buffers hold megabytes for a connection not yet accepted.
const OPENING: usize = 64;
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The sink process, killed when the test ends however it ends.
struct SinkProcess {
    child: Child,
    addr: SocketAddr,
}

impl Drop for SinkProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sink() -> SinkProcess {
    // Port 0 is not printed back by the CLI, so take a free port and let it go first.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chunkwire"))
        .args(["sink", "--listen", &addr.to_string(), "--max-connections"])
        .arg((CONNECTIONS + 24).to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It says so on standard error once it listens.
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("listening on"), "{line}");
    SinkProcess { child, addr }
}

/// The requests, head and body, for one variant in each framing.
fn requests() -> Vec<(Vec<u8>, Vec<u8>, u32)> {
    let mut state = 0x2545_f491_u32;
    let base: Vec<u8> = (0..BODY + VARIANTS * 4099)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    (0..VARIANTS)
        .map(|v| {
            let body = &base[v * 4099..v * 4099 + BODY];
            let crc = crc32fast::hash(body);
            let mut raw =
                format!("PUT /raw/{v} HTTP/1.1\r\nHost: sink\r\nExpect: 100-continue\r\nContent-Length: {BODY}\r\n\r\n")
                    .into_bytes();
            raw.extend_from_slice(body);
            let mut chunked = format!(
                "PUT /chunked/{v} HTTP/1.1\r\nHost: sink\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            .into_bytes();
            // Uneven chunks, so chunk boundaries fall anywhere in the sink's reads.
            for piece in body.chunks(16_000 + v * 7) {
                chunked.extend_from_slice(format!("{:x};n=1\r\n", piece.len()).as_bytes());
                chunked.extend_from_slice(piece);
                chunked.extend_from_slice(b"\r\n");
            }
            chunked.extend_from_slice(b"0\r\nX-Done: yes\r\n\r\n");
            (raw, chunked, crc)
        })
        .collect()
}

struct Upload {
    stream: TcpStream,
    request: usize,
    /// The head's length: the body waits for the 100.
    head: usize,
    continued: bool,
    sent: usize,
    /// Half the request: sending stops here until every connection has got this far.
    half: usize,
    reply: Vec<u8>,
    done: bool,
}

/// How far the uploads have got together.
#[derive(Default)]
struct Progress {
    /// Connections the sink has answered `100 Continue`.
    continued: usize,
    /// Connections that have sent half their request.
    halfway: usize,
    /// Connections with their whole reply.
    done: usize,
    /// Every connection may send the rest.
    released: bool,
}

#[cfg(target_os = "linux")]
fn sink_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in {status}"));
    line[field.len()..]
        .trim()
        .trim_end_matches(" kB")
        .parse()
        .unwrap()
}

#[test]
fn a_thousand_concurrent_uploads_on_one_thread() {
    let sink = start_sink();
    let requests = requests();
    let request_bytes = |r: usize| -> &[u8] {
        let (raw, chunked, _) = &requests[r / 2];
        if r % 2 == 1 { chunked } else { raw }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(1024);
    let mut uploads: Vec<Upload> = Vec::with_capacity(CONNECTIONS);
    let mut progress = Progress::default();
    let mut checked_sink = false;
    while progress.done < CONNECTIONS {
        assert!(
            Instant::now() < deadline,
            "stuck: {} open, {} halfway, {} done",
            uploads.len(),
            progress.halfway,
            progress.done
        );
        while uploads.len() < CONNECTIONS && uploads.len() - progress.continued < OPENING {
            let i = uploads.len();
            let mut stream = TcpStream::connect(sink.addr).unwrap();
            poll.registry()
                .register(
                    &mut stream,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .unwrap();
            let request = i % (2 * VARIANTS);
            let bytes = request_bytes(request);
            uploads.push(Upload {
                stream,
                request,
                head: bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4,
                continued: false,
                sent: 0,
                half: request_bytes(request).len() / 2,
                reply: Vec::new(),
                done: false,
            });
        }
        if progress.halfway == CONNECTIONS && !progress.released {
            // Every connection is open and mid-body now: the sink holds them all at once.
            #[cfg(target_os = "linux")]
            {
                let pid = sink.child.id();
                assert_eq!(
                    sink_status(pid, "Threads:"),
                    1,
                    "the sink serves on one thread"
                );
                let rss_kib = sink_status(pid, "VmRSS:");
                assert!(
                    rss_kib < 32 * 1024,
                    "{CONNECTIONS} connections cost the sink {rss_kib} KiB resident"
                );
                eprintln!("sink with {CONNECTIONS} uploads in flight: {rss_kib} KiB resident");
            }
            checked_sink = true;
            progress.released = true;
            for (i, upload) in uploads.iter_mut().enumerate() {
                // Edge-triggered: no new event comes for a socket that was writable all along.
                pump(upload, request_bytes(upload.request), &mut progress, i);
            }
            continue;
        }
        poll.poll(&mut events, Some(Duration::from_millis(100)))
            .unwrap();
        for event in &events {
            let i = event.token().0;
            let upload = &mut uploads[i];
            pump(upload, request_bytes(upload.request), &mut progress, i);
        }
    }
    assert!(checked_sink);

    for (i, upload) in uploads.iter().enumerate() {
        let reply = String::from_utf8_lossy(&upload.reply);
        let (_, _, crc) = &requests[upload.request / 2];
        let framing = if upload.request % 2 == 1 {
            "chunked"
        } else {
            "content-length"
        };
        assert!(
            reply.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"),
            "{i}: {reply}"
        );
        for expected in [
            format!("\"framing\":\"{framing}\""),
            format!("\"bytes\":{BODY},"),
            format!("\"crc32\":\"{crc:08x}\""),
        ] {
            assert!(reply.contains(&expected), "{i}: {expected} not in {reply}");
        }
    }
}

/// Writes what the upload may send now and reads its reply once the request is sent.
fn pump(upload: &mut Upload, request: &[u8], progress: &mut Progress, i: usize) {
    if upload.done {
        return;
    }
    let limit = if !upload.continued {
        upload.head
    } else if progress.released {
        request.len()
    } else {
        upload.half
    };
    while upload.sent < limit {
        match (&upload.stream).write(&request[upload.sent..limit]) {
            Ok(n) => {
                upload.sent += n;
                if upload.sent == upload.half {
                    progress.halfway += 1;
                }
            }
            // Full, or not connected yet: a writable event will come.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
            Err(e) => panic!("connection {i}: {e}"),
        }
    }
    if upload.continued && upload.sent < request.len() {
        return;
    }
    let mut buf = [0u8; 4096];
    loop {
        match (&upload.stream).read(&mut buf) {
            Ok(0) => panic!("connection {i}: closed before its reply"),
            Ok(n) => {
                upload.reply.extend_from_slice(&buf[..n]);
                if !upload.continued && upload.reply.len() >= CONTINUE.len() {
                    assert_eq!(&upload.reply[..CONTINUE.len()], CONTINUE, "connection {i}");
                    upload.continued = true;
                    progress.continued += 1;
                    return pump(upload, request, progress, i);
                }
                if upload.continued && reply_complete(&upload.reply[CONTINUE.len()..]) {
                    upload.done = true;
                    progress.done += 1;
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => panic!("connection {i}: {e}"),
        }
    }
}

/// True once `reply` holds a whole head and the body its Content-Length announces.
fn reply_complete(reply: &[u8]) -> bool {
    let Some(end) = reply.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&reply[..end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    reply.len() >= end + 4 + length
}
