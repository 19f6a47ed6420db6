//! The client side of an RTMP connection: [`ClientSession`], for relays, pull tasks and the benchmark.
//!
//! Typical use: [`ClientSession::new`], [`connect`](ClientSession::connect), then
//! [`publish`](ClientSession::publish) or [`play`](ClientSession::play) right away (they are sequenced
//! after the connection succeeds: `releaseStream` + `FCPublish` + `createStream` + `publish`, or
//! `createStream` + `play`). Wait for [`ClientEvent::PublishStarted`] before sending media with
//! [`send_video`](ClientSession::send_video) & co.; a player receives [`ClientEvent::Video`] & co.
//! Interoperates with nginx-rtmp and SRS as well as [`crate::ServerSession`].

use std::collections::VecDeque;

use bytes::Bytes;
use ferrocast_formats::amf0::{self, Amf0Value};

use crate::chunk::{DEFAULT_MAX_MESSAGE_SIZE, Message, encode_shared_chunks};
use crate::conn::Conn;
use crate::handshake::ClientHandshake;
use crate::message::{Command, UserControlEvent, read_status, type_id};
use crate::{AUDIO_CSID, COMMAND_CSID, CONTROL_CSID, DATA_CSID, RtmpError, STREAM_CSID, VIDEO_CSID};

/// Settings of a client session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Outbound chunk size, announced before `connect` (default 4096).
    pub chunk_size: u32,
    /// Window Acknowledgement Size announced to the server (default 2 500 000).
    pub window_ack_size: u32,
    /// Longest message accepted from the server (default 16 MiB).
    pub max_message_size: u32,
    /// Buffer length announced with `play`, in milliseconds (default 3000).
    pub buffer_length_ms: u32,
    /// Send a complex (digest) C1 instead of a simple one (default false).
    pub complex_handshake: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            chunk_size: 4096,
            window_ack_size: 2_500_000,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            buffer_length_ms: 3000,
            complex_handshake: false,
        }
    }
}

