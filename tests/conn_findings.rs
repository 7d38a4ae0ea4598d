//! Defects of the connection machine (`src/proto/conn.rs`) found by the `conn` fuzz target
//! and by reading it, kept as tests: each failed before its fix.

use std::time::{Duration, Instant};

use chunkwire::FixedBuf;
use chunkwire::Limits;
use chunkwire::Target;
use chunkwire::proto::conn::{Connection, ExchangeOptions, Timeouts, Transmit};
use chunkwire::proto::exchange::Exchange;
use chunkwire::proto::head::{BodyFraming, RequestHead};

fn exchange() -> (Exchange, FixedBuf) {
    let target = Target::parse("http://h/u").unwrap();
    let mut head = RequestHead::new("PUT", &target).unwrap();
    head.set_framing(BodyFraming::Chunked);
    let mut buf = FixedBuf::new(5, 256, head.encoded_len());
    let ex = Exchange::new(&head, Vec::new(), Limits::default(), &mut buf).unwrap();
    (ex, buf)
}

fn open(timeouts: Timeouts, t0: Instant) -> (Connection, FixedBuf) {
    let (ex, buf) = exchange();
    let mut conn = Connection::new(timeouts, t0, t0);
    conn.on_connect_attempt(t0, 1);
    conn.on_connected(t0, false);
    conn.start_exchange(ex, ExchangeOptions::default(), t0, t0);
    (conn, buf)
}

/// Found by the fuzzer (`fuzz/corpus/conn/found-stale-wait-after-finish`): the source
/// would block (a 5 ms retry), an early 200 arrives, the exchange is finished (closed).
/// `poll_transmit` on the closed connection then answers `Wait` while `poll_timeout` is
/// `None`: a wait nothing ends. `finish_exchange` leaves the ended exchange's source retry
/// (also pacing, and a watched source's wait) in place until the next `start_exchange`.
#[test]

fn no_stale_wait_after_finish_exchange() {
    let t0 = Instant::now();
    let timeouts = Timeouts {
        connect: Duration::from_secs(10),
        stall: None,
        total: None,
    };
    let (mut conn, mut buf) = open(timeouts, t0);
    while let Ok(Transmit::Write(bytes)) = conn.poll_transmit(&mut buf, t0) {
        let n = bytes.len();
        conn.on_sent(n, t0);
    }
    assert!(matches!(
        conn.poll_transmit(&mut buf, t0),
        Ok(Transmit::Fill(_))
    ));
    conn.on_source_blocked(t0);
    let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let space = conn.recv_space(&mut buf);
    space[..reply.len()].copy_from_slice(reply);
    conn.on_received(&buf, reply.len(), t0, &mut |_, _| {})
        .unwrap();
    assert!(
        !conn.finish_exchange(true),
        "the request was not sent: closed"
    );
    assert_eq!(conn.poll_timeout(), None);
    let transmit = conn.poll_transmit(&mut buf, t0);
    assert!(
        matches!(transmit, Ok(Transmit::Done)),
        "with no exchange and no timer, poll_transmit gives {transmit:?}"
    );
}

/// `Timeouts` and `ExchangeOptions` take any `Duration` (the builder and the CLI's
/// `parse_seconds` accept e.g. 1e19 s), but every deadline is `Instant + Duration`, which
/// panics when the sum does not fit an `Instant` ("overflow when adding duration to
/// instant"): in `Connection::new` for the connect timeout, in `poll_timeout` for the stall
/// and expect timeouts, at `start_exchange` for the total. A deadline that far is no
/// deadline (`checked_add`, `None` on overflow).
#[test]

fn huge_timeouts_do_not_panic() {
    let t0 = Instant::now();
    let huge = Duration::from_secs_f64(1e19);
    let outcome = std::panic::catch_unwind(|| {
        let timeouts = Timeouts {
            connect: Duration::from_secs(10),
            stall: Some(huge),
            total: Some(huge),
        };
        let (conn, _buf) = open(timeouts, t0);
        conn.poll_timeout()
    });
    assert!(outcome.is_ok(), "a stall or total timeout of 1e19 s panics");
    let outcome = std::panic::catch_unwind(|| {
        let timeouts = Timeouts {
            connect: huge,
            stall: None,
            total: None,
        };
        Connection::new(timeouts, t0, t0).poll_timeout()
    });
    assert!(outcome.is_ok(), "a connect timeout of 1e19 s panics");
}
