//! Arbitrary bytes into the FLV stream reader, and every tag body it yields into the tag parsers (the same
//! parsers read RTMP audio/video message bodies); also the raw input straight into the tag parsers and the codec
//! configuration parsers a tag's sequence header reaches.
#![no_main]

use bytes::Bytes;
use ferrocast_formats::flv::{self, FlvReader};
use ferrocast_media::codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(1, |b| (*b as usize % 64) + 1);
    let mut reader = FlvReader::with_max_tag_size(1 << 20);
    for piece in data.chunks(split) {
        reader.push(piece);
        while let Ok(Some(tag)) = reader.next_tag() {
            let _ = flv::parse_video_tag(&tag.body);
            let _ = flv::parse_audio_tag(&tag.body);
        }
    }
    let body = Bytes::copy_from_slice(data);
    if let Ok(flv::VideoTag::Config { config, .. }) = flv::parse_video_tag(&body) {
        let _ = codec::parse_avc_config(&config);
        let _ = codec::parse_hevc_config(&config);
        let _ = codec::parse_av1_config(&config);
    }
    if let Ok(flv::AudioTag::Config { config, .. }) = flv::parse_audio_tag(&body) {
        let _ = codec::parse_audio_specific_config(&config);
        let _ = codec::parse_opus_head(&config);
    }
    let _ = codec::parse_avc_config(data);
    let _ = codec::parse_hevc_config(data);
    let _ = codec::parse_av1_config(data);
    let _ = codec::parse_audio_specific_config(data);
});
