use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use tokio::sync::broadcast;

use crate::stream::{Phase, Stream};
use crate::{
    AccessPolicy, AccessRequest, AllowAll, Denied, EndReason, HubEvent, Metrics, Protocol, Publisher, StreamKey,
    StreamParams, Subscriber, SubscriberOptions, Tracks,
};

/// Limits and behaviour of every stream in the hub.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// How much recent media the ring keeps beyond the current GOP, for viewers that fall a little behind.
    pub ring_window: Duration,
    /// Hard cap of the ring's payload bytes per stream (the GOP cache included).
    pub ring_max_bytes: usize,
    /// Hard cap of the ring's entries per stream.
    pub ring_max_entries: usize,
    /// Start new viewers at the newest keyframe (instant start) rather than waiting for the next one.
    pub gop_cache: bool,
    /// How long a stream whose publisher left waits for a publisher to return before it ends for viewers.
    pub publisher_grace: Duration,
    /// Capacity of the lifecycle event bus.
    pub event_capacity: usize,
    /// In a stream with video, an audio frame wakes the viewers only if nothing did for this long (stream time);
    /// otherwise it is written together with the next video frame. Halves wakeups and writes per viewer for at
    /// most this much added audio latency. Zero wakes viewers for every frame.
    pub audio_wakeup_interval: Duration,
    /// Memory budget and spill directory of delayed streams.
    pub delay: crate::delay::DelayConfig,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            ring_window: Duration::from_secs(5),
            ring_max_bytes: 64 << 20,
            ring_max_entries: 20_000,
            gop_cache: true,
            publisher_grace: Duration::from_secs(3),
            event_capacity: 4096,
            audio_wakeup_interval: Duration::from_millis(40),
            delay: crate::delay::DelayConfig::default(),
        }
    }
}

/// Why a publish was refused.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Another publisher is live on this stream; the first one keeps going.
    #[error("stream {0} is already being published")]
    AlreadyPublishing(StreamKey),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// A push parameter has a value the server cannot honour (e.g. `txDelayTime` out of range).
    #[error("{0}")]
    BadParameter(String),
}

/// Why a subscribe was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// No publisher is live on this stream.
    #[error("stream {0} is not live")]
    NotFound(StreamKey),
}

/// What a publisher asks for.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    /// The stream.
    pub key: StreamKey,
    /// The publisher's protocol.
    pub protocol: Protocol,
    /// The publisher's address.
    pub client: Option<SocketAddr>,
    /// Our address the publisher connected to (`ServerIp` in the API).
    pub server: Option<SocketAddr>,
    /// The push URL's query parameters.
    pub params: Vec<(String, String)>,
}

fn summarize(s: &Stream) -> StreamSummary {
    let st = s.state.read();
    StreamSummary {
        key: s.key.clone(),
        params: st.params.clone(),
        publishing: matches!(st.phase, Phase::Live { .. }),
        tracks: st.tracks.clone(),
        viewers: s.stats.viewers.load(Ordering::Relaxed) + s.stats.sessionless_viewers.load(Ordering::Relaxed),
        bytes_in: s.stats.bytes_in.load(Ordering::Relaxed),
        video_frames: s.stats.video_frames.load(Ordering::Relaxed),
        audio_frames: s.stats.audio_frames.load(Ordering::Relaxed),
        video_bytes: s.stats.video_bytes.load(Ordering::Relaxed),
        audio_bytes: s.stats.audio_bytes.load(Ordering::Relaxed),
        metadata: st.metadata.clone(),
        bytes_out: s.stats.bytes_out.load(Ordering::Relaxed),
    }
}

