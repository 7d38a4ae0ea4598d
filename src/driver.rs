//! The mio event loop: it moves bytes between the source, the exchange and the transport,
//! and waits. It decides nothing about HTTP; the exchange does.
//!
//! Each connection is a [`Connection`] keyed by its mio [`Token`], with its own exchange,
//! buffer, readiness flags and deadlines, so one [`EventLoop`] can drive several. Readiness
//! is edge-triggered: a flag stays set until a read or write returns `WouldBlock`, and is
//! set again by the next event. Read interest stays on while the body is sent, so an early
//! response is seen at once.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::buffer::FixedBuf;
use crate::error::{Error, Kind, Progress, RequestError, Stage, TimeoutKind};
use crate::proto::exchange::{BodyStep, Exchange, SendWant};
use crate::proto::head::HeaderField;
use crate::proto::response::ResponseHead;
use crate::trace::{Direction, Trace};
use crate::transport::tls::TlsStream;
use crate::transport::{Transport, tcp};

/// Frames sent in a row before the loop looks for response bytes and deadlines, so a fast
/// peer that never blocks our writes cannot hide an early response.
const FRAMES_BETWEEN_CHECKS: u32 = 16;

/// Reads in a row before the loop looks at its deadlines again.
const READS_BETWEEN_CHECKS: u32 = 16;

/// The deadlines of one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// For the TCP connection to open.
    pub connect: Duration,
    /// Longest time with no byte moving either way (time spent blocked in the source's
    /// `read` is not counted: the loop cannot see past it).
    pub stall: Option<Duration>,
    /// Longest time for the whole exchange, response body included.
    pub total: Option<Duration>,
}

/// The poller and its event storage, allocated once.
#[derive(Debug)]
pub(crate) struct EventLoop {
    poll: Poll,
    events: Events,
}

impl EventLoop {
    pub(crate) fn new() -> Result<Self, Error> {
        Ok(EventLoop {
            poll: Poll::new().map_err(|e| Error::io(Stage::Connect, e))?,
            events: Events::with_capacity(16),
        })
    }

    /// Resolves and connects, and registers the socket for reading and writing.
    pub(crate) fn connect(
        &mut self,
        token: Token,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<(TcpStream, SocketAddr), Error> {
        let addrs = tcp::resolve(host, port)?;
        let mut stream = tcp::connect(&mut self.poll, &mut self.events, token, &addrs, timeout)?;
        let peer = stream
            .peer_addr()
            .map_err(|e| Error::io(Stage::Connect, e))?;
        // Chunks are large already; what Nagle would hold back is the small last chunk.
        stream
            .set_nodelay(true)
            .map_err(|e| Error::io(Stage::Connect, e).with_peer(peer.to_string()))?;
        self.poll
            .registry()
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| Error::io(Stage::Connect, e))?;
        Ok((stream, peer))
    }

    /// Runs the TLS handshake on a registered socket until it completes or `deadline` passes.
    pub(crate) fn handshake(
        &mut self,
        token: Token,
        tls: &mut TlsStream,
        deadline: Instant,
    ) -> Result<(), Error> {
        let started = Instant::now();
        loop {
            match tls.handshake() {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => return Err(Error::io(Stage::TlsHandshake, e)),
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::new(
                    Stage::TlsHandshake,
                    Kind::Timeout(TimeoutKind::Connect, now - started),
                ));
            }
            self.poll_for(token, Some(deadline - now))
                .map_err(|e| Error::io(Stage::TlsHandshake, e))?;
        }
    }

    /// Waits up to `timeout`; returns the readiness seen for `token` as (readable, writable).
    fn poll_for(&mut self, token: Token, timeout: Option<Duration>) -> io::Result<(bool, bool)> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok((false, false)),
            Err(e) => return Err(e),
        }
        let (mut readable, mut writable) = (false, false);
        for event in self.events.iter().filter(|e| e.token() == token) {
            readable |= event.is_readable() || event.is_read_closed() || event.is_error();
            writable |= event.is_writable() || event.is_write_closed() || event.is_error();
        }
        Ok((readable, writable))
    }

    /// Waits up to `timeout` and marks the readiness of `conn`.
    fn wait(&mut self, conn: &mut Connection, timeout: Option<Duration>) -> Result<(), Error> {
        let (readable, writable) = self
            .poll_for(conn.token, timeout)
            .map_err(|e| conn.fail(conn.stage(), Kind::Io(e)))?;
        conn.readable |= readable;
        conn.writable |= writable;
        Ok(())
    }
}

