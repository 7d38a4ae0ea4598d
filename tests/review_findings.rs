//! Defects found in review of the upload set (`src/multi.rs`), the shared name lookups
//! (`src/transport/tcp.rs`), rule 4 of the exchange and `chunkwire upload -Z`, kept as
//! tests: each failed before its fix.
#![cfg(feature = "cli")]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use chunkwire::mio::unix::SourceFd;
use chunkwire::mio::{Events, Interest, Poll, Token};
use chunkwire::sink::Sink;
use chunkwire::{Client, Uploads};

/// Runs `f` on a thread and waits at most `limit` for its answer (`None`: it hung).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).ok()
}

/// Reads up to the end of a request head.
fn read_head(stream: &mut TcpStream) {
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => seen.push(byte[0]),
            _ => return,
        }
    }
}

/// A server answering each connection with `serve` on a thread of its own; its base URL.
fn server(serve: impl Fn(TcpStream) + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let serve = Arc::new(serve);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let serve = Arc::clone(&serve);
            thread::spawn(move || serve(stream));
        }
    });
    url
}

/// Drives a set made with `uploads_in` until `want` results came or `limit` passed.
fn drive(
    poll: &mut Poll,
    uploads: &mut Uploads<'_>,
    want: usize,
    limit: Duration,
) -> Vec<Result<u16, String>> {
    let mut events = Events::with_capacity(256);
    let mut out = Vec::new();
    let end = Instant::now() + limit;
    while out.len() < want && Instant::now() < end {
        let wait = uploads
            .next_timeout(Instant::now())
            .map_or(Duration::from_millis(100), |t| {
                t.min(Duration::from_millis(100))
            });
        poll.poll(&mut events, Some(wait)).unwrap();
        for event in events.iter() {
            uploads.handle_event(event);
        }
        uploads.handle_timeout(Instant::now());
        while let Some(finished) = uploads.poll_finished() {
            out.push(
                finished
                    .result
                    .map(|c| c.status.as_u16())
                    .map_err(|e| e.to_string()),
            );
        }
    }
    out
}

struct Panics;

impl Read for Panics {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        panic!("the source panics (on purpose)");
    }
}

/// A `Read` that panics inside a set leaves the set broken: the panicking task was taken
/// out of its slot for its round and dropped by the unwind, but its `active` and
/// per-host counts, its token and `unfinished` are never given back. A caller that catches
/// the panic and goes on (a server process isolating one bad source) then waits forever:
/// with `max_active(1)` the other, healthy upload never starts, and `next_finished` polls
/// with no timeout and nothing registered. Expected: after the panic the set still runs
/// the other uploads (or reports the panicked one as failed) and ends.
#[test]
fn a_panicking_source_does_not_leave_the_set_hung() {
    let outcome = within(Duration::from_secs(8), || {
        let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
        let client = Client::new();
        let mut uploads = client.uploads().unwrap().max_active(1);
        uploads.add(client.upload(&sink.url("/panics")), Panics);
        uploads.add(client.upload(&sink.url("/healthy")), &b"healthy"[..]);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            uploads.next_finished().is_some()
        }));
        assert!(caught.is_err(), "the source's panic propagates");
        let statuses: Vec<_> = uploads
            .by_ref()
            .filter_map(|f| f.result.ok().map(|c| c.status.as_u16()))
            .collect();
        (statuses, uploads.active())
    });
    let (statuses, active) = outcome.expect("the set hung after the source's panic");
    assert_eq!(statuses, [200], "the healthy upload did not finish");
    assert_eq!(active, 0);
}

/// A borrowed descriptor: the caller keeps it open after the set is gone.
struct Borrowed<'a>(&'a UnixStream);

impl Read for Borrowed<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        (&mut &*self.0).read(out)
    }
}