/// A snapshot of one live stream, for APIs and logs.
#[derive(Debug, Clone)]
pub struct StreamSummary {
    /// The stream.
    pub key: StreamKey,
    /// How its current (or last) publisher connected.
    pub params: StreamParams,
    /// Whether a publisher is connected now (false inside the grace period).
    pub publishing: bool,
    /// Its tracks.
    pub tracks: Tracks,
    /// Viewers now.
    pub viewers: usize,
    /// Payload bytes received so far.
    pub bytes_in: u64,
    /// Video frames received so far.
    pub video_frames: u64,
    /// Audio frames received so far.
    pub audio_frames: u64,
    /// Payload bytes of the video frames received so far.
    pub video_bytes: u64,
    /// Payload bytes of the audio frames received so far.
    pub audio_bytes: u64,
    /// The stream's latest `onMetaData` body (AMF0), if the publisher sent one.
    pub metadata: Option<bytes::Bytes>,
    /// Bytes written to viewers so far.
    pub bytes_out: u64,
}

pub(crate) struct HubShared {
    pub(crate) config: HubConfig,
    streams: Mutex<HashMap<StreamKey, Arc<Stream>>>,
    events: broadcast::Sender<HubEvent>,
    pub(crate) metrics: Arc<Metrics>,
    next_id: AtomicU64,
    shutting_down: AtomicBool,
    access: RwLock<Arc<dyn AccessPolicy>>,
}

