//! Keep-alive: uploads one after another to the same origin share a connection, unless the
//! server asks to close or a response body was left unread; a kept connection the server
//! closed is noticed, and a failure on it is retried once only for a seekable body.

use std::io::{Cursor, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use chunkwire::Client;

/// Reads one chunked request; returns its body size in raw bytes, or None at end of stream.
fn read_request(stream: &mut TcpStream) -> Option<usize> {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if data.windows(4).any(|w| w == b"\r\n\r\n") && data.ends_with(b"0\r\n\r\n") {
            return Some(data.len());
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
}

/// What each accepted connection does: answer `replies` in turn, then (if `close_after`)
/// close, else wait for the client to close.
struct Plan {
    replies: Vec<&'static str>,
    close_after: bool,
}

/// Runs the plans, one connection each; reports how many requests each connection served.
fn server(plans: Vec<Plan>) -> (String, mpsc::Receiver<usize>, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/ka", listener.local_addr().unwrap());
    let (sender, served) = mpsc::channel();
    let handle = thread::spawn(move || {
        for plan in plans {
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut count = 0;
            for reply in plan.replies {
                if read_request(&mut stream).is_none() {
                    break;
                }
                count += 1;
                if reply.is_empty() {
                    break; // close without answering
                }
                stream.write_all(reply.as_bytes()).unwrap();
            }
            if !plan.close_after {
                let _ = read_request(&mut stream);
            }
            sender.send(count).unwrap();
        }
    });
    (url, served, handle)
}

const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
const OK_CLOSE: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

fn new_client() -> Client {
    Client::builder()
        .stall_timeout(Some(Duration::from_secs(5)))
        .build()
        .unwrap()
}

#[test]
fn uploads_to_the_same_origin_share_a_connection() {
    let (url, served, handle) = server(vec![Plan {
        replies: vec![OK, OK, OK],
        close_after: false,
    }]);
    let client = new_client();
    for i in 0..3 {
        let mut response = client.upload(&url).send(&b"one after another"[..]).unwrap();
        assert_eq!(response.connection_reused(), i > 0, "upload {i}");
        assert_eq!(response.text().unwrap(), "ok");
    }
    drop(client);
    handle.join().unwrap();
    assert_eq!(served.recv().unwrap(), 3, "all three on one connection");
}

#[test]
fn connection_close_or_an_unread_body_is_not_reused() {
    let (url, served, handle) = server(vec![
        Plan {
            replies: vec![OK_CLOSE],
            close_after: true,
        },
        Plan {
            replies: vec![OK],
            close_after: true,
        },
        Plan {
            replies: vec![OK],
            close_after: true,
        },
    ]);
    let client = new_client();
    let mut first = client.upload(&url).send(&b"a"[..]).unwrap();
    first.text().unwrap();
    drop(first);
    let second = client.upload(&url).send(&b"b"[..]).unwrap();
    assert!(!second.connection_reused(), "the server asked to close");
    drop(second); // its body is never read
    let mut third = client.upload(&url).send(&b"c"[..]).unwrap();
    assert!(!third.connection_reused(), "a body left unread");
    third.text().unwrap();
    handle.join().unwrap();
    assert_eq!(served.iter().take(3).collect::<Vec<_>>(), [1, 1, 1]);
}

#[test]
fn an_idle_connection_the_server_closed_is_not_used() {
    let (url, _served, handle) = server(vec![
        Plan {
            replies: vec![OK],
            close_after: true,
        },
        Plan {
            replies: vec![OK],
            close_after: true,
        },
    ]);
    let client = new_client();
    client.upload(&url).send(&b"a"[..]).unwrap().text().unwrap();
    thread::sleep(Duration::from_millis(100)); // the server closes meanwhile
    let mut second = client.upload(&url).send(&b"b"[..]).unwrap();
    assert!(!second.connection_reused());
    assert_eq!(second.text().unwrap(), "ok");
    handle.join().unwrap();
}

#[test]
fn a_kept_connection_that_fails_is_retried_once_for_a_seekable_body_only() {
    // The server takes the second request on the kept connection and closes without answering.
    let (url, served, handle) = server(vec![
        Plan {
            replies: vec![OK, ""],
            close_after: true,
        },
        Plan {
            replies: vec![OK],
            close_after: true,
        },
    ]);
    let client = new_client();
    client
        .upload(&url)
        .send(&b"first"[..])
        .unwrap()
        .text()
        .unwrap();
    let mut retried = client
        .upload(&url)
        .send_seekable(Cursor::new(b"second".to_vec()))
        .unwrap();
    assert_eq!(retried.text().unwrap(), "ok");
    assert!(!retried.connection_reused(), "answered on a new connection");
    handle.join().unwrap();
    assert_eq!(served.iter().take(2).collect::<Vec<_>>(), [2, 1]);

    let (url, _served, handle) = server(vec![Plan {
        replies: vec![OK, ""],
        close_after: true,
    }]);
    let client = new_client();
    client
        .upload(&url)
        .send(&b"first"[..])
        .unwrap()
        .text()
        .unwrap();
    let err = client
        .upload(&url)
        .send(&b"a pipe cannot be sent twice"[..])
        .unwrap_err();
    assert!(
        err.is_closed_before_response() || err.io_error().is_some(),
        "{err}"
    );
    handle.join().unwrap();
}
