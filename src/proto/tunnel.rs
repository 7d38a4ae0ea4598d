//! The CONNECT tunnel through an HTTP proxy (RFC 9110 section 9.3.6), sans-I/O: the
//! request to write, and the proxy's answer parsed with the same response parser as any
//! other head, into the receive region of the upload's own buffer. The driver runs it
//! between the TCP connect to the proxy and the TLS handshake to the origin (or the
//! exchange, for `--proxytunnel` to an http origin).
//!
//! ```text
//! send:    CONNECT host:port HTTP/1.1 ─ Host ─ [Proxy-Authorization] ─ [proxy headers] ─ CRLF
//! receive: [interim 1xx]* ──▶ 2xx: the tunnel is open, and the proxy must say nothing more
//!                         └─▶ anything else: refused (the status, and a 407's challenge)
//! ```

use crate::buffer::{CRLF, FixedBuf};
use crate::error::{Error, Kind, ProxyRefusal, Stage};
use crate::proto::head::{DEFAULT_USER_AGENT, HeaderField};
use crate::proto::limits::Limits;
use crate::proto::peer_error::PeerError;
use crate::proto::response::{HeadParse, parse_response_head};
use crate::trace::{LineBlock, LineLabeller, Part};

/// The tunnel being set up.
#[derive(Debug, Clone)]
pub struct TunnelSetup {
    request: Vec<u8>,
    sent: usize,
    received: usize,
    /// Where the tunnel goes, `host:port`.
    to: String,
    credentials_sent: bool,
    /// Interim (1xx) answers so far: more than the limit is an error, as in an exchange.
    interim_answers: u32,
    limits: Limits,
    sent_labels: LineLabeller,
}

/// What the proxy's bytes came to.
#[derive(Debug, PartialEq, Eq)]
pub enum TunnelStep {
    /// The answer is not complete yet.
    NeedMore,
    /// The proxy answered 2xx: the connection is now a tunnel to the origin.
    Open,
}

impl TunnelSetup {
    /// A CONNECT to `authority` (`host:port`, IPv6 in brackets) with `fields` (the
    /// `Proxy-Authorization` and the caller's proxy headers) after `Host`.
    pub fn new(authority: &str, fields: &[HeaderField], limits: Limits) -> TunnelSetup {
        let mut request = Vec::with_capacity(128 + authority.len() * 2);
        for piece in [
            b"CONNECT ".as_slice(),
            authority.as_bytes(),
            b" HTTP/1.1\r\nHost: ",
            authority.as_bytes(),
            CRLF,
        ] {
            request.extend_from_slice(piece);
        }
        let has = |name: &str| fields.iter().any(|f| f.name().eq_ignore_ascii_case(name));
        if !has("user-agent") {
            request.extend_from_slice(b"User-Agent: ");
            request.extend_from_slice(DEFAULT_USER_AGENT.as_bytes());
            request.extend_from_slice(CRLF);
        }
        for field in fields
            .iter()
            .filter(|f| !f.name().eq_ignore_ascii_case("host"))
        {
            field.write_with(&mut |bytes| request.extend_from_slice(bytes));
        }
        request.extend_from_slice(CRLF);
        TunnelSetup {
            request,
            sent: 0,
            received: 0,
            to: authority.to_owned(),
            credentials_sent: has("proxy-authorization"),
            interim_answers: 0,
            limits,
            sent_labels: LineLabeller::default(),
        }
    }

    /// Where the tunnel goes, `host:port`.
    pub fn to(&self) -> &str {
        &self.to
    }

    /// The request bytes still to write; empty once all went.
    pub fn to_send(&self) -> &[u8] {
        &self.request[self.sent..]
    }

    /// `n` bytes of [`TunnelSetup::to_send`] went; `emit` sees them labelled, for the trace.
    pub fn on_sent(&mut self, n: usize, emit: &mut dyn FnMut(Part, &[u8])) {
        let block = LineBlock::Head {
            start_line: Part::RequestLine,
        };
        self.sent_labels
            .label(block, &self.request[self.sent..self.sent + n], emit);
        self.sent += n;
    }

