//! Many uploads on one thread: [`Uploads`] runs a set of uploads on one mio `Poll`, its own
//! or the caller's, and hands back each result as it finishes.
//!
//! Each upload goes through the same [`Plan`] as a blocking [`Upload::send`] (redirects,
//! the one retry, the 417 fallback) and each connection through the same machine and
//! driver; this module only schedules them:
//!
//! 1. Uploads wait in a queue until a slot is free: at most `max_active` run at once, and
//!    at most `max_per_host` to one host and port (0: no such limit). A redirect to
//!    another host keeps the slot of the host it started with.
//! 2. An upload that starts takes one buffer from a pool of spare ones (or makes one) and
//!    gives it back when it ends, so the set never holds more buffers than `max_active`.
//! 3. A connection whose response was read to its end waits in a pool of idle ones and is
//!    reused by the next upload to the same origin; the pool holds at most `max_active`.
//! 4. Work is done in rounds: every upload that can move is pumped once per round, for a
//!    bounded amount of work (16 frames, 16 reads), in the order they became ready, so no
//!    upload starves while another has bytes to send.
//! 5. Every upload has its own deadlines, kept by its machine; the set keeps one heap of
//!    the earliest instant each upload must be woken at, re-armed only when it gets
//!    earlier, so a wake-up costs O(log n) whatever the number of uploads.
//! 6. One upload's failure (a stalled server, a reset, a bad response, a timeout) ends
//!    that upload alone.
//! 7. At most `max_connecting` connections are opened at once; queued uploads wait for
//!    them, so a burst of SYNs does not overflow the server's accept queue.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::{self, Read, Seek};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Events, Poll, Registry, Token, Waker};

use crate::buffer::FixedBuf;
use crate::client::{Body, Client, Origin, Plan, Upload, Verdict};
use crate::driver::{Driven, IdleLink, Pumped};
use crate::error::{Error, Progress, RequestError, Result, Stage};
use crate::form::Form;
use crate::proto::conn::{Connection, Phase};
use crate::proto::exchange::{BodyStep, Exchange};
use crate::proto::response::ResponseHead;
use crate::transfer::{Attempt, Transfer};
use crate::transport::tls::TlsSummary;

/// Uploads run at once unless [`Uploads::max_active`] says otherwise (curl's
/// `--parallel-max` default).
pub const DEFAULT_MAX_ACTIVE: usize = 50;

/// Connections opened at once unless [`Uploads::max_connecting`] says otherwise.
pub const DEFAULT_MAX_CONNECTING: usize = 64;

/// Response body bytes kept per upload unless [`Uploads::keep_response_body`] says
/// otherwise.
pub const DEFAULT_KEPT_RESPONSE: usize = 64 * 1024;

/// Pumps of one upload's response body per round (rule 4).
const BODY_STEPS_PER_ROUND: usize = 16;

/// Names one upload of a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadId {
    slot: u32,
    generation: u32,
}

impl std::fmt::Display for UploadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "upload {}.{}", self.slot, self.generation)
    }
}

/// An upload of the set that ended, and how.
#[derive(Debug)]
pub struct Finished {
    /// The upload, as [`Uploads::add`] named it.
    pub id: UploadId,
    /// The server's answer, or what ended the upload.
    pub result: Result<Completed>,
}

/// The answer to an upload of a set, its body read to the end.
#[derive(Debug)]
#[non_exhaustive]
pub struct Completed {
    /// The status code.
    pub status: http::StatusCode,
    /// The reason phrase as the server sent it.
    pub reason: String,
    /// The response headers.
    pub headers: http::HeaderMap,
    /// The start of the response body, up to [`Uploads::keep_response_body`] bytes.
    pub body: Vec<u8>,
    /// The whole response body's length; more than `body.len()` when it was cut.
    pub body_len: u64,
    /// False when the server answered (300 or above) before the whole body was sent.
    pub upload_complete: bool,
    /// How far the upload and its response got.
    pub progress: Progress,
    /// True when the upload went over a connection kept from an earlier one.
    pub connection_reused: bool,
    /// `host:port at address` of the server.
    pub peer: String,
    /// The TLS version, cipher suite and ALPN protocol, for https.
    pub tls: Option<TlsSummary>,
    /// What the upload took, as curl's `--write-out` reports it.
    pub transfer: Transfer,
}

/// One upload of the set.
struct Task<'a> {
    id: UploadId,
    upload: Upload<'a>,
    body: Body<'a>,
    plan: Plan,
    run: Run,
    /// The instant of this task's entry in the timer heap, if it has one (rule 5).
    armed: Option<Instant>,
    /// True while it waits in the round's queue.
    scheduled: bool,
    /// The host and port whose slot it holds while it runs (rule 1).
    host: Option<HostKey>,
    /// The buffer of its last attempt, for the next one.
    spare: Option<FixedBuf>,
    /// Where its current attempt goes, for the idle pool.
    origin: Option<Origin>,
    /// Its connection is being opened (resolve, connect, TLS handshake): counted against
    /// `max_connecting`.
    connecting: bool,
    /// The token its watched source is registered under, while it runs.
    source_token: Option<Token>,
}

