//! The public blocking API: a [`Client`] holds the options, [`Client::upload`] builds one
//! request, [`Upload::send`] streams a body through the event loop and returns the
//! [`Response`], whose body is read on demand.

use std::cell::RefCell;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::Token;

use crate::buffer::FixedBuf;
use crate::driver::{
    BodyHooks, Destination, Driven, EventLoop, IdleLink, Pumped, UploadProgress, is_connection_lost,
};
use crate::error::{Error, Kind, Progress, RequestError, Result, Stage};
use crate::form::{Form, FormReader};
use crate::proto::conn::{Connection, ExchangeOptions, Timeouts};
use crate::proto::exchange::{BodyStep, Exchange};
use crate::proto::head::{BodyFraming, HeaderField, RequestHead};
use crate::proto::limits::Limits;
use crate::proto::policy::{self, AfterResponse, BodyState, FailedAttempt, ResponseFacts};
use crate::proto::response::ResponseHead;
use crate::proto::tunnel::TunnelSetup;
use crate::proxy::{NoProxy, Proxy, ProxyEnvironment, ProxyRules, ProxyTrailers, Route};
use crate::target::{Scheme, Target};
use crate::trace::{Direction, Trace};
use crate::transfer::{Attempt, Earlier, Timings, Transfer};
use crate::transport::tcp::Resolver;
use crate::transport::tls::{TlsConfig, TlsSummary};

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

/// The receive region a buffer starts with: room for the response heads seen in practice.
const INITIAL_RECV: usize = 1024;

/// Options shared by every upload of a [`Client`].
#[derive(Debug, Clone)]
pub struct Client {
    chunk_size: usize,
    timeouts: Timeouts,
    limits: Limits,
    /// For https URLs; the default (webpki-roots) is made on first use.
    tls: Option<TlsConfig>,
    /// Name resolution of the caller's own, in place of the system's.
    resolver: Option<Resolver>,
    /// Which uploads go through which proxy (see [`crate::Proxy`]).
    proxy: ProxyRules,
    /// Fields sent to the proxy only (curl's `--proxy-header`).
    proxy_headers: Vec<HeaderField>,
    /// For https:// proxies; the default (webpki-roots) is made on first use.
    proxy_tls: Option<TlsConfig>,
    /// The connection left open by the last upload whose response was read to its end.
    idle: Arc<Mutex<Option<IdleConnection>>>,
}

/// Where a connection goes: connections are reused only for the same one. The last part
/// names the proxy and how it is used (absolute form, or a tunnel), `None` when direct.
/// Boxed: a queued upload of a set holds one, and its slot stays small.
pub(crate) type Origin = Box<(Scheme, String, u16, Option<String>)>;

/// A connection kept open between uploads (keep-alive), with the loop it is registered on.
#[derive(Debug)]
struct IdleConnection {
    origin: Origin,
    link: IdleLink,
    event_loop: EventLoop,
}

pub(crate) fn origin_of(target: &Target) -> Origin {
    Box::new((
        target.scheme,
        target.host.to_ascii_lowercase(),
        target.port,
        None,
    ))
}

/// The process environment, as the proxy rules read it: a value that is not UTF-8 is
/// still there (lossily), so it is an invalid proxy, a list entry that matches nothing or
/// the CGI guard, never a variable silently unset.
fn process_environment(name: &str) -> Option<String> {
    std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
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
            resolver: None,
            proxy: ProxyRules {
                environment: Some(ProxyEnvironment::read(&process_environment)),
                ..ProxyRules::default()
            },
            proxy_headers: Vec::new(),
            proxy_tls: None,
            idle: Arc::default(),
        }
    }
}

/// Builds a [`Client`]; every option has a default.
#[derive(Debug, Clone, Default)]
pub struct ClientBuilder {
    client: Client,
    /// The first option refused, returned by `build`.
    error: Option<RequestError>,
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

    /// Resolves host names with `resolve` instead of the system's resolver: `(host, port)`
    /// to the addresses to try, in order (curl's `--resolve`, or a test's fake DNS). It
    /// runs on a resolver thread, so it may block; the connect timeout covers it.
    /// Address literals in URLs are never passed to it.
    pub fn resolver(
        mut self,
        resolve: impl Fn(&str, u16) -> io::Result<Vec<std::net::SocketAddr>> + Send + Sync + 'static,
    ) -> Self {
        self.client.resolver = Some(Resolver::new(Arc::new(resolve)));
        self
    }

