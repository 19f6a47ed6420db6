//! One WebRTC session (a WHEP viewer or a WHIP publisher): a tokio task owning a sans-IO [`Rtc`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrocast_hub::{Batch, Entry, EntryKind, Protocol, Publisher, PushError, StreamKey, Subscriber};
use ferrocast_media::{Codec, Frame, MediaType, TrackInfo, rescale};
use str0m::format::Codec as RtcCodec;
use str0m::media::{Frequency, KeyframeRequestKind, MediaData, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol as NetProtocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};
use tokio::sync::{broadcast, mpsc};

use crate::audio::{OpusToAac, RATE};
use crate::{Inner, OpusFeed, SessionMsg};
use crate::{av1, h264, h265};

/// A session that did not connect within this time is dropped.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Keyframe requests are forwarded to a publisher at most this often per viewer.
const PLI_INTERVAL: Duration = Duration::from_millis(500);

/// What every session has: the `Rtc`, its inbox and its identity.
pub(crate) struct Core {
    pub(crate) inner: Arc<Inner>,
    pub(crate) rtc: Rtc,
    pub(crate) rx: mpsc::Receiver<SessionMsg>,
    pub(crate) id: String,
    pub(crate) key: StreamKey,
    pub(crate) client: SocketAddr,
    pub(crate) started: Instant,
    connected: bool,
    events: Vec<Event>,
    stop: Option<&'static str>,
}

impl Core {
    pub(crate) fn new(
        inner: Arc<Inner>,
        rtc: Rtc,
        rx: mpsc::Receiver<SessionMsg>,
        id: String,
        key: StreamKey,
        client: SocketAddr,
    ) -> Core {
        Core {
            inner,
            rtc,
            rx,
            id,
            key,
            client,
            started: Instant::now(),
            connected: false,
            events: Vec::new(),
            stop: None,
        }
    }

    /// Sends what the `Rtc` has to send and collects its events; returns when it next wants a timeout.
    async fn drain(&mut self, count_out: bool) -> Instant {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => return t,
                Ok(Output::Transmit(t)) => {
                    if count_out {
                        let m = self.inner.hub.metrics();
                        m.protocol(Protocol::WebRtc).bytes_out.fetch_add(t.contents.len() as u64, Ordering::Relaxed);
                    }
                    if t.proto == NetProtocol::Tcp {
                        match self.inner.tcp_connection(t.destination) {
                            Some(conn) => {
                                if conn.try_send(t.contents.to_vec()).is_err() {
                                    tracing::debug!(session = %self.id, "ice-tcp send queue full; packet dropped");
                                }
                            }
                            None => tracing::debug!(session = %self.id, peer = %t.destination, "no ice-tcp connection"),
                        }
                    } else if let Err(e) = self.inner.socket.send_to(&t.contents, t.destination).await {
                        tracing::debug!(session = %self.id, error = %e, "webrtc send failed");
                    }
                }
                Ok(Output::Event(e)) => self.events.push(e),
                Err(e) => {
                    tracing::warn!(session = %self.id, stream = %self.key, error = %e, "webrtc session failed");
                    self.stop = Some("rtc error");
                    return Instant::now() + Duration::from_millis(1);
                }
            }
        }
    }

    /// Feeds a datagram or timeout into the `Rtc`.
    fn input(&mut self, source: SocketAddr, data: &[u8], tcp: bool) {
        let (proto, locals) = if tcp {
            (NetProtocol::Tcp, &self.inner.tcp_candidates)
        } else {
            (NetProtocol::Udp, &self.inner.candidates)
        };
        let destination =
            locals.iter().find(|c| c.is_ipv4() == source.is_ipv4()).or(locals.first()).copied().unwrap_or(source);
        match Receive::new(proto, source, destination, data) {
            Ok(r) => {
                if let Err(e) = self.rtc.handle_input(Input::Receive(Instant::now(), r)) {
                    tracing::debug!(session = %self.id, error = %e, "webrtc input refused");
                }
            }
            Err(e) => tracing::trace!(session = %self.id, error = ?e, "unparsable datagram"),
        }
    }

    fn timeout(&mut self) {
        if let Err(e) = self.rtc.handle_input(Input::Timeout(Instant::now())) {
            tracing::debug!(session = %self.id, error = %e, "webrtc timeout handling failed");
        }
    }

    /// Common event handling; returns the events a mode must look at.
    fn take_events(&mut self) -> Vec<Event> {
        let events = std::mem::take(&mut self.events);
        let mut rest = Vec::new();
        for e in events {
            match e {
                Event::Connected => {
                    self.connected = true;
                    tracing::info!(session = %self.id, stream = %self.key, client = %self.client,
                        connect_ms = self.started.elapsed().as_millis() as u64, "webrtc connected");
                    rest.push(Event::Connected);
                }
                Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                    self.stop = Some("ice disconnected");
                }
                other => rest.push(other),
            }
        }
        if !self.connected && self.started.elapsed() > CONNECT_TIMEOUT {
            self.stop = Some("ice connection timed out");
        }
        if !self.rtc.is_alive() && self.stop.is_none() {
            self.stop = Some("peer closed");
        }
        rest
    }

    fn finish(&mut self, what: &str) {
        self.rtc.disconnect();
        self.inner.unregister(&self.id);
        tracing::info!(session = %self.id, stream = %self.key, client = %self.client, reason = self.stop.unwrap_or("stopped"),
            secs = self.started.elapsed().as_secs(), "{what} ended");
    }
}