/// Holds the trace of a connection; only says whether there is one when printed.
struct TraceSlot(Option<Box<dyn Trace>>);

impl std::fmt::Debug for TraceSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Some(trace)"
        } else {
            "None"
        })
    }
}

/// The state of one connection: transport, exchange, buffer, readiness and deadlines.
#[derive(Debug)]
pub(crate) struct Connection {
    token: Token,
    transport: Transport,
    exchange: Exchange,
    buf: FixedBuf,
    peer: String,
    readable: bool,
    writable: bool,
    peer_closed: bool,
    closed: bool,
    /// The wire trace; `None` costs one branch per write and per read.
    trace: TraceSlot,
    timeouts: Timeouts,
    started: Instant,
    last_progress: Instant,
    /// How long the body waits for `100 Continue`, and since when it has been waiting.
    expect_timeout: Duration,
    continue_wait_started: Option<Instant>,
    progress: Option<ProgressSlot>,
    rate_limit: Option<RateLimit>,
    body_hooks: BodyHooks,
}

/// Sees each piece of body as it is read (a checksum).
pub(crate) type BodyObserver = Box<dyn FnMut(&[u8])>;
/// Makes trailer fields once the body is read.
pub(crate) type LateTrailers = Box<dyn FnOnce() -> Result<Vec<HeaderField>, RequestError>>;

/// What runs on the body as it is read and when it ends; empty unless asked for.
#[derive(Default)]
pub(crate) struct BodyHooks {
    pub(crate) observers: Vec<BodyObserver>,
    pub(crate) late_trailers: Vec<LateTrailers>,
}

impl std::fmt::Debug for BodyHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyHooks")
            .field("observers", &self.observers.len())
            .field("late_trailers", &self.late_trailers.len())
            .finish()
    }
}

/// How a pass over the send side ended.
enum SendPass {
    /// The transport would block, or the request is sent.
    Blocked,
    /// Frames were sent without blocking; look at the rest of the world before going on.
    Yielded,
    /// The rate limit holds the next write until this instant.
    Paced(Instant),
}

/// Where an upload stands, as given to a progress callback.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UploadProgress {
    /// Body bytes the socket has accepted.
    pub body_bytes_sent: u64,
    /// The body's size, when it is known (Content-Length, or a size hint).
    pub total: Option<u64>,
    /// Time since the upload started.
    pub elapsed: Duration,
    /// Average body bytes per second so far.
    pub bytes_per_second: f64,
}

/// A progress callback, as the upload's caller gave it.
pub(crate) type ProgressCallback = Box<dyn FnMut(&UploadProgress)>;

/// The progress callback of a connection.
pub(crate) struct ProgressSlot {
    callback: ProgressCallback,
    total: Option<u64>,
}

impl std::fmt::Debug for ProgressSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProgressSlot")
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

/// A cap on the bytes written per second, kept by delaying writes with the loop's timer.
#[derive(Debug, Clone, Copy)]
struct RateLimit {
    bytes_per_second: u64,
    /// When the first byte went, and how many bytes had gone before the cap applied.
    since: Option<(Instant, u64)>,
}

impl RateLimit {
    /// Before writing at `now` with `sent` bytes already written: `Err(until)` if the write
    /// must wait, else how many bytes may go at once (a tenth of a second's worth, so the
    /// rate holds at the scale of a chunk too).
    fn allowance(&mut self, now: Instant, sent: u64) -> Result<usize, Instant> {
        let (start, base) = *self.since.get_or_insert((now, sent));
        let due =
            start + Duration::from_secs_f64((sent - base) as f64 / self.bytes_per_second as f64);
        if now < due {
            return Err(due);
        }
        Ok(usize::try_from(self.bytes_per_second / 10)
            .unwrap_or(usize::MAX)
            .max(1))
    }
}

impl Connection {
    pub(crate) fn new(
        token: Token,
        transport: Transport,
        exchange: Exchange,
        buf: FixedBuf,
        peer: String,
        timeouts: Timeouts,
        started: Instant,
    ) -> Self {
        Connection {
            token,
            transport,
            exchange,
            buf,
            peer,
            readable: true,
            writable: true,
            peer_closed: false,
            closed: false,
            trace: TraceSlot(None),
            timeouts,
            started,
            last_progress: Instant::now(),
            expect_timeout: Duration::from_secs(1),
            continue_wait_started: None,
            progress: None,
            rate_limit: None,
            body_hooks: BodyHooks::default(),
        }
    }

