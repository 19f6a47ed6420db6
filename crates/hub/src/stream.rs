use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::SystemTime;

use bytes::Bytes;
use ferrocast_media::{Frame, MediaType, TrackInfo, rescale};
use parking_lot::RwLock;
use tokio::sync::Notify;

use crate::registry::HubShared;
use crate::{EndReason, HubEvent, Protocol, StreamKey};

/// The formats whose per-entry bytes are produced once and shared by all viewers of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MuxSlot {
    /// FLV tag bytes (HTTP-FLV and FLV recording).
    Flv = 0,
    /// RTMP chunks on the shared media chunk streams with the configured chunk size and message stream 1.
    Rtmp = 1,
}

const MUX_SLOTS: usize = 2;

/// Pre-muxed bytes of one entry in one format: a gather list for a vectored write.
pub type Muxed = Vec<Bytes>;

/// What one ring entry carries.
#[derive(Debug, Clone)]
pub enum EntryKind {
    /// A media access unit (timestamps already on the stream's continuous timeline).
    Frame(Frame),
    /// A new or changed track configuration; viewers send it as a sequence header.
    Track(Arc<TrackInfo>),
    /// A new `onMetaData` body (AMF0, starting with the string `onMetaData`).
    Metadata(Bytes),
}

/// One element of a stream's ring, shared by every viewer.
#[derive(Debug)]
pub struct Entry {
    /// Position in the stream, increasing by one per entry for the stream's whole life.
    pub seq: u64,
    /// The stream time of the entry in milliseconds (the frame's DTS, or the time it was added).
    pub time_ms: i64,
    /// The content.
    pub kind: EntryKind,
    muxed: [OnceLock<Muxed>; MUX_SLOTS],
}

impl Entry {
    fn new(seq: u64, time_ms: i64, kind: EntryKind) -> Entry {
        Entry { seq, time_ms, kind, muxed: Default::default() }
    }

    /// The entry's bytes in `slot`'s format, produced by `mux` the first time any viewer asks and shared after.
    pub fn muxed(&self, slot: MuxSlot, mux: impl FnOnce(&EntryKind) -> Muxed) -> &Muxed {
        self.muxed[slot as usize].get_or_init(|| mux(&self.kind))
    }

    /// Whether this entry is a video keyframe.
    pub fn is_video_keyframe(&self) -> bool {
        matches!(&self.kind, EntryKind::Frame(f) if f.media == MediaType::Video && f.keyframe)
    }

    fn payload_size(&self) -> usize {
        match &self.kind {
            EntryKind::Frame(f) => f.data.len() + 64,
            EntryKind::Track(t) => t.config.len() + 64,
            EntryKind::Metadata(m) => m.len() + 64,
        }
    }
}

/// The current track configurations of a stream.
#[derive(Debug, Clone, Default)]
pub struct Tracks {
    /// The video track, if the stream has one.
    pub video: Option<Arc<TrackInfo>>,
    /// The audio track, if the stream has one.
    pub audio: Option<Arc<TrackInfo>>,
}

/// What a publisher said when it started: kept on the stream for later features (auth, callbacks, statistics).
#[derive(Debug, Clone)]
pub struct StreamParams {
    /// The publisher's protocol.
    pub protocol: Protocol,
    /// The publisher's address.
    pub client: Option<SocketAddr>,
    /// Our address the publisher connected to.
    pub server: Option<SocketAddr>,
    /// Query parameters of the push URL (tcUrl and stream name merged; the stream name's win).
    pub params: Vec<(String, String)>,
    /// When this publisher started.
    pub started_at: SystemTime,
    /// The latest transport figures of the publisher's connection, if its protocol reports them.
    pub transport: Option<crate::TransportStats>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Live { session: u64 },
    Grace { session: u64 },
    Ended,
}

pub(crate) struct StreamState {
    pub(crate) ring: VecDeque<Arc<Entry>>,
    ring_bytes: usize,
    pub(crate) next_seq: u64,
    /// Sequence number of the newest video keyframe, the start of the GOP cache.
    pub(crate) gop_start: Option<u64>,
    pub(crate) tracks: Tracks,
    pub(crate) metadata: Option<Bytes>,
    pub(crate) phase: Phase,
    pub(crate) params: StreamParams,
    last_time_ms: Option<i64>,
    /// The latest presentation time appended (ms); with B-frames it runs ahead of `last_time_ms`.
    last_pts_ms: Option<i64>,
    /// DTS of the latest video frame (ms) and the interval before it: the stream's frame duration.
    last_video_dts_ms: Option<i64>,
    video_frame_ms: Option<i64>,
    /// Stream time (ms) of the entry that last woke the viewers.
    last_wakeup_ms: Option<i64>,
    end_reason: Option<EndReason>,
}

