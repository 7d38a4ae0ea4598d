//! The mio event loop: it moves bytes between the source, the connection machine and the
//! transport, and waits. It decides nothing about HTTP and keeps no timer: the machine in
//! [`crate::proto::conn`] does both, and the loop only passes it the time.
//!
//! An [`EventLoop`] owns one `Poll`; it keeps the readiness of every token it sees, so any
//! number of [`Driven`] connections can share it, each under its own token. A `Driven`
//! connection never blocks: [`Driven::pump`] does what the sockets and the source allow and
//! says whether to wait. Name resolution runs on a thread that wakes the loop when it
//! answers, so even a slow DNS server cannot hold the loop past a deadline.
//!
//! Readiness is edge-triggered: a flag stays set until a read or write returns `WouldBlock`,
//! and is set again by the next event. Read interest stays on while the body is sent, so an
//! early response is seen at once.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token, Waker};

use crate::buffer::FixedBuf;
use crate::client::Prepared;
use crate::error::{Error, Kind, RequestError, Stage};
use crate::form::SectionLog;
use crate::proto::conn::{Connection, ExchangeOptions, Notice, Transmit};
use crate::proto::exchange::{BodyStep, Exchange};
use crate::proto::head::HeaderField;
use crate::proto::response::ResponseHead;
use crate::proto::tunnel::{TunnelSetup, TunnelStep};
use crate::trace::{Direction, Trace, TracedConnection, WireTap};
use crate::transport::tls::{Carrier, TlsConfig, TlsStream};
use crate::transport::{Transport, tcp};

/// Frames sent in a row before the loop looks for response bytes, so a fast peer that never
/// blocks our writes cannot hide an early response.
const FRAMES_BETWEEN_CHECKS: u32 = 16;

/// Reads in a row before the loop looks at the rest of the world again.
const READS_BETWEEN_CHECKS: u32 = 16;

/// The token of the loop's waker (the resolver thread's wake-up call).
const WAKER: Token = Token(usize::MAX);

/// The poller, its event storage and the readiness seen per token, allocated once.
#[derive(Debug)]
pub(crate) struct EventLoop {
    poll: Poll,
    events: Events,
    /// Readiness seen and not yet taken: (token, readable, writable).
    ready: Vec<(Token, bool, bool)>,
    waker: Arc<Waker>,
}

impl EventLoop {
    pub(crate) fn new() -> Result<Self, Error> {
        let poll = Poll::new().map_err(|e| Error::io(Stage::Connect, e))?;
        let waker = Waker::new(poll.registry(), WAKER).map_err(|e| Error::io(Stage::Connect, e))?;
        Ok(EventLoop {
            poll,
            events: Events::with_capacity(16),
            ready: Vec::with_capacity(4),
            waker: Arc::new(waker),
        })
    }

    /// Waits up to `timeout` (`None`: until an event) and keeps the readiness of every token.
    pub(crate) fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        for event in self.events.iter() {
            if event.token() == WAKER {
                continue;
            }
            let readable = event.is_readable() || event.is_read_closed() || event.is_error();
            let writable = event.is_writable() || event.is_write_closed() || event.is_error();
            match self.ready.iter_mut().find(|(t, ..)| *t == event.token()) {
                Some(entry) => {
                    entry.1 |= readable;
                    entry.2 |= writable;
                }
                None => self.ready.push((event.token(), readable, writable)),
            }
        }
        Ok(())
    }

    /// Wakes this loop from another thread (the resolver's).
    pub(crate) fn waker(&self) -> &Arc<Waker> {
        &self.waker
    }

    /// The registry that sockets of this loop are registered with.
    pub(crate) fn registry(&self) -> &Registry {
        self.poll.registry()
    }

    /// The readiness seen for `token` since it was last taken: (readable, writable).
    pub(crate) fn take(&mut self, token: Token) -> (bool, bool) {
        match self.ready.iter().position(|(t, ..)| *t == token) {
            Some(i) => {
                let (_, r, w) = self.ready.swap_remove(i);
                (r, w)
            }
            None => (false, false),
        }
    }
}

/// Holds the trace of a connection; only says whether there is one when printed.
pub(crate) struct TraceSlot(pub(crate) Option<Box<dyn Trace>>);

impl std::fmt::Debug for TraceSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Some(trace)"
        } else {
            "None"
        })
    }
}

/// Holds a capture's tap on the socket's bytes; only says whether there is one when printed.
#[derive(Clone, Default)]
pub(crate) struct TapSlot(Option<Arc<dyn WireTap>>);

impl std::fmt::Debug for TapSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Some(tap)"
        } else {
            "None"
        })
    }
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

impl ProgressSlot {
    fn report(&mut self, machine: &Connection, now: Instant) {
        let sent = machine.progress().body_bytes_sent;
        let elapsed = machine.elapsed(now);
        (self.callback)(&UploadProgress {
            body_bytes_sent: sent,
            total: self.total,
            elapsed,
            bytes_per_second: sent as f64 / elapsed.as_secs_f64().max(1e-9),
        });
    }
}

impl std::fmt::Debug for ProgressSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProgressSlot")
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

