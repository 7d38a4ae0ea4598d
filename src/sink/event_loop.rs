//! The plain-TCP sink: every connection on one thread, driven by a mio event loop, with
//! one shared read buffer. A connection keeps only what a read left unfinished (a partial
//! head or chunk-size line, usually empty) and its pending reply, so a thousand idle or
//! busy connections cost a thousand small structs, not a thousand buffers or threads.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use super::session::Session;
use super::{IDLE_TIMEOUT, LINGER, READ_BUFFER, REJECT_QUEUE, Report, SharedTrace, accept_backoff};
use crate::trace::Direction;

const LISTENER: Token = Token(usize::MAX);
/// Reads one connection may make before the others get a turn: enough for a fast upload to
/// fill its share of the loop, few enough that one upload cannot starve the rest.
const READS_PER_TURN: usize = 8;
/// How often idle connections and finished lingers are looked for. The timeouts are
/// seconds long, so a quarter of a second late is nothing, and a sweep is cheap.
const SWEEP: Duration = Duration::from_millis(250);
/// A connection past the cap gets this long to take its 503.
const REJECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A partial line left after a read is kept in a buffer that may grow to a limit; past
/// this capacity it is given back once empty, so one odd request does not pin memory.
const CARRY_KEEP: usize = 4096;

/// What a connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Reading requests and sending replies.
    Serving,
    /// Our side is shut; reading and dropping what still arrives until this instant.
    Lingering { until: Instant },
}

struct Conn {
    stream: TcpStream,
    session: Session,
    /// Received bytes the session has not used yet: a partial line, or what followed a
    /// request whose reply is still being sent.
    carry: Vec<u8>,
    /// The carry was kept while a reply was waiting, so the session has not seen it all.
    carry_unread: bool,
    /// How much of the session's output has been written.
    written: usize,
    stage: Stage,
    /// The last read or write that moved bytes; a connection idle too long is closed.
    active_at: Instant,
    idle_limit: Duration,
    /// False for a connection past the cap, which holds no slot.
    counted: bool,
    /// The peer has shut its side (an event said so): read on until end of stream, since
    /// no further event will come for it.
    read_closed: bool,
}

/// What [`Conn::pump`] leaves behind.
#[derive(Debug, PartialEq, Eq)]
enum Pumped {
    /// Waiting for the socket to be readable or writable again.
    Waiting,
    /// More to read at once: pump again after the others have had a turn.
    Again,
    /// Finished: close it.
    Done,
}

impl Conn {
    /// Moves bytes until the socket would block, the turn ends, or the connection is done.
    ///
    /// A read that returns less than it had room for emptied the socket's receive queue,
    /// and bytes arriving after it raise a new edge-triggered event, so the pump stops
    /// there instead of making one more read only to hear `WouldBlock` (as nginx does with
    /// epoll). That read would be a system call for every wake-up of a busy upload. The
    /// exception is end of stream, which raises no later event: see `read_closed`.
    fn pump(&mut self, shared: &mut [u8], on_report: &dyn Fn(&Report)) -> Pumped {
        let mut reads = 0;
        let mut drained = false;
        loop {
            match self.flush() {
                Ok(true) => {}
                Ok(false) => return Pumped::Waiting,
                Err(_) => return Pumped::Done,
            }
            if let Stage::Lingering { .. } = self.stage {
                return match self.drain(shared, &mut reads, drained) {
                    Ok(true) => Pumped::Again,
                    Ok(false) => Pumped::Waiting,
                    Err(()) => Pumped::Done,
                };
            }
            if self.session.is_closed() {
                let _ = self.stream.shutdown(Shutdown::Write);
                self.stage = Stage::Lingering {
                    until: Instant::now() + LINGER,
                };
                continue;
            }
            if !self.session.wants_input() {
                // A reply always has bytes, and flush sent them all: never here.
                return Pumped::Done;
            }
            if self.carry_unread {
                // What followed the request just answered may hold the next one.
                let used = self.session.receive(&self.carry, on_report);
                self.carry.drain(..used);
                self.carry_unread = !self.session.wants_input();
                continue;
            }
            if drained {
                return Pumped::Waiting;
            }
            if reads == READS_PER_TURN {
                return Pumped::Again;
            }
            reads += 1;
            let kept = self.carry.len();
            if kept >= shared.len() {
                // The limits keep every line far shorter than the buffer: never here.
                return Pumped::Done;
            }
            shared[..kept].copy_from_slice(&self.carry);
            let n = match (&self.stream).read(&mut shared[kept..]) {
                // The peer is done: a request it left unfinished gets no reply.
                Ok(0) => return Pumped::Done,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Pumped::Waiting,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Pumped::Done,
            };
            self.active_at = Instant::now();
            drained = kept + n < shared.len() && !self.read_closed;
            let input = &shared[..kept + n];
            let used = self.session.receive(input, on_report);
            self.carry.clear();
            if self.carry.capacity() > CARRY_KEEP && input.len() - used <= CARRY_KEEP {
                self.carry.shrink_to(CARRY_KEEP);
            }
            self.carry.extend_from_slice(&input[used..]);
            self.carry_unread = !self.session.wants_input() && !self.carry.is_empty();
        }
    }

