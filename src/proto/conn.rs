//! The connection machine: the life of one connection, and every timer on it, without I/O
//! and without a clock. The driver tells it what happened and what time it is; it answers
//! with what to do next and when to wake it.
//!
//! ```text
//! Resolving ──▶ Connecting ──▶ [Handshaking] ──▶ Ready ──▶ Exchanging ──▶ Idle ──▶ Exchanging ...
//!     └────────────┴───────────────┴──────────────────────────┴──────────────────▶ Closed
//! ```
//!
//! The rules, in one place:
//!
//! 1. Time comes in as `now` on every call; nothing here reads a clock. The driver asks
//!    [`Connection::poll_timeout`] when to wake the machine next and calls
//!    [`Connection::handle_timeout`] at or after that instant.
//! 2. The connect deadline covers resolving, every TCP attempt and the TLS handshake. Each
//!    address gets an equal share of what is left of it, so one silent address cannot use
//!    it all.
//! 3. The total deadline (`max_time`) is the upload's, set by its caller across redirects
//!    and retries; it is checked before every byte is handed out to be sent, so nothing
//!    (in particular not the last chunk) is sent after it.
//! 4. The stall deadline runs while an exchange is on: it is reset whenever bytes move,
//!    to the socket, from it, or from the source. The machine's own pacing wait (rule 6)
//!    is not a stall: the deadline counts from its end.
//! 5. `Expect: 100-continue` holds the body for at most the expect timeout; then the body
//!    goes anyway (RFC 9110 section 10.1.1).
//! 6. The rate limit and a source that would block are waits, not errors: the machine
//!    answers [`Transmit::Wait`] and names the instant to try again, or, for a source the
//!    driver watches, waits for the driver to say it is readable. Time spent not writing
//!    (a slow source, the wait for `100 Continue`) is not saved up: at most
//!    [`RATE_CREDIT`] of lateness is caught up in a burst. An exchange that ends takes its
//!    waits with it.
//! 7. A deadline that has passed is an error before anything else is done.

use std::time::{Duration, Instant};

use crate::buffer::FixedBuf;
use crate::error::{Error, Kind, Progress, Stage, TimeoutKind};
use crate::proto::exchange::{BodyStep, Exchange, SendWant};
use crate::proto::head::HeaderField;
use crate::proto::peer_error::PeerError;
use crate::proto::response::{BodyFraming as ResponseFraming, ResponseHead};
use crate::trace::Part;

/// How long to wait before reading again from a source that returned `WouldBlock` and
/// cannot tell the loop when it is ready.
pub const SOURCE_RETRY: Duration = Duration::from_millis(5);

/// How far behind its rate a writer may fall and still catch up in a burst: a tenth of a
/// second, one allowance.
pub const RATE_CREDIT: Duration = Duration::from_millis(100);

/// The deadlines of an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// For the connection to open: name resolution, TCP and the TLS handshake.
    pub connect: Duration,
    /// Longest time with no byte moving to the socket, from it, or from the source.
    pub stall: Option<Duration>,
    /// Longest time for the whole upload, redirects, retries and response body included.
    pub total: Option<Duration>,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the host's addresses.
    Resolving,
    /// A TCP connect is in flight.
    Connecting,
    /// The TLS handshake is in flight.
    Handshaking,
    /// Open, and no exchange has started on it yet.
    Ready,
    /// A request/response exchange is on.
    Exchanging,
    /// Open between exchanges (keep-alive).
    Idle,
    /// Done with; nothing more moves.
    Closed,
}

/// What the send side wants from the driver now.
#[derive(Debug)]
pub enum Transmit<'b> {
    /// Write these bytes, then call [`Connection::on_sent`].
    Write(&'b [u8]),
    /// Read the source into this slice, then call [`Connection::on_filled`] (or
    /// [`Connection::on_source_blocked`] if it would block).
    Fill(&'b mut [u8]),
    /// Nothing to send until [`Connection::poll_timeout`] or a response byte.
    Wait,
    /// The request is sent, or sending stopped because the response came early.
    Done,
}

/// Something the machine decided on a timer that the driver should know about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// This TCP attempt used its share of the connect deadline: try the next address.
    NextAddress,
    /// No `100 Continue` came in time; the body goes now.
    ContinueWaitOver(Duration),
}

/// Options that belong to one exchange.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExchangeOptions {
    /// How long the body waits for `100 Continue` when the head asks for it.
    pub expect_timeout: Option<Duration>,
    /// Most bytes written per second, head and framing included.
    pub rate_limit: Option<u64>,
}

/// A cap on the bytes written per second, kept by delaying writes.
#[derive(Debug, Clone, Copy)]
struct RateLimit {
    bytes_per_second: u64,
    /// When the first byte went, and how many bytes had gone before the cap applied.
    since: Option<(Instant, u64)>,
}

