//! The role-neutral HTTP/1.1 message layer: what a head's fields mean for the body and the
//! connection, written once for requests (the sink) and responses (the client).
//!
//! Like h11's `_state.py`, this file does not know which role it is playing: it is told
//! the [`Kind`] of message (a request, or a response with its status and whether it
//! answers HEAD) and applies the same rules either way. [`crate::proto::response`] parses
//! response heads with it; [`parse_request_head`] here parses request heads for the sink.
//! Every rule is applied by one function, named in brackets:
//!
//! ```text
//! Rule 1  Field lines. field-line = field-name ":" OWS field-value OWS; the name is a
//!         token, the value visible characters, SP, HTAB and obs-text. A bad line is
//!         reported by quoting that line, never bytes after the head.  [header_map, bad_line]
//! Rule 2  obs-fold (RFC 9112 section 5.2). In a response, each fold is replaced by one SP
//!         before the value is interpreted (a user agent MUST). In a request it is refused
//!         with 400 (a server MAY).                                   [unfold, bad_line]
//! Rule 3  Limits, the same Limits for both roles: a head of at most max_head_bytes, at
//!         most header_count() fields.                                [head_length]
//! Rule 4  Host (RFC 9112 section 3.2): an HTTP/1.1 request without Host, or any request
//!         with more than one Host line, is refused with 400.         [check_host]
//! Rule 5  No body (RFC 9112 section 6.3, rule 1): a response to HEAD, and 1xx, 204 and
//!         304 responses, end with the head whatever the fields say.  [framing]
//! Rule 6  Transfer-Encoding in HTTP/1.0 (section 6.1): the framing is faulty; refused in
//!         either role, even with Content-Length.                     [framing]
//! Rule 7  Transfer-Encoding and Content-Length together (section 6.3, rule 3) may be
//!         request smuggling: refused in either role.                 [framing]
//! Rule 8  Transfer-Encoding (sections 6.1, 6.3 rule 4). Chunked must be the final coding.
//!         Response: final chunked -> chunked; any other final coding -> until close.
//!         Request: final coding not chunked -> 400 (no length); any coding besides one
//!         chunked (`gzip, chunked`) -> 501, since the sink decodes only chunked and must
//!         not report coded bytes as the body.                        [framing]
//! Rule 9  Content-Length (RFC 9110 section 8.6): 1*DIGIT, nothing else (no sign, no
//!         inner space, not empty). A list or repeat of one value ("5, 5") is that value;
//!         different values are an error. Both roles.                 [content_length]
//! Rule 10 Neither field: a request has no body (section 6.3, rule 6); a response runs
//!         until the connection closes (rule 8).                      [framing]
//! Rule 11 Persistence (RFC 9112 section 9.3): `Connection: close` in either message ends
//!         the connection after this exchange; an HTTP/1.0 message does too unless it
//!         says `Connection: keep-alive`.                             [wants_close]
//! ```

use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::proto::limits::{Limits, MAX_HEADERS_CAP};
use crate::proto::peer_error::{PeerError, excerpt};

/// How a message body is delimited (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body: a request without framing fields, a response to HEAD, or 1xx, 204, 304.
    Empty,
    /// Exactly this many bytes.
    ContentLength(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the sender closes the connection (responses only).
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

/// What the rules need to know about a message besides its fields: who sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request.
    Request,
    /// A response.
    Response {
        /// Its status code.
        status: u16,
        /// The request it answers was HEAD (rule 5).
        request_was_head: bool,
    },
}

/// Rule 3: the length of a complete head within the limits, `None` while more bytes may
/// still complete it. `parsed` is httparse's answer for `input`.
pub fn head_length(
    parsed: Result<httparse::Status<usize>, httparse::Error>,
    input: &[u8],
    kind: Kind,
    limits: &Limits,
) -> Result<Option<usize>, PeerError> {
    let too_large = PeerError::HeadTooLarge {
        limit: limits.max_head_bytes,
    };
    match parsed {
        Ok(httparse::Status::Complete(len)) if len <= limits.max_head_bytes => Ok(Some(len)),
        Ok(httparse::Status::Complete(_)) => Err(too_large),
        // A head that has not ended within the limit never will, as far as we care.
        Ok(httparse::Status::Partial) if input.len() >= limits.max_head_bytes => Err(too_large),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(err) => Err(parse_error(err, input, kind, limits)),
    }
}

