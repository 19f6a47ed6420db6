//! A sans-IO MPEG-TS muxer (ISO/IEC 13818-1) for HLS segments and recordings.
//!
//! [`TsMuxer`] turns [`Frame`]s into 188-byte transport stream packets appended to a caller's [`BytesMut`]:
//! PAT and PMT via [`TsMuxer::write_tables`] (call it at the start of every segment), one PES per frame via
//! [`TsMuxer::write_frame`]. Continuity counters persist across calls, so consecutive segments of one stream
//! are contiguous.
//!
//! Layout (like ffmpeg): PMT on PID [`PMT_PID`], video on [`VIDEO_PID`], audio on [`AUDIO_PID`], program number 1.
//!
//! Conversions: H.264/H.265 AVCC/HVCC payloads become Annex B with an access unit delimiter in front of every
//! access unit and the parameter sets of the track config in front of every keyframe that does not carry its
//! own; raw AAC gets a 7-byte ADTS header; Opus gets the TS control header (ETSI TS 102 366 Annex 1 style, as
//! ffmpeg writes it); MP3 is written as is.
//!
//! Timing: timestamps are rescaled to 90 kHz and shifted by [`TIMESTAMP_OFFSET`] (1.4 s, like ffmpeg) so that
//! streams starting at 0, or slightly below (negative DTS with B-frames), never produce negative values; the
//! result is written modulo 2^33. The PCR runs [`PCR_DELAY`] (0.5 s) behind the DTS of the frame it is written
//! with, giving decoders half a second of buffer; it is written on keyframes and at least every 100 ms.

use bytes::{BufMut, BytesMut};
use ferrocast_media::{Codec, Frame, MediaType, TrackInfo, codec::parse_aac_config, codec::parse_opus_config};

/// The size of one transport stream packet.
pub const TS_PACKET_SIZE: usize = 188;
/// The PID of the program map table.
pub const PMT_PID: u16 = 0x1000;
/// The PID of the video elementary stream.
pub const VIDEO_PID: u16 = 0x100;
/// The PID of the audio elementary stream.
pub const AUDIO_PID: u16 = 0x101;
/// Added to every timestamp (in 90 kHz ticks, i.e. 1.4 s) so that none is negative.
pub const TIMESTAMP_OFFSET: i64 = 126_000;
/// How far (in 90 kHz ticks, i.e. 0.5 s) the PCR runs behind the DTS of the frame that carries it.
pub const PCR_DELAY: i64 = 45_000;
/// The longest gap (in 90 kHz ticks, i.e. 100 ms) between two PCRs.
pub const PCR_INTERVAL: i64 = 9_000;

const SYNC_BYTE: u8 = 0x47;
const PAT_PID: u16 = 0;
const PROGRAM_NUMBER: u16 = 1;
const TRANSPORT_STREAM_ID: u16 = 1;
const TS_MOD: i64 = 1 << 33;

