//! The loopback upload sink: a small HTTP/1.1 server that takes uploads, decodes
//! chunked and Content-Length bodies with the same sans-I/O decoder the client uses for
//! responses, and answers each request with a JSON report of what arrived: bytes, chunks,
//! a CRC-32 of the body, and the trailer fields. For `chunkwire sink`, the demo and tests.
//!
//! Requests are parsed with the same message layer the client uses for responses
//! ([`crate::proto::message`]): the same field, framing and persistence rules and the same
//! [`Limits`](crate::Limits). A request the rules refuse is answered with a JSON
//! `{"error": ...}` body, the status the message layer names (400, 431, or 501 for a
//! transfer coding other than chunked) and `Connection: close`.
//!
//! Plain TCP is served by one thread, a mio event loop with one shared read buffer
//! (`event_loop`); https by a thread per connection (`threaded`), since rustls is used
//! through its blocking stream. Either way each connection is read by the same sans-I/O
//! `session`, at most [`DEFAULT_MAX_CONNECTIONS`] at once (see [`Sink::max_connections`]).
//! Keep-alive is honoured both ways: a request with `Connection: close`, or an HTTP/1.0
//! request without `Connection: keep-alive`, gets its reply with `Connection: close`, and
//! then the sink closes the connection.

mod event_loop;
mod multipart;
mod session;
mod threaded;

use std::fmt::Write as _;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use crate::trace::{Direction, LineBlock, LineLabeller, Part, Trace};
use crate::transport::tls::ServerTls;

pub use multipart::{FormPart, FormReport};

/// A trace shared by the sink's connections (and threads, over https); each event takes
/// the lock.
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

/// The event loop's one read buffer. Large reads keep the sink from being the bottleneck:
/// a fast upload is read a quarter of a MiB per call.
const READ_BUFFER: usize = 256 * 1024;
/// The read buffer of one https connection's thread: rustls hands out at most a few
/// 16 KiB records' plaintext per read, so a larger buffer would sit unused.
const TLS_READ_BUFFER: usize = 64 * 1024;
/// A connection that moves no bytes for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections served at once unless [`Sink::max_connections`] says otherwise. On the
/// event loop a connection costs a few hundred bytes; over https it holds a thread and a
/// 64 KiB buffer, so 1,024 of them are 64 MiB of buffers. (A process's common default
/// limit of 1,024 descriptors is reached first; accepting then pauses and retries.)
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// After its last reply, the sink reads (and drops) what the client still sends for at
/// most this long before closing, so the close is a FIN and not a reset that could destroy
/// the reply in the client's receive buffer (the "lingering close" of Apache and nginx).
const LINGER: Duration = Duration::from_secs(2);
/// The first pause after an accept fails for want of resources, doubled on each further
/// failure up to [`ACCEPT_BACKOFF_MAX`], so running out of descriptors does not spin a core.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// The longest pause between accepts while resources are short.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Connections past the cap waiting for their 503; more than this are dropped unanswered.
const REJECT_QUEUE: usize = 64;

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
    /// The parts of a `multipart/form-data` body, decoded as it streamed; None for any
    /// other content type.
    pub form: Option<FormReport>,
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
        json.push(']');
        if let Some(form) = &self.form {
            json.push_str(",\"form\":");
            form.push_json(&mut json);
        }
        json.push('}');
        json
    }
}

fn push_json_string(out: &mut String, text: &str) {
    crate::json::push_string(out, text);
}

/// A bound sink, not yet serving.
#[derive(Debug)]
pub struct Sink {
    listener: TcpListener,
    tls: Option<ServerTls>,
    trace: Option<SharedTrace>,
    max_connections: usize,
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
            max_connections: DEFAULT_MAX_CONNECTIONS,
        })
    }

    /// Serves at most `n` connections at once (at least 1; default
    /// [`DEFAULT_MAX_CONNECTIONS`]). A connection past the cap is still accepted, so its
    /// client is not left waiting in the backlog, but is answered `503 Service
    /// Unavailable` with `Connection: close` and closed.
    pub fn max_connections(mut self, n: usize) -> Sink {
        self.max_connections = n.max(1);
        self
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

    /// Serves forever on this thread, calling `on_report` after each request: plain TCP on
    /// one event loop, https with a thread per connection.
    pub fn serve(self, on_report: impl Fn(&Report) + Send + Clone + 'static) {
        match self.tls {
            None => {
                // Only making the poller can fail, and then there is nothing to serve with.
                if let Err(err) =
                    event_loop::serve(self.listener, self.max_connections, self.trace, &on_report)
                {
                    eprintln!("chunkwire sink: cannot serve: {err}");
                }
            }
            Some(tls) => threaded::serve(
                self.listener,
                tls,
                self.max_connections,
                self.trace,
                on_report,
            ),
        }
    }
}

/// The pause before the next accept after `err`, given the previous pause (zero if none).
///
/// Running out of descriptors, buffers or memory does not end by retrying at once: the
/// listener stays readable and every accept fails again, a busy loop. Those errors pause,
/// doubling. Anything else is about the one connection that failed (it was aborted, the
/// call was interrupted, or, on Linux, a network error passed on by accept) and the next
/// accept may well succeed, so it follows at once.
fn accept_backoff(err: &io::Error, previous: Duration) -> Duration {
    if !is_resource_exhaustion(err) {
        return Duration::ZERO;
    }
    if previous.is_zero() {
        ACCEPT_BACKOFF_MIN
    } else {
        (previous * 2).min(ACCEPT_BACKOFF_MAX)
    }
}

