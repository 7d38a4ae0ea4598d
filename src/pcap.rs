//! The wire as a packet capture: a [`Trace`] that writes pcapng (the format of Wireshark
//! and tshark, draft-ietf-opsawg-pcapng), so that the tools people already use dissect an
//! upload: the request head, every chunk, the last chunk, trailers and the response.
//!
//! chunkwire sees bytes, not packets, so the packets are made up around the bytes: IPv4 or
//! IPv6 and TCP headers with the connection's real addresses and ports, sequence and
//! acknowledgement numbers that follow the bytes (so TCP reassembly works), correct
//! checksums, a three-way handshake when a connection is first seen and a FIN exchange when
//! the capture ends. Over plain TCP each packet carries one part of the message and its
//! comment names that part; over TLS the packets carry the records exactly as they crossed
//! the socket, their comments name the plaintext parts handed to TLS since the packet
//! before, and the session's secrets go in a Decryption Secrets Block ahead of the records
//! they open, so Wireshark decrypts the capture by itself.
//!
//! A capture holds every byte of the exchange, credentials included, and over TLS what it
//! takes to decrypt it: keep it as private as the data.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::trace::{Direction, Part, Trace, TracedConnection, WireTap};

/// pcapng block types.
const SECTION_HEADER: u32 = 0x0A0D_0D0A;
const INTERFACE_DESCRIPTION: u32 = 0x0000_0001;
const ENHANCED_PACKET: u32 = 0x0000_0006;
const DECRYPTION_SECRETS: u32 = 0x0000_000A;
/// The Decryption Secrets Block's type for the NSS key log format ("TLSK").
const TLS_KEY_LOG: u32 = 0x544c_534b;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
/// Raw IP: each packet begins with its IPv4 or IPv6 header (no link layer to invent).
const LINKTYPE_RAW: u16 = 101;
const SNAP_LENGTH: u32 = 262_144;

const OPT_END: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;

/// TCP payload bytes per packet at most: a loopback MSS, within IPv4's and IPv6's length
/// fields.
const MAX_SEGMENT: usize = 65_000;
/// The window scale both ends announce (the largest, RFC 7323), so that a long upload
/// without acknowledgements stays within the window Wireshark tracks...
const WINDOW_SHIFT: u8 = 14;
/// ...and the point at which the other end acknowledges anyway, well inside it (small in
/// unit tests, so that they see it happen).
const ACK_EVERY: u64 = if cfg!(test) { 64 << 10 } else { 256 << 20 };
/// Initial sequence numbers; Wireshark shows numbers relative to them.
const CLIENT_ISN: u32 = 0x1000_0000;
const SERVER_ISN: u32 = 0x7000_0000;
/// The longest packet comment over TLS; the parts beyond are counted, not named.
const MAX_COMMENT: usize = 200;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// A [`Trace`] that writes a pcapng capture of the connections of the uploads it is given
/// to. Clones write to the same capture, each following its own upload's connections: give
/// one to each upload (several at once in an [`crate::Uploads`] set too) and a connection
/// kept from one upload for the next stays one TCP stream in the capture.
///
/// Write errors do not stop the uploads: the first is kept, and [`PcapTrace::finish`]
/// returns it.
#[derive(Debug)]
pub struct PcapTrace {
    capture: Arc<Mutex<Capture>>,
    /// The stream of the connection this handle's upload is on.
    stream: Option<StreamRef>,
}

/// A stream by its place in the capture and its number, which tells it from a later stream
/// in the same place (after the capture was finished, or the ports were used again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StreamRef {
    index: usize,
    id: u64,
}

impl Clone for PcapTrace {
    /// Another handle on the same capture, for another upload.
    fn clone(&self) -> Self {
        PcapTrace {
            capture: Arc::clone(&self.capture),
            stream: None,
        }
    }
}