/// Turns an httparse error into the precise [`PeerError`], quoting the offending line.
fn parse_error(err: httparse::Error, input: &[u8], kind: Kind, limits: &Limits) -> PeerError {
    let start_line = excerpt(first_line(input));
    match (err, kind) {
        (httparse::Error::TooManyHeaders, _) => PeerError::TooManyHeaders {
            limit: limits.header_count(),
        },
        (httparse::Error::Version, Kind::Response { .. }) if input.starts_with(b"HTTP/") => {
            PeerError::UnsupportedVersion
        }
        (httparse::Error::Version, Kind::Request)
            if first_line(input).windows(6).any(|w| w == b" HTTP/") =>
        {
            PeerError::UnsupportedVersion
        }
        (
            httparse::Error::Version | httparse::Error::Status | httparse::Error::Token,
            Kind::Response { .. },
        ) => PeerError::BadStatusLine {
            excerpt: start_line,
        },
        (httparse::Error::Version | httparse::Error::Token, Kind::Request) => {
            PeerError::BadRequestLine {
                excerpt: start_line,
            }
        }
        _ => match bad_line(input, kind) {
            Some(line) if kind == Kind::Request && is_fold(line) => {
                PeerError::ObsoleteLineFolding {
                    excerpt: excerpt(line),
                }
            }
            Some(line) => PeerError::BadHeader {
                excerpt: excerpt(line),
            },
            // httparse refused something this check accepts: show the head's second line,
            // which is where field lines start, rather than guessing further.
            None => PeerError::BadHeader {
                excerpt: excerpt(lines(input).nth(1).unwrap_or(input)),
            },
        },
    }
}

/// The lines of `input`, each without its LF or CRLF.
fn lines(input: &[u8]) -> impl Iterator<Item = &[u8]> {
    input
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
}

fn first_line(input: &[u8]) -> &[u8] {
    lines(input).next().unwrap_or(input)
}

/// Rules 1 and 2: the first field line of the head at the start of `input` that is not a
/// valid `name: value` (a fold counts as valid in a response). Stops at the end of the head,
/// so what follows it (the body) is never quoted.
pub fn bad_line(input: &[u8], kind: Kind) -> Option<&[u8]> {
    let folds_allowed = matches!(kind, Kind::Response { .. });
    lines(input)
        .skip(1)
        .take_while(|line| !line.is_empty())
        .find(|line| {
            if is_fold(line) {
                return !folds_allowed || line.iter().any(|&b| is_bad_value_byte(b));
            }
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                return true;
            };
            HeaderName::from_bytes(&line[..colon]).is_err()
                || line[colon + 1..].iter().any(|&b| is_bad_value_byte(b))
        })
}

/// obs-fold: a field line that starts with whitespace continues the previous value.
fn is_fold(line: &[u8]) -> bool {
    line.starts_with(b" ") || line.starts_with(b"\t")
}

/// field-value = *field-content; controls other than HTAB are not allowed (obs-text is).
fn is_bad_value_byte(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// Rule 2: replaces each obs-fold (a line break with the whitespace around it) by one SP.
/// httparse keeps the CRLF of a fold inside the value; http's HeaderValue refuses it.
pub fn unfold(value: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !value.iter().any(|&b| b == b'\r' || b == b'\n') {
        return value.into();
    }
    let mut out = Vec::with_capacity(value.len());
    let mut run = 0..0;
    for (i, &b) in value.iter().enumerate() {
        if matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
            if run.is_empty() {
                run = i..i + 1;
            } else {
                run.end = i + 1;
            }
            continue;
        }
        flush_run(&mut out, &value[run.clone()]);
        run = 0..0;
        out.push(b);
    }
    flush_run(&mut out, &value[run]);
    out.into()
}

/// Whitespace inside a value stays as it is, unless it holds a line break (a fold).
fn flush_run(out: &mut Vec<u8>, run: &[u8]) {
    if run.iter().any(|&b| b == b'\r' || b == b'\n') {
        out.push(b' ');
    } else {
        out.extend_from_slice(run);
    }
}

/// Rule 1 for one field line without its CRLF (a trailer line, say): the name and the
/// value without the whitespace around it, or `None` when the line is not a valid field.
pub fn split_field_line(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = line.iter().position(|&b| b == b':')?;
    let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
    let valid = HeaderName::from_bytes(name).is_ok() && HeaderValue::from_bytes(value).is_ok();
    valid.then_some((name, value))
}