impl StreamState {
    /// The sequence number of the oldest entry still in the ring.
    pub(crate) fn tail_seq(&self) -> u64 {
        self.ring.front().map_or(self.next_seq, |e| e.seq)
    }

    pub(crate) fn get(&self, seq: u64) -> Option<&Arc<Entry>> {
        let tail = self.tail_seq();
        if seq < tail {
            return None;
        }
        self.ring.get((seq - tail) as usize)
    }
}

/// Per-stream counters, readable without the stream lock.
#[derive(Debug, Default)]
pub struct StreamStats {
    /// Payload bytes received from publishers.
    pub bytes_in: AtomicU64,
    /// Video frames received.
    pub video_frames: AtomicU64,
    /// Audio frames received.
    pub audio_frames: AtomicU64,
    /// Payload bytes of the video frames received.
    pub video_bytes: AtomicU64,
    /// Payload bytes of the audio frames received.
    pub audio_bytes: AtomicU64,
    /// Viewers now.
    pub viewers: AtomicUsize,
    /// Viewers of sessionless protocols (HLS, DASH) now, as estimated from their recent requests.
    pub sessionless_viewers: AtomicUsize,
    /// Bytes written to viewers (all egress protocols), as counted by the doors.
    pub bytes_out: AtomicU64,
}

/// A live stream in the registry.
pub struct Stream {
    pub(crate) key: StreamKey,
    pub(crate) state: RwLock<StreamState>,
    pub(crate) notify: Notify,
    pub(crate) stats: StreamStats,
    pub(crate) hub: Weak<HubShared>,
    /// The delay line of a delayed stream's current publisher session.
    pub(crate) delay_line: parking_lot::Mutex<Option<Arc<crate::delay::DelayLine>>>,
}

impl Stream {
    pub(crate) fn new(key: StreamKey, params: StreamParams, session: u64, hub: Weak<HubShared>) -> Stream {
        Stream {
            key,
            state: RwLock::new(StreamState {
                ring: VecDeque::new(),
                ring_bytes: 0,
                next_seq: 0,
                gop_start: None,
                tracks: Tracks::default(),
                metadata: None,
                phase: Phase::Live { session },
                params,
                last_time_ms: None,
                last_pts_ms: None,
                last_video_dts_ms: None,
                video_frame_ms: None,
                last_wakeup_ms: None,
                end_reason: None,
            }),
            notify: Notify::new(),
            stats: StreamStats::default(),
            hub,
            delay_line: parking_lot::Mutex::new(None),
        }
    }

    /// Appends an entry and evicts old ones per the hub's ring limits. Caller holds the lock.
    fn append(&self, st: &mut StreamState, time_ms: i64, kind: EntryKind, shared: &HubShared) {
        let entry = Arc::new(Entry::new(st.next_seq, time_ms, kind));
        if entry.is_video_keyframe() {
            st.gop_start = Some(entry.seq);
        }
        st.next_seq += 1;
        st.ring_bytes += entry.payload_size();
        st.ring.push_back(entry);
        let cfg = &shared.config;
        let window_ms = cfg.ring_window.as_millis() as i64;
        while let Some(front) = st.ring.front() {
            let in_gop = st.gop_start.is_some_and(|g| front.seq >= g);
            let over_bytes = st.ring_bytes > cfg.ring_max_bytes || st.ring.len() > cfg.ring_max_entries;
            let too_old = time_ms - front.time_ms > window_ms;
            if over_bytes || (too_old && !in_gop) {
                st.ring_bytes -= front.payload_size();
                st.ring.pop_front();
            } else {
                break;
            }
        }
    }

    /// Ends the stream: viewers drain what is left and then see the end. Returns false if it had ended already.
    pub(crate) fn end(self: &Arc<Self>, reason: EndReason) -> bool {
        {
            let mut st = self.state.write();
            if st.phase == Phase::Ended {
                return false;
            }
            st.phase = Phase::Ended;
            st.end_reason = Some(reason.clone());
        }
        self.notify.notify_waiters();
        if let Some(hub) = self.hub.upgrade() {
            hub.remove_stream(self);
            hub.emit(HubEvent::Unpublished { key: self.key.clone(), reason });
        }
        true
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.state.read().phase == Phase::Ended
    }
}

/// Gap left between timeline segments when the stream's frame duration is not known yet (one frame at 30 fps).
const DEFAULT_SPLICE_GAP_MS: i64 = 33;
/// Longest gap left between timeline segments.
const MAX_SPLICE_GAP_MS: i64 = 100;

