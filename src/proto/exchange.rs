//! One request/response exchange as a sans-I/O state machine: the driver asks it what it
//! wants next ([`Exchange::poll_send`]), moves bytes, and reports back how many moved.
//!
//! The send side and the receive side run side by side, because a server may answer
//! before the body is complete. The rules, in one place:
//!
//! 1. The head is written into the send region when the exchange starts and is sent first.
//! 2. After a range has been sent in full, the payload is free: the driver fills it from the
//!    source. A fill of `n > 0` bytes becomes one chunk (or, with Content-Length, `n` raw
//!    bytes); a fill of 0 is the end of the source and becomes the last chunk.
//! 3. With Content-Length, fills never ask for more than the bytes still owed; once they are
//!    read, one more 1-byte fill must return 0 before the last bytes go out, so a source
//!    longer than stated is an error before the server sees a complete body.
//! 4. Response bytes are parsed whenever they arrive. Interim (1xx) responses are skipped.
//!    A final response head before the body is complete stops the send side for good,
//!    unless [`policy::keeps_sending_after_early_answer`] says the body goes on (a 2xx):
//!    then the body is sent to its end, and [`Exchange::answered_early`] says what came.
//! 5. After the final head, the remaining bytes are body, decoded on demand.
//! 6. With `Expect: 100-continue`, the body waits after the head until `100 Continue`
//!    arrives or the driver says the wait is over; a final response instead means the
//!    body is never sent.
//! 7. Coalescing ([`Exchange::new_coalescing`], for sources whose reads return at once):
//!    the head is not sent alone but waits for the first fill and goes out in the same
//!    contiguous write as the first chunk (or body bytes), moved up against it in the
//!    buffer's lead; a fill shorter than a chunk is followed by one more, and when that
//!    one ends the source, the last chunk is written right after the data chunk. A small
//!    body is then one write, head to last chunk. The bytes on the wire are the same.

use std::ops::Range;

use crate::buffer::FixedBuf;
use crate::error::{Progress, RequestError};
use crate::proto::body::{BodyDecoder, BodyEvent};
use crate::proto::framer::{frame_chunk, write_last_chunk, write_last_chunk_at};
use crate::proto::head::{BodyFraming, HeaderField, RequestHead};
use crate::proto::limits::Limits;
use crate::proto::peer_error::PeerError;
use crate::proto::policy;
use crate::proto::response::{
    BodyFraming as ResponseFraming, HeadParse, ResponseHead, parse_response_head,
};
use crate::trace::{LineBlock, LineLabeller, Part};

/// What the send side wants from the driver next.
#[derive(Debug)]
pub enum SendWant<'b> {
    /// Write these bytes to the transport, then call [`Exchange::on_sent`].
    Write(&'b [u8]),
    /// Read the source into this slice, then call [`Exchange::on_filled`].
    Fill(&'b mut [u8]),
    /// Nothing: the request is sent, or sending stopped because the response came early.
    Idle,
}

/// One step of the response body, as ranges into the receive region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyStep {
    /// Body bytes at this range of [`FixedBuf::recv_region`].
    Data(Range<usize>),
    /// More bytes must be received first.
    NeedMore,
    /// The body is complete.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterWrite {
    Fill,
    AwaitContinue,
    Finished,
}

/// What a range being written holds, in order, for progress and the wire trace: the
/// request head, then a chunk or unframed body bytes, then the last chunk; any of the three
/// may be empty (rule 7 puts more than one in a write).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outgoing {
    /// `[range.start, head_end)` is the request head.
    head_end: usize,
    middle: Middle,
    /// The body bytes, within the middle.
    payload: Range<usize>,
    /// `[last_start, range.end)` is the last chunk and its trailer section.
    last_start: usize,
}

/// What lies between the head and the last chunk of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Middle {
    Nothing,
    /// A chunk: its size line, the payload, CRLF.
    Chunk {
        size: u64,
    },
    /// Unframed body bytes (Content-Length).
    Body,
}

impl Outgoing {
    fn head(range: &Range<usize>) -> Outgoing {
        Outgoing {
            head_end: range.end,
            middle: Middle::Nothing,
            payload: range.end..range.end,
            last_start: range.end,
        }
    }

