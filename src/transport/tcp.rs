//! Name resolution off the event loop: the system resolver blocks and has no timeout of its
//! own, so it runs on a thread that answers on a channel and wakes the loop through a
//! `mio::Waker`, as curl's threaded resolver does. The loop keeps its deadlines meanwhile;
//! a thread whose answer comes too late finishes on its own and is not waited for.
//!
//! The non-blocking connect itself (mio's recipe: wait for writable, then `take_error` and
//! `peer_addr`) is a step of the driver, so that many connects can be in flight at once.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, mpsc};

use mio::Waker;

use crate::error::{Error, Stage};

/// Where the addresses of a host arrive.
pub(crate) type Answer = mpsc::Receiver<io::Result<Vec<SocketAddr>>>;

/// Starts resolving `host`; an address literal is answered at once, without a thread.
pub(crate) fn resolve_in_background(
    host: &str,
    port: u16,
    waker: &Arc<Waker>,
) -> Result<Answer, Error> {
    let (answer, receiver) = mpsc::sync_channel(1);
    if let Ok(ip) = host.parse::<IpAddr>() {
        let _ = answer.send(Ok(vec![SocketAddr::new(ip, port)]));
        return Ok(receiver);
    }
    let host = host.to_owned();
    let waker = Arc::clone(waker);
    std::thread::Builder::new()
        .name("chunkwire-resolve".into())
        .spawn(move || {
            let addrs = (host.as_str(), port)
                .to_socket_addrs()
                .map(|addrs| addrs.collect());
            // The loop may have given up (a deadline); then nobody listens, which is fine.
            let _ = answer.send(addrs);
            let _ = waker.wake();
        })
        .map_err(|e| Error::io(Stage::Resolve, e))?;
    Ok(receiver)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_need_no_thread_and_names_wake_the_loop() {
        let mut poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(7)).unwrap());
        let answer = resolve_in_background("::1", 443, &waker).unwrap();
        let addrs = answer.try_recv().unwrap().unwrap();
        assert_eq!(addrs, ["[::1]:443".parse().unwrap()]);

        let answer = resolve_in_background("localhost", 80, &waker).unwrap();
        let mut events = mio::Events::with_capacity(4);
        poll.poll(&mut events, Some(std::time::Duration::from_secs(10)))
            .unwrap();
        assert!(events.iter().any(|e| e.token() == mio::Token(7)));
        let addrs = answer.try_recv().unwrap().unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 80));
    }
}
