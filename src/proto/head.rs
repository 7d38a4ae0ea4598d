//! The request head: validated fields, and the writer that puts them into a caller's slice.
//!
//! RFC 9112 sections 3 and 5:
//!
//! ```text
//! request-line = method SP request-target SP HTTP-version
//! field-line   = field-name ":" OWS field-value OWS
//! ```
//!
//! Every name and value is checked when it is added (the `http` crate's token and
//! field-value rules: no CR, LF, NUL or other control characters), so the writer can only
//! ever emit a valid head. The names keep the caller's spelling on the wire.

use std::ops::Range;

use crate::buffer::CRLF;
use crate::error::RequestError;
use crate::target::Target;

/// The `User-Agent` sent unless the caller sets one.
pub const DEFAULT_USER_AGENT: &str = concat!("chunkwire/", env!("CARGO_PKG_VERSION"));

/// Fields chunkwire decides from the framing and the options; a caller who set them would
/// contradict what goes on the wire (`Expect` is the expect-continue option).
const RESERVED_FIELDS: [&str; 3] = ["content-length", "transfer-encoding", "expect"];

/// Fields that must not be sent as trailers (RFC 9110 section 6.5.1): framing, routing,
/// request modifiers, authentication, and the content's own metadata, all of which a
/// recipient needs before the body or would be misled by afterwards.
const FORBIDDEN_TRAILERS: [&str; 25] = [
    "authorization",
    "cache-control",
    "connection",
    "content-encoding",
    "content-length",
    "content-range",
    "content-type",
    "cookie",
    "expect",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "keep-alive",
    "max-forwards",
    "pragma",
    "proxy-authorization",
    "range",
    "set-cookie",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// True for a field name that must not be a trailer.
pub fn is_forbidden_trailer(name: &str) -> bool {
    FORBIDDEN_TRAILERS
        .iter()
        .any(|f| name.eq_ignore_ascii_case(f))
}

/// A header (or trailer) field whose name and value have been validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField {
    name: String,
    value: Vec<u8>,
}

impl HeaderField {
    /// Validates a field; surrounding whitespace of the value is not part of it (OWS).
    pub fn new(name: &str, value: impl AsRef<[u8]>) -> Result<Self, RequestError> {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(RequestError::InvalidHeaderName(name.to_owned()));
        }
        let value = value.as_ref().trim_ascii();
        if http::HeaderValue::from_bytes(value).is_err() {
            return Err(RequestError::InvalidHeaderValue {
                name: name.to_owned(),
            });
        }
        Ok(HeaderField {
            name: name.to_owned(),
            value: value.to_vec(),
        })
    }

    /// Validates a trailer field: a valid field whose name may follow the body.
    pub fn trailer(name: &str, value: impl AsRef<[u8]>) -> Result<Self, RequestError> {
        if is_forbidden_trailer(name) {
            return Err(RequestError::ForbiddenTrailer(name.to_owned()));
        }
        HeaderField::new(name, value)
    }

    /// Parses a `Name: value` line as given on a command line.
    pub fn parse_line(line: &str) -> Result<Self, RequestError> {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| RequestError::MalformedHeaderLine(line.to_owned()))?;
        HeaderField::new(name, value)
    }

    /// The name, as the caller spelled it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// Bytes of `Name: value\r\n`.
    pub fn encoded_len(&self) -> usize {
        self.name.len() + 2 + self.value.len() + CRLF.len()
    }

    pub(crate) fn write_with(&self, put: &mut impl FnMut(&[u8])) {
        put(self.name.as_bytes());
        put(b": ");
        put(&self.value);
        put(CRLF);
    }

    fn is(&self, lower_name: &str) -> bool {
        self.name.eq_ignore_ascii_case(lower_name)
    }
}

/// How the body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// `Transfer-Encoding: chunked`: the length need not be known.
    Chunked,
    /// `Content-Length: n`: exactly `n` bytes follow the head.
    Length(u64),
    /// No body and no framing field: a GET after a 303 redirect.
    None,
}