    /// Where the proxy's next bytes go: the receive region after what came so far, grown
    /// up to the head limit when the answer is long.
    pub fn recv_space<'b>(&mut self, buf: &'b mut FixedBuf) -> Result<&'b mut [u8], Error> {
        if self.received == buf.recv_region().len() && !buf.grow_recv() {
            let too_long = PeerError::HeadTooLarge {
                limit: self.limits.max_head_bytes,
            };
            return Err(Error::new(Stage::Proxy, Kind::Peer(too_long)));
        }
        Ok(&mut buf.recv_region_mut()[self.received..])
    }

    /// `n` bytes of the proxy's answer arrived in [`TunnelSetup::recv_space`]; `emit` sees
    /// the head's lines once each head is complete.
    pub fn on_received(
        &mut self,
        buf: &mut FixedBuf,
        n: usize,
        emit: &mut dyn FnMut(Part, &[u8]),
    ) -> Result<TunnelStep, Error> {
        self.received += n;
        loop {
            let pending = &buf.recv_region()[..self.received];
            let parsed = parse_response_head(pending, false, &self.limits)
                .map_err(|e| Error::new(Stage::Proxy, Kind::Peer(e)))?;
            let (consumed, head) = match parsed {
                HeadParse::Partial => return Ok(TunnelStep::NeedMore),
                HeadParse::Interim { consumed, .. } => {
                    label(Part::InterimStatusLine, &pending[..consumed], emit);
                    // What follows the interim answer moves to the front.
                    buf.recv_region_mut()
                        .copy_within(consumed..self.received, 0);
                    self.received -= consumed;
                    self.interim_answers += 1;
                    if self.interim_answers > self.limits.max_interim_responses {
                        let endless = PeerError::TooManyInterimResponses {
                            limit: self.limits.max_interim_responses,
                        };
                        return Err(Error::new(Stage::Proxy, Kind::Peer(endless)));
                    }
                    continue;
                }
                HeadParse::Final { consumed, head, .. } => (consumed, head),
            };
            label(Part::StatusLine, &pending[..consumed], emit);
            if !head.status.is_success() {
                let challenge = (head.headers.get(http::header::PROXY_AUTHENTICATE))
                    .or_else(|| head.headers.get(http::header::WWW_AUTHENTICATE))
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                let refusal = ProxyRefusal {
                    status: head.status.as_u16(),
                    reason: head.reason.clone(),
                    to: format!("the CONNECT to {}", self.to),
                    challenge,
                    credentials_sent: self.credentials_sent,
                };
                return Err(Error::new(
                    Stage::Proxy,
                    Kind::ProxyRefused(Box::new(refusal)),
                ));
            }
            if consumed != self.received {
                return Err(Error::new(Stage::Proxy, Kind::ProxyExtraBytes));
            }
            self.received = 0;
            return Ok(TunnelStep::Open);
        }
    }

    /// The proxy closed before its answer was complete.
    pub fn on_peer_closed(&self) -> Error {
        Error::new(Stage::Proxy, Kind::ProxyClosed)
    }
}