/// Whether an appended frame may wait for the next wakeup instead of waking the viewers now.
fn cfg_hold_audio(config: &crate::HubConfig, st: &StreamState, frame: &Frame, time_ms: i64) -> bool {
    let interval = config.audio_wakeup_interval.as_millis() as i64;
    frame.media == MediaType::Audio
        && interval > 0
        && st.tracks.video.is_some()
        && st.last_wakeup_ms.is_some_and(|last| time_ms - last < interval)
}

/// Returned by [`Publisher`] methods once the stream was stopped by the server (API drop, shutdown).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the stream was stopped by the server")]
pub struct PublishStopped;

/// Why [`Publisher::push_frame`] did not take a frame.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PushError {
    /// The stream was stopped by the server (API drop, shutdown): close the publisher.
    #[error("the stream was stopped by the server")]
    Stopped,
    /// This frame cannot be decoded by viewers (codec change without a sequence header, missing configuration);
    /// the stream goes on.
    #[error("{0}")]
    Refused(String),
}

/// The publishing side of a stream: one per publisher connection. Dropping it ends the publisher's session
/// (the stream then waits out the grace period for a returning publisher).
pub struct Publisher {
    pub(crate) stream: Arc<Stream>,
    pub(crate) session: u64,
    /// Milliseconds added to this session's timestamps to put them on the stream's timeline.
    offset_ms: Option<i64>,
    closed: bool,
    /// Set when this publisher feeds a delay line instead of the ring.
    delayed: Option<Delayed>,
    /// Whether pushes count in the stream's ingest figures (not for the delay line's own publisher: the
    /// delayed publisher counted them on arrival).
    count_stats: bool,
}

/// The ingest side of a delayed publisher.
struct Delayed {
    line: Arc<crate::delay::DelayLine>,
    generation: u64,
    /// The tracks as the publisher sent them (the stream's tracks change only when they come due).
    tracks: Tracks,
}

impl Publisher {
    pub(crate) fn new(stream: Arc<Stream>, session: u64) -> Publisher {
        Publisher { stream, session, offset_ms: None, closed: false, delayed: None, count_stats: true }
    }

    /// A publisher whose frames wait `delay` in a delay line before they reach the ring.
    pub(crate) fn delayed(
        stream: Arc<Stream>,
        session: u64,
        delay: std::time::Duration,
        config: &crate::delay::DelayConfig,
    ) -> Publisher {
        let mut direct = Publisher::new(stream.clone(), session);
        direct.count_stats = false;
        let line = crate::delay::start(delay, direct, config);
        *stream.delay_line.lock() = Some(line.clone());
        let delayed = Delayed { line, generation: 1, tracks: Tracks::default() };
        Publisher { stream, session, offset_ms: None, closed: false, delayed: Some(delayed), count_stats: true }
    }

    /// A publisher taking over a delay line whose previous publisher left while it was still draining.
    pub(crate) fn attach(stream: Arc<Stream>, session: u64, line: Arc<crate::delay::DelayLine>) -> Option<Publisher> {
        let generation = line.generation.fetch_add(1, Ordering::AcqRel) + 1;
        line.ingest_closed.store(false, Ordering::Release);
        line.send(crate::delay::Item::NewSession).ok()?;
        let delayed = Delayed { line, generation, tracks: Tracks::default() };
        Some(Publisher { stream, session, offset_ms: None, closed: false, delayed: Some(delayed), count_stats: true })
    }

    /// The delay this publisher's viewers see, if any.
    pub fn delay(&self) -> Option<std::time::Duration> {
        self.delayed.as_ref().map(|d| d.line.delay)
    }

    /// Starts a new timeline splice at the next frame (a new publisher continues through a delay line).
    pub(crate) fn restart_timeline(&mut self) {
        self.offset_ms = None;
    }

    /// The stream this publisher feeds.
    pub fn key(&self) -> &StreamKey {
        &self.stream.key
    }

    /// The stream's counters.
    pub fn stats(&self) -> &StreamStats {
        &self.stream.stats
    }

    /// The stream's current tracks.
    pub fn tracks(&self) -> Tracks {
        match self.delayed.as_ref() {
            Some(d) => d.tracks.clone(),
            None => self.stream.state.read().tracks.clone(),
        }
    }

    fn with_live_state<R>(
        &self,
        f: impl FnOnce(&Stream, &mut StreamState, &HubShared) -> R,
    ) -> Result<R, PublishStopped> {
        let hub = self.stream.hub.upgrade().ok_or(PublishStopped)?;
        let result = {
            let mut st = self.stream.state.write();
            if st.phase != (Phase::Live { session: self.session }) {
                return Err(PublishStopped);
            }
            f(&self.stream, &mut st, &hub)
        };
        self.stream.notify.notify_waiters();
        Ok(result)
    }

