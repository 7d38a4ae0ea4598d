//! The response head parser, over httparse: interim responses, the final status and
//! headers within limits, and the body framing that follows from them.
//!
//! The rules (field validation, obs-fold, limits, framing, persistence) are those of
//! [`crate::proto::message`], which the sink applies to requests too.

use crate::proto::limits::{Limits, MAX_HEADERS_CAP};
use crate::proto::message::{self, Kind};
use crate::proto::peer_error::{PeerError, excerpt};

pub use crate::proto::message::BodyFraming;

/// A parsed final response head.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    /// The status code.
    pub status: http::StatusCode,
    /// The HTTP minor version (0 or 1).
    pub version_minor: u8,
    /// The reason phrase (invalid UTF-8 replaced).
    pub reason: String,
    /// The header fields, each obs-fold replaced by one space.
    pub headers: http::HeaderMap,
}

impl ResponseHead {
    /// True when the server will close the connection after this response:
    /// `Connection: close`, or HTTP/1.0 without `Connection: keep-alive` (message rule 11).
    pub fn wants_close(&self) -> bool {
        message::wants_close(self.version_minor, &self.headers)
    }
}

/// The result of parsing the bytes received so far.
#[derive(Debug)]
pub enum HeadParse {
    /// The head is not complete yet.
    Partial,
    /// An interim (1xx) response of `consumed` bytes: skip it and parse again after it.
    Interim {
        /// Bytes of the interim head.
        consumed: usize,
        /// Its status code.
        status: u16,
    },
    /// The final response head, of `consumed` bytes.
    Final {
        /// Bytes of the head.
        consumed: usize,
        /// The head.
        head: ResponseHead,
        /// How its body is delimited.
        framing: BodyFraming,
    },
}

