//! The wire trace: every byte sent and received at the HTTP layer, labelled with the part of
//! the message it belongs to (request line, header, chunk-size line, chunk data, ...).
//!
//! The protocol core labels the bytes; the event loop hands the trace exactly the bytes the
//! transport accepted and the bytes the parser consumed, in order. This module only formats
//! them: as annotated text (`--trace-ascii`), as a hex dump (`--trace`) or as one JSON object
//! a line (`--trace-json`). With no trace set, the loop never calls any of it.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::target::redact_userinfo;

/// Which way the bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Written to the transport.
    Sent,
    /// Read from the transport.
    Received,
}

impl Direction {
    fn arrow(self) -> &'static str {
        match self {
            Direction::Sent => ">",
            Direction::Received => "<",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Direction::Sent => "send",
            Direction::Received => "recv",
        }
    }
}

/// The part of an HTTP/1.1 message some bytes belong to (RFC 9112).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Part {
    /// `method SP request-target SP HTTP-version CRLF` (section 3).
    RequestLine,
    /// `HTTP-version SP status-code SP reason-phrase CRLF` of the final response (section 4).
    StatusLine,
    /// The status line of an interim (1xx) response.
    InterimStatusLine,
    /// One `field-name: field-value CRLF` line (section 5).
    Header,
    /// The empty line that ends a head.
    EndOfHead,
    /// `chunk-size [ chunk-ext ] CRLF` (section 7.1).
    ChunkSize {
        /// The size it announces.
        size: u64,
    },
    /// Chunk data.
    ChunkData,
    /// The CRLF after chunk data.
    ChunkEnd,
    /// `0 CRLF`, the last chunk.
    LastChunk,
    /// One trailer field line (section 7.1.2).
    Trailer,
    /// The CRLF that ends a chunked body.
    EndOfBody,
    /// Body bytes without chunk framing (Content-Length or until close).
    Body,
    /// A `multipart/form-data` delimiter line (`--boundary`, with the CRLF before it) or
    /// the close delimiter (`--boundary--`), within the body (RFC 2046 section 5.1.1).
    FormBoundary,
    /// The header lines of a form part and the empty line after them (RFC 7578 section 4.2).
    FormPartHeader,
    /// A form part's data.
    FormPartData,
}

impl Part {
    /// A short name, as shown in traces.
    pub fn name(self) -> &'static str {
        match self {
            Part::RequestLine => "request line",
            Part::StatusLine => "status line",
            Part::InterimStatusLine => "interim status line",
            Part::Header => "header",
            Part::EndOfHead => "end of head",
            Part::ChunkSize { .. } => "chunk size",
            Part::ChunkData => "chunk data",
            Part::ChunkEnd => "chunk end",
            Part::LastChunk => "last chunk",
            Part::Trailer => "trailer",
            Part::EndOfBody => "end of body",
            Part::Body => "body",
            Part::FormBoundary => "form boundary",
            Part::FormPartHeader => "form part header",
            Part::FormPartData => "form part data",
        }
    }

    /// True for payload bytes (summarised in `--trace-ascii`), false for framing and heads.
    pub fn is_data(self) -> bool {
        matches!(self, Part::ChunkData | Part::Body | Part::FormPartData)
    }
}

/// Receives the trace of an exchange. Implement it to see the wire your own way.
pub trait Trace: Send {
    /// `bytes` went `direction`, and belong to `part`.
    fn bytes(&mut self, direction: Direction, part: Part, bytes: &[u8]);
    /// Something that is not bytes on the wire: the connection, the TLS handshake, the body
    /// framing chosen from the response head.
    fn note(&mut self, direction: Direction, text: &str);
    /// The exchange's bytes go over this connection from now on: a new one (before its TLS
    /// handshake, if any) or one kept from an earlier upload. For traces that need the
    /// addresses, such as a packet capture; the default ignores it.
    fn connected(&mut self, connection: &TracedConnection) {
        let _ = connection;
    }
    /// Where the bytes of a TLS connection go as they cross the socket (the records, not
    /// the plaintext [`Trace::bytes`] sees), with the session's secrets. Asked once per TLS
    /// connection, right after [`Trace::connected`]; the default, `None`, taps nothing and
    /// costs nothing.
    fn wire_tap(&mut self) -> Option<Arc<dyn WireTap>> {
        None
    }
}

