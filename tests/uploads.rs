//! Many uploads on one thread ([`chunkwire::Uploads`]): every body arrives whole, limits
//! hold, connections are reused, one upload's failure or cancel leaves the others alone,
//! and a source that would block delays only itself.
#![cfg(feature = "sink")]

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use chunkwire::sink::Sink;
use chunkwire::{Client, TimeoutKind, UploadId};

const REPORT_WAIT: Duration = Duration::from_secs(10);

/// A body of `len` bytes that differs per `seed`, so a mix-up between uploads shows.
fn body(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect()
}

fn client() -> Client {
    Client::builder()
        .chunk_size(8 * 1024)
        .connect_timeout(Duration::from_secs(10))
        .stall_timeout(Some(Duration::from_secs(20)))
        .build()
        .unwrap()
}

#[test]
fn two_hundred_uploads_on_one_thread_arrive_whole() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let client = client();
    let bodies: Vec<Vec<u8>> = (0..200)
        .map(|i| body(i, (i as usize * 7919) % 70_000))
        .collect();
    let mut uploads = client.uploads().unwrap().max_active(64);
    let mut expected = HashMap::new();
    for (i, bytes) in bodies.iter().enumerate() {
        let path = format!("/many/{i}");
        let id = if i % 2 == 0 {
            uploads.add(client.upload(&sink.url(&path)), &bytes[..])
        } else {
            uploads.add_seekable(client.upload(&sink.url(&path)), io::Cursor::new(&bytes[..]))
        };
        expected.insert(id, (path, bytes));
    }
    let mut seen = 0;
    while let Some(finished) = uploads.next_finished() {
        let completed = finished.result.unwrap();
        assert_eq!(completed.status, 200);
        assert!(completed.upload_complete);
        let (path, bytes) = &expected[&finished.id];
        let report = String::from_utf8(completed.body).unwrap();
        assert!(
            report.contains(&format!("\"target\":\"{path}\"")),
            "{report}"
        );
        assert!(
            report.contains(&format!("\"bytes\":{},", bytes.len())),
            "{path}: {report}"
        );
        assert_eq!(completed.progress.body_bytes_sent, bytes.len() as u64);
        seen += 1;
    }
    assert_eq!(seen, 200);
    let mut crcs = HashMap::new();
    for _ in 0..200 {
        let report = sink.next_report(REPORT_WAIT).unwrap();
        crcs.insert(report.target.clone(), report.crc32);
    }
    for (path, bytes) in expected.values() {
        assert_eq!(crcs[path], crc32fast::hash(bytes), "{path}");
    }
    assert!(uploads.is_empty());
}

/// A server that answers every request after reading its chunked body, and counts how
/// many requests are in progress at once (from their first byte to their answer: what
/// `max_active` limits; idle kept connections are not uploads).
struct CountingServer {
    url: String,
    most_at_once: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
}

impl CountingServer {
    fn start(hold: Duration) -> CountingServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let in_progress = Arc::new(AtomicUsize::new(0));
        let most_at_once = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (most, total) = (Arc::clone(&most_at_once), Arc::clone(&connections));
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let (in_progress, most) = (Arc::clone(&in_progress), Arc::clone(&most));
                total.fetch_add(1, Ordering::SeqCst);
                thread::spawn(move || {
                    stream
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 16384];
                    loop {
                        if seen.ends_with(b"\r\n0\r\n\r\n") {
                            thread::sleep(hold);
                            // Counted out before the answer: once it is sent, the next
                            // request may come before this thread runs on.
                            in_progress.fetch_sub(1, Ordering::SeqCst);
                            let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                            if stream.write_all(answer).is_err() {
                                return;
                            }
                            seen.clear();
                        }
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if seen.is_empty() {
                                    let now = in_progress.fetch_add(1, Ordering::SeqCst) + 1;
                                    most.fetch_max(now, Ordering::SeqCst);
                                }
                                seen.extend_from_slice(&buf[..n]);
                            }
                        }
                    }
                    if !seen.is_empty() {
                        in_progress.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        CountingServer {
            url,
            most_at_once,
            connections,
        }
    }
}