/// EMFILE, ENFILE, ENOBUFS or ENOMEM (std has no stable ErrorKind for the first three).
fn is_resource_exhaustion(err: &io::Error) -> bool {
    // WSAEMFILE, WSAENOBUFS, and the two out-of-memory codes.
    #[cfg(windows)]
    let codes = [10024, 10055, 8, 14];
    // ENOMEM, ENFILE, EMFILE, ENOBUFS: the same numbers on Linux, the BSDs and macOS,
    // except ENOBUFS.
    #[cfg(all(not(windows), any(target_os = "linux", target_os = "android")))]
    let codes = [12, 23, 24, 105];
    #[cfg(all(not(windows), not(any(target_os = "linux", target_os = "android"))))]
    let codes = [12, 23, 24, 55];
    err.kind() == io::ErrorKind::OutOfMemory
        || err.raw_os_error().is_some_and(|code| codes.contains(&code))
}

/// A whole error reply: the status, `{"error": message}` and `Connection: close`.
fn error_reply((code, reason): (u16, &str), message: &str) -> String {
    let mut json = String::from("{\"error\":");
    push_json_string(&mut json, message);
    json.push_str("}\n");
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
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
    fn reports_the_parts_of_a_form_chunked_or_not() {
        let body = "--b0\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\nhi\r\n\
                    --b0\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n\
                    Content-Type: text/plain\r\n\r\nfile data\r\n--b0--\r\n";
        let (mid, _) = body.split_at(body.len() / 2);
        let rest = &body[mid.len()..];
        let chunked = format!(
            "POST /f HTTP/1.1\r\nHost: h\r\nContent-Type: multipart/form-data; boundary=b0\r\n\
             Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{mid}\r\n{:x}\r\n{rest}\r\n0\r\n\r\n",
            mid.len(),
            rest.len()
        );
        let sized = format!(
            "POST /f HTTP/1.1\r\nHost: h\r\nContent-Type: multipart/form-data; boundary=b0\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        for request in [chunked, sized] {
            let (report, reply) = exchange(request.as_bytes());
            let form = report.expect("a report").form.expect("a form report");
            assert_eq!(form.error, None);
            assert!(form.complete);
            assert_eq!(form.parts.len(), 2);
            assert_eq!(form.parts[0].name, "t");
            assert_eq!(form.parts[0].crc32, crc32fast::hash(b"hi"));
            assert_eq!(form.parts[1].filename.as_deref(), Some("a.txt"));
            assert_eq!(form.parts[1].content_type.as_deref(), Some("text/plain"));
            assert_eq!(form.parts[1].bytes, 9);
            assert!(
                reply.contains("\"form\":{\"boundary\":\"b0\",\"parts\":[{\"name\":\"t\""),
                "{reply}"
            );
        }
        // Not a form: no form report.
        let (report, reply) = exchange(b"PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx");
        assert_eq!(report.unwrap().form, None);
        assert!(!reply.contains("\"form\""), "{reply}");
        // A form whose boundary is unusable is reported as such, and the body still counted.
        let (report, _) = exchange(
            b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Type: multipart/form-data\r\nContent-Length: 1\r\n\r\nx",
        );
        let report = report.unwrap();
        assert_eq!(report.bytes, 1);
        assert!(
            report
                .form
                .unwrap()
                .error
                .unwrap()
                .contains("without a boundary")
        );
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
            &b"PUT / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n"[..],
            b"PUT / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
        ] {
            let (report, reply) = exchange(request);
            assert!(report.is_none());
            assert!(reply.starts_with("HTTP/1.1 400 Bad Request"), "{reply}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn accept_errors_back_off_only_when_resources_run_out() {
        let os = io::Error::from_raw_os_error;
        let ms = Duration::from_millis;
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let enobufs = 105;
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let enobufs = 55;
        let cases: Vec<(io::Error, Duration, Duration)> = vec![
            // error, previous pause, next pause
            (os(24), Duration::ZERO, ms(50)), // EMFILE
            (os(23), ms(50), ms(100)),        // ENFILE
            (os(enobufs), ms(400), ms(800)),  // ENOBUFS
            (os(12), ms(800), ms(1000)),      // ENOMEM, at the cap
            (os(24), ms(1000), ms(1000)),
            (io::ErrorKind::OutOfMemory.into(), Duration::ZERO, ms(50)),
            (
                io::ErrorKind::ConnectionAborted.into(),
                ms(800),
                Duration::ZERO,
            ),
            (io::ErrorKind::Interrupted.into(), ms(50), Duration::ZERO),
            (os(71), Duration::ZERO, Duration::ZERO), // EPROTO, about one connection
        ];
        for (err, previous, next) in cases {
            assert_eq!(
                accept_backoff(&err, previous),
                next,
                "{err:?} after {previous:?}"
            );
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
            form: None,
        };
        assert_eq!(
            report.to_json(),
            "{\"method\":\"PUT\",\"target\":\"/\\\"q\\\"\\\\\",\"framing\":\"chunked\",\"bytes\":1,\
             \"chunks\":1,\"largest_chunk\":1,\"crc32\":\"000000ab\",\"body_seconds\":0.000000,\
             \"trailers\":[{\"name\":\"N\",\"value\":\"v\\u0001\"}]}"
        );
    }
}