/// A TCP connection a trace is told about, by its two ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TracedConnection {
    /// Our end.
    pub local: SocketAddr,
    /// The server's end.
    pub remote: SocketAddr,
    /// TLS runs over it: [`Trace::bytes`] sees plaintext, the [`WireTap`] the records.
    pub tls: bool,
    /// It was opened for an earlier upload and kept (keep-alive): its handshakes are over.
    pub reused: bool,
}

impl TracedConnection {
    pub(crate) fn new(local: SocketAddr, remote: SocketAddr, tls: bool, reused: bool) -> Self {
        TracedConnection {
            local,
            remote,
            tls,
            reused,
        }
    }
}

/// The raw side of a TLS connection: every byte read from and written to its socket, and
/// its secrets (for decrypting a capture of those bytes). Called on the event loop's
/// thread, in order, while the connection's records move.
pub trait WireTap: Send + Sync {
    /// `bytes` crossed the socket `direction`.
    fn wire(&self, direction: Direction, bytes: &[u8]);
    /// A secret of the session as one line of the NSS key log format, without its line
    /// feed: `label client_random secret`, the last two in hex (RFC 9850).
    fn secret(&self, line: &str);
}

/// How a [`TraceWriter`] shows the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceFormat {
    /// Annotated text, one line a part; payload past `data_limit` bytes is summarised.
    Ascii {
        /// Payload bytes shown per part before the rest is summarised.
        data_limit: usize,
    },
    /// Every byte as a hex dump with an ASCII column.
    Hex,
    /// One JSON object a line, every byte in hex.
    Json,
}

/// Formats a trace to a writer (a file, standard output, a `Vec<u8>`).
///
/// It never prints a secret: the credentials of `Authorization`, `Proxy-Authorization` and
/// `Cookie` field lines are replaced by their length (the field name and the auth scheme
/// stay), and the password of a URL with userinfo in a `Location` or `Content-Location`
/// line or in a note is masked (`user:***@host`), in either direction. Such a line is held
/// until it is whole, so a line split over several writes is masked all the same, then
/// printed as one event at its real offset with its real length. Other field lines are
/// held only while their name could still be one of those, and are printed piece by piece
/// as they came; every other part is printed as it comes.
#[derive(Debug)]
pub struct TraceWriter<W: Write + Send> {
    out: W,
    format: TraceFormat,
    started: Instant,
    offsets: [u64; 2],
    line: String,
    /// The field line in progress, a direction each.
    fields: [FieldLine; 2],
    failed: Option<io::Error>,
}

impl<W: Write + Send> TraceWriter<W> {
    /// A writer in `format`; times are counted from now.
    pub fn new(out: W, format: TraceFormat) -> Self {
        TraceWriter {
            out,
            format,
            started: Instant::now(),
            offsets: [0, 0],
            line: String::with_capacity(256),
            fields: Default::default(),
            failed: None,
        }
    }

    /// The first write error, if writing the trace failed (the upload goes on regardless).
    pub fn error(&self) -> Option<&io::Error> {
        self.failed.as_ref()
    }

