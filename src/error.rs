//! The one error type of the public API: what failed, at which stage of the upload,
//! and how far the upload had got when it failed.
//!
//! The shape follows hyper's: a private kind behind a box, queries instead of a public
//! enum, `Display` for this level only and the cause through `source()`. On top of that
//! every error carries the [`Stage`] and the [`Progress`], because "connection reset"
//! means something very different before the first byte and after 40 GiB.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::proto::peer_error::PeerError;

/// A specialised `Result` for chunkwire operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where in the life of an upload an error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stage {
    /// Building the request: the URL, method or a header was refused before any I/O.
    Request,
    /// Looking up the host name.
    Resolve,
    /// Opening the TCP connection.
    Connect,
    /// The TLS handshake.
    TlsHandshake,
    /// Writing the request head or body to the connection.
    Send,
    /// Reading the body from the caller's source (`std::io::Read`).
    ReadSource,
    /// Reading or parsing the response.
    Receive,
    /// Writing the response body to the caller's writer.
    WriteOutput,
    /// Setting up the CONNECT tunnel through an HTTP proxy, or the proxy's refusal.
    Proxy,
}

impl Stage {
    /// A short lower-case name, as printed in error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Request => "request",
            Stage::Resolve => "resolve",
            Stage::Connect => "connect",
            Stage::TlsHandshake => "TLS handshake",
            Stage::Send => "send",
            Stage::ReadSource => "read source",
            Stage::Receive => "receive",
            Stage::WriteOutput => "write output",
            Stage::Proxy => "proxy",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far an upload had got: counted by the event loop as bytes move.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Body bytes taken from the caller's source.
    pub body_bytes_read: u64,
    /// Body bytes the socket accepted (payload only, without chunk framing).
    pub body_bytes_sent: u64,
    /// All bytes the socket accepted: head, framing and body.
    pub wire_bytes_sent: u64,
    /// Bytes received from the server.
    pub wire_bytes_received: u64,
}

/// Which deadline expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// The TCP connection (and TLS handshake) did not complete in time.
    Connect,
    /// No byte moved in either direction for this long.
    Stall,
    /// The whole exchange took longer than allowed.
    Total,
}

/// The caller asked for something chunkwire will not send.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// The URL does not parse, or lacks what an upload needs.
    InvalidUrl {
        /// The URL as given (truncated).
        url: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The scheme is not one chunkwire speaks.
    UnsupportedScheme(String),
    /// The method is not an RFC 9110 token.
    InvalidMethod(String),
    /// A header name is not an RFC 9110 token.
    InvalidHeaderName(String),
    /// A header value holds CR, LF, NUL or another control character.
    InvalidHeaderValue {
        /// The header's name.
        name: String,
    },
    /// A header that chunkwire sets itself because it decides the framing.
    ReservedHeader(String),
    /// A field that must not be sent after the body (RFC 9110 section 6.5.1).
    ForbiddenTrailer(String),
    /// A header that may appear only once was given twice.
    DuplicateHeader(String),
    /// A header line given as text has no colon.
    MalformedHeaderLine(String),
    /// An option is out of its range.
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// The body source ended before the stated Content-Length.
    SourceShorterThanLength {
        /// The stated length.
        expected: u64,
        /// What the source gave.
        actual: u64,
    },
    /// The body source held more than the stated Content-Length.
    SourceLongerThanLength {
        /// The stated length.
        expected: u64,
    },
    /// A Content-Length is required, and a part of the form has no known size.
    FormPartUnsized {
        /// The part's name.
        part: String,
    },
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::InvalidUrl { url, reason } => write!(f, "invalid URL {url:?}: {reason}"),
            RequestError::UnsupportedScheme(s) => {
                write!(f, "unsupported URL scheme {s:?} (expected http or https)")
            }
            RequestError::InvalidMethod(m) => write!(f, "invalid method {m:?}: not a token"),
            RequestError::InvalidHeaderName(n) => {
                write!(f, "invalid header name {n:?}: not a token")
            }
            RequestError::InvalidHeaderValue { name } => write!(
                f,
                "invalid value for header {name:?}: control characters (CR, LF, NUL, ...) are not allowed"
            ),
            RequestError::ReservedHeader(n) => write!(
                f,
                "header {n:?} is set by chunkwire; use the content-length or expect-continue option instead"
            ),
            RequestError::ForbiddenTrailer(n) => write!(
                f,
                "{n:?} cannot be a trailer: framing, routing, authentication and content fields must come before the body"
            ),
            RequestError::DuplicateHeader(n) => {
                write!(f, "header {n:?} may be sent only once")
            }
            RequestError::MalformedHeaderLine(l) => {
                write!(f, "header {l:?} is not of the form 'Name: value'")
            }
            RequestError::InvalidOption { option, reason } => {
                write!(f, "invalid {option}: {reason}")
            }
            RequestError::SourceShorterThanLength { expected, actual } => write!(
                f,
                "body source ended after {actual} bytes, before the stated Content-Length of {expected}"
            ),
            RequestError::SourceLongerThanLength { expected } => write!(
                f,
                "body source holds more than the stated Content-Length of {expected} bytes"
            ),
            RequestError::FormPartUnsized { part } => write!(
                f,
                "form part {part:?} has no known size (a pipe or a reader without a length), \
                 and a Content-Length is required: nothing was sent"
            ),
        }
    }
}