impl RateLimit {
    /// Before writing at `now` with `sent` bytes already written: `Err(until)` if the write
    /// must wait, else how many bytes may go at once (a tenth of a second's worth, so the
    /// rate holds at the scale of a chunk too). Time the writer spent without writing (a
    /// slow source, a wait for `100 Continue`) is not saved up for a burst: when the bytes
    /// were due more than [`RATE_CREDIT`] ago, the count starts again from now.
    fn allowance(&mut self, now: Instant, sent: u64) -> Result<usize, Instant> {
        let (start, base) = *self.since.get_or_insert((now, sent));
        let owed = (sent - base) as f64 / self.bytes_per_second as f64;
        // Past what an Instant can hold, the bytes are simply not due yet in any
        // representable time: treat the count as fresh.
        let due = Duration::try_from_secs_f64(owed)
            .ok()
            .and_then(|d| start.checked_add(d));
        match due {
            Some(due) if now < due => return Err(due),
            Some(due) if now.saturating_duration_since(due) <= RATE_CREDIT => {}
            _ => self.since = Some((now, sent)),
        }
        Ok(usize::try_from(self.bytes_per_second / 10)
            .unwrap_or(usize::MAX)
            .max(1))
    }
}

/// The instants an attempt passed its stages, from the `now` values passed to the machine
/// (it reads no clock): what curl's `time_*` variables measure. `None` for a stage the
/// attempt did not reach. On a connection kept from an earlier upload, the connect stages
/// are the instant the exchange started on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stages {
    /// The attempt began: the connection was created, or the kept one taken up.
    pub started: Instant,
    /// The host's addresses arrived (the first TCP attempt starts).
    pub resolved: Option<Instant>,
    /// The TCP connection opened.
    pub connected: Option<Instant>,
    /// The TLS handshake completed (https only).
    pub tls_done: Option<Instant>,
    /// The exchange started: the request is about to be sent.
    pub request_started: Option<Instant>,
    /// The first response byte arrived (an interim 1xx counts).
    pub first_byte: Option<Instant>,
    /// The response was read to its end.
    pub ended: Option<Instant>,
}

impl Stages {
    fn new(started: Instant) -> Stages {
        Stages {
            started,
            resolved: None,
            connected: None,
            tls_done: None,
            request_started: None,
            first_byte: None,
            ended: None,
        }
    }
}

/// The machine of one connection. See the module docs for its rules.
#[derive(Debug)]
pub struct Connection {
    phase: Phase,
    timeouts: Timeouts,
    /// Rule 2: the deadline of the whole connect, and of the TCP attempt in flight.
    connect_started: Instant,
    connect_deadline: Option<Instant>,
    attempt_deadline: Option<Instant>,
    /// Rule 3: the upload's deadline, and when the upload started.
    upload_started: Instant,
    total_deadline: Option<Instant>,
    /// Rule 4.
    last_progress: Instant,
    /// Rule 5.
    expect_timeout: Duration,
    continue_wait_started: Option<Instant>,
    /// Rule 6.
    rate_limit: Option<RateLimit>,
    paced_until: Option<Instant>,
    source_retry_at: Option<Instant>,
    /// The source would block and the driver watches it: no timer, the driver says when.
    source_waiting: bool,
    exchange: Option<Exchange>,
    exchanges: u32,
    notices: [Option<Notice>; 2],
    peer_closed: bool,
    /// The handshake in progress is a CONNECT to a proxy, not TLS.
    tunneling: bool,
    stages: Stages,
}

impl Connection {
    /// A connection about to be opened for an upload that started at `upload_started`.
    pub fn new(timeouts: Timeouts, upload_started: Instant, now: Instant) -> Self {
        Connection {
            phase: Phase::Resolving,
            timeouts,
            connect_started: now,
            connect_deadline: now.checked_add(timeouts.connect),
            attempt_deadline: None,
            upload_started,
            total_deadline: timeouts.total.and_then(|t| upload_started.checked_add(t)),
            last_progress: now,
            expect_timeout: Duration::ZERO,
            continue_wait_started: None,
            rate_limit: None,
            paced_until: None,
            source_retry_at: None,
            source_waiting: false,
            exchange: None,
            exchanges: 0,
            notices: [None; 2],
            peer_closed: false,
            tunneling: false,
            stages: Stages::new(now),
        }
    }

    /// Where the connection is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The host's addresses arrived; a TCP attempt starts now, with `addresses_left`
    /// addresses (this one included) still to try.
    pub fn on_connect_attempt(&mut self, now: Instant, addresses_left: usize) {
        self.phase = Phase::Connecting;
        self.stages.resolved.get_or_insert(now);
        if let Some(deadline) = self.connect_deadline {
            let left = deadline.saturating_duration_since(now);
            let share = left / u32::try_from(addresses_left.max(1)).unwrap_or(u32::MAX);
            self.attempt_deadline = now.checked_add(share);
        }
    }

    /// The TCP connection is open; `tls` says whether a handshake comes next.
    pub fn on_connected(&mut self, now: Instant, tls: bool) {
        self.stages.connected = Some(now);
        self.attempt_deadline = None;
        self.last_progress = now;
        if tls {
            self.phase = Phase::Handshaking;
        } else {
            self.on_ready();
        }
    }

