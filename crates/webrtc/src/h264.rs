//! H.264 byte-stream conversions between the hub's form (AVCC with 4-byte lengths + AVCDecoderConfigurationRecord)
//! and WebRTC's (Annex B access units, parameter sets in band).

use bytes::Bytes;

const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// NAL units, each without a start code or length.
pub type NalUnits = Vec<Vec<u8>>;

/// The SPS and PPS NAL units of an AVCDecoderConfigurationRecord; `None` when the record is malformed.
pub fn avc_config_parameter_sets(record: &[u8]) -> Option<(NalUnits, NalUnits)> {
    let mut pos = 5;
    let mut take_list = |count_mask: u8| -> Option<Vec<Vec<u8>>> {
        let count = *record.get(pos)? & count_mask;
        pos += 1;
        let mut out = Vec::new();
        for _ in 0..count {
            let len = u16::from_be_bytes([*record.get(pos)?, *record.get(pos + 1)?]) as usize;
            pos += 2;
            out.push(record.get(pos..pos + len)?.to_vec());
            pos += len;
        }
        Some(out)
    };
    let sps = take_list(0x1f)?;
    let pps = take_list(0xff)?;
    Some((sps, pps))
}

/// An Annex B access unit from an AVCC one. `prefix` NAL units (SPS/PPS) are put first when the frame does not
/// carry its own parameter sets.
pub fn avcc_to_annexb(avcc: &[u8], prefix: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(avcc.len() + 64);
    let has_sps = ferrocast_media::codec::avcc_nal_units(avcc).any(|n| n.first().is_some_and(|&h| h & 0x1f == 7));
    if !has_sps {
        for nal in prefix {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(nal);
        }
    }
    for nal in ferrocast_media::codec::avcc_nal_units(avcc) {
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(nal);
    }
    out
}

/// The NAL units of an Annex B byte stream (3- or 4-byte start codes).
pub fn annexb_nal_units(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut out = Vec::with_capacity(starts.len());
    for (n, &s) in starts.iter().enumerate() {
        let mut end = starts.get(n + 1).map_or(data.len(), |&next| next - 3);
        // A 4-byte start code leaves a zero byte at the end of the previous unit; so do trailing zeros.
        while end > s && data[end - 1] == 0 {
            end -= 1;
        }
        if end > s {
            out.push(&data[s..end]);
        }
    }
    out
}

/// What one incoming Annex B access unit becomes for the hub.
#[derive(Debug, Default)]
pub struct AvccUnit {
    /// The access unit as AVCC (4-byte lengths), without SPS/PPS/AUD.
    pub data: Vec<u8>,
    /// Whether it has an IDR slice.
    pub keyframe: bool,
    /// The SPS it carried, if any.
    pub sps: Option<Vec<u8>>,
    /// The PPS it carried, if any.
    pub pps: Option<Vec<u8>>,
}

/// Converts an Annex B access unit to AVCC, pulling out the parameter sets.
pub fn annexb_to_avcc(data: &[u8]) -> AvccUnit {
    let mut unit = AvccUnit::default();
    for nal in annexb_nal_units(data) {
        match nal[0] & 0x1f {
            7 => unit.sps = Some(nal.to_vec()),
            8 => unit.pps = Some(nal.to_vec()),
            9 => {}
            t => {
                if t == 5 {
                    unit.keyframe = true;
                }
                unit.data.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                unit.data.extend_from_slice(nal);
            }
        }
    }
    unit
}

/// An AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3) with one SPS and one PPS.
pub fn build_avc_config(sps: &[u8], pps: &[u8]) -> Option<Bytes> {
    if sps.len() < 4 || pps.is_empty() {
        return None;
    }
    let mut out = vec![1, sps[1], sps[2], sps[3], 0xff, 0xe1];
    out.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    out.extend_from_slice(sps);
    out.push(1);
    out.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    out.extend_from_slice(pps);
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annexb_and_avcc_round_trip() {
        let sps = vec![0x67, 0x42, 0xc0, 0x1e, 0xaa];
        let pps = vec![0x68, 0xce, 0x3c, 0x80];
        let idr = vec![0x65, 0x88, 0x84, 0x21];
        let mut annexb = vec![0, 0, 0, 1];
        annexb.extend_from_slice(&sps);
        annexb.extend_from_slice(&[0, 0, 1]);
        annexb.extend_from_slice(&pps);
        annexb.extend_from_slice(&[0, 0, 0, 1]);
        annexb.extend_from_slice(&idr);
        let unit = annexb_to_avcc(&annexb);
        assert!(unit.keyframe);
        assert_eq!(unit.sps.as_deref(), Some(&sps[..]));
        assert_eq!(unit.pps.as_deref(), Some(&pps[..]));
        let config = build_avc_config(&sps, &pps).unwrap();
        let (s, p) = avc_config_parameter_sets(&config).unwrap();
        assert_eq!((s, p), (vec![sps.clone()], vec![pps.clone()]));
        let back = avcc_to_annexb(&unit.data, &[sps.clone(), pps.clone()]);
        let nals = annexb_nal_units(&back);
        assert_eq!(nals, vec![&sps[..], &pps[..], &idr[..]]);
    }

    #[test]
    fn malformed_input_does_not_panic() {
        assert!(avc_config_parameter_sets(&[1, 2]).is_none());
        assert!(annexb_nal_units(&[0, 0, 1]).is_empty());
        assert!(annexb_to_avcc(&[0xff; 7]).data.is_empty());
        assert!(build_avc_config(&[0x67], &[0x68]).is_none());
    }
}