/// What woke a session.
enum Wake {
    Msg(Option<SessionMsg>),
    Timeout,
    Batch(Batch),
    Opus(Result<Frame, broadcast::error::RecvError>),
    /// A viewer joined a stream (hub event).
    Viewer(Option<StreamKey>),
}

async fn recv_feed(rx: &mut Option<broadcast::Receiver<Frame>>) -> Result<Frame, broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// A WHEP viewer.
pub(crate) struct Play {
    pub(crate) sub: Subscriber,
    /// Entries read at signalling time (the GOP cache, checked for B-frames); sent once connected.
    pub(crate) pending: Vec<Arc<Entry>>,
    /// The stream's Opus feed (WHIP publisher or AAC bridge); `None`: Opus frames come from the hub, if any.
    pub(crate) feed: Option<Arc<OpusFeed>>,
}

/// The payload types negotiated for each video codec the hub may carry.
#[derive(Debug, Clone, Copy, Default)]
struct VideoPts {
    h264: Option<Pt>,
    h265: Option<Pt>,
    av1: Option<Pt>,
    vp8: Option<Pt>,
}

impl VideoPts {
    fn for_codec(&self, codec: Codec) -> Option<Pt> {
        match codec {
            Codec::H264 => self.h264,
            Codec::H265 => self.h265,
            Codec::Av1 => self.av1,
            Codec::Vp8 => self.vp8,
            _ => None,
        }
    }
}

struct Out {
    /// The video mid and the negotiated payload types.
    video: Option<(Mid, VideoPts)>,
    audio: Option<(Mid, Option<Pt>)>,
    /// What a keyframe needs in front when it lacks it: H.264 SPS/PPS or H.265 VPS/SPS/PPS NAL units.
    parameter_sets: Vec<Vec<u8>>,
    /// The AV1 stream's `av1C` (its sequence header goes before keyframes that lack one).
    av1_config: Bytes,
    warned_codec: bool,
    last_pli: Option<Instant>,
}

fn find_pt(rtc: &mut Rtc, mid: Mid, codec: RtcCodec) -> Option<Pt> {
    let w = rtc.writer(mid)?;
    let mut fallback = None;
    for p in w.payload_params() {
        if p.spec().codec == codec {
            if codec != RtcCodec::H264 || p.spec().format.packetization_mode == Some(1) {
                return Some(p.pt());
            }
            fallback.get_or_insert(p.pt());
        }
    }
    fallback
}