/// What happened on a client connection.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// `connect` succeeded.
    Connected,
    /// `NetStream.Publish.Start` received: media may be sent.
    PublishStarted {
        /// Message stream id.
        stream_id: u32,
    },
    /// `NetStream.Play.Start` received: media will follow.
    PlayStarted {
        /// Message stream id.
        stream_id: u32,
    },
    /// Any other `onStatus` (errors such as `NetStream.Publish.BadName` included).
    Status {
        /// Message stream id it came on.
        stream_id: u32,
        /// `status`, `warning` or `error`.
        level: String,
        /// E.g. `NetStream.Play.UnpublishNotify`.
        code: String,
        /// Free text.
        description: String,
    },
    /// The server answered `connect` or `createStream` with `_error` (e.g. `NetConnection.Connect.Rejected`).
    Error {
        /// Status code of the answer, when present.
        code: String,
        /// Description of the answer, when present.
        description: String,
    },
    /// An audio message (FLV audio tag body).
    Audio {
        /// Timestamp in milliseconds.
        timestamp: u32,
        /// Tag body.
        payload: Bytes,
    },
    /// A video message (FLV video tag body).
    Video {
        /// Timestamp in milliseconds.
        timestamp: u32,
        /// Tag body.
        payload: Bytes,
    },
    /// A data message (raw AMF0 body, e.g. `onMetaData`); `|RtmpSampleAccess` and `onStatus` data messages
    /// are not reported.
    Data {
        /// Timestamp in milliseconds.
        timestamp: u32,
        /// AMF0 body.
        payload: Bytes,
    },
    /// Stream EOF from the server (the played stream ended).
    StreamEof {
        /// Message stream id.
        stream_id: u32,
    },
    /// The server asked to close the connection (`close` command).
    Disconnected,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Intent {
    Publish(String),
    Play(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum StreamPhase {
    /// Nothing asked yet, or waiting for `connect` to succeed.
    Idle,
    /// `createStream` sent with this transaction id.
    Creating { transaction_id: f64 },
    /// `publish`/`play` sent on this stream.
    Starting { stream_id: u32 },
    /// Publish/play started.
    Started { stream_id: u32 },
    /// Closed by [`ClientSession::close`].
    Closed,
}

/// Client side of one RTMP connection, sans-IO. C0/C1 are queued as output on creation.
#[derive(Debug)]
pub struct ClientSession {
    config: ClientConfig,
    handshake: Option<ClientHandshake>,
    conn: Conn,
    pending_connect: Option<(String, String)>,
    connect_txn: Option<f64>,
    connected: bool,
    intent: Option<Intent>,
    phase: StreamPhase,
    next_txn: f64,
    events: VecDeque<ClientEvent>,
}

impl ClientSession {
    /// A session that starts the handshake (take the output and write it).
    pub fn new(config: ClientConfig) -> Self {
        let mut handshake =
            if config.complex_handshake { ClientHandshake::new_complex() } else { ClientHandshake::new() };
        let mut conn = Conn::new(config.max_message_size);
        if let Some(c0c1) = handshake.take_output() {
            conn.out.push(Bytes::from(c0c1));
        }
        Self {
            config,
            handshake: Some(handshake),
            conn,
            pending_connect: None,
            connect_txn: None,
            connected: false,
            intent: None,
            phase: StreamPhase::Idle,
            next_txn: 1.0,
            events: VecDeque::new(),
        }
    }

    /// Processes bytes read from the server; events and output may be queued.
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
            if let Some((app, tc_url)) = self.pending_connect.take() {
                self.send_connect(&app, &tc_url);
            }
        }
        self.conn.decoder.feed(rest);
        while let Some(msg) = self.conn.decoder.next_message()? {
            self.dispatch(msg)?;
        }
        Ok(())
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// The next bytes to write to the socket.
    pub fn take_output(&mut self) -> Option<Bytes> {
        self.conn.out.take()
    }

    /// The outbound chunk size.
    pub fn out_chunk_size(&self) -> u32 {
        self.conn.encoder.chunk_size()
    }

    /// The message stream id once `createStream` succeeded.
    pub fn stream_id(&self) -> Option<u32> {
        match self.phase {
            StreamPhase::Starting { stream_id } | StreamPhase::Started { stream_id } => Some(stream_id),
            _ => None,
        }
    }

    /// Whether `connect` succeeded.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Connects to application `app`; `tc_url` is the full URL up to the app (`rtmp://host/app`). Sent as soon
    /// as the handshake is over.
    pub fn connect(&mut self, app: &str, tc_url: &str) -> Result<(), RtmpError> {
        if self.connect_txn.is_some() || self.pending_connect.is_some() {
            return Err(RtmpError::InvalidState("connect already called"));
        }
        if self.handshake.is_some() {
            self.pending_connect = Some((app.to_owned(), tc_url.to_owned()));
        } else {
            self.send_connect(app, tc_url);
        }
        Ok(())
    }

    /// Publishes stream `name` (may include a `?query`) once connected.
    pub fn publish(&mut self, name: &str) -> Result<(), RtmpError> {
        self.set_intent(Intent::Publish(name.to_owned()))
    }

    /// Plays stream `name` (may include a `?query`) once connected.
    pub fn play(&mut self, name: &str) -> Result<(), RtmpError> {
        self.set_intent(Intent::Play(name.to_owned()))
    }

    /// Sends an audio message (FLV audio tag body) on the published stream without copying the payload.
    pub fn send_audio(&mut self, timestamp: u32, payload: Bytes) -> Result<(), RtmpError> {
        self.send_media(AUDIO_CSID, type_id::AUDIO, timestamp, &[], &payload)
    }

    /// Sends a video message (FLV video tag body) on the published stream without copying the payload.
    pub fn send_video(&mut self, timestamp: u32, payload: Bytes) -> Result<(), RtmpError> {
        self.send_media(VIDEO_CSID, type_id::VIDEO, timestamp, &[], &payload)
    }

    /// Sends a data message (raw AMF0 body) on the published stream as is.
    pub fn send_data(&mut self, timestamp: u32, payload: Bytes) -> Result<(), RtmpError> {
        self.send_media(DATA_CSID, type_id::AMF0_DATA, timestamp, &[], &payload)
    }

    /// Sends metadata (an AMF0 body starting with `onMetaData`, e.g. an FLV script tag body) prefixed with
    /// `@setDataFrame`, as encoders do so that the server keeps it for new players.
    pub fn send_metadata(&mut self, payload: Bytes) -> Result<(), RtmpError> {
        let prefix = amf0::to_vec(&Amf0Value::string("@setDataFrame"));
        self.send_media(DATA_CSID, type_id::AMF0_DATA, 0, &prefix, &payload)
    }

    /// Ends publishing or playing: `FCUnpublish` (when publishing) and `deleteStream`.
    pub fn close(&mut self) {
        if let Some(stream_id) = self.stream_id() {
            if let Some(Intent::Publish(name)) = self.intent.clone() {
                let cmd = Command::new("FCUnpublish", self.txn(), Amf0Value::Null, vec![Amf0Value::String(name)]);
                self.conn.send_command(COMMAND_CSID, 0, &cmd);
            }
            let cmd = Command::new(
                "deleteStream",
                self.txn(),
                Amf0Value::Null,
                vec![Amf0Value::Number(f64::from(stream_id))],
            );
            self.conn.send_command(COMMAND_CSID, 0, &cmd);
        }
        self.phase = StreamPhase::Closed;
    }

    fn txn(&mut self) -> f64 {
        let t = self.next_txn;
        self.next_txn += 1.0;
        t
    }

    fn set_intent(&mut self, intent: Intent) -> Result<(), RtmpError> {
        if self.intent.is_some() {
            return Err(RtmpError::InvalidState("publish or play already called"));
        }
        self.intent = Some(intent);
        if self.connected {
            self.start_stream();
        }
        Ok(())
    }

    fn send_media(
        &mut self,
        csid: u32,
        kind: u8,
        timestamp: u32,
        header: &[u8],
        payload: &Bytes,
    ) -> Result<(), RtmpError> {
        let (StreamPhase::Started { stream_id }, Some(Intent::Publish(_))) = (self.phase, &self.intent) else {
            return Err(RtmpError::InvalidState("media can only be sent once publishing started"));
        };
        let chunk_size = self.conn.encoder.chunk_size() as usize;
        for piece in encode_shared_chunks(csid, kind, stream_id, timestamp, header, payload, chunk_size) {
            self.conn.out.push(piece);
        }
        Ok(())
    }

    fn send_connect(&mut self, app: &str, tc_url: &str) {
        self.conn.set_out_chunk_size(self.config.chunk_size);
        let window = self.config.window_ack_size.to_be_bytes();
        self.conn.send(CONTROL_CSID, type_id::WINDOW_ACK_SIZE, 0, 0, &window);
        let object = Amf0Value::object([
            ("app", Amf0Value::string(app)),
            ("type", Amf0Value::string("nonprivate")),
            ("flashVer", Amf0Value::string("FMLE/3.0 (compatible; ferrocast)")),
            ("tcUrl", Amf0Value::string(tc_url)),
            ("fpad", Amf0Value::Boolean(false)),
            ("capabilities", Amf0Value::Number(15.0)),
            ("audioCodecs", Amf0Value::Number(3575.0)),
            ("videoCodecs", Amf0Value::Number(252.0)),
            ("videoFunction", Amf0Value::Number(1.0)),
        ]);
        let txn = self.txn();
        self.connect_txn = Some(txn);
        self.conn.send_command(COMMAND_CSID, 0, &Command::new("connect", txn, object, vec![]));
    }

    fn start_stream(&mut self) {
        if self.phase != StreamPhase::Idle {
            return;
        }
        if let Some(Intent::Publish(name)) = self.intent.clone() {
            let name = Amf0Value::String(name);
            for call in ["releaseStream", "FCPublish"] {
                let cmd = Command::new(call, self.txn(), Amf0Value::Null, vec![name.clone()]);
                self.conn.send_command(COMMAND_CSID, 0, &cmd);
            }
        }
        if self.intent.is_some() {
            let transaction_id = self.txn();
            self.conn.send_command(
                COMMAND_CSID,
                0,
                &Command::new("createStream", transaction_id, Amf0Value::Null, vec![]),
            );
            self.phase = StreamPhase::Creating { transaction_id };
        }
    }

    fn on_stream_created(&mut self, stream_id: u32) {
        self.phase = StreamPhase::Starting { stream_id };
        let txn = self.txn();
        match &self.intent {
            Some(Intent::Publish(name)) => {
                let args = vec![Amf0Value::string(name.clone()), Amf0Value::string("live")];
                self.conn.send_command(STREAM_CSID, stream_id, &Command::new("publish", txn, Amf0Value::Null, args));
            }
            Some(Intent::Play(name)) => {
                let name = name.clone();
                let args = vec![Amf0Value::String(name), Amf0Value::Number(-2.0)];
                self.conn.send_command(STREAM_CSID, stream_id, &Command::new("play", txn, Amf0Value::Null, args));
                let buffer_ms = self.config.buffer_length_ms;
                self.conn.send_user_control(UserControlEvent::SetBufferLength { stream_id, buffer_ms });
            }
            None => {}
        }
    }

    fn dispatch(&mut self, msg: Message) -> Result<(), RtmpError> {
        let Message { type_id: kind, timestamp, stream_id, payload } = msg;
        match kind {
            type_id::AMF0_COMMAND | type_id::AMF3_COMMAND => {
                let command = Command::parse(kind, &payload)?;
                self.handle_command(stream_id, command)?;
            }
            type_id::AGGREGATE => {
                let msg = Message { type_id: kind, timestamp, stream_id, payload };
                for sub in crate::message::split_aggregate(&msg) {
                    if sub.type_id != type_id::AGGREGATE {
                        self.dispatch(sub)?;
                    }
                }
            }
            type_id::AUDIO => self.events.push_back(ClientEvent::Audio { timestamp, payload }),
            type_id::VIDEO => self.events.push_back(ClientEvent::Video { timestamp, payload }),
            type_id::AMF0_DATA | type_id::AMF3_DATA => {
                let body = crate::message::strip_amf3_prefix(kind, &payload);
                let offset = payload.len() - body.len();
                let mut rest = body;
                let name = amf0::decode(&mut rest).ok();
                if !matches!(name.as_ref().and_then(Amf0Value::as_str), Some("|RtmpSampleAccess" | "onStatus")) {
                    self.events.push_back(ClientEvent::Data { timestamp, payload: payload.slice(offset..) });
                }
            }
            _ => {
                let msg = Message { type_id: kind, timestamp, stream_id, payload };
                if let Some(UserControlEvent::StreamEof(id)) = self.conn.handle_control(&msg) {
                    self.events.push_back(ClientEvent::StreamEof { stream_id: id });
                }
            }
        }
        Ok(())
    }

    fn handle_command(&mut self, stream_id: u32, cmd: Command) -> Result<(), RtmpError> {
        let txn = Some(cmd.transaction_id);
        let creating = match self.phase {
            StreamPhase::Creating { transaction_id } => Some(transaction_id),
            _ => None,
        };
        match cmd.name.as_str() {
            "_result" if txn == self.connect_txn && !self.connected => {
                self.connected = true;
                self.events.push_back(ClientEvent::Connected);
                self.start_stream();
            }
            "_result" if txn == creating => {
                let id = cmd.arg(0).and_then(Amf0Value::as_f64).unwrap_or(-1.0);
                if !(1.0..=f64::from(u32::MAX)).contains(&id) {
                    return Err(RtmpError::InvalidState("createStream answered without a valid stream id"));
                }
                self.on_stream_created(id as u32);
            }
            "_error" if txn == self.connect_txn || txn == creating => {
                let info = cmd.arg(0).unwrap_or(&cmd.command_object);
                let (_, code, description) = read_status(info);
                self.events.push_back(ClientEvent::Error { code, description });
            }
            "onStatus" => {
                let info = cmd.arg(0).filter(|a| a.get("code").is_some()).unwrap_or(&cmd.command_object);
                let (level, code, description) = read_status(info);
                let own = match self.phase {
                    StreamPhase::Starting { stream_id: id } => Some(id),
                    _ => None,
                };
                match (code.as_str(), &self.intent, own) {
                    ("NetStream.Publish.Start", Some(Intent::Publish(_)), Some(id)) => {
                        self.phase = StreamPhase::Started { stream_id: id };
                        self.events.push_back(ClientEvent::PublishStarted { stream_id: id });
                    }
                    ("NetStream.Play.Start", Some(Intent::Play(_)), Some(id)) => {
                        self.phase = StreamPhase::Started { stream_id: id };
                        self.events.push_back(ClientEvent::PlayStarted { stream_id: id });
                    }
                    _ => self.events.push_back(ClientEvent::Status { stream_id, level, code, description }),
                }
            }
            "close" => self.events.push_back(ClientEvent::Disconnected),
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::{ChunkDecoder, ChunkEncoder};
    use crate::handshake::ServerHandshake;
    use crate::message::status_object;
    use bytes::BytesMut;

    /// A hand-driven server: handshake, then raw chunks.
    struct FakeServer {
        hs: ServerHandshake,
        dec: ChunkDecoder,
        enc: ChunkEncoder,
    }

    impl FakeServer {
        fn new() -> Self {
            Self { hs: ServerHandshake::new(), dec: ChunkDecoder::new(), enc: ChunkEncoder::new() }
        }

        /// Feeds client output; returns the commands received.
        fn receive(&mut self, client: &mut ClientSession) -> Vec<(u32, Command)> {
            let mut cmds = Vec::new();
            while let Some(bytes) = client.take_output() {
                let mut rest = &bytes[..];
                if !self.hs.is_done() {
                    let used = self.hs.feed(rest).unwrap();
                    rest = &rest[used..];
                    if let Some(out) = self.hs.take_output() {
                        client.handle_input(&out).unwrap();
                    }
                }
                self.dec.feed(rest);
                while let Some(m) = self.dec.next_message().unwrap() {
                    if m.type_id == type_id::AMF0_COMMAND {
                        cmds.push((m.stream_id, Command::parse(m.type_id, &m.payload).unwrap()));
                    }
                }
            }
            cmds
        }

        fn send(
            &mut self,
            client: &mut ClientSession,
            kind: u8,
            stream_id: u32,
            payload: &[u8],
        ) -> Result<(), RtmpError> {
            let mut out = BytesMut::new();
            self.enc.encode(3, kind, stream_id, 0, payload, &mut out);
            client.handle_input(&out)
        }

        fn answer(&mut self, client: &mut ClientSession, name: &str, txn: f64, args: Vec<Amf0Value>) {
            let cmd = Command::new(name, txn, Amf0Value::Null, args);
            self.send(client, type_id::AMF0_COMMAND, 0, &cmd.encode()).unwrap();
        }

        fn status(&mut self, client: &mut ClientSession, stream_id: u32, level: &str, code: &str) {
            let cmd = Command::new("onStatus", 0.0, Amf0Value::Null, vec![status_object(level, code, "")]);
            self.send(client, type_id::AMF0_COMMAND, stream_id, &cmd.encode()).unwrap();
        }
    }

    fn names(cmds: &[(u32, Command)]) -> Vec<&str> {
        cmds.iter().map(|(_, c)| c.name.as_str()).collect()
    }

    #[test]
    fn publish_sequence() {
        let mut client = ClientSession::new(ClientConfig::default());
        let mut server = FakeServer::new();
        client.connect("live", "rtmp://localhost/live").unwrap();
        client.publish("stream?key=1").unwrap();
        assert!(matches!(client.send_video(0, Bytes::from_static(b"x")), Err(RtmpError::InvalidState(_))));
        let cmds = server.receive(&mut client);
        assert_eq!(names(&cmds), ["connect"]);
        assert_eq!(server.dec.chunk_size(), 4096);
        assert_eq!(cmds[0].1.command_object.get("tcUrl").and_then(Amf0Value::as_str), Some("rtmp://localhost/live"));
        server.answer(&mut client, "_result", 1.0, vec![status_object("status", "NetConnection.Connect.Success", "")]);
        assert_eq!(client.poll_event(), Some(ClientEvent::Connected));
        let cmds = server.receive(&mut client);
        assert_eq!(names(&cmds), ["releaseStream", "FCPublish", "createStream"]);
        server.answer(&mut client, "_result", cmds[2].1.transaction_id, vec![Amf0Value::Number(7.0)]);
        let cmds = server.receive(&mut client);
        assert_eq!(names(&cmds), ["publish"]);
        assert_eq!(cmds[0].0, 7);
        assert_eq!(cmds[0].1.arg_str(0), Some("stream?key=1"));
        server.status(&mut client, 7, "status", "NetStream.Publish.Start");
        assert_eq!(client.poll_event(), Some(ClientEvent::PublishStarted { stream_id: 7 }));
        client.send_metadata(Bytes::from(amf0::to_vec(&Amf0Value::string("onMetaData")))).unwrap();
        client.send_video(40, Bytes::from(vec![9u8; 10_000])).unwrap();
        client.close();
        let mut all = Vec::new();
        while let Some(b) = client.take_output() {
            all.extend_from_slice(&b);
        }
        server.dec.feed(&all);
        let meta = server.dec.next_message().unwrap().unwrap();
        assert_eq!((meta.type_id, meta.stream_id), (type_id::AMF0_DATA, 7));
        assert_eq!(amf0::decode_all(&meta.payload).unwrap()[0].as_str(), Some("@setDataFrame"));
        let video = server.dec.next_message().unwrap().unwrap();
        assert_eq!((video.type_id, video.timestamp, video.payload.len()), (type_id::VIDEO, 40, 10_000));
        let unpub = server.dec.next_message().unwrap().unwrap();
        assert_eq!(Command::parse(unpub.type_id, &unpub.payload).unwrap().name, "FCUnpublish");
    }

    #[test]
    fn play_sequence_and_events() {
        let mut client = ClientSession::new(ClientConfig::default());
        let mut server = FakeServer::new();
        client.connect("live", "rtmp://localhost/live").unwrap();
        server.receive(&mut client);
        server.answer(&mut client, "_result", 1.0, vec![]);
        client.play("s").unwrap();
        let cmds = server.receive(&mut client);
        assert_eq!(names(&cmds), ["createStream"]);
        server.answer(&mut client, "_result", cmds[0].1.transaction_id, vec![Amf0Value::Number(1.0)]);
        let cmds = server.receive(&mut client);
        assert_eq!(names(&cmds), ["play"]);
        assert_eq!(client.stream_id(), Some(1));
        server.status(&mut client, 1, "status", "NetStream.Play.Reset");
        server.status(&mut client, 1, "status", "NetStream.Play.Start");
        let mut sample = Vec::new();
        amf0::encode_all(&[Amf0Value::string("|RtmpSampleAccess"), Amf0Value::Boolean(true)], &mut sample);
        server.send(&mut client, type_id::AMF0_DATA, 1, &sample).unwrap();
        server.send(&mut client, type_id::AMF0_DATA, 1, &amf0::to_vec(&Amf0Value::string("onMetaData"))).unwrap();
        server.send(&mut client, type_id::VIDEO, 1, b"v").unwrap();
        server.send(&mut client, type_id::AUDIO, 1, b"a").unwrap();
        let mut eof = BytesMut::new();
        UserControlEvent::StreamEof(1).encode(&mut eof);
        server.send(&mut client, type_id::USER_CONTROL, 0, &eof).unwrap();
        server.answer(&mut client, "close", 0.0, vec![]);
        let events: Vec<ClientEvent> = std::iter::from_fn(|| client.poll_event()).collect();
        assert!(matches!(&events[1], ClientEvent::Status { code, .. } if code == "NetStream.Play.Reset"));
        assert_eq!(events[2], ClientEvent::PlayStarted { stream_id: 1 });
        assert!(matches!(&events[3], ClientEvent::Data { .. }));
        assert!(matches!(&events[4], ClientEvent::Video { payload, .. } if &payload[..] == b"v"));
        assert!(matches!(&events[5], ClientEvent::Audio { payload, .. } if &payload[..] == b"a"));
        assert_eq!(events[6], ClientEvent::StreamEof { stream_id: 1 });
        assert_eq!(events[7], ClientEvent::Disconnected);
        assert_eq!(events.len(), 8);
    }

    #[test]
    fn connect_error_and_bad_stream_id() {
        let mut client = ClientSession::new(ClientConfig::default());
        let mut server = FakeServer::new();
        client.connect("live", "rtmp://h/live").unwrap();
        assert!(client.connect("live", "rtmp://h/live").is_err());
        server.receive(&mut client);
        server.answer(&mut client, "_error", 1.0, vec![status_object("error", "NetConnection.Connect.Rejected", "no")]);
        assert!(
            matches!(client.poll_event(), Some(ClientEvent::Error { code, .. }) if code == "NetConnection.Connect.Rejected")
        );

        let mut client = ClientSession::new(ClientConfig::default());
        let mut server = FakeServer::new();
        client.connect("live", "rtmp://h/live").unwrap();
        client.play("s").unwrap();
        assert!(client.publish("s").is_err());
        server.receive(&mut client);
        server.answer(&mut client, "_result", 1.0, vec![]);
        let cmds = server.receive(&mut client);
        let cmd = Command::new("_result", cmds[0].1.transaction_id, Amf0Value::Null, vec![Amf0Value::string("x")]);
        assert!(matches!(
            server.send(&mut client, type_id::AMF0_COMMAND, 0, &cmd.encode()),
            Err(RtmpError::InvalidState(_))
        ));
    }

    #[test]
    fn aggregate_messages_become_media_events() {
        let mut client = ClientSession::new(ClientConfig::default());
        let mut server = FakeServer::new();
        client.connect("live", "rtmp://h/live").unwrap();
        server.receive(&mut client);
        // One video tag (timestamp 7) in an aggregate stamped 100.
        let mut body = vec![9, 0, 0, 2, 0, 0, 7, 0, 0, 0, 0, b'v', b'1'];
        body.extend_from_slice(&13u32.to_be_bytes());
        server.send(&mut client, type_id::AGGREGATE, 1, &body).unwrap();
        server.answer(&mut client, "_result", 1.0, vec![]);
        assert!(
            matches!(client.poll_event(), Some(ClientEvent::Video { timestamp: 0, payload }) if &payload[..] == b"v1")
        );
        assert_eq!(client.poll_event(), Some(ClientEvent::Connected));
    }

    #[test]
    fn answers_pings_and_acknowledges() {
        let mut client = ClientSession::new(ClientConfig::default());
        let mut server = FakeServer::new();
        client.connect("live", "rtmp://h/live").unwrap();
        server.receive(&mut client);
        server.send(&mut client, type_id::WINDOW_ACK_SIZE, 0, &1000u32.to_be_bytes()).unwrap();
        let mut ping = BytesMut::new();
        UserControlEvent::PingRequest(5).encode(&mut ping);
        server.send(&mut client, type_id::USER_CONTROL, 0, &ping).unwrap();
        server.send(&mut client, type_id::VIDEO, 1, &[0u8; 1200]).unwrap();
        let mut all = Vec::new();
        while let Some(b) = client.take_output() {
            all.extend_from_slice(&b);
        }
        server.dec.feed(&all);
        let mut kinds = Vec::new();
        while let Some(m) = server.dec.next_message().unwrap() {
            kinds.push(m.type_id);
        }
        assert!(kinds.contains(&type_id::USER_CONTROL));
        assert!(kinds.contains(&type_id::ACKNOWLEDGEMENT));
    }
}