/// Why a track or frame cannot be muxed into MPEG-TS.
#[derive(Debug, thiserror::Error)]
pub enum TsError {
    /// The codec has no MPEG-TS mapping in this muxer (AV1, VP9, VP8, G.711).
    #[error("codec {0:?} is not supported in MPEG-TS")]
    UnsupportedCodec(Codec),
    /// Neither a video nor an audio track was given.
    #[error("an MPEG-TS stream needs at least one track")]
    NoTracks,
    /// A track's configuration record cannot be used.
    #[error("bad {codec:?} configuration: {reason}")]
    BadConfig {
        /// The codec of the track.
        codec: Codec,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A frame cannot be muxed.
    #[error("bad frame: {0}")]
    BadFrame(&'static str),
}

/// Per-elementary-stream state.
#[derive(Debug)]
struct Stream {
    codec: Codec,
    pid: u16,
    stream_type: u8,
    stream_id: u8,
    /// Next continuity counter to use.
    cc: u8,
    /// ES_info descriptors for the PMT.
    descriptors: Vec<u8>,
    /// Annex B parameter sets (with start codes) to put in front of keyframes (H.264/H.265).
    param_sets: Vec<u8>,
    /// ADTS fixed fields for AAC: (profile = object type - 1, sampling frequency index, channel configuration).
    adts: Option<(u8, u8, u8)>,
}

/// A sans-IO MPEG-TS muxer for one program with at most one video and one audio track.
#[derive(Debug)]
pub struct TsMuxer {
    video: Option<Stream>,
    audio: Option<Stream>,
    pat_cc: u8,
    pmt_cc: u8,
    pcr_pid: u16,
    /// The last PCR written, in unwrapped 90 kHz ticks.
    last_pcr: Option<i64>,
}

const AUD_H264: [u8; 6] = [0, 0, 0, 1, 0x09, 0xf0];
const AUD_H265: [u8; 7] = [0, 0, 0, 1, 0x46, 0x01, 0x50];
const START_CODE: [u8; 4] = [0, 0, 0, 1];

impl TsMuxer {
    /// Creates a muxer for a video and/or an audio track (at least one).
    ///
    /// Supported: video H.264 (stream_type 0x1B) and H.265 (0x24); audio AAC (0x0F, written as ADTS), MP3 (0x03)
    /// and Opus (0x06, private stream 1, with the `Opus` registration descriptor and the DVB extension descriptor
    /// carrying the channel configuration, as ffmpeg writes and reads them). Other codecs give
    /// [`TsError::UnsupportedCodec`]; a config record that cannot be used gives [`TsError::BadConfig`].
    pub fn new(video: Option<&TrackInfo>, audio: Option<&TrackInfo>) -> Result<TsMuxer, TsError> {
        if video.is_none() && audio.is_none() {
            return Err(TsError::NoTracks);
        }
        let video = video.map(video_stream).transpose()?;
        let audio = audio.map(audio_stream).transpose()?;
        let pcr_pid = if video.is_some() { VIDEO_PID } else { AUDIO_PID };
        Ok(TsMuxer { video, audio, pat_cc: 0, pmt_cc: 0, pcr_pid, last_pcr: None })
    }

    /// The next continuity counter of every PID: PAT, PMT, video, audio.
    ///
    /// Segments muxed by separate muxers continue each other's counters when the next one starts from the
    /// previous one's counters (see [`TsMuxer::set_continuity_counters`]).
    pub fn continuity_counters(&self) -> [u8; 4] {
        [self.pat_cc, self.pmt_cc, self.video.as_ref().map_or(0, |s| s.cc), self.audio.as_ref().map_or(0, |s| s.cc)]
    }

    /// Continues the continuity counters saved from another muxer of the same stream.
    pub fn set_continuity_counters(&mut self, counters: [u8; 4]) {
        let [pat, pmt, video, audio] = counters.map(|c| c & 0x0f);
        (self.pat_cc, self.pmt_cc) = (pat, pmt);
        if let Some(s) = self.video.as_mut() {
            s.cc = video;
        }
        if let Some(s) = self.audio.as_mut() {
            s.cc = audio;
        }
    }

    /// Appends a PAT and a PMT packet. Call it at the start of every segment so that each segment can be
    /// decoded on its own.
    pub fn write_tables(&mut self, out: &mut BytesMut) {
        // PAT: one program, its PMT PID.
        let mut pat = Vec::with_capacity(16);
        pat.extend_from_slice(&PROGRAM_NUMBER.to_be_bytes());
        pat.extend_from_slice(&(0xe000 | PMT_PID).to_be_bytes());
        write_section(out, PAT_PID, &mut self.pat_cc, 0x00, TRANSPORT_STREAM_ID, &pat);

        // PMT: PCR PID, no program descriptors, then the elementary streams.
        let mut pmt = Vec::with_capacity(64);
        pmt.extend_from_slice(&(0xe000 | self.pcr_pid).to_be_bytes());
        pmt.extend_from_slice(&0xf000u16.to_be_bytes());
        for s in [&self.video, &self.audio].into_iter().flatten() {
            pmt.push(s.stream_type);
            pmt.extend_from_slice(&(0xe000 | s.pid).to_be_bytes());
            // Descriptor loops are built at construction and are a few bytes long.
            pmt.extend_from_slice(&(0xf000 | (s.descriptors.len() as u16 & 0x0fff)).to_be_bytes());
            pmt.extend_from_slice(&s.descriptors);
        }
        write_section(out, PMT_PID, &mut self.pmt_cc, 0x02, PROGRAM_NUMBER, &pmt);
    }

    /// Appends one frame as a PES packet split into 188-byte TS packets.
    ///
    /// The frame goes to the track of its media type, whose codec it must have. Video keyframes carry the
    /// random access indicator; the PCR is written as described in the module docs. Errors leave `out` as it was.
    pub fn write_frame(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), TsError> {
        if frame.timebase == 0 {
            return Err(TsError::BadFrame("timebase is 0"));
        }
        let is_video = frame.media == MediaType::Video;
        let stream = if is_video { self.video.as_ref() } else { self.audio.as_ref() };
        let stream = stream.ok_or(TsError::BadFrame("no track for the frame's media type"))?;
        if stream.codec != frame.codec {
            return Err(TsError::BadFrame("frame codec differs from the track codec"));
        }
        let dts = to_90k(frame.dts, frame.timebase);
        let pts = to_90k(frame.pts, frame.timebase);

        // Gather the payload as slices; the only copy is into `out`.
        let mut prefix = [0u8; 16]; // ADTS header or Opus control header prefix
        let mut opus_sizes = Vec::new();
        let mut pieces: Vec<&[u8]> = Vec::new();
        match frame.codec {
            Codec::H264 | Codec::H265 => {
                let h265 = frame.codec == Codec::H265;
                pieces.push(if h265 { &AUD_H265 } else { &AUD_H264 });
                let mut nals = Vec::new();
                let mut has_params = false;
                for nal in length_prefixed_nals(&frame.data) {
                    let nal = nal?;
                    let Some(&h) = nal.first() else { continue };
                    let nal_type = if h265 { (h >> 1) & 0x3f } else { h & 0x1f };
                    match (h265, nal_type) {
                        (false, 9) | (true, 35) => continue, // our own AUD replaces it
                        (false, 7) | (true, 32 | 33) => has_params = true,
                        _ => {}
                    }
                    nals.push(nal);
                }
                if frame.keyframe && !has_params && !stream.param_sets.is_empty() {
                    pieces.push(&stream.param_sets);
                }
                for nal in nals {
                    pieces.push(&START_CODE);
                    pieces.push(nal);
                }
            }
            Codec::Aac => {
                let (profile, sfi, chan) = stream.adts.ok_or(TsError::BadFrame("AAC track without ADTS fields"))?;
                let len = frame.data.len() + 7;
                if len > 0x1fff {
                    return Err(TsError::BadFrame("AAC frame too large for ADTS"));
                }
                prefix[..7].copy_from_slice(&adts_header(profile, sfi, chan, len));
                pieces.push(&prefix[..7]);
                pieces.push(&frame.data);
            }
            Codec::Opus => {
                // opus_control_header: prefix 0x3ff, no trims, no extension; then au_size as 0xff... bytes.
                prefix[0] = 0x7f;
                prefix[1] = 0xe0;
                pieces.push(&prefix[..2]);
                let mut n = frame.data.len();
                opus_sizes.reserve(n / 255 + 1);
                loop {
                    opus_sizes.push(n.min(255) as u8);
                    if n < 255 {
                        break;
                    }
                    n -= 255;
                }
                pieces.push(&opus_sizes);
                pieces.push(&frame.data);
            }
            _ => pieces.push(&frame.data),
        }
        let data_len: usize = pieces.iter().map(|p| p.len()).sum();

        // PES header.
        let mut header = [0u8; 19];
        header[2] = 1;
        header[3] = stream.stream_id;
        header[6] = 0x84; // '10', data_alignment_indicator
        let with_dts = dts != pts;
        let header_data_len = if with_dts { 10 } else { 5 };
        header[7] = if with_dts { 0xc0 } else { 0x80 };
        header[8] = header_data_len as u8;
        header[9..14].copy_from_slice(&encode_timestamp(if with_dts { 0x3 } else { 0x2 }, pts));
        if with_dts {
            header[14..19].copy_from_slice(&encode_timestamp(0x1, dts));
        }
        let header = &header[..9 + header_data_len];
        let pes_len = data_len + header.len() - 6;
        let pes_len_field = if is_video {
            0 // unbounded (allowed for video only), like ffmpeg: video access units often exceed 64 KiB
        } else if pes_len <= 0xffff {
            pes_len as u16
        } else {
            return Err(TsError::BadFrame("audio frame too large for one PES packet"));
        };
        let mut header_buf = [0u8; 19];
        header_buf[..header.len()].copy_from_slice(header);
        header_buf[4..6].copy_from_slice(&pes_len_field.to_be_bytes());
        pieces.insert(0, &header_buf[..header.len()]);
        let total = data_len + header.len();

        // PCR.
        let pid = stream.pid;
        let pcr_candidate = dts.saturating_sub(PCR_DELAY);
        let due = self.last_pcr.is_none_or(|last| pcr_candidate.saturating_sub(last) >= PCR_INTERVAL);
        let mut pcr = None;
        if pid == self.pcr_pid {
            if frame.keyframe || due {
                let value = self.last_pcr.map_or(pcr_candidate, |last| last.max(pcr_candidate));
                pcr = Some(value);
                self.last_pcr = Some(value);
            }
        } else if due {
            // The PCR track is silent for too long (low frame rate): a PCR-only packet on its PID.
            let pcr_pid = self.pcr_pid;
            let cc = if let Some(v) = self.video.as_ref().filter(|v| v.pid == pcr_pid) { v.cc } else { 0 };
            write_pcr_only(out, pcr_pid, cc.wrapping_sub(1) & 0x0f, pcr_candidate);
            self.last_pcr = Some(pcr_candidate);
        }
        let random_access = frame.keyframe && (is_video || pcr.is_some());

        let mut cc = stream.cc;
        write_pes(out, pid, &mut cc, &pieces, total, pcr, random_access);
        if let Some(stream) = if is_video { self.video.as_mut() } else { self.audio.as_mut() } {
            stream.cc = cc;
        }
        Ok(())
    }
}

/// Builds the stream state of a video track.
fn video_stream(track: &TrackInfo) -> Result<Stream, TsError> {
    let (stream_type, param_sets) = match track.codec {
        Codec::H264 => (0x1b, avc_param_sets(&track.config)?),
        Codec::H265 => (0x24, hevc_param_sets(&track.config)?),
        codec => return Err(TsError::UnsupportedCodec(codec)),
    };
    Ok(Stream {
        codec: track.codec,
        pid: VIDEO_PID,
        stream_type,
        stream_id: 0xe0,
        cc: 0,
        descriptors: Vec::new(),
        param_sets,
        adts: None,
    })
}

/// Builds the stream state of an audio track.
fn audio_stream(track: &TrackInfo) -> Result<Stream, TsError> {
    let codec = track.codec;
    let mut stream = Stream {
        codec,
        pid: AUDIO_PID,
        stream_type: 0,
        stream_id: 0xc0,
        cc: 0,
        descriptors: Vec::new(),
        param_sets: Vec::new(),
        adts: None,
    };
    match codec {
        Codec::Aac => {
            stream.stream_type = 0x0f;
            stream.adts = Some(adts_fields(track)?);
        }
        Codec::Mp3 => stream.stream_type = 0x03,
        Codec::Opus => {
            stream.stream_type = 0x06;
            stream.stream_id = 0xbd;
            stream.descriptors = opus_descriptors(track);
        }
        codec => return Err(TsError::UnsupportedCodec(codec)),
    }
    Ok(stream)
}

/// The registration descriptor `Opus` and the DVB extension descriptor (tag 0x7f, extension 0x80) with the
/// channel_config_code, following ffmpeg's mpegtsenc: the channel count for mapping family 0 (and for family 1
/// with the Vorbis default layout), `0x80 | channels` for family 1 with one stream per channel, else 0xff.
fn opus_descriptors(track: &TrackInfo) -> Vec<u8> {
    const COUPLED: [u8; 9] = [1, 0, 1, 1, 2, 2, 2, 3, 3];
    const MAP_A: [&[u8]; 8] = [
        &[0],
        &[0, 1],
        &[0, 2, 1],
        &[0, 1, 2, 3],
        &[0, 4, 1, 2, 3],
        &[0, 4, 1, 2, 3, 5],
        &[0, 4, 1, 2, 3, 5, 6],
        &[0, 6, 1, 2, 3, 4, 5, 7],
    ];
    const MAP_B: [&[u8]; 8] = [
        &[0],
        &[0, 1],
        &[0, 1, 2],
        &[0, 1, 2, 3],
        &[0, 1, 2, 3, 4],
        &[0, 1, 2, 3, 4, 5],
        &[0, 1, 2, 3, 4, 5, 6],
        &[0, 1, 2, 3, 4, 5, 6, 7],
    ];
    let code = match parse_opus_config(&track.config) {
        Ok(c) if c.mapping_family == 0 && c.channels <= 2 => c.channels,
        Ok(c) if c.mapping_family == 1 && (1..=8).contains(&c.channels) => {
            let n = usize::from(c.channels);
            let coupled = COUPLED[n];
            if c.coupled_count == coupled
                && usize::from(c.stream_count) + usize::from(coupled) == n
                && c.channel_mapping == MAP_A[n - 1]
            {
                c.channels
            } else if n >= 2
                && usize::from(c.stream_count) == n
                && c.coupled_count == 0
                && c.channel_mapping == MAP_B[n - 1]
            {
                c.channels | 0x80
            } else {
                0xff
            }
        }
        Ok(_) => 0xff,
        Err(_) => match track.audio.map(|a| a.channels) {
            Some(ch @ 1..=2) => ch,
            None => 2,
            Some(_) => 0xff,
        },
    };
    vec![0x05, 4, b'O', b'p', b'u', b's', 0x7f, 2, 0x80, code]
}

/// The NAL units of an AVCDecoderConfigurationRecord (SPS then PPS) in Annex B form.
pub fn avc_param_sets(record: &[u8]) -> Result<Vec<u8>, TsError> {
    let bad = |reason| TsError::BadConfig { codec: Codec::H264, reason };
    let mut r = Reader(record);
    if r.u8().ok_or(bad("empty record"))? != 1 {
        return Err(bad("unknown configuration version"));
    }
    r.skip(4).ok_or(bad("truncated header"))?;
    let mut out = Vec::new();
    let num_sps = r.u8().ok_or(bad("truncated SPS count"))? & 0x1f;
    for _ in 0..num_sps {
        let nal = r.nal().ok_or(bad("truncated SPS"))?;
        push_annexb(&mut out, nal);
    }
    let num_pps = r.u8().ok_or(bad("truncated PPS count"))?;
    for _ in 0..num_pps {
        let nal = r.nal().ok_or(bad("truncated PPS"))?;
        push_annexb(&mut out, nal);
    }
    Ok(out)
}

/// The NAL units of an HEVCDecoderConfigurationRecord (all arrays in order: VPS, SPS, PPS, SEI) in Annex B form.
pub fn hevc_param_sets(record: &[u8]) -> Result<Vec<u8>, TsError> {
    let bad = |reason| TsError::BadConfig { codec: Codec::H265, reason };
    let mut r = Reader(record);
    if r.u8().ok_or(bad("empty record"))? != 1 {
        return Err(bad("unknown configuration version"));
    }
    r.skip(21).ok_or(bad("truncated header"))?;
    let mut out = Vec::new();
    let arrays = r.u8().ok_or(bad("truncated array count"))?;
    for _ in 0..arrays {
        r.u8().ok_or(bad("truncated array"))?;
        let count = r.u16().ok_or(bad("truncated array"))?;
        for _ in 0..count {
            let nal = r.nal().ok_or(bad("truncated NAL unit"))?;
            push_annexb(&mut out, nal);
        }
    }
    Ok(out)
}

fn push_annexb(out: &mut Vec<u8>, nal: &[u8]) {
    if !nal.is_empty() {
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(nal);
    }
}

/// A minimal big-endian cursor; every read past the end gives `None`.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    /// A NAL unit with a 16-bit length in front.
    fn nal(&mut self) -> Option<&'a [u8]> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }
}

/// The NAL units of an AVCC/HVCC payload with 4-byte length prefixes; a truncated prefix or a length that
/// overruns the payload is an error.
pub fn length_prefixed_nals(data: &[u8]) -> impl Iterator<Item = Result<&[u8], TsError>> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            rest = &[];
            return Some(Err(TsError::BadFrame("truncated NAL unit length")));
        };
        let len = u32::from_be_bytes(*len) as usize;
        if tail.len() < len {
            rest = &[];
            return Some(Err(TsError::BadFrame("NAL unit length overruns the frame")));
        }
        let (nal, next) = tail.split_at(len);
        rest = next;
        Some(Ok(nal))
    })
}