    /// Runs `hooks` on the body as it is read and at its end.
    pub(crate) fn set_body_hooks(&mut self, hooks: BodyHooks) {
        self.body_hooks = hooks;
    }

    /// Calls `callback` as body bytes go out; `total` is the body's size when known.
    pub(crate) fn set_progress(
        &mut self,
        callback: Box<dyn FnMut(&UploadProgress)>,
        total: Option<u64>,
    ) {
        self.progress = Some(ProgressSlot { callback, total });
    }

    /// Writes at most `bytes_per_second` bytes a second.
    pub(crate) fn set_rate_limit(&mut self, bytes_per_second: u64) {
        self.rate_limit = Some(RateLimit {
            bytes_per_second: bytes_per_second.max(1),
            since: None,
        });
    }

    fn report_progress(&mut self) {
        if let Some(slot) = &mut self.progress {
            let sent = self.exchange.progress().body_bytes_sent;
            let elapsed = self.started.elapsed();
            (slot.callback)(&UploadProgress {
                body_bytes_sent: sent,
                total: slot.total,
                elapsed,
                bytes_per_second: sent as f64 / elapsed.as_secs_f64().max(1e-9),
            });
        }
    }

    /// How long the body waits for `100 Continue` when the head asks for it.
    pub(crate) fn set_expect_timeout(&mut self, timeout: Duration) {
        self.expect_timeout = timeout;
    }

    /// While the body waits for `100 Continue`: the time left to wait, after ending the wait
    /// (and sending the body) if it is over.
    fn continue_wait_left(&mut self, now: Instant) -> Option<Duration> {
        if !self.exchange.awaits_continue() {
            return None;
        }
        let waited = now - *self.continue_wait_started.get_or_insert(now);
        if waited >= self.expect_timeout {
            self.exchange.continue_timed_out();
            self.trace_note(Direction::Sent, || {
                format!("no 100 Continue after {waited:.1?}: sending the body anyway")
            });
            return Some(Duration::ZERO);
        }
        Some(self.expect_timeout - waited)
    }

    pub(crate) fn progress(&self) -> Progress {
        self.exchange.progress()
    }

    pub(crate) fn exchange(&self) -> &Exchange {
        &self.exchange
    }

    pub(crate) fn buf(&self) -> &FixedBuf {
        &self.buf
    }

    pub(crate) fn peer(&self) -> &str {
        &self.peer
    }

    /// Sends the wire trace of this connection to `trace`.
    pub(crate) fn set_trace(&mut self, trace: Box<dyn Trace>) {
        self.trace = TraceSlot(Some(trace));
    }

    /// True when the exchange ended cleanly and both sides may keep the connection.
    pub(crate) fn reusable(&self) -> bool {
        !self.peer_closed && !self.closed && self.exchange.reusable()
    }

    /// The transport, handed on to the next upload; this connection is done with it.
    pub(crate) fn take_transport(&mut self) -> Option<Transport> {
        match std::mem::replace(&mut self.transport, Transport::Gone) {
            Transport::Gone => None,
            transport => Some(transport),
        }
    }

    /// The trace back, for the next connection of the same upload.
    pub(crate) fn take_trace(&mut self) -> Option<Box<dyn Trace>> {
        self.trace.0.take()
    }

    /// A note in the trace, if there is one.
    pub(crate) fn trace_note(&mut self, direction: Direction, text: impl FnOnce() -> String) {
        if let Some(trace) = self.trace.0.as_deref_mut() {
            trace.note(direction, &text());
        }
    }

