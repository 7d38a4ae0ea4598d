//! Streaming `multipart/form-data` bodies (RFC 7578): text fields and file parts, sent from
//! the upload's one buffer like any other body.
//!
//! A [`Form`] is a list of named parts. [`Form::into_reader`] checks it and makes a
//! [`FormReader`], a [`Read`] that writes the boundary lines and part headers straight into
//! the slice it is given and reads each part's data straight after them, so a form costs no
//! buffer of its own, nothing per chunk and nothing per part while it is sent. A file part is
//! opened when its turn comes and closed when it is done.
//!
//! When every part's size is known (text, bytes, regular files, readers with a stated
//! length, seekable readers) the form's length is known before its first byte and it goes
//! with a Content-Length; otherwise it goes chunked. A part whose source turns out shorter
//! or longer than the size announced for it is an error, never a silently wrong body.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::client::ReadSeek;
use crate::error::{Error, RequestError, Result, Stage};
use crate::trace::Part;

/// What every boundary chunkwire makes starts with; the rest is random.
const BOUNDARY_PREFIX: &str = "----chunkwire-";

/// Random alphanumerics after the prefix: 32 of 62 symbols, about 190 bits, so a file's
/// content meets it by chance with a negligible probability.
const BOUNDARY_RANDOM_CHARS: usize = 32;

/// RFC 2046 section 5.1.1: a boundary is 1 to 70 characters.
const MAX_BOUNDARY_LEN: usize = 70;

/// The content type of a file part whose type is neither given nor guessed.
pub const DEFAULT_FILE_CONTENT_TYPE: &str = "application/octet-stream";

/// A `multipart/form-data` body being built: named parts, in order.
///
/// ```
/// # let sink = chunkwire::sink::Sink::bind("127.0.0.1:0")?.spawn()?;
/// # let dir = std::env::temp_dir().join(format!("chunkwire-form-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// # let path = dir.join("holiday.mp4");
/// # std::fs::write(&path, b"not really a video")?;
/// use chunkwire::{Form, FormPart};
///
/// let form = Form::new()
///     .text("title", "Holiday")
///     .file("video", &path)
///     .part("notes", FormPart::bytes(&b"day 1: beach"[..]).file_name("notes.txt"));
/// let response = chunkwire::Client::new()
///     .upload(&sink.url("/videos"))
///     .method("POST")
///     .send_form(form)?;
/// assert!(response.status().is_success());
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Form<'r> {
    boundary: Option<String>,
    parts: Vec<(String, FormPart<'r>)>,
    require_length: bool,
}

/// One part of a [`Form`]: where its data comes from, and its file name and content type.
pub struct FormPart<'r> {
    file_name: Option<String>,
    content_type: Option<Cow<'static, str>>,
    source: Source<'r>,
}

/// Where a part's data comes from.
enum Source<'r> {
    Memory(Cow<'r, [u8]>),
    /// Opened when its turn comes; its size is looked up when the form is checked.
    File(PathBuf),
    Stream {
        reader: Box<dyn Read + 'r>,
        len: Option<u64>,
    },
    Seekable(Box<dyn ReadSeek + 'r>),
}

impl Default for Form<'_> {
    fn default() -> Self {
        Form::new()
    }
}

impl<'r> Form<'r> {
    /// An empty form with a random boundary.
    pub fn new() -> Self {
        Form {
            boundary: None,
            parts: Vec::new(),
            require_length: false,
        }
    }

    /// Adds a text field.
    pub fn text(self, name: impl Into<String>, value: impl Into<Cow<'r, str>>) -> Self {
        self.part(name, FormPart::text(value))
    }

    /// Adds a file part from `path` ([`FormPart::file`]): its file name is the path's last
    /// component, its content type guessed from the extension.
    pub fn file(self, name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        self.part(name, FormPart::file(path))
    }

    /// Adds `part` under `name`.
    pub fn part(mut self, name: impl Into<String>, part: FormPart<'r>) -> Self {
        self.parts.push((name.into(), part));
        self
    }

    /// Uses `boundary` instead of a random one (tests, comparisons with other clients). It
    /// must be 1 to 70 of RFC 2046's boundary characters, and appear in no text or bytes
    /// part; [`Form::into_reader`] refuses it otherwise.
    pub fn boundary(mut self, boundary: impl Into<String>) -> Self {
        self.boundary = Some(boundary.into());
        self
    }

    /// Requires a Content-Length: a part whose size is not known (a reader without a
    /// stated length, a pipe) is then an error before anything is sent, naming the part.
    pub fn require_length(mut self, required: bool) -> Self {
        self.require_length = required;
        self
    }

    /// True when [`Form::require_length`] was asked for.
    pub fn requires_length(&self) -> bool {
        self.require_length
    }

    /// The number of parts.
    pub fn len(&self) -> usize {
        self.parts.len()
    }

