//! The sink's event loop reads whatever a read returns, so a request may end anywhere in a
//! read: mid-head, mid-size-line, mid-trailer, or with the next request already behind it.
//! These send requests a byte at a time and several in one write, and compare the reports.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use chunkwire::sink::{RunningSink, Sink};

const CHUNKED: &[u8] = b"PUT /split HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
    5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Sum: 1\r\nX-Other: two\r\n\r\n";

fn connect(sink: &RunningSink) -> TcpStream {
    let stream = TcpStream::connect(sink.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Reads until `replies` whole replies (each with a Content-Length body) have arrived.
fn read_replies(stream: &mut TcpStream, replies: usize) -> Vec<String> {
    let mut bytes = Vec::new();
    let mut out = Vec::new();
    let mut buf = [0; 4096];
    while out.len() < replies {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed after {} replies: {out:?}", out.len());
        bytes.extend_from_slice(&buf[..n]);
        while let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if bytes.len() < end + 4 + length {
                break;
            }
            let reply: Vec<u8> = bytes.drain(..end + 4 + length).collect();
            out.push(String::from_utf8(reply).unwrap());
        }
    }
    out
}

#[test]
fn a_request_sent_a_byte_at_a_time_is_read_whole() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let mut stream = connect(&sink);
    for byte in CHUNKED {
        stream.write_all(std::slice::from_ref(byte)).unwrap();
        // A pause now and then, so the sink's reads really do end mid-line.
        if byte % 7 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let replies = read_replies(&mut stream, 1);
    let report = sink.next_report(Duration::from_secs(5)).unwrap();
    assert_eq!(report.bytes, 11, "{replies:?}");
    assert_eq!(report.chunks, 3);
    assert_eq!(report.crc32, crc32fast::hash(b"hello world"));
    assert_eq!(
        report.trailers,
        vec![
            ("X-Sum".to_owned(), "1".to_owned()),
            ("X-Other".to_owned(), "two".to_owned())
        ]
    );
    assert!(replies[0].starts_with("HTTP/1.1 200 OK\r\n"));
}

#[test]
fn pipelined_requests_in_one_write_are_answered_in_order() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let mut stream = connect(&sink);
    let mut requests = Vec::new();
    requests.extend_from_slice(b"POST /one HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc");
    requests.extend_from_slice(CHUNKED);
    requests.extend_from_slice(
        b"POST /three HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
    );
    requests.extend_from_slice(
        b"POST /four HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: 1\r\n\r\nz",
    );
    // After a close, nothing more is read as a request.
    requests.extend_from_slice(b"POST /five HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
    stream.write_all(&requests).unwrap();
    let replies = read_replies(&mut stream, 5);
    let targets: Vec<&str> = replies
        .iter()
        .map(|r| {
            if r.starts_with("HTTP/1.1 100 Continue") {
                "100"
            } else {
                let start = r.find("\"target\":\"").unwrap() + 10;
                &r[start..start + r[start..].find('"').unwrap()]
            }
        })
        .collect();
    assert_eq!(targets, ["/one", "/split", "100", "/three", "/four"]);
    assert!(replies[4].contains("\r\nConnection: close\r\n"));
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    let bytes: Vec<u64> = (0..4)
        .map(|_| sink.next_report(Duration::from_secs(5)).unwrap().bytes)
        .collect();
    assert_eq!(bytes, [3, 11, 0, 1]);
    assert!(sink.next_report(Duration::from_millis(50)).is_none());
}
