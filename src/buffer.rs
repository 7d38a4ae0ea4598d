//! `FixedBuf`: the one allocation of an upload, and the layout the framer relies on.
//!
//! ```text
//! send region                                              receive region
//! [ headroom | payload ............................ | tail ][ response bytes ........ ]
//!   ^ hex size line + CRLF, right-aligned against payload   ^ response head and body
//! ```
//!
//! The source is read straight into `payload`; the framer writes the chunk-size line into
//! the end of `headroom` and CRLF into `tail`, so a chunk is one contiguous slice of this
//! buffer and goes to the transport without a copy. Before the body, the send region holds
//! the request head; after it, the last chunk. The receive region holds response bytes
//! while the upload is still going, so an early response can be read at any time.
//!
//! The send region never grows: its size is fixed when the upload starts. The receive
//! region starts small (a response head is rarely over a few hundred bytes) and may grow,
//! up to a limit fixed with it, only when a response head, chunk-size line or trailer
//! section does not fit: that is one allocation for a rare large response, never one per
//! chunk, and it keeps the cost of each of many concurrent uploads near its chunk size.

/// Bytes of a chunk-size line's hex digits for a chunk of `len` bytes.
pub const fn hex_digits(len: usize) -> usize {
    let mut digits = 1;
    let mut rest = len >> 4;
    while rest != 0 {
        digits += 1;
        rest >>= 4;
    }
    digits
}

/// CRLF, the line ending of HTTP/1.1.
pub const CRLF: &[u8; 2] = b"\r\n";

/// The last chunk with no trailers and the final CRLF.
pub const LAST_CHUNK: &[u8; 5] = b"0\r\n\r\n";

/// The single buffer of an upload. See the module docs for the layout.
pub struct FixedBuf {
    bytes: Box<[u8]>,
    headroom: usize,
    payload_capacity: usize,
    send_region: usize,
    /// The receive region may grow to this many bytes; see the module docs.
    recv_limit: usize,
}

/// Sizes only: the bytes are the user's data, and a debug print of a response must not
/// dump a whole chunk of it.
impl std::fmt::Debug for FixedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FixedBuf")
            .field("len", &self.bytes.len())
            .field("headroom", &self.headroom)
            .field("payload_capacity", &self.payload_capacity)
            .field("send_region", &self.send_region)
            .field("recv_limit", &self.recv_limit)
            .finish()
    }
}

impl FixedBuf {
    /// Allocates a buffer for chunks of up to `payload_capacity` bytes and a receive region
    /// of `recv_capacity` bytes. The send region is at least `min_send_region` bytes, so that
    /// a request head larger than one chunk still fits.
    ///
    /// # Panics
    /// If `payload_capacity` or `recv_capacity` is zero; the client validates both first.
    pub fn new(payload_capacity: usize, recv_capacity: usize, min_send_region: usize) -> Self {
        assert!(payload_capacity > 0 && recv_capacity > 0);
        // Room for the longest size line this buffer can need, and its CRLF.
        let headroom = hex_digits(payload_capacity) + CRLF.len();
        let send_region = (headroom + payload_capacity + CRLF.len()).max(min_send_region);
        FixedBuf::laid_out(headroom, payload_capacity, send_region, recv_capacity)
    }

    fn laid_out(
        headroom: usize,
        payload_capacity: usize,
        send_region: usize,
        recv_capacity: usize,
    ) -> Self {
        FixedBuf {
            bytes: vec![0; send_region + recv_capacity].into_boxed_slice(),
            headroom,
            payload_capacity,
            send_region,
            recv_limit: recv_capacity,
        }
    }

    /// A buffer whose send region also has room for a request head of up to `lead` bytes
    /// right before the largest chunk-size line, and for a last chunk right after the
    /// largest chunk: the head, the first chunk and the last chunk of a small body can then
    /// be one contiguous write (see `Exchange::new_coalescing`).
    pub fn with_lead(payload_capacity: usize, recv_capacity: usize, lead: usize) -> Self {
        assert!(payload_capacity > 0 && recv_capacity > 0);
        let headroom = lead + hex_digits(payload_capacity) + CRLF.len();
        let send_region = headroom + payload_capacity + CRLF.len() + LAST_CHUNK.len();
        FixedBuf::laid_out(headroom, payload_capacity, send_region, recv_capacity)
    }