    /// True for a form without parts.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Checks the form and makes the reader that produces its body: the boundary is chosen
    /// (and checked against the text and bytes parts), content types are checked, and the
    /// size of each file is looked up (files are opened only when their turn comes).
    pub fn into_reader(self) -> Result<FormReader<'r>> {
        let mut parts = Vec::with_capacity(self.parts.len());
        for (name, part) in self.parts {
            parts.push(Prepared::new(name, part)?);
        }
        if self.require_length
            && let Some(unsized_part) = parts.iter().find(|p| p.size.is_none())
        {
            return Err(Error::request(RequestError::FormPartUnsized {
                part: unsized_part.name.clone(),
            }));
        }
        let boundary = match self.boundary {
            Some(boundary) => {
                check_boundary(&boundary)?;
                if let Some(part) = parts.iter().find(|p| p.holds(&boundary)) {
                    return Err(Error::request(RequestError::InvalidOption {
                        option: "form boundary",
                        reason: format!("it appears in the data of part {:?}", part.name),
                    }));
                }
                boundary
            }
            None => loop {
                let boundary = random_boundary().map_err(|e| Error::io(Stage::Request, e))?;
                if !parts.iter().any(|p| p.holds(&boundary)) {
                    break boundary;
                }
            },
        };
        Ok(FormReader::new(boundary, parts))
    }
}

impl fmt::Debug for Form<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Form")
            .field("boundary", &self.boundary)
            .field("parts", &self.parts)
            .field("require_length", &self.require_length)
            .finish()
    }
}

impl<'r> FormPart<'r> {
    fn with(source: Source<'r>) -> Self {
        FormPart {
            file_name: None,
            content_type: None,
            source,
        }
    }

    /// A text field: no file name, no content type (RFC 7578's default, text/plain).
    pub fn text(value: impl Into<Cow<'r, str>>) -> Self {
        let bytes = match value.into() {
            Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        };
        FormPart::with(Source::Memory(bytes))
    }

    /// Bytes held in memory: no file name and no content type unless given.
    pub fn bytes(data: impl Into<Cow<'r, [u8]>>) -> Self {
        FormPart::with(Source::Memory(data.into()))
    }

    /// The file at `path`, opened only when its turn comes and closed when it is sent. Its
    /// file name is the path's last component; its content type is guessed from the
    /// extension (with the `mime-guess` feature; else, and for an unknown extension,
    /// [`DEFAULT_FILE_CONTENT_TYPE`]). Its size is looked up when the form is checked; a
    /// pipe or device has no known size (the form goes chunked, and cannot be resent).
    pub fn file(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let file_name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned());
        let content_type = guess_content_type(&path);
        FormPart {
            file_name,
            content_type: Some(Cow::Borrowed(content_type)),
            source: Source::File(path),
        }
    }

    /// Data from any reader, of unknown size: the form goes chunked, and cannot be sent
    /// again after a redirect. Its content type is [`DEFAULT_FILE_CONTENT_TYPE`] unless given.
    pub fn reader(reader: impl Read + 'r) -> Self {
        FormPart::stream(Box::new(reader), None)
    }

    /// Data from a reader that holds exactly `len` bytes: fewer or more is an error.
    pub fn reader_with_length(reader: impl Read + 'r, len: u64) -> Self {
        FormPart::stream(Box::new(reader), Some(len))
    }

    fn stream(reader: Box<dyn Read + 'r>, len: Option<u64>) -> Self {
        FormPart {
            content_type: Some(Cow::Borrowed(DEFAULT_FILE_CONTENT_TYPE)),
            ..FormPart::with(Source::Stream { reader, len })
        }
    }

    /// Data from a reader that can be rewound (a file, a cursor), from where it is now to
    /// its end: its size is known, and the form can be sent again after a 307/308 or a retry.
    pub fn seekable(reader: impl Read + Seek + 'r) -> Self {
        FormPart {
            content_type: Some(Cow::Borrowed(DEFAULT_FILE_CONTENT_TYPE)),
            ..FormPart::with(Source::Seekable(Box::new(reader)))
        }
    }

    /// The `filename` parameter of its Content-Disposition.
    pub fn file_name(mut self, name: impl Into<String>) -> Self {
        self.file_name = Some(name.into());
        self
    }

    /// No `filename` parameter (a file's content sent as a field value, as curl's `-F 'name=<file'`).
    pub fn without_file_name(mut self) -> Self {
        self.file_name = None;
        self
    }

    /// Its Content-Type header; an empty one sends none.
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        let content_type = content_type.into();
        self.content_type = (!content_type.is_empty()).then_some(Cow::Owned(content_type));
        self
    }
}

impl fmt::Debug for FormPart<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.source {
            Source::Memory(bytes) => format!("{} bytes in memory", bytes.len()),
            Source::File(path) => format!("file {}", path.display()),
            Source::Stream { len: Some(n), .. } => format!("reader of {n} bytes"),
            Source::Stream { len: None, .. } => "reader".to_owned(),
            Source::Seekable(_) => "seekable reader".to_owned(),
        };
        f.debug_struct("FormPart")
            .field("file_name", &self.file_name)
            .field("content_type", &self.content_type)
            .field("source", &source)
            .finish()
    }
}