/// A timestamp in 90 kHz ticks plus [`TIMESTAMP_OFFSET`], not yet wrapped.
fn to_90k(ts: i64, timebase: u32) -> i64 {
    ferrocast_media::rescale(ts, timebase, 90_000).saturating_add(TIMESTAMP_OFFSET)
}

/// The 5-byte PES form of a timestamp (taken modulo 2^33) with a 4-bit prefix (2 = PTS only, 3 = PTS before a
/// DTS, 1 = DTS).
fn encode_timestamp(prefix: u8, ts: i64) -> [u8; 5] {
    let t = ts.rem_euclid(TS_MOD) as u64;
    [
        (prefix << 4) | (((t >> 30) as u8 & 0x07) << 1) | 1,
        (t >> 22) as u8,
        (((t >> 15) as u8 & 0x7f) << 1) | 1,
        (t >> 7) as u8,
        ((t as u8 & 0x7f) << 1) | 1,
    ]
}

/// The 6-byte PCR field: 33-bit base (taken modulo 2^33), 6 reserved bits, 9-bit extension 0.
fn encode_pcr(pcr: i64) -> [u8; 6] {
    let base = pcr.rem_euclid(TS_MOD) as u64;
    [(base >> 25) as u8, (base >> 17) as u8, (base >> 9) as u8, (base >> 1) as u8, ((base as u8 & 1) << 7) | 0x7e, 0]
}