impl AsRawFd for Borrowed<'_> {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Dropping a set made with `uploads_in` while an `add_watched` upload runs leaves the
/// watched descriptor registered in the caller's registry: `Uploads` has no `Drop`, and
/// only `end` (a finished or cancelled upload) deregisters it, although its own comment
/// says the descriptor may be shared and live on. The caller's loop then keeps getting
/// events under a token of a set that is gone, and registering that descriptor again (a
/// second set, or its own use) fails with EEXIST.
#[test]
fn dropping_a_set_deregisters_its_watched_sources() {
    let (held_tx, held_rx) = mpsc::channel::<()>();
    let held_rx = std::sync::Mutex::new(held_rx);
    let url = server(move |mut stream| {
        read_head(&mut stream);
        // Holds the connection until the test ends.
        let _ = held_rx
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(10));
        drop(stream);
    });
    let (source, writer) = UnixStream::pair().unwrap();
    source.set_nonblocking(true).unwrap();
    let mut poll = Poll::new().unwrap();
    let client = Client::new();
    {
        let mut uploads = client.uploads_in(poll.registry(), 10..20).unwrap();
        uploads.add_watched(client.upload(&format!("{url}/watched")), Borrowed(&source));
        // Running: connected, its source registered and waiting.
        let _ = drive(&mut poll, &mut uploads, 1, Duration::from_millis(300));
        assert_eq!(uploads.active(), 1);
    }
    let fd = source.as_raw_fd();
    let again = poll
        .registry()
        .register(&mut SourceFd(&fd), Token(99), Interest::READABLE);
    drop(held_tx);
    drop(writer);
    assert!(
        again.is_ok(),
        "the dropped set's watched descriptor is still registered: {again:?}"
    );
}

/// With `uploads_in` and a token range smaller than `max_active`, the uploads beyond the
/// tokens do not wait in the queue for a token to come free: they fail at once with
/// "no token left in the range given for connections". Here 4 one-byte uploads with one
/// connection token: 3 of them fail although each would have had its turn a millisecond
/// later. Expected: the tokens bound how many run at once, like `max_active` (or
/// `uploads_in` refuses a range smaller than `max_active` up front).
#[test]
fn a_small_token_range_queues_uploads_instead_of_failing_them() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let client = Client::new();
    let mut poll = Poll::new().unwrap();
    // The waker and one connection token.
    let mut uploads = client.uploads_in(poll.registry(), 5..7).unwrap();
    for i in 0..4 {
        uploads.add(client.upload(&sink.url(&format!("/tokens/{i}"))), &b"x"[..]);
    }
    let results = drive(&mut poll, &mut uploads, 4, Duration::from_secs(5));
    assert_eq!(results.len(), 4);
    assert!(
        results.iter().all(|r| r == &Ok(200)),
        "uploads failed for want of a token: {results:?}"
    );
}

/// Rule 4 says an early 2xx no longer stops the body and that a server that then stops
/// reading fails the upload with `Error::early_answer`. Only a server that closes or
/// resets is caught that way: one that answers `200` at once and then simply stops reading
/// (keeps the socket open) ends in a plain stall timeout with `early_answer() == None`
/// (the CLI exits 28, not the documented 55), and the 200 it sent is lost from the error.
/// Without a stall timeout it would wait forever. curl, for comparison, ends such a
/// transfer with its own timeout too, but the README promises the early answer here.
#[test]
fn an_early_2xx_then_a_server_that_stops_reading_is_an_early_answer() {
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let done_rx = std::sync::Mutex::new(done_rx);
    let url = server(move |mut stream| {
        read_head(&mut stream);
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        // Never reads again; holds the socket open until the test ends.
        let _ = done_rx
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(10));
    });
    let client = Client::builder()
        .stall_timeout(Some(Duration::from_secs(1)))
        .build()
        .unwrap();
    let big = vec![9u8; 64 << 20];
    let mut uploads = client.uploads().unwrap();
    uploads.add(client.upload(&format!("{url}/early")), &big[..]);
    let finished = uploads.next_finished().unwrap();
    drop(done_tx);
    let err = finished.result.expect_err("the body did not arrive whole");
    assert_eq!(err.early_answer(), Some(200), "{err}");
}

