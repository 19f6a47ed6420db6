//! SRT ingest and playback (DESIGN §4): an SRT listener (srt-tokio) whose callers publish MPEG-TS into the hub or,
//! with `m=request` in their streamid, receive a live stream as MPEG-TS.
//!
//! Every caller is decided on during the SRT handshake, before any media flows: the streamid is parsed
//! ([`streamid`]), the hub's access policy is asked (signature, forbidden streams, ...), and a publish claims the
//! stream (or a play subscribes to it). A refusal is sent as an SRT rejection code in the handshake response
//! (`2401` unauthorized, `2403` forbidden, `2404` not found, `2409` already publishing, `2400` bad streamid) and
//! logged with stream, client and reason.
//!
//! Encryption is per domain: the passphrase is chosen from the streamid's domain (`h=`, else the default domain),
//! falling back to the server-wide one. A caller without encryption to a domain with a passphrase is refused
//! (`1011` unsecure), a wrong passphrase fails the key exchange (`1010` bad secret), and, as libsrt does with its
//! default `SRTO_ENFORCEDENCRYPTION`, an encrypting caller to a domain without a passphrase is refused (`1011`).

#![warn(missing_docs)]

pub mod streamid;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ferrocast_formats::ts::TsMuxer;
use ferrocast_formats::ts_demux::{DemuxEvent, TsDemuxError, TsDemuxer};
use ferrocast_hub::{
    AccessRequest, Batch, DenyKind, Direction, EndReason, Entry, EntryKind, Hub, Protocol, PublishRequest, Publisher,
    PushError, Subscriber, SubscriberOptions, Tracks, TransportStats, normalize_domain,
};
use ferrocast_media::MediaType;
use futures::{SinkExt, StreamExt};
use srt_protocol::packet::{CoreRejectReason, RejectReason, ServerRejectReason};
use srt_protocol::settings::{KeySettings, Passphrase};
use srt_tokio::options::{ByteCount, KeySize};
use srt_tokio::{ConnectionRequest, SocketStatistics, SrtIncoming, SrtListener, SrtSocket};
use tokio::sync::watch;
use tracing::{Instrument, debug, info, info_span, warn};

pub use streamid::{Mode, StreamIdError, StreamRequest, parse_stream_id};

/// How the SRT server behaves.
#[derive(Debug, Clone)]
pub struct SrtServeOptions {
    /// Domain of callers whose streamid names none (or an IP address).
    pub default_domain: String,
    /// AES passphrase (10..=79 characters) of the domains [`passphrases`](Self::passphrases) does not name;
    /// `None` accepts unencrypted callers there.
    pub passphrase: Option<String>,
    /// Per-domain AES passphrases (domain -> passphrase), overriding [`passphrase`](Self::passphrase); an empty
    /// passphrase makes that domain unencrypted even with a server-wide one.
    pub passphrases: HashMap<String, String>,
    /// Key length in bytes (16, 24 or 32) used when the caller does not announce one; 0 follows the caller.
    pub pbkeylen: u16,
    /// SRT latency (receive and send).
    pub latency: Duration,
    /// A publisher that sends nothing for this long is disconnected.
    pub publisher_idle_timeout: Duration,
    /// A viewer whose SRT send buffer accepts nothing for this long is disconnected.
    pub stall_timeout: Duration,
    /// Most ring entries per send.
    pub max_batch: usize,
}

/// Why the SRT listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum SrtError {
    /// The UDP socket could not be bound.
    #[error("cannot bind SRT on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A passphrase has a length SRT does not allow.
    #[error("srt passphrase {0} must be 10 to 79 characters long")]
    Passphrase(String),
    /// The key length is not 0, 16, 24 or 32.
    #[error("srt pbkeylen must be 0, 16, 24 or 32")]
    KeyLength,
}

/// A bound SRT listener, ready to [`serve`](SrtServer::serve).
pub struct SrtServer {
    listener: SrtListener,
    incoming: SrtIncoming,
    local: Option<SocketAddr>,
    passphrases: Arc<Passphrases>,
    options: Arc<SrtServeOptions>,
}