#[test]
fn no_more_than_max_active_run_at_once_and_connections_are_reused() {
    let server = CountingServer::start(Duration::from_millis(20));
    let client = client();
    let mut uploads = client.uploads().unwrap().max_active(3);
    for i in 0..30 {
        uploads.add(
            client.upload(&format!("{}/limit/{i}", server.url)),
            &b"twelve bytes"[..],
        );
    }
    let mut reused = 0;
    for finished in uploads.by_ref() {
        let completed = finished.result.unwrap();
        assert_eq!(completed.body, b"ok");
        reused += usize::from(completed.connection_reused);
    }
    assert!(server.most_at_once.load(Ordering::SeqCst) <= 3);
    assert_eq!(reused, 30 - server.connections.load(Ordering::SeqCst));
    assert!(
        server.connections.load(Ordering::SeqCst) <= 6,
        "{} connections for 30 uploads at 3 at once",
        server.connections.load(Ordering::SeqCst)
    );
}

#[test]
fn the_per_host_limit_holds_per_host() {
    let a = CountingServer::start(Duration::from_millis(20));
    let b = CountingServer::start(Duration::from_millis(20));
    let client = client();
    let mut uploads = client.uploads().unwrap().max_active(10).max_per_host(2);
    for i in 0..12 {
        let server = if i % 2 == 0 { &a } else { &b };
        uploads.add(
            client.upload(&format!("{}/host/{i}", server.url)),
            &b"x"[..],
        );
    }
    let mut done = 0;
    for finished in uploads.by_ref() {
        finished.result.unwrap();
        done += 1;
    }
    assert_eq!(done, 12);
    assert_eq!(a.most_at_once.load(Ordering::SeqCst), 2);
    assert_eq!(b.most_at_once.load(Ordering::SeqCst), 2);
}

#[test]
fn a_stalled_and_a_resetting_server_end_their_uploads_alone() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    // Accepts, reads nothing, never answers.
    let stalled = TcpListener::bind("127.0.0.1:0").unwrap();
    let stalled_url = format!("http://{}/stalled", stalled.local_addr().unwrap());
    let held = thread::spawn(move || {
        let (stream, _) = stalled.accept().unwrap();
        thread::sleep(Duration::from_secs(4));
        drop(stream);
    });
    // Reads a little, then resets.
    let resetting = TcpListener::bind("127.0.0.1:0").unwrap();
    let resetting_url = format!("http://{}/reset", resetting.local_addr().unwrap());
    thread::spawn(move || {
        let (mut stream, _) = resetting.accept().unwrap();
        let mut some = [0u8; 1000];
        let _ = stream.read(&mut some);
        // Dropped with unread bytes: the kernel sends a reset.
    });
    let client = Client::builder()
        .chunk_size(16 * 1024)
        .stall_timeout(Some(Duration::from_millis(1500)))
        .build()
        .unwrap();
    let big = vec![7u8; 8 << 20];
    let mut uploads = client.uploads().unwrap();
    let stalled_id = uploads.add(client.upload(&stalled_url), &big[..]);
    let reset_id = uploads.add(client.upload(&resetting_url), &big[..]);
    let started = Instant::now();
    let mut fine = Vec::new();
    for i in 0..8 {
        fine.push(uploads.add(
            client.upload(&sink.url(&format!("/fine/{i}"))),
            &big[..1 << 20],
        ));
    }
    let mut outcomes = HashMap::new();
    for finished in uploads.by_ref() {
        outcomes.insert(finished.id, (finished.result, started.elapsed()));
    }
    for id in &fine {
        let (result, at) = &outcomes[id];
        assert_eq!(result.as_ref().unwrap().status, 200);
        assert!(*at < Duration::from_secs(3), "a fine upload took {at:?}");
    }
    let (result, _) = &outcomes[&stalled_id];
    let err = result.as_ref().unwrap_err();
    assert_eq!(err.timeout_kind(), Some(TimeoutKind::Stall), "{err}");
    let (result, _) = &outcomes[&reset_id];
    let err = result.as_ref().unwrap_err();
    assert!(err.to_string().contains("send failed"), "{err}");
    held.join().unwrap();
}

/// A source that has nothing for a while (returns `WouldBlock`), then its bytes.
struct Late {
    until: Instant,
    bytes: &'static [u8],
}