    /// Prints any field line still held (cut short: masked as far as it goes), then flushes
    /// the writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.settle(Direction::Sent);
        self.settle(Direction::Received);
        self.out.flush()
    }

    /// The writer, as far as the trace has been written to it.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// The writer back, after any field line still held is printed.
    pub fn into_inner(mut self) -> W {
        self.settle(Direction::Sent);
        self.settle(Direction::Received);
        self.out
    }

    fn flush_line(&mut self) {
        if self.failed.is_none()
            && let Err(e) = self.out.write_all(self.line.as_bytes())
        {
            self.failed = Some(e);
        }
        self.line.clear();
    }

    fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Prints `bytes` of `part`, the first at `offset`.
    fn event(&mut self, direction: Direction, part: Part, offset: u64, seconds: f64, bytes: &[u8]) {
        match self.format {
            TraceFormat::Ascii { data_limit } => {
                let _ = write!(
                    self.line,
                    "{seconds:>10.6} {} {offset:>10} {:<20} ",
                    direction.arrow(),
                    Label(part)
                );
                if part.is_data() && bytes.len() > data_limit {
                    push_escaped(&mut self.line, &bytes[..data_limit]);
                    let _ = write!(self.line, "... ({} bytes)", bytes.len());
                } else {
                    push_escaped(&mut self.line, bytes);
                    if part.is_data() {
                        let _ = write!(self.line, " ({} bytes)", bytes.len());
                    }
                }
                self.line.push('\n');
            }
            TraceFormat::Hex => {
                let _ = writeln!(
                    self.line,
                    "{seconds:>10.6} {} {offset:>10} {} ({} bytes)",
                    direction.arrow(),
                    Label(part),
                    bytes.len()
                );
                for (row, chunk) in bytes.chunks(16).enumerate() {
                    let _ = write!(self.line, "    {:06x}: ", offset as usize + row * 16);
                    for column in 0..16 {
                        match chunk.get(column) {
                            Some(b) => {
                                let _ = write!(self.line, "{b:02x} ");
                            }
                            None => self.line.push_str("   "),
                        }
                    }
                    self.line.push(' ');
                    for &b in chunk {
                        self.line.push(if (0x20..0x7f).contains(&b) {
                            b as char
                        } else {
                            '.'
                        });
                    }
                    self.line.push('\n');
                }
            }
            TraceFormat::Json => {
                self.json_start(direction, part, offset, seconds);
                let _ = write!(self.line, ",\"len\":{},\"hex\":\"", bytes.len());
                push_hex(&mut self.line, bytes);
                self.line.push_str("\"}\n");
            }
        }
        self.flush_line();
    }

    /// Prints a field line of `len` bytes at `offset` as `shown`, its masked text: the
    /// offset and length are the real ones, the bytes are not shown.
    fn masked_event(&mut self, line: MaskedLine, shown: &[u8]) {
        let MaskedLine {
            direction,
            part,
            offset,
            seconds,
            len,
        } = line;
        match self.format {
            TraceFormat::Ascii { .. } => {
                let _ = write!(
                    self.line,
                    "{seconds:>10.6} {} {offset:>10} {:<20} ",
                    direction.arrow(),
                    Label(part)
                );
                push_escaped(&mut self.line, shown);
                self.line.push('\n');
            }
            TraceFormat::Hex => {
                let _ = write!(
                    self.line,
                    "{seconds:>10.6} {} {offset:>10} {} ({len} bytes, secret masked: no hex \
                     dump)\n    {offset:06x}: ",
                    direction.arrow(),
                    Label(part),
                );
                push_escaped(&mut self.line, shown);
                self.line.push('\n');
            }
            TraceFormat::Json => {
                self.json_start(direction, part, offset, seconds);
                let _ = write!(self.line, ",\"len\":{len},\"masked\":");
                crate::json::push_bytes(&mut self.line, shown);
                self.line.push_str("}\n");
            }
        }
        self.flush_line();
    }

    fn json_start(&mut self, direction: Direction, part: Part, offset: u64, seconds: f64) {
        let _ = write!(
            self.line,
            "{{\"t\":{seconds:.6},\"dir\":\"{}\",\"offset\":{offset},\"part\":\"{}\"",
            direction.name(),
            part.name()
        );
        if let Part::ChunkSize { size } = part {
            let _ = write!(self.line, ",\"size\":{size}");
        }
    }

    /// One piece of a field line (it ends at the line's LF, or earlier), the first byte at
    /// `offset`.
    fn field_piece(&mut self, direction: Direction, part: Part, offset: u64, piece: &[u8]) {
        let seconds = self.seconds();
        let index = direction as usize;
        if self.fields[index].part != part {
            self.settle(direction);
        }
        let ends_line = piece.ends_with(b"\n");
        let field = &mut self.fields[index];
        match field.masking {
            Some(Masking::Plain) => {
                if ends_line {
                    field.masking = None;
                    field.after_credentials = false;
                }
                return self.event(direction, part, offset, seconds, piece);
            }
            None => {
                field.part = part;
                field.start = offset;
                field.masking = Some(Masking::Undecided);
            }
            Some(_) => {}
        }
        field.held.extend_from_slice(piece);
        field.pieces.push((field.held.len(), seconds));
        if field.masking == Some(Masking::Undecided) {
            field.masking = Some(Masking::of(&field.held, ends_line, field.after_credentials));
        }
        match field.masking {
            Some(Masking::Undecided) => {}
            Some(Masking::Plain) if !ends_line => {
                // Print what was held; the rest of the line goes straight through.
                self.release(direction);
                self.fields[index].masking = Some(Masking::Plain);
            }
            _ if ends_line => self.settle(direction),
            _ => {}
        }
    }

    /// Prints the field line held for `direction`, whole or cut short, masked if it must be.
    fn settle(&mut self, direction: Direction) {
        let index = direction as usize;
        let Some(masking) = self.fields[index].masking else {
            return;
        };
        let field = &mut self.fields[index];
        let mut shown = std::mem::take(&mut field.shown);
        shown.clear();
        if masking.mask(&field.held, &mut shown) {
            let line = MaskedLine {
                direction,
                part: field.part,
                offset: field.start,
                seconds: field.pieces.last().map_or(0.0, |&(_, seconds)| seconds),
                len: field.held.len(),
            };
            self.masked_event(line, &shown);
            let field = &mut self.fields[index];
            field.held.clear();
            field.pieces.clear();
        } else {
            self.release(direction);
        }
        let field = &mut self.fields[index];
        field.shown = shown;
        field.masking = None;
        field.after_credentials =
            matches!(masking, Masking::Credentials { .. } | Masking::Continuation);
    }

    /// Prints the pieces held for `direction` as they came, unmasked.
    fn release(&mut self, direction: Direction) {
        let index = direction as usize;
        let held = std::mem::take(&mut self.fields[index].held);
        let pieces = std::mem::take(&mut self.fields[index].pieces);
        let (part, start) = (self.fields[index].part, self.fields[index].start);
        let mut from = 0;
        for &(end, seconds) in &pieces {
            self.event(
                direction,
                part,
                start + from as u64,
                seconds,
                &held[from..end],
            );
            from = end;
        }
        let field = &mut self.fields[index];
        (field.held, field.pieces) = (held, pieces);
        field.held.clear();
        field.pieces.clear();
    }
}

