//! H.265 byte-stream conversions between the hub's form (HVCC with 4-byte lengths + HEVCDecoderConfigurationRecord)
//! and WebRTC's (Annex B access units, VPS/SPS/PPS in band; RFC 7798 packetization is str0m's).

use bytes::Bytes;

use crate::h264::{NalUnits, annexb_nal_units};

const START_CODE: [u8; 4] = [0, 0, 0, 1];
const VPS: u8 = 32;
const SPS: u8 = 33;
const PPS: u8 = 34;
const AUD: u8 = 35;

fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0xff, |h| (h >> 1) & 0x3f)
}

/// The VPS, SPS and PPS NAL units of an HEVCDecoderConfigurationRecord, in that order; `None` when malformed.
pub fn hevc_config_parameter_sets(record: &[u8]) -> Option<NalUnits> {
    let mut pos = 22;
    let arrays = *record.get(pos)?;
    pos += 1;
    let mut out = Vec::new();
    for _ in 0..arrays {
        pos += 1; // array_completeness, reserved, NAL_unit_type
        let count = u16::from_be_bytes([*record.get(pos)?, *record.get(pos + 1)?]);
        pos += 2;
        for _ in 0..count {
            let len = u16::from_be_bytes([*record.get(pos)?, *record.get(pos + 1)?]) as usize;
            pos += 2;
            out.push(record.get(pos..pos + len)?.to_vec());
            pos += len;
        }
    }
    out.sort_by_key(|n| nal_type(n));
    Some(out)
}

/// An Annex B access unit from an HVCC one; `prefix` (VPS/SPS/PPS) goes first when the frame has no SPS of its own.
pub fn hvcc_to_annexb(hvcc: &[u8], prefix: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hvcc.len() + 128);
    let has_sps = ferrocast_media::codec::avcc_nal_units(hvcc).any(|n| nal_type(n) == SPS);
    if !has_sps {
        for nal in prefix {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(nal);
        }
    }
    for nal in ferrocast_media::codec::avcc_nal_units(hvcc) {
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(nal);
    }
    out
}

/// What one incoming H.265 Annex B access unit becomes for the hub.
#[derive(Debug, Default)]
pub struct HvccUnit {
    /// The access unit as HVCC (4-byte lengths), without VPS/SPS/PPS/AUD.
    pub data: Vec<u8>,
    /// Whether it has an IRAP picture (BLA, IDR, CRA).
    pub keyframe: bool,
    /// Whether it has a picture at all (a VCL NAL unit), not only SEI or other non-VCL units.
    pub has_picture: bool,
    /// The VPS it carried, if any.
    pub vps: Option<Vec<u8>>,
    /// The SPS it carried, if any.
    pub sps: Option<Vec<u8>>,
    /// The PPS it carried, if any.
    pub pps: Option<Vec<u8>>,
}

/// Converts an Annex B access unit to HVCC, pulling out the parameter sets.
pub fn annexb_to_hvcc(data: &[u8]) -> HvccUnit {
    let mut unit = HvccUnit::default();
    for nal in annexb_nal_units(data) {
        match nal_type(nal) {
            VPS => unit.vps = Some(nal.to_vec()),
            SPS => unit.sps = Some(nal.to_vec()),
            PPS => unit.pps = Some(nal.to_vec()),
            AUD => {}
            t => {
                if (16..=23).contains(&t) {
                    unit.keyframe = true;
                }
                unit.has_picture |= t < 32;
                unit.data.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                unit.data.extend_from_slice(nal);
            }
        }
    }
    unit
}

/// An HEVCDecoderConfigurationRecord with one VPS, SPS and PPS; `None` when the SPS is too short to describe.
pub fn build_hevc_config(vps: &[u8], sps: &[u8], pps: &[u8]) -> Option<Bytes> {
    ferrocast_media::codec::build_hevc_config(&[vps], &[sps], &[pps]).ok().map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Parameter sets of a 320x240 x265 stream (NAL headers included).
    const VPS_NAL: &[u8] = &[
        0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x04, 0x08, 0x00, 0x00, 0x03, 0x00, 0x9e, 0x08, 0x00, 0x00, 0x03, 0x00,
        0x00, 0x3c, 0x95, 0x98, 0x09,
    ];
    const SPS_NAL: &[u8] = &[
        0x42, 0x01, 0x01, 0x04, 0x08, 0x00, 0x00, 0x03, 0x00, 0x9e, 0x08, 0x00, 0x00, 0x03, 0x00, 0x00, 0x3c, 0x90,
        0x01, 0x41, 0x01, 0xe2, 0xcb, 0x2b, 0x34, 0x92, 0x65, 0x78, 0x0b, 0x70, 0x20, 0x20, 0x00, 0x40, 0x00, 0x00,
        0x03, 0x00, 0x40, 0x00, 0x00, 0x06, 0x42,
    ];
    const PPS_NAL: &[u8] = &[0x44, 0x01, 0xc1, 0x72, 0x86, 0x0c, 0x46, 0x24];

    #[test]
    fn annexb_and_hvcc_round_trip() {
        let idr = vec![0x26, 0x01, 0xaf, 0x06, 0xb8];
        let mut annexb = Vec::new();
        for nal in [&[0x46, 0x01, 0x10][..], VPS_NAL, SPS_NAL, PPS_NAL, &idr] {
            annexb.extend_from_slice(&START_CODE);
            annexb.extend_from_slice(nal);
        }
        let unit = annexb_to_hvcc(&annexb);
        assert!(unit.keyframe && unit.has_picture);
        assert_eq!(
            (unit.vps.as_deref(), unit.sps.as_deref(), unit.pps.as_deref()),
            (Some(VPS_NAL), Some(SPS_NAL), Some(PPS_NAL))
        );
        let config = build_hevc_config(VPS_NAL, SPS_NAL, PPS_NAL).expect("hvcC");
        let sets = hevc_config_parameter_sets(&config).expect("parameter sets");
        assert_eq!(sets, vec![VPS_NAL.to_vec(), SPS_NAL.to_vec(), PPS_NAL.to_vec()]);
        let info = ferrocast_media::TrackInfo::from_config(ferrocast_media::Codec::H265, 90_000, config)
            .expect("the hub takes the record");
        assert_eq!(info.video.as_ref().map(|v| (v.width, v.height)), Some((320, 240)));
        let back = hvcc_to_annexb(&unit.data, &sets);
        assert_eq!(annexb_nal_units(&back), vec![VPS_NAL, SPS_NAL, PPS_NAL, &idr[..]]);
        // A non-IRAP picture (TRAIL_R) is not a keyframe.
        let mut p = START_CODE.to_vec();
        p.extend_from_slice(&[0x02, 0x01, 0xd0]);
        assert!(!annexb_to_hvcc(&p).keyframe);
    }

    #[test]
    fn malformed_input_does_not_panic() {
        assert!(hevc_config_parameter_sets(&[1; 23]).is_none());
        assert!(annexb_to_hvcc(&[0xff; 9]).data.is_empty());
        // Parameter sets and a prefix SEI alone are no picture.
        let mut sets = Vec::new();
        for nal in [VPS_NAL, SPS_NAL, PPS_NAL, &[0x4e, 0x01, 0x05][..]] {
            sets.extend_from_slice(&START_CODE);
            sets.extend_from_slice(nal);
        }
        let unit = annexb_to_hvcc(&sets);
        assert!(!unit.has_picture && !unit.data.is_empty());
        assert!(build_hevc_config(VPS_NAL, &[0x42, 0x01], PPS_NAL).is_none());
    }
}
