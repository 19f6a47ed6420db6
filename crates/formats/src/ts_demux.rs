//! A sans-IO MPEG-TS demuxer (ISO/IEC 13818-1) for SRT ingest.
//!
//! [`TsDemuxer::push`] takes transport stream bytes in any chunking; [`TsDemuxer::next_event`] yields what was
//! found: track configurations and frames in the hub's canonical form (see `ferrocast_media`), plus non-fatal
//! errors (lost sync, CRC mismatches, continuity gaps, malformed PES or elementary streams). Nothing here panics
//! on any input; the demuxer always resynchronises and goes on.
//!
//! - Packets: 188 bytes; on lost sync the demuxer skips to the next sync byte that is followed by another one
//!   188 bytes later (when that much data is buffered).
//! - Tables: the first program of the PAT, its PMT (CRC checked, sections may span packets). Stream types H.264
//!   (0x1B), H.265 (0x24) and AAC in ADTS (0x0F) are read; others are reported once as
//!   [`DemuxEvent::Unsupported`] and ignored. The first video and the first audio stream are used.
//! - PES: reassembled per PID; a PES ends at the next payload unit start, or when `PES_packet_length` bytes
//!   arrived (`0`, unbounded, is allowed for video). PTS/DTS are 33-bit values unwrapped across wraps on one
//!   timeline shared by all streams; frames carry them in a 90 kHz timebase.
//! - Video: Annex B is turned into AVCC (4-byte lengths); access unit delimiters are dropped; parameter sets are
//!   taken out of the frames into the track config (a new [`DemuxEvent::Track`] whenever they change); keyframe =
//!   IDR (H.264) or IRAP (H.265). Frames before the first complete set of parameter sets are dropped.
//! - Audio: ADTS frames (several per PES, or split across PES) become raw AAC frames; the AudioSpecificConfig is
//!   derived from the ADTS header and re-announced when it changes.

use std::collections::VecDeque;

use bytes::Bytes;
use ferrocast_media::codec::{annexb_nal_units, build_avc_config, build_hevc_config, parse_adts_header};
use ferrocast_media::{Codec, Frame, MediaType, TrackInfo};

use crate::ts::crc32_mpeg2;

/// The size of one transport stream packet.
pub const PACKET_SIZE: usize = 188;
/// The timebase of every frame the demuxer produces.
pub const TIMEBASE: u32 = 90_000;

const SYNC: u8 = 0x47;
const WRAP: i64 = 1 << 33;
/// A PES larger than this is dropped (protects memory against endless unbounded PES).
const MAX_PES: usize = 16 * 1024 * 1024;
/// A PSI section larger than this is dropped.
const MAX_SECTION: usize = 4096;

/// A non-fatal problem in the input; the demuxer skips the damaged part and goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TsDemuxError {
    /// Bytes that did not start with the sync byte were skipped.
    #[error("lost sync: skipped {0} bytes")]
    LostSync(usize),
    /// A packet of the PID was lost (continuity counter gap); the PES in progress was dropped.
    #[error("continuity error on PID {0:#x}")]
    Continuity(u16),
    /// A PAT or PMT section failed its CRC.
    #[error("CRC mismatch in a section on PID {0:#x}")]
    Crc(u16),
    /// A PAT or PMT section is malformed.
    #[error("bad section on PID {pid:#x}: {reason}")]
    BadSection {
        /// The PID of the section.
        pid: u16,
        /// What is wrong.
        reason: &'static str,
    },
    /// A PES packet is malformed.
    #[error("bad PES on PID {pid:#x}: {reason}")]
    BadPes {
        /// The PID of the PES.
        pid: u16,
        /// What is wrong.
        reason: &'static str,
    },
    /// The elementary stream content cannot be used (bad ADTS, unusable parameter sets, ...).
    #[error("bad {codec:?} data: {reason}")]
    BadStream {
        /// The codec of the stream.
        codec: Codec,
        /// What is wrong.
        reason: String,
    },
}

/// What the demuxer found.
#[derive(Debug, Clone, PartialEq)]
pub enum DemuxEvent {
    /// A new or changed track configuration; frames of that track that follow use it.
    Track(TrackInfo),
    /// One access unit in canonical form, timebase [`TIMEBASE`].
    Frame(Frame),
    /// An elementary stream of a type this demuxer does not read (reported once per PID and type).
    Unsupported {
        /// Its PID.
        pid: u16,
        /// Its `stream_type` from the PMT.
        stream_type: u8,
    },
}

