//! RTMP message types: type ids, protocol control messages, user control events and commands.

use bytes::{BufMut, BytesMut};

use crate::chunk::Message;
use ferrocast_formats::amf0::{self, Amf0Error, Amf0Value};
use thiserror::Error;

/// Message type ids (the `type_id` of a [`crate::chunk::Message`]).
pub mod type_id {
    /// Set Chunk Size (protocol control).
    pub const SET_CHUNK_SIZE: u8 = 1;
    /// Abort Message (protocol control).
    pub const ABORT: u8 = 2;
    /// Acknowledgement (protocol control).
    pub const ACKNOWLEDGEMENT: u8 = 3;
    /// User Control Message.
    pub const USER_CONTROL: u8 = 4;
    /// Window Acknowledgement Size (protocol control).
    pub const WINDOW_ACK_SIZE: u8 = 5;
    /// Set Peer Bandwidth (protocol control).
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    /// Audio data (an FLV audio tag body).
    pub const AUDIO: u8 = 8;
    /// Video data (an FLV video tag body).
    pub const VIDEO: u8 = 9;
    /// Data message encoded with AMF3 (in practice: a 0 byte then AMF0).
    pub const AMF3_DATA: u8 = 15;
    /// Command message encoded with AMF3 (a 0 byte then AMF0).
    pub const AMF3_COMMAND: u8 = 17;
    /// Data message in AMF0 (`@setDataFrame`, `onMetaData`, …).
    pub const AMF0_DATA: u8 = 18;
    /// Command message in AMF0 (`connect`, `publish`, `onStatus`, …).
    pub const AMF0_COMMAND: u8 = 20;
    /// Aggregate message (a sequence of FLV tags).
    pub const AGGREGATE: u8 = 22;
}

/// Limit type of a Set Peer Bandwidth message.
pub mod bandwidth_limit {
    /// Hard limit.
    pub const HARD: u8 = 0;
    /// Soft limit.
    pub const SOFT: u8 = 1;
    /// Dynamic limit (the one servers send in practice).
    pub const DYNAMIC: u8 = 2;
}

/// Why a message payload could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MessageError {
    /// The payload is shorter than its message type requires.
    #[error("{what} payload too short")]
    Truncated {
        /// The kind of message.
        what: &'static str,
    },
    /// The AMF0 body is malformed.
    #[error("invalid AMF0: {0}")]
    Amf0(#[from] Amf0Error),
    /// A command whose first value is not a string.
    #[error("command name is not a string")]
    NoCommandName,
}

/// Reads the 32-bit big-endian value that starts the payload of Set Chunk Size, Acknowledgement, Window
/// Acknowledgement Size, Set Peer Bandwidth and Abort messages.
pub fn read_u32(payload: &[u8], what: &'static str) -> Result<u32, MessageError> {
    payload
        .get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
        .ok_or(MessageError::Truncated { what })
}

/// Payload of a Set Chunk Size message (the top bit is always clear).
pub fn set_chunk_size_payload(size: u32) -> [u8; 4] {
    (size & 0x7FFF_FFFF).to_be_bytes()
}

/// Payload of a Set Peer Bandwidth message.
pub fn set_peer_bandwidth_payload(size: u32, limit_type: u8) -> [u8; 5] {
    let b = size.to_be_bytes();
    [b[0], b[1], b[2], b[3], limit_type]
}

/// User control event type ids.
pub mod user_control {
    /// The stream became functional.
    pub const STREAM_BEGIN: u16 = 0;
    /// Playback of the stream is over.
    pub const STREAM_EOF: u16 = 1;
    /// No more data on the stream for now.
    pub const STREAM_DRY: u16 = 2;
    /// Client buffer length in milliseconds.
    pub const SET_BUFFER_LENGTH: u16 = 3;
    /// The stream is a recorded one.
    pub const STREAM_IS_RECORDED: u16 = 4;
    /// Ping request from the server.
    pub const PING_REQUEST: u16 = 6;
    /// Ping response from the client.
    pub const PING_RESPONSE: u16 = 7;
}

