//! Review checks that hold: hostile servers and sources in one set end their own uploads
//! alone, `--expect-continue` is not coalesced, a dropped set closes its connections, and
//! the caller's-loop calls are safe with foreign tokens and without events.
#![cfg(feature = "sink")]

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use chunkwire::mio::{Events, Interest, Poll, Token};
use chunkwire::sink::Sink;
use chunkwire::{Client, TimeoutKind};

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

fn drain(stream: &mut TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = [0u8; 65536];
    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
}

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

/// Rewinds once (for the start), then refuses: a redirect cannot rewind it.
struct SeekFailsLater(io::Cursor<Vec<u8>>, bool);

impl Read for SeekFailsLater {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.0.read(out)
    }
}

impl io::Seek for SeekFailsLater {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        if std::mem::replace(&mut self.1, true) {
            return Err(io::Error::other("seek refused"));
        }
        self.0.seek(to)
    }
}

struct Fails;

impl Read for Fails {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::other("disk on fire"))
    }
}

struct NeverReady;

impl Read for NeverReady {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

#[test]
fn hostile_servers_and_sources_in_one_set_end_only_their_own_uploads() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let garbage = server(|mut s| {
        read_head(&mut s);
        let _ = s.write_all(b"SSH-2.0-OpenSSH\r\n\r\n");
        // Read the rest: closing with the body unread would reset the connection, and a
        // reset can overtake the garbage it was meant to be read with.
        drain(&mut s);
    });
    let looping = server(|mut s| {
        while s.read(&mut [0u8; 1]).unwrap_or(0) == 1 {
            read_head(&mut s);
            let _ =
                s.write_all(b"HTTP/1.1 307 Again\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let to_https = server(|mut s| {
        read_head(&mut s);
        let _ = s.write_all(
            b"HTTP/1.1 307 Go\r\nLocation: https://127.0.0.1:1/x\r\nContent-Length: 0\r\n\r\n",
        );
        drain(&mut s);
    });
    let close_then_read = server(|mut s| {
        read_head(&mut s);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok");
        drain(&mut s);
    });
    let client = Client::builder()
        .stall_timeout(Some(Duration::from_secs(1)))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let big = vec![1u8; 4 << 20];
    let mut uploads = client.uploads().unwrap();
    let mut names = HashMap::new();
    let up = |base: &str| client.upload(&format!("{base}/x")).max_redirects(5);
    names.insert(uploads.add(up(&garbage), &big[..100]), "garbage");
    names.insert(
        uploads.add_seekable(up(&looping), io::Cursor::new(&big[..100])),
        "loop",
    );
    names.insert(
        uploads.add_seekable(up(&to_https), io::Cursor::new(&big[..100])),
        "https",
    );
    names.insert(
        uploads.add_seekable(
            up(&to_https),
            SeekFailsLater(io::Cursor::new(vec![2; 100]), false),
        ),
        "seek",
    );
    names.insert(uploads.add(up(&close_then_read), &big[..]), "close");
    names.insert(
        uploads.add(client.upload(&sink.url("/fails")), Fails),
        "fails",
    );
    names.insert(
        uploads.add(client.upload(&sink.url("/never")), NeverReady),
        "never",
    );
    names.insert(
        uploads.add(client.upload(&sink.url("/zero")), &b""[..]),
        "zero",
    );
    names.insert(
        uploads.add(client.upload(&sink.url("/fine")), &big[..]),
        "fine",
    );
    let started = Instant::now();
    let mut results = HashMap::new();
    for finished in uploads.by_ref() {
        results.insert(names[&finished.id], (finished.result, started.elapsed()));
    }
    assert_eq!(results.len(), 9);
    let err = |name: &str| results[name].0.as_ref().unwrap_err().to_string();
    assert!(
        err("garbage").contains("bad status line"),
        "{}",
        err("garbage")
    );
    assert!(
        err("loop").contains("more than 5 redirects"),
        "{}",
        err("loop")
    );
    assert!(err("https").contains("connect failed"), "{}", err("https"));
    assert!(err("seek").contains("seek refused"), "{}", err("seek"));
    assert!(err("fails").contains("disk on fire"), "{}", err("fails"));
    let never = results["never"].0.as_ref().unwrap_err();
    assert_eq!(never.timeout_kind(), Some(TimeoutKind::Stall), "{never}");
    let close = results["close"].0.as_ref().unwrap();
    assert_eq!(close.status, 200);
    assert!(close.upload_complete);
    assert_eq!(close.progress.body_bytes_sent, big.len() as u64);
    for name in ["zero", "fine"] {
        let (result, at) = &results[name];
        assert_eq!(result.as_ref().unwrap().status, 200);
        assert!(
            *at < Duration::from_millis(900),
            "{name} waited for the others: {at:?}"
        );
    }
    assert_eq!(
        results["zero"].0.as_ref().unwrap().progress.body_bytes_sent,
        0
    );
}

/// Rule 7 (coalescing) must not apply with `Expect: 100-continue`: a seekable body waits
/// after the head until the server says `100 Continue`.
#[test]
fn with_expect_continue_a_seekable_body_waits_after_the_head() {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let url = server(move |mut s| {
        read_head(&mut s);
        // Nothing but the head before the interim answer.
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let early = s.read(&mut [0u8; 64]).unwrap_or(0);
        let _ = tx.lock().unwrap().send(early);
        let _ = s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        while !seen.ends_with(b"0\r\n\r\n") && matches!(s.read(&mut byte), Ok(1)) {
            seen.push(byte[0]);
        }
        let _ = s.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
    });
    let client = Client::new();
    let response = client
        .upload(&format!("{url}/expect"))
        .expect_continue(Duration::from_secs(2))
        .send_seekable(io::Cursor::new(b"small seekable body".to_vec()))
        .unwrap();
    assert_eq!(response.status(), 201);
    assert!(response.upload_complete());
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 0);
}

#[test]
fn a_set_dropped_mid_flight_closes_its_connections() {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let url = server(move |mut s| {
        read_head(&mut s);
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 65536];
        let closed = loop {
            match s.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => {}
                Err(_) => break false,
            }
        };
        let _ = tx.lock().unwrap().send(closed);
    });
    let client = Client::new();
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(64);
    let mut uploads = client.uploads_in(poll.registry(), 100..110).unwrap();
    uploads.add(
        client.upload(&format!("{url}/slow")).limit_rate(20_000),
        io::repeat(1).take(1 << 20),
    );
    let until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < until {
        poll.poll(&mut events, Some(Duration::from_millis(20)))
            .unwrap();
        for event in events.iter() {
            uploads.handle_event(event);
        }
        uploads.handle_timeout(Instant::now());
    }
    assert_eq!(uploads.active(), 1);
    drop(uploads);
    assert!(rx.recv_timeout(Duration::from_secs(6)).unwrap(), "no EOF");
}