/// The socket side of a connection, as far as it got.
#[derive(Debug)]
enum Link {
    /// The resolver thread will answer on this channel.
    Resolving(tcp::Answer),
    /// A TCP connect to `addrs[index]` is in flight.
    Connecting {
        addrs: Vec<SocketAddr>,
        index: usize,
        stream: TcpStream,
        last_error: Option<Error>,
    },
    /// Connected to an HTTP proxy (over TLS for an https proxy); the CONNECT is on.
    Tunneling {
        carrier: Carrier,
        setup: Box<TunnelSetup>,
    },
    Handshaking(Box<TlsStream>),
    Open(Transport),
}

/// Where the connection goes: scheme, host, port, and the TLS settings for https.
#[derive(Debug, Clone)]
pub(crate) struct Destination {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `host:port` as shown in messages.
    pub(crate) authority: String,
    pub(crate) tls: Option<TlsConfig>,
    /// The name the TLS handshake checks the certificate for (the origin's, or an https
    /// proxy's).
    pub(crate) tls_name: String,
    /// The caller's resolver, if it gave one.
    pub(crate) resolver: Option<tcp::Resolver>,
    /// The CONNECT to run once connected to the proxy, before TLS and the exchange.
    pub(crate) tunnel: Option<Box<TunnelSetup>>,
    /// `host`/`port` are an HTTP proxy's.
    pub(crate) via_proxy: bool,
    /// TLS to an https proxy, and the name its certificate must have, before the CONNECT
    /// (TLS inside TLS follows for an https origin).
    pub(crate) proxy_tls: Option<(TlsConfig, String)>,
    /// Which proxy and why, for the trace.
    pub(crate) route_reason: Option<String>,
}

/// A connection kept open between uploads: its socket and its machine, in the idle phase.
#[derive(Debug)]
pub(crate) struct IdleLink {
    transport: Transport,
    machine: Connection,
    peer: String,
    token: Token,
    remote: Option<SocketAddr>,
}

impl IdleLink {
    /// The token its socket is registered under.
    pub(crate) fn token(&self) -> Token {
        self.token
    }

    /// For a connection that sat idle: true if it is still open and nothing came on it.
    pub(crate) fn is_idle_and_open(&self) -> bool {
        self.transport.is_idle_and_open()
    }

    /// Ends it (TLS close_notify; the socket closes when dropped).
    pub(crate) fn close(mut self) {
        self.transport.close();
    }
}

/// What one call of [`Driven::pump`] came to.
#[derive(Debug)]
pub(crate) enum Pumped {
    /// The final response head arrived.
    Head(ResponseHead),
    /// Nothing more can happen until an event or the machine's next timer.
    Blocked,
    /// More can be done now; look at events (without waiting) and pump again.
    Busy,
}

/// One connection driven by the loop: the socket side, the machine, the upload's buffer,
/// its readiness, and the caller's hooks (trace, progress, body observers).
#[derive(Debug)]
pub(crate) struct Driven {
    token: Token,
    link: Link,
    destination: Destination,
    machine: Connection,
    buf: FixedBuf,
    /// The exchange waiting for the connection to open.
    pending: Option<(Exchange, ExchangeOptions, Instant)>,
    /// A final response that came before the body was complete, held back while the body
    /// goes on to its end (exchange rule 4): the caller sees it only once the body is sent.
    early_head: Option<ResponseHead>,
    peer: String,
    readable: bool,
    writable: bool,
    closed: bool,
    trace: TraceSlot,
    progress: Option<ProgressSlot>,
    body_hooks: BodyHooks,
    /// The source is a file descriptor the loop watches: when it would block, the body
    /// waits for [`Driven::on_source_ready`] instead of a retry timer.
    source_watched: bool,
    /// The address the TCP connection went to, once it is open.
    remote: Option<SocketAddr>,
    /// The sections of a form body, by which its traced bytes are labelled.
    body_sections: Option<SectionLog>,
    /// A capture trace's tap on the socket's own bytes, for a socket that carries TLS (to
    /// the origin or to an https proxy): it sees the records, and a CONNECT before them.
    wire_tap: TapSlot,
}

impl Driven {
    /// A new connection for the `prepared` attempt, under `token`: resolving starts at
    /// once, and the resolver wakes the loop through `waker` when it answers.
    pub(crate) fn connect(
        waker: &Arc<Waker>,
        token: Token,
        prepared: Prepared,
        machine: Connection,
        upload_started: Instant,
    ) -> Result<Driven, Error> {
        let Prepared {
            exchange,
            options,
            destination,
            buf,
            ..
        } = prepared;
        let answer = tcp::resolve_in_background(
            &destination.host,
            destination.port,
            destination.resolver.as_ref(),
            waker,
        )
        .map_err(|e| {
            let e = e.with_peer(destination.authority.clone());
            if destination.via_proxy {
                e.with_via_proxy()
            } else {
                e
            }
        })?;
        let peer = destination.authority.clone();
        let mut driven = Driven::with(token, Link::Resolving(answer), destination, machine, buf);
        driven.pending = Some((exchange, options, upload_started));
        driven.peer = peer;
        Ok(driven)
    }