impl PcapTrace {
    /// Starts a capture on `out`: its section header and interface are written at once.
    pub fn new(out: impl Write + Send + 'static) -> io::Result<PcapTrace> {
        let mut capture = Capture {
            out: Box::new(out),
            streams: Vec::new(),
            block: Vec::with_capacity(256),
            comment: String::with_capacity(MAX_COMMENT + 32),
            secrets: Vec::new(),
            held: Held::default(),
            failed: None,
            ip_id: 0,
            next_stream_id: 0,
        };
        capture.write_header()?;
        Ok(PcapTrace {
            capture: Arc::new(Mutex::new(capture)),
            stream: None,
        })
    }

    /// Starts a capture in a new file at `path` (replacing one that is there).
    pub fn create(path: impl AsRef<Path>) -> io::Result<PcapTrace> {
        PcapTrace::new(BufWriter::new(File::create(path)?))
    }

    /// Ends every connection still open in the capture with a FIN exchange and flushes:
    /// what is written is a whole capture. Returns the first write error, if there was one.
    /// A connection used again afterwards starts over as a new stream.
    pub fn finish(&self) -> io::Result<()> {
        self.lock().finish()
    }

    /// Writes out what is held (TLS records waiting for their labels, secrets) and flushes,
    /// leaving the connections open: the file is a readable capture so far.
    pub fn flush(&self) -> io::Result<()> {
        self.lock().flush()
    }

    fn lock(&self) -> MutexGuard<'_, Capture> {
        // A panic while writing leaves a capture that is at worst cut short.
        self.capture.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Trace for PcapTrace {
    fn bytes(&mut self, direction: Direction, part: Part, bytes: &[u8]) {
        let Some(stream) = self.stream else {
            return;
        };
        let mut capture = self.lock();
        let Some(stream) = capture.live(stream) else {
            return;
        };
        if capture.streams[stream].tls {
            capture.streams[stream].label(direction, part);
        } else {
            let mut comment = std::mem::take(&mut capture.comment);
            comment.clear();
            push_label(&mut comment, part);
            capture.data(stream, direction, bytes, &comment, now_micros());
            capture.comment = comment;
        }
    }

    fn note(&mut self, _: Direction, _: &str) {}

    fn connected(&mut self, connection: &TracedConnection) {
        let stream = self.lock().connected(connection);
        self.stream = Some(stream);
    }

    fn wire_tap(&mut self) -> Option<Arc<dyn WireTap>> {
        let stream = self.stream?;
        Some(Arc::new(StreamTap {
            capture: Arc::clone(&self.capture),
            stream,
        }))
    }
}

/// The records and secrets of one TLS connection, on their way into the capture.
struct StreamTap {
    capture: Arc<Mutex<Capture>>,
    stream: StreamRef,
}

impl WireTap for StreamTap {
    fn wire(&self, direction: Direction, bytes: &[u8]) {
        let mut capture = self.capture.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(stream) = capture.live(self.stream) {
            capture.record(stream, direction, bytes);
        }
    }

