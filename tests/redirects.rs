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
fn a_stream_body_that_cannot_be_resent_fails_the_307() {
    // It used to return the 307 as if it were the answer: the body never reached /again,
    // and the CLI exited 0.
    let redirect =
        "HTTP/1.1 307 Temporary Redirect\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n";
    let (base, _seen, handle) = server(vec![redirect.into()]);
    let err = Client::new()
        .upload(&format!("{base}/x"))
        .max_redirects(5)
        .send(std::io::repeat(b'p').take(1000))
        .unwrap_err();
    assert!(err.is_redirect_body_not_resendable(), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("307") && message.contains("/again"),
        "{message}"
    );
    assert!(message.contains("cannot be sent again"), "{message}");
    assert_eq!(err.progress().body_bytes_sent, 1000, "{message}");
    handle.join().unwrap();
}

#[test]
fn max_redirects_zero_makes_a_redirect_an_error() {
    let hop = "HTTP/1.1 302 Found\r\nLocation: /next\r\nContent-Length: 0\r\n\r\n";
    let (base, _seen, handle) = server(vec![hop.into()]);
    let err = Client::new()
        .upload(&format!("{base}/x"))
        .max_redirects(0)
        .send_seekable(Cursor::new(b"x".to_vec()))
        .unwrap_err();
    assert!(err.is_too_many_redirects(), "{err}");
    assert_eq!(err.progress().body_bytes_sent, 1, "{err}");
    handle.join().unwrap();
}

#[test]
fn a_custom_host_stays_with_the_first_origin() {
    let (other, other_seen, other_handle) = server(vec![CREATED.into()]);
    let redirect = format!(
        "HTTP/1.1 308 Permanent Redirect\r\nLocation: {other}/moved\r\nContent-Length: 0\r\n\r\n"
    );
    let (base, seen, handle) = server(vec![redirect]);
    let response = Client::new()
        .upload(&format!("{base}/first"))
        .header("Host", "virtual.example")
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
            .contains("Host: virtual.example\r\n")
    );
    let moved = other_seen.recv().unwrap();
    let own_host = other.trim_start_matches("http://");
    assert!(
        moved.head.contains(&format!("Host: {own_host}\r\n")),
        "{}",
        moved.head
    );
    assert!(!moved.head.contains("virtual.example"), "{}", moved.head);
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
fn a_fresh_connection_that_closes_without_answering_is_never_sent_again() {
    // The server reads the whole request and closes (or resets) without a word. It may have
    // processed it: sending it again would upload it twice. It used to, POST included.
    for (method, reset) in [("POST", false), ("PUT", false), ("POST", true)] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let handle = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let seen = if reset {
                // Closing with the body unread makes the kernel answer with a reset.
                let mut head = [0u8; 64];
                let n = stream.read(&mut head).unwrap();
                Seen {
                    head: String::from_utf8_lossy(&head[..n]).into_owned(),
                    body: Vec::new(),
                }
            } else {
                read_request(&mut stream)
            };
            drop(stream);
            // The client gets a moment to come back; it must not.
            listener.set_nonblocking(true).unwrap();
            thread::sleep(std::time::Duration::from_millis(300));
            let again = listener.accept();
            (seen, again.is_ok())
        });
        let err = Client::new()
            .upload(&format!("{base}/once"))
            .method(method)
            .send_seekable(Cursor::new(vec![9u8; 50_000]))
            .unwrap_err();
        let (seen, came_back) = handle.join().unwrap();
        assert!(seen.head.starts_with(method));
        assert!(!came_back, "{method}: the request was sent a second time");
        if reset {
            assert!(
                err.is_closed_before_response() || err.io_error().is_some(),
                "{err}"
            );
        } else {
            assert!(err.is_closed_before_response(), "{method}: {err}");
            assert_eq!(err.stage(), chunkwire::Stage::Receive, "{err}");
            assert_eq!(err.progress().body_bytes_sent, 50_000, "{err}");
        }
    }
}

#[test]
fn a_location_is_resolved_by_rfc_3986_and_other_schemes_are_refused() {
    // Dot segments are removed: the request goes to /up/x, not /a/../../up/./x.
    let hop =
        "HTTP/1.1 307 Temporary Redirect\r\nLocation: /a/../../up/./x\r\nContent-Length: 0\r\n\r\n";
    let (base, seen, handle) = server(vec![hop.into(), CREATED.into()]);
    let response = Client::new()
        .upload(&format!("{base}/start"))
        .max_redirects(3)
        .send_seekable(Cursor::new(b"x".to_vec()))
        .unwrap();
    assert_eq!(response.status(), 201);
    handle.join().unwrap();
    let _ = seen.recv().unwrap();
    let second = seen.recv().unwrap();
    assert!(
        second.head.starts_with("PUT /up/x HTTP/1.1\r\n"),
        "{}",
        second.head
    );

    // Another scheme is not a path on the same server: it is a clear error, and nothing
    // (no body, no Authorization) goes anywhere again.
    for location in [
        "ftp://files.example/drop",
        "file:///etc/passwd",
        "mailto:a@b.example",
    ] {
        let hop = format!(
            "HTTP/1.1 308 Permanent Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"
        );
        let (base, _seen, handle) = server(vec![hop]);
        let err = Client::new()
            .upload(&format!("{base}/start"))
            .header("Authorization", "Bearer s3cret")
            .max_redirects(3)
            .send_seekable(Cursor::new(b"x".to_vec()))
            .unwrap_err();
        assert!(err.is_bad_redirect(), "{location}: {err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
        handle.join().unwrap();
    }
}

#[test]
fn a_password_in_a_location_is_never_printed() {
    let hop = "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://user:hunter2@127.0.0.1:9/x\r\nContent-Length: 0\r\n\r\n";
    let (base, _seen, handle) = server(vec![hop.into()]);
    let err = Client::new()
        .upload(&format!("{base}/start"))
        .max_redirects(3)
        .send(std::io::repeat(b'p').take(10))
        .unwrap_err();
    assert!(err.is_redirect_body_not_resendable(), "{err}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("user:***@"), "{shown}");
    handle.join().unwrap();
}
