//! The RTMP/RTMPS server on top of the sans-IO [`ServerSession`]: accepts connections, asks the hub's access
//! policy about every publish and play (the tcUrl query overridden by the stream-name query), and connects
//! publishers and players to the hub.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use ferrocast_formats::{amf0, flv};
use ferrocast_hub::net::{WriteStallTimeout, write_all_vectored};
use ferrocast_hub::{
    AccessRequest, Batch, Denied, DenyKind, Direction, EndReason, Entry, EntryKind, Hub, MuxSlot, Muxed, Protocol,
    PublishError, PublishRequest, Publisher, PushError, StreamKey, Subscriber, SubscriberOptions, Tracks,
    resolve_domain,
};
use ferrocast_media::{Codec, Frame, MediaType, TrackInfo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::{AUDIO_CSID, DATA_CSID, ServerConfig, ServerEvent, ServerSession, VIDEO_CSID, encode_shared_chunks};

/// How the RTMP server behaves.
#[derive(Debug, Clone)]
pub struct RtmpServeOptions {
    /// Domain of connections whose tcUrl names an IP address or no host.
    pub default_domain: String,
    /// Outbound chunk size (the same for every viewer so media chunks are made once per stream).
    pub chunk_size: u32,
    /// Window acknowledgement size announced to clients.
    pub window_ack_size: u32,
    /// A connection that is not playing and sends nothing for this long is closed.
    pub publisher_idle_timeout: Duration,
    /// A viewer whose socket accepts nothing for this long is disconnected.
    pub stall_timeout: Duration,
    /// Wait this long between writes to a viewer to gather frames (zero: write as soon as a frame arrives).
    pub merge_window: Duration,
    /// Most ring entries per write.
    pub max_batch: usize,
    /// `Rtmp` or `Rtmps` (for metrics and logs).
    pub protocol: Protocol,
}

/// Read buffer of a connection while it publishes or negotiates.
const READ_BUFFER: usize = 16 * 1024;
/// Read buffer of a connection once it plays.
const PLAYER_READ_BUFFER: usize = 2048;

/// The message stream id whose chunks are shared between viewers (the id every common client gets).
const SHARED_STREAM_ID: u32 = 1;

/// Accepts connections until `shutdown` turns true. With `tls`, every connection is RTMPS.
pub async fn serve_listener(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    hub: Hub,
    options: Arc<RtmpServeOptions>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let (socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "rtmp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let local = socket.local_addr().ok();
        let hub = hub.clone();
        let options = options.clone();
        let tls = tls.clone();
        let span = info_span!("rtmp", protocol = options.protocol.label(), client = %peer);
        tokio::spawn(
            async move {
                match tls {
                    None => serve_connection(socket, peer, local, hub, options).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(socket)).await {
                            Ok(Ok(stream)) => serve_connection(stream, peer, local, hub, options).await,
                            Ok(Err(e)) => {
                                hub.metrics().protocol(options.protocol).rejected.fetch_add(1, Ordering::Relaxed);
                                info!(error = %e, "tls handshake failed");
                            }
                            Err(_) => info!("tls handshake timed out"),
                        }
                    }
                }
            }
            .instrument(span),
        );
    }
}

enum Role {
    Idle,
    Publishing { publisher: Box<PublishState>, stream_id: u32 },
    Playing { subscriber: Box<Subscriber>, stream_id: u32 },
}

struct PublishState {
    publisher: Publisher,
    clock: TimestampUnwrap,
    warned: Vec<&'static str>,
}

/// One connection: the session engine, where the client is, and what it is doing.
struct Connection<S> {
    session: ServerSession,
    reader: ReadHalf<WriteStallTimeout<S>>,
    writer: WriteHalf<WriteStallTimeout<S>>,
    hub: Hub,
    options: Arc<RtmpServeOptions>,
    peer: SocketAddr,
    /// Our end of the connection.
    local: Option<SocketAddr>,
    app: String,
    domain: String,
    connect_params: Vec<(String, String)>,
    role: Role,
    close_after_flush: bool,
    /// Already-chunked media (a player's metadata and sequence headers) to write after the session's output.
    pending_raw: Vec<Bytes>,
}