    /// Reports the transport figures of this publisher's connection (round trip, packet counts): they show in
    /// the stream's [`StreamParams::transport`] (the API) and in `/metrics` until the publisher leaves. Ignored once
    /// another publisher has taken the stream over.
    pub fn set_transport_stats(&self, stats: crate::TransportStats) {
        let Some(hub) = self.stream.hub.upgrade() else { return };
        let protocol = {
            let mut st = self.stream.state.write();
            if self.closed || st.phase != (Phase::Live { session: self.session }) {
                return;
            }
            st.params.transport = Some(stats);
            st.params.protocol
        };
        let entry = crate::metrics::TransportEntry { session: self.session, protocol, stats };
        hub.metrics.transport.lock().insert(self.stream.key.clone(), entry);
    }

    /// Sets a track's configuration (a sequence header). Unchanged configurations are not repeated to viewers.
    pub fn set_track(&mut self, info: TrackInfo) -> Result<(), PublishStopped> {
        if let Some(d) = self.delayed.as_mut() {
            let slot = match info.media {
                MediaType::Video => &mut d.tracks.video,
                MediaType::Audio => &mut d.tracks.audio,
            };
            if slot.as_deref() == Some(&info) {
                return Ok(());
            }
            *slot = Some(Arc::new(info.clone()));
            return d.line.send(crate::delay::Item::Track(info)).map_err(|_| PublishStopped);
        }
        self.with_live_state(|stream, st, hub| {
            let slot = match info.media {
                MediaType::Video => &mut st.tracks.video,
                MediaType::Audio => &mut st.tracks.audio,
            };
            if slot.as_deref() == Some(&info) {
                return;
            }
            let info = Arc::new(info);
            *slot = Some(info.clone());
            let time = st.last_time_ms.unwrap_or(0);
            stream.append(st, time, EntryKind::Track(info), hub);
        })
    }

    /// Sets the stream's metadata (an AMF0 `onMetaData` body).
    pub fn set_metadata(&mut self, body: Bytes) -> Result<(), PublishStopped> {
        if let Some(d) = self.delayed.as_ref() {
            return d.line.send(crate::delay::Item::Metadata(body)).map_err(|_| PublishStopped);
        }
        self.with_live_state(|stream, st, hub| {
            st.metadata = Some(body.clone());
            let time = st.last_time_ms.unwrap_or(0);
            stream.append(st, time, EntryKind::Metadata(body), hub);
        })
    }

