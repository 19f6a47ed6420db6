//! Cuts a stream's frames into segments and parts (sans-IO: frames in, closed parts and segments out).
//!
//! Segments start on video keyframes (any frame for audio-only streams) once the current one has reached the
//! target duration. Parts are cut on any frame of the main track (video if the stream has video) so that a
//! part never exceeds the part target, predicting the next frame's duration from the last interval. A part is
//! independent when it starts with a keyframe (always, for audio-only streams).

use std::sync::Arc;

use ferrocast_media::{Frame, MediaType, TrackInfo};

/// The tracks of one timeline generation: every segment of a generation shares one initialization segment.
#[derive(Debug)]
pub struct Generation {
    /// Increases by one whenever the tracks change or a new publisher starts a new timeline.
    pub id: u32,
    /// The video track, if any.
    pub video: Option<Arc<TrackInfo>>,
    /// The audio track, if any.
    pub audio: Option<Arc<TrackInfo>>,
}

/// A closed partial segment: its frames in arrival order (both tracks), shared, never copied.
#[derive(Debug)]
pub struct PartData {
    /// Media sequence number of its segment.
    pub msn: u64,
    /// Index within the segment, from 0.
    pub index: u32,
    /// Start (the main track's first DTS) in milliseconds.
    pub start_ms: i64,
    /// Duration in milliseconds.
    pub duration_ms: i64,
    /// Starts with a keyframe (or the stream is audio-only).
    pub independent: bool,
    /// The tracks of its segment.
    pub generation: Arc<Generation>,
    /// The frames.
    pub frames: Vec<Frame>,
}

/// A closed segment.
#[derive(Debug)]
pub struct SegmentData {
    /// Media sequence number.
    pub msn: u64,
    /// The tracks it was cut with.
    pub generation: Arc<Generation>,
    /// Preceded by a discontinuity (new timeline or new tracks).
    pub discontinuity: bool,
    /// Start in milliseconds (stream time).
    pub start_ms: i64,
    /// Duration in milliseconds.
    pub duration_ms: i64,
    /// Wall clock of its first frame, UNIX milliseconds.
    pub wall_ms: i64,
    /// Its parts, in order.
    pub parts: Vec<Arc<PartData>>,
}

/// What [`Segmenter::push`] closed.
#[derive(Debug)]
pub enum Cut {
    /// A part of the open segment was closed.
    Part(Arc<PartData>),
    /// The open segment was closed (its last part was reported just before).
    Segment(Arc<SegmentData>),
}

/// Segment and part targets.
#[derive(Debug, Clone, Copy)]
pub struct SegmenterConfig {
    /// A segment is cut at the first keyframe after this much media.
    pub segment_target_ms: i64,
    /// Parts never exceed this (except when frames are longer than it).
    pub part_target_ms: i64,
}

#[derive(Debug)]
struct OpenSegment {
    msn: u64,
    generation: Arc<Generation>,
    discontinuity: bool,
    start_ms: i64,
    wall_ms: i64,
    parts: Vec<Arc<PartData>>,
    part_start_ms: i64,
    part_independent: bool,
    part_frames: Vec<Frame>,
}

/// The segmenter of one stream (across publishers: a new timeline continues the sequence numbers).
#[derive(Debug)]
pub struct Segmenter {
    config: SegmenterConfig,
    generation: Arc<Generation>,
    next_msn: u64,
    open: Option<OpenSegment>,
    discontinuity_pending: bool,
    /// Whether a segment has been opened with the current generation's tracks.
    generation_used: bool,
    last_main_dts: Option<i64>,
    last_interval_ms: i64,
}

impl Segmenter {
    /// A segmenter whose first segment gets sequence number `first_msn`.
    pub fn new(config: SegmenterConfig, first_msn: u64) -> Segmenter {
        Segmenter {
            config,
            generation: Arc::new(Generation { id: 0, video: None, audio: None }),
            next_msn: first_msn,
            open: None,
            discontinuity_pending: false,
            generation_used: false,
            last_main_dts: None,
            last_interval_ms: 0,
        }
    }

    /// The current generation.
    pub fn generation(&self) -> &Arc<Generation> {
        &self.generation
    }

    /// The open segment's sequence number, its closed parts so far, and whether it follows a discontinuity.
    pub fn open_segment(&self) -> Option<(u64, &[Arc<PartData>], bool)> {
        self.open.as_ref().map(|o| (o.msn, o.parts.as_slice(), o.discontinuity))
    }