/// A decoded User Control Message (type 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserControlEvent {
    /// Stream Begin for a message stream id.
    StreamBegin(u32),
    /// Stream EOF for a message stream id.
    StreamEof(u32),
    /// Stream Dry for a message stream id.
    StreamDry(u32),
    /// Set Buffer Length: the client's buffer for a stream, in milliseconds.
    SetBufferLength {
        /// Message stream id.
        stream_id: u32,
        /// Buffer length in milliseconds.
        buffer_ms: u32,
    },
    /// Stream Is Recorded for a message stream id.
    StreamIsRecorded(u32),
    /// Ping Request carrying the sender's timestamp.
    PingRequest(u32),
    /// Ping Response echoing the request's timestamp.
    PingResponse(u32),
    /// An event type this crate does not know; kept so it can be ignored explicitly.
    Unknown(u16),
}

impl UserControlEvent {
    /// Parses the payload of a User Control Message.
    pub fn parse(payload: &[u8]) -> Result<Self, MessageError> {
        const WHAT: &str = "user control";
        let event = payload
            .get(..2)
            .and_then(|b| <[u8; 2]>::try_from(b).ok())
            .map(u16::from_be_bytes)
            .ok_or(MessageError::Truncated { what: WHAT })?;
        let body = payload.get(2..).unwrap_or_default();
        let first = || read_u32(body, WHAT);
        Ok(match event {
            user_control::STREAM_BEGIN => Self::StreamBegin(first()?),
            user_control::STREAM_EOF => Self::StreamEof(first()?),
            user_control::STREAM_DRY => Self::StreamDry(first()?),
            user_control::SET_BUFFER_LENGTH => Self::SetBufferLength {
                stream_id: first()?,
                buffer_ms: read_u32(body.get(4..).unwrap_or_default(), WHAT)?,
            },
            user_control::STREAM_IS_RECORDED => Self::StreamIsRecorded(first()?),
            user_control::PING_REQUEST => Self::PingRequest(first()?),
            user_control::PING_RESPONSE => Self::PingResponse(first()?),
            other => Self::Unknown(other),
        })
    }

    /// Serializes the event as a User Control Message payload (`Unknown` yields just its type).
    pub fn encode(&self, out: &mut BytesMut) {
        let (event, a, b) = match *self {
            Self::StreamBegin(id) => (user_control::STREAM_BEGIN, Some(id), None),
            Self::StreamEof(id) => (user_control::STREAM_EOF, Some(id), None),
            Self::StreamDry(id) => (user_control::STREAM_DRY, Some(id), None),
            Self::SetBufferLength { stream_id, buffer_ms } => {
                (user_control::SET_BUFFER_LENGTH, Some(stream_id), Some(buffer_ms))
            }
            Self::StreamIsRecorded(id) => (user_control::STREAM_IS_RECORDED, Some(id), None),
            Self::PingRequest(t) => (user_control::PING_REQUEST, Some(t), None),
            Self::PingResponse(t) => (user_control::PING_RESPONSE, Some(t), None),
            Self::Unknown(event) => (event, None, None),
        };
        out.put_u16(event);
        if let Some(a) = a {
            out.put_u32(a);
        }
        if let Some(b) = b {
            out.put_u32(b);
        }
    }
}

/// A decoded command message (type 20, or 17 with its leading format byte removed).
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// Procedure name (`connect`, `createStream`, `publish`, `_result`, `onStatus`, …).
    pub name: String,
    /// Transaction id; 0 when the sender expects no answer.
    pub transaction_id: f64,
    /// Command object (`Null` for most commands after `connect`).
    pub command_object: Amf0Value,
    /// Remaining arguments.
    pub args: Vec<Amf0Value>,
}

impl Command {
    /// Builds a command.
    pub fn new(name: &str, transaction_id: f64, command_object: Amf0Value, args: Vec<Amf0Value>) -> Self {
        Self { name: name.to_owned(), transaction_id, command_object, args }
    }

    /// Parses a command payload. `type_id` tells whether it is an AMF3 command, whose first byte (the format
    /// selector, 0 for AMF0) is skipped. Missing transaction ids and command objects are tolerated.
    pub fn parse(type_id: u8, payload: &[u8]) -> Result<Self, MessageError> {
        let body = strip_amf3_prefix(type_id, payload);
        let mut values = amf0::decode_all(body)?.into_iter();
        let name = match values.next() {
            Some(Amf0Value::String(s)) | Some(Amf0Value::LongString(s)) => s,
            _ => return Err(MessageError::NoCommandName),
        };
        let transaction_id = values.next().and_then(|v| v.as_f64()).unwrap_or(0.0);
        let command_object = values.next().unwrap_or(Amf0Value::Null);
        Ok(Self { name, transaction_id, command_object, args: values.collect() })
    }

