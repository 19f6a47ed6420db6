//! One stream's HLS/DASH package: the segment window, muxed lazily once per (variant, container) and shared by
//! every viewer, the playlists and manifests, and the waits of blocking playlist reloads and preload hints.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ferrocast_formats::{dash, fmp4, hls, ts};
use ferrocast_hub::StreamKey;
use ferrocast_media::{MediaType, TrackInfo, rescale};
use parking_lot::RwLock;
use tokio::sync::watch;

use crate::PackagerConfig;
use crate::segmenter::{Cut, Generation, PartData, SegmentData, Segmenter};

/// Which tracks a playback request wants (the service's audio-only and video-only remux outputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// Audio and video.
    Both = 0,
    /// Audio only.
    Audio = 1,
    /// Video only.
    Video = 2,
}

impl Variant {
    /// The path component naming the variant in resource URLs.
    pub fn path(self) -> &'static str {
        match self {
            Variant::Both => "av",
            Variant::Audio => "a",
            Variant::Video => "v",
        }
    }

    /// The variant named by a resource URL's path component.
    pub fn from_path(s: &str) -> Option<Variant> {
        match s {
            "av" => Some(Variant::Both),
            "a" => Some(Variant::Audio),
            "v" => Some(Variant::Video),
            _ => None,
        }
    }

    fn tracks(self, g: &Generation) -> (Option<&TrackInfo>, Option<&TrackInfo>) {
        let v = g.video.as_deref().filter(|_| self != Variant::Audio);
        let a = g.audio.as_deref().filter(|_| self != Variant::Video);
        (v, a)
    }

    fn wants(self, media: MediaType) -> bool {
        match self {
            Variant::Both => true,
            Variant::Audio => media == MediaType::Audio,
            Variant::Video => media == MediaType::Video,
        }
    }
}

/// What a resource URL of a package names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// The fMP4 initialization segment of a generation.
    Init(u32),
    /// A segment as MPEG-TS.
    Ts(u64),
    /// A segment as fMP4.
    Segment(u64),
    /// A part (segment, index) as fMP4.
    Part(u64, u32),
    /// An AES-128 key.
    Key(u64),
}

/// The segment container of an HLS playlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// MPEG-TS segments.
    Ts,
    /// fMP4/CMAF segments (and LL-HLS parts).
    Fmp4,
}

/// Why a package resource cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackageError {
    /// The segment, part or key is not (or no longer) in the window.
    #[error("{0} is not in the window")]
    Gone(String),
    /// A blocking request asked for something too far in the future.
    #[error("{0} is too far in the future")]
    TooFar(String),
    /// A blocking request timed out.
    #[error("{0} did not appear in time")]
    Timeout(String),
    /// The stream has no track of the requested kind, or its codec cannot go in the requested container.
    #[error("{0}")]
    Unsupported(String),
    /// The stream has produced no segment yet.
    #[error("no segment yet")]
    NotReady,
}

type Muxed<T> = OnceLock<Result<T, PackageError>>;

/// A part with its muxed forms.
#[derive(Debug)]
pub struct Part {
    /// The frames and timing.
    pub data: Arc<PartData>,
    generation: Arc<GenerationCache>,
    fmp4: [Muxed<Arc<[Bytes]>>; 3],
}

/// An AES-128 key of the rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentKey {
    /// The key's id (its URL names it).
    pub id: u64,
    /// The key.
    pub key: [u8; 16],
}

#[derive(Debug, Clone)]
struct TsSegment {
    bytes: Bytes,
    counters: [u8; 4],
}

/// A closed segment with its muxed forms.
#[derive(Debug)]
pub struct Segment {
    /// The frames and timing.
    pub data: Arc<SegmentData>,
    parts: Vec<Arc<Part>>,
    generation: Arc<GenerationCache>,
    key: Option<SegmentKey>,
    ts: [Muxed<TsSegment>; 3],
}

#[derive(Debug)]
struct GenerationCache {
    generation: Arc<Generation>,
    init: [Muxed<Bytes>; 3],
    /// Whether MPEG-TS can carry the variant's codecs (asked by every TS playlist request).
    ts: [Muxed<()>; 3],
}

impl GenerationCache {
    fn new(generation: Arc<Generation>) -> GenerationCache {
        GenerationCache { generation, init: Default::default(), ts: Default::default() }
    }

