//! Configuration: defaults, overridden by a TOML file (`--config`), overridden by `FERROCAST_<SECTION>_<KEY>`
//! environment variables. Every key is documented in `ferrocast.example.toml`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {path} is not valid TOML: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML error.
        source: toml::de::Error,
    },
    /// An environment variable names an unknown section.
    #[error("environment variable {var}: unknown section `{section}`")]
    UnknownSection {
        /// The variable.
        var: String,
        /// The section it names.
        section: String,
    },
    /// The merged configuration has a wrong key or value.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Process-wide settings.
    pub server: ServerSection,
    /// RTMP ingest and playback.
    pub rtmp: RtmpSection,
    /// RTMP over TLS.
    pub rtmps: RtmpsSection,
    /// The HTTP listener.
    pub http: HttpSection,
    /// Where state lives.
    pub storage: StorageSection,
    /// Per-stream buffering.
    pub hub: HubSection,
    /// How viewers are served.
    pub play: PlaySection,
    /// Logging.
    pub log: LogSection,
    /// The management API (Live API 2018-08-01 wire format on the HTTP listener).
    pub api: ApiSection,
    /// The control plane's database.
    pub store: StoreSection,
    /// Push start/interruption callbacks.
    pub callbacks: CallbacksSection,
    /// Stream history (push events, playback samples).
    pub history: HistorySection,
    /// HLS, LL-HLS and DASH packaging.
    pub hls: HlsSection,
    /// Time shifting (recording of streams under a time-shift rule).
    pub timeshift: TimeShiftSection,
    /// SRT ingest and playback.
    pub srt: SrtSection,
    /// WebRTC: WHIP ingest and WHEP playback.
    pub webrtc: WebRtcSection,
    /// Recording and screenshots.
    pub record: RecordSection,
}

/// `[srt]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SrtSection {
    /// Whether the SRT listener runs.
    pub enabled: bool,
    /// UDP address of the SRT listener.
    pub listen: String,
    /// AES passphrase (10 to 79 characters) callers of domains not in `passphrases` must use; empty accepts
    /// unencrypted callers.
    pub passphrase: String,
    /// Per-domain AES passphrases (streamid domain -> passphrase); an empty one makes that domain unencrypted.
    pub passphrases: std::collections::BTreeMap<String, String>,
    /// AES key length in bytes (16, 24 or 32) when the caller announces none; 0 follows the caller.
    pub pbkeylen: u16,
    /// SRT latency (the receive buffer that absorbs retransmissions), in milliseconds.
    pub latency_ms: u64,
    /// A publisher that sends nothing for this long is disconnected, in milliseconds.
    pub publisher_idle_timeout_ms: u64,
}

impl Default for SrtSection {
    fn default() -> Self {
        SrtSection {
            enabled: true,
            listen: "0.0.0.0:9000".into(),
            passphrase: String::new(),
            passphrases: std::collections::BTreeMap::new(),
            pbkeylen: 0,
            latency_ms: 120,
            publisher_idle_timeout_ms: 10_000,
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// Domain of requests that name none (an IP address or `localhost` as host, no `txHost`).
    pub default_domain: String,
    /// Longest time a clean shutdown may take before the process exits anyway, in milliseconds.
    pub shutdown_timeout_ms: u64,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection { default_domain: "localhost".into(), shutdown_timeout_ms: 4000 }
    }
}

/// `[rtmp]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtmpSection {
    /// Address of the RTMP listener; empty disables RTMP.
    pub listen: String,
    /// Chunk size the server sends with (the same for every viewer so chunks are made once per stream).
    pub chunk_size: u32,
    /// Window acknowledgement size announced to clients.
    pub window_ack_size: u32,
    /// A publisher that sends nothing for this long is disconnected, in milliseconds.
    pub publisher_idle_timeout_ms: u64,
}

impl Default for RtmpSection {
    fn default() -> Self {
        RtmpSection {
            listen: "0.0.0.0:1935".into(),
            chunk_size: 4096,
            window_ack_size: 2_500_000,
            publisher_idle_timeout_ms: 20_000,
        }
    }
}

/// `[rtmps]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtmpsSection {
    /// Address of the RTMPS listener; only opened when a certificate is configured.
    pub listen: String,
    /// PEM certificate chain used when no per-domain certificate matches the SNI name.
    pub cert_file: String,
    /// PEM private key of `cert_file`.
    pub key_file: String,
    /// Per-domain certificates chosen by SNI.
    pub certificates: Vec<DomainCertificate>,
}