/// Where a task is.
enum Run {
    Queued,
    // Boxed: a queued upload's slot stays small (its options and source), and only the
    // uploads that run hold a connection's state.
    ToHead {
        driven: Box<Driven>,
        reused: bool,
    },
    Body {
        driven: Box<Driven>,
        reused: bool,
        head: ResponseHead,
        kept: Vec<u8>,
        body_len: u64,
    },
    /// Being pumped (taken out of its slot meanwhile), or over.
    Moving,
}

/// A host and port, shared: a task and the per-host count hold the same one, and keeping it
/// aside for each round (in case of a panic) must not allocate.
type HostKey = std::rc::Rc<(String, u16)>;

impl Run {
    /// The connection of a running task.
    fn driven(&self) -> Option<&Driven> {
        match self {
            Run::ToHead { driven, .. } | Run::Body { driven, .. } => Some(driven),
            Run::Queued | Run::Moving => None,
        }
    }

    fn driven_mut(&mut self) -> Option<&mut Driven> {
        match self {
            Run::ToHead { driven, .. } | Run::Body { driven, .. } => Some(driven),
            Run::Queued | Run::Moving => None,
        }
    }
}

/// Who a connection token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Free,
    Task(u32),
    Idle,
    /// The watched source of a task.
    Source(u32),
}

/// What a round of work on a task came to.
enum Moved {
    /// It can do more now: pump it again next round.
    Busy,
    /// It waits for an event or its timer.
    Blocked,
}

/// A set of uploads run on one thread. See the module docs for how they are scheduled.
///
/// ```
/// # let sink = chunkwire::sink::Sink::bind("127.0.0.1:0")?.spawn()?;
/// let client = chunkwire::Client::new();
/// let mut uploads = client.uploads()?.max_active(2);
/// let feeds = [&b"camera one"[..], &b"camera two"[..], &b"camera three"[..]];
/// let mut ids = Vec::new();
/// for (i, feed) in feeds.into_iter().enumerate() {
///     ids.push(uploads.add(client.upload(&sink.url(&format!("/feed/{i}"))), feed));
/// }
/// let mut done = 0;
/// for finished in uploads.by_ref() {
///     let completed = finished.result?;
///     assert_eq!(completed.status, 200);
///     assert!(ids.contains(&finished.id));
///     done += 1;
/// }
/// assert_eq!(done, 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Uploads<'a> {
    client: &'a Client,
    /// The set's own poller; `None` when it runs in the caller's loop.
    own: Option<(Poll, Events)>,
    registry: Registry,
    waker: Arc<Waker>,
    /// The waker's token; connection tokens follow it, up to the end of the range.
    first_token: usize,
    token_count: usize,
    /// Boxed, so a round moves a pointer, not a task, and an empty slot is 16 bytes.
    slots: Vec<(u32, Option<Box<Task<'a>>>)>,
    free_slots: Vec<u32>,
    queue: VecDeque<UploadId>,
    owners: Vec<Owner>,
    free_owners: Vec<usize>,
    idle: Vec<(Origin, IdleLink)>,
    spare_buffers: Vec<FixedBuf>,
    round: VecDeque<u32>,
    timers: BinaryHeap<Reverse<(Instant, UploadId)>>,
    finished: VecDeque<Finished>,
    max_active: usize,
    max_per_host: usize,
    keep_response: usize,
    active: usize,
    per_host: HashMap<HostKey, usize>,
    unfinished: usize,
    /// Connections being opened now, and the most allowed (rule 7).
    connecting: usize,
    max_connecting: usize,
    /// Something changed that may let a queued upload start (one was added, one ended):
    /// without it the queue is not scanned again, which matters when a per-host limit
    /// holds back thousands of queued uploads.
    queue_changed: bool,
}

impl std::fmt::Debug for Uploads<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploads")
            .field("unfinished", &self.unfinished)
            .field("active", &self.active)
            .field("queued", &self.queue.len())
            .field("idle_connections", &self.idle.len())
            .field("max_active", &self.max_active)
            .field("max_per_host", &self.max_per_host)
            .field("own_loop", &self.own.is_some())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// An empty set of uploads that runs on its own `Poll`, on the calling thread, when
    /// asked for results ([`Uploads::next_finished`], or iterating).
    pub fn uploads(&self) -> Result<Uploads<'_>> {
        let poll = Poll::new().map_err(|e| Error::io(Stage::Connect, e))?;
        let registry = poll
            .registry()
            .try_clone()
            .map_err(|e| Error::io(Stage::Connect, e))?;
        let events = Events::with_capacity(1024);
        Uploads::new(self, Some((poll, events)), registry, 0..usize::MAX - 1)
    }

    /// An empty set of uploads that runs in the caller's own event loop: its sockets are
    /// registered with `registry` under tokens from `tokens` (the first one wakes the loop
    /// when a name resolves; at least two are needed). The caller passes each event to
    /// [`Uploads::handle_event`], then calls [`Uploads::handle_timeout`], and sleeps no
    /// longer than [`Uploads::next_timeout`].
    pub fn uploads_in(&self, registry: &Registry, tokens: Range<usize>) -> Result<Uploads<'_>> {
        if tokens.len() < 2 {
            return Err(RequestError::InvalidOption {
                option: "token range",
                reason: format!("{tokens:?} holds fewer than 2 tokens"),
            }
            .into());
        }
        let registry = registry
            .try_clone()
            .map_err(|e| Error::io(Stage::Connect, e))?;
        Uploads::new(self, None, registry, tokens)
    }
}