impl Read for Late {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if Instant::now() < self.until {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.bytes.read(out)
    }
}

#[test]
fn a_source_that_would_block_delays_only_itself() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let client = client();
    let data = vec![3u8; 4 << 20];
    let mut uploads = client.uploads().unwrap();
    let started = Instant::now();
    let late = uploads.add(
        client.upload(&sink.url("/late")),
        Late {
            until: started + Duration::from_millis(800),
            bytes: b"late but whole",
        },
    );
    for i in 0..4 {
        uploads.add(client.upload(&sink.url(&format!("/quick/{i}"))), &data[..]);
    }
    let mut order: Vec<(UploadId, Duration)> = Vec::new();
    for finished in uploads.by_ref() {
        let completed = finished.result.unwrap();
        assert_eq!(completed.status, 200);
        order.push((finished.id, started.elapsed()));
    }
    let (last, at) = order.last().unwrap();
    assert_eq!(*last, late, "{order:?}");
    assert!(*at >= Duration::from_millis(800));
    for (_, at) in &order[..4] {
        assert!(*at < Duration::from_millis(800), "{order:?}");
    }
}

#[test]
fn a_cancelled_upload_stops_and_the_others_finish() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let stalled = TcpListener::bind("127.0.0.1:0").unwrap();
    let stalled_url = format!("http://{}/never", stalled.local_addr().unwrap());
    let closed = thread::spawn(move || {
        let (mut stream, _) = stalled.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // Reads until the client closes: cancel must close the connection.
        let mut buf = [0u8; 65536];
        while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
    });
    let client = client();
    let endless = io::repeat(b'e');
    let mut uploads = client.uploads().unwrap();
    let doomed = uploads.add(client.upload(&stalled_url), endless);
    let kept = uploads.add(client.upload(&sink.url("/kept")), &b"kept"[..]);
    let finished = uploads.next_finished().unwrap();
    assert_eq!(finished.id, kept);
    assert!(uploads.progress(doomed).is_some());
    assert!(uploads.cancel(doomed));
    assert!(!uploads.cancel(doomed), "cancelled twice");
    assert!(
        uploads.next_finished().is_none(),
        "no result for a cancelled upload"
    );
    closed.join().unwrap();
}

#[test]
fn a_bad_url_is_a_result_not_a_panic() {
    let client = client();
    let mut uploads = client.uploads().unwrap();
    let id = uploads.add(client.upload("ftp://example.invalid/x"), &b""[..]);
    let finished = uploads.next_finished().unwrap();
    assert_eq!(finished.id, id);
    assert!(finished.result.unwrap_err().is_request());
    assert!(uploads.next_finished().is_none());
}

#[test]
fn a_name_that_resolves_slowly_delays_only_its_own_uploads() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let port = sink.addr().port();
    let lookups = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&lookups);
    let client = Client::builder()
        .resolver(move |host, port| {
            counted.fetch_add(1, Ordering::SeqCst);
            match host {
                "slow.test" => thread::sleep(Duration::from_millis(1500)),
                "fast.test" => {}
                _ => return Err(io::Error::new(io::ErrorKind::NotFound, "no such test host")),
            }
            Ok(vec![std::net::SocketAddr::from(([127, 0, 0, 1], port))])
        })
        .build()
        .unwrap();
    let mut uploads = client.uploads().unwrap();
    let started = Instant::now();
    let mut slow = Vec::new();
    for i in 0..5 {
        slow.push(uploads.add(
            client.upload(&format!("http://slow.test:{port}/slow/{i}")),
            &b"slow"[..],
        ));
    }
    for i in 0..5 {
        uploads.add(
            client.upload(&format!("http://fast.test:{port}/fast/{i}")),
            &b"fast"[..],
        );
    }
    let missing = uploads.add(
        client.upload(&format!("http://gone.test:{port}/")),
        &b""[..],
    );
    let mut times = HashMap::new();
    for finished in uploads.by_ref() {
        let outcome = finished.result.map(|c| c.status.as_u16());
        times.insert(finished.id, (outcome, started.elapsed()));
    }
    for (id, (outcome, at)) in &times {
        if *id == missing {
            let err = outcome.as_ref().unwrap_err();
            assert_eq!(err.stage(), chunkwire::Stage::Resolve, "{err}");
        } else if slow.contains(id) {
            assert_eq!(*outcome.as_ref().unwrap(), 200);
            assert!(*at >= Duration::from_millis(1500));
        } else {
            assert_eq!(*outcome.as_ref().unwrap(), 200);
            assert!(
                *at < Duration::from_millis(1000),
                "a fast upload took {at:?}"
            );
        }
    }
    // Five uploads to one name in flight at once share one lookup.
    assert_eq!(lookups.load(Ordering::SeqCst), 3);
}