    /// Appends a frame. Its timestamps are moved onto the stream's continuous timeline: the first publisher
    /// starts at 0, a publisher resuming within the grace period continues after the last frame, and a jump
    /// of the publisher's own clock (reset, wrap) is smoothed over with a log line.
    ///
    /// A frame whose codec differs from its track's, or that needs a configuration its track does not have yet,
    /// is refused with [`PushError::Refused`]: viewers could not decode it.
    pub fn push_frame(&mut self, mut frame: Frame) -> Result<(), PushError> {
        let size = frame.data.len() as u64;
        let media = frame.media;
        if let Some(d) = self.delayed.as_ref() {
            if d.line.finished.load(Ordering::Relaxed) || self.is_stopped() {
                return Err(PushError::Stopped);
            }
            check_codec(&d.tracks, &frame)?;
            d.line.send(crate::delay::Item::Frame(frame))?;
            self.count(media, size);
            return Ok(());
        }
        let offset_slot = &mut self.offset_ms;
        let result = {
            let hub = self.stream.hub.upgrade().ok_or(PushError::Stopped)?;
            let mut st = self.stream.state.write();
            if st.phase != (Phase::Live { session: self.session }) {
                return Err(PushError::Stopped);
            }
            check_codec(&st.tracks, &frame)?;
            let dts_ms = frame.dts_ms();
            // A new timeline segment starts right after the previous one: its first frame is decoded after the last
            // decoded frame and presented after the last presented one (B-frames put PTS ahead of DTS), so no frame
            // of it is shown before a frame of the previous segment.
            // One frame interval after the previous segment, so players that quantise time to the frame rate
            // see distinct frames.
            let gap = st.video_frame_ms.unwrap_or(DEFAULT_SPLICE_GAP_MS);
            let continue_from = match (st.last_time_ms, st.last_pts_ms) {
                (Some(last_dts), Some(last_pts)) => (last_dts + gap - dts_ms).max(last_pts + gap - frame.pts_ms()),
                (Some(last_dts), None) => last_dts + gap - dts_ms,
                _ => -dts_ms,
            };
            let mut offset = *offset_slot.get_or_insert(continue_from);
            if let Some(last) = st.last_time_ms {
                let out = dts_ms + offset;
                if out < last - 2_000 || out > last + 30_000 {
                    tracing::warn!(stream = %self.stream.key, jump_ms = out - last, "publisher timestamp jump; continuing the timeline");
                    offset = continue_from;
                    *offset_slot = Some(offset);
                }
            }
            let shift = rescale(offset, 1000, frame.timebase);
            frame.dts += shift;
            frame.pts += shift;
            let time = frame.dts_ms();
            let pts = frame.pts_ms();
            st.last_time_ms = Some(st.last_time_ms.map_or(time, |l| l.max(time)));
            st.last_pts_ms = Some(st.last_pts_ms.map_or(pts, |l| l.max(pts)));
            if frame.media == MediaType::Video {
                if let Some(prev) = st.last_video_dts_ms.filter(|p| time > *p) {
                    st.video_frame_ms = Some((time - prev).clamp(1, MAX_SPLICE_GAP_MS));
                }
                st.last_video_dts_ms = Some(time);
            }
            // Batched wakeups: an audio frame of a stream with video wakes the viewers only when nothing did for
            // `audio_wakeup_interval`; otherwise it goes out in the same write as the next video frame. Video is
            // never held back.
            let hold = cfg_hold_audio(&hub.config, &st, &frame, time);
            if !hold {
                st.last_wakeup_ms = Some(time);
            }
            self.stream.append(&mut st, time, EntryKind::Frame(frame), &hub);
            hub.metrics.frames_in.fetch_add(1, Ordering::Relaxed);
            Ok(!hold)
        };
        if matches!(result, Ok(true)) {
            self.stream.notify.notify_waiters();
        }
        if self.count_stats {
            self.count(media, size);
        }
        result.map(|_| ())
    }

    fn count(&self, media: MediaType, size: u64) {
        let stats = &self.stream.stats;
        stats.bytes_in.fetch_add(size, Ordering::Relaxed);
        let (frames, bytes) = match media {
            MediaType::Video => (&stats.video_frames, &stats.video_bytes),
            MediaType::Audio => (&stats.audio_frames, &stats.audio_bytes),
        };
        frames.fetch_add(1, Ordering::Relaxed);
        bytes.fetch_add(size, Ordering::Relaxed);
    }

    /// Whether the server stopped this stream; the publisher's connection should then be closed.
    pub fn is_stopped(&self) -> bool {
        self.stream.state.read().phase != (Phase::Live { session: self.session })
    }

    /// Ends this publisher's session with a reason. The stream waits out the grace period for a new publisher,
    /// then ends for every viewer.
    pub fn close(mut self, reason: EndReason) {
        self.finish(reason);
    }

    fn finish(&mut self, reason: EndReason) {
        if self.closed {
            return;
        }
        self.closed = true;
        if let Some(hub) = self.stream.hub.upgrade() {
            let mut transport = hub.metrics.transport.lock();
            if transport.get(&self.stream.key).is_some_and(|e| e.session == self.session) {
                transport.remove(&self.stream.key);
            }
        }
        if let Some(d) = self.delayed.as_ref() {
            // The viewers still have `delay` of this publisher to watch: the line ends the session when the
            // close comes due, unless another publisher took the line over by then.
            d.line.ingest_closed.store(true, Ordering::Release);
            if d.line.send(crate::delay::Item::Close { generation: d.generation, reason: reason.clone() }).is_ok() {
                return;
            }
        }
        if let Some(hub) = self.stream.hub.upgrade() {
            hub.publisher_left(&self.stream, self.session, reason);
        }
    }
}

/// Whether a frame can go on a stream with `tracks`: the codec matches its track, and a codec that needs a
/// configuration has one.
fn check_codec(tracks: &Tracks, frame: &Frame) -> Result<(), PushError> {
    let track = match frame.media {
        MediaType::Video => &tracks.video,
        MediaType::Audio => &tracks.audio,
    };
    match track {
        Some(t) if t.codec == frame.codec => Ok(()),
        Some(t) => Err(PushError::Refused(format!(
            "{} frame on a {} track without a new sequence header",
            frame.codec.name(),
            t.codec.name()
        ))),
        None if frame.codec.needs_config() => {
            Err(PushError::Refused(format!("{} frame before its sequence header", frame.codec.name())))
        }
        None => Ok(()),
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.finish(EndReason::PublisherLost("publisher session dropped".into()));
    }
}