#[test]
fn foreign_tokens_and_timeouts_without_events_are_harmless() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let client = Client::new();
    let mut poll = Poll::new().unwrap();
    let mut own = chunkwire::mio::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    poll.registry()
        .register(&mut own, Token(1), Interest::READABLE)
        .unwrap();
    let mut uploads = client.uploads_in(poll.registry(), 10..20).unwrap();
    assert_eq!(uploads.next_timeout(Instant::now()), None, "an empty set");
    for _ in 0..100 {
        uploads.handle_timeout(Instant::now());
    }
    let id = uploads.add(client.upload(&sink.url("/t")), &b"t"[..]);
    assert_eq!(uploads.next_timeout(Instant::now()), Some(Duration::ZERO));
    let talker = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut events = Events::with_capacity(64);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut done = None;
    while done.is_none() && Instant::now() < deadline {
        talker.send_to(b"x", own.local_addr().unwrap()).unwrap();
        let wait = uploads
            .next_timeout(Instant::now())
            .unwrap_or(Duration::from_millis(50));
        poll.poll(&mut events, Some(wait.min(Duration::from_millis(50))))
            .unwrap();
        for event in events.iter() {
            let ours = uploads.handle_event(event);
            assert_eq!(ours, event.token() != Token(1));
            if event.token() == Token(1) {
                while own.recv_from(&mut [0u8; 8]).is_ok() {}
            }
        }
        uploads.handle_timeout(Instant::now());
        done = uploads.poll_finished();
    }
    let done = done.expect("finished");
    assert_eq!(done.id, id);
    assert_eq!(done.result.unwrap().status, 200);
    assert!(!uploads.cancel(id), "a finished upload cannot be cancelled");
}