    /// Sends every upload through `proxy` (curl's `-x`), in place of the proxy variables
    /// of the environment. The no-proxy list still applies, as in curl. See [`Proxy`] for
    /// the rules.
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.client.proxy.explicit = Some(proxy);
        self
    }

    /// Whether the proxy variables (`https_proxy`, `http_proxy`, `all_proxy`, `no_proxy`
    /// and their upper-case spellings) are read. On by default, as in curl and reqwest;
    /// `false` ignores them all. The variables are read when this is called (and when the
    /// client is made), not per upload.
    pub fn proxy_from_environment(mut self, read: bool) -> Self {
        self.client.proxy.environment = read.then(|| ProxyEnvironment::read(&process_environment));
        self
    }

    /// Reads the proxy variables through `lookup` instead of the process environment (a
    /// test's, or a configuration's own), by the same rules.
    pub fn proxy_environment(mut self, lookup: impl Fn(&str) -> Option<String>) -> Self {
        self.client.proxy.environment = Some(ProxyEnvironment::read(&lookup));
        self
    }

    /// The hosts reached directly, in place of the environment's `no_proxy` (curl's
    /// `--noproxy`): a comma-separated list; `""` sends every host through the proxy.
    pub fn noproxy(mut self, list: &str) -> Self {
        self.client.proxy.no_proxy = Some(NoProxy::parse(list));
        self
    }

    /// Authenticates to the proxy with these credentials (curl's `-U`), in place of any
    /// in the proxy URL: `Proxy-Authorization: Basic`, sent to the proxy only.
    pub fn proxy_credentials(mut self, user: &str, password: &str) -> Self {
        self.client.proxy.credentials = Some(crate::Credentials {
            user: user.to_owned(),
            password: password.to_owned(),
        });
        self
    }

    /// Opens a CONNECT tunnel for http:// targets too, as for https:// (curl's
    /// `--proxytunnel`). Inside a tunnel the proxy forwards bytes and cannot touch the
    /// request: trailers arrive as sent.
    pub fn proxy_tunnel(mut self, always: bool) -> Self {
        self.client.proxy.tunnel_http = always;
        self
    }

    /// A header for the proxy only (curl's `--proxy-header`): sent with the CONNECT, and
    /// with requests in absolute form (which the proxy may pass on). A `Host` is never
    /// sent: the CONNECT's names the tunnel's end, and the origin's stays the origin's.
    pub fn proxy_header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        match HeaderField::new(name, value) {
            Ok(field) => self.client.proxy_headers.push(field),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// What an upload with trailers (a checksum) does when the proxy would get it in
    /// absolute form, where forward proxies drop trailers; by default it goes through a
    /// CONNECT tunnel instead. See [`ProxyTrailers`].
    pub fn proxy_trailers(mut self, policy: ProxyTrailers) -> Self {
        self.client.proxy.trailers = policy;
        self
    }

    /// TLS settings for an https:// proxy (curl's `--proxy-cacert`); by default Mozilla's
    /// roots.
    pub fn proxy_tls_config(mut self, config: TlsConfig) -> Self {
        self.client.proxy_tls = Some(config);
        self
    }

    /// Checks the options and builds the client.
    pub fn build(self) -> Result<Client> {
        if let Some(err) = self.error {
            return Err(err.into());
        }
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
    /// A client with the default options. Like curl and reqwest, it reads the proxy
    /// variables of the environment (`https_proxy`, `http_proxy`, `all_proxy`,
    /// `no_proxy`; see [`Proxy`]); [`ClientBuilder::proxy_from_environment`] turns that off.
    pub fn new() -> Self {
        Client::default()
    }

    /// Starts building a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A builder with this client's options, to change some of them. The new client
    /// keeps no connection of this one.
    pub fn rebuild(&self) -> ClientBuilder {
        let mut client = self.clone();
        client.idle = Arc::default();
        ClientBuilder {
            client,
            error: None,
        }
    }

    /// The chunk payload size.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    pub(crate) fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// How an upload to `url` would go: directly or through which proxy, and why (the
    /// option or variable it came from, or the no-proxy entry that sent it direct).
    pub fn route(&self, url: &str) -> Result<Route> {
        let target = Target::parse(url)?;
        Ok(self.proxy.route(&target)?)
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
            late_trailers: Vec::new(),
            #[cfg(feature = "checksum")]
            checksum: None,
            announced: Vec::new(),
            max_redirects: None,
            error: None,
            form_sections: None,
            form_content_type: None,
        }
    }
}

impl Client {
    /// What goes to the proxy itself: `Proxy-Authorization` from its credentials (unless
    /// the caller set one with the request's headers) and the proxy headers.
    fn proxy_fields(
        &self,
        proxy: &Proxy,
        request_fields: &[HeaderField],
    ) -> std::result::Result<Vec<HeaderField>, RequestError> {
        let mut fields = Vec::new();
        let given = |name: &str| {
            (request_fields.iter().chain(&self.proxy_headers))
                .any(|f| f.name().eq_ignore_ascii_case(name))
        };
        let credentials = self.proxy.credentials.as_ref().or(proxy.credentials());
        if let (false, Some(credentials)) = (given("proxy-authorization"), credentials) {
            fields.push(HeaderField::new(
                "Proxy-Authorization",
                credentials.basic_authorization(),
            )?);
        }
        fields.extend(self.proxy_headers.iter().cloned());
        Ok(fields)
    }

    /// Where the connection of an upload to `target` goes, and its key in the pool of
    /// kept connections: the target itself, or the proxy on `route`.
    fn destination(
        &self,
        target: &Target,
        route: &Route,
        request_fields: &[HeaderField],
    ) -> std::result::Result<(Destination, Origin), Error> {
        let origin_tls = || match target.scheme {
            Scheme::Http => None,
            Scheme::Https => Some(self.tls.clone().unwrap_or_else(default_tls)),
        };
        let Some(proxy) = &route.proxy else {
            let destination = Destination {
                host: target.host.clone(),
                port: target.port,
                authority: target.authority(),
                tls: origin_tls(),
                tls_name: target.host.clone(),
                resolver: self.resolver.clone(),
                tunnel: None,
                via_proxy: false,
                route_reason: None,
                proxy_tls: None,
            };
            return Ok((destination, origin_of(target)));
        };
        let proxy_tls = match proxy.scheme() {
            Scheme::Http => None,
            Scheme::Https => Some(self.proxy_tls.clone().unwrap_or_else(default_tls)),
        };
        let mut tls_to_proxy = None;
        let (tls, tls_name, tunnel, origin) = if route.tunnel {
            // TLS to an https proxy first; the tunnel (and TLS to an https origin) inside it.
            tls_to_proxy = proxy_tls.map(|config| (config, proxy.host().to_owned()));
            let is_proxy_authorization =
                |f: &&HeaderField| f.name().eq_ignore_ascii_case("proxy-authorization");
            let mut fields: Vec<HeaderField> = (request_fields.iter())
                .filter(is_proxy_authorization)
                .cloned()
                .collect();
            fields.extend(self.proxy_fields(proxy, request_fields)?);
            let setup = TunnelSetup::new(&target.authority(), &fields, self.limits);
            let key = Box::new((
                target.scheme,
                target.host.to_ascii_lowercase(),
                target.port,
                Some(format!("tunnel via {proxy}")),
            ));
            (origin_tls(), target.host.clone(), Some(setup), key)
        } else {
            let key = Box::new((
                proxy.scheme(),
                proxy.host().to_ascii_lowercase(),
                proxy.port(),
                Some(format!("absolute form via {proxy}")),
            ));
            (proxy_tls, proxy.host().to_owned(), None, key)
        };
        let destination = Destination {
            host: proxy.host().to_owned(),
            port: proxy.port(),
            authority: format!("proxy {}", proxy.authority()),
            tls,
            tls_name,
            resolver: self.resolver.clone(),
            tunnel: tunnel.map(Box::new),
            via_proxy: true,
            route_reason: Some(route.reason.clone()),
            proxy_tls: tls_to_proxy,
        };
        Ok((destination, origin))
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
            .field("late_trailers", &self.late_trailers.len())
            .field("max_redirects", &self.max_redirects)
            .field("trace", &self.trace.is_some())
            .finish_non_exhaustive()
    }
}

