//! What an upload took, in the terms of curl's `--write-out`: how long each stage took
//! from the start ([`Timings`]), how many connections and redirects, how many bytes of
//! request head and of upload, where it went ([`Transfer`]).
//!
//! The machine records the instant of each stage from the `now` values it is passed
//! ([`crate::proto::conn::Stages`]); this module only adds them up over the attempts of an
//! upload (redirects, a retry), as curl does.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::driver::Driven;
use crate::proto::conn::Stages;
use crate::proto::exchange::Exchange;
use crate::target::Target;

/// The time from the start of an upload to the end of each of its stages, as curl's
/// `time_*` variables measure it. A stage the upload did not reach is zero (an http upload
/// has no TLS handshake: `appconnect` is zero, as in curl). When a redirect is followed,
/// the times of each request are added together, as curl adds them; `total` is the whole
/// upload's, from its start to its end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// Name resolution done (`time_namelookup`).
    pub namelookup: Duration,
    /// TCP connection open (`time_connect`).
    pub connect: Duration,
    /// TLS handshake done (`time_appconnect`); zero for http.
    pub appconnect: Duration,
    /// The request about to be sent (`time_pretransfer`).
    pub pretransfer: Duration,
    /// The first response byte arrived (`time_starttransfer`).
    pub starttransfer: Duration,
    /// The whole upload, its response read to the end, or to where it failed (`time_total`).
    pub total: Duration,
}

impl Timings {
    /// One attempt's times, each from the attempt's start; `total` up to `end`.
    fn of_attempt(stages: &Stages, end: Instant) -> Timings {
        let since = |at: Option<Instant>| {
            at.map_or(Duration::ZERO, |at| {
                at.saturating_duration_since(stages.started)
            })
        };
        Timings {
            namelookup: since(stages.resolved),
            connect: since(stages.connected),
            appconnect: since(stages.tls_done),
            pretransfer: since(stages.request_started),
            starttransfer: since(stages.first_byte),
            total: end.saturating_duration_since(stages.started),
        }
    }

    /// The stage times of `other` added to these (`total` is left alone).
    fn add_stages(&mut self, other: &Timings) {
        self.namelookup += other.namelookup;
        self.connect += other.connect;
        self.appconnect += other.appconnect;
        self.pretransfer += other.pretransfer;
        self.starttransfer += other.starttransfer;
    }
}

/// What an upload took, as curl's `--write-out` reports it. Given by
/// [`crate::Response::transfer`], [`crate::Completed::transfer`] and, for an upload that
/// failed, [`crate::Error::transfer`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transfer {
    /// How long each stage took from the start.
    pub timings: Timings,
    /// Redirects followed (`num_redirects`).
    pub redirects: u32,
    /// New connections opened, kept ones not counted (`num_connects`).
    pub new_connections: u32,
    /// Bytes of request heads sent, every attempt's (`size_request`).
    pub request_bytes: u64,
    /// Bytes the last attempt sent after its head (`size_upload`): the body, with its chunk
    /// framing when it went chunked, as curl counts it.
    pub upload_bytes: u64,
    /// The URL of the last request (`url_effective`), without the credentials it had.
    pub url: String,
    /// The address the last request went to (`remote_ip`, `remote_port`), once connected.
    pub remote_addr: Option<SocketAddr>,
    /// The status of the last response received, if one came (`http_code`, which curl
    /// writes `000` without one).
    pub status: Option<u16>,
}

/// One attempt, as far as it got: what it adds to its upload's [`Transfer`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempt {
    stages: Stages,
    new_connection: bool,
    head_bytes: u64,
    upload_bytes: u64,
    remote_addr: Option<SocketAddr>,
}

impl Attempt {
    /// The attempt on `driven`; `reused` when it went over a kept connection.
    pub(crate) fn of(driven: &Driven, reused: bool) -> Attempt {
        let machine = driven.machine();
        let stages = machine.stages();
        let sent = machine.progress().wire_bytes_sent;
        let head_len = machine.exchange().map_or(0, Exchange::head_len);
        let head_bytes = sent.min(head_len);
        Attempt {
            stages,
            new_connection: !reused && stages.connected.is_some(),
            head_bytes,
            upload_bytes: sent - head_bytes,
            remote_addr: driven.remote(),
        }
    }

