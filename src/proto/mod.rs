//! The sans-I/O protocol core: bytes in, events out; events in, bytes out. No sockets here.
//!
//! An upload is one [`exchange::Exchange`], a short line of states on each side:
//!
//! ```text
//! send:    head ──▶ [fill ──▶ chunk]* ──▶ last chunk + trailers ──▶ sent
//!            └──────────── final response arrives early ─────────▶ stopped
//! receive: [interim 1xx]* ──▶ final head ──▶ body (length | chunked | until close) ──▶ end
//! ```
//!
//! Every function takes caller slices and returns counts: [`head`] writes the request head,
//! [`framer`] frames chunks in place in a [`crate::FixedBuf`], [`response`] parses the
//! response head with httparse, [`dechunk`] and [`body`] decode the response body.

pub mod body;
pub mod conn;
pub mod dechunk;
pub mod exchange;
pub mod framer;
pub mod head;
pub mod limits;
pub mod message;
pub mod peer_error;
pub mod policy;
pub mod response;