    /// A connection in `link`'s state with nothing seen or set on it yet.
    fn with(
        token: Token,
        link: Link,
        destination: Destination,
        machine: Connection,
        buf: FixedBuf,
    ) -> Driven {
        Driven {
            token,
            link,
            destination,
            machine,
            buf,
            pending: None,
            early_head: None,
            peer: String::new(),
            readable: false,
            writable: false,
            closed: false,
            trace: TraceSlot(None),
            progress: None,
            body_hooks: BodyHooks::default(),
            source_watched: false,
            remote: None,
            body_sections: None,
            wire_tap: TapSlot::default(),
        }
    }

    /// The `prepared` attempt on a connection kept from an earlier upload.
    pub(crate) fn reuse(
        idle: IdleLink,
        prepared: Prepared,
        upload_started: Instant,
        now: Instant,
    ) -> Driven {
        let IdleLink {
            transport,
            mut machine,
            peer,
            token,
            remote,
        } = idle;
        let Prepared {
            exchange,
            options,
            destination,
            buf,
            ..
        } = prepared;
        machine.start_exchange(exchange, options, upload_started, now);
        let mut driven = Driven::with(token, Link::Open(transport), destination, machine, buf);
        driven.peer = peer;
        driven.remote = remote;
        // Its reuse began with a peek that found nothing to read: a read now would only
        // return WouldBlock. The next event says when something comes.
        driven.writable = true;
        driven
    }

    /// The source is a file descriptor registered with the loop, which will call
    /// [`Driven::on_source_ready`] when it is readable.
    pub(crate) fn watch_source(&mut self) {
        self.source_watched = true;
    }

    /// The watched source became readable.
    pub(crate) fn on_source_ready(&mut self) {
        self.machine.on_source_ready();
    }

    /// Runs `hooks` on the body as it is read and at its end.
    pub(crate) fn set_body_hooks(&mut self, hooks: BodyHooks) {
        self.body_hooks = hooks;
    }

    /// Labels the traced body bytes by the sections of a form (boundaries, part headers,
    /// part data) instead of as plain body.
    pub(crate) fn set_body_sections(&mut self, sections: SectionLog) {
        self.body_sections = Some(sections);
    }

    /// Calls `callback` as body bytes go out; `total` is the body's size when known.
    pub(crate) fn set_progress(&mut self, callback: ProgressCallback, total: Option<u64>) {
        self.progress = Some(ProgressSlot { callback, total });
    }

    /// Sends the wire trace of this connection to `trace`.
    pub(crate) fn set_trace(&mut self, trace: Box<dyn Trace>) {
        self.trace = TraceSlot(Some(trace));
        // A kept connection is already open: the trace learns of it now, not at a connect.
        let open = match &self.link {
            Link::Open(Transport::Plain(tcp)) => Some((tcp, false)),
            Link::Open(Transport::Tls(tls)) => Some((tls.tcp(), true)),
            _ => None,
        };
        let Some((tcp, tls)) = open else { return };
        let (Ok(local), Ok(remote)) = (tcp.local_addr(), tcp.peer_addr()) else {
            return;
        };
        let tap = self.announce_connection(TracedConnection::new(local, remote, tls, true));
        self.wire_tap = TapSlot(tap.clone());
        if let Link::Open(Transport::Tls(tls)) = &mut self.link {
            tls.set_tap(tap);
        }
    }

    /// Tells the trace, if any, of `connection`; for TLS, the tap it wants on the records,
    /// if it wants one.
    fn announce_connection(&mut self, connection: TracedConnection) -> Option<Arc<dyn WireTap>> {
        let trace = self.trace.0.as_deref_mut()?;
        trace.connected(&connection);
        if connection.tls {
            trace.wire_tap()
        } else {
            None
        }
    }

    /// The trace back, for the next attempt of the same upload.
    pub(crate) fn take_trace(&mut self) -> Option<Box<dyn Trace>> {
        self.trace.0.take()
    }

    /// A note in the trace, if there is one.
    pub(crate) fn trace_note(&mut self, direction: Direction, text: impl FnOnce() -> String) {
        if let Some(trace) = self.trace.0.as_deref_mut() {
            trace.note(direction, &text());
        }
    }

    /// Which proxy the connection goes through and why, when it goes through one.
    pub(crate) fn route_reason(&self) -> Option<String> {
        self.destination.route_reason.clone()
    }

    pub(crate) fn machine(&self) -> &Connection {
        &self.machine
    }

    pub(crate) fn buf(&self) -> &FixedBuf {
        &self.buf
    }

    pub(crate) fn peer(&self) -> &str {
        &self.peer
    }

    /// The address the connection went to, once it is open.
    pub(crate) fn remote(&self) -> Option<SocketAddr> {
        self.remote
    }

    pub(crate) fn transport(&self) -> Option<&Transport> {
        match &self.link {
            Link::Open(transport) => Some(transport),
            _ => None,
        }
    }

    /// The readiness the loop saw for this connection's token.
    pub(crate) fn absorb(&mut self, event_loop: &mut EventLoop) {
        let (readable, writable) = event_loop.take(self.token);
        self.readable |= readable;
        self.writable |= writable;
    }

    /// How long the loop may sleep before this connection needs it again.
    pub(crate) fn wait_time(&self, now: Instant) -> Option<Duration> {
        self.machine
            .poll_timeout()
            .map(|at| at.saturating_duration_since(now))
    }

    fn fail(&self, err: Error) -> Error {
        err.with_peer(self.peer.clone())
    }