impl BodyFraming {
    /// True when no body bytes follow the head.
    pub fn is_empty(self) -> bool {
        matches!(self, BodyFraming::Length(0) | BodyFraming::None)
    }
}

/// A request head ready to be written: method, target and validated fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    method: String,
    request_target: String,
    host: String,
    fields: Vec<HeaderField>,
    framing: BodyFraming,
    expect_continue: bool,
}

impl RequestHead {
    /// A head for `method` on `target`, with `Host` and `User-Agent` and chunked framing.
    pub fn new(method: &str, target: &Target) -> Result<Self, RequestError> {
        if http::Method::from_bytes(method.as_bytes()).is_err() {
            return Err(RequestError::InvalidMethod(method.to_owned()));
        }
        Ok(RequestHead {
            method: method.to_owned(),
            request_target: target.request_target.clone(),
            host: target.host_header.clone(),
            fields: Vec::new(),
            framing: BodyFraming::Chunked,
            expect_continue: false,
        })
    }

    /// Adds a field. `Host` and `User-Agent` replace the defaults; `Content-Length` and
    /// `Transfer-Encoding` are refused, since the framing sets them, except
    /// `Transfer-Encoding: chunked` while the framing is chunked: that is what will be sent
    /// anyway (curl's idiom for a chunked upload, `-H 'Transfer-Encoding: chunked'`), so
    /// it is accepted and adds nothing.
    pub fn push(&mut self, field: HeaderField) -> Result<(), RequestError> {
        if field.is("transfer-encoding")
            && field.value.eq_ignore_ascii_case(b"chunked")
            && self.framing == BodyFraming::Chunked
        {
            return Ok(());
        }
        if RESERVED_FIELDS.iter().any(|reserved| field.is(reserved)) {
            return Err(RequestError::ReservedHeader(field.name));
        }
        // RFC 9112 section 3.2: a server must reject a request with two Host fields; and
        // the writer sends only one, so a second would be silently lost.
        if field.is("host") && self.has("host") {
            return Err(RequestError::DuplicateHeader(field.name));
        }
        self.fields.push(field);
        Ok(())
    }

    /// Sends the request-target in absolute form (`http://host:port/path`, RFC 9112
    /// section 3.2.2), as a request to a forward proxy must be; `Host` stays the origin's.
    pub fn set_absolute_form(&mut self, target: &Target) {
        self.request_target = format!(
            "{}://{}{}",
            target.scheme.as_str(),
            target.host_header,
            target.request_target
        );
    }

    /// Removes every field named `lower_name` (lower case), as for a field that must not
    /// reach this recipient (`Proxy-Authorization` inside a tunnel).
    pub fn remove_fields(&mut self, lower_name: &str) {
        self.fields.retain(|f| !f.is(lower_name));
    }

    /// Sets how the body is framed. A `Transfer-Encoding: chunked` given to
    /// [`RequestHead::push`] before was taken as chunked framing's own field: with another
    /// framing it is not sent (`Upload` refuses that pair before it gets here).
    pub fn set_framing(&mut self, framing: BodyFraming) {
        self.framing = framing;
    }

    /// Sends `Expect: 100-continue`, so the body waits for the server's go-ahead.
    pub fn set_expect_continue(&mut self, expect: bool) {
        self.expect_continue = expect;
    }

    /// True when the head asks for `100 Continue` before the body.
    pub fn expects_continue(&self) -> bool {
        self.expect_continue
    }

    /// The body framing.
    pub fn framing(&self) -> BodyFraming {
        self.framing
    }

    /// The method.
    pub fn method(&self) -> &str {
        &self.method
    }

    fn has(&self, lower_name: &str) -> bool {
        self.fields.iter().any(|f| f.is(lower_name))
    }

