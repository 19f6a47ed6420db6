//! Arbitrary bytes into the AMF0 decoder; whatever decodes must re-encode to a fixpoint.
#![no_main]

use ferrocast_formats::amf0;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while !rest.is_empty() {
        let before = rest.len();
        let Ok(value) = amf0::decode(&mut rest) else { break };
        assert!(rest.len() < before);
        let first = amf0::to_vec(&value);
        let again = amf0::decode(&mut first.as_slice()).expect("re-encoded value decodes");
        assert_eq!(amf0::to_vec(&again), first);
    }
    let _ = amf0::decode_all(data);
});
