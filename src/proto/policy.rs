//! The HTTP decisions between exchanges, as pure functions of what happened: whether to
//! follow a redirect and how, whether a failed attempt may be sent again, whether a 417
//! allows a retry without the expectation, and whether a connection may be kept.
//!
//! Nothing here does I/O or holds state; each rule is table-tested below.
//!
//! 1. Redirects (RFC 9110 section 15.4): 307 and 308 send the same method and body again;
//!    303 becomes GET without a body (HEAD stays HEAD); 301 and 302 become GET after a POST,
//!    as every browser and curl do, and keep any other method and its body.
//! 2. A redirect that needs the body again is followed only when the body can be sent
//!    again from its start: it can be rewound, or none of it was read yet. Otherwise the
//!    upload fails: the body never reached the new target.
//! 3. Across origins, credentials (`Authorization`, `Proxy-Authorization`, `Cookie`) and a
//!    caller's `Host` stay behind: they were given for the first origin only.
//! 4. A failed attempt is sent again automatically only when a *reused* connection failed
//!    before any response byte (the server may have closed it while it sat idle), the body
//!    can be sent again, and either the method is idempotent or the request was not yet
//!    sent whole (RFC 9110 section 9.2.2). A fresh connection is never retried: the server
//!    may have processed what it read.
//! 5. A 417 to `Expect: 100-continue` is retried once without the expectation when the body
//!    can be sent again (RFC 9110 section 10.1.1).
//! 6. A connection is kept only when its response was read to the end, the exchange says
//!    both sides may keep it, and the peer has not closed it.
//! 7. A final response that comes before the body is complete stops the body when it is
//!    300 or above: the server refused, redirected or failed, and more bytes would only be
//!    thrown away (curl does the same). A 2xx does not: the server accepted the request and
//!    may still read the body, so it goes on to its end, and the response counts only once
//!    it has; if the server stops reading, the upload failed.
//! 8. A 407 to a request sent to a proxy in absolute form is the proxy refusing to carry
//!    it (RFC 9110 section 15.5.8: only a proxy sends 407), so the upload failed at the
//!    proxy: the body never reached the origin, and the proxy's page is not the origin's
//!    answer. Any other status in absolute form is the origin's (relayed by the proxy) or
//!    the proxy's own failure to reach it (502, 504), and is delivered as a response.

/// Methods whose effect does not depend on how many times they are sent (RFC 9110 9.2.2).
pub fn is_idempotent(method: &str) -> bool {
    ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]
        .iter()
        .any(|m| m.eq_ignore_ascii_case(method))
}

/// The status codes that redirect (RFC 9110 section 15.4).
pub fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// The request a redirect asks for, by rule 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirected {
    /// The method of the next request.
    pub method: String,
    /// True when the next request carries the same body again.
    pub keeps_body: bool,
}

/// Rule 1: the method and body of the request that follows a `status` redirect of a
/// `method` request that had a body (`had_body`). `None` if `status` does not redirect.
pub fn redirected_request(status: u16, method: &str, had_body: bool) -> Option<Redirected> {
    let becomes_get = match status {
        303 => !method.eq_ignore_ascii_case("HEAD"),
        301 | 302 => method.eq_ignore_ascii_case("POST"),
        307 | 308 => false,
        _ => return None,
    };
    Some(if becomes_get {
        Redirected {
            method: "GET".to_owned(),
            keeps_body: false,
        }
    } else {
        Redirected {
            method: method.to_owned(),
            keeps_body: had_body && status != 303,
        }
    })
}

/// What the client knows about the body when it decides on a resend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyState {
    /// The body can be rewound to its start (a file, a cursor).
    pub rewindable: bool,
    /// Body bytes already taken from the source.
    pub bytes_read: u64,
}

impl BodyState {
    /// Rule 2: the body can be sent again from its start.
    pub fn can_resend(self) -> bool {
        self.rewindable || self.bytes_read == 0
    }
}

/// What to do with a final response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterResponse {
    /// Give it to the caller.
    Deliver,
    /// Send the same request again without `Expect: 100-continue` (rule 5).
    RetryWithoutExpect,
    /// Follow the redirect to `location` with this request (rule 1).
    Follow(Redirected),
    /// The redirect needs the body again and it cannot be sent again (rule 2).
    BodyNotResendable,
    /// More redirects than allowed.
    TooManyRedirects,
}

/// The facts a decision on a final response depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseFacts<'a> {
    /// The final status.
    pub status: u16,
    /// The method of the request it answers.
    pub method: &'a str,
    /// The request had a body.
    pub had_body: bool,
    /// The body and where it stands.
    pub body: BodyState,
    /// The request asked for `100 Continue`.
    pub expected_continue: bool,
    /// The response carries a `Location`.
    pub has_location: bool,
    /// Redirects to follow: `None` returns them to the caller.
    pub max_redirects: Option<u32>,
    /// Redirects followed so far.
    pub redirects: u32,
}