fn label(start_line: Part, head: &[u8], emit: &mut dyn FnMut(Part, &[u8])) {
    LineLabeller::default().label(LineBlock::Head { start_line }, head, emit);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(fields: &[HeaderField]) -> (TunnelSetup, FixedBuf) {
        let tunnel = TunnelSetup::new("origin.example:443", fields, Limits::default());
        (tunnel, FixedBuf::new(16, 32, 64).growable_to(8192))
    }

    /// Feeds `answer` in pieces of `step` bytes; the outcome of the last.
    fn answer(
        tunnel: &mut TunnelSetup,
        buf: &mut FixedBuf,
        answer: &[u8],
        step: usize,
    ) -> Result<TunnelStep, Error> {
        let mut outcome = Ok(TunnelStep::NeedMore);
        for piece in answer.chunks(step) {
            let mut rest = piece;
            while !rest.is_empty() {
                let space = tunnel.recv_space(buf)?;
                let n = rest.len().min(space.len());
                space[..n].copy_from_slice(&rest[..n]);
                rest = &rest[n..];
                outcome = tunnel.on_received(buf, n, &mut |_, _| {});
                if !matches!(outcome, Ok(TunnelStep::NeedMore)) {
                    return outcome;
                }
            }
        }
        outcome
    }

    #[test]
    fn the_request_names_the_origin_and_carries_the_proxy_fields() {
        let auth = HeaderField::new("Proxy-Authorization", "Basic dTpw").unwrap();
        let extra = HeaderField::new("X-Proxy-Only", "1").unwrap();
        let (mut tunnel, _) = setup(&[auth, extra]);
        let request = String::from_utf8(tunnel.to_send().to_vec()).unwrap();
        assert_eq!(
            request,
            format!(
                "CONNECT origin.example:443 HTTP/1.1\r\nHost: origin.example:443\r\n\
                 User-Agent: {DEFAULT_USER_AGENT}\r\nProxy-Authorization: Basic dTpw\r\n\
                 X-Proxy-Only: 1\r\n\r\n"
            )
        );
        let mut parts = Vec::new();
        let len = tunnel.to_send().len();
        tunnel.on_sent(10, &mut |p, _| parts.push(p));
        tunnel.on_sent(len - 10, &mut |p, _| parts.push(p));
        assert!(tunnel.to_send().is_empty());
        assert_eq!(parts.first(), Some(&Part::RequestLine));
        assert_eq!(parts.last(), Some(&Part::EndOfHead));
    }

    #[test]
    fn a_2xx_opens_the_tunnel_even_in_pieces_and_after_interim_answers() {
        for step in [1, 3, 7, 1000] {
            let (mut tunnel, mut buf) = setup(&[]);
            let open = answer(
                &mut tunnel,
                &mut buf,
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 Connection established\r\n\r\n",
                step,
            );
            assert_eq!(open.unwrap(), TunnelStep::Open, "step {step}");
        }
    }

    #[test]
    fn endless_interim_answers_are_refused_at_the_limit_not_read_forever() {
        // The exchange refuses more than `max_interim_responses`; so does the tunnel, or a
        // proxy sending 1xx forever keeps the upload waiting (each one resets the stall).
        let limit = Limits::default().max_interim_responses as usize;
        for (count, refused) in [(limit, false), (limit + 1, true)] {
            let (mut tunnel, mut buf) = setup(&[]);
            let mut reply = b"HTTP/1.1 102 Processing\r\n\r\n".repeat(count);
            reply.extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\n");
            let outcome = answer(&mut tunnel, &mut buf, &reply, 5);
            if refused {
                let err = outcome.unwrap_err();
                assert_eq!(err.stage(), Stage::Proxy, "{err}");
                assert!(err.to_string().contains("interim"), "{err}");
            } else {
                assert_eq!(
                    outcome.unwrap(),
                    TunnelStep::Open,
                    "{count} interim answers"
                );
            }
        }
    }

    #[test]
    fn refusals_say_the_status_and_what_a_407_asked_for() {
        let (mut tunnel, mut buf) = setup(&[]);
        let err = answer(
            &mut tunnel,
            &mut buf,
            b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"corp\"\r\nContent-Length: 5\r\n\r\nnope!",
            1000,
        )
        .unwrap_err();
        assert_eq!(err.stage(), Stage::Proxy);
        assert_eq!(err.proxy_status(), Some(407));
        let text = err.to_string();
        assert!(
            text.contains("Basic realm=\"corp\"") && text.contains("no credentials were sent"),
            "{text}"
        );

        let auth = HeaderField::new("Proxy-Authorization", "Basic dTpw").unwrap();
        let (mut tunnel, mut buf) = setup(&[auth]);
        let err = answer(
            &mut tunnel,
            &mut buf,
            b"HTTP/1.1 407 No\r\nProxy-Authenticate: Basic\r\n\r\n",
            1000,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("credentials sent were refused"),
            "{err}"
        );

        for status in [403, 502] {
            let (mut tunnel, mut buf) = setup(&[]);
            let reply = format!("HTTP/1.1 {status} Refused\r\nContent-Length: 0\r\n\r\n");
            let err = answer(&mut tunnel, &mut buf, reply.as_bytes(), 1000).unwrap_err();
            assert_eq!(err.proxy_status(), Some(status));
            assert!(
                err.to_string()
                    .contains("the CONNECT to origin.example:443"),
                "{err}"
            );
        }
    }

    #[test]
    fn garbage_extra_bytes_and_a_huge_head_are_errors_at_the_proxy_stage() {
        let (mut tunnel, mut buf) = setup(&[]);
        let err = answer(&mut tunnel, &mut buf, b"SSH-2.0-OpenSSH\r\n\r\n", 1000).unwrap_err();
        assert_eq!(err.stage(), Stage::Proxy);
        let (mut tunnel, mut buf) = setup(&[]);
        let err = answer(&mut tunnel, &mut buf, b"HTTP/1.1 200 OK\r\n\r\nearly", 1000).unwrap_err();
        assert_eq!(err.stage(), Stage::Proxy);
        assert!(err.to_string().contains("bytes after its answer"), "{err}");
        let (mut tunnel, mut buf) = setup(&[]);
        let mut long = b"HTTP/1.1 200 OK\r\n".to_vec();
        while long.len() < 70_000 {
            long.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        let err = answer(&mut tunnel, &mut buf, &long, 512).unwrap_err();
        assert_eq!(err.stage(), Stage::Proxy);
        assert_eq!(tunnel.on_peer_closed().stage(), Stage::Proxy);
    }

    #[test]
    fn hostile_answers_at_every_split_end_in_an_error_or_an_open_tunnel_never_a_panic() {
        let answers: [&[u8]; 7] = [
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 407 X\r\nProxy-Authenticate: \xff\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 101 Switching\r\n\r\n",
            b"HTTP/1.1 999 Odd\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
            b"\r\n\r\n\r\n\r\n",
        ];
        for reply in answers {
            for split in 1..reply.len() {
                let (mut tunnel, mut buf) = setup(&[]);
                let (first, second) = reply.split_at(split);
                let mut outcome = answer(&mut tunnel, &mut buf, first, first.len());
                if matches!(outcome, Ok(TunnelStep::NeedMore)) {
                    outcome = answer(&mut tunnel, &mut buf, second, second.len());
                }
                let opened = matches!(outcome, Ok(TunnelStep::Open));
                // A 2xx opens the tunnel at the end of its head; bytes after it in the same
                // read are refused, bytes in a later read belong to the tunnel (RFC 9110
                // section 9.3.6: a 2xx to CONNECT has no content).
                let head_end = reply
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map(|p| p + 4);
                let may_open = reply.starts_with(b"HTTP/1.1 200") && head_end == Some(split);
                if reply == b"HTTP/1.1 200 OK\r\n\r\n" {
                    assert!(opened, "{reply:?} at {split}");
                } else if opened {
                    assert!(may_open, "{reply:?} opened at {split}");
                }
                if let Err(e) = outcome {
                    assert_eq!(e.stage(), Stage::Proxy, "{e}");
                }
            }
        }
    }
}