    /// A CONNECT to a proxy starts (`true`) or its tunnel opened (`false`). It runs in the
    /// handshaking phase, under the connect deadline; its errors are at [`Stage::Proxy`].
    pub fn on_tunnel(&mut self, setting_up: bool) {
        self.tunneling = setting_up;
    }

    /// The CONNECT tunnel opened and no TLS follows (`--proxytunnel` to an http origin):
    /// the connection is ready, with no TLS handshake to count.
    pub fn on_tunnel_opened(&mut self, now: Instant) {
        self.tunneling = false;
        self.last_progress = now;
        self.on_ready();
    }

    /// The TLS handshake completed.
    pub fn on_handshake_done(&mut self, now: Instant) {
        self.stages.tls_done = Some(now);
        self.last_progress = now;
        self.on_ready();
    }

    fn on_ready(&mut self) {
        self.phase = Phase::Ready;
        self.connect_deadline = None;
        self.attempt_deadline = None;
    }

    /// Starts `exchange` on an open connection (fresh or idle), for an upload that started
    /// at `upload_started`: the total deadline is the upload's, not the connection's.
    pub fn start_exchange(
        &mut self,
        exchange: Exchange,
        options: ExchangeOptions,
        upload_started: Instant,
        now: Instant,
    ) {
        debug_assert!(matches!(self.phase, Phase::Ready | Phase::Idle));
        if self.phase == Phase::Idle {
            // A kept connection: this attempt's connect stages are now.
            let tls = self.stages.tls_done.is_some();
            self.stages = Stages::new(now);
            (self.stages.resolved, self.stages.connected) = (Some(now), Some(now));
            self.stages.tls_done = tls.then_some(now);
        }
        self.stages.request_started = Some(now);
        self.phase = Phase::Exchanging;
        self.upload_started = upload_started;
        self.total_deadline = self
            .timeouts
            .total
            .and_then(|t| upload_started.checked_add(t));
        self.last_progress = now;
        self.expect_timeout = options.expect_timeout.unwrap_or(Duration::ZERO);
        self.continue_wait_started = None;
        self.rate_limit = options.rate_limit.map(|rate| RateLimit {
            bytes_per_second: rate.max(1),
            since: None,
        });
        self.paced_until = None;
        self.source_retry_at = None;
        self.source_waiting = false;
        self.exchange = Some(exchange);
        self.exchanges += 1;
    }

    /// Exchanges started on this connection so far; more than one means it was reused.
    pub fn exchanges(&self) -> u32 {
        self.exchanges
    }

    /// The exchange in progress, if any.
    pub fn exchange(&self) -> Option<&Exchange> {
        self.exchange.as_ref()
    }

    /// The exchange in progress, for the calls that only concern bytes (trace labels).
    pub fn exchange_mut(&mut self) -> Option<&mut Exchange> {
        self.exchange.as_mut()
    }

    /// Bytes moved by the exchange so far.
    pub fn progress(&self) -> Progress {
        self.exchange
            .as_ref()
            .map(Exchange::progress)
            .unwrap_or_default()
    }