/// Makes trailer fields after the body, once per attempt (a resend asks again).
type TrailerMaker = Rc<RefCell<dyn FnMut() -> Vec<(String, String)>>>;
/// The caller's progress callback, shared by every attempt of an upload.
type SharedProgress = Rc<RefCell<dyn FnMut(&UploadProgress)>>;

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
    progress: Option<SharedProgress>,
    size_hint: Option<u64>,
    rate_limit: Option<u64>,
    late_trailers: Vec<TrailerMaker>,
    #[cfg(feature = "checksum")]
    checksum: Option<crate::checksum::ChecksumAlgorithm>,
    announced: Vec<String>,
    max_redirects: Option<u32>,
    error: Option<RequestError>,
    /// Where the sections of a form body start, while a trace is on (see [`Upload::send_form`]).
    form_sections: Option<crate::form::SectionLog>,
    /// `multipart/form-data; boundary=...`: sent only with the body (not after a 303).
    form_content_type: Option<HeaderField>,
}

/// The body as the caller gave it: only a seekable one can be sent again.
pub(crate) enum Body<'b> {
    Stream(Box<dyn Read + 'b>),
    Seekable {
        reader: Box<dyn ReadSeek + 'b>,
        start: u64,
    },
    /// A non-blocking file descriptor (a pipe, a socket) that the loop watches.
    Watched {
        reader: Box<dyn Read + 'b>,
        fd: std::os::fd::RawFd,
    },
    /// A `multipart/form-data` body; it can be rewound when all its parts can.
    Form(Box<FormReader<'b>>),
}

/// `Read + Seek` as one object type.
pub(crate) trait ReadSeek: Read + Seek {}

impl<T: Read + Seek> ReadSeek for T {}

impl<'b> Body<'b> {
    /// A body that can be rewound to where it is now.
    pub(crate) fn seekable(mut reader: impl Read + Seek + 'b) -> Result<Body<'b>> {
        let start = reader
            .stream_position()
            .map_err(|e| Error::io(Stage::ReadSource, e))?;
        Ok(Body::Seekable {
            reader: Box::new(reader),
            start,
        })
    }

    pub(crate) fn reader(&mut self) -> &mut dyn Read {
        match self {
            Body::Stream(reader) | Body::Watched { reader, .. } => reader,
            Body::Seekable { reader, .. } => reader,
            Body::Form(form) => form,
        }
    }

    /// The file descriptor to watch, for a body that has one.
    pub(crate) fn watched_fd(&self) -> Option<std::os::fd::RawFd> {
        match self {
            Body::Watched { fd, .. } => Some(*fd),
            Body::Stream(_) | Body::Seekable { .. } | Body::Form(_) => None,
        }
    }

    /// Back to where the body started, if it can be; `Ok(false)` for a stream.
    fn rewind(&mut self) -> io::Result<bool> {
        match self {
            Body::Stream(_) | Body::Watched { .. } => Ok(false),
            Body::Seekable { reader, start } => reader.seek(SeekFrom::Start(*start)).map(|_| true),
            Body::Form(form) if form.can_rewind() => form.rewind().map(|()| true),
            Body::Form(_) => Ok(false),
        }
    }

    fn can_rewind(&self) -> bool {
        match self {
            Body::Seekable { .. } => true,
            Body::Form(form) => form.can_rewind(),
            Body::Stream(_) | Body::Watched { .. } => false,
        }
    }

    fn rewind_for_resend(&mut self) -> Result<()> {
        self.rewind()
            .map(drop)
            .map_err(|e| Error::io(Stage::ReadSource, e))
    }
}

/// Where an upload stands across its attempts (redirects, retries, the 417 fallback): what
/// the next attempt sends, and what the policy makes of each outcome. The blocking client
/// and [`crate::Uploads`] both run uploads through it, so they decide alike.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) started: Instant,
    pub(crate) target: Target,
    pub(crate) method: String,
    pub(crate) with_body: bool,
    redirects: u32,
    retried: bool,
    /// The attempts that are over, added up for the upload's [`Transfer`].
    earlier: Earlier,
    /// The status of the last final response.
    last_status: Option<u16>,
}

/// What follows a final response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It is the answer: read its body.
    Deliver,
    /// Another attempt follows (a redirect, a retry without `Expect`); the plan and body
    /// are ready for it.
    Again,
}

/// The parts of one attempt, ready for a connection.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) exchange: Exchange,
    pub(crate) options: ExchangeOptions,
    pub(crate) destination: Destination,
    pub(crate) buf: FixedBuf,
    pub(crate) origin: Origin,
}

impl Plan {
    pub(crate) fn new(upload: &Upload<'_>, started: Instant) -> Result<Plan> {
        Ok(Plan {
            started,
            target: Target::parse(&upload.url)?,
            method: upload.method.clone(),
            with_body: true,
            redirects: 0,
            retried: false,
            earlier: Earlier::default(),
            last_status: None,
        })
    }

    /// What the upload took: the attempts over, and the `last` one up to `end`.
    pub(crate) fn transfer(&self, last: Option<&Attempt>, end: Instant) -> Transfer {
        let counts = (self.redirects, self.last_status);
        self.earlier
            .transfer(last, &self.target, counts, self.started, end)
    }

    /// `err`, with what the upload took until it (`last` was its attempt).
    fn failed(&self, err: Error, last: Option<&Attempt>) -> Error {
        let transfer = self.transfer(last, Instant::now());
        err.with_transfer(transfer)
    }

