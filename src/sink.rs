//! The loopback upload sink: a small blocking HTTP/1.1 server that takes uploads, decodes
//! chunked and Content-Length bodies with the same sans-I/O decoder the client uses for
//! responses, and answers each request with a JSON report of what arrived: bytes, chunks,
//! a CRC-32 of the body, and the trailer fields. For `chunkwire sink`, the demo and tests.
//!
//! One thread per connection, keep-alive honoured, one fixed read buffer per connection.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crate::proto::dechunk::{ChunkEvent, Dechunker};
use crate::proto::limits::Limits;
use crate::trace::{Direction, LineBlock, LineLabeller, Part, Trace};
use crate::transport::tls::ServerTls;

/// A trace shared by the sink's connection threads; each event takes the lock.
#[derive(Clone)]
struct SharedTrace(Arc<Mutex<Box<dyn Trace>>>);

impl std::fmt::Debug for SharedTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedTrace")
    }
}

impl SharedTrace {
    fn bytes(&self, direction: Direction, part: Part, bytes: &[u8]) {
        if let Ok(mut trace) = self.0.lock() {
            trace.bytes(direction, part, bytes);
        }
    }

    fn note(&self, direction: Direction, text: &str) {
        if let Ok(mut trace) = self.0.lock() {
            trace.note(direction, text);
        }
    }

    /// Traces a whole head (`start_line` first) or a response of head and body.
    fn lines(&self, direction: Direction, start_line: Part, bytes: &[u8]) {
        LineLabeller::default().label(LineBlock::Head { start_line }, bytes, &mut |part, piece| {
            self.bytes(direction, part, piece)
        });
    }
}

/// Read buffer of one sink connection. Large reads keep the sink from being the bottleneck.
const READ_BUFFER: usize = 256 * 1024;
const MAX_REQUEST_HEADERS: usize = 64;
/// A connection idle this long between requests is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How the request body was delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// `Content-Length`.
    ContentLength,
    /// Neither: no body.
    None,
}

impl Framing {
    fn as_str(self) -> &'static str {
        match self {
            Framing::Chunked => "chunked",
            Framing::ContentLength => "content-length",
            Framing::None => "none",
        }
    }
}

/// What the sink received in one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The request method.
    pub method: String,
    /// The request-target.
    pub target: String,
    /// How the body was delimited.
    pub framing: Framing,
    /// Body bytes, after removing the chunk framing.
    pub bytes: u64,
    /// Data chunks (the last, empty chunk not counted); 0 for Content-Length.
    pub chunks: u64,
    /// The largest data chunk.
    pub largest_chunk: u64,
    /// CRC-32 (IEEE) of the body bytes.
    pub crc32: u32,
    /// Trailer fields, in order.
    pub trailers: Vec<(String, String)>,
    /// Time from the end of the head to the end of the body.
    pub body_time: Duration,
}

impl Report {
    /// The report as a one-line JSON object (the sink's response body).
    pub fn to_json(&self) -> String {
        let mut json = String::with_capacity(256);
        json.push_str("{\"method\":");
        push_json_string(&mut json, &self.method);
        json.push_str(",\"target\":");
        push_json_string(&mut json, &self.target);
        let _ = write!(
            json,
            ",\"framing\":\"{}\",\"bytes\":{},\"chunks\":{},\"largest_chunk\":{},\"crc32\":\"{:08x}\",\"body_seconds\":{:.6},\"trailers\":[",
            self.framing.as_str(),
            self.bytes,
            self.chunks,
            self.largest_chunk,
            self.crc32,
            self.body_time.as_secs_f64()
        );
        for (i, (name, value)) in self.trailers.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push_str("{\"name\":");
            push_json_string(&mut json, name);
            json.push_str(",\"value\":");
            push_json_string(&mut json, value);
            json.push('}');
        }
        json.push_str("]}");
        json
    }
}

fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A bound sink, not yet serving.
#[derive(Debug)]
pub struct Sink {
    listener: TcpListener,
    tls: Option<ServerTls>,
    trace: Option<SharedTrace>,
}

/// A sink serving on a background thread. Reports of finished requests arrive on
/// [`RunningSink::next_report`].
#[derive(Debug)]
pub struct RunningSink {
    addr: SocketAddr,
    tls: bool,
    reports: mpsc::Receiver<Report>,
}