    fn last_chunk(range: &Range<usize>) -> Outgoing {
        Outgoing {
            head_end: range.start,
            middle: Middle::Nothing,
            payload: range.start..range.start,
            last_start: range.start,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SendState {
    Writing {
        range: Range<usize>,
        written: usize,
        out: Outgoing,
        then: AfterWrite,
    },
    Fill,
    /// `Expect: 100-continue` was sent: the body waits for 100, a final response, or the
    /// driver's timeout.
    AwaitContinue,
    /// Content-Length: all owed bytes are read and wait at `pending`; the source must be at its end.
    VerifyEnd {
        pending: Range<usize>,
    },
    /// Chunked, coalescing (rule 7): `filled` bytes of a chunk are read and the source gave
    /// less than a chunk: one more fill says whether it ended.
    FillRest {
        filled: usize,
    },
    Finished,
    StoppedByResponse,
}

#[derive(Debug)]
enum RecvState {
    Head,
    Body(BodyDecoder),
}

/// A request/response exchange. See the module docs for its rules.
#[derive(Debug)]
pub struct Exchange {
    send: SendState,
    recv: RecvState,
    framing: BodyFraming,
    trailers: Vec<HeaderField>,
    limits: Limits,
    request_was_head: bool,
    progress: Progress,
    recv_start: usize,
    recv_end: usize,
    interim_responses: u32,
    framing_of_response: Option<ResponseFraming>,
    /// The final response asked to close the connection (or is HTTP/1.0 without keep-alive).
    response_wants_close: bool,
    /// The status of a final response that came before the body was complete, while the
    /// body goes on (rule 4).
    answered_early: Option<u16>,
    /// Rule 7: the head, written and not yet sent, waiting to go out with the first chunk.
    head_pending: Option<Range<usize>>,
    coalescing: bool,
    sent_lines: LineLabeller,
    head_len: u64,
}

impl Exchange {
    /// Starts an exchange: writes `head` into the send region of `buf`, to be sent first.
    ///
    /// `trailers` go after the last chunk (chunked framing only). Fails with the size needed
    /// when the send region cannot hold the head.
    pub fn new(
        head: &RequestHead,
        trailers: Vec<HeaderField>,
        limits: Limits,
        buf: &mut FixedBuf,
    ) -> Result<Exchange, usize> {
        Exchange::start(head, trailers, limits, buf, false)
    }

    /// Like [`Exchange::new`], for a source whose reads return at once (a file, memory):
    /// rule 7 puts the head and the first chunk in one write, and the last chunk in the
    /// write of the last data chunk, so a small body is one write (one packet). Not for a
    /// stream that may be idle for long: its head would wait for its first byte. Falls back
    /// to [`Exchange::new`]'s order when the buffer has no [`FixedBuf::lead`] for the head
    /// or the head expects `100 Continue`.
    pub fn new_coalescing(
        head: &RequestHead,
        trailers: Vec<HeaderField>,
        limits: Limits,
        buf: &mut FixedBuf,
    ) -> Result<Exchange, usize> {
        Exchange::start(head, trailers, limits, buf, true)
    }

    fn start(
        head: &RequestHead,
        trailers: Vec<HeaderField>,
        limits: Limits,
        buf: &mut FixedBuf,
        coalesce: bool,
    ) -> Result<Exchange, usize> {
        let framing = head.framing();
        let coalescing = coalesce
            && !framing.is_empty()
            && !head.expects_continue()
            && buf.lead() >= head.encoded_len();
        let (send, head_pending) = if coalescing {
            // Right-aligned against the room of the largest size line; moved up to the
            // actual one when the first chunk is framed.
            let lead = buf.lead();
            let at = lead - head.encoded_len();
            let written = head.write_to(&mut buf.send_region_mut()[at..lead])?;
            let range = at + written.start..at + written.end;
            (SendState::Fill, Some(range))
        } else {
            let range = head.write_to(buf.send_region_mut())?;
            let then = if framing.is_empty() {
                AfterWrite::Finished
            } else if head.expects_continue() {
                AfterWrite::AwaitContinue
            } else {
                AfterWrite::Fill
            };
            let out = Outgoing::head(&range);
            let send = SendState::Writing {
                range,
                written: 0,
                out,
                then,
            };
            (send, None)
        };
        Ok(Exchange {
            send,
            recv: RecvState::Head,
            framing,
            trailers,
            limits,
            request_was_head: head.method().eq_ignore_ascii_case("HEAD"),
            progress: Progress::default(),
            recv_start: 0,
            recv_end: 0,
            interim_responses: 0,
            framing_of_response: None,
            response_wants_close: false,
            answered_early: None,
            head_pending,
            coalescing,
            sent_lines: LineLabeller::default(),
            head_len: head.encoded_len() as u64,
        })
    }

    /// Bytes moved so far.
    pub fn progress(&self) -> Progress {
        self.progress
    }

    /// True once the whole request, last chunk included, has been accepted by the transport.
    pub fn request_sent(&self) -> bool {
        self.send == SendState::Finished
    }

    /// True when a final response arrived before the request body was complete, and the
    /// body stopped there.
    pub fn stopped_by_response(&self) -> bool {
        self.send == SendState::StoppedByResponse
    }

    /// The status of a final response that arrived before the request body was complete
    /// while the body goes on to its end (rule 4); `None` if none did.
    pub fn answered_early(&self) -> Option<u16> {
        self.answered_early
    }

    /// Adds trailer fields made once the body is read (a checksum, say). They go out with
    /// the last chunk, so this must come before the fill that ends the source.
    pub fn add_trailers(&mut self, fields: impl IntoIterator<Item = HeaderField>) {
        self.trailers.extend(fields);
    }

    /// True while the body waits for `100 Continue` (rule 6).
    pub fn awaits_continue(&self) -> bool {
        self.send == SendState::AwaitContinue
    }

    /// The server did not answer `Expect: 100-continue` in time: send the body anyway, as
    /// RFC 9110 section 10.1.1 asks of clients.
    pub fn continue_timed_out(&mut self) {
        if self.send == SendState::AwaitContinue {
            self.send = SendState::Fill;
        }
    }

    /// True once the final response head has been parsed.
    pub fn has_response(&self) -> bool {
        matches!(self.recv, RecvState::Body(_))
    }

    /// Interim (1xx) responses skipped so far.
    pub fn interim_responses(&self) -> u32 {
        self.interim_responses
    }

    /// What the send side wants next.
    pub fn poll_send<'b>(&self, buf: &'b mut FixedBuf) -> SendWant<'b> {
        match &self.send {
            SendState::Writing { range, written, .. } => {
                SendWant::Write(&buf.send_region()[range.start + written..range.end])
            }
            SendState::Fill => {
                let capacity = match self.framing {
                    BodyFraming::Chunked | BodyFraming::None => buf.payload_capacity(),
                    BodyFraming::Length(len) => {
                        let owed = len - self.progress.body_bytes_read;
                        buf.payload_capacity()
                            .min(usize::try_from(owed).unwrap_or(usize::MAX))
                    }
                };
                let start = buf.payload_offset();
                SendWant::Fill(&mut buf.send_region_mut()[start..start + capacity])
            }
            SendState::FillRest { filled } => {
                let start = buf.payload_offset();
                let end = start + buf.payload_capacity();
                SendWant::Fill(&mut buf.send_region_mut()[start + filled..end])
            }
            SendState::VerifyEnd { .. } => {
                // One byte past the largest payload: the tail, unused without chunk framing.
                let probe = buf.payload_offset() + buf.payload_capacity();
                SendWant::Fill(&mut buf.send_region_mut()[probe..probe + 1])
            }
            SendState::AwaitContinue | SendState::Finished | SendState::StoppedByResponse => {
                SendWant::Idle
            }
        }
    }

    /// Labels `sent`, the bytes the transport just accepted from [`SendWant::Write`], for
    /// the wire trace. Call it before [`Exchange::on_sent`].
    pub fn label_sent(&mut self, sent: &[u8], emit: &mut dyn FnMut(Part, &[u8])) {
        let SendState::Writing {
            range,
            written,
            out,
            ..
        } = &self.send
        else {
            return;
        };
        let start = range.start + written;
        let end = start + sent.len();
        let piece = |from: usize, to: usize| {
            let (from, to) = (from.max(start), to.min(end));
            (from < to).then(|| &sent[from - start..to - start])
        };
        if let Some(bytes) = piece(range.start, out.head_end) {
            let head = LineBlock::Head {
                start_line: Part::RequestLine,
            };
            self.sent_lines.label(head, bytes, emit);
            if end >= out.head_end {
                self.sent_lines = LineLabeller::default();
            }
        }
        match out.middle {
            Middle::Nothing => {}
            Middle::Body => {
                if let Some(bytes) = piece(out.payload.start, out.payload.end) {
                    emit(Part::Body, bytes);
                }
            }
            Middle::Chunk { size } => {
                let sections = [
                    (out.head_end, out.payload.start, Part::ChunkSize { size }),
                    (out.payload.start, out.payload.end, Part::ChunkData),
                    (out.payload.end, out.last_start, Part::ChunkEnd),
                ];
                for (from, to, part) in sections {
                    if let Some(bytes) = piece(from, to) {
                        emit(part, bytes);
                    }
                }
            }
        }
        if let Some(bytes) = piece(out.last_start, range.end) {
            self.sent_lines.label(LineBlock::LastChunk, bytes, emit);
        }
    }

    /// True when the exchange ended so that the connection can carry another: the request
    /// went out whole, the response body was read to its end with nothing after it, and the
    /// server did not ask to close.
    pub fn reusable(&self) -> bool {
        self.send == SendState::Finished
            && !self.response_wants_close
            && self.recv_start == self.recv_end
            && matches!(&self.recv, RecvState::Body(decoder) if decoder.is_done())
    }

    /// How the response body is framed, once the final head is in.
    pub fn response_framing(&self) -> Option<ResponseFraming> {
        self.framing_of_response
    }

    /// The length of the request head (the first bytes of what is sent).
    pub fn head_len(&self) -> u64 {
        self.head_len
    }

    /// The transport accepted `n` bytes of the slice from [`SendWant::Write`].
    pub fn on_sent(&mut self, n: usize) {
        let SendState::Writing {
            range,
            written,
            out,
            then,
        } = &mut self.send
        else {
            debug_assert!(false, "on_sent without a pending write");
            return;
        };
        let before = range.start + *written;
        *written += n;
        let after = range.start + *written;
        debug_assert!(after <= range.end);
        let payload = &out.payload;
        let body_sent = after
            .min(payload.end)
            .saturating_sub(before.max(payload.start));
        self.progress.body_bytes_sent += body_sent as u64;
        self.progress.wire_bytes_sent += n as u64;
        if after == range.end {
            self.sent_lines = LineLabeller::default();
            self.send = match then {
                AfterWrite::Fill => SendState::Fill,
                // A final answer that lets the body go on came while the head was written.
                AfterWrite::AwaitContinue if self.answered_early.is_some() => SendState::Fill,
                AfterWrite::AwaitContinue => SendState::AwaitContinue,
                AfterWrite::Finished => SendState::Finished,
            };
        }
    }

    /// The source gave `n` bytes into the slice from [`SendWant::Fill`] (0: end of source).
    pub fn on_filled(&mut self, buf: &mut FixedBuf, n: usize) -> Result<(), RequestError> {
        match (&self.send, self.framing) {
            (SendState::Fill | SendState::FillRest { .. }, BodyFraming::Chunked) => {
                let filled = match self.send {
                    SendState::FillRest { filled } => filled,
                    _ => 0,
                };
                self.progress.body_bytes_read += n as u64;
                let total = filled + n;
                if n > 0 && self.coalescing && total < buf.payload_capacity() {
                    // Rule 7: a short read of a file is usually its end; one more fill
                    // tells, so the last chunk can go in the same write.
                    self.send = SendState::FillRest { filled: total };
                    return Ok(());
                }
                self.send = if total > 0 {
                    self.chunk_write(buf, total, n == 0)
                } else {
                    self.last_chunk_write(buf)?
                };
            }
            (SendState::Fill, BodyFraming::Length(expected)) => {
                if n == 0 {
                    return Err(RequestError::SourceShorterThanLength {
                        expected,
                        actual: self.progress.body_bytes_read,
                    });
                }
                self.progress.body_bytes_read += n as u64;
                let start = buf.payload_offset();
                let pending = start..start + n;
                self.send = if self.progress.body_bytes_read == expected {
                    SendState::VerifyEnd { pending }
                } else {
                    self.body_write(buf, pending, AfterWrite::Fill)
                };
            }
            (SendState::VerifyEnd { pending }, BodyFraming::Length(expected)) => {
                if n != 0 {
                    return Err(RequestError::SourceLongerThanLength { expected });
                }
                let pending = pending.clone();
                self.send = self.body_write(buf, pending, AfterWrite::Finished);
            }
            (state, _) => debug_assert!(false, "on_filled in {state:?}"),
        }
        Ok(())
    }

    /// Moves the pending head (rule 7), if there is one, so that it ends at `end`, right
    /// before what goes out with it; returns where it lies.
    fn place_head(&mut self, buf: &mut FixedBuf, end: usize) -> Option<Range<usize>> {
        let head = self.head_pending.take()?;
        let start = end - head.len();
        buf.send_region_mut().copy_within(head, start);
        Some(start..end)
    }

    /// The write of a chunk of the first `len` payload bytes: after the pending head, if
    /// any, and followed by the last chunk when the source ended and it fits.
    fn chunk_write(&mut self, buf: &mut FixedBuf, len: usize, source_ended: bool) -> SendState {
        let frame = frame_chunk(buf, len);
        let head = self.place_head(buf, frame.range.start);
        let start = head.as_ref().map_or(frame.range.start, |h| h.start);
        let last = if source_ended {
            write_last_chunk_at(buf, frame.range.end, &self.trailers).ok()
        } else {
            None
        };
        let end = last.as_ref().map_or(frame.range.end, |l| l.end);
        SendState::Writing {
            range: start..end,
            written: 0,
            out: Outgoing {
                head_end: frame.range.start,
                middle: Middle::Chunk { size: len as u64 },
                payload: frame.payload,
                last_start: frame.range.end,
            },
            // Without room for the last chunk here, the next fill (at the end again)
            // writes it on its own.
            then: if last.is_some() {
                AfterWrite::Finished
            } else {
                AfterWrite::Fill
            },
        }
    }

    /// The write of the last chunk: after the pending head, if any, when it fits there;
    /// else the head goes alone and the last chunk follows.
    fn last_chunk_write(&mut self, buf: &mut FixedBuf) -> Result<SendState, RequestError> {
        if let Some(head) = self.head_pending.take() {
            let out = Outgoing::head(&head);
            return Ok(match write_last_chunk_at(buf, head.end, &self.trailers) {
                Ok(last) => SendState::Writing {
                    range: head.start..last.end,
                    written: 0,
                    out,
                    then: AfterWrite::Finished,
                },
                Err(_) => SendState::Writing {
                    range: head,
                    written: 0,
                    out,
                    then: AfterWrite::Fill,
                },
            });
        }
        let range = write_last_chunk(buf, &self.trailers).map_err(|required| {
            RequestError::InvalidOption {
                option: "trailers",
                reason: format!(
                    "they need {required} bytes, more than the buffer's {}",
                    buf.send_region().len()
                ),
            }
        })?;
        let out = Outgoing::last_chunk(&range);
        Ok(SendState::Writing {
            range,
            written: 0,
            out,
            then: AfterWrite::Finished,
        })
    }

    /// The write of unframed body bytes at `pending`, after the pending head, if any.
    fn body_write(
        &mut self,
        buf: &mut FixedBuf,
        pending: Range<usize>,
        then: AfterWrite,
    ) -> SendState {
        let head = self.place_head(buf, pending.start);
        SendState::Writing {
            range: head.as_ref().map_or(pending.start, |h| h.start)..pending.end,
            written: 0,
            out: Outgoing {
                head_end: pending.start,
                middle: Middle::Body,
                payload: pending.clone(),
                last_start: pending.end,
            },
            then,
        }
    }

    /// Where the next response bytes go. Pending bytes are first moved to the front, so the
    /// space is as large as it can be; it is empty only if the limits exceed the region.
    pub fn recv_space<'b>(&mut self, buf: &'b mut FixedBuf) -> &'b mut [u8] {
        let region = buf.recv_region_mut();
        if self.recv_start > 0 {
            region.copy_within(self.recv_start..self.recv_end, 0);
            self.recv_end -= self.recv_start;
            self.recv_start = 0;
        }
        &mut region[self.recv_end..]
    }

    /// `n` bytes were received into the slice from [`Exchange::recv_space`]. Returns the
    /// final response head when these bytes complete it.
    pub fn on_received(
        &mut self,
        buf: &FixedBuf,
        n: usize,
    ) -> Result<Option<ResponseHead>, PeerError> {
        self.on_received_with(buf, n, &mut |_, _| {})
    }

    /// [`Exchange::on_received`], passing each parsed head line to `emit` for the wire trace.
    pub fn on_received_with(
        &mut self,
        buf: &FixedBuf,
        n: usize,
        emit: &mut dyn FnMut(Part, &[u8]),
    ) -> Result<Option<ResponseHead>, PeerError> {
        self.recv_end += n;
        self.progress.wire_bytes_received += n as u64;
        if !matches!(self.recv, RecvState::Head) {
            return Ok(None);
        }
        loop {
            let pending = &buf.recv_region()[self.recv_start..self.recv_end];
            match parse_response_head(pending, self.request_was_head, &self.limits)? {
                HeadParse::Partial => return Ok(None),
                HeadParse::Interim { consumed, status } => {
                    if status == 100 && self.send == SendState::AwaitContinue {
                        self.send = SendState::Fill;
                    }
                    label_head(Part::InterimStatusLine, &pending[..consumed], emit);
                    self.recv_start += consumed;
                    self.interim_responses += 1;
                    if self.interim_responses > self.limits.max_interim_responses {
                        return Err(PeerError::TooManyInterimResponses {
                            limit: self.limits.max_interim_responses,
                        });
                    }
                }
                HeadParse::Final {
                    consumed,
                    head,
                    framing,
                } => {
                    label_head(Part::StatusLine, &pending[..consumed], emit);
                    self.recv_start += consumed;
                    self.recv = RecvState::Body(BodyDecoder::new(framing, &self.limits));
                    self.framing_of_response = Some(framing);
                    self.response_wants_close = head.wants_close();
                    if self.send != SendState::Finished {
                        let status = head.status.as_u16();
                        if policy::keeps_sending_after_early_answer(status) {
                            self.answered_early = Some(status);
                            if self.send == SendState::AwaitContinue {
                                self.send = SendState::Fill;
                            }
                        } else {
                            self.send = SendState::StoppedByResponse;
                        }
                    }
                    return Ok(Some(head));
                }
            }
        }
    }

    /// The peer closed its side. Before a final head that is an error; after it, the body
    /// decoder decides (the end of a close-delimited body, or a truncated one).
    pub fn on_peer_closed(&mut self) -> Result<(), Option<PeerError>> {
        match &mut self.recv {
            RecvState::Head => Err(None),
            RecvState::Body(decoder) => decoder.on_eof().map_err(Some),
        }
    }

    /// Decodes the next step of the response body from the bytes received so far.
    pub fn decode_body(&mut self, buf: &FixedBuf) -> Result<BodyStep, PeerError> {
        self.decode_body_with(buf, &mut |_, _| {})
    }

    /// [`Exchange::decode_body`], passing every consumed byte, labelled, to `emit`.
    pub fn decode_body_with(
        &mut self,
        buf: &FixedBuf,
        emit: &mut dyn FnMut(Part, &[u8]),
    ) -> Result<BodyStep, PeerError> {
        let RecvState::Body(decoder) = &mut self.recv else {
            return Ok(BodyStep::NeedMore);
        };
        let pending = &buf.recv_region()[self.recv_start..self.recv_end];
        let (consumed, event) = decoder.decode_with(pending, emit)?;
        let step = match event {
            BodyEvent::Data(data) => {
                let start = self.recv_start + consumed - data.len();
                BodyStep::Data(start..start + data.len())
            }
            BodyEvent::NeedMore => BodyStep::NeedMore,
            BodyEvent::End => BodyStep::End,
        };
        self.recv_start += consumed;
        Ok(step)
    }
}

