//! The byte pipe under the framer: plain TCP or TLS over a connected, non-blocking socket.
//! The framer and the exchange never know which one carries their bytes; only `write`,
//! `read`, `flush` and `close` differ.

pub(crate) mod tcp;
pub mod tls;

use std::io::{self, Read, Write};

use mio::net::TcpStream;

use tls::{TlsStream, TlsSummary};

/// A connected transport. Every method is non-blocking and may return `WouldBlock`.
#[derive(Debug)]
pub(crate) enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
    /// Handed on to the next upload (keep-alive); nothing moves through it any more.
    Gone,
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the connection was handed on")
}

impl Transport {
    /// Takes some of `bytes`; a partial write is normal.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(tcp) => tcp.write(bytes),
            Transport::Tls(tls) => tls.write(bytes),
            Transport::Gone => Err(gone()),
        }
    }

    /// Pushes bytes the transport holds (TLS records) to the socket. `Ok(true)` when none
    /// are left; plain TCP holds none.
    pub(crate) fn flush(&mut self) -> io::Result<bool> {
        match self {
            Transport::Plain(_) | Transport::Gone => Ok(true),
            Transport::Tls(tls) => tls.flush(),
        }
    }

    /// Reads into `space`; 0 means the peer closed its side cleanly.
    pub(crate) fn read(&mut self, space: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(tcp) => tcp.read(space),
            Transport::Tls(tls) => tls.read(space),
            Transport::Gone => Err(gone()),
        }
    }

    /// Ends the session politely where the protocol has a way to (TLS close_notify).
    pub(crate) fn close(&mut self) {
        if let Transport::Tls(tls) = self {
            tls.close();
        }
    }

    /// What the TLS handshake settled, for TLS connections.
    pub(crate) fn tls_summary(&self) -> Option<TlsSummary> {
        match self {
            Transport::Plain(_) | Transport::Gone => None,
            Transport::Tls(tls) => Some(tls.summary()),
        }
    }

    /// For a connection that sat idle: true if it is still open and nothing came on it (a
    /// closed socket reads as its end; a live, quiet one would block).
    pub(crate) fn is_idle_and_open(&self) -> bool {
        let tcp = match self {
            Transport::Plain(tcp) => tcp,
            Transport::Tls(tls) => tls.tcp(),
            Transport::Gone => return false,
        };
        let mut probe = [0u8; 1];
        matches!(tcp.peek(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}