/// Serves one client from handshake to close.
pub async fn serve_connection<S>(
    io: S,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    hub: Hub,
    options: Arc<RtmpServeOptions>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = WriteStallTimeout::new(io, options.stall_timeout).with_metrics(hub.metrics().clone());
    let (reader, writer) = tokio::io::split(io);
    let session = ServerSession::new(ServerConfig {
        chunk_size: options.chunk_size,
        window_ack_size: options.window_ack_size,
        peer_bandwidth: options.window_ack_size,
        ..ServerConfig::default()
    });
    let mut conn = Connection {
        session,
        reader,
        writer,
        hub,
        options,
        peer,
        local,
        app: String::new(),
        domain: String::new(),
        connect_params: Vec::new(),
        role: Role::Idle,
        close_after_flush: false,
        pending_raw: Vec::new(),
    };
    let end = conn.run().await;
    conn.finish(end).await;
}

/// How a connection ended.
enum End {
    Closed,
    Error(String),
    Refused,
    StreamEnded,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Connection<S> {
    async fn run(&mut self) -> End {
        let mut buf = vec![0u8; READ_BUFFER];
        let mut batch: Vec<Arc<Entry>> = Vec::new();
        loop {
            if self.close_after_flush {
                return End::Refused;
            }
            let n = match &mut self.role {
                Role::Playing { subscriber, stream_id } => {
                    let stream_id = *stream_id;
                    // A player only sends acknowledgements and the odd command: keep its idle footprint small.
                    if buf.len() > PLAYER_READ_BUFFER {
                        buf.truncate(PLAYER_READ_BUFFER);
                        buf.shrink_to_fit();
                    }
                    batch.clear();
                    tokio::select! {
                        read = self.reader.read(&mut buf) => match read {
                            Ok(n) => n,
                            Err(e) => return End::Error(e.to_string()),
                        },
                        b = subscriber.next_batch(&mut batch, self.options.max_batch) => {
                            match b {
                                Batch::Ended => return End::StreamEnded,
                                Batch::Entries { skipped } => {
                                    if let Err(e) = self.write_batch(&batch, skipped, stream_id).await {
                                        return End::Error(e);
                                    }
                                    if !self.options.merge_window.is_zero() {
                                        tokio::time::sleep(self.options.merge_window).await;
                                    }
                                    continue;
                                }
                            }
                        }
                    }
                }
                _ => {
                    match tokio::time::timeout(self.options.publisher_idle_timeout, self.reader.read(&mut buf)).await {
                        Ok(Ok(n)) => n,
                        Ok(Err(e)) => return End::Error(e.to_string()),
                        Err(_) => {
                            return End::Error(format!("no data for {:?}", self.options.publisher_idle_timeout));
                        }
                    }
                }
            };
            if n == 0 {
                return End::Closed;
            }
            self.hub.metrics().protocol(self.options.protocol).bytes_in.fetch_add(n as u64, Ordering::Relaxed);
            if let Err(e) = self.session.handle_input(&buf[..n]) {
                return End::Error(format!("protocol error: {e}"));
            }
            while let Some(event) = self.session.poll_event() {
                if let Err(end) = self.on_event(event) {
                    return end;
                }
            }
            if let Err(e) = self.flush_session().await {
                return End::Error(e);
            }
        }
    }

    async fn finish(&mut self, end: End) {
        let role = std::mem::replace(&mut self.role, Role::Idle);
        match (&end, role) {
            (_, Role::Publishing { publisher, .. }) => {
                let reason = match &end {
                    End::Closed => EndReason::PublisherClosed,
                    End::Error(e) => EndReason::PublisherLost(e.clone()),
                    End::Refused | End::StreamEnded => EndReason::Stopped("stopped by the server".into()),
                };
                info!(stream = %publisher.publisher.key(), ?reason, "publish ended");
                self.hub.metrics().protocol(self.options.protocol).publishers.fetch_sub(1, Ordering::Relaxed);
                publisher.publisher.close(reason);
            }
            (End::StreamEnded, Role::Playing { subscriber, stream_id }) => {
                info!(stream = %subscriber.key(), "stream ended; telling the player");
                self.session.end_play(stream_id);
                let _ = self.flush_session().await;
            }
            (_, Role::Playing { subscriber, .. }) => {
                let why = match &end {
                    End::Error(e) => e.as_str(),
                    _ => "client closed",
                };
                info!(stream = %subscriber.key(), "play ended: {why}");
            }
            (End::Error(e), Role::Idle) => debug!("connection closed: {e}"),
            _ => {}
        }
        let _ = self.flush_session().await;
        let _ = self.writer.shutdown().await;
    }

    async fn flush_session(&mut self) -> Result<(), String> {
        while let Some(out) = self.session.take_output() {
            self.writer.write_all(&out).await.map_err(|e| e.to_string())?;
            self.count_out(out.len());
        }
        if !self.pending_raw.is_empty() {
            let raw = std::mem::take(&mut self.pending_raw);
            let slices: Vec<&[u8]> = raw.iter().map(|b| b.as_ref()).collect();
            let n = write_all_vectored(&mut self.writer, &slices).await.map_err(|e| e.to_string())?;
            self.count_out(n as usize);
        }
        Ok(())
    }

    fn count_out(&self, n: usize) {
        self.hub.metrics().protocol(self.options.protocol).bytes_out.fetch_add(n as u64, Ordering::Relaxed);
        if let Role::Playing { subscriber, .. } = &self.role {
            subscriber.count_out(n as u64);
        }
    }

    fn refuse(&mut self) {
        self.hub.metrics().protocol(self.options.protocol).rejected.fetch_add(1, Ordering::Relaxed);
        self.close_after_flush = true;
    }

    fn on_event(&mut self, event: ServerEvent) -> Result<(), End> {
        match event {
            ServerEvent::Connect { app, tc_url, .. } => {
                let (app, app_params) = split_query(&app);
                let (host, tc_params) = tc_url.as_deref().map(parse_tc_url).unwrap_or_default();
                self.domain = resolve_domain(host.as_deref(), &self.options.default_domain);
                self.app = app.trim_matches('/').to_string();
                self.connect_params = tc_params;
                merge_params(&mut self.connect_params, app_params);
                debug!(app = %self.app, domain = %self.domain, tc_url = tc_url.as_deref().unwrap_or(""), "connect");
                self.session.accept_connect();
            }
            ServerEvent::Publish { stream_id, name, .. } => self.on_publish(stream_id, &name),
            ServerEvent::Play { stream_id, name, .. } => self.on_play(stream_id, &name),
            ServerEvent::Video { payload, timestamp, .. } => self.on_media(MediaType::Video, timestamp, payload)?,
            ServerEvent::Audio { payload, timestamp, .. } => self.on_media(MediaType::Audio, timestamp, payload)?,
            ServerEvent::Data { payload, .. } => {
                if let Role::Publishing { publisher, .. } = &mut self.role
                    && is_on_metadata(&payload)
                    && publisher.publisher.set_metadata(payload).is_err()
                {
                    return Err(End::StreamEnded);
                }
            }
            ServerEvent::Unpublish { stream_id } | ServerEvent::DeleteStream { stream_id } => {
                let ours = match &self.role {
                    Role::Publishing { stream_id: s, .. } | Role::Playing { stream_id: s, .. } => *s == stream_id,
                    Role::Idle => false,
                };
                // The stream this connection publishes or plays was closed by the client: a publisher's session
                // ends now (viewers then wait out the grace period); a player just stops.
                if ours && let Role::Publishing { publisher, .. } = std::mem::replace(&mut self.role, Role::Idle) {
                    info!(stream = %publisher.publisher.key(), "unpublished by the client");
                    self.hub.metrics().protocol(self.options.protocol).publishers.fetch_sub(1, Ordering::Relaxed);
                    publisher.publisher.close(EndReason::PublisherClosed);
                }
            }
            ServerEvent::Pause { .. } => {}
        }
        Ok(())
    }

    fn stream_key(&self, name: &str) -> (StreamKey, Vec<(String, String)>) {
        let (stream, name_params) = split_query(name);
        let mut params = self.connect_params.clone();
        merge_params(&mut params, name_params);
        (StreamKey::new(&self.domain, &self.app, stream.trim_matches('/')), params)
    }

    /// Asks the hub's access policy; a refusal is logged here and answered by the caller.
    fn check_access(&self, direction: Direction, key: &StreamKey, params: &[(String, String)]) -> Result<(), Denied> {
        let req = AccessRequest {
            direction,
            protocol: self.options.protocol,
            key,
            params,
            client: Some(self.peer),
            referer: None,
        };
        self.hub.check_access(&req).inspect_err(|denied| {
            warn!(
                stream = %key,
                client = %self.peer,
                protocol = self.options.protocol.label(),
                kind = ?denied.kind,
                reason = %denied.reason,
                "{} refused: {}",
                direction.label(),
                denied.reason
            );
        })
    }

    fn on_publish(&mut self, stream_id: u32, name: &str) {
        let (key, params) = self.stream_key(name);
        if !matches!(self.role, Role::Idle) {
            warn!(stream = %key, "refusing a second publish/play on one connection");
            self.session.reject_publish(stream_id, "NetStream.Publish.BadName", "connection is already busy");
            return self.refuse();
        }
        if key.stream.is_empty() || key.app.is_empty() {
            warn!(stream = %key, "publish refused: empty app or stream name");
            self.session.reject_publish(stream_id, "NetStream.Publish.BadName", "app and stream name are required");
            return self.refuse();
        }
        if let Err(denied) = self.check_access(Direction::Publish, &key, &params) {
            let code = match denied.kind {
                DenyKind::Unauthorized => "NetStream.Publish.Unauthorized",
                DenyKind::Forbidden | DenyKind::UnknownDomain => "NetStream.Publish.Forbidden",
            };
            self.session.reject_publish(stream_id, code, &denied.reason);
            return self.refuse();
        }
        let request = PublishRequest {
            key: key.clone(),
            protocol: self.options.protocol,
            client: Some(self.peer),
            server: self.local,
            params,
        };
        match self.hub.publish(request) {
            Ok(publisher) => {
                info!(stream = %key, "publish started");
                self.hub.metrics().protocol(self.options.protocol).publishers.fetch_add(1, Ordering::Relaxed);
                self.session.accept_publish(stream_id);
                let state = PublishState { publisher, clock: TimestampUnwrap::default(), warned: Vec::new() };
                self.role = Role::Publishing { publisher: Box::new(state), stream_id };
            }
            Err(e @ PublishError::AlreadyPublishing(_)) => {
                warn!(stream = %key, "publish refused: {e}");
                self.session.reject_publish(stream_id, "NetStream.Publish.BadName", &format!("{e}"));
                self.refuse();
            }
            Err(e) => {
                warn!(stream = %key, "publish refused: {e}");
                self.session.reject_publish(stream_id, "NetStream.Publish.Denied", &format!("{e}"));
                self.refuse();
            }
        }
    }

    fn on_play(&mut self, stream_id: u32, name: &str) {
        let (key, params) = self.stream_key(name);
        if !matches!(self.role, Role::Idle) {
            self.session.reject_play(stream_id, "NetStream.Play.Failed", "connection is already busy");
            return self.refuse();
        }
        if let Err(denied) = self.check_access(Direction::Play, &key, &params) {
            let code = match denied.kind {
                DenyKind::Unauthorized => "NetStream.Play.Unauthorized",
                DenyKind::Forbidden | DenyKind::UnknownDomain => "NetStream.Play.Forbidden",
            };
            self.session.reject_play(stream_id, code, &denied.reason);
            return self.refuse();
        }
        let key = self.hub.playback_key(&key);
        match self.hub.subscribe(&key, self.options.protocol, Some(self.peer), SubscriberOptions::default()) {
            Ok(subscriber) => {
                info!(stream = %key, viewer = subscriber.id(), "play started");
                self.session.accept_play(stream_id);
                let mut prelude = Vec::new();
                if let Some(meta) = subscriber.start_metadata() {
                    prelude.extend(self.mux(&EntryKind::Metadata(meta.clone()), 0, stream_id));
                }
                prelude.extend(self.config_chunks(subscriber.start_tracks(), 0, stream_id));
                self.pending_raw.extend(prelude);
                self.role = Role::Playing { subscriber: Box::new(subscriber), stream_id };
            }
            Err(e) => {
                info!(stream = %key, "play refused: {e}");
                self.session.reject_play(stream_id, "NetStream.Play.StreamNotFound", &format!("{e}"));
                self.refuse();
            }
        }
    }

    fn on_media(&mut self, media: MediaType, timestamp: u32, payload: Bytes) -> Result<(), End> {
        let Role::Publishing { publisher, .. } = &mut self.role else {
            return Ok(());
        };
        let st = publisher.as_mut();
        let dts = st.clock.unwrap(timestamp);
        let result = match media {
            MediaType::Video => match flv::parse_video_tag(&payload) {
                Ok(flv::VideoTag::Config { codec, config }) => set_track(st, codec, config),
                Ok(flv::VideoTag::Frame { codec, keyframe, composition_ms, data }) => {
                    let frame =
                        Frame { media, codec, timebase: 1000, dts, pts: dts + composition_ms as i64, keyframe, data };
                    push(st, frame)
                }
                Ok(flv::VideoTag::EndOfSequence { .. }) => Ok(()),
                Ok(flv::VideoTag::Ignored { reason }) => {
                    debug!(stream = %st.publisher.key(), "video tag ignored: {reason}");
                    Ok(())
                }
                Err(e) => Err(Stop::Rejected(format!("malformed video tag: {e}"))),
            },
            MediaType::Audio => match flv::parse_audio_tag(&payload) {
                Ok(flv::AudioTag::Config { codec, config }) => set_track(st, codec, config),
                Ok(flv::AudioTag::Frame { codec, data, params }) => {
                    if !codec.needs_config() && st.publisher.tracks().audio.is_none() {
                        let info = TrackInfo {
                            media,
                            codec,
                            timebase: 1000,
                            config: Bytes::new(),
                            video: None,
                            audio: params,
                        };
                        if st.publisher.set_track(info).is_err() {
                            return Err(End::StreamEnded);
                        }
                    }
                    let frame = Frame { media, codec, timebase: 1000, dts, pts: dts, keyframe: true, data };
                    push(st, frame)
                }
                Ok(flv::AudioTag::Ignored { reason }) => {
                    debug!(stream = %st.publisher.key(), "audio tag ignored: {reason}");
                    Ok(())
                }
                Err(e) => Err(Stop::Rejected(format!("malformed audio tag: {e}"))),
            },
        };
        match result {
            Ok(()) => Ok(()),
            Err(Stop::Stopped) => Err(End::StreamEnded),
            Err(Stop::Rejected(why)) => {
                self.hub.metrics().frames_rejected.fetch_add(1, Ordering::Relaxed);
                if !st.warned.contains(&"frame") {
                    st.warned.push("frame");
                    warn!(stream = %st.publisher.key(), "frame refused: {why} (further refusals on this stream are counted in metrics, not logged)");
                }
                Ok(())
            }
        }
    }

    async fn write_batch(&mut self, batch: &[Arc<Entry>], skipped: u64, stream_id: u32) -> Result<(), String> {
        self.flush_session().await?;
        let mut owned: Vec<Bytes> = Vec::new();
        if skipped > 0
            && let Role::Playing { subscriber, .. } = &self.role
        {
            debug!(stream = %subscriber.key(), skipped, "slow rtmp viewer skipped frames");
            let tracks = subscriber.current_tracks();
            owned.extend(self.config_chunks(&tracks, 0, stream_id));
        }
        let shared = stream_id == SHARED_STREAM_ID;
        if !shared {
            for e in batch {
                owned.extend(self.mux(&e.kind, e.time_ms, stream_id));
            }
        }
        let chunk_size = self.session.out_chunk_size() as usize;
        let mut slices: Vec<&[u8]> = owned.iter().map(|b| b.as_ref()).collect();
        if shared {
            for e in batch {
                let muxed = e.muxed(MuxSlot::Rtmp, |kind| mux_rtmp(kind, e.time_ms, chunk_size, SHARED_STREAM_ID));
                slices.extend(muxed.iter().map(|b| b.as_ref()));
            }
        }
        let n = write_all_vectored(&mut self.writer, &slices).await.map_err(|e| e.to_string())?;
        self.count_out(n as usize);
        Ok(())
    }

    fn mux(&self, kind: &EntryKind, time_ms: i64, stream_id: u32) -> Muxed {
        mux_rtmp(kind, time_ms, self.session.out_chunk_size() as usize, stream_id)
    }

    fn config_chunks(&self, tracks: &Tracks, time_ms: i64, stream_id: u32) -> Vec<Bytes> {
        let mut out = Vec::new();
        for track in [&tracks.video, &tracks.audio].into_iter().flatten() {
            out.extend(self.mux(&EntryKind::Track(track.clone()), time_ms, stream_id));
        }
        out
    }
}

enum Stop {
    Stopped,
    Rejected(String),
}

fn set_track(st: &mut PublishState, codec: Codec, config: Bytes) -> Result<(), Stop> {
    let info = TrackInfo::from_config(codec, 1000, config)
        .map_err(|e| Stop::Rejected(format!("unusable {} configuration: {e}", codec.name())))?;
    if let (Some(v), MediaType::Video) = (&info.video, info.media) {
        info!(stream = %st.publisher.key(), codec = codec.name(), width = v.width, height = v.height, "video track");
    }
    if let (Some(a), MediaType::Audio) = (&info.audio, info.media) {
        info!(stream = %st.publisher.key(), codec = codec.name(), rate = a.sample_rate, channels = a.channels, "audio track");
    }
    st.publisher.set_track(info).map_err(|_| Stop::Stopped)
}

fn push(st: &mut PublishState, frame: Frame) -> Result<(), Stop> {
    st.publisher.push_frame(frame).map_err(|e| match e {
        PushError::Stopped => Stop::Stopped,
        PushError::Refused(why) => Stop::Rejected(why),
    })
}

/// RTMP chunks of one ring entry for message stream `stream_id`.
pub fn mux_rtmp(kind: &EntryKind, time_ms: i64, chunk_size: usize, stream_id: u32) -> Muxed {
    let ids = |media: MediaType| match media {
        MediaType::Video => (VIDEO_CSID, flv::TAG_VIDEO),
        MediaType::Audio => (AUDIO_CSID, flv::TAG_AUDIO),
    };
    match kind {
        EntryKind::Frame(frame) => {
            let mut header = [0u8; 16];
            let n = flv::frame_body_header(frame, &mut header);
            let (csid, type_id) = ids(frame.media);
            let ts = frame.dts_ms() as u32;
            encode_shared_chunks(csid, type_id, stream_id, ts, &header[..n], &frame.data, chunk_size)
        }
        EntryKind::Track(track) => match flv::config_body(track) {
            Some(body) => {
                let (csid, type_id) = ids(track.media);
                encode_shared_chunks(csid, type_id, stream_id, time_ms as u32, &[], &body, chunk_size)
            }
            None => Vec::new(),
        },
        EntryKind::Metadata(body) => {
            encode_shared_chunks(DATA_CSID, flv::TAG_SCRIPT, stream_id, time_ms as u32, &[], body, chunk_size)
        }
    }
}

/// Extends RTMP's 32-bit millisecond timestamps to 64 bits across wrap-around.
#[derive(Debug, Default)]
struct TimestampUnwrap {
    last: Option<u32>,
    epoch: i64,
}

impl TimestampUnwrap {
    fn unwrap(&mut self, ts: u32) -> i64 {
        if let Some(last) = self.last
            && ts < last
            && last - ts > u32::MAX / 2
        {
            self.epoch += 1 << 32;
        }
        self.last = Some(ts);
        self.epoch + ts as i64
    }
}

/// Whether an AMF0 data message is `onMetaData`.
fn is_on_metadata(payload: &[u8]) -> bool {
    let mut rest = payload;
    matches!(amf0::decode(&mut rest), Ok(amf0::Amf0Value::String(s)) if s == "onMetaData")
}

/// Splits `name?query` into the name and its decoded query pairs.
pub fn split_query(s: &str) -> (&str, Vec<(String, String)>) {
    match s.split_once('?') {
        Some((name, query)) => (name, parse_query(query)),
        None => (s, Vec::new()),
    }
}

/// Parses `a=1&b=2` (percent-decoding values, keeping keys and values as sent otherwise).
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split(['&', ';'])
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Later parameters override earlier ones with the same key.
fn merge_params(base: &mut Vec<(String, String)>, over: Vec<(String, String)>) {
    for (k, v) in over {
        match base.iter_mut().find(|(bk, _)| *bk == k) {
            Some(slot) => slot.1 = v,
            None => base.push((k, v)),
        }
    }
}

/// Extracts the host and the query parameters of `rtmp://host[:port]/app[/...][?query]`.
pub fn parse_tc_url(tc_url: &str) -> (Option<String>, Vec<(String, String)>) {
    let (without_query, params) = split_query(tc_url);
    let rest = without_query.split_once("://").map_or(without_query, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = (!host.is_empty()).then(|| host.to_string());
    (host, params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tc_url_host_and_query() {
        let (host, params) = parse_tc_url("rtmp://Push.Example.com:1935/live?txSecret=ab&txTime=5F");
        assert_eq!(host.as_deref(), Some("Push.Example.com:1935"));
        assert_eq!(params, vec![("txSecret".into(), "ab".into()), ("txTime".into(), "5F".into())]);
        assert_eq!(parse_tc_url("rtmp://127.0.0.1/live").0.as_deref(), Some("127.0.0.1"));
        assert_eq!(parse_tc_url("").0, None);
    }

    #[test]
    fn stream_name_query_is_split_and_decoded() {
        let (name, params) = split_query("stream1?txSecret=a%2Fb&txTime=65E0&flag");
        assert_eq!(name, "stream1");
        assert_eq!(params[0], ("txSecret".into(), "a/b".into()));
        assert_eq!(params[2], ("flag".into(), String::new()));
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
    }

    #[test]
    fn stream_name_parameters_override_tc_url_ones() {
        let mut base = vec![("txTime".into(), "1".into()), ("a".into(), "x".into())];
        merge_params(&mut base, vec![("txTime".into(), "2".into())]);
        assert_eq!(base, vec![("txTime".into(), "2".into()), ("a".into(), "x".into())]);
    }

    #[test]
    fn timestamps_unwrap_across_the_32_bit_boundary() {
        let mut c = TimestampUnwrap::default();
        assert_eq!(c.unwrap(u32::MAX - 10), (u32::MAX - 10) as i64);
        assert_eq!(c.unwrap(5), (1i64 << 32) + 5);
        assert_eq!(c.unwrap(3), (1i64 << 32) + 3, "small backwards steps are not wraps");
    }
}