impl std::error::Error for RequestError {}

#[derive(Debug)]
pub(crate) enum Kind {
    Request(RequestError),
    Peer(PeerError),
    Io(io::Error),
    Timeout(TimeoutKind, Duration),
    /// The server closed (or reset) the connection before a complete response head; the
    /// reset, when there was one.
    ClosedBeforeResponse(Option<io::Error>),
    /// A redirect needed the body again, and the body cannot be sent again.
    RedirectBodyNotResendable {
        /// The redirect's status.
        status: u16,
        /// Where it pointed, without credentials.
        location: String,
    },
    /// The server answered (2xx) before the body was complete, so the body went on, and
    /// then the server stopped taking it: the body did not arrive whole.
    AnsweredEarlyThenLost {
        /// The early answer's status.
        status: u16,
        /// How sending failed after it.
        cause: io::Error,
    },
    /// Name resolution gave no address.
    NoAddresses,
    /// More redirects than allowed.
    TooManyRedirects(u32),
    /// The server's `Location` cannot be followed (another scheme, not a URL).
    BadRedirect(RequestError),
    /// The proxy answered the CONNECT (or, in absolute form, the request) with a status
    /// that is no tunnel: 407, 403, 502 ...
    ProxyRefused(Box<ProxyRefusal>),
    /// The proxy closed the connection before answering the CONNECT.
    ProxyClosed,
    /// The proxy sent bytes after its 2xx to the CONNECT, before the tunnel was used.
    ProxyExtraBytes,
}

/// What a proxy said when it refused.
#[derive(Debug)]
pub(crate) struct ProxyRefusal {
    pub(crate) status: u16,
    pub(crate) reason: String,
    /// What was refused: `the CONNECT to host:port`, or the request in absolute form.
    pub(crate) to: String,
    /// The `Proxy-Authenticate` challenge of a 407.
    pub(crate) challenge: Option<String>,
    /// True when credentials were sent (so a 407 means they were refused).
    pub(crate) credentials_sent: bool,
}

struct Inner {
    stage: Stage,
    kind: Kind,
    progress: Progress,
    /// The host (and port) or address the error concerns, when there is one.
    peer: Option<String>,
    /// A 2xx the server sent before the body was complete (the body went on, then this).
    answered_early: Option<u16>,
    /// The connection went to an HTTP proxy (so a resolve failure is the proxy's name).
    via_proxy: bool,
    /// What the upload took until it failed, when it got as far as an attempt.
    transfer: Option<Box<crate::Transfer>>,
}

/// An error from chunkwire: its stage, what went wrong, and how far the upload got.
pub struct Error {
    inner: Box<Inner>,
}

impl Error {
    pub(crate) fn new(stage: Stage, kind: Kind) -> Self {
        Error {
            inner: Box::new(Inner {
                stage,
                kind,
                progress: Progress::default(),
                peer: None,
                answered_early: None,
                via_proxy: false,
                transfer: None,
            }),
        }
    }

    pub(crate) fn request(err: RequestError) -> Self {
        Error::new(Stage::Request, Kind::Request(err))
    }

    pub(crate) fn io(stage: Stage, err: io::Error) -> Self {
        Error::new(stage, Kind::Io(err))
    }

    pub(crate) fn with_progress(mut self, progress: Progress) -> Self {
        self.inner.progress = progress;
        self
    }

    /// The server had answered `status` early, and the body went on until this error.
    pub(crate) fn with_early_answer(mut self, status: u16) -> Self {
        self.inner.answered_early = Some(status);
        self
    }

    pub(crate) fn with_peer(mut self, peer: impl Into<String>) -> Self {
        if self.inner.peer.is_none() {
            self.inner.peer = Some(peer.into());
        }
        self
    }

    /// The connection this error concerns went to an HTTP proxy.
    pub(crate) fn with_via_proxy(mut self) -> Self {
        self.inner.via_proxy = true;
        self
    }

    /// True when the connection that failed went to an HTTP proxy (not to the target): a
    /// resolve or connect failure is then the proxy's (curl's exit 5 and 7).
    pub fn is_via_proxy(&self) -> bool {
        self.inner.via_proxy
    }