/// Rules 1, 2 and 5 for a final response.
pub fn after_response(facts: &ResponseFacts<'_>) -> AfterResponse {
    let can_resend = facts.body.can_resend();
    if facts.status == 417 && facts.expected_continue && (!facts.had_body || can_resend) {
        return AfterResponse::RetryWithoutExpect;
    }
    let (Some(max), true) = (facts.max_redirects, facts.has_location) else {
        return AfterResponse::Deliver;
    };
    let Some(next) = redirected_request(facts.status, facts.method, facts.had_body) else {
        return AfterResponse::Deliver;
    };
    if facts.redirects >= max {
        return AfterResponse::TooManyRedirects;
    }
    if next.keeps_body && !can_resend {
        return AfterResponse::BodyNotResendable;
    }
    AfterResponse::Follow(next)
}

/// Fields given for one origin only (rule 3), compared case-insensitively.
pub const ORIGIN_BOUND_FIELDS: [&str; 4] =
    ["authorization", "proxy-authorization", "cookie", "host"];

/// Rule 3: true when a field named `name` may go with a request to another origin.
pub fn crosses_origins(name: &str) -> bool {
    !ORIGIN_BOUND_FIELDS
        .iter()
        .any(|f| f.eq_ignore_ascii_case(name))
}

/// What the client knows about an attempt that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailedAttempt<'a> {
    /// The method of the request.
    pub method: &'a str,
    /// The connection carried an earlier exchange (keep-alive).
    pub connection_reused: bool,
    /// Response bytes received before the failure.
    pub response_bytes: u64,
    /// The whole request, last chunk included, went out before the failure.
    pub request_complete: bool,
    /// The failure is the connection closing or resetting (not a timeout or a bad reply).
    pub connection_lost: bool,
    /// The body and where it stands (`None`: the request had no body).
    pub body: Option<BodyState>,
    /// This request was already sent again once.
    pub already_retried: bool,
}

/// Rule 4: whether the failed attempt may be sent again on a new connection.
pub fn may_retry(attempt: &FailedAttempt<'_>) -> bool {
    attempt.connection_reused
        && attempt.connection_lost
        && attempt.response_bytes == 0
        && !attempt.already_retried
        && attempt.body.is_none_or(BodyState::can_resend)
        && (is_idempotent(attempt.method) || !attempt.request_complete)
}

/// Rule 6: whether a connection may carry another exchange.
pub fn may_keep(body_read_to_end: bool, exchange_reusable: bool, peer_closed: bool) -> bool {
    body_read_to_end && exchange_reusable && !peer_closed
}

/// Rule 7: whether the body goes on after a final response with `status` came early.
pub fn keeps_sending_after_early_answer(status: u16) -> bool {
    (200..300).contains(&status)
}

