//! The public blocking API: a [`Client`] holds the options, [`Client::upload`] builds one
//! request, [`Upload::send`] streams a body through the event loop and returns the
//! [`Response`], whose body is read on demand.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mio::Token;

use crate::buffer::FixedBuf;
use crate::driver::{BodyHooks, Connection, EventLoop, ProgressCallback, Timeouts, UploadProgress};
use crate::error::{Error, Progress, RequestError, Result, Stage};
use crate::proto::exchange::{BodyStep, Exchange};
use crate::proto::head::{BodyFraming, HeaderField, RequestHead};
use crate::proto::limits::Limits;
use crate::proto::response::ResponseHead;
use crate::target::{Scheme, Target};
use crate::trace::{Direction, Trace};
use crate::transport::Transport;
use crate::transport::tls::{TlsConfig, TlsStream, TlsSummary};

/// The chunk payload size used unless the caller sets one. Chosen by measurement: see the
/// README's "Choosing the chunk size".
pub const DEFAULT_CHUNK_SIZE: usize = 48 * 1024;

/// The largest chunk payload accepted, so a typo cannot allocate gigabytes.
pub const MAX_CHUNK_SIZE: usize = 64 * 1024 * 1024;

/// Default time for the TCP connection to open.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Default longest time with no byte moving either way.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(120);

const TOKEN: Token = Token(0);

/// Options shared by every upload of a [`Client`].
#[derive(Debug, Clone)]
pub struct Client {
    chunk_size: usize,
    timeouts: Timeouts,
    limits: Limits,
    /// For https URLs; the default (webpki-roots) is made on first use.
    tls: Option<TlsConfig>,
}

impl Default for Client {
    fn default() -> Self {
        Client {
            chunk_size: DEFAULT_CHUNK_SIZE,
            timeouts: Timeouts {
                connect: DEFAULT_CONNECT_TIMEOUT,
                stall: Some(DEFAULT_STALL_TIMEOUT),
                total: None,
            },
            limits: Limits::default(),
            tls: None,
        }
    }
}

/// Builds a [`Client`]; every option has a default.
#[derive(Debug, Clone, Default)]
pub struct ClientBuilder {
    client: Client,
}

impl ClientBuilder {
    /// The chunk payload size: the one buffer of an upload holds one chunk of this size,
    /// its framing, and the response head. 1 byte to [`MAX_CHUNK_SIZE`].
    pub fn chunk_size(mut self, bytes: usize) -> Self {
        self.client.chunk_size = bytes;
        self
    }

    /// How long the TCP connection may take to open.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.client.timeouts.connect = timeout;
        self
    }

    /// The longest time with no byte moving either way; `None` waits forever.
    pub fn stall_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.client.timeouts.stall = timeout;
        self
    }

    /// The longest time for the whole exchange, response body included; `None` (the
    /// default) sets no limit, as endless streams need.
    pub fn max_time(mut self, timeout: Option<Duration>) -> Self {
        self.client.timeouts.total = timeout;
        self
    }

    /// Limits on what the server may send (head size, header count, chunk lines, trailers, body).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.client.limits = limits;
        self
    }

    /// TLS settings for https URLs: extra trust anchors, a client certificate, or a rustls
    /// configuration of your own. The default trusts Mozilla's roots (webpki-roots).
    pub fn tls_config(mut self, config: TlsConfig) -> Self {
        self.client.tls = Some(config);
        self
    }

    /// Checks the options and builds the client.
    pub fn build(self) -> Result<Client> {
        let client = self.client;
        if client.chunk_size == 0 || client.chunk_size > MAX_CHUNK_SIZE {
            return Err(RequestError::InvalidOption {
                option: "chunk size",
                reason: format!(
                    "{} is not from 1 to {MAX_CHUNK_SIZE} bytes",
                    client.chunk_size
                ),
            }
            .into());
        }
        if client.timeouts.connect.is_zero() {
            return Err(RequestError::InvalidOption {
                option: "connect timeout",
                reason: "must be more than zero".into(),
            }
            .into());
        }
        Ok(client)
    }
}

impl Client {
    /// A client with the default options.
    pub fn new() -> Self {
        Client::default()
    }

    /// Starts building a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The chunk payload size.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Starts an upload to `url` (method PUT unless changed).
    pub fn upload(&self, url: &str) -> Upload<'_> {
        Upload {
            client: self,
            url: url.to_owned(),
            method: "PUT".to_owned(),
            fields: Vec::new(),
            trailers: Vec::new(),
            content_length: None,
            expect_continue: None,
            trace: None,
            progress: None,
            size_hint: None,
            rate_limit: None,
            body_hooks: BodyHooks::default(),
            announced: Vec::new(),
            error: None,
        }
    }
}

