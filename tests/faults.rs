//! Servers that misbehave, written for the purpose: each case ends in the right response
//! or a specific error that names its stage, never a hang or a panic.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use chunkwire::{Client, Stage, TimeoutKind};

mod support;
use support::{read_head, serve_once};

/// An endless body: if the client did not stop, these tests would not end.
struct Endless;

impl Read for Endless {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        out.fill(b'z');
        Ok(out.len())
    }
}

fn client() -> Client {
    Client::builder()
        .chunk_size(16 * 1024)
        .connect_timeout(Duration::from_secs(5))
        .stall_timeout(Some(Duration::from_secs(10)))
        .max_time(Some(Duration::from_secs(30)))
        .build()
        .unwrap()
}

#[test]
fn early_413_while_the_server_keeps_reading_stops_the_upload() {
    let (url, server) = serve_once(|mut stream| {
        read_head(&mut stream);
        stream
            .write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\n\r\ntoo big!")
            .unwrap();
        // Keep reading: the client must stop by itself, and then close.
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut sink = [0u8; 65536];
        while stream.read(&mut sink).map(|n| n > 0).unwrap_or(false) {}
    });
    let mut response = client().upload(&url).send(Endless).unwrap();
    assert_eq!(response.status(), 413);
    assert!(!response.upload_complete());
    assert_eq!(response.text().unwrap(), "too big!");
    drop(response);
    server.join().unwrap();
}

#[test]
fn early_413_then_close_is_returned_not_a_broken_pipe() {
    let (url, server) = serve_once(|mut stream| {
        read_head(&mut stream);
        stream
            .write_all(
                b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big!",
            )
            .unwrap();
        // Closing with unread bytes makes the kernel send a reset.
    });
    let mut response = client().upload(&url).send(Endless).unwrap();
    assert_eq!(response.status(), 413);
    assert!(!response.upload_complete());
    assert_eq!(response.text().unwrap(), "too big!");
    server.join().unwrap();
}

/// Reads a chunked body up to its last chunk; returns every byte after the head, framing
/// included.
fn read_chunked_to_end(stream: &mut TcpStream, mut seen: Vec<u8>) -> Vec<u8> {
    let mut buf = [0u8; 65536];
    while !seen.ends_with(b"\r\n0\r\n\r\n") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the client closed before its last chunk");
        seen.extend_from_slice(&buf[..n]);
    }
    seen
}

#[test]
fn an_early_200_does_not_stop_the_upload() {
    // curl keeps sending after an early 2xx and stops only for 300 and above: a server that
    // says "fine" early (an upload endpoint that answers once it has the head) still gets
    // the whole body, and the caller only hears of success once it went out.
    const BODY: usize = 3 << 20;
    let (url, server) = serve_once(|mut stream| {
        let after_head = read_head(&mut stream);
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .unwrap();
        read_chunked_to_end(&mut stream, after_head).len()
    });
    let body = vec![b'q'; BODY];
    let mut response = client().upload(&url).send(&body[..]).unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.upload_complete());
    assert_eq!(response.progress().body_bytes_sent, BODY as u64);
    assert_eq!(response.text().unwrap(), "ok");
    assert!(server.join().unwrap() > BODY);
}

#[test]
fn an_early_200_then_close_is_an_error_not_success() {
    let (url, server) = serve_once(|mut stream| {
        read_head(&mut stream);
        stream
            .write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut some = vec![0u8; 100_000];
        stream.read_exact(&mut some).unwrap();
        // Closing with unread bytes makes the kernel send a reset.
    });
    let body = vec![b'q'; 50 << 20];
    let err = client().upload(&url).send(&body[..]).unwrap_err();
    assert_eq!(err.stage(), Stage::Send, "{err}");
    assert_eq!(err.early_answer(), Some(201), "{err}");
    assert!(
        err.to_string()
            .contains("answered 201 before the body was complete"),
        "{err}"
    );
    assert!(err.progress().body_bytes_sent < body.len() as u64, "{err}");
    server.join().unwrap();
}

