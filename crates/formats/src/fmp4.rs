//! Fragmented MP4 / CMAF muxing for HLS (fMP4 segments and LL-HLS parts) and DASH, sans-IO.
//!
//! - [`init_segment`] writes the initialization segment (`ftyp` + `moov` with one `trak` per track and `mvex`).
//! - [`media_fragment`] writes one `moof` + `mdat` pair; a CMAF segment is one or more fragments, optionally
//!   preceded by [`segment_type`] (`styp`). An LL-HLS part is one fragment.
//! - [`samples_from_frames`] turns hub [`Frame`]s of one track into [`Sample`]s in the track's [`timescale`].
//! - [`codec_string`] gives the RFC 6381 `codecs` value for HLS `CODECS` and DASH `@codecs`.
//!
//! Track ids are fixed: video is [`VIDEO_TRACK_ID`] (1), audio is [`AUDIO_TRACK_ID`] (2).
//!
//! H.264/H.265 frames are AVCC/HVCC with 4-byte lengths, which is exactly the MP4 sample format, so every payload
//! goes into `mdat` untouched and without copying: [`media_fragment`] returns the box headers as one [`Bytes`]
//! followed by the sample payloads themselves (see there).
//!
//! The boxes are written by hand rather than with the `mp4-atom` crate: the set is small and fixed, and writing
//! them directly lets `mdat` stay a list of the frames' own [`Bytes`] (zero-copy) instead of being encoded into
//! one buffer.

use bytes::Bytes;
use ferrocast_media::{Codec, Frame, MediaType, TrackInfo, codec, rescale};

/// The track id of the video track in every init segment and fragment.
pub const VIDEO_TRACK_ID: u32 = 1;
/// The track id of the audio track in every init segment and fragment.
pub const AUDIO_TRACK_ID: u32 = 2;

/// The timescale of video tracks (the MPEG-TS clock, so timestamps convert exactly from 1000 and 90000).
pub const VIDEO_TIMESCALE: u32 = 90_000;

/// Why an init segment or fragment could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Fmp4Error {
    /// Neither a video nor an audio track was given, or every run of a fragment is empty.
    #[error("nothing to write: no tracks or no samples")]
    Empty,
    /// The codec has no sample entry here (VP8, G.711).
    #[error("codec {0:?} cannot be written to fMP4")]
    UnsupportedCodec(Codec),
    /// A track was passed in the wrong slot (an audio track as video or the reverse).
    #[error("{0:?} track given where the other media type was expected")]
    WrongMediaType(MediaType),
    /// The codec needs a configuration record and the track has none, or it cannot be read.
    #[error("invalid or missing codec configuration: {0}")]
    BadConfig(&'static str),
    /// A fragment's first sample has a negative decode time (`tfdt` is unsigned).
    #[error("negative decode time {0} in track {1}")]
    NegativeTime(i64, u32),
    /// A box or data offset would not fit its size field.
    #[error("fragment too large")]
    TooLarge,
}

/// The timescale of a track: [`VIDEO_TIMESCALE`] (90 kHz) for video; for audio the sample rate (always 48000 for
/// Opus, 48000 when the sample rate is unknown).
pub fn timescale(track: &TrackInfo) -> u32 {
    match (track.media, track.codec) {
        (MediaType::Video, _) => VIDEO_TIMESCALE,
        (MediaType::Audio, Codec::Opus) => 48_000,
        (MediaType::Audio, _) => track.audio.map(|a| a.sample_rate).filter(|&r| r > 0).unwrap_or(48_000),
    }
}

/// One sample to put in a fragment; timestamps already in the track's [`timescale`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Decode time. Only the first sample of a run is written (`tfdt`); later ones follow from the durations.
    pub dts: i64,
    /// Duration until the next sample's decode time.
    pub duration: u32,
    /// `pts - dts`.
    pub composition_offset: i32,
    /// A sync sample (random access point).
    pub keyframe: bool,
    /// The payload, written to `mdat` as is.
    pub data: Bytes,
}

/// The samples of one track in a fragment.
#[derive(Debug, Clone, Copy)]
pub struct TrackRun<'a> {
    /// [`VIDEO_TRACK_ID`] or [`AUDIO_TRACK_ID`].
    pub track_id: u32,
    /// The samples in decode order.
    pub samples: &'a [Sample],
}

// ---------------------------------------------------------------------------------------------------------------
// Box writing
// ---------------------------------------------------------------------------------------------------------------

/// A byte buffer with big-endian writers and size-patched boxes.
#[derive(Default)]
pub(crate) struct W {
    pub(crate) buf: Vec<u8>,
}

impl W {
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    pub(crate) fn zeros(&mut self, n: usize) {
        self.buf.resize(self.buf.len() + n, 0);
    }

    /// Opens a box; returns its start for [`W::end`].
    pub(crate) fn start(&mut self, typ: &[u8; 4]) -> usize {
        let pos = self.buf.len();
        self.u32(0);
        self.bytes(typ);
        pos
    }

    /// Opens a full box (version and flags).
    pub(crate) fn start_full(&mut self, typ: &[u8; 4], version: u8, flags: u32) -> usize {
        let pos = self.start(typ);
        self.u32(u32::from(version) << 24 | (flags & 0x00ff_ffff));
        pos
    }

    /// Closes the box opened at `pos` by writing its size.
    pub(crate) fn end(&mut self, pos: usize) -> Result<(), Fmp4Error> {
        let size = u32::try_from(self.buf.len() - pos).map_err(|_| Fmp4Error::TooLarge)?;
        self.buf[pos..pos + 4].copy_from_slice(&size.to_be_bytes());
        Ok(())
    }

    /// A box whose body is `body`.
    pub(crate) fn leaf(&mut self, typ: &[u8; 4], body: &[u8]) -> Result<(), Fmp4Error> {
        let pos = self.start(typ);
        self.bytes(body);
        self.end(pos)
    }