    /// Fires the machine's timers if one is due, and acts on what they decided.
    fn run_timers(&mut self, registry: &Registry, now: Instant) -> Result<(), Error> {
        if self.machine.poll_timeout().is_some_and(|at| now >= at) {
            self.machine.handle_timeout(now).map_err(|e| self.fail(e))?;
        }
        while let Some(notice) = self.machine.poll_notice() {
            match notice {
                Notice::NextAddress => self.next_address(registry, now, None)?,
                Notice::ContinueWaitOver(waited) => self.trace_note(Direction::Sent, || {
                    format!("no 100 Continue after {waited:.1?}: sending the body anyway")
                }),
            }
        }
        Ok(())
    }

    /// Does what the sockets and the source allow at `now`; never blocks (but for the
    /// source's own `read`, which the loop cannot see into).
    pub(crate) fn pump(
        &mut self,
        registry: &Registry,
        source: &mut dyn Read,
        now: Instant,
    ) -> Result<Pumped, Error> {
        let pumped = self.pump_links(registry, source, now);
        // A proxy that cannot be resolved or reached is told apart from a target that
        // cannot (curl's exit 5 and 7).
        let pumped = pumped.map_err(|e| match e.stage() {
            Stage::Resolve | Stage::Connect if self.destination.via_proxy => e.with_via_proxy(),
            _ => e,
        });
        // Whatever ends an upload after an early 2xx (a stall, a deadline), the answer it
        // had is part of what went wrong.
        match (&self.early_head, pumped) {
            (Some(head), Err(e)) => Err(e.with_early_answer(head.status.as_u16())),
            (_, pumped) => pumped,
        }
    }

    fn pump_links(
        &mut self,
        registry: &Registry,
        source: &mut dyn Read,
        now: Instant,
    ) -> Result<Pumped, Error> {
        self.run_timers(registry, now)?;
        loop {
            match &mut self.link {
                Link::Resolving(answer) => match answer.try_recv() {
                    Ok(Ok(addrs)) if addrs.is_empty() => {
                        return Err(self.fail(Error::new(Stage::Resolve, Kind::NoAddresses)));
                    }
                    Ok(Ok(addrs)) => self.start_attempt(registry, addrs, 0, None, now)?,
                    Ok(Err(e)) => return Err(self.fail(Error::io(Stage::Resolve, e))),
                    Err(mpsc::TryRecvError::Empty) => return Ok(Pumped::Blocked),
                    Err(mpsc::TryRecvError::Disconnected) => {
                        return Err(self.fail(Error::io(
                            Stage::Resolve,
                            io::Error::other("the resolver thread ended without an answer"),
                        )));
                    }
                },
                Link::Connecting { stream, .. } => {
                    if !self.writable {
                        return Ok(Pumped::Blocked);
                    }
                    self.writable = false;
                    // mio's recipe: a writable socket is connected if it has no error and
                    // a peer; NotConnected is a wake-up before the handshake finished.
                    let outcome = match stream.take_error() {
                        Ok(Some(e)) | Err(e) => Err(e),
                        Ok(None) => match stream.peer_addr() {
                            Ok(addr) => Ok(Some(addr)),
                            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(None),
                            Err(e) => Err(e),
                        },
                    };
                    match outcome {
                        Ok(None) => return Ok(Pumped::Blocked),
                        Ok(Some(addr)) => self.on_connected(addr, now)?,
                        Err(e) => {
                            let err = Error::io(Stage::Connect, e);
                            self.next_address(registry, now, Some(err))?;
                        }
                    }
                }
                Link::Tunneling { .. } => {
                    if !self.pump_tunnel(now)? {
                        return Ok(Pumped::Blocked);
                    }
                }
                Link::Handshaking(tls) => match tls.handshake() {
                    Ok(true) => {
                        let Link::Handshaking(tls) =
                            std::mem::replace(&mut self.link, Link::Open(Transport::Gone))
                        else {
                            unreachable!()
                        };
                        if self.destination.tunnel.is_some() {
                            // That was the handshake with an https proxy: the CONNECT
                            // goes inside it.
                            let summary = tls.summary();
                            self.trace_note(Direction::Sent, || format!("proxy {summary}"));
                            self.start_tunnel(Carrier::Tls(tls));
                            continue;
                        }
                        self.link = Link::Open(Transport::Tls(tls));
                        // The handshake may have run its round trips within this one
                        // pump (a fast peer): its end is now, not when the pump began.
                        let now = Instant::now();
                        self.machine.on_handshake_done(now);
                        if let Some(summary) = self.transport().and_then(Transport::tls_summary) {
                            self.trace_note(Direction::Sent, || summary.to_string());
                        }
                        self.start_pending(now);
                    }
                    Ok(false) => {
                        self.readable = false;
                        self.writable = false;
                        return Ok(Pumped::Blocked);
                    }
                    Err(e) => {
                        return Err(self.fail(Error::io(Stage::TlsHandshake, e)));
                    }
                },
                Link::Open(_) => return self.pump_exchange(source, now),
            }
        }
    }