#[cfg(feature = "mime-guess")]
fn guess_content_type(path: &Path) -> &'static str {
    mime_guess::from_path(path)
        .first_raw()
        .unwrap_or(DEFAULT_FILE_CONTENT_TYPE)
}

#[cfg(not(feature = "mime-guess"))]
fn guess_content_type(_path: &Path) -> &'static str {
    DEFAULT_FILE_CONTENT_TYPE
}

/// A part checked and sized, ready to be sent.
struct Prepared<'r> {
    name: String,
    file_name: Option<String>,
    content_type: Option<Cow<'static, str>>,
    source: Source<'r>,
    /// Its data's size, when known.
    size: Option<u64>,
    /// Where a seekable reader starts.
    start: u64,
    /// Its Content-Disposition and Content-Type lines and the empty line after them.
    header_len: usize,
}

impl<'r> Prepared<'r> {
    fn new(name: String, part: FormPart<'r>) -> Result<Prepared<'r>> {
        let FormPart {
            file_name,
            content_type,
            mut source,
        } = part;
        if let Some(content_type) = &content_type
            && content_type.bytes().any(|b| b.is_ascii_control())
        {
            return Err(Error::request(RequestError::InvalidOption {
                option: "form part content type",
                reason: format!("{content_type:?} of part {name:?} holds control characters"),
            }));
        }
        let mut start = 0;
        let size = match &mut source {
            Source::Memory(bytes) => Some(bytes.len() as u64),
            Source::File(path) => {
                let meta = std::fs::metadata(&*path)
                    .map_err(|e| Error::io(Stage::ReadSource, in_part(&name, path, e)))?;
                if meta.is_dir() {
                    let e = io::Error::new(io::ErrorKind::InvalidInput, "it is a directory");
                    return Err(Error::io(Stage::ReadSource, in_part(&name, path, e)));
                }
                // A pipe or a device says 0: its size is found by reading it.
                meta.is_file().then_some(meta.len())
            }
            Source::Stream { len, .. } => *len,
            Source::Seekable(reader) => {
                let mut measure = || -> io::Result<u64> {
                    start = reader.stream_position()?;
                    let end = reader.seek(SeekFrom::End(0))?;
                    reader.seek(SeekFrom::Start(start))?;
                    Ok(end.saturating_sub(start))
                };
                Some(measure().map_err(|e| {
                    Error::io(Stage::ReadSource, in_part(&name, Path::new("reader"), e))
                })?)
            }
        };
        let mut prepared = Prepared {
            name,
            file_name,
            content_type,
            source,
            size,
            start,
            header_len: 0,
        };
        prepared.header_len = pieces_len(&prepared.header_pieces());
        Ok(prepared)
    }

    /// True when its data is in memory and holds `boundary`.
    fn holds(&self, boundary: &str) -> bool {
        let Source::Memory(bytes) = &self.source else {
            return false;
        };
        let needle = boundary.as_bytes();
        needle.len() <= bytes.len() && bytes.windows(needle.len()).any(|w| w == needle)
    }

    fn rewindable(&self) -> bool {
        match &self.source {
            Source::Memory(_) | Source::Seekable(_) => true,
            Source::File(_) => self.size.is_some(),
            Source::Stream { .. } => false,
        }
    }

    /// `Content-Disposition: form-data; name="…"[; filename="…"]` CRLF
    /// `[Content-Type: …` CRLF`]` CRLF, as pieces written without allocating.
    fn header_pieces(&self) -> [Piece<'_>; 9] {
        const NONE: Piece<'static> = Piece::Raw(b"");
        let (file_name_start, file_name, file_name_end) = match &self.file_name {
            Some(f) => (
                Piece::Raw(b"\"; filename=\""),
                Piece::Escaped(f.as_bytes()),
                Piece::Raw(b"\"\r\n"),
            ),
            None => (NONE, NONE, Piece::Raw(b"\"\r\n")),
        };
        let (type_start, content_type, type_end) = match &self.content_type {
            Some(t) => (
                Piece::Raw(b"Content-Type: "),
                Piece::Raw(t.as_bytes()),
                Piece::Raw(b"\r\n"),
            ),
            None => (NONE, NONE, NONE),
        };
        [
            Piece::Raw(b"Content-Disposition: form-data; name=\""),
            Piece::Escaped(self.name.as_bytes()),
            file_name_start,
            file_name,
            file_name_end,
            type_start,
            content_type,
            type_end,
            Piece::Raw(b"\r\n"),
        ]
    }

    /// What an error in this part's data names: the file's path, or "reader".
    fn what(&self) -> Cow<'_, Path> {
        match &self.source {
            Source::File(path) => Cow::Borrowed(path.as_path()),
            _ => Cow::Borrowed(Path::new("reader")),
        }
    }
}

/// `e`, saying which part and which source it came from.
fn in_part(name: &str, what: &Path, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("form part {name:?} ({}): {e}", what.display()),
    )
}