impl<'a> Uploads<'a> {
    fn new(
        client: &'a Client,
        own: Option<(Poll, Events)>,
        registry: Registry,
        tokens: Range<usize>,
    ) -> Result<Uploads<'a>> {
        let waker =
            Waker::new(&registry, Token(tokens.start)).map_err(|e| Error::io(Stage::Connect, e))?;
        Ok(Uploads {
            client,
            own,
            registry,
            waker: Arc::new(waker),
            first_token: tokens.start,
            token_count: tokens.len(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            queue: VecDeque::new(),
            owners: Vec::new(),
            free_owners: Vec::new(),
            idle: Vec::new(),
            spare_buffers: Vec::new(),
            round: VecDeque::new(),
            timers: BinaryHeap::new(),
            finished: VecDeque::new(),
            max_active: DEFAULT_MAX_ACTIVE,
            max_per_host: 0,
            keep_response: DEFAULT_KEPT_RESPONSE,
            active: 0,
            per_host: HashMap::new(),
            unfinished: 0,
            connecting: 0,
            max_connecting: DEFAULT_MAX_CONNECTING,
            queue_changed: false,
        })
    }

    /// At most `n` uploads run at once (at least 1); the others wait in the queue.
    pub fn max_active(mut self, n: usize) -> Self {
        self.max_active = n.max(1);
        self
    }

    /// At most `n` connections are being opened at once (resolving, connecting, in the TLS
    /// handshake; at least 1; default [`DEFAULT_MAX_CONNECTING`]): queued uploads wait for
    /// them, so a thousand uploads do not send a thousand SYNs at once and overflow the
    /// server's accept queue, where each dropped one costs a 1 s retransmission.
    pub fn max_connecting(mut self, n: usize) -> Self {
        self.max_connecting = n.max(1);
        self
    }

    /// At most `n` uploads run at once to one host and port; 0 (the default) sets no such
    /// limit.
    pub fn max_per_host(mut self, n: usize) -> Self {
        self.max_per_host = n;
        self
    }

    /// Keeps the first `bytes` of each response body in [`Completed::body`]; the rest is
    /// read and counted, not kept.
    pub fn keep_response_body(mut self, bytes: usize) -> Self {
        self.keep_response = bytes;
        self
    }

    /// Adds an upload of `body`, a stream: it waits in the queue until a slot is free. Its
    /// result comes from [`Uploads::next_finished`] (an invalid URL or option too).
    pub fn add(&mut self, upload: Upload<'a>, body: impl Read + 'a) -> UploadId {
        self.add_body(upload, Ok(Body::Stream(Box::new(body))))
    }

    /// Like [`Uploads::add`], for a body that can be rewound to where it is now, so it can
    /// be sent again after a 307/308 or once more on a failed kept connection.
    pub fn add_seekable(&mut self, upload: Upload<'a>, body: impl Read + Seek + 'a) -> UploadId {
        self.add_body(upload, Body::seekable(body))
    }

    /// Adds an upload of `form` as a `multipart/form-data` body, as [`Upload::send_form`]
    /// sends it (its length, its resending after a 307/308, its trace labels).
    pub fn add_form(&mut self, mut upload: Upload<'a>, form: Form<'a>) -> UploadId {
        let body = upload.attach_form(form);
        self.add_body(upload, body)
    }

    /// Like [`Uploads::add`], for a body read from a file descriptor in non-blocking mode
    /// (a pipe, a socket, standard input set non-blocking): the set registers it with the
    /// loop, so when it has nothing (`WouldBlock`) its upload sleeps until it is readable,
    /// without a retry timer, while its deadlines still run. A descriptor in blocking mode
    /// would block the whole set in `read`: set `O_NONBLOCK` first.
    pub fn add_watched(
        &mut self,
        upload: Upload<'a>,
        body: impl Read + std::os::fd::AsRawFd + 'a,
    ) -> UploadId {
        let fd = body.as_raw_fd();
        self.add_body(
            upload,
            Ok(Body::Watched {
                reader: Box::new(body),
                fd,
            }),
        )
    }

    /// Queues the upload, or gives its result at once when its body or its URL is refused.
    fn add_body(&mut self, upload: Upload<'a>, body: Result<Body<'a>>) -> UploadId {
        let id = self.take_slot();
        self.unfinished += 1;
        match body.and_then(|body| Ok((body, Plan::new(&upload, Instant::now())?))) {
            Ok((body, plan)) => {
                self.slots[id.slot as usize].1 = Some(Box::new(Task {
                    id,
                    upload,
                    body,
                    plan,
                    run: Run::Queued,
                    armed: None,
                    scheduled: false,
                    host: None,
                    spare: None,
                    origin: None,
                    source_token: None,
                    connecting: false,
                }));
                self.queue.push_back(id);
                self.queue_changed = true;
            }
            Err(e) => {
                self.finished.push_back(Finished { id, result: Err(e) });
                self.release_slot(id);
            }
        }
        id
    }