    /// Where the open segment starts (stream time, ms).
    pub fn open_start_ms(&self) -> Option<i64> {
        self.open.as_ref().map(|o| o.start_ms)
    }

    /// The sequence number the next segment will get.
    pub fn next_msn(&self) -> u64 {
        self.open.as_ref().map_or(self.next_msn, |o| o.msn)
    }

    /// Sets the tracks. A change of either track's configuration closes the open segment and starts a new
    /// generation after a discontinuity; before any segment of the generation opened (a publisher sends its
    /// headers one by one), the tracks are simply filled in.
    pub fn set_tracks(&mut self, video: Option<Arc<TrackInfo>>, audio: Option<Arc<TrackInfo>>) -> Vec<Cut> {
        let same = |a: &Option<Arc<TrackInfo>>, b: &Option<Arc<TrackInfo>>| match (a, b) {
            (Some(a), Some(b)) => a.codec == b.codec && a.config == b.config && a.timebase == b.timebase,
            (None, None) => true,
            _ => false,
        };
        if same(&self.generation.video, &video) && same(&self.generation.audio, &audio) {
            return Vec::new();
        }
        if !self.generation_used {
            self.generation = Arc::new(Generation { id: self.generation.id, video, audio });
            return Vec::new();
        }
        let cuts = self.close(None);
        self.discontinuity_pending = true;
        self.generation_used = false;
        self.generation = Arc::new(Generation { id: self.generation.id + 1, video, audio });
        cuts
    }

    /// A new publisher starts a new timeline: the open segment is closed and the next one follows a
    /// discontinuity. Tracks are set again by the new publisher.
    pub fn new_timeline(&mut self) -> Vec<Cut> {
        let cuts = self.close(None);
        self.discontinuity_pending = true;
        self.generation_used = false;
        self.last_main_dts = None;
        self.last_interval_ms = 0;
        let id = self.generation.id + 1;
        self.generation = Arc::new(Generation { id, video: None, audio: None });
        cuts
    }

    /// Feeds one hub ring entry: a frame is pushed, a new track configuration replaces its track (see
    /// [`Segmenter::set_tracks`]), metadata is ignored.
    pub fn push_entry(&mut self, kind: &ferrocast_hub::EntryKind, wall_ms: i64) -> Vec<Cut> {
        match kind {
            ferrocast_hub::EntryKind::Frame(f) => self.push(f.clone(), wall_ms),
            ferrocast_hub::EntryKind::Track(t) => {
                let (mut video, mut audio) = (self.generation.video.clone(), self.generation.audio.clone());
                match t.media {
                    MediaType::Video => video = Some(t.clone()),
                    MediaType::Audio => audio = Some(t.clone()),
                }
                self.set_tracks(video, audio)
            }
            ferrocast_hub::EntryKind::Metadata(_) => Vec::new(),
        }
    }

    /// Closes the open part and segment (end of stream).
    pub fn flush(&mut self) -> Vec<Cut> {
        self.close(None)
    }

    /// Adds one frame at wall clock `wall_ms`; returns what it closed.
    pub fn push(&mut self, frame: Frame, wall_ms: i64) -> Vec<Cut> {
        let has_video = self.generation.video.is_some();
        let is_main = match frame.media {
            MediaType::Video => has_video,
            MediaType::Audio => !has_video && self.generation.audio.is_some(),
        };
        let track_known = match frame.media {
            MediaType::Video => has_video,
            MediaType::Audio => self.generation.audio.is_some(),
        };
        if !track_known {
            return Vec::new();
        }
        let dts = frame.dts_ms();
        let mut cuts = Vec::new();
        if is_main {
            let starts_segment = frame.media == MediaType::Audio || frame.keyframe;
            match &self.open {
                None if starts_segment => self.open_at(dts, wall_ms),
                // Nothing opens before the first keyframe.
                None => return cuts,
                Some(open) => {
                    let seg_len = dts - open.start_ms;
                    let part_len = dts - open.part_start_ms;
                    let interval = self.last_interval_ms.max(0);
                    // Audio-only streams cut segments on part boundaries, on frames like every other one.
                    let cut_segment = starts_segment
                        && seg_len >= self.config.segment_target_ms
                        && (frame.media == MediaType::Video || part_len + interval > self.config.part_target_ms);
                    if cut_segment {
                        cuts = self.close(Some(dts));
                        self.open_at(dts, wall_ms);
                    } else if !open.part_frames.is_empty() && part_len + interval > self.config.part_target_ms {
                        cuts.extend(self.close_part(dts));
                        if let Some(o) = self.open.as_mut() {
                            o.part_start_ms = dts;
                            o.part_independent = starts_segment;
                        }
                    }
                }
            }
            if let Some(last) = self.last_main_dts
                && dts > last
            {
                self.last_interval_ms = dts - last;
            }
            self.last_main_dts = Some(dts);
        }
        if let Some(open) = self.open.as_mut() {
            open.part_frames.push(frame);
        }
        cuts
    }