/// A caller's resolver that panics once poisons that name for the whole process: the
/// resolver thread dies with the lookup still marked in flight in the process-wide table,
/// so its waiters' senders are never dropped and every later lookup of the same name
/// joins the dead one. Both uploads here wait their full connect timeout and the resolver
/// is never asked again. Expected: the first upload fails at once, the second asks again.
#[test]
fn a_resolver_that_panicked_once_is_asked_again() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let port = sink.addr().port();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let client = Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .resolver(move |_, port| {
            if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("the resolver panics once (on purpose)");
            }
            Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
        })
        .build()
        .unwrap();
    let url = format!("http://panics-once.review.test:{port}/r");
    let started = Instant::now();
    let first = client.upload(&url).send(&b"a"[..]);
    assert!(first.is_err());
    let first_took = started.elapsed();
    let second = client.upload(&url).send(&b"a"[..]);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the resolver was not asked again"
    );
    assert_eq!(second.unwrap().status(), 200);
    assert!(
        first_took < Duration::from_secs(1),
        "the failed lookup took the connect timeout: {first_took:?}"
    );
}

/// The shared lookups say "Failures are not kept", but an empty answer (`Ok(vec![])`,
/// which ends the upload as "the name resolved to no address") is kept for 60 s like a
/// good one: every upload to that name fails for a minute without asking the resolver.
/// curl does not cache a lookup that gave no address.
#[test]
fn an_answer_with_no_address_is_not_kept() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let port = sink.addr().port();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let client = Client::builder()
        .resolver(move |_, port| {
            if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                return Ok(Vec::new());
            }
            Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
        })
        .build()
        .unwrap();
    let url = format!("http://empty-once.review.test:{port}/r");
    let first = client.upload(&url).send(&b"a"[..]);
    assert!(first.is_err());
    let second = client.upload(&url).send(&b"a"[..]);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the empty answer was kept");
    assert_eq!(second.unwrap().status(), 200);
}

/// `-Z` checks files when it starts and opens each at its turn. A file removed in between
/// fails with exit status 55 ("send failed"; the error's stage is ReadSource) instead of
/// 26, curl's and chunkwire's own code for a file that cannot be opened (without -Z the
/// same missing file exits 26). It also connects before finding out. The run here: two
/// files, `--parallel-max 1`; the server holds the first upload's answer until the test
/// has removed the second file.
#[test]
fn z_a_file_removed_before_its_turn_exits_26() {
    let dir = std::env::temp_dir().join(format!("chunkwire-review-gone-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let first = dir.join("first.txt");
    let gone = dir.join("gone.txt");
    std::fs::write(&first, b"first").unwrap();
    std::fs::write(&gone, b"gone").unwrap();
    let (arrived_tx, arrived_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let hold = std::sync::Mutex::new(Some((arrived_tx, go_rx)));
    let url = server(move |mut stream| {
        read_head(&mut stream);
        // The whole chunked body of a small file: up to its last chunk.
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        while !seen.ends_with(b"0\r\n\r\n") && matches!(stream.read(&mut byte), Ok(1)) {
            seen.push(byte[0]);
        }
        if let Some((arrived, go)) = hold.lock().unwrap().take() {
            let _ = arrived.send(());
            let _ = go.recv_timeout(Duration::from_secs(10));
        }
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    });
    let args = [
        "upload".to_owned(),
        "-s".to_owned(),
        "-Z".to_owned(),
        "--parallel-max".to_owned(),
        "1".to_owned(),
        format!("{url}/up/"),
        first.display().to_string(),
        gone.display().to_string(),
    ];
    let child = Command::new(env!("CARGO_BIN_EXE_chunkwire"))
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    arrived_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the first upload arrived");
    std::fs::remove_file(&gone).unwrap();
    go_tx.send(()).unwrap();
    let output = within(Duration::from_secs(10), move || {
        child.wait_with_output().unwrap()
    })
    .expect("chunkwire ended");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot open"), "{stderr}");
    assert_eq!(output.status.code(), Some(26), "{stderr}");
}