/// Rules 1 and 2: the parsed fields as a map, each value unfolded and checked.
pub fn header_map(fields: &[httparse::Header<'_>]) -> Result<HeaderMap, PeerError> {
    let mut map = HeaderMap::with_capacity(fields.len());
    for field in fields {
        let bad = || {
            let mut line = field.name.as_bytes().to_vec();
            line.extend_from_slice(b": ");
            line.extend_from_slice(field.value);
            PeerError::BadHeader {
                excerpt: excerpt(&line),
            }
        };
        let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_bytes(&unfold(field.value)).map_err(|_| bad())?;
        map.append(name, value);
    }
    Ok(map)
}

/// Rule 4: a request's Host fields.
pub fn check_host(version_minor: u8, headers: &HeaderMap) -> Result<(), PeerError> {
    match headers.get_all(header::HOST).iter().count() {
        0 if version_minor >= 1 => Err(PeerError::MissingHost),
        0 | 1 => Ok(()),
        _ => Err(PeerError::DuplicateHost),
    }
}

/// Rules 5 to 10: how the body of this message is delimited.
pub fn framing(
    kind: Kind,
    version_minor: u8,
    headers: &HeaderMap,
) -> Result<BodyFraming, PeerError> {
    if let Kind::Response {
        status,
        request_was_head,
    } = kind
    {
        // Rule 5.
        if request_was_head || (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(BodyFraming::Empty);
        }
    }
    let has_te = headers.contains_key(header::TRANSFER_ENCODING);
    let has_cl = headers.contains_key(header::CONTENT_LENGTH);
    if has_te {
        // Rule 6, before rule 7: "even if a Content-Length is present".
        if version_minor == 0 {
            return Err(PeerError::TransferEncodingInHttp10);
        }
        // Rule 7.
        if has_cl {
            return Err(PeerError::ConflictingFraming);
        }
        return transfer_coding_framing(kind, headers);
    }
    if has_cl {
        return content_length(headers).map(BodyFraming::ContentLength);
    }
    // Rule 10.
    Ok(match kind {
        Kind::Request => BodyFraming::Empty,
        Kind::Response { .. } => BodyFraming::CloseDelimited,
    })
}

/// Rule 8.
fn transfer_coding_framing(kind: Kind, headers: &HeaderMap) -> Result<BodyFraming, PeerError> {
    let fields = headers.get_all(header::TRANSFER_ENCODING);
    // A list may have empty elements ("a recipient MUST accept", RFC 9110 section 5.6.1).
    let codings = || {
        fields
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|coding| !coding.is_empty())
    };
    let count = codings().count();
    let last_is_chunked = codings()
        .next_back()
        .is_some_and(|coding| coding.eq_ignore_ascii_case(b"chunked"));
    let value = || {
        let values: Vec<String> = fields.iter().map(|v| excerpt(v.as_bytes())).collect();
        values.join(", ")
    };
    Ok(match (kind, last_is_chunked) {
        (Kind::Response { .. }, true) => BodyFraming::Chunked,
        (Kind::Response { .. }, false) => BodyFraming::CloseDelimited,
        (Kind::Request, false) => return Err(PeerError::ChunkedNotLast { value: value() }),
        (Kind::Request, true) if count == 1 => BodyFraming::Chunked,
        (Kind::Request, true) => {
            return Err(PeerError::UnsupportedTransferCoding { value: value() });
        }
    })
}

/// Rule 9: the one length every Content-Length value, across fields and lists, agrees on.
pub fn content_length(headers: &HeaderMap) -> Result<u64, PeerError> {
    let fields = headers.get_all(header::CONTENT_LENGTH);
    let bad = || {
        let values: Vec<String> = fields.iter().map(|v| excerpt(v.as_bytes())).collect();
        PeerError::BadContentLength {
            value: values.join(", "),
        }
    };
    let mut length: Option<u64> = None;
    for value in fields.iter() {
        for item in value.as_bytes().split(|&b| b == b',') {
            let parsed = parse_decimal(item.trim_ascii()).ok_or_else(bad)?;
            if length.is_some_and(|seen| seen != parsed) {
                return Err(bad());
            }
            length = Some(parsed);
        }
    }
    length.ok_or_else(bad)
}

/// `1*DIGIT`: no sign, no spaces, no overflow.
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

/// Rule 11: true when the sender of this message will not keep the connection after it.
pub fn wants_close(version_minor: u8, headers: &HeaderMap) -> bool {
    let has_token = |token: &str| {
        headers.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str()
                .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                .unwrap_or(false)
        })
    };
    has_token("close") || (version_minor == 0 && !has_token("keep-alive"))
}

