//! The sans-I/O protocol core: bytes in, events out; events in, bytes out. No sockets here,
//! and no clock: time is passed in.
//!
//! Three layers, each a plain value the driver moves bytes for:
//!
//! - [`policy`]: between exchanges, the HTTP decisions as pure functions (follow a
//!   redirect and how, send a failed attempt again, retry a 417, keep a connection).
//! - [`conn`]: one connection's life and every timer on it, with time passed in:
//!
//! ```text
//! Resolving ──▶ Connecting ──▶ [Handshaking] ──▶ Ready ──▶ Exchanging ──▶ Idle ──▶ Exchanging ...
//!     └────────────┴───────────────┴──────────────────────────┴──────────────────▶ Closed
//! ```
//!
//! - [`exchange`]: one request/response, a short line of states on each side:
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
//! [`message`] holds the framing rules and limits of a message head for both roles: the
//! client's response parser and the sink's request parser use the same ones.

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
pub mod tunnel;
