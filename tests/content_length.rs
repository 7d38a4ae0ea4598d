//! Content-Length mode with a source that lies about its length: an error either way, the
//! server never sees a complete body, and the connection is not kept.
#![cfg(feature = "sink")]

use std::io::Read;
use std::time::Duration;

use chunkwire::sink::{Framing, Sink};
use chunkwire::{Client, RequestError, Stage};

mod support;
use support::{read_head, serve_once};

/// Everything after the request head, until the client closes.
fn body_until_close(stream: &mut std::net::TcpStream) -> Vec<u8> {
    let mut body = read_head(stream);
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return body,
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
}

#[test]
fn a_source_shorter_than_stated_is_an_error_and_the_body_stays_incomplete() {
    let (url, server) = serve_once(|mut stream| {
        let body = body_until_close(&mut stream);
        assert_eq!(body, b"12345", "only the bytes the source had");
    });
    let err = Client::new()
        .upload(&url)
        .content_length(10)
        .send(&b"12345"[..])
        .unwrap_err();
    assert_eq!(err.stage(), Stage::ReadSource, "{err}");
    assert_eq!(
        err.request_error(),
        Some(&RequestError::SourceShorterThanLength {
            expected: 10,
            actual: 5
        })
    );
    server.join().unwrap();
}

#[test]
fn a_source_longer_than_stated_is_caught_before_the_last_byte() {
    let (url, server) = serve_once(|mut stream| {
        let body = body_until_close(&mut stream);
        assert!(
            body.len() < 3,
            "the server must not see a complete body: {body:?}"
        );
    });
    let err = Client::builder()
        .chunk_size(2)
        .build()
        .unwrap()
        .upload(&url)
        .content_length(3)
        .send(&b"12345"[..])
        .unwrap_err();
    assert_eq!(
        err.request_error(),
        Some(&RequestError::SourceLongerThanLength { expected: 3 })
    );
    server.join().unwrap();
}

#[test]
fn after_a_lying_source_the_next_upload_uses_a_new_connection() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let client = Client::new();
    let _ = client
        .upload(&sink.url("/x"))
        .content_length(100)
        .send(&b"short"[..])
        .unwrap_err();
    let mut next = client
        .upload(&sink.url("/y"))
        .content_length(4)
        .send(&b"good"[..])
        .unwrap();
    assert!(!next.connection_reused());
    next.text().unwrap();
    let report = sink.next_report(Duration::from_secs(5)).unwrap();
    assert_eq!(
        (report.framing, report.bytes, report.target.as_str()),
        (Framing::ContentLength, 4, "/y")
    );
}

#[test]
fn a_transfer_encoding_header_with_a_stated_length_is_refused_before_connecting() {
    // Port 9 on loopback: nothing listens, and nothing must be tried.
    let err = chunkwire::Client::new()
        .upload("http://127.0.0.1:9/x")
        .header("Transfer-Encoding", "chunked")
        .content_length(3)
        .send(&b"abc"[..])
        .unwrap_err();
    assert!(err.is_request(), "{err}");
    assert!(err.to_string().contains("conflicts"), "{err}");
}
