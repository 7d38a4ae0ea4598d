//! Redirects and retries: 307/308 send exactly the same bytes again, 303 becomes a GET,
//! credentials stay with their origin, a connection that dies before any response is
//! tried once more only when the body can be rewound.

use std::io::{Cursor, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;

use chunkwire::Client;

/// A request as the server saw it: the head, and the body bytes (chunked, raw).
#[derive(Debug, Clone)]
struct Seen {
    head: String,
    body: Vec<u8>,
}

fn read_request(stream: &mut TcpStream) -> Seen {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed in the head");
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut body = data[head_end..].to_vec();
    if head.contains("Transfer-Encoding: chunked") {
        while !body.ends_with(b"0\r\n\r\n") {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "closed in the body");
            body.extend_from_slice(&buf[..n]);
        }
    }
    Seen { head, body }
}

/// Serves `replies.len()` connections in turn, one request each, answering with the reply
/// for that connection (`{base}` becomes the server's own URL); sends what it saw.
fn server(replies: Vec<String>) -> (String, mpsc::Receiver<Seen>, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (sender, seen) = mpsc::channel();
    let own = base.clone();
    let handle = thread::spawn(move || {
        for reply in replies {
            let (mut stream, _) = listener.accept().unwrap();
            if reply == "RESET" {
                let _ = read_request(&mut stream);
                continue; // dropped without a response
            }
            sender.send(read_request(&mut stream)).unwrap();
            stream
                .write_all(reply.replace("{base}", &own).as_bytes())
                .unwrap();
        }
    });
    (base, seen, handle)
}

const CREATED: &str = "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";

#[test]
fn status_307_and_308_send_the_same_bytes_again() {
    for status in ["307 Temporary Redirect", "308 Permanent Redirect"] {
        let redirect =
            format!("HTTP/1.1 {status}\r\nLocation: /second\r\nContent-Length: 0\r\n\r\n");
        let (base, seen, handle) = server(vec![redirect, CREATED.into()]);
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 199) as u8).collect();
        let mut response = Client::builder()
            .chunk_size(7000)
            .build()
            .unwrap()
            .upload(&format!("{base}/first"))
            .method("POST")
            .max_redirects(5)
            .send_seekable(Cursor::new(body.clone()))
            .unwrap();
        assert_eq!(response.status(), 201);
        assert_eq!(response.text().unwrap(), "ok");
        handle.join().unwrap();
        let first = seen.recv().unwrap();
        let second = seen.recv().unwrap();
        assert!(first.head.starts_with("POST /first HTTP/1.1\r\n"));
        assert!(
            second.head.starts_with("POST /second HTTP/1.1\r\n"),
            "{}",
            second.head
        );
        assert_eq!(
            first.body, second.body,
            "{status}: the body differs the second time"
        );
        assert!(first.body.len() > body.len());
    }
}

#[test]
fn status_303_becomes_a_get_without_a_body() {
    let redirect = "HTTP/1.1 303 See Other\r\nLocation: {base}/result\r\nContent-Length: 0\r\n\r\n";
    let (base, seen, handle) = server(vec![
        redirect.into(),
        "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone".into(),
    ]);
    let mut response = Client::new()
        .upload(&format!("{base}/form"))
        .method("POST")
        .max_redirects(1)
        .send(&b"field=value"[..])
        .unwrap();
    assert_eq!(response.text().unwrap(), "done");
    handle.join().unwrap();
    let _ = seen.recv().unwrap();
    let get = seen.recv().unwrap();
    assert!(
        get.head.starts_with("GET /result HTTP/1.1\r\n"),
        "{}",
        get.head
    );
    assert!(
        !get.head.contains("Transfer-Encoding") && !get.head.contains("Content-Length"),
        "{}",
        get.head
    );
    assert!(get.body.is_empty());
}

#[test]
fn a_stream_body_cannot_be_resent_so_the_307_is_returned() {
    let redirect =
        "HTTP/1.1 307 Temporary Redirect\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n";
    let (base, _seen, handle) = server(vec![redirect.into()]);
    let response = Client::new()
        .upload(&format!("{base}/x"))
        .max_redirects(5)
        .send(std::io::repeat(b'p').take(1000))
        .unwrap();
    assert_eq!(response.status(), 307);
    handle.join().unwrap();
}

#[test]
fn credentials_stay_with_their_origin() {
    let (other, other_seen, other_handle) = server(vec![CREATED.into()]);
    let redirect = format!(
        "HTTP/1.1 307 Temporary Redirect\r\nLocation: {other}/elsewhere\r\nContent-Length: 0\r\n\r\n"
    );
    let (base, seen, handle) = server(vec![redirect]);
    let response = Client::new()
        .upload(&format!("{base}/secret"))
        .header("Authorization", "Bearer s3cret")
        .header("X-Keep", "yes")
        .max_redirects(2)
        .send_seekable(Cursor::new(b"data".to_vec()))
        .unwrap();
    assert_eq!(response.status(), 201);
    handle.join().unwrap();
    other_handle.join().unwrap();
    assert!(
        seen.recv()
            .unwrap()
            .head
            .contains("Authorization: Bearer s3cret")
    );
    let moved = other_seen.recv().unwrap();
    assert!(!moved.head.contains("Authorization"), "{}", moved.head);
    assert!(moved.head.contains("X-Keep: yes"));
}

#[test]
fn too_many_redirects_is_an_error() {
    let hop = "HTTP/1.1 308 Permanent Redirect\r\nLocation: /loop\r\nContent-Length: 0\r\n\r\n";
    let (base, _seen, handle) = server(vec![hop.into(); 3]);
    let err = Client::new()
        .upload(&format!("{base}/loop"))
        .max_redirects(2)
        .send_seekable(Cursor::new(b"x".to_vec()))
        .unwrap_err();
    assert!(err.is_too_many_redirects(), "{err}");
    handle.join().unwrap();
}

#[test]
fn a_dead_connection_is_retried_once_for_a_seekable_body_only() {
    let (base, seen, handle) = server(vec!["RESET".into(), CREATED.into()]);
    let body = vec![9u8; 50_000];
    let response = Client::new()
        .upload(&format!("{base}/retry"))
        .send_seekable(Cursor::new(body.clone()))
        .unwrap();
    assert_eq!(response.status(), 201);
    handle.join().unwrap();
    let retried = seen.recv().unwrap();
    assert!(
        retried
            .body
            .windows(4)
            .filter(|w| *w == [9, 9, 9, 9])
            .count()
            > 10_000
    );

    let (base, _seen, handle) = server(vec!["RESET".into()]);
    let err = Client::new()
        .upload(&format!("{base}/retry"))
        .send(&body[..])
        .unwrap_err();
    assert!(
        err.is_closed_before_response() || err.io_error().is_some(),
        "{err}"
    );
    handle.join().unwrap();
}