/// A field line printed masked: where it was, and how long.
struct MaskedLine {
    direction: Direction,
    part: Part,
    offset: u64,
    seconds: f64,
    len: usize,
}

/// The field line in progress in one direction: the state that lets a line split over
/// several writes be masked whole. The buffers are kept, cleared, from line to line.
#[derive(Debug)]
struct FieldLine {
    /// How the line is printed; `None` between lines.
    masking: Option<Masking>,
    /// `Header` or `Trailer`.
    part: Part,
    /// The offset of the line's first byte.
    start: u64,
    /// The bytes of the line held so far.
    held: Vec<u8>,
    /// Where each piece held ends in `held`, and when it came.
    pieces: Vec<(usize, f64)>,
    /// The masked text, built when the line is printed.
    shown: Vec<u8>,
    /// The line before was a credential field: a continuation line (obs-fold) is masked.
    after_credentials: bool,
}

impl Default for FieldLine {
    fn default() -> Self {
        FieldLine {
            masking: None,
            part: Part::Header,
            start: 0,
            held: Vec::new(),
            pieces: Vec::new(),
            shown: Vec::new(),
            after_credentials: false,
        }
    }
}

/// How a field line is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Masking {
    /// Not known yet: the name so far could still be one of [`MASKED_FIELDS`].
    Undecided,
    /// As it is.
    Plain,
    /// The value replaced by its length, after the auth scheme if `scheme` and there is one.
    Credentials {
        /// The value starts with an auth scheme (RFC 9110 section 11.6.2).
        scheme: bool,
    },
    /// The password of any URL in the value masked.
    Url,
    /// A continuation line (obs-fold, RFC 9112 section 5.2) of a credential field: all of it
    /// replaced by its length.
    Continuation,
}

