//! chunkwire: an HTTP/1.1 streaming-upload client that uploads data of any size in
//! constant memory.
//!
//! Any [`std::io::Read`] is a body. It is read into one fixed buffer, framed in place as
//! `Transfer-Encoding: chunked` (or sent as is with `Content-Length`), and written by a
//! mio event loop that keeps reading while it writes, so a server that refuses the body
//! early is heard at once.
//!
//! ```text
//! source (Read) ──read into──▶ FixedBuf [headroom | payload | tail]
//!                                   │ "<hex>\r\n" into headroom, "\r\n" into tail
//!                                   ▼
//!                          one contiguous frame ──▶ transport ──▶ mio socket
//! mio socket ──▶ transport ──▶ response head parser (httparse) ──▶ body decoder ──▶ Response
//! ```
//!
//! # Example
//!
//! Upload 1 MiB, chunked, to the built-in loopback sink, which answers with a JSON report
//! of what it received:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sink = chunkwire::sink::Sink::bind("127.0.0.1:0")?.spawn()?;
//! let body = std::io::Cursor::new(vec![42u8; 1 << 20]); // any `Read` will do: a File, stdin, ...
//! let mut response = chunkwire::Client::new()
//!     .upload(&sink.url("/videos/1"))
//!     .method("POST")
//!     .header("Content-Type", "video/mp4")
//!     .send(body)?;
//! assert_eq!(response.status(), 200);
//! let report = response.text()?;
//! assert!(report.contains(r#""framing":"chunked","bytes":1048576"#), "{report}");
//! # Ok(())
//! # }
//! ```
//!
//! # Scope
//!
//! In: HTTP/1.1 uploads over plain TCP, chunked or with Content-Length, trailers, and
//! reading the response. The protocol core ([`proto`]) is sans-I/O: it turns bytes into
//! events and events into bytes, and can be used and fuzzed without sockets.
//! https goes through rustls on the same buffer and event loop ([`TlsConfig`]).
//! Also: redirects that resend a seekable body, one retry of a connection that died before
//! any response, keep-alive, `Expect: 100-continue`, trailers and checksums, progress and
//! rate limits, and many uploads at once on one thread ([`Uploads`], on its own mio `Poll`
//! or inside the caller's), each with a fixed memory cost, and what each upload took in
//! the terms of curl's `--write-out` ([`Transfer`], [`Timings`]); HTTP proxies from the
//! environment or [`ClientBuilder::proxy`] ([`Proxy`]), absolute form for http and CONNECT
//! tunnels for https. The wire can be traced as text ([`trace`]) or as a pcapng capture
//! that Wireshark decrypts by itself ([`pcap`]). Not: HTTP/2, SOCKS, cookies.
//!
//! # Features
//!
//! - `cli` (default): the `chunkwire` command-line tool.
//! - `sink` (default, through `cli`): [`sink`], a loopback upload server for tests and demos.
//! - `checksum` (default, through `cli`): [`checksum`], a SHA-256 or CRC-32C of the body
//!   computed while it streams and sent as a `Content-Digest` trailer.
//! - `mime-guess` (default, through `cli`): a [`FormPart::file`]'s content type guessed from
//!   its extension; without it, `application/octet-stream` unless given.
//!
//! With `default-features = false` the library depends on mio, httparse, http, rustls and
//! webpki-roots only.
#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]

mod buffer;
#[cfg(feature = "checksum")]
pub mod checksum;
mod client;
mod driver;
mod error;
mod form;
pub mod json;
mod multi;
pub mod pcap;
pub mod proto;
mod proxy;
#[cfg(feature = "sink")]
pub mod sink;
mod target;
pub mod trace;
mod transfer;
mod transport;

/// The README's Rust examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;

pub use buffer::FixedBuf;
pub use client::{
    Client, ClientBuilder, DEFAULT_CHUNK_SIZE, DEFAULT_CONNECT_TIMEOUT, DEFAULT_STALL_TIMEOUT,
    MAX_CHUNK_SIZE, Response, Upload, put,
};
pub use driver::UploadProgress;
pub use error::{Error, Progress, RequestError, Result, Stage, TimeoutKind};
pub use form::{DEFAULT_FILE_CONTENT_TYPE, Form, FormPart, FormReader};
/// The event loop crate, as chunkwire uses it: [`Client::uploads_in`] takes its `Registry`.
pub use mio;
pub use multi::{
    Completed, DEFAULT_KEPT_RESPONSE, DEFAULT_MAX_ACTIVE, DEFAULT_MAX_CONNECTING, Finished,
    UploadId, Uploads,
};
pub use proto::conn::Timeouts;
pub use proto::limits::Limits;
pub use proto::peer_error::PeerError;
pub use proxy::{
    DEFAULT_HTTPS_PROXY_PORT, DEFAULT_PROXY_PORT, NoProxy, Proxy, ProxySource, ProxyTrailers, Route,
};
pub use target::{
    Credentials, MAX_URL_LEN, Scheme, Target, redact_userinfo, resolve_reference, with_path_segment,
};
pub use transfer::{Timings, Transfer};
#[cfg(feature = "sink")]
pub use transport::tls::{ServerStream, ServerTls};
pub use transport::tls::{TlsConfig, TlsConfigBuilder, TlsSummary};
