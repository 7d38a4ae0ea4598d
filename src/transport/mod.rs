//! The byte pipe under the framer: a connected, non-blocking stream the event loop reads
//! and writes. Plain TCP today; TLS joins it behind the same methods, so the framer and
//! the exchange never know which one carries their bytes.

pub(crate) mod tcp;

use std::io::{self, Read, Write};

use mio::net::TcpStream;

/// A connected transport. Every method is non-blocking and may return `WouldBlock`.
#[derive(Debug)]
pub(crate) struct Transport {
    stream: TcpStream,
}

impl Transport {
    pub(crate) fn plain(stream: TcpStream) -> Self {
        Transport { stream }
    }

    /// Writes some of `bytes`; a partial write is normal.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.stream.write(bytes)
    }

    /// Reads into `space`; 0 means the peer closed its side.
    pub(crate) fn read(&mut self, space: &mut [u8]) -> io::Result<usize> {
        self.stream.read(space)
    }
}