/// The fields whose values are masked, lower case.
const MASKED_FIELDS: [(&str, Masking); 5] = [
    ("authorization", Masking::Credentials { scheme: true }),
    ("proxy-authorization", Masking::Credentials { scheme: true }),
    ("cookie", Masking::Credentials { scheme: false }),
    ("location", Masking::Url),
    ("content-location", Masking::Url),
];

fn is_blank(b: &u8) -> bool {
    matches!(b, b' ' | b'\t')
}

fn trim_end_blanks(mut bytes: &[u8]) -> &[u8] {
    while let [rest @ .., last] = bytes {
        if !is_blank(last) {
            break;
        }
        bytes = rest;
    }
    bytes
}

/// `line` without its CRLF (or LF), and that ending.
fn split_line_ending(line: &[u8]) -> (&[u8], &[u8]) {
    let ending = if line.ends_with(b"\r\n") {
        2
    } else {
        usize::from(line.ends_with(b"\n"))
    };
    line.split_at(line.len() - ending)
}

/// RFC 9110 section 5.6.2: `tchar`, the characters of a token such as an auth scheme.
fn is_tchar(b: &u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b)
}

impl Masking {
    /// How the line beginning with `held` is printed; `complete` when `held` ends the line.
    fn of(held: &[u8], complete: bool, after_credentials: bool) -> Masking {
        if held.first().is_some_and(is_blank) {
            return if after_credentials {
                Masking::Continuation
            } else {
                Masking::Plain
            };
        }
        let is_named = |name: &[u8], masked: &str| masked.as_bytes().eq_ignore_ascii_case(name);
        match held.iter().position(|&b| b == b':') {
            Some(colon) => {
                let name = trim_end_blanks(&held[..colon]);
                MASKED_FIELDS
                    .iter()
                    .find(|(masked, _)| is_named(name, masked))
                    .map_or(Masking::Plain, |&(_, masking)| masking)
            }
            None if complete => Masking::Plain,
            None => {
                let name = trim_end_blanks(held);
                // Held while the name so far begins one of the masked names.
                let could_be = |(masked, _): &(&str, Masking)| {
                    masked.len() >= name.len() && is_named(name, &masked[..name.len()])
                };
                if MASKED_FIELDS.iter().any(could_be) {
                    Masking::Undecided
                } else {
                    Masking::Plain
                }
            }
        }
    }

    /// Writes the masked text of `line` to `shown`; false when there is nothing to hide.
    fn mask(self, line: &[u8], shown: &mut Vec<u8>) -> bool {
        let (body, ending) = split_line_ending(line);
        let value_start = match self {
            Masking::Undecided | Masking::Plain => return false,
            Masking::Continuation => body.iter().take_while(|b| is_blank(b)).count(),
            Masking::Credentials { .. } | Masking::Url => {
                let Some(colon) = body.iter().position(|&b| b == b':') else {
                    return false;
                };
                colon + 1 + body[colon + 1..].iter().take_while(|b| is_blank(b)).count()
            }
        };
        if let Masking::Url = self {
            let value = String::from_utf8_lossy(&body[value_start..]);
            let Cow::Owned(masked) = mask_userinfo(&value) else {
                return false;
            };
            shown.extend_from_slice(&body[..value_start]);
            shown.extend_from_slice(masked.as_bytes());
            shown.extend_from_slice(ending);
            return true;
        }
        let mut kept = value_start;
        if let Masking::Credentials { scheme: true } = self {
            // `credentials = auth-scheme [ 1*SP ( token68 / #auth-param ) ]`: the scheme is
            // shown when credentials follow it; a lone token may be the secret itself.
            let value = &body[value_start..];
            let scheme = value.iter().take_while(|b| is_tchar(b)).count();
            let spaces = value[scheme..].iter().take_while(|&&b| b == b' ').count();
            if scheme > 0 && spaces > 0 && scheme + spaces < value.len() {
                kept += scheme + spaces;
            }
        }
        let hidden = body.len() - kept;
        if hidden == 0 {
            return false;
        }
        shown.extend_from_slice(&body[..kept]);
        let _ = write!(shown, "<redacted, {hidden} bytes>");
        shown.extend_from_slice(ending);
        true
    }
}

