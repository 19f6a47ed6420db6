//! The RTMP chunk stream: splitting messages into chunks and reassembling them.
//!
//! [`ChunkDecoder`] turns received bytes into [`Message`]s (all four chunk header formats, 1–3 byte basic
//! headers, extended timestamps with or without repetition in continuation chunks, the peer's Set Chunk Size
//! and Abort). [`ChunkEncoder`] writes messages for the session's own control and command traffic, and
//! [`encode_shared_chunks`] chunks a media message once so that its bytes can be written to many sockets.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

use crate::message::{self, type_id};

/// Chunk size both directions start with.
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// Largest chunk size the protocol allows (31 bits).
pub const MAX_CHUNK_SIZE: u32 = 0x7FFF_FFFF;
/// Default limit on a received message's length (the 24-bit length field allows just under 16 MiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: u32 = 16 * 1024 * 1024;
/// Default limit on the number of chunk stream ids a peer may use.
pub const DEFAULT_MAX_CHUNK_STREAMS: usize = 64;
/// Smallest chunk stream id usable for messages (0 and 1 select the longer basic header forms).
pub const MIN_CSID: u32 = 2;
/// Largest chunk stream id (three-byte basic header).
pub const MAX_CSID: u32 = 65_599;
/// Largest message length the 24-bit length field can carry.
pub const MAX_MESSAGE_LENGTH: usize = 0x00FF_FFFF;

/// Timestamp field value meaning "the real value follows in 4 extra bytes".
const EXTENDED_TIMESTAMP: u32 = 0x00FF_FFFF;
/// Most memory reserved up front for a multi-chunk message; larger ones grow as data arrives.
const MAX_INITIAL_RESERVE: usize = 1 << 20;

/// A complete RTMP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Message type id (see [`crate::message::type_id`]).
    pub type_id: u8,
    /// Absolute timestamp in milliseconds (deltas already accumulated, wrapping at 32 bits).
    pub timestamp: u32,
    /// Message stream id.
    pub stream_id: u32,
    /// Message body.
    pub payload: Bytes,
}

/// Why the received chunk stream is unusable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChunkError {
    /// A message header announced a message longer than the configured limit.
    #[error("message of {length} bytes exceeds the limit of {max}")]
    MessageTooLarge {
        /// Announced length.
        length: u32,
        /// Configured limit.
        max: u32,
    },
    /// The peer used more distinct chunk stream ids than allowed.
    #[error("more than {0} chunk streams in use")]
    TooManyChunkStreams(usize),
    /// A chunk stream's first chunk did not carry a full message header.
    #[error("chunk stream {csid} starts with a fmt {fmt} chunk")]
    NoPreviousHeader {
        /// Chunk stream id.
        csid: u32,
        /// Chunk header format.
        fmt: u8,
    },
    /// The peer asked for a chunk size of 0.
    #[error("invalid chunk size {0}")]
    InvalidChunkSize(u32),
    /// A Set Chunk Size message too short to hold a size.
    #[error("truncated set chunk size message")]
    TruncatedSetChunkSize,
}

/// Header state of one chunk stream, plus the message being reassembled on it.
#[derive(Debug)]
struct ChunkStream {
    csid: u32,
    /// Absolute timestamp of the current message.
    timestamp: u32,
    /// Last timestamp field (absolute for fmt 0, delta otherwise), after resolving the extended field.
    ts_field: u32,
    /// Whether the last header used an extended timestamp.
    extended: bool,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// Bytes of a message whose first chunk has arrived but not its last.
    partial: Option<BytesMut>,
}

/// Result of trying to read one chunk from the buffer.
enum Step {
    NeedMore,
    Consumed,
    Complete(Message),
}

