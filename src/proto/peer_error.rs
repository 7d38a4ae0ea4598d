//! `PeerError`: every way the bytes from the other side break HTTP/1.1 framing. Used for
//! responses in the client and for request bodies in the sink (h11's
//! `RemoteProtocolError`; the caller's own mistakes are `RequestError`).

use std::fmt;

/// Longest excerpt of a peer's bytes quoted in a message.
const EXCERPT: usize = 40;

/// The peer sent bytes that are not valid HTTP/1.1 (or exceed a limit).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerError {
    /// The status line does not parse.
    BadStatusLine {
        /// The start of what came instead.
        excerpt: String,
    },
    /// The request line does not parse.
    BadRequestLine {
        /// The start of what came instead.
        excerpt: String,
    },
    /// The HTTP version is not 1.x.
    UnsupportedVersion,
    /// A header line does not parse, or its name or value is not allowed.
    BadHeader {
        /// The start of the offending bytes, where known.
        excerpt: String,
    },
    /// The head grew past the limit without ending.
    HeadTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// More header fields than the limit.
    TooManyHeaders {
        /// The limit.
        limit: usize,
    },
    /// More interim (1xx) responses than the limit, and no final one.
    TooManyInterimResponses {
        /// The limit.
        limit: u32,
    },
    /// 101 Switching Protocols, which chunkwire never asks for.
    UnexpectedUpgrade,
    /// Both Content-Length and Transfer-Encoding (RFC 9112 section 6.3, rule 3).
    ConflictingFraming,
    /// Content-Length is not a number, or several differ.
    BadContentLength {
        /// The value(s) as received.
        value: String,
    },
    /// A chunk-size line is not hex digits, or the line is malformed.
    BadChunkSize {
        /// The start of the line.
        line: String,
    },
    /// A chunk size does not fit in 64 bits.
    ChunkSizeOverflow,
    /// A chunk-size line (with extensions) is longer than the limit.
    ChunkLineTooLong {
        /// The limit, in bytes.
        limit: usize,
    },
    /// A bare LF inside a chunk extension.
    BareLfInExtension,
    /// A chunk-size line ended by a bare LF instead of CRLF.
    BareLfInChunkSize,
    /// A chunk extension with a control character in it (a stray CR, say).
    BadChunkExtension {
        /// The extensions as received, from the first `;`.
        extension: String,
    },
    /// Chunk data followed by a bare LF instead of CRLF.
    BareLfAfterChunkData,
    /// Chunk data not followed by CRLF.
    MissingChunkCrLf,
    /// A trailer line (or the empty line ending the body) ended by a bare LF.
    BareLfInTrailer,
    /// A trailer line does not parse.
    BadTrailer {
        /// The start of the line.
        excerpt: String,
    },
    /// The trailer section is larger than the limit.
    TrailerTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The body is larger than the configured limit.
    BodyTooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// A header field value continued on the next line (obs-fold, RFC 9112 section 5.2),
    /// in a request: a server may refuse it, and the sink does.
    ObsoleteLineFolding {
        /// The start of the folded field line.
        excerpt: String,
    },
    /// An HTTP/1.1 request without a Host field (RFC 9112 section 3.2).
    MissingHost,
    /// A request with more than one Host field line (RFC 9112 section 3.2).
    DuplicateHost,
    /// An HTTP/1.0 message with Transfer-Encoding: its framing is faulty (RFC 9112
    /// section 6.1).
    TransferEncodingInHttp10,
    /// A request whose Transfer-Encoding does not end in chunked, so its body has no
    /// length (RFC 9112 section 6.3, rule 4).
    ChunkedNotLast {
        /// The Transfer-Encoding value(s) as received.
        value: String,
    },
    /// A request body in a transfer coding other than chunked, which this side does not
    /// decode (answered with 501 Not Implemented).
    UnsupportedTransferCoding {
        /// The Transfer-Encoding value(s) as received.
        value: String,
    },
    /// The connection closed before the end of the body.
    Truncated {
        /// Body bytes received.
        received: u64,
        /// Body bytes announced by Content-Length, when it was given.
        expected: Option<u64>,
    },
}