/// The fixed ADTS header fields of an AAC track: (profile = object type − 1, sampling frequency index, channel
/// configuration). Configurations ADTS cannot express are [`TsError::BadConfig`].
pub fn adts_fields(track: &TrackInfo) -> Result<(u8, u8, u8), TsError> {
    let codec = track.codec;
    let bad = |reason| TsError::BadConfig { codec, reason };
    if codec != Codec::Aac {
        return Err(TsError::UnsupportedCodec(codec));
    }
    let asc = parse_aac_config(&track.config).map_err(|_| bad("unreadable AudioSpecificConfig"))?;
    if !(1..=4).contains(&asc.object_type) {
        return Err(bad("audio object type cannot be signalled in ADTS"));
    }
    let sfi = asc.sampling_index.ok_or(bad("sampling rate has no ADTS index"))?;
    if asc.channel_config == 0 || asc.channel_config > 7 {
        return Err(bad("channel configuration cannot be signalled in ADTS"));
    }
    Ok((asc.object_type - 1, sfi, asc.channel_config))
}

/// A 7-byte ADTS header (MPEG-4, no CRC) for a frame of `len` bytes including the header.
pub fn adts_header(profile: u8, sfi: u8, chan: u8, len: usize) -> [u8; 7] {
    let len = len as u32 & 0x1fff;
    [
        0xff,
        0xf1,
        ((profile & 3) << 6) | ((sfi & 0x0f) << 2) | ((chan >> 2) & 1),
        ((chan & 3) << 6) | (len >> 11) as u8,
        (len >> 3) as u8,
        ((len as u8 & 7) << 5) | 0x1f,
        0xfc,
    ]
}

/// The MPEG-2 CRC-32 (polynomial 0x04C11DB7, initial value all ones, no reflection, no final XOR); a section
/// including its CRC gives 0.
pub(crate) fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 { (crc << 1) ^ 0x04c1_1db7 } else { crc << 1 };
        }
    }
    crc
}

fn ts_header(out: &mut BytesMut, pid: u16, pusi: bool, afc: u8, cc: u8) {
    out.put_u8(SYNC_BYTE);
    out.put_u8(if pusi { 0x40 } else { 0 } | ((pid >> 8) as u8 & 0x1f));
    out.put_u8(pid as u8);
    out.put_u8((afc << 4) | (cc & 0x0f));
}

/// Writes one PSI section (long form, version 0, section 0 of 0) with its CRC in a single packet.
fn write_section(out: &mut BytesMut, pid: u16, cc: &mut u8, table_id: u8, id: u16, body: &[u8]) {
    let mut section = Vec::with_capacity(body.len() + 12);
    let section_length = (body.len() + 9) as u16; // 5 bytes after the length, body, CRC
    section.push(table_id);
    section.extend_from_slice(&(0xb000 | (section_length & 0x0fff)).to_be_bytes());
    section.extend_from_slice(&id.to_be_bytes());
    section.extend_from_slice(&[0xc1, 0, 0]);
    section.extend_from_slice(body);
    let crc = crc32_mpeg2(&section);
    section.extend_from_slice(&crc.to_be_bytes());
    // Tables here are far below one packet (two tracks, a few descriptors); truncate defensively.
    section.truncate(TS_PACKET_SIZE - 5);

    out.reserve(TS_PACKET_SIZE);
    ts_header(out, pid, true, 1, *cc);
    *cc = (*cc + 1) & 0x0f;
    out.put_u8(0); // pointer_field
    out.extend_from_slice(&section);
    out.put_bytes(0xff, TS_PACKET_SIZE - 5 - section.len());
}

/// Writes a packet with only an adaptation field carrying a PCR (the continuity counter is not incremented).
fn write_pcr_only(out: &mut BytesMut, pid: u16, cc: u8, pcr: i64) {
    out.reserve(TS_PACKET_SIZE);
    ts_header(out, pid, false, 2, cc);
    out.put_u8(183);
    out.put_u8(0x10);
    out.extend_from_slice(&encode_pcr(pcr));
    out.put_bytes(0xff, TS_PACKET_SIZE - 12);
}