    /// The policy on a failed attempt: `Ok` when the upload is sent again (the body is
    /// rewound for it), else the error that ends it.
    pub(crate) fn after_failure(
        &mut self,
        upload: &mut Upload<'_>,
        body: &mut Body<'_>,
        failure: AttemptFailure,
    ) -> Result<()> {
        let err = failure.error;
        let last = failure.attempt;
        let progress = err.progress();
        let attempt = FailedAttempt {
            method: &self.method,
            connection_reused: failure.connection_reused,
            response_bytes: progress.wire_bytes_received,
            request_complete: failure.request_complete,
            connection_lost: err.is_closed_before_response()
                || err.io_error().is_some_and(is_connection_lost),
            body: self.with_body.then(|| body_state(body, progress)),
            already_retried: self.retried,
        };
        if !policy::may_retry(&attempt) {
            return Err(self.failed(err, last.as_deref()));
        }
        if let Some(last) = &last {
            self.earlier.add(last, last.ended_at());
        }
        self.retried = true;
        if self.with_body {
            body.rewind_for_resend()?;
        }
        if let Some(trace) = upload.trace.as_deref_mut() {
            trace.note(
                Direction::Sent,
                &format!(
                    "the kept connection failed before any response ({err}); sending again on a new one"
                ),
            );
        }
        Ok(())
    }

    /// The policy on a final response head: deliver it, or prepare the next attempt.
    pub(crate) fn after_head(
        &mut self,
        upload: &mut Upload<'_>,
        body: &mut Body<'_>,
        head: &ResponseHead,
        progress: Progress,
        attempt: &Attempt,
    ) -> Result<Verdict> {
        let status = head.status.as_u16();
        self.last_status = Some(status);
        let verdict = self.verdict(upload, body, head, progress);
        match &verdict {
            Ok(Verdict::Deliver) => {}
            Ok(Verdict::Again) => self.earlier.add(attempt, attempt.ended_at()),
            Err(_) => return verdict.map_err(|e| self.failed(e, Some(attempt))),
        }
        verdict
    }