impl Default for RtmpsSection {
    fn default() -> Self {
        RtmpsSection {
            listen: "0.0.0.0:1936".into(),
            cert_file: String::new(),
            key_file: String::new(),
            certificates: Vec::new(),
        }
    }
}

/// One `[[rtmps.certificates]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainCertificate {
    /// Host names this certificate serves (exact names, or `*.example.com`).
    pub domains: Vec<String>,
    /// PEM certificate chain.
    pub cert_file: String,
    /// PEM private key.
    pub key_file: String,
}

/// `[http]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSection {
    /// Address of the HTTP listener (playback, health, metrics).
    pub listen: String,
    /// `Access-Control-Allow-Origin` of playback responses.
    pub cors_allow_origin: String,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection { listen: "0.0.0.0:8080".into(), cors_allow_origin: "*".into() }
    }
}

/// `[storage]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSection {
    /// Directory for the server's state (created if missing).
    pub data_dir: String,
    /// Where recordings and screenshots are written before upload, and the upload queue's jobs: empty for
    /// `<data_dir>/spool`.
    pub spool_dir: String,
    /// The target of templates that name no bucket; empty for the first target (or the implicit `local` one).
    pub default_target: String,
    /// Longest wait between two attempts of a failing upload, in seconds.
    pub max_backoff_s: u64,
    /// Files larger than this are uploaded in parts (S3 multipart), in bytes.
    pub multipart_threshold_bytes: u64,
    /// Storage targets (`[[storage.targets]]`). A local target `local` under `<data_dir>/records` exists unless a
    /// target of that name is configured. Never serialized: it holds credentials.
    #[serde(skip_serializing)]
    pub targets: Vec<ferrocast_storage::TargetConfig>,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            data_dir: "./data".into(),
            spool_dir: String::new(),
            default_target: String::new(),
            max_backoff_s: 300,
            multipart_threshold_bytes: 16 * 1024 * 1024,
            targets: Vec::new(),
        }
    }
}

/// `[record]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordSection {
    /// Record streams under record rules and tasks, and take screenshots under snapshot rules and tasks.
    pub enabled: bool,
    /// Length of the TS segments of HLS recordings, in milliseconds.
    pub hls_segment_ms: u64,
    /// Files with less media than this are not kept (event 332 `record_error` says so), in milliseconds.
    pub min_duration_ms: u64,
    /// Object folder of recordings when a format's CosBucketPath is empty.
    pub folder_template: String,
    /// Object file name of recordings, without the extension.
    pub file_template: String,
    /// Time zone of the times in object names: `UTC+8` (the service's) or `UTC`.
    pub time_zone: String,
    /// How often record and screenshot tasks are checked, in milliseconds.
    pub task_poll_ms: u64,
    /// The ffmpeg executable that turns keyframes into screenshots.
    pub ffmpeg: String,
    /// On shutdown, how long finished recordings may take to upload before they are left for the next start, in
    /// milliseconds.
    pub shutdown_upload_ms: u64,
}

impl Default for RecordSection {
    fn default() -> Self {
        RecordSection {
            enabled: true,
            hls_segment_ms: 10_000,
            min_duration_ms: 1000,
            folder_template: ferrocast_recording::DEFAULT_FOLDER.into(),
            file_template: "{StreamID}".into(),
            time_zone: "UTC+8".into(),
            task_poll_ms: 1000,
            ffmpeg: "ffmpeg".into(),
            shutdown_upload_ms: 3000,
        }
    }
}

/// `[hub]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubSection {
    /// Start viewers at the newest keyframe already received (instant start).
    pub gop_cache: bool,
    /// How long a stream waits for its publisher to come back before ending for viewers, in milliseconds.
    pub publisher_grace_ms: u64,
    /// Recent media kept beyond the current GOP for viewers that fall behind, in milliseconds.
    pub ring_window_ms: u64,
    /// Hard cap of buffered media per stream, in bytes.
    pub ring_max_bytes: usize,
    /// Hard cap of buffered frames per stream.
    pub ring_max_entries: usize,
    /// In a stream with video, an audio frame wakes viewers only if nothing did for this long; otherwise it is
    /// written with the next video frame (fewer writes per viewer). 0 wakes viewers for every frame. In ms.
    pub audio_wakeup_interval_ms: u64,
    /// Media a delayed stream keeps in memory before spilling to `<data_dir>/delay`, in bytes.
    pub delay_memory_budget_bytes: usize,
}

