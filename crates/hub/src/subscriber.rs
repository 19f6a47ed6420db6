use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use ferrocast_media::MediaType;

use crate::registry::HubShared;
use crate::stream::{Entry, EntryKind, Phase, Stream, StreamState};
use crate::{HubEvent, Protocol, StreamKey, Tracks};

/// How a viewer wants to start.
#[derive(Debug, Clone, Default)]
pub struct SubscriberOptions {
    /// Start at the newest keyframe already received (instant start); `None` follows the hub's setting.
    pub gop_cache: Option<bool>,
    /// A server-side consumer (packager, recorder) rather than a viewer: not counted in viewer figures and
    /// announces no `ViewerJoined`/`ViewerLeft`.
    pub internal: bool,
}

/// What [`Subscriber::next_batch`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    /// Entries were appended to the caller's buffer. `skipped` counts frames jumped over because this viewer
    /// fell behind the ring; when it is non-zero the caller should resend the track configurations.
    Entries {
        /// Frames skipped since the previous batch.
        skipped: u64,
    },
    /// The stream ended and every entry has been delivered.
    Ended,
}

/// A viewer's position in a stream. Holds no media of its own beyond the caller's batch buffer.
pub struct Subscriber {
    stream: Arc<Stream>,
    hub: Weak<HubShared>,
    id: u64,
    protocol: Protocol,
    cursor: u64,
    wait_keyframe: bool,
    pending_skipped: u64,
    start_tracks: Tracks,
    start_metadata: Option<Bytes>,
    internal: bool,
}

impl Subscriber {
    pub(crate) fn new(
        stream: Arc<Stream>,
        hub: Weak<HubShared>,
        shared: &HubShared,
        protocol: Protocol,
        client: Option<SocketAddr>,
        options: SubscriberOptions,
    ) -> Subscriber {
        let gop_cache = options.gop_cache.unwrap_or(shared.config.gop_cache);
        let (cursor, wait_keyframe, start_tracks, start_metadata) = {
            let st = stream.state.read();
            let gop = st.gop_start.filter(|g| gop_cache && *g >= st.tail_seq());
            let (cursor, wait) = match gop {
                Some(g) => (g, false),
                None => (st.next_seq, true),
            };
            (cursor, wait, st.tracks.clone(), st.metadata.clone())
        };
        let id = shared.next_id();
        if !options.internal {
            stream.stats.viewers.fetch_add(1, Ordering::Relaxed);
            shared.metrics.protocol(protocol).viewers.fetch_add(1, Ordering::Relaxed);
            shared.emit(HubEvent::ViewerJoined { key: stream.key.clone(), protocol, viewer: id, client });
        }
        Subscriber {
            stream,
            hub,
            id,
            protocol,
            cursor,
            wait_keyframe,
            pending_skipped: 0,
            start_tracks,
            start_metadata,
            internal: options.internal,
        }
    }

    /// A process-unique id of this viewer.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The stream being watched.
    pub fn key(&self) -> &StreamKey {
        &self.stream.key
    }

    /// Adds `n` bytes written to this viewer to the stream's bytes-out counter.
    pub fn count_out(&self, n: u64) {
        self.stream.stats.bytes_out.fetch_add(n, Ordering::Relaxed);
    }

    /// The tracks as they were when this viewer joined: send their configurations before the first batch.
    pub fn start_tracks(&self) -> &Tracks {
        &self.start_tracks
    }

    /// The metadata as it was when this viewer joined.
    pub fn start_metadata(&self) -> Option<&Bytes> {
        self.start_metadata.as_ref()
    }

    /// The stream's tracks now (after a resync).
    pub fn current_tracks(&self) -> Tracks {
        self.stream.state.read().tracks.clone()
    }

    /// Waits until entries are available (or the stream ended) and appends at most `max` of them to `out`.
    pub async fn next_batch(&mut self, out: &mut Vec<Arc<Entry>>, max: usize) -> Batch {
        let stream = self.stream.clone();
        loop {
            let notified = stream.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(batch) = self.try_batch(out, max) {
                return batch;
            }
            notified.await;
        }
    }

    /// Appends at most `max` available entries to `out` without waiting; `None` when there is nothing new.
    pub fn try_batch(&mut self, out: &mut Vec<Arc<Entry>>, max: usize) -> Option<Batch> {
        let st = self.stream.state.read();
        let tail = st.tail_seq();
        if self.cursor < tail {
            let lagged = tail - self.cursor;
            self.pending_skipped += lagged;
            self.cursor = tail;
            self.wait_keyframe = true;
            if let Some(hub) = self.hub.upgrade() {
                hub.metrics.frames_dropped_slow_viewer.fetch_add(lagged, Ordering::Relaxed);
            }
            tracing::debug!(stream = %self.stream.key, viewer = self.id, lagged, "viewer fell behind the ring; skipping to the next keyframe");
        }
        let lagging = self.pending_skipped > 0;
        let before = out.len();
        let mut skipped_now = 0;
        while self.cursor < st.next_seq && out.len() - before < max {
            let Some(entry) = st.get(self.cursor) else {
                break;
            };
            self.cursor += 1;
            if admit(&mut self.wait_keyframe, &st, entry) {
                out.push(entry.clone());
            } else {
                skipped_now += 1;
            }
        }
        if lagging {
            self.pending_skipped += skipped_now;
            if let Some(hub) = self.hub.upgrade() {
                hub.metrics.frames_dropped_slow_viewer.fetch_add(skipped_now, Ordering::Relaxed);
            }
        }
        if out.len() > before {
            let skipped = std::mem::take(&mut self.pending_skipped);
            return Some(Batch::Entries { skipped });
        }
        if st.phase == Phase::Ended && self.cursor >= st.next_seq {
            return Some(Batch::Ended);
        }
        None
    }
}

/// Whether an entry goes to a viewer: everything except frames before its first usable keyframe.
fn admit(wait_keyframe: &mut bool, st: &StreamState, entry: &Entry) -> bool {
    if !*wait_keyframe {
        return true;
    }
    match &entry.kind {
        EntryKind::Track(_) | EntryKind::Metadata(_) => true,
        EntryKind::Frame(f) => {
            let start_here = (f.media == MediaType::Video && f.keyframe) || st.tracks.video.is_none();
            if start_here {
                *wait_keyframe = false;
            }
            start_here
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if self.internal {
            return;
        }
        self.stream.stats.viewers.fetch_sub(1, Ordering::Relaxed);
        if let Some(hub) = self.hub.upgrade() {
            hub.metrics.protocol(self.protocol).viewers.fetch_sub(1, Ordering::Relaxed);
            hub.emit(HubEvent::ViewerLeft { key: self.stream.key.clone(), protocol: self.protocol, viewer: self.id });
        }
    }
}