/// A request asks for `100 Continue` before sending its body (RFC 9110 section 10.1.1).
pub fn expects_continue(headers: &HeaderMap) -> bool {
    headers.get_all(header::EXPECT).iter().any(|v| {
        v.as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"100-continue")
    })
}

/// The status a server answers a request's [`PeerError`] with: 501 for a transfer coding
/// it does not implement, 431 for a head past the limits, 400 for everything else.
pub fn request_error_status(err: &PeerError) -> (u16, &'static str) {
    match err {
        PeerError::UnsupportedTransferCoding { .. } => (501, "Not Implemented"),
        PeerError::HeadTooLarge { .. } | PeerError::TooManyHeaders { .. } => {
            (431, "Request Header Fields Too Large")
        }
        _ => (400, "Bad Request"),
    }
}

/// A request head as received.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    /// The method.
    pub method: String,
    /// The request-target, as sent.
    pub target: String,
    /// The HTTP minor version (0 or 1).
    pub version_minor: u8,
    /// The header fields.
    pub headers: HeaderMap,
    /// How its body is delimited (never [`BodyFraming::CloseDelimited`]).
    pub framing: BodyFraming,
}

impl ReceivedRequest {
    /// Rule 11 for this request.
    pub fn wants_close(&self) -> bool {
        wants_close(self.version_minor, &self.headers)
    }

    /// The client waits for `100 Continue` before sending the body.
    pub fn expects_continue(&self) -> bool {
        expects_continue(&self.headers)
    }
}

/// The result of parsing the request bytes received so far.
#[derive(Debug)]
pub enum RequestParse {
    /// The head is not complete yet.
    Partial,
    /// A complete request head of `consumed` bytes.
    Complete {
        /// Bytes of the head.
        consumed: usize,
        /// The head.
        request: ReceivedRequest,
    },
}