impl Default for HubSection {
    fn default() -> Self {
        HubSection {
            gop_cache: true,
            publisher_grace_ms: 3000,
            ring_window_ms: 5000,
            ring_max_bytes: 64 << 20,
            ring_max_entries: 20_000,
            audio_wakeup_interval_ms: 40,
            delay_memory_budget_bytes: 32 << 20,
        }
    }
}

/// `[play]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlaySection {
    /// Gather frames for this long between writes to a viewer (like SRS `mw_latency`), in milliseconds.
    /// 0 writes every frame as soon as it arrives (lowest latency).
    pub merge_window_ms: u64,
    /// A viewer whose socket accepts nothing for this long is disconnected, in milliseconds.
    pub stall_timeout_ms: u64,
    /// Most frames written to a viewer in one vectored write.
    pub max_batch: usize,
}

impl Default for PlaySection {
    fn default() -> Self {
        PlaySection { merge_window_ms: 0, stall_timeout_ms: 10_000, max_batch: 512 }
    }
}

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// A `tracing` filter (`info`, `debug`, `ferrocast_rtmp=debug,info`, ...). `RUST_LOG` wins when set.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection { level: "info".into(), format: "text".into() }
    }
}

/// `[api]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSection {
    /// SecretId allowed to call the API; with `secret_key` empty too, a pair is generated on first start and
    /// kept in `<data_dir>/api-credentials.json`.
    pub secret_id: String,
    /// SecretKey of `secret_id`.
    pub secret_key: String,
    /// Most domains that can be added (`CreateLimitCount`).
    pub max_domains: i64,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection { secret_id: String::new(), secret_key: String::new(), max_domains: 100 }
    }
}

/// `[store]`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// Database URL: empty for the SQLite file `<data_dir>/ferrocast.db`, or `postgres://user:pass@host/db`.
    pub url: String,
}

/// `[callbacks]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallbacksSection {
    /// `appid` sent in callback payloads.
    pub appid: i64,
    /// `set_id` sent in callback payloads (1-6 Chinese mainland, 7-200 outside).
    pub set_id: i64,
    /// `idc_id` sent in callback payloads.
    pub idc_id: i64,
    /// `node` sent in callback payloads: the IP of this access point. Also names this node's open pushes in a
    /// shared store, so each node of a cluster needs its own.
    pub node: String,
    /// Timeout of one delivery attempt.
    pub timeout_ms: u64,
    /// Time between delivery attempts.
    pub retry_interval_ms: u64,
    /// Retries after the first attempt.
    pub max_retries: i64,
    /// Days delivered and failed callbacks are kept for DescribeCallbackRecordsList.
    pub record_retention_days: u64,
    /// PEM file of extra CA certificates trusted for `https://` callback URLs (the public web PKI is built in).
    pub ca_file: String,
}

impl Default for CallbacksSection {
    fn default() -> Self {
        CallbacksSection {
            appid: 0,
            set_id: 1,
            idc_id: 0,
            node: "127.0.0.1".to_string(),
            timeout_ms: 20_000,
            retry_interval_ms: 60_000,
            max_retries: 12,
            record_retention_days: 14,
            ca_file: String::new(),
        }
    }
}

/// `[history]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistorySection {
    /// How often every live stream's viewers and bytes out are sampled (DescribeStreamPlayInfoList), in ms.
    pub sample_interval_ms: u64,
}

impl Default for HistorySection {
    fn default() -> Self {
        HistorySection { sample_interval_ms: 60_000 }
    }
}

/// `[hls]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HlsSection {
    /// Package every live stream for HLS and DASH.
    pub enabled: bool,
    /// Target segment duration; segments are cut at the first keyframe after it.
    pub segment_ms: u64,
    /// LL-HLS part target (100 ms up to the segment target).
    pub part_ms: u64,
    /// Segments listed in a playlist.
    pub window: usize,
    /// Segments kept beyond the window for late players.
    pub extra_segments: usize,
    /// Container of `.m3u8` requests without `?format=`: `ts` or `fmp4`.
    pub default_format: String,
    /// fMP4 playlists are LL-HLS (parts, preload hints, blocking reload).
    pub low_latency: bool,
    /// How long a stream's playlist survives its publisher, for a returning publisher to continue it.
    pub linger_ms: u64,
    /// Push domains whose HLS is AES-128 encrypted (`"*"` for all).
    pub encrypt_domains: Vec<String>,
    /// A new AES key every this many segments.
    pub key_rotation_segments: u64,
    /// Segment file name template: `{seq}` plus optional `{app}`, `{stream}` (extension added).
    pub segment_name: String,
}

