//! A sans-IO RTMP engine: handshake, chunk stream and command sessions for both server and client sides.
//!
//! Nothing here touches a socket. A session is fed the bytes read from the peer
//! ([`ServerSession::handle_input`]), produces events to poll ([`ServerSession::poll_event`]) and bytes to
//! write ([`ServerSession::take_output`]); the caller owns the I/O, timers and threading. This keeps the
//! protocol testable in memory and fuzzable.
//!
//! Layers, bottom up:
//! - [`handshake`]: C0/C1/C2 ↔ S0/S1/S2, simple and complex (digest) variants.
//! - [`chunk`]: the chunk stream, [`chunk::ChunkDecoder`] / [`chunk::ChunkEncoder`], and
//!   [`encode_shared_chunks`] which chunks a media message once for every viewer ("mux once, send to many").
//! - [`message`]: message type ids, protocol control and user control messages, AMF0 commands.
//! - [`server`] / [`client`]: the command-level state machines ([`ServerSession`], [`ClientSession`]).
//!
//! Media messages are written by the server directly from [`encode_shared_chunks`] output on
//! [`AUDIO_CSID`], [`VIDEO_CSID`] and [`DATA_CSID`]; the sessions never use those chunk stream ids for their
//! own messages, and always start a message with a fmt 0 chunk, so both byte sources can be interleaved at
//! message boundaries.

#![warn(missing_docs)]

pub mod chunk;
pub mod client;
mod conn;
pub mod handshake;
pub mod message;
pub mod serve;
pub mod server;

use thiserror::Error;

pub use chunk::{ChunkDecoder, ChunkEncoder, ChunkError, Message, encode_shared_chunks};
pub use client::{ClientConfig, ClientEvent, ClientSession};
pub use handshake::{ClientHandshake, HandshakeError, ServerHandshake};
pub use message::{Command, MessageError, UserControlEvent};
pub use server::{ServerConfig, ServerEvent, ServerSession};

/// Chunk stream id of protocol control and user control messages.
pub const CONTROL_CSID: u32 = 2;
/// Chunk stream id of connection-level commands (`connect`, `createStream`, their answers).
pub const COMMAND_CSID: u32 = 3;
/// Chunk stream id of stream-level commands and status (`publish`, `play`, `onStatus`, `|RtmpSampleAccess`).
pub const STREAM_CSID: u32 = 5;
/// Chunk stream id of audio messages.
pub const AUDIO_CSID: u32 = 6;
/// Chunk stream id of video messages.
pub const VIDEO_CSID: u32 = 7;
/// Chunk stream id of data messages (metadata).
pub const DATA_CSID: u32 = 8;

/// Why a session cannot go on. After an error the connection should be closed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum RtmpError {
    /// The handshake failed.
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// The chunk stream is malformed or exceeds a limit.
    #[error("chunk stream: {0}")]
    Chunk(#[from] ChunkError),
    /// A message could not be parsed.
    #[error("message: {0}")]
    Message(#[from] MessageError),
    /// A command other than `connect` arrived before the connection was accepted.
    #[error("command `{0}` before the connection was accepted")]
    NotConnected(String),
    /// A second `connect`.
    #[error("duplicate connect")]
    DuplicateConnect,
    /// A stream command on a message stream id that `createStream` never returned.
    #[error("command `{command}` on unknown stream {stream_id}")]
    UnknownStream {
        /// The command.
        command: String,
        /// The message stream id it came on.
        stream_id: u32,
    },
    /// A stream command on a stream that is already publishing or playing.
    #[error("command `{command}` on busy stream {stream_id}")]
    StreamBusy {
        /// The command.
        command: String,
        /// The message stream id.
        stream_id: u32,
    },
    /// The client was asked to do something its state does not allow (e.g. send media before publishing).
    #[error("not allowed now: {0}")]
    InvalidState(&'static str),
}