    /// When it ended, as far as its machine saw: the end of its response, else its
    /// latest stage.
    pub(crate) fn ended_at(&self) -> Instant {
        last_stage(&self.stages)
    }
}

/// The attempts of an upload that are over, added up.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Earlier {
    timings: Timings,
    new_connections: u32,
    request_bytes: u64,
}

impl Earlier {
    /// Adds an attempt that ended at `end` (a redirect followed, a retry).
    pub(crate) fn add(&mut self, attempt: &Attempt, end: Instant) {
        self.timings
            .add_stages(&Timings::of_attempt(&attempt.stages, end));
        self.new_connections += u32::from(attempt.new_connection);
        self.request_bytes += attempt.head_bytes;
    }

    /// The whole upload's transfer: the attempts before, the `last` one (if it got as far
    /// as a connection), the upload's `started` instant and its `end`.
    pub(crate) fn transfer(
        &self,
        last: Option<&Attempt>,
        target: &Target,
        (redirects, status): (u32, Option<u16>),
        started: Instant,
        end: Instant,
    ) -> Transfer {
        let mut timings = self.timings;
        let mut transfer = Transfer {
            timings,
            redirects,
            new_connections: self.new_connections,
            request_bytes: self.request_bytes,
            upload_bytes: 0,
            url: url_of(target),
            remote_addr: None,
            status,
        };
        if let Some(last) = last {
            timings.add_stages(&Timings::of_attempt(&last.stages, end));
            transfer.new_connections += u32::from(last.new_connection);
            transfer.request_bytes += last.head_bytes;
            transfer.upload_bytes = last.upload_bytes;
            transfer.remote_addr = last.remote_addr;
        }
        timings.total = end.saturating_duration_since(started);
        transfer.timings = timings;
        transfer
    }
}

/// The latest instant among `stages`.
fn last_stage(stages: &Stages) -> Instant {
    [
        stages.resolved,
        stages.connected,
        stages.tls_done,
        stages.request_started,
        stages.first_byte,
        stages.ended,
    ]
    .into_iter()
    .flatten()
    .fold(stages.started, Instant::max)
}

/// `scheme://host[:port]/path?query` of `target`; credentials are never shown.
fn url_of(target: &Target) -> String {
    format!(
        "{}://{}{}",
        target.scheme.as_str(),
        target.host_header,
        target.request_target
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_not_reached_are_zero_and_redirects_add_up() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut first = Stages {
            started: t0,
            resolved: Some(ms(1)),
            connected: Some(ms(3)),
            tls_done: None,
            request_started: Some(ms(3)),
            first_byte: Some(ms(10)),
            ended: None,
        };
        let attempt = Attempt {
            stages: first,
            new_connection: true,
            head_bytes: 100,
            upload_bytes: 5,
            remote_addr: None,
        };
        let mut earlier = Earlier::default();
        earlier.add(&attempt, ms(11));
        first.started = ms(11);
        first.resolved = Some(ms(11));
        first.connected = Some(ms(11));
        first.request_started = Some(ms(11));
        first.first_byte = Some(ms(15));
        let second = Attempt {
            stages: first,
            new_connection: false,
            head_bytes: 90,
            upload_bytes: 7,
            remote_addr: None,
        };
        let target = Target::parse("http://u:secret@h:8080/p?q").unwrap();
        let transfer = earlier.transfer(Some(&second), &target, (1, Some(200)), t0, ms(20));
        let t = transfer.timings;
        assert_eq!(t.namelookup, Duration::from_millis(1));
        assert_eq!(t.connect, Duration::from_millis(3));
        assert_eq!(t.appconnect, Duration::ZERO);
        assert_eq!(t.pretransfer, Duration::from_millis(3));
        assert_eq!(t.starttransfer, Duration::from_millis(14));
        assert_eq!(t.total, Duration::from_millis(20));
        assert_eq!(transfer.new_connections, 1);
        assert_eq!(transfer.request_bytes, 190);
        assert_eq!(transfer.upload_bytes, 7);
        assert_eq!(transfer.url, "http://h:8080/p?q");
        assert_eq!(last_stage(&first), ms(15));
    }
}