impl Default for HlsSection {
    fn default() -> Self {
        HlsSection {
            enabled: true,
            segment_ms: 2000,
            part_ms: 500,
            window: 6,
            extra_segments: 4,
            default_format: "ts".to_string(),
            low_latency: true,
            linger_ms: 30_000,
            encrypt_domains: Vec::new(),
            key_rotation_segments: 10,
            segment_name: "{seq}".to_string(),
        }
    }
}

impl HlsSection {
    /// Checks the values that the types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(format!("[hls] {m}")));
        if !(500..=60_000).contains(&self.segment_ms) {
            return bad(format!("segment_ms = {}: expected 500..=60000", self.segment_ms));
        }
        if !(100..=self.segment_ms).contains(&self.part_ms) {
            return bad(format!("part_ms = {}: expected 100..=segment_ms", self.part_ms));
        }
        if self.window < 2 {
            return bad(format!("window = {}: expected at least 2", self.window));
        }
        if !matches!(self.default_format.as_str(), "ts" | "fmp4") {
            return bad(format!("default_format = {:?}: expected \"ts\" or \"fmp4\"", self.default_format));
        }
        if let Err(e) = ferrocast_packager::SegmentNaming::new(&self.segment_name) {
            return bad(format!("segment_name: {e}"));
        }
        if self.key_rotation_segments == 0 {
            return bad("key_rotation_segments = 0: expected at least 1".to_string());
        }
        Ok(())
    }
}

impl RecordSection {
    /// Offset of [`RecordSection::time_zone`] from UTC, in seconds.
    pub fn utc_offset_s(&self) -> i64 {
        if self.time_zone.eq_ignore_ascii_case("UTC") { 0 } else { 8 * 3600 }
    }

    /// Checks ranges and templates.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(format!("[record] {m}")));
        if !(1000..=60_000).contains(&self.hls_segment_ms) {
            return bad(format!("hls_segment_ms = {}: expected 1000..=60000", self.hls_segment_ms));
        }
        if !["UTC", "UTC+8"].iter().any(|z| z.eq_ignore_ascii_case(&self.time_zone)) {
            return bad(format!("time_zone = {:?}: expected \"UTC+8\" or \"UTC\"", self.time_zone));
        }
        let vars = ferrocast_storage::PathVars {
            record_source: "origin".into(),
            domain: "push.example.com".into(),
            app: "live".into(),
            stream: "stream".into(),
            record_id: "1".into(),
            random_id: "1".into(),
            ..ferrocast_storage::PathVars::default()
        };
        for (name, t) in [("folder_template", &self.folder_template), ("file_template", &self.file_template)] {
            if let Err(e) = ferrocast_storage::render_path(t, &vars) {
                return bad(format!("{name}: {e}"));
            }
        }
        Ok(())
    }
}

/// `[timeshift]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeShiftSection {
    /// Record the streams that match a time-shift rule, and serve `txTimeshift=on` playlists.
    pub enabled: bool,
    /// Directory of the segments: empty for `<data_dir>/timeshift`.
    pub root: String,
    /// How often expired segments are deleted, in milliseconds.
    pub cleanup_interval_ms: u64,
}

impl Default for TimeShiftSection {
    fn default() -> Self {
        TimeShiftSection { enabled: true, root: String::new(), cleanup_interval_ms: 60_000 }
    }
}

/// `[webrtc]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebRtcSection {
    /// Serve WHIP (`/whip/...`) and WHEP (`/whep/...`) on the HTTP listener and WebRTC media on `udp_listen`.
    pub enabled: bool,
    /// The one UDP address every WebRTC session uses (ICE-lite; `host:0` picks a free port).
    pub udp_listen: String,
    /// ICE over TCP for clients behind UDP-blocking firewalls (RFC 6544 passive candidates, RFC 4571 framing);
    /// empty turns it off.
    pub tcp_listen: String,
    /// Comma-separated public IPs or host names advertised as ICE candidates (with the UDP port). Behind NAT or
    /// in a container, put the address clients reach here. Empty: the bound IP, or every local non-loopback IPv4
    /// address when bound to 0.0.0.0 (127.0.0.1 when there is none).
    pub candidates: String,
}

impl Default for WebRtcSection {
    fn default() -> Self {
        WebRtcSection {
            enabled: true,
            udp_listen: "0.0.0.0:8000".into(),
            tcp_listen: "0.0.0.0:8000".into(),
            candidates: String::new(),
        }
    }
}

