//! A `ClientSession` against a `ServerSession`, bytes piped both ways in memory.

use bytes::Bytes;
use ferrocast_formats::amf0::{self, Amf0Value};
use ferrocast_rtmp::message::type_id;
use ferrocast_rtmp::{
    AUDIO_CSID, ClientConfig, ClientEvent, ClientSession, DATA_CSID, ServerConfig, ServerEvent, ServerSession,
    VIDEO_CSID, encode_shared_chunks,
};

/// Both ends plus what the server "application" saw; writes are split into `step`-byte reads.
struct Pair {
    client: ClientSession,
    server: ServerSession,
    server_events: Vec<ServerEvent>,
    client_events: Vec<ClientEvent>,
    step: usize,
}

impl Pair {
    fn new(step: usize, complex: bool) -> Self {
        let config = ClientConfig { complex_handshake: complex, ..ClientConfig::default() };
        Self {
            client: ClientSession::new(config),
            server: ServerSession::new(ServerConfig::default()),
            server_events: Vec::new(),
            client_events: Vec::new(),
            step,
        }
    }

    /// Moves bytes until neither side has anything to say; the server accepts everything.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(bytes) = self.client.take_output() {
                moved = true;
                for piece in bytes.chunks(self.step) {
                    self.server.handle_input(piece).expect("server input");
                }
            }
            while let Some(event) = self.server.poll_event() {
                match &event {
                    ServerEvent::Connect { .. } => self.server.accept_connect(),
                    ServerEvent::Publish { stream_id, .. } => self.server.accept_publish(*stream_id),
                    ServerEvent::Play { stream_id, .. } => self.server.accept_play(*stream_id),
                    _ => {}
                }
                self.server_events.push(event);
            }
            while let Some(bytes) = self.server.take_output() {
                moved = true;
                for piece in bytes.chunks(self.step) {
                    self.client.handle_input(piece).expect("client input");
                }
            }
            while let Some(event) = self.client.poll_event() {
                self.client_events.push(event);
            }
            if !moved {
                return;
            }
        }
    }

    /// Writes shared chunks to the client as the server's egress would, after the session's own output.
    fn write_shared(&mut self, pieces: &[Bytes]) {
        self.pump();
        for piece in pieces {
            for part in piece.chunks(self.step) {
                self.client.handle_input(part).expect("client input");
            }
        }
        self.pump();
    }
}

fn publish_roundtrip(step: usize, complex: bool) {
    let mut pair = Pair::new(step, complex);
    pair.client.connect("live", "rtmp://127.0.0.1/live?vhost=x").unwrap();
    pair.client.publish("cam?txSecret=abc&txTime=5F5E0FF").unwrap();
    pair.pump();
    assert_eq!(pair.client_events, [ClientEvent::Connected, ClientEvent::PublishStarted { stream_id: 1 }]);
    match &pair.server_events[..] {
        [ServerEvent::Connect { app, tc_url, .. }, ServerEvent::Publish { stream_id: 1, name, publish_type }] => {
            assert_eq!(app, "live");
            assert_eq!(tc_url.as_deref(), Some("rtmp://127.0.0.1/live?vhost=x"));
            assert_eq!(name, "cam?txSecret=abc&txTime=5F5E0FF");
            assert_eq!(publish_type, "live");
        }
        other => panic!("{other:?}"),
    }
    pair.server_events.clear();

    let mut meta = Vec::new();
    amf0::encode_all(
        &[Amf0Value::string("onMetaData"), Amf0Value::EcmaArray(vec![("width".into(), Amf0Value::Number(1280.0))])],
        &mut meta,
    );
    pair.client.send_metadata(Bytes::from(meta.clone())).unwrap();
    let video = Bytes::from((0..20_000u32).map(|i| i as u8).collect::<Vec<u8>>());
    pair.client.send_video(0x0100_0000, video.clone()).unwrap();
    pair.client.send_audio(0x0100_0005, Bytes::from_static(&[0xAF, 1, 2, 3])).unwrap();
    pair.pump();
    assert_eq!(pair.server_events.len(), 3);
    assert_eq!(pair.server_events[0], ServerEvent::Data { stream_id: 1, timestamp: 0, payload: Bytes::from(meta) });
    assert_eq!(pair.server_events[1], ServerEvent::Video { stream_id: 1, timestamp: 0x0100_0000, payload: video });
    assert!(
        matches!(&pair.server_events[2], ServerEvent::Audio { timestamp: 0x0100_0005, payload, .. } if payload.len() == 4)
    );
    pair.server_events.clear();

    pair.client.close();
    pair.pump();
    assert_eq!(
        pair.server_events,
        [ServerEvent::Unpublish { stream_id: 1 }, ServerEvent::DeleteStream { stream_id: 1 }]
    );
}

