//! AV1 between the hub (low-overhead OBUs with size fields + AV1CodecConfigurationRecord) and WebRTC (str0m's
//! RTP AV1 depacketizer writes OBUs with size fields, its packetizer reads the same).

use bytes::Bytes;
use ferrocast_formats::av1::{BitReader, obu_payload};

pub use ferrocast_formats::av1::sequence_header;

/// An AV1CodecConfigurationRecord (`av1C`) for a sequence header OBU: profile, level and tier of operating point
/// 0 from the header; 8-bit 4:2:0 is written as the colour format (WebRTC's AV1 is profile 0 8-bit; decoders read
/// the real one from the sequence header, which is the record's configOBUs).
pub fn build_av1_config(seq_obu: &[u8]) -> Option<Bytes> {
    let mut r = BitReader::new(obu_payload(seq_obu)?);
    let profile = r.read(3)?;
    r.read(1)?; // still_picture
    let reduced = r.read(1)? == 1;
    let (level, tier) = if reduced {
        (r.read(5)?, 0)
    } else {
        if r.read(1)? == 1 {
            // timing_info
            r.read(32)?;
            r.read(32)?;
            if r.read(1)? == 1 {
                r.uvlc()?;
            }
            if r.read(1)? == 1 {
                // decoder_model_info; operating point 0's parameters come after its level and tier
                r.read(5)?;
                r.read(32)?;
                r.read(10)?;
            }
        }
        r.read(1)?; // initial_display_delay_present_flag
        r.read(5)?; // operating_points_cnt_minus_1
        r.read(12)?; // operating_point_idc[0]
        let level = r.read(5)?;
        let tier = if level > 7 { r.read(1)? } else { 0 };
        (level, tier)
    };
    let mut out = vec![0x81, ((profile as u8) << 5) | (level as u8 & 0x1f), ((tier as u8) << 7) | 0x0c, 0];
    out.extend_from_slice(seq_obu);
    Some(Bytes::from(out))
}

/// A temporal unit for WebRTC: a keyframe without its own sequence header gets the stream's (from `av1C`) first.
pub fn with_sequence_header(data: &[u8], keyframe: bool, config: &[u8]) -> Vec<u8> {
    let seq = config.get(4..).filter(|c| !c.is_empty());
    match seq {
        Some(seq) if keyframe && sequence_header(data).is_none() => {
            let mut out = Vec::with_capacity(seq.len() + data.len());
            out.extend_from_slice(seq);
            out.extend_from_slice(data);
            out
        }
        _ => data.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // libaom's sequence header for 320x240 4:2:0 8-bit (profile 0, level 2.0 = idx 0).
    const SEQ: &[u8] = &[0x0a, 0x0b, 0x00, 0x00, 0x00, 0x04, 0x3c, 0xff, 0xbc, 0xda, 0xf9, 0x00, 0x40];

    #[test]
    fn config_record_from_a_keyframe() {
        let frame_obu: &[u8] = &[0x32, 0x03, 0x10, 0x20, 0x30];
        let mut tu = vec![0x12, 0x00]; // temporal delimiter
        tu.extend_from_slice(SEQ);
        tu.extend_from_slice(frame_obu);
        assert_eq!(sequence_header(&tu), Some(SEQ));
        let config = build_av1_config(SEQ).expect("av1C");
        assert_eq!(&config[..4], &[0x81, 0x00, 0x0c, 0x00]);
        let info = ferrocast_media::TrackInfo::from_config(ferrocast_media::Codec::Av1, 90_000, config.clone())
            .expect("the hub takes the record");
        assert_eq!(info.video.as_ref().map(|v| (v.width, v.height)), Some((320, 240)));
        // A keyframe without a sequence header gets the stream's; other frames and complete keyframes are kept.
        let with = with_sequence_header(frame_obu, true, &config);
        assert_eq!(&with[..SEQ.len()], SEQ);
        assert_eq!(&with[SEQ.len()..], frame_obu);
        assert_eq!(with_sequence_header(frame_obu, false, &config), frame_obu);
        assert_eq!(with_sequence_header(&tu, true, &config), tu);
    }

    #[test]
    fn malformed_input_does_not_panic() {
        assert!(sequence_header(&[0x0a, 0xff, 0xff]).is_none());
        assert!(build_av1_config(&[0x0a, 0x00]).is_none());
        assert_eq!(with_sequence_header(&[1, 2], true, &[0x81]), vec![1, 2]);
    }
}