/// A non-blocking socket as a body, counting its reads.
struct CountedSocket {
    socket: std::os::unix::net::UnixStream,
    reads: Arc<AtomicUsize>,
}

impl Read for CountedSocket {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.socket.read(out)
    }
}

impl std::os::fd::AsRawFd for CountedSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.socket.as_raw_fd()
    }
}

#[test]
fn a_watched_socket_source_sleeps_until_readable_beside_fast_uploads() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    let writer = thread::spawn(move || {
        for piece in 0..10u8 {
            thread::sleep(Duration::from_millis(100));
            theirs.write_all(&[piece; 1000]).unwrap();
        }
        // Dropped: the source's end.
    });
    let reads = Arc::new(AtomicUsize::new(0));
    let client = client();
    let data = vec![9u8; 2 << 20];
    let mut uploads = client.uploads().unwrap();
    let started = Instant::now();
    let slow = uploads.add_watched(
        client.upload(&sink.url("/socket")),
        CountedSocket {
            socket: ours,
            reads: Arc::clone(&reads),
        },
    );
    for i in 0..4 {
        uploads.add(client.upload(&sink.url(&format!("/beside/{i}"))), &data[..]);
    }
    let mut done = Vec::new();
    for finished in uploads.by_ref() {
        let completed = finished.result.unwrap();
        if finished.id == slow {
            assert_eq!(completed.progress.body_bytes_sent, 10_000);
        }
        done.push((finished.id, started.elapsed()));
    }
    writer.join().unwrap();
    assert_eq!(done.last().unwrap().0, slow);
    assert!(
        done[..4]
            .iter()
            .all(|(_, at)| *at < Duration::from_millis(900)),
        "{done:?}"
    );
    // A read per wake-up (and one more to see it would block), not one every 5 ms.
    let reads = reads.load(Ordering::SeqCst);
    assert!(reads <= 40, "{reads} reads of a source that had 10 pieces");
}

#[test]
fn an_idle_watched_source_still_stalls_out() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let (ours, _theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    let client = Client::builder()
        .stall_timeout(Some(Duration::from_millis(300)))
        .build()
        .unwrap();
    let mut uploads = client.uploads().unwrap();
    let started = Instant::now();
    uploads.add_watched(client.upload(&sink.url("/idle")), ours);
    let err = uploads.next_finished().unwrap().result.unwrap_err();
    assert_eq!(err.timeout_kind(), Some(TimeoutKind::Stall), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn equal_uploads_progress_at_similar_rates() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let client = client();
    let mut uploads = client.uploads().unwrap();
    let ids: Vec<UploadId> = (0..8)
        .map(|i| {
            let source = io::repeat(b'f').take(48 << 20);
            uploads.add(client.upload(&sink.url(&format!("/fair/{i}"))), source)
        })
        .collect();
    let first = uploads.next_finished().unwrap();
    first.result.unwrap();
    let behind: Vec<u64> = ids
        .iter()
        .filter(|id| **id != first.id)
        .map(|id| {
            uploads
                .progress(*id)
                .map_or(48 << 20, |p| p.body_bytes_sent)
        })
        .collect();
    let slowest = *behind.iter().min().unwrap();
    println!("bytes sent by the others when the first finished: {behind:?}");
    // Round-robin rounds keep every upload within a few rounds of the others; half the
    // leader's bytes leaves room for the sink's threads being scheduled unevenly.
    assert!(
        slowest >= 24 << 20,
        "when one upload finished its 48 MiB, another had sent only {slowest} bytes: {behind:?}"
    );
    for finished in uploads.by_ref() {
        finished.result.unwrap();
    }
}

/// Answers every request on every connection with a 307 to `location`, after reading
/// its head only.
fn redirecting_server(location: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/first", listener.local_addr().unwrap());
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let location = location.clone();
            thread::spawn(move || {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = stream.write_all(answer.as_bytes());
                thread::sleep(Duration::from_millis(200));
            });
        }
    });
    url
}

