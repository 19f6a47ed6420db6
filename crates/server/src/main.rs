//! `ferrocast`: the self-hosted live streaming server. With no arguments it serves RTMP on 0.0.0.0:1935 and
//! HTTP on 0.0.0.0:8080 and keeps its state under `./data`. `ferrocast url push|play ...` prints signed addresses.

mod config;
mod tls;
mod url_cmd;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, Subcommand};
use ferrocast_control::ApiState;
use ferrocast_control::credentials::Credentials;
use ferrocast_control::policy::{ControlPolicy, SnapshotCell};
use ferrocast_control::store::Store;
use ferrocast_http::{ClientAddr, HttpOptions, HttpState, StallTimeoutListener};
use ferrocast_hub::{Hub, HubConfig, Metrics, Protocol};
use ferrocast_rtmp::serve::{RtmpServeOptions, serve_listener};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;

/// Command line of the `ferrocast` binary.
#[derive(Debug, Parser)]
#[command(name = "ferrocast", version, about = "Self-hosted live streaming cloud")]
struct Cli {
    /// TOML configuration file (see ferrocast.example.toml); FERROCAST_<SECTION>_<KEY> variables override it.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// What to do; without one, the server runs.
    #[command(subcommand)]
    command: Option<Command>,
}

/// The subcommands of `ferrocast`.
#[derive(Debug, Subcommand)]
enum Command {
    /// Print signed push or play addresses (RTMP, OBS, FLV, HLS, WebRTC, SRT) with the domain's key from the store.
    Url(url_cmd::UrlArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferrocast: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Url(args)) = &cli.command {
        return url_command(args, &config);
    }
    init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferrocast: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("ferrocast: {e}");
            ExitCode::from(1)
        }
    }
}