impl std::fmt::Debug for Upload<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("url", &self.url)
            .field("method", &self.method)
            .field("fields", &self.fields)
            .field("trailers", &self.trailers)
            .field("content_length", &self.content_length)
            .field("expect_continue", &self.expect_continue)
            .field("progress", &self.progress.is_some())
            .field("size_hint", &self.size_hint)
            .field("rate_limit", &self.rate_limit)
            .field("body_hooks", &self.body_hooks)
            .field("trace", &self.trace.is_some())
            .finish_non_exhaustive()
    }
}

/// One upload being set up. Errors in headers are kept and returned by [`Upload::send`],
/// so the calls chain.
pub struct Upload<'c> {
    client: &'c Client,
    url: String,
    method: String,
    fields: Vec<HeaderField>,
    trailers: Vec<HeaderField>,
    content_length: Option<u64>,
    expect_continue: Option<Duration>,
    trace: Option<Box<dyn Trace>>,
    progress: Option<ProgressCallback>,
    size_hint: Option<u64>,
    rate_limit: Option<u64>,
    body_hooks: BodyHooks,
    announced: Vec<String>,
    error: Option<RequestError>,
}

impl Upload<'_> {
    /// The request method (default `PUT`).
    pub fn method(mut self, method: &str) -> Self {
        method.clone_into(&mut self.method);
        self
    }

    /// Adds a header. `Host` and `User-Agent` replace the defaults; `Content-Length` and
    /// `Transfer-Encoding` are refused (see [`Upload::content_length`]).
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        match HeaderField::new(name, value) {
            Ok(field) => self.fields.push(field),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// Adds a trailer field, sent after the last chunk (chunked uploads only).
    pub fn trailer(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        match HeaderField::trailer(name, value) {
            Ok(field) => self.trailers.push(field),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// Adds trailer fields made by `make` once the whole body has been read (chunked
    /// uploads only). `announce` names them in the `Trailer` header, for servers that want
    /// to know in advance.
    pub fn trailers_with(
        mut self,
        announce: &[&str],
        make: impl FnOnce() -> Vec<(String, String)> + 'static,
    ) -> Self {
        self.announced
            .extend(announce.iter().map(|n| (*n).to_owned()));
        self.body_hooks.late_trailers.push(Box::new(move || {
            make()
                .iter()
                .map(|(name, value)| HeaderField::trailer(name, value))
                .collect()
        }));
        self
    }

    /// Computes `algorithm` over the body as it streams and sends it as an RFC 9530
    /// `Content-Digest` trailer (chunked uploads only).
    #[cfg(feature = "checksum")]
    pub fn checksum_trailer(mut self, algorithm: crate::checksum::ChecksumAlgorithm) -> Self {
        use crate::checksum::Checksum;
        use std::cell::RefCell;
        use std::rc::Rc;
        let running = Rc::new(RefCell::new(Some(Checksum::new(algorithm))));
        let observed = Rc::clone(&running);
        self.body_hooks.observers.push(Box::new(move |bytes| {
            if let Some(checksum) = observed.borrow_mut().as_mut() {
                checksum.update(bytes);
            }
        }));
        self.body_hooks.late_trailers.push(Box::new(move || {
            Ok(running
                .borrow_mut()
                .take()
                .map(Checksum::into_field)
                .into_iter()
                .collect())
        }));
        self.announced.push("Content-Digest".to_owned());
        self
    }

    /// Sends `Content-Length: len` and the body unframed instead of chunked. The source
    /// must hold exactly `len` bytes: fewer or more is an error.
    pub fn content_length(mut self, len: u64) -> Self {
        self.content_length = Some(len);
        self
    }

    /// Sends `Expect: 100-continue` and holds the body until the server answers `100
    /// Continue`, or for at most `timeout` (curl waits 1 s). A final response instead (401,
    /// 413, 417, a redirect) is returned and the body is never sent. Off by default: see the
    /// README for why.
    pub fn expect_continue(mut self, timeout: Duration) -> Self {
        self.expect_continue = Some(timeout);
        self
    }

    /// Calls `callback` each time body bytes go out, with the bytes sent, the total when it
    /// is known, and the rate. Without a callback nothing is computed.
    pub fn progress(mut self, callback: impl FnMut(&UploadProgress) + 'static) -> Self {
        self.progress = Some(Box::new(callback));
        self
    }

    /// The body's size, for progress only, when it is known but sent chunked (a file).
    pub fn size_hint(mut self, bytes: u64) -> Self {
        self.size_hint = Some(bytes);
        self
    }

    /// Writes at most `bytes_per_second` (head and framing included), pacing writes with the
    /// event loop's timer rather than sleeping.
    pub fn limit_rate(mut self, bytes_per_second: u64) -> Self {
        self.rate_limit = Some(bytes_per_second);
        self
    }

    /// Sends every byte sent and received, labelled, to `trace` (see [`crate::trace`]).
    pub fn trace(mut self, trace: impl Trace + 'static) -> Self {
        self.trace = Some(Box::new(trace));
        self
    }

    fn head(&mut self, target: &Target) -> Result<RequestHead, RequestError> {
        if let Some(err) = self.error.take() {
            return Err(err);
        }
        let mut head = RequestHead::new(&self.method, target)?;
        for field in self.fields.drain(..) {
            head.push(field)?;
        }
        let announced: Vec<&str> = self
            .trailers
            .iter()
            .map(HeaderField::name)
            .chain(self.announced.iter().map(String::as_str))
            .collect();
        if !announced.is_empty() {
            // RFC 9110 section 6.6.2: announce the trailer fields, so the server can expect them.
            head.push(HeaderField::new("Trailer", announced.join(", "))?)?;
        }
        if let Some(len) = self.content_length {
            if !self.trailers.is_empty() || !self.body_hooks.late_trailers.is_empty() {
                return Err(RequestError::InvalidOption {
                    option: "trailers",
                    reason: "they need chunked framing, not Content-Length".into(),
                });
            }
            head.set_framing(BodyFraming::Length(len));
        }
        head.set_expect_continue(self.expect_continue.is_some());
        Ok(head)
    }

    /// Streams `body` and returns the response once its head has arrived. Blocks.
    ///
    /// A server that answers before the body is complete (413, 401, ...) stops the upload;
    /// its response is returned and [`Response::upload_complete`] is false.
    ///
    /// ```
    /// # let sink = chunkwire::sink::Sink::bind("127.0.0.1:0")?.spawn()?;
    /// # let url = sink.url("/backups/today");
    /// let backup: &[u8] = b"pretend this is a tar file";
    /// let mut response = chunkwire::Client::new()
    ///     .upload(&url)
    ///     .header("Content-Type", "application/x-tar")
    ///     .trailer("X-Backup-Complete", "yes")
    ///     .send(backup)?;
    /// assert!(response.status().is_success());
    /// assert!(response.upload_complete());
    /// assert_eq!(response.progress().body_bytes_sent, 26);
    /// let mut report = String::new();
    /// std::io::Read::read_to_string(&mut response, &mut report)?;
    /// assert!(report.contains(r#"{"name":"X-Backup-Complete","value":"yes"}"#));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send(mut self, mut body: impl Read) -> Result<Response> {
        let started = Instant::now();
        let target = Target::parse(&self.url)?;
        let head = self.head(&target)?;
        let client = self.client;
        let limits = client.limits;
        // The receive region holds a whole response head, and any chunk-size or trailer
        // line of the response body.
        let recv_capacity = limits
            .max_head_bytes
            .max(limits.max_chunk_line_bytes)
            .max(limits.max_trailer_bytes)
            + 1;
        let mut buf = FixedBuf::new(client.chunk_size, recv_capacity, head.encoded_len());
        let trailers = std::mem::take(&mut self.trailers);
        let exchange = Exchange::new(&head, trailers, limits, &mut buf)
            .expect("the send region is sized for the head");

        let mut event_loop = EventLoop::new()?;
        let (tcp, peer) = event_loop
            .connect(TOKEN, &target.host, target.port, client.timeouts.connect)
            .map_err(|e| e.with_peer(target.authority()))?;
        let peer = format!("{} at {peer}", target.authority());
        let transport = match target.scheme {
            Scheme::Http => Transport::Plain(tcp),
            Scheme::Https => {
                let default_tls;
                let tls_config = match &client.tls {
                    Some(config) => config,
                    None => {
                        default_tls = TlsConfig::default();
                        &default_tls
                    }
                };
                let mut tls =
                    TlsStream::new(tls_config, &target.host, tcp, buf.send_region().len())?;
                event_loop
                    .handshake(TOKEN, &mut tls, started + client.timeouts.connect)
                    .map_err(|e| e.with_peer(peer.clone()))?;
                Transport::Tls(Box::new(tls))
            }
        };
        let mut conn = Connection::new(
            TOKEN,
            transport,
            exchange,
            buf,
            peer,
            client.timeouts,
            started,
        );
        if let Some(timeout) = self.expect_continue {
            conn.set_expect_timeout(timeout);
        }
        if let Some(callback) = self.progress.take() {
            conn.set_progress(callback, self.content_length.or(self.size_hint));
        }
        if let Some(rate) = self.rate_limit {
            conn.set_rate_limit(rate);
        }
        conn.set_body_hooks(std::mem::take(&mut self.body_hooks));
        if let Some(trace) = self.trace.take() {
            conn.set_trace(trace);
            let connected = format!("connected to {}", conn.peer());
            conn.trace_note(Direction::Sent, || connected);
            if let Some(tls) = conn.transport().tls_summary() {
                conn.trace_note(Direction::Sent, || tls.to_string());
            }
        }
        let head = conn.send_request(&mut event_loop, &mut body)?;
        Ok(Response {
            head,
            conn,
            event_loop,
            pending: 0..0,
            body_done: false,
        })
    }
}

/// Uploads `body` with PUT and the default options: the shortest way to call chunkwire.
///
/// ```
/// # let sink = chunkwire::sink::Sink::bind("127.0.0.1:0")?.spawn()?;
/// # let url = sink.url("/log");
/// let log = std::io::Cursor::new("line 1\nline 2\n");
/// let response = chunkwire::put(&url, log)?;
/// assert!(response.status().is_success());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn put(url: &str, body: impl Read) -> Result<Response> {
    Client::new().upload(url).send(body)
}