    fn secret(&self, line: &str) {
        let mut capture = self.capture.lock().unwrap_or_else(|e| e.into_inner());
        capture.secrets.extend_from_slice(line.as_bytes());
        capture.secrets.push(b'\n');
    }
}

/// The capture file and the state of every TCP stream in it.
struct Capture {
    out: Box<dyn Write + Send>,
    streams: Vec<Stream>,
    /// The block being written, up to its payload (reused from packet to packet).
    block: Vec<u8>,
    /// A packet comment being put together (reused).
    comment: String,
    /// Key log lines not yet written: they go in a Decryption Secrets Block before the
    /// next packet.
    secrets: Vec<u8>,
    /// TLS records read or written last, held until the plaintext parts they carry are
    /// known. One place for all streams, so memory does not grow with the connections: a
    /// stream's records go out when another's come.
    held: Held,
    failed: Option<io::Error>,
    ip_id: u16,
    next_stream_id: u64,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("streams", &self.streams.len())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

/// TLS records waiting to be written: whose, which way, since when.
#[derive(Default)]
struct Held {
    stream: usize,
    from: usize,
    at: u64,
    bytes: Vec<u8>,
}

/// One TCP connection in the capture. Index 0 of the pairs is our side (what was sent),
/// 1 the server's.
struct Stream {
    /// Tells this stream from others that had its place before.
    id: u64,
    ends: [SocketAddr; 2],
    /// The sequence number of each side's next byte.
    next: [u32; 2],
    /// Bytes each side sent since the other last acknowledged them.
    unacked: [u64; 2],
    open: bool,
    tls: bool,
    /// TLS: the plaintext parts handed over since the last packet each way.
    labels: [String; 2],
}

impl Stream {
    /// Notes that the plaintext of `part` went `direction`, for the next packet's comment.
    fn label(&mut self, direction: Direction, part: Part) {
        let labels = &mut self.labels[direction as usize];
        if labels.len() >= MAX_COMMENT {
            if !labels.ends_with(", ...") {
                labels.push_str(", ...");
            }
            return;
        }
        let mut label = LabelText::default();
        push_label(&mut label, part);
        // A run of the same part (the pieces of one long line or of chunk data) is one name.
        if labels.ends_with(label.as_str()) {
            return;
        }
        if !labels.is_empty() {
            labels.push_str(", ");
        }
        labels.push_str(label.as_str());
    }
}

fn side(direction: Direction) -> usize {
    match direction {
        Direction::Sent => 0,
        Direction::Received => 1,
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl Capture {
    fn write_header(&mut self) -> io::Result<()> {
        let mut block = Vec::with_capacity(128);
        // Section Header Block: byte order, version 1.0, section length unknown.
        begin_block(&mut block, SECTION_HEADER);
        block.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
        block.extend_from_slice(&1u16.to_le_bytes());
        block.extend_from_slice(&0u16.to_le_bytes());
        block.extend_from_slice(&(-1i64).to_le_bytes());
        let app = concat!("chunkwire ", env!("CARGO_PKG_VERSION"));
        push_option(&mut block, SHB_USERAPPL, app.as_bytes());
        push_option(&mut block, OPT_END, b"");
        end_block(&mut block);
        // Interface Description Block: raw IP, microsecond timestamps (the default).
        let start = block.len();
        begin_block(&mut block, INTERFACE_DESCRIPTION);
        block.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
        block.extend_from_slice(&0u16.to_le_bytes());
        block.extend_from_slice(&SNAP_LENGTH.to_le_bytes());
        push_option(&mut block, IF_NAME, b"chunkwire");
        push_option(&mut block, OPT_END, b"");
        end_block_at(&mut block, start);
        self.out.write_all(&block)
    }

    fn write(&mut self, bytes: &[u8]) {
        if self.failed.is_none()
            && let Err(e) = self.out.write_all(bytes)
        {
            self.failed = Some(e);
        }
    }

    /// The stream for `connection`, made (with a handshake) if it is new to the capture.
    fn connected(&mut self, connection: &TracedConnection) -> StreamRef {
        let ends = [connection.local, connection.remote];
        let found = self.streams.iter().position(|s| s.open && s.ends == ends);
        if let Some(index) = found {
            if connection.reused {
                let stream = &mut self.streams[index];
                stream.tls = connection.tls;
                return StreamRef {
                    index,
                    id: stream.id,
                };
            }
            // The same ports again for a new connection: the old one is over.
            self.close(index, now_micros());
        }
        self.next_stream_id += 1;
        let id = self.next_stream_id;
        let stream = Stream {
            id,
            ends,
            next: [CLIENT_ISN, SERVER_ISN],
            unacked: [0, 0],
            open: true,
            tls: connection.tls,
            labels: Default::default(),
        };
        // Closed streams' places are taken again, so a long run keeps as many as it has
        // connections open.
        let index = match self.streams.iter().position(|s| !s.open) {
            Some(free) => {
                self.streams[free] = stream;
                free
            }
            None => {
                self.streams.push(stream);
                self.streams.len() - 1
            }
        };
        let at = now_micros();
        let comment = "TCP handshake (made up: chunkwire sees the bytes, not the packets)";
        let next = [CLIENT_ISN.wrapping_add(1), SERVER_ISN.wrapping_add(1)];
        self.segment(index, 0, SYN, CLIENT_ISN, 0, b"", comment, at);
        self.segment(index, 1, SYN | ACK, SERVER_ISN, next[0], b"", "", at);
        self.segment(index, 0, ACK, next[0], next[1], b"", "", at);
        self.streams[index].next = next;
        StreamRef { index, id }
    }

    /// The place of `stream` if it is still the one there and open.
    fn live(&self, stream: StreamRef) -> Option<usize> {
        self.streams
            .get(stream.index)
            .filter(|s| s.open && s.id == stream.id)
            .map(|_| stream.index)
    }

    /// Bytes of the stream going `direction`, in packets of at most [`MAX_SEGMENT`].
    fn data(&mut self, stream: usize, direction: Direction, bytes: &[u8], comment: &str, at: u64) {
        let from = side(direction);
        for piece in bytes.chunks(MAX_SEGMENT) {
            let s = &mut self.streams[stream];
            let (seq, ack) = (s.next[from], s.next[1 - from]);
            s.next[from] = seq.wrapping_add(piece.len() as u32);
            s.unacked[from] += piece.len() as u64;
            s.unacked[1 - from] = 0;
            self.segment(stream, from, PSH | ACK, seq, ack, piece, comment, at);
            let s = &mut self.streams[stream];
            if s.unacked[from] >= ACK_EVERY {
                s.unacked[from] = 0;
                let (seq, ack) = (s.next[1 - from], s.next[from]);
                self.segment(stream, 1 - from, ACK, seq, ack, b"", "", at);
            }
        }
    }

    /// TLS records that crossed the socket of `stream`: the ones held before go out first
    /// (their plaintext parts are known by now), these are held in turn.
    fn record(&mut self, stream: usize, direction: Direction, bytes: &[u8]) {
        let from = side(direction);
        // Records that follow each other in one direction with no plaintext part between
        // (the buffers of one vectored write, a flight of the handshake) are one packet.
        let continues = !self.held.bytes.is_empty()
            && (self.held.stream, self.held.from) == (stream, from)
            && self.streams[stream].labels[from].is_empty();
        if !continues {
            self.release();
            self.held.stream = stream;
            self.held.from = from;
            self.held.at = now_micros();
        }
        self.held.bytes.extend_from_slice(bytes);
    }

    /// Writes the records held, after any secrets waiting, with the plaintext parts handed
    /// over since as their comment.
    fn release(&mut self) {
        if self.held.bytes.is_empty() {
            return;
        }
        self.write_secrets();
        let (stream, from, at) = (self.held.stream, self.held.from, self.held.at);
        let held = std::mem::take(&mut self.held.bytes);
        let labels = std::mem::take(&mut self.streams[stream].labels[from]);
        let mut comment = std::mem::take(&mut self.comment);
        comment.clear();
        comment.push_str("TLS records");
        if !labels.is_empty() {
            let _ = write!(comment, "; plaintext handed over: {labels}");
        }
        let direction = [Direction::Sent, Direction::Received][from];
        self.data(stream, direction, &held, &comment, at);
        self.comment = comment;
        // The buffers are kept for the next records.
        self.held.bytes = held;
        self.held.bytes.clear();
        self.streams[stream].labels[from] = labels;
        self.streams[stream].labels[from].clear();
    }

    /// A Decryption Secrets Block with the key log lines that came since the last one.
    fn write_secrets(&mut self) {
        if self.secrets.is_empty() {
            return;
        }
        let mut block = std::mem::take(&mut self.block);
        block.clear();
        begin_block(&mut block, DECRYPTION_SECRETS);
        block.extend_from_slice(&TLS_KEY_LOG.to_le_bytes());
        block.extend_from_slice(&(self.secrets.len() as u32).to_le_bytes());
        block.extend_from_slice(&self.secrets);
        pad(&mut block);
        end_block(&mut block);
        self.write(&block);
        self.block = block;
        self.secrets.clear();
    }

    /// Ends `stream` with a FIN from each side.
    fn close(&mut self, stream: usize, at: u64) {
        self.release();
        let s = &self.streams[stream];
        let next = s.next;
        self.segment(stream, 0, FIN | ACK, next[0], next[1], b"", "", at);
        let after = [next[0].wrapping_add(1), next[1].wrapping_add(1)];
        self.segment(stream, 1, FIN | ACK, next[1], after[0], b"", "", at);
        self.segment(stream, 0, ACK, after[0], after[1], b"", "", at);
        let s = &mut self.streams[stream];
        s.next = after;
        s.open = false;
    }

    fn flush(&mut self) -> io::Result<()> {
        self.release();
        self.write_secrets();
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.out.flush()
    }

    fn finish(&mut self) -> io::Result<()> {
        let at = now_micros();
        for stream in 0..self.streams.len() {
            if self.streams[stream].open {
                self.close(stream, at);
            }
        }
        self.write_secrets();
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.out.flush()
    }

    /// One packet of `stream` from side `from` (0: us), as an Enhanced Packet Block.
    #[allow(clippy::too_many_arguments)]
    fn segment(
        &mut self,
        stream: usize,
        from: usize,
        flags: u8,
        seq: u32,
        ack: u32,
        payload: &[u8],
        comment: &str,
        at: u64,
    ) {
        let ends = self.streams[stream].ends;
        let (src, dst) = (ends[from], ends[1 - from]);
        let (src_ip, dst_ip) = match (src.ip(), dst.ip()) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (IpAddr::V4(a), IpAddr::V4(b)),
            (a, b) => (IpAddr::V6(to_v6(a)), IpAddr::V6(to_v6(b))),
        };
        let options: &[u8] = if flags & SYN != 0 {
            // MSS, NOP, window scale.
            let mss = (MAX_SEGMENT as u16).to_be_bytes();
            &[2, 4, mss[0], mss[1], 1, 3, 3, WINDOW_SHIFT]
        } else {
            &[]
        };
        let tcp_len = 20 + options.len() + payload.len();
        let ip_len = if src_ip.is_ipv4() { 20 } else { 40 };
        let packet_len = ip_len + tcp_len;
        let options_len = if comment.is_empty() {
            0
        } else {
            4 + comment.len() + padding(comment.len()) + 4
        };
        // Head (28), packet, padding, options, trailing length (4).
        let total = (28 + packet_len + padding(packet_len) + options_len + 4) as u32;
        let mut block = std::mem::take(&mut self.block);
        block.clear();
        block.extend_from_slice(&ENHANCED_PACKET.to_le_bytes());
        block.extend_from_slice(&total.to_le_bytes());
        block.extend_from_slice(&0u32.to_le_bytes()); // interface 0
        block.extend_from_slice(&((at >> 32) as u32).to_le_bytes());
        block.extend_from_slice(&(at as u32).to_le_bytes());
        block.extend_from_slice(&(packet_len as u32).to_le_bytes());
        block.extend_from_slice(&(packet_len as u32).to_le_bytes());
        let ip_start = block.len();
        let mut pseudo = 0u64;
        match (src_ip, dst_ip) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                self.ip_id = self.ip_id.wrapping_add(1);
                block.extend_from_slice(&[0x45, 0]);
                block.extend_from_slice(&(packet_len as u16).to_be_bytes());
                block.extend_from_slice(&self.ip_id.to_be_bytes());
                block.extend_from_slice(&[0x40, 0, 64, 6, 0, 0]); // DF, TTL 64, TCP
                block.extend_from_slice(&s.octets());
                block.extend_from_slice(&d.octets());
                let sum = fold(sum_words(&block[ip_start..]));
                block[ip_start + 10..ip_start + 12].copy_from_slice(&(!sum).to_be_bytes());
                pseudo += sum_words(&s.octets()) + sum_words(&d.octets());
                pseudo += word(6) + word(tcp_len as u16);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                block.extend_from_slice(&[0x60, 0, 0, 0]);
                block.extend_from_slice(&(tcp_len as u16).to_be_bytes());
                block.extend_from_slice(&[6, 64]); // TCP, hop limit 64
                block.extend_from_slice(&s.octets());
                block.extend_from_slice(&d.octets());
                pseudo += sum_words(&s.octets()) + sum_words(&d.octets());
                // The upper half of IPv6's 32-bit length is zero: packets are < 64 KiB.
                pseudo += word(6) + word(tcp_len as u16);
            }
            _ => unreachable!("both ends are of one family"),
        }
        let tcp_start = block.len();
        block.extend_from_slice(&src.port().to_be_bytes());
        block.extend_from_slice(&dst.port().to_be_bytes());
        block.extend_from_slice(&seq.to_be_bytes());
        block.extend_from_slice(&ack.to_be_bytes());
        block.push((((20 + options.len()) / 4) << 4) as u8);
        block.push(flags);
        block.extend_from_slice(&u16::MAX.to_be_bytes()); // window (scaled)
        block.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        block.extend_from_slice(options);
        let sum = fold(pseudo + sum_words(&block[tcp_start..]) + sum_words(payload));
        block[tcp_start + 16..tcp_start + 18].copy_from_slice(&(!sum).to_be_bytes());
        // The payload goes from the caller's slice to the writer, not through `block`.
        self.write(&block);
        self.write(payload);
        block.clear();
        block.resize(padding(packet_len), 0);
        if !comment.is_empty() {
            push_option(&mut block, OPT_COMMENT, comment.as_bytes());
            push_option(&mut block, OPT_END, b"");
        }
        block.extend_from_slice(&total.to_le_bytes());
        self.write(&block);
        self.block = block;
    }
}

fn to_v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// The parts' names as the text traces show them: `chunk size (4)`, `chunk data`.
fn push_label(out: &mut impl std::fmt::Write, part: Part) {
    let _ = match part {
        Part::ChunkSize { size } => write!(out, "chunk size ({size})"),
        other => out.write_str(other.name()),
    };
}

/// A part's label on the stack.
struct LabelText {
    bytes: [u8; 48],
    len: usize,
}

impl Default for LabelText {
    fn default() -> Self {
        LabelText {
            bytes: [0; 48],
            len: 0,
        }
    }
}

impl LabelText {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl std::fmt::Write for LabelText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        self.bytes
            .get_mut(self.len..end)
            .ok_or(std::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The Internet checksum's (RFC 1071) running sum of `bytes`, not yet folded. It sums
/// little-endian words, 32 bits at a time (a sum the compiler vectorises): the one's
/// complement sum does not depend on byte order or word width (RFC 1071 section 2), so
/// [`fold`] only has to swap the bytes of the result. Every piece summed must start at an
/// even offset of the checksummed data; only the last may be of odd length.
fn sum_words(bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(4);
    let mut sum = 0u64;
    for word in &mut words {
        sum += u64::from(u32::from_le_bytes(word.try_into().expect("4 bytes")));
    }
    let mut rest = words.remainder().chunks_exact(2);
    for pair in &mut rest {
        sum += u64::from(u16::from_le_bytes([pair[0], pair[1]]));
    }
    if let [last] = rest.remainder() {
        // Padded with a zero byte after it: the low byte of a little-endian word.
        sum += u64::from(*last);
    }
    sum
}

/// A big-endian 16-bit value as [`sum_words`] counts it.
fn word(value: u16) -> u64 {
    u64::from(value.swap_bytes())
}

/// The 16-bit one's complement sum, in network byte order's value.
fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    (sum as u16).swap_bytes()
}

fn padding(len: usize) -> usize {
    (4 - len % 4) % 4
}

fn pad(block: &mut Vec<u8>) {
    block.resize(block.len() + padding(block.len()), 0);
}

/// A block's type and a placeholder for its length.
fn begin_block(block: &mut Vec<u8>, kind: u32) {
    block.extend_from_slice(&kind.to_le_bytes());
    block.extend_from_slice(&0u32.to_le_bytes());
}

/// The block's trailing length, and the same length in its head.
fn end_block(block: &mut Vec<u8>) {
    end_block_at(block, 0)
}

fn end_block_at(block: &mut Vec<u8>, start: usize) {
    let total = (block.len() - start + 4) as u32;
    block.extend_from_slice(&total.to_le_bytes());
    block[start + 4..start + 8].copy_from_slice(&total.to_le_bytes());
}

fn push_option(block: &mut Vec<u8>, code: u16, value: &[u8]) {
    block.extend_from_slice(&code.to_le_bytes());
    block.extend_from_slice(&(value.len() as u16).to_le_bytes());
    block.extend_from_slice(value);
    block.resize(block.len() + padding(value.len()), 0);
}

impl Drop for Capture {
    fn drop(&mut self) {
        // The last handle is gone: the capture is made whole, as far as it can be.
        let _ = self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_internet_checksum_of_rfc_1071s_example() {
        // RFC 1071 section 3: these eight bytes sum to 0xddf2 (before the complement).
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum_words(&bytes)), 0xddf2);
        // Split anywhere on an even boundary, the sums add up; an odd tail is padded.
        assert_eq!(
            fold(sum_words(&bytes[..2]) + sum_words(&bytes[2..])),
            0xddf2
        );
        assert_eq!(fold(sum_words(&[0xab])), 0xab00);
        let long: Vec<u8> = (0..1001u32).map(|i| (i * 31) as u8).collect();
        // The textbook way: big-endian 16-bit words, folded.
        let mut by_pairs: u64 = long
            .chunks(2)
            .map(|p| (u64::from(p[0]) << 8) | u64::from(*p.get(1).unwrap_or(&0)))
            .sum();
        while by_pairs > 0xffff {
            by_pairs = (by_pairs & 0xffff) + (by_pairs >> 16);
        }
        assert_eq!(fold(sum_words(&long)), by_pairs as u16);
        assert_eq!(fold(word(0x1234)), 0x1234);
    }