    /// Calls `put` with each piece of the head, in wire order.
    fn emit(&self, put: &mut impl FnMut(&[u8])) {
        put(self.method.as_bytes());
        put(b" ");
        put(self.request_target.as_bytes());
        put(b" HTTP/1.1\r\n");
        // RFC 9110 section 7.2: Host goes first. A caller's Host replaces ours in that place.
        match self.fields.iter().find(|f| f.is("host")) {
            Some(host) => host.write_with(put),
            None => {
                put(b"Host: ");
                put(self.host.as_bytes());
                put(CRLF);
            }
        }
        if !self.has("user-agent") {
            put(b"User-Agent: ");
            put(DEFAULT_USER_AGENT.as_bytes());
            put(CRLF);
        }
        for field in self.fields.iter().filter(|f| !f.is("host")) {
            field.write_with(put);
        }
        if self.expect_continue && !self.framing.is_empty() {
            put(b"Expect: 100-continue\r\n");
        }
        match self.framing {
            BodyFraming::Chunked => put(b"Transfer-Encoding: chunked\r\n"),
            BodyFraming::Length(len) => {
                put(b"Content-Length: ");
                let mut digits = [0u8; 20];
                put(format_decimal(len, &mut digits));
                put(CRLF);
            }
            BodyFraming::None => {}
        }
        put(CRLF);
    }

    /// Bytes the head takes on the wire.
    pub fn encoded_len(&self) -> usize {
        let mut len = 0;
        self.emit(&mut |bytes| len += bytes.len());
        len
    }

    /// Writes the head at the start of `out`. Returns the range written, or
    /// `Err(required)` with the size needed when `out` is too small (nothing is written then).
    pub fn write_to(&self, out: &mut [u8]) -> Result<Range<usize>, usize> {
        let required = self.encoded_len();
        if out.len() < required {
            return Err(required);
        }
        let mut at = 0;
        self.emit(&mut |bytes| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        });
        Ok(0..at)
    }
}