/// RFC 2046's `bchars`: digits, letters, `'()+_,-./:=?` and space (not last).
fn check_boundary(boundary: &str) -> Result<()> {
    let is_bchar = |b: u8| b.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&b);
    let reason = if boundary.is_empty() || boundary.len() > MAX_BOUNDARY_LEN {
        Some("it must be 1 to 70 characters")
    } else if !boundary.bytes().all(is_bchar) {
        Some("it may hold only letters, digits, space and '()+_,-./:=?")
    } else if boundary.ends_with(' ') {
        Some("it must not end in a space")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::request(RequestError::InvalidOption {
            option: "form boundary",
            reason: format!("{boundary:?}: {reason}"),
        })),
        None => Ok(()),
    }
}

/// The prefix and 32 alphanumerics from the system's secure random source.
fn random_boundary() -> io::Result<String> {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut boundary = String::with_capacity(BOUNDARY_PREFIX.len() + BOUNDARY_RANDOM_CHARS);
    boundary.push_str(BOUNDARY_PREFIX);
    let mut random = [0u8; 64];
    while boundary.len() < BOUNDARY_PREFIX.len() + BOUNDARY_RANDOM_CHARS {
        fill_random(&mut random)?;
        // 248 = 4 * 62: bytes above it are dropped, so every symbol is equally likely.
        for &b in random.iter().filter(|&&b| b < 248) {
            if boundary.len() == BOUNDARY_PREFIX.len() + BOUNDARY_RANDOM_CHARS {
                break;
            }
            boundary.push(char::from(ALPHABET[usize::from(b % 62)]));
        }
    }
    Ok(boundary)
}

/// Fills `bytes` from the kernel's random source. `/dev/urandom` first: going through
/// aws-lc-rs (linked for TLS) instead starts its DRBG, whose code pages put 0.3 MiB in the
/// peak RSS of a plain-HTTP form upload (measured); it is the fallback where the device is
/// missing (a bare chroot).
fn fill_random(bytes: &mut [u8]) -> io::Result<()> {
    File::open("/dev/urandom")
        .and_then(|mut device| device.read_exact(bytes))
        .or_else(|_| crate::transport::tls::fill_random(bytes))
}

/// A stretch of header text: as is, or with the browsers' escapes (WHATWG HTML,
/// "multipart/form-data encoding algorithm": `"` as `%22`, CR as `%0D`, LF as `%0A`).
#[derive(Clone, Copy)]
enum Piece<'a> {
    Raw(&'a [u8]),
    Escaped(&'a [u8]),
}

fn escape(b: &u8) -> &[u8] {
    match b {
        b'"' => b"%22",
        b'\r' => b"%0D",
        b'\n' => b"%0A",
        other => std::slice::from_ref(other),
    }
}

fn pieces_len(pieces: &[Piece<'_>]) -> usize {
    pieces
        .iter()
        .map(|piece| match piece {
            Piece::Raw(bytes) => bytes.len(),
            Piece::Escaped(bytes) => bytes.iter().map(|b| escape(b).len()).sum(),
        })
        .sum()
}

/// Writes the text of `pieces` from its byte `skip` on into `out`, as much as fits: so a
/// header is written in place, and goes on in the next slice where one was too short.
/// Returns the bytes written.
fn write_pieces(pieces: &[Piece<'_>], skip: usize, out: &mut [u8]) -> usize {
    let mut at = 0;
    let mut written = 0;
    let mut emit = |bytes: &[u8]| -> bool {
        let end = at + bytes.len();
        if end > skip {
            let from = skip.saturating_sub(at);
            let take = (bytes.len() - from).min(out.len() - written);
            out[written..written + take].copy_from_slice(&bytes[from..from + take]);
            written += take;
        }
        at = end;
        written < out.len()
    };
    for piece in pieces {
        let more = match piece {
            Piece::Raw(bytes) => emit(bytes),
            Piece::Escaped(bytes) => bytes.iter().all(|b| emit(escape(b))),
        };
        if !more {
            break;
        }
    }
    written
}

/// Which stretch of the body the reader is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    /// The delimiter line before part `index`.
    Delimiter,
    Header,
    Data,
    /// The close delimiter after the last part.
    Close,
    Done,
}

/// The body of a checked [`Form`], produced on demand into the reader's slices.
pub struct FormReader<'r> {
    boundary: String,
    parts: Vec<Prepared<'r>>,
    length: Option<u64>,
    /// The part being sent, the section of it, and the bytes of that section done.
    part: usize,
    section: Section,
    done_in_section: u64,
    /// The file of the part being sent, while it is.
    open: Option<File>,
    /// Body bytes produced so far.
    produced: u64,
    /// Where each section starts, for the wire trace; only while a trace is on.
    log: Option<SectionLog>,
}

impl fmt::Debug for FormReader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FormReader")
            .field("boundary", &self.boundary)
            .field("parts", &self.parts.len())
            .field("length", &self.length)
            .field("part", &self.part)
            .field("section", &self.section)
            .field("produced", &self.produced)
            .finish_non_exhaustive()
    }
}