/// The validated passphrases: which one (if any) protects a domain.
#[derive(Debug, Default)]
struct Passphrases {
    default: Option<Passphrase>,
    /// Normalized domain -> its passphrase (`None`: unencrypted, whatever the default).
    domains: HashMap<String, Option<Passphrase>>,
}

impl Passphrases {
    fn new(options: &SrtServeOptions) -> Result<Passphrases, SrtError> {
        let check = |what: String, p: &str| {
            if p.is_empty() {
                Ok(None)
            } else {
                Passphrase::try_from(p.to_string()).map(Some).map_err(|_| SrtError::Passphrase(what))
            }
        };
        let default = match &options.passphrase {
            Some(p) => check("(server-wide)".into(), p)?,
            None => None,
        };
        let mut domains = HashMap::new();
        for (domain, p) in &options.passphrases {
            domains.insert(normalize_domain(domain), check(format!("of domain {domain}"), p)?);
        }
        Ok(Passphrases { default, domains })
    }

    /// The passphrase callers naming `domain` (already normalized) must use.
    fn for_domain(&self, domain: &str) -> Option<&Passphrase> {
        match self.domains.get(domain) {
            Some(p) => p.as_ref(),
            None => self.default.as_ref(),
        }
    }
}

/// Requested UDP socket buffer sizes of the listener.
const UDP_BUFFER: u64 = 4 * 1024 * 1024;

/// MPEG-TS bytes per SRT message: 7 TS packets, the SRT live-mode payload size.
const TS_PER_MESSAGE: usize = 7 * 188;