/// Formats `value` in decimal into `digits` without allocating; returns the digits used.
fn format_decimal(mut value: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &digits[start..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(url: &str) -> RequestHead {
        RequestHead::new("PUT", &Target::parse(url).unwrap()).unwrap()
    }

    fn written(head: &RequestHead) -> String {
        let mut out = vec![0; head.encoded_len()];
        let range = head.write_to(&mut out).unwrap();
        assert_eq!(range.len(), out.len());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn default_chunked_head_is_exact() {
        let mut h = head("http://example.com:8080/up?x=1");
        h.push(HeaderField::new("X-Trace", " abc ").unwrap())
            .unwrap();
        assert_eq!(
            written(&h),
            format!(
                "PUT /up?x=1 HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: {DEFAULT_USER_AGENT}\r\n\
                 X-Trace: abc\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
        );
    }

    #[test]
    fn content_length_and_overrides() {
        let mut h = RequestHead::new("POST", &Target::parse("http://[::1]/").unwrap()).unwrap();
        h.push(HeaderField::new("user-agent", "me/1").unwrap())
            .unwrap();
        h.push(HeaderField::new("Host", "virtual.example").unwrap())
            .unwrap();
        h.set_framing(BodyFraming::Length(u64::MAX));
        assert_eq!(
            written(&h),
            "POST / HTTP/1.1\r\nHost: virtual.example\r\nuser-agent: me/1\r\n\
             Content-Length: 18446744073709551615\r\n\r\n"
        );
        h.set_framing(BodyFraming::Length(0));
        assert!(written(&h).contains("Content-Length: 0\r\n"));
    }

    #[test]
    fn refuses_bad_fields_and_methods() {
        for (name, value) in [
            ("X-A", "a\r\nInjected: 1"),
            ("X-A", "a\nb"),
            ("X-A", "a\0b"),
            ("X-A", "a\x7fb"),
        ] {
            assert_eq!(
                HeaderField::new(name, value),
                Err(RequestError::InvalidHeaderValue { name: name.into() }),
                "{value:?}"
            );
        }
        for name in ["", "X A", "X:A", "X\r\n", "Ä"] {
            assert_eq!(
                HeaderField::new(name, "v"),
                Err(RequestError::InvalidHeaderName(name.into()))
            );
        }
        let target = Target::parse("http://h/").unwrap();
        for method in ["", "P T", "PUT\r\n", "GET/"] {
            assert!(RequestHead::new(method, &target).is_err(), "{method:?}");
        }
        let mut h = head("http://h/");
        for name in ["Content-Length", "transfer-encoding"] {
            assert_eq!(
                h.push(HeaderField::new(name, "1").unwrap()),
                Err(RequestError::ReservedHeader(name.into()))
            );
        }
        h.push(HeaderField::new("Host", "a").unwrap()).unwrap();
        assert_eq!(
            h.push(HeaderField::new("host", "b").unwrap()),
            Err(RequestError::DuplicateHeader("host".into()))
        );
        for name in ["Content-Length", "authorization", "Host", "Trailer"] {
            assert_eq!(
                HeaderField::trailer(name, "x"),
                Err(RequestError::ForbiddenTrailer(name.into()))
            );
        }
        assert!(HeaderField::trailer("Content-Digest", "sha-256=:x:").is_ok());
        assert!(matches!(
            HeaderField::parse_line("no colon"),
            Err(RequestError::MalformedHeaderLine(_))
        ));
        assert_eq!(
            HeaderField::parse_line("Accept:  */* ").unwrap().value(),
            b"*/*"
        );
    }

    #[test]
    fn transfer_encoding_chunked_is_accepted_only_as_what_is_sent() {
        let chunked = written(&head("http://h/"));
        for value in ["chunked", "Chunked", " CHUNKED "] {
            let mut h = head("http://h/");
            h.push(HeaderField::new("Transfer-Encoding", value).unwrap())
                .unwrap();
            h.push(HeaderField::new("transfer-encoding", value).unwrap())
                .unwrap();
            assert_eq!(written(&h), chunked, "{value:?} adds nothing");
        }
        for value in ["gzip", "gzip, chunked", "chunked, gzip", "identity", ""] {
            let mut h = head("http://h/");
            assert_eq!(
                h.push(HeaderField::new("Transfer-Encoding", value).unwrap()),
                Err(RequestError::ReservedHeader("Transfer-Encoding".into())),
                "{value:?}"
            );
        }
        // Framed by length (or without a body), chunked would contradict the head.
        for framing in [BodyFraming::Length(3), BodyFraming::None] {
            let mut h = head("http://h/");
            h.set_framing(framing);
            assert_eq!(
                h.push(HeaderField::new("Transfer-Encoding", "chunked").unwrap()),
                Err(RequestError::ReservedHeader("Transfer-Encoding".into())),
                "{framing:?}"
            );
        }
    }

    #[test]
    fn absolute_form_keeps_the_origins_host() {
        let target = Target::parse("http://origin.example:8080/up?x=1").unwrap();
        let mut h = RequestHead::new("PUT", &target).unwrap();
        h.set_absolute_form(&target);
        let text = written(&h);
        assert!(
            text.starts_with(
                "PUT http://origin.example:8080/up?x=1 HTTP/1.1\r\nHost: origin.example:8080\r\n"
            ),
            "{text}"
        );
        h.push(HeaderField::new("Proxy-Authorization", "Basic eA==").unwrap())
            .unwrap();
        h.remove_fields("proxy-authorization");
        assert!(!written(&h).contains("Proxy-Authorization"));
        let v6 = Target::parse("http://[::1]/").unwrap();
        let mut h = RequestHead::new("PUT", &v6).unwrap();
        h.set_absolute_form(&v6);
        assert!(written(&h).starts_with("PUT http://[::1]/ HTTP/1.1\r\n"));
    }

    #[test]
    fn too_small_names_the_size_needed() {
        let h = head("http://h/");
        let mut out = [0u8; 10];
        assert_eq!(h.write_to(&mut out), Err(h.encoded_len()));
        assert_eq!(out, [0u8; 10], "nothing is written on overflow");
    }
}