    /// Writes pending output; Ok(true) once none is left (and the session has been told),
    /// Ok(false) when the socket is full.
    fn flush(&mut self) -> io::Result<bool> {
        loop {
            let pending = &self.session.output()[self.written..];
            if pending.is_empty() {
                if self.written > 0 {
                    self.written = 0;
                    self.session.sent();
                }
                return Ok(true);
            }
            match (&self.stream).write(pending) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.written += n;
                    self.active_at = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads and drops during the lingering close. Ok(true): the turn ended with more to
    /// read; Ok(false): the socket would block; Err: end of stream or an error.
    fn drain(&mut self, shared: &mut [u8], reads: &mut usize, drained: bool) -> Result<bool, ()> {
        if drained {
            return Ok(false);
        }
        loop {
            if *reads == READS_PER_TURN {
                return Ok(true);
            }
            *reads += 1;
            match (&self.stream).read(shared) {
                Ok(0) => return Err(()),
                Ok(n) if n < shared.len() && !self.read_closed => return Ok(false),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(()),
            }
        }
    }

    fn expired(&self, now: Instant) -> bool {
        match self.stage {
            Stage::Lingering { until } => now >= until,
            Stage::Serving => now.duration_since(self.active_at) >= self.idle_limit,
        }
    }
}

/// The connections, by token: a slab with a free list, so tokens are reused and stay small.
#[derive(Default)]
struct Conns {
    slots: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Connections holding a slot of the cap.
    serving: usize,
    /// Connections past the cap, waiting to take their 503.
    rejecting: usize,
}

impl Conns {
    fn insert(&mut self, conn: Conn) -> usize {
        if conn.counted {
            self.serving += 1;
        } else {
            self.rejecting += 1;
        }
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(conn);
                i
            }
            None => {
                self.slots.push(Some(conn));
                self.slots.len() - 1
            }
        }
    }

    fn remove(&mut self, i: usize, poll: &Poll) {
        if let Some(mut conn) = self.slots.get_mut(i).and_then(Option::take) {
            let _ = poll.registry().deregister(&mut conn.stream);
            if conn.counted {
                self.serving -= 1;
            } else {
                self.rejecting -= 1;
            }
            self.free.push(i);
        }
    }
}