/// Splits a PES (given as slices of `total` bytes) into TS packets; the first packet carries the random access
/// indicator and PCR when asked, the last one is padded with adaptation field stuffing.
fn write_pes(
    out: &mut BytesMut,
    pid: u16,
    cc: &mut u8,
    pieces: &[&[u8]],
    total: usize,
    pcr: Option<i64>,
    random_access: bool,
) {
    out.reserve(total.div_ceil(184) * TS_PACKET_SIZE + TS_PACKET_SIZE);
    let mut remaining = total;
    let mut piece = 0;
    let mut offset = 0;
    let mut first = true;
    while remaining > 0 {
        // Adaptation field contents after its length byte: flags, PCR.
        let mut af = [0u8; 7];
        let mut af_len = 0;
        if first && (random_access || pcr.is_some()) {
            af[0] = if random_access { 0x40 } else { 0 };
            af_len = 1;
            if let Some(pcr) = pcr {
                af[0] |= 0x10;
                af[1..7].copy_from_slice(&encode_pcr(pcr));
                af_len = 7;
            }
        }
        // Bytes of adaptation field incl. its length byte.
        let mut af_total = if af_len > 0 { af_len + 1 } else { 0 };
        let mut payload = 184 - af_total;
        if remaining < payload {
            af_total = 184 - remaining;
            payload = remaining;
        }
        ts_header(out, pid, first, if af_total > 0 { 3 } else { 1 }, *cc);
        *cc = (*cc + 1) & 0x0f;
        if af_total > 0 {
            out.put_u8((af_total - 1) as u8);
            if af_total > 1 {
                if af_len == 0 {
                    out.put_u8(0); // flags
                    out.put_bytes(0xff, af_total - 2);
                } else {
                    out.extend_from_slice(&af[..af_len]);
                    out.put_bytes(0xff, af_total - 1 - af_len);
                }
            }
        }
        let mut left = payload;
        while left > 0 {
            let Some(p) = pieces.get(piece) else { break };
            let n = (p.len() - offset).min(left);
            out.extend_from_slice(&p[offset..offset + n]);
            left -= n;
            offset += n;
            if offset == p.len() {
                piece += 1;
                offset = 0;
            }
        }
        // `total` is the sum of the pieces, so `left` is 0 here; pad defensively to keep the packet size.
        out.put_bytes(0xff, left);
        remaining -= payload;
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::collections::HashMap;

    fn track(codec: Codec, config: &[u8]) -> TrackInfo {
        TrackInfo {
            media: codec.media_type(),
            codec,
            timebase: 1000,
            config: Bytes::copy_from_slice(config),
            video: None,
            audio: None,
        }
    }

    fn frame(codec: Codec, dts: i64, pts: i64, keyframe: bool, data: &[u8]) -> Frame {
        Frame {
            media: codec.media_type(),
            codec,
            timebase: 1000,
            dts,
            pts,
            keyframe,
            data: Bytes::copy_from_slice(data),
        }
    }

    /// SPS/PPS-only avcC (the muxer does not parse the SPS itself).
    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1e, 0xaa];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

    fn avcc_record() -> Vec<u8> {
        let mut r = vec![1, 0x42, 0xc0, 0x1e, 0xff, 0xe1];
        r.extend_from_slice(&(SPS.len() as u16).to_be_bytes());
        r.extend_from_slice(SPS);
        r.push(1);
        r.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
        r.extend_from_slice(PPS);
        r
    }

    fn avcc(nals: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for n in nals {
            out.extend_from_slice(&(n.len() as u32).to_be_bytes());
            out.extend_from_slice(n);
        }
        out
    }

    fn annexb(nals: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for n in nals {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(n);
        }
        out
    }

    fn packets(ts: &[u8]) -> Vec<&[u8]> {
        assert_eq!(ts.len() % TS_PACKET_SIZE, 0, "not a whole number of packets");
        ts.chunks(TS_PACKET_SIZE).collect()
    }

    fn pid_of(p: &[u8]) -> u16 {
        u16::from_be_bytes([p[1] & 0x1f, p[2]])
    }

    /// The payload of a TS packet (after any adaptation field).
    fn payload(p: &[u8]) -> &[u8] {
        match (p[3] >> 4) & 3 {
            1 => &p[4..],
            3 => &p[5 + usize::from(p[4])..],
            _ => &[],
        }
    }

    /// Reassembled PES packets of one PID: (PES header bytes, elementary stream bytes).
    fn pes_of(ts: &[u8], pid: u16) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut all: Vec<Vec<u8>> = Vec::new();
        for p in packets(ts) {
            if pid_of(p) != pid {
                continue;
            }
            if p[1] & 0x40 != 0 {
                all.push(Vec::new());
            }
            if let Some(last) = all.last_mut() {
                last.extend_from_slice(payload(p));
            }
        }
        all.into_iter()
            .map(|pes| {
                assert_eq!(&pes[..3], &[0, 0, 1]);
                let hl = 9 + usize::from(pes[8]);
                (pes[..hl].to_vec(), pes[hl..].to_vec())
            })
            .collect()
    }

    fn decode_timestamp(b: &[u8]) -> u64 {
        assert_eq!(b[0] & 1, 1);
        assert_eq!(b[2] & 1, 1);
        assert_eq!(b[4] & 1, 1);
        (u64::from(b[0] >> 1 & 7) << 30)
            | (u64::from(b[1]) << 22)
            | (u64::from(b[2] >> 1) << 15)
            | (u64::from(b[3]) << 7)
            | u64::from(b[4] >> 1)
    }

    #[test]
    fn crc_matches_ffmpeg_pat() {
        // The PAT section ffmpeg writes for program 1 / PMT PID 0x1000, with its well-known CRC.
        let section = [0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01, 0xf0, 0x00];
        assert_eq!(crc32_mpeg2(&section), 0x2ab1_04b2);
        // CRC over a section including its CRC is 0.
        let mut full = section.to_vec();
        full.extend_from_slice(&0x2ab1_04b2u32.to_be_bytes());
        assert_eq!(crc32_mpeg2(&full), 0);
        // The check value of CRC-32/MPEG-2.
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_e6e7);
    }

    #[test]
    fn tables_are_well_formed() {
        let v = track(Codec::H264, &avcc_record());
        let a = track(Codec::Aac, &[0x12, 0x10]);
        let mut mux = TsMuxer::new(Some(&v), Some(&a)).unwrap();
        let mut out = BytesMut::new();
        mux.write_tables(&mut out);
        let p = packets(&out);
        assert_eq!(p.len(), 2);
        assert_eq!(
            &p[0][..21],
            &[
                0x47, 0x40, 0x00, 0x10, 0x00, 0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01, 0xf0, 0x00,
                0x2a, 0xb1, 0x04, 0xb2
            ]
        );
        assert!(p[0][21..].iter().all(|&b| b == 0xff));
        // PMT: PCR PID 0x100, H.264 on 0x100, AAC on 0x101, valid CRC.
        let pmt = &p[1];
        assert_eq!(pid_of(pmt), PMT_PID);
        let sec = &pmt[5..];
        assert_eq!(sec[0], 0x02);
        let len = usize::from(u16::from_be_bytes([sec[1] & 0x0f, sec[2]]));
        assert_eq!(crc32_mpeg2(&sec[..3 + len]), 0);
        assert_eq!(&sec[8..10], &[0xe1, 0x00]);
        assert_eq!(&sec[12..17], &[0x1b, 0xe1, 0x00, 0xf0, 0x00]);
        assert_eq!(&sec[17..22], &[0x0f, 0xe1, 0x01, 0xf0, 0x00]);
    }

    #[test]
    fn opus_pmt_and_control_header() {
        // OpusHead, stereo, mapping family 0.
        let mut head = b"OpusHead".to_vec();
        head.extend_from_slice(&[1, 2, 0x38, 0x01, 0x80, 0xbb, 0, 0, 0, 0, 0]);
        let a = track(Codec::Opus, &head);
        let mut mux = TsMuxer::new(None, Some(&a)).unwrap();
        let mut out = BytesMut::new();
        mux.write_tables(&mut out);
        let sec = &out[TS_PACKET_SIZE + 5..];
        assert_eq!(&sec[8..10], &[0xe1, 0x01], "PCR on the audio PID");
        assert_eq!(&sec[12..17], &[0x06, 0xe1, 0x01, 0xf0, 10]);
        assert_eq!(&sec[17..27], &[0x05, 4, b'O', b'p', b'u', b's', 0x7f, 2, 0x80, 2]);
        out.clear();
        let data = vec![0x55u8; 300];
        mux.write_frame(&frame(Codec::Opus, 0, 0, true, &data), &mut out).unwrap();
        let pes = pes_of(&out, AUDIO_PID);
        assert_eq!(pes[0].0[3], 0xbd);
        assert_eq!(&pes[0].1[..4], &[0x7f, 0xe0, 255, 45]);
        assert_eq!(&pes[0].1[4..], &data[..]);
    }

    #[test]
    fn unsupported_codecs_and_no_tracks() {
        for codec in [Codec::Av1, Codec::Vp9, Codec::Vp8, Codec::G711A, Codec::G711U] {
            let t = track(codec, &[]);
            let (v, a) = if codec.media_type() == MediaType::Video { (Some(&t), None) } else { (None, Some(&t)) };
            assert!(matches!(TsMuxer::new(v, a), Err(TsError::UnsupportedCodec(c)) if c == codec));
        }
        assert!(matches!(TsMuxer::new(None, None), Err(TsError::NoTracks)));
        assert!(matches!(TsMuxer::new(Some(&track(Codec::H264, &[1, 2])), None), Err(TsError::BadConfig { .. })));
        assert!(matches!(TsMuxer::new(None, Some(&track(Codec::Aac, &[]))), Err(TsError::BadConfig { .. })));
        assert!(TsMuxer::new(None, Some(&track(Codec::Mp3, &[]))).is_ok());
    }

    #[test]
    fn timestamp_roundtrip() {
        for ts in [0i64, 1, 90_000, 126_000, (1 << 32) + 12345, (1 << 33) - 1] {
            assert_eq!(decode_timestamp(&encode_timestamp(2, ts)), ts as u64);
        }
        // 33-bit wrap and negative values.
        assert_eq!(decode_timestamp(&encode_timestamp(2, (1 << 33) + 5)), 5);
        assert_eq!(decode_timestamp(&encode_timestamp(2, -1)), (1 << 33) - 1);
        assert_eq!(encode_timestamp(2, 0)[0] >> 4, 2);
        assert_eq!(encode_timestamp(3, 0)[0] >> 4, 3);
        assert_eq!(encode_timestamp(1, 0)[0] >> 4, 1);
        // Rescaling: 1000 ms -> 90000 + offset.
        assert_eq!(to_90k(1000, 1000), 90_000 + TIMESTAMP_OFFSET);
        assert_eq!(to_90k(-40, 1000), TIMESTAMP_OFFSET - 3600);
        // PCR base encoding.
        let pcr = encode_pcr(0x1_2345_6789);
        let base = (u64::from(pcr[0]) << 25)
            | (u64::from(pcr[1]) << 17)
            | (u64::from(pcr[2]) << 9)
            | (u64::from(pcr[3]) << 1)
            | u64::from(pcr[4] >> 7);
        assert_eq!(base, 0x1_2345_6789);
        assert_eq!(pcr[4] & 0x7e, 0x7e);
    }

    #[test]
    fn pes_timestamps_in_output() {
        let v = track(Codec::H264, &avcc_record());
        let mut mux = TsMuxer::new(Some(&v), None).unwrap();
        let mut out = BytesMut::new();
        mux.write_frame(&frame(Codec::H264, 0, 80, true, &avcc(&[&[0x65, 1]])), &mut out).unwrap();
        mux.write_frame(&frame(Codec::H264, 40, 40, false, &avcc(&[&[0x41, 1]])), &mut out).unwrap();
        let pes = pes_of(&out, VIDEO_PID);
        let (h0, h1) = (&pes[0].0, &pes[1].0);
        assert_eq!(h0[3], 0xe0);
        assert_eq!(&h0[4..6], &[0, 0], "video PES_packet_length 0 (unbounded)");
        assert_eq!(h0[7], 0xc0);
        assert_eq!(decode_timestamp(&h0[9..14]), (TIMESTAMP_OFFSET + 7200) as u64);
        assert_eq!(decode_timestamp(&h0[14..19]), TIMESTAMP_OFFSET as u64);
        assert_eq!(h1[7], 0x80, "no DTS when equal to PTS");
        assert_eq!(h1[8], 5);
        assert_eq!(decode_timestamp(&h1[9..14]), (TIMESTAMP_OFFSET + 3600) as u64);
        // Keyframe: adaptation field with random access indicator and PCR = DTS - delay.
        let first = &out[..TS_PACKET_SIZE];
        assert_eq!(first[3] & 0x30, 0x30);
        assert_eq!(first[5] & 0x50, 0x50);
        let base = (u64::from(first[6]) << 25)
            | (u64::from(first[7]) << 17)
            | (u64::from(first[8]) << 9)
            | (u64::from(first[9]) << 1)
            | u64::from(first[10] >> 7);
        assert_eq!(base, (TIMESTAMP_OFFSET - PCR_DELAY) as u64);
    }

    #[test]
    fn packets_aligned_and_continuity_counters() {
        let v = track(Codec::H264, &avcc_record());
        let a = track(Codec::Aac, &[0x12, 0x10]);
        let mut mux = TsMuxer::new(Some(&v), Some(&a)).unwrap();
        let mut segments = Vec::new();
        let mut t = 0;
        for seg in 0..3 {
            let mut out = BytesMut::new();
            mux.write_tables(&mut out);
            for i in 0..20 {
                // Sizes around packet boundaries, including ones that need 1 and 2 bytes of stuffing.
                let size = [1usize, 150, 160, 161, 162, 183, 184, 185, 1000, 5000][(i + seg) % 10];
                let mut slice = vec![0x41u8];
                slice.resize(size, 0xab);
                let key = i == 0;
                let nal: &[u8] = if key { &[0x65, 0x88] } else { &slice };
                mux.write_frame(&frame(Codec::H264, t, t + 40, key, &avcc(&[nal, &slice])), &mut out).unwrap();
                mux.write_frame(&frame(Codec::Aac, t, t, true, &vec![0x21; size]), &mut out).unwrap();
                t += 40;
            }
            segments.push(out);
        }
        let mut next_cc: HashMap<u16, u8> = HashMap::new();
        for seg in &segments {
            for p in packets(seg) {
                assert_eq!(p[0], SYNC_BYTE);
                let afc = (p[3] >> 4) & 3;
                assert_ne!(afc, 0);
                if afc & 2 != 0 {
                    assert!(usize::from(p[4]) <= 183);
                }
                if afc & 1 == 0 {
                    continue; // no payload: counter not incremented
                }
                let pid = pid_of(p);
                let cc = p[3] & 0x0f;
                if let Some(&want) = next_cc.get(&pid) {
                    assert_eq!(cc, want, "continuity counter of PID {pid:#x}");
                }
                next_cc.insert(pid, (cc + 1) & 0x0f);
            }
        }
        // Every frame came out intact.
        let all: Vec<u8> = segments.iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(pes_of(&all, VIDEO_PID).len(), 60);
        let audio = pes_of(&all, AUDIO_PID);
        assert_eq!(audio.len(), 60);
        for (h, es) in &audio {
            let len = usize::from(u16::from_be_bytes([h[4], h[5]]));
            assert_eq!(len, h.len() - 6 + es.len());
            assert_eq!(usize::from(es[3] & 3) << 11 | usize::from(es[4]) << 3 | usize::from(es[5] >> 5), es.len());
        }
    }

    #[test]
    fn adts_header_aac_lc_44100_stereo() {
        // AudioSpecificConfig 0x12 0x10: AAC LC, 44.1 kHz (index 4), 2 channels.
        let a = track(Codec::Aac, &[0x12, 0x10]);
        let mut mux = TsMuxer::new(None, Some(&a)).unwrap();
        let mut out = BytesMut::new();
        mux.write_frame(&frame(Codec::Aac, 0, 0, true, &[0x21; 100]), &mut out).unwrap();
        let pes = pes_of(&out, AUDIO_PID);
        assert_eq!(pes[0].0[3], 0xc0);
        assert_eq!(&pes[0].1[..7], &[0xff, 0xf1, 0x50, 0x80, 0x0d, 0x7f, 0xfc]);
        assert_eq!(pes[0].1.len(), 107);
        assert_eq!(adts_header(1, 4, 2, 107), [0xff, 0xf1, 0x50, 0x80, 0x0d, 0x7f, 0xfc]);
        // Too large for the 13-bit ADTS length.
        let err = mux.write_frame(&frame(Codec::Aac, 0, 0, true, &[0; 8190]), &mut out);
        assert!(matches!(err, Err(TsError::BadFrame(_))));
    }

    #[test]
    fn annexb_conversion_with_parameter_sets() {
        let v = track(Codec::H264, &avcc_record());
        let mut mux = TsMuxer::new(Some(&v), None).unwrap();
        let mut out = BytesMut::new();
        let sei: &[u8] = &[0x06, 5, 1, 0x80];
        let idr: &[u8] = &[0x65, 0x88, 0x84];
        let slice: &[u8] = &[0x41, 0x9a];
        let aud: &[u8] = &[0x09, 0x10];
        mux.write_frame(&frame(Codec::H264, 0, 0, true, &avcc(&[sei, idr])), &mut out).unwrap();
        mux.write_frame(&frame(Codec::H264, 40, 40, false, &avcc(&[aud, slice])), &mut out).unwrap();
        let own_sps: &[u8] = &[0x67, 1, 2];
        mux.write_frame(&frame(Codec::H264, 80, 80, true, &avcc(&[own_sps, PPS, idr])), &mut out).unwrap();
        let pes = pes_of(&out, VIDEO_PID);
        let aud_nal = &AUD_H264[4..];
        assert_eq!(pes[0].1, annexb(&[aud_nal, SPS, PPS, sei, idr]));
        assert_eq!(pes[1].1, annexb(&[aud_nal, slice]), "frame's AUD replaced, no parameter sets");
        assert_eq!(pes[2].1, annexb(&[aud_nal, own_sps, PPS, idr]), "frame's own SPS kept, none inserted");
    }

    #[test]
    fn hevc_parameter_sets_and_aud() {
        let vps: &[u8] = &[0x40, 0x01, 0x0c];
        let sps: &[u8] = &[0x42, 0x01, 0x01];
        let pps: &[u8] = &[0x44, 0x01, 0xc1];
        let mut rec = vec![1u8];
        rec.extend_from_slice(&[0; 21]);
        rec.push(3);
        for (t, n) in [(32u8, vps), (33, sps), (34, pps)] {
            rec.push(0x80 | t);
            rec.extend_from_slice(&1u16.to_be_bytes());
            rec.extend_from_slice(&(n.len() as u16).to_be_bytes());
            rec.extend_from_slice(n);
        }
        let v = track(Codec::H265, &rec);
        let mut mux = TsMuxer::new(Some(&v), None).unwrap();
        let mut out = BytesMut::new();
        let idr: &[u8] = &[0x26, 0x01, 0xaf];
        let trail: &[u8] = &[0x02, 0x01, 0xd0];
        mux.write_frame(&frame(Codec::H265, 0, 0, true, &avcc(&[idr])), &mut out).unwrap();
        mux.write_frame(&frame(Codec::H265, 40, 40, false, &avcc(&[trail])), &mut out).unwrap();
        let mut tables = BytesMut::new();
        mux.write_tables(&mut tables);
        assert_eq!(tables[TS_PACKET_SIZE + 5 + 12], 0x24);
        let pes = pes_of(&out, VIDEO_PID);
        let aud = &AUD_H265[4..];
        assert_eq!(pes[0].1, annexb(&[aud, vps, sps, pps, idr]));
        assert_eq!(pes[1].1, annexb(&[aud, trail]));
        // Truncated record.
        assert!(matches!(TsMuxer::new(Some(&track(Codec::H265, &rec[..30])), None), Err(TsError::BadConfig { .. })));
    }

    #[test]
    fn overrun_and_bad_frames_rejected() {
        let v = track(Codec::H264, &avcc_record());
        let mut mux = TsMuxer::new(Some(&v), None).unwrap();
        let mut out = BytesMut::new();
        for data in [&[0, 0, 0, 10, 0x65, 1, 2][..], &[0, 0, 0, 2, 0x65, 1, 0, 0][..], &[0xff, 0xff, 0xff, 0xff][..]] {
            let r = mux.write_frame(&frame(Codec::H264, 0, 0, true, data), &mut out);
            assert!(matches!(r, Err(TsError::BadFrame(_))), "{data:?}");
        }
        assert!(out.is_empty(), "nothing written on error");
        // Audio frame without an audio track, codec mismatch, timebase 0.
        assert!(mux.write_frame(&frame(Codec::Aac, 0, 0, true, &[1]), &mut out).is_err());
        assert!(mux.write_frame(&frame(Codec::H265, 0, 0, true, &[]), &mut out).is_err());
        let mut f = frame(Codec::H264, 0, 0, true, &[]);
        f.timebase = 0;
        assert!(mux.write_frame(&f, &mut out).is_err());
        assert!(out.is_empty());
        // Empty payloads and extreme timestamps do not panic.
        mux.write_frame(&frame(Codec::H264, i64::MIN, i64::MAX, true, &[]), &mut out).unwrap();
        mux.write_frame(&frame(Codec::H264, i64::MAX, i64::MIN, false, &[0, 0, 0, 0]), &mut out).unwrap();
        let a = track(Codec::Mp3, &[]);
        let mut mux = TsMuxer::new(Some(&v), Some(&a)).unwrap();
        for (i, t) in [i64::MIN, i64::MAX, 0, i64::MIN + 1, -1, i64::MAX - 1, i64::MIN].into_iter().enumerate() {
            let mut f = frame(Codec::Mp3, t, t.wrapping_neg(), true, &[1]);
            f.timebase = [1, 1000, u32::MAX][i % 3];
            mux.write_frame(&f, &mut out).unwrap();
            mux.write_frame(&frame(Codec::H264, t, t, i % 2 == 0, &[]), &mut out).unwrap();
        }
        assert_eq!(out.len() % TS_PACKET_SIZE, 0);
    }

    #[test]
    fn pcr_interval_with_low_frame_rate() {
        let v = track(Codec::H264, &avcc_record());
        let a = track(Codec::Mp3, &[]);
        let mut mux = TsMuxer::new(Some(&v), Some(&a)).unwrap();
        let mut out = BytesMut::new();
        // 2 fps video, audio every 26 ms: PCRs must still come at least every 100 ms.
        for i in 0..80i64 {
            let t = i * 26;
            if t % 500 < 26 {
                mux.write_frame(&frame(Codec::H264, t, t, t == 0, &avcc(&[&[0x41, 1]])), &mut out).unwrap();
            }
            mux.write_frame(&frame(Codec::Mp3, t, t, true, &[0xff, 0xfb, 0x90, 0]), &mut out).unwrap();
        }
        let mut pcrs = Vec::new();
        for p in packets(&out) {
            if p[3] & 0x20 != 0 && p[4] > 0 && p[5] & 0x10 != 0 {
                assert_eq!(pid_of(p), VIDEO_PID);
                pcrs.push((u64::from(p[6]) << 25) | (u64::from(p[7]) << 17) | (u64::from(p[8]) << 9));
            }
        }
        assert!(pcrs.len() >= 20, "{}", pcrs.len());
        for w in pcrs.windows(2) {
            assert!(w[1] >= w[0]);
            assert!(w[1] - w[0] <= 9_000 + 2_400);
        }
    }

    // -----------------------------------------------------------------------------------------------------------
    // Integration with real decoders (skipped when ffmpeg is not installed)
    // -----------------------------------------------------------------------------------------------------------

    fn ffmpeg_available() -> bool {
        std::path::Path::new("/usr/bin/ffmpeg").exists() && std::path::Path::new("/usr/bin/ffprobe").exists()
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ferrocast-ts-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn run(cmd: &str, args: &[&str]) -> std::process::Output {
        let out = std::process::Command::new(cmd).args(args).output().unwrap();
        assert!(out.status.success(), "{cmd} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        out
    }

    /// Runs ffprobe and a full decode on a TS file; returns (codec name, frame count) per stream.
    fn probe(ts: &std::path::Path) -> Vec<(String, u64)> {
        let path = ts.to_str().unwrap();
        let decode = run("/usr/bin/ffmpeg", &["-v", "error", "-i", path, "-f", "null", "-"]);
        assert!(decode.stderr.is_empty(), "decoder errors: {}", String::from_utf8_lossy(&decode.stderr));
        let probe = run(
            "/usr/bin/ffprobe",
            &[
                "-v",
                "error",
                "-count_frames",
                "-show_entries",
                "stream=index,codec_name,nb_read_frames",
                "-of",
                "csv=p=0",
                path,
            ],
        );
        assert!(probe.stderr.is_empty(), "ffprobe errors: {}", String::from_utf8_lossy(&probe.stderr));
        // Streams are listed once per program and once on their own: keep each index once.
        let mut seen = std::collections::HashSet::new();
        String::from_utf8_lossy(&probe.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter(|l| seen.insert(l.trim().to_string()))
            .map(|l| {
                let mut parts = l.trim().split(',');
                let _index = parts.next();
                let name = parts.next().unwrap_or_default().to_string();
                let n = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                (name, n)
            })
            .collect()
    }

    /// Muxes frames into a TS file, with tables at every video keyframe (as an HLS segmenter would).
    fn mux_to_file(video: Option<&TrackInfo>, audio: Option<&TrackInfo>, frames: &[Frame], path: &std::path::Path) {
        let mut mux = TsMuxer::new(video, audio).unwrap();
        let mut out = BytesMut::new();
        mux.write_tables(&mut out);
        let mut first = true;
        for f in frames {
            if f.media == MediaType::Video && f.keyframe && !first {
                mux.write_tables(&mut out);
            }
            first = false;
            mux.write_frame(f, &mut out).unwrap();
        }
        assert_eq!(out.len() % TS_PACKET_SIZE, 0);
        std::fs::write(path, &out).unwrap();
    }

    #[test]
    fn ffmpeg_decodes_h264_aac() {
        if !ffmpeg_available() {
            eprintln!("ffmpeg not installed, skipping");
            return;
        }
        let dir = temp_dir("h264");
        let flv_path = dir.join("in.flv");
        let args = "-v error -y -f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i sine -t 2 -c:v libx264 -g 25 \
                    -bf 2 -c:a aac -f flv";
        let mut args: Vec<&str> = args.split_whitespace().collect();
        args.push(flv_path.to_str().unwrap());
        run("/usr/bin/ffmpeg", &args);
        let crate::flv::FlvMedia { video, audio, frames } =
            crate::flv::demux(&std::fs::read(&flv_path).unwrap()).unwrap();
        assert!(frames.iter().any(|f| f.pts != f.dts), "B-frames expected");
        let ts_path = dir.join("out.ts");
        mux_to_file(video.as_ref(), audio.as_ref(), &frames, &ts_path);
        let streams = probe(&ts_path);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(streams.len(), 2, "{streams:?}");
        assert!(streams.contains(&("h264".to_string(), 50)), "{streams:?}");
        assert!(streams.iter().any(|(name, n)| name == "aac" && *n > 80), "{streams:?}");
    }

    /// Splits an Annex B stream into NAL units (trailing zero bytes removed).
    fn split_annexb(data: &[u8]) -> Vec<&[u8]> {
        let mut starts = Vec::new();
        let mut i = 0;
        while i + 3 <= data.len() {
            if data[i..i + 3] == [0, 0, 1] {
                starts.push(i + 3);
                i += 3;
            } else {
                i += 1;
            }
        }
        let mut nals = Vec::new();
        for (k, &s) in starts.iter().enumerate() {
            let mut end = starts.get(k + 1).map_or(data.len(), |&n| n - 3);
            while end > s && data[end - 1] == 0 {
                end -= 1;
            }
            nals.push(&data[s..end]);
        }
        nals
    }

    /// Debian's ffmpeg 5.1 cannot write HEVC into FLV, so the H.265 case starts from a raw Annex B stream
    /// (with access unit delimiters, no B-frames): parameter sets go into an HEVC configuration record and are
    /// stripped from the frames, so the muxer has to insert them at every keyframe.
    #[test]
    fn ffmpeg_decodes_h265() {
        if !ffmpeg_available() {
            eprintln!("ffmpeg not installed, skipping");
            return;
        }
        let dir = temp_dir("h265");
        let raw_path = dir.join("in.hevc");
        let args = "-v error -y -f lavfi -i testsrc2=size=320x240:rate=25 -t 2 -c:v libx265 -x265-params \
                    log-level=none:aud=1:bframes=0:keyint=25:min-keyint=25 -f hevc";
        let mut args: Vec<&str> = args.split_whitespace().collect();
        args.push(raw_path.to_str().unwrap());
        run("/usr/bin/ffmpeg", &args);
        let data = std::fs::read(&raw_path).unwrap();
        let mut params: Vec<Vec<&[u8]>> = vec![Vec::new(); 3];
        let mut units: Vec<Vec<&[u8]>> = Vec::new();
        for nal in split_annexb(&data) {
            let Some(&h) = nal.first() else { continue };
            match (h >> 1) & 0x3f {
                35 => units.push(Vec::new()),
                t @ 32..=34 => {
                    let list = &mut params[usize::from(t - 32)];
                    if !list.contains(&nal) {
                        list.push(nal);
                    }
                }
                _ => {
                    if let Some(u) = units.last_mut() {
                        u.push(nal)
                    }
                }
            }
        }
        let mut rec = vec![1u8];
        rec.extend_from_slice(&[0; 21]);
        rec.push(3);
        for (i, list) in params.iter().enumerate() {
            assert!(!list.is_empty(), "missing parameter set type {}", 32 + i);
            rec.push(0x80 | (32 + i as u8));
            rec.extend_from_slice(&(list.len() as u16).to_be_bytes());
            for n in list {
                rec.extend_from_slice(&(n.len() as u16).to_be_bytes());
                rec.extend_from_slice(n);
            }
        }
        let video = TrackInfo::from_config(Codec::H265, 1000, Bytes::from(rec)).unwrap();
        let frames: Vec<Frame> = units
            .iter()
            .enumerate()
            .map(|(i, nals)| {
                let key = nals.iter().any(|n| (16..=23).contains(&((n[0] >> 1) & 0x3f)));
                let t = i as i64 * 40;
                frame(Codec::H265, t, t, key, &avcc(nals))
            })
            .collect();
        assert_eq!(frames.len(), 50);
        assert_eq!(frames.iter().filter(|f| f.keyframe).count(), 2);
        let ts_path = dir.join("out.ts");
        mux_to_file(Some(&video), None, &frames, &ts_path);
        let streams = probe(&ts_path);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(streams, vec![("hevc".to_string(), 50)]);
    }
}