    fn take_slot(&mut self) -> UploadId {
        match self.free_slots.pop() {
            Some(slot) => UploadId {
                slot,
                generation: self.slots[slot as usize].0,
            },
            None => {
                let slot = u32::try_from(self.slots.len()).expect("fewer than 2^32 uploads");
                self.slots.push((0, None));
                UploadId {
                    slot,
                    generation: 0,
                }
            }
        }
    }

    fn release_slot(&mut self, id: UploadId) {
        let entry = &mut self.slots[id.slot as usize];
        entry.1 = None;
        entry.0 = entry.0.wrapping_add(1);
        self.free_slots.push(id.slot);
    }

    fn task(&self, id: UploadId) -> Option<&Task<'a>> {
        match self.slots.get(id.slot as usize) {
            Some((generation, Some(task))) if *generation == id.generation => Some(task),
            _ => None,
        }
    }

    /// Uploads added and not yet finished (queued or running), results not yet taken
    /// excluded.
    pub fn len(&self) -> usize {
        self.unfinished - self.finished.len()
    }

    /// True when no upload is queued or running.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Uploads running now (not queued).
    pub fn active(&self) -> usize {
        self.active
    }

    /// How far an upload got; `None` once it finished, or for an unknown id.
    pub fn progress(&self, id: UploadId) -> Option<Progress> {
        self.task(id).map(progress_of)
    }

    /// Stops an upload, queued or running, without disturbing the others; its connection
    /// is closed and no result is given for it. False if it had finished already.
    pub fn cancel(&mut self, id: UploadId) -> bool {
        let Some(mut task) = self.take_task(id) else {
            return false;
        };
        self.queue.retain(|queued| *queued != id);
        match std::mem::replace(&mut task.run, Run::Moving) {
            Run::ToHead { driven, .. } | Run::Body { driven, .. } => self.retire(driven),
            Run::Queued | Run::Moving => {}
        }
        self.end(task);
        self.unfinished -= 1;
        true
    }

    fn take_task(&mut self, id: UploadId) -> Option<Box<Task<'a>>> {
        match self.slots.get_mut(id.slot as usize) {
            Some((generation, task)) if *generation == id.generation => task.take(),
            _ => None,
        }
    }

    /// The next upload to finish, running the set on this thread until one does; `None`
    /// when none is left. In the caller's loop ([`Client::uploads_in`]) it never waits:
    /// it gives a result that is ready, or `None`.
    pub fn next_finished(&mut self) -> Option<Finished> {
        loop {
            if let Some(finished) = self.poll_finished() {
                return Some(finished);
            }
            if self.unfinished == 0 || self.own.is_none() {
                return None;
            }
            self.turn();
        }
    }

    /// A result that is ready, without running anything.
    pub fn poll_finished(&mut self) -> Option<Finished> {
        let finished = self.finished.pop_front()?;
        self.unfinished -= 1;
        Some(finished)
    }

    /// Runs every upload to its end; the results wait for [`Uploads::poll_finished`].
    pub fn run(&mut self) {
        while self.unfinished > self.finished.len() && self.own.is_some() {
            self.turn();
        }
    }

    /// One turn of the set's own loop: a round of work, then a wait for events.
    fn turn(&mut self) {
        self.handle_timeout(Instant::now());
        if !self.finished.is_empty() {
            return;
        }
        let timeout = self.next_timeout(Instant::now());
        let Some((mut poll, mut events)) = self.own.take() else {
            return;
        };
        let polled = poll.poll(&mut events, timeout);
        for event in events.iter() {
            self.handle_event(event);
        }
        self.own = Some((poll, events));
        if let Err(e) = polled
            && e.kind() != io::ErrorKind::Interrupted
        {
            self.fail_all(e);
        }
    }

    /// The poller failed: nothing can move any more, so every upload ends with that.
    fn fail_all(&mut self, e: io::Error) {
        let message = e.to_string();
        let ids: Vec<UploadId> = self
            .slots
            .iter()
            .filter_map(|(_, task)| task.as_ref().map(|t| t.id))
            .collect();
        for id in ids {
            if let Some(mut task) = self.take_task(id) {
                let progress = progress_of(&task);
                match std::mem::replace(&mut task.run, Run::Moving) {
                    Run::ToHead { driven, .. } | Run::Body { driven, .. } => self.retire(driven),
                    Run::Queued | Run::Moving => {}
                }
                let err = Error::io(Stage::Connect, io::Error::new(e.kind(), message.clone()))
                    .with_progress(progress);
                self.conclude(task, Err(err));
            }
        }
        self.queue.clear();
    }

    /// Takes one event of the caller's loop; false if its token is not one of this set's.
    pub fn handle_event(&mut self, event: &Event) -> bool {
        let token = event.token().0;
        if token < self.first_token || token - self.first_token >= self.token_count {
            return false;
        }
        if token == self.first_token {
            self.wake_resolving();
            return true;
        }
        let index = token - self.first_token - 1;
        let readable = event.is_readable() || event.is_read_closed() || event.is_error();
        let writable = event.is_writable() || event.is_write_closed() || event.is_error();
        match self.owners.get(index).copied() {
            Some(owner @ (Owner::Task(slot) | Owner::Source(slot))) => {
                if let Some((_, Some(task))) = self.slots.get_mut(slot as usize) {
                    if let Some(driven) = task.run.driven_mut() {
                        match owner {
                            Owner::Source(_) => driven.on_source_ready(),
                            _ => driven.on_readiness(readable, writable),
                        }
                    }
                    let id = task.id;
                    self.schedule(id);
                }
            }
            Some(Owner::Idle) => {
                // A kept connection spoke or closed while idle: it cannot be reused.
                if let Some(at) = self.idle.iter().position(|(_, l)| l.token().0 == token)
                    && !self.idle[at].1.is_idle_and_open()
                {
                    let (_, link) = self.idle.remove(at);
                    self.free_owner(link.token());
                    link.close();
                }
            }
            Some(Owner::Free) | None => {}
        }
        true
    }

    /// The resolver answered someone: every upload still resolving looks.
    fn wake_resolving(&mut self) {
        let waiting: Vec<UploadId> = self
            .slots
            .iter()
            .filter_map(|(_, task)| {
                let task = task.as_deref()?;
                match &task.run {
                    Run::ToHead { driven, .. } if driven.machine().phase() == Phase::Resolving => {
                        Some(task.id)
                    }
                    _ => None,
                }
            })
            .collect();
        for id in waiting {
            self.schedule(id);
        }
    }

    fn schedule(&mut self, id: UploadId) {
        if let Some((generation, Some(task))) = self.slots.get_mut(id.slot as usize)
            && *generation == id.generation
            && !task.scheduled
        {
            task.scheduled = true;
            self.round.push_back(id.slot);
        }
    }

    /// How long the caller's loop may sleep before [`Uploads::handle_timeout`] is due:
    /// zero when work is waiting, `None` when only an event can bring any.
    pub fn next_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.round.is_empty() || (self.queue_changed && self.can_start()) {
            return Some(Duration::ZERO);
        }
        self.timers
            .peek()
            .map(|Reverse((at, _))| at.saturating_duration_since(now))
    }

    fn can_start(&self) -> bool {
        self.active < self.max_active && self.connecting < self.max_connecting
    }

    /// Does the work due at `now`: fires due timers, starts queued uploads that have a
    /// slot, and gives one round of work to every upload that can move (rule 4).
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if let Some((generation, Some(task))) = self.slots.get_mut(id.slot as usize)
                && *generation == id.generation
                && task.armed == Some(at)
            {
                task.armed = None;
                self.schedule(id);
            }
        }
        self.start_queued(now);
        for _ in 0..self.round.len() {
            let Some(slot) = self.round.pop_front() else {
                break;
            };
            let Some((generation, Some(task))) = self.slots.get_mut(slot as usize) else {
                continue;
            };
            task.scheduled = false;
            let id = UploadId {
                slot,
                generation: *generation,
            };
            let Some(task) = self.take_task(id) else {
                continue;
            };
            // The source's read may take any time: each upload is judged at its own now.
            let now = Instant::now();
            let held = Held::of(&task);
            let worked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.work_on(task, now);
            }));
            if let Err(panic) = worked {
                // The caller's code (a source's read, a progress callback) panicked, and the
                // upload went with the unwind: give back what it held, so that a caller who
                // catches the panic finds the set whole, then let the panic go on.
                self.forget(held);
                std::panic::resume_unwind(panic);
            }
        }
        // Slots freed this round go to the queue at once.
        self.start_queued(Instant::now());
    }

    fn put_back(&mut self, mut task: Box<Task<'a>>, moved: Moved) {
        let id = task.id;
        if task.connecting && !task_is_connecting(&task) {
            self.connection_opened(&mut task);
        }
        let deadline = task.run.driven().and_then(|d| d.machine().poll_timeout());
        self.slots[id.slot as usize].1 = Some(task);
        let task = self.slots[id.slot as usize].1.as_mut().expect("just put");
        if let Some(at) = deadline
            && task.armed.is_none_or(|armed| at < armed)
        {
            task.armed = Some(at);
            self.timers.push(Reverse((at, id)));
            if self.timers.len() > 64 + 2 * self.slots.len() {
                self.prune_timers();
            }
        }
        match moved {
            Moved::Busy => self.schedule(id),
            Moved::Blocked => {}
        }
    }

    /// Drops the heap entries no task is armed with any more (ended tasks, deadlines that
    /// moved), so the heap stays as small as the set.
    fn prune_timers(&mut self) {
        let slots = &self.slots;
        self.timers.retain(|Reverse((at, id))| {
            matches!(slots.get(id.slot as usize), Some((generation, Some(task)))
                if *generation == id.generation && task.armed == Some(*at))
        });
    }

    fn start_queued(&mut self, now: Instant) {
        if !std::mem::take(&mut self.queue_changed) {
            return;
        }
        let mut at = 0;
        while self.can_start() && at < self.queue.len() {
            let id = self.queue[at];
            let Some(task) = self.task(id) else {
                self.queue.remove(at);
                continue;
            };
            let host = HostKey::new((
                task.plan.target.host.to_ascii_lowercase(),
                task.plan.target.port,
            ));
            if self.max_per_host > 0
                && self.per_host.get(&host).copied().unwrap_or(0) >= self.max_per_host
            {
                at += 1;
                continue;
            }
            // A connection token, and one more for a watched source: without them it waits
            // (a caller's token range may be smaller than `max_active`).
            let needed = 1 + usize::from(task.body.watched_fd().is_some());
            if self.tokens_free() < needed {
                break;
            }
            self.queue.remove(at);
            let mut task = self.take_task(id).expect("looked up above");
            self.active += 1;
            *self.per_host.entry(host.clone()).or_insert(0) += 1;
            task.host = Some(host);
            task.plan.started = now;
            if let Some(fd) = task.body.watched_fd() {
                match self.watch(task.id.slot, fd) {
                    Ok(token) => task.source_token = Some(token),
                    Err(e) => {
                        self.conclude(task, Err(e));
                        continue;
                    }
                }
            }
            self.begin_attempt(task, now);
        }
    }

    /// Starts the next attempt of `task`: on a kept connection to its origin, or a new one.
    fn begin_attempt(&mut self, mut task: Box<Task<'a>>, now: Instant) {
        let spare = task.spare.take().or_else(|| self.spare_buffers.pop());
        let prepared = match task.upload.prepare(&task.plan, spare, &task.body) {
            Ok(prepared) => prepared,
            Err(e) => return self.conclude(task, Err(e)),
        };
        task.origin = Some(prepared.origin.clone());
        let (driven, reused) = match self.take_idle(&prepared.origin) {
            Some(link) => {
                let owner = link.token().0 - self.first_token - 1;
                self.owners[owner] = Owner::Task(task.id.slot);
                (
                    Box::new(Driven::reuse(link, prepared, task.plan.started, now)),
                    true,
                )
            }
            None => {
                let Some(token) = self.take_owner(task.id.slot) else {
                    let err = Error::io(
                        Stage::Connect,
                        io::Error::other("no token left in the range given for connections"),
                    );
                    return self.conclude(task, Err(err));
                };
                let machine = Connection::new(self.client.timeouts(), task.plan.started, now);
                match Driven::connect(&self.waker, token, prepared, machine, task.plan.started) {
                    Ok(driven) => {
                        if !task.connecting {
                            task.connecting = true;
                            self.connecting += 1;
                        }
                        (Box::new(driven), false)
                    }
                    Err(e) => {
                        self.free_owner(token);
                        return self.conclude(task, Err(e));
                    }
                }
            }
        };
        let mut driven = driven;
        if task.source_token.is_some() {
            driven.watch_source();
        }
        task.upload.equip(&mut driven, &task.plan, reused);
        task.run = Run::ToHead { driven, reused };
        let id = task.id;
        self.slots[id.slot as usize].1 = Some(task);
        self.schedule(id);
    }

    /// One round of work on `task` (rule 4).
    fn work_on(&mut self, mut task: Box<Task<'a>>, now: Instant) {
        match std::mem::replace(&mut task.run, Run::Moving) {
            Run::ToHead { mut driven, reused } => {
                let mut no_body = io::empty();
                let source: &mut dyn Read = if task.plan.with_body {
                    task.body.reader()
                } else {
                    &mut no_body
                };
                match driven.pump(&self.registry, source, now) {
                    Ok(Pumped::Head(head)) => {
                        let progress = driven.machine().progress();
                        let attempt = Attempt::of(&driven, reused);
                        let verdict = task.plan.after_head(
                            &mut task.upload,
                            &mut task.body,
                            &head,
                            progress,
                            &attempt,
                        );
                        match verdict {
                            Ok(Verdict::Deliver) => {
                                task.run = Run::Body {
                                    driven,
                                    reused,
                                    head,
                                    kept: Vec::new(),
                                    body_len: 0,
                                };
                                self.put_back(task, Moved::Busy);
                            }
                            Ok(Verdict::Again) => {
                                task.upload.take_trace_back(&mut driven);
                                task.spare = Some(self.retire_keep_buffer(driven));
                                self.begin_attempt(task, now);
                            }
                            Err(e) => {
                                self.retire(driven);
                                self.conclude(task, Err(e));
                            }
                        }
                    }
                    Ok(Pumped::Busy) => {
                        task.run = Run::ToHead { driven, reused };
                        self.put_back(task, Moved::Busy);
                    }
                    Ok(Pumped::Blocked) => {
                        task.run = Run::ToHead { driven, reused };
                        self.put_back(task, Moved::Blocked);
                    }
                    Err(e) => {
                        let failure = task.upload.fail_attempt(&mut driven, e, reused);
                        task.spare = Some(self.retire_keep_buffer(driven));
                        match task
                            .plan
                            .after_failure(&mut task.upload, &mut task.body, failure)
                        {
                            Ok(()) => self.begin_attempt(task, now),
                            Err(e) => self.conclude(task, Err(e)),
                        }
                    }
                }
            }
            Run::Body {
                mut driven,
                reused,
                head,
                mut kept,
                mut body_len,
            } => {
                let moved = 'steps: {
                    for _ in 0..BODY_STEPS_PER_ROUND {
                        match driven.pump_body(&self.registry, now) {
                            Ok(Some(BodyStep::Data(range))) => {
                                let bytes = &driven.buf().recv_region()[range];
                                let room = self.keep_response.saturating_sub(kept.len());
                                kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
                                body_len += bytes.len() as u64;
                            }
                            Ok(Some(BodyStep::End)) => {
                                let origin = task.origin.take().expect("set by begin_attempt");
                                let transfer =
                                    task.plan.transfer(Some(&Attempt::of(&driven, reused)), now);
                                let response = (head, kept, body_len, transfer);
                                let completed = self.complete(driven, origin, reused, response);
                                return self.conclude(task, Ok(completed));
                            }
                            Ok(Some(BodyStep::NeedMore)) | Ok(None) => break 'steps Moved::Blocked,
                            Err(e) => {
                                let attempt = Attempt::of(&driven, reused);
                                let transfer = task.plan.transfer(Some(&attempt), now);
                                self.retire(driven);
                                return self.conclude(task, Err(e.with_transfer(transfer)));
                            }
                        }
                    }
                    Moved::Busy
                };
                task.run = Run::Body {
                    driven,
                    reused,
                    head,
                    kept,
                    body_len,
                };
                self.put_back(task, moved);
            }
            Run::Queued | Run::Moving => self.put_back(task, Moved::Blocked),
        }
    }

    /// The response was read to its end: the connection goes to the idle pool if both
    /// sides may keep it, the buffer to the spare ones.
    fn complete(
        &mut self,
        driven: Box<Driven>,
        origin: Origin,
        reused: bool,
        (head, kept, body_len, transfer): (ResponseHead, Vec<u8>, u64, Transfer),
    ) -> Completed {
        let progress = driven.machine().progress();
        let upload_complete = driven
            .machine()
            .exchange()
            .is_some_and(Exchange::request_sent);
        let peer = driven.peer().to_owned();
        let tls = driven
            .transport()
            .and_then(crate::transport::Transport::tls_summary);
        let token = driven.token();
        let (idle, buf) = (*driven).finish(true);
        self.spare(buf);
        match idle {
            Some(link) => self.keep_idle(origin, link),
            None => self.free_owner(token),
        }
        Completed {
            status: head.status,
            reason: head.reason,
            headers: head.headers,
            body: kept,
            body_len,
            upload_complete,
            progress,
            connection_reused: reused,
            peer,
            tls,
            transfer,
        }
    }

    fn keep_idle(&mut self, origin: Origin, link: IdleLink) {
        if self.idle.len() >= self.max_active {
            let (_, oldest) = self.idle.remove(0);
            self.free_owner(oldest.token());
            oldest.close();
        }
        let owner = link.token().0 - self.first_token - 1;
        self.owners[owner] = Owner::Idle;
        self.idle.push((origin, link));
    }

    /// The kept connection to `origin` that is still open, if any; closed ones are dropped.
    fn take_idle(&mut self, origin: &Origin) -> Option<IdleLink> {
        while let Some(at) = self.idle.iter().rposition(|(o, _)| o == origin) {
            let (_, link) = self.idle.remove(at);
            if link.is_idle_and_open() {
                return Some(link);
            }
            self.free_owner(link.token());
            link.close();
        }
        None
    }

    /// What an upload taken away by a panic held.
    fn forget(&mut self, held: Held) {
        if self.task(held.id).is_some() {
            return; // It was put back before the panic: nothing was lost.
        }
        self.give_back(&held);
        self.unfinished -= 1;
        self.release_slot(held.id);
    }

    /// What an upload that ends held: its tokens, its watched source's registration (the
    /// descriptor may be the caller's and live on), its slots in the limits.
    fn give_back(&mut self, held: &Held) {
        if let Some(fd) = held.watched_fd {
            let _ = self.registry.deregister(&mut mio::unix::SourceFd(&fd));
        }
        for token in held.tokens.into_iter().flatten() {
            self.free_owner(token);
        }
        if let Some(host) = &held.host {
            self.active -= 1;
            if let Some(count) = self.per_host.get_mut(host) {
                *count -= 1;
                if *count == 0 {
                    self.per_host.remove(host);
                }
            }
        }
        if held.connecting {
            self.connecting -= 1;
        }
        self.queue_changed = true;
    }

    /// Tokens a new connection or source could take now: never used, given back, or held
    /// by an idle connection that would give its own up.
    fn tokens_free(&self) -> usize {
        let capacity = self.token_count - 1;
        let held = self.owners.len() - self.free_owners.len();
        capacity - held + self.idle.len()
    }

    /// Registers the source descriptor of task `slot` for readability.
    fn watch(&mut self, slot: u32, fd: std::os::fd::RawFd) -> Result<Token> {
        let token = self.take_owner(slot).ok_or_else(|| {
            Error::io(
                Stage::ReadSource,
                io::Error::other("no token left in the range given for sources"),
            )
        })?;
        let index = token.0 - self.first_token - 1;
        self.owners[index] = Owner::Source(slot);
        let registered = self.registry.register(
            &mut mio::unix::SourceFd(&fd),
            token,
            mio::Interest::READABLE,
        );
        if let Err(e) = registered {
            self.free_owner(token);
            return Err(Error::io(Stage::ReadSource, e));
        }
        Ok(token)
    }

    /// A connection token for a new connection of task `slot`.
    fn take_owner(&mut self, slot: u32) -> Option<Token> {
        let index = match self.free_owners.pop() {
            Some(index) => index,
            None => {
                if self.owners.len() + 1 >= self.token_count {
                    // Out of tokens: an idle connection gives its own up.
                    if self.idle.is_empty() {
                        return None;
                    }
                    let (_, oldest) = self.idle.remove(0);
                    let token = oldest.token();
                    oldest.close();
                    self.free_owner(token);
                    return self.take_owner(slot);
                }
                self.owners.push(Owner::Free);
                self.owners.len() - 1
            }
        };
        self.owners[index] = Owner::Task(slot);
        Some(Token(self.first_token + 1 + index))
    }

    fn free_owner(&mut self, token: Token) {
        let index = token.0 - self.first_token - 1;
        if self.owners.get(index).is_some_and(|o| *o != Owner::Free) {
            self.owners[index] = Owner::Free;
            self.free_owners.push(index);
        }
    }

    /// Closes a connection that is done with, and keeps its buffer for the next upload.
    fn retire(&mut self, driven: Box<Driven>) {
        let buf = self.retire_keep_buffer(driven);
        self.spare(buf);
    }

    fn retire_keep_buffer(&mut self, driven: Box<Driven>) -> FixedBuf {
        let token = driven.token();
        let (idle, buf) = (*driven).finish(false);
        debug_assert!(idle.is_none(), "an unfinished exchange is never kept");
        self.free_owner(token);
        buf
    }

    fn spare(&mut self, buf: FixedBuf) {
        if self.spare_buffers.len() < self.max_active {
            self.spare_buffers.push(buf);
        }
    }

    /// Ends `task` with `result`: its slot and host slot are freed for the queue.
    fn conclude(&mut self, mut task: Box<Task<'a>>, result: Result<Completed>) {
        if let Some(buf) = task.spare.take() {
            self.spare(buf);
        }
        let id = task.id;
        self.end(task);
        self.finished.push_back(Finished { id, result });
    }

    /// A connection of `task` finished opening (or the task left it): the next queued
    /// upload may open one.
    fn connection_opened(&mut self, task: &mut Task<'a>) {
        task.connecting = false;
        self.connecting -= 1;
        self.queue_changed = true;
    }

    fn end(&mut self, task: Box<Task<'a>>) {
        // Given back before the source is dropped, so its registration goes first.
        let held = Held::of(&task);
        self.give_back(&held);
        drop(task);
        self.release_slot(held.id);
        if self.active == 0 && self.queue.is_empty() {
            // Nothing runs: what is left in the heap would only wake the loop for nothing.
            self.timers.clear();
        }
    }
}