    fn ts_supported(&self, variant: Variant) -> Result<(), PackageError> {
        self.ts[variant as usize]
            .get_or_init(|| {
                let (v, a) = variant.tracks(&self.generation);
                ts::TsMuxer::new(v, a)
                    .map(|_| ())
                    .map_err(|e| PackageError::Unsupported(format!("MPEG-TS: {e}; use format=fmp4")))
            })
            .clone()
    }

    fn init(&self, variant: Variant) -> Result<Bytes, PackageError> {
        self.init[variant as usize]
            .get_or_init(|| {
                let (v, a) = variant.tracks(&self.generation);
                if v.is_none() && a.is_none() {
                    return Err(PackageError::Unsupported(format!(
                        "the stream has no {} track",
                        variant_media(variant)
                    )));
                }
                fmp4::init_segment(v, a).map_err(|e| PackageError::Unsupported(format!("fMP4: {e}")))
            })
            .clone()
    }
}

fn variant_media(v: Variant) -> &'static str {
    match v {
        Variant::Both => "audio or video",
        Variant::Audio => "audio",
        Variant::Video => "video",
    }
}

impl Part {
    /// The part as one fMP4 fragment (moof + mdat) for `variant`: header bytes then the frames' own buffers.
    pub fn fmp4(&self, variant: Variant) -> Result<Arc<[Bytes]>, PackageError> {
        self.fmp4[variant as usize]
            .get_or_init(|| part_fragment(&self.data, &self.generation.generation, variant))
            .clone()
    }
}

fn part_fragment(p: &PartData, g: &Generation, variant: Variant) -> Result<Arc<[Bytes]>, PackageError> {
    let (v, a) = variant.tracks(g);
    let end_ms = p.start_ms + p.duration_ms;
    let mut runs_samples = Vec::with_capacity(2);
    for (track, id) in [(v, fmp4::VIDEO_TRACK_ID), (a, fmp4::AUDIO_TRACK_ID)] {
        let Some(track) = track else { continue };
        let frames: Vec<_> = p.frames.iter().filter(|f| f.media == track.media).cloned().collect();
        if frames.is_empty() {
            continue;
        }
        // Video's last sample ends where the part ends; audio frames have a fixed duration the muxer knows.
        let next = (track.media == MediaType::Video).then(|| rescale(end_ms, 1000, frames[0].timebase));
        runs_samples.push((id, fmp4::samples_from_frames(track, &frames, next)));
    }
    if runs_samples.is_empty() {
        return Err(PackageError::Unsupported(format!("part has no {} frames", variant_media(variant))));
    }
    let runs: Vec<fmp4::TrackRun<'_>> =
        runs_samples.iter().map(|(id, s)| fmp4::TrackRun { track_id: *id, samples: s }).collect();
    // Sequence numbers only need to increase; 1000 parts per segment is far beyond any configuration.
    let sequence = (p.msn.wrapping_mul(1000) + u64::from(p.index) + 1) as u32;
    fmp4::media_fragment(sequence, &runs)
        .map(Arc::from)
        .map_err(|e| PackageError::Unsupported(format!("fMP4 fragment: {e}")))
}

impl Segment {
    /// The whole segment as fMP4: the fragments of its parts, in order.
    pub fn fmp4(&self, variant: Variant) -> Result<Vec<Bytes>, PackageError> {
        let mut out = Vec::new();
        for p in &self.parts {
            match p.fmp4(variant) {
                Ok(chunks) => out.extend(chunks.iter().cloned()),
                // A part without frames of this variant's track (e.g. no audio yet) is simply absent.
                Err(PackageError::Unsupported(_)) if !p.data.frames.is_empty() => continue,
                Err(e) => return Err(e),
            }
        }
        if out.is_empty() {
            return Err(PackageError::Unsupported(format!("segment has no {} frames", variant_media(variant))));
        }
        Ok(out)
    }

    /// The AES-128 key encrypting this segment, if the stream is encrypted.
    pub fn key(&self) -> Option<SegmentKey> {
        self.key
    }
}

