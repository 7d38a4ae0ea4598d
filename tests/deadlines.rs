//! Every deadline fires at its time whatever the source or the socket does: `max_time`
//! covers connecting, and a slow source cannot carry an upload past it (it used to send the
//! whole body and its last chunk, get a 200, and only then report the timeout).

use std::io::{self, Read};
use std::thread;
use std::time::{Duration, Instant};

use chunkwire::{Client, Stage, TimeoutKind};

mod support;
use support::{read_head, serve_once};

/// Gives one byte every `every`, `left` times.
struct Trickle {
    left: u32,
    every: Duration,
}

impl Read for Trickle {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        thread::sleep(self.every);
        self.left -= 1;
        out[0] = b't';
        Ok(1)
    }
}

#[test]
fn max_time_stops_a_slow_source_and_no_last_chunk_goes_out() {
    let (url, server) = serve_once(|mut stream| {
        let mut seen = read_head(&mut stream);
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = stream.read_to_end(&mut seen);
        assert!(
            !seen.ends_with(b"0\r\n\r\n"),
            "the last chunk went out after the deadline: {:?}",
            String::from_utf8_lossy(&seen)
        );
    });
    let started = Instant::now();
    let err = Client::builder()
        .max_time(Some(Duration::from_millis(800)))
        .build()
        .unwrap()
        .upload(&url)
        .send(Trickle {
            left: 20,
            every: Duration::from_millis(100),
        })
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.timeout_kind(), Some(TimeoutKind::Total), "{err}");
    assert_eq!(err.stage(), Stage::Send, "{err}");
    // One read of the source past the deadline at most.
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    server.join().unwrap();
}

#[test]
fn max_time_covers_connecting() {
    let (listener, _held) = support::unanswered_listener();
    let addr = listener.local_addr().unwrap();
    // The connect timeout is the default 30 s; max_time must win.
    let started = Instant::now();
    let err = Client::builder()
        .max_time(Some(Duration::from_millis(500)))
        .build()
        .unwrap()
        .upload(&format!("http://{addr}/"))
        .send(&b"x"[..])
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.timeout_kind(), Some(TimeoutKind::Total), "{err}");
    assert_eq!(err.stage(), Stage::Connect, "{err}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    drop(listener);
}

#[test]
fn a_source_that_would_block_waits_instead_of_failing() {
    /// Says `WouldBlock` every other call, as a non-blocking pipe with nothing in it does.
    struct Shy {
        calls: u32,
        data: &'static [u8],
    }
    impl Read for Shy {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            self.calls += 1;
            if self.calls % 2 == 1 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = out.len().min(self.data.len()).min(3);
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }
    let sink = chunkwire::sink::Sink::bind("127.0.0.1:0")
        .unwrap()
        .spawn()
        .unwrap();
    let mut response = chunkwire::put(
        &sink.url("/shy"),
        Shy {
            calls: 0,
            data: b"hello, patient world",
        },
    )
    .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().unwrap().contains("\"bytes\":20"));
}