/// Parses a response head at the start of `input`, with the rules of [`message`].
pub fn parse_response_head(
    input: &[u8],
    request_was_head: bool,
    limits: &Limits,
) -> Result<HeadParse, PeerError> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS_CAP];
    let headers = &mut storage[..limits.header_count()];
    let mut response = httparse::Response::new(headers);
    // Message rule 2: a user agent must accept obs-fold in a response; httparse then keeps
    // the fold's CRLF inside the value, and `message::header_map` replaces it by a space.
    let parsed = httparse::ParserConfig::default()
        .allow_obsolete_multiline_headers_in_responses(true)
        .parse_response(&mut response, input);
    // The kind's status is not known before parsing; it only matters for rule 5.
    let kind = Kind::Response {
        status: 0,
        request_was_head,
    };
    let Some(consumed) = message::head_length(parsed, input, kind, limits)? else {
        return Ok(HeadParse::Partial);
    };
    let code = response.code.unwrap_or_default();
    let status = http::StatusCode::from_u16(code).map_err(|_| PeerError::BadStatusLine {
        excerpt: excerpt(input.split(|&b| b == b'\n').next().unwrap_or(input)),
    })?;
    if status.is_informational() {
        if code == 101 {
            return Err(PeerError::UnexpectedUpgrade);
        }
        return Ok(HeadParse::Interim {
            consumed,
            status: code,
        });
    }
    let head = ResponseHead {
        status,
        version_minor: response.version.unwrap_or(1),
        reason: response.reason.unwrap_or_default().to_owned(),
        headers: message::header_map(response.headers)?,
    };
    let kind = Kind::Response {
        status: code,
        request_was_head,
    };
    let framing = message::framing(kind, head.version_minor, &head.headers)?;
    Ok(HeadParse::Final {
        consumed,
        head,
        framing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &[u8]) -> Result<HeadParse, PeerError> {
        parse_response_head(input, false, &Limits::default())
    }

    fn framing_of(input: &str, head_request: bool) -> Result<BodyFraming, PeerError> {
        match parse_response_head(input.as_bytes(), head_request, &Limits::default())? {
            HeadParse::Final {
                framing, consumed, ..
            } => {
                assert_eq!(consumed, input.len());
                Ok(framing)
            }
            other => panic!("{input:?}: {other:?}"),
        }
    }

    #[test]
    fn framing_follows_rfc_9112_section_6_3() {
        use BodyFraming::*;
        let cases: &[(&str, bool, Result<BodyFraming, PeerError>)] = &[
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                false,
                Ok(ContentLength(5)),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                true,
                Ok(Empty),
            ),
            (
                "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
                false,
                Ok(Empty),
            ),
            (
                "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
                Ok(Empty),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
                Ok(Chunked),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n",
                false,
                Ok(Chunked),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
                Ok(Chunked),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                false,
                Ok(CloseDelimited),
            ),
            ("HTTP/1.0 200 OK\r\n\r\n", false, Ok(CloseDelimited)),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n",
                false,
                Ok(ContentLength(7)),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n",
                false,
                Ok(ContentLength(7)),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 7\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
                Err(PeerError::ConflictingFraming),
            ),
        ];
        for (input, head_request, expected) in cases {
            assert_eq!(&framing_of(input, *head_request), expected, "{input:?}");
        }
        for bad in ["7, 8", "-1", "+7", "0x10", "", "99999999999999999999"] {
            let input = format!("HTTP/1.1 200 OK\r\nContent-Length: {bad}\r\n\r\n");
            assert!(
                matches!(
                    framing_of(&input, false),
                    Err(PeerError::BadContentLength { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn interim_responses_come_before_the_final_one() {
        let input = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
        let mut at = 0;
        let mut interim = Vec::new();
        loop {
            match parse(&input[at..]).unwrap() {
                HeadParse::Interim { consumed, status } => {
                    interim.push(status);
                    at += consumed;
                }
                HeadParse::Final { consumed, head, .. } => {
                    assert_eq!(head.status, 201);
                    assert_eq!(head.reason, "Created");
                    assert_eq!(at + consumed, input.len());
                    break;
                }
                HeadParse::Partial => panic!("partial"),
            }
        }
        assert_eq!(interim, [100, 103]);
        assert_eq!(
            parse(b"HTTP/1.1 101 Switching Protocols\r\n\r\n").unwrap_err(),
            PeerError::UnexpectedUpgrade
        );
    }

    #[test]
    fn partial_input_one_byte_at_a_time_then_trailing_bytes_left_alone() {
        let input = b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 3\r\n\r\n";
        for end in 0..input.len() {
            assert!(
                matches!(parse(&input[..end]), Ok(HeadParse::Partial)),
                "{end}"
            );
        }
        let mut with_body = input.to_vec();
        with_body.extend_from_slice(b"abcHTTP/1.1");
        match parse(&with_body).unwrap() {
            HeadParse::Final { consumed, head, .. } => {
                assert_eq!(consumed, input.len());
                assert_eq!(head.headers["x-a"], "1");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn limits_and_garbage_are_errors() {
        let limits = Limits {
            max_head_bytes: 64,
            max_headers: 2,
            ..Limits::default()
        };
        let long = format!("HTTP/1.1 200 OK\r\nX: {}\r\n", "a".repeat(60));
        assert_eq!(
            parse_response_head(long.as_bytes(), false, &limits).unwrap_err(),
            PeerError::HeadTooLarge { limit: 64 }
        );
        let many = b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert_eq!(
            parse_response_head(many, false, &limits).unwrap_err(),
            PeerError::TooManyHeaders { limit: 2 }
        );
        assert!(matches!(
            parse(b"HTTP/1.1 abc OK\r\n\r\n"),
            Err(PeerError::BadStatusLine { .. })
        ));
        assert!(matches!(
            parse(b"SMTP ready\r\n\r\n"),
            Err(PeerError::BadStatusLine { .. })
        ));
        assert_eq!(
            parse(b"HTTP/2.0 200 OK\r\n\r\n").unwrap_err(),
            PeerError::UnsupportedVersion
        );
        assert!(matches!(
            parse(b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n"),
            Err(PeerError::BadHeader { .. })
        ));
        assert!(matches!(
            parse(b"HTTP/1.1 200 OK\r\nX: a\x01b\r\n\r\n"),
            Err(PeerError::BadHeader { .. })
        ));
    }

    #[test]
    fn a_bad_header_is_quoted_by_its_line_not_by_the_body() {
        // The second field line is the bad one, and a body follows the head: the message
        // must show the line, never bytes after the head.
        let cases: &[(&[u8], &str)] = &[
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-Bad\x01: v\r\n\r\nhello world",
                "X-Bad\\x01: v",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-Ctl: a\x01b\r\n\r\nhello world",
                "X-Ctl: a\\x01b",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nno colon\r\n\r\nhello world",
                "no colon",
            ),
        ];
        for (input, line) in cases {
            let err = parse(input).unwrap_err();
            let message = err.to_string();
            assert!(matches!(err, PeerError::BadHeader { .. }), "{err:?}");
            assert!(message.contains(line), "{message} should quote {line}");
            assert!(!message.contains("hello"), "{message} quotes the body");
        }
    }

    #[test]
    fn folded_field_lines_are_unfolded_to_one_space() {
        let input = b"HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\nContent-Length: 0\r\n\r\n";
        for end in 0..input.len() {
            assert!(
                matches!(parse(&input[..end]), Ok(HeadParse::Partial)),
                "{end}"
            );
        }
        match parse(input).unwrap() {
            HeadParse::Final {
                consumed,
                head,
                framing,
            } => {
                assert_eq!(consumed, input.len());
                assert_eq!(head.headers["x-a"], "one two");
                assert_eq!(framing, BodyFraming::ContentLength(0));
            }
            other => panic!("{other:?}"),
        }
        // A fold in a framing field: a value on the next line still parses; a fold that
        // splits the number makes it "5 5", refused as a bad Content-Length.
        let folded_start = b"HTTP/1.1 200 OK\r\nContent-Length:\r\n 5\r\n\r\n";
        assert!(matches!(
            parse(folded_start),
            Ok(HeadParse::Final {
                framing: BodyFraming::ContentLength(5),
                ..
            })
        ));
        let split = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n 5\r\n\r\n";
        assert_eq!(
            parse(split).unwrap_err(),
            PeerError::BadContentLength {
                value: "5 5".into()
            }
        );
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip,\r\n\tchunked\r\n\r\n";
        assert!(matches!(
            parse(chunked),
            Ok(HeadParse::Final {
                framing: BodyFraming::Chunked,
                ..
            })
        ));
    }

    #[test]
    fn close_is_wanted_by_connection_close_and_plain_http_1_0() {
        let wants_close = |input: &str| match parse(input.as_bytes()).unwrap() {
            HeadParse::Final { head, .. } => head.wants_close(),
            other => panic!("{other:?}"),
        };
        assert!(!wants_close("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(wants_close("HTTP/1.1 200 OK\r\nConnection: Close\r\n\r\n"));
        assert!(wants_close("HTTP/1.0 200 OK\r\n\r\n"));
        assert!(!wants_close(
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n"
        ));
    }
}