/// Serves plain TCP forever on this thread. Returns only if the poller cannot be made.
pub(super) fn serve(
    listener: std::net::TcpListener,
    max_connections: usize,
    trace: Option<SharedTrace>,
    max_body: Option<u64>,
    on_report: &dyn Fn(&Report),
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut listener = TcpListener::from_std(listener);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut shared = vec![0u8; READ_BUFFER].into_boxed_slice();
    let mut conns = Conns::default();
    // Connections with more to read than their last turn allowed.
    let mut again: Vec<usize> = Vec::new();
    let mut turn: Vec<usize> = Vec::new();
    let mut backoff = Duration::ZERO;
    let mut accept_at: Option<Instant> = None;
    let mut next_sweep = Instant::now() + SWEEP;
    loop {
        let now = Instant::now();
        let mut timeout = next_sweep.saturating_duration_since(now);
        if let Some(at) = accept_at {
            timeout = timeout.min(at.saturating_duration_since(now));
        }
        if !again.is_empty() {
            timeout = Duration::ZERO;
        }
        if let Err(e) = poll.poll(&mut events, Some(timeout))
            && e.kind() != io::ErrorKind::Interrupted
        {
            return Err(e);
        }
        let mut accept_now = false;
        std::mem::swap(&mut turn, &mut again);
        for event in &events {
            if event.token() == LISTENER {
                accept_now = accept_at.is_none();
            } else {
                if event.is_read_closed()
                    && let Some(Some(conn)) = conns.slots.get_mut(event.token().0)
                {
                    conn.read_closed = true;
                }
                turn.push(event.token().0);
            }
        }
        if accept_at.is_some_and(|at| Instant::now() >= at) {
            accept_at = None;
            accept_now = true;
        }
        if accept_now {
            // Edge-triggered: accept until the backlog is empty, or pause while resources
            // are short (then try again later, whether or not a new event comes).
            loop {
                let (stream, _) = match listener.accept() {
                    Ok(accepted) => accepted,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        backoff = accept_backoff(&e, backoff);
                        if backoff.is_zero() {
                            continue;
                        }
                        accept_at = Some(Instant::now() + backoff);
                        break;
                    }
                };
                backoff = Duration::ZERO;
                if let Some(i) = admit(stream, &mut conns, &poll, max_connections, &trace, max_body)
                {
                    turn.push(i);
                }
            }
        }
        turn.sort_unstable();
        turn.dedup();
        for &i in &turn {
            let Some(Some(conn)) = conns.slots.get_mut(i) else {
                continue;
            };
            match conn.pump(&mut shared, on_report) {
                Pumped::Waiting => {}
                Pumped::Again => again.push(i),
                Pumped::Done => conns.remove(i, &poll),
            }
        }
        turn.clear();
        let now = Instant::now();
        if now >= next_sweep {
            next_sweep = now + SWEEP;
            for i in 0..conns.slots.len() {
                if conns.slots[i].as_ref().is_some_and(|c| c.expired(now)) {
                    conns.remove(i, &poll);
                }
            }
        }
    }
}

/// Registers a new connection, as served or as rejected past the cap; None if it was
/// dropped (too many waiting for their 503, or it could not be registered).
fn admit(
    mut stream: TcpStream,
    conns: &mut Conns,
    poll: &Poll,
    max_connections: usize,
    trace: &Option<SharedTrace>,
    max_body: Option<u64>,
) -> Option<usize> {
    let counted = conns.serving < max_connections;
    if !counted && conns.rejecting >= REJECT_QUEUE {
        // Too many waiting for their 503 already: dropping is the cheap answer.
        return None;
    }
    stream.set_nodelay(true).ok()?;
    let session = if counted {
        if let (Some(trace), Ok(peer)) = (trace, stream.peer_addr()) {
            trace.note(Direction::Received, &format!("connection from {peer}"));
        }
        Session::new(trace.clone(), max_body)
    } else {
        Session::rejecting()
    };
    let i = conns.free.last().copied().unwrap_or(conns.slots.len());
    poll.registry()
        .register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )
        .ok()?;
    let conn = Conn {
        stream,
        session,
        carry: Vec::new(),
        carry_unread: false,
        written: 0,
        stage: Stage::Serving,
        active_at: Instant::now(),
        idle_limit: if counted {
            IDLE_TIMEOUT
        } else {
            REJECT_TIMEOUT
        },
        counted,
        read_closed: false,
    };
    let inserted = conns.insert(conn);
    debug_assert_eq!(inserted, i);
    Some(inserted)
}