/// Reassembles messages from received bytes. Sans-IO: [`feed`](Self::feed) bytes, then call
/// [`next_message`](Self::next_message) until it returns `Ok(None)`.
///
/// A message that fits in one chunk is returned as a slice of the receive buffer, without copying.
#[derive(Debug)]
pub struct ChunkDecoder {
    buf: BytesMut,
    chunk_size: u32,
    max_message_size: u32,
    max_chunk_streams: usize,
    streams: Vec<ChunkStream>,
}

impl Default for ChunkDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkDecoder {
    /// A decoder with the default limits (16 MiB messages, 64 chunk streams).
    pub fn new() -> Self {
        Self::with_limits(DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_CHUNK_STREAMS)
    }

    /// A decoder with explicit limits on message length and number of chunk stream ids.
    pub fn with_limits(max_message_size: u32, max_chunk_streams: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_message_size,
            max_chunk_streams,
            streams: Vec::new(),
        }
    }

    /// Appends received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes received but not yet consumed as complete chunks.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The peer's current chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Sets the peer's chunk size (normally done by the decoder itself on a Set Chunk Size message).
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        let size = size & MAX_CHUNK_SIZE;
        if size == 0 {
            return Err(ChunkError::InvalidChunkSize(size));
        }
        self.chunk_size = size;
        Ok(())
    }

    /// Returns the next complete message, `Ok(None)` when more bytes are needed.
    ///
    /// Set Chunk Size and Abort messages are applied here and still returned, so callers may observe them.
    pub fn next_message(&mut self) -> Result<Option<Message>, ChunkError> {
        loop {
            match self.read_chunk()? {
                Step::NeedMore => return Ok(None),
                Step::Consumed => continue,
                Step::Complete(msg) => {
                    self.apply_control(&msg)?;
                    return Ok(Some(msg));
                }
            }
        }
    }

    fn apply_control(&mut self, msg: &Message) -> Result<(), ChunkError> {
        match msg.type_id {
            type_id::SET_CHUNK_SIZE => {
                let size =
                    message::read_u32(&msg.payload, "set chunk size").map_err(|_| ChunkError::TruncatedSetChunkSize)?;
                self.set_chunk_size(size)
            }
            type_id::ABORT => {
                if let Ok(csid) = message::read_u32(&msg.payload, "abort")
                    && let Some(cs) = self.streams.iter_mut().find(|s| s.csid == csid)
                {
                    cs.partial = None;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Reads one whole chunk if it is buffered; nothing is consumed or changed otherwise.
    fn read_chunk(&mut self) -> Result<Step, ChunkError> {
        let data = &self.buf[..];
        let Some(&b0) = data.first() else {
            return Ok(Step::NeedMore);
        };
        let fmt = b0 >> 6;
        let (csid, mut pos) = match b0 & 0x3f {
            0 => match data.get(1) {
                Some(&b1) => (64 + u32::from(b1), 2),
                None => return Ok(Step::NeedMore),
            },
            1 => match (data.get(1), data.get(2)) {
                (Some(&b1), Some(&b2)) => (64 + u32::from(b1) + 256 * u32::from(b2), 3),
                _ => return Ok(Step::NeedMore),
            },
            n => (u32::from(n), 1),
        };
        let header_len = match fmt {
            0 => 11,
            1 => 7,
            2 => 3,
            _ => 0,
        };
        let Some(raw) = data.get(pos..pos + header_len) else {
            return Ok(Step::NeedMore);
        };
        pos += header_len;
        let mut h = [0u8; 11];
        h.iter_mut().zip(raw).for_each(|(d, s)| *d = *s);

        let index = self.streams.iter().position(|s| s.csid == csid);
        let prev = index.and_then(|i| self.streams.get(i));
        if prev.is_none() && fmt > 1 {
            // fmt 1 on a fresh chunk stream is tolerated (stream id 0), as some encoders send it.
            return Err(ChunkError::NoPreviousHeader { csid, fmt });
        }
        if index.is_none() && self.streams.len() >= self.max_chunk_streams {
            return Err(ChunkError::TooManyChunkStreams(self.max_chunk_streams));
        }
        let (prev_ts, prev_field, prev_extended) =
            prev.map_or((0, 0, false), |p| (p.timestamp, p.ts_field, p.extended));
        let (mut length, mut msg_type, mut stream_id) = prev.map_or((0, 0, 0), |p| (p.length, p.type_id, p.stream_id));
        let continuation = fmt == 3 && prev.is_some_and(|p| p.partial.is_some());
        let already = if continuation { prev.and_then(|p| p.partial.as_ref()).map_or(0, BytesMut::len) } else { 0 };

        let field24 = u32::from_be_bytes([0, h[0], h[1], h[2]]);
        if fmt <= 1 {
            length = u32::from_be_bytes([0, h[3], h[4], h[5]]);
            msg_type = h[6];
        }
        if fmt == 0 {
            stream_id = u32::from_le_bytes([h[7], h[8], h[9], h[10]]);
        }
        let extended = if fmt <= 2 { field24 == EXTENDED_TIMESTAMP } else { prev_extended };

        let mut ext_value = None;
        if extended {
            let Some(ext) = data.get(pos..pos + 4) else {
                return Ok(Step::NeedMore);
            };
            let ext = u32::from_be_bytes([ext[0], ext[1], ext[2], ext[3]]);
            if continuation {
                // Some senders repeat the extended timestamp in continuation chunks (Adobe, librtmp, SRS,
                // ffmpeg), others do not (older nginx-rtmp): consume it only if it matches the header's.
                if ext == prev_field {
                    pos += 4;
                }
            } else {
                ext_value = Some(ext);
                pos += 4;
            }
        }

        let field = match fmt {
            0..=2 => ext_value.unwrap_or(field24),
            _ => ext_value.unwrap_or(prev_field),
        };
        let timestamp = match fmt {
            0 => field,
            _ if continuation => prev_ts,
            _ => prev_ts.wrapping_add(field),
        };
        if length > self.max_message_size {
            return Err(ChunkError::MessageTooLarge { length, max: self.max_message_size });
        }
        let remaining = (length as usize).saturating_sub(already);
        let n = remaining.min(self.chunk_size as usize);
        if data.len() < pos + n {
            return Ok(Step::NeedMore);
        }

        // The whole chunk is buffered: commit.
        self.buf.advance(pos);
        let body = self.buf.split_to(n);
        let cs = match index.and_then(|i| self.streams.get_mut(i)) {
            Some(cs) => cs,
            None => {
                self.streams.push(ChunkStream {
                    csid,
                    timestamp: 0,
                    ts_field: 0,
                    extended: false,
                    length: 0,
                    type_id: 0,
                    stream_id: 0,
                    partial: None,
                });
                match self.streams.last_mut() {
                    Some(cs) => cs,
                    None => return Ok(Step::Consumed),
                }
            }
        };
        cs.timestamp = timestamp;
        cs.extended = extended;
        cs.length = length;
        cs.type_id = msg_type;
        cs.stream_id = stream_id;
        if !continuation {
            cs.ts_field = field;
            // A new header while a message was in progress abandons that message (as ffmpeg does).
            cs.partial = None;
            if n == length as usize {
                return Ok(Step::Complete(Message { type_id: msg_type, timestamp, stream_id, payload: body.freeze() }));
            }
            let mut partial = BytesMut::with_capacity((length as usize).min(MAX_INITIAL_RESERVE));
            partial.extend_from_slice(&body);
            cs.partial = Some(partial);
            return Ok(Step::Consumed);
        }
        let Some(partial) = cs.partial.as_mut() else {
            return Ok(Step::Consumed);
        };
        partial.extend_from_slice(&body);
        if partial.len() < length as usize {
            return Ok(Step::Consumed);
        }
        let payload = cs.partial.take().unwrap_or_default().freeze();
        Ok(Step::Complete(Message { type_id: msg_type, timestamp, stream_id, payload }))
    }
}

/// Writes messages as chunks with a fixed outbound chunk size: a fmt 0 chunk starting every message, fmt 3
/// continuation chunks, the extended timestamp repeated in each of them. Always-fmt-0 keeps every chunk
/// stream self-contained, so these bytes can be interleaved freely with [`encode_shared_chunks`] output.
#[derive(Debug, Clone)]
pub struct ChunkEncoder {
    chunk_size: u32,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkEncoder {
    /// An encoder using the protocol's initial chunk size (128).
    pub fn new() -> Self {
        Self { chunk_size: DEFAULT_CHUNK_SIZE }
    }

    /// The outbound chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Changes the outbound chunk size (clamped to 1..=[`MAX_CHUNK_SIZE`]); the peer must have been sent a
    /// Set Chunk Size message first.
    pub fn set_chunk_size(&mut self, size: u32) {
        self.chunk_size = size.clamp(1, MAX_CHUNK_SIZE);
    }

    /// Appends the chunks of one message to `out`. `csid` is clamped into `MIN_CSID..=MAX_CSID`. Returns
    /// `false` (and writes nothing) if the payload is longer than [`MAX_MESSAGE_LENGTH`].
    pub fn encode(
        &self,
        csid: u32,
        type_id: u8,
        stream_id: u32,
        timestamp: u32,
        payload: &[u8],
        out: &mut BytesMut,
    ) -> bool {
        if payload.len() > MAX_MESSAGE_LENGTH {
            return false;
        }
        let chunk_size = self.chunk_size as usize;
        let chunks = payload.len().div_ceil(chunk_size).max(1);
        out.reserve(payload.len() + 16 + (chunks - 1) * 8);
        put_fmt0_header(out, csid, type_id, stream_id, timestamp, payload.len());
        for (i, piece) in payload.chunks(chunk_size).enumerate() {
            if i > 0 {
                put_fmt3_header(out, csid, timestamp);
            }
            out.extend_from_slice(piece);
        }
        true
    }
}

fn put_basic_header(out: &mut impl BufMut, fmt: u8, csid: u32) {
    let csid = csid.clamp(MIN_CSID, MAX_CSID);
    let fmt = fmt << 6;
    if csid < 64 {
        out.put_u8(fmt | csid as u8);
    } else if csid < 320 {
        out.put_u8(fmt);
        out.put_u8((csid - 64) as u8);
    } else {
        let v = csid - 64;
        out.put_u8(fmt | 1);
        out.put_u8((v & 0xff) as u8);
        out.put_u8((v >> 8) as u8);
    }
}

fn basic_header_len(csid: u32) -> usize {
    match csid.clamp(MIN_CSID, MAX_CSID) {
        0..=63 => 1,
        64..=319 => 2,
        _ => 3,
    }
}

fn put_u24(out: &mut impl BufMut, v: u32) {
    let b = v.to_be_bytes();
    out.put_slice(&b[1..]);
}

fn put_fmt0_header(out: &mut impl BufMut, csid: u32, type_id: u8, stream_id: u32, timestamp: u32, length: usize) {
    put_basic_header(out, 0, csid);
    put_u24(out, timestamp.min(EXTENDED_TIMESTAMP));
    put_u24(out, length.min(MAX_MESSAGE_LENGTH) as u32);
    out.put_u8(type_id);
    out.put_u32_le(stream_id);
    if timestamp >= EXTENDED_TIMESTAMP {
        out.put_u32(timestamp);
    }
}

fn put_fmt3_header(out: &mut impl BufMut, csid: u32, timestamp: u32) {
    put_basic_header(out, 3, csid);
    if timestamp >= EXTENDED_TIMESTAMP {
        out.put_u32(timestamp);
    }
}

/// Chunks one message made of `body_header ++ payload` for writing to many peers ("mux once, send to many").
///
/// The result, concatenated, is exactly what [`ChunkEncoder::encode`] would write for that message: a fmt 0
/// chunk with the full header, then fmt 3 continuation chunks, the extended timestamp (when `timestamp >=
/// 0xFFFFFF`) written in the first chunk and repeated in every continuation chunk. Payload pieces are
/// zero-copy slices of `payload`; chunk headers and `body_header` (e.g. the 5-byte AVC tag-body header) are
/// merged into small buffers that share one allocation. `csid` is clamped into `MIN_CSID..=MAX_CSID`,
/// `chunk_size` into `1..=MAX_CHUNK_SIZE`. A message longer than [`MAX_MESSAGE_LENGTH`] cannot be expressed
/// in RTMP: the result is then empty.
pub fn encode_shared_chunks(
    csid: u32,
    type_id: u8,
    stream_id: u32,
    timestamp: u32,
    body_header: &[u8],
    payload: &Bytes,
    chunk_size: usize,
) -> Vec<Bytes> {
    let total = body_header.len() + payload.len();
    if total > MAX_MESSAGE_LENGTH {
        return Vec::new();
    }
    let chunk_size = chunk_size.clamp(1, MAX_CHUNK_SIZE as usize);
    let chunks = total.div_ceil(chunk_size).max(1);
    let ext = if timestamp >= EXTENDED_TIMESTAMP { 4 } else { 0 };
    let basic = basic_header_len(csid);
    let small_len = basic + 11 + ext + (chunks - 1) * (basic + ext) + body_header.len();
    let mut small = BytesMut::with_capacity(small_len);
    let mut pieces = Vec::with_capacity(2 * chunks + 1);
    let header_len = body_header.len();
    let mut offset = 0;
    for i in 0..chunks {
        if i == 0 {
            put_fmt0_header(&mut small, csid, type_id, stream_id, timestamp, total);
        } else {
            put_fmt3_header(&mut small, csid, timestamp);
        }
        let end = (offset + chunk_size).min(total);
        if let Some(part) = body_header.get(offset.min(header_len)..end.min(header_len)) {
            small.extend_from_slice(part);
        }
        let start = offset.max(header_len) - header_len;
        let stop = end.saturating_sub(header_len);
        if start < stop {
            if !small.is_empty() {
                pieces.push(small.split().freeze());
            }
            pieces.push(payload.slice(start..stop));
        }
        offset = end;
    }
    if !small.is_empty() {
        pieces.push(small.freeze());
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_one(enc: &ChunkEncoder, csid: u32, type_id: u8, sid: u32, ts: u32, payload: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        assert!(enc.encode(csid, type_id, sid, ts, payload, &mut out));
        out
    }

    fn decode_all(dec: &mut ChunkDecoder, bytes: &[u8]) -> Vec<Message> {
        dec.feed(bytes);
        let mut msgs = Vec::new();
        while let Some(m) = dec.next_message().unwrap() {
            msgs.push(m);
        }
        msgs
    }

    fn concat(pieces: &[Bytes]) -> Vec<u8> {
        pieces.iter().flat_map(|p| p.iter().copied()).collect()
    }

    #[test]
    fn single_chunk_roundtrip_and_byte_by_byte() {
        let enc = ChunkEncoder::new();
        let bytes = encode_one(&enc, 3, 20, 0, 1000, b"hello");
        assert_eq!(bytes.len(), 12 + 5);
        let mut dec = ChunkDecoder::new();
        for (i, b) in bytes.iter().enumerate() {
            dec.feed(&[*b]);
            let m = dec.next_message().unwrap();
            if i + 1 < bytes.len() {
                assert!(m.is_none());
            } else {
                let m = m.unwrap();
                assert_eq!((m.type_id, m.timestamp, m.stream_id, &m.payload[..]), (20, 1000, 0, &b"hello"[..]));
            }
        }
    }

    #[test]
    fn multi_chunk_with_all_basic_header_sizes() {
        let payload: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        for csid in [2, 63, 64, 319, 320, 65_599] {
            let enc = ChunkEncoder::new();
            let bytes = encode_one(&enc, csid, 9, 1, 40, &payload);
            let msgs = decode_all(&mut ChunkDecoder::new(), &bytes);
            assert_eq!(msgs.len(), 1, "csid {csid}");
            assert_eq!(&msgs[0].payload[..], &payload[..]);
            assert_eq!(msgs[0].stream_id, 1);
        }
    }

    #[test]
    fn compressed_headers_accumulate_deltas() {
        // fmt0 ts=100 len=3, fmt1 delta=10 len=2, fmt2 delta=5, fmt3 (delta 5 again), on csid 4.
        let mut b = vec![0x04, 0, 0, 100, 0, 0, 3, 8, 1, 0, 0, 0, b'a', b'b', b'c'];
        b.extend_from_slice(&[0x44, 0, 0, 10, 0, 0, 2, 8, b'd', b'e']);
        b.extend_from_slice(&[0x84, 0, 0, 5, b'f', b'g']);
        b.extend_from_slice(&[0xC4, b'h', b'i']);
        let msgs = decode_all(&mut ChunkDecoder::new(), &b);
        let ts: Vec<u32> = msgs.iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, [100, 110, 115, 120]);
        assert!(msgs.iter().all(|m| m.stream_id == 1 && m.type_id == 8));
        assert_eq!(&msgs[3].payload[..], b"hi");
    }

    #[test]
    fn fmt3_new_message_after_fmt0_reuses_the_timestamp_field_as_delta() {
        let mut b = vec![0x04, 0, 0, 40, 0, 0, 1, 8, 1, 0, 0, 0, b'a'];
        b.extend_from_slice(&[0xC4, b'b']);
        let msgs = decode_all(&mut ChunkDecoder::new(), &b);
        assert_eq!(msgs[1].timestamp, 80);
    }

    #[test]
    fn extended_timestamp_with_and_without_repetition() {
        let payload = vec![7u8; 300];
        let ts = 0x0100_0000;
        let enc = ChunkEncoder::new();
        // With repetition (our encoder).
        let bytes = encode_one(&enc, 6, 9, 1, ts, &payload);
        let msgs = decode_all(&mut ChunkDecoder::new(), &bytes);
        assert_eq!((msgs.len(), msgs[0].timestamp, msgs[0].payload.len()), (1, ts, 300));
        // Without repetition: fmt0 + ext, then bare fmt3 headers.
        let mut b = vec![0x06, 0xff, 0xff, 0xff, 0, 1, 44, 9, 1, 0, 0, 0];
        b.extend_from_slice(&ts.to_be_bytes());
        b.extend_from_slice(&payload[..128]);
        b.push(0xC6);
        b.extend_from_slice(&payload[128..256]);
        b.push(0xC6);
        b.extend_from_slice(&payload[256..]);
        let msgs = decode_all(&mut ChunkDecoder::new(), &b);
        assert_eq!((msgs.len(), msgs[0].timestamp), (1, ts));
        assert_eq!(&msgs[0].payload[..], &payload[..]);
    }

    #[test]
    fn extended_delta_in_fmt1_and_fmt3_new_message() {
        let mut b = vec![0x04, 0, 0, 1, 0, 0, 1, 8, 1, 0, 0, 0, b'a'];
        b.extend_from_slice(&[0x44, 0xff, 0xff, 0xff, 0, 0, 1, 8]);
        b.extend_from_slice(&0x0100_0000u32.to_be_bytes());
        b.push(b'b');
        b.push(0xC4);
        b.extend_from_slice(&0x0100_0000u32.to_be_bytes());
        b.push(b'c');
        let msgs = decode_all(&mut ChunkDecoder::new(), &b);
        let ts: Vec<u32> = msgs.iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, [1, 0x0100_0001, 0x0200_0001]);
    }

    #[test]
    fn set_chunk_size_and_abort_are_applied() {
        let mut enc = ChunkEncoder::new();
        let mut bytes = encode_one(&enc, 2, 1, 0, 0, &message::set_chunk_size_payload(4096));
        enc.set_chunk_size(4096);
        let big = vec![1u8; 4000];
        bytes.extend_from_slice(&encode_one(&enc, 6, 9, 1, 0, &big));
        let mut dec = ChunkDecoder::new();
        let msgs = decode_all(&mut dec, &bytes);
        assert_eq!(dec.chunk_size(), 4096);
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[1].payload.len(), 4000);

        // Abort: first chunk of a 300-byte message on csid 6, then abort csid 6, then a fresh message.
        let mut dec = ChunkDecoder::new();
        let partial = encode_one(&ChunkEncoder::new(), 6, 9, 1, 0, &[2u8; 300]);
        dec.feed(&partial[..12 + 128]);
        assert!(dec.next_message().unwrap().is_none());
        let abort = encode_one(&ChunkEncoder::new(), 2, 2, 0, 0, &6u32.to_be_bytes());
        let fresh = encode_one(&ChunkEncoder::new(), 6, 9, 1, 5, b"x");
        let msgs = decode_all(&mut dec, &[&abort[..], &fresh[..]].concat());
        assert_eq!(msgs.len(), 2);
        assert_eq!(&msgs[1].payload[..], b"x");
    }

    #[test]
    fn invalid_peer_input_is_an_error() {
        // fmt 3 on an unknown csid.
        let mut dec = ChunkDecoder::new();
        dec.feed(&[0xC5, 0]);
        assert_eq!(dec.next_message(), Err(ChunkError::NoPreviousHeader { csid: 5, fmt: 3 }));
        // Chunk size 0.
        let mut dec = ChunkDecoder::new();
        dec.feed(&encode_one(&ChunkEncoder::new(), 2, 1, 0, 0, &[0, 0, 0, 0]));
        assert_eq!(dec.next_message(), Err(ChunkError::InvalidChunkSize(0)));
        // Too large.
        let mut dec = ChunkDecoder::with_limits(1000, 4);
        dec.feed(&[0x04, 0, 0, 0, 0, 0x10, 0, 9, 1, 0, 0, 0]);
        assert_eq!(dec.next_message(), Err(ChunkError::MessageTooLarge { length: 4096, max: 1000 }));
        // Too many chunk streams.
        let mut dec = ChunkDecoder::with_limits(1000, 4);
        for csid in 2..6u8 {
            dec.feed(&[csid, 0, 0, 0, 0, 0, 0, 9, 1, 0, 0, 0]);
        }
        assert_eq!(decode_all(&mut dec, &[]).len(), 4);
        dec.feed(&[6, 0, 0, 0, 0, 0, 0, 9, 1, 0, 0, 0]);
        assert_eq!(dec.next_message(), Err(ChunkError::TooManyChunkStreams(4)));
        // Truncated set chunk size.
        let mut dec = ChunkDecoder::new();
        dec.feed(&encode_one(&ChunkEncoder::new(), 2, 1, 0, 0, &[0, 1]));
        assert_eq!(dec.next_message(), Err(ChunkError::TruncatedSetChunkSize));
    }

    #[test]
    fn empty_message_and_zero_copy_single_chunk() {
        let enc = ChunkEncoder::new();
        let mut bytes = encode_one(&enc, 3, 20, 0, 0, b"");
        bytes.extend_from_slice(&encode_one(&enc, 3, 20, 0, 0, b"abc"));
        let mut dec = ChunkDecoder::new();
        dec.feed(&bytes);
        let base = dec.buf.as_ptr() as usize;
        let msgs = decode_all(&mut dec, &[]);
        assert_eq!(msgs.len(), 2);
        assert!(msgs[0].payload.is_empty());
        // The one-chunk message points into the receive buffer (no copy).
        assert_eq!(msgs[1].payload.as_ptr() as usize, base + 12 + 12);
    }

    #[test]
    fn new_header_mid_message_abandons_the_partial_one() {
        let enc = ChunkEncoder::new();
        let first = encode_one(&enc, 6, 9, 1, 0, &[1u8; 200]);
        let second = encode_one(&enc, 6, 9, 1, 40, b"ok");
        let mut b = first[..12 + 128].to_vec();
        b.extend_from_slice(&second);
        let msgs = decode_all(&mut ChunkDecoder::new(), &b);
        assert_eq!(msgs.len(), 1);
        assert_eq!(&msgs[0].payload[..], b"ok");
    }

    fn check_shared(csid: u32, ts: u32, body_header: &[u8], payload_len: usize, chunk_size: usize) {
        let payload: Bytes = (0..payload_len).map(|i| (i * 7) as u8).collect::<Vec<u8>>().into();
        let pieces = encode_shared_chunks(csid, 9, 1, ts, body_header, &payload, chunk_size);
        let mut full = body_header.to_vec();
        full.extend_from_slice(&payload);
        let mut enc = ChunkEncoder::new();
        enc.set_chunk_size(chunk_size as u32);
        let expected = encode_one(&enc, csid, 9, 1, ts, &full);
        assert_eq!(
            concat(&pieces),
            &expected[..],
            "csid {csid} ts {ts} hdr {} len {payload_len} cs {chunk_size}",
            body_header.len()
        );
        let mut dec = ChunkDecoder::new();
        dec.set_chunk_size(chunk_size as u32).unwrap();
        let msgs = decode_all(&mut dec, &concat(&pieces));
        assert_eq!(msgs.len(), 1);
        assert_eq!((msgs[0].timestamp, msgs[0].type_id, msgs[0].stream_id), (ts, 9, 1));
        assert_eq!(&msgs[0].payload[..], &full[..]);
        // Payload pieces point into the original payload.
        let range = payload.as_ptr() as usize..payload.as_ptr() as usize + payload.len();
        let copied: usize = pieces.iter().filter(|p| !range.contains(&(p.as_ptr() as usize))).map(|p| p.len()).sum();
        let headers = expected.len() - full.len();
        assert_eq!(copied, headers + body_header.len());
    }

    #[test]
    fn shared_chunks_match_the_encoder_and_decode() {
        for &ts in &[0, 40, 0x00FF_FFFE, 0x00FF_FFFF, 0x0123_4567, u32::MAX] {
            for &cs in &[1, 2, 3, 5, 7, 128, 4096] {
                for hdr in [&b""[..], &[0x17, 1, 0, 0, 0][..], &[0xAF, 1][..]] {
                    for &len in &[0, 1, 4, 5, 127, 128, 129, 1000] {
                        check_shared(7, ts, hdr, len, cs);
                    }
                }
            }
        }
        check_shared(300, 1, &[1, 2, 3], 700, 64);
    }

    #[test]
    fn shared_chunks_merge_headers() {
        let payload = Bytes::from(vec![0u8; 10_000]);
        let pieces = encode_shared_chunks(7, 9, 1, 0, &[0x17, 1, 0, 0, 0], &payload, 4096);
        // [fmt0 + body header][payload][fmt3][payload][fmt3][payload]
        assert_eq!(pieces.len(), 6);
        assert_eq!(pieces[0].len(), 12 + 5);
        assert_eq!(pieces[2].len(), 1);
        assert!(
            encode_shared_chunks(7, 9, 1, 0, &[], &Bytes::from(vec![0u8; MAX_MESSAGE_LENGTH + 1]), 4096).is_empty()
        );
        assert!(!ChunkEncoder::new().encode(3, 9, 1, 0, &vec![0u8; MAX_MESSAGE_LENGTH + 1], &mut BytesMut::new()));
    }
}