#[test]
fn redirects_in_a_set_follow_the_same_policy_as_send() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let first = redirecting_server(sink.url("/landed"));
    let client = client();
    let body = body(77, 300_000);
    let mut uploads = client.uploads().unwrap();
    let seekable = uploads.add_seekable(
        client.upload(&first).max_redirects(3),
        io::Cursor::new(&body[..]),
    );
    let stream = uploads.add(client.upload(&first).max_redirects(3), &body[..]);
    let unfollowed = uploads.add_seekable(client.upload(&first), io::Cursor::new(&body[..]));
    let mut results = HashMap::new();
    for finished in uploads.by_ref() {
        results.insert(finished.id, finished.result);
    }
    let landed = results.remove(&seekable).unwrap().unwrap();
    assert_eq!(landed.status, 200);
    let report = sink.next_report(REPORT_WAIT).unwrap();
    assert_eq!(report.target, "/landed");
    assert_eq!(report.crc32, crc32fast::hash(&body));
    let err = results.remove(&stream).unwrap().unwrap_err();
    assert!(err.is_redirect_body_not_resendable(), "{err}");
    let returned = results.remove(&unfollowed).unwrap().unwrap();
    assert_eq!(
        returned.status, 307,
        "without max_redirects the 307 is the answer"
    );
    assert!(sink.next_report(Duration::from_millis(300)).is_none());
}

#[test]
fn no_more_than_max_connecting_connections_open_at_once() {
    // Each upload goes to a name of its own, whose lookup takes a while: the resolver sees
    // how many connections are being opened at once.
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let port = sink.addr().port();
    let now_resolving = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (resolving, seen) = (Arc::clone(&now_resolving), Arc::clone(&most));
    let client = Client::builder()
        .resolver(move |_, port| {
            let at_once = resolving.fetch_add(1, Ordering::SeqCst) + 1;
            seen.fetch_max(at_once, Ordering::SeqCst);
            thread::sleep(Duration::from_millis(50));
            resolving.fetch_sub(1, Ordering::SeqCst);
            Ok(vec![std::net::SocketAddr::from(([127, 0, 0, 1], port))])
        })
        .build()
        .unwrap();
    let mut uploads = client.uploads().unwrap().max_active(20).max_connecting(3);
    for i in 0..12 {
        uploads.add(
            client.upload(&format!("http://host{i}.test:{port}/c/{i}")),
            &b"x"[..],
        );
    }
    let mut done = 0;
    for finished in uploads.by_ref() {
        finished.result.unwrap();
        done += 1;
    }
    assert_eq!(done, 12);
    let most = most.load(Ordering::SeqCst);
    assert_eq!(
        most, 3,
        "{most} connections opened at once, with a limit of 3"
    );
}

#[test]
fn an_empty_set_asks_for_no_wake_up() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let client = client();
    let mut uploads = client.uploads().unwrap();
    uploads.add(client.upload(&sink.url("/once")), &b"once"[..]);
    uploads.next_finished().unwrap().result.unwrap();
    // Its stall deadline went with it: nothing is left to wake for.
    assert_eq!(uploads.next_timeout(Instant::now()), None);
}

#[test]
fn a_resolver_slower_than_the_connect_timeout_is_not_waited_for() {
    let client = Client::builder()
        .connect_timeout(Duration::from_millis(500))
        .resolver(|_, _| {
            thread::sleep(Duration::from_secs(3));
            Err(io::Error::other("too late anyway"))
        })
        .build()
        .unwrap();
    let mut uploads = client.uploads().unwrap();
    let started = Instant::now();
    uploads.add(client.upload("http://slow-dns.test/x"), &b"x"[..]);
    let err = uploads.next_finished().unwrap().result.unwrap_err();
    assert_eq!(err.stage(), chunkwire::Stage::Resolve, "{err}");
    assert_eq!(err.timeout_kind(), Some(TimeoutKind::Connect), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