/// Encrypts a whole segment with AES-128-CBC and PKCS#7 padding (RFC 8216 §4.3.2.4).
pub fn encrypt_aes128(key: &[u8; 16], iv: &[u8; 16], data: &[u8]) -> Bytes {
    use aes::cipher::{BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
    let enc = cbc::Encryptor::<aes::Aes128>::new(key.into(), iv.into());
    Bytes::from(enc.encrypt_padded_vec_mut::<Pkcs7>(data))
}

struct State {
    segmenter: Segmenter,
    segments: VecDeque<Arc<Segment>>,
    open_parts: Vec<Arc<Part>>,
    generations: HashMap<u32, Arc<GenerationCache>>,
    /// Discontinuity tags of segments that left the deque.
    evicted_discontinuities: u64,
    /// Longest segment so far, for `EXT-X-TARGETDURATION` (which must never shrink).
    max_segment_ms: i64,
    /// Wall clock minus stream time of the first frame of each generation, for DASH timing.
    anchors: HashMap<u32, (i64, i64)>,
    /// Whether a publisher feeds the package now.
    live: bool,
    encrypted: bool,
    keys: VecDeque<SegmentKey>,
}

/// One stream's package.
pub struct Package {
    /// The stream.
    pub key: StreamKey,
    config: Arc<PackagerConfig>,
    state: RwLock<State>,
    version: watch::Sender<u64>,
}

impl std::fmt::Debug for Package {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Package").field("key", &self.key).finish_non_exhaustive()
    }
}

impl Package {
    /// An empty package for `key`; `encrypted` turns on AES-128 for its TS segments.
    pub fn new(key: StreamKey, config: Arc<PackagerConfig>, encrypted: bool) -> Package {
        let segmenter = Segmenter::new(config.segmenter, 0);
        Package {
            key,
            config,
            state: RwLock::new(State {
                segmenter,
                segments: VecDeque::new(),
                open_parts: Vec::new(),
                generations: HashMap::new(),
                evicted_discontinuities: 0,
                max_segment_ms: 0,
                anchors: HashMap::new(),
                live: true,
                encrypted,
                keys: VecDeque::new(),
            }),
            version: watch::channel(0).0,
        }
    }

    /// Whether the package's TS segments are AES-128 encrypted.
    pub fn encrypted(&self) -> bool {
        self.state.read().encrypted
    }

    /// Whether a publisher feeds it now.
    pub fn live(&self) -> bool {
        self.state.read().live
    }

    /// Feeds the segmenter (`f` runs under the lock) and publishes what it closed.
    pub fn feed(&self, wall_ms: i64, f: impl FnOnce(&mut Segmenter) -> Vec<Cut>) {
        let mut st = self.state.write();
        let cuts = f(&mut st.segmenter);
        // The wall clock of each generation's first segment anchors its DASH period.
        self.anchor_open(&mut st, wall_ms);
        if cuts.is_empty() {
            return;
        }
        for cut in cuts {
            self.apply(&mut st, cut);
        }
        drop(st);
        self.version.send_modify(|v| *v += 1);
    }

    fn anchor_open(&self, st: &mut State, wall_ms: i64) {
        let id = st.segmenter.generation().id;
        if st.anchors.contains_key(&id) {
            return;
        }
        if let Some(start) = st.segmenter.open_start_ms() {
            st.anchors.insert(id, (wall_ms, start));
        }
    }

    fn generation_cache(st: &mut State, g: &Arc<Generation>) -> Arc<GenerationCache> {
        st.generations.entry(g.id).or_insert_with(|| Arc::new(GenerationCache::new(g.clone()))).clone()
    }

    fn apply(&self, st: &mut State, cut: Cut) {
        match cut {
            Cut::Part(data) => {
                let generation = Self::generation_cache(st, &data.generation);
                st.open_parts.push(Arc::new(Part { data, generation, fmp4: Default::default() }));
            }
            Cut::Segment(data) => {
                let generation = Self::generation_cache(st, &data.generation);
                let parts = std::mem::take(&mut st.open_parts);
                let key = st.encrypted.then(|| self.rotate_key(st, data.msn));
                st.max_segment_ms = st.max_segment_ms.max(data.duration_ms);
                st.segments.push_back(Arc::new(Segment { data, parts, generation, key, ts: Default::default() }));
                let keep = self.config.window_segments + self.config.extra_segments;
                while st.segments.len() > keep {
                    if let Some(old) = st.segments.pop_front() {
                        st.evicted_discontinuities += u64::from(old.data.discontinuity);
                    }
                }
                let oldest_gen = st.segments.front().map_or(0, |s| s.data.generation.id);
                st.generations.retain(|id, _| *id >= oldest_gen);
                st.anchors.retain(|id, _| *id >= oldest_gen);
                let oldest_msn = st.segments.front().map_or(0, |s| s.data.msn);
                let rotation = self.config.key_rotation_segments.max(1);
                st.keys.retain(|k| (k.id + 1) * rotation > oldest_msn);
            }
        }
    }