impl RunningSink {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr/path`, or `https://` when serving TLS.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// The next report, waiting up to `timeout`.
    pub fn next_report(&self, timeout: Duration) -> Option<Report> {
        self.reports.recv_timeout(timeout).ok()
    }
}

impl Sink {
    /// Binds to `addr` (port 0 picks a free port).
    pub fn bind(addr: impl std::net::ToSocketAddrs) -> io::Result<Sink> {
        Ok(Sink {
            listener: TcpListener::bind(addr)?,
            tls: None,
            trace: None,
        })
    }

    /// Traces every byte received and sent, labelled, from the receiving side.
    pub fn with_trace(mut self, trace: impl Trace + 'static) -> Sink {
        self.trace = Some(SharedTrace(Arc::new(Mutex::new(Box::new(trace)))));
        self
    }

    /// Serves https with this identity instead of plain http.
    pub fn with_tls(mut self, tls: ServerTls) -> Sink {
        self.tls = Some(tls);
        self
    }

    /// The TLS identity, when serving https.
    pub fn tls(&self) -> Option<&ServerTls> {
        self.tls.as_ref()
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves on a background thread, one more thread per connection.
    pub fn spawn(self) -> io::Result<RunningSink> {
        let addr = self.local_addr()?;
        let tls = self.tls.is_some();
        let (sender, reports) = mpsc::channel();
        thread::Builder::new()
            .name("chunkwire-sink".into())
            .spawn(move || self.serve(move |report| drop(sender.send(report.clone()))))?;
        Ok(RunningSink { addr, tls, reports })
    }

    /// Serves forever on this thread, calling `on_report` after each request.
    pub fn serve(self, on_report: impl Fn(&Report) + Send + Clone + 'static) {
        for stream in self.listener.incoming() {
            let Ok(stream) = stream else { continue };
            let on_report = on_report.clone();
            let tls = self.tls.clone();
            let trace = self.trace.clone();
            let _ = thread::Builder::new()
                .name("chunkwire-sink-conn".into())
                .spawn(move || {
                    if stream.set_read_timeout(Some(IDLE_TIMEOUT)).is_err()
                        || stream.set_nodelay(true).is_err()
                    {
                        return;
                    }
                    if let (Some(trace), Ok(peer)) = (&trace, stream.peer_addr()) {
                        trace.note(Direction::Received, &format!("connection from {peer}"));
                    }
                    match tls {
                        None => {
                            let _ = serve_connection(stream, &on_report, trace.as_ref());
                        }
                        Some(tls) => {
                            let Ok(mut stream) = tls.accept(stream) else {
                                return;
                            };
                            let _ = serve_connection(&mut stream, &on_report, trace.as_ref());
                            stream.close();
                        }
                    }
                });
        }
    }
}

/// Serves requests on one connection until the client closes it or a request is bad.
fn serve_connection(
    mut stream: impl Read + Write,
    on_report: &dyn Fn(&Report),
    trace: Option<&SharedTrace>,
) -> io::Result<()> {
    let mut conn = SinkConnection {
        buf: vec![0; READ_BUFFER].into_boxed_slice(),
        start: 0,
        end: 0,
        trace: trace.cloned(),
    };
    let limits = Limits::default();
    loop {
        let request = match conn.read_head(&mut stream, &limits) {
            Ok(Some(request)) => request,
            Ok(None) => return Ok(()),
            Err(e) => return reply_error(&mut stream, &e),
        };
        if request.expect_continue {
            let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
            if let Some(trace) = trace {
                trace.lines(Direction::Sent, Part::InterimStatusLine, interim);
            }
            stream.write_all(interim)?;
        }
        let report = match conn.read_body(&mut stream, request, &limits) {
            Ok(report) => report,
            Err(e) => return reply_error(&mut stream, &e),
        };
        on_report(&report);
        let json = report.to_json();
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}\n",
            json.len() + 1
        );
        if let Some(trace) = trace {
            let head_len = reply.len() - json.len() - 1;
            trace.lines(
                Direction::Sent,
                Part::StatusLine,
                &reply.as_bytes()[..head_len],
            );
            trace.bytes(Direction::Sent, Part::Body, &reply.as_bytes()[head_len..]);
        }
        stream.write_all(reply.as_bytes())?;
        stream.flush()?;
    }
}

