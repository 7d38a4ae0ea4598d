//! Resolving a host and opening a non-blocking TCP connection to one of its addresses,
//! following mio's recipe for `TcpStream::connect`: wait for writable, then `take_error`
//! and `peer_addr` tell a refused connection from a spurious wake-up.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::error::{Error, Kind, Stage, TimeoutKind};

/// Resolves `host` through the system resolver (std, blocking: it has no timeout of its own).
pub(crate) fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, Error> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| Error::io(Stage::Resolve, e).with_peer(host))?
        .collect();
    if addrs.is_empty() {
        return Err(Error::new(Stage::Resolve, Kind::NoAddresses).with_peer(host));
    }
    Ok(addrs)
}

/// Connects to the first address that answers within `timeout`, trying each in turn.
/// Each address gets an equal share of what is left of the timeout, so one address that
/// never answers cannot use it all up.
pub(crate) fn connect(
    poll: &mut Poll,
    events: &mut Events,
    token: Token,
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<TcpStream, Error> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut last_error = None;
    for (index, addr) in addrs.iter().enumerate() {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let share = (deadline - now) / (addrs.len() - index) as u32;
        match connect_one(poll, events, token, *addr, now + share) {
            Ok(stream) => return Ok(stream),
            Err(err) => last_error = Some(err.with_peer(addr.to_string())),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        Error::new(
            Stage::Connect,
            Kind::Timeout(TimeoutKind::Connect, started.elapsed()),
        )
    }))
}

fn connect_one(
    poll: &mut Poll,
    events: &mut Events,
    token: Token,
    addr: SocketAddr,
    deadline: Instant,
) -> Result<TcpStream, Error> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).map_err(|e| Error::io(Stage::Connect, e))?;
    poll.registry()
        .register(&mut stream, token, Interest::WRITABLE)
        .map_err(|e| Error::io(Stage::Connect, e))?;
    let result = wait_connected(poll, events, token, &stream, deadline, started);
    // Registration is redone by the caller with the interest it needs; on failure the
    // socket is dropped, which deregisters it.
    if result.is_ok() {
        poll.registry()
            .deregister(&mut stream)
            .map_err(|e| Error::io(Stage::Connect, e))?;
    }
    result.map(|()| stream)
}

fn wait_connected(
    poll: &mut Poll,
    events: &mut Events,
    token: Token,
    stream: &TcpStream,
    deadline: Instant,
    started: Instant,
) -> Result<(), Error> {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::new(
                Stage::Connect,
                Kind::Timeout(TimeoutKind::Connect, started.elapsed()),
            ));
        }
        match poll.poll(events, Some(deadline - now)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(Stage::Connect, e)),
        }
        if !events.iter().any(|event| event.token() == token) {
            continue;
        }
        if let Some(err) = stream
            .take_error()
            .map_err(|e| Error::io(Stage::Connect, e))?
        {
            return Err(Error::io(Stage::Connect, err));
        }
        match stream.peer_addr() {
            Ok(_) => return Ok(()),
            // Woken before the handshake finished: wait again.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => continue,
            Err(e) => return Err(Error::io(Stage::Connect, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusing_address_falls_through_to_the_next() {
        let refusing = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let working = listener.local_addr().unwrap();
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(4);
        let stream = connect(
            &mut poll,
            &mut events,
            Token(0),
            &[refusing, working],
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(stream.peer_addr().unwrap(), working);

        let err = connect(
            &mut poll,
            &mut events,
            Token(0),
            &[refusing],
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert_eq!(err.stage(), Stage::Connect);
        assert!(err.to_string().contains(&refusing.to_string()), "{err}");
    }
}
