//! Codec configuration parsing: the picture size and RFC 6381 codec string of H.264, H.265 and AV1 tracks, the
//! sample rate and channel count of AAC, Opus and MP3 tracks, and a few helpers that look into AVCC/HVCC frames.
//!
//! Everything here reads untrusted bytes: no function panics on any input, and every read past the end of the
//! data is a [`CodecError`].

use std::fmt::Write as _;

/// Picture parameters of a video track.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VideoParams {
    /// Width of the displayed picture in pixels (after cropping).
    pub width: u32,
    /// Height of the displayed picture in pixels (after cropping).
    pub height: u32,
    /// The RFC 6381 `codecs` parameter, e.g. `avc1.64001f`, `hvc1.1.6.L93.B0`, `av01.0.08M.08`.
    pub codec_string: String,
}

/// Sound parameters of an audio track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AudioParams {
    /// Output sample rate in Hz (for Opus always 48000, the rate Opus decodes at).
    pub sample_rate: u32,
    /// Number of output channels.
    pub channels: u8,
}

/// Why a codec configuration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The data ends before the named structure does.
    #[error("{0}: data ends early")]
    Truncated(&'static str),
    /// The structure carries a version this parser does not know.
    #[error("{what}: unsupported version {version}")]
    UnsupportedVersion {
        /// The structure.
        what: &'static str,
        /// The version found.
        version: u8,
    },
    /// A required part (e.g. the SPS of a configuration record) is absent.
    #[error("{0} not found")]
    Missing(&'static str),
    /// A field holds a value that is reserved or out of range.
    #[error("invalid {0}")]
    Invalid(&'static str),
}

type Result<T> = std::result::Result<T, CodecError>;

// ---------------------------------------------------------------------------------------------------------------
// Bit reading
// ---------------------------------------------------------------------------------------------------------------

/// An MSB-first bit reader over a byte slice, with exp-Golomb codes; every read past the end is an error.
struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits.
    pos: usize,
    /// What is being read, for errors.
    what: &'static str,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8], what: &'static str) -> Self {
        BitReader { data, pos: 0, what }
    }

    fn bits_left(&self) -> usize {
        (self.data.len() * 8).saturating_sub(self.pos)
    }

    fn bit(&mut self) -> Result<u32> {
        let byte = self.data.get(self.pos / 8).ok_or(CodecError::Truncated(self.what))?;
        let bit = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Ok(u32::from(bit))
    }

    fn flag(&mut self) -> Result<bool> {
        Ok(self.bit()? == 1)
    }

    /// Reads `n` bits (at most 32).
    fn bits(&mut self, n: u32) -> Result<u32> {
        debug_assert!(n <= 32);
        if self.bits_left() < n as usize {
            return Err(CodecError::Truncated(self.what));
        }
        let mut value: u64 = 0;
        for _ in 0..n {
            value = (value << 1) | u64::from(self.bit()?);
        }
        Ok(value as u32)
    }

    fn skip(&mut self, n: usize) -> Result<()> {
        if self.bits_left() < n {
            return Err(CodecError::Truncated(self.what));
        }
        self.pos += n;
        Ok(())
    }

    fn byte_align(&mut self) {
        self.pos = self.pos.div_ceil(8) * 8;
    }

    /// Unsigned exp-Golomb code `ue(v)`.
    fn ue(&mut self) -> Result<u32> {
        let mut zeros = 0u32;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(CodecError::Invalid(self.what));
            }
        }
        let rest = self.bits(zeros)?;
        // zeros <= 31, so this is at most 2^32 - 2.
        Ok(((1u64 << zeros) - 1 + u64::from(rest)) as u32)
    }

    /// Signed exp-Golomb code `se(v)`.
    fn se(&mut self) -> Result<i32> {
        let k = i64::from(self.ue()?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        Ok(v as i32)
    }

    /// AV1 `uvlc()`.
    fn uvlc(&mut self) -> Result<u32> {
        let mut zeros = 0u32;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros >= 32 {
                return Ok(u32::MAX);
            }
        }
        let rest = self.bits(zeros)?;
        Ok(((1u64 << zeros) - 1 + u64::from(rest)) as u32)
    }
}

/// Removes emulation prevention bytes (`00 00 03` -> `00 00`) from a NAL unit, giving its RBSP.
fn unescape_rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0usize;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// A big-endian byte cursor over a slice.
struct ByteReader<'a> {
    data: &'a [u8],
    what: &'static str,
}