impl HubShared {
    pub(crate) fn emit(&self, event: HubEvent) {
        // No receiver is fine: nobody has subscribed to lifecycle events yet.
        let _ = self.events.send(event);
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn remove_stream(&self, stream: &Arc<Stream>) {
        let mut streams = self.streams.lock();
        if streams.get(&stream.key).is_some_and(|s| Arc::ptr_eq(s, stream)) {
            streams.remove(&stream.key);
            self.metrics.streams.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn publisher_left(self: &Arc<Self>, stream: &Arc<Stream>, session: u64, reason: EndReason) {
        let grace = self.config.publisher_grace;
        {
            let mut st = stream.state.write();
            if st.phase != (Phase::Live { session }) {
                return;
            }
            st.phase = Phase::Grace { session };
        }
        self.emit(HubEvent::PublisherLeft { key: stream.key.clone(), reason: reason.clone() });
        let runtime = tokio::runtime::Handle::try_current();
        match runtime {
            Ok(rt) if !grace.is_zero() && !self.shutting_down.load(Ordering::Relaxed) => {
                let stream = stream.clone();
                rt.spawn(async move {
                    tokio::time::sleep(grace).await;
                    let still_waiting = stream.state.read().phase == Phase::Grace { session };
                    if still_waiting {
                        tracing::info!(stream = %stream.key, "publisher did not return within the grace period; ending stream");
                        stream.end(reason);
                    }
                });
            }
            _ => {
                stream.end(reason);
            }
        }
    }
}

/// The stream registry. Cheap to clone; every clone is the same hub.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<HubShared>,
}

impl Hub {
    /// Creates an empty hub.
    pub fn new(config: HubConfig, metrics: Arc<Metrics>) -> Hub {
        let (events, _) = broadcast::channel(config.event_capacity.max(1));
        Hub {
            shared: Arc::new(HubShared {
                config,
                streams: Mutex::new(HashMap::new()),
                events,
                metrics,
                next_id: AtomicU64::new(0),
                shutting_down: AtomicBool::new(false),
                access: RwLock::new(Arc::new(AllowAll)),
            }),
        }
    }

    /// The hub's configuration.
    pub fn config(&self) -> &HubConfig {
        &self.shared.config
    }

    /// The process metrics the hub updates.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// Subscribes to lifecycle events from now on.
    pub fn events(&self) -> broadcast::Receiver<HubEvent> {
        self.shared.events.subscribe()
    }

    /// Installs the policy every door asks before a publish or play ([`AllowAll`] until this is called).
    pub fn set_access_policy(&self, policy: Arc<dyn AccessPolicy>) {
        *self.shared.access.write() = policy;
    }

    /// Asks the access policy whether a publish or play may proceed. Protocols call this before
    /// [`publish`](Hub::publish) or [`subscribe`](Hub::subscribe) and refuse the client on `Err`.
    pub fn check_access(&self, req: &AccessRequest<'_>) -> Result<(), Denied> {
        // Not under the lock: the policy may take its time or install a successor.
        let policy = self.shared.access.read().clone();
        policy.check(req)
    }

    /// The stream key a viewer of `requested` plays: the same key, under the push domain its play domain is
    /// bound to when the access policy knows one. Call after [`check_access`](Hub::check_access) succeeded.
    pub fn playback_key(&self, requested: &StreamKey) -> StreamKey {
        let policy = self.shared.access.read().clone();
        match policy.stream_domain(&requested.domain) {
            Some(domain) => StreamKey { domain, ..requested.clone() },
            None => requested.clone(),
        }
    }

    /// Starts publishing `req.key`. A stream inside its grace period is resumed seamlessly; a stream with a live
    /// publisher is refused (the first publisher keeps going).
    pub fn publish(&self, req: PublishRequest) -> Result<Publisher, PublishError> {
        if self.shared.shutting_down.load(Ordering::Relaxed) {
            return Err(PublishError::ShuttingDown);
        }
        // The push URL's `txDelayTime` wins over a delay configured for the stream (AddDelayLiveStream).
        let delay = match req.params.iter().find(|(k, _)| k == "txDelayTime") {
            Some((_, v)) => crate::delay::parse_delay(v).map_err(PublishError::BadParameter)?,
            None => self.shared.access.read().stream_delay(&req.key).unwrap_or_default(),
        };
        let session = self.shared.next_id();
        let params = StreamParams {
            protocol: req.protocol,
            client: req.client,
            server: req.server,
            params: req.params.clone(),
            started_at: SystemTime::now(),
            transport: None,
        };
        let mut streams = self.shared.streams.lock();
        let (publisher, resumed) = match streams.get(&req.key) {
            Some(existing) => {
                let mut st = existing.state.write();
                match st.phase {
                    Phase::Live { session: live } => {
                        // A delayed stream whose publisher left is still playing out its delay: the new
                        // publisher continues the same line (its close is then ignored).
                        let line = existing.delay_line.lock().clone();
                        let draining = line
                            .filter(|l| l.ingest_closed.load(Ordering::Acquire) && !l.finished.load(Ordering::Acquire));
                        let Some(line) = draining else {
                            return Err(PublishError::AlreadyPublishing(req.key));
                        };
                        st.params = params;
                        drop(st);
                        match Publisher::attach(existing.clone(), live, line) {
                            Some(p) => (p, true),
                            None => return Err(PublishError::AlreadyPublishing(req.key)),
                        }
                    }
                    Phase::Grace { .. } => {
                        st.phase = Phase::Live { session };
                        st.params = params;
                        drop(st);
                        (self.new_publisher(existing.clone(), session, delay), true)
                    }
                    // An ended stream is removed from the map by `end`; seeing one here would be a bug, but a
                    // fresh stream is the right answer either way.
                    Phase::Ended => {
                        drop(st);
                        let stream = self.insert_new(&mut streams, &req, params, session);
                        (self.new_publisher(stream, session, delay), false)
                    }
                }
            }
            None => {
                let stream = self.insert_new(&mut streams, &req, params, session);
                (self.new_publisher(stream, session, delay), false)
            }
        };
        drop(streams);
        self.shared.emit(HubEvent::Published {
            key: req.key,
            protocol: req.protocol,
            client: req.client,
            params: req.params,
            resumed,
        });
        Ok(publisher)
    }

    fn new_publisher(&self, stream: Arc<Stream>, session: u64, delay: Duration) -> Publisher {
        if delay.is_zero() {
            *stream.delay_line.lock() = None;
            Publisher::new(stream, session)
        } else {
            Publisher::delayed(stream, session, delay, &self.shared.config.delay)
        }
    }

    fn insert_new(
        &self,
        streams: &mut HashMap<StreamKey, Arc<Stream>>,
        req: &PublishRequest,
        params: StreamParams,
        session: u64,
    ) -> Arc<Stream> {
        let stream = Arc::new(Stream::new(req.key.clone(), params, session, Arc::downgrade(&self.shared)));
        if let Some(old) = streams.insert(req.key.clone(), stream.clone()) {
            old.end(EndReason::Stopped("replaced".into()));
        } else {
            self.shared.metrics.streams.fetch_add(1, Ordering::Relaxed);
        }
        stream
    }

    /// Starts a viewer on a live stream (one with a publisher, or inside its grace period).
    pub fn subscribe(
        &self,
        key: &StreamKey,
        protocol: Protocol,
        client: Option<SocketAddr>,
        options: SubscriberOptions,
    ) -> Result<Subscriber, SubscribeError> {
        let stream = self.shared.streams.lock().get(key).cloned();
        match stream {
            Some(stream) if !stream.is_ended() => {
                Ok(Subscriber::new(stream, Arc::downgrade(&self.shared), &self.shared, protocol, client, options))
            }
            _ => Err(SubscribeError::NotFound(key.clone())),
        }
    }

    /// Starts a server-side consumer (packager, time-shift recorder) at the stream's GOP cache: not a viewer, so
    /// it is not counted and announces nothing.
    pub fn subscribe_internal(&self, key: &StreamKey) -> Result<Subscriber, SubscribeError> {
        self.subscribe(key, Protocol::Hls, None, SubscriberOptions { gop_cache: Some(true), internal: true })
    }

    /// Whether a stream is live (publishing or inside its grace period).
    pub fn is_live(&self, key: &StreamKey) -> bool {
        self.shared.streams.lock().contains_key(key)
    }

    /// Snapshots of every live stream.
    pub fn streams(&self) -> Vec<StreamSummary> {
        let streams: Vec<Arc<Stream>> = self.shared.streams.lock().values().cloned().collect();
        let mut out: Vec<StreamSummary> = streams.iter().map(|s| summarize(s)).collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Adds `n` bytes sent to viewers of `key` by a sessionless protocol (HLS, DASH) to its bytes-out figure.
    pub fn count_bytes_out(&self, key: &StreamKey, n: u64) {
        if let Some(stream) = self.shared.streams.lock().get(key) {
            stream.stats.bytes_out.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Sets the number of sessionless (HLS, DASH) viewers of `key`, as estimated by the HTTP side.
    pub fn set_sessionless_viewers(&self, key: &StreamKey, n: usize) {
        if let Some(stream) = self.shared.streams.lock().get(key) {
            stream.stats.sessionless_viewers.store(n, Ordering::Relaxed);
        }
    }

    /// A snapshot of one live stream.
    pub fn stream(&self, key: &StreamKey) -> Option<StreamSummary> {
        let stream = self.shared.streams.lock().get(key).cloned()?;
        Some(summarize(&stream))
    }

    /// Ends a stream now for its publisher and viewers (API drop, forbid). Returns whether it was live.
    pub fn stop_stream(&self, key: &StreamKey, why: &str) -> bool {
        let stream = self.shared.streams.lock().get(key).cloned();
        stream.is_some_and(|s| s.end(EndReason::Stopped(why.to_string())))
    }

    /// Refuses new publishers and ends every stream; viewers drain and close.
    pub fn shutdown(&self) {
        self.shared.shutting_down.store(true, Ordering::Relaxed);
        let streams: Vec<Arc<Stream>> = self.shared.streams.lock().values().cloned().collect();
        for s in streams {
            s.end(EndReason::Stopped("server shutting down".into()));
        }
    }
}

#[cfg(test)]
impl Hub {
    pub(crate) fn shared_stream_for_tests(&self, key: &StreamKey) -> Option<Arc<Stream>> {
        self.shared.streams.lock().get(key).cloned()
    }
}