/// The server's response. Its body is read on demand: through [`Read`], or with
/// [`Response::copy_to`], which writes it without an extra copy.
#[derive(Debug)]
pub struct Response {
    head: ResponseHead,
    conn: Connection,
    event_loop: EventLoop,
    /// Body bytes decoded but not yet handed out, in the receive region.
    pending: std::ops::Range<usize>,
    body_done: bool,
}

impl Response {
    /// The status code.
    pub fn status(&self) -> http::StatusCode {
        self.head.status
    }

    /// The reason phrase as the server sent it.
    pub fn reason(&self) -> &str {
        &self.head.reason
    }

    /// The HTTP minor version of the response (1 for HTTP/1.1).
    pub fn version_minor(&self) -> u8 {
        self.head.version_minor
    }

    /// The response headers.
    pub fn headers(&self) -> &http::HeaderMap {
        &self.head.headers
    }

    /// False when the server answered before the whole body was sent, and the upload stopped.
    pub fn upload_complete(&self) -> bool {
        self.conn.exchange().request_sent()
    }

    /// How far the upload (and the response so far) got.
    pub fn progress(&self) -> Progress {
        self.conn.progress()
    }

    /// Interim (1xx) responses that came before this one.
    pub fn interim_responses(&self) -> u32 {
        self.conn.exchange().interim_responses()
    }

