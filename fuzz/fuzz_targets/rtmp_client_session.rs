//! Arbitrary server bytes into a `ClientSession` after a valid handshake (a hostile server or pull source).
#![no_main]

use bytes::Bytes;
use ferrocast_rtmp::{ClientConfig, ClientEvent, ClientSession, ServerHandshake};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [mode, step, stream @ ..] = data else { return };
    let step = usize::from(*step).max(1);
    let mut client = ClientSession::new(ClientConfig::default());
    client.connect("live", "rtmp://localhost/live").expect("connect");
    let _ = if mode % 2 == 0 { client.publish("s") } else { client.play("s") };
    // Answer the handshake with a real server handshake.
    let mut server = ServerHandshake::new();
    while let Some(bytes) = client.take_output() {
        let _ = server.feed(&bytes);
    }
    if let Some(s0s1s2) = server.take_output() {
        client.handle_input(&s0s1s2).expect("valid handshake");
    }
    for piece in stream.chunks(step) {
        if client.handle_input(piece).is_err() {
            return;
        }
        while let Some(event) = client.poll_event() {
            if let ClientEvent::PublishStarted { .. } = event {
                let _ = client.send_video(0, Bytes::from_static(&[0x17, 0, 0, 0, 0]));
            }
        }
        while client.take_output().is_some() {}
    }
    client.close();
});