fn reply_error(stream: &mut impl Write, err: &io::Error) -> io::Result<()> {
    if err.kind() == io::ErrorKind::InvalidData {
        let mut json = String::from("{\"error\":");
        push_json_string(&mut json, &err.to_string());
        json.push_str("}\n");
        let reply = format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
            json.len()
        );
        stream.write_all(reply.as_bytes())?;
    }
    Err(io::Error::new(err.kind(), err.to_string()))
}

struct RequestHead {
    method: String,
    target: String,
    framing: Framing,
    content_length: u64,
    expect_continue: bool,
}

struct SinkConnection {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    trace: Option<SharedTrace>,
}

fn bad(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

impl SinkConnection {
    /// Reads more bytes, moving pending ones to the front first. Ok(0) at end of stream.
    fn fill(&mut self, stream: &mut impl Read) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return Err(bad("line longer than the sink's buffer"));
        }
        loop {
            match stream.read(&mut self.buf[self.end..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn read_head(
        &mut self,
        stream: &mut impl Read,
        limits: &Limits,
    ) -> io::Result<Option<RequestHead>> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_REQUEST_HEADERS];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(&self.buf[self.start..self.end]) {
                Ok(httparse::Status::Complete(len)) => {
                    let head = interpret_head(&request)?;
                    if let Some(trace) = &self.trace {
                        let bytes = &self.buf[self.start..self.start + len];
                        trace.lines(Direction::Received, Part::RequestLine, bytes);
                    }
                    self.start += len;
                    return Ok(Some(head));
                }
                Ok(httparse::Status::Partial) => {
                    if self.end - self.start > limits.max_head_bytes {
                        return Err(bad("request head too large"));
                    }
                }
                Err(e) => return Err(bad(format!("bad request head: {e}"))),
            }
            if self.fill(stream)? == 0 {
                return if self.start == self.end {
                    Ok(None)
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed mid-head",
                    ))
                };
            }
        }
    }

    fn read_body(
        &mut self,
        stream: &mut impl Read,
        head: RequestHead,
        limits: &Limits,
    ) -> io::Result<Report> {
        let started = Instant::now();
        let mut report = Report {
            method: head.method,
            target: head.target,
            framing: head.framing,
            bytes: 0,
            chunks: 0,
            largest_chunk: 0,
            crc32: 0,
            trailers: Vec::new(),
            body_time: Duration::ZERO,
        };
        let mut crc = crc32fast::Hasher::new();
        match head.framing {
            Framing::None => {}
            Framing::ContentLength => {
                let mut owed = head.content_length;
                while owed > 0 {
                    if self.start == self.end && self.fill(stream)? == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "closed mid-body",
                        ));
                    }
                    let take =
                        (self.end - self.start).min(usize::try_from(owed).unwrap_or(usize::MAX));
                    let body = &self.buf[self.start..self.start + take];
                    if let Some(trace) = &self.trace {
                        trace.bytes(Direction::Received, Part::Body, body);
                    }
                    crc.update(body);
                    self.start += take;
                    owed -= take as u64;
                    report.bytes += take as u64;
                }
            }
            Framing::Chunked => {
                let mut dechunker = Dechunker::new(limits);
                loop {
                    let (consumed, event) = dechunker
                        .decode(&self.buf[self.start..self.end])
                        .map_err(|e| bad(e.to_string()))?;
                    if let (Some(trace), Some(part)) = (&self.trace, event.part()) {
                        trace.bytes(
                            Direction::Received,
                            part,
                            &self.buf[self.start..self.start + consumed],
                        );
                    }
                    match event {
                        ChunkEvent::NeedMore => {
                            self.start += consumed;
                            if self.fill(stream)? == 0 {
                                return Err(io::Error::new(
                                    io::ErrorKind::UnexpectedEof,
                                    "closed mid-body",
                                ));
                            }
                            continue;
                        }
                        ChunkEvent::SizeLine { size, .. } if size > 0 => {
                            report.chunks += 1;
                            report.largest_chunk = report.largest_chunk.max(size);
                        }
                        ChunkEvent::Data(data) => {
                            crc.update(data);
                            report.bytes += data.len() as u64;
                        }
                        ChunkEvent::Trailer { name, value } => report.trailers.push((
                            String::from_utf8_lossy(name).into_owned(),
                            String::from_utf8_lossy(value).into_owned(),
                        )),
                        ChunkEvent::End => {
                            self.start += consumed;
                            break;
                        }
                        _ => {}
                    }
                    self.start += consumed;
                }
            }
        }
        report.crc32 = crc.finalize();
        report.body_time = started.elapsed();
        Ok(report)
    }
}