/// Rule 8: whether a final response with `status` is the proxy refusing a request sent
/// to it in absolute form (`via_forward_proxy`) rather than an answer to deliver.
pub fn is_proxy_refusal(status: u16, via_forward_proxy: bool) -> bool {
    via_forward_proxy && status == 407
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_407_in_absolute_form_is_the_proxys_refusal() {
        for (status, via_forward_proxy, refusal) in [
            (407, true, true),
            // Direct or through a tunnel, a 407 is the origin's odd answer.
            (407, false, false),
            (401, true, false),
            (403, true, false),
            (502, true, false),
            (200, true, false),
            (307, true, false),
        ] {
            assert_eq!(
                is_proxy_refusal(status, via_forward_proxy),
                refusal,
                "{status} {via_forward_proxy}"
            );
        }
    }

    #[test]
    fn the_body_goes_on_only_after_an_early_2xx() {
        for (status, goes_on) in [
            (200, true),
            (201, true),
            (204, true),
            (299, true),
            (300, false),
            (303, false),
            (307, false),
            (401, false),
            (413, false),
            (417, false),
            (500, false),
            (503, false),
        ] {
            assert_eq!(
                keeps_sending_after_early_answer(status),
                goes_on,
                "{status}"
            );
        }
    }

    #[test]
    fn redirect_methods_and_bodies() {
        // (status, method, had_body) -> (method, keeps_body)
        let cases = [
            (307, "POST", true, Some(("POST", true))),
            (308, "PUT", true, Some(("PUT", true))),
            (303, "PUT", true, Some(("GET", false))),
            (303, "HEAD", false, Some(("HEAD", false))),
            (301, "POST", true, Some(("GET", false))),
            (302, "POST", true, Some(("GET", false))),
            (302, "PUT", true, Some(("PUT", true))),
            (301, "GET", false, Some(("GET", false))),
            (307, "GET", false, Some(("GET", false))),
            (200, "PUT", true, None),
            (304, "PUT", true, None),
            (300, "PUT", true, None),
        ];
        for (status, method, had_body, expected) in cases {
            let got = redirected_request(status, method, had_body);
            let got = got.as_ref().map(|r| (r.method.as_str(), r.keeps_body));
            assert_eq!(got, expected, "{status} after {method}");
        }
    }

    fn facts(status: u16, body: BodyState) -> ResponseFacts<'static> {
        ResponseFacts {
            status,
            method: "PUT",
            had_body: true,
            body,
            expected_continue: false,
            has_location: true,
            max_redirects: Some(5),
            redirects: 0,
        }
    }

    const FILE: BodyState = BodyState {
        rewindable: true,
        bytes_read: 100,
    };
    const STREAM_SENT: BodyState = BodyState {
        rewindable: false,
        bytes_read: 100,
    };
    const STREAM_UNREAD: BodyState = BodyState {
        rewindable: false,
        bytes_read: 0,
    };

    #[test]
    fn what_follows_a_final_response() {
        use AfterResponse::*;
        let follow = |m: &str, b| {
            Follow(Redirected {
                method: m.into(),
                keeps_body: b,
            })
        };
        let cases: Vec<(ResponseFacts<'_>, AfterResponse)> = vec![
            (facts(200, FILE), Deliver),
            (facts(307, FILE), follow("PUT", true)),
            (facts(307, STREAM_SENT), BodyNotResendable),
            // 100-continue held the body back: nothing of the stream is gone yet.
            (facts(307, STREAM_UNREAD), follow("PUT", true)),
            // 303 drops the body, so a stream does not matter.
            (facts(303, STREAM_SENT), follow("GET", false)),
            (
                ResponseFacts {
                    has_location: false,
                    ..facts(307, STREAM_SENT)
                },
                Deliver,
            ),
            (
                ResponseFacts {
                    max_redirects: None,
                    ..facts(308, STREAM_SENT)
                },
                Deliver,
            ),
            (
                ResponseFacts {
                    max_redirects: Some(0),
                    ..facts(302, FILE)
                },
                TooManyRedirects,
            ),
            (
                ResponseFacts {
                    redirects: 5,
                    ..facts(301, FILE)
                },
                TooManyRedirects,
            ),
            (
                ResponseFacts {
                    expected_continue: true,
                    ..facts(417, FILE)
                },
                RetryWithoutExpect,
            ),
            (
                ResponseFacts {
                    expected_continue: true,
                    ..facts(417, STREAM_SENT)
                },
                Deliver,
            ),
            (facts(417, FILE), Deliver),
        ];
        for (facts, expected) in cases {
            assert_eq!(after_response(&facts), expected, "{facts:?}");
        }
    }

    #[test]
    fn origin_bound_fields_stay_behind() {
        for (name, crosses) in [
            ("Authorization", false),
            ("COOKIE", false),
            ("proxy-authorization", false),
            ("Host", false),
            ("X-Keep", true),
            ("Content-Type", true),
            ("Authorization-Extra", true),
        ] {
            assert_eq!(crosses_origins(name), crosses, "{name}");
        }
    }

    fn failed(method: &'static str) -> FailedAttempt<'static> {
        FailedAttempt {
            method,
            connection_reused: true,
            response_bytes: 0,
            request_complete: true,
            connection_lost: true,
            body: Some(FILE),
            already_retried: false,
        }
    }

    #[test]
    fn retry_only_a_reused_connection_that_died_before_answering() {
        let cases: Vec<(FailedAttempt<'_>, bool)> = vec![
            (failed("PUT"), true),
            (failed("GET"), true),
            // The server may have processed a whole POST: never send it twice.
            (failed("POST"), false),
            (
                FailedAttempt {
                    request_complete: false,
                    ..failed("POST")
                },
                true,
            ),
            // A fresh connection is never retried, whatever the method.
            (
                FailedAttempt {
                    connection_reused: false,
                    ..failed("PUT")
                },
                false,
            ),
            (
                FailedAttempt {
                    response_bytes: 1,
                    ..failed("PUT")
                },
                false,
            ),
            (
                FailedAttempt {
                    connection_lost: false,
                    ..failed("PUT")
                },
                false,
            ),
            (
                FailedAttempt {
                    already_retried: true,
                    ..failed("PUT")
                },
                false,
            ),
            (
                FailedAttempt {
                    body: Some(STREAM_SENT),
                    ..failed("PUT")
                },
                false,
            ),
            (
                FailedAttempt {
                    body: None,
                    ..failed("GET")
                },
                true,
            ),
        ];
        for (attempt, expected) in cases {
            assert_eq!(may_retry(&attempt), expected, "{attempt:?}");
        }
    }

    #[test]
    fn idempotent_methods() {
        for (method, idempotent) in [
            ("PUT", true),
            ("put", true),
            ("DELETE", true),
            ("GET", true),
            ("POST", false),
            ("PATCH", false),
            ("CONNECT", false),
        ] {
            assert_eq!(is_idempotent(method), idempotent, "{method}");
        }
    }

    #[test]
    fn keep_only_clean_connections() {
        for (read_to_end, reusable, closed, keep) in [
            (true, true, false, true),
            (false, true, false, false),
            (true, false, false, false),
            (true, true, true, false),
        ] {
            assert_eq!(may_keep(read_to_end, reusable, closed), keep);
        }
    }
}