/// Parses a request head at the start of `input`, with every rule above.
pub fn parse_request_head(input: &[u8], limits: &Limits) -> Result<RequestParse, PeerError> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS_CAP];
    let mut request = httparse::Request::new(&mut storage[..limits.header_count()]);
    // httparse never accepts obs-fold in a request, which is rule 2's refusal.
    let parsed = request.parse(input);
    let Some(consumed) = head_length(parsed, input, Kind::Request, limits)? else {
        return Ok(RequestParse::Partial);
    };
    let version_minor = request.version.unwrap_or(1);
    let headers = header_map(request.headers)?;
    check_host(version_minor, &headers)?;
    let framing = framing(Kind::Request, version_minor, &headers)?;
    Ok(RequestParse::Complete {
        consumed,
        request: ReceivedRequest {
            method: request.method.unwrap_or_default().to_owned(),
            target: request.path.unwrap_or_default().to_owned(),
            version_minor,
            headers,
            framing,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::response::{HeadParse, parse_response_head};

    /// The framing of a head in either role: a head starting with `HTTP/` is a response
    /// (to a non-HEAD request), anything else a request. Checks the whole head is consumed.
    fn framing_of(head: &str) -> Result<BodyFraming, PeerError> {
        let limits = Limits::default();
        if head.starts_with("HTTP/") {
            match parse_response_head(head.as_bytes(), false, &limits)? {
                HeadParse::Final {
                    consumed, framing, ..
                } => {
                    assert_eq!(consumed, head.len(), "{head:?}");
                    Ok(framing)
                }
                other => panic!("{head:?}: {other:?}"),
            }
        } else {
            match parse_request_head(head.as_bytes(), &limits)? {
                RequestParse::Complete { consumed, request } => {
                    assert_eq!(consumed, head.len(), "{head:?}");
                    Ok(request.framing)
                }
                RequestParse::Partial => panic!("{head:?}: partial"),
            }
        }
    }

    const REQ: &str = "PUT /u HTTP/1.1\r\nHost: h\r\n";
    const REQ10: &str = "PUT /u HTTP/1.0\r\n";
    const RES: &str = "HTTP/1.1 200 OK\r\n";
    const RES10: &str = "HTTP/1.0 200 OK\r\n";

    /// Rules 5 to 10, request and response side by side: the same fields, each role's answer.
    #[test]
    fn framing_rules_for_both_roles() {
        use BodyFraming::*;
        type Expect = fn(&Result<BodyFraming, PeerError>) -> bool;
        let cases: &[(&str, Expect, Expect)] = &[
            // fields, request's framing, response's framing
            ("", |r| *r == Ok(Empty), |r| *r == Ok(CloseDelimited)),
            (
                "Content-Length: 5\r\n",
                |r| *r == Ok(ContentLength(5)),
                |r| *r == Ok(ContentLength(5)),
            ),
            (
                "Content-Length: 5, 5\r\n",
                |r| *r == Ok(ContentLength(5)),
                |r| *r == Ok(ContentLength(5)),
            ),
            (
                "Content-Length: 5\r\nContent-Length: 5\r\n",
                |r| *r == Ok(ContentLength(5)),
                |r| *r == Ok(ContentLength(5)),
            ),
            (
                "Transfer-Encoding: chunked\r\n",
                |r| *r == Ok(Chunked),
                |r| *r == Ok(Chunked),
            ),
            (
                "Transfer-Encoding: , Chunked\r\n",
                |r| *r == Ok(Chunked),
                |r| *r == Ok(Chunked),
            ),
            (
                "Transfer-Encoding: gzip, chunked\r\n",
                |r| matches!(r, Err(PeerError::UnsupportedTransferCoding { .. })),
                |r| *r == Ok(Chunked),
            ),
            (
                "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
                |r| matches!(r, Err(PeerError::UnsupportedTransferCoding { .. })),
                |r| *r == Ok(Chunked),
            ),
            (
                "Transfer-Encoding: chunked, gzip\r\n",
                |r| matches!(r, Err(PeerError::ChunkedNotLast { .. })),
                |r| *r == Ok(CloseDelimited),
            ),
            (
                "Transfer-Encoding: gzip\r\n",
                |r| matches!(r, Err(PeerError::ChunkedNotLast { .. })),
                |r| *r == Ok(CloseDelimited),
            ),
            (
                "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                |r| *r == Err(PeerError::ConflictingFraming),
                |r| *r == Err(PeerError::ConflictingFraming),
            ),
        ];
        for (fields, request, response) in cases {
            let head = format!("{REQ}{fields}\r\n");
            assert!(
                request(&framing_of(&head)),
                "{head:?}: {:?}",
                framing_of(&head)
            );
            let head = format!("{RES}{fields}\r\n");
            assert!(
                response(&framing_of(&head)),
                "{head:?}: {:?}",
                framing_of(&head)
            );
        }
        // Rule 9: the same bad values in both roles.
        for bad in [
            "+5",
            "-1",
            " 5 5",
            "5 5",
            "",
            "5, 6",
            "0x10",
            "99999999999999999999",
        ] {
            for start in [REQ, RES] {
                let head = format!("{start}Content-Length: {bad}\r\n\r\n");
                assert!(
                    matches!(framing_of(&head), Err(PeerError::BadContentLength { .. })),
                    "{head:?}: {:?}",
                    framing_of(&head)
                );
            }
        }
        // Rule 6: HTTP/1.0 with Transfer-Encoding, in both roles, with or without a length.
        for fields in [
            "Transfer-Encoding: chunked\r\n",
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        ] {
            for start in [REQ10, RES10] {
                let head = format!("{start}{fields}\r\n");
                assert_eq!(
                    framing_of(&head),
                    Err(PeerError::TransferEncodingInHttp10),
                    "{head:?}"
                );
            }
        }
        // Rule 5: responses only.
        for start in [
            "HTTP/1.1 204 No Content\r\n",
            "HTTP/1.1 304 Not Modified\r\n",
        ] {
            let head = format!("{start}Transfer-Encoding: chunked\r\n\r\n");
            assert_eq!(framing_of(&head), Ok(Empty), "{head:?}");
        }
    }

    /// Rules 1, 2 and 4 for requests: what a server must refuse.
    #[test]
    fn request_heads_the_sink_refuses() {
        type Expect = fn(&PeerError) -> bool;
        let cases: &[(&str, Expect)] = &[
            ("PUT / HTTP/1.1\r\n\r\n", |e| *e == PeerError::MissingHost),
            ("PUT / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", |e| {
                *e == PeerError::DuplicateHost
            }),
            ("PUT / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", |e| {
                *e == PeerError::DuplicateHost
            }),
            (
                "PUT / HTTP/1.1\r\nHost: h\r\nX-A: one\r\n two\r\n\r\n",
                |e| matches!(e, PeerError::ObsoleteLineFolding { excerpt } if excerpt == " two"),
            ),
            (
                "PUT / HTTP/1.1\r\nHost: h\r\nX-Bad\x01: v\r\n\r\nbody",
                |e| matches!(e, PeerError::BadHeader { excerpt } if excerpt == "X-Bad\\x01: v"),
            ),
            ("PUT / HTTP/2.0\r\nHost: h\r\n\r\n", |e| {
                *e == PeerError::UnsupportedVersion
            }),
            ("PUT /\r\n\r\n", |e| {
                matches!(e, PeerError::BadRequestLine { .. })
            }),
        ];
        for (head, expect) in cases {
            let err = parse_request_head(head.as_bytes(), &Limits::default()).unwrap_err();
            assert!(expect(&err), "{head:?}: {err:?}");
        }
        // HTTP/1.0 needs no Host.
        assert_eq!(framing_of("GET / HTTP/1.0\r\n\r\n"), Ok(BodyFraming::Empty));
    }

    /// Rule 3, the same limits in both roles.
    #[test]
    fn limits_hold_for_both_roles() {
        let limits = Limits {
            max_head_bytes: 64,
            max_headers: 2,
            ..Limits::default()
        };
        let many = "A: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        let long = format!("X: {}\r\n", "a".repeat(60));
        let req = |fields: &str| parse_request_head(format!("{REQ}{fields}").as_bytes(), &limits);
        let res =
            |fields: &str| parse_response_head(format!("{RES}{fields}").as_bytes(), false, &limits);
        assert_eq!(
            req(many).unwrap_err(),
            PeerError::TooManyHeaders { limit: 2 }
        );
        assert_eq!(
            res(many).unwrap_err(),
            PeerError::TooManyHeaders { limit: 2 }
        );
        assert_eq!(
            req(&long).unwrap_err(),
            PeerError::HeadTooLarge { limit: 64 }
        );
        assert_eq!(
            res(&long).unwrap_err(),
            PeerError::HeadTooLarge { limit: 64 }
        );
    }

    /// Rule 11, request and response side by side.
    #[test]
    fn persistence_rules_for_both_roles() {
        let cases: &[(u8, &str, bool)] = &[
            (1, "", false),
            (1, "Connection: close\r\n", true),
            (1, "Connection: keep-alive, Close\r\n", true),
            (0, "", true),
            (0, "Connection: keep-alive\r\n", false),
            (0, "Connection: Keep-Alive, close\r\n", true),
        ];
        for (minor, fields, close) in cases {
            let head = format!("PUT / HTTP/1.{minor}\r\nHost: h\r\n{fields}\r\n");
            match parse_request_head(head.as_bytes(), &Limits::default()).unwrap() {
                RequestParse::Complete { request, .. } => {
                    assert_eq!(request.wants_close(), *close, "{head:?}");
                }
                RequestParse::Partial => panic!("{head:?}"),
            }
            let head = format!("HTTP/1.{minor} 200 OK\r\n{fields}\r\n");
            match parse_response_head(head.as_bytes(), false, &Limits::default()).unwrap() {
                HeadParse::Final { head: parsed, .. } => {
                    assert_eq!(parsed.wants_close(), *close, "{head:?}");
                }
                other => panic!("{head:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn field_lines_are_name_colon_value() {
        type Split<'a> = Option<(&'a [u8], &'a [u8])>;
        let cases: &[(&[u8], Split)] = &[
            (b"X-A: 1", Some((b"X-A", b"1"))),
            (b"X-A:1 \t", Some((b"X-A", b"1"))),
            (b"X-A:", Some((b"X-A", b""))),
            (b"no colon", None),
            (b"Bad Name: v", None),
            (b": v", None),
            (b"X: a\x00b", None),
            (b"X: a\rb", None),
        ];
        for (line, split) in cases {
            assert_eq!(
                split_field_line(line),
                *split,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn unfolding_replaces_each_fold_with_one_space() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"one", b"one"),
            (b"one  two", b"one  two"),
            (b"one\r\n two", b"one two"),
            (b"one \r\n\t two\r\n three", b"one two three"),
            (b"one\n two", b"one two"),
        ];
        for (folded, unfolded) in cases {
            assert_eq!(&*unfold(folded), *unfolded, "{folded:?}");
        }
    }

    #[test]
    fn request_errors_map_to_statuses() {
        let cases = [
            (
                PeerError::UnsupportedTransferCoding {
                    value: "gzip, chunked".into(),
                },
                501,
            ),
            (PeerError::HeadTooLarge { limit: 1 }, 431),
            (PeerError::MissingHost, 400),
            (PeerError::ConflictingFraming, 400),
        ];
        for (err, status) in cases {
            assert_eq!(request_error_status(&err).0, status, "{err:?}");
        }
    }
}
