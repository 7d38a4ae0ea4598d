//! chunkwire: an HTTP/1.1 streaming-upload client in constant memory.
#![forbid(unsafe_code)]

pub mod proto;