    /// The TLS version, cipher suite and ALPN protocol, for https.
    pub fn tls(&self) -> Option<TlsSummary> {
        self.conn.transport().tls_summary()
    }

    /// `host:port at address` of the server.
    pub fn peer(&self) -> &str {
        self.conn.peer()
    }

    /// Decodes the next stretch of body into `self.pending`; false at the end of the body.
    fn fill_pending(&mut self) -> Result<bool> {
        while self.pending.is_empty() {
            if self.body_done {
                return Ok(false);
            }
            match self.conn.next_body_step(&mut self.event_loop)? {
                BodyStep::Data(range) => self.pending = range,
                BodyStep::End => {
                    self.body_done = true;
                    self.conn.close();
                }
                BodyStep::NeedMore => unreachable!("next_body_step waits for bytes"),
            }
        }
        Ok(true)
    }

    /// Writes the rest of the body to `out`; returns the bytes written.
    pub fn copy_to(&mut self, out: &mut impl Write) -> Result<u64> {
        let mut total = 0u64;
        while self.fill_pending()? {
            let bytes = &self.conn.buf().recv_region()[self.pending.clone()];
            out.write_all(bytes).map_err(|e| {
                Error::io(Stage::WriteOutput, e).with_progress(self.conn.progress())
            })?;
            total += bytes.len() as u64;
            self.pending = self.pending.end..self.pending.end;
        }
        Ok(total)
    }

    /// Reads the rest of the body as text (invalid UTF-8 is replaced).
    pub fn text(&mut self) -> Result<String> {
        let mut bytes = Vec::new();
        self.copy_to(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

impl Drop for Response {
    fn drop(&mut self) {
        self.conn.close();
    }
}

impl Read for Response {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() || !self.fill_pending().map_err(io::Error::other)? {
            return Ok(0);
        }
        let n = out.len().min(self.pending.len());
        let start = self.pending.start;
        out[..n].copy_from_slice(&self.conn.buf().recv_region()[start..start + n]);
        self.pending.start += n;
        Ok(n)
    }
}