    /// The unity transformation matrix of `mvhd` and `tkhd`.
    pub(crate) fn matrix(&mut self) {
        for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
            self.u32(v);
        }
    }

    /// An MPEG-4 descriptor header with the 4-byte length form.
    pub(crate) fn descriptor(&mut self, tag: u8, len: usize) -> Result<(), Fmp4Error> {
        if len >= 1 << 28 {
            return Err(Fmp4Error::TooLarge);
        }
        self.u8(tag);
        for shift in [21, 14, 7] {
            self.u8(0x80 | ((len >> shift) & 0x7f) as u8);
        }
        self.u8((len & 0x7f) as u8);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Init segment
// ---------------------------------------------------------------------------------------------------------------

/// The brands of `ftyp` and `styp`: ISO BMFF v6, CMAF, ISO v5, DASH and MP4 v1 (for older players).
const BRANDS: [&[u8; 4]; 5] = [b"iso6", b"cmfc", b"iso5", b"dash", b"mp41"];

fn brands(w: &mut W, typ: &[u8; 4]) -> Result<(), Fmp4Error> {
    let pos = w.start(typ);
    w.bytes(b"iso6");
    w.u32(0);
    for b in BRANDS {
        w.bytes(b);
    }
    w.end(pos)
}

/// `styp` box for the start of a CMAF segment (an optional prefix of the segment's first fragment). Brands as in
/// the init segment's `ftyp`, plus `msdh`/`msix` for DASH media segments.
pub fn segment_type() -> Bytes {
    let mut w = W::default();
    let pos = w.start(b"styp");
    w.bytes(b"msdh");
    w.u32(0);
    for b in BRANDS.into_iter().chain([b"msdh", b"msix"]) {
        w.bytes(b);
    }
    // A 40-byte box always fits.
    let _ = w.end(pos);
    Bytes::from(w.buf)
}

/// Writes the initialization segment: `ftyp` (CMAF brands `iso6`, `cmfc`, `iso5`, `dash`, `mp41`) and `moov`
/// (`mvhd`; a `trak` per track with `tkhd`, `mdia`/`mdhd`/`hdlr`/`minf` and an `stbl` holding the sample entry and
/// empty `stts`/`stsc`/`stsz`/`stco`; `mvex` with a `trex` per track). The video track gets id 1, the audio track
/// id 2, whichever of them is present.
///
/// Sample entries: `avc1`+`avcC`, `hvc1`+`hvcC`, `av01`+`av1C`, `vp09`+`vpcC`, `mp4a`+`esds` (AAC, and MP3 with
/// object type indication 0x6B), `Opus`+`dOps` (from the OpusHead, or stereo 48 kHz when it is empty). Picture size
/// comes from `TrackInfo::video` (0×0 when unknown, e.g. VP9 — decoders read it from the bitstream).
pub fn init_segment(video: Option<&TrackInfo>, audio: Option<&TrackInfo>) -> Result<Bytes, Fmp4Error> {
    if video.is_none() && audio.is_none() {
        return Err(Fmp4Error::Empty);
    }
    if let Some(v) = video.filter(|v| v.media != MediaType::Video) {
        return Err(Fmp4Error::WrongMediaType(v.media));
    }
    if let Some(a) = audio.filter(|a| a.media != MediaType::Audio) {
        return Err(Fmp4Error::WrongMediaType(a.media));
    }
    let mut w = W::default();
    brands(&mut w, b"ftyp")?;
    let moov = w.start(b"moov");

    let mvhd = w.start_full(b"mvhd", 0, 0);
    w.u32(0); // creation_time
    w.u32(0); // modification_time
    w.u32(1000); // timescale
    w.u32(0); // duration: unknown (fragmented)
    w.u32(0x0001_0000); // rate 1.0
    w.u16(0x0100); // volume 1.0
    w.zeros(10);
    w.matrix();
    w.zeros(24); // pre_defined
    w.u32(AUDIO_TRACK_ID + 1); // next_track_ID
    w.end(mvhd)?;

    if let Some(v) = video {
        trak(&mut w, VIDEO_TRACK_ID, v)?;
    }
    if let Some(a) = audio {
        trak(&mut w, AUDIO_TRACK_ID, a)?;
    }

    let mvex = w.start(b"mvex");
    for (id, present) in [(VIDEO_TRACK_ID, video.is_some()), (AUDIO_TRACK_ID, audio.is_some())] {
        if present {
            let trex = w.start_full(b"trex", 0, 0);
            w.u32(id);
            w.u32(1); // default_sample_description_index
            w.u32(0); // default_sample_duration
            w.u32(0); // default_sample_size
            w.u32(0); // default_sample_flags
            w.end(trex)?;
        }
    }
    w.end(mvex)?;
    w.end(moov)?;
    Ok(Bytes::from(w.buf))
}

fn trak(w: &mut W, track_id: u32, track: &TrackInfo) -> Result<(), Fmp4Error> {
    let is_video = track.media == MediaType::Video;
    let (width, height) = track.video.as_ref().map(|v| (v.width, v.height)).unwrap_or((0, 0));
    let trak = w.start(b"trak");

    let tkhd = w.start_full(b"tkhd", 0, 0x3); // enabled, in movie
    w.u32(0); // creation_time
    w.u32(0); // modification_time
    w.u32(track_id);
    w.u32(0); // reserved
    w.u32(0); // duration
    w.zeros(8);
    w.u16(0); // layer
    w.u16(0); // alternate_group
    w.u16(if is_video { 0 } else { 0x0100 }); // volume
    w.u16(0);
    w.matrix();
    w.u32(width.min(0xffff) << 16);
    w.u32(height.min(0xffff) << 16);
    w.end(tkhd)?;

    let mdia = w.start(b"mdia");
    let mdhd = w.start_full(b"mdhd", 0, 0);
    w.u32(0);
    w.u32(0);
    w.u32(timescale(track));
    w.u32(0); // duration
    w.u16(0x55c4); // language "und"
    w.u16(0);
    w.end(mdhd)?;

    let hdlr = w.start_full(b"hdlr", 0, 0);
    w.u32(0); // pre_defined
    w.bytes(if is_video { b"vide" } else { b"soun" });
    w.zeros(12);
    w.bytes(if is_video { b"VideoHandler\0" } else { b"SoundHandler\0" });
    w.end(hdlr)?;

    let minf = w.start(b"minf");
    if is_video {
        let vmhd = w.start_full(b"vmhd", 0, 1);
        w.zeros(8); // graphicsmode, opcolor
        w.end(vmhd)?;
    } else {
        let smhd = w.start_full(b"smhd", 0, 0);
        w.zeros(4); // balance, reserved
        w.end(smhd)?;
    }
    let dinf = w.start(b"dinf");
    let dref = w.start_full(b"dref", 0, 0);
    w.u32(1);
    let url = w.start_full(b"url ", 0, 1); // media in the same file
    w.end(url)?;
    w.end(dref)?;
    w.end(dinf)?;

    let stbl = w.start(b"stbl");
    let stsd = w.start_full(b"stsd", 0, 0);
    w.u32(1);
    sample_entry(w, track, width, height)?;
    w.end(stsd)?;
    for typ in [b"stts", b"stsc", b"stco"] {
        let pos = w.start_full(typ, 0, 0);
        w.u32(0); // entry_count
        w.end(pos)?;
    }
    let stsz = w.start_full(b"stsz", 0, 0);
    w.u32(0); // sample_size
    w.u32(0); // sample_count
    w.end(stsz)?;
    w.end(stbl)?;
    w.end(minf)?;
    w.end(mdia)?;
    w.end(trak)
}

/// The common start of a visual sample entry (ISO/IEC 14496-12 §12.1.3).
fn visual_entry(w: &mut W, typ: &[u8; 4], width: u32, height: u32) -> usize {
    let pos = w.start(typ);
    w.zeros(6);
    w.u16(1); // data_reference_index
    w.zeros(16); // pre_defined, reserved, pre_defined[3]
    w.u16(width.min(0xffff) as u16);
    w.u16(height.min(0xffff) as u16);
    w.u32(0x0048_0000); // 72 dpi
    w.u32(0x0048_0000);
    w.u32(0);
    w.u16(1); // frame_count
    w.zeros(32); // compressorname
    w.u16(0x0018); // depth
    w.u16(0xffff); // pre_defined = -1
    pos
}

/// The common start of an audio sample entry (ISO/IEC 14496-12 §12.2.3, version 0).
fn audio_entry(w: &mut W, typ: &[u8; 4], channels: u8, sample_rate: u32) -> usize {
    let pos = w.start(typ);
    w.zeros(6);
    w.u16(1); // data_reference_index
    w.zeros(8);
    w.u16(u16::from(channels));
    w.u16(16); // samplesize
    w.u32(0); // pre_defined, reserved
    w.u32(if sample_rate <= 0xffff { sample_rate << 16 } else { 0 });
    pos
}

fn require_config(track: &TrackInfo, what: &'static str) -> Result<(), Fmp4Error> {
    if track.config.is_empty() { Err(Fmp4Error::BadConfig(what)) } else { Ok(()) }
}

/// The `vpcC` box body (version 1 full box header + VPCodecConfigurationRecord). The config may be the record
/// alone (Enhanced RTMP) or already carry the full box header.
fn vpcc_body(config: &[u8]) -> Result<Vec<u8>, Fmp4Error> {
    let record_len = |r: &[u8]| r.get(6..8).map(|s| 8 + usize::from(u16::from_be_bytes([s[0], s[1]])));
    if config.len() >= 12 && config[..4] == [1, 0, 0, 0] && record_len(&config[4..]) == Some(config.len() - 4) {
        return Ok(config.to_vec());
    }
    if config.len() < 8 {
        return Err(Fmp4Error::BadConfig("VP9 vpcC"));
    }
    let mut body = vec![1, 0, 0, 0];
    body.extend_from_slice(config);
    Ok(body)
}

fn sample_entry(w: &mut W, track: &TrackInfo, width: u32, height: u32) -> Result<(), Fmp4Error> {
    let (channels, rate) = track.audio.map(|a| (a.channels.max(1), a.sample_rate)).unwrap_or((2, 48_000));
    match track.codec {
        Codec::H264 | Codec::H265 | Codec::Av1 => {
            let (entry, cfg, what): (&[u8; 4], &[u8; 4], _) = match track.codec {
                Codec::H264 => (b"avc1", b"avcC", "H.264 avcC"),
                Codec::H265 => (b"hvc1", b"hvcC", "H.265 hvcC"),
                _ => (b"av01", b"av1C", "AV1 av1C"),
            };
            require_config(track, what)?;
            let pos = visual_entry(w, entry, width, height);
            w.leaf(cfg, &track.config)?;
            w.end(pos)
        }
        Codec::Vp9 => {
            let body = vpcc_body(&track.config)?;
            let pos = visual_entry(w, b"vp09", width, height);
            w.leaf(b"vpcC", &body)?;
            w.end(pos)
        }
        Codec::Aac | Codec::Mp3 => {
            let (oti, dsi): (u8, &[u8]) = if track.codec == Codec::Aac {
                require_config(track, "AAC AudioSpecificConfig")?;
                (0x40, &track.config)
            } else {
                (0x6b, &[])
            };
            let pos = audio_entry(w, b"mp4a", channels, rate);
            let esds = w.start_full(b"esds", 0, 0);
            let dsi_len = if dsi.is_empty() { 0 } else { 5 + dsi.len() };
            let dcd_len = 13 + dsi_len;
            w.descriptor(0x03, 3 + 5 + dcd_len + 5 + 1)?; // ES_Descriptor
            w.u16(0); // ES_ID
            w.u8(0); // flags
            w.descriptor(0x04, dcd_len)?; // DecoderConfigDescriptor
            w.u8(oti);
            w.u8(0x15); // streamType audio (5) << 2 | reserved 1
            w.bytes(&[0, 0, 0]); // bufferSizeDB
            w.u32(0); // maxBitrate
            w.u32(0); // avgBitrate
            if !dsi.is_empty() {
                w.descriptor(0x05, dsi.len())?; // DecoderSpecificInfo
                w.bytes(dsi);
            }
            w.descriptor(0x06, 1)?; // SLConfigDescriptor
            w.u8(0x02);
            w.end(esds)?;
            w.end(pos)
        }
        Codec::Opus => {
            let dops = if track.config.is_empty() {
                vec![0, 2, 0, 0, 0, 0, 0xbb, 0x80, 0, 0, 0]
            } else {
                codec::parse_opus_config(&track.config).map_err(|_| Fmp4Error::BadConfig("OpusHead"))?.to_dops()
            };
            let channels = dops.get(1).copied().unwrap_or(2);
            let pos = audio_entry(w, b"Opus", channels, 48_000);
            w.leaf(b"dOps", &dops)?;
            w.end(pos)
        }
        Codec::Vp8 | Codec::G711A | Codec::G711U => Err(Fmp4Error::UnsupportedCodec(track.codec)),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Fragments
// ---------------------------------------------------------------------------------------------------------------

/// `sample_flags` of a sync sample: `sample_depends_on` = 2 (does not depend on others).
pub const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
/// `sample_flags` of a non-sync sample: `sample_depends_on` = 1, `sample_is_non_sync_sample` = 1.
pub const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;

const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
const TRUN_DATA_OFFSET: u32 = 0x001;
const TRUN_DURATION: u32 = 0x100;
const TRUN_SIZE: u32 = 0x200;
const TRUN_FLAGS: u32 = 0x400;
const TRUN_COMPOSITION: u32 = 0x800;

/// Writes one fragment: `moof` (`mfhd` with `sequence_number`; a `traf` per non-empty run with `tfhd`
/// default-base-is-moof, `tfdt` version 1 = the first sample's `dts`, and `trun` version 1 with data offset and
/// per-sample duration, size, flags and — when any is non-zero — signed composition offset) followed by `mdat`.
/// Sample flags: sync samples [`SYNC_SAMPLE_FLAGS`], others [`NON_SYNC_SAMPLE_FLAGS`].
///
/// Returns the fragment as chunks to be written in order (vectored, without copying): first one [`Bytes`] with
/// `moof` and the `mdat` header, then each sample's `data` of each run in order (the samples' own buffers). Their
/// concatenation is the fragment. Empty runs are skipped; if all are empty, [`Fmp4Error::Empty`].
pub fn media_fragment(sequence_number: u32, runs: &[TrackRun<'_>]) -> Result<Vec<Bytes>, Fmp4Error> {
    let runs: Vec<&TrackRun<'_>> = runs.iter().filter(|r| !r.samples.is_empty()).collect();
    if runs.is_empty() {
        return Err(Fmp4Error::Empty);
    }
    let mut w = W::default();
    let moof = w.start(b"moof");
    let mfhd = w.start_full(b"mfhd", 0, 0);
    w.u32(sequence_number);
    w.end(mfhd)?;

    // Positions of the trun data_offset fields and the offsets of their runs' data inside the mdat payload.
    let mut patches: Vec<(usize, u64)> = Vec::with_capacity(runs.len());
    let mut payload_len: u64 = 0;
    for run in &runs {
        let first = &run.samples[0];
        let base = u64::try_from(first.dts).map_err(|_| Fmp4Error::NegativeTime(first.dts, run.track_id))?;
        let traf = w.start(b"traf");
        let tfhd = w.start_full(b"tfhd", 0, TFHD_DEFAULT_BASE_IS_MOOF);
        w.u32(run.track_id);
        w.end(tfhd)?;
        let tfdt = w.start_full(b"tfdt", 1, 0);
        w.u64(base);
        w.end(tfdt)?;

        let with_cto = run.samples.iter().any(|s| s.composition_offset != 0);
        let mut flags = TRUN_DATA_OFFSET | TRUN_DURATION | TRUN_SIZE | TRUN_FLAGS;
        if with_cto {
            flags |= TRUN_COMPOSITION;
        }
        let trun = w.start_full(b"trun", 1, flags);
        w.u32(u32::try_from(run.samples.len()).map_err(|_| Fmp4Error::TooLarge)?);
        patches.push((w.buf.len(), payload_len));
        w.u32(0); // data_offset, patched below
        for s in run.samples {
            let size = u32::try_from(s.data.len()).map_err(|_| Fmp4Error::TooLarge)?;
            payload_len += u64::from(size);
            w.u32(s.duration);
            w.u32(size);
            w.u32(if s.keyframe { SYNC_SAMPLE_FLAGS } else { NON_SYNC_SAMPLE_FLAGS });
            if with_cto {
                w.buf.extend_from_slice(&s.composition_offset.to_be_bytes());
            }
        }
        w.end(trun)?;
        w.end(traf)?;
    }
    w.end(moof)?;
    let moof_len = w.buf.len() as u64;

    // mdat: a 32-bit size when it fits, else the 64-bit largesize form.
    let mdat_header: u64 = if payload_len + 8 <= u64::from(u32::MAX) { 8 } else { 16 };
    for (pos, offset) in patches {
        let data_offset = i32::try_from(moof_len + mdat_header + offset).map_err(|_| Fmp4Error::TooLarge)?;
        w.buf[pos..pos + 4].copy_from_slice(&data_offset.to_be_bytes());
    }
    if mdat_header == 8 {
        w.u32((payload_len + 8) as u32);
        w.bytes(b"mdat");
    } else {
        w.u32(1);
        w.bytes(b"mdat");
        w.u64(payload_len + 16);
    }

    let mut out = Vec::with_capacity(1 + runs.iter().map(|r| r.samples.len()).sum::<usize>());
    out.push(Bytes::from(w.buf));
    for run in &runs {
        out.extend(run.samples.iter().map(|s| s.data.clone()));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------------------------
// Samples from hub frames
// ---------------------------------------------------------------------------------------------------------------

/// The duration of one frame when nothing better is known: AAC 1024 samples (2048 with SBR, 960 with the short
/// frame length), Opus 960 (20 ms), MP3 1152, video 1/25 s, anything else 20 ms.
fn default_duration(track: &TrackInfo, timescale: u32) -> u32 {
    match track.codec {
        Codec::Aac => codec::parse_aac_config(&track.config)
            .map(|c| u32::from(c.frame_length) * if c.sbr { 2 } else { 1 })
            .unwrap_or(1024),
        Codec::Opus => 960,
        Codec::Mp3 => 1152,
        _ if track.media == MediaType::Video => timescale / 25,
        _ => timescale / 50,
    }
}

/// Converts a run of one track's hub frames (in decode order) to samples in the track's [`timescale`].
///
/// Each sample's `dts` is the frame's own `dts` rescaled (so there is no cumulative rounding drift), its
/// composition offset the rescaled `pts` minus that, and its duration the next sample's `dts` minus its own. The
/// last sample's duration comes from `next_dts` — the decode time of the frame that will follow, in the frames'
/// timebase — if given, else the previous sample's duration, else a per-codec default (AAC 1024 samples, Opus
/// 960, video 1/25 s). Negative durations (timestamps going backwards) become 0.
pub fn samples_from_frames(track: &TrackInfo, frames: &[Frame], next_dts: Option<i64>) -> Vec<Sample> {
    let ts = timescale(track);
    let to_ts = |value: i64, timebase: u32| rescale(value, timebase, ts);
    let mut out: Vec<Sample> = Vec::with_capacity(frames.len());
    for (i, frame) in frames.iter().enumerate() {
        let dts = to_ts(frame.dts, frame.timebase);
        let next = match frames.get(i + 1) {
            Some(n) => Some(to_ts(n.dts, n.timebase)),
            None => next_dts.map(|n| to_ts(n, frame.timebase)),
        };
        let duration = match next {
            Some(n) => n.saturating_sub(dts).clamp(0, i64::from(u32::MAX)) as u32,
            None => out.last().map(|s| s.duration).unwrap_or_else(|| default_duration(track, ts)),
        };
        let cto = to_ts(frame.pts, frame.timebase).saturating_sub(dts);
        out.push(Sample {
            dts,
            duration,
            composition_offset: cto.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
            keyframe: frame.keyframe,
            data: frame.data.clone(),
        });
    }
    out
}

// ---------------------------------------------------------------------------------------------------------------
// Codec strings
// ---------------------------------------------------------------------------------------------------------------

/// The RFC 6381 codec string of a track for HLS `CODECS` and DASH `@codecs`: `avc1.64001f`, `hvc1.1.6.L93.B0`,
/// `av01.0.08M.08`, `vp09.00.10.08`, `mp4a.40.2` (`.5` for HE-AAC, `.29` for HE-AAC v2), `mp4a.40.34` (MP3),
/// `opus`. `None` for codecs that cannot be written to fMP4 or when the configuration cannot be read.
pub fn codec_string(track: &TrackInfo) -> Option<String> {
    match track.codec {
        Codec::H264 | Codec::H265 | Codec::Av1 => {
            if let Some(v) = &track.video {
                return Some(v.codec_string.clone());
            }
            match track.codec {
                Codec::H264 => codec::parse_avc_config(&track.config).ok().map(|v| v.codec_string),
                Codec::H265 => codec::parse_hevc_config(&track.config).ok().map(|v| v.codec_string),
                _ => codec::parse_av1_config(&track.config).ok().map(|v| v.codec_string).or_else(|| {
                    // An av1C without configOBUs still has the profile, level, tier and bit depth.
                    let (b1, b2) = (*track.config.get(1)?, *track.config.get(2)?);
                    let tier = if b2 & 0x80 != 0 { 'H' } else { 'M' };
                    let depth = match (b2 & 0x40 != 0, b2 & 0x20 != 0) {
                        (false, _) => 8,
                        (true, false) => 10,
                        (true, true) => 12,
                    };
                    Some(format!("av01.{}.{:02}{tier}.{depth:02}", b1 >> 5, b1 & 0x1f))
                }),
            }
        }
        Codec::Vp9 => {
            let body = vpcc_body(&track.config).ok()?;
            let (profile, level, bit_depth) = (body[4], body[5], body[6] >> 4);
            Some(format!("vp09.{profile:02}.{level:02}.{bit_depth:02}"))
        }
        Codec::Aac => {
            let c = codec::parse_aac_config(&track.config).ok()?;
            let aot = if c.ps {
                29
            } else if c.sbr {
                5
            } else {
                c.object_type
            };
            Some(format!("mp4a.40.{aot}"))
        }
        Codec::Mp3 => Some("mp4a.40.34".to_owned()),
        Codec::Opus => Some("opus".to_owned()),
        Codec::Vp8 | Codec::G711A | Codec::G711U => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrocast_media::{AudioParams, VideoParams};
    use std::path::{Path, PathBuf};
    use std::process::Command;

    // -----------------------------------------------------------------------------------------------------------
    // A tiny box walker
    // -----------------------------------------------------------------------------------------------------------

    /// Splits `data` into `(type, body)` boxes, asserting every size is consistent.
    fn boxes(mut data: &[u8]) -> Vec<([u8; 4], &[u8])> {
        let mut out = Vec::new();
        while !data.is_empty() {
            assert!(data.len() >= 8, "truncated box header");
            let size = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
            let typ: [u8; 4] = data[4..8].try_into().unwrap();
            let (header, size) = match size {
                1 => (16, u64::from_be_bytes(data[8..16].try_into().unwrap()) as usize),
                0 => (8, data.len()),
                s => (8, s),
            };
            assert!(size >= header && size <= data.len(), "bad size {size} of {}", String::from_utf8_lossy(&typ));
            out.push((typ, &data[header..size]));
            data = &data[size..];
        }
        out
    }

    /// The body of the only (first) child box of type `typ`.
    fn child<'a>(data: &'a [u8], typ: &[u8; 4]) -> &'a [u8] {
        boxes(data)
            .into_iter()
            .find(|(t, _)| t == typ)
            .map(|(_, b)| b)
            .unwrap_or_else(|| panic!("no {} box", String::from_utf8_lossy(typ)))
    }

    /// Descends a path of box types, e.g. `["moov", "trak", "mdia"]`.
    fn path<'a>(data: &'a [u8], types: &[&[u8; 4]]) -> &'a [u8] {
        types.iter().fold(data, |d, t| child(d, t))
    }

    fn all<'a>(data: &'a [u8], typ: &[u8; 4]) -> Vec<&'a [u8]> {
        boxes(data).into_iter().filter(|(t, _)| t == typ).map(|(_, b)| b).collect()
    }

    fn be32(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn be64(b: &[u8], at: usize) -> u64 {
        u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
    }

    /// The sample entry inside `stsd`: (type, children after the fixed part).
    fn sample_entry_of(stbl: &[u8]) -> ([u8; 4], &[u8]) {
        let stsd = child(stbl, b"stsd");
        assert_eq!(be32(stsd, 4), 1);
        let entries = boxes(&stsd[8..]);
        assert_eq!(entries.len(), 1);
        let (typ, body) = entries[0];
        let fixed = match &typ {
            b"mp4a" | b"Opus" => 28,
            _ => 78,
        };
        (typ, &body[fixed..])
    }

    fn hex(s: &str) -> Bytes {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect::<Vec<u8>>().into()
    }

    // Real configuration records (ffmpeg/x264 320x240 High@1.3, AAC LC 44.1 kHz stereo).
    const AVCC: &str = "0164000dffe1001967640016acd94141fb0110000003001000000303c0f1831960010006\
                        68ebe3cb22c0";

    fn avc_track() -> TrackInfo {
        let config: String = AVCC.split_whitespace().collect();
        TrackInfo {
            media: MediaType::Video,
            codec: Codec::H264,
            timebase: 1000,
            config: hex(&config),
            video: Some(VideoParams { width: 320, height: 240, codec_string: "avc1.64000d".into() }),
            audio: None,
        }
    }

    fn aac_track() -> TrackInfo {
        TrackInfo::from_config(Codec::Aac, 1000, hex("121056e500")).unwrap()
    }

    fn opus_track(config: Bytes) -> TrackInfo {
        TrackInfo::from_config(Codec::Opus, 1000, config).unwrap()
    }

    // -----------------------------------------------------------------------------------------------------------
    // Unit tests
    // -----------------------------------------------------------------------------------------------------------

    #[test]
    fn timescales() {
        assert_eq!(timescale(&avc_track()), 90_000);
        assert_eq!(timescale(&aac_track()), 44_100);
        assert_eq!(timescale(&opus_track(Bytes::new())), 48_000);
        let mut mp3 = TrackInfo::from_config(Codec::Mp3, 1000, Bytes::new()).unwrap();
        assert_eq!(timescale(&mp3), 48_000);
        mp3.audio = Some(AudioParams { sample_rate: 22_050, channels: 1 });
        assert_eq!(timescale(&mp3), 22_050);
    }

    #[test]
    fn init_segment_structure() {
        let init = init_segment(Some(&avc_track()), Some(&aac_track())).unwrap();
        let top = boxes(&init);
        assert_eq!(top.iter().map(|(t, _)| t).collect::<Vec<_>>(), [b"ftyp", b"moov"]);
        let ftyp = top[0].1;
        assert_eq!(&ftyp[..4], b"iso6");
        assert!(ftyp[8..].chunks(4).any(|b| b == b"cmfc"));

        let moov = top[1].1;
        let mvhd = child(moov, b"mvhd");
        assert_eq!(mvhd.len(), 100);
        assert_eq!(be32(mvhd, 96), 3); // next_track_ID
        let traks = all(moov, b"trak");
        assert_eq!(traks.len(), 2);

        // Video track.
        let tkhd = child(traks[0], b"tkhd");
        assert_eq!(be32(tkhd, 12), VIDEO_TRACK_ID);
        assert_eq!((be32(tkhd, 76) >> 16, be32(tkhd, 80) >> 16), (320, 240));
        assert_eq!(be32(path(traks[0], &[b"mdia", b"mdhd"]), 12), 90_000);
        assert_eq!(&path(traks[0], &[b"mdia", b"hdlr"])[8..12], b"vide");
        let minf = path(traks[0], &[b"mdia", b"minf"]);
        child(minf, b"vmhd");
        assert_eq!(be32(path(minf, &[b"dinf", b"dref"]), 4), 1);
        let stbl = child(minf, b"stbl");
        for t in [b"stts", b"stsc", b"stco"] {
            assert_eq!(child(stbl, t), [0, 0, 0, 0, 0, 0, 0, 0]);
        }
        assert_eq!(child(stbl, b"stsz").len(), 12);
        let (typ, rest) = sample_entry_of(stbl);
        assert_eq!(&typ, b"avc1");
        assert_eq!(child(rest, b"avcC"), &avc_track().config[..]);

        // Audio track.
        let tkhd = child(traks[1], b"tkhd");
        assert_eq!(be32(tkhd, 12), AUDIO_TRACK_ID);
        assert_eq!(be32(path(traks[1], &[b"mdia", b"mdhd"]), 12), 44_100);
        assert_eq!(&path(traks[1], &[b"mdia", b"hdlr"])[8..12], b"soun");
        let stbl = path(traks[1], &[b"mdia", b"minf", b"stbl"]);
        child(path(traks[1], &[b"mdia", b"minf"]), b"smhd");
        let stsd = child(stbl, b"stsd");
        let entry = boxes(&stsd[8..])[0].1;
        assert_eq!(u16::from_be_bytes([entry[16], entry[17]]), 2); // channelcount
        assert_eq!(be32(entry, 24) >> 16, 44_100);
        let (typ, rest) = sample_entry_of(stbl);
        assert_eq!(&typ, b"mp4a");
        let esds = child(rest, b"esds");
        // ES_Descriptor > DecoderConfigDescriptor (OTI 0x40) > DecoderSpecificInfo = the ASC.
        assert_eq!(esds[4], 0x03);
        assert_eq!(esds[12], 0x04);
        assert_eq!(esds[17], 0x40);
        assert_eq!(esds[30], 0x05);
        assert_eq!(&esds[35..40], &hex("121056e500")[..]);
        assert_eq!(&esds[40..], [0x06, 0x80, 0x80, 0x80, 1, 2]);
        assert_eq!(esds[5..9], [0x80, 0x80, 0x80, (esds.len() - 9) as u8]);

        let trex = all(child(moov, b"mvex"), b"trex");
        assert_eq!(trex.iter().map(|t| be32(t, 4)).collect::<Vec<_>>(), [1, 2]);
        assert!(trex.iter().all(|t| be32(t, 8) == 1));
    }

    #[test]
    fn init_segment_other_codecs() {
        // Audio only, Opus with an empty config: stereo 48 kHz, audio keeps track id 2.
        let init = init_segment(None, Some(&opus_track(Bytes::new()))).unwrap();
        let moov = child(&init, b"moov");
        let trak = child(moov, b"trak");
        assert_eq!(be32(child(trak, b"tkhd"), 12), AUDIO_TRACK_ID);
        let (typ, rest) = sample_entry_of(path(trak, &[b"mdia", b"minf", b"stbl"]));
        assert_eq!(&typ, b"Opus");
        assert_eq!(child(rest, b"dOps"), hex("0002000000 00bb80000000".replace(' ', "").as_str()));
        // Opus with an Ogg OpusHead becomes its dOps form.
        let init = init_segment(None, Some(&opus_track(hex("4f707573486561640102380180bb0000000000")))).unwrap();
        let stbl = path(&init, &[b"moov", b"trak", b"mdia", b"minf", b"stbl"]);
        assert_eq!(child(sample_entry_of(stbl).1, b"dOps"), &hex("000201380000bb80000000")[..]);

        // MP3: mp4a with OTI 0x6B and no DecoderSpecificInfo.
        let mut mp3 = TrackInfo::from_config(Codec::Mp3, 1000, Bytes::new()).unwrap();
        mp3.audio = Some(AudioParams { sample_rate: 44_100, channels: 2 });
        let init = init_segment(None, Some(&mp3)).unwrap();
        let stbl = path(&init, &[b"moov", b"trak", b"mdia", b"minf", b"stbl"]);
        let esds = child(sample_entry_of(stbl).1, b"esds");
        assert_eq!(esds[17], 0x6b);
        assert_eq!(esds[30], 0x06);

        // VP9 with the bare record and with the full box header: same vpcC.
        let record = hex("000a80020202 0000".replace(' ', "").as_str());
        let vp9 = TrackInfo::from_config(Codec::Vp9, 1000, record.clone()).unwrap();
        let init = init_segment(Some(&vp9), None).unwrap();
        let stbl = path(&init, &[b"moov", b"trak", b"mdia", b"minf", b"stbl"]);
        let (typ, rest) = sample_entry_of(stbl);
        assert_eq!(&typ, b"vp09");
        let vpcc = child(rest, b"vpcC").to_vec();
        assert_eq!(&vpcc[..4], [1, 0, 0, 0]);
        assert_eq!(&vpcc[4..], &record[..]);
        let vp9_full = TrackInfo::from_config(Codec::Vp9, 1000, Bytes::from(vpcc.clone())).unwrap();
        let init2 = init_segment(Some(&vp9_full), None).unwrap();
        assert_eq!(init, init2);
        assert_eq!(codec_string(&vp9).as_deref(), Some("vp09.00.10.08"));

        // H.265 / AV1: config copied into hvcC / av1C.
        for (codec, entry, cfg) in [(Codec::H265, b"hvc1", b"hvcC"), (Codec::Av1, b"av01", b"av1C")] {
            let t = TrackInfo {
                media: MediaType::Video,
                codec,
                timebase: 1000,
                config: Bytes::from_static(&[1, 2, 3, 4]),
                video: Some(VideoParams { width: 1920, height: 1080, codec_string: "x".into() }),
                audio: None,
            };
            let init = init_segment(Some(&t), None).unwrap();
            let stbl = path(&init, &[b"moov", b"trak", b"mdia", b"minf", b"stbl"]);
            let (typ, rest) = sample_entry_of(stbl);
            assert_eq!(&typ, entry);
            assert_eq!(child(rest, cfg), [1, 2, 3, 4]);
        }
    }

    #[test]
    fn init_segment_errors() {
        assert_eq!(init_segment(None, None), Err(Fmp4Error::Empty));
        assert_eq!(init_segment(Some(&aac_track()), None), Err(Fmp4Error::WrongMediaType(MediaType::Audio)));
        assert_eq!(init_segment(None, Some(&avc_track())), Err(Fmp4Error::WrongMediaType(MediaType::Video)));
        let vp8 = TrackInfo::from_config(Codec::Vp8, 1000, Bytes::new()).unwrap();
        assert_eq!(init_segment(Some(&vp8), None), Err(Fmp4Error::UnsupportedCodec(Codec::Vp8)));
        let mut avc = avc_track();
        avc.config = Bytes::new();
        assert!(matches!(init_segment(Some(&avc), None), Err(Fmp4Error::BadConfig(_))));
        let mut opus = opus_track(Bytes::new());
        opus.config = Bytes::from_static(b"OpusHead");
        assert!(matches!(init_segment(None, Some(&opus)), Err(Fmp4Error::BadConfig(_))));
        let vp9 = TrackInfo::from_config(Codec::Vp9, 1000, Bytes::from_static(&[0, 1])).unwrap();
        assert!(matches!(init_segment(Some(&vp9), None), Err(Fmp4Error::BadConfig(_))));
    }

    fn sample(dts: i64, duration: u32, cto: i32, keyframe: bool, data: &'static [u8]) -> Sample {
        Sample { dts, duration, composition_offset: cto, keyframe, data: Bytes::from_static(data) }
    }

    #[test]
    fn fragment_fields() {
        let video = [
            sample(90_000, 3600, 7200, true, b"key"),
            sample(93_600, 3600, -3600, false, b"p1"),
            sample(97_200, 3600, 0, false, b"b"),
        ];
        let audio = [sample(1 << 33, 1024, 0, true, b"aa"), sample((1 << 33) + 1024, 1024, 0, true, b"aaa")];
        let chunks = media_fragment(
            7,
            &[
                TrackRun { track_id: VIDEO_TRACK_ID, samples: &video },
                TrackRun { track_id: 3, samples: &[] },
                TrackRun { track_id: AUDIO_TRACK_ID, samples: &audio },
            ],
        )
        .unwrap();
        // Header chunk, then the payloads themselves (same buffers, no copy).
        assert_eq!(chunks.len(), 6);
        assert_eq!(chunks[1].as_ptr(), video[0].data.as_ptr());
        assert_eq!(chunks[5].as_ptr(), audio[1].data.as_ptr());
        let frag: Vec<u8> = chunks.concat();
        let top = boxes(&frag);
        assert_eq!(top.iter().map(|(t, _)| t).collect::<Vec<_>>(), [b"moof", b"mdat"]);
        assert_eq!(top[1].1, b"keyp1baaaaa");
        let mdat_start = frag.len() - top[1].1.len();

        let moof = top[0].1;
        assert_eq!(child(moof, b"mfhd"), [0, 0, 0, 0, 0, 0, 0, 7]);
        let trafs = all(moof, b"traf");
        assert_eq!(trafs.len(), 2);

        // Video traf.
        let tfhd = child(trafs[0], b"tfhd");
        assert_eq!(be32(tfhd, 0), 0x0002_0000);
        assert_eq!(be32(tfhd, 4), VIDEO_TRACK_ID);
        let tfdt = child(trafs[0], b"tfdt");
        assert_eq!(tfdt[0], 1);
        assert_eq!(be64(tfdt, 4), 90_000);
        let trun = child(trafs[0], b"trun");
        assert_eq!(be32(trun, 0), 0x0100_0f01); // version 1, all per-sample fields
        assert_eq!(be32(trun, 4), 3);
        assert_eq!(be32(trun, 8) as usize, mdat_start); // moof starts at 0
        let entries: Vec<[u32; 4]> =
            trun[12..].chunks(16).map(|e| [be32(e, 0), be32(e, 4), be32(e, 8), be32(e, 12)]).collect();
        assert_eq!(
            entries,
            [
                [3600, 3, SYNC_SAMPLE_FLAGS, 7200],
                [3600, 2, NON_SYNC_SAMPLE_FLAGS, (-3600i32) as u32],
                [3600, 1, NON_SYNC_SAMPLE_FLAGS, 0],
            ]
        );

        // Audio traf: no composition offsets, data offset after the video payload.
        assert_eq!(be32(child(trafs[1], b"tfhd"), 4), AUDIO_TRACK_ID);
        assert_eq!(be64(child(trafs[1], b"tfdt"), 4), 1 << 33);
        let trun = child(trafs[1], b"trun");
        assert_eq!(be32(trun, 0), 0x0100_0701);
        assert_eq!(be32(trun, 8) as usize, mdat_start + 6);
        assert_eq!(&frag[mdat_start + 6..], b"aaaaa");
        assert_eq!(trun.len(), 12 + 2 * 12);
        assert_eq!((be32(trun, 12), be32(trun, 16), be32(trun, 20)), (1024, 2, SYNC_SAMPLE_FLAGS));
    }

    #[test]
    fn fragment_errors() {
        assert_eq!(media_fragment(1, &[]), Err(Fmp4Error::Empty));
        assert_eq!(media_fragment(1, &[TrackRun { track_id: 1, samples: &[] }]), Err(Fmp4Error::Empty));
        let s = [sample(-1, 1, 0, true, b"x")];
        assert_eq!(media_fragment(1, &[TrackRun { track_id: 1, samples: &s }]), Err(Fmp4Error::NegativeTime(-1, 1)));
    }

    #[test]
    fn styp() {
        let styp = segment_type();
        let top = boxes(&styp);
        assert_eq!(top.len(), 1);
        assert_eq!(&top[0].0, b"styp");
        assert!(top[0].1.chunks(4).any(|b| b == b"cmfc"));
        assert!(top[0].1.chunks(4).any(|b| b == b"msdh"));
    }

    fn frame(track: &TrackInfo, timebase: u32, dts: i64, pts: i64, keyframe: bool) -> Frame {
        Frame { media: track.media, codec: track.codec, timebase, dts, pts, keyframe, data: Bytes::new() }
    }

    #[test]
    fn samples_have_no_drift() {
        // AAC at 44.1 kHz with millisecond timestamps (each frame is 23.2199... ms).
        let aac = aac_track();
        let frames: Vec<Frame> = (0..1000i64)
            .map(|i| {
                let ms = i * 1024 * 1000 / 44_100;
                frame(&aac, 1000, ms, ms, true)
            })
            .collect();
        let samples = samples_from_frames(&aac, &frames, Some(1000 * 1024 * 1000 / 44_100));
        for (f, s) in frames.iter().zip(&samples) {
            assert_eq!(s.dts, f.dts * 44_100 / 1000);
        }
        for w in samples.windows(2) {
            assert_eq!(w[0].dts + i64::from(w[0].duration), w[1].dts);
            assert!((1000..=1060).contains(&w[0].duration));
        }
        let total: i64 = samples.iter().map(|s| i64::from(s.duration)).sum();
        assert_eq!(total, (1000 * 1024 * 1000 / 44_100) * 44_100 / 1000);

        // Without next_dts the last duration repeats the previous one; a single frame gets the codec default.
        let samples = samples_from_frames(&aac, &frames[..3], None);
        assert_eq!(samples[2].duration, samples[1].duration);
        assert_eq!(samples_from_frames(&aac, &frames[..1], None)[0].duration, 1024);
        assert_eq!(samples_from_frames(&opus_track(Bytes::new()), &frames[..1], None)[0].duration, 960);

        // Video: 1000 -> 90000 with B-frames, composition offsets, keyframes.
        let v = avc_track();
        let frames = [frame(&v, 1000, 0, 80, true), frame(&v, 1000, 40, 160, false), frame(&v, 1000, 80, 120, false)];
        let samples = samples_from_frames(&v, &frames, None);
        let got: Vec<_> = samples.iter().map(|s| (s.dts, s.duration, s.composition_offset, s.keyframe)).collect();
        assert_eq!(got, [(0, 3600, 7200, true), (3600, 3600, 10800, false), (7200, 3600, 3600, false)]);
        assert_eq!(samples_from_frames(&v, &frames[..1], None)[0].duration, 3600);
        // 90 kHz frames pass unchanged; timestamps going backwards give a zero duration.
        let frames = [frame(&v, 90_000, 1001, 1001, true), frame(&v, 90_000, 1000, 1000, false)];
        let samples = samples_from_frames(&v, &frames, Some(4004));
        assert_eq!(samples.iter().map(|s| (s.dts, s.duration)).collect::<Vec<_>>(), [(1001, 0), (1000, 3004)]);
        assert!(samples_from_frames(&v, &[], None).is_empty());
    }

    #[test]
    fn codec_strings() {
        assert_eq!(codec_string(&avc_track()).as_deref(), Some("avc1.64000d"));
        let mut avc = avc_track();
        avc.video = None;
        assert_eq!(codec_string(&avc).as_deref(), Some("avc1.64000d"));
        assert_eq!(codec_string(&aac_track()).as_deref(), Some("mp4a.40.2"));
        // HE-AAC v1 (explicit AOT 5, 22.05 -> 44.1 kHz) and v2 (AOT 29).
        let he = TrackInfo::from_config(Codec::Aac, 1000, hex("2b920800")).unwrap();
        assert_eq!(codec_string(&he).as_deref(), Some("mp4a.40.5"));
        let he2 = TrackInfo::from_config(Codec::Aac, 1000, hex("eb098800")).unwrap();
        assert_eq!(codec_string(&he2).as_deref(), Some("mp4a.40.29"));
        assert_eq!(codec_string(&opus_track(Bytes::new())).as_deref(), Some("opus"));
        let mp3 = TrackInfo::from_config(Codec::Mp3, 1000, Bytes::new()).unwrap();
        assert_eq!(codec_string(&mp3).as_deref(), Some("mp4a.40.34"));
        let vp8 = TrackInfo::from_config(Codec::Vp8, 1000, Bytes::new()).unwrap();
        assert_eq!(codec_string(&vp8), None);
        // AV1 from the av1C header alone (no configOBUs).
        let av1 = TrackInfo::from_config(Codec::Av1, 1000, hex("81084c00")).unwrap();
        assert_eq!(codec_string(&av1).as_deref(), Some("av01.0.08M.10"));
        let av1 = TrackInfo::from_config(Codec::Av1, 1000, hex("81")).unwrap();
        assert_eq!(codec_string(&av1), None);
    }

    // -----------------------------------------------------------------------------------------------------------
    // Integration with ffmpeg: real decoders must accept the output
    // -----------------------------------------------------------------------------------------------------------

    /// Demuxed input: track infos and frames (decode order) per track.
    #[derive(Default)]
    struct Demuxed {
        video: Option<TrackInfo>,
        audio: Option<TrackInfo>,
        vframes: Vec<Frame>,
        aframes: Vec<Frame>,
    }

    fn have_ffmpeg() -> bool {
        let ok = Path::new("/usr/bin/ffmpeg").exists() && Path::new("/usr/bin/ffprobe").exists();
        if !ok {
            eprintln!("ffmpeg/ffprobe not installed: skipping the decoder test");
        }
        ok
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ferrocast-fmp4-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Runs ffmpeg with `args` (plus `-v error -y`); false (with the reason printed) if it fails.
    fn ffmpeg(dir: &Path, args: &[&str]) -> bool {
        let out =
            Command::new("/usr/bin/ffmpeg").current_dir(dir).args(["-v", "error", "-y"]).args(args).output().unwrap();
        if !out.status.success() {
            eprintln!("ffmpeg {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        out.status.success()
    }

    fn read_flv(data: &[u8]) -> Demuxed {
        let m = crate::flv::demux(data).unwrap();
        let (aframes, vframes) = m.frames.into_iter().partition(|f| f.media == MediaType::Audio);
        Demuxed { video: m.video, audio: m.audio, vframes, aframes }
    }

    /// Reads a fragmented MP4 written by ffmpeg (`-movflags frag_keyframe+empty_moov+delay_moov+default_base_moof`;
    /// `delay_moov` so that `av1C` carries the sequence header) with H.264/H.265/AV1/VP9 video and Opus audio:
    /// enough to get sources ffmpeg 5.1 cannot put into FLV.
    fn read_ffmpeg_fmp4(file: &[u8]) -> Demuxed {
        let mut d = Demuxed::default();
        let mut tracks = std::collections::HashMap::new(); // track_id -> (media, codec, timescale)
        let offset_of = |body: &[u8]| body.as_ptr() as usize - file.as_ptr() as usize - 8;
        for (typ, body) in boxes(file) {
            match &typ {
                b"moov" => {
                    for trak in all(body, b"trak") {
                        let id = be32(child(trak, b"tkhd"), if child(trak, b"tkhd")[0] == 1 { 20 } else { 12 });
                        let mdhd = path(trak, &[b"mdia", b"mdhd"]);
                        let ts = be32(mdhd, if mdhd[0] == 1 { 20 } else { 12 });
                        let (entry, rest) = sample_entry_of(path(trak, &[b"mdia", b"minf", b"stbl"]));
                        let (codec, cfg): (Codec, &[u8; 4]) = match &entry {
                            b"avc1" => (Codec::H264, b"avcC"),
                            b"hev1" | b"hvc1" => (Codec::H265, b"hvcC"),
                            b"av01" => (Codec::Av1, b"av1C"),
                            b"vp09" => (Codec::Vp9, b"vpcC"),
                            b"Opus" => (Codec::Opus, b"dOps"),
                            other => panic!("unexpected sample entry {}", String::from_utf8_lossy(other)),
                        };
                        let info = TrackInfo::from_config(codec, ts, Bytes::copy_from_slice(child(rest, cfg))).unwrap();
                        tracks.insert(id, (info.media, codec, ts));
                        match info.media {
                            MediaType::Video => d.video = Some(info),
                            MediaType::Audio => d.audio = Some(info),
                        }
                    }
                }
                b"moof" => {
                    let moof_start = offset_of(body);
                    for traf in all(body, b"traf") {
                        let tfhd = child(traf, b"tfhd");
                        let tf_flags = be32(tfhd, 0) & 0xff_ffff;
                        let id = be32(tfhd, 4);
                        let mut at = 8;
                        let mut base = moof_start;
                        if tf_flags & 0x1 != 0 {
                            base = be64(tfhd, at) as usize;
                            at += 8;
                        }
                        if tf_flags & 0x2 != 0 {
                            at += 4;
                        }
                        let mut defaults = [0u32; 3]; // duration, size, flags
                        for (i, bit) in [0x8, 0x10, 0x20].into_iter().enumerate() {
                            if tf_flags & bit != 0 {
                                defaults[i] = be32(tfhd, at);
                                at += 4;
                            }
                        }
                        let tfdt = child(traf, b"tfdt");
                        let mut dts = if tfdt[0] == 1 { be64(tfdt, 4) as i64 } else { i64::from(be32(tfdt, 4)) };
                        let (media, codec, ts) = tracks[&id];
                        for trun in all(traf, b"trun") {
                            let flags = be32(trun, 0) & 0xff_ffff;
                            let count = be32(trun, 4);
                            let mut at = 8;
                            let mut pos = base;
                            if flags & 0x1 != 0 {
                                pos = (base as i64 + i64::from(be32(trun, at) as i32)) as usize;
                                at += 4;
                            }
                            let mut first_flags = None;
                            if flags & 0x4 != 0 {
                                first_flags = Some(be32(trun, at));
                                at += 4;
                            }
                            for i in 0..count {
                                let mut field = |bit: u32, default: u32| {
                                    if flags & bit != 0 {
                                        at += 4;
                                        be32(trun, at - 4)
                                    } else {
                                        default
                                    }
                                };
                                let duration = field(0x100, defaults[0]);
                                let size = field(0x200, defaults[1]) as usize;
                                let mut sflags = field(0x400, defaults[2]);
                                let cto = field(0x800, 0) as i32;
                                if i == 0 {
                                    sflags = first_flags.unwrap_or(sflags);
                                }
                                let f = Frame {
                                    media,
                                    codec,
                                    timebase: ts,
                                    dts,
                                    pts: dts + i64::from(cto),
                                    keyframe: media == MediaType::Audio || sflags & 0x1_0000 == 0,
                                    data: Bytes::copy_from_slice(&file[pos..pos + size]),
                                };
                                pos += size;
                                dts += i64::from(duration);
                                match media {
                                    MediaType::Video => d.vframes.push(f),
                                    MediaType::Audio => d.aframes.push(f),
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        d
    }

    /// Muxes the input into an init segment followed by one `styp` + fragment per GOP, as a single file.
    fn mux_by_gop(d: &Demuxed) -> Vec<u8> {
        let (video, audio) = (d.video.as_ref().unwrap(), d.audio.as_ref().unwrap());
        let mut out = init_segment(Some(video), Some(audio)).unwrap().to_vec();
        let us = |f: &Frame| rescale(f.dts, f.timebase, 1_000_000);
        let starts: Vec<usize> = (0..d.vframes.len()).filter(|&i| d.vframes[i].keyframe).collect();
        assert_eq!(starts.first(), Some(&0), "the video must start with a keyframe");
        let mut a = 0;
        for (k, &start) in starts.iter().enumerate() {
            let end = starts.get(k + 1).copied().unwrap_or(d.vframes.len());
            let vframes = &d.vframes[start..end];
            let limit = d.vframes.get(end).map(us).unwrap_or(i64::MAX);
            let a_end = a + d.aframes[a..].iter().take_while(|f| us(f) < limit).count();
            let aframes = &d.aframes[a..a_end];
            let vs = samples_from_frames(video, vframes, d.vframes.get(end).map(|f| f.dts));
            let as_ = samples_from_frames(audio, aframes, d.aframes.get(a_end).map(|f| f.dts));
            a = a_end;
            out.extend_from_slice(&segment_type());
            let runs = [
                TrackRun { track_id: VIDEO_TRACK_ID, samples: &vs },
                TrackRun { track_id: AUDIO_TRACK_ID, samples: &as_ },
            ];
            for chunk in media_fragment(k as u32 + 1, &runs).unwrap() {
                out.extend_from_slice(&chunk);
            }
        }
        assert_eq!(a, d.aframes.len(), "every audio frame muxed");
        out
    }

    /// Probes and decodes `file`: no errors, the expected codecs, `video_frames` decoded video frames, audio
    /// lasting about `audio_secs`.
    fn check_decodes(dir: &Path, file: &str, vcodec: &str, acodec: &str, video_frames: u32, audio_secs: f64) {
        let probe = Command::new("/usr/bin/ffprobe")
            .current_dir(dir)
            .args(["-v", "error", "-count_frames", "-show_entries", "stream=codec_name,codec_type,nb_read_frames"])
            .args(["-of", "flat", file])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&probe.stdout);
        let stderr = String::from_utf8_lossy(&probe.stderr);
        assert!(probe.status.success() && stderr.trim().is_empty(), "ffprobe: {stderr}");
        let get = |key: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .map(|v| v.trim_matches('"').to_owned())
                .unwrap_or_else(|| panic!("no {key} in {stdout}"))
        };
        assert_eq!(get("streams.stream.0.codec_type"), "video", "{stdout}");
        assert_eq!(get("streams.stream.0.codec_name"), vcodec);
        assert_eq!(get("streams.stream.0.nb_read_frames"), video_frames.to_string());
        assert_eq!(get("streams.stream.1.codec_type"), "audio");
        assert_eq!(get("streams.stream.1.codec_name"), acodec);

        let decode = Command::new("/usr/bin/ffmpeg")
            .current_dir(dir)
            .args(["-v", "error", "-i", file, "-f", "null", "-"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&decode.stderr);
        assert!(decode.status.success() && stderr.trim().is_empty(), "ffmpeg decode: {stderr}");

        // Audio duration from the packets: last pts + duration - first pts.
        let packets = Command::new("/usr/bin/ffprobe")
            .current_dir(dir)
            .args(["-v", "error", "-select_streams", "a", "-show_entries", "packet=pts_time,duration_time"])
            .args(["-of", "csv=p=0", file])
            .output()
            .unwrap();
        // (Opus packet durations are N/A in ffprobe's mov demuxer: then the last pts step stands in.)
        let times: Vec<(f64, Option<f64>)> = String::from_utf8_lossy(&packets.stdout)
            .lines()
            .filter_map(|l| {
                let (p, d) = l.split_once(',')?;
                Some((p.parse().ok()?, d.trim_end_matches(',').parse().ok()))
            })
            .collect();
        assert!(times.len() > 10, "audio packets: {times:?}");
        let (first, last, before) = (times[0], times[times.len() - 1], times[times.len() - 2]);
        let secs = last.0 + last.1.unwrap_or(last.0 - before.0) - first.0;
        assert!((secs - audio_secs).abs() < 0.1, "audio lasts {secs} s");
    }

    #[test]
    fn ffmpeg_decodes_h264_aac_from_flv() {
        if !have_ffmpeg() {
            return;
        }
        let dir = temp_dir("h264");
        let args = "-f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i sine -t 2 -c:v libx264 -g 25 -bf 2 \
                    -c:a aac -f flv in.flv";
        assert!(ffmpeg(&dir, &args.split_whitespace().collect::<Vec<_>>()));
        let d = read_flv(&std::fs::read(dir.join("in.flv")).unwrap());
        assert_eq!(d.vframes.len(), 50);
        assert!(d.vframes.iter().any(|f| f.pts != f.dts), "B-frames expected");
        assert_eq!(codec_string(d.video.as_ref().unwrap()).as_deref(), Some("avc1.64000d"));
        std::fs::write(dir.join("out.mp4"), mux_by_gop(&d)).unwrap();
        check_decodes(&dir, "out.mp4", "h264", "aac", 50, 2.0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn fragmented_recordings_become_seekable_progressive_mp4s() {
        if !have_ffmpeg() {
            return;
        }
        let dir = temp_dir("progressive");
        let args = "-f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i sine -t 2 -c:v libx264 -g 12 -bf 2 \
                    -c:a aac -f flv in.flv";
        assert!(ffmpeg(&dir, &args.split_whitespace().collect::<Vec<_>>()));
        let d = read_flv(&std::fs::read(dir.join("in.flv")).unwrap());
        let fragmented = mux_by_gop(&d);
        let progressive = crate::mp4file::defragment(&fragmented).unwrap();
        assert_eq!(&progressive[4..8], b"ftyp");
        let moov_at = u32::from_be_bytes(progressive[0..4].try_into().unwrap()) as usize;
        assert_eq!(&progressive[moov_at + 4..moov_at + 8], b"moov", "moov first: seekable without reading the end");
        assert!(!progressive.windows(4).any(|w| w == b"moof"), "no fragments left");
        std::fs::write(dir.join("out.mp4"), &progressive).unwrap();
        check_decodes(&dir, "out.mp4", "h264", "aac", 50, 2.0);
        // Seeking lands on the frame asked for.
        let seek = Command::new("/usr/bin/ffprobe")
            .current_dir(&dir)
            .args(["-v", "error", "-read_intervals", "1.2%+#1", "-select_streams", "v", "-show_entries"])
            .args(["frame=pts_time", "-of", "csv=p=0", "out.mp4"])
            .output()
            .unwrap();
        let t: f64 = String::from_utf8_lossy(&seek.stdout).lines().next().unwrap_or("x").trim().parse().unwrap();
        assert!((0.5..=1.25).contains(&t), "seek to 1.2 s landed at {t}");

        // A recording cut off mid-fragment (kill -9): the complete fragments are kept and still decode.
        let cut = &fragmented[..fragmented.len() - 3000];
        let mut src = cut;
        let scan = crate::mp4file::scan(&mut src, cut.len() as u64).unwrap();
        assert!(scan.complete_len < cut.len() as u64);
        let video_samples: usize = scan.tracks[0].runs.iter().map(Vec::len).sum();
        assert!((36..50).contains(&video_samples), "{video_samples} video samples recovered");
        std::fs::write(dir.join("cut.mp4"), crate::mp4file::defragment(cut).unwrap()).unwrap();
        let probe = Command::new("/usr/bin/ffmpeg")
            .current_dir(&dir)
            .args(["-v", "error", "-i", "cut.mp4", "-f", "null", "-"])
            .output()
            .unwrap();
        assert!(probe.status.success() && probe.stderr.is_empty(), "{}", String::from_utf8_lossy(&probe.stderr));
        assert!(crate::mp4file::defragment(&fragmented[..200]).is_err(), "no fragment: nothing to recover");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Encodes 2 s of test video with `video_args` and Opus audio into ffmpeg's fragmented MP4 (ffmpeg 5.1
    /// cannot write H.265, AV1, VP9 or Opus into FLV: no Enhanced RTMP), reads it back with the test box walker,
    /// remuxes and decodes.
    fn remux_ffmpeg_fmp4(name: &str, video_args: &str, codec_name: &str, prefix: &str) {
        if !have_ffmpeg() {
            return;
        }
        let dir = temp_dir(name);
        let args = format!(
            "-f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i sine=sample_rate=48000 -t 2 {video_args} \
             -c:a libopus -movflags frag_keyframe+empty_moov+delay_moov+default_base_moof -f mp4 in.mp4"
        );
        if !ffmpeg(&dir, &args.split_whitespace().collect::<Vec<_>>()) {
            eprintln!("ffmpeg cannot encode {codec_name}/Opus here: skipping");
            return;
        }
        let d = read_ffmpeg_fmp4(&std::fs::read(dir.join("in.mp4")).unwrap());
        assert_eq!(d.vframes.len(), 50);
        assert_eq!(d.audio.as_ref().map(|a| a.codec), Some(Codec::Opus));
        let cs = codec_string(d.video.as_ref().unwrap()).unwrap();
        assert!(cs.starts_with(prefix), "{cs}");
        std::fs::write(dir.join("out.mp4"), mux_by_gop(&d)).unwrap();
        check_decodes(&dir, "out.mp4", codec_name, "opus", 50, 2.0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ffmpeg_decodes_h265_opus() {
        let x265 = "-c:v libx265 -x265-params log-level=none:keyint=25:min-keyint=25:bframes=2:scenecut=0:open-gop=0";
        remux_ffmpeg_fmp4("h265", x265, "hevc", "hvc1.");
    }

    #[test]
    fn ffmpeg_decodes_av1_opus() {
        remux_ffmpeg_fmp4("av1", "-c:v libaom-av1 -cpu-used 8 -g 25 -b:v 200k", "av1", "av01.");
    }

    #[test]
    fn ffmpeg_decodes_vp9_opus() {
        remux_ffmpeg_fmp4("vp9", "-c:v libvpx-vp9 -deadline realtime -cpu-used 8 -g 25 -b:v 200k", "vp9", "vp09.");
    }
}