    fn rotate_key(&self, st: &mut State, msn: u64) -> SegmentKey {
        let id = msn / self.config.key_rotation_segments.max(1);
        if let Some(k) = st.keys.iter().find(|k| k.id == id) {
            return *k;
        }
        let k = SegmentKey { id, key: rand::random() };
        st.keys.push_back(k);
        k
    }

    /// A receiver that sees every change of the package (a part or segment closed, a publisher coming or going).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Marks the package as fed (or not) by a publisher; waiters are woken either way.
    pub fn set_live(&self, live: bool) {
        self.state.write().live = live;
        self.version.send_modify(|v| *v += 1);
    }

    /// The key with `id`, while segments using it are in the window.
    pub fn key_by_id(&self, id: u64) -> Option<SegmentKey> {
        self.state.read().keys.iter().find(|k| k.id == id).copied()
    }

    /// The segment `msn`, if it is in the window.
    pub fn segment(&self, msn: u64) -> Option<Arc<Segment>> {
        let st = self.state.read();
        let first = st.segments.front()?.data.msn;
        let s = st.segments.get(msn.checked_sub(first)? as usize)?;
        (s.data.msn == msn).then(|| s.clone())
    }

    /// The part `index` of segment `msn` (closed, or of the open segment).
    pub fn part(&self, msn: u64, index: u32) -> Option<Arc<Part>> {
        if let Some(seg) = self.segment(msn) {
            return seg.parts.get(index as usize).cloned();
        }
        let st = self.state.read();
        st.open_parts.iter().find(|p| p.data.msn == msn && p.data.index == index).cloned()
    }

    /// The initialization segment of generation `id` for `variant`.
    pub fn init(&self, id: u32, variant: Variant) -> Result<Bytes, PackageError> {
        let g = self.state.read().generations.get(&id).cloned();
        g.ok_or_else(|| PackageError::Gone(format!("init segment {id}")))?.init(variant)
    }

    /// Segment `msn` as MPEG-TS for `variant`, AES-128 encrypted when the package is.
    pub fn segment_ts(&self, msn: u64, variant: Variant) -> Result<Bytes, PackageError> {
        let seg = self.segment(msn).ok_or_else(|| PackageError::Gone(format!("segment {msn}")))?;
        let before = if msn > 0 { self.segment(msn - 1) } else { None };
        let muxed = seg.ts[variant as usize]
            .get_or_init(|| {
                // Continue the previous segment's continuity counters when it was muxed: a player going from one
                // segment to the next sees no continuity error.
                let counters = before
                    .as_ref()
                    .filter(|b| b.generation.generation.id == seg.generation.generation.id)
                    .and_then(|b| b.ts[variant as usize].get())
                    .and_then(|r| r.as_ref().ok())
                    .map(|t| t.counters);
                mux_ts(&seg, variant, counters)
            })
            .clone()?;
        Ok(match seg.key {
            Some(k) => encrypt_aes128(&k.key, &hls::sequence_iv(msn), &muxed.bytes),
            None => muxed.bytes,
        })
    }