    /// The status a proxy refused the tunnel (or the request) with: 407, 403, 502 ...
    pub fn proxy_status(&self) -> Option<u16> {
        match &self.inner.kind {
            Kind::ProxyRefused(refusal) => Some(refusal.status),
            _ => None,
        }
    }

    /// What the upload took until it failed (curl's `-w` variables on an error).
    pub(crate) fn with_transfer(mut self, transfer: crate::Transfer) -> Self {
        self.inner.transfer = Some(Box::new(transfer));
        self
    }

    /// What the upload took until it failed: its times, connections, redirects, bytes and
    /// last URL, as curl's `--write-out` shows them for a failed transfer. `None` for an
    /// error before any attempt (a bad URL or option).
    pub fn transfer(&self) -> Option<&crate::Transfer> {
        self.inner.transfer.as_deref()
    }

    /// The stage the upload was in when it failed.
    pub fn stage(&self) -> Stage {
        self.inner.stage
    }

    /// How far the upload got before it failed.
    pub fn progress(&self) -> Progress {
        self.inner.progress
    }

    /// True when a deadline expired; [`Error::timeout_kind`] says which.
    pub fn is_timeout(&self) -> bool {
        matches!(self.inner.kind, Kind::Timeout(..))
    }

    /// Which deadline expired, if this is a timeout.
    pub fn timeout_kind(&self) -> Option<TimeoutKind> {
        match self.inner.kind {
            Kind::Timeout(kind, _) => Some(kind),
            _ => None,
        }
    }

    /// True when the caller's request was refused before any I/O (bad URL, header, option).
    pub fn is_request(&self) -> bool {
        matches!(self.inner.kind, Kind::Request(_))
    }

    /// The refused part of the request, if the error is the caller's.
    pub fn request_error(&self) -> Option<&RequestError> {
        match &self.inner.kind {
            Kind::Request(e) => Some(e),
            _ => None,
        }
    }

    /// The server's protocol violation, if the server sent bytes that are not HTTP/1.1.
    pub fn peer_error(&self) -> Option<&PeerError> {
        match &self.inner.kind {
            Kind::Peer(e) => Some(e),
            _ => None,
        }
    }

    /// The I/O error underneath, if there is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match &self.inner.kind {
            Kind::Io(e)
            | Kind::ClosedBeforeResponse(Some(e))
            | Kind::AnsweredEarlyThenLost { cause: e, .. } => Some(e),
            _ => None,
        }
    }

    /// The status of a success (2xx) the server sent before the body was complete, when the
    /// upload then failed (the server closed, reset, or stopped reading until a timeout):
    /// the body did not arrive whole, whatever it said.
    pub fn early_answer(&self) -> Option<u16> {
        match self.inner.kind {
            Kind::AnsweredEarlyThenLost { status, .. } => Some(status),
            _ => self.inner.answered_early,
        }
    }

    /// True when the server redirected to something that cannot be followed: another scheme
    /// (`ftp:`, `file:`, `mailto:`), or a `Location` that is not a URL.
    pub fn is_bad_redirect(&self) -> bool {
        matches!(self.inner.kind, Kind::BadRedirect(_))
    }

    /// True when the redirect limit was reached.
    pub fn is_too_many_redirects(&self) -> bool {
        matches!(self.inner.kind, Kind::TooManyRedirects(_))
    }

    /// True when the server closed or reset the connection without a complete response
    /// (curl's "empty reply from server").
    pub fn is_closed_before_response(&self) -> bool {
        matches!(self.inner.kind, Kind::ClosedBeforeResponse(_))
    }

    /// True when a redirect could not be followed because it needed the body again and the
    /// body (a stream that cannot be rewound) was already partly sent: the body did not
    /// reach the redirect's target.
    pub fn is_redirect_body_not_resendable(&self) -> bool {
        matches!(self.inner.kind, Kind::RedirectBodyNotResendable { .. })
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("stage", &self.inner.stage)
            .field("kind", &self.inner.kind)
            .field("progress", &self.inner.progress)
            .field("peer", &self.inner.peer)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        write!(f, "{} failed", inner.stage)?;
        if let Some(peer) = &inner.peer {
            write!(f, " ({peer})")?;
        }
        f.write_str(": ")?;
        match &inner.kind {
            Kind::Request(e) => write!(f, "{e}")?,
            Kind::Peer(e) => write!(f, "server broke HTTP/1.1: {e}")?,
            Kind::Io(e) => write!(f, "{e}")?,
            Kind::Timeout(kind, after) => {
                let what = match kind {
                    TimeoutKind::Connect => "connect timeout",
                    TimeoutKind::Stall => "stalled: no bytes moved",
                    TimeoutKind::Total => "maximum time reached",
                };
                write!(f, "{what} after {:.1?}", after)?
            }
            Kind::ClosedBeforeResponse(None) => {
                f.write_str("the server closed the connection without a complete response")?
            }
            Kind::ClosedBeforeResponse(Some(e)) => write!(
                f,
                "the server reset the connection without a complete response ({e})"
            )?,
            Kind::RedirectBodyNotResendable { status, location } => write!(
                f,
                "the server redirected ({status}) to {location}, but the body cannot be sent \
                 again: it is a stream that cannot be rewound, and it did not reach the new location"
            )?,
            Kind::AnsweredEarlyThenLost { status, cause } => write!(
                f,
                "the server answered {status} before the body was complete, then stopped \
                 taking the body ({cause}): it did not arrive whole"
            )?,
            Kind::NoAddresses => f.write_str("the name resolved to no address")?,
            Kind::TooManyRedirects(max) => write!(f, "more than {max} redirects")?,
            Kind::BadRedirect(e) => write!(f, "the server's redirect cannot be followed: {e}")?,
            Kind::ProxyRefused(refusal) => {
                let ProxyRefusal {
                    status,
                    reason,
                    to,
                    challenge,
                    credentials_sent,
                } = &**refusal;
                write!(f, "the proxy refused {to}: {status} {reason}")?;
                // A 401 to a CONNECT is the proxy's too (tinyproxy answers refused
                // credentials with it).
                if matches!(status, 401 | 407) {
                    match challenge {
                        Some(scheme) => write!(f, " (it asks for {scheme} authentication")?,
                        None => f.write_str(" (it names no authentication scheme")?,
                    }
                    if *credentials_sent {
                        f.write_str("; the credentials sent were refused)")?;
                    } else {
                        f.write_str(
                            "; no credentials were sent: give them in the proxy URL or with -U)",
                        )?;
                    }
                }
            }
            Kind::ProxyClosed => {
                f.write_str("the proxy closed the connection before answering the CONNECT")?
            }
            Kind::ProxyExtraBytes => f.write_str(
                "the proxy sent bytes after its answer to the CONNECT, before the tunnel was used",
            )?,
        }
        if let (Some(status), false) = (
            inner.answered_early,
            matches!(inner.kind, Kind::AnsweredEarlyThenLost { .. }),
        ) {
            write!(
                f,
                " (the server had answered {status} before the body was complete)"
            )?;
        }
        if inner.stage != Stage::Request {
            let p = inner.progress;
            write!(
                f,
                "; {} body bytes sent ({} read from the source, {} bytes on the wire)",
                p.body_bytes_sent, p.body_bytes_read, p.wire_bytes_sent
            )?;
        }
        Ok(())
    }
}