    /// Serializes the command as an AMF0 command payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        amf0::encode(&Amf0Value::String(self.name.clone()), &mut out);
        amf0::encode(&Amf0Value::Number(self.transaction_id), &mut out);
        amf0::encode(&self.command_object, &mut out);
        amf0::encode_all(&self.args, &mut out);
        out
    }

    /// The `index`th argument after the command object.
    pub fn arg(&self, index: usize) -> Option<&Amf0Value> {
        self.args.get(index)
    }

    /// The `index`th argument as a string, if it is one.
    pub fn arg_str(&self, index: usize) -> Option<&str> {
        self.arg(index).and_then(Amf0Value::as_str)
    }
}

/// Skips the leading format byte of AMF3 command/data messages (types 17 and 15) when it is 0 (AMF0 follows).
pub fn strip_amf3_prefix(type_id: u8, payload: &[u8]) -> &[u8] {
    match (type_id, payload.first()) {
        (type_id::AMF3_COMMAND | type_id::AMF3_DATA, Some(0)) => payload.get(1..).unwrap_or_default(),
        _ => payload,
    }
}

/// The AMF0 info object of an `onStatus` or `_result`/`_error` answer.
pub fn status_object(level: &str, code: &str, description: &str) -> Amf0Value {
    Amf0Value::Object(status_properties(level, code, description))
}

/// The properties of [`status_object`], to extend with more (e.g. `objectEncoding`).
pub fn status_properties(level: &str, code: &str, description: &str) -> Vec<(String, Amf0Value)> {
    vec![
        ("level".to_owned(), Amf0Value::string(level)),
        ("code".to_owned(), Amf0Value::string(code)),
        ("description".to_owned(), Amf0Value::string(description)),
    ]
}

/// Splits an aggregate message (type 22: FLV tags back to back, each followed by its 4-byte size) into its
/// sub-messages, zero-copy. Timestamps are shifted so the first sub-message gets the aggregate's timestamp;
/// the stream id is the aggregate's. A truncated tail is ignored.
pub fn split_aggregate(msg: &Message) -> Vec<Message> {
    const TAG_HEADER: usize = 11;
    let payload = &msg.payload;
    let mut out = Vec::new();
    let mut pos = 0;
    let mut shift = None;
    while let Some(h) = payload.get(pos..pos + TAG_HEADER) {
        let &[kind, s0, s1, s2, t0, t1, t2, t3, ..] = h else { break };
        let size = u32::from_be_bytes([0, s0, s1, s2]) as usize;
        let start = pos + TAG_HEADER;
        if payload.len() < start + size {
            break;
        }
        let tag_ts = u32::from_be_bytes([t3, t0, t1, t2]);
        let shift = *shift.get_or_insert(msg.timestamp.wrapping_sub(tag_ts));
        out.push(Message {
            type_id: kind,
            timestamp: tag_ts.wrapping_add(shift),
            stream_id: msg.stream_id,
            payload: payload.slice(start..start + size),
        });
        pos = start + size + 4;
    }
    out
}

