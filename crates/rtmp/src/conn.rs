//! What server and client sessions share once the handshake is over: the chunk decoder and encoder, the
//! outbound byte queue, acknowledgements and the protocol control messages both sides answer alike.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use ferrocast_formats::amf0::{self, Amf0Value};

use crate::chunk::{ChunkDecoder, ChunkEncoder, DEFAULT_MAX_CHUNK_STREAMS};
use crate::message::{self, Command, UserControlEvent, type_id};
use crate::{CONTROL_CSID, Message};

/// Outbound bytes: small messages are coalesced into one buffer, zero-copy pieces are queued as they are.
#[derive(Debug, Default)]
pub(crate) struct OutQueue {
    pending: BytesMut,
    queue: VecDeque<Bytes>,
}

impl OutQueue {
    /// The buffer small messages are appended to (after everything queued before).
    /// Ordering holds because `pending` always comes after `queue` (see [`push`](Self::push)).
    pub(crate) fn buf(&mut self) -> &mut BytesMut {
        &mut self.pending
    }

    /// Queues a piece after everything written so far.
    pub(crate) fn push(&mut self, piece: Bytes) {
        if !self.pending.is_empty() {
            let head = self.pending.split().freeze();
            self.queue.push_back(head);
        }
        if !piece.is_empty() {
            self.queue.push_back(piece);
        }
    }

    /// The next bytes to write, oldest first.
    pub(crate) fn take(&mut self) -> Option<Bytes> {
        if let Some(piece) = self.queue.pop_front() {
            return Some(piece);
        }
        (!self.pending.is_empty()).then(|| self.pending.split().freeze())
    }
}

/// The post-handshake half of a session.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) decoder: ChunkDecoder,
    pub(crate) encoder: ChunkEncoder,
    pub(crate) out: OutQueue,
    bytes_in: u64,
    acked_at: u64,
    /// Acknowledge every this many received bytes (set by the peer's Window Acknowledgement Size; 0 = never).
    ack_window: u32,
}

impl Conn {
    pub(crate) fn new(max_message_size: u32) -> Self {
        Self {
            decoder: ChunkDecoder::with_limits(max_message_size, DEFAULT_MAX_CHUNK_STREAMS),
            encoder: ChunkEncoder::new(),
            out: OutQueue::default(),
            bytes_in: 0,
            acked_at: 0,
            ack_window: 0,
        }
    }

    /// Counts received bytes (handshake included) and sends an Acknowledgement when a window is full.
    pub(crate) fn count_input(&mut self, n: usize) {
        self.bytes_in = self.bytes_in.wrapping_add(n as u64);
        if self.ack_window > 0 && self.bytes_in.wrapping_sub(self.acked_at) >= u64::from(self.ack_window) {
            self.acked_at = self.bytes_in;
            // The sequence number is the byte count modulo 2^32.
            let seq = (self.bytes_in & 0xFFFF_FFFF) as u32;
            self.send(CONTROL_CSID, type_id::ACKNOWLEDGEMENT, 0, 0, &seq.to_be_bytes());
        }
    }

    /// Encodes one message into the output queue (dropped if longer than the 24-bit length field allows).
    pub(crate) fn send(&mut self, csid: u32, type_id: u8, stream_id: u32, timestamp: u32, payload: &[u8]) {
        let encoder = &self.encoder;
        encoder.encode(csid, type_id, stream_id, timestamp, payload, self.out.buf());
    }

    /// Sends an AMF0 command.
    pub(crate) fn send_command(&mut self, csid: u32, stream_id: u32, command: &Command) {
        self.send(csid, type_id::AMF0_COMMAND, stream_id, 0, &command.encode());
    }

    /// Sends an AMF0 data message made of `values`.
    pub(crate) fn send_data(&mut self, csid: u32, stream_id: u32, values: &[Amf0Value]) {
        let mut body = Vec::new();
        amf0::encode_all(values, &mut body);
        self.send(csid, type_id::AMF0_DATA, stream_id, 0, &body);
    }

    /// Sends a User Control Message.
    pub(crate) fn send_user_control(&mut self, event: UserControlEvent) {
        let mut body = BytesMut::with_capacity(10);
        event.encode(&mut body);
        self.send(CONTROL_CSID, type_id::USER_CONTROL, 0, 0, &body);
    }