    /// Starts the TCP attempt to `addrs[index]`, or fails with the last error when none is
    /// left.
    fn start_attempt(
        &mut self,
        registry: &Registry,
        addrs: Vec<SocketAddr>,
        mut index: usize,
        mut last_error: Option<Error>,
        now: Instant,
    ) -> Result<(), Error> {
        while let Some(&addr) = addrs.get(index) {
            self.machine.on_connect_attempt(now, addrs.len() - index);
            match TcpStream::connect(addr) {
                Ok(mut stream) => {
                    // Readable too: once connected, the same registration serves the exchange.
                    let registered = registry.register(
                        &mut stream,
                        self.token,
                        Interest::READABLE | Interest::WRITABLE,
                    );
                    match registered {
                        Ok(()) => {
                            self.writable = false;
                            self.readable = false;
                            self.link = Link::Connecting {
                                addrs,
                                index,
                                stream,
                                last_error,
                            };
                            return Ok(());
                        }
                        Err(e) => last_error = Some(Error::io(Stage::Connect, e)),
                    }
                }
                Err(e) => {
                    last_error =
                        Some(Error::io(Stage::Connect, e).with_peer(self.attempt_peer(addr)))
                }
            }
            index += 1;
        }
        Err(last_error
            .unwrap_or_else(|| Error::new(Stage::Connect, Kind::NoAddresses))
            .with_peer(self.destination.authority.clone())
            .with_progress(self.machine.progress()))
    }

    /// Who a failed TCP attempt to `addr` was to: the address, and the proxy's name when it
    /// is a proxy's.
    fn attempt_peer(&self, addr: SocketAddr) -> String {
        if self.destination.via_proxy {
            format!("{} at {addr}", self.destination.authority)
        } else {
            addr.to_string()
        }
    }

    /// The attempt in flight failed (`err`) or ran out of its share of time: on to the next.
    fn next_address(
        &mut self,
        registry: &Registry,
        now: Instant,
        err: Option<Error>,
    ) -> Result<(), Error> {
        let Link::Connecting {
            addrs,
            index,
            last_error,
            stream,
        } = std::mem::replace(&mut self.link, Link::Open(Transport::Gone))
        else {
            return Ok(());
        };
        drop(stream);
        let addr = addrs[index];
        let err = err
            .map(|e| e.with_peer(self.attempt_peer(addr)))
            .or(last_error)
            .or_else(|| {
                Some(
                    Error::new(
                        Stage::Connect,
                        Kind::Timeout(
                            crate::error::TimeoutKind::Connect,
                            self.machine.elapsed(now),
                        ),
                    )
                    .with_peer(self.attempt_peer(addr)),
                )
            });
        self.start_attempt(registry, addrs, index + 1, err, now)
    }

    fn on_connected(&mut self, addr: SocketAddr, now: Instant) -> Result<(), Error> {
        let Link::Connecting { stream, .. } =
            std::mem::replace(&mut self.link, Link::Open(Transport::Gone))
        else {
            unreachable!("on_connected while connecting")
        };
        self.peer = format!("{} at {addr}", self.destination.authority);
        self.remote = Some(addr);
        // Chunks are large already; what Nagle would hold back is the small last chunk.
        stream
            .set_nodelay(true)
            .map_err(|e| self.fail(Error::io(Stage::Connect, e)))?;
        let peer = self.peer.clone();
        self.trace_note(Direction::Sent, || format!("connected to {peer}"));
        // The socket carries TLS when the origin or the proxy speaks it; a capture then
        // records the socket's bytes (the tap) rather than the plaintext.
        let tls_on_socket = self.destination.tls.is_some() || self.destination.proxy_tls.is_some();
        self.wire_tap = TapSlot(match stream.local_addr() {
            Ok(local) => {
                self.announce_connection(TracedConnection::new(local, addr, tls_on_socket, false))
            }
            Err(_) => None,
        });
        self.readable = true;
        self.writable = true;
        if let Some((config, name)) = self.destination.proxy_tls.take() {
            // An https proxy: TLS to it first, the CONNECT inside that.
            self.machine.on_connected(now, true);
            let frame_capacity = self.buf.send_region().len();
            let tls = TlsStream::new(
                &config,
                &name,
                stream,
                frame_capacity,
                self.wire_tap.0.clone(),
            )
            .map_err(|e| self.fail(Error::request(e)))?;
            self.link = Link::Handshaking(Box::new(tls));
            return Ok(());
        }
        if self.destination.tunnel.is_some() {
            self.machine.on_connected(now, true);
            self.start_tunnel(Carrier::Tcp(stream));
            return Ok(());
        }
        self.after_connect(Carrier::Tcp(stream), now)
    }

    /// Starts the CONNECT over `carrier`, the connection to the proxy.
    fn start_tunnel(&mut self, carrier: Carrier) {
        let Some(setup) = self.destination.tunnel.take() else {
            return;
        };
        let to = setup.to().to_owned();
        let peer = self.peer.clone();
        self.trace_note(Direction::Sent, || {
            format!("proxy: CONNECT to {to} through {peer}")
        });
        self.machine.on_tunnel(true);
        self.link = Link::Tunneling { carrier, setup };
    }