/// Read steps of a part's data.
enum DataStep {
    /// This many bytes; more may follow at once.
    Read(usize),
    /// This many bytes, fewer than asked, from a source of unknown size: they go out now,
    /// as a plain stream's would, instead of waiting for the slice to fill.
    Short(usize),
    /// The part's data is complete.
    Ended,
}

impl<'r> FormReader<'r> {
    fn new(boundary: String, parts: Vec<Prepared<'r>>) -> Self {
        let mut reader = FormReader {
            boundary,
            parts,
            length: None,
            part: 0,
            section: Section::Delimiter,
            done_in_section: 0,
            open: None,
            produced: 0,
            log: None,
        };
        reader.length = reader.compute_length();
        reader.start_over();
        reader
    }

    fn compute_length(&self) -> Option<u64> {
        let mut total = self.section_len(Section::Close, 0) as u64;
        for index in 0..self.parts.len() {
            total += self.section_len(Section::Delimiter, index) as u64;
            total += self.parts[index].header_len as u64;
            total += self.parts[index].size?;
        }
        Some(total)
    }

    /// The body's exact length, when every part's size is known.
    pub fn content_length(&self) -> Option<u64> {
        self.length
    }

    /// The boundary.
    pub fn boundary(&self) -> &str {
        &self.boundary
    }

    /// `multipart/form-data; boundary=…`, the request's Content-Type.
    pub fn content_type(&self) -> String {
        format!("multipart/form-data; {}", self.boundary_parameter())
    }

    /// `boundary=…`, quoted when the boundary holds RFC 2045 tspecials.
    pub fn boundary_parameter(&self) -> String {
        let plain = self
            .boundary
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"'+_-.".contains(&b));
        if plain {
            format!("boundary={}", self.boundary)
        } else {
            format!("boundary=\"{}\"", self.boundary)
        }
    }

    /// True when every part can be sent again from its start (no reader of unknown
    /// origin, no pipe), so the form can follow a 307/308 or be retried.
    pub fn can_rewind(&self) -> bool {
        self.parts.iter().all(Prepared::rewindable)
    }

    /// Back to the body's first byte, for sending it again; an error for a form that
    /// cannot be ([`FormReader::can_rewind`]).
    pub fn rewind(&mut self) -> io::Result<()> {
        if let Some(part) = self.parts.iter().find(|p| !p.rewindable()) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "form part {:?} ({}) cannot be read again",
                    part.name,
                    part.what().display()
                ),
            ));
        }
        for part in &mut self.parts {
            if let Source::Seekable(reader) = &mut part.source {
                reader
                    .seek(SeekFrom::Start(part.start))
                    .map_err(|e| in_part(&part.name, Path::new("reader"), e))?;
            }
        }
        self.start_over();
        Ok(())
    }

    fn start_over(&mut self) {
        self.open = None;
        self.part = 0;
        self.done_in_section = 0;
        self.produced = 0;
        self.section = if self.parts.is_empty() {
            Section::Close
        } else {
            Section::Delimiter
        };
        if let Some(log) = &self.log {
            log.clear();
            log.push(0, Part::FormBoundary);
        }
    }

    /// Records where each section starts from now on, shared with the trace's labeller.
    pub(crate) fn log_sections(&mut self) -> SectionLog {
        let log = SectionLog::default();
        log.push(self.produced, self.section_part());
        self.log = Some(log.clone());
        log
    }

    fn section_part(&self) -> Part {
        match self.section {
            Section::Header => Part::FormPartHeader,
            Section::Data => Part::FormPartData,
            Section::Delimiter | Section::Close | Section::Done => Part::FormBoundary,
        }
    }

    /// The length of a text section of part `index`.
    fn section_len(&self, section: Section, index: usize) -> usize {
        let first = index == 0;
        match section {
            Section::Delimiter if first => 2 + self.boundary.len() + 2,
            Section::Delimiter => 4 + self.boundary.len() + 2,
            Section::Close if self.parts.is_empty() => 2 + self.boundary.len() + 4,
            Section::Close => 4 + self.boundary.len() + 4,
            Section::Header => self.parts[index].header_len,
            Section::Data | Section::Done => 0,
        }
    }

    /// Writes the rest of the current text section, as far as `out` holds it.
    fn write_text(&self, out: &mut [u8]) -> usize {
        let skip = self.done_in_section as usize;
        let boundary = Piece::Raw(self.boundary.as_bytes());
        let lead: &[u8] = if self.part == 0 { b"--" } else { b"\r\n--" };
        match self.section {
            Section::Delimiter => write_pieces(
                &[Piece::Raw(lead), boundary, Piece::Raw(b"\r\n")],
                skip,
                out,
            ),
            Section::Close => {
                let lead: &[u8] = if self.parts.is_empty() {
                    b"--"
                } else {
                    b"\r\n--"
                };
                write_pieces(
                    &[Piece::Raw(lead), boundary, Piece::Raw(b"--\r\n")],
                    skip,
                    out,
                )
            }
            Section::Header => write_pieces(&self.parts[self.part].header_pieces(), skip, out),
            Section::Data | Section::Done => 0,
        }
    }

    fn enter(&mut self, section: Section, at: u64) {
        self.section = section;
        self.done_in_section = 0;
        if let Some(log) = &self.log {
            log.push(at, self.section_part());
        }
    }

    /// The next section after the current one is complete.
    fn advance(&mut self, at: u64) {
        let next = match self.section {
            Section::Delimiter => Section::Header,
            Section::Header => Section::Data,
            Section::Data => {
                self.open = None;
                self.part += 1;
                if self.part < self.parts.len() {
                    Section::Delimiter
                } else {
                    Section::Close
                }
            }
            Section::Close | Section::Done => Section::Done,
        };
        self.enter(next, at);
    }

    /// Reads the current part's data into `out` (not empty).
    fn read_data(&mut self, out: &mut [u8]) -> io::Result<DataStep> {
        let part = &mut self.parts[self.part];
        let offset = self.done_in_section;
        let reader: &mut dyn Read = match &mut part.source {
            Source::Memory(bytes) => {
                let rest = &bytes[offset as usize..];
                if rest.is_empty() {
                    return Ok(DataStep::Ended);
                }
                let n = rest.len().min(out.len());
                out[..n].copy_from_slice(&rest[..n]);
                self.done_in_section += n as u64;
                return Ok(DataStep::Read(n));
            }
            Source::File(path) => match &mut self.open {
                Some(file) => file,
                None => {
                    let file = File::open(&*path).map_err(|e| in_part(&part.name, path, e))?;
                    self.open.insert(file)
                }
            },
            Source::Stream { reader, .. } => reader,
            Source::Seekable(reader) => reader,
        };
        let step = match part.size {
            Some(size) if offset == size => {
                // Everything announced is read: the source must be at its end, so a file
                // that grew is caught before its part is closed.
                match read_retrying(reader, &mut out[..1]) {
                    Ok(0) => DataStep::Ended,
                    Ok(_) => return Err(changed_size(part, size, None)),
                    Err(e) => return Err(data_error(part, e)),
                }
            }
            Some(size) => {
                let want = out
                    .len()
                    .min(usize::try_from(size - offset).unwrap_or(usize::MAX));
                match read_retrying(reader, &mut out[..want]) {
                    Ok(0) => return Err(changed_size(part, size, Some(offset))),
                    Ok(n) => DataStep::Read(n),
                    Err(e) => return Err(data_error(part, e)),
                }
            }
            None => match read_retrying(reader, out) {
                Ok(0) => DataStep::Ended,
                Ok(n) if n < out.len() => DataStep::Short(n),
                Ok(n) => DataStep::Read(n),
                Err(e) => return Err(data_error(part, e)),
            },
        };
        if let DataStep::Read(n) | DataStep::Short(n) = step {
            self.done_in_section += n as u64;
        }
        Ok(step)
    }
}

