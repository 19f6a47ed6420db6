//! The server side of an RTMP connection: [`ServerSession`].
//!
//! The session runs the handshake, the chunk stream and every command that needs no decision from the
//! application (`releaseStream`, `FCPublish`, `createStream`, pings, acknowledgements, …). Decisions — may
//! this client connect, publish, play — surface as [`ServerEvent`]s and are answered with `accept_*` /
//! `reject_*`. Media from publishers surfaces as events carrying zero-copy payloads.

use std::collections::VecDeque;

use bytes::Bytes;
use ferrocast_formats::amf0::{self, Amf0Value};

use crate::chunk::{DEFAULT_MAX_MESSAGE_SIZE, Message};
use crate::conn::Conn;
use crate::handshake::ServerHandshake;
use crate::message::{
    Command, UserControlEvent, bandwidth_limit, set_peer_bandwidth_payload, split_aggregate, status_object,
    status_properties, type_id,
};
use crate::{COMMAND_CSID, CONTROL_CSID, RtmpError, STREAM_CSID};

pub use crate::{AUDIO_CSID, DATA_CSID, VIDEO_CSID};

/// Most message streams (`createStream`) open at once on one connection.
pub const MAX_STREAMS: usize = 16;

/// Settings of a server session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Outbound chunk size, announced when the connection is accepted (default 4096).
    pub chunk_size: u32,
    /// Window Acknowledgement Size announced to the client (default 2 500 000).
    pub window_ack_size: u32,
    /// Set Peer Bandwidth announced to the client (default 2 500 000, dynamic).
    pub peer_bandwidth: u32,
    /// Longest message accepted from the client (default 16 MiB).
    pub max_message_size: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            chunk_size: 4096,
            window_ack_size: 2_500_000,
            peer_bandwidth: 2_500_000,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

