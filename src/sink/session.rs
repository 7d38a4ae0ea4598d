//! One sink connection's HTTP/1.1 server side, without I/O: bytes received go in, how many
//! were used comes out, and the bytes to send (a `100 Continue`, a JSON report, an error
//! reply) wait in [`Session::output`]. The event loop and the blocking TLS threads both
//! drive it, so requests are read by one set of rules whatever carries them.
//!
//! Bodies are decoded where they lie in the caller's buffer: a Content-Length body and each
//! stretch of chunk data are counted and checksummed in place, in one call per stretch.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::proto::dechunk::{ChunkEvent, Dechunker};
use crate::proto::limits::Limits;
use crate::proto::message::{self, BodyFraming, ReceivedRequest, RequestParse};
use crate::proto::peer_error::PeerError;
use crate::trace::{Direction, Part};

use super::multipart::{self, FormDecoder};
use super::{Framing, Report, SharedTrace, error_reply};

/// Where the session is between requests.
enum Phase {
    /// Waiting for (the rest of) a request head.
    Head,
    /// Reading a body.
    Body(Box<Body>),
    /// A reply is in [`Session::output`]; input waits until it is sent, so replies leave in
    /// request order and one connection never queues more than one.
    Flush {
        /// The connection ends once the reply is sent.
        close: bool,
    },
    /// Nothing more will be read as requests: the driver closes (with a lingering close).
    Closed,
}

/// A request whose body is being read. Boxed in [`Phase`] so an idle connection is small.
struct Body {
    report: Report,
    crc: crc32fast::Hasher,
    started: Instant,
    /// What the reply says about the connection, by message rule 11.
    connection: &'static str,
    close: bool,
    framing: BodyState,
    form: Form,
}

/// The body as a form, when its Content-Type says it is one.
enum Form {
    None,
    /// Boxed: a decoder holds its delimiter and counters, and most bodies are no form.
    Decoding(Box<FormDecoder>),
    /// A form whose boundary cannot be used: reported with the reason, not decoded.
    Unusable(String),
}

impl Form {
    fn for_request(head: &ReceivedRequest) -> Form {
        let content_type = head.headers.get(http::header::CONTENT_TYPE);
        match content_type.and_then(|value| multipart::form_boundary(value.as_bytes())) {
            None => Form::None,
            Some(Ok(boundary)) => Form::Decoding(Box::new(FormDecoder::new(&boundary))),
            Some(Err(reason)) => Form::Unusable(reason),
        }
    }

    fn feed(&mut self, data: &[u8]) {
        if let Form::Decoding(decoder) = self {
            decoder.feed(data);
        }
    }
}

enum BodyState {
    Length { owed: u64 },
    Chunked(Dechunker),
}

/// See the module docs.
pub(super) struct Session {
    phase: Phase,
    output: Vec<u8>,
    limits: Limits,
    trace: Option<SharedTrace>,
}

impl Session {
    pub(super) fn new(trace: Option<SharedTrace>) -> Session {
        Session {
            phase: Phase::Head,
            output: Vec::new(),
            limits: Limits::default(),
            trace,
        }
    }

    /// A connection past the cap: a 503, then the close.
    pub(super) fn rejecting() -> Session {
        let mut session = Session::new(None);
        session.output.extend_from_slice(
            error_reply(
                (503, "Service Unavailable"),
                "the sink is serving as many connections as it may; try again later",
            )
            .as_bytes(),
        );
        session.phase = Phase::Flush { close: true };
        session
    }

    /// Bytes waiting to be sent.
    pub(super) fn output(&self) -> &[u8] {
        &self.output
    }

    /// True when input is wanted now (no reply is waiting to be sent first).
    pub(super) fn wants_input(&self) -> bool {
        matches!(self.phase, Phase::Head | Phase::Body(_))
    }

    /// True once the connection is to be closed after [`Session::output`] is sent.
    pub(super) fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// All of [`Session::output`] has been sent.
    pub(super) fn sent(&mut self) {
        self.output.clear();
        if let Phase::Flush { close } = self.phase {
            self.phase = if close { Phase::Closed } else { Phase::Head };
        }
    }

    /// Takes what it can of `input` and returns how many bytes it used; the caller offers
    /// the rest again, with more. Stops early when a reply must be sent before the next
    /// request is read.
    pub(super) fn receive(&mut self, input: &[u8], on_report: &dyn Fn(&Report)) -> usize {
        let mut used = 0;
        loop {
            let step = match &mut self.phase {
                Phase::Head => self.head(&input[used..]),
                Phase::Body(body) => body.take(&input[used..], self.trace.as_ref()),
                Phase::Flush { .. } | Phase::Closed => return used,
            };
            match step {
                Ok(Step::More(n)) => return used + n,
                Ok(Step::Head(n, request)) => {
                    used += n;
                    self.start_body(request, on_report);
                }
                Ok(Step::BodyDone(n)) => {
                    used += n;
                    self.finish(on_report);
                }
                Err(err) => {
                    self.refuse(&err);
                    return used;
                }
            }
        }
    }

    fn head(&self, pending: &[u8]) -> Result<Step, PeerError> {
        if pending.is_empty() {
            return Ok(Step::More(0));
        }
        match message::parse_request_head(pending, &self.limits)? {
            RequestParse::Partial => Ok(Step::More(0)),
            RequestParse::Complete { consumed, request } => {
                if let Some(trace) = &self.trace {
                    trace.lines(Direction::Received, Part::RequestLine, &pending[..consumed]);
                }
                Ok(Step::Head(consumed, request))
            }
        }
    }