const ENV_PREFIX: &str = "FERROCAST_";

impl Config {
    /// Loads the defaults, then `file` if given, then the `FERROCAST_*` variables of `env`.
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let mut table = toml::Table::try_from(Config::default()).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
            let from_file: toml::Table =
                text.parse().map_err(|source| ConfigError::Parse { path: path.to_path_buf(), source })?;
            merge(&mut table, from_file);
        }
        let defaults = toml::Table::try_from(Config::default()).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        for (var, raw) in env {
            let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let Some((section, key)) = rest.split_once('_') else {
                continue;
            };
            let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
            let Some(toml::Value::Table(section_defaults)) = defaults.get(&section) else {
                return Err(ConfigError::UnknownSection { var, section });
            };
            let value = env_value(section_defaults.get(&key), &raw);
            if let Some(toml::Value::Table(t)) = table.get_mut(&section) {
                t.insert(key, value);
            }
        }
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_string()))?;
        config.hls.validate()?;
        config.record.validate()?;
        Ok(config)
    }
}

/// Interprets an environment variable's text as the type the key has in the defaults: strings stay text,
/// everything else (numbers, booleans, arrays, tables) is read as a TOML value.
fn env_value(default: Option<&toml::Value>, raw: &str) -> toml::Value {
    if let Some(toml::Value::String(_)) = default {
        return toml::Value::String(raw.to_string());
    }
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_listen_on_the_documented_ports() {
        let c = Config::load(None, env(&[])).expect("defaults");
        assert_eq!(c.rtmp.listen, "0.0.0.0:1935");
        assert_eq!(c.http.listen, "0.0.0.0:8080");
        assert_eq!(c.storage.data_dir, "./data");
    }

    #[test]
    fn environment_overrides_file_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("ferrocast-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let file = dir.join("c.toml");
        std::fs::write(&file, "[rtmp]\nlisten = \"127.0.0.1:1\"\nchunk_size = 128\n[hub]\ngop_cache = false\n")
            .expect("write");
        let c = Config::load(
            Some(&file),
            env(&[
                ("FERROCAST_RTMP_LISTEN", "127.0.0.1:19350"),
                ("FERROCAST_STORAGE_DATA_DIR", "/tmp/x"),
                ("FERROCAST_HUB_PUBLISHER_GRACE_MS", "250"),
                ("FERROCAST_PLAY_MERGE_WINDOW_MS", "350"),
                ("OTHER_VAR", "ignored"),
            ]),
        )
        .expect("load");
        assert_eq!(c.rtmp.listen, "127.0.0.1:19350");
        assert_eq!(c.rtmp.chunk_size, 128);
        assert!(!c.hub.gop_cache);
        assert_eq!(c.hub.publisher_grace_ms, 250);
        assert_eq!(c.play.merge_window_ms, 350);
        assert_eq!(c.storage.data_dir, "/tmp/x");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn bad_keys_and_values_are_clear_errors() {
        let e = Config::load(None, env(&[("FERROCAST_NOPE_X", "1")])).expect_err("unknown section");
        assert!(e.to_string().contains("nope"), "{e}");
        let e = Config::load(None, env(&[("FERROCAST_RTMP_CHUNK_SIZE", "big")])).expect_err("not a number");
        assert!(e.to_string().contains("invalid"), "{e}");
        let e = Config::load(None, env(&[("FERROCAST_HLS_PART_MS", "5000")])).expect_err("part longer than segment");
        assert!(e.to_string().contains("part_ms"), "{e}");
        let e = Config::load(None, env(&[("FERROCAST_RTMP_TYPO", "1")])).expect_err("unknown key");
        assert!(e.to_string().contains("typo"), "{e}");
    }

    #[test]
    fn the_example_file_is_complete_and_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ferrocast.example.toml");
        let text = std::fs::read_to_string(&path).expect("example file");
        let c = Config::load(Some(&path), env(&[])).expect("example parses");
        assert_eq!(c.rtmp.listen, Config::default().rtmp.listen);
        // Every key of every section is documented (present, possibly commented out) in the example.
        let defaults = toml::Table::try_from(Config::default()).expect("table");
        for (section, keys) in defaults {
            assert!(text.contains(&format!("[{section}]")), "section [{section}] missing from the example");
            if let toml::Value::Table(keys) = keys {
                for key in keys.keys() {
                    assert!(text.contains(&format!("{key} =")), "key {section}.{key} missing from the example");
                }
            }
        }
    }
}