/// Reads `(level, code, description)` from an info object, with empty strings for missing fields.
pub fn read_status(info: &Amf0Value) -> (String, String, String) {
    let field = |key| info.get(key).and_then(Amf0Value::as_str).unwrap_or_default().to_owned();
    (field("level"), field("code"), field("description"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_control_roundtrip() {
        let events = [
            UserControlEvent::StreamBegin(1),
            UserControlEvent::StreamEof(2),
            UserControlEvent::StreamDry(3),
            UserControlEvent::SetBufferLength { stream_id: 1, buffer_ms: 3000 },
            UserControlEvent::StreamIsRecorded(4),
            UserControlEvent::PingRequest(0xdead_beef),
            UserControlEvent::PingResponse(7),
            UserControlEvent::Unknown(31),
        ];
        for ev in events {
            let mut out = BytesMut::new();
            ev.encode(&mut out);
            assert_eq!(UserControlEvent::parse(&out).unwrap(), ev);
        }
    }

    #[test]
    fn user_control_truncated() {
        assert!(UserControlEvent::parse(&[]).is_err());
        assert!(UserControlEvent::parse(&[0, 6, 1]).is_err());
        assert!(UserControlEvent::parse(&[0, 3, 0, 0, 0, 1, 0]).is_err());
    }

    #[test]
    fn command_roundtrip_and_amf3_prefix() {
        let cmd =
            Command::new("publish", 5.0, Amf0Value::Null, vec![Amf0Value::string("s"), Amf0Value::string("live")]);
        let bytes = cmd.encode();
        assert_eq!(Command::parse(type_id::AMF0_COMMAND, &bytes).unwrap(), cmd);
        let mut amf3 = vec![0u8];
        amf3.extend_from_slice(&bytes);
        let parsed = Command::parse(type_id::AMF3_COMMAND, &amf3).unwrap();
        assert_eq!(parsed, cmd);
        assert_eq!(parsed.arg_str(0), Some("s"));
        assert_eq!(parsed.arg_str(5), None);
    }

    #[test]
    fn command_tolerates_missing_fields_and_rejects_garbage() {
        let mut bytes = Vec::new();
        amf0::encode(&Amf0Value::string("closeStream"), &mut bytes);
        let cmd = Command::parse(type_id::AMF0_COMMAND, &bytes).unwrap();
        assert_eq!(cmd.transaction_id, 0.0);
        assert_eq!(cmd.command_object, Amf0Value::Null);
        assert_eq!(Command::parse(type_id::AMF0_COMMAND, &[]), Err(MessageError::NoCommandName));
        assert_eq!(Command::parse(type_id::AMF0_COMMAND, &[0x05]), Err(MessageError::NoCommandName));
        assert!(matches!(Command::parse(type_id::AMF0_COMMAND, &[0x02, 0, 9]), Err(MessageError::Amf0(_))));
    }

    #[test]
    fn control_payloads() {
        assert_eq!(read_u32(&set_chunk_size_payload(4096), "x"), Ok(4096));
        assert_eq!(set_chunk_size_payload(0xFFFF_FFFF), [0x7f, 0xff, 0xff, 0xff]);
        assert_eq!(set_peer_bandwidth_payload(2_500_000, bandwidth_limit::DYNAMIC)[4], 2);
        assert_eq!(read_u32(&[1, 2], "x"), Err(MessageError::Truncated { what: "x" }));
    }

    #[test]
    fn aggregate_is_split_with_shifted_timestamps() {
        let mut body = Vec::new();
        for (kind, ts, data) in [(9u8, 1000u32, &b"video"[..]), (8, 1023, &b"au"[..])] {
            body.push(kind);
            body.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
            body.extend_from_slice(&ts.to_be_bytes()[1..]);
            body.push((ts >> 24) as u8);
            body.extend_from_slice(&[0, 0, 0]);
            body.extend_from_slice(data);
            body.extend_from_slice(&(11 + data.len() as u32).to_be_bytes());
        }
        body.extend_from_slice(&[9, 0, 0, 50]); // truncated tail
        let msg = Message { type_id: type_id::AGGREGATE, timestamp: 5000, stream_id: 1, payload: body.into() };
        let subs = split_aggregate(&msg);
        assert_eq!(subs.len(), 2);
        assert_eq!((subs[0].type_id, subs[0].timestamp, &subs[0].payload[..]), (9, 5000, &b"video"[..]));
        assert_eq!((subs[1].type_id, subs[1].timestamp, &subs[1].payload[..]), (8, 5023, &b"au"[..]));
        assert!(subs.iter().all(|m| m.stream_id == 1));
        let empty = Message { type_id: type_id::AGGREGATE, timestamp: 0, stream_id: 1, payload: bytes::Bytes::new() };
        assert!(split_aggregate(&empty).is_empty());
    }

    #[test]
    fn status_object_fields() {
        let info = status_object("status", "NetStream.Play.Start", "go");
        assert_eq!(read_status(&info), ("status".into(), "NetStream.Play.Start".into(), "go".into()));
        assert_eq!(read_status(&Amf0Value::Null), (String::new(), String::new(), String::new()));
    }
}