#[derive(Debug, Default)]
struct Section {
    data: Vec<u8>,
    cc: Option<u8>,
}

#[derive(Debug)]
struct Es {
    pid: u16,
    codec: Codec,
    cc: Option<u8>,
    pes: Vec<u8>,
    /// Whether `pes` holds the start of a PES.
    started: bool,
    /// Parameter sets in force (H.264: SPS, PPS; H.265: VPS, SPS, PPS), NAL units with their headers.
    vps: Vec<Bytes>,
    sps: Vec<Bytes>,
    pps: Vec<Bytes>,
    /// The last configuration announced.
    config: Option<Bytes>,
    /// AAC: bytes of an ADTS frame cut by the end of the previous PES, and the PTS of its start.
    carry: Vec<u8>,
    carry_pts: i64,
    warned_no_config: bool,
}

impl Es {
    fn new(pid: u16, codec: Codec) -> Es {
        Es {
            pid,
            codec,
            cc: None,
            pes: Vec::new(),
            started: false,
            vps: Vec::new(),
            sps: Vec::new(),
            pps: Vec::new(),
            config: None,
            carry: Vec::new(),
            carry_pts: 0,
            warned_no_config: false,
        }
    }
}

/// A sans-IO MPEG-TS demuxer; see the module docs.
#[derive(Debug, Default)]
pub struct TsDemuxer {
    buf: Vec<u8>,
    pat: Section,
    pmt: Section,
    pmt_pid: Option<u16>,
    video: Option<Es>,
    audio: Option<Es>,
    reported: Vec<(u16, u8)>,
    events: VecDeque<Result<DemuxEvent, TsDemuxError>>,
    /// The last unwrapped timestamp (90 kHz), shared by all streams.
    last_ts: Option<i64>,
}

impl TsDemuxer {
    /// A demuxer waiting for its first PAT.
    pub fn new() -> TsDemuxer {
        TsDemuxer::default()
    }

