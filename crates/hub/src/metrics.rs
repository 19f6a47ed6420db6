use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::Protocol;

/// Reads one value of a protocol's counters for rendering.
type ReadCounter = fn(&ProtocolCounters) -> i64;

/// Counters of one protocol.
#[derive(Debug, Default)]
pub struct ProtocolCounters {
    /// Viewers connected now.
    pub viewers: AtomicI64,
    /// Publishers connected now.
    pub publishers: AtomicI64,
    /// Bytes received from clients of this protocol.
    pub bytes_in: AtomicU64,
    /// Bytes sent to clients of this protocol.
    pub bytes_out: AtomicU64,
    /// Connections refused (bad request, auth, duplicate publisher, ...).
    pub rejected: AtomicU64,
}

/// Process-wide counters, rendered at `/metrics` in the Prometheus text format.
#[derive(Debug, Default)]
pub struct Metrics {
    per_protocol: [ProtocolCounters; Protocol::ALL.len()],
    /// Live streams now (with a publisher or inside their grace period).
    pub streams: AtomicI64,
    /// Frames viewers skipped because they fell behind the ring.
    pub frames_dropped_slow_viewer: AtomicU64,
    /// Viewers disconnected because their socket made no progress for the stall timeout.
    pub viewers_disconnected_stalled: AtomicU64,
    /// Frames received from publishers.
    pub frames_in: AtomicU64,
    /// Frames refused at ingest (unknown codec, missing configuration, malformed tag).
    pub frames_rejected: AtomicU64,
    /// SRT data packets reported lost (by our receivers and by the peers of our senders).
    pub srt_packets_lost: AtomicU64,
    /// SRT data packets we retransmitted.
    pub srt_packets_retransmitted: AtomicU64,
    /// SRT data packets dropped as too late (sender and receiver side).
    pub srt_packets_dropped: AtomicU64,
    /// The round-trip time of the SRT connection that reported last, in microseconds.
    pub srt_rtt_us: AtomicI64,
    /// WebRTC plays refused or ended because the stream's H.264 has B-frames, which WebRTC cannot carry.
    pub webrtc_bframes_refused: AtomicU64,
    /// Audio transcoders (AAC to Opus, Opus to AAC) running now, one per stream and direction.
    pub audio_transcoders: AtomicI64,
    /// Audio frames the transcoders could not decode or encode.
    pub audio_transcode_errors: AtomicU64,
}

impl Metrics {
    /// The counters of one protocol.
    pub fn protocol(&self, protocol: Protocol) -> &ProtocolCounters {
        &self.per_protocol[protocol.index()]
    }

    /// Renders every counter in the Prometheus text exposition format.
    pub fn render(&self, out: &mut String) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let gauge = |a: &AtomicI64| a.load(Ordering::Relaxed).max(0);
        let families: [(&str, &str, &str, ReadCounter); 5] = [
            ("ferrocast_viewers", "gauge", "Viewers connected now.", |c| c.viewers.load(Ordering::Relaxed).max(0)),
            ("ferrocast_publishers", "gauge", "Publishers connected now.", |c| {
                c.publishers.load(Ordering::Relaxed).max(0)
            }),
            ("ferrocast_bytes_in_total", "counter", "Bytes received from clients.", |c| {
                c.bytes_in.load(Ordering::Relaxed) as i64
            }),
            ("ferrocast_bytes_out_total", "counter", "Bytes sent to clients.", |c| {
                c.bytes_out.load(Ordering::Relaxed) as i64
            }),
            ("ferrocast_connections_rejected_total", "counter", "Connections refused.", |c| {
                c.rejected.load(Ordering::Relaxed) as i64
            }),
        ];
        for (name, kind, help, value) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for p in Protocol::ALL {
                let _ = writeln!(out, "{name}{{protocol=\"{}\"}} {}", p.label(), value(self.protocol(p)));
            }
        }
        let singles: [(&str, &str, &str, i128); 12] = [
            ("ferrocast_streams", "gauge", "Live streams now.", gauge(&self.streams) as i128),
            (
                "ferrocast_frames_dropped_slow_viewer_total",
                "counter",
                "Frames skipped by viewers that fell behind the ring.",
                load(&self.frames_dropped_slow_viewer) as i128,
            ),
            (
                "ferrocast_viewers_disconnected_stalled_total",
                "counter",
                "Viewers disconnected because their connection stalled.",
                load(&self.viewers_disconnected_stalled) as i128,
            ),
            ("ferrocast_frames_in_total", "counter", "Frames received from publishers.", load(&self.frames_in) as i128),
            (
                "ferrocast_frames_rejected_total",
                "counter",
                "Frames refused at ingest.",
                load(&self.frames_rejected) as i128,
            ),
            (
                "ferrocast_srt_packets_lost_total",
                "counter",
                "SRT data packets reported lost.",
                load(&self.srt_packets_lost) as i128,
            ),
            (
                "ferrocast_srt_packets_retransmitted_total",
                "counter",
                "SRT data packets retransmitted.",
                load(&self.srt_packets_retransmitted) as i128,
            ),
            (
                "ferrocast_srt_packets_dropped_total",
                "counter",
                "SRT data packets dropped as too late.",
                load(&self.srt_packets_dropped) as i128,
            ),
            (
                "ferrocast_srt_rtt_microseconds",
                "gauge",
                "Round-trip time of the SRT connection that reported last.",
                gauge(&self.srt_rtt_us) as i128,
            ),
            (
                "ferrocast_webrtc_bframes_refused_total",
                "counter",
                "WebRTC plays refused or ended because the H.264 stream has B-frames.",
                load(&self.webrtc_bframes_refused) as i128,
            ),
            (
                "ferrocast_audio_transcoders",
                "gauge",
                "Audio transcoders (AAC to Opus, Opus to AAC) running now.",
                gauge(&self.audio_transcoders) as i128,
            ),
            (
                "ferrocast_audio_transcode_errors_total",
                "counter",
                "Audio frames the transcoders could not decode or encode.",
                load(&self.audio_transcode_errors) as i128,
            ),
        ];
        for (name, kind, help, value) in singles {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
    }
}
