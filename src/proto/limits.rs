//! Limits on what a peer may send, so that memory stays bounded whatever arrives.

/// Header fields parsed per head: the size of the stack array httparse fills. `max_headers`
/// above this is treated as this.
pub const MAX_HEADERS_CAP: usize = 128;

/// Limits on what the peer may send. Past a limit, parsing fails with an error that names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest response head (status line and fields), default 32 KiB. The receive region
    /// of the upload buffer is this large.
    pub max_head_bytes: usize,
    /// Most header fields in a head, default 100 (at most [`MAX_HEADERS_CAP`]).
    pub max_headers: usize,
    /// Longest chunk-size line including extensions, default 4 KiB.
    pub max_chunk_line_bytes: usize,
    /// Largest trailer section, default 16 KiB.
    pub max_trailer_bytes: usize,
    /// Largest body, default unlimited.
    pub max_body_bytes: Option<u64>,
    /// Most interim (1xx) responses before the final one, default 32.
    pub max_interim_responses: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 32 * 1024,
            max_headers: 100,
            max_chunk_line_bytes: 4 * 1024,
            max_trailer_bytes: 16 * 1024,
            max_body_bytes: None,
            max_interim_responses: 32,
        }
    }
}

impl Limits {
    /// The header count actually enforced.
    pub fn header_count(&self) -> usize {
        self.max_headers.min(MAX_HEADERS_CAP)
    }
}