    /// Waits until segment `msn` (or its part `part`) exists, as a blocking playlist reload or a preload-hinted
    /// part request needs; gives up after `timeout`.
    pub async fn wait_for(&self, msn: u64, part: Option<u32>, timeout: Duration) -> Result<(), PackageError> {
        let what = || match part {
            Some(p) => format!("part {msn}.{p}"),
            None => format!("segment {msn}"),
        };
        let ready = |st: &State| -> Result<bool, PackageError> {
            let next = st.segmenter.next_msn();
            // RFC 8216bis §6.2.5.2: more than two segments ahead is a client error.
            if msn > next + 2 {
                return Err(PackageError::TooFar(what()));
            }
            let complete = st.segments.back().is_some_and(|s| s.data.msn >= msn);
            Ok(match part {
                None => complete,
                Some(p) => complete || st.open_parts.iter().any(|x| x.data.msn == msn && x.data.index >= p),
            })
        };
        let mut rx = self.version.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let st = self.state.read();
                if ready(&st)? {
                    return Ok(());
                }
                if !st.live {
                    return Err(PackageError::Gone(what()));
                }
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) | Err(_) => return Err(PackageError::Timeout(what())),
            }
        }
    }

    /// The file stem of segment `msn` (the configured segment naming, URI-encoded).
    fn stem(&self, msn: u64) -> String {
        self.template_stem(&msn.to_string())
    }

    fn template_stem(&self, seq: &str) -> String {
        hls::uri_component(&self.config.naming.stem(&self.key.app, &self.key.stream, seq))
            .replace("%24Number%24", "$Number$")
    }

    fn hls_parts(&self, base: &str, parts: &[Arc<Part>]) -> Vec<hls::Part> {
        parts
            .iter()
            .map(|p| hls::Part {
                duration: p.data.duration_ms as f64 / 1000.0,
                uri: format!("{base}{}.{}.m4s", self.stem(p.data.msn), p.data.index),
                independent: p.data.independent,
            })
            .collect()
    }

    /// What a resource file name asks for: `init-{gen}.mp4`, `key-{id}.key`, and segments and parts named by the
    /// configured segment naming.
    pub fn resource(&self, name: &str) -> Option<Resource> {
        if let Some(g) = name.strip_prefix("init-").and_then(|r| r.strip_suffix(".mp4")) {
            return g.parse().ok().map(Resource::Init);
        }
        if let Some(k) = name.strip_prefix("key-").and_then(|r| r.strip_suffix(".key")) {
            return k.parse().ok().map(Resource::Key);
        }
        let seq = |stem: &str| self.config.naming.parse(&self.key.app, &self.key.stream, stem);
        if let Some(stem) = name.strip_suffix(".ts") {
            return seq(stem).map(Resource::Ts);
        }
        let stem = name.strip_suffix(".m4s")?;
        if let Some(msn) = seq(stem) {
            return Some(Resource::Segment(msn));
        }
        let (segment, part) = stem.rsplit_once('.')?;
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Resource::Part(seq(segment)?, part.parse().ok()?))
    }

    /// `EXT-X-TARGETDURATION`: the configured target or the longest segment so far, in whole seconds.
    pub fn target_duration_secs(&self) -> u32 {
        let st = self.state.read();
        target_secs(&self.config, &st)
    }

    /// The HLS media playlist of `variant` in `container`, with `query` appended to every URI. Low-latency tags
    /// come with fMP4 when the configuration enables them.
    pub fn playlist(&self, variant: Variant, container: Container, query: &str) -> Result<String, PackageError> {
        let st = self.state.read();
        if st.segments.is_empty() && st.open_parts.is_empty() {
            return Err(PackageError::NotReady);
        }
        let g = st.segmenter.generation();
        let (v, a) = variant.tracks(g);
        if v.is_none() && a.is_none() {
            return Err(PackageError::Unsupported(format!("the stream has no {} track", variant_media(variant))));
        }
        // Whether the container can carry the codecs is decided once per generation, not per request (LL-HLS
        // players reload the playlist several times a second).
        let cache = st.generations.get(&g.id).cloned().unwrap_or_else(|| Arc::new(GenerationCache::new(g.clone())));
        match container {
            Container::Ts => cache.ts_supported(variant)?,
            Container::Fmp4 => {
                cache.init(variant)?;
            }
        }
        let base = format!("{}/hls/{}/", hls::uri_component(&self.key.stream), variant.path());
        let window = self.config.window_segments;
        let skip = st.segments.len().saturating_sub(window);
        let listed: Vec<&Arc<Segment>> = st.segments.iter().skip(skip).collect();
        let discontinuity_sequence =
            st.evicted_discontinuities + st.segments.iter().take(skip).filter(|s| s.data.discontinuity).count() as u64;
        let ll = container == Container::Fmp4 && self.config.low_latency;
        let target = target_secs(&self.config, &st);
        // Parts are listed for the segments of the last three target durations (RFC 8216bis §4.4.4.9).
        let parts_from = listed.len().saturating_sub(3);
        let segments = listed
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let msn = s.data.msn;
                let (uri, map_uri) = match container {
                    Container::Ts => (format!("{base}{}.ts", self.stem(msn)), None),
                    Container::Fmp4 => (
                        format!("{base}{}.m4s", self.stem(msn)),
                        Some(format!("{base}init-{}.mp4", s.generation.generation.id)),
                    ),
                };
                let parts = if ll && i >= parts_from { self.hls_parts(&base, &s.parts) } else { Vec::new() };
                hls::Segment {
                    duration: s.data.duration_ms as f64 / 1000.0,
                    uri,
                    discontinuity: s.data.discontinuity,
                    program_date_time_ms: Some(s.data.wall_ms),
                    map_uri,
                    key: s
                        .key
                        .filter(|_| container == Container::Ts)
                        .map(|k| hls::Key { uri: format!("{base}key-{}.key", k.id), iv: hls::sequence_iv(msn) }),
                    parts,
                }
            })
            .collect();
        let low_latency = ll.then(|| {
            let next_msn = st.segmenter.next_msn();
            let open_discontinuity = st.segmenter.open_segment().is_some_and(|(_, _, d)| d);
            let next_part = st.open_parts.iter().filter(|p| p.data.msn == next_msn).count();
            hls::LowLatency {
                part_target: self.config.segmenter.part_target_ms as f64 / 1000.0,
                open_parts: self.hls_parts(&base, &st.open_parts),
                open_map_uri: (!st.open_parts.is_empty()).then(|| format!("{base}init-{}.mp4", g.id)),
                open_discontinuity: open_discontinuity && !st.open_parts.is_empty(),
                preload_hint: st.live.then(|| format!("{base}{}.{next_part}.m4s", self.stem(next_msn))),
            }
        });
        let playlist = hls::MediaPlaylist {
            target_duration: target,
            media_sequence: listed.first().map_or(st.segmenter.next_msn(), |s| s.data.msn),
            discontinuity_sequence,
            segments,
            low_latency,
            ended: false,
            uri_query: query.to_string(),
        };
        Ok(playlist.render())
    }

    /// The dynamic DASH manifest: a video and an audio adaptation set over the fMP4 segments of the video-only
    /// and audio-only variants (only one of them for `wanted` = `Video`/`Audio`), one period per generation.
    pub fn mpd(&self, query: &str, now_ms: i64, wanted: Variant) -> Result<String, PackageError> {
        let st = self.state.read();
        let listed: Vec<&Arc<Segment>> =
            st.segments.iter().skip(st.segments.len().saturating_sub(self.config.window_segments)).collect();
        let Some(first) = listed.first() else {
            return Err(PackageError::NotReady);
        };
        let first_gen = first.generation.generation.id;
        // A track DASH cannot carry would silently drop out of the manifest: refuse instead.
        let g = st.segmenter.generation();
        for track in [g.video.as_deref(), g.audio.as_deref()].into_iter().flatten() {
            if fmp4::codec_string(track).is_none() {
                return Err(PackageError::Unsupported(format!(
                    "DASH: {} cannot be carried in fMP4",
                    track.codec.name()
                )));
            }
        }
        let &(ast_wall, ast_dts) = st.anchors.get(&first_gen).unwrap_or(&(first.data.wall_ms, first.data.start_ms));
        // Media time `ast_dts` of the first generation is availabilityStartTime.
        let ast = ast_wall - ast_dts;
        let mut periods: Vec<dash::Period> = Vec::new();
        let base = hls::uri_component(&self.key.stream);
        let mut i = 0;
        while i < listed.len() {
            let g = listed[i].generation.clone();
            let run: Vec<&Arc<Segment>> =
                listed[i..].iter().take_while(|s| s.generation.generation.id == g.generation.id).copied().collect();
            i += run.len();
            let &(wall, dts) = st.anchors.get(&g.generation.id).unwrap_or(&(run[0].data.wall_ms, run[0].data.start_ms));
            // The period starts where its first segment is on the wall clock; its media time starts at `dts`.
            let period_start_ms = (wall - ast).max(0) as u64;
            let mut sets = Vec::new();
            for (variant, track) in
                [(Variant::Video, g.generation.video.as_ref()), (Variant::Audio, g.generation.audio.as_ref())]
            {
                let Some(track) = track.filter(|_| wanted == Variant::Both || wanted == variant) else { continue };
                let Some(codecs) = fmp4::codec_string(track) else { continue };
                let timescale = fmp4::timescale(track);
                let to_ts = |ms: i64| rescale(ms, 1000, timescale).max(0) as u64;
                let timeline = run
                    .iter()
                    .map(|s| dash::TimelineEntry {
                        start: to_ts(s.data.start_ms),
                        duration: to_ts(s.data.start_ms + s.data.duration_ms) - to_ts(s.data.start_ms),
                    })
                    .collect();
                let bytes: u64 = run
                    .iter()
                    .flat_map(|s| s.parts.iter())
                    .flat_map(|p| p.data.frames.iter())
                    .filter(|f| variant.wants(f.media))
                    .map(|f| f.data.len() as u64)
                    .sum();
                let secs = run.iter().map(|s| s.data.duration_ms).sum::<i64>().max(1) as u64;
                let media = match (variant, track.video.as_ref(), track.audio) {
                    (Variant::Video, v, _) => {
                        dash::Media::Video { width: v.map_or(0, |v| v.width), height: v.map_or(0, |v| v.height) }
                    }
                    (_, _, a) => dash::Media::Audio {
                        sample_rate: a.map_or(48_000, |a| a.sample_rate),
                        channels: a.map_or(2, |a| a.channels),
                    },
                };
                sets.push(dash::AdaptationSet {
                    media,
                    codecs,
                    timescale,
                    bandwidth: bytes * 8 * 1000 / secs,
                    initialization: format!("{base}/hls/{}/init-{}.mp4", variant.path(), g.generation.id),
                    media_template: format!("{base}/hls/{}/{}.m4s", variant.path(), self.template_stem("$Number$")),
                    start_number: run[0].data.msn,
                    timeline,
                    presentation_time_offset: to_ts(dts),
                });
            }
            periods.push(dash::Period {
                id: g.generation.id.to_string(),
                start_ms: period_start_ms,
                adaptation_sets: sets,
            });
        }
        let target_ms = u64::from(target_secs(&self.config, &st)) * 1000;
        let window_ms: u64 = listed.iter().map(|s| s.data.duration_ms.max(0) as u64).sum();
        let manifest = dash::Manifest {
            availability_start_ms: ast,
            publish_ms: now_ms,
            minimum_update_period_ms: self.config.segmenter.segment_target_ms.max(500) as u64,
            time_shift_buffer_ms: window_ms,
            suggested_presentation_delay_ms: target_ms * 2,
            max_segment_duration_ms: (st.max_segment_ms.max(0) as u64).max(target_ms),
            min_buffer_ms: target_ms,
            periods,
            uri_query: query.to_string(),
        };
        Ok(manifest.render())
    }
}