impl SrtServer {
    /// Binds the UDP socket (`addr` like `0.0.0.0:9000`) and checks the options.
    pub async fn bind(addr: &str, options: SrtServeOptions) -> Result<SrtServer, SrtError> {
        let passphrases = Arc::new(Passphrases::new(&options)?);
        if ![0, 16, 24, 32].contains(&options.pbkeylen) {
            return Err(SrtError::KeyLength);
        }
        let bind_err = |source| SrtError::Bind { addr: addr.to_string(), source };
        let local: SocketAddr = addr
            .parse()
            .map_err(|_| bind_err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an ip:port address")))?;
        // One UDP socket carries every caller: srt-tokio's 64 KiB socket buffers overflow with a few streams (and
        // with the GOP-cache burst a new viewer gets), so ask for 4 MiB (the kernel caps it at rmem/wmem_max).
        let (listener, incoming) = SrtListener::builder()
            .latency(options.latency)
            .set(|o| {
                o.connect.udp_recv_buffer_size = ByteCount(UDP_BUFFER);
                o.connect.udp_send_buffer_size = ByteCount(UDP_BUFFER);
            })
            .bind(local)
            .await
            .map_err(bind_err)?;
        Ok(SrtServer { listener, incoming, local: Some(local), passphrases, options: Arc::new(options) })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }

    /// Serves callers until `shutdown` turns true.
    pub async fn serve(mut self, hub: Hub, mut shutdown: watch::Receiver<bool>) {
        loop {
            let request = tokio::select! {
                r = self.incoming.incoming().next() => r,
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            let Some(request) = request else { break };
            let hub = hub.clone();
            let options = self.options.clone();
            let passphrases = self.passphrases.clone();
            let local = self.local;
            let span = info_span!("srt", client = %request.remote());
            tokio::spawn(
                async move { handle_request(request, hub, options, &passphrases, local).await }.instrument(span),
            );
        }
        self.listener.close().await;
    }
}

async fn handle_request(
    request: ConnectionRequest,
    hub: Hub,
    options: Arc<SrtServeOptions>,
    passphrases: &Passphrases,
    local: Option<SocketAddr>,
) {
    let client = request.remote();
    let counters = hub.metrics().protocol(Protocol::Srt);
    let raw = request.stream_id().map(|s| s.to_string()).unwrap_or_default();
    let refuse = |stream: &str, reason: &str, code: RejectReason| {
        counters.rejected.fetch_add(1, Ordering::Relaxed);
        warn!(stream = %stream, client = %client, protocol = "srt", "srt caller refused: {reason}");
        code
    };
    let parsed = match parse_stream_id(&raw, &options.default_domain) {
        Ok(p) => p,
        Err(e) => {
            let code = refuse(&raw, &format!("bad streamid `{raw}`: {e}"), ServerRejectReason::BadRequest.into());
            let _ = request.reject(code).await;
            return;
        }
    };
    let stream = parsed.key.to_string();
    // Encryption, chosen by the domain the caller names: with a passphrase, the caller's key material must
    // unwrap with it (else the handshake is rejected with 1010 "bad secret"); a caller without key material is
    // rejected with 1011 "unsecure", and so is one with key material to a domain without a passphrase. The key
    // size must be the one the caller announces (libsrt announces none when its pbkeylen is left at default).
    let passphrase = passphrases.for_domain(&parsed.key.domain);
    let key_settings = match passphrase {
        Some(p) => {
            let wanted = match options.pbkeylen {
                16 => KeySize::AES128,
                24 => KeySize::AES192,
                32 => KeySize::AES256,
                _ => KeySize::Unspecified,
            };
            if wanted != KeySize::Unspecified
                && request.key_size() != KeySize::Unspecified
                && request.key_size() != wanted
            {
                let code = refuse(&stream, "wrong key length", CoreRejectReason::BadSecret.into());
                let _ = request.reject(code).await;
                return;
            }
            Some(KeySettings { key_size: request.key_size(), passphrase: p.clone() })
        }
        None => None,
    };
    let direction = match parsed.mode {
        Mode::Publish => Direction::Publish,
        Mode::Request => Direction::Play,
    };
    let access = AccessRequest {
        direction,
        protocol: Protocol::Srt,
        key: &parsed.key,
        params: &parsed.params,
        client: Some(client),
        referer: None,
    };
    if let Err(denied) = hub.check_access(&access) {
        let code = match denied.kind {
            DenyKind::Unauthorized => ServerRejectReason::Unauthorized,
            DenyKind::Forbidden => ServerRejectReason::Forbidden,
            DenyKind::UnknownDomain => ServerRejectReason::Notfound,
        };
        let code = refuse(&stream, &format!("{} refused: {}", direction.label(), denied.reason), code.into());
        let _ = request.reject(code).await;
        return;
    }
    // A publish claims the stream only once the handshake completed (a failed key exchange must not leave a
    // stream in its grace period); a live publisher is refused here, in the handshake.
    let role = match parsed.mode {
        Mode::Publish => {
            if hub.stream(&parsed.key).is_some_and(|s| s.publishing) {
                let why = format!("publish refused: stream {} is already being published", parsed.key);
                let code = refuse(&stream, &why, ServerRejectReason::Conflict.into());
                let _ = request.reject(code).await;
                return;
            }
            None
        }
        Mode::Request => {
            let key = hub.playback_key(&parsed.key);
            // No GOP-cache start: srt-tokio 0.4 sends about one packet per timer tick (~1000 packets/s) and drops
            // what is older than the latency, so a burst of a cached GOP would arrive as a hole. The viewer starts
            // at the next keyframe instead.
            let start = SubscriberOptions { gop_cache: Some(false), ..SubscriberOptions::default() };
            match hub.subscribe(&key, Protocol::Srt, Some(client), start) {
                Ok(s) => Some(s),
                Err(e) => {
                    let code = refuse(&stream, &format!("play refused: {e}"), ServerRejectReason::Notfound.into());
                    let _ = request.reject(code).await;
                    return;
                }
            }
        }
    };
    let accepted = tokio::time::timeout(Duration::from_secs(10), request.accept(key_settings)).await;
    let socket = match accepted.unwrap_or_else(|_| Err(std::io::Error::other("handshake timed out"))) {
        Ok(s) => s,
        Err(e) => {
            // The key exchange failed (wrong passphrase) or the caller went away during the handshake.
            counters.rejected.fetch_add(1, Ordering::Relaxed);
            let why = if passphrase.is_some() {
                "wrong passphrase or no encryption"
            } else {
                "encryption offered to a domain without a passphrase, or the caller left"
            };
            warn!(stream = %stream, client = %client, protocol = "srt", "srt caller refused: handshake failed ({why}): {e}");
            return;
        }
    };
    record_rtt(&hub, socket.settings().rtt);
    debug!(stream = %stream, rtt = ?socket.settings().rtt, latency = ?socket.settings().recv_tsbpd_latency, "srt connected");
    match role {
        None => {
            let req = PublishRequest {
                key: parsed.key.clone(),
                protocol: Protocol::Srt,
                client: Some(client),
                server: local,
                params: parsed.params.clone(),
            };
            let publisher = match hub.publish(req) {
                Ok(p) => p,
                Err(e) => {
                    // Lost a race with another publisher, or shutting down: close right after the handshake.
                    counters.rejected.fetch_add(1, Ordering::Relaxed);
                    warn!(stream = %stream, client = %client, protocol = "srt", "srt caller refused: publish refused: {e}");
                    let mut socket = socket;
                    let _ = socket.close().await;
                    return;
                }
            };
            info!(stream = %stream, client = %client, "srt publish started");
            counters.publishers.fetch_add(1, Ordering::Relaxed);
            let mut publisher = publisher;
            let reason = run_publisher(socket, &mut publisher, &hub, &options).await;
            counters.publishers.fetch_sub(1, Ordering::Relaxed);
            info!(stream = %stream, ?reason, "srt publish ended");
            publisher.close(reason);
        }
        Some(subscriber) => {
            info!(stream = %subscriber.key(), client = %client, viewer = subscriber.id(), "srt play started");
            let why = run_viewer(socket, subscriber, &hub, &options).await;
            info!(stream = %stream, client = %client, "srt play ended: {why}");
        }
    }
}

/// Reads MPEG-TS from a publisher into the hub until it leaves, goes quiet or the stream is stopped.
async fn run_publisher(
    mut socket: SrtSocket,
    publisher: &mut Publisher,
    hub: &Hub,
    options: &SrtServeOptions,
) -> EndReason {
    let counters = hub.metrics().protocol(Protocol::Srt);
    let mut demuxer = TsDemuxer::new();
    let mut warned_stream = false;
    let mut warned_frame = false;
    let mut stats = socket.statistics().clone();
    let mut tracker = StatsTracker {
        rtt: Some(socket.settings().rtt),
        rate_base: Some((0, Instant::now())),
        ..StatsTracker::default()
    };
    let mut stats_live = true;
    // Until the first statistics report (after a second), the handshake's RTT stands for the connection's.
    let latency = socket.settings().recv_tsbpd_latency;
    publisher.set_transport_stats(TransportStats {
        rtt: Some(socket.settings().rtt),
        latency: Some(latency),
        ..TransportStats::default()
    });
    loop {
        let next = tokio::select! {
            s = stats.next(), if stats_live => {
                match s {
                    Some(s) => {
                        tracker.record(hub, &s);
                        publisher.set_transport_stats(tracker.publisher_stats(&s, latency));
                    }
                    None => stats_live = false,
                }
                continue;
            }
            next = tokio::time::timeout(options.publisher_idle_timeout, socket.next()) => next,
        };
        let data = match next {
            Ok(Some(Ok((_, data)))) => data,
            Ok(Some(Err(e))) => return EndReason::PublisherLost(e.to_string()),
            Ok(None) => return EndReason::PublisherClosed,
            Err(_) => return EndReason::PublisherLost(format!("no data for {:?}", options.publisher_idle_timeout)),
        };
        counters.bytes_in.fetch_add(data.len() as u64, Ordering::Relaxed);
        demuxer.push(&data);
        while let Some(event) = demuxer.next_event() {
            match event {
                Ok(DemuxEvent::Track(info)) => {
                    if let Some(v) = &info.video {
                        info!(stream = %publisher.key(), codec = info.codec.name(), width = v.width, height = v.height, "video track");
                    }
                    if let Some(a) = &info.audio {
                        info!(stream = %publisher.key(), codec = info.codec.name(), rate = a.sample_rate, channels = a.channels, "audio track");
                    }
                    if publisher.set_track(info).is_err() {
                        return EndReason::Stopped("stopped by the server".into());
                    }
                }
                Ok(DemuxEvent::Frame(frame)) => match publisher.push_frame(frame) {
                    Ok(()) => {}
                    Err(PushError::Stopped) => return EndReason::Stopped("stopped by the server".into()),
                    Err(PushError::Refused(why)) => {
                        hub.metrics().frames_rejected.fetch_add(1, Ordering::Relaxed);
                        if !warned_frame {
                            warned_frame = true;
                            warn!(stream = %publisher.key(), "frame refused: {why} (further refusals are counted in metrics, not logged)");
                        }
                    }
                },
                Ok(DemuxEvent::Unsupported { pid, stream_type }) => {
                    info!(stream = %publisher.key(), pid, stream_type, "ignoring an elementary stream of an unsupported type");
                }
                Err(e) => log_demux_error(publisher, &e, &mut warned_stream),
            }
        }
    }
}

fn log_demux_error(publisher: &Publisher, e: &TsDemuxError, warned: &mut bool) {
    if *warned {
        debug!(stream = %publisher.key(), "ts: {e}");
    } else {
        *warned = true;
        warn!(stream = %publisher.key(), "ts: {e} (further input errors on this stream are logged at debug level)");
    }
}

/// Per-viewer MPEG-TS output: the muxer for the viewer's current tracks.
struct TsOut {
    mux: Option<TsMuxer>,
    tracks: Tracks,
    warned: bool,
}

impl TsOut {
    fn new(tracks: &Tracks) -> TsOut {
        let mut out = TsOut { mux: None, tracks: Tracks::default(), warned: false };
        out.set_tracks(tracks.clone());
        out
    }

    /// A new muxer for `tracks`, continuing the continuity counters of the previous one.
    fn set_tracks(&mut self, tracks: Tracks) {
        let counters = self.mux.as_ref().map(|m| m.continuity_counters());
        self.mux = match TsMuxer::new(tracks.video.as_deref(), tracks.audio.as_deref()) {
            Ok(mut m) => {
                if let Some(c) = counters {
                    m.set_continuity_counters(c);
                }
                Some(m)
            }
            Err(e) => {
                if !self.warned {
                    self.warned = true;
                    warn!("srt viewer: tracks cannot be sent as MPEG-TS: {e}");
                }
                None
            }
        };
        self.tracks = tracks;
    }

    fn write_entry(&mut self, entry: &Entry, out: &mut BytesMut) {
        match &entry.kind {
            EntryKind::Track(info) => {
                let mut tracks = self.tracks.clone();
                match info.media {
                    MediaType::Video => tracks.video = Some(info.clone()),
                    MediaType::Audio => tracks.audio = Some(info.clone()),
                }
                self.set_tracks(tracks);
                if let Some(m) = self.mux.as_mut() {
                    m.write_tables(out);
                }
            }
            EntryKind::Frame(frame) => {
                let Some(m) = self.mux.as_mut() else { return };
                if frame.media == MediaType::Video && frame.keyframe {
                    m.write_tables(out);
                }
                if let Err(e) = m.write_frame(frame, out) {
                    debug!("srt viewer: frame not muxed: {e}");
                }
            }
            EntryKind::Metadata(_) => {}
        }
    }
}

/// Sends a live stream as MPEG-TS to a viewer until it leaves, stalls or the stream ends.
async fn run_viewer(socket: SrtSocket, mut subscriber: Subscriber, hub: &Hub, options: &SrtServeOptions) -> String {
    let counters = hub.metrics().protocol(Protocol::Srt);
    counters.viewers.fetch_add(1, Ordering::Relaxed);
    let why = viewer_loop(socket, &mut subscriber, hub, options).await;
    counters.viewers.fetch_sub(1, Ordering::Relaxed);
    why
}

async fn viewer_loop(socket: SrtSocket, subscriber: &mut Subscriber, hub: &Hub, options: &SrtServeOptions) -> String {
    let counters = hub.metrics().protocol(Protocol::Srt);
    let mut socket = socket;
    let mut stats = socket.statistics().clone();
    let mut tracker = StatsTracker::default();
    let mut stats_live = true;
    let (mut sink, mut stream) = socket.split();
    let mut ts = TsOut::new(subscriber.start_tracks());
    let mut out = BytesMut::with_capacity(64 * 1024);
    if let Some(m) = ts.mux.as_mut() {
        m.write_tables(&mut out);
    }
    let mut batch: Vec<Arc<Entry>> = Vec::new();
    loop {
        if !out.is_empty() {
            let data = out.split().freeze();
            let sent = tokio::time::timeout(options.stall_timeout, send_ts(&mut sink, data)).await;
            match sent {
                Ok(Ok(n)) => {
                    subscriber.count_out(n);
                    counters.bytes_out.fetch_add(n, Ordering::Relaxed);
                }
                Ok(Err(e)) => return format!("send failed: {e}"),
                Err(_) => return format!("viewer stalled for {:?}", options.stall_timeout),
            }
        }
        batch.clear();
        tokio::select! {
            s = stats.next(), if stats_live => match s {
                Some(s) => tracker.record(hub, &s),
                None => stats_live = false,
            },
            incoming = stream.next() => match incoming {
                None => return "client closed".into(),
                Some(Err(e)) => return format!("connection error: {e}"),
                Some(Ok(_)) => continue, // a viewer has nothing to say; ignore stray data
            },
            b = subscriber.next_batch(&mut batch, options.max_batch) => match b {
                Batch::Ended => {
                    let _ = sink.close().await;
                    return "stream ended".into();
                }
                Batch::Entries { skipped } => {
                    if skipped > 0 {
                        debug!(stream = %subscriber.key(), skipped, "slow srt viewer skipped frames");
                        ts.set_tracks(subscriber.current_tracks());
                        if let Some(m) = ts.mux.as_mut() {
                            m.write_tables(&mut out);
                        }
                    }
                    for entry in &batch {
                        ts.write_entry(entry, &mut out);
                    }
                }
            },
        }
    }
}

/// Turns the cumulative statistics of one SRT connection into increments of the process-wide SRT metrics.
#[derive(Debug, Default)]
struct StatsTracker {
    lost: u64,
    retransmitted: u64,
    dropped: u64,
    /// The previous report's received bytes and when it came, for the receive rate (srt-tokio 0.4 leaves the
    /// statistics' `elapsed_time` at zero, so the wall clock measures the interval).
    rate_base: Option<(u64, Instant)>,
    /// The last RTT measured (srt-tokio reports zero until the first ACK/ACK2 exchange).
    rtt: Option<Duration>,
}

impl StatsTracker {
    fn record(&mut self, hub: &Hub, s: &SocketStatistics) {
        let m = hub.metrics();
        let lost = s.rx_loss_data + s.tx_loss_data;
        let dropped = s.rx_dropped_data + s.tx_dropped_data;
        m.srt_packets_lost.fetch_add(lost.saturating_sub(self.lost), Ordering::Relaxed);
        m.srt_packets_retransmitted
            .fetch_add(s.tx_retransmit_data.saturating_sub(self.retransmitted), Ordering::Relaxed);
        m.srt_packets_dropped.fetch_add(dropped.saturating_sub(self.dropped), Ordering::Relaxed);
        // Zero until the first ACK/ACK2 round trip (filled by our srt-protocol patch); the handshake RTT is recorded
        // at accept.
        let rtt = s.tx_average_rtt.max(s.rx_average_rtt);
        if !rtt.is_zero() {
            record_rtt(hub, rtt);
        }
        (self.lost, self.retransmitted, self.dropped) = (lost, s.tx_retransmit_data, dropped);
    }

    /// The figures of a publisher's connection (the receiving side of `s`) for the hub.
    fn publisher_stats(&mut self, s: &SocketStatistics, latency: Duration) -> TransportStats {
        let now = Instant::now();
        let receive_rate_bps = match self.rate_base {
            Some((bytes, at)) if now > at => {
                (s.rx_bytes.saturating_sub(bytes).saturating_mul(8) as f64 / (now - at).as_secs_f64()) as u64
            }
            _ => 0,
        };
        self.rate_base = Some((s.rx_bytes, now));
        if !s.rx_average_rtt.is_zero() {
            self.rtt = Some(s.rx_average_rtt);
        }
        TransportStats {
            rtt: self.rtt,
            packets_received: s.rx_data,
            packets_lost: s.rx_loss_data,
            packets_retransmitted: s.rx_retransmit_data,
            packets_dropped: s.rx_dropped_data,
            receive_rate_bps,
            latency: Some(latency),
        }
    }
}

fn record_rtt(hub: &Hub, rtt: Duration) {
    hub.metrics().srt_rtt_us.store(i64::try_from(rtt.as_micros()).unwrap_or(i64::MAX), Ordering::Relaxed);
}

/// Sends TS bytes as SRT messages of 7 packets; returns the bytes sent.
async fn send_ts(
    sink: &mut futures::stream::SplitSink<SrtSocket, (Instant, Bytes)>,
    data: Bytes,
) -> std::io::Result<u64> {
    let now = Instant::now();
    let mut off = 0;
    while off < data.len() {
        let end = (off + TS_PER_MESSAGE).min(data.len());
        sink.feed((now, data.slice(off..end))).await?;
        off = end;
    }
    sink.flush().await?;
    Ok(data.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(default: Option<&str>, domains: &[(&str, &str)]) -> SrtServeOptions {
        SrtServeOptions {
            default_domain: "localhost".into(),
            passphrase: default.map(str::to_string),
            passphrases: domains.iter().map(|(d, p)| (d.to_string(), p.to_string())).collect(),
            pbkeylen: 0,
            latency: Duration::from_millis(120),
            publisher_idle_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(10),
            max_batch: 64,
        }
    }

    #[test]
    fn passphrase_is_chosen_per_domain() {
        let p = Passphrases::new(&options(None, &[("Push.Example.com", "0123456789"), ("open.example.com", "")]))
            .expect("valid");
        assert!(p.for_domain("push.example.com").is_some(), "domain keys are normalized");
        assert!(p.for_domain("open.example.com").is_none());
        assert!(p.for_domain("other.example.com").is_none(), "no default: unencrypted");

        let p = Passphrases::new(&options(Some("server-wide-secret"), &[("open.example.com", "")])).expect("valid");
        assert!(p.for_domain("other.example.com").is_some(), "the default applies to unnamed domains");
        assert!(p.for_domain("open.example.com").is_none(), "an empty domain passphrase overrides the default");
    }

    #[test]
    fn bad_passphrases_are_refused_at_start() {
        let e = Passphrases::new(&options(None, &[("push.example.com", "short")])).expect_err("too short");
        assert!(e.to_string().contains("of domain push.example.com"), "{e}");
        let long = "x".repeat(80);
        assert!(Passphrases::new(&options(Some(&long), &[])).is_err());
        assert!(Passphrases::new(&options(Some(""), &[])).is_ok_and(|p| p.default.is_none()));
    }
}