    /// Feeds transport stream bytes (any chunking). Complete packets are processed at once; their results wait
    /// in [`next_event`](TsDemuxer::next_event).
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        let mut pos = 0;
        let mut skipped = 0;
        while self.buf.len() - pos >= PACKET_SIZE {
            if self.buf[pos] != SYNC {
                pos += 1;
                skipped += 1;
                continue;
            }
            // After a resync, make sure this is really a packet start when the next one is already here.
            if skipped > 0 && self.buf.len() - pos > PACKET_SIZE && self.buf[pos + PACKET_SIZE] != SYNC {
                pos += 1;
                skipped += 1;
                continue;
            }
            if skipped > 0 {
                self.events.push_back(Err(TsDemuxError::LostSync(skipped)));
                skipped = 0;
            }
            let mut packet = [0u8; PACKET_SIZE];
            packet.copy_from_slice(&self.buf[pos..pos + PACKET_SIZE]);
            self.packet(&packet);
            pos += PACKET_SIZE;
        }
        if skipped > 0 {
            self.events.push_back(Err(TsDemuxError::LostSync(skipped)));
        }
        self.buf.drain(..pos);
    }

    /// Ends the input: the PES packets in progress are completed.
    pub fn flush(&mut self) {
        for media in [MediaType::Video, MediaType::Audio] {
            self.finish_pes(media);
        }
    }

    /// The next thing found, in input order; `None` when more input is needed.
    pub fn next_event(&mut self) -> Option<Result<DemuxEvent, TsDemuxError>> {
        self.events.pop_front()
    }

    fn packet(&mut self, p: &[u8; PACKET_SIZE]) {
        if p[1] & 0x80 != 0 {
            return; // transport_error_indicator
        }
        let pusi = p[1] & 0x40 != 0;
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        let afc = (p[3] >> 4) & 0x03;
        let cc = p[3] & 0x0f;
        let mut start = 4;
        if afc & 0x02 != 0 {
            start += 1 + usize::from(p[4]);
        }
        if afc & 0x01 == 0 || start > PACKET_SIZE {
            return; // no payload (or a bogus adaptation field length)
        }
        let payload = &p[start..];
        if pid == 0 {
            self.section(true, pusi, cc, payload);
        } else if Some(pid) == self.pmt_pid {
            self.section(false, pusi, cc, payload);
        } else if let Some(media) = self.media_of(pid) {
            self.pes_payload(media, pusi, cc, payload);
        }
    }

    fn media_of(&self, pid: u16) -> Option<MediaType> {
        if self.video.as_ref().is_some_and(|e| e.pid == pid) {
            Some(MediaType::Video)
        } else if self.audio.as_ref().is_some_and(|e| e.pid == pid) {
            Some(MediaType::Audio)
        } else {
            None
        }
    }

    fn es_mut(&mut self, media: MediaType) -> Option<&mut Es> {
        match media {
            MediaType::Video => self.video.as_mut(),
            MediaType::Audio => self.audio.as_mut(),
        }
    }

    // -----------------------------------------------------------------------------------------------------------
    // PSI
    // -----------------------------------------------------------------------------------------------------------

    fn section(&mut self, is_pat: bool, pusi: bool, cc: u8, payload: &[u8]) {
        let pid = if is_pat { 0 } else { self.pmt_pid.unwrap_or(0) };
        let sec = if is_pat { &mut self.pat } else { &mut self.pmt };
        if sec.cc == Some(cc) {
            return; // duplicate packet
        }
        let expected = sec.cc.map(|c| (c + 1) & 0x0f);
        sec.cc = Some(cc);
        if pusi {
            let Some((&pointer, rest)) = payload.split_first() else { return };
            // Bytes before the pointer finish the previous section.
            if !sec.data.is_empty() && expected == Some(cc) {
                let head = rest.get(..usize::from(pointer)).unwrap_or(rest);
                sec.data.extend_from_slice(head);
                self.try_section(is_pat, pid);
            }
            let sec = if is_pat { &mut self.pat } else { &mut self.pmt };
            sec.data.clear();
            sec.data.extend_from_slice(rest.get(usize::from(pointer)..).unwrap_or(&[]));
        } else {
            if sec.data.is_empty() || expected != Some(cc) {
                sec.data.clear();
                return;
            }
            sec.data.extend_from_slice(payload);
        }
        self.try_section(is_pat, pid);
    }

    /// Parses the buffered section when it is complete.
    fn try_section(&mut self, is_pat: bool, pid: u16) {
        let sec = if is_pat { &mut self.pat } else { &mut self.pmt };
        if sec.data.first() == Some(&0xff) {
            sec.data.clear(); // stuffing
            return;
        }
        if sec.data.len() < 3 {
            return;
        }
        let len = 3 + ((usize::from(sec.data[1] & 0x0f) << 8) | usize::from(sec.data[2]));
        if len > MAX_SECTION {
            sec.data.clear();
            self.events.push_back(Err(TsDemuxError::BadSection { pid, reason: "section too long" }));
            return;
        }
        if sec.data.len() < len {
            return;
        }
        let data: Vec<u8> = sec.data.drain(..).take(len).collect();
        if len < 12 {
            self.events.push_back(Err(TsDemuxError::BadSection { pid, reason: "section too short" }));
            return;
        }
        if crc32_mpeg2(&data) != 0 {
            self.events.push_back(Err(TsDemuxError::Crc(pid)));
            return;
        }
        if data[5] & 0x01 == 0 {
            return; // current_next_indicator = 0: not yet valid
        }
        let body = &data[8..len - 4];
        if is_pat {
            if data[0] != 0x00 {
                return;
            }
            for entry in body.chunks_exact(4) {
                let program = u16::from_be_bytes([entry[0], entry[1]]);
                if program != 0 {
                    let pmt_pid = (u16::from(entry[2] & 0x1f) << 8) | u16::from(entry[3]);
                    if self.pmt_pid != Some(pmt_pid) {
                        self.pmt_pid = Some(pmt_pid);
                        self.pmt = Section::default();
                    }
                    break;
                }
            }
        } else {
            if data[0] != 0x02 {
                return;
            }
            self.parse_pmt(pid, body);
        }
    }

    fn parse_pmt(&mut self, pid: u16, body: &[u8]) {
        if body.len() < 4 {
            self.events.push_back(Err(TsDemuxError::BadSection { pid, reason: "PMT too short" }));
            return;
        }
        let info_len = (usize::from(body[2] & 0x0f) << 8) | usize::from(body[3]);
        let Some(mut rest) = body.get(4 + info_len..) else {
            self.events.push_back(Err(TsDemuxError::BadSection { pid, reason: "program_info_length" }));
            return;
        };
        let (mut video, mut audio) = (None, None);
        while rest.len() >= 5 {
            let stream_type = rest[0];
            let es_pid = (u16::from(rest[1] & 0x1f) << 8) | u16::from(rest[2]);
            let es_info_len = (usize::from(rest[3] & 0x0f) << 8) | usize::from(rest[4]);
            rest = rest.get(5 + es_info_len..).unwrap_or(&[]);
            match stream_type {
                0x1b if video.is_none() => video = Some((es_pid, Codec::H264)),
                0x24 if video.is_none() => video = Some((es_pid, Codec::H265)),
                0x0f if audio.is_none() => audio = Some((es_pid, Codec::Aac)),
                0x1b | 0x24 | 0x0f => {}
                _ => {
                    if !self.reported.contains(&(es_pid, stream_type)) && self.reported.len() < 64 {
                        self.reported.push((es_pid, stream_type));
                        self.events.push_back(Ok(DemuxEvent::Unsupported { pid: es_pid, stream_type }));
                    }
                }
            }
        }
        // Keep the state of streams that did not change (a PMT repeats every few packets).
        if video != self.video.as_ref().map(|e| (e.pid, e.codec)) {
            self.video = video.map(|(p, c)| Es::new(p, c));
        }
        if audio != self.audio.as_ref().map(|e| (e.pid, e.codec)) {
            self.audio = audio.map(|(p, c)| Es::new(p, c));
        }
    }

    // -----------------------------------------------------------------------------------------------------------
    // PES
    // -----------------------------------------------------------------------------------------------------------

    fn pes_payload(&mut self, media: MediaType, pusi: bool, cc: u8, payload: &[u8]) {
        let Some(es) = self.es_mut(media) else { return };
        if es.cc == Some(cc) && !pusi {
            return; // duplicate packet
        }
        let expected = es.cc.map(|c| (c + 1) & 0x0f);
        es.cc = Some(cc);
        if expected.is_some_and(|e| e != cc) && es.started {
            let pid = es.pid;
            es.pes.clear();
            es.started = false;
            self.events.push_back(Err(TsDemuxError::Continuity(pid)));
        }
        if pusi {
            self.finish_pes(media);
            let Some(es) = self.es_mut(media) else { return };
            es.started = true;
            es.pes.extend_from_slice(payload);
        } else {
            let Some(es) = self.es_mut(media) else { return };
            if !es.started {
                return;
            }
            if es.pes.len() + payload.len() > MAX_PES {
                let pid = es.pid;
                es.pes.clear();
                es.started = false;
                self.events.push_back(Err(TsDemuxError::BadPes { pid, reason: "PES larger than 16 MiB" }));
                return;
            }
            es.pes.extend_from_slice(payload);
        }
        // A bounded PES is complete once its length arrived.
        let Some(es) = self.es_mut(media) else { return };
        if es.pes.len() >= 6 {
            let declared = usize::from(u16::from_be_bytes([es.pes[4], es.pes[5]]));
            if declared != 0 && es.pes.len() >= 6 + declared {
                self.finish_pes(media);
            }
        }
    }

    fn finish_pes(&mut self, media: MediaType) {
        let Some(es) = self.es_mut(media) else { return };
        if !es.started {
            return;
        }
        es.started = false;
        let pes = std::mem::take(&mut es.pes);
        let pid = es.pid;
        let bad = |reason| Err(TsDemuxError::BadPes { pid, reason });
        if pes.len() < 9 || pes[..3] != [0, 0, 1] {
            self.events.push_back(bad("no PES start code"));
            return;
        }
        let declared = usize::from(u16::from_be_bytes([pes[4], pes[5]]));
        let end = if declared == 0 { pes.len() } else { (6 + declared).min(pes.len()) };
        let flags = pes[7] >> 6;
        let header_len = usize::from(pes[8]);
        if 9 + header_len > end {
            self.events.push_back(bad("PES header longer than the packet"));
            return;
        }
        let pts = if flags & 0x2 != 0 { read_timestamp(&pes[9..]) } else { None };
        let dts = if flags == 0x3 { read_timestamp(&pes[14..]) } else { None };
        let Some(pts) = pts else {
            self.events.push_back(bad("PES without PTS"));
            return;
        };
        let dts = dts.unwrap_or(pts);
        let dts = self.unwrap_ts(dts);
        // PTS is within a few seconds of DTS: put it on the same epoch.
        let pts = dts + wrap_diff(pts - dts.rem_euclid(WRAP));
        let data = &pes[9 + header_len..end];
        match media {
            MediaType::Video => {
                if let Some(es) = self.video.as_mut() {
                    video_au(es, dts, pts, data, &mut self.events);
                }
            }
            MediaType::Audio => {
                if let Some(es) = self.audio.as_mut() {
                    audio_pes(es, pts, data, &mut self.events);
                }
            }
        }
    }

    fn unwrap_ts(&mut self, ts: i64) -> i64 {
        let value = match self.last_ts {
            None => ts,
            Some(last) => last + wrap_diff(ts - last.rem_euclid(WRAP)),
        };
        self.last_ts = Some(value);
        value
    }
}