#[test]
fn server_closing_mid_upload_is_a_send_error() {
    let (url, server) = serve_once(|mut stream| {
        read_head(&mut stream);
        let mut some = vec![0u8; 100_000];
        stream.read_exact(&mut some).unwrap();
        stream.shutdown(Shutdown::Both).unwrap();
    });
    let started = Instant::now();
    let err = client().upload(&url).send(Endless).unwrap_err();
    assert_eq!(err.stage(), Stage::Send, "{err}");
    assert!(err.progress().body_bytes_sent >= 90_000, "{err}");
    assert!(err.to_string().starts_with("send failed"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    server.join().unwrap();
}

#[test]
fn connection_refused_is_a_connect_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = client()
        .upload(&format!("http://127.0.0.1:{port}/"))
        .send(&b"x"[..])
        .unwrap_err();
    assert_eq!(err.stage(), Stage::Connect, "{err}");
    assert_eq!(
        err.io_error().map(io::Error::kind),
        Some(io::ErrorKind::ConnectionRefused)
    );
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn unresolvable_host_is_a_resolve_error() {
    let err = client()
        .upload("http://no-such-host.invalid/")
        .send(&b"x"[..])
        .unwrap_err();
    assert_eq!(err.stage(), Stage::Resolve, "{err}");
}

#[test]
fn connect_timeout_fires_when_syns_go_unanswered() {
    let (listener, _held) = support::unanswered_listener();
    let addr = listener.local_addr().unwrap();
    let client = Client::builder()
        .connect_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = client
        .upload(&format!("http://{addr}/"))
        .send(&b"x"[..])
        .unwrap_err();
    assert_eq!(err.timeout_kind(), Some(TimeoutKind::Connect), "{err}");
    assert_eq!(err.stage(), Stage::Connect);
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(listener);
}

#[test]
fn a_server_that_stops_reading_trips_the_stall_timeout() {
    let (url, server) = serve_once(|mut stream| {
        read_head(&mut stream);
        thread::sleep(Duration::from_secs(3));
    });
    let client = Client::builder()
        .stall_timeout(Some(Duration::from_millis(500)))
        .build()
        .unwrap();
    let err = client.upload(&url).send(Endless).unwrap_err();
    assert_eq!(err.timeout_kind(), Some(TimeoutKind::Stall), "{err}");
    assert_eq!(err.stage(), Stage::Send);
    assert!(err.progress().body_bytes_sent > 0);
    server.join().unwrap();
}

#[test]
fn a_response_that_never_comes_trips_the_total_timeout() {
    let (url, server) = serve_once(|mut stream| {
        read_head(&mut stream);
        thread::sleep(Duration::from_secs(2));
    });
    let client = Client::builder()
        .max_time(Some(Duration::from_millis(400)))
        .build()
        .unwrap();
    let err = client.upload(&url).send(&b"small"[..]).unwrap_err();
    assert_eq!(err.timeout_kind(), Some(TimeoutKind::Total), "{err}");
    assert_eq!(err.stage(), Stage::Receive);
    assert_eq!(err.progress().body_bytes_sent, 5);
    server.join().unwrap();
}

/// Reads the head and a small chunked body, up to its last chunk.
fn read_body(stream: &mut TcpStream) {
    let mut seen = read_head(stream);
    let mut more = [0u8; 1024];
    while !seen.ends_with(b"0\r\n\r\n") {
        let n = stream.read(&mut more).unwrap();
        assert!(n > 0, "client closed before the last chunk");
        seen.extend_from_slice(&more[..n]);
    }
}

/// Sends `reply` after the whole request and returns the client's result.
fn reply_with(reply: Vec<u8>) -> chunkwire::Result<String> {
    let (url, server) = serve_once(move |mut stream| {
        read_body(&mut stream);
        let _ = stream.write_all(&reply);
    });
    let result = client()
        .upload(&url)
        .send(&b"payload"[..])
        .and_then(|mut response| response.text());
    server.join().unwrap();
    result
}

#[test]
fn malformed_responses_are_clear_receive_errors() {
    let mut oversized = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..5000 {
        oversized.extend_from_slice(format!("X-Filler-{i}: 0123456789\r\n").as_bytes());
    }
    oversized.extend_from_slice(b"\r\n");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"HTTP/1.1 abc OK\r\n\r\n".to_vec(), "status"),
        (b"SMTP ready\r\n\r\n".to_vec(), ""),
        (oversized, "limit"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
                .to_vec(),
            "chunk",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello"
                .to_vec(),
            "",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort".to_vec(),
            "",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel".to_vec(),
            "",
        ),
    ];
    for (reply, mentions) in cases {
        let shown = String::from_utf8_lossy(&reply[..reply.len().min(60)]).into_owned();
        let err = reply_with(reply).expect_err(&shown);
        assert_eq!(err.stage(), Stage::Receive, "{shown}: {err}");
        let message = err.to_string().to_lowercase();
        assert!(message.starts_with("receive failed"), "{shown}: {message}");
        assert!(
            message.contains(mentions),
            "{shown}: {message} should mention {mentions:?}"
        );
    }
}