    /// The socket carries HTTP to the origin now (connected, or tunnelled): TLS if the
    /// destination wants it, else the exchange starts.
    fn after_connect(&mut self, carrier: Carrier, now: Instant) -> Result<(), Error> {
        let tls = self.destination.tls.clone();
        if !matches!(self.machine.phase(), crate::proto::conn::Phase::Handshaking) {
            self.machine.on_connected(now, tls.is_some());
        } else if tls.is_none() {
            self.machine.on_tunnel_opened(now);
        }
        match tls {
            None => {
                self.link = Link::Open(match carrier {
                    Carrier::Tcp(stream) => Transport::Plain(stream),
                    Carrier::Tls(to_proxy) => Transport::Tls(to_proxy),
                });
                self.start_pending(now);
            }
            Some(config) => {
                let frame_capacity = self.buf.send_region().len();
                // Only the session on the socket shows the tap its records: inside an https
                // proxy's session, the outer one does.
                let tap = match carrier {
                    Carrier::Tcp(_) => self.wire_tap.0.clone(),
                    Carrier::Tls(_) => None,
                };
                let tls = TlsStream::over(
                    &config,
                    &self.destination.tls_name,
                    carrier,
                    frame_capacity,
                    tap,
                )
                .map_err(|e| self.fail(Error::request(e)))?;
                self.link = Link::Handshaking(Box::new(tls));
            }
        }
        Ok(())
    }