// -----------------------------------------------------------------------------------------------------------
// Elementary streams
// -----------------------------------------------------------------------------------------------------------

type Events = VecDeque<Result<DemuxEvent, TsDemuxError>>;

/// One video access unit (a PES payload in Annex B).
fn video_au(es: &mut Es, dts: i64, pts: i64, data: &[u8], events: &mut Events) {
    let h265 = es.codec == Codec::H265;
    let (mut vps, mut sps, mut pps) = (Vec::new(), Vec::new(), Vec::new());
    let mut avcc = Vec::with_capacity(data.len() + 16);
    let mut keyframe = false;
    for nal in annexb_nal_units(data) {
        let t = if h265 { (nal[0] >> 1) & 0x3f } else { nal[0] & 0x1f };
        match (h265, t) {
            (false, 9) | (true, 35) => continue,
            (false, 7) | (true, 33) => sps.push(Bytes::copy_from_slice(nal)),
            (false, 8) | (true, 34) => pps.push(Bytes::copy_from_slice(nal)),
            (true, 32) => vps.push(Bytes::copy_from_slice(nal)),
            (false, 5) | (true, 16..=23) => keyframe = true,
            _ => {}
        }
        if matches!((h265, t), (false, 7 | 8) | (true, 32..=34)) {
            continue;
        }
        let Ok(len) = u32::try_from(nal.len()) else { continue };
        avcc.extend_from_slice(&len.to_be_bytes());
        avcc.extend_from_slice(nal);
    }
    if !sps.is_empty() {
        es.sps = sps;
    }
    if !pps.is_empty() {
        es.pps = pps;
    }
    if !vps.is_empty() {
        es.vps = vps;
    }
    let have_sets = !es.sps.is_empty() && !es.pps.is_empty() && (!h265 || !es.vps.is_empty());
    if have_sets {
        let record = if h265 {
            build_hevc_config(&refs(&es.vps), &refs(&es.sps), &refs(&es.pps))
        } else {
            build_avc_config(&refs(&es.sps), &refs(&es.pps))
        };
        let codec = es.codec;
        match record {
            Ok(record) if es.config.as_deref() != Some(record.as_slice()) => {
                let record = Bytes::from(record);
                match TrackInfo::from_config(codec, TIMEBASE, record.clone()) {
                    Ok(info) => {
                        es.config = Some(record);
                        events.push_back(Ok(DemuxEvent::Track(info)));
                    }
                    Err(e) => {
                        es.sps.clear();
                        events.push_back(Err(TsDemuxError::BadStream { codec, reason: e.to_string() }));
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                es.sps.clear();
                events.push_back(Err(TsDemuxError::BadStream { codec, reason: e.to_string() }));
            }
        }
    }
    if avcc.is_empty() {
        return;
    }
    if es.config.is_none() {
        if !es.warned_no_config {
            es.warned_no_config = true;
            let codec = es.codec;
            events.push_back(Err(TsDemuxError::BadStream {
                codec,
                reason: "frames before the parameter sets are dropped".into(),
            }));
        }
        return;
    }
    let frame = Frame {
        media: MediaType::Video,
        codec: es.codec,
        timebase: TIMEBASE,
        dts,
        pts,
        keyframe,
        data: Bytes::from(avcc),
    };
    events.push_back(Ok(DemuxEvent::Frame(frame)));
}

/// The ADTS frames of one audio PES payload.
fn audio_pes(es: &mut Es, pts: i64, data: &[u8], events: &mut Events) {
    let mut buf;
    let (mut rest, mut ts) = if es.carry.is_empty() {
        (data, pts)
    } else {
        buf = std::mem::take(&mut es.carry);
        buf.extend_from_slice(data);
        let ts = es.carry_pts;
        (&buf[..], ts)
        // `buf` lives until the end of the function.
    };
    let mut resynced = false;
    while !rest.is_empty() {
        let header = match parse_adts_header(rest) {
            Ok(h) => h,
            Err(_) if rest.len() < 7 && rest[0] == 0xff => {
                es.carry = rest.to_vec();
                es.carry_pts = ts;
                break;
            }
            Err(e) => {
                // Skip to the next sync word.
                if !resynced {
                    resynced = true;
                    events.push_back(Err(TsDemuxError::BadStream { codec: Codec::Aac, reason: e.to_string() }));
                }
                let skip = rest[1..].iter().position(|&b| b == 0xff).map_or(rest.len(), |i| i + 1);
                rest = &rest[skip..];
                continue;
            }
        };
        if rest.len() < header.frame_len {
            es.carry = rest.to_vec();
            es.carry_pts = ts;
            break;
        }
        let payload = &rest[header.header_len..header.frame_len];
        rest = &rest[header.frame_len..];
        let rate = header.sample_rate();
        let asc = header.audio_specific_config();
        if es.config.as_deref() != Some(&asc[..]) {
            let config = Bytes::copy_from_slice(&asc);
            match TrackInfo::from_config(Codec::Aac, TIMEBASE, config.clone()) {
                Ok(info) => {
                    es.config = Some(config);
                    events.push_back(Ok(DemuxEvent::Track(info)));
                }
                Err(e) => {
                    events.push_back(Err(TsDemuxError::BadStream { codec: Codec::Aac, reason: e.to_string() }));
                    continue;
                }
            }
        }
        if !payload.is_empty() {
            events.push_back(Ok(DemuxEvent::Frame(Frame {
                media: MediaType::Audio,
                codec: Codec::Aac,
                timebase: TIMEBASE,
                dts: ts,
                pts: ts,
                keyframe: true,
                data: Bytes::copy_from_slice(payload),
            })));
        }
        if rate > 0 {
            ts += i64::from(header.raw_blocks) * 1024 * i64::from(TIMEBASE) / i64::from(rate);
        }
    }
    if es.carry.len() > MAX_SECTION * 4 {
        es.carry.clear();
    }
}

/// The parameter sets as slices.
fn refs(v: &[Bytes]) -> Vec<&[u8]> {
    v.iter().map(|b| b.as_ref()).collect()
}

/// `d` reduced to the signed range around 0 of a 33-bit clock.
fn wrap_diff(d: i64) -> i64 {
    let d = d.rem_euclid(WRAP);
    if d >= WRAP / 2 { d - WRAP } else { d }
}

/// A 33-bit PTS/DTS from its 5-byte field.
fn read_timestamp(b: &[u8]) -> Option<i64> {
    let b = b.get(..5)?;
    Some(
        (i64::from(b[0] >> 1 & 0x07) << 30)
            | (i64::from(b[1]) << 22)
            | (i64::from(b[2] >> 1) << 15)
            | (i64::from(b[3]) << 7)
            | i64::from(b[4] >> 1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ts::{TS_PACKET_SIZE, TsMuxer};
    use bytes::BytesMut;

    fn drain(d: &mut TsDemuxer) -> (Vec<TrackInfo>, Vec<Frame>, Vec<TsDemuxError>) {
        let (mut tracks, mut frames, mut errors) = (Vec::new(), Vec::new(), Vec::new());
        while let Some(e) = d.next_event() {
            match e {
                Ok(DemuxEvent::Track(t)) => tracks.push(t),
                Ok(DemuxEvent::Frame(f)) => frames.push(f),
                Ok(DemuxEvent::Unsupported { .. }) => {}
                Err(e) => errors.push(e),
            }
        }
        (tracks, frames, errors)
    }

    #[test]
    fn crc_of_a_known_pat() {
        // ffmpeg's PAT section for program 1 on PMT PID 0x1000.
        let pat = [0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01, 0xf0, 0x00, 0x2a, 0xb1, 0x04, 0xb2];
        assert_eq!(crc32_mpeg2(&pat), 0);
    }

    #[test]
    fn timestamps_unwrap() {
        let mut d = TsDemuxer::new();
        assert_eq!(d.unwrap_ts(WRAP - 10), WRAP - 10);
        assert_eq!(d.unwrap_ts(5), WRAP + 5);
        assert_eq!(d.unwrap_ts(WRAP - 3), WRAP - 3, "a small step back is not a wrap");
        assert_eq!(wrap_diff(-5), -5);
        assert_eq!(read_timestamp(&[0x21, 0, 1, 0, 1]), Some(0));
    }

    #[test]
    fn garbage_never_panics_and_resyncs() {
        let mut d = TsDemuxer::new();
        let mut x: u32 = 12345;
        let mut data = Vec::new();
        for _ in 0..100_000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            data.push((x >> 16) as u8);
        }
        for chunk in data.chunks(1000) {
            d.push(chunk);
        }
        d.flush();
        drain(&mut d);
        // Packets with random content after a valid sync pattern.
        let mut d = TsDemuxer::new();
        for i in 0..2000usize {
            let mut p = [0u8; 188];
            p[0] = SYNC;
            for (j, b) in p[1..].iter_mut().enumerate() {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345 + (i * j) as u32);
                *b = (x >> 16) as u8;
            }
            if i % 3 == 0 {
                p[1] &= 0xe0; // PID 0
                p[2] = 0;
            }
            d.push(&p);
        }
        d.flush();
        drain(&mut d);
    }

    fn ffmpeg_available() -> bool {
        std::path::Path::new("/usr/bin/ffmpeg").exists()
    }

    fn ffmpeg(args: &str, out: &std::path::Path) {
        let mut a: Vec<&str> = args.split_whitespace().collect();
        a.push(out.to_str().unwrap());
        let o = std::process::Command::new("/usr/bin/ffmpeg").args(&a).output().unwrap();
        assert!(o.status.success(), "ffmpeg failed: {}", String::from_utf8_lossy(&o.stderr));
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ferrocast-tsdemux-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Frames of an FLV file made by ffmpeg, with its track infos.
    fn flv_frames(path: &std::path::Path) -> (Option<TrackInfo>, Option<TrackInfo>, Vec<Frame>) {
        let m = crate::flv::demux(&std::fs::read(path).unwrap()).unwrap();
        (m.video, m.audio, m.frames)
    }

    #[test]
    fn round_trip_through_our_muxer() {
        if !ffmpeg_available() {
            eprintln!("ffmpeg not installed, skipping");
            return;
        }
        let dir = temp_dir("rt");
        let flv = dir.join("in.flv");
        ffmpeg(
            "-v error -y -f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i sine -t 2 -c:v libx264 -g 25 -bf 2 \
             -c:a aac -f flv",
            &flv,
        );
        let (video, audio, frames) = flv_frames(&flv);
        let (video, audio) = (video.unwrap(), audio.unwrap());
        let mut mux = TsMuxer::new(Some(&video), Some(&audio)).unwrap();
        let mut out = BytesMut::new();
        mux.write_tables(&mut out);
        for f in &frames {
            if f.media == MediaType::Video && f.keyframe {
                mux.write_tables(&mut out);
            }
            mux.write_frame(f, &mut out).unwrap();
        }
        assert_eq!(out.len() % TS_PACKET_SIZE, 0);
        let mut d = TsDemuxer::new();
        // Odd chunk sizes, like datagrams of 7 packets cut anywhere.
        for chunk in out.chunks(1000) {
            d.push(chunk);
        }
        d.flush();
        let (tracks, got, errors) = drain(&mut d);
        assert!(errors.is_empty(), "{errors:?}");
        let tv = tracks.iter().find(|t| t.media == MediaType::Video).unwrap();
        let ta = tracks.iter().find(|t| t.media == MediaType::Audio).unwrap();
        assert_eq!(tv.video.as_ref().unwrap().width, 320);
        assert_eq!(tv.video, video.video);
        assert_eq!(ta.config[..], audio.config[..2], "ADTS carries the first two bytes of the ASC");
        assert_eq!(ta.audio, audio.audio);
        assert_eq!(tracks.len(), 2, "configs announced once");
        for media in [MediaType::Video, MediaType::Audio] {
            let want: Vec<&Frame> = frames.iter().filter(|f| f.media == media).collect();
            let have: Vec<&Frame> = got.iter().filter(|f| f.media == media).collect();
            assert_eq!(want.len(), have.len(), "{media:?}");
            let base = have[0].dts - want[0].dts * 90;
            for (w, h) in want.iter().zip(&have) {
                assert_eq!(h.keyframe, w.keyframe);
                assert_eq!(h.dts - base, w.dts * 90);
                assert_eq!(h.pts - base, w.pts * 90);
                // Our muxer inserts the parameter sets before keyframes; the demuxer takes them out again.
                let strip = |d: &[u8]| -> Vec<Vec<u8>> {
                    ferrocast_media::codec::avcc_nal_units(d)
                        .filter(|n| !matches!(n[0] & 0x1f, 7..=9))
                        .map(|n| n.to_vec())
                        .collect()
                };
                if media == MediaType::Video {
                    assert_eq!(strip(&h.data), strip(&w.data));
                } else {
                    assert_eq!(h.data, w.data);
                }
            }
        }
    }

    fn demux_file(path: &std::path::Path) -> (Vec<TrackInfo>, Vec<Frame>, Vec<TsDemuxError>) {
        let data = std::fs::read(path).unwrap();
        let mut d = TsDemuxer::new();
        for chunk in data.chunks(1316) {
            d.push(chunk);
        }
        d.flush();
        drain(&mut d)
    }

    #[test]
    fn ffmpeg_made_h264_aac() {
        if !ffmpeg_available() {
            eprintln!("ffmpeg not installed, skipping");
            return;
        }
        let dir = temp_dir("h264");
        let ts = dir.join("in.ts");
        ffmpeg(
            "-v error -y -f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i sine -t 3 -c:v libx264 -g 25 -bf 2 \
             -c:a aac -f mpegts",
            &ts,
        );
        let (tracks, frames, errors) = demux_file(&ts);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(tracks.len(), 2);
        let video: Vec<&Frame> = frames.iter().filter(|f| f.media == MediaType::Video).collect();
        let audio: Vec<&Frame> = frames.iter().filter(|f| f.media == MediaType::Audio).collect();
        assert_eq!(video.len(), 75);
        assert_eq!(video.iter().filter(|f| f.keyframe).count(), 3);
        assert!(video[0].keyframe);
        assert!(video.iter().any(|f| f.pts != f.dts), "B-frames expected");
        assert!(video.windows(2).all(|w| w[1].dts > w[0].dts));
        // 3 s of 44.1 kHz AAC: ~129 frames of 1024 samples.
        assert!((125..=132).contains(&audio.len()), "{}", audio.len());
        assert!(audio.windows(2).all(|w| w[1].dts > w[0].dts));
        for f in &video {
            assert!(ferrocast_media::codec::avcc_nal_units(&f.data).all(|n| !matches!(n[0] & 0x1f, 7..=9)));
        }
    }

    #[test]
    fn ffmpeg_made_h265() {
        if !ffmpeg_available() {
            eprintln!("ffmpeg not installed, skipping");
            return;
        }
        let dir = temp_dir("h265");
        let ts = dir.join("in.ts");
        ffmpeg(
            "-v error -y -f lavfi -i testsrc2=size=320x240:rate=25 -t 2 -c:v libx265 -x265-params log-level=none \
             -g 25 -f mpegts",
            &ts,
        );
        let (tracks, frames, errors) = demux_file(&ts);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(tracks.len(), 1);
        assert_eq!(tracks[0].codec, Codec::H265);
        assert_eq!(tracks[0].video.as_ref().map(|v| (v.width, v.height)), Some((320, 240)));
        assert_eq!(frames.len(), 50);
        assert!(frames[0].keyframe);
    }

    #[test]
    fn lost_packets_and_garbage_are_survived() {
        if !ffmpeg_available() {
            eprintln!("ffmpeg not installed, skipping");
            return;
        }
        let dir = temp_dir("loss");
        let ts = dir.join("in.ts");
        ffmpeg(
            "-v error -y -f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i sine -t 2 -c:v libx264 -g 25 \
             -c:a aac -f mpegts",
            &ts,
        );
        let data = std::fs::read(&ts).unwrap();
        let mut d = TsDemuxer::new();
        for (i, p) in data.chunks(188).enumerate() {
            if i % 97 == 50 {
                continue; // lost packet
            }
            if i % 211 == 3 {
                d.push(&[1, 2, 3]); // garbage between packets
            }
            d.push(p);
        }
        d.flush();
        let (tracks, frames, errors) = drain(&mut d);
        assert_eq!(tracks.len(), 2);
        assert!(frames.len() > 100, "{}", frames.len());
        assert!(errors.iter().any(|e| matches!(e, TsDemuxError::Continuity(_))));
        assert!(errors.iter().any(|e| matches!(e, TsDemuxError::LostSync(3))));
    }
}