#[test]
fn close_before_any_response_is_an_error() {
    let err = reply_with(Vec::new()).unwrap_err();
    assert!(err.is_closed_before_response(), "{err}");
    assert_eq!(err.stage(), Stage::Receive);
}

#[test]
fn a_response_split_into_single_bytes_is_parsed() {
    let (url, server) = serve_once(|mut stream| {
        read_body(&mut stream);
        stream.set_nodelay(true).unwrap();
        for byte in b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n" {
            stream.write_all(&[*byte]).unwrap();
            thread::sleep(Duration::from_millis(1));
        }
    });
    let mut response = client().upload(&url).send(&b"x"[..]).unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.interim_responses(), 1);
    assert_eq!(response.text().unwrap(), "abcde");
    server.join().unwrap();
}

#[test]
fn an_endless_fast_response_body_trips_the_total_timeout() {
    let (url, server) = serve_once(|mut stream| {
        read_body(&mut stream);
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
        let block = [b'r'; 65536];
        // Close-delimited and never closed: only the client's deadline can end this.
        while stream.write_all(&block).is_ok() {}
    });
    let client = Client::builder()
        .max_time(Some(Duration::from_millis(500)))
        .build()
        .unwrap();
    let mut response = client.upload(&url).send(&b"x"[..]).unwrap();
    let started = Instant::now();
    let err = response.copy_to(&mut io::sink()).unwrap_err();
    assert_eq!(err.timeout_kind(), Some(TimeoutKind::Total), "{err}");
    assert_eq!(err.stage(), Stage::Receive);
    assert!(err.progress().wire_bytes_received > 0);
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(response);
    server.join().unwrap();
}

#[test]
fn a_response_head_larger_than_the_first_receive_region_is_read_whole() {
    // The receive region starts at 2 KiB and grows to the head limit (32 KiB) only when a
    // head does not fit: a 20 KB head and a 9 KB chunk-size extension are read whole.
    let padding = "x".repeat(400);
    let mut head = String::from("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n");
    for i in 0..50 {
        head.push_str(&format!("X-Pad-{i}: {padding}\r\n"));
    }
    head.push_str("\r\n");
    let extension = "e".repeat(3000);
    let reply = format!("{head}2;{extension}\r\nok\r\n0\r\n\r\n");
    let (url, server) = serve_once(move |mut stream| {
        let after_head = read_head(&mut stream);
        let mut seen = after_head;
        let mut buf = [0u8; 4096];
        while !seen.ends_with(b"0\r\n\r\n") {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0);
            seen.extend_from_slice(&buf[..n]);
        }
        stream.write_all(reply.as_bytes()).unwrap();
    });
    let mut response = client().upload(&url).send(&b"body"[..]).unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers().len(), 51);
    assert_eq!(response.text().unwrap(), "ok");
    server.join().unwrap();
}
