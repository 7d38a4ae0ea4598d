//! The sink applies the shared message rules to requests: connection persistence, Host,
//! framing refusals with the right status, and the cap on concurrent connections.
//! Raw bytes over loopback, so every case is exactly what a hostile or old client sends.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use chunkwire::sink::{RunningSink, Sink};

fn connect(sink: &RunningSink) -> TcpStream {
    let stream = TcpStream::connect(sink.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Sends `request` without closing our side: whatever arrives before the sink closes is
/// the reply. A sink that ignored a close would keep the connection and time this out.
fn reply_without_our_close(sink: &RunningSink, request: &[u8]) -> String {
    let mut stream = connect(sink);
    stream.write_all(request).unwrap();
    let mut reply = Vec::new();
    stream
        .read_to_end(&mut reply)
        .expect("the sink closes the connection");
    String::from_utf8(reply).unwrap()
}

#[test]
fn connection_close_gets_one_reply_then_eof() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let reply = reply_without_our_close(
        &sink,
        b"POST /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc\
          POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(reply.matches("HTTP/1.1 200 OK").count(), 1, "{reply}");
    assert!(reply.contains("\r\nConnection: close\r\n"), "{reply}");
    assert!(reply.contains("\"target\":\"/a\""), "{reply}");
    assert!(!reply.contains("\"target\":\"/b\""), "{reply}");
}

#[test]
fn http_1_0_closes_unless_keep_alive() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let reply = reply_without_our_close(
        &sink,
        b"POST /a HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc\
          POST /b HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(reply.matches(" 200 OK").count(), 1, "{reply}");
    assert!(reply.contains("\r\nConnection: close\r\n"), "{reply}");

    // With keep-alive, both are answered and the reply says it keeps the connection.
    let mut stream = connect(&sink);
    stream
        .write_all(
            b"POST /a HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc\
              POST /b HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert_eq!(reply.matches(" 200 OK").count(), 2, "{reply}");
    assert!(reply.contains("\r\nConnection: keep-alive\r\n"), "{reply}");
}

#[test]
fn bad_requests_are_refused_with_the_right_status_and_closed() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let cases: &[(&[u8], &str, &str)] = &[
        (
            b"PUT / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "400 Bad Request",
            "without a Host",
        ),
        (
            b"PUT / HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: 0\r\n\r\n",
            "400 Bad Request",
            "more than one Host",
        ),
        (
            b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\nhello",
            "400 Bad Request",
            "bad Content-Length",
        ),
        (
            b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 5 5\r\n\r\nhello",
            "400 Bad Request",
            "bad Content-Length",
        ),
        (
            b"PUT / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "400 Bad Request",
            "HTTP/1.0 message with Transfer-Encoding",
        ),
        (
            b"PUT / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "501 Not Implemented",
            "only chunked is implemented",
        ),
        (
            b"PUT / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\nhello",
            "400 Bad Request",
            "does not end in chunked",
        ),
        (
            b"PUT / HTTP/1.1\r\nHost: h\r\nX-A: one\r\n two\r\nContent-Length: 0\r\n\r\n",
            "400 Bad Request",
            "obsolete line folding",
        ),
        (
            b"PUT / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
            "400 Bad Request",
            "bare LF in chunk-size line",
        ),
    ];
    for (request, status, message) in cases {
        let reply = reply_without_our_close(&sink, request);
        let shown = String::from_utf8_lossy(request);
        assert!(
            reply.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{shown:?}: {reply}"
        );
        assert!(
            reply.contains("\r\nConnection: close\r\n"),
            "{shown:?}: {reply}"
        );
        assert!(
            reply.contains("\r\n\r\n{\"error\":\"") && reply.contains(message),
            "{shown:?}: {reply}"
        );
        assert!(
            !reply.contains("\"bytes\""),
            "{shown:?} reported a body: {reply}"
        );
    }
    assert!(sink.next_report(Duration::from_millis(50)).is_none());
}

#[test]
fn connections_past_the_cap_get_503() {
    let sink = Sink::bind("127.0.0.1:0")
        .unwrap()
        .max_connections(1)
        .spawn()
        .unwrap();
    // The first connection holds the one slot, kept alive after a request.
    let mut first = connect(&sink);
    first
        .write_all(b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let mut buf = [0; 1024];
    let n = first.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"));

    let reply = reply_without_our_close(
        &sink,
        b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(
        reply.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{reply}"
    );
    assert!(reply.contains("\r\nConnection: close\r\n"), "{reply}");
    assert!(reply.contains("{\"error\":"), "{reply}");

    // Once the first closes, its slot is free again (its thread notices the close).
    first.shutdown(Shutdown::Both).unwrap();
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut stream = connect(&sink);
        stream
            .write_all(b"POST /c HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        if reply.starts_with("HTTP/1.1 200 OK") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slot never came back: {reply}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