    fn start_body(&mut self, head: ReceivedRequest, on_report: &dyn Fn(&Report)) {
        // RFC 9110 section 10.1.1: never a 100 to an HTTP/1.0 client.
        if head.expects_continue() && head.version_minor >= 1 {
            let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
            if let Some(trace) = &self.trace {
                trace.lines(Direction::Sent, Part::InterimStatusLine, interim);
            }
            self.output.extend_from_slice(interim);
        }
        let close = head.wants_close();
        // An HTTP/1.0 client keeps the connection only if the reply says so too.
        let connection = match (close, head.version_minor) {
            (true, _) => "Connection: close\r\n",
            (false, 0) => "Connection: keep-alive\r\n",
            (false, _) => "",
        };
        let (framing, state) = match head.framing {
            BodyFraming::Chunked => (
                Framing::Chunked,
                BodyState::Chunked(Dechunker::new(&self.limits)),
            ),
            BodyFraming::ContentLength(owed) => {
                (Framing::ContentLength, BodyState::Length { owed })
            }
            // The message layer never frames a request until close (rule 10).
            BodyFraming::Empty | BodyFraming::CloseDelimited => {
                (Framing::None, BodyState::Length { owed: 0 })
            }
        };
        let empty = matches!(state, BodyState::Length { owed: 0 });
        let form = Form::for_request(&head);
        self.phase = Phase::Body(Box::new(Body {
            report: Report {
                method: head.method,
                target: head.target,
                framing,
                bytes: 0,
                chunks: 0,
                largest_chunk: 0,
                crc32: 0,
                trailers: Vec::new(),
                body_time: Duration::ZERO,
                form: None,
            },
            crc: crc32fast::Hasher::new(),
            started: Instant::now(),
            connection,
            close,
            framing: state,
            form,
        }));
        if empty {
            self.finish(on_report);
        }
    }

    /// The body is complete: report it and queue the reply.
    fn finish(&mut self, on_report: &dyn Fn(&Report)) {
        let Phase::Body(body) = std::mem::replace(&mut self.phase, Phase::Head) else {
            return;
        };
        let Body {
            mut report,
            crc,
            started,
            connection,
            close,
            form,
            ..
        } = *body;
        report.crc32 = crc.finalize();
        report.form = match form {
            Form::None => None,
            Form::Decoding(decoder) => Some(decoder.finish()),
            Form::Unusable(reason) => Some(FormDecoder::failed_report(reason)),
        };
        report.body_time = started.elapsed();
        on_report(&report);
        let json = report.to_json();
        let head_start = self.output.len();
        let _ = write!(
            StringSink(&mut self.output),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{connection}\r\n",
            json.len() + 1
        );
        let body_start = self.output.len();
        self.output.extend_from_slice(json.as_bytes());
        self.output.push(b'\n');
        if let Some(trace) = &self.trace {
            let reply = &self.output[head_start..];
            let head_len = body_start - head_start;
            trace.lines(Direction::Sent, Part::StatusLine, &reply[..head_len]);
            trace.bytes(Direction::Sent, Part::Body, &reply[head_len..]);
        }
        self.phase = Phase::Flush { close };
    }

    /// Answers a request the message rules refused, then closes.
    fn refuse(&mut self, err: &PeerError) {
        let reply = error_reply(message::request_error_status(err), &err.to_string());
        if let Some(trace) = &self.trace {
            trace.note(Direction::Sent, &format!("refused: {err}"));
        }
        self.output.extend_from_slice(reply.as_bytes());
        self.phase = Phase::Flush { close: true };
    }
}

/// What one step of [`Session::receive`] did with the input it was offered.
enum Step {
    /// Used this many bytes and needs more input to go on.
    More(usize),
    /// A whole head of this many bytes.
    Head(usize, ReceivedRequest),
    /// The body ended after this many bytes.
    BodyDone(usize),
}

impl Body {
    fn take(&mut self, input: &[u8], trace: Option<&SharedTrace>) -> Result<Step, PeerError> {
        match &mut self.framing {
            BodyState::Length { owed } => {
                let take = usize::try_from(*owed).map_or(input.len(), |o| o.min(input.len()));
                let data = &input[..take];
                if let Some(trace) = trace {
                    trace.bytes(Direction::Received, Part::Body, data);
                }
                self.crc.update(data);
                self.form.feed(data);
                self.report.bytes += take as u64;
                *owed -= take as u64;
                Ok(if *owed == 0 {
                    Step::BodyDone(take)
                } else {
                    Step::More(take)
                })
            }
            BodyState::Chunked(dechunker) => {
                let mut used = 0;
                loop {
                    let (consumed, event) = dechunker.decode(&input[used..])?;
                    if let (Some(trace), Some(part)) = (trace, event.part()) {
                        trace.bytes(Direction::Received, part, &input[used..used + consumed]);
                    }
                    used += consumed;
                    match event {
                        ChunkEvent::NeedMore => return Ok(Step::More(used)),
                        ChunkEvent::End => return Ok(Step::BodyDone(used)),
                        ChunkEvent::SizeLine { size, .. } if size > 0 => {
                            self.report.chunks += 1;
                            self.report.largest_chunk = self.report.largest_chunk.max(size);
                        }
                        ChunkEvent::Data(data) => {
                            self.crc.update(data);
                            self.form.feed(data);
                            self.report.bytes += data.len() as u64;
                        }
                        ChunkEvent::Trailer { name, value } => self.report.trailers.push((
                            String::from_utf8_lossy(name).into_owned(),
                            String::from_utf8_lossy(value).into_owned(),
                        )),
                        ChunkEvent::SizeLine { .. } | ChunkEvent::DataEnd => {}
                    }
                }
            }
        }
    }
}

/// Lets `write!` format straight into the output bytes.
struct StringSink<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for StringSink<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}