/// `text` with the password of every URL in it masked (`scheme://user:***@host`), borrowed
/// when there is none. A URL's authority ends at `/`, `?`, `#` (RFC 3986 section 3.2), or
/// at a character no URL holds (white space, `"`, `<`, `>`, `` ` ``).
fn mask_userinfo(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut masked: Option<String> = None;
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = text[from..].find("://") {
        let separator = from + found;
        let authority = separator + 3;
        let end = bytes[authority..]
            .iter()
            .position(|b| b"/?#\"<>`".contains(b) || b.is_ascii_whitespace())
            .map_or(text.len(), |end| authority + end);
        let is_scheme_byte = |b: &&u8| b.is_ascii_alphanumeric() || b"+-.".contains(b);
        let scheme = bytes[..separator]
            .iter()
            .rev()
            .take_while(is_scheme_byte)
            .count();
        // Every byte counted is ASCII, so both ends are character boundaries.
        let url = &text[separator - scheme..end];
        let redacted = redact_userinfo(url);
        if redacted != url {
            let out = masked.get_or_insert_with(String::new);
            out.push_str(&text[copied..separator - scheme]);
            out.push_str(&redacted);
            copied = end;
        }
        from = end;
    }
    match masked {
        Some(mut out) => {
            out.push_str(&text[copied..]);
            Cow::Owned(out)
        }
        None => Cow::Borrowed(text),
    }
}

/// Bytes as text with CR, LF, tabs, quotes and non-printables escaped (`\\xNN`).
fn push_escaped(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

/// A part's label as traces show it (`chunk size (4)`), padded as asked, written without
/// allocating.
struct Label(Part);

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Part::ChunkSize { size } => {
                // "chunk size (" + at most 20 digits + ")".
                let mut buf = StackText {
                    bytes: [0; 40],
                    len: 0,
                };
                write!(buf, "chunk size ({size})")?;
                f.pad(buf.as_str())
            }
            other => f.pad(other.name()),
        }
    }
}

/// A few bytes of text on the stack.
struct StackText {
    bytes: [u8; 40],
    len: usize,
}

impl StackText {
    fn as_str(&self) -> &str {
        // Only whole `&str`s are ever written in.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.bytes
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl<W: Write + Send> Trace for TraceWriter<W> {
    fn bytes(&mut self, direction: Direction, part: Part, bytes: &[u8]) {
        let index = direction as usize;
        let offset = self.offsets[index];
        self.offsets[index] += bytes.len() as u64;
        if let Part::Header | Part::Trailer = part {
            // One line a call from the core; a caller's call of several lines is taken a
            // line at a time.
            let mut at = offset;
            for piece in bytes.split_inclusive(|&b| b == b'\n') {
                self.field_piece(direction, part, at, piece);
                at += piece.len() as u64;
            }
            return;
        }
        // A field line cut short by another part is printed first; body parts pass
        // straight through.
        self.settle(direction);
        self.fields[index].after_credentials = false;
        let seconds = self.seconds();
        self.event(direction, part, offset, seconds, bytes);
    }

    fn note(&mut self, direction: Direction, text: &str) {
        let text = mask_userinfo(text);
        let seconds = self.seconds();
        match self.format {
            TraceFormat::Ascii { .. } | TraceFormat::Hex => {
                let _ = writeln!(self.line, "{seconds:>10.6} {} * {text}", direction.arrow());
            }
            TraceFormat::Json => {
                let _ = write!(
                    self.line,
                    "{{\"t\":{seconds:.6},\"dir\":\"{}\",\"note\":",
                    direction.name()
                );
                crate::json::push_string(&mut self.line, &text);
                self.line.push_str("}\n");
            }
        }
        self.flush_line();
    }
}

/// Labels the lines of a head or a trailer section as they go by, possibly split across
/// several writes: it remembers which line it is in and what that line is.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LineLabeller {
    lines_done: usize,
    current: Option<Part>,
}

/// What kind of line block is being labelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineBlock {
    /// A request or response head: start line, header lines, empty line.
    Head {
        /// The label of the first line.
        start_line: Part,
    },
    /// The last chunk, trailer lines and the final CRLF.
    LastChunk,
}