fn target_secs(config: &PackagerConfig, st: &State) -> u32 {
    let ms = st.max_segment_ms.max(config.segmenter.segment_target_ms).max(1);
    ((ms + 999) / 1000) as u32
}

fn mux_ts(seg: &Segment, variant: Variant, counters: Option<[u8; 4]>) -> Result<TsSegment, PackageError> {
    let (v, a) = variant.tracks(&seg.generation.generation);
    let mut muxer = ts::TsMuxer::new(v, a).map_err(|e| PackageError::Unsupported(format!("MPEG-TS: {e}")))?;
    if let Some(c) = counters {
        muxer.set_continuity_counters(c);
    }
    let size: usize = seg.parts.iter().flat_map(|p| p.data.frames.iter()).map(|f| f.data.len()).sum();
    let mut out = BytesMut::with_capacity(size + size / 16 + 1024);
    muxer.write_tables(&mut out);
    for p in &seg.parts {
        for f in &p.data.frames {
            let wanted = match f.media {
                MediaType::Video => v.is_some(),
                MediaType::Audio => a.is_some(),
            };
            if !wanted {
                continue;
            }
            if let Err(e) = muxer.write_frame(f, &mut out) {
                // One bad frame must not cost the viewer the whole segment.
                tracing::debug!(msn = seg.data.msn, error = %e, "MPEG-TS: frame skipped");
            }
        }
    }
    Ok(TsSegment { bytes: out.freeze(), counters: muxer.continuity_counters() })
}
