//! Arbitrary bytes into the chunk decoder with a fuzzer-chosen initial chunk size, limits and read size.
#![no_main]

use ferrocast_rtmp::ChunkDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let (head, stream) = data.split_at(6);
    let chunk_size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let max_streams = usize::from(head[4] % 80);
    let step = usize::from(head[5]).max(1);
    let max_message = 1 << 20;
    let mut decoder = ChunkDecoder::with_limits(max_message, max_streams);
    if decoder.set_chunk_size(chunk_size).is_err() {
        return;
    }
    for piece in stream.chunks(step) {
        decoder.feed(piece);
        loop {
            match decoder.next_message() {
                Ok(Some(msg)) => assert!(msg.payload.len() <= max_message as usize),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