/// Passes the lines of a received head, labelled, to the trace.
fn label_head(start_line: Part, head: &[u8], emit: &mut dyn FnMut(Part, &[u8])) {
    LineLabeller::default().label(LineBlock::Head { start_line }, head, emit);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Target;

    fn exchange(
        framing: BodyFraming,
        capacity: usize,
        trailers: Vec<HeaderField>,
    ) -> (Exchange, FixedBuf) {
        let target = Target::parse("http://h/u").unwrap();
        let mut head = RequestHead::new("PUT", &target).unwrap();
        head.push(HeaderField::new("User-Agent", "t").unwrap())
            .unwrap();
        head.set_framing(framing);
        let mut buf = FixedBuf::new(capacity, 256, head.encoded_len());
        let ex = Exchange::new(&head, trailers, Limits::default(), &mut buf).unwrap();
        (ex, buf)
    }

    /// Drives the send side to the end with `source`, taking at most `write_max` bytes a
    /// write; returns the wire bytes.
    fn run_send(
        ex: &mut Exchange,
        buf: &mut FixedBuf,
        source: &mut dyn std::io::Read,
        write_max: usize,
    ) -> Result<Vec<u8>, RequestError> {
        let mut wire = Vec::new();
        loop {
            match ex.poll_send(buf) {
                SendWant::Write(bytes) => {
                    let n = bytes.len().min(write_max);
                    wire.extend_from_slice(&bytes[..n]);
                    ex.on_sent(n);
                }
                SendWant::Fill(space) => {
                    let n = source.read(space).unwrap();
                    ex.on_filled(buf, n)?;
                }
                SendWant::Idle => return Ok(wire),
            }
        }
    }

    /// Trace labels, adjacent pieces of one part merged.
    type Labels = Vec<(Part, Vec<u8>)>;

    /// Runs the send side to the end with `coalescing` on or off, at most `write_max` bytes
    /// a write; returns the wire bytes, the number of writes, and the trace labels with
    /// adjacent pieces of one part merged.
    fn send_labelled(
        framing: BodyFraming,
        coalescing: bool,
        body: &[u8],
        trailers: Vec<HeaderField>,
        write_max: usize,
    ) -> (Vec<u8>, usize, Labels) {
        let target = Target::parse("http://h/u").unwrap();
        let mut head = RequestHead::new("PUT", &target).unwrap();
        head.set_framing(framing);
        let mut buf = FixedBuf::with_lead(16, 64, head.encoded_len());
        let mut ex = if coalescing {
            Exchange::new_coalescing(&head, trailers, Limits::default(), &mut buf).unwrap()
        } else {
            Exchange::new(&head, trailers, Limits::default(), &mut buf).unwrap()
        };
        let (mut wire, mut writes, mut labels) = (Vec::new(), 0, Labels::new());
        let mut source = body;
        loop {
            match ex.poll_send(&mut buf) {
                SendWant::Write(bytes) => {
                    let n = bytes.len().min(write_max);
                    let sent = bytes[..n].to_vec();
                    wire.extend_from_slice(&sent);
                    ex.label_sent(&sent, &mut |part, piece| match labels.last_mut() {
                        Some((last, bytes)) if *last == part => bytes.extend_from_slice(piece),
                        _ => labels.push((part, piece.to_vec())),
                    });
                    ex.on_sent(n);
                    writes += 1;
                }
                SendWant::Fill(space) => {
                    let n = std::io::Read::read(&mut source, space).unwrap();
                    ex.on_filled(&mut buf, n).unwrap();
                }
                SendWant::Idle => break,
            }
        }
        assert!(ex.request_sent());
        assert_eq!(ex.progress().body_bytes_sent, body.len() as u64);
        assert_eq!(ex.progress().wire_bytes_sent, wire.len() as u64);
        (wire, writes, labels)
    }

    #[test]
    fn coalescing_sends_the_same_bytes_in_fewer_writes() {
        let trailer = || vec![HeaderField::new("X-Sum", "abc").unwrap()];
        let long_trailer = || vec![HeaderField::new("X-Long", "t".repeat(40)).unwrap()];
        // (framing, body, trailers, writes when coalescing)
        let cases: Vec<(BodyFraming, &[u8], Vec<HeaderField>, usize)> = vec![
            (BodyFraming::Chunked, b"", vec![], 1),
            (BodyFraming::Chunked, b"abc", vec![], 1),
            (BodyFraming::Chunked, b"abc", trailer(), 1),
            // A full first chunk: the last chunk follows on its own.
            (BodyFraming::Chunked, b"1234567890abcdef", vec![], 2),
            (BodyFraming::Chunked, b"1234567890abcdefxyz", vec![], 2),
            // Trailers too long to fit after the chunk: written alone, same bytes.
            (BodyFraming::Chunked, b"abc", long_trailer(), 2),
            (BodyFraming::Length(3), b"abc", vec![], 1),
            (BodyFraming::Length(19), b"1234567890abcdefxyz", vec![], 2),
        ];
        for (framing, body, trailers, coalesced_writes) in cases {
            let (plain, plain_writes, plain_labels) =
                send_labelled(framing, false, body, trailers.clone(), usize::MAX);
            let (wire, writes, labels) =
                send_labelled(framing, true, body, trailers.clone(), usize::MAX);
            let case = format!("{framing:?} {:?}", String::from_utf8_lossy(body));
            assert_eq!(wire, plain, "{case}: the bytes on the wire");
            assert_eq!(labels, plain_labels, "{case}: the trace");
            assert_eq!(writes, coalesced_writes, "{case}: writes");
            assert!(
                writes < plain_writes,
                "{case}: {writes} against {plain_writes}"
            );
            // Partial writes cut anywhere give the same bytes and labels.
            for write_max in [1, 2, 7] {
                let (wire, _, labels) =
                    send_labelled(framing, true, body, trailers.clone(), write_max);
                assert_eq!(wire, plain, "{case}, {write_max} bytes a write");
                assert_eq!(
                    labels, plain_labels,
                    "{case}, {write_max} bytes a write: trace"
                );
            }
        }
    }

    #[test]
    fn coalescing_falls_back_without_a_lead_or_with_expect() {
        let target = Target::parse("http://h/u").unwrap();
        let mut head = RequestHead::new("PUT", &target).unwrap();
        head.set_framing(BodyFraming::Chunked);
        // No lead: the head goes first, alone.
        let mut buf = FixedBuf::new(8, 64, head.encoded_len());
        let ex = Exchange::new_coalescing(&head, vec![], Limits::default(), &mut buf).unwrap();
        assert!(
            matches!(ex.poll_send(&mut buf), SendWant::Write(b) if b.len() == head.encoded_len())
        );
        // Expect: 100-continue: the head must go before the body may.
        head.set_expect_continue(true);
        let mut buf = FixedBuf::with_lead(8, 64, head.encoded_len());
        let mut ex = Exchange::new_coalescing(&head, vec![], Limits::default(), &mut buf).unwrap();
        let SendWant::Write(bytes) = ex.poll_send(&mut buf) else {
            panic!("the head first")
        };
        let n = bytes.len();
        assert_eq!(n, head.encoded_len());
        ex.on_sent(n);
        assert!(ex.awaits_continue());
    }

    const HEAD_CHUNKED: &str =
        "PUT /u HTTP/1.1\r\nHost: h\r\nUser-Agent: t\r\nTransfer-Encoding: chunked\r\n\r\n";

    #[test]
    fn chunked_upload_wire_bytes_with_partial_writes() {
        for write_max in [1, 3, 1000] {
            let (mut ex, mut buf) = exchange(BodyFraming::Chunked, 4, vec![]);
            let wire = run_send(&mut ex, &mut buf, &mut &b"hello world"[..], write_max).unwrap();
            assert_eq!(
                String::from_utf8(wire).unwrap(),
                format!("{HEAD_CHUNKED}4\r\nhell\r\n4\r\no wo\r\n3\r\nrld\r\n0\r\n\r\n")
            );
            assert!(ex.request_sent());
            let p = ex.progress();
            assert_eq!((p.body_bytes_read, p.body_bytes_sent), (11, 11));
        }
    }

    #[test]
    fn trailers_follow_the_last_chunk() {
        let trailers = vec![HeaderField::new("X-Sum", "abc").unwrap()];
        let (mut ex, mut buf) = exchange(BodyFraming::Chunked, 64, trailers);
        let wire = run_send(&mut ex, &mut buf, &mut &b"x"[..], 1000).unwrap();
        assert!(wire.ends_with(b"1\r\nx\r\n0\r\nX-Sum: abc\r\n\r\n"));
    }

    #[test]
    fn content_length_checks_the_source_against_the_length() {
        let (mut ex, mut buf) = exchange(BodyFraming::Length(5), 4, vec![]);
        let wire = run_send(&mut ex, &mut buf, &mut &b"hello"[..], 1000).unwrap();
        assert!(wire.ends_with(b"Content-Length: 5\r\n\r\nhello"));

        let (mut ex, mut buf) = exchange(BodyFraming::Length(5), 4, vec![]);
        let err = run_send(&mut ex, &mut buf, &mut &b"hell"[..], 1000).unwrap_err();
        assert_eq!(
            err,
            RequestError::SourceShorterThanLength {
                expected: 5,
                actual: 4
            }
        );

        let (mut ex, mut buf) = exchange(BodyFraming::Length(5), 4, vec![]);
        let mut sent = Vec::new();
        let err = loop {
            match ex.poll_send(&mut buf) {
                SendWant::Write(bytes) => {
                    sent.extend_from_slice(bytes);
                    let n = bytes.len();
                    ex.on_sent(n);
                }
                SendWant::Fill(space) => {
                    let n = (&mut &b"hello!"[ex.progress().body_bytes_read as usize..])
                        .read(space)
                        .unwrap();
                    if let Err(e) = ex.on_filled(&mut buf, n) {
                        break e;
                    }
                }
                SendWant::Idle => panic!("a longer source must fail"),
            }
        };
        assert_eq!(err, RequestError::SourceLongerThanLength { expected: 5 });
        assert!(
            sent.ends_with(b"hell"),
            "the last owed byte is held back: {sent:?}"
        );
    }

    use std::io::Read;

    #[test]
    fn zero_length_body_sends_only_the_head() {
        let (mut ex, mut buf) = exchange(BodyFraming::Length(0), 4, vec![]);
        let wire = run_send(&mut ex, &mut buf, &mut &b"ignored"[..], 1000).unwrap();
        assert!(wire.ends_with(b"Content-Length: 0\r\n\r\n"));
        assert!(ex.request_sent());
    }

    fn receive(
        ex: &mut Exchange,
        buf: &mut FixedBuf,
        bytes: &[u8],
    ) -> Result<Option<ResponseHead>, PeerError> {
        let space = ex.recv_space(buf);
        space[..bytes.len()].copy_from_slice(bytes);
        ex.on_received(buf, bytes.len())
    }

    #[test]
    fn early_final_response_stops_sending() {
        let (mut ex, mut buf) = exchange(BodyFraming::Chunked, 4, vec![]);
        let SendWant::Write(head) = ex.poll_send(&mut buf) else {
            panic!()
        };
        let n = head.len();
        ex.on_sent(n);
        assert!(receive(&mut ex, &mut buf, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 413 Too Large\r\nContent-Length: 3\r\n\r\nno!").unwrap().is_some_and(|h| h.status == 413));
        assert!(matches!(ex.poll_send(&mut buf), SendWant::Idle));
        assert!(ex.stopped_by_response());
        assert_eq!(ex.interim_responses(), 1);
        let BodyStep::Data(range) = ex.decode_body(&buf).unwrap() else {
            panic!()
        };
        assert_eq!(&buf.recv_region()[range], b"no!");
        assert_eq!(ex.decode_body(&buf).unwrap(), BodyStep::End);
    }

    #[test]
    fn an_early_2xx_lets_the_body_go_on_to_its_end() {
        for expect in [false, true] {
            let target = Target::parse("http://h/u").unwrap();
            let mut head = RequestHead::new("PUT", &target).unwrap();
            head.set_framing(BodyFraming::Chunked);
            head.set_expect_continue(expect);
            let mut buf = FixedBuf::new(4, 256, head.encoded_len());
            let mut ex = Exchange::new(&head, vec![], Limits::default(), &mut buf).unwrap();
            // The answer comes while the head is still being written.
            let SendWant::Write(bytes) = ex.poll_send(&mut buf) else {
                panic!()
            };
            let half = bytes.len() / 2;
            ex.on_sent(half);
            let answer = receive(
                &mut ex,
                &mut buf,
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            );
            assert_eq!(answer.unwrap().unwrap().status, 200);
            assert_eq!(ex.answered_early(), Some(200));
            assert!(!ex.stopped_by_response(), "expect {expect}");
            let wire = run_send(&mut ex, &mut buf, &mut &b"abcdef"[..], 1000).unwrap();
            assert!(
                wire.ends_with(b"4\r\nabcd\r\n2\r\nef\r\n0\r\n\r\n"),
                "expect {expect}"
            );
            assert!(
                ex.request_sent() && !ex.awaits_continue(),
                "expect {expect}"
            );
            assert_eq!(ex.progress().body_bytes_sent, 6);
            assert_eq!(ex.decode_body(&buf).unwrap(), BodyStep::End);
            assert!(ex.reusable());
        }
    }

    #[test]
    fn response_split_across_receives() {
        let (mut ex, mut buf) = exchange(BodyFraming::Length(0), 4, vec![]);
        let whole = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
        let mut body = Vec::new();
        let mut head = None;
        for byte in whole.chunks(1) {
            if let Some(h) = receive(&mut ex, &mut buf, byte).unwrap() {
                head = Some(h);
            }
            while head.is_some() {
                match ex.decode_body(&buf).unwrap() {
                    BodyStep::Data(r) => body.extend_from_slice(&buf.recv_region()[r]),
                    BodyStep::NeedMore => break,
                    BodyStep::End => break,
                }
            }
        }
        assert_eq!(head.unwrap().status, 200);
        assert_eq!(body, b"ok");
        assert_eq!(ex.decode_body(&buf).unwrap(), BodyStep::End);
    }

    #[test]
    fn close_before_head_is_an_error() {
        let (mut ex, mut buf) = exchange(BodyFraming::Length(0), 4, vec![]);
        receive(&mut ex, &mut buf, b"HTTP/1.1 200").unwrap();
        assert_eq!(ex.on_peer_closed(), Err(None));
    }
}
