//! The client against servers whose response heads need the message rules: a folded
//! header field (obs-fold) is unfolded instead of failing the accepted upload, and a bad
//! field line is quoted in the error, not the body after it.

use std::io::{Read, Write};
use std::net::TcpStream;

use chunkwire::{Client, PeerError};

mod support;
use support::{read_head, serve_once};

/// Reads the rest of a chunked request body (after the head) to its last chunk.
fn read_chunked_body(stream: &mut TcpStream, mut seen: Vec<u8>) {
    let mut buf = [0u8; 4096];
    while !seen.ends_with(b"0\r\n\r\n") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "client closed mid-body");
        seen.extend_from_slice(&buf[..n]);
    }
}

fn upload_answered_with(reply: &'static [u8]) -> chunkwire::Result<(chunkwire::Response, String)> {
    let (url, server) = serve_once(move |mut stream| {
        let rest = read_head(&mut stream);
        read_chunked_body(&mut stream, rest);
        stream.write_all(reply).unwrap();
    });
    let result = Client::new()
        .upload(&url)
        .send(&b"hello"[..])
        .and_then(|mut response| {
            let text = response.text()?;
            Ok((response, text))
        });
    server.join().unwrap();
    result
}

#[test]
fn a_folded_response_field_is_unfolded_and_the_upload_succeeds() {
    let (response, text) = upload_answered_with(
        b"HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    )
    .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-a"], "one two");
    assert_eq!(text, "ok");
}

#[test]
fn a_bad_response_field_is_quoted_by_its_line() {
    let err = upload_answered_with(
        b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-Bad\x01: v\r\nConnection: close\r\n\r\nhello world",
    )
    .unwrap_err();
    assert!(
        matches!(err.peer_error(), Some(PeerError::BadHeader { excerpt }) if excerpt == "X-Bad\\x01: v"),
        "{err}"
    );
    assert!(!format!("{err}").contains("hello world"), "{err}");
}