    pub(crate) fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Ends the session: TLS close_notify, then the socket closes when dropped.
    pub(crate) fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.transport.close();
        }
    }

    fn fail(&self, stage: Stage, kind: Kind) -> Error {
        Error::new(stage, kind)
            .with_peer(self.peer.clone())
            .with_progress(self.exchange.progress())
    }

    /// The stage an I/O failure belongs to: send until the request is out, receive after.
    fn stage(&self) -> Stage {
        if self.exchange.request_sent() || self.exchange.stopped_by_response() {
            Stage::Receive
        } else {
            Stage::Send
        }
    }

    /// The next deadline, or an error if one has passed.
    fn time_left(&self, now: Instant) -> Result<Option<Duration>, Error> {
        let mut left: Option<Duration> = None;
        if let Some(total) = self.timeouts.total {
            let elapsed = now - self.started;
            if elapsed >= total {
                return Err(self.fail(self.stage(), Kind::Timeout(TimeoutKind::Total, elapsed)));
            }
            left = Some(total - elapsed);
        }
        if let Some(stall) = self.timeouts.stall {
            let idle = now - self.last_progress;
            if idle >= stall {
                return Err(self.fail(self.stage(), Kind::Timeout(TimeoutKind::Stall, idle)));
            }
            left = Some(left.map_or(stall - idle, |l| l.min(stall - idle)));
        }
        Ok(left)
    }

    /// Sends until the transport blocks, the request is out, or it is time to look around.
    /// An I/O error from the transport comes back as `Ok(Err(..))`, so the caller can
    /// still look for a response the server sent before it closed.
    fn pump_send(&mut self, source: &mut dyn Read) -> Result<Result<SendPass, io::Error>, Error> {
        let mut frames = 0;
        while self.writable {
            // Bytes the transport still holds (TLS records) go before anything new.
            match self.transport.flush() {
                Ok(true) => {}
                Ok(false) => {
                    self.writable = false;
                    break;
                }
                Err(e) => return Ok(Err(e)),
            }
            let now = Instant::now();
            let allowance = match &mut self.rate_limit {
                None => usize::MAX,
                Some(limit) => match limit.allowance(now, self.exchange.progress().wire_bytes_sent)
                {
                    Ok(allowance) => allowance,
                    Err(until) => return Ok(Ok(SendPass::Paced(until))),
                },
            };
            match self.exchange.poll_send(&mut self.buf) {
                SendWant::Write(bytes) => {
                    match self.transport.write(&bytes[..bytes.len().min(allowance)]) {
                        Ok(0) => return Ok(Err(io::ErrorKind::WriteZero.into())),
                        Ok(n) => {
                            if let Some(trace) = self.trace.0.as_deref_mut() {
                                self.exchange.label_sent(&bytes[..n], &mut |part, sent| {
                                    trace.bytes(Direction::Sent, part, sent)
                                });
                            }
                            self.exchange.on_sent(n);
                            self.last_progress = now;
                            if self.progress.is_some() {
                                self.report_progress();
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Ok(Err(e)),
                    }
                }
                SendWant::Fill(space) => {
                    if frames == FRAMES_BETWEEN_CHECKS {
                        return Ok(Ok(SendPass::Yielded));
                    }
                    frames += 1;
                    let n = match read_retrying(source, space) {
                        Ok(n) => {
                            for observe in &mut self.body_hooks.observers {
                                observe(&space[..n]);
                            }
                            n
                        }
                        Err(e) => return Err(self.fail(Stage::ReadSource, Kind::Io(e))),
                    };
                    if n == 0 {
                        for make in std::mem::take(&mut self.body_hooks.late_trailers) {
                            let fields =
                                make().map_err(|e| self.fail(Stage::Request, Kind::Request(e)))?;
                            self.exchange.add_trailers(fields);
                        }
                    }
                    self.exchange
                        .on_filled(&mut self.buf, n)
                        .map_err(|e| self.fail(Stage::ReadSource, Kind::Request(e)))?;
                }
                SendWant::Idle => break,
            }
        }
        Ok(Ok(SendPass::Blocked))
    }

    /// Reads what the transport has. Returns the final response head once it is complete.
    fn pump_recv(&mut self) -> Result<Option<ResponseHead>, Error> {
        // Bounded like the send side: a server that never lets a read block must not keep
        // the loop from its deadlines.
        let mut reads = 0;
        while self.readable && !self.peer_closed && reads < READS_BETWEEN_CHECKS {
            reads += 1;
            let space = self.exchange.recv_space(&mut self.buf);
            if space.is_empty() {
                // Only when the body decoder holds a full region of metadata, which the
                // limits rule out; refuse rather than spin.
                return Err(self.fail(
                    Stage::Receive,
                    Kind::Io(io::Error::other("receive buffer full without progress")),
                ));
            }
            match self.transport.read(space) {
                Ok(0) => {
                    self.peer_closed = true;
                    if !self.exchange.has_response() {
                        return Err(self.fail(self.stage(), Kind::ClosedBeforeResponse));
                    }
                }
                Ok(n) => {
                    self.last_progress = Instant::now();
                    let parsed = match self.trace.0.as_deref_mut() {
                        Some(trace) => {
                            self.exchange
                                .on_received_with(&self.buf, n, &mut |part, got| {
                                    trace.bytes(Direction::Received, part, got)
                                })
                        }
                        None => self.exchange.on_received(&self.buf, n),
                    };
                    let head = parsed.map_err(|e| self.fail(Stage::Receive, Kind::Peer(e)))?;
                    if head.is_some() {
                        if let Some(framing) = self.exchange.response_framing() {
                            self.trace_note(Direction::Received, || {
                                format!("body framing: {framing}")
                            });
                        }
                        return Ok(head);
                    }
                    if self.exchange.has_response() {
                        // Body bytes: let the reader decode them before reading more.
                        return Ok(None);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.fail(self.stage(), Kind::Io(e))),
            }
        }
        Ok(None)
    }

    /// Sends the request from `source` and returns the final response head, which may come
    /// before the body is complete (the rest of the body is then not sent).
    pub(crate) fn send_request(
        &mut self,
        event_loop: &mut EventLoop,
        source: &mut dyn Read,
    ) -> Result<ResponseHead, Error> {
        loop {
            if let Some(head) = self.pump_recv()? {
                return Ok(head);
            }
            let pass = match self.pump_send(source)? {
                Ok(pass) => pass,
                Err(send_error) => return self.salvage_response(send_error),
            };
            let now = Instant::now();
            let left = self.time_left(now)?;
            let timeout = match (pass, self.continue_wait_left(now)) {
                (SendPass::Yielded, _) => Some(Duration::ZERO),
                (SendPass::Paced(until), _) => {
                    let wait = until.saturating_duration_since(now);
                    Some(left.map_or(wait, |left| left.min(wait)))
                }
                (SendPass::Blocked, Some(wait)) => Some(left.map_or(wait, |left| left.min(wait))),
                (SendPass::Blocked, None) => left,
            };
            // Bytes may still wait to be read (the read cap): look again without sleeping.
            let timeout = if self.readable && !self.peer_closed {
                Some(Duration::ZERO)
            } else {
                timeout
            };
            event_loop.wait(self, timeout)?;
        }
    }

    /// The transport failed while sending. A server that refuses a body often answers and
    /// closes at once; its answer may already be waiting, and is the better result.
    fn salvage_response(&mut self, send_error: io::Error) -> Result<ResponseHead, Error> {
        self.readable = true;
        match self.pump_recv() {
            Ok(Some(head)) => Ok(head),
            _ => Err(self.fail(Stage::Send, Kind::Io(send_error))),
        }
    }

    /// The next piece of the response body, waiting for bytes as needed.
    pub(crate) fn next_body_step(&mut self, event_loop: &mut EventLoop) -> Result<BodyStep, Error> {
        loop {
            let decoded = match self.trace.0.as_deref_mut() {
                Some(trace) => self.exchange.decode_body_with(&self.buf, &mut |part, got| {
                    trace.bytes(Direction::Received, part, got)
                }),
                None => self.exchange.decode_body(&self.buf),
            };
            let step = decoded.map_err(|e| self.fail(Stage::Receive, Kind::Peer(e)))?;
            if step != BodyStep::NeedMore {
                return Ok(step);
            }
            if self.peer_closed {
                return match self.exchange.on_peer_closed() {
                    Ok(()) => Ok(BodyStep::End),
                    Err(Some(e)) => Err(self.fail(Stage::Receive, Kind::Peer(e))),
                    Err(None) => Err(self.fail(Stage::Receive, Kind::ClosedBeforeResponse)),
                };
            }
            // Checked before every read, not only before waiting: a server that streams an
            // endless body never makes the loop wait.
            let left = self.time_left(Instant::now())?;
            let received_before = self.exchange.progress().wire_bytes_received;
            self.pump_recv()?;
            if self.exchange.progress().wire_bytes_received == received_before && !self.peer_closed
            {
                event_loop.wait(self, left)?;
            }
        }
    }
}

/// Reads from the caller's source, retrying `Interrupted` as `Read` asks of callers.
fn read_retrying(source: &mut dyn Read, space: &mut [u8]) -> io::Result<usize> {
    loop {
        match source.read(space) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}
