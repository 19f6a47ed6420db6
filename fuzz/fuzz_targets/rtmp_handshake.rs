//! Arbitrary bytes into both handshake sides, split into reads of a fuzzer-chosen size.
#![no_main]

use ferrocast_rtmp::{ClientHandshake, ServerHandshake};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&step, rest)) = data.split_first() else { return };
    let step = usize::from(step).max(1);
    let mut server = Some(ServerHandshake::new());
    let mut client = Some(if step % 2 == 0 { ClientHandshake::new() } else { ClientHandshake::new_complex() });
    for piece in rest.chunks(step) {
        if let Some(s) = server.as_mut() {
            match s.feed(piece) {
                Ok(used) => {
                    assert!(used <= piece.len());
                    assert!(used == piece.len() || s.is_done());
                    let _ = s.take_output();
                }
                Err(_) => server = None,
            }
        }
        if let Some(c) = client.as_mut() {
            match c.feed(piece) {
                Ok(used) => {
                    assert!(used <= piece.len());
                    assert!(used == piece.len() || c.is_done());
                    let _ = c.take_output();
                }
                Err(_) => client = None,
            }
        }
    }
});