impl<'a> ByteReader<'a> {
    fn new(data: &'a [u8], what: &'static str) -> Self {
        ByteReader { data, what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.data.len() < n {
            return Err(CodecError::Truncated(self.what));
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8> {
        let (&b, rest) = self.data.split_first().ok_or(CodecError::Truncated(self.what))?;
        self.data = rest;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let (head, rest) = self.data.split_first_chunk::<N>().ok_or(CodecError::Truncated(self.what))?;
        self.data = rest;
        Ok(*head)
    }

    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }
}

/// `(base + 1) * unit` minus cropping, checked; the result must be a positive `u32`.
fn cropped(size: u64, crop: u64, what: &'static str) -> Result<u32> {
    let value = size.checked_sub(crop).ok_or(CodecError::Invalid(what))?;
    if value == 0 || value > u64::from(u32::MAX) {
        return Err(CodecError::Invalid(what));
    }
    Ok(value as u32)
}

// ---------------------------------------------------------------------------------------------------------------
// H.264
// ---------------------------------------------------------------------------------------------------------------

/// Parses an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3): picture size from the first SPS, codec
/// string from the record's profile/compatibility/level bytes.
pub fn parse_avc_config(record: &[u8]) -> Result<VideoParams> {
    let mut r = ByteReader::new(record, "AVC configuration record");
    let version = r.u8()?;
    if version != 1 {
        return Err(CodecError::UnsupportedVersion { what: "AVC configuration record", version });
    }
    let profile = r.u8()?;
    let compat = r.u8()?;
    let level = r.u8()?;
    let _length_size = r.u8()?;
    let num_sps = r.u8()? & 0x1f;
    if num_sps == 0 {
        return Err(CodecError::Missing("SPS"));
    }
    let len = r.u16()? as usize;
    let sps = r.take(len)?;
    let (width, height) = h264_sps_dimensions(sps)?;
    Ok(VideoParams { width, height, codec_string: format!("avc1.{profile:02x}{compat:02x}{level:02x}") })
}

/// The displayed picture size (after frame cropping) of an H.264 SPS NAL unit (with its one-byte NAL header,
/// emulation prevention bytes still in).
pub fn h264_sps_dimensions(sps: &[u8]) -> Result<(u32, u32)> {
    const W: &str = "H.264 SPS";
    let (&header, rest) = sps.split_first().ok_or(CodecError::Truncated(W))?;
    if header & 0x1f != 7 {
        return Err(CodecError::Invalid("H.264 SPS NAL unit type"));
    }
    let rbsp = unescape_rbsp(rest);
    let mut r = BitReader::new(&rbsp, W);
    let profile_idc = r.bits(8)?;
    r.skip(16)?; // constraint flags, level_idc
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if matches!(profile_idc, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc > 3 {
            return Err(CodecError::Invalid("H.264 chroma_format_idc"));
        }
        if chroma_format_idc == 3 {
            separate_colour_plane = r.flag()?;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.skip(1)?; // qpprime_y_zero_transform_bypass_flag
        if r.flag()? {
            // seq_scaling_matrix_present_flag
            let lists = if chroma_format_idc != 3 { 8 } else { 12 };
            for i in 0..lists {
                if r.flag()? {
                    skip_h264_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    let poc_type = r.ue()?;
    match poc_type {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.skip(1)?; // delta_pic_order_always_zero_flag
            r.se()?; // offset_for_non_ref_pic
            r.se()?; // offset_for_top_to_bottom_field
            let cycle = r.ue()?;
            if cycle > 255 {
                return Err(CodecError::Invalid("H.264 num_ref_frames_in_pic_order_cnt_cycle"));
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        2 => {}
        _ => return Err(CodecError::Invalid("H.264 pic_order_cnt_type")),
    }
    r.ue()?; // max_num_ref_frames
    r.skip(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_map_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = r.flag()?;
    if !frame_mbs_only {
        r.skip(1)?; // mb_adaptive_frame_field_flag
    }
    r.skip(1)?; // direct_8x8_inference_flag
    let field_factor: u64 = if frame_mbs_only { 1 } else { 2 };
    let (mut crop_x, mut crop_y) = (0u64, 0u64);
    if r.flag()? {
        let left = u64::from(r.ue()?);
        let right = u64::from(r.ue()?);
        let top = u64::from(r.ue()?);
        let bottom = u64::from(r.ue()?);
        let chroma_array_type = if separate_colour_plane { 0 } else { chroma_format_idc };
        let (unit_x, unit_y) = match chroma_array_type {
            0 => (1, field_factor),
            1 => (2, 2 * field_factor),
            2 => (2, field_factor),
            _ => (1, field_factor),
        };
        crop_x = (left + right) * unit_x;
        crop_y = (top + bottom) * unit_y;
    }
    let width = cropped(width_mbs * 16, crop_x, "H.264 picture width")?;
    let height = cropped(height_map_units * 16 * field_factor, crop_y, "H.264 picture height")?;
    Ok((width, height))
}

fn skip_h264_scaling_list(r: &mut BitReader<'_>, size: usize) -> Result<()> {
    let mut last = 8i32;
    let mut next = 8i32;
    for _ in 0..size {
        if next != 0 {
            let delta = r.se()?;
            next = (last + delta).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// H.265
// ---------------------------------------------------------------------------------------------------------------

/// Parses an HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 §8.3.3): picture size from the first SPS in its
/// arrays, codec string (`hvc1.…`, ISO/IEC 14496-15 Annex E) from the record's profile, tier and level fields.
pub fn parse_hevc_config(record: &[u8]) -> Result<VideoParams> {
    const W: &str = "HEVC configuration record";
    let mut r = ByteReader::new(record, W);
    let version = r.u8()?;
    if version != 1 {
        return Err(CodecError::UnsupportedVersion { what: W, version });
    }
    let ptl = r.u8()?;
    let compat = u32::from_be_bytes(r.array()?);
    let constraints = r.take(6)?;
    let level = r.u8()?;
    r.take(9)?; // segmentation, parallelism, chroma, bit depths, frame rate, lengthSizeMinusOne
    let num_arrays = r.u8()?;
    let mut sps = None;
    for _ in 0..num_arrays {
        let nal_type = r.u8()? & 0x3f;
        let count = r.u16()?;
        for _ in 0..count {
            let len = r.u16()? as usize;
            let nal = r.take(len)?;
            if nal_type == 33 && sps.is_none() {
                sps = Some(nal);
            }
        }
    }
    let sps = sps.ok_or(CodecError::Missing("SPS"))?;
    let (width, height) = hevc_sps_dimensions(sps)?;

    let mut codec_string = String::from("hvc1.");
    codec_string.push_str(["", "A", "B", "C"][usize::from(ptl >> 6)]);
    let _ = write!(
        codec_string,
        "{}.{:X}.{}{}",
        ptl & 0x1f,
        compat.reverse_bits(),
        if ptl & 0x20 != 0 { 'H' } else { 'L' },
        level
    );
    // Trailing zero constraint bytes are omitted, but the first one is always written.
    let used = constraints.iter().rposition(|&b| b != 0).map_or(1, |i| i + 1);
    for b in constraints.iter().take(used) {
        let _ = write!(codec_string, ".{b:X}");
    }
    Ok(VideoParams { width, height, codec_string })
}

/// The displayed picture size (after the conformance window) of an H.265 SPS NAL unit (with its two-byte NAL
/// header, emulation prevention bytes still in).
pub fn hevc_sps_dimensions(sps: &[u8]) -> Result<(u32, u32)> {
    const W: &str = "H.265 SPS";
    let header = sps.first().ok_or(CodecError::Truncated(W))?;
    if (header >> 1) & 0x3f != 33 {
        return Err(CodecError::Invalid("H.265 SPS NAL unit type"));
    }
    let rbsp = unescape_rbsp(sps.get(2..).ok_or(CodecError::Truncated(W))?);
    let mut r = BitReader::new(&rbsp, W);
    r.skip(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = r.bits(3)? as usize;
    r.skip(1)?; // sps_temporal_id_nesting_flag
    // profile_tier_level(1, max_sub_layers_minus1)
    r.skip(2 + 1 + 5 + 32 + 48 + 8)?;
    let mut sub_layer_flags = [(false, false); 8];
    for flags in sub_layer_flags.iter_mut().take(max_sub_layers_minus1) {
        *flags = (r.flag()?, r.flag()?);
    }
    if max_sub_layers_minus1 > 0 {
        r.skip(2 * (8 - max_sub_layers_minus1))?;
    }
    for &(profile_present, level_present) in sub_layer_flags.iter().take(max_sub_layers_minus1) {
        if profile_present {
            r.skip(88)?;
        }
        if level_present {
            r.skip(8)?;
        }
    }
    r.ue()?; // sps_seq_parameter_set_id
    let chroma_format_idc = r.ue()?;
    if chroma_format_idc > 3 {
        return Err(CodecError::Invalid("H.265 chroma_format_idc"));
    }
    let separate_colour_plane = chroma_format_idc == 3 && r.flag()?;
    let width = u64::from(r.ue()?);
    let height = u64::from(r.ue()?);
    let (mut crop_x, mut crop_y) = (0u64, 0u64);
    if r.flag()? {
        let left = u64::from(r.ue()?);
        let right = u64::from(r.ue()?);
        let top = u64::from(r.ue()?);
        let bottom = u64::from(r.ue()?);
        let (sub_w, sub_h) = match (chroma_format_idc, separate_colour_plane) {
            (1, _) => (2, 2),
            (2, _) => (2, 1),
            _ => (1, 1),
        };
        crop_x = (left + right) * sub_w;
        crop_y = (top + bottom) * sub_h;
    }
    Ok((cropped(width, crop_x, "H.265 picture width")?, cropped(height, crop_y, "H.265 picture height")?))
}

// ---------------------------------------------------------------------------------------------------------------
// AV1
// ---------------------------------------------------------------------------------------------------------------

/// Parses an AV1CodecConfigurationRecord (`av1C`): profile, level, tier and bit depth from its fixed fields
/// (codec string `av01.P.LLT.DD`), picture size (maximum frame size) from the sequence header OBU in its
/// configOBUs.
pub fn parse_av1_config(record: &[u8]) -> Result<VideoParams> {
    const W: &str = "AV1 configuration record";
    let mut r = ByteReader::new(record, W);
    let marker = r.u8()?;
    if marker != 0x81 {
        return Err(CodecError::UnsupportedVersion { what: W, version: marker & 0x7f });
    }
    let b1 = r.u8()?;
    let b2 = r.u8()?;
    r.u8()?; // initial_presentation_delay
    let profile = b1 >> 5;
    let level = b1 & 0x1f;
    let tier = if b2 & 0x80 != 0 { 'H' } else { 'M' };
    let high_bitdepth = b2 & 0x40 != 0;
    let twelve_bit = b2 & 0x20 != 0;
    let depth = match (profile, high_bitdepth, twelve_bit) {
        (2, true, true) => 12,
        (_, true, _) => 10,
        _ => 8,
    };
    let (width, height) = av1_sequence_header_dimensions(r.data)?;
    Ok(VideoParams { width, height, codec_string: format!("av01.{profile}.{level:02}{tier}.{depth:02}") })
}

/// Reads an unsigned LEB128 value (at most 8 bytes, must fit 32 bits).
fn leb128(r: &mut ByteReader<'_>) -> Result<u64> {
    let mut value = 0u64;
    for i in 0..8 {
        let b = r.u8()?;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return if value > u64::from(u32::MAX) { Err(CodecError::Invalid("AV1 OBU size")) } else { Ok(value) };
        }
    }
    Err(CodecError::Invalid("AV1 OBU size"))
}

/// The maximum frame size from the first sequence header OBU in a sequence of OBUs (low-overhead format, or a
/// final OBU without a size field).
pub fn av1_sequence_header_dimensions(obus: &[u8]) -> Result<(u32, u32)> {
    let mut r = ByteReader::new(obus, "AV1 OBU");
    while !r.data.is_empty() {
        let header = r.u8()?;
        if header & 0x80 != 0 {
            return Err(CodecError::Invalid("AV1 OBU forbidden bit"));
        }
        let obu_type = (header >> 3) & 0x0f;
        if header & 0x04 != 0 {
            r.u8()?; // extension header
        }
        let payload = if header & 0x02 != 0 {
            let size = leb128(&mut r)?;
            r.take(usize::try_from(size).map_err(|_| CodecError::Invalid("AV1 OBU size"))?)?
        } else {
            r.take(r.data.len())?
        };
        if obu_type == 1 {
            return parse_av1_sequence_header(payload);
        }
    }
    Err(CodecError::Missing("AV1 sequence header OBU"))
}

fn parse_av1_sequence_header(payload: &[u8]) -> Result<(u32, u32)> {
    let mut r = BitReader::new(payload, "AV1 sequence header");
    r.skip(3)?; // seq_profile
    r.skip(1)?; // still_picture
    let reduced = r.flag()?;
    if reduced {
        r.skip(5)?; // seq_level_idx[0]
    } else {
        let mut buffer_delay_length = 0;
        let timing_info_present = r.flag()?;
        let mut decoder_model_info_present = false;
        if timing_info_present {
            r.skip(64)?; // num_units_in_display_tick, time_scale
            if r.flag()? {
                r.uvlc()?; // num_ticks_per_picture_minus_1
            }
            decoder_model_info_present = r.flag()?;
            if decoder_model_info_present {
                buffer_delay_length = r.bits(5)? as usize + 1;
                r.skip(32 + 5 + 5)?;
            }
        }
        let initial_display_delay_present = r.flag()?;
        let operating_points = r.bits(5)? + 1;
        for _ in 0..operating_points {
            r.skip(12)?; // operating_point_idc
            let level = r.bits(5)?;
            if level > 7 {
                r.skip(1)?; // seq_tier
            }
            if decoder_model_info_present && r.flag()? {
                r.skip(2 * buffer_delay_length + 1)?;
            }
            if initial_display_delay_present && r.flag()? {
                r.skip(4)?;
            }
        }
    }
    let width_bits = r.bits(4)? + 1;
    let height_bits = r.bits(4)? + 1;
    let width = u64::from(r.bits(width_bits)?) + 1;
    let height = u64::from(r.bits(height_bits)?) + 1;
    Ok((cropped(width, 0, "AV1 frame width")?, cropped(height, 0, "AV1 frame height")?))
}

// ---------------------------------------------------------------------------------------------------------------
// AAC
// ---------------------------------------------------------------------------------------------------------------

/// The sampling frequencies of `samplingFrequencyIndex` 0..=12 (ISO/IEC 14496-3 Table 1.18).
pub const AAC_SAMPLE_RATES: [u32; 13] =
    [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];

/// The fields of an MPEG-4 AudioSpecificConfig that muxers need (ADTS headers, `mp4a` sample entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacConfig {
    /// The core audio object type (2 = AAC LC, also when SBR/PS is signalled on top of it).
    pub object_type: u8,
    /// Sampling rate of the core decoder in Hz.
    pub sample_rate: u32,
    /// The core `samplingFrequencyIndex`, or `None` when the rate was written explicitly (escape index 15) or is
    /// not in the table.
    pub sampling_index: Option<u8>,
    /// `channelConfiguration` as written (0 = defined by a program config element).
    pub channel_config: u8,
    /// Number of channels of the core decoder.
    pub channels: u8,
    /// Spectral band replication (HE-AAC) is signalled as present.
    pub sbr: bool,
    /// Parametric stereo (HE-AAC v2) is signalled as present.
    pub ps: bool,
    /// The output sample rate of the SBR tool, when signalled.
    pub extension_sample_rate: Option<u32>,
    /// Samples per frame of the core decoder: 1024, or 960 when `frameLengthFlag` is set.
    pub frame_length: u16,
}

impl AacConfig {
    /// The sample rate a decoder outputs: the SBR rate when SBR is present, else the core rate.
    pub fn output_sample_rate(&self) -> u32 {
        match self.extension_sample_rate {
            Some(rate) if self.sbr => rate,
            _ => self.sample_rate,
        }
    }

    /// The channel count a decoder outputs: parametric stereo turns one core channel into two.
    pub fn output_channels(&self) -> u8 {
        if self.ps && self.channels == 1 { 2 } else { self.channels }
    }
}

/// Parses an AudioSpecificConfig into sound parameters: the output sample rate (the SBR rate for HE-AAC with
/// explicit or backward-compatible signalling) and output channel count (2 for parametric stereo).
pub fn parse_audio_specific_config(asc: &[u8]) -> Result<AudioParams> {
    let config = parse_aac_config(asc)?;
    Ok(AudioParams { sample_rate: config.output_sample_rate(), channels: config.output_channels() })
}

fn aac_object_type(r: &mut BitReader<'_>) -> Result<u8> {
    let aot = r.bits(5)? as u8;
    if aot == 31 { Ok(32 + r.bits(6)? as u8) } else { Ok(aot) }
}

fn aac_sample_rate(r: &mut BitReader<'_>) -> Result<(u32, Option<u8>)> {
    let index = r.bits(4)? as u8;
    match index {
        15 => {
            let rate = r.bits(24)?;
            if rate == 0 {
                return Err(CodecError::Invalid("AAC sampling frequency"));
            }
            Ok((rate, AAC_SAMPLE_RATES.iter().position(|&r| r == rate).map(|i| i as u8)))
        }
        _ => AAC_SAMPLE_RATES
            .get(usize::from(index))
            .map(|&rate| (rate, Some(index)))
            .ok_or(CodecError::Invalid("AAC samplingFrequencyIndex")),
    }
}

/// Parses an MPEG-4 AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1), including the escape sampling frequency
/// index, explicit SBR/PS signalling (object types 5 and 29), backward-compatible SBR/PS signalling (sync
/// extensions 0x2b7/0x548) and channel counts from a program config element.
pub fn parse_aac_config(asc: &[u8]) -> Result<AacConfig> {
    let mut r = BitReader::new(asc, "AudioSpecificConfig");
    let mut object_type = aac_object_type(&mut r)?;
    let (sample_rate, sampling_index) = aac_sample_rate(&mut r)?;
    let channel_config = r.bits(4)? as u8;
    let mut sbr = false;
    let mut ps = false;
    let mut extension_sample_rate = None;
    let mut explicit_sbr = false;
    if object_type == 5 || object_type == 29 {
        explicit_sbr = true;
        sbr = true;
        ps = object_type == 29;
        // The rate written first is the core rate; the extension rate follows.
        extension_sample_rate = Some(aac_sample_rate(&mut r)?.0);
        object_type = aac_object_type(&mut r)?;
        if object_type == 22 {
            r.skip(4)?; // extensionChannelConfiguration
        }
    }
    let mut channels = match channel_config {
        0 => 0,
        1..=6 => channel_config,
        7 | 12 | 14 => 8,
        11 => 7,
        13 => 24,
        _ => return Err(CodecError::Invalid("AAC channelConfiguration")),
    };
    let mut frame_length = 1024;
    let ga = matches!(object_type, 1 | 2 | 3 | 4 | 6 | 7 | 17 | 19 | 20 | 21 | 22 | 23);
    if ga {
        // GASpecificConfig
        if r.flag()? {
            frame_length = 960;
        }
        if r.flag()? {
            r.skip(14)?; // coreCoderDelay
        }
        let extension_flag = r.flag()?;
        if channel_config == 0 {
            channels = parse_program_config_element(&mut r)?;
        }
        // Backward-compatible signalling is best effort: a broken tail does not make the config unusable.
        if let Ok(Some((ext_rate, ext_ps))) = parse_ga_tail(&mut r, object_type, extension_flag, explicit_sbr) {
            sbr = true;
            extension_sample_rate = Some(ext_rate);
            ps = ext_ps;
        }
    } else if channel_config == 0 {
        return Err(CodecError::Invalid("AAC channel configuration for this object type"));
    }
    if channels == 0 {
        return Err(CodecError::Invalid("AAC channel count"));
    }
    Ok(AacConfig {
        object_type,
        sample_rate,
        sampling_index,
        channel_config,
        channels,
        sbr,
        ps,
        extension_sample_rate,
        frame_length,
    })
}

/// The rest of a GASpecificConfig after the program config element, then the backward-compatible SBR/PS sync
/// extensions; gives the SBR output rate and the PS flag when SBR is signalled as present.
fn parse_ga_tail(
    r: &mut BitReader<'_>,
    object_type: u8,
    extension_flag: bool,
    explicit_sbr: bool,
) -> Result<Option<(u32, bool)>> {
    if object_type == 6 || object_type == 20 {
        r.skip(3)?; // layerNr
    }
    if extension_flag {
        if object_type == 22 {
            r.skip(5 + 11)?; // numOfSubFrame, layer_length
        }
        if matches!(object_type, 17 | 19 | 20 | 23) {
            r.skip(3)?; // resilience flags
        }
        r.skip(1)?; // extensionFlag3
    }
    if matches!(object_type, 17 | 19 | 20 | 21 | 22 | 23) && r.bits(2)? >= 2 {
        return Ok(None); // epConfig 2/3: ErrorProtectionSpecificConfig follows, nothing here needs it
    }
    if explicit_sbr || r.bits_left() < 16 || r.bits(11)? != 0x2b7 {
        return Ok(None);
    }
    if aac_object_type(r)? != 5 || !r.flag()? {
        return Ok(None);
    }
    let rate = aac_sample_rate(r)?.0;
    let ps = r.bits_left() >= 12 && r.bits(11)? == 0x548 && r.flag()?;
    Ok(Some((rate, ps)))
}

/// Reads a program_config_element (ISO/IEC 14496-3 §4.4.1.1), returning its channel count.
fn parse_program_config_element(r: &mut BitReader<'_>) -> Result<u8> {
    r.skip(4 + 2 + 4)?; // element_instance_tag, object_type, sampling_frequency_index
    let front = r.bits(4)?;
    let side = r.bits(4)?;
    let back = r.bits(4)?;
    let lfe = r.bits(2)?;
    let assoc = r.bits(3)?;
    let cc = r.bits(4)?;
    if r.flag()? {
        r.skip(4)?; // mono_mixdown_element_number
    }
    if r.flag()? {
        r.skip(4)?; // stereo_mixdown_element_number
    }
    if r.flag()? {
        r.skip(3)?; // matrix_mixdown_idx, pseudo_surround_enable
    }
    let mut channels = lfe;
    for _ in 0..front + side + back {
        channels += if r.flag()? { 2 } else { 1 };
        r.skip(4)?; // element_tag_select
    }
    r.skip(4 * lfe as usize + 4 * assoc as usize + 5 * cc as usize)?;
    r.byte_align();
    let comment_bytes = r.bits(8)?;
    r.skip(8 * comment_bytes as usize)?;
    u8::try_from(channels).map_err(|_| CodecError::Invalid("AAC channel count"))
}

// ---------------------------------------------------------------------------------------------------------------
// Opus
// ---------------------------------------------------------------------------------------------------------------

/// The contents of an Opus identification header, in either of its two layouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusConfig {
    /// Output channel count (at least 1).
    pub channels: u8,
    /// Samples at 48 kHz to discard from the decoder output at the start.
    pub pre_skip: u16,
    /// Sample rate of the original input (informational; Opus always decodes at 48 kHz).
    pub input_sample_rate: u32,
    /// Output gain in Q7.8 dB.
    pub output_gain: i16,
    /// Channel mapping family (0 = mono/stereo, 1 = Vorbis order, ...).
    pub mapping_family: u8,
    /// Number of Opus streams per packet (1 for family 0).
    pub stream_count: u8,
    /// Number of coupled (stereo) streams (`channels - 1` for family 0).
    pub coupled_count: u8,
    /// The channel mapping table (empty for family 0).
    pub channel_mapping: Vec<u8>,
}

impl OpusConfig {
    /// Writes the Ogg/RFC 7845 form: `OpusHead`, version 1, little-endian fields. This is also the Enhanced
    /// RTMP Opus sequence header.
    pub fn to_opus_head(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(21 + self.channel_mapping.len());
        out.extend_from_slice(b"OpusHead");
        out.push(1);
        out.push(self.channels);
        out.extend_from_slice(&self.pre_skip.to_le_bytes());
        out.extend_from_slice(&self.input_sample_rate.to_le_bytes());
        out.extend_from_slice(&self.output_gain.to_le_bytes());
        self.push_mapping(&mut out);
        out
    }

    /// Writes the ISO BMFF `dOps` box body: version 0, big-endian fields.
    pub fn to_dops(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(13 + self.channel_mapping.len());
        out.push(0);
        out.push(self.channels);
        out.extend_from_slice(&self.pre_skip.to_be_bytes());
        out.extend_from_slice(&self.input_sample_rate.to_be_bytes());
        out.extend_from_slice(&self.output_gain.to_be_bytes());
        self.push_mapping(&mut out);
        out
    }

    fn push_mapping(&self, out: &mut Vec<u8>) {
        out.push(self.mapping_family);
        if self.mapping_family != 0 {
            out.push(self.stream_count);
            out.push(self.coupled_count);
            out.extend_from_slice(&self.channel_mapping);
        }
    }
}

/// Parses an Opus identification header: the Ogg form (RFC 7845 §5.1, starting with `OpusHead`, little-endian)
/// or the ISO BMFF `dOps` box body (version 0, big-endian).
pub fn parse_opus_config(head: &[u8]) -> Result<OpusConfig> {
    const W: &str = "Opus header";
    let (little_endian, body) = match head.strip_prefix(b"OpusHead") {
        Some(rest) => {
            let version = *rest.first().ok_or(CodecError::Truncated(W))?;
            // Versions 0..=15 are compatible with version 1.
            if version & 0xf0 != 0 {
                return Err(CodecError::UnsupportedVersion { what: W, version });
            }
            (true, rest)
        }
        None => {
            let version = *head.first().ok_or(CodecError::Truncated(W))?;
            if version != 0 {
                return Err(CodecError::UnsupportedVersion { what: "Opus dOps box", version });
            }
            (false, head)
        }
    };
    let mut r = ByteReader::new(body, W);
    r.u8()?; // version
    let channels = r.u8()?;
    let pre_skip = r.array()?;
    let rate = r.array()?;
    let gain = r.array()?;
    let (pre_skip, input_sample_rate, output_gain) = if little_endian {
        (u16::from_le_bytes(pre_skip), u32::from_le_bytes(rate), i16::from_le_bytes(gain))
    } else {
        (u16::from_be_bytes(pre_skip), u32::from_be_bytes(rate), i16::from_be_bytes(gain))
    };
    let mapping_family = r.u8()?;
    if channels == 0 {
        return Err(CodecError::Invalid("Opus channel count"));
    }
    let (stream_count, coupled_count, channel_mapping) = if mapping_family == 0 {
        if channels > 2 {
            return Err(CodecError::Invalid("Opus channel count for mapping family 0"));
        }
        (1, channels - 1, Vec::new())
    } else {
        let streams = r.u8()?;
        let coupled = r.u8()?;
        if streams == 0 || coupled > streams {
            return Err(CodecError::Invalid("Opus stream counts"));
        }
        (streams, coupled, r.take(usize::from(channels))?.to_vec())
    };
    Ok(OpusConfig {
        channels,
        pre_skip,
        input_sample_rate,
        output_gain,
        mapping_family,
        stream_count,
        coupled_count,
        channel_mapping,
    })
}

/// Parses an Opus identification header (`OpusHead` Ogg form or `dOps` box body) into sound parameters; the
/// sample rate is always 48000, the rate Opus decodes at.
pub fn parse_opus_head(head: &[u8]) -> Result<AudioParams> {
    let config = parse_opus_config(head)?;
    Ok(AudioParams { sample_rate: 48000, channels: config.channels })
}

// ---------------------------------------------------------------------------------------------------------------
// MP3
// ---------------------------------------------------------------------------------------------------------------

/// Sound parameters from the header of an MPEG-1/2/2.5 audio frame (e.g. the first MP3 frame of an FLV tag).
pub fn parse_mpeg_audio_header(frame: &[u8]) -> Result<AudioParams> {
    const W: &str = "MPEG audio header";
    let h = frame.first_chunk::<4>().ok_or(CodecError::Truncated(W))?;
    if h[0] != 0xff || h[1] & 0xe0 != 0xe0 {
        return Err(CodecError::Invalid("MPEG audio sync word"));
    }
    let divisor = match (h[1] >> 3) & 3 {
        3 => 1, // MPEG-1
        2 => 2, // MPEG-2
        0 => 4, // MPEG-2.5
        _ => return Err(CodecError::Invalid("MPEG audio version")),
    };
    if (h[1] >> 1) & 3 == 0 {
        return Err(CodecError::Invalid("MPEG audio layer"));
    }
    let base = match (h[2] >> 2) & 3 {
        0 => 44100,
        1 => 48000,
        2 => 32000,
        _ => return Err(CodecError::Invalid("MPEG audio sampling rate")),
    };
    let channels = if h[3] >> 6 == 3 { 1 } else { 2 };
    Ok(AudioParams { sample_rate: base / divisor, channels })
}

// ---------------------------------------------------------------------------------------------------------------
// Frame helpers
// ---------------------------------------------------------------------------------------------------------------

/// The NAL units of an AVCC/HVCC payload (4-byte big-endian length prefixes). Empty NAL units are skipped; the
/// iteration stops cleanly at a truncated length or unit.
pub fn avcc_nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        loop {
            let (len, tail) = rest.split_first_chunk::<4>()?;
            let len = u32::from_be_bytes(*len) as usize;
            if tail.len() < len {
                rest = &[];
                return None;
            }
            let (nal, next) = tail.split_at(len);
            rest = next;
            if !nal.is_empty() {
                return Some(nal);
            }
        }
    })
}

/// Whether an H.264 AVCC access unit contains an IDR slice (NAL unit type 5).
pub fn h264_is_keyframe(avcc: &[u8]) -> bool {
    avcc_nal_units(avcc).any(|nal| nal.first().is_some_and(|&h| h & 0x1f == 5))
}

/// Whether an H.265 HVCC access unit contains an IRAP picture (NAL unit types 16..=23: BLA, IDR, CRA).
pub fn hevc_is_keyframe(hvcc: &[u8]) -> bool {
    avcc_nal_units(hvcc).any(|nal| nal.first().is_some_and(|&h| (16..=23).contains(&((h >> 1) & 0x3f))))
}

// ---------------------------------------------------------------------------------------------------------------
// Building configuration records and reading ADTS (for demuxers of Annex B / ADTS containers such as MPEG-TS)
// ---------------------------------------------------------------------------------------------------------------

/// The NAL units of an Annex B byte stream (3- or 4-byte start codes). Bytes before the first start code are
/// skipped; trailing zero bytes of each unit (`trailing_zero_8bits`) are removed; empty units are skipped.
pub fn annexb_nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    // Position just after the next start code at or after `from`.
    fn next_start(data: &[u8], from: usize) -> Option<(usize, usize)> {
        let mut i = from;
        while i + 3 <= data.len() {
            if data[i + 2] > 1 {
                i += 3;
            } else if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
                return Some((i, i + 3));
            } else {
                i += 1;
            }
        }
        None
    }
    let mut pos = next_start(data, 0).map(|(_, after)| after);
    std::iter::from_fn(move || {
        loop {
            let start = pos?;
            let (end, next) = match next_start(data, start) {
                Some((sc, after)) => (sc, Some(after)),
                None => (data.len(), None),
            };
            pos = next;
            let mut nal = &data[start..end];
            while let [rest @ .., 0] = nal {
                nal = rest;
            }
            if !nal.is_empty() {
                return Some(nal);
            }
        }
    })
}

/// Builds an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1, 4-byte NAL lengths) from SPS and PPS NAL
/// units (with their NAL headers). Profile, compatibility and level come from the first SPS.
pub fn build_avc_config(sps: &[&[u8]], pps: &[&[u8]]) -> Result<Vec<u8>> {
    let first = sps.first().ok_or(CodecError::Missing("SPS"))?;
    if first.len() < 4 {
        return Err(CodecError::Truncated("H.264 SPS"));
    }
    if pps.is_empty() {
        return Err(CodecError::Missing("PPS"));
    }
    if sps.len() > 31 || pps.len() > 255 || sps.iter().chain(pps).any(|n| n.len() > 0xffff) {
        return Err(CodecError::Invalid("parameter set count or size"));
    }
    let mut out = vec![1, first[1], first[2], first[3], 0xff, 0xe0 | sps.len() as u8];
    for s in sps {
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s);
    }
    out.push(pps.len() as u8);
    for p in pps {
        out.extend_from_slice(&(p.len() as u16).to_be_bytes());
        out.extend_from_slice(p);
    }
    Ok(out)
}

/// Builds an HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 §8.3.3.1, 4-byte NAL lengths) from VPS, SPS and PPS
/// NAL units (with their 2-byte NAL headers). The general profile, tier and level fields are copied from the
/// first SPS; chroma format and bit depths are written as 4:2:0 8-bit (decoders read them from the SPS).
pub fn build_hevc_config(vps: &[&[u8]], sps: &[&[u8]], pps: &[&[u8]]) -> Result<Vec<u8>> {
    let first = sps.first().ok_or(CodecError::Missing("SPS"))?;
    if vps.is_empty() {
        return Err(CodecError::Missing("VPS"));
    }
    if pps.is_empty() {
        return Err(CodecError::Missing("PPS"));
    }
    if [vps.len(), sps.len(), pps.len()].iter().any(|&n| n > 0xffff)
        || vps.iter().chain(sps).chain(pps).any(|n| n.len() > 0xffff)
    {
        return Err(CodecError::Invalid("parameter set count or size"));
    }
    // NAL header (2), then vps_id(4) max_sub_layers_minus1(3) temporal_id_nesting(1), then 12 bytes of
    // general_profile_tier_level.
    let rbsp = unescape_rbsp(first);
    let ptl = rbsp.get(3..15).ok_or(CodecError::Truncated("H.265 SPS"))?;
    let sub_layers = (rbsp[2] >> 1) & 0x07;
    let nesting = rbsp[2] & 1;
    let mut out = Vec::with_capacity(64);
    out.push(1);
    out.extend_from_slice(ptl);
    out.extend_from_slice(&[0xf0, 0x00]); // min_spatial_segmentation_idc = 0
    out.push(0xfc); // parallelismType = 0
    out.push(0xfd); // chroma_format_idc = 1
    out.push(0xf8); // bit_depth_luma_minus8 = 0
    out.push(0xf8); // bit_depth_chroma_minus8 = 0
    out.extend_from_slice(&[0, 0]); // avgFrameRate
    out.push(((sub_layers + 1) << 3) | (nesting << 2) | 3);
    out.push(3);
    for (nal_type, list) in [(32u8, vps), (33, sps), (34, pps)] {
        out.push(0x80 | nal_type);
        out.extend_from_slice(&(list.len() as u16).to_be_bytes());
        for n in list {
            out.extend_from_slice(&(n.len() as u16).to_be_bytes());
            out.extend_from_slice(n);
        }
    }
    Ok(out)
}

/// The fields of an ADTS header (ISO/IEC 13818-7 §6.2) that a demuxer needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdtsHeader {
    /// The audio object type (`profile + 1`; 2 = AAC LC).
    pub object_type: u8,
    /// `sampling_frequency_index`.
    pub sampling_index: u8,
    /// `channel_configuration`.
    pub channel_config: u8,
    /// Size of the header: 7 bytes, or 9 with a CRC.
    pub header_len: usize,
    /// Size of the whole frame, header included.
    pub frame_len: usize,
    /// Raw data blocks in the frame (1..=4), each 1024 samples.
    pub raw_blocks: u8,
}

impl AdtsHeader {
    /// The sampling rate in Hz.
    pub fn sample_rate(&self) -> u32 {
        AAC_SAMPLE_RATES.get(usize::from(self.sampling_index)).copied().unwrap_or(0)
    }

    /// The 2-byte AudioSpecificConfig equivalent to this header.
    pub fn audio_specific_config(&self) -> [u8; 2] {
        let v: u16 = (u16::from(self.object_type & 0x1f) << 11)
            | (u16::from(self.sampling_index & 0x0f) << 7)
            | (u16::from(self.channel_config & 0x0f) << 3);
        v.to_be_bytes()
    }
}

/// Parses the ADTS header at the start of `data` (only the header needs to be present).
pub fn parse_adts_header(data: &[u8]) -> Result<AdtsHeader> {
    let h = data.get(..7).ok_or(CodecError::Truncated("ADTS header"))?;
    if h[0] != 0xff || h[1] & 0xf6 != 0xf0 {
        return Err(CodecError::Invalid("ADTS syncword"));
    }
    let protection_absent = h[1] & 1 == 1;
    let object_type = (h[2] >> 6) + 1;
    let sampling_index = (h[2] >> 2) & 0x0f;
    if usize::from(sampling_index) >= AAC_SAMPLE_RATES.len() {
        return Err(CodecError::Invalid("ADTS sampling_frequency_index"));
    }
    let channel_config = ((h[2] & 1) << 2) | (h[3] >> 6);
    let frame_len = (usize::from(h[3] & 0x03) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
    let raw_blocks = (h[6] & 0x03) + 1;
    let header_len = if protection_absent { 7 } else { 9 };
    if frame_len < header_len {
        return Err(CodecError::Invalid("ADTS frame_length"));
    }
    Ok(AdtsHeader { object_type, sampling_index, channel_config, header_len, frame_len, raw_blocks })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    // avcC records from ffmpeg/libx264 (`-f lavfi -i testsrc2=size=WxH -c:v libx264 -frames:v 1 out.mp4`).
    const AVC_720: &str =
        "0164001fffe1001a6764001facd9405005bb011000000300100000030320f183196001000668ebe3cb22c0fdf8f800";
    const AVC_1080: &str =
        "01640028ffe1001b67640028acd940780227e5c044000003000400000300c83c60c65801000668ebe3cb22c0fdf8f800";
    const AVC_240_BASELINE: &str = "0142c00dffe100186742c00dd90141fb011000000300100000030320f142a48001000568cb83cb20";
    /// yuv444p, 350x202: High 4:4:4 profile, chroma_format_idc 3, cropping in luma units.
    const AVC_444: &str =
        "01f4000dffe1001967f4000d919b282c37dcf808800000030080000019078a14cb01000668ebe3c44844fff8f800";
    /// `-x264-params cqm=jvt`, 640x360: scaling matrices in the SPS.
    const AVC_CQM: &str =
        "0164001effe1001a6764001eacd940a02ff97011000003000100000300320f162d9601000768ebe3cb3002c0fdf8f800";
    /// `-x264-params interlaced=1`, 1920x1080: frame_mbs_only_flag = 0.
    const AVC_INTERLACED: &str =
        "01640028ffe1001a67640028acd94078044fde0220000003002000000643e2c5b2c001000668fba3cb22c0fdf8f800";

    // hvcC records from ffmpeg/libx265, trimmed to their VPS/SPS/PPS arrays.
    const HEVC_720: &str = "0101600000009000000000005df000fcfdf8f800000f03200001001840010c01ffff01600000030090000003000003005d959809210001002b42010101600000030090000003000003005da00280802d165959a4932bc05a02000003000200000300321022000100074401c172b46240";
    /// 1000x562: coded as 1000x568 with a conformance window.
    const HEVC_562: &str = "0101600000009000000000005df000fcfdf8f800000f03200001001840010c01ffff01600000030090000003000003005d959809210001002c42010101600000030090000003000003005da007d2008e7c996566924caf016808000003000800000300c84022000100074401c172b46240";
    /// Main 10, 1920x1080.
    const HEVC_1080_10: &str = "01022000000090000000000078f000fcfdfafa00000f03200001001840010c01ffff022000000300900000030000030078959809210001002c420101022000000300900000030000030078a003c08010e4d96566924caf016808000003000800000300c84022000100074401c172b46240";

    // av1C records from ffmpeg (libaom 320x240, libsvtav1 1920x1080).
    const AV1_240: &str = "81000c000a0b000000043cffbcdaf90040";
    const AV1_1080: &str = "81080c000a0b00000042abbfc3700be001";

    #[test]
    fn avc_configs() {
        let cases = [
            (AVC_720, 1280, 720, "avc1.64001f"),
            (AVC_1080, 1920, 1080, "avc1.640028"),
            (AVC_240_BASELINE, 320, 240, "avc1.42c00d"),
            (AVC_444, 350, 202, "avc1.f4000d"),
            (AVC_CQM, 640, 360, "avc1.64001e"),
            (AVC_INTERLACED, 1920, 1080, "avc1.640028"),
        ];
        for (record, w, h, codec) in cases {
            let params = parse_avc_config(&hex(record)).unwrap();
            assert_eq!(params, VideoParams { width: w, height: h, codec_string: codec.into() }, "{record}");
        }
    }

    #[test]
    fn avc_config_errors() {
        assert_eq!(parse_avc_config(&[]), Err(CodecError::Truncated("AVC configuration record")));
        assert!(matches!(parse_avc_config(&[0, 0, 0, 1, 0x67]), Err(CodecError::UnsupportedVersion { .. })));
        assert_eq!(parse_avc_config(&[1, 0x64, 0, 0x1f, 0xff, 0xe0, 0]), Err(CodecError::Missing("SPS")));
        // Truncated SPS inside the record (the PPS after it is not needed), and a PPS where the SPS should be.
        let record = hex(AVC_720);
        for cut in 0..34 {
            assert!(parse_avc_config(&record[..cut]).is_err(), "cut at {cut}");
        }
        assert!(matches!(
            parse_avc_config(&hex("0164001fffe1000468ebe3cb")),
            Err(CodecError::Invalid("H.264 SPS NAL unit type"))
        ));
    }

    #[test]
    fn emulation_prevention_is_removed() {
        assert_eq!(unescape_rbsp(&[0, 0, 3, 1, 0, 0, 3, 0, 0, 3]), vec![0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(unescape_rbsp(&[0, 3, 0, 0, 3]), vec![0, 3, 0, 0]);
    }

    #[test]
    fn exp_golomb() {
        // 1 | 010 | 011 | 00100 | 00101 -> ue 0, 1, 2, 3, 4; then se from 00110 (5 -> +3), 00111 (6 -> -3)
        let data = [0b1010_0110, 0b0100_0010, 0b1001_1000, 0b1110_0000];
        let mut r = BitReader::new(&data, "test");
        assert_eq!(
            [r.ue().unwrap(), r.ue().unwrap(), r.ue().unwrap(), r.ue().unwrap(), r.ue().unwrap()],
            [0, 1, 2, 3, 4]
        );
        assert_eq!(r.se().unwrap(), 3);
        assert_eq!(r.se().unwrap(), -3);
        assert_eq!(r.ue(), Err(CodecError::Truncated("test")));
        let zeros = [0u8; 8];
        assert_eq!(BitReader::new(&zeros, "z").ue(), Err(CodecError::Invalid("z")));
        let max = [0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe];
        assert_eq!(BitReader::new(&max, "m").ue(), Ok(u32::MAX - 1));
        assert_eq!(BitReader::new(&[0xff], "b").bits(9), Err(CodecError::Truncated("b")));
    }

    #[test]
    fn hevc_configs() {
        let cases = [
            (HEVC_720, 1280, 720, "hvc1.1.6.L93.90"),
            (HEVC_562, 1000, 562, "hvc1.1.6.L93.90"),
            (HEVC_1080_10, 1920, 1080, "hvc1.2.4.L120.90"),
        ];
        for (record, w, h, codec) in cases {
            let params = parse_hevc_config(&hex(record)).unwrap();
            assert_eq!(params, VideoParams { width: w, height: h, codec_string: codec.into() }, "{record}");
        }
    }

    #[test]
    fn hevc_codec_string_details() {
        let mut record = hex(HEVC_720);
        record[1] = 0x40 | 0x20 | 0x01; // profile space 1, high tier, Main
        record[6..12].copy_from_slice(&[0xb0, 0, 0x08, 0, 0, 0]);
        assert_eq!(parse_hevc_config(&record).unwrap().codec_string, "hvc1.A1.6.H93.B0.0.8");
        record[6..12].copy_from_slice(&[0; 6]);
        assert_eq!(parse_hevc_config(&record).unwrap().codec_string, "hvc1.A1.6.H93.0");
    }

    #[test]
    fn hevc_config_errors() {
        let record = hex(HEVC_720);
        for cut in 0..record.len() - 12 {
            assert!(parse_hevc_config(&record[..cut]).is_err(), "cut at {cut}");
        }
        let mut no_sps = record[..23].to_vec();
        no_sps[22] = 0;
        assert_eq!(parse_hevc_config(&no_sps), Err(CodecError::Missing("SPS")));
        let mut v0 = record.clone();
        v0[0] = 0;
        assert!(matches!(parse_hevc_config(&v0), Err(CodecError::UnsupportedVersion { version: 0, .. })));
    }

    #[test]
    fn hevc_sps_with_sub_layers() {
        // Hand-built SPS: 2 sub-layers (max_sub_layers_minus1 = 1), sub-layer profile and level present,
        // 4:2:0, 64x48 with a conformance window of 1 chroma unit right and bottom -> 62x46.
        let mut bits = BitWriter::default();
        bits.put(0, 4); // vps id
        bits.put(1, 3); // max_sub_layers_minus1
        bits.put(1, 1); // temporal id nesting
        bits.put(0, 2 + 1 + 5 + 32 + 48 + 8); // general PTL
        bits.put(1, 1); // sub_layer_profile_present_flag[0]
        bits.put(1, 1); // sub_layer_level_present_flag[0]
        bits.put(0, 2 * 7); // reserved_zero_2bits for i in 1..8
        bits.put(0, 88); // sub-layer profile
        bits.put(0x5a, 8); // sub-layer level
        bits.ue(0); // sps id
        bits.ue(1); // chroma_format_idc
        bits.ue(64);
        bits.ue(48);
        bits.put(1, 1); // conformance window
        bits.ue(0);
        bits.ue(1);
        bits.ue(0);
        bits.ue(1);
        let mut nal = vec![0x42, 0x01];
        nal.extend(bits.finish());
        assert_eq!(hevc_sps_dimensions(&nal), Ok((62, 46)));
        assert!(hevc_sps_dimensions(&[0x40, 0x01, 0x0c]).is_err()); // a VPS
        assert!(hevc_sps_dimensions(&[0x42]).is_err());
    }

    #[test]
    fn h264_sps_poc_type_1_and_crop_errors() {
        let mut bits = BitWriter::default();
        bits.put(66, 8);
        bits.put(0, 8);
        bits.put(30, 8);
        bits.ue(0); // sps id
        bits.ue(0); // log2_max_frame_num_minus4
        bits.ue(1); // poc type 1
        bits.put(0, 1);
        bits.se(-2);
        bits.se(3);
        bits.ue(2);
        bits.se(1);
        bits.se(-1);
        bits.ue(1); // max_num_ref_frames
        bits.put(0, 1);
        bits.ue(19); // 320
        bits.ue(14); // 240
        bits.put(1, 1); // frame_mbs_only
        bits.put(1, 1);
        bits.put(1, 1); // cropping
        bits.ue(1);
        bits.ue(2);
        bits.ue(3);
        bits.ue(4);
        let mut nal = vec![0x67];
        nal.extend(bits.finish());
        assert_eq!(h264_sps_dimensions(&nal), Ok((320 - 6, 240 - 14)));

        // Cropping more than the picture is an error, not an underflow.
        let mut bits = BitWriter::default();
        bits.put(66, 8);
        bits.put(0, 16);
        bits.ue(0);
        bits.ue(0);
        bits.ue(2);
        bits.ue(1);
        bits.put(0, 1);
        bits.ue(0);
        bits.ue(0);
        bits.put(1, 1);
        bits.put(1, 1);
        bits.put(1, 1);
        bits.ue(100);
        bits.ue(0);
        bits.ue(0);
        bits.ue(0);
        let mut nal = vec![0x67];
        nal.extend(bits.finish());
        assert_eq!(h264_sps_dimensions(&nal), Err(CodecError::Invalid("H.264 picture width")));
    }

    #[test]
    fn av1_configs() {
        let p = parse_av1_config(&hex(AV1_240)).unwrap();
        assert_eq!(p, VideoParams { width: 320, height: 240, codec_string: "av01.0.00M.08".into() });
        let p = parse_av1_config(&hex(AV1_1080)).unwrap();
        assert_eq!(p, VideoParams { width: 1920, height: 1080, codec_string: "av01.0.08M.08".into() });
        // Profile 2, 12 bit, high tier.
        let mut rec = hex(AV1_1080);
        rec[1] = 0x40 | 13;
        rec[2] = 0x80 | 0x40 | 0x20;
        assert_eq!(parse_av1_config(&rec).unwrap().codec_string, "av01.2.13H.12");
        rec[1] = 0x20 | 4;
        rec[2] = 0x40;
        assert_eq!(parse_av1_config(&rec).unwrap().codec_string, "av01.1.04M.10");
    }

    #[test]
    fn av1_config_errors() {
        let rec = hex(AV1_1080);
        assert_eq!(parse_av1_config(&rec[..4]), Err(CodecError::Missing("AV1 sequence header OBU")));
        for cut in 0..rec.len() - 1 {
            assert!(parse_av1_config(&rec[..cut]).is_err(), "cut at {cut}");
        }
        assert!(matches!(parse_av1_config(&[0x01, 0, 0, 0]), Err(CodecError::UnsupportedVersion { .. })));
        // A temporal delimiter OBU, then a sequence header without a size field, is found.
        let mut rec2 = rec[..4].to_vec();
        rec2.extend([0x12, 0x00, 0x08]);
        rec2.extend(&rec[6..]);
        assert_eq!(parse_av1_config(&rec2).unwrap().width, 1920);
        // An over-long LEB128 size.
        let mut rec3 = rec[..4].to_vec();
        rec3.extend([0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert_eq!(parse_av1_config(&rec3), Err(CodecError::Invalid("AV1 OBU size")));
    }

    #[test]
    fn av1_sequence_header_with_timing_and_decoder_model() {
        let mut b = BitWriter::default();
        b.put(0, 3); // profile
        b.put(0, 1); // still
        b.put(0, 1); // reduced
        b.put(1, 1); // timing_info_present
        b.put(1, 32);
        b.put(30, 32);
        b.put(1, 1); // equal_picture_interval
        b.put(0b00100, 5); // uvlc 3
        b.put(1, 1); // decoder_model_info_present
        b.put(9, 5); // buffer_delay_length_minus_1 -> 10 bits
        b.put(0, 32);
        b.put(0, 5);
        b.put(0, 5);
        b.put(1, 1); // initial_display_delay_present
        b.put(1, 5); // two operating points
        for level in [9u32, 4] {
            b.put(0, 12);
            b.put(level, 5);
            if level > 7 {
                b.put(1, 1);
            }
            b.put(1, 1); // decoder_model_present_for_this_op
            b.put(0, 21);
            b.put(1, 1); // initial_display_delay_present_for_this_op
            b.put(0, 4);
        }
        b.put(11, 4);
        b.put(11, 4);
        b.put(3839, 12);
        b.put(2159, 12);
        let payload = b.finish();
        let mut obus = vec![0x0a, payload.len() as u8];
        obus.extend(&payload);
        assert_eq!(av1_sequence_header_dimensions(&obus), Ok((3840, 2160)));
        // Reduced still picture header.
        let mut b = BitWriter::default();
        b.put(0, 3);
        b.put(1, 1);
        b.put(1, 1);
        b.put(0, 5);
        b.put(7, 4);
        b.put(7, 4);
        b.put(99, 8);
        b.put(49, 8);
        let payload = b.finish();
        let mut obus = vec![0x0a, payload.len() as u8];
        obus.extend(&payload);
        assert_eq!(av1_sequence_header_dimensions(&obus), Ok((100, 50)));
    }

    /// Builds an AudioSpecificConfig bit by bit.
    fn asc(fields: &[(u32, u32)]) -> Vec<u8> {
        let mut b = BitWriter::default();
        for &(value, bits) in fields {
            b.put(value, bits);
        }
        b.finish()
    }

    #[test]
    fn aac_lc_configs() {
        // ffmpeg's native encoder, 44100 Hz stereo, with the "no SBR" sync extension.
        assert_eq!(
            parse_audio_specific_config(&hex("121056e500")),
            Ok(AudioParams { sample_rate: 44100, channels: 2 })
        );
        let c = parse_aac_config(&hex("121056e500")).unwrap();
        assert_eq!((c.object_type, c.sampling_index, c.sbr, c.ps, c.frame_length), (2, Some(4), false, false, 1024));
        assert_eq!(parse_audio_specific_config(&[0x11, 0x90]), Ok(AudioParams { sample_rate: 48000, channels: 2 }));
        assert_eq!(parse_audio_specific_config(&[0x11, 0x88]), Ok(AudioParams { sample_rate: 48000, channels: 1 }));
        // 5.1 and 7.1 (channel configuration 7 means 8 channels).
        assert_eq!(parse_audio_specific_config(&[0x11, 0xb0]).unwrap().channels, 6);
        assert_eq!(parse_audio_specific_config(&[0x11, 0xb8]).unwrap().channels, 8);
        // 960-sample frames.
        assert_eq!(parse_aac_config(&[0x11, 0x94]).unwrap().frame_length, 960);
    }

    #[test]
    fn aac_escape_sample_rate_and_object_type() {
        // AOT 2, index 15, explicit 44100, 2 channels.
        let c = parse_aac_config(&asc(&[(2, 5), (15, 4), (44100, 24), (2, 4), (0, 3)])).unwrap();
        assert_eq!((c.sample_rate, c.sampling_index, c.channels), (44100, Some(4), 2));
        let c = parse_aac_config(&asc(&[(2, 5), (15, 4), (37800, 24), (1, 4), (0, 3)])).unwrap();
        assert_eq!((c.sample_rate, c.sampling_index), (37800, None));
        // Escaped object type 31 + 6 bits -> 32 + 10 = 42 (USAC), not GA: channel configuration used as is.
        let c = parse_aac_config(&asc(&[(31, 5), (10, 6), (3, 4), (2, 4)])).unwrap();
        assert_eq!((c.object_type, c.channels), (42, 2));
        assert!(parse_aac_config(&asc(&[(31, 5), (10, 6), (3, 4), (0, 4)])).is_err());
        // Reserved index 13 and reserved channel configuration 8.
        assert_eq!(
            parse_aac_config(&asc(&[(2, 5), (13, 4), (2, 4)])),
            Err(CodecError::Invalid("AAC samplingFrequencyIndex"))
        );
        assert_eq!(
            parse_aac_config(&asc(&[(2, 5), (3, 4), (8, 4)])),
            Err(CodecError::Invalid("AAC channelConfiguration"))
        );
        assert!(parse_aac_config(&[0x12]).is_err());
        assert!(parse_aac_config(&[]).is_err());
    }

    #[test]
    fn he_aac_explicit_signalling() {
        // HE-AAC v1: AOT 5, core 22050 (index 7), 2 channels, extension 44100 (index 4), core AOT 2.
        let c = parse_aac_config(&asc(&[(5, 5), (7, 4), (2, 4), (4, 4), (2, 5), (0, 3)])).unwrap();
        assert_eq!((c.object_type, c.sample_rate, c.sbr, c.ps), (2, 22050, true, false));
        assert_eq!(c.output_sample_rate(), 44100);
        assert_eq!(
            parse_audio_specific_config(&asc(&[(5, 5), (7, 4), (2, 4), (4, 4), (2, 5), (0, 3)])).unwrap(),
            AudioParams { sample_rate: 44100, channels: 2 }
        );
        // HE-AAC v2: AOT 29, core 24000 mono, extension 48000 -> 48000 stereo.
        let v2 = asc(&[(29, 5), (6, 4), (1, 4), (3, 4), (2, 5), (0, 3)]);
        assert_eq!(parse_audio_specific_config(&v2), Ok(AudioParams { sample_rate: 48000, channels: 2 }));
        assert!(parse_aac_config(&v2).unwrap().ps);
    }

    #[test]
    fn he_aac_backward_compatible_signalling() {
        // AAC LC 24000 mono, then sync extension 0x2b7, AOT 5, sbr=1, ext index 3 (48000), 0x548, ps=1.
        let b = asc(&[(2, 5), (6, 4), (1, 4), (0, 3), (0x2b7, 11), (5, 5), (1, 1), (3, 4), (0x548, 11), (1, 1)]);
        let c = parse_aac_config(&b).unwrap();
        assert_eq!((c.sbr, c.ps, c.extension_sample_rate), (true, true, Some(48000)));
        assert_eq!(parse_audio_specific_config(&b), Ok(AudioParams { sample_rate: 48000, channels: 2 }));
        // A broken extension tail (escaped rate cut short) is ignored.
        let b = asc(&[(2, 5), (6, 4), (1, 4), (0, 3), (0x2b7, 11), (5, 5), (1, 1), (15, 4)]);
        assert_eq!(parse_audio_specific_config(&b), Ok(AudioParams { sample_rate: 24000, channels: 1 }));
    }

    #[test]
    fn aac_program_config_element() {
        // Channel configuration 0: PCE with front SCE + CPE, back CPE, one LFE -> 6 channels, a 2-byte comment.
        #[rustfmt::skip]
        let b = asc(&[
            (2, 5), (3, 4), (0, 4), (0, 3), // AOT, index 48000, channels 0, GA flags
            (0, 4), (1, 2), (3, 4), // tag, object type, sampling index
            (2, 4), (0, 4), (1, 4), (1, 2), (0, 3), (0, 4), // front 2, side 0, back 1, lfe 1, assoc 0, cc 0
            (0, 1), (0, 1), (0, 1), // no mixdowns
            (0, 1), (0, 4), (1, 1), (1, 4), // front: SCE, CPE
            (1, 1), (2, 4), // back: CPE
            (0, 4), // lfe
            (0, 3), // byte alignment: 69 bits so far
            (2, 8), (0x41, 8), (0x42, 8), // a 2-byte comment
        ]);
        let c = parse_aac_config(&b).unwrap();
        assert_eq!((c.channel_config, c.channels, c.sample_rate), (0, 6, 48000));
        assert!(parse_aac_config(&b[..b.len() - 1]).is_err());
    }

    #[test]
    fn opus_heads() {
        // ffmpeg's Ogg OpusHead and mp4 dOps for 48 kHz stereo.
        let ogg = hex("4f707573486561640102380180bb0000000000");
        let dops = hex("000201380000bb80000000");
        assert_eq!(parse_opus_head(&ogg), Ok(AudioParams { sample_rate: 48000, channels: 2 }));
        assert_eq!(parse_opus_head(&dops), Ok(AudioParams { sample_rate: 48000, channels: 2 }));
        let a = parse_opus_config(&ogg).unwrap();
        let b = parse_opus_config(&dops).unwrap();
        assert_eq!(a, b);
        assert_eq!((a.pre_skip, a.input_sample_rate), (312, 48000));
        assert_eq!(a.to_opus_head(), ogg);
        assert_eq!(a.to_dops(), dops);
        // Family 1, 6 channels.
        let mut surround = b"OpusHead\x01\x06\x38\x01\x80\xbb\x00\x00\x00\x00\x01\x04\x02".to_vec();
        surround.extend([0, 4, 1, 2, 3, 5]);
        let c = parse_opus_config(&surround).unwrap();
        assert_eq!((c.channels, c.stream_count, c.coupled_count, c.channel_mapping.len()), (6, 4, 2, 6));
        assert_eq!(parse_opus_config(&c.to_dops()).unwrap(), c);
        assert_eq!(c.to_opus_head(), surround);
        assert!(parse_opus_config(&surround[..surround.len() - 1]).is_err());
    }

    #[test]
    fn opus_head_errors() {
        assert!(parse_opus_head(&[]).is_err());
        assert!(parse_opus_head(b"OpusHead").is_err());
        assert!(matches!(parse_opus_head(b"OpusHead\x10\x02"), Err(CodecError::UnsupportedVersion { .. })));
        assert!(matches!(parse_opus_head(&[1, 2, 0, 0]), Err(CodecError::UnsupportedVersion { .. })));
        assert_eq!(parse_opus_head(&hex("000001380000bb80000000")), Err(CodecError::Invalid("Opus channel count")));
        assert!(parse_opus_head(&hex("000301380000bb80000000")).is_err());
        assert!(parse_opus_head(&hex("000601380000bb8000000100")).is_err());
    }

    #[test]
    fn mpeg_audio_headers() {
        assert_eq!(
            parse_mpeg_audio_header(&[0xff, 0xfb, 0x90, 0x64]),
            Ok(AudioParams { sample_rate: 44100, channels: 2 })
        );
        assert_eq!(
            parse_mpeg_audio_header(&[0xff, 0xfb, 0x94, 0xc4]),
            Ok(AudioParams { sample_rate: 48000, channels: 1 })
        );
        assert_eq!(
            parse_mpeg_audio_header(&[0xff, 0xf3, 0x98, 0x44]),
            Ok(AudioParams { sample_rate: 16000, channels: 2 })
        );
        assert_eq!(
            parse_mpeg_audio_header(&[0xff, 0xe3, 0x98, 0x44]),
            Ok(AudioParams { sample_rate: 8000, channels: 2 })
        );
        assert!(parse_mpeg_audio_header(&[0xff, 0xfb, 0x9c, 0x64]).is_err());
        assert!(parse_mpeg_audio_header(&[0xff, 0xeb, 0x90, 0x64]).is_err());
        assert!(parse_mpeg_audio_header(&[0xff, 0xf9, 0x90, 0x64]).is_err());
        assert!(parse_mpeg_audio_header(&[0xfe, 0xfb, 0x90, 0x64]).is_err());
        assert!(parse_mpeg_audio_header(&[0xff, 0xfb]).is_err());
    }

    #[test]
    fn nal_unit_iteration() {
        let data = [0, 0, 0, 2, 0x65, 0xaa, 0, 0, 0, 0, 0, 0, 0, 1, 0x41, 0, 0, 0, 9, 1];
        let nals: Vec<&[u8]> = avcc_nal_units(&data).collect();
        assert_eq!(nals, vec![&[0x65, 0xaa][..], &[0x41][..]]);
        assert_eq!(avcc_nal_units(&[0, 0, 1]).count(), 0);
        assert_eq!(avcc_nal_units(&[]).count(), 0);
    }

    #[test]
    fn keyframe_detection() {
        let idr = [0, 0, 0, 2, 0x09, 0xf0, 0, 0, 0, 2, 0x65, 0x88];
        let non_idr = [0, 0, 0, 2, 0x09, 0xf0, 0, 0, 0, 2, 0x41, 0x9a];
        assert!(h264_is_keyframe(&idr));
        assert!(!h264_is_keyframe(&non_idr));
        assert!(!h264_is_keyframe(&[0, 0, 0, 9, 0x65]));
        for (t, key) in
            [(1u8, false), (15, false), (16, true), (19, true), (21, true), (23, true), (24, false), (32, false)]
        {
            let au = [0, 0, 0, 2, t << 1, 1];
            assert_eq!(hevc_is_keyframe(&au), key, "type {t}");
        }
        assert!(!hevc_is_keyframe(&[]));
    }

    #[test]
    fn parsers_never_panic_on_arbitrary_bytes() {
        // A cheap deterministic fuzz: every prefix and random single-byte mutations of real configs.
        let inputs = [
            AVC_720,
            AVC_444,
            AVC_CQM,
            AVC_INTERLACED,
            HEVC_720,
            HEVC_562,
            AV1_240,
            AV1_1080,
            "121056e500",
            "4f707573486561640102380180bb0000000000",
            "000201380000bb80000000",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for input in inputs.map(hex) {
            for cut in 0..=input.len() {
                exercise(&input[..cut]);
            }
            for i in 0..input.len() {
                for _ in 0..16 {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let mut m = input.clone();
                    m[i] = seed as u8;
                    exercise(&m);
                }
            }
        }
    }

    fn exercise(data: &[u8]) {
        let _ = parse_avc_config(data);
        let _ = parse_hevc_config(data);
        let _ = parse_av1_config(data);
        let _ = parse_audio_specific_config(data);
        let _ = parse_opus_head(data);
        let _ = parse_mpeg_audio_header(data);
        let _ = h264_sps_dimensions(data);
        let _ = hevc_sps_dimensions(data);
        let _ = av1_sequence_header_dimensions(data);
        let _ = h264_is_keyframe(data);
        let _ = hevc_is_keyframe(data);
    }

    /// A bit writer for building test bitstreams.
    #[derive(Default)]
    struct BitWriter {
        bytes: Vec<u8>,
        bits: usize,
    }

    impl BitWriter {
        fn put(&mut self, value: u32, n: u32) {
            for i in (0..n).rev() {
                let bit = if i >= 32 { 0 } else { (value >> i) & 1 };
                if self.bits.is_multiple_of(8) {
                    self.bytes.push(0);
                }
                if bit == 1 {
                    *self.bytes.last_mut().unwrap() |= 0x80 >> (self.bits % 8);
                }
                self.bits += 1;
            }
        }

        fn ue(&mut self, v: u32) {
            let v = u64::from(v) + 1;
            let len = 64 - v.leading_zeros();
            self.put(0, len - 1);
            for i in (0..len).rev() {
                self.put(((v >> i) & 1) as u32, 1);
            }
        }

        fn se(&mut self, v: i32) {
            let k = if v > 0 { 2 * v - 1 } else { -2 * v };
            self.ue(k as u32);
        }

        fn finish(self) -> Vec<u8> {
            self.bytes
        }
    }

    #[test]
    fn annexb_split_and_config_records() {
        let data = [0, 0, 0, 1, 0x67, 0x64, 0, 0x1f, 0, 0, 1, 0x68, 0xee, 0, 0, 0, 0, 1, 0x65, 1, 2];
        let nals: Vec<&[u8]> = annexb_nal_units(&data).collect();
        assert_eq!(nals, vec![&[0x67, 0x64, 0, 0x1f][..], &[0x68, 0xee][..], &[0x65, 1, 2][..]]);
        assert_eq!(annexb_nal_units(&[1, 2, 3]).count(), 0);
        assert_eq!(annexb_nal_units(&[0, 0, 1]).count(), 0);
        let rec = build_avc_config(&[nals[0]], &[nals[1]]).unwrap();
        assert_eq!(&rec[..6], &[1, 0x64, 0, 0x1f, 0xff, 0xe1]);
        assert!(build_avc_config(&[], &[nals[1]]).is_err());
        assert!(build_avc_config(&[&[0x67]], &[nals[1]]).is_err());
        assert!(build_hevc_config(&[&[0x40, 1]], &[&[0x42, 1]], &[&[0x44, 1]]).is_err());
    }

    #[test]
    fn adts_headers() {
        // AAC LC, 44.1 kHz (index 4), stereo, frame length 0x100.
        let h = [0xff, 0xf1, 0x50, 0x80, 0x20, 0x1f, 0xfc];
        let a = parse_adts_header(&h).unwrap();
        assert_eq!((a.object_type, a.sampling_index, a.channel_config), (2, 4, 2));
        assert_eq!((a.header_len, a.frame_len, a.raw_blocks), (7, 0x100, 1));
        assert_eq!(a.audio_specific_config(), [0x12, 0x10]);
        assert_eq!(a.sample_rate(), 44100);
        assert!(parse_adts_header(&h[..6]).is_err());
        assert!(parse_adts_header(&[0xff, 0xf1, 0x7c, 0x80, 0x20, 0x1f, 0xfc]).is_err());
        assert!(parse_adts_header(&[0xfe, 0xf1, 0x50, 0x80, 0x20, 0x1f, 0xfc]).is_err());
    }
}
