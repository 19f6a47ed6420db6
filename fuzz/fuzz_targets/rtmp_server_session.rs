//! A chunk stream of arbitrary bytes into a `ServerSession`. The first byte picks how far a well-behaved
//! client has already gone (handshake only, connected, publishing, playing) so the fuzzer starts deep, and
//! how the application answers requests; the second picks the read size.
#![no_main]

use bytes::Bytes;
use ferrocast_rtmp::message::type_id;
use ferrocast_rtmp::{
    ClientConfig, ClientSession, DATA_CSID, ServerConfig, ServerEvent, ServerSession, VIDEO_CSID, encode_shared_chunks,
};
use libfuzzer_sys::fuzz_target;

/// Plays the application: answers every request, accepting or rejecting according to `policy`.
fn serve(server: &mut ServerSession, policy: u8) {
    while let Some(event) = server.poll_event() {
        match event {
            ServerEvent::Connect { .. } if policy & 1 == 0 => server.accept_connect(),
            ServerEvent::Connect { .. } => server.reject_connect("rejected"),
            ServerEvent::Publish { stream_id, .. } if policy & 2 == 0 => server.accept_publish(stream_id),
            ServerEvent::Publish { stream_id, .. } => {
                server.reject_publish(stream_id, "NetStream.Publish.BadName", "taken")
            }
            ServerEvent::Play { stream_id, .. } if policy & 4 == 0 => {
                server.accept_play(stream_id);
                server.send_message(DATA_CSID, type_id::AMF0_DATA, stream_id, 0, b"\x02\x00\x0aonMetaData");
                let chunk_size = server.out_chunk_size() as usize;
                let frame = Bytes::from_static(&[0u8; 300]);
                let _ = encode_shared_chunks(
                    VIDEO_CSID,
                    type_id::VIDEO,
                    stream_id,
                    0,
                    &[0x17, 1, 0, 0, 0],
                    &frame,
                    chunk_size,
                );
            }
            ServerEvent::Play { stream_id, .. } => {
                server.reject_play(stream_id, "NetStream.Play.StreamNotFound", "none")
            }
            ServerEvent::Unpublish { stream_id } | ServerEvent::DeleteStream { stream_id } => {
                server.end_play(stream_id)
            }
            ServerEvent::Pause { stream_id, .. } => server.send_status(stream_id, "status", "X", "y"),
            _ => {}
        }
    }
}

/// Runs a well-behaved client against the server until neither has anything more to say.
fn pump(client: &mut ClientSession, server: &mut ServerSession) {
    for _ in 0..16 {
        let mut moved = false;
        while let Some(bytes) = client.take_output() {
            moved = true;
            server.handle_input(&bytes).expect("valid client input");
        }
        serve(server, 0);
        while let Some(bytes) = server.take_output() {
            moved = true;
            client.handle_input(&bytes).expect("valid server input");
        }
        while client.poll_event().is_some() {}
        if !moved {
            return;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, step, stream @ ..] = data else { return };
    let step = usize::from(*step).max(1);
    let mut server = ServerSession::new(ServerConfig::default());
    match mode % 4 {
        0 => {
            let mut handshake = vec![3u8];
            handshake.resize(1 + 2 * 1536, 0);
            server.handle_input(&handshake).expect("valid handshake");
            while server.take_output().is_some() {}
        }
        m => {
            let mut client = ClientSession::new(ClientConfig::default());
            client.connect("live", "rtmp://localhost/live").expect("connect");
            match m {
                2 => client.publish("stream").expect("publish"),
                3 => client.play("stream").expect("play"),
                _ => {}
            }
            pump(&mut client, &mut server);
        }
    }
    let policy = mode >> 2;
    for piece in stream.chunks(step) {
        if server.handle_input(piece).is_err() {
            return;
        }
        serve(&mut server, policy);
        while server.take_output().is_some() {}
    }
});