/// Shows the start of `bytes`, escaped, for a message.
pub(crate) fn excerpt(bytes: &[u8]) -> String {
    let shown: String = bytes
        .iter()
        .take(EXCERPT)
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect();
    if bytes.len() > EXCERPT {
        format!("{shown}...")
    } else {
        shown
    }
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerError::BadStatusLine { excerpt } => {
                write!(
                    f,
                    "bad status line: expected \"HTTP/1.x NNN reason\", got \"{excerpt}\""
                )
            }
            PeerError::BadRequestLine { excerpt } => write!(
                f,
                "bad request line: expected \"METHOD target HTTP/1.x\", got \"{excerpt}\""
            ),
            PeerError::UnsupportedVersion => f.write_str("HTTP version is not 1.0 or 1.1"),
            PeerError::BadHeader { excerpt } => write!(f, "malformed header field \"{excerpt}\""),
            PeerError::HeadTooLarge { limit } => {
                write!(f, "head larger than the limit of {limit} bytes")
            }
            PeerError::TooManyHeaders { limit } => {
                write!(f, "more header fields than the limit of {limit}")
            }
            PeerError::TooManyInterimResponses { limit } => {
                write!(
                    f,
                    "more interim (1xx) responses than the limit of {limit}, and no final one"
                )
            }
            PeerError::UnexpectedUpgrade => {
                f.write_str("101 Switching Protocols, but no upgrade was asked for")
            }
            PeerError::ConflictingFraming => f.write_str(
                "both Content-Length and Transfer-Encoding: the body length is ambiguous",
            ),
            PeerError::BadContentLength { value } => write!(f, "bad Content-Length \"{value}\""),
            PeerError::BadChunkSize { line } => {
                write!(f, "bad chunk-size line \"{line}\": expected hex digits")
            }
            PeerError::ChunkSizeOverflow => f.write_str("chunk size does not fit in 64 bits"),
            PeerError::ChunkLineTooLong { limit } => {
                write!(f, "chunk size line longer than the limit of {limit} bytes")
            }
            PeerError::BareLfInExtension => {
                f.write_str("bare LF in a chunk extension; RFC 9112 requires CRLF")
            }
            PeerError::BareLfInChunkSize => {
                f.write_str("bare LF in chunk-size line; RFC 9112 requires CRLF")
            }
            PeerError::BadChunkExtension { extension } => {
                write!(
                    f,
                    "bad chunk extension \"{extension}\": a control character"
                )
            }
            PeerError::BareLfAfterChunkData => {
                f.write_str("bare LF after chunk data; RFC 9112 requires CRLF")
            }
            PeerError::MissingChunkCrLf => f.write_str("chunk data not followed by CRLF"),
            PeerError::BareLfInTrailer => {
                f.write_str("bare LF in the trailer section; RFC 9112 requires CRLF")
            }
            PeerError::BadTrailer { excerpt } => write!(f, "malformed trailer field \"{excerpt}\""),
            PeerError::TrailerTooLarge { limit } => {
                write!(f, "trailer section larger than the limit of {limit} bytes")
            }
            PeerError::BodyTooLarge { limit } => {
                write!(f, "body larger than the limit of {limit} bytes")
            }
            PeerError::ObsoleteLineFolding { excerpt } => write!(
                f,
                "header field continued on the next line (obsolete line folding) at \"{excerpt}\""
            ),
            PeerError::MissingHost => f.write_str("HTTP/1.1 request without a Host field"),
            PeerError::DuplicateHost => f.write_str("request with more than one Host field"),
            PeerError::TransferEncodingInHttp10 => {
                f.write_str("HTTP/1.0 message with Transfer-Encoding: the framing is faulty")
            }
            PeerError::ChunkedNotLast { value } => write!(
                f,
                "Transfer-Encoding \"{value}\" does not end in chunked: the request body has no length"
            ),
            PeerError::UnsupportedTransferCoding { value } => write!(
                f,
                "Transfer-Encoding \"{value}\": only chunked is implemented"
            ),
            PeerError::Truncated {
                received,
                expected: Some(expected),
            } => write!(
                f,
                "connection closed after {received} of {expected} body bytes"
            ),
            PeerError::Truncated {
                received,
                expected: None,
            } => write!(
                f,
                "connection closed after {received} body bytes, before the last chunk"
            ),
        }
    }
}

impl std::error::Error for PeerError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_escaped_and_truncated() {
        assert_eq!(excerpt(b"a\r\n\x00"), "a\\r\\n\\x00");
        let long = [b'x'; 100];
        assert_eq!(excerpt(&long), format!("{}...", "x".repeat(EXCERPT)));
    }

    #[test]
    fn messages_name_the_limit() {
        assert_eq!(
            PeerError::HeadTooLarge { limit: 32768 }.to_string(),
            "head larger than the limit of 32768 bytes"
        );
    }
}