fn read_retrying(reader: &mut dyn Read, out: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(out) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}

/// A read error of a part's data, naming the part; `WouldBlock` passes as it is, so the
/// loop can wait for the source.
fn data_error(part: &Prepared<'_>, e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        e
    } else {
        in_part(&part.name, &part.what(), e)
    }
}

/// A part whose source ended after `read` bytes (`None`: went on past its size).
fn changed_size(part: &Prepared<'_>, size: u64, read: Option<u64>) -> io::Error {
    let how = match read {
        Some(read) => format!("it ended after {read} of the {size} bytes announced"),
        None => format!("it holds more than the {size} bytes announced"),
    };
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "form part {:?} ({}) changed size while it was sent: {how}",
            part.name,
            part.what().display()
        ),
    )
}

impl Read for FormReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < out.len() {
            let at = self.produced + n as u64;
            match self.section {
                Section::Done => break,
                Section::Data => {
                    let step = match self.read_data(&mut out[n..]) {
                        Ok(step) => step,
                        // What is already written goes out; the source is asked again later.
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock && n > 0 => break,
                        Err(e) => return Err(e),
                    };
                    match step {
                        DataStep::Read(k) => n += k,
                        DataStep::Short(k) => {
                            n += k;
                            break;
                        }
                        DataStep::Ended => self.advance(at),
                    }
                }
                section => {
                    let written = self.write_text(&mut out[n..]);
                    n += written;
                    self.done_in_section += written as u64;
                    if self.done_in_section == self.section_len(section, self.part) as u64 {
                        self.advance(self.produced + n as u64);
                    }
                }
            }
        }
        self.produced += n as u64;
        Ok(n)
    }
}

/// Where the sections of a form's body start, as the reader produced them: the driver
/// splits the body bytes it traces by it. Entries are taken off as the bytes go out, so
/// it holds only what is between the reader and the socket.
#[derive(Clone, Default)]
pub(crate) struct SectionLog(Rc<RefCell<VecDeque<(u64, Part)>>>);

