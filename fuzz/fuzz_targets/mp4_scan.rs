//! Arbitrary bytes as a (possibly crash-truncated) fragmented MP4 recording: the scanner and the progressive
//! layout must reject or handle anything without panicking, and every range they ask to copy must lie inside the
//! input.
#![no_main]

use ferrocast_formats::mp4file;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut src = data;
    if let Ok(scan) = mp4file::scan(&mut src, data.len() as u64) {
        assert!(scan.complete_len <= data.len() as u64);
        if let Ok(layout) = mp4file::progressive_layout(&scan) {
            for r in &layout.ranges {
                assert!(r.start <= r.end && r.end <= data.len() as u64, "range {r:?} outside the input");
            }
        }
    }
});