/// Something the application must know or decide about.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// The client asked to connect: answer with [`ServerSession::accept_connect`] or
    /// [`ServerSession::reject_connect`].
    Connect {
        /// The `app` of the command object.
        app: String,
        /// The `tcUrl` of the command object, when present.
        tc_url: Option<String>,
        /// Every property of the command object, in wire order.
        command_object: Vec<(String, Amf0Value)>,
    },
    /// The client asked to publish: answer with [`ServerSession::accept_publish`] or
    /// [`ServerSession::reject_publish`].
    Publish {
        /// Message stream id.
        stream_id: u32,
        /// The stream name as sent, including any `?query`.
        name: String,
        /// `live`, `record` or `append` (as sent; `live` when missing).
        publish_type: String,
    },
    /// The client asked to play: answer with [`ServerSession::accept_play`] or [`ServerSession::reject_play`].
    Play {
        /// Message stream id.
        stream_id: u32,
        /// The stream name as sent, including any `?query`.
        name: String,
        /// Start argument (-2 live or recorded, -1 live only, ≥ 0 recorded from that position).
        start: f64,
    },
    /// An audio message (an FLV audio tag body) from a publisher.
    Audio {
        /// Message stream id.
        stream_id: u32,
        /// Timestamp in milliseconds.
        timestamp: u32,
        /// Tag body.
        payload: Bytes,
    },
    /// A video message (an FLV video tag body) from a publisher.
    Video {
        /// Message stream id.
        stream_id: u32,
        /// Timestamp in milliseconds.
        timestamp: u32,
        /// Tag body.
        payload: Bytes,
    },
    /// A data message from a publisher: the raw AMF0 body, with any `@setDataFrame` prefix removed (so
    /// metadata starts with `onMetaData`).
    Data {
        /// Message stream id.
        stream_id: u32,
        /// Timestamp in milliseconds.
        timestamp: u32,
        /// AMF0 body.
        payload: Bytes,
    },
    /// A publishing stream ended (`FCUnpublish`, `closeStream` or `deleteStream`).
    Unpublish {
        /// Message stream id.
        stream_id: u32,
    },
    /// The client deleted a stream (`deleteStream`), or closed a playing one (`closeStream`): stop sending
    /// on it.
    DeleteStream {
        /// Message stream id.
        stream_id: u32,
    },
    /// A player paused or resumed (the session already answered with the matching status).
    Pause {
        /// Message stream id.
        stream_id: u32,
        /// `true` for pause, `false` for resume.
        paused: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum ConnectState {
    AwaitingConnect,
    Pending { transaction_id: f64, object_encoding: f64 },
    Accepted,
    Rejected,
}

#[derive(Debug, Clone, PartialEq)]
enum Role {
    Idle,
    Publishing { name: String },
    Playing,
}

#[derive(Debug)]
struct StreamSlot {
    id: u32,
    role: Role,
}

/// Server side of one RTMP connection, sans-IO.
#[derive(Debug)]
pub struct ServerSession {
    config: ServerConfig,
    handshake: Option<ServerHandshake>,
    conn: Conn,
    connect: ConnectState,
    streams: Vec<StreamSlot>,
    next_stream_id: u32,
    events: VecDeque<ServerEvent>,
}

impl ServerSession {
    /// A session waiting for the client's handshake.
    pub fn new(config: ServerConfig) -> Self {
        let conn = Conn::new(config.max_message_size);
        Self {
            config,
            handshake: Some(ServerHandshake::new()),
            conn,
            connect: ConnectState::AwaitingConnect,
            streams: Vec::new(),
            next_stream_id: 1,
            events: VecDeque::new(),
        }
    }

    /// Processes bytes read from the client; events and output may be queued. After an error the connection
    /// should be closed.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<(), RtmpError> {
        self.conn.count_input(data.len());
        let mut rest = data;
        if let Some(hs) = self.handshake.as_mut() {
            let used = hs.feed(rest)?;
            if let Some(out) = hs.take_output() {
                self.conn.out.push(Bytes::from(out));
            }
            if !hs.is_done() {
                return Ok(());
            }
            self.handshake = None;
            rest = rest.get(used..).unwrap_or_default();
        }
        self.conn.decoder.feed(rest);
        while let Some(msg) = self.conn.decoder.next_message()? {
            self.dispatch(msg)?;
        }
        Ok(())
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// The next bytes to write to the socket. Call until `None` before writing shared media chunks, so that
    /// both byte sources meet at message boundaries.
    pub fn take_output(&mut self) -> Option<Bytes> {
        self.conn.out.take()
    }

    /// The chunk size media must be chunked with for this client (128 until the connection is accepted).
    pub fn out_chunk_size(&self) -> u32 {
        self.conn.encoder.chunk_size()
    }

    /// Whether the handshake is over.
    pub fn is_handshake_done(&self) -> bool {
        self.handshake.is_none()
    }

    /// Accepts a pending `connect`: sends Window Acknowledgement Size, Set Peer Bandwidth, Set Chunk Size and
    /// the `_result` (`NetConnection.Connect.Success`). Does nothing if no `connect` is pending.
    pub fn accept_connect(&mut self) {
        let ConnectState::Pending { transaction_id, object_encoding } = self.connect else {
            return;
        };
        self.connect = ConnectState::Accepted;
        let conn = &mut self.conn;
        conn.send(CONTROL_CSID, type_id::WINDOW_ACK_SIZE, 0, 0, &self.config.window_ack_size.to_be_bytes());
        let bandwidth = set_peer_bandwidth_payload(self.config.peer_bandwidth, bandwidth_limit::DYNAMIC);
        conn.send(CONTROL_CSID, type_id::SET_PEER_BANDWIDTH, 0, 0, &bandwidth);
        conn.set_out_chunk_size(self.config.chunk_size);
        let properties = Amf0Value::object([
            ("fmsVer", Amf0Value::string("FMS/3,0,1,123")),
            ("capabilities", Amf0Value::Number(31.0)),
        ]);
        let mut info = status_properties("status", "NetConnection.Connect.Success", "Connection succeeded.");
        info.push(("objectEncoding".to_owned(), Amf0Value::Number(object_encoding)));
        let result = Command::new("_result", transaction_id, properties, vec![Amf0Value::Object(info)]);
        conn.send_command(COMMAND_CSID, 0, &result);
    }

    /// Rejects a pending `connect` with `NetConnection.Connect.Rejected`; the caller should then close the
    /// connection once the output is written.
    pub fn reject_connect(&mut self, description: &str) {
        let ConnectState::Pending { transaction_id, .. } = self.connect else {
            return;
        };
        self.connect = ConnectState::Rejected;
        let info = status_object("error", "NetConnection.Connect.Rejected", description);
        let error = Command::new("_error", transaction_id, Amf0Value::Null, vec![info]);
        self.conn.send_command(COMMAND_CSID, 0, &error);
    }

    /// Accepts a `publish`: sends `NetStream.Publish.Start`.
    pub fn accept_publish(&mut self, stream_id: u32) {
        if !self.stream(stream_id).is_some_and(|s| matches!(s.role, Role::Publishing { .. })) {
            return;
        }
        self.send_status(stream_id, "status", "NetStream.Publish.Start", "Start publishing.");
    }

    /// Rejects a `publish` with an error status (e.g. `NetStream.Publish.BadName`); media on that stream is
    /// dropped from then on.
    pub fn reject_publish(&mut self, stream_id: u32, code: &str, description: &str) {
        let Some(slot) = self.stream_mut(stream_id) else {
            return;
        };
        slot.role = Role::Idle;
        self.send_status(stream_id, "error", code, description);
    }

    /// Accepts a `play`: sends Stream Begin, `NetStream.Play.Reset`, `NetStream.Play.Start`,
    /// `|RtmpSampleAccess` and `NetStream.Data.Start`, the sequence SRS and nginx-rtmp send. Media may be
    /// written after this output.
    pub fn accept_play(&mut self, stream_id: u32) {
        let Some(slot) = self.stream_mut(stream_id) else {
            return;
        };
        slot.role = Role::Playing;
        self.conn.send_user_control(UserControlEvent::StreamBegin(stream_id));
        self.send_status(stream_id, "status", "NetStream.Play.Reset", "Playing and resetting stream.");
        self.send_status(stream_id, "status", "NetStream.Play.Start", "Started playing stream.");
        let sample_access =
            [Amf0Value::string("|RtmpSampleAccess"), Amf0Value::Boolean(true), Amf0Value::Boolean(true)];
        self.conn.send_data(STREAM_CSID, stream_id, &sample_access);
        let data_start =
            [Amf0Value::string("onStatus"), Amf0Value::object([("code", Amf0Value::string("NetStream.Data.Start"))])];
        self.conn.send_data(STREAM_CSID, stream_id, &data_start);
    }

    /// Rejects a `play` with an error status (e.g. `NetStream.Play.StreamNotFound`).
    pub fn reject_play(&mut self, stream_id: u32, code: &str, description: &str) {
        let Some(slot) = self.stream_mut(stream_id) else {
            return;
        };
        slot.role = Role::Idle;
        self.send_status(stream_id, "error", code, description);
    }

    /// Sends an `onStatus` command on a message stream.
    pub fn send_status(&mut self, stream_id: u32, level: &str, code: &str, description: &str) {
        let status = Command::new("onStatus", 0.0, Amf0Value::Null, vec![status_object(level, code, description)]);
        self.conn.send_command(STREAM_CSID, stream_id, &status);
    }

    /// Tells a player its stream ended: `NetStream.Play.UnpublishNotify`, then Stream EOF.
    pub fn end_play(&mut self, stream_id: u32) {
        self.send_status(stream_id, "status", "NetStream.Play.UnpublishNotify", "Stream is now unpublished.");
        self.conn.send_user_control(UserControlEvent::StreamEof(stream_id));
    }

    /// Sends any message (e.g. metadata or sequence headers for one player), chunked with the current
    /// outbound chunk size and starting with a fmt 0 chunk. Payloads longer than 16 MiB − 1 are dropped.
    pub fn send_message(&mut self, csid: u32, type_id: u8, stream_id: u32, timestamp: u32, payload: impl AsRef<[u8]>) {
        self.conn.send(csid, type_id, stream_id, timestamp, payload.as_ref());
    }

    fn stream(&self, id: u32) -> Option<&StreamSlot> {
        self.streams.iter().find(|s| s.id == id)
    }

    fn stream_mut(&mut self, id: u32) -> Option<&mut StreamSlot> {
        self.streams.iter_mut().find(|s| s.id == id)
    }

    fn is_publishing(&self, id: u32) -> bool {
        self.stream(id).is_some_and(|s| matches!(s.role, Role::Publishing { .. }))
    }

    fn dispatch(&mut self, msg: Message) -> Result<(), RtmpError> {
        match msg.type_id {
            type_id::AMF0_COMMAND | type_id::AMF3_COMMAND => {
                let command = Command::parse(msg.type_id, &msg.payload)?;
                self.handle_command(msg.stream_id, command)
            }
            type_id::AUDIO | type_id::VIDEO | type_id::AMF0_DATA | type_id::AMF3_DATA => {
                self.handle_media(msg);
                Ok(())
            }
            type_id::AGGREGATE => {
                for sub in split_aggregate(&msg) {
                    if matches!(sub.type_id, type_id::AUDIO | type_id::VIDEO | type_id::AMF0_DATA) {
                        self.handle_media(sub);
                    }
                }
                Ok(())
            }
            _ => {
                self.conn.handle_control(&msg);
                Ok(())
            }
        }
    }

    fn handle_media(&mut self, msg: Message) {
        if !self.is_publishing(msg.stream_id) {
            return;
        }
        let Message { type_id: kind, timestamp, stream_id, payload } = msg;
        let event = match kind {
            type_id::AUDIO => ServerEvent::Audio { stream_id, timestamp, payload },
            type_id::VIDEO => ServerEvent::Video { stream_id, timestamp, payload },
            _ => ServerEvent::Data { stream_id, timestamp, payload: strip_set_data_frame(kind, payload) },
        };
        self.events.push_back(event);
    }

    fn handle_command(&mut self, stream_id: u32, cmd: Command) -> Result<(), RtmpError> {
        match (&self.connect, cmd.name.as_str()) {
            (ConnectState::AwaitingConnect, "connect") => {
                self.on_connect(cmd);
                return Ok(());
            }
            (_, "connect") => return Err(RtmpError::DuplicateConnect),
            // Answers to our own calls (none expected) and notifications: nothing to do, in any state.
            (_, "_result" | "_error" | "onBWDone" | "onStatus") => return Ok(()),
            (ConnectState::Accepted, _) => {}
            _ => return Err(RtmpError::NotConnected(cmd.name)),
        }
        let txn = cmd.transaction_id;
        match cmd.name.as_str() {
            "releaseStream" | "FCSubscribe" | "_checkbw" => self.respond(txn, Amf0Value::Undefined),
            "FCPublish" => {
                let name = cmd.arg_str(0).unwrap_or_default().to_owned();
                let info = status_object("status", "NetStream.Publish.Start", &name);
                let notify = Command::new("onFCPublish", 0.0, Amf0Value::Null, vec![info]);
                self.conn.send_command(COMMAND_CSID, 0, &notify);
                self.respond(txn, Amf0Value::Undefined);
            }
            "createStream" => self.on_create_stream(txn),
            "getStreamLength" => self.respond(txn, Amf0Value::Number(0.0)),
            "publish" => self.on_publish(stream_id, cmd)?,
            "play" => self.on_play(stream_id, cmd)?,
            "pause" | "pauseRaw" => self.on_pause(stream_id, &cmd),
            "FCUnpublish" => {
                let name = cmd.arg_str(0).unwrap_or_default();
                let target = if self.is_publishing(stream_id) {
                    Some(stream_id)
                } else {
                    self.streams
                        .iter()
                        .find(|s| matches!(&s.role, Role::Publishing { name: n } if n == name))
                        .map(|s| s.id)
                };
                if let Some(id) = target {
                    self.unpublish(id);
                }
                self.respond(txn, Amf0Value::Undefined);
            }
            "closeStream" => self.close_stream(stream_id),
            "deleteStream" => {
                let id = cmd.arg(0).and_then(Amf0Value::as_f64).map_or(stream_id, f64_to_u32);
                if self.stream(id).is_some() {
                    self.close_stream(id);
                    self.streams.retain(|s| s.id != id);
                    self.events.push_back(ServerEvent::DeleteStream { stream_id: id });
                }
            }
            "receiveAudio" | "receiveVideo" => {}
            _ => {
                if txn > 0.0 {
                    let info = status_object("error", "NetConnection.Call.Failed", "Method not found.");
                    let error = Command::new("_error", txn, Amf0Value::Null, vec![info]);
                    self.conn.send_command(COMMAND_CSID, 0, &error);
                }
            }
        }
        Ok(())
    }

    /// Sends `_result(txn, null, value)` if the caller expects an answer.
    fn respond(&mut self, txn: f64, value: Amf0Value) {
        if txn > 0.0 {
            self.conn.send_command(COMMAND_CSID, 0, &Command::new("_result", txn, Amf0Value::Null, vec![value]));
        }
    }

    fn on_connect(&mut self, cmd: Command) {
        let object = match cmd.command_object {
            Amf0Value::Object(p) | Amf0Value::EcmaArray(p) => p,
            _ => Vec::new(),
        };
        let get = |key: &str| object.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        let app = get("app").and_then(Amf0Value::as_str).unwrap_or_default().to_owned();
        let tc_url = get("tcUrl").and_then(Amf0Value::as_str).map(str::to_owned);
        let object_encoding = get("objectEncoding").and_then(Amf0Value::as_f64).unwrap_or(0.0);
        self.connect = ConnectState::Pending { transaction_id: cmd.transaction_id, object_encoding };
        self.events.push_back(ServerEvent::Connect { app, tc_url, command_object: object });
    }

    fn on_create_stream(&mut self, txn: f64) {
        if self.streams.len() >= MAX_STREAMS {
            let info = status_object("error", "NetConnection.Call.Failed", "Too many streams.");
            self.conn.send_command(COMMAND_CSID, 0, &Command::new("_error", txn, Amf0Value::Null, vec![info]));
            return;
        }
        let id = self.next_stream_id;
        self.next_stream_id = self.next_stream_id.saturating_add(1);
        self.streams.push(StreamSlot { id, role: Role::Idle });
        self.respond(txn, Amf0Value::Number(f64::from(id)));
    }

    fn claim_stream(&mut self, stream_id: u32, command: &str) -> Result<&mut StreamSlot, RtmpError> {
        let slot = self
            .streams
            .iter_mut()
            .find(|s| s.id == stream_id)
            .ok_or_else(|| RtmpError::UnknownStream { command: command.to_owned(), stream_id })?;
        if slot.role != Role::Idle {
            return Err(RtmpError::StreamBusy { command: command.to_owned(), stream_id });
        }
        Ok(slot)
    }

    fn on_publish(&mut self, stream_id: u32, cmd: Command) -> Result<(), RtmpError> {
        let name = cmd.arg_str(0).unwrap_or_default().to_owned();
        let publish_type = cmd.arg_str(1).filter(|t| !t.is_empty()).unwrap_or("live").to_owned();
        let slot = self.claim_stream(stream_id, "publish")?;
        slot.role = Role::Publishing { name: name.clone() };
        self.events.push_back(ServerEvent::Publish { stream_id, name, publish_type });
        Ok(())
    }

    fn on_play(&mut self, stream_id: u32, cmd: Command) -> Result<(), RtmpError> {
        let name = cmd.arg_str(0).unwrap_or_default().to_owned();
        let start = cmd.arg(1).and_then(Amf0Value::as_f64).unwrap_or(-2.0);
        let slot = self.claim_stream(stream_id, "play")?;
        slot.role = Role::Playing;
        self.events.push_back(ServerEvent::Play { stream_id, name, start });
        Ok(())
    }

    fn on_pause(&mut self, stream_id: u32, cmd: &Command) {
        if !self.stream(stream_id).is_some_and(|s| s.role == Role::Playing) {
            return;
        }
        let paused = cmd.arg(0).and_then(Amf0Value::as_bool).unwrap_or(true);
        let (code, description) = if paused {
            ("NetStream.Pause.Notify", "Paused stream.")
        } else {
            ("NetStream.Unpause.Notify", "Unpaused stream.")
        };
        self.send_status(stream_id, "status", code, description);
        self.events.push_back(ServerEvent::Pause { stream_id, paused });
    }

    fn unpublish(&mut self, stream_id: u32) {
        if let Some(slot) = self.stream_mut(stream_id)
            && matches!(slot.role, Role::Publishing { .. })
        {
            slot.role = Role::Idle;
            self.events.push_back(ServerEvent::Unpublish { stream_id });
        }
    }

    fn close_stream(&mut self, stream_id: u32) {
        match self.stream(stream_id).map(|s| &s.role) {
            Some(Role::Publishing { .. }) => self.unpublish(stream_id),
            Some(Role::Playing) => {
                if let Some(slot) = self.stream_mut(stream_id) {
                    slot.role = Role::Idle;
                }
                self.events.push_back(ServerEvent::DeleteStream { stream_id });
            }
            _ => {}
        }
    }
}

/// Converts a stream id argument (an AMF0 number) to `u32`, mapping nonsense to 0 (never a valid id).
fn f64_to_u32(v: f64) -> u32 {
    if v.is_finite() && v >= 0.0 && v <= f64::from(u32::MAX) { v as u32 } else { 0 }
}

/// Removes the AMF3 format byte and a leading `@setDataFrame` string from a data message body.
fn strip_set_data_frame(kind: u8, payload: Bytes) -> Bytes {
    let skip = crate::message::strip_amf3_prefix(kind, &payload).len();
    let body = payload.slice(payload.len() - skip..);
    let mut rest: &[u8] = &body;
    match amf0::decode(&mut rest) {
        Ok(Amf0Value::String(name)) if name == "@setDataFrame" => body.slice(body.len() - rest.len()..),
        _ => body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::{ChunkDecoder, ChunkEncoder};
    use crate::handshake::{ClientHandshake, HANDSHAKE_SIZE};
    use bytes::BytesMut;

    /// A hand-driven client: raw chunk encoder and decoder on top of a finished handshake.
    struct Peer {
        enc: ChunkEncoder,
        dec: ChunkDecoder,
        session: ServerSession,
    }

    impl Peer {
        fn new() -> Self {
            let mut session = ServerSession::new(ServerConfig::default());
            let mut hs = ClientHandshake::new();
            session.handle_input(&hs.take_output().unwrap()).unwrap();
            let s = drain(&mut session);
            assert_eq!(s.len(), 1 + 2 * HANDSHAKE_SIZE);
            hs.feed(&s).unwrap();
            session.handle_input(&hs.take_output().unwrap()).unwrap();
            assert!(session.is_handshake_done());
            Self { enc: ChunkEncoder::new(), dec: ChunkDecoder::new(), session }
        }

        fn send(&mut self, type_id: u8, stream_id: u32, payload: &[u8]) -> Result<(), RtmpError> {
            let mut out = BytesMut::new();
            self.enc.encode(3, type_id, stream_id, 0, payload, &mut out);
            self.session.handle_input(&out)
        }

        fn command(&mut self, stream_id: u32, name: &str, txn: f64, args: Vec<Amf0Value>) -> Result<(), RtmpError> {
            let obj = if name == "connect" {
                Amf0Value::object([("app", Amf0Value::string("live")), ("tcUrl", Amf0Value::string("rtmp://h/live"))])
            } else {
                Amf0Value::Null
            };
            self.send(type_id::AMF0_COMMAND, stream_id, &Command::new(name, txn, obj, args).encode())
        }

        fn received(&mut self) -> Vec<Message> {
            self.dec.feed(&drain(&mut self.session));
            let mut msgs = Vec::new();
            while let Some(m) = self.dec.next_message().unwrap() {
                msgs.push(m);
            }
            msgs
        }

        fn commands(&mut self) -> Vec<Command> {
            self.received()
                .into_iter()
                .filter(|m| m.type_id == type_id::AMF0_COMMAND)
                .map(|m| Command::parse(m.type_id, &m.payload).unwrap())
                .collect()
        }

        fn connected() -> Self {
            let mut p = Self::new();
            p.command(0, "connect", 1.0, vec![]).unwrap();
            assert!(matches!(p.session.poll_event(), Some(ServerEvent::Connect { .. })));
            p.session.accept_connect();
            p.received();
            p
        }

        fn with_stream() -> Self {
            let mut p = Self::connected();
            p.command(0, "createStream", 2.0, vec![Amf0Value::Null]).unwrap();
            assert_eq!(p.commands()[0].args, vec![Amf0Value::Number(1.0)]);
            p
        }
    }

    fn drain(session: &mut ServerSession) -> Vec<u8> {
        let mut all = Vec::new();
        while let Some(b) = session.take_output() {
            all.extend_from_slice(&b);
        }
        all
    }

    #[test]
    fn connect_accept_sends_control_and_result() {
        let mut p = Peer::new();
        p.command(0, "connect", 1.0, vec![]).unwrap();
        match p.session.poll_event() {
            Some(ServerEvent::Connect { app, tc_url, command_object }) => {
                assert_eq!(app, "live");
                assert_eq!(tc_url.as_deref(), Some("rtmp://h/live"));
                assert_eq!(command_object.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.session.out_chunk_size(), 128);
        p.session.accept_connect();
        assert_eq!(p.session.out_chunk_size(), 4096);
        let msgs = p.received();
        let types: Vec<u8> = msgs.iter().map(|m| m.type_id).collect();
        assert_eq!(
            types,
            [type_id::WINDOW_ACK_SIZE, type_id::SET_PEER_BANDWIDTH, type_id::SET_CHUNK_SIZE, type_id::AMF0_COMMAND]
        );
        let result = Command::parse(type_id::AMF0_COMMAND, &msgs[3].payload).unwrap();
        assert_eq!((result.name.as_str(), result.transaction_id), ("_result", 1.0));
        assert_eq!(result.args[0].get("code").and_then(Amf0Value::as_str), Some("NetConnection.Connect.Success"));
        assert_eq!(result.args[0].get("objectEncoding"), Some(&Amf0Value::Number(0.0)));
        assert_eq!(p.dec.chunk_size(), 4096);
    }

    #[test]
    fn connect_reject_and_commands_before_connect() {
        let mut p = Peer::new();
        assert_eq!(p.command(0, "createStream", 2.0, vec![]), Err(RtmpError::NotConnected("createStream".into())));
        let mut p = Peer::new();
        p.command(0, "connect", 1.0, vec![]).unwrap();
        assert!(matches!(p.command(0, "createStream", 2.0, vec![]), Err(RtmpError::NotConnected(_))));
        p.session.reject_connect("nope");
        let cmds = p.commands();
        assert_eq!(cmds[0].name, "_error");
        assert_eq!(cmds[0].args[0].get("code").and_then(Amf0Value::as_str), Some("NetConnection.Connect.Rejected"));
        assert!(matches!(
            p.command(0, "releaseStream", 2.0, vec![]),
            Err(RtmpError::DuplicateConnect) | Err(RtmpError::NotConnected(_))
        ));
        assert_eq!(p.command(0, "connect", 1.0, vec![]), Err(RtmpError::DuplicateConnect));
    }

    #[test]
    fn publish_flow_and_media_events() {
        let mut p = Peer::connected();
        p.command(0, "releaseStream", 2.0, vec![Amf0Value::string("s")]).unwrap();
        p.command(0, "FCPublish", 3.0, vec![Amf0Value::string("s")]).unwrap();
        p.command(0, "createStream", 4.0, vec![]).unwrap();
        let cmds = p.commands();
        let names: Vec<&str> = cmds.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["_result", "onFCPublish", "_result", "_result"]);
        assert_eq!(cmds[3].args, vec![Amf0Value::Number(1.0)]);

        // Media before publish is dropped.
        p.send(type_id::VIDEO, 1, b"early").unwrap();
        assert_eq!(p.session.poll_event(), None);

        p.command(1, "publish", 5.0, vec![Amf0Value::string("s?k=v"), Amf0Value::string("live")]).unwrap();
        assert_eq!(
            p.session.poll_event(),
            Some(ServerEvent::Publish { stream_id: 1, name: "s?k=v".into(), publish_type: "live".into() })
        );
        p.session.accept_publish(1);
        let status = p.commands();
        assert_eq!(status[0].args[0].get("code").and_then(Amf0Value::as_str), Some("NetStream.Publish.Start"));

        let mut meta = Vec::new();
        amf0::encode_all(
            &[Amf0Value::string("@setDataFrame"), Amf0Value::string("onMetaData"), Amf0Value::EcmaArray(vec![])],
            &mut meta,
        );
        p.send(type_id::AMF0_DATA, 1, &meta).unwrap();
        p.send(type_id::VIDEO, 1, b"vid").unwrap();
        p.send(type_id::AUDIO, 1, b"aud").unwrap();
        match p.session.poll_event() {
            Some(ServerEvent::Data { payload, .. }) => {
                let values = amf0::decode_all(&payload).unwrap();
                assert_eq!(values[0].as_str(), Some("onMetaData"));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(p.session.poll_event(), Some(ServerEvent::Video { stream_id: 1, payload, .. }) if &payload[..] == b"vid")
        );
        assert!(
            matches!(p.session.poll_event(), Some(ServerEvent::Audio { stream_id: 1, payload, .. }) if &payload[..] == b"aud")
        );

        p.command(0, "FCUnpublish", 6.0, vec![Amf0Value::string("s?k=v")]).unwrap();
        assert_eq!(p.session.poll_event(), Some(ServerEvent::Unpublish { stream_id: 1 }));
        p.command(0, "deleteStream", 7.0, vec![Amf0Value::Number(1.0)]).unwrap();
        assert_eq!(p.session.poll_event(), Some(ServerEvent::DeleteStream { stream_id: 1 }));
        assert_eq!(p.session.poll_event(), None);
    }

    #[test]
    fn publish_errors() {
        let mut p = Peer::connected();
        assert!(matches!(
            p.command(1, "publish", 5.0, vec![Amf0Value::string("s")]),
            Err(RtmpError::UnknownStream { stream_id: 1, .. })
        ));
        let mut p = Peer::with_stream();
        p.command(1, "publish", 5.0, vec![Amf0Value::string("s")]).unwrap();
        assert!(matches!(
            p.command(1, "publish", 5.0, vec![Amf0Value::string("s")]),
            Err(RtmpError::StreamBusy { .. })
        ));
        let mut p = Peer::with_stream();
        p.command(1, "publish", 5.0, vec![Amf0Value::string("s")]).unwrap();
        p.session.poll_event();
        p.session.reject_publish(1, "NetStream.Publish.BadName", "taken");
        let status = p.commands();
        assert_eq!(status[0].args[0].get("level").and_then(Amf0Value::as_str), Some("error"));
        p.send(type_id::VIDEO, 1, b"x").unwrap();
        assert_eq!(p.session.poll_event(), None);
    }

    #[test]
    fn play_flow_in_srs_order() {
        let mut p = Peer::with_stream();
        p.command(1, "play", 5.0, vec![Amf0Value::string("s"), Amf0Value::Number(-1.0)]).unwrap();
        assert_eq!(p.session.poll_event(), Some(ServerEvent::Play { stream_id: 1, name: "s".into(), start: -1.0 }));
        p.session.accept_play(1);
        let msgs = p.received();
        assert_eq!(msgs[0].type_id, type_id::USER_CONTROL);
        assert_eq!(UserControlEvent::parse(&msgs[0].payload), Ok(UserControlEvent::StreamBegin(1)));
        let code = |m: &Message| {
            let values = amf0::decode_all(&m.payload).unwrap();
            let info = values.iter().rev().find(|v| v.get("code").is_some()).cloned();
            (
                values[0].as_str().unwrap().to_owned(),
                info.and_then(|i| i.get("code").and_then(Amf0Value::as_str).map(str::to_owned)),
            )
        };
        assert_eq!(code(&msgs[1]), ("onStatus".into(), Some("NetStream.Play.Reset".into())));
        assert_eq!(code(&msgs[2]), ("onStatus".into(), Some("NetStream.Play.Start".into())));
        assert_eq!((msgs[3].type_id, code(&msgs[3]).0), (type_id::AMF0_DATA, "|RtmpSampleAccess".into()));
        assert_eq!(code(&msgs[4]), ("onStatus".into(), Some("NetStream.Data.Start".into())));
        assert!(msgs.iter().all(|m| m.stream_id == 1 || m.type_id == type_id::USER_CONTROL));

        p.command(1, "pause", 0.0, vec![Amf0Value::Boolean(true), Amf0Value::Number(0.0)]).unwrap();
        assert_eq!(p.session.poll_event(), Some(ServerEvent::Pause { stream_id: 1, paused: true }));
        assert_eq!(code(&p.received()[0]).1.as_deref(), Some("NetStream.Pause.Notify"));

        p.session.end_play(1);
        let msgs = p.received();
        assert_eq!(code(&msgs[0]).1.as_deref(), Some("NetStream.Play.UnpublishNotify"));
        assert_eq!(UserControlEvent::parse(&msgs[1].payload), Ok(UserControlEvent::StreamEof(1)));

        p.command(1, "closeStream", 0.0, vec![]).unwrap();
        assert_eq!(p.session.poll_event(), Some(ServerEvent::DeleteStream { stream_id: 1 }));
    }

    #[test]
    fn misc_commands_and_control() {
        let mut p = Peer::with_stream();
        p.command(0, "getStreamLength", 3.0, vec![Amf0Value::string("s")]).unwrap();
        p.command(0, "_checkbw", 4.0, vec![]).unwrap();
        p.command(0, "noSuchMethod", 5.0, vec![]).unwrap();
        p.command(0, "noSuchNotification", 0.0, vec![]).unwrap();
        p.command(1, "receiveAudio", 0.0, vec![Amf0Value::Boolean(true)]).unwrap();
        let cmds = p.commands();
        let answers: Vec<(&str, f64)> = cmds.iter().map(|c| (c.name.as_str(), c.transaction_id)).collect();
        assert_eq!(answers, [("_result", 3.0), ("_result", 4.0), ("_error", 5.0)]);

        // AMF3 command (type 17): leading 0 byte then AMF0.
        let mut body = vec![0u8];
        body.extend(Command::new("createStream", 6.0, Amf0Value::Null, vec![]).encode());
        p.send(type_id::AMF3_COMMAND, 0, &body).unwrap();
        assert_eq!(p.commands()[0].args, vec![Amf0Value::Number(2.0)]);

        // Ping.
        let mut ping = BytesMut::new();
        UserControlEvent::PingRequest(42).encode(&mut ping);
        p.send(type_id::USER_CONTROL, 0, &ping).unwrap();
        let msgs = p.received();
        assert_eq!(UserControlEvent::parse(&msgs[0].payload), Ok(UserControlEvent::PingResponse(42)));

        // Malformed command is an error, not a panic.
        assert!(matches!(p.send(type_id::AMF0_COMMAND, 0, &[0x05]), Err(RtmpError::Message(_))));
    }

    #[test]
    fn stream_limit() {
        let mut p = Peer::connected();
        for i in 0..MAX_STREAMS + 1 {
            p.command(0, "createStream", 2.0 + i as f64, vec![]).unwrap();
        }
        let cmds = p.commands();
        assert_eq!(cmds.last().map(|c| c.name.as_str()), Some("_error"));
    }

    #[test]
    fn session_messages_avoid_media_csids() {
        let mut p = Peer::with_stream();
        p.command(1, "play", 5.0, vec![Amf0Value::string("s")]).unwrap();
        p.session.accept_play(1);
        p.session.end_play(1);
        let raw = drain(&mut p.session);
        // Walk the fmt 0 basic headers: every session message is a single fmt 0 chunk at this size.
        let mut dec = ChunkDecoder::new();
        dec.set_chunk_size(4096).unwrap();
        let mut pos = 0;
        while pos < raw.len() {
            let csid = u32::from(raw[pos] & 0x3f);
            assert_eq!(raw[pos] >> 6, 0);
            assert!(![AUDIO_CSID, VIDEO_CSID, DATA_CSID].contains(&csid));
            let len = u32::from_be_bytes([0, raw[pos + 4], raw[pos + 5], raw[pos + 6]]) as usize;
            pos += 12 + len;
        }
    }

    #[test]
    fn set_data_frame_stripping() {
        let mut body = Vec::new();
        amf0::encode_all(&[Amf0Value::string("onMetaData"), Amf0Value::Null], &mut body);
        let plain = Bytes::from(body.clone());
        assert_eq!(strip_set_data_frame(type_id::AMF0_DATA, plain.clone()), plain);
        let mut amf3 = vec![0u8];
        amf3.extend(amf0::to_vec(&Amf0Value::string("@setDataFrame")));
        amf3.extend_from_slice(&body);
        assert_eq!(strip_set_data_frame(type_id::AMF3_DATA, Bytes::from(amf3)), plain);
        assert_eq!(strip_set_data_frame(type_id::AMF0_DATA, Bytes::new()), Bytes::new());
        assert_eq!(f64_to_u32(f64::NAN), 0);
        assert_eq!(f64_to_u32(3.0), 3);
        assert_eq!(f64_to_u32(-1.0), 0);
    }
}
