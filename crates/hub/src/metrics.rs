use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::{Protocol, StreamKey};

/// Transport-level figures of one publisher's connection, reported by protocols that measure them (SRT today;
/// RTMP or WebRTC can fill the same hook with [`Publisher::set_transport_stats`](crate::Publisher)). Counters
/// are cumulative for the connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Smoothed round-trip time, if measured.
    pub rtt: Option<Duration>,
    /// Data packets received, retransmissions included.
    pub packets_received: u64,
    /// Data packets detected as lost (gaps in the sequence).
    pub packets_lost: u64,
    /// Retransmitted data packets received.
    pub packets_retransmitted: u64,
    /// Data packets given up on: arrived too late or never recovered.
    pub packets_dropped: u64,
    /// Receive rate over the last report interval, in bits per second.
    pub receive_rate_bps: u64,
    /// The connection's receive latency (the buffer that absorbs retransmissions), if it has one.
    pub latency: Option<Duration>,
}

/// The latest transport figures of one live publisher, for `/metrics`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TransportEntry {
    pub(crate) session: u64,
    pub(crate) protocol: Protocol,
    pub(crate) stats: TransportStats,
}

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
    /// Recording and screenshot jobs running now.
    pub record_jobs: AtomicI64,
    /// Recording files stored in their storage target.
    pub record_files_stored: AtomicU64,
    /// Upload attempts of recordings and screenshots that failed (each is retried).
    pub record_upload_failures: AtomicU64,
    /// Frames recording jobs skipped because they fell behind the stream.
    pub record_frames_skipped: AtomicU64,
    /// Screenshots stored.
    pub screenshots_stored: AtomicU64,
    /// Transport figures of the live publishers that report them, by stream.
    pub(crate) transport: Mutex<BTreeMap<StreamKey, TransportEntry>>,
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
        let singles: [(&str, &str, &str, i128); 17] = [
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
            (
                "ferrocast_record_jobs",
                "gauge",
                "Recording and screenshot jobs running now.",
                gauge(&self.record_jobs) as i128,
            ),
            (
                "ferrocast_record_files_stored_total",
                "counter",
                "Recording files stored in their storage target.",
                load(&self.record_files_stored) as i128,
            ),
            (
                "ferrocast_record_upload_failures_total",
                "counter",
                "Failed upload attempts of recordings and screenshots (each is retried).",
                load(&self.record_upload_failures) as i128,
            ),
            (
                "ferrocast_record_frames_skipped_total",
                "counter",
                "Frames recording jobs skipped because they fell behind the stream.",
                load(&self.record_frames_skipped) as i128,
            ),
            (
                "ferrocast_screenshots_stored_total",
                "counter",
                "Screenshots stored in their storage target.",
                load(&self.screenshots_stored) as i128,
            ),
        ];
        for (name, kind, help, value) in singles {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
        self.render_transport(out);
    }

    /// Per-stream families of the publishers' transport figures (only streams whose publisher reports them).
    fn render_transport(&self, out: &mut String) {
        type Read = fn(&TransportStats) -> Option<u64>;
        let families: [(&str, &str, &str, Read); 7] = [
            ("ferrocast_publisher_rtt_microseconds", "gauge", "Round-trip time of the publisher's connection.", |s| {
                s.rtt.map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            }),
            (
                "ferrocast_publisher_packets_received_total",
                "counter",
                "Data packets received from the publisher, retransmissions included.",
                |s| Some(s.packets_received),
            ),
            (
                "ferrocast_publisher_packets_lost_total",
                "counter",
                "Data packets from the publisher detected lost.",
                |s| Some(s.packets_lost),
            ),
            (
                "ferrocast_publisher_packets_retransmitted_total",
                "counter",
                "Retransmitted data packets received from the publisher.",
                |s| Some(s.packets_retransmitted),
            ),
            (
                "ferrocast_publisher_packets_dropped_total",
                "counter",
                "Data packets from the publisher dropped as too late or unrecoverable.",
                |s| Some(s.packets_dropped),
            ),
            (
                "ferrocast_publisher_receive_rate_bits_per_second",
                "gauge",
                "Receive rate of the publisher's connection over the last report interval.",
                |s| Some(s.receive_rate_bps),
            ),
            (
                "ferrocast_publisher_latency_microseconds",
                "gauge",
                "Receive latency (retransmission buffer) of the publisher's connection.",
                |s| s.latency.map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            ),
        ];
        let entries = self.transport.lock();
        if entries.is_empty() {
            return;
        }
        for (name, kind, help, read) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (key, e) in entries.iter() {
                if let Some(v) = read(&e.stats) {
                    let stream = escape_label(&key.to_string());
                    let _ = writeln!(out, "{name}{{protocol=\"{}\",stream=\"{stream}\"}} {v}", e.protocol.label());
                }
            }
        }
    }
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