    /// Announces and switches to a new outbound chunk size.
    pub(crate) fn set_out_chunk_size(&mut self, size: u32) {
        let size = size.clamp(1, crate::chunk::MAX_CHUNK_SIZE);
        self.send(CONTROL_CSID, type_id::SET_CHUNK_SIZE, 0, 0, &message::set_chunk_size_payload(size));
        self.encoder.set_chunk_size(size);
    }

    /// Handles the protocol control messages (types 1–6) both sides treat alike: answers pings, adopts the
    /// peer's acknowledgement window. Set Chunk Size and Abort were applied by the decoder. Returns the
    /// user control event, if the message was one, so the session can act on it too.
    pub(crate) fn handle_control(&mut self, msg: &Message) -> Option<UserControlEvent> {
        match msg.type_id {
            type_id::WINDOW_ACK_SIZE => {
                if let Ok(size) = message::read_u32(&msg.payload, "window acknowledgement size") {
                    self.ack_window = size;
                }
                None
            }
            type_id::USER_CONTROL => {
                let event = UserControlEvent::parse(&msg.payload).ok()?;
                if let UserControlEvent::PingRequest(t) = event {
                    self.send_user_control(UserControlEvent::PingResponse(t));
                }
                Some(event)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(out: &mut OutQueue) -> Vec<u8> {
        let mut all = Vec::new();
        while let Some(b) = out.take() {
            all.extend_from_slice(&b);
        }
        all
    }

    #[test]
    fn out_queue_keeps_order() {
        let mut q = OutQueue::default();
        q.buf().extend_from_slice(b"ab");
        q.push(Bytes::from_static(b"cd"));
        q.buf().extend_from_slice(b"ef");
        q.push(Bytes::from_static(b"gh"));
        q.push(Bytes::new());
        q.buf().extend_from_slice(b"ij");
        assert_eq!(drain(&mut q), b"abcdefghij");
        assert!(q.take().is_none());
    }

    #[test]
    fn acknowledges_each_window_and_answers_pings() {
        let mut conn = Conn::new(1 << 20);
        conn.count_input(10_000);
        assert!(conn.out.take().is_none(), "no window yet");
        let window = Message {
            type_id: type_id::WINDOW_ACK_SIZE,
            timestamp: 0,
            stream_id: 0,
            payload: Bytes::from_static(&[0, 0, 0x10, 0]),
        };
        conn.handle_control(&window);
        conn.count_input(4095); // total 14095: a full window since the last ack (none)
        let mut dec = ChunkDecoder::new();
        dec.feed(&drain(&mut conn.out));
        let ack = dec.next_message().unwrap().unwrap();
        assert_eq!(ack.type_id, type_id::ACKNOWLEDGEMENT);
        assert_eq!(message::read_u32(&ack.payload, "ack"), Ok(14_095));
        conn.count_input(100);
        assert!(conn.out.take().is_none());

        let mut ping = BytesMut::new();
        UserControlEvent::PingRequest(99).encode(&mut ping);
        let msg = Message { type_id: type_id::USER_CONTROL, timestamp: 0, stream_id: 0, payload: ping.freeze() };
        assert_eq!(conn.handle_control(&msg), Some(UserControlEvent::PingRequest(99)));
        dec.feed(&drain(&mut conn.out));
        let pong = dec.next_message().unwrap().unwrap();
        assert_eq!(UserControlEvent::parse(&pong.payload), Ok(UserControlEvent::PingResponse(99)));
    }

    #[test]
    fn chunk_size_change_is_announced_with_the_old_size() {
        let mut conn = Conn::new(1 << 20);
        conn.set_out_chunk_size(4096);
        conn.send(3, type_id::AMF0_COMMAND, 0, 0, &[5u8; 1000]);
        let mut dec = ChunkDecoder::new();
        dec.feed(&drain(&mut conn.out));
        assert_eq!(dec.next_message().unwrap().unwrap().type_id, type_id::SET_CHUNK_SIZE);
        assert_eq!(dec.next_message().unwrap().unwrap().payload.len(), 1000);
    }
}
