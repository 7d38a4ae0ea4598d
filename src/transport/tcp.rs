//! Name resolution off the event loop: the system resolver blocks and has no timeout of its
//! own, so it runs on a thread that answers on a channel and wakes the loop through a
//! `mio::Waker`, as curl's threaded resolver does. The loop keeps its deadlines meanwhile;
//! a thread whose answer comes too late finishes on its own and is not waited for.
//!
//! Lookups of one name in flight at once are shared, answers are kept for a minute, and a
//! resolver of the caller's own ([`crate::ClientBuilder::resolver`]) can stand in for the
//! system's.
//!
//! The non-blocking connect itself (mio's recipe: wait for writable, then `take_error` and
//! `peer_addr`) is a step of the driver, so that many connects can be in flight at once.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use mio::Waker;

use crate::error::{Error, Stage};

/// Where the addresses of a host arrive.
pub(crate) type Answer = mpsc::Receiver<io::Result<Vec<SocketAddr>>>;

/// A name resolver of the caller's own, in place of the system's: `(host, port)` to the
/// addresses to try, in order. It runs on a resolver thread, so it may block.
pub(crate) type Resolve = dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync;

/// A caller's resolver, shared by the uploads of a client, with a number of its own (0 is
/// the system's) to tell its answers apart.
#[derive(Clone)]
pub(crate) struct Resolver(pub(crate) Arc<Resolve>, u64);

impl Resolver {
    pub(crate) fn new(resolve: Arc<Resolve>) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Resolver(resolve, NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver(caller's)")
    }
}

/// Who waits for one lookup: where its answer goes and which loop to wake.
type Waiters = Vec<(mpsc::SyncSender<io::Result<Vec<SocketAddr>>>, Arc<Waker>)>;

/// How long an answer is used again without asking (curl's DNS cache keeps entries 60 s).
const KEEP_ANSWER: Duration = Duration::from_secs(60);

/// A lookup by resolver, host and port: in flight, with who waits for it, or answered.
enum Lookup {
    InFlight(Waiters),
    Answered { addrs: Vec<SocketAddr>, at: Instant },
}

type Lookups = HashMap<(u64, String, u16), Lookup>;

/// A second upload to a name being resolved waits for the same answer instead of starting
/// a thread of its own, and an answer is used again for a while, so a thousand uploads to
/// one host cost one lookup. Failures, and answers without an address, are not kept.
fn lookups() -> &'static Mutex<Lookups> {
    static LOOKUPS: OnceLock<Mutex<Lookups>> = OnceLock::new();
    LOOKUPS.get_or_init(Mutex::default)
}

/// Starts resolving `host` with `resolver` (the system's when `None`); an address literal
/// is answered at once, without a thread.
pub(crate) fn resolve_in_background(
    host: &str,
    port: u16,
    resolver: Option<&Resolver>,
    waker: &Arc<Waker>,
) -> Result<Answer, Error> {
    let (answer, receiver) = mpsc::sync_channel(1);
    if let Ok(ip) = host.parse::<IpAddr>() {
        let _ = answer.send(Ok(vec![SocketAddr::new(ip, port)]));
        return Ok(receiver);
    }
    let key = (resolver.map_or(0, |r| r.1), host.to_ascii_lowercase(), port);
    {
        let mut lookups = lookups().lock().unwrap_or_else(|e| e.into_inner());
        match lookups.get_mut(&key) {
            Some(Lookup::InFlight(waiters)) => {
                waiters.push((answer, Arc::clone(waker)));
                return Ok(receiver);
            }
            Some(Lookup::Answered { addrs, at }) if at.elapsed() < KEEP_ANSWER => {
                let _ = answer.send(Ok(addrs.clone()));
                return Ok(receiver);
            }
            _ => {}
        }
        lookups.retain(|_, lookup| {
            !matches!(lookup, Lookup::Answered { at, .. } if at.elapsed() >= KEEP_ANSWER)
        });
        lookups.insert(
            key.clone(),
            Lookup::InFlight(vec![(answer, Arc::clone(waker))]),
        );
    }
    let host = host.to_owned();
    let resolver = resolver.cloned();
    let thread_key = key.clone();
    let spawned = std::thread::Builder::new()
        .name("chunkwire-resolve".into())
        .spawn(move || {
            // A caller's resolver that panics must not leave its name in flight for good:
            // the panic is this lookup's failure.
            let addrs =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &resolver {
                    Some(Resolver(resolve, _)) => resolve(&host, port),
                    None => (host.as_str(), port)
                        .to_socket_addrs()
                        .map(|addrs| addrs.collect()),
                }))
                .unwrap_or_else(|_| Err(io::Error::other("the resolver panicked")));
            let waiters = {
                let mut lookups = lookups().lock().unwrap_or_else(|e| e.into_inner());
                let waiters = match lookups.remove(&thread_key) {
                    Some(Lookup::InFlight(waiters)) => waiters,
                    _ => Vec::new(),
                };
                // No address is no answer to keep: the next upload asks again.
                if let Ok(addrs) = &addrs
                    && !addrs.is_empty()
                {
                    let at = Instant::now();
                    let addrs = addrs.clone();
                    lookups.insert(thread_key, Lookup::Answered { addrs, at });
                }
                waiters
            };
            for (answer, waker) in waiters {
                // A loop that gave up (a deadline) no longer listens, which is fine.
                let copy = match &addrs {
                    Ok(addrs) => Ok(addrs.clone()),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                };
                let _ = answer.send(copy);
                let _ = waker.wake();
            }
        });
    if let Err(e) = spawned {
        lookups()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        return Err(Error::io(Stage::Resolve, e));
    }
    Ok(receiver)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_need_no_thread_and_names_wake_the_loop() {
        let mut poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(7)).unwrap());
        let answer = resolve_in_background("::1", 443, None, &waker).unwrap();
        let addrs = answer.try_recv().unwrap().unwrap();
        assert_eq!(addrs, ["[::1]:443".parse().unwrap()]);

        // A port no other test resolves, so the answer is not kept from before.
        let answer = resolve_in_background("localhost", 8079, None, &waker).unwrap();
        let mut events = mio::Events::with_capacity(4);
        poll.poll(&mut events, Some(std::time::Duration::from_secs(10)))
            .unwrap();
        assert!(events.iter().any(|e| e.token() == mio::Token(7)));
        let addrs = answer.try_recv().unwrap().unwrap();
        assert!(
            addrs
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 8079)
        );
        // Asked again, the kept answer comes at once, without a thread.
        let again = resolve_in_background("LOCALHOST", 8079, None, &waker).unwrap();
        assert_eq!(again.try_recv().unwrap().unwrap(), addrs);
        let addrs = resolve_in_background("localhost", 80, None, &waker)
            .unwrap()
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap()
            .unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 80));
    }
}