fn parameter_sets(track: Option<&Arc<TrackInfo>>) -> Vec<Vec<u8>> {
    match track {
        Some(t) if t.codec == Codec::H264 => h264::avc_config_parameter_sets(&t.config)
            .map(|(sps, pps)| sps.into_iter().chain(pps).collect())
            .unwrap_or_default(),
        Some(t) if t.codec == Codec::H265 => h265::hevc_config_parameter_sets(&t.config).unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn av1_config(track: Option<&Arc<TrackInfo>>) -> Bytes {
    track.filter(|t| t.codec == Codec::Av1).map(|t| t.config.clone()).unwrap_or_default()
}

/// Runs a WHEP viewer until it leaves or the stream ends.
pub(crate) async fn run_play(mut core: Core, mut play: Play) {
    let mut out = Out {
        video: None,
        audio: None,
        parameter_sets: parameter_sets(play.sub.start_tracks().video.as_ref()),
        av1_config: av1_config(play.sub.start_tracks().video.as_ref()),
        warned_codec: false,
        last_pli: None,
    };
    let mut feed_rx = play.feed.as_ref().map(|f| f.tx.subscribe());
    let audio_from_hub = play.feed.is_none();
    let mut batch = Vec::new();
    let mut pending = std::mem::take(&mut play.pending);
    loop {
        let timeout = core.drain(true).await;
        for e in core.take_events() {
            match e {
                Event::MediaAdded(m) => match m.kind {
                    MediaKind::Video => {
                        let pts = VideoPts {
                            h264: find_pt(&mut core.rtc, m.mid, RtcCodec::H264),
                            h265: find_pt(&mut core.rtc, m.mid, RtcCodec::H265),
                            av1: find_pt(&mut core.rtc, m.mid, RtcCodec::Av1),
                            vp8: find_pt(&mut core.rtc, m.mid, RtcCodec::Vp8),
                        };
                        out.video = Some((m.mid, pts));
                    }
                    MediaKind::Audio => out.audio = Some((m.mid, find_pt(&mut core.rtc, m.mid, RtcCodec::Opus))),
                },
                Event::Connected => {
                    if let Some(p) = core.inner.publisher(&core.key) {
                        let _ = p.try_send(SessionMsg::RequestKeyframe);
                    }
                }
                // RTMP/SRT publishers cannot be asked; the GOP cache starts viewers. WHIP publishers get a PLI.
                Event::KeyframeRequest(_) if out.last_pli.is_none_or(|t| t.elapsed() > PLI_INTERVAL) => {
                    out.last_pli = Some(Instant::now());
                    if let Some(p) = core.inner.publisher(&core.key) {
                        let _ = p.try_send(SessionMsg::RequestKeyframe);
                    }
                }
                _ => {}
            }
        }
        if core.stop.is_none() && core.connected && !pending.is_empty() {
            let entries = std::mem::take(&mut pending);
            write_entries(&mut core, &mut out, &play.sub, &entries, audio_from_hub);
            continue;
        }
        if core.stop.is_some() {
            break;
        }
        let connected = core.connected;
        let wake = tokio::select! {
            msg = core.rx.recv() => Wake::Msg(msg),
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(timeout)) => Wake::Timeout,
            b = play.sub.next_batch(&mut batch, 64), if connected => Wake::Batch(b),
            f = recv_feed(&mut feed_rx), if connected => Wake::Opus(f),
        };
        match wake {
            Wake::Msg(Some(SessionMsg::Datagram { source, data, tcp })) => core.input(source, &data, tcp),
            Wake::Msg(Some(SessionMsg::RequestKeyframe)) => {}
            Wake::Msg(Some(SessionMsg::RemoteCandidate(c))) => core.rtc.add_remote_candidate(c),
            Wake::Msg(Some(SessionMsg::Stop)) | Wake::Msg(None) => core.stop = Some("stopped by server or client"),
            Wake::Timeout => core.timeout(),
            Wake::Batch(Batch::Ended) => core.stop = Some("stream ended"),
            Wake::Batch(Batch::Entries { skipped }) => {
                if skipped > 0 {
                    let tracks = play.sub.current_tracks();
                    out.parameter_sets = parameter_sets(tracks.video.as_ref());
                    out.av1_config = av1_config(tracks.video.as_ref());
                }
                let entries = std::mem::take(&mut batch);
                write_entries(&mut core, &mut out, &play.sub, &entries, audio_from_hub);
                batch = entries;
                batch.clear();
            }
            Wake::Opus(Ok(frame)) => write_audio(&mut core, &mut out, &frame),
            Wake::Opus(Err(broadcast::error::RecvError::Lagged(n))) => {
                tracing::debug!(session = %core.id, lagged = n, "whep viewer skipped opus packets");
            }
            Wake::Opus(Err(broadcast::error::RecvError::Closed)) => feed_rx = None,
            Wake::Viewer(_) => {}
        }
    }
    core.finish("whep play");
}

fn write_entries(core: &mut Core, out: &mut Out, sub: &Subscriber, entries: &[Arc<Entry>], audio_from_hub: bool) {
    for entry in entries {
        match &entry.kind {
            EntryKind::Track(t) if t.media == MediaType::Video => {
                out.parameter_sets = parameter_sets(Some(t));
                out.av1_config = av1_config(Some(t));
            }
            EntryKind::Frame(f) if f.media == MediaType::Video => {
                write_video(core, out, sub, f);
                if core.stop.is_some() {
                    return;
                }
            }
            EntryKind::Frame(f) if f.media == MediaType::Audio && audio_from_hub && f.codec == Codec::Opus => {
                write_audio(core, out, f)
            }
            _ => {}
        }
    }
}

fn write_video(core: &mut Core, out: &mut Out, sub: &Subscriber, frame: &Frame) {
    let pt = out.video.and_then(|(mid, pts)| Some((mid, pts.for_codec(frame.codec)?)));
    let Some((mid, pt)) = pt else {
        if !out.warned_codec {
            out.warned_codec = true;
            tracing::warn!(session = %core.id, stream = %core.key, codec = frame.codec.name(),
                "video codec not negotiated with this WHEP viewer (the stream changed codec); sending audio only");
        }
        return;
    };
    if matches!(frame.codec, Codec::H264 | Codec::H265) && frame.pts != frame.dts {
        core.inner.hub.metrics().webrtc_bframes_refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(session = %core.id, stream = %core.key, codec = frame.codec.name(),
            "video with B-frames cannot be played over WebRTC; ending the WHEP session (publish without B-frames: x264/x265 -bf 0 / tune zerolatency, OBS B-frames 0)");
        core.stop = Some("b-frames in the stream");
        return;
    }
    let prefix: &[Vec<u8>] = if frame.keyframe { &out.parameter_sets } else { &[] };
    let data = match frame.codec {
        Codec::H264 => h264::avcc_to_annexb(&frame.data, prefix),
        Codec::H265 => h265::hvcc_to_annexb(&frame.data, prefix),
        Codec::Av1 => av1::with_sequence_header(&frame.data, frame.keyframe, &out.av1_config),
        _ => frame.data.to_vec(),
    };
    let n = data.len() as u64;
    let t = MediaTime::new(rescale(frame.pts, frame.timebase, 90_000).max(0) as u64, Frequency::NINETY_KHZ);
    if let Some(w) = core.rtc.writer(mid)
        && let Err(e) = w.write(pt, Instant::now(), t, data)
    {
        tracing::debug!(session = %core.id, error = %e, "whep video write failed");
    }
    sub.count_out(n);
}

fn write_audio(core: &mut Core, out: &mut Out, frame: &Frame) {
    let Some((mid, Some(pt))) = out.audio else { return };
    let t = MediaTime::new(rescale(frame.pts, frame.timebase, RATE).max(0) as u64, Frequency::FORTY_EIGHT_KHZ);
    if let Some(w) = core.rtc.writer(mid)
        && let Err(e) = w.write(pt, Instant::now(), t, frame.data.to_vec())
    {
        tracing::debug!(session = %core.id, error = %e, "whep audio write failed");
    }
}

/// A WHIP publisher.
pub(crate) struct Publish {
    pub(crate) publisher: Publisher,
    pub(crate) feed: Arc<OpusFeed>,
    pub(crate) tx: mpsc::Sender<SessionMsg>,
}

/// Maps a track's RTP time onto the session's timeline: the first packet's arrival, then RTP time.
#[derive(Default)]
struct TrackClock {
    base: Option<(u64, i64)>,
}

impl TrackClock {
    fn time(&mut self, started: Instant, t: MediaTime, arrival: Instant, rate: u32) -> i64 {
        let rtp = rescale(t.numer() as i64, t.denom().max(1), rate);
        let (base_rtp, base_ts) = *self.base.get_or_insert_with(|| {
            let since = arrival.saturating_duration_since(started).as_micros() as i64;
            (rtp as u64, since * rate as i64 / 1_000_000)
        });
        base_ts + (rtp - base_rtp as i64)
    }
}

struct In {
    video_mid: Option<Mid>,
    video_clock: TrackClock,
    audio_clock: TrackClock,
    vps: Option<Vec<u8>>,
    /// Non-VCL H.265 NAL units (HVCC) waiting for the picture with the same RTP time.
    h265_held: Option<(MediaTime, Vec<u8>)>,
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    video_config: Option<Bytes>,
    aac: Option<OpusToAac>,
    aac_track: bool,
    last_pli: Option<Instant>,
    frames: u64,
    keyframes: u64,
}

/// Runs a WHIP publisher until it leaves or the stream is stopped.
pub(crate) async fn run_publish(mut core: Core, mut publish: Publish) {
    core.inner.set_publisher(&core.key, Some(publish.tx.clone()), Some(&publish.feed));
    let aac = match OpusToAac::new() {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::warn!(session = %core.id, error = %e, "opus to aac bridge unavailable; RTMP/FLV/HLS viewers get no audio");
            None
        }
    };
    if aac.is_some() {
        core.inner.hub.metrics().audio_transcoders.fetch_add(1, Ordering::Relaxed);
    }
    let had_aac = aac.is_some();
    let mut st = In {
        video_mid: None,
        video_clock: TrackClock::default(),
        audio_clock: TrackClock::default(),
        vps: None,
        h265_held: None,
        sps: None,
        pps: None,
        video_config: None,
        aac,
        aac_track: false,
        last_pli: None,
        frames: 0,
        keyframes: 0,
    };
    let mut retry = tokio::time::interval(Duration::from_secs(1));
    let mut hub_events = core.inner.hub.events();
    let gop_cache = core.inner.hub.config().gop_cache;
    let mut events_open = true;
    loop {
        let timeout = core.drain(false).await;
        for e in core.take_events() {
            match e {
                Event::MediaAdded(m) if m.kind == MediaKind::Video => st.video_mid = Some(m.mid),
                Event::Connected => request_keyframe(&mut core, &mut st),
                Event::MediaData(d) => on_media(&mut core, &mut st, &mut publish, d),
                _ => {}
            }
        }
        if core.stop.is_some() {
            break;
        }
        let wake = tokio::select! {
            msg = core.rx.recv() => Wake::Msg(msg),
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(timeout)) => Wake::Timeout,
            _ = retry.tick() => Wake::Batch(Batch::Entries { skipped: 0 }),
            ev = hub_events.recv(), if events_open => Wake::Viewer(match ev {
                Ok(ferrocast_hub::HubEvent::ViewerJoined { key, .. }) => Some(key),
                Err(broadcast::error::RecvError::Closed) => {
                    events_open = false;
                    None
                }
                _ => None,
            }),
        };
        match wake {
            Wake::Msg(Some(SessionMsg::Datagram { source, data, tcp })) => {
                let m = core.inner.hub.metrics();
                m.protocol(Protocol::WebRtc).bytes_in.fetch_add(data.len() as u64, Ordering::Relaxed);
                core.input(source, &data, tcp)
            }
            Wake::Msg(Some(SessionMsg::RequestKeyframe)) => request_keyframe(&mut core, &mut st),
            Wake::Msg(Some(SessionMsg::RemoteCandidate(c))) => core.rtc.add_remote_candidate(c),
            Wake::Msg(Some(SessionMsg::Stop)) | Wake::Msg(None) => core.stop = Some("stopped by server or client"),
            Wake::Timeout => core.timeout(),
            Wake::Batch(_) => {
                if core.connected && st.video_config.is_none() && st.video_mid.is_some() {
                    request_keyframe(&mut core, &mut st);
                }
            }
            // A viewer that cannot start from the GOP cache (none yet, or the cache is off) waits for the next
            // keyframe: ask the publisher for one now instead of waiting for its keyframe interval.
            Wake::Viewer(Some(key)) if key == core.key && (st.keyframes == 0 || !gop_cache) => {
                request_keyframe(&mut core, &mut st)
            }
            Wake::Viewer(_) | Wake::Opus(_) => {}
        }
    }
    core.inner.set_publisher(&core.key, None, None);
    if had_aac {
        core.inner.hub.metrics().audio_transcoders.fetch_sub(1, Ordering::Relaxed);
    }
    core.inner.hub.metrics().protocol(Protocol::WebRtc).publishers.fetch_sub(1, Ordering::Relaxed);
    tracing::info!(session = %core.id, stream = %core.key, frames = st.frames, "whip publish stopping");
    drop(publish);
    core.finish("whip publish");
}