    fn open_at(&mut self, dts: i64, wall_ms: i64) {
        let msn = self.next_msn;
        self.next_msn += 1;
        self.generation_used = true;
        self.open = Some(OpenSegment {
            msn,
            generation: self.generation.clone(),
            discontinuity: std::mem::take(&mut self.discontinuity_pending),
            start_ms: dts,
            wall_ms,
            parts: Vec::new(),
            part_start_ms: dts,
            part_independent: true,
            part_frames: Vec::new(),
        });
    }

    /// Closes the open part at `end_ms` (or at its last frame's end when unknown).
    fn close_part(&mut self, end_ms: i64) -> Option<Cut> {
        let open = self.open.as_mut()?;
        if open.part_frames.is_empty() {
            return None;
        }
        let part = Arc::new(PartData {
            msn: open.msn,
            index: open.parts.len() as u32,
            start_ms: open.part_start_ms,
            duration_ms: (end_ms - open.part_start_ms).max(0),
            independent: open.part_independent,
            generation: open.generation.clone(),
            frames: std::mem::take(&mut open.part_frames),
        });
        open.parts.push(part.clone());
        Some(Cut::Part(part))
    }

    fn close(&mut self, end_ms: Option<i64>) -> Vec<Cut> {
        let mut cuts = Vec::new();
        let Some(open) = self.open.as_ref() else {
            return cuts;
        };
        // Without a next frame, the last part ends one frame interval after its last main-track frame.
        let end =
            end_ms.unwrap_or_else(|| self.last_main_dts.map_or(open.part_start_ms, |d| d + self.last_interval_ms));
        cuts.extend(self.close_part(end));
        let Some(open) = self.open.take() else {
            return cuts;
        };
        if open.parts.is_empty() {
            // Nothing was ever closed in it: the sequence number is not used.
            self.next_msn = open.msn;
            self.discontinuity_pending |= open.discontinuity;
            return cuts;
        }
        let duration_ms = open.parts.iter().map(|p| p.duration_ms).sum();
        cuts.push(Cut::Segment(Arc::new(SegmentData {
            msn: open.msn,
            generation: open.generation,
            discontinuity: open.discontinuity,
            start_ms: open.start_ms,
            duration_ms,
            wall_ms: open.wall_ms,
            parts: open.parts,
        })));
        cuts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ferrocast_media::Codec;

    fn track(codec: Codec) -> Arc<TrackInfo> {
        Arc::new(TrackInfo {
            media: codec.media_type(),
            codec,
            timebase: 1000,
            config: Bytes::from_static(b"cfg"),
            video: None,
            audio: None,
        })
    }

    fn frame(media: MediaType, dts: i64, keyframe: bool) -> Frame {
        let codec = if media == MediaType::Video { Codec::H264 } else { Codec::Aac };
        Frame { media, codec, timebase: 1000, dts, pts: dts, keyframe, data: Bytes::from_static(b"x") }
    }

    fn config() -> SegmenterConfig {
        SegmenterConfig { segment_target_ms: 2000, part_target_ms: 500 }
    }

    /// 25 fps video with a keyframe every `gop` frames plus 44.1 kHz AAC, for `seconds`.
    fn feed(s: &mut Segmenter, from_ms: i64, seconds: i64, gop: i64) -> Vec<Cut> {
        let mut cuts = Vec::new();
        let mut audio_t = from_ms as f64;
        for i in 0..seconds * 25 {
            let t = from_ms + i * 40;
            while audio_t < (t + 40) as f64 {
                cuts.extend(s.push(frame(MediaType::Audio, audio_t as i64, true), t));
                audio_t += 1024.0 * 1000.0 / 44100.0;
            }
            cuts.extend(s.push(frame(MediaType::Video, t, i % gop == 0), t));
        }
        cuts
    }

    fn segments(cuts: &[Cut]) -> Vec<Arc<SegmentData>> {
        cuts.iter()
            .filter_map(|c| match c {
                Cut::Segment(s) => Some(s.clone()),
                Cut::Part(_) => None,
            })
            .collect()
    }

    #[test]
    fn segments_start_on_keyframes_and_parts_stay_under_target() {
        let mut s = Segmenter::new(config(), 0);
        s.set_tracks(Some(track(Codec::H264)), Some(track(Codec::Aac)));
        // Audio before the first keyframe and a non-key video frame are dropped.
        assert!(s.push(frame(MediaType::Audio, 0, true), 0).is_empty());
        assert!(s.push(frame(MediaType::Video, 0, false), 0).is_empty());
        let cuts = feed(&mut s, 40, 10, 25);
        let segs = segments(&cuts);
        assert_eq!(segs.len(), 4, "keyframes every second, 2 s target: a segment every 2 s");
        for (i, seg) in segs.iter().enumerate() {
            assert_eq!(seg.msn, i as u64);
            assert_eq!(seg.duration_ms, 2000);
            let first = &seg.parts[0].frames[0];
            assert!(first.media == MediaType::Video && first.keyframe, "segment {i} starts with a keyframe");
            assert_eq!(seg.parts.len(), 5, "480 ms parts (12 frames; a 13th would end past 500 ms), then 80 ms");
            for p in &seg.parts {
                assert!(p.duration_ms <= 500, "part of {} ms", p.duration_ms);
                assert_eq!(
                    p.independent,
                    p.frames.iter().find(|f| f.media == MediaType::Video).is_some_and(|f| f.keyframe)
                );
            }
            assert_eq!(seg.parts.iter().map(|p| p.duration_ms).sum::<i64>(), seg.duration_ms);
        }
        let (open_msn, _, _) = s.open_segment().expect("open");
        assert_eq!(open_msn, 4);
        let tail = segments(&s.flush());
        assert_eq!(tail.len(), 1);
    }

    #[test]
    fn long_gops_make_long_segments_and_track_changes_make_discontinuities() {
        let mut s = Segmenter::new(config(), 10);
        s.set_tracks(Some(track(Codec::H264)), Some(track(Codec::Aac)));
        let segs = segments(&feed(&mut s, 0, 9, 75));
        assert_eq!(segs.iter().map(|x| x.duration_ms).collect::<Vec<_>>(), [3000, 3000]);
        let mut changed = TrackInfo::clone(&track(Codec::H264));
        changed.config = Bytes::from_static(b"new");
        let closed = segments(&s.set_tracks(Some(Arc::new(changed)), Some(track(Codec::Aac))));
        assert_eq!(closed.len(), 1);
        let next = segments(&feed(&mut s, 9000, 4, 25));
        assert!(next[0].discontinuity && next[0].generation.id == 1);
        assert_eq!(next[0].msn, 13);
        assert!(!closed[0].discontinuity && closed[0].generation.id == 0);
    }

    #[test]
    fn a_new_timeline_continues_the_numbers_after_a_discontinuity() {
        let mut s = Segmenter::new(config(), 0);
        s.set_tracks(Some(track(Codec::H264)), None);
        let first = segments(&feed(&mut s, 5000, 3, 25));
        let closed = segments(&s.new_timeline());
        s.set_tracks(Some(track(Codec::H264)), None);
        // The new publisher's clock starts again at 0.
        let second = segments(&feed(&mut s, 0, 5, 25));
        let last_before = closed.last().or(first.last()).expect("segments before");
        assert_eq!(second[0].msn, last_before.msn + 1);
        assert!(second[0].discontinuity && second[0].start_ms == 0);
        assert!(second[1..].iter().all(|x| !x.discontinuity));
    }

    #[test]
    fn audio_only_streams_cut_anywhere() {
        let mut s = Segmenter::new(config(), 0);
        s.set_tracks(None, Some(track(Codec::Aac)));
        let mut cuts = Vec::new();
        for i in 0..300 {
            let t = i * 1024 * 1000 / 44100;
            cuts.extend(s.push(frame(MediaType::Audio, t, true), t));
        }
        let segs = segments(&cuts);
        assert!(segs.len() >= 2);
        for seg in &segs {
            assert!((2000..2500).contains(&seg.duration_ms), "{}", seg.duration_ms);
            assert!(seg.parts.iter().all(|p| p.independent && p.duration_ms <= 500));
        }
    }
}
