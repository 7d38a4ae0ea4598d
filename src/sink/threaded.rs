//! The https sink: TLS goes through the blocking rustls stream, so each connection has a
//! thread and its own read buffer, capped by
//! [`Sink::max_connections`](super::Sink::max_connections); past the cap, one more thread
//! answers 503. The requests themselves are read by the same [`Session`] as on the
//! plain-TCP event loop.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use super::session::Session;
use super::{
    IDLE_TIMEOUT, LINGER, REJECT_QUEUE, Report, SharedTrace, TLS_READ_BUFFER, accept_backoff,
};
use crate::trace::Direction;
use crate::transport::tls::ServerTls;

/// Serves https forever on this thread, one more thread per connection.
pub(super) fn serve(
    listener: TcpListener,
    tls: ServerTls,
    max_connections: usize,
    trace: Option<SharedTrace>,
    max_body: Option<u64>,
    on_report: impl Fn(&Report) + Send + Clone + 'static,
) {
    let active = Arc::new(AtomicUsize::new(0));
    let rejects = spawn_rejecter(tls.clone());
    let mut backoff = Duration::ZERO;
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(err) => {
                backoff = accept_backoff(&err, backoff);
                if !backoff.is_zero() {
                    thread::sleep(backoff);
                }
                continue;
            }
        };
        backoff = Duration::ZERO;
        let Some(slot) = Slot::take(&active, max_connections) else {
            // A full queue means the rejecter is behind: dropping is the cheap answer.
            if let Some(rejects) = &rejects {
                let _ = rejects.try_send(stream);
            }
            continue;
        };
        let on_report = on_report.clone();
        let tls = tls.clone();
        let trace = trace.clone();
        let _ = thread::Builder::new()
            .name("chunkwire-sink-conn".into())
            .spawn(move || {
                let _slot = slot;
                if stream.set_read_timeout(Some(IDLE_TIMEOUT)).is_err()
                    || stream.set_nodelay(true).is_err()
                {
                    return;
                }
                if let (Some(trace), Ok(peer)) = (&trace, stream.peer_addr()) {
                    trace.note(Direction::Received, &format!("connection from {peer}"));
                }
                // A second handle on the socket, for the lingering close under TLS.
                let Ok(tcp) = stream.try_clone() else { return };
                let Ok(mut stream) = tls.accept(stream) else {
                    return;
                };
                serve_connection(&mut stream, Session::new(trace, max_body), &on_report);
                stream.close();
                linger_close(&tcp);
            });
    }
}

/// Drives `session` over a blocking stream until it closes, the peer closes, or a read
/// times out.
fn serve_connection(
    stream: &mut (impl Read + Write),
    mut session: Session,
    on_report: &dyn Fn(&Report),
) {
    let mut buf = vec![0; TLS_READ_BUFFER].into_boxed_slice();
    let (mut start, mut end) = (0, 0);
    loop {
        if !session.output().is_empty() {
            if stream
                .write_all(session.output())
                .and_then(|()| stream.flush())
                .is_err()
            {
                return;
            }
            session.sent();
        }
        if session.is_closed() {
            return;
        }
        start += session.receive(&buf[start..end], on_report);
        if !session.output().is_empty() {
            continue;
        }
        // The session used what it could: the rest is a partial line, kept for the next read.
        buf.copy_within(start..end, 0);
        end -= start;
        start = 0;
        if end == buf.len() {
            // The limits keep every line far shorter than the buffer: never here.
            return;
        }
        match stream.read(&mut buf[end..]) {
            Ok(0) => return,
            Ok(n) => end += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// One of the sink's connection slots, given back when its connection thread ends.
#[derive(Debug)]
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(active: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(Arc::clone(active)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Starts the thread that answers connections past the cap with 503, one at a time and
/// with short timeouts, so however many arrive they cost one thread and a bounded queue.
fn spawn_rejecter(tls: ServerTls) -> Option<mpsc::SyncSender<TcpStream>> {
    let (sender, queue) = mpsc::sync_channel::<TcpStream>(REJECT_QUEUE);
    let spawned = thread::Builder::new()
        .name("chunkwire-sink-reject".into())
        .spawn(move || {
            for stream in queue {
                let timeout = Some(Duration::from_secs(1));
                if stream.set_read_timeout(timeout).is_err()
                    || stream.set_write_timeout(timeout).is_err()
                {
                    continue;
                }
                let Ok(tcp) = stream.try_clone() else {
                    continue;
                };
                if let Ok(mut stream) = tls.accept(stream) {
                    let _ = stream.write_all(Session::rejecting().output());
                    stream.close();
                }
                linger_close(&tcp);
            }
        });
    spawned.ok().map(|_| sender)
}

/// Closes our side, then reads and drops what the client still sends, for at most
/// [`LINGER`], before the socket is closed. See [`LINGER`].
fn linger_close(stream: &TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let deadline = Instant::now() + LINGER;
    let mut scratch = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match (&*stream).read(&mut scratch) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_and_given_back() {
        let active = Arc::new(AtomicUsize::new(0));
        let first = Slot::take(&active, 2).unwrap();
        let second = Slot::take(&active, 2).unwrap();
        assert!(Slot::take(&active, 2).is_none());
        drop(first);
        let third = Slot::take(&active, 2).unwrap();
        drop((second, third));
        assert_eq!(active.load(Ordering::Acquire), 0);
    }
}