fn request_keyframe(core: &mut Core, st: &mut In) {
    if st.last_pli.is_some_and(|t| t.elapsed() < PLI_INTERVAL) {
        return;
    }
    let Some(mid) = st.video_mid else { return };
    if let Some(mut w) = core.rtc.writer(mid)
        && w.request_keyframe(None, KeyframeRequestKind::Pli).is_ok()
    {
        st.last_pli = Some(Instant::now());
        tracing::debug!(session = %core.id, stream = %core.key, "PLI sent to whip publisher");
    }
}

fn push(core: &mut Core, publish: &mut Publish, frame: Frame) {
    match publish.publisher.push_frame(frame) {
        Ok(()) => {}
        Err(PushError::Stopped) => core.stop = Some("stream stopped by the server"),
        Err(PushError::Refused(why)) => {
            core.inner.hub.metrics().frames_rejected.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(session = %core.id, stream = %core.key, "whip frame refused: {why}");
        }
    }
}

fn on_media(core: &mut Core, st: &mut In, publish: &mut Publish, d: MediaData) {
    let codec = d.params.spec().codec;
    match codec {
        RtcCodec::H264 => {
            let ts = st.video_clock.time(core.started, d.time, d.network_time, 90_000);
            let unit = h264::annexb_to_avcc(&d.data);
            if unit.sps.is_some() {
                st.sps = unit.sps.clone();
            }
            if unit.pps.is_some() {
                st.pps = unit.pps.clone();
            }
            if let (Some(sps), Some(pps)) = (&st.sps, &st.pps) {
                let config = h264::build_avc_config(sps, pps);
                if config.is_some() && config != st.video_config {
                    let Some(config) = config else { return };
                    match TrackInfo::from_config(Codec::H264, 90_000, config.clone()) {
                        Ok(info) => {
                            if publish.publisher.set_track(info).is_err() {
                                core.stop = Some("stream stopped by the server");
                                return;
                            }
                            st.video_config = Some(config);
                        }
                        Err(e) => tracing::warn!(session = %core.id, error = %e, "whip: unusable H.264 SPS/PPS"),
                    }
                }
            }
            if st.video_config.is_none() || unit.data.is_empty() {
                if st.video_config.is_none() {
                    request_keyframe(core, st);
                }
                return;
            }
            st.frames += 1;
            st.keyframes += u64::from(unit.keyframe);
            let frame = Frame {
                media: MediaType::Video,
                codec: Codec::H264,
                timebase: 90_000,
                dts: ts,
                pts: ts,
                keyframe: unit.keyframe,
                data: Bytes::from(unit.data),
            };
            push(core, publish, frame);
        }
        RtcCodec::H265 => {
            let ts = st.video_clock.time(core.started, d.time, d.network_time, 90_000);
            let mut unit = h265::annexb_to_hvcc(&d.data);
            // str0m 0.25 hands an access unit's leading parameter sets (and SEI) over as a sample of their own,
            // with the picture's RTP time: keep its non-VCL units for the picture instead of pushing a frame.
            let held = st.h265_held.take();
            if !unit.has_picture {
                st.h265_held = Some((d.time, unit.data));
                unit.data = Vec::new();
            } else if let Some((_, mut data)) = held.filter(|(t, _)| *t == d.time) {
                data.extend_from_slice(&unit.data);
                unit.data = data;
            }
            for (slot, set) in [(&mut st.vps, unit.vps), (&mut st.sps, unit.sps), (&mut st.pps, unit.pps)] {
                if set.is_some() {
                    *slot = set;
                }
            }
            if let (Some(vps), Some(sps), Some(pps)) = (&st.vps, &st.sps, &st.pps) {
                let config = h265::build_hevc_config(vps, sps, pps);
                if config.is_some() && config != st.video_config {
                    let Some(config) = config else { return };
                    if !set_video_track(core, st, publish, Codec::H265, config) {
                        return;
                    }
                }
            }
            push_video(core, st, publish, Codec::H265, ts, unit.keyframe, unit.data);
        }
        RtcCodec::Av1 => {
            let ts = st.video_clock.time(core.started, d.time, d.network_time, 90_000);
            let data = d.data.to_vec();
            if let Some(seq) = av1::sequence_header(&data) {
                let config = av1::build_av1_config(seq);
                // Only the sequence header matters: the record's other bytes are derived from it.
                if config.is_some() && config.as_ref().map(|c| &c[4..]) != st.video_config.as_ref().map(|c| &c[4..]) {
                    let Some(config) = config else { return };
                    if !set_video_track(core, st, publish, Codec::Av1, config) {
                        return;
                    }
                }
            }
            let keyframe = d.is_keyframe();
            push_video(core, st, publish, Codec::Av1, ts, keyframe, data);
        }
        RtcCodec::Vp8 => {
            let ts = st.video_clock.time(core.started, d.time, d.network_time, 90_000);
            let keyframe = d.is_keyframe();
            if st.video_config.is_none() {
                if !keyframe {
                    request_keyframe(core, st);
                    return;
                }
                match TrackInfo::from_config(Codec::Vp8, 90_000, Bytes::new()) {
                    Ok(info) => {
                        if publish.publisher.set_track(info).is_err() {
                            core.stop = Some("stream stopped by the server");
                            return;
                        }
                        st.video_config = Some(Bytes::new());
                    }
                    Err(e) => {
                        tracing::warn!(session = %core.id, error = %e, "whip: VP8 track refused");
                        return;
                    }
                }
            }
            st.frames += 1;
            st.keyframes += u64::from(keyframe);
            let frame = Frame {
                media: MediaType::Video,
                codec: Codec::Vp8,
                timebase: 90_000,
                dts: ts,
                pts: ts,
                keyframe,
                data: Bytes::copy_from_slice(&d.data),
            };
            push(core, publish, frame);
        }
        RtcCodec::Opus => {
            let ts = st.audio_clock.time(core.started, d.time, d.network_time, RATE);
            let frame = Frame {
                media: MediaType::Audio,
                codec: Codec::Opus,
                timebase: RATE,
                dts: ts,
                pts: ts,
                keyframe: true,
                data: Bytes::copy_from_slice(&d.data),
            };
            let _ = publish.feed.tx.send(frame.clone());
            let Some(aac) = st.aac.as_mut() else { return };
            match aac.push(&frame) {
                Ok(frames) => {
                    for f in frames {
                        if !st.aac_track {
                            match TrackInfo::from_config(Codec::Aac, RATE, aac.config()) {
                                Ok(info) => {
                                    if publish.publisher.set_track(info).is_err() {
                                        core.stop = Some("stream stopped by the server");
                                        return;
                                    }
                                    st.aac_track = true;
                                }
                                Err(e) => {
                                    tracing::warn!(session = %core.id, error = %e, "opus to aac: bad AAC configuration");
                                    st.aac = None;
                                    return;
                                }
                            }
                        }
                        st.frames += 1;
                        push(core, publish, f);
                    }
                }
                Err(e) => {
                    core.inner.hub.metrics().audio_transcode_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(session = %core.id, error = %e, "opus to aac: packet skipped");
                }
            }
        }
        other => {
            core.inner.hub.metrics().frames_rejected.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(session = %core.id, codec = ?other, "whip: codec not carried; frame dropped");
        }
    }
}

