//! Arbitrary bytes into the MPEG-TS demuxer, in two chunkings: no panic, and every frame it yields is well-formed
//! (AVCC with complete length prefixes for video, 90 kHz timebase).
#![no_main]

use ferrocast_formats::ts_demux::{DemuxEvent, TIMEBASE, TsDemuxer};
use ferrocast_media::MediaType;
use libfuzzer_sys::fuzz_target;

fn run(data: &[u8], chunk: usize) {
    let mut d = TsDemuxer::new();
    for c in data.chunks(chunk.max(1)) {
        d.push(c);
        while let Some(event) = d.next_event() {
            check(event);
        }
    }
    d.flush();
    while let Some(event) = d.next_event() {
        check(event);
    }
}

fn check(event: Result<DemuxEvent, ferrocast_formats::ts_demux::TsDemuxError>) {
    if let Ok(DemuxEvent::Frame(f)) = event {
        assert_eq!(f.timebase, TIMEBASE);
        if f.media == MediaType::Video {
            let mut rest = &f.data[..];
            while !rest.is_empty() {
                let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                rest = &rest[4 + len..];
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // Sync bytes every 188 bytes make the packet layer reach the PSI and PES parsers.
    let mut packets = Vec::with_capacity(data.len() + data.len() / 187 + 1);
    for c in data.chunks(187) {
        packets.push(0x47);
        packets.extend_from_slice(c);
    }
    run(&packets, 1316);
    run(data, 7);
});
