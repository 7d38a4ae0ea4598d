//! The wire trace: every byte sent and received at the HTTP layer, labelled with the part of
//! the message it belongs to (request line, header, chunk-size line, chunk data, ...).
//!
//! The protocol core labels the bytes; the event loop hands the trace exactly the bytes the
//! transport accepted and the bytes the parser consumed, in order. This module only formats
//! them: as annotated text (`--trace-ascii`), as a hex dump (`--trace`) or as one JSON object
//! a line (`--trace-json`). With no trace set, the loop never calls any of it.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::time::Instant;

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
        }
    }

    /// True for payload bytes (summarised in `--trace-ascii`), false for framing and heads.
    pub fn is_data(self) -> bool {
        matches!(self, Part::ChunkData | Part::Body)
    }
}

/// Receives the trace of an exchange. Implement it to see the wire your own way.
pub trait Trace: Send {
    /// `bytes` went `direction`, and belong to `part`.
    fn bytes(&mut self, direction: Direction, part: Part, bytes: &[u8]);
    /// Something that is not bytes on the wire: the connection, the TLS handshake, the body
    /// framing chosen from the response head.
    fn note(&mut self, direction: Direction, text: &str);
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
#[derive(Debug)]
pub struct TraceWriter<W: Write + Send> {
    out: W,
    format: TraceFormat,
    started: Instant,
    offsets: [u64; 2],
    line: String,
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
            failed: None,
        }
    }

    /// The first write error, if writing the trace failed (the upload goes on regardless).
    pub fn error(&self) -> Option<&io::Error> {
        self.failed.as_ref()
    }

    /// Flushes the writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The writer back.
    pub fn into_inner(self) -> W {
        self.out
    }

    fn flush_line(&mut self) {
        if self.failed.is_none() {
            if let Err(e) = self.out.write_all(self.line.as_bytes()) {
                self.failed = Some(e);
            }
        }
        self.line.clear();
    }

    fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

/// Bytes as text with CR, LF, tabs, quotes and non-printables escaped.
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

fn part_label(part: Part) -> String {
    match part {
        Part::ChunkSize { size } => format!("chunk size ({size})"),
        other => other.name().to_owned(),
    }
}

impl<W: Write + Send> Trace for TraceWriter<W> {
    fn bytes(&mut self, direction: Direction, part: Part, bytes: &[u8]) {
        let index = direction as usize;
        let offset = self.offsets[index];
        self.offsets[index] += bytes.len() as u64;
        let seconds = self.seconds();
        match self.format {
            TraceFormat::Ascii { data_limit } => {
                let _ = write!(
                    self.line,
                    "{seconds:>10.6} {} {offset:>10} {:<20} ",
                    direction.arrow(),
                    part_label(part)
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
                    part_label(part),
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
                let _ = write!(
                    self.line,
                    "{{\"t\":{seconds:.6},\"dir\":\"{}\",\"offset\":{offset},\"part\":\"{}\"",
                    direction.name(),
                    part.name()
                );
                if let Part::ChunkSize { size } = part {
                    let _ = write!(self.line, ",\"size\":{size}");
                }
                let _ = write!(self.line, ",\"len\":{},\"hex\":\"", bytes.len());
                push_hex(&mut self.line, bytes);
                self.line.push_str("\"}\n");
            }
        }
        self.flush_line();
    }

    fn note(&mut self, direction: Direction, text: &str) {
        let seconds = self.seconds();
        match self.format {
            TraceFormat::Ascii { .. } | TraceFormat::Hex => {
                let _ = writeln!(self.line, "{seconds:>10.6} {} * {text}", direction.arrow());
            }
            TraceFormat::Json => {
                let _ = write!(
                    self.line,
                    "{{\"t\":{seconds:.6},\"dir\":\"{}\",\"note\":\"",
                    direction.name()
                );
                push_escaped(&mut self.line, text.as_bytes());
                self.line.push_str("\"}\n");
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
