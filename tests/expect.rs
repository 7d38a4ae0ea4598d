//! `Expect: 100-continue`: the body waits for the server's go-ahead, goes anyway after the
//! timeout, and is never sent when a final response comes first (checked on the server).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use chunkwire::Client;

mod support;
use support::{read_head, serve_once};

/// The first bytes that arrive within `wait`; none if the client closes or sends nothing.
fn bytes_within(stream: &mut TcpStream, wait: Duration) -> Vec<u8> {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    match stream.read(&mut buf) {
        Ok(n) => buf[..n].to_vec(),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Vec::new(),
        Err(e) => panic!("{e}"),
    }
}

fn read_to_last_chunk(stream: &mut TcpStream, mut got: Vec<u8>) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"0\r\n\r\n") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the last chunk");
        got.extend_from_slice(&buf[..n]);
    }
    got
}

#[test]
fn the_body_waits_for_100_continue() {
    let (url, server) = serve_once(|mut stream| {
        let early = read_head(&mut stream);
        assert!(early.is_empty(), "body bytes came with the head");
        assert!(
            bytes_within(&mut stream, Duration::from_millis(300)).is_empty(),
            "the body did not wait"
        );
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
        let body = read_to_last_chunk(&mut stream, Vec::new());
        assert_eq!(body, b"5\r\nhello\r\n0\r\n\r\n");
        stream
            .write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
    });
    let response = Client::new()
        .upload(&url)
        .expect_continue(Duration::from_secs(5))
        .send(&b"hello"[..])
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.interim_responses(), 1);
    assert!(response.upload_complete());
    server.join().unwrap();
}

#[test]
fn without_100_the_body_goes_after_the_timeout() {
    let (url, server) = serve_once(|mut stream| {
        let head_at = Instant::now();
        read_head(&mut stream);
        let first = bytes_within(&mut stream, Duration::from_secs(5));
        let waited = head_at.elapsed();
        assert!(!first.is_empty(), "the body never came");
        assert!(
            waited >= Duration::from_millis(250),
            "the body came after {waited:?}"
        );
        let body = read_to_last_chunk(&mut stream, first);
        assert!(body.ends_with(b"3\r\nabc\r\n0\r\n\r\n"));
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
    });
    let response = Client::new()
        .upload(&url)
        .expect_continue(Duration::from_millis(300))
        .send(&b"abc"[..])
        .unwrap();
    assert_eq!(response.status(), 200);
    server.join().unwrap();
}

#[test]
fn a_final_response_instead_of_100_means_no_body_bytes() {
    // (A 417 is not among them: it is retried without the expectation, see below.)
    for status in ["401 Unauthorized", "413 Content Too Large"] {
        let reply = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
        let (url, server) = serve_once(move |mut stream| {
            let early = read_head(&mut stream);
            stream.write_all(reply.as_bytes()).unwrap();
            let later = bytes_within(&mut stream, Duration::from_millis(500));
            assert!(
                early.is_empty() && later.is_empty(),
                "body bytes arrived: {later:?}"
            );
        });
        let response = Client::new()
            .upload(&url)
            .expect_continue(Duration::from_millis(200))
            .send(&b"must not be sent"[..])
            .unwrap();
        assert_eq!(&response.status().to_string()[..3], &status[..3]);
        assert!(!response.upload_complete());
        assert_eq!(response.progress().body_bytes_sent, 0);
        assert_eq!(
            response.progress().body_bytes_read,
            0,
            "the source was not even read"
        );
        drop(response);
        server.join().unwrap();
    }
}

#[test]
fn a_417_is_retried_once_without_the_expectation_for_a_seekable_body() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/up", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut first, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            first.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        assert!(String::from_utf8_lossy(&head).contains("Expect: 100-continue"));
        first
            .write_all(b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        let (mut second, _) = listener.accept().unwrap();
        let request = read_to_last_chunk(&mut second, Vec::new());
        let text = String::from_utf8_lossy(&request);
        assert!(!text.contains("Expect:"), "{text}");
        assert!(text.ends_with("5\r\nagain\r\n0\r\n\r\n"), "{text}");
        second
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
    });
    let response = Client::new()
        .upload(&url)
        .expect_continue(Duration::from_secs(5))
        .send_seekable(std::io::Cursor::new(b"again".to_vec()))
        .unwrap();
    assert_eq!(response.status(), 200);
    server.join().unwrap();
}