/// Sets the video track from a configuration record built from in-band parameter sets; false when the stream
/// was stopped.
fn set_video_track(core: &mut Core, st: &mut In, publish: &mut Publish, codec: Codec, config: Bytes) -> bool {
    match TrackInfo::from_config(codec, 90_000, config.clone()) {
        Ok(info) => {
            if publish.publisher.set_track(info).is_err() {
                core.stop = Some("stream stopped by the server");
                return false;
            }
            st.video_config = Some(config);
        }
        Err(e) => tracing::warn!(session = %core.id, codec = codec.name(), error = %e,
            "whip: unusable in-band video configuration"),
    }
    true
}

/// Pushes a video access unit once the track is configured; before that, asks for a keyframe.
fn push_video(
    core: &mut Core,
    st: &mut In,
    publish: &mut Publish,
    codec: Codec,
    ts: i64,
    keyframe: bool,
    data: Vec<u8>,
) {
    if st.video_config.is_none() || data.is_empty() {
        if st.video_config.is_none() {
            request_keyframe(core, st);
        }
        return;
    }
    st.frames += 1;
    st.keyframes += u64::from(keyframe);
    let frame =
        Frame { media: MediaType::Video, codec, timebase: 90_000, dts: ts, pts: ts, keyframe, data: Bytes::from(data) };
    push(core, publish, frame);
}