    /// Policy rule 8: the error for a 407 from a proxy this attempt reached in absolute
    /// form, naming the proxy, the authentication it asked for and whether credentials
    /// went with the request.
    fn proxy_refusal(&self, upload: &Upload<'_>, head: &ResponseHead) -> Result<Option<Error>> {
        let status = head.status.as_u16();
        // Asked first as if through a forward proxy, so that no route is worked out for
        // the statuses that are never a refusal.
        if !policy::is_proxy_refusal(status, true) {
            return Ok(None);
        }
        let route = upload.route_of(&self.target, self.with_body)?;
        let Some(proxy) = route.proxy.as_ref().filter(|_| !route.tunnel) else {
            return Ok(None);
        };
        let is_credentials = |f: &HeaderField| f.name().eq_ignore_ascii_case("proxy-authorization");
        let credentials_sent = upload.fields.iter().any(is_credentials)
            || (upload.client.proxy_fields(proxy, &upload.fields)?)
                .iter()
                .any(is_credentials);
        let challenge = head
            .headers
            .get(http::header::PROXY_AUTHENTICATE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let refusal = crate::error::ProxyRefusal {
            status,
            reason: head.reason.clone(),
            to: format!(
                "the request to {} in absolute form",
                self.target.authority()
            ),
            challenge,
            credentials_sent,
        };
        Ok(Some(
            Error::new(Stage::Proxy, Kind::ProxyRefused(Box::new(refusal)))
                .with_peer(proxy.authority())
                .with_via_proxy(),
        ))
    }

    fn verdict(
        &mut self,
        upload: &mut Upload<'_>,
        body: &mut Body<'_>,
        head: &ResponseHead,
        progress: Progress,
    ) -> Result<Verdict> {
        let status = head.status.as_u16();
        let location = head.headers.get(http::header::LOCATION);
        let facts = ResponseFacts {
            status,
            method: &self.method,
            had_body: self.with_body,
            body: body_state(body, progress),
            expected_continue: upload.expect_continue.is_some(),
            has_location: location.is_some(),
            max_redirects: upload.max_redirects,
            redirects: self.redirects,
        };
        if let Some(refused) = self.proxy_refusal(upload, head)? {
            return Err(refused.with_progress(progress));
        }
        let next = match policy::after_response(&facts) {
            AfterResponse::Deliver => return Ok(Verdict::Deliver),
            AfterResponse::RetryWithoutExpect => {
                upload.expect_continue = None;
                body.rewind_for_resend()?;
                return Ok(Verdict::Again);
            }
            AfterResponse::TooManyRedirects => {
                let max = upload.max_redirects.unwrap_or(0);
                return Err(Error::new(Stage::Receive, Kind::TooManyRedirects(max))
                    .with_peer(self.target.authority())
                    .with_progress(progress));
            }
            AfterResponse::BodyNotResendable => {
                let shown = location.map_or_else(String::new, |l| {
                    crate::target::redact_userinfo(&crate::proto::peer_error::excerpt(l.as_bytes()))
                });
                return Err(Error::new(
                    Stage::Receive,
                    Kind::RedirectBodyNotResendable {
                        status,
                        location: shown,
                    },
                )
                .with_peer(self.target.authority())
                .with_progress(progress));
            }
            AfterResponse::Follow(next) => next,
        };
        let location = location.expect("after_response follows only with a Location");
        let next_target = self.target.redirect(location.as_bytes()).map_err(|e| {
            Error::new(Stage::Receive, Kind::BadRedirect(e))
                .with_peer(self.target.authority())
                .with_progress(progress)
        })?;
        self.redirects += 1;
        if next.keeps_body && progress.body_bytes_read > 0 {
            body.rewind_for_resend()?;
        }
        self.with_body = next.keeps_body;
        self.method = next.method;
        if origin_of(&next_target) != origin_of(&self.target) {
            upload.fields.retain(|f| policy::crosses_origins(f.name()));
        }
        self.target = next_target;
        self.retried = false;
        Ok(Verdict::Again)
    }
}

/// The body's state for the policy: whether it can be rewound, and how much was read.
fn body_state(body: &Body<'_>, progress: Progress) -> BodyState {
    BodyState {
        rewindable: body.can_rewind(),
        bytes_read: progress.body_bytes_read,
    }
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
    /// to know in advance. A body sent again (a redirect, a retry) calls `make` again.
    pub fn trailers_with(
        mut self,
        announce: &[&str],
        make: impl FnMut() -> Vec<(String, String)> + 'static,
    ) -> Self {
        self.announced
            .extend(announce.iter().map(|n| (*n).to_owned()));
        self.late_trailers.push(Rc::new(RefCell::new(make)));
        self
    }

    /// Computes `algorithm` over the body as it streams and sends it as an RFC 9530
    /// `Content-Digest` trailer (chunked uploads only).
    #[cfg(feature = "checksum")]
    pub fn checksum_trailer(mut self, algorithm: crate::checksum::ChecksumAlgorithm) -> Self {
        self.checksum = Some(algorithm);
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
    /// Continue`, or for at most `timeout` (curl waits 1 s). A final refusal instead (401,
    /// 413, 417, a redirect) is returned and the body is never sent; a 2xx instead lets the
    /// body go. Off by default: see the README for why.
    pub fn expect_continue(mut self, timeout: Duration) -> Self {
        self.expect_continue = Some(timeout);
        self
    }

    /// Calls `callback` each time body bytes go out, with the bytes sent, the total when it
    /// is known, and the rate. Without a callback nothing is computed.
    pub fn progress(mut self, callback: impl FnMut(&UploadProgress) + 'static) -> Self {
        self.progress = Some(Rc::new(RefCell::new(callback)));
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

    /// Follows up to `max` redirects, as curl's `-L --max-redirs max`; without this call a
    /// redirect is returned as the response, as curl without `-L`. With `max` 0 a redirect
    /// is an error ([`Error::is_too_many_redirects`]).
    ///
    /// 307 and 308 send the same method and body again to the new location, which needs a
    /// body from [`Upload::send_seekable`] (or one not read yet, as with a 307 to
    /// `Expect: 100-continue`); a stream already partly sent cannot reach the new location,
    /// and the upload fails ([`Error::is_redirect_body_not_resendable`]) rather than report
    /// the redirect as its answer. 303, and 301/302 after a POST, become a GET without a
    /// body. `Authorization`, `Proxy-Authorization`, `Cookie` and a `Host` given with
    /// [`Upload::header`] are not sent to another origin. See [`crate::proto::policy`].
    pub fn max_redirects(mut self, max: u32) -> Self {
        self.max_redirects = Some(max);
        self
    }

    /// Sends every byte sent and received, labelled, to `trace` (see [`crate::trace`]).
    pub fn trace(mut self, trace: impl Trace + 'static) -> Self {
        self.trace = Some(Box::new(trace));
        self
    }

    fn head(
        &self,
        target: &Target,
        method: &str,
        with_body: bool,
    ) -> Result<RequestHead, RequestError> {
        if let Some(err) = &self.error {
            return Err(err.clone());
        }
        let mut head = RequestHead::new(method, target)?;
        for field in &self.fields {
            head.push(field.clone())?;
        }
        // URL credentials become Basic authentication, as curl does; a caller's own
        // Authorization wins. `Target::redirect` keeps them only for the same origin.
        let authorized = self
            .fields
            .iter()
            .any(|f| f.name().eq_ignore_ascii_case("authorization"));
        if let (false, Some(basic)) = (authorized, target.basic_authorization()) {
            head.push(HeaderField::new("Authorization", basic)?)?;
        }
        if !with_body {
            head.set_framing(BodyFraming::None);
            return Ok(head);
        }
        if let Some(content_type) = &self.form_content_type {
            head.push(content_type.clone())?;
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
            // `Transfer-Encoding: chunked` given as a header is a no-op for a chunked body;
            // with a stated length it contradicts the framing, so say so.
            if self
                .fields
                .iter()
                .any(|f| f.name().eq_ignore_ascii_case("transfer-encoding"))
            {
                return Err(RequestError::InvalidOption {
                    option: "Transfer-Encoding header",
                    reason: "chunked conflicts with the stated Content-Length".into(),
                });
            }
            if !announced.is_empty() {
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

    /// True when the body is followed by trailers (given, made at its end, a checksum).
    fn sends_trailers(&self) -> bool {
        !self.trailers.is_empty() || !self.announced.is_empty() || !self.late_trailers.is_empty()
    }

    fn route_of(&self, target: &Target, with_body: bool) -> Result<Route> {
        let trailers = with_body && self.content_length.is_none() && self.sends_trailers();
        Ok(self.client.proxy.route_with_trailers(target, trailers)?)
    }

    /// How this upload would reach its target: directly or through which proxy, in
    /// absolute form or a CONNECT tunnel, and why (see [`Client::route`]; an upload with
    /// trailers may take a tunnel, [`ProxyTrailers`]).
    pub fn route(&self) -> Result<Route> {
        self.route_of(&Target::parse(&self.url)?, true)
    }

    /// The hooks on the body for one attempt: each attempt starts its checksum afresh.
    fn body_hooks(&self) -> BodyHooks {
        let mut hooks = BodyHooks::default();
        #[cfg(feature = "checksum")]
        if let Some(algorithm) = self.checksum {
            use crate::checksum::Checksum;
            let running = Rc::new(RefCell::new(Some(Checksum::new(algorithm))));
            let observed = Rc::clone(&running);
            hooks.observers.push(Box::new(move |bytes| {
                if let Some(checksum) = observed.borrow_mut().as_mut() {
                    checksum.update(bytes);
                }
            }));
            hooks.late_trailers.push(Box::new(move || {
                Ok(running
                    .borrow_mut()
                    .take()
                    .map(Checksum::into_field)
                    .into_iter()
                    .collect())
            }));
        }
        for maker in &self.late_trailers {
            let maker = Rc::clone(maker);
            hooks.late_trailers.push(Box::new(move || {
                let made = (maker.borrow_mut())();
                made.iter()
                    .map(|(name, value)| HeaderField::trailer(name, value))
                    .collect()
            }));
        }
        hooks
    }

    /// Streams `body` and returns the response once its head has arrived. Blocks.
    ///
    /// A server that answers 300 or above before the body is complete (413, 401, ...)
    /// stops the upload; its response is returned and [`Response::upload_complete`] is
    /// false. An early 2xx does not: the body goes on to its end and the response comes
    /// once it has, or the upload fails ([`Error::early_answer`]) if the server stops
    /// taking it.
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
    pub fn send(self, mut body: impl Read) -> Result<Response> {
        self.run(Body::Stream(Box::new(&mut body)))
    }

    /// Like [`Upload::send`], for a body that can be rewound to where it starts now (a
    /// file, a cursor): it can then be sent again after a 307/308 redirect, or once more
    /// when the connection fails before any response byte.
    pub fn send_seekable(self, mut body: impl Read + Seek) -> Result<Response> {
        let body = Body::seekable(&mut body)?;
        self.run(body)
    }

    /// Sends `form` as a `multipart/form-data` body (RFC 7578), with its Content-Type and
    /// the Upload's method (set `POST` for an HTML-style form).
    ///
    /// When every part's size is known the body goes with an exact Content-Length, unless
    /// trailers or a checksum ask for chunked framing; otherwise it goes chunked, and a
    /// [`Form::require_length`] or [`Upload::content_length`] makes an unsized part an
    /// error before connecting. A form whose parts can all be read again (text, bytes,
    /// regular files, seekable readers) is sent again after a 307/308 or a retry, like
    /// [`Upload::send_seekable`]'s body; a file that changes size while it is sent is an
    /// error. The wire trace labels its boundaries, part headers and part data.
    pub fn send_form(mut self, form: Form<'_>) -> Result<Response> {
        let body = self.attach_form(form)?;
        self.run(body)
    }

    /// Checks `form`, sets the head it needs (Content-Type, its length when known) and
    /// gives the body to send.
    pub(crate) fn attach_form<'b>(&mut self, form: Form<'b>) -> Result<Body<'b>> {
        if let Some(err) = &self.error {
            return Err(err.clone().into());
        }
        // A caller's multipart type (multipart/related, multipart/mixed) is kept and gets
        // the boundary, as curl does; any other type cannot describe a form.
        let mut media_type = "multipart/form-data".to_owned();
        if let Some(at) = self
            .fields
            .iter()
            .position(|f| f.name().eq_ignore_ascii_case("content-type"))
        {
            let given = String::from_utf8_lossy(self.fields[at].value())
                .trim()
                .to_owned();
            if !given
                .get(..10)
                .is_some_and(|t| t.eq_ignore_ascii_case("multipart/"))
            {
                return Err(RequestError::InvalidOption {
                    option: "Content-Type header",
                    reason: format!("{given:?} is not a multipart type, and a form is one"),
                }
                .into());
            }
            // The boundary is the form's own: a second `boundary=` after the caller's would
            // leave a server that reads the first unable to find a part.
            let has_boundary = given.split(';').skip(1).any(|param| {
                param
                    .split('=')
                    .next()
                    .is_some_and(|key| key.trim().eq_ignore_ascii_case("boundary"))
            });
            if has_boundary {
                return Err(RequestError::InvalidOption {
                    option: "Content-Type header",
                    reason: format!(
                        "{given:?} has a boundary, and a form's boundary is made with its parts"
                    ),
                }
                .into());
            }
            media_type = given;
            self.fields.remove(at);
        }
        let required = form.requires_length() || self.content_length.is_some();
        let mut reader = form.require_length(required).into_reader()?;
        let chunked_wanted = !self.trailers.is_empty() || !self.announced.is_empty();
        match (reader.content_length(), self.content_length) {
            (Some(len), Some(stated)) if len != stated => {
                return Err(RequestError::InvalidOption {
                    option: "content length",
                    reason: format!("{stated} was stated, and the form's body is {len} bytes"),
                }
                .into());
            }
            (Some(len), None) if chunked_wanted => self.size_hint = Some(len),
            (Some(len), _) => self.content_length = Some(len),
            (None, _) => {}
        }
        let content_type = format!("{media_type}; {}", reader.boundary_parameter());
        self.form_content_type = Some(HeaderField::new("Content-Type", content_type)?);
        if self.trace.is_some() {
            self.form_sections = Some(reader.log_sections());
        }
        Ok(Body::Form(Box::new(reader)))
    }

    fn run(mut self, mut body: Body<'_>) -> Result<Response> {
        let mut plan = Plan::new(&self, Instant::now())?;
        loop {
            let response = match self.attempt(&plan, &mut body) {
                Ok(response) => response,
                Err(failure) => {
                    plan.after_failure(&mut self, &mut body, failure)?;
                    continue;
                }
            };
            let mut response = response;
            let attempt = Attempt::of(response.driven(), response.connection_reused);
            let progress = response.progress();
            match plan.after_head(&mut self, &mut body, &response.head, progress, &attempt)? {
                Verdict::Deliver => {
                    response.plan = Some(plan);
                    return Ok(response);
                }
                Verdict::Again => {
                    // The trace goes on with the next attempt; this connection closes.
                    self.trace = response.take_trace();
                }
            }
        }
    }

    /// The head, exchange, buffer and destination of the next attempt of `plan`. A
    /// `spare` buffer is used when it fits (chunk size and head), so a set of uploads
    /// reuses its buffers. A `body` whose reads return at once (a seekable one: a file,
    /// memory) has its head, first chunk and last chunk coalesced into as few writes as
    /// they fit (exchange rule 7); a stream's head goes first, alone, so that a server
    /// hears of the upload before the stream's first byte.
    pub(crate) fn prepare(
        &self,
        plan: &Plan,
        spare: Option<FixedBuf>,
        body: &Body<'_>,
    ) -> std::result::Result<Prepared, Error> {
        let mut head = self.head(&plan.target, &plan.method, plan.with_body)?;
        let client = self.client;
        let limits = client.limits;
        let route = self.route_of(&plan.target, plan.with_body)?;
        if let Some(proxy) = route.proxy.as_ref().filter(|_| !route.tunnel) {
            // Absolute form: the proxy reads the origin from the request line, and what
            // it needs for itself rides in the same head.
            head.set_absolute_form(&plan.target);
            // A proxy header named Host is for the proxy, as in the CONNECT (which leaves
            // it out): here it would replace the origin's Host, which the proxy may pass on.
            for field in client.proxy_fields(proxy, &self.fields)? {
                if !field.name().eq_ignore_ascii_case("host") {
                    head.push(field)?;
                }
            }
        }
        if route.proxy.is_some() && route.tunnel {
            // Inside a tunnel the head goes to the origin: a `Proxy-Authorization` among
            // the request's headers goes with the CONNECT instead (see `destination`).
            head.remove_fields("proxy-authorization");
        }
        let mut buf = match spare {
            Some(buf)
                if buf.payload_capacity() == client.chunk_size
                    && buf.lead() >= head.encoded_len() =>
            {
                buf
            }
            _ => new_buffer(client, head.encoded_len()),
        };
        let trailers = if plan.with_body {
            self.trailers.clone()
        } else {
            Vec::new()
        };
        let exchange = if body.can_rewind() {
            Exchange::new_coalescing(&head, trailers, limits, &mut buf)
        } else {
            Exchange::new(&head, trailers, limits, &mut buf)
        }
        .expect("the send region is sized for the head");
        let options = ExchangeOptions {
            expect_timeout: self.expect_continue,
            rate_limit: self.rate_limit,
        };
        let (destination, origin) = client.destination(&plan.target, &route, &self.fields)?;
        Ok(Prepared {
            exchange,
            options,
            destination,
            buf,
            origin,
        })
    }

    /// Gives `driven` this upload's progress callback, body hooks and trace.
    pub(crate) fn equip(&mut self, driven: &mut Driven, plan: &Plan, connection_reused: bool) {
        if let Some(callback) = &self.progress {
            let callback = Rc::clone(callback);
            driven.set_progress(
                Box::new(move |p| (callback.borrow_mut())(p)),
                self.content_length.or(self.size_hint),
            );
        }
        if plan.with_body {
            driven.set_body_hooks(self.body_hooks());
            if let Some(sections) = &self.form_sections {
                driven.set_body_sections(sections.clone());
            }
        }
        if let Some(trace) = self.trace.take() {
            driven.set_trace(trace);
            if let Some(reason) = driven.route_reason() {
                driven.trace_note(Direction::Sent, || format!("proxy: {reason}"));
            }
            if connection_reused {
                let peer = driven.peer().to_owned();
                driven.trace_note(Direction::Sent, || {
                    format!("reusing the kept connection to {peer}")
                });
            }
        }
    }

    /// After a failed attempt: the trace back for the next one, and what the retry policy
    /// needs to know.
    pub(crate) fn fail_attempt(
        &mut self,
        driven: &mut Driven,
        error: Error,
        connection_reused: bool,
    ) -> AttemptFailure {
        self.trace = driven.take_trace();
        let request_complete = driven
            .machine()
            .exchange()
            .is_some_and(Exchange::request_sent);
        let attempt = Attempt::of(driven, connection_reused);
        driven.close();
        AttemptFailure {
            error,
            connection_reused,
            request_complete,
            attempt: Some(Box::new(attempt)),
        }
    }

    /// The trace back from an attempt that ended, for the next one.
    pub(crate) fn take_trace_back(&mut self, driven: &mut Driven) {
        self.trace = driven.take_trace();
    }

    /// One request, on the kept connection to this origin if there is one, else a new one.
    fn attempt(
        &mut self,
        plan: &Plan,
        body: &mut Body<'_>,
    ) -> std::result::Result<Response, AttemptFailure> {
        let fresh = |error: Error| AttemptFailure {
            error,
            connection_reused: false,
            request_complete: false,
            attempt: None,
        };
        let prepared = self.prepare(plan, None, body).map_err(fresh)?;
        let origin = prepared.origin.clone();
        let now = Instant::now();
        let (mut driven, mut event_loop, connection_reused) = match self.take_idle(&origin) {
            Some(idle) => {
                let driven = Driven::reuse(idle.link, prepared, plan.started, now);
                (driven, idle.event_loop, true)
            }
            None => {
                let event_loop = EventLoop::new().map_err(fresh)?;
                let machine = Connection::new(self.client.timeouts, plan.started, now);
                let driven =
                    Driven::connect(event_loop.waker(), TOKEN, prepared, machine, plan.started)
                        .map_err(fresh)?;
                (driven, event_loop, false)
            }
        };
        self.equip(&mut driven, plan, connection_reused);
        let mut no_body = io::empty();
        let source = if plan.with_body {
            body.reader()
        } else {
            &mut no_body
        };
        match run_to_head(&mut driven, &mut event_loop, source) {
            Ok(head) => Ok(Response {
                head,
                driven: Some(driven),
                event_loop: Some(event_loop),
                pending: 0..0,
                body_done: false,
                pool: Some((Arc::clone(&self.client.idle), origin)),
                connection_reused,
                plan: None,
            }),
            Err(error) => Err(self.fail_attempt(&mut driven, error, connection_reused)),
        }
    }

    /// The idle connection to this origin, if there is one still open.
    fn take_idle(&self, origin: &Origin) -> Option<IdleConnection> {
        let mut idle = self.client.idle.lock().ok()?;
        if idle.as_ref().is_some_and(|i| i.origin == *origin) {
            let connection = idle.take()?;
            // A server may have closed it while it sat idle: a closed socket reads as the
            // end, a live one would block. Anything else (stray bytes) is not reusable.
            if connection.link.is_idle_and_open() {
                return Some(connection);
            }
            connection.link.close();
        }
        None
    }
}

/// Mozilla's roots, made once: building the root store for each of many uploads would cost
/// more than their handshakes.
fn default_tls() -> TlsConfig {
    static DEFAULT: std::sync::OnceLock<TlsConfig> = std::sync::OnceLock::new();
    DEFAULT.get_or_init(TlsConfig::default).clone()
}

/// An attempt that failed, with what the retry policy needs to know about it.
#[derive(Debug)]
pub(crate) struct AttemptFailure {
    pub(crate) error: Error,
    pub(crate) connection_reused: bool,
    pub(crate) request_complete: bool,
    /// The attempt, when it got as far as a connection.
    pub(crate) attempt: Option<Box<Attempt>>,
}

/// The one buffer of an attempt: a chunk, its framing and the head in the send region; a
/// small receive region that grows to the limits only for a large response head, chunk
/// line or trailer section.
pub(crate) fn new_buffer(client: &Client, head_len: usize) -> FixedBuf {
    let limits = client.limits;
    let recv_limit = limits
        .max_head_bytes
        .max(limits.max_chunk_line_bytes)
        .max(limits.max_trailer_bytes)
        + 1;
    // Room for the head before the first chunk (exchange rule 7), rounded up so that a
    // spare buffer fits the heads of other uploads too.
    let lead = head_len.next_multiple_of(64);
    FixedBuf::with_lead(client.chunk_size, INITIAL_RECV.min(recv_limit), lead)
        .growable_to(recv_limit)
}

/// What one step of the blocking loop came to.
enum Step<T> {
    Done(T),
    /// More can be done at once: look at events without sleeping.
    Busy,
    /// Sleep until an event or the machine's next timer.
    Blocked,
}

/// Runs `step` on `driven`, waiting on `event_loop` between steps, until it is done or
/// fails: the blocking client's whole loop.
fn block_on<T>(
    driven: &mut Driven,
    event_loop: &mut EventLoop,
    mut step: impl FnMut(&mut Driven, &mio::Registry, Instant) -> Result<Step<T>, Error>,
) -> Result<T, Error> {
    loop {
        let now = Instant::now();
        let timeout = match step(driven, event_loop.registry(), now)? {
            Step::Done(value) => return Ok(value),
            Step::Busy => Some(std::time::Duration::ZERO),
            Step::Blocked => driven.wait_time(now),
        };
        event_loop
            .wait(timeout)
            .map_err(|e| driven.machine().fail(Kind::Io(e)))?;
        driven.absorb(event_loop);
    }
}

/// Sends the request and waits for the final response head.
fn run_to_head(
    driven: &mut Driven,
    event_loop: &mut EventLoop,
    source: &mut dyn Read,
) -> Result<ResponseHead, Error> {
    block_on(driven, event_loop, |driven, registry, now| {
        Ok(match driven.pump(registry, source, now)? {
            Pumped::Head(head) => Step::Done(head),
            Pumped::Busy => Step::Busy,
            Pumped::Blocked => Step::Blocked,
        })
    })
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
    /// The connection; `None` only once it has been handed back or closed on drop.
    driven: Option<Driven>,
    event_loop: Option<EventLoop>,
    /// Body bytes decoded but not yet handed out, in the receive region.
    pending: std::ops::Range<usize>,
    body_done: bool,
    /// Where the connection goes back to when the response was read whole and may be reused.
    pool: Option<(Arc<Mutex<Option<IdleConnection>>>, Origin)>,
    connection_reused: bool,
    /// The upload's plan, for its [`Transfer`]; set once the response is delivered.
    plan: Option<Plan>,
}

impl Response {
    fn driven(&self) -> &Driven {
        self.driven
            .as_ref()
            .expect("a response holds its connection until dropped")
    }

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
        self.driven()
            .machine()
            .exchange()
            .is_some_and(Exchange::request_sent)
    }

    /// How far the upload (and the response so far) got.
    pub fn progress(&self) -> Progress {
        self.driven().machine().progress()
    }

    /// Interim (1xx) responses that came before this one.
    pub fn interim_responses(&self) -> u32 {
        self.driven()
            .machine()
            .exchange()
            .map_or(0, Exchange::interim_responses)
    }

    /// The trace, taken back to follow a redirect with it.
    fn take_trace(&mut self) -> Option<Box<dyn Trace>> {
        self.driven.as_mut().and_then(Driven::take_trace)
    }

    /// The TLS version, cipher suite and ALPN protocol, for https.
    pub fn tls(&self) -> Option<TlsSummary> {
        self.driven()
            .transport()
            .and_then(crate::transport::Transport::tls_summary)
    }

    /// True when this upload went over a connection kept open from an earlier one.
    pub fn connection_reused(&self) -> bool {
        self.connection_reused
    }

    /// `host:port at address` of the server.
    pub fn peer(&self) -> &str {
        self.driven().peer()
    }

    /// What the upload took, as curl's `--write-out` reports it: times, connections,
    /// redirects, bytes, the last URL and address. Its `total` runs to the end of the
    /// response body once that was read (through [`Read`], [`Response::copy_to`] or
    /// [`Response::text`]); before that, to the latest stage (the first response byte).
    pub fn transfer(&self) -> Transfer {
        let attempt = Attempt::of(self.driven(), self.connection_reused);
        self.plan
            .as_ref()
            .expect("a delivered response holds its plan")
            .transfer(Some(&attempt), attempt.ended_at())
    }

    /// How long each stage of the upload took from its start: [`Response::transfer`]'s
    /// timings.
    pub fn timings(&self) -> Timings {
        self.transfer().timings
    }

    /// Decodes the next stretch of body into `self.pending`; false at the end of the body.
    fn fill_pending(&mut self) -> Result<bool> {
        while self.pending.is_empty() {
            if self.body_done {
                return Ok(false);
            }
            let (Some(driven), Some(event_loop)) = (self.driven.as_mut(), self.event_loop.as_mut())
            else {
                return Ok(false);
            };
            let step = block_on(driven, event_loop, |driven, registry, now| {
                Ok(match driven.pump_body(registry, now)? {
                    Some(step) => Step::Done(step),
                    None => Step::Blocked,
                })
            })?;
            match step {
                BodyStep::Data(range) => self.pending = range,
                BodyStep::End => self.body_done = true,
                BodyStep::NeedMore => unreachable!("pump_body waits for bytes"),
            }
        }
        Ok(true)
    }

    /// Writes the rest of the body to `out`; returns the bytes written.
    pub fn copy_to<W: Write + ?Sized>(&mut self, out: &mut W) -> Result<u64> {
        let mut total = 0u64;
        while self.fill_pending()? {
            let driven = self.driven();
            let bytes = &driven.buf().recv_region()[self.pending.clone()];
            out.write_all(bytes).map_err(|e| {
                Error::io(Stage::WriteOutput, e).with_progress(driven.machine().progress())
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
        // A response read to its end on a connection both sides may keep goes back to the
        // client for the next upload; anything else is closed.
        let Some(driven) = self.driven.take() else {
            return;
        };
        let (idle, _buffer) = driven.finish(self.body_done);
        if let (Some(link), Some((pool, origin)), Some(event_loop)) =
            (idle, self.pool.take(), self.event_loop.take())
        {
            match pool.lock() {
                Ok(mut idle) => {
                    if let Some(previous) = idle.replace(IdleConnection {
                        origin,
                        link,
                        event_loop,
                    }) {
                        previous.link.close();
                    }
                }
                Err(_) => link.close(),
            }
        }
    }
}

impl Read for Response {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() || !self.fill_pending().map_err(io::Error::other)? {
            return Ok(0);
        }
        let n = out.len().min(self.pending.len());
        let start = self.pending.start;
        out[..n].copy_from_slice(&self.driven().buf().recv_region()[start..start + n]);
        self.pending.start += n;
        Ok(n)
    }
}
