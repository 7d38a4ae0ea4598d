//! The response head parser, over httparse: interim responses, the final status and
//! headers within limits, and the body framing that follows from them.
//!
//! RFC 9112 section 6.3 decides the body length; the rules are quoted where applied.

use crate::proto::limits::{Limits, MAX_HEADERS_CAP};
use crate::proto::peer_error::{PeerError, excerpt};

/// How the response body is delimited (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body: a response to HEAD, or 204, or 304.
    Empty,
    /// Exactly this many bytes.
    ContentLength(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the server closes the connection.
    CloseDelimited,
}

impl std::fmt::Display for BodyFraming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyFraming::Empty => f.write_str("no body"),
            BodyFraming::ContentLength(len) => write!(f, "Content-Length, {len} bytes"),
            BodyFraming::Chunked => f.write_str("chunked"),
            BodyFraming::CloseDelimited => f.write_str("until the server closes"),
        }
    }
}

/// A parsed final response head.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    /// The status code.
    pub status: http::StatusCode,
    /// The HTTP minor version (0 or 1).
    pub version_minor: u8,
    /// The reason phrase (invalid UTF-8 replaced).
    pub reason: String,
    /// The header fields.
    pub headers: http::HeaderMap,
}

impl ResponseHead {
    /// True when the server will close the connection after this response:
    /// `Connection: close`, or HTTP/1.0 without `Connection: keep-alive`.
    pub fn wants_close(&self) -> bool {
        let has_token = |token: &str| {
            self.headers
                .get_all(http::header::CONNECTION)
                .iter()
                .any(|v| {
                    v.to_str()
                        .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                        .unwrap_or(false)
                })
        };
        has_token("close") || (self.version_minor == 0 && !has_token("keep-alive"))
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

/// Parses a response head at the start of `input`.
pub fn parse_response_head(
    input: &[u8],
    request_was_head: bool,
    limits: &Limits,
) -> Result<HeadParse, PeerError> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS_CAP];
    let headers = &mut storage[..limits.header_count()];
    let mut response = httparse::Response::new(headers);
    let consumed = match response.parse(input) {
        Ok(httparse::Status::Complete(consumed)) if consumed <= limits.max_head_bytes => consumed,
        Ok(_) if input.len() >= limits.max_head_bytes => {
            return Err(PeerError::HeadTooLarge {
                limit: limits.max_head_bytes,
            });
        }
        Ok(_) => return Ok(HeadParse::Partial),
        Err(err) => return Err(parse_error(err, input, limits)),
    };
    let code = response.code.unwrap_or_default();
    let status = http::StatusCode::from_u16(code).map_err(|_| PeerError::BadStatusLine {
        excerpt: excerpt(input),
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
    let mut header_map = http::HeaderMap::with_capacity(response.headers.len());
    for header in response.headers.iter() {
        let bad = || PeerError::BadHeader {
            excerpt: excerpt(header.name.as_bytes()),
        };
        let name = http::HeaderName::from_bytes(header.name.as_bytes()).map_err(|_| bad())?;
        let value = http::HeaderValue::from_bytes(header.value).map_err(|_| bad())?;
        header_map.append(name, value);
    }
    let head = ResponseHead {
        status,
        version_minor: response.version.unwrap_or(1),
        reason: response.reason.unwrap_or_default().to_owned(),
        headers: header_map,
    };
    let framing = body_framing(&head, request_was_head)?;
    Ok(HeadParse::Final {
        consumed,
        head,
        framing,
    })
}

fn parse_error(err: httparse::Error, input: &[u8], limits: &Limits) -> PeerError {
    match err {
        httparse::Error::TooManyHeaders => PeerError::TooManyHeaders {
            limit: limits.header_count(),
        },
        httparse::Error::Version if input.starts_with(b"HTTP/") => PeerError::UnsupportedVersion,
        httparse::Error::Version | httparse::Error::Status | httparse::Error::Token => {
            PeerError::BadStatusLine {
                excerpt: excerpt(input),
            }
        }
        _ => PeerError::BadHeader {
            excerpt: excerpt(first_bad_line(input)),
        },
    }
}

/// The first header line that is not a plain `name: value`, or the whole input.
fn first_bad_line(input: &[u8]) -> &[u8] {
    input
        .split(|&b| b == b'\n')
        .skip(1)
        .find(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            !line.is_empty() && !line.contains(&b':')
        })
        .unwrap_or(input)
}

/// RFC 9112 section 6.3: the length of a response body.
fn body_framing(head: &ResponseHead, request_was_head: bool) -> Result<BodyFraming, PeerError> {
    let status = head.status.as_u16();
    // Rule 1: responses to HEAD, and 1xx, 204 and 304 responses, end with the head.
    if request_was_head || status == 204 || status == 304 {
        return Ok(BodyFraming::Empty);
    }
    let transfer_encoding = head.headers.get_all(http::header::TRANSFER_ENCODING);
    let content_length = head.headers.get_all(http::header::CONTENT_LENGTH);
    let has_te = transfer_encoding.iter().next().is_some();
    let has_cl = content_length.iter().next().is_some();
    if has_te {
        // Rule 3: both present may be smuggling; we refuse rather than guess.
        if has_cl {
            return Err(PeerError::ConflictingFraming);
        }
        // Rule 4: chunked as the final coding delimits the body; any other final coding
        // means the body runs until the connection closes.
        let last_coding = transfer_encoding
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .rfind(|coding| !coding.is_empty());
        return Ok(match last_coding {
            Some(coding) if coding.eq_ignore_ascii_case(b"chunked") => BodyFraming::Chunked,
            _ => BodyFraming::CloseDelimited,
        });
    }
    if has_cl {
        // Rule 5: every value, across fields and lists, must be the same valid number.
        let mut length: Option<u64> = None;
        for value in content_length.iter() {
            for item in value.as_bytes().split(|&b| b == b',') {
                let parsed = parse_decimal(item.trim_ascii()).ok_or_else(|| bad_length(head))?;
                if length.is_some_and(|seen| seen != parsed) {
                    return Err(bad_length(head));
                }
                length = Some(parsed);
            }
        }
        return Ok(BodyFraming::ContentLength(length.unwrap_or(0)));
    }
    // Rule 8: otherwise the body is everything until the connection closes.
    Ok(BodyFraming::CloseDelimited)
}

fn bad_length(head: &ResponseHead) -> PeerError {
    let values: Vec<String> = head
        .headers
        .get_all(http::header::CONTENT_LENGTH)
        .iter()
        .map(|v| excerpt(v.as_bytes()))
        .collect();
    PeerError::BadContentLength {
        value: values.join(", "),
    }
}

/// Digits only: no sign, no spaces, no overflow.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
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