/// `ferrocast url ...`: prints the addresses on stdout, or the reason on stderr (exit 1).
fn url_command(args: &url_cmd::UrlArgs, config: &Config) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferrocast: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(url_cmd::run(args, config)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferrocast url: {e}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error("cannot create data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error("cannot listen on {what} address {addr}: {source}")]
    Bind { what: &'static str, addr: String, source: std::io::Error },
    #[error("RTMPS certificates: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("store: {0}")]
    Store(#[from] ferrocast_control::store::StoreError),
    /// The time-shift storage could not be opened.
    #[error("time-shift storage {0}: {1}")]
    TimeShift(String, ferrocast_timeshift::TimeShiftError),
    #[error("API credentials: {0}")]
    Credentials(#[from] ferrocast_control::credentials::CredentialsError),
    #[error("[callbacks] ca_file {0}: {1}")]
    CallbackCa(String, std::io::Error),
    #[error("srt: {0}")]
    Srt(#[from] ferrocast_srt::SrtError),
    /// The WebRTC UDP port or a candidate could not be set up.
    #[error("{0}")]
    WebRtc(#[from] ferrocast_webrtc::StartError),
    /// A storage target is misconfigured.
    #[error("[storage] {0}")]
    Storage(#[from] ferrocast_storage::StorageError),
    /// The recording spool or upload queue could not start.
    #[error("{0}")]
    Recording(#[from] ferrocast_recording::RecordingError),
}

async fn bind(what: &'static str, addr: &str) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr).await.map_err(|source| RunError::Bind { what, addr: addr.to_string(), source })
}

async fn run(config: Config) -> Result<(), RunError> {
    std::fs::create_dir_all(&config.storage.data_dir)
        .map_err(|e| RunError::DataDir(config.storage.data_dir.clone(), e))?;
    let data_dir = std::path::Path::new(&config.storage.data_dir);
    let store = Store::open_default(data_dir, &config.store.url).await?;
    let (credentials, generated) =
        Credentials::load_or_create(&config.api.secret_id, &config.api.secret_key, data_dir)?;
    if generated {
        eprintln!(
            "ferrocast: generated API credentials (saved to {}):\n  SecretId:  {}\n  SecretKey: {}",
            data_dir.join(ferrocast_control::credentials::CREDENTIALS_FILE).display(),
            credentials.secret_id,
            credentials.secret_key
        );
    }
    let snapshot = Arc::new(SnapshotCell::new(store.snapshot().await?));
    let metrics = Arc::new(Metrics::default());
    let hub = Hub::new(
        HubConfig {
            ring_window: Duration::from_millis(config.hub.ring_window_ms),
            ring_max_bytes: config.hub.ring_max_bytes,
            ring_max_entries: config.hub.ring_max_entries,
            gop_cache: config.hub.gop_cache,
            publisher_grace: Duration::from_millis(config.hub.publisher_grace_ms),
            audio_wakeup_interval: Duration::from_millis(config.hub.audio_wakeup_interval_ms),
            delay: ferrocast_hub::DelayConfig {
                memory_budget: config.hub.delay_memory_budget_bytes,
                spill_dir: data_dir.join("delay"),
            },
            ..HubConfig::default()
        },
        metrics.clone(),
    );
    hub.set_access_policy(Arc::new(ControlPolicy::new(snapshot.clone())));
    ferrocast_control::history::spawn_recorder(
        store.clone(),
        hub.clone(),
        Duration::from_millis(config.history.sample_interval_ms),
    );
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let ready = Arc::new(AtomicBool::new(false));
    let stall_timeout = Duration::from_millis(config.play.stall_timeout_ms);
    let rtmp_options = RtmpServeOptions {
        default_domain: config.server.default_domain.clone(),
        chunk_size: config.rtmp.chunk_size,
        window_ack_size: config.rtmp.window_ack_size,
        publisher_idle_timeout: Duration::from_millis(config.rtmp.publisher_idle_timeout_ms),
        stall_timeout,
        merge_window: Duration::from_millis(config.play.merge_window_ms),
        max_batch: config.play.max_batch,
        protocol: Protocol::Rtmp,
    };

    // Bind everything first: a port that is taken is a startup error, not a half-running server.
    let rtmp_listener = match config.rtmp.listen.as_str() {
        "" => None,
        addr => Some(bind("rtmp", addr).await?),
    };
    let rtmps = match tls::acceptor(&config.rtmps)? {
        Some(acceptor) => Some((bind("rtmps", &config.rtmps.listen).await?, acceptor)),
        None => None,
    };
    let http_listener = bind("http", &config.http.listen).await?;
    let srt = if config.srt.enabled {
        let options = ferrocast_srt::SrtServeOptions {
            default_domain: config.server.default_domain.clone(),
            passphrase: (!config.srt.passphrase.is_empty()).then(|| config.srt.passphrase.clone()),
            passphrases: config.srt.passphrases.clone().into_iter().collect(),
            pbkeylen: config.srt.pbkeylen,
            latency: Duration::from_millis(config.srt.latency_ms),
            publisher_idle_timeout: Duration::from_millis(config.srt.publisher_idle_timeout_ms),
            stall_timeout,
            max_batch: config.play.max_batch,
        };
        Some(ferrocast_srt::SrtServer::bind(&config.srt.listen, options).await?)
    } else {
        None
    };
    let webrtc = if config.webrtc.enabled {
        let rtc_config = ferrocast_webrtc::WebRtcConfig {
            udp_listen: config.webrtc.udp_listen.clone(),
            tcp_listen: config.webrtc.tcp_listen.clone(),
            candidates: config
                .webrtc
                .candidates
                .split(',')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect(),
            default_domain: config.server.default_domain.clone(),
            cors_allow_origin: config.http.cors_allow_origin.clone(),
        };
        let rtc = ferrocast_webrtc::WebRtc::bind(rtc_config, hub.clone()).await?;
        match rtc.local_addr() {
            Ok(addr) => tracing::info!(candidates = ?rtc.candidates(), ice_tcp = ?rtc.tcp_local_addr(),
                "webrtc listening on udp {addr}"),
            Err(e) => tracing::warn!("webrtc socket has no local address: {e}"),
        }
        tokio::spawn(rtc.clone().run());
        Some(rtc)
    } else {
        None
    };

    let mut tasks = Vec::new();
    if let Some(listener) = rtmp_listener {
        log_listening("rtmp", &listener);
        tasks.push(tokio::spawn(serve_listener(
            listener,
            None,
            hub.clone(),
            Arc::new(rtmp_options.clone()),
            shutdown_rx.clone(),
        )));
    }
    if let Some((listener, acceptor)) = rtmps {
        log_listening("rtmps", &listener);
        let options = RtmpServeOptions { protocol: Protocol::Rtmps, ..rtmp_options.clone() };
        tasks.push(tokio::spawn(serve_listener(
            listener,
            Some(acceptor),
            hub.clone(),
            Arc::new(options),
            shutdown_rx.clone(),
        )));
    }
    log_listening("http", &http_listener);
    if let Some(server) = srt {
        tracing::info!("srt listening on {}", config.srt.listen);
        tasks.push(tokio::spawn(server.serve(hub.clone(), shutdown_rx.clone())));
    }
    let packager = config.hls.enabled.then(|| {
        ferrocast_packager::Packager::start(
            hub.clone(),
            ferrocast_packager::PackagerConfig {
                segmenter: ferrocast_packager::SegmenterConfig {
                    segment_target_ms: config.hls.segment_ms as i64,
                    part_target_ms: config.hls.part_ms as i64,
                },
                window_segments: config.hls.window,
                extra_segments: config.hls.extra_segments,
                low_latency: config.hls.low_latency,
                linger: Duration::from_millis(config.hls.linger_ms),
                encrypt_domains: config.hls.encrypt_domains.clone(),
                key_rotation_segments: config.hls.key_rotation_segments,
                naming: ferrocast_packager::SegmentNaming::new(&config.hls.segment_name).unwrap_or_default(),
            },
        )
    });
    let timeshift = if config.timeshift.enabled {
        let root = match config.timeshift.root.as_str() {
            "" => data_dir.join("timeshift"),
            r => std::path::PathBuf::from(r),
        };
        let ts = ferrocast_timeshift::TimeShift::start(
            hub.clone(),
            store.clone(),
            ferrocast_timeshift::TimeShiftConfig {
                root: root.clone(),
                cleanup_interval: Duration::from_millis(config.timeshift.cleanup_interval_ms),
                stale_session: Duration::from_secs(600),
            },
        )
        .map_err(|e| RunError::TimeShift(root.display().to_string(), e))?;
        Some(ts)
    } else {
        None
    };
    let state = HttpState {
        hub: hub.clone(),
        packager,
        sessions: ferrocast_http::SessionTracker::start(hub.clone(), ferrocast_http::SESSION_IDLE),
        timeshift,
        options: Arc::new(HttpOptions {
            default_domain: config.server.default_domain.clone(),
            cors_allow_origin: config.http.cors_allow_origin.clone(),
            merge_window: Duration::from_millis(config.play.merge_window_ms),
            max_batch: config.play.max_batch,
            hls_default_container: if config.hls.default_format == "fmp4" {
                ferrocast_packager::Container::Fmp4
            } else {
                ferrocast_packager::Container::Ts
            },
        }),
        ready: ready.clone(),
    };
    let extra_roots = match config.callbacks.ca_file.as_str() {
        "" => Vec::new(),
        path => ferrocast_control::callbacks::read_ca_file(std::path::Path::new(path))
            .map_err(|e| RunError::CallbackCa(path.to_string(), e))?,
    };
    let callbacks = ferrocast_control::callbacks::Callbacks::new(
        store.clone(),
        ferrocast_control::callbacks::CallbackConfig {
            appid: config.callbacks.appid,
            set_id: config.callbacks.set_id,
            idc_id: config.callbacks.idc_id,
            node: config.callbacks.node.clone(),
            timeout: Duration::from_millis(config.callbacks.timeout_ms),
            retry_interval: Duration::from_millis(config.callbacks.retry_interval_ms),
            max_retries: config.callbacks.max_retries,
            record_retention: Duration::from_secs(config.callbacks.record_retention_days.saturating_mul(86_400)),
            tls: Arc::new(ferrocast_control::callbacks::tls_client_config(&extra_roots)),
        },
    );
    callbacks.clone().start(&hub).await?;
    let recording = if config.record.enabled {
        Some(start_recording(&config, data_dir, &hub, &store, &callbacks).await?)
    } else {
        None
    };
    let api = ApiState {
        store,
        credentials: Arc::new(credentials),
        snapshot,
        max_domains: config.api.max_domains,
        hub: hub.clone(),
        rates: Arc::default(),
    };
    let mut router = ferrocast_http::router(state).merge(ferrocast_control::api_router(api));
    if let Some(rtc) = &webrtc {
        router = router.merge(ferrocast_webrtc::router(rtc.clone()));
    }
    let app = router.into_make_service_with_connect_info::<ClientAddr>();
    let mut http_shutdown = shutdown_rx.clone();
    let http = axum::serve(StallTimeoutListener::new(http_listener, stall_timeout, metrics.clone()), app)
        .with_graceful_shutdown(async move {
            let _ = http_shutdown.wait_for(|stop| *stop).await;
        });
    let http_task = tokio::spawn(async move {
        if let Err(e) = http.await {
            tracing::error!(error = %e, "http server failed");
        }
    });
    ready.store(true, Ordering::Release);
    tracing::info!("ferrocast ready");

    wait_for_signal().await;
    tracing::info!("shutting down");
    if let Some(r) = &recording {
        // Before the hub ends the streams: a recording stopped by shutdown is finalized, not held for resumption.
        r.shutdown(Duration::from_millis(config.record.shutdown_upload_ms)).await;
    }
    hub.shutdown();
    if let Some(rtc) = &webrtc {
        rtc.shutdown();
    }
    let _ = shutdown_tx.send(true);
    let deadline = Duration::from_millis(config.server.shutdown_timeout_ms);
    let all = async {
        for t in tasks {
            let _ = t.await;
        }
        let _ = http_task.await;
    };
    if tokio::time::timeout(deadline, all).await.is_err() {
        tracing::warn!("shutdown took longer than {deadline:?}; exiting with connections still open");
    }
    tracing::info!("stopped");
    Ok(())
}

/// The storage targets (plus the implicit `local` one) and the recording service.
async fn start_recording(
    config: &Config,
    data_dir: &std::path::Path,
    hub: &ferrocast_hub::Hub,
    store: &Store,
    callbacks: &ferrocast_control::callbacks::Callbacks,
) -> Result<ferrocast_recording::RecordingService, RunError> {
    let spool = match config.storage.spool_dir.as_str() {
        "" => data_dir.join("spool"),
        s => std::path::PathBuf::from(s),
    };
    let mut targets = config.storage.targets.clone();
    if !targets.iter().any(|t| t.name == "local") {
        let root = data_dir.join("records");
        targets.push(ferrocast_storage::TargetConfig::local("local", root.display().to_string()));
    }
    let storage = ferrocast_storage::Storage::new(&ferrocast_storage::StorageConfig {
        targets,
        default_target: config.storage.default_target.clone(),
        spool_dir: spool.clone(),
        max_backoff: Duration::from_secs(config.storage.max_backoff_s.max(1)),
        multipart_threshold: config.storage.multipart_threshold_bytes,
    })?;
    let r = &config.record;
    let svc = ferrocast_recording::RecordingService::start(
        hub.clone(),
        store.clone(),
        storage,
        callbacks.clone(),
        ferrocast_recording::RecordingConfig {
            spool_dir: spool,
            hls_segment_ms: r.hls_segment_ms as i64,
            min_duration_ms: r.min_duration_ms as i64,
            folder_template: r.folder_template.clone(),
            file_template: r.file_template.clone(),
            utc_offset_s: r.utc_offset_s(),
            task_poll: Duration::from_millis(r.task_poll_ms.max(100)),
            ffmpeg: std::path::PathBuf::from(&r.ffmpeg),
        },
    )
    .await?;
    Ok(svc)
}

fn log_listening(what: &str, listener: &TcpListener) {
    match listener.local_addr() {
        Ok(addr) => tracing::info!("{what} listening on {addr}"),
        Err(e) => tracing::warn!("{what} listener has no local address: {e}"),
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