fn interpret_head(request: &httparse::Request<'_, '_>) -> io::Result<RequestHead> {
    let mut chunked = false;
    let mut content_length: Option<u64> = None;
    let mut expect_continue = false;
    for header in request.headers.iter() {
        let value =
            std::str::from_utf8(header.value).map_err(|_| bad("non-UTF-8 framing header"))?;
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = value.rsplit(',').next().unwrap_or("").trim();
            if !last.eq_ignore_ascii_case("chunked") {
                return Err(bad(format!("unsupported Transfer-Encoding {value:?}")));
            }
            chunked = true;
        } else if header.name.eq_ignore_ascii_case("content-length") {
            let len: u64 = value
                .trim()
                .parse()
                .map_err(|_| bad(format!("bad Content-Length {value:?}")))?;
            if content_length.is_some_and(|previous| previous != len) {
                return Err(bad("conflicting Content-Length fields"));
            }
            content_length = Some(len);
        } else if header.name.eq_ignore_ascii_case("expect") {
            expect_continue = value.trim().eq_ignore_ascii_case("100-continue");
        }
    }
    let framing = match (chunked, content_length) {
        (true, Some(_)) => return Err(bad("both Transfer-Encoding and Content-Length")),
        (true, None) => Framing::Chunked,
        (false, Some(_)) => Framing::ContentLength,
        (false, None) => Framing::None,
    };
    Ok(RequestHead {
        method: request.method.unwrap_or_default().to_owned(),
        target: request.path.unwrap_or_default().to_owned(),
        framing,
        content_length: content_length.unwrap_or(0),
        expect_continue,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;

    fn exchange(request: &[u8]) -> (Option<Report>, String) {
        let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
        let mut stream = TcpStream::connect(sink.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        // The report is sent before the reply is written, so it is there by now.
        (sink.next_report(Duration::from_millis(100)), reply)
    }

    #[test]
    fn decodes_chunks_and_trailers() {
        let (report, reply) = exchange(
            b"PUT /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nX-Sum: 1\r\n\r\n",
        );
        let report = report.expect("a report");
        assert_eq!(report.bytes, 11);
        assert_eq!(report.chunks, 3);
        assert_eq!(report.largest_chunk, 5);
        assert_eq!(report.crc32, crc32fast::hash(b"hello world"));
        assert_eq!(report.trailers, vec![("X-Sum".to_owned(), "1".to_owned())]);
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(reply.contains("\"bytes\":11,\"chunks\":3"), "{reply}");
    }

    #[test]
    fn keeps_the_connection_for_a_second_request() {
        let (report, reply) = exchange(
            b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc\
              POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(report.unwrap().crc32, crc32fast::hash(b"abc"));
        assert_eq!(reply.matches("HTTP/1.1 200 OK").count(), 2, "{reply}");
    }

    #[test]
    fn bad_framing_gets_400() {
        for request in [
            &b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n"[..],
            b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"PUT / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        ] {
            let (report, reply) = exchange(request);
            assert!(report.is_none());
            assert!(reply.starts_with("HTTP/1.1 400 Bad Request"), "{reply}");
        }
    }

    #[test]
    fn json_escapes_strings() {
        let report = Report {
            method: "PUT".into(),
            target: "/\"q\"\\".into(),
            framing: Framing::Chunked,
            bytes: 1,
            chunks: 1,
            largest_chunk: 1,
            crc32: 0xab,
            trailers: vec![("N".into(), "v\u{1}".into())],
            body_time: Duration::ZERO,
        };
        assert_eq!(
            report.to_json(),
            "{\"method\":\"PUT\",\"target\":\"/\\\"q\\\"\\\\\",\"framing\":\"chunked\",\"bytes\":1,\
             \"chunks\":1,\"largest_chunk\":1,\"crc32\":\"000000ab\",\"body_seconds\":0.000000,\
             \"trailers\":[{\"name\":\"N\",\"value\":\"v\\u0001\"}]}"
        );
    }
}