/// Runs the set on this thread and yields each upload as it finishes (see
/// [`Uploads::next_finished`]).
impl Iterator for Uploads<'_> {
    type Item = Finished;

    fn next(&mut self) -> Option<Finished> {
        self.next_finished()
    }
}

/// What a task holds in the set's accounts: given back when it ends, and kept aside while
/// it is worked on in case the caller's code panics.
struct Held {
    id: UploadId,
    host: Option<HostKey>,
    connecting: bool,
    tokens: [Option<Token>; 2],
    watched_fd: Option<std::os::fd::RawFd>,
}

impl Held {
    fn of(task: &Task<'_>) -> Held {
        let link = task.run.driven().map(Driven::token);
        Held {
            id: task.id,
            host: task.host.clone(),
            connecting: task.connecting,
            tokens: [link, task.source_token],
            watched_fd: task.source_token.and(task.body.watched_fd()),
        }
    }
}

/// A set dropped with uploads still running leaves nothing registered with a caller's
/// registry: watched descriptors may be the caller's and live on (sockets close with
/// their uploads).
impl Drop for Uploads<'_> {
    fn drop(&mut self) {
        for task in self.slots.iter().filter_map(|(_, task)| task.as_deref()) {
            if let (Some(_), Some(fd)) = (task.source_token, task.body.watched_fd()) {
                let _ = self.registry.deregister(&mut mio::unix::SourceFd(&fd));
            }
        }
    }
}

/// Whether the task's connection is still being opened.
fn task_is_connecting(task: &Task<'_>) -> bool {
    task.run.driven().is_some_and(|driven| {
        matches!(
            driven.machine().phase(),
            Phase::Resolving | Phase::Connecting | Phase::Handshaking
        )
    })
}

/// How far a task got (nothing yet while queued).
fn progress_of(task: &Task<'_>) -> Progress {
    task.run
        .driven()
        .map_or_else(Progress::default, |d| d.machine().progress())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_upload_holds_no_connection_state() {
        // Thousands may wait in the queue: their slots hold options and a source only.
        let task = std::mem::size_of::<Task<'_>>();
        assert!(task < 1024, "a task slot is {task} bytes");
        assert!(
            std::mem::size_of::<Driven>() > task / 2,
            "the connection is boxed"
        );
    }
}