/// `Display` already prints the message of the cause (so one line says everything);
/// `source()` goes on from beneath it, so a printed chain never repeats a line.
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.inner.kind {
            Kind::Request(e) | Kind::BadRedirect(e) => e.source(),
            Kind::Peer(e) => e.source(),
            Kind::Io(e)
            | Kind::ClosedBeforeResponse(Some(e))
            | Kind::AnsweredEarlyThenLost { cause: e, .. } => e.source(),
            _ => None,
        }
    }
}

impl From<RequestError> for Error {
    fn from(err: RequestError) -> Self {
        Error::request(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_stage_peer_and_progress() {
        let err = Error::io(
            Stage::Send,
            io::Error::new(io::ErrorKind::ConnectionReset, "connection reset by peer"),
        )
        .with_peer("127.0.0.1:8080")
        .with_progress(Progress {
            body_bytes_read: 100,
            body_bytes_sent: 90,
            wire_bytes_sent: 120,
            wire_bytes_received: 0,
        });
        assert_eq!(
            err.to_string(),
            "send failed (127.0.0.1:8080): connection reset by peer; \
             90 body bytes sent (100 read from the source, 120 bytes on the wire)"
        );
        assert!(err.io_error().is_some());
        assert!(!err.is_timeout());
    }

    #[test]
    fn the_source_chain_never_repeats_the_message() {
        let tls = io::Error::new(io::ErrorKind::InvalidData, "UnknownIssuer");
        let err = Error::io(Stage::TlsHandshake, tls);
        let mut lines = vec![err.to_string()];
        let mut next = std::error::Error::source(&err);
        while let Some(cause) = next {
            lines.push(cause.to_string());
            next = cause.source();
        }
        for (i, line) in lines.iter().enumerate().skip(1) {
            assert!(
                !lines[0].contains(line.as_str()),
                "line {i} repeats the message: {lines:?}"
            );
        }
        assert!(lines[0].contains("UnknownIssuer"), "{lines:?}");
    }

    #[test]
    fn request_errors_do_not_mention_progress() {
        let err = Error::request(RequestError::InvalidMethod("G T".into()));
        assert_eq!(
            err.to_string(),
            "request failed: invalid method \"G T\": not a token"
        );
        assert!(err.is_request());
    }
}