    /// Time since the upload started.
    pub fn elapsed(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.upload_started)
    }

    /// The stage an error at this point belongs to.
    pub fn stage(&self) -> Stage {
        match self.phase {
            Phase::Resolving => Stage::Resolve,
            Phase::Connecting => Stage::Connect,
            Phase::Handshaking if self.tunneling => Stage::Proxy,
            Phase::Handshaking => Stage::TlsHandshake,
            Phase::Ready | Phase::Idle | Phase::Closed => Stage::Send,
            Phase::Exchanging => match &self.exchange {
                Some(ex) if ex.request_sent() || ex.stopped_by_response() => Stage::Receive,
                _ => Stage::Send,
            },
        }
    }

    /// An error of `kind` at the current stage, with the progress so far.
    pub(crate) fn fail(&self, kind: Kind) -> Error {
        Error::new(self.stage(), kind).with_progress(self.progress())
    }

    /// The next instant at which [`Connection::handle_timeout`] must be called, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |at: Option<Instant>| {
            if let Some(at) = at {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        };
        match self.phase {
            Phase::Resolving | Phase::Connecting | Phase::Handshaking => {
                consider(self.connect_deadline);
                consider(self.attempt_deadline);
                consider(self.total_deadline);
            }
            Phase::Exchanging => {
                consider(self.total_deadline);
                consider(self.stall_deadline());
                consider(self.continue_deadline());
                consider(self.paced_until);
                consider(self.source_retry_at);
            }
            Phase::Ready | Phase::Idle | Phase::Closed => {}
        }
        next
    }

    /// Rule 4, with the machine's own pacing wait not counted as a stall: the deadline is
    /// counted from the later of the last progress and the end of the pacing wait.
    fn stall_deadline(&self) -> Option<Instant> {
        let stall = self.timeouts.stall?;
        let since = match self.paced_until {
            Some(until) => self.last_progress.max(until),
            None => self.last_progress,
        };
        since.checked_add(stall)
    }

    fn continue_deadline(&self) -> Option<Instant> {
        let awaiting = self
            .exchange
            .as_ref()
            .is_some_and(Exchange::awaits_continue);
        match (awaiting, self.continue_wait_started) {
            (true, Some(since)) => since.checked_add(self.expect_timeout),
            _ => None,
        }
    }

    /// Fires every timer due at `now`. A deadline that passed is an error; the other timers
    /// end a wait, and what the driver must know is left for [`Connection::poll_notice`].
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Error> {
        let connecting = matches!(
            self.phase,
            Phase::Resolving | Phase::Connecting | Phase::Handshaking
        );
        if (connecting || self.phase == Phase::Exchanging)
            && let Some(deadline) = self.total_deadline
            && now >= deadline
        {
            return Err(self.fail(Kind::Timeout(TimeoutKind::Total, self.elapsed(now))));
        }
        if connecting {
            if let Some(deadline) = self.connect_deadline
                && now >= deadline
            {
                let waited = now.saturating_duration_since(self.connect_started);
                return Err(self.fail(Kind::Timeout(TimeoutKind::Connect, waited)));
            }
            if let Some(deadline) = self.attempt_deadline
                && now >= deadline
            {
                self.attempt_deadline = None;
                self.notify(Notice::NextAddress);
            }
            return Ok(());
        }
        if self.phase != Phase::Exchanging {
            return Ok(());
        }
        if self.stall_deadline().is_some_and(|at| now >= at) {
            let idle = now.saturating_duration_since(self.last_progress);
            return Err(self.fail(Kind::Timeout(TimeoutKind::Stall, idle)));
        }
        if let Some(deadline) = self.continue_deadline()
            && now >= deadline
        {
            if let Some(exchange) = &mut self.exchange {
                exchange.continue_timed_out();
            }
            let waited = now.saturating_duration_since(self.continue_wait_started.unwrap_or(now));
            self.notify(Notice::ContinueWaitOver(waited));
        }
        if let Some(until) = self.paced_until
            && now >= until
        {
            self.paced_until = None;
            // The machine held the bytes itself: that was no stall.
            self.last_progress = self.last_progress.max(until);
        }
        if self.source_retry_at.is_some_and(|at| now >= at) {
            self.source_retry_at = None;
        }
        Ok(())
    }

    fn notify(&mut self, notice: Notice) {
        if let Some(slot) = self.notices.iter_mut().find(|n| n.is_none()) {
            *slot = Some(notice);
        }
    }

    /// The next thing a timer decided that the driver should act on or trace.
    pub fn poll_notice(&mut self) -> Option<Notice> {
        let taken = self.notices[0].take();
        self.notices[0] = self.notices[1].take();
        taken
    }

    /// Fires the timers that are due, if any (rule 7).
    fn check_timers(&mut self, now: Instant) -> Result<(), Error> {
        if self.poll_timeout().is_some_and(|at| now >= at) {
            self.handle_timeout(now)?;
        }
        Ok(())
    }

    /// What the send side wants at `now`. Checks the deadlines first (rule 7), so nothing is
    /// handed out to be sent once one has passed.
    pub fn poll_transmit<'b>(
        &mut self,
        buf: &'b mut FixedBuf,
        now: Instant,
    ) -> Result<Transmit<'b>, Error> {
        self.check_timers(now)?;
        if self.paced_until.is_some() || self.source_retry_at.is_some() || self.source_waiting {
            return Ok(Transmit::Wait);
        }
        let Some(exchange) = &self.exchange else {
            return Ok(Transmit::Done);
        };
        if exchange.awaits_continue() {
            self.continue_wait_started.get_or_insert(now);
            return Ok(Transmit::Wait);
        }
        let allowance = match &mut self.rate_limit {
            None => usize::MAX,
            Some(limit) => match limit.allowance(now, exchange.progress().wire_bytes_sent) {
                Ok(allowance) => allowance,
                Err(until) => {
                    self.paced_until = Some(until);
                    return Ok(Transmit::Wait);
                }
            },
        };
        Ok(match exchange.poll_send(buf) {
            SendWant::Write(bytes) => Transmit::Write(&bytes[..bytes.len().min(allowance)]),
            SendWant::Fill(space) => Transmit::Fill(space),
            SendWant::Idle => Transmit::Done,
        })
    }

    /// The transport accepted `n` bytes of the last [`Transmit::Write`].
    pub fn on_sent(&mut self, n: usize, now: Instant) {
        if let Some(exchange) = &mut self.exchange {
            exchange.on_sent(n);
            self.last_progress = now;
        }
    }

    /// The source gave `n` bytes into the last [`Transmit::Fill`] (0: its end).
    pub fn on_filled(&mut self, buf: &mut FixedBuf, n: usize, now: Instant) -> Result<(), Error> {
        let Some(exchange) = &mut self.exchange else {
            return Ok(());
        };
        self.last_progress = now;
        exchange
            .on_filled(buf, n)
            .map_err(|e| Error::new(Stage::ReadSource, Kind::Request(e)))
            .map_err(|e| e.with_progress(exchange.progress()))
    }

    /// The source returned `WouldBlock`: try it again a little later.
    pub fn on_source_blocked(&mut self, now: Instant) {
        self.source_retry_at = now.checked_add(SOURCE_RETRY);
    }

    /// The source returned `WouldBlock` and the driver watches it (a registered file
    /// descriptor): no retry timer, the body waits for [`Connection::on_source_ready`]. The
    /// other deadlines keep running, so an idle source still stalls out.
    pub fn on_source_waiting(&mut self) {
        self.source_waiting = true;
    }

    /// The watched source can be read again.
    pub fn on_source_ready(&mut self) {
        self.source_waiting = false;
    }

    /// Adds trailer fields made once the body is read; see [`Exchange::add_trailers`].
    pub fn add_trailers(&mut self, fields: Vec<HeaderField>) {
        if let Some(exchange) = &mut self.exchange {
            exchange.add_trailers(fields);
        }
    }

    /// Where the next response bytes go.
    pub fn recv_space<'b>(&mut self, buf: &'b mut FixedBuf) -> &'b mut [u8] {
        match &mut self.exchange {
            Some(exchange) => exchange.recv_space(buf),
            None => &mut [],
        }
    }

    /// `n` response bytes arrived at `now`; returns the final head once it is complete.
    /// `emit` sees each parsed head line, for the wire trace.
    pub fn on_received(
        &mut self,
        buf: &FixedBuf,
        n: usize,
        now: Instant,
        emit: &mut dyn FnMut(Part, &[u8]),
    ) -> Result<Option<ResponseHead>, Error> {
        let Some(exchange) = &mut self.exchange else {
            return Ok(None);
        };
        self.last_progress = now;
        if n > 0 {
            self.stages.first_byte.get_or_insert(now);
        }
        let parsed = exchange.on_received_with(buf, n, emit);
        parsed.map_err(|e| {
            Error::new(Stage::Receive, Kind::Peer(e)).with_progress(exchange.progress())
        })
    }

    /// The peer closed its side. Before a final head, an error that says so; after it, the
    /// end of a close-delimited body, or a truncated one.
    pub fn on_peer_closed(&mut self) -> Result<(), Error> {
        self.peer_closed = true;
        let Some(exchange) = &mut self.exchange else {
            return Ok(());
        };
        match exchange.on_peer_closed() {
            Ok(()) => Ok(()),
            Err(Some(e)) => {
                Err(Error::new(Stage::Receive, Kind::Peer(e)).with_progress(exchange.progress()))
            }
            Err(None) => Err(self.fail(Kind::ClosedBeforeResponse(None))),
        }
    }

    /// True once the peer closed its side.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// The next step of the response body; `emit` sees every consumed byte for the trace.
    pub fn decode_body(
        &mut self,
        buf: &FixedBuf,
        emit: &mut dyn FnMut(Part, &[u8]),
    ) -> Result<BodyStep, Error> {
        let Some(exchange) = &mut self.exchange else {
            return Ok(BodyStep::End);
        };
        exchange
            .decode_body_with(buf, emit)
            .map_err(|e: PeerError| {
                Error::new(Stage::Receive, Kind::Peer(e)).with_progress(exchange.progress())
            })
    }

    /// The response was read to its end at `now`.
    pub fn on_response_end(&mut self, now: Instant) {
        self.stages.ended.get_or_insert(now);
    }

    /// When this attempt passed each stage so far.
    pub fn stages(&self) -> Stages {
        self.stages
    }

    /// How the response body is framed, once the final head is in.
    pub fn response_framing(&self) -> Option<ResponseFraming> {
        self.exchange.as_ref().and_then(Exchange::response_framing)
    }

    /// Ends the exchange once its response was read to the end: the connection becomes
    /// idle if both sides may keep it (see [`crate::proto::policy::may_keep`]), else closed.
    /// Returns true when it is kept.
    pub fn finish_exchange(&mut self, body_read_to_end: bool) -> bool {
        let exchange_reusable = self.exchange.as_ref().is_some_and(Exchange::reusable);
        let keep = crate::proto::policy::may_keep(
            body_read_to_end,
            exchange_reusable,
            self.peer_closed || self.phase == Phase::Closed,
        );
        self.exchange = None;
        self.phase = if keep { Phase::Idle } else { Phase::Closed };
        self.end_waits();
        keep
    }

    /// Done with the connection.
    pub fn close(&mut self) {
        self.phase = Phase::Closed;
        self.end_waits();
    }

    /// The waits of an exchange end with it: a Wait with nothing to end it would be a hang.
    fn end_waits(&mut self) {
        self.paced_until = None;
        self.source_retry_at = None;
        self.source_waiting = false;
        self.continue_wait_started = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::head::{BodyFraming, RequestHead};
    use crate::proto::limits::Limits;
    use crate::target::Target;

    const SECOND: Duration = Duration::from_secs(1);

    fn timeouts(stall: Option<u64>, total: Option<u64>) -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(10),
            stall: stall.map(Duration::from_secs),
            total: total.map(Duration::from_secs),
        }
    }

    /// An exchange for a chunked PUT with `expect` set, and its buffer of 4-byte chunks.
    fn exchange(expect: bool) -> (Exchange, FixedBuf) {
        let target = Target::parse("http://h/u").unwrap();
        let mut head = RequestHead::new("PUT", &target).unwrap();
        head.set_framing(BodyFraming::Chunked);
        head.set_expect_continue(expect);
        let mut buf = FixedBuf::new(4, 256, head.encoded_len());
        let ex = Exchange::new(&head, Vec::new(), Limits::default(), &mut buf).unwrap();
        (ex, buf)
    }

    /// A connection open at `t0` with an exchange started.
    fn open(t0: Instant, timeouts: Timeouts, options: ExchangeOptions) -> (Connection, FixedBuf) {
        let (ex, buf) = exchange(options.expect_timeout.is_some());
        let mut conn = Connection::new(timeouts, t0, t0);
        conn.on_connect_attempt(t0, 1);
        conn.on_connected(t0, false);
        conn.start_exchange(ex, options, t0, t0);
        (conn, buf)
    }

    /// Writes everything the machine offers at `now`; returns the bytes.
    fn send_all(conn: &mut Connection, buf: &mut FixedBuf, now: Instant) -> Vec<u8> {
        let mut wire = Vec::new();
        while let Ok(Transmit::Write(bytes)) = conn.poll_transmit(buf, now) {
            wire.extend_from_slice(bytes);
            let n = bytes.len();
            conn.on_sent(n, now);
        }
        wire
    }

    #[test]
    fn stages_are_the_instants_passed_in_and_restart_on_a_kept_connection() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut conn = Connection::new(timeouts(None, None), t0, t0);
        conn.on_connect_attempt(at(2), 2);
        conn.on_connect_attempt(at(5), 1);
        conn.on_connected(at(7), true);
        conn.on_handshake_done(at(11));
        let (ex, mut buf) = exchange(false);
        conn.start_exchange(ex, ExchangeOptions::default(), t0, at(12));
        send_all(&mut conn, &mut buf, at(13));
        if let Ok(Transmit::Fill(_)) = conn.poll_transmit(&mut buf, at(13)) {
            conn.on_filled(&mut buf, 0, at(13)).unwrap();
        }
        send_all(&mut conn, &mut buf, at(13));
        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let space = conn.recv_space(&mut buf);
        space[..reply.len()].copy_from_slice(reply);
        conn.on_received(&buf, reply.len(), at(20), &mut |_, _| {})
            .unwrap();
        assert_eq!(
            conn.decode_body(&buf, &mut |_, _| {}).unwrap(),
            BodyStep::End
        );
        conn.on_response_end(at(30));
        let stages = conn.stages();
        assert_eq!(
            stages,
            Stages {
                started: t0,
                // The first address's answer: a later attempt is not a second lookup.
                resolved: Some(at(2)),
                connected: Some(at(7)),
                tls_done: Some(at(11)),
                request_started: Some(at(12)),
                first_byte: Some(at(20)),
                ended: Some(at(30)),
            }
        );
        // Kept for the next upload: its connect stages are the instant it is taken up.
        assert!(conn.finish_exchange(true));
        let (ex, _) = exchange(false);
        conn.start_exchange(ex, ExchangeOptions::default(), at(40), at(41));
        let stages = conn.stages();
        assert_eq!(stages.started, at(41));
        assert_eq!(stages.connected, Some(at(41)));
        assert_eq!(stages.tls_done, Some(at(41)));
        assert_eq!((stages.first_byte, stages.ended), (None, None));
    }

    #[test]
    fn connect_deadline_is_shared_between_addresses_and_then_fails() {
        let t0 = Instant::now();
        let mut conn = Connection::new(timeouts(None, None), t0, t0);
        assert_eq!(conn.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        conn.on_connect_attempt(t0, 2);
        assert_eq!(conn.poll_timeout(), Some(t0 + Duration::from_secs(5)));
        conn.handle_timeout(t0 + Duration::from_secs(5)).unwrap();
        assert_eq!(conn.poll_notice(), Some(Notice::NextAddress));
        conn.on_connect_attempt(t0 + Duration::from_secs(5), 1);
        let err = conn
            .handle_timeout(t0 + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(err.timeout_kind(), Some(TimeoutKind::Connect));
        assert_eq!(err.stage(), Stage::Connect);
    }

    #[test]
    fn the_total_deadline_covers_connecting_and_is_the_uploads() {
        let t0 = Instant::now();
        // The upload started 8 s before this connection (a redirect): 2 s are left of 10.
        let t8 = t0 + Duration::from_secs(8);
        let mut conn = Connection::new(timeouts(None, Some(10)), t0, t8);
        assert_eq!(conn.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        conn.on_connect_attempt(t8, 1);
        conn.on_connected(t8, true);
        assert_eq!(conn.phase(), Phase::Handshaking);
        let err = conn
            .handle_timeout(t0 + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(err.timeout_kind(), Some(TimeoutKind::Total));
        assert_eq!(err.stage(), Stage::TlsHandshake);
    }

    #[test]
    fn nothing_is_sent_once_the_total_deadline_passed() {
        let t0 = Instant::now();
        let (mut conn, mut buf) = open(t0, timeouts(None, Some(3)), ExchangeOptions::default());
        assert!(
            !send_all(&mut conn, &mut buf, t0).is_empty(),
            "the head goes"
        );
        // A slow source gives its last bytes after the deadline: the fill is accepted, but
        // the chunk and the last chunk are never handed out.
        let Ok(Transmit::Fill(space)) = conn.poll_transmit(&mut buf, t0 + SECOND) else {
            panic!("wants a fill");
        };
        space[..2].copy_from_slice(b"ab");
        let late = t0 + Duration::from_secs(4);
        conn.on_filled(&mut buf, 2, late).unwrap();
        let err = conn.poll_transmit(&mut buf, late).unwrap_err();
        assert_eq!(err.timeout_kind(), Some(TimeoutKind::Total));
        assert_eq!(err.stage(), Stage::Send);
    }

    #[test]
    fn stall_is_reset_by_every_byte_that_moves() {
        let t0 = Instant::now();
        let (mut conn, mut buf) = open(t0, timeouts(Some(2), None), ExchangeOptions::default());
        send_all(&mut conn, &mut buf, t0);
        assert_eq!(conn.poll_timeout(), Some(t0 + 2 * SECOND));
        // The source gives a byte at 1.5 s: that counts as movement.
        let t1 = t0 + Duration::from_millis(1500);
        let Ok(Transmit::Fill(space)) = conn.poll_transmit(&mut buf, t1) else {
            panic!()
        };
        space[0] = b'x';
        conn.on_filled(&mut buf, 1, t1).unwrap();
        assert_eq!(conn.poll_timeout(), Some(t1 + 2 * SECOND));
        conn.handle_timeout(t0 + 3 * SECOND).unwrap();
        let err = conn.handle_timeout(t1 + 2 * SECOND).unwrap_err();
        assert_eq!(err.timeout_kind(), Some(TimeoutKind::Stall));
    }

    #[test]
    fn continue_wait_ends_at_the_expect_timeout_and_the_body_goes() {
        let t0 = Instant::now();
        let options = ExchangeOptions {
            expect_timeout: Some(SECOND),
            rate_limit: None,
        };
        let (mut conn, mut buf) = open(t0, timeouts(None, None), options);
        let head = send_all(&mut conn, &mut buf, t0);
        assert!(head.ends_with(b"\r\n\r\n"));
        assert!(
            String::from_utf8(head)
                .unwrap()
                .contains("Expect: 100-continue\r\n")
        );
        assert!(matches!(
            conn.poll_transmit(&mut buf, t0),
            Ok(Transmit::Wait)
        ));
        assert_eq!(conn.poll_timeout(), Some(t0 + SECOND));
        conn.handle_timeout(t0 + SECOND).unwrap();
        assert_eq!(conn.poll_notice(), Some(Notice::ContinueWaitOver(SECOND)));
        assert!(matches!(
            conn.poll_transmit(&mut buf, t0 + SECOND),
            Ok(Transmit::Fill(_))
        ));
    }

    #[test]
    fn rate_limit_paces_writes_on_the_timer() {
        let t0 = Instant::now();
        let options = ExchangeOptions {
            expect_timeout: None,
            rate_limit: Some(100),
        };
        let (mut conn, mut buf) = open(t0, timeouts(None, None), options);
        // 10 bytes a write (a tenth of a second's worth), then wait until they are due.
        let Ok(Transmit::Write(first)) = conn.poll_transmit(&mut buf, t0) else {
            panic!()
        };
        assert_eq!(first.len(), 10);
        conn.on_sent(10, t0);
        assert!(matches!(
            conn.poll_transmit(&mut buf, t0),
            Ok(Transmit::Wait)
        ));
        assert_eq!(conn.poll_timeout(), Some(t0 + Duration::from_millis(100)));
        let t1 = t0 + Duration::from_millis(100);
        conn.handle_timeout(t1).unwrap();
        assert!(matches!(
            conn.poll_transmit(&mut buf, t1),
            Ok(Transmit::Write(b)) if b.len() == 10
        ));
    }

    #[test]
    fn a_blocked_source_is_retried_on_the_timer() {
        let t0 = Instant::now();
        let (mut conn, mut buf) = open(t0, timeouts(Some(60), None), ExchangeOptions::default());
        send_all(&mut conn, &mut buf, t0);
        conn.on_source_blocked(t0);
        assert!(matches!(
            conn.poll_transmit(&mut buf, t0),
            Ok(Transmit::Wait)
        ));
        assert_eq!(conn.poll_timeout(), Some(t0 + SOURCE_RETRY));
        assert!(matches!(
            conn.poll_transmit(&mut buf, t0 + SOURCE_RETRY),
            Ok(Transmit::Fill(_))
        ));
    }

    #[test]
    fn a_watched_source_waits_for_the_driver_and_still_stalls_out() {
        let t0 = Instant::now();
        let (mut conn, mut buf) = open(t0, timeouts(Some(60), None), ExchangeOptions::default());
        send_all(&mut conn, &mut buf, t0);
        conn.on_source_waiting();
        assert!(matches!(
            conn.poll_transmit(&mut buf, t0),
            Ok(Transmit::Wait)
        ));
        // No retry timer: only the stall deadline.
        assert_eq!(conn.poll_timeout(), Some(t0 + Duration::from_secs(60)));
        let later = t0 + Duration::from_secs(1);
        assert!(matches!(
            conn.poll_transmit(&mut buf, later),
            Ok(Transmit::Wait)
        ));
        conn.on_source_ready();
        assert!(matches!(
            conn.poll_transmit(&mut buf, later),
            Ok(Transmit::Fill(_))
        ));
        conn.on_source_waiting();
        let err = conn
            .poll_transmit(&mut buf, t0 + Duration::from_secs(61))
            .unwrap_err();
        assert_eq!(err.timeout_kind(), Some(TimeoutKind::Stall));
    }

    #[test]
    fn pacing_is_not_a_stall_and_idle_time_is_not_saved_up() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let options = ExchangeOptions {
            expect_timeout: None,
            rate_limit: Some(1),
        };
        let short_stall = Timeouts {
            connect: SECOND,
            stall: Some(ms(500)),
            total: None,
        };
        let (mut conn, mut buf) = open(t0, short_stall, options);
        let Ok(Transmit::Write(bytes)) = conn.poll_transmit(&mut buf, t0) else {
            panic!()
        };
        assert_eq!(bytes.len(), 1, "1 byte a second");
        conn.on_sent(1, t0);
        assert!(matches!(
            conn.poll_transmit(&mut buf, t0),
            Ok(Transmit::Wait)
        ));
        // The machine holds the next byte until t0 + 1 s: no stall at 600 ms.
        assert!(matches!(
            conn.poll_transmit(&mut buf, t0 + ms(600)),
            Ok(Transmit::Wait)
        ));
        assert_eq!(conn.poll_timeout(), Some(t0 + SECOND));
        conn.handle_timeout(t0 + SECOND).unwrap();
        assert!(matches!(
            conn.poll_transmit(&mut buf, t0 + SECOND),
            Ok(Transmit::Write(b)) if b.len() == 1
        ));
        conn.on_sent(1, t0 + SECOND);

        // 100 bytes a second, after 10 s without writing: not 1,000 bytes at once.
        let options = ExchangeOptions {
            expect_timeout: None,
            rate_limit: Some(100),
        };
        let (mut conn, mut buf) = open(t0, timeouts(None, None), options);
        let Ok(Transmit::Write(bytes)) = conn.poll_transmit(&mut buf, t0) else {
            panic!()
        };
        let first = bytes.len();
        conn.on_sent(first, t0);
        let later = t0 + Duration::from_secs(10);
        let mut burst = 0;
        while let Ok(Transmit::Write(bytes)) = conn.poll_transmit(&mut buf, later) {
            let n = bytes.len();
            conn.on_sent(n, later);
            burst += n;
        }
        assert!(
            burst <= 20,
            "{burst} bytes at once after 10 s idle at 100 B/s"
        );
    }

    #[test]
    fn a_connection_is_kept_only_after_a_clean_exchange() {
        let t0 = Instant::now();
        let (mut conn, mut buf) = open(t0, timeouts(None, None), ExchangeOptions::default());
        send_all(&mut conn, &mut buf, t0);
        let Ok(Transmit::Fill(_)) = conn.poll_transmit(&mut buf, t0) else {
            panic!()
        };
        conn.on_filled(&mut buf, 0, t0).unwrap();
        send_all(&mut conn, &mut buf, t0);
        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let space = conn.recv_space(&mut buf);
        space[..reply.len()].copy_from_slice(reply);
        let head = conn.on_received(&buf, reply.len(), t0, &mut |_, _| {});
        assert_eq!(head.unwrap().unwrap().status, 200);
        assert_eq!(
            conn.decode_body(&buf, &mut |_, _| {}).unwrap(),
            BodyStep::End
        );
        assert!(conn.finish_exchange(true));
        assert_eq!(conn.phase(), Phase::Idle);
        assert_eq!(
            conn.poll_timeout(),
            None,
            "an idle connection has no timers"
        );
    }
}