    /// The blocks of a capture as (type, body), checking that each is whole: its two
    /// lengths agree and it ends on a 4-byte boundary.
    fn blocks(file: &[u8]) -> Vec<(u32, &[u8])> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < file.len() {
            let word = |i: usize| u32::from_le_bytes(file[i..i + 4].try_into().unwrap());
            let (kind, len) = (word(at), word(at + 4) as usize);
            assert_eq!(len % 4, 0, "block at {at} of length {len}");
            assert_eq!(word(at + len - 4) as usize, len, "block at {at}");
            out.push((kind, &file[at + 8..at + len - 4]));
            at += len;
        }
        out
    }

    /// A Write that can be read back after the capture took it.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn blocks_are_whole_and_secrets_come_before_the_records_they_open() {
        let out = Shared::default();
        let mut trace = PcapTrace::new(out.clone()).unwrap();
        let local = "127.0.0.1:40000".parse().unwrap();
        let remote = "127.0.0.1:443".parse().unwrap();
        trace.connected(&TracedConnection::new(local, remote, true, false));
        let tap = trace.wire_tap().unwrap();
        tap.wire(Direction::Sent, b"client hello");
        tap.wire(Direction::Received, b"server hello");
        tap.secret("CLIENT_TRAFFIC_SECRET_0 00 11");
        trace.bytes(
            Direction::Received,
            Part::StatusLine,
            b"HTTP/1.1 200 OK\r\n",
        );
        trace.bytes(Direction::Received, Part::Header, b"A: b\r\n");
        trace.bytes(Direction::Received, Part::Header, b"C: d\r\n");
        trace.finish().unwrap();
        let file = out.0.lock().unwrap().clone();
        let blocks = blocks(&file);
        let kinds: Vec<u32> = blocks.iter().map(|(kind, _)| *kind).collect();
        assert_eq!(
            kinds,
            [
                SECTION_HEADER,
                INTERFACE_DESCRIPTION,
                ENHANCED_PACKET, // SYN
                ENHANCED_PACKET, // SYN-ACK
                ENHANCED_PACKET, // ACK
                ENHANCED_PACKET, // client hello
                DECRYPTION_SECRETS,
                ENHANCED_PACKET, // server hello, held until the secret came
                ENHANCED_PACKET, // FIN
                ENHANCED_PACKET, // FIN
                ENHANCED_PACKET, // ACK
            ]
        );
        let secrets = blocks[6].1;
        assert_eq!(&secrets[..4], &TLS_KEY_LOG.to_le_bytes());
        assert_eq!(&secrets[8..39], b"CLIENT_TRAFFIC_SECRET_0 00 11\n\0");
        // The server hello's comment names the plaintext parts, a run of headers once.
        let packet = blocks[7].1;
        let text = String::from_utf8_lossy(packet);
        assert!(text.contains("server hello"), "{text}");
        assert!(
            text.contains("TLS records; plaintext handed over: status line, header\0"),
            "{text}"
        );
    }

    #[test]
    fn a_long_silence_of_the_server_is_acknowledged_well_inside_the_window() {
        let out = Shared::default();
        let mut trace = PcapTrace::new(out.clone()).unwrap();
        let local = "10.0.0.1:40000".parse().unwrap();
        let remote = "10.0.0.2:8080".parse().unwrap();
        trace.connected(&TracedConnection::new(local, remote, false, false));
        let data = vec![7u8; 30_000];
        for _ in 0..10 {
            trace.bytes(Direction::Sent, Part::ChunkData, &data);
        }
        trace.finish().unwrap();
        let file = out.0.lock().unwrap().clone();
        // (source port, flags, seq, ack, payload length) of every packet.
        let packets: Vec<(u16, u8, u32, u32, usize)> = blocks(&file)
            .into_iter()
            .filter(|(kind, _)| *kind == ENHANCED_PACKET)
            .map(|(_, body)| {
                let len = u32::from_le_bytes(body[12..16].try_into().unwrap()) as usize;
                let ip = &body[20..20 + len];
                let tcp = &ip[20..];
                let be16 = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
                let be32 = |b: &[u8]| u32::from_be_bytes(b[..4].try_into().unwrap());
                let header = usize::from(tcp[12] >> 4) * 4;
                (
                    be16(tcp),
                    tcp[13],
                    be32(&tcp[4..]),
                    be32(&tcp[8..]),
                    tcp.len() - header,
                )
            })
            .collect();
        let acks: Vec<u32> = packets
            .iter()
            .filter(|p| p.0 == 8080 && p.1 == ACK && p.4 == 0)
            .map(|p| p.3)
            .collect();
        // The server sends nothing but its acknowledgements, made up once 64 KiB (in unit
        // tests) are unacknowledged: after 90,000, 180,000 and 270,000 bytes.
        let start = CLIENT_ISN.wrapping_add(1);
        assert_eq!(
            acks,
            [90_000, 180_000, 270_000].map(|n| start.wrapping_add(n)),
            "{packets:?}"
        );
        // Sequence numbers follow the bytes: each data packet starts where the last ended.
        let mut next = start;
        for p in packets.iter().filter(|p| p.0 == 40000 && p.4 > 0) {
            assert_eq!(p.2, next);
            next = next.wrapping_add(p.4 as u32);
        }
        assert_eq!(next, start.wrapping_add(300_000));
    }

    #[test]
    fn a_handle_whose_stream_ended_writes_nowhere_else() {
        let out = Shared::default();
        let mut first = PcapTrace::new(out.clone()).unwrap();
        let mut second = first.clone();
        let one = "10.0.0.1:1000".parse().unwrap();
        let two = "10.0.0.1:2000".parse().unwrap();
        let server = "10.0.0.2:80".parse().unwrap();
        first.connected(&TracedConnection::new(one, server, false, false));
        first.finish().unwrap();
        // The second connection takes the first's place in the capture.
        second.connected(&TracedConnection::new(two, server, false, false));
        first.bytes(Direction::Sent, Part::Body, b"late");
        second.bytes(Direction::Sent, Part::Body, b"mine");
        second.finish().unwrap();
        let file = out.0.lock().unwrap().clone();
        let with_payload: Vec<&[u8]> = blocks(&file)
            .into_iter()
            // Data packets are the ones with PSH (IPv4 header, then TCP's flags at 13).
            .filter(|(kind, body)| *kind == ENHANCED_PACKET && body[20 + 20 + 13] & PSH != 0)
            .map(|(_, body)| body)
            .collect();
        assert_eq!(with_payload.len(), 1);
        let text = String::from_utf8_lossy(with_payload[0]);
        assert!(text.contains("mine") && !text.contains("late"), "{text}");
    }
}