impl fmt::Debug for SectionLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SectionLog")
            .field(&self.0.borrow().len())
            .finish()
    }
}

impl SectionLog {
    fn push(&self, at: u64, part: Part) {
        self.0.borrow_mut().push_back((at, part));
    }

    fn clear(&self) {
        self.0.borrow_mut().clear();
    }

    /// Emits `bytes`, the body bytes from `offset` on, split into the sections they belong to.
    pub(crate) fn split(&self, offset: u64, bytes: &[u8], emit: &mut dyn FnMut(Part, &[u8])) {
        let mut log = self.0.borrow_mut();
        let mut at = offset;
        let mut rest = bytes;
        while !rest.is_empty() {
            while log.len() >= 2 && log[1].0 <= at {
                log.pop_front();
            }
            let Some(&(_, part)) = log.front() else {
                emit(Part::Body, rest);
                return;
            };
            let take = log.get(1).map_or(rest.len(), |&(next, _)| {
                usize::try_from(next - at)
                    .unwrap_or(usize::MAX)
                    .min(rest.len())
            });
            emit(part, &rest[..take]);
            rest = &rest[take..];
            at += take as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(mut reader: FormReader<'_>, slice: usize) -> Vec<u8> {
        let mut body = Vec::new();
        let mut space = vec![0u8; slice];
        loop {
            let n = reader.read(&mut space).expect("the form reads");
            if n == 0 {
                return body;
            }
            body.extend_from_slice(&space[..n]);
        }
    }

    #[test]
    fn text_and_bytes_parts_are_framed_as_rfc_7578_says() {
        let form = Form::new().boundary("XyZ").text("title", "Holiday").part(
            "notes",
            FormPart::bytes(&b"day 1"[..])
                .file_name("n.txt")
                .content_type("text/plain"),
        );
        let expected = "--XyZ\r\n\
            Content-Disposition: form-data; name=\"title\"\r\n\r\n\
            Holiday\r\n\
            --XyZ\r\n\
            Content-Disposition: form-data; name=\"notes\"; filename=\"n.txt\"\r\n\
            Content-Type: text/plain\r\n\r\n\
            day 1\r\n\
            --XyZ--\r\n";
        let reader = form.into_reader().unwrap();
        assert_eq!(reader.content_length(), Some(expected.len() as u64));
        assert_eq!(reader.content_type(), "multipart/form-data; boundary=XyZ");
        assert_eq!(String::from_utf8(body_of(reader, 4096)).unwrap(), expected);
    }

    #[test]
    fn every_slice_size_down_to_one_byte_gives_the_same_body() {
        let make = || {
            Form::new()
                .boundary("b0undary")
                .text("a\"b", "x")
                .part("empty", FormPart::bytes(Vec::new()).file_name("e\r\n"))
                .part(
                    "stream",
                    FormPart::reader(&b"streamed data of unknown size"[..]),
                )
                .part("sized", FormPart::reader_with_length(&b"12345"[..], 5))
                .part(
                    "seek",
                    FormPart::seekable(io::Cursor::new(b"seekable".to_vec())),
                )
                .into_reader()
                .unwrap()
        };
        let whole = body_of(make(), 1 << 16);
        for slice in 1..80 {
            assert_eq!(body_of(make(), slice), whole, "slice of {slice}");
        }
        let text = String::from_utf8(whole).unwrap();
        assert!(text.contains("name=\"a%22b\""), "{text}");
        assert!(text.contains("filename=\"e%0D%0A\""), "{text}");
        assert!(text.ends_with("\r\nseekable\r\n--b0undary--\r\n"), "{text}");
    }

    #[test]
    fn names_are_escaped_the_browsers_way() {
        let table: [(&str, &str); 6] = [
            ("plain", "plain"),
            ("quote\"d", "quote%22d"),
            ("cr\rlf\n", "cr%0Dlf%0A"),
            ("semi;colon and space", "semi;colon and space"),
            ("back\\slash", "back\\slash"),
            ("ünïcødé", "ünïcødé"),
        ];
        for (name, shown) in table {
            let reader = Form::new()
                .boundary("B")
                .part(name, FormPart::bytes(Vec::new()).file_name(name))
                .into_reader()
                .unwrap();
            let body = String::from_utf8(body_of(reader, 7)).unwrap();
            let line = format!("name=\"{shown}\"; filename=\"{shown}\"\r\n");
            assert!(body.contains(&line), "{name:?}: {body}");
        }
    }

    #[test]
    fn random_boundaries_are_long_distinct_and_plain() {
        let a = Form::new().into_reader().unwrap();
        let b = Form::new().into_reader().unwrap();
        assert_ne!(a.boundary(), b.boundary());
        assert_eq!(
            a.boundary().len(),
            BOUNDARY_PREFIX.len() + BOUNDARY_RANDOM_CHARS
        );
        assert!(a.boundary().len() <= MAX_BOUNDARY_LEN);
        let random = &a.boundary()[BOUNDARY_PREFIX.len()..];
        assert!(
            random.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{random}"
        );
        assert_eq!(body_of(a, 100).len() as u64, 2 + 46 + 4);
    }

    #[test]
    fn a_boundary_in_a_text_part_or_out_of_rfc_2046_is_refused() {
        let inside = Form::new()
            .boundary("abc")
            .text("t", "xxabcxx")
            .into_reader();
        assert!(inside.unwrap_err().to_string().contains("part \"t\""));
        for bad in ["", "ends in space ", "new\nline", &"x".repeat(71)] {
            let err = Form::new().boundary(bad).into_reader().unwrap_err();
            assert!(err.to_string().contains("form boundary"), "{bad:?}: {err}");
        }
        let quoted = Form::new().boundary("a:b").into_reader().unwrap();
        assert_eq!(
            quoted.content_type(),
            "multipart/form-data; boundary=\"a:b\""
        );
    }

    #[test]
    fn a_required_length_refuses_an_unsized_part_by_name() {
        let err = Form::new()
            .text("ok", "1")
            .part("live", FormPart::reader(io::empty()))
            .require_length(true)
            .into_reader()
            .unwrap_err();
        assert!(err.to_string().contains("\"live\""), "{err}");
        assert!(err.request_error().is_some());
    }

    #[test]
    fn a_reader_shorter_or_longer_than_announced_is_an_error() {
        let short = Form::new()
            .part("s", FormPart::reader_with_length(&b"abc"[..], 5))
            .into_reader()
            .unwrap();
        let mut out = vec![0; 1000];
        let mut short = short;
        let err = loop {
            match short.read(&mut out) {
                Ok(0) => panic!("a short part must not end the form"),
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert!(err.to_string().contains("ended after 3 of the 5"), "{err}");
        let mut long = Form::new()
            .part("l", FormPart::reader_with_length(&b"abcdef"[..], 5))
            .into_reader()
            .unwrap();
        let err = loop {
            match long.read(&mut out) {
                Ok(0) => panic!("a long part must not end the form"),
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert!(err.to_string().contains("more than the 5"), "{err}");
    }

    #[test]
    fn rewind_gives_the_same_body_again_and_streams_cannot() {
        let mut reader = Form::new()
            .text("t", "v")
            .part("c", FormPart::seekable(io::Cursor::new(vec![7u8; 300])))
            .into_reader()
            .unwrap();
        assert!(reader.can_rewind());
        let mut first = Vec::new();
        reader.read_to_end(&mut first).unwrap();
        reader.rewind().unwrap();
        let mut second = Vec::new();
        reader.read_to_end(&mut second).unwrap();
        assert_eq!(first, second);
        assert_eq!(first.len() as u64, reader.content_length().unwrap());
        let mut stream = Form::new()
            .part("s", FormPart::reader(io::empty()))
            .into_reader()
            .unwrap();
        assert!(!stream.can_rewind());
        assert!(stream.rewind().unwrap_err().to_string().contains("\"s\""));
    }

    #[test]
    fn the_section_log_labels_each_byte() {
        let mut reader = Form::new()
            .boundary("B")
            .text("t", "value")
            .into_reader()
            .unwrap();
        let log = reader.log_sections();
        let mut body = Vec::new();
        reader.read_to_end(&mut body).unwrap();
        let mut labelled: Vec<(Part, Vec<u8>)> = Vec::new();
        // Handed over in pieces of 3 bytes, as a slow socket would take them.
        for (i, piece) in body.chunks(3).enumerate() {
            log.split(
                (i * 3) as u64,
                piece,
                &mut |part, bytes| match labelled.last_mut() {
                    Some((last, text)) if *last == part => text.extend_from_slice(bytes),
                    _ => labelled.push((part, bytes.to_vec())),
                },
            );
        }
        let expected: Vec<(Part, Vec<u8>)> = vec![
            (Part::FormBoundary, b"--B\r\n".to_vec()),
            (
                Part::FormPartHeader,
                b"Content-Disposition: form-data; name=\"t\"\r\n\r\n".to_vec(),
            ),
            (Part::FormPartData, b"value".to_vec()),
            (Part::FormBoundary, b"\r\n--B--\r\n".to_vec()),
        ];
        assert_eq!(labelled, expected);
    }

    #[test]
    fn write_pieces_resumes_inside_an_escape() {
        let pieces = [Piece::Raw(b"<"), Piece::Escaped(b"a\"b"), Piece::Raw(b">")];
        assert_eq!(pieces_len(&pieces), 7);
        let mut whole = Vec::new();
        for skip in 0..7 {
            let mut one = [0u8; 1];
            assert_eq!(write_pieces(&pieces, skip, &mut one), 1);
            whole.push(one[0]);
        }
        assert_eq!(whole, b"<a%22b>");
        assert_eq!(write_pieces(&pieces, 7, &mut [0u8; 4]), 0);
    }
}
