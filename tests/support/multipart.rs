//! A loopback server that keeps what it was sent (the head, the body with chunk framing
//! removed, the trailers) and a multipart splitter of the tests' own, independent of the
//! crate's form writer: shared by the form tests.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// A request as the server saw it: its head, and its body with any chunk framing removed.
#[derive(Debug, Clone)]
pub struct Seen {
    pub head: String,
    pub body: Vec<u8>,
    pub chunked: bool,
    /// The trailer section of a chunked body, as sent.
    pub trailers: String,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub fn boundary(&self) -> String {
        let content_type = self.header("content-type").expect("a Content-Type");
        let (kind, boundary) = content_type.split_once("; boundary=").expect("a boundary");
        assert_eq!(kind, "multipart/form-data");
        boundary.trim_matches('"').to_owned()
    }

    pub fn parts(&self) -> Vec<Decoded> {
        split_multipart(&self.body, &self.boundary())
    }
}

pub fn read_some(stream: &mut TcpStream, data: &mut Vec<u8>) {
    let mut buf = [0u8; 16384];
    let n = stream.read(&mut buf).unwrap();
    assert!(n > 0, "the client closed in the middle of its request");
    data.extend_from_slice(&buf[..n]);
}

pub fn read_request(stream: &mut TcpStream) -> Seen {
    let mut data = Vec::new();
    let head_end = loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        read_some(stream, &mut data);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut raw = data.split_off(head_end);
    let mut seen = Seen {
        head,
        body: Vec::new(),
        chunked: false,
        trailers: String::new(),
    };
    if let Some(len) = seen.header("content-length") {
        let len: usize = len.parse().unwrap();
        while raw.len() < len {
            read_some(stream, &mut raw);
        }
        assert_eq!(raw.len(), len, "bytes after the stated length");
        seen.body = raw;
        return seen;
    }
    if seen.header("transfer-encoding") != Some("chunked") {
        // No body (a GET after a 303).
        return seen;
    }
    seen.chunked = true;
    let mut at = 0;
    loop {
        let line_end = loop {
            if let Some(end) = raw[at..].windows(2).position(|w| w == b"\r\n") {
                break at + end;
            }
            read_some(stream, &mut raw);
        };
        let line = std::str::from_utf8(&raw[at..line_end]).unwrap();
        let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).unwrap();
        at = line_end + 2;
        if size == 0 {
            loop {
                let rest = &raw[at..];
                if rest.starts_with(b"\r\n") || rest.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
                read_some(stream, &mut raw);
            }
            seen.trailers = String::from_utf8_lossy(&raw[at..]).into_owned();
            return seen;
        }
        while raw.len() < at + size + 2 {
            read_some(stream, &mut raw);
        }
        seen.body.extend_from_slice(&raw[at..at + size]);
        assert_eq!(&raw[at + size..at + size + 2], b"\r\n");
        at += size + 2;
    }
}

/// Serves one connection per reply, in turn (`{base}` becomes the server's URL).
pub fn server(replies: Vec<String>) -> (String, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (sender, seen) = mpsc::channel();
    let own = base.clone();
    thread::spawn(move || {
        for reply in replies {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let request = read_request(&mut stream);
            let _ = sender.send(request);
            let _ = stream.write_all(reply.replace("{base}", &own).as_bytes());
        }
    });
    (base, seen)
}

pub const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

/// One part as the test's own splitter read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub headers: Vec<String>,
    pub data: Vec<u8>,
}

impl Decoded {
    pub fn disposition(&self) -> &str {
        self.headers
            .iter()
            .find(|h| h.starts_with("Content-Disposition: "))
            .map_or("", |h| h.as_str())
    }
}

/// Splits a multipart body at its delimiters (RFC 2046 section 5.1.1); panics on anything
/// malformed, so a test fails on a bad body.
pub fn split_multipart(body: &[u8], boundary: &str) -> Vec<Decoded> {
    let first = format!("--{boundary}");
    let delimiter = format!("\r\n--{boundary}");
    assert!(
        body.starts_with(first.as_bytes()),
        "the body starts with a delimiter"
    );
    let mut rest = &body[first.len()..];
    let mut parts = Vec::new();
    loop {
        if rest == b"--\r\n" {
            return parts;
        }
        assert!(rest.starts_with(b"\r\n"), "a delimiter line ends in CRLF");
        rest = &rest[2..];
        let end = rest
            .windows(delimiter.len())
            .position(|w| w == delimiter.as_bytes())
            .expect("each part is followed by a delimiter");
        let part = &rest[..end];
        let head_end = part
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("part headers end in an empty line");
        let headers = String::from_utf8(part[..head_end].to_vec())
            .unwrap()
            .split("\r\n")
            .map(str::to_owned)
            .collect();
        parts.push(Decoded {
            headers,
            data: part[head_end + 4..].to_vec(),
        });
        rest = &rest[end + delimiter.len()..];
    }
}