    /// Moves the CONNECT on as far as the socket allows; true when the tunnel opened and
    /// the link moved on (to TLS or the exchange), false when it must wait.
    fn pump_tunnel(&mut self, now: Instant) -> Result<bool, Error> {
        let Link::Tunneling { carrier, setup } = &mut self.link else {
            return Ok(true);
        };
        if self.writable {
            // Records an https proxy's session still holds go first.
            match io::Write::flush(carrier) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) => return Err(Error::io(Stage::Proxy, e).with_peer(self.peer.clone())),
            }
        }
        while self.writable && !setup.to_send().is_empty() {
            match io::Write::write(carrier, setup.to_send()) {
                Ok(0) => {
                    let err = Error::io(Stage::Proxy, io::ErrorKind::WriteZero.into());
                    return Err(err.with_peer(self.peer.clone()));
                }
                Ok(n) => match self.trace.0.as_deref_mut() {
                    Some(trace) => {
                        if let (Some(tap), Carrier::Tcp(_)) = (&self.wire_tap.0, &*carrier) {
                            tap.wire(Direction::Sent, &setup.to_send()[..n]);
                        }
                        setup.on_sent(n, &mut |part, bytes| {
                            trace.bytes(Direction::Sent, part, bytes)
                        })
                    }
                    None => setup.on_sent(n, &mut |_, _| {}),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(Stage::Proxy, e).with_peer(self.peer.clone())),
            }
        }
        while self.readable {
            let space = setup
                .recv_space(&mut self.buf)
                .map_err(|e| e.with_peer(self.peer.clone()))?;
            match io::Read::read(carrier, space) {
                Ok(0) => return Err(setup.on_peer_closed().with_peer(self.peer.clone())),
                Ok(n) => {
                    if let (Some(tap), Carrier::Tcp(_)) = (&self.wire_tap.0, &*carrier) {
                        tap.wire(Direction::Received, &space[..n]);
                    }
                    let step = match self.trace.0.as_deref_mut() {
                        Some(trace) => setup.on_received(&mut self.buf, n, &mut |part, bytes| {
                            trace.bytes(Direction::Received, part, bytes)
                        }),
                        None => setup.on_received(&mut self.buf, n, &mut |_, _| {}),
                    };
                    match step.map_err(|e| e.with_peer(self.peer.clone()))? {
                        TunnelStep::NeedMore => {}
                        TunnelStep::Open => {
                            let Link::Tunneling { carrier, .. } =
                                std::mem::replace(&mut self.link, Link::Open(Transport::Gone))
                            else {
                                unreachable!()
                            };
                            self.machine.on_tunnel(false);
                            self.readable = true;
                            self.writable = true;
                            let peer = self.peer.clone();
                            self.trace_note(Direction::Received, || {
                                format!("proxy: tunnel open through {peer}")
                            });
                            self.after_connect(carrier, now)?;
                            return Ok(true);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(Stage::Proxy, e).with_peer(self.peer.clone())),
            }
        }
        Ok(false)
    }

    fn start_pending(&mut self, now: Instant) {
        if let Some((exchange, options, upload_started)) = self.pending.take() {
            self.machine
                .start_exchange(exchange, options, upload_started, now);
        }
    }

    fn pump_exchange(&mut self, source: &mut dyn Read, now: Instant) -> Result<Pumped, Error> {
        // While an early answer is held, its body stays unread (in the socket, not in the
        // buffer) until the request is sent.
        if self.early_head.is_none()
            && let Some(head) = self.pump_recv(now)?
        {
            let early = self.machine.exchange().and_then(Exchange::answered_early);
            if early.is_none() || self.request_sent() {
                return Ok(Pumped::Head(head));
            }
            self.trace_note(Direction::Received, || {
                format!(
                    "answered {} before the body was complete: the body goes on to its end",
                    head.status.as_u16()
                )
            });
            self.early_head = Some(head);
        }
        let busy = match self.pump_send(source, now)? {
            Ok(busy) => busy,
            Err(send_error) => return self.salvage_response(send_error, now),
        };
        if self.early_head.is_some() && self.request_sent() {
            return Ok(Pumped::Head(self.early_head.take().expect("checked")));
        }
        // Bytes may still wait to be read (the read cap): look again without sleeping.
        let may_read = self.early_head.is_none() && self.readable && !self.machine.peer_closed();
        if busy || may_read {
            Ok(Pumped::Busy)
        } else {
            Ok(Pumped::Blocked)
        }
    }

    fn request_sent(&self) -> bool {
        self.machine.exchange().is_some_and(Exchange::request_sent)
    }

    /// Sends until the transport blocks, the machine says wait, or it is time to look
    /// around (`Ok(Ok(true))`). An I/O error from the transport comes back as `Ok(Err(..))`,
    /// so the caller can still look for a response the server sent before it closed.
    fn pump_send(
        &mut self,
        source: &mut dyn Read,
        mut now: Instant,
    ) -> Result<Result<bool, io::Error>, Error> {
        let Link::Open(transport) = &mut self.link else {
            return Ok(Ok(false));
        };
        let mut frames = 0;
        while self.writable {
            // Bytes the transport still holds (TLS records) go before anything new.
            match transport.flush() {
                Ok(true) => {}
                Ok(false) => {
                    self.writable = false;
                    break;
                }
                Err(e) => return Ok(Err(e)),
            }
            let transmit = self
                .machine
                .poll_transmit(&mut self.buf, now)
                .map_err(|e| e.with_peer(self.peer.clone()))?;
            match transmit {
                Transmit::Write(bytes) => match transport.write(bytes) {
                    Ok(0) => return Ok(Err(io::ErrorKind::WriteZero.into())),
                    Ok(n) => {
                        if let (Some(trace), Some(exchange)) =
                            (self.trace.0.as_deref_mut(), self.machine.exchange_mut())
                        {
                            // The payload of a write starts at the body bytes sent so far.
                            let offset = exchange.progress().body_bytes_sent;
                            let sections = self.body_sections.as_ref();
                            exchange.label_sent(&bytes[..n], &mut |part, sent| match sections {
                                Some(sections) if part.is_data() => {
                                    sections.split(offset, sent, &mut |part, piece| {
                                        trace.bytes(Direction::Sent, part, piece)
                                    })
                                }
                                _ => trace.bytes(Direction::Sent, part, sent),
                            });
                        }
                        self.machine.on_sent(n, now);
                        if let Some(slot) = &mut self.progress {
                            slot.report(&self.machine, now);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Ok(Err(e)),
                },
                Transmit::Fill(space) => {
                    if frames == FRAMES_BETWEEN_CHECKS {
                        return Ok(Ok(true));
                    }
                    frames += 1;
                    let read = read_retrying(source, space);
                    // The read may have taken any time: the deadlines are judged after it.
                    now = Instant::now();
                    let n = match read {
                        Ok(n) => {
                            for observe in &mut self.body_hooks.observers {
                                observe(&space[..n]);
                            }
                            n
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            if self.source_watched {
                                self.machine.on_source_waiting();
                            } else {
                                self.machine.on_source_blocked(now);
                            }
                            return Ok(Ok(false));
                        }
                        Err(e) => {
                            let err = Error::io(Stage::ReadSource, e)
                                .with_progress(self.machine.progress());
                            return Err(err.with_peer(self.peer.clone()));
                        }
                    };
                    if n == 0 {
                        for make in std::mem::take(&mut self.body_hooks.late_trailers) {
                            let fields = make().map_err(|e| {
                                Error::request(e)
                                    .with_progress(self.machine.progress())
                                    .with_peer(self.peer.clone())
                            })?;
                            self.machine.add_trailers(fields);
                        }
                    }
                    self.machine
                        .on_filled(&mut self.buf, n, now)
                        .map_err(|e| e.with_peer(self.peer.clone()))?;
                }
                Transmit::Wait | Transmit::Done => break,
            }
        }
        Ok(Ok(false))
    }

    /// Reads what the transport has. Returns the final response head once it is complete.
    fn pump_recv(&mut self, now: Instant) -> Result<Option<ResponseHead>, Error> {
        let Link::Open(transport) = &mut self.link else {
            return Ok(None);
        };
        // Bounded like the send side: a server that never lets a read block must not keep
        // the loop from its deadlines.
        let mut reads = 0;
        while self.readable && !self.machine.peer_closed() && reads < READS_BETWEEN_CHECKS {
            reads += 1;
            if self.machine.recv_space(&mut self.buf).is_empty() && !self.buf.grow_recv() {
                // Only when the body decoder holds a full region of metadata, which the
                // limits rule out; refuse rather than spin.
                let err = io::Error::other("receive buffer full without progress");
                return Err(self
                    .machine
                    .fail(Kind::Io(err))
                    .with_peer(self.peer.clone()));
            }
            let space = self.machine.recv_space(&mut self.buf);
            match transport.read(space) {
                Ok(0) => {
                    let has_response = self.machine.exchange().is_some_and(Exchange::has_response);
                    self.machine
                        .on_peer_closed()
                        .map_err(|e| e.with_peer(self.peer.clone()))?;
                    if has_response {
                        return Ok(None);
                    }
                }
                Ok(n) => {
                    let parsed = match self.trace.0.as_deref_mut() {
                        Some(trace) => self.machine.on_received(&self.buf, n, now, &mut |p, b| {
                            trace.bytes(Direction::Received, p, b)
                        }),
                        None => self.machine.on_received(&self.buf, n, now, &mut |_, _| {}),
                    };
                    let head = parsed.map_err(|e| e.with_peer(self.peer.clone()))?;
                    if head.is_some() {
                        if let (Some(framing), Some(trace)) =
                            (self.machine.response_framing(), self.trace.0.as_deref_mut())
                        {
                            trace.note(Direction::Received, &format!("body framing: {framing}"));
                        }
                        return Ok(head);
                    }
                    if self.machine.exchange().is_some_and(Exchange::has_response) {
                        // Body bytes: let the reader decode them before reading more.
                        return Ok(None);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let no_response = self.machine.exchange().is_none_or(|ex| !ex.has_response());
                    let kind = if no_response && is_connection_lost(&e) {
                        Kind::ClosedBeforeResponse(Some(e))
                    } else {
                        Kind::Io(e)
                    };
                    return Err(self.machine.fail(kind).with_peer(self.peer.clone()));
                }
            }
        }
        Ok(None)
    }

    /// The transport failed while sending. A server that refuses a body often answers and
    /// closes at once; its answer may already be waiting, and is the better result.
    /// An early answer that let the body go on (a 2xx) is no answer to a body that then
    /// failed to go out: that is an error of its own.
    fn salvage_response(&mut self, send_error: io::Error, now: Instant) -> Result<Pumped, Error> {
        let salvaged = match self.early_head.take() {
            Some(head) => Some(head),
            None => {
                self.readable = true;
                self.pump_recv(now).ok().flatten()
            }
        };
        let answered_early = self.machine.exchange().and_then(Exchange::answered_early);
        match (salvaged, answered_early) {
            (Some(head), None) => Ok(Pumped::Head(head)),
            (Some(_), Some(status)) => {
                let kind = Kind::AnsweredEarlyThenLost {
                    status,
                    cause: send_error,
                };
                Err(self.fail(self.machine.fail(kind)))
            }
            (None, _) => {
                let err = Error::io(Stage::Send, send_error).with_progress(self.machine.progress());
                Err(self.fail(err))
            }
        }
    }

    /// The next piece of the response body at `now`; `None` when it must wait for bytes.
    pub(crate) fn pump_body(
        &mut self,
        registry: &Registry,
        now: Instant,
    ) -> Result<Option<BodyStep>, Error> {
        self.run_timers(registry, now)?;
        loop {
            let decoded = match self.trace.0.as_deref_mut() {
                Some(trace) => self.machine.decode_body(&self.buf, &mut |part, got| {
                    trace.bytes(Direction::Received, part, got)
                }),
                None => self.machine.decode_body(&self.buf, &mut |_, _| {}),
            };
            let step = decoded.map_err(|e| self.fail(e))?;
            if step == BodyStep::End {
                self.machine.on_response_end(now);
            }
            if step != BodyStep::NeedMore {
                return Ok(Some(step));
            }
            if self.machine.peer_closed() {
                self.machine.on_peer_closed().map_err(|e| self.fail(e))?;
                self.machine.on_response_end(now);
                return Ok(Some(BodyStep::End));
            }
            if !self.readable {
                return Ok(None);
            }
            let received_before = self.machine.progress().wire_bytes_received;
            self.pump_recv(now)?;
            if self.machine.progress().wire_bytes_received == received_before
                && !self.machine.peer_closed()
            {
                // Nothing came (it would block, or the read cap): the caller waits or polls.
                return Ok(None);
            }
        }
    }

    /// Ends the exchange once the response was read (`body_done`): the connection comes
    /// back for the next upload if both sides may keep it, else it is closed.
    /// The buffer comes back too, for the next upload.
    pub(crate) fn finish(mut self, body_done: bool) -> (Option<IdleLink>, FixedBuf) {
        let open = matches!(self.link, Link::Open(_)) && !self.closed;
        if open && self.machine.finish_exchange(body_done) {
            let Link::Open(mut transport) =
                std::mem::replace(&mut self.link, Link::Open(Transport::Gone))
            else {
                unreachable!()
            };
            // This upload's trace ends here: the next upload on the connection brings its
            // own tap, or none.
            if let Transport::Tls(tls) = &mut transport {
                tls.set_tap(None);
            }
            let idle = IdleLink {
                transport,
                machine: self.machine,
                peer: std::mem::take(&mut self.peer),
                token: self.token,
                remote: self.remote,
            };
            return (Some(idle), self.buf);
        }
        self.close();
        (None, self.buf)
    }

    /// The token this connection's socket is registered under.
    pub(crate) fn token(&self) -> Token {
        self.token
    }

    /// Readiness the caller's loop saw for this connection's token.
    pub(crate) fn on_readiness(&mut self, readable: bool, writable: bool) {
        self.readable |= readable;
        self.writable |= writable;
    }

    /// Ends the session: TLS close_notify, then the socket closes when dropped.
    pub(crate) fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.machine.close();
            if let Link::Open(transport) = &mut self.link {
                transport.close();
            }
        }
    }
}

/// Failures that mean the peer went away (closed or reset), as opposed to a local problem.
pub(crate) fn is_connection_lost(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
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