    /// Bytes before the largest chunk-size line: room for a request head that goes out in
    /// one write with the first chunk. 0 for a buffer made by [`FixedBuf::new`].
    pub fn lead(&self) -> usize {
        self.headroom - hex_digits(self.payload_capacity) - CRLF.len()
    }

    /// Lets the receive region grow up to `recv_limit` bytes when it is full (see
    /// [`FixedBuf::grow_recv`]); a limit below its size now changes nothing.
    pub fn growable_to(mut self, recv_limit: usize) -> Self {
        self.recv_limit = recv_limit.max(self.recv_region().len());
        self
    }

    /// Doubles the receive region, up to its limit, keeping every byte in place. False when
    /// it is at its limit already.
    pub fn grow_recv(&mut self) -> bool {
        let now = self.recv_region().len();
        if now >= self.recv_limit {
            return false;
        }
        let grown = now.saturating_mul(2).min(self.recv_limit);
        let mut bytes = vec![0; self.send_region + grown].into_boxed_slice();
        bytes[..self.bytes.len()].copy_from_slice(&self.bytes);
        self.bytes = bytes;
        true
    }

    /// The largest chunk payload.
    pub fn payload_capacity(&self) -> usize {
        self.payload_capacity
    }

    /// Total bytes allocated.
    pub fn allocated(&self) -> usize {
        self.bytes.len()
    }

    /// Offset of the payload within the send region.
    pub fn payload_offset(&self) -> usize {
        self.headroom
    }

    /// The whole send region: the head before the body, the last chunk after it.
    pub fn send_region(&self) -> &[u8] {
        &self.bytes[..self.send_region]
    }

    /// The whole send region, writable.
    pub fn send_region_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[..self.send_region]
    }

    /// The receive region.
    pub fn recv_region(&self) -> &[u8] {
        &self.bytes[self.send_region..]
    }

    /// The receive region, writable.
    pub fn recv_region_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[self.send_region..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_receive_region_grows_to_its_limit_and_keeps_its_bytes() {
        let mut buf = FixedBuf::new(16, 4, 0).growable_to(10);
        let send_len = buf.send_region().len();
        buf.send_region_mut()[0] = 7;
        buf.recv_region_mut().copy_from_slice(b"abcd");
        assert!(buf.grow_recv());
        assert_eq!(buf.recv_region().len(), 8);
        assert_eq!(&buf.recv_region()[..4], b"abcd");
        assert!(buf.grow_recv());
        assert_eq!(buf.recv_region().len(), 10);
        assert!(!buf.grow_recv());
        assert_eq!(
            (buf.send_region().len(), buf.send_region()[0]),
            (send_len, 7)
        );
        assert!(!FixedBuf::new(16, 4, 0).grow_recv(), "no limit set: fixed");
    }

    #[test]
    fn a_lead_is_room_before_the_largest_size_line() {
        let buf = FixedBuf::with_lead(0x1000, 8, 300);
        assert_eq!(buf.lead(), 300);
        assert_eq!(buf.payload_offset(), 300 + 4 + 2);
        assert_eq!(buf.send_region().len(), 306 + 0x1000 + 2 + 5);
        assert_eq!(FixedBuf::new(0x1000, 8, 0).lead(), 0);
    }

    #[test]
    fn hex_digits_at_the_edges() {
        let cases = [
            (0, 1),
            (1, 1),
            (15, 1),
            (16, 2),
            (255, 2),
            (256, 3),
            (65535, 4),
            (65536, 5),
            (usize::MAX, std::mem::size_of::<usize>() * 2),
        ];
        for (len, digits) in cases {
            assert_eq!(hex_digits(len), digits, "{len}");
        }
    }

    #[test]
    fn layout_reserves_headroom_for_the_largest_size_line() {
        let buf = FixedBuf::new(65536, 1024, 0);
        assert_eq!(buf.payload_offset(), 5 + 2);
        assert_eq!(buf.send_region().len(), 7 + 65536 + 2);
        assert_eq!(buf.recv_region().len(), 1024);
        assert_eq!(buf.allocated(), 7 + 65536 + 2 + 1024);
        let big_head = FixedBuf::new(16, 8, 4096);
        assert_eq!(big_head.send_region().len(), 4096);
    }
}