#[test]
fn client_publishes_to_server() {
    publish_roundtrip(64 * 1024, false);
}

#[test]
fn client_publishes_to_server_byte_by_byte_with_complex_handshake() {
    publish_roundtrip(1, true);
}

#[test]
fn client_plays_shared_chunks() {
    for step in [1, 7, 64 * 1024] {
        let mut pair = Pair::new(step, false);
        pair.client.connect("live", "rtmp://127.0.0.1/live").unwrap();
        pair.client.play("cam").unwrap();
        pair.pump();
        assert_eq!(pair.client_events[0], ClientEvent::Connected);
        assert!(matches!(&pair.client_events[1], ClientEvent::Status { code, .. } if code == "NetStream.Play.Reset"));
        assert_eq!(pair.client_events[2], ClientEvent::PlayStarted { stream_id: 1 });
        assert_eq!(pair.client_events.len(), 3);
        assert!(
            matches!(&pair.server_events[1], ServerEvent::Play { stream_id: 1, name, start } if name == "cam" && *start == -2.0)
        );
        pair.client_events.clear();

        // Per-player metadata through the session, then media muxed once (as for many viewers).
        let chunk_size = pair.server.out_chunk_size() as usize;
        let meta = amf0::to_vec(&Amf0Value::string("onMetaData"));
        pair.server.send_message(DATA_CSID, type_id::AMF0_DATA, 1, 0, &meta);
        let frame = Bytes::from(vec![0x42u8; 10_000]);
        let avc_header = [0x17, 1, 0, 0, 0];
        let video = encode_shared_chunks(VIDEO_CSID, type_id::VIDEO, 1, 40, &avc_header, &frame, chunk_size);
        let audio = encode_shared_chunks(
            AUDIO_CSID,
            type_id::AUDIO,
            1,
            0x0100_0000,
            &[0xAF, 1],
            &Bytes::from_static(b"aac"),
            chunk_size,
        );
        pair.write_shared(&video);
        // Session output (a ping answer queued meanwhile, say) interleaves at message boundaries.
        pair.server.send_status(1, "status", "NetStream.Play.PublishNotify", "again");
        pair.write_shared(&audio);
        pair.server.end_play(1);
        pair.pump();

        let events = std::mem::take(&mut pair.client_events);
        assert!(matches!(&events[0], ClientEvent::Data { payload, .. } if payload[..] == meta[..]));
        match &events[1] {
            ClientEvent::Video { timestamp: 40, payload } => {
                assert_eq!(&payload[..5], &avc_header);
                assert_eq!(&payload[5..], &frame[..]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&events[2], ClientEvent::Status { code, .. } if code == "NetStream.Play.PublishNotify"));
        assert!(
            matches!(&events[3], ClientEvent::Audio { timestamp: 0x0100_0000, payload } if &payload[..] == b"\xAF\x01aac")
        );
        assert!(matches!(&events[4], ClientEvent::Status { code, .. } if code == "NetStream.Play.UnpublishNotify"));
        assert_eq!(events[5], ClientEvent::StreamEof { stream_id: 1 });
        assert_eq!(events.len(), 6);
    }
}

#[test]
fn many_frames_trigger_acknowledgements_without_errors() {
    let mut pair = Pair::new(64 * 1024, false);
    pair.client.connect("live", "rtmp://127.0.0.1/live").unwrap();
    pair.client.publish("cam").unwrap();
    pair.pump();
    pair.server_events.clear();
    let frame = Bytes::from(vec![1u8; 100_000]);
    for i in 0..60u32 {
        pair.client.send_video(i * 40, frame.clone()).unwrap();
        pair.pump();
    }
    assert_eq!(pair.server_events.len(), 60);
}