impl LineLabeller {
    /// Labels `bytes`, the next bytes of a `block`, and passes each line piece to `emit`.
    pub(crate) fn label(
        &mut self,
        block: LineBlock,
        bytes: &[u8],
        emit: &mut dyn FnMut(Part, &[u8]),
    ) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let end = rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |lf| lf + 1);
            let (piece, after) = rest.split_at(end);
            let part = *self.current.get_or_insert_with(|| {
                // A line that begins with CR (or LF) is the empty line that ends the block.
                let empty = matches!(piece.first(), Some(b'\r' | b'\n'));
                match (block, self.lines_done) {
                    (LineBlock::Head { start_line }, 0) => start_line,
                    (LineBlock::LastChunk, 0) => Part::LastChunk,
                    (LineBlock::Head { .. }, _) if empty => Part::EndOfHead,
                    (LineBlock::LastChunk, _) if empty => Part::EndOfBody,
                    (LineBlock::Head { .. }, _) => Part::Header,
                    (LineBlock::LastChunk, _) => Part::Trailer,
                }
            });
            emit(part, piece);
            if piece.ends_with(b"\n") {
                self.lines_done += 1;
                self.current = None;
            }
            rest = after;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_writes_keep_their_labels() {
        let head = b"PUT / HTTP/1.1\r\nHost: h\r\n\r\n";
        let mut whole = Vec::new();
        let mut labeller = LineLabeller::default();
        let block = LineBlock::Head {
            start_line: Part::RequestLine,
        };
        labeller.label(block, head, &mut |part, bytes| {
            whole.push((part, bytes.to_vec()))
        });
        let mut split = Vec::new();
        let mut labeller = LineLabeller::default();
        for piece in head.chunks(3) {
            labeller.label(block, piece, &mut |part, bytes| {
                split.push((part, bytes.to_vec()))
            });
        }
        assert_eq!(
            whole.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
            [Part::RequestLine, Part::Header, Part::EndOfHead]
        );
        // Merge consecutive pieces of the same line: same labels, same bytes.
        let mut merged: Vec<(Part, Vec<u8>)> = Vec::new();
        for (part, bytes) in split {
            match merged.last_mut() {
                Some((last, acc)) if *last == part && !acc.ends_with(b"\n") => acc.extend(bytes),
                _ => merged.push((part, bytes)),
            }
        }
        assert_eq!(merged, whole);
    }

    #[test]
    fn ascii_summarises_data_and_json_keeps_every_byte() {
        let mut ascii = TraceWriter::new(Vec::new(), TraceFormat::Ascii { data_limit: 4 });
        ascii.bytes(Direction::Sent, Part::ChunkSize { size: 10 }, b"a\r\n");
        ascii.bytes(Direction::Sent, Part::ChunkData, b"0123456789");
        ascii.note(Direction::Received, "body framing: chunked");
        let text = String::from_utf8(ascii.into_inner()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].ends_with(">          0 chunk size (10)      a\\r\\n"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].ends_with(">          3 chunk data           0123... (10 bytes)"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].ends_with("< * body framing: chunked"),
            "{}",
            lines[2]
        );

        let mut json = TraceWriter::new(Vec::new(), TraceFormat::Json);
        json.bytes(
            Direction::Received,
            Part::StatusLine,
            b"HTTP/1.1 200 OK\r\n",
        );
        let text = String::from_utf8(json.into_inner()).unwrap();
        assert!(text.contains(r#""dir":"recv","offset":0,"part":"status line","len":17,"hex":"485454502f312e3120323030204f4b0d0a"}"#), "{text}");
    }

    #[test]
    fn hex_dump_rows() {
        let mut hex = TraceWriter::new(Vec::new(), TraceFormat::Hex);
        hex.bytes(Direction::Sent, Part::Body, b"0123456789abcdefXY");
        let text = String::from_utf8(hex.into_inner()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("> 0 body (18 bytes)") || lines[0].contains("body (18 bytes)"));
        assert_eq!(
            lines[1],
            "    000000: 30 31 32 33 34 35 36 37 38 39 61 62 63 64 65 66  0123456789abcdef"
        );
        assert_eq!(
            lines[2],
            format!("    000010: 58 59 {} XY", "   ".repeat(14))
        );
    }
}
