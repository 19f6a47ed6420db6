//! `ferrocast-bench`: a load generator and latency probe for any RTMP / HTTP-FLV server (ferrocast, nginx-rtmp,
//! SRS). `publish` sends a stream whose video frames carry their send time; `play` runs N concurrent players and
//! reports, every interval, connected players, received bitrate, frames, time to first frame, end-to-end latency
//! percentiles (when the publisher is `ferrocast-bench publish`), errors, and the CPU and memory of the server
//! processes given with `--pid`.

mod client;
mod stats;
mod synth;
mod watch;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use crate::client::{PlayerMeter, Target};
use crate::stats::{Snapshot, Stats, ms};
use crate::synth::{FileLoop, Source, Synthetic};
use crate::watch::Watched;

#[derive(Debug, Parser)]
#[command(name = "ferrocast-bench", version, about = "Load generator and latency probe for RTMP / HTTP-FLV servers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish a stream over RTMP whose video frames carry their send time.
    Publish {
        /// rtmp://host[:port]/app/stream
        #[arg(long)]
        url: String,
        /// Total bitrate of the synthetic stream (video + audio), kbit/s.
        #[arg(long, default_value_t = 2000)]
        kbps: u32,
        /// Video frames per second of the synthetic stream.
        #[arg(long, default_value_t = 30)]
        fps: u32,
        /// Frames per GOP of the synthetic stream.
        #[arg(long, default_value_t = 60)]
        gop: u32,
        /// Replay this FLV file in a loop instead (H.264 frames get stamps inserted).
        #[arg(long)]
        file: Option<String>,
        /// Seconds to publish.
        #[arg(long, default_value_t = 60)]
        duration: u64,
    },
    /// Run N concurrent players and report what they receive.
    Play {
        /// rtmp://host[:port]/app/stream or http://host[:port]/app/stream.flv (`{i}` is replaced by the player index)
        #[arg(long)]
        url: String,
        /// Number of players.
        #[arg(long, default_value_t = 100)]
        clients: usize,
        /// New players per second while ramping up.
        #[arg(long, default_value_t = 500)]
        rate: u32,
        /// Seconds to run (from the first player).
        #[arg(long, default_value_t = 30)]
        duration: u64,
        /// Seconds between reports.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// The stream's bitrate in kbit/s: players receiving at least 95 % of it in an interval count as full rate.
        #[arg(long, default_value_t = 0)]
        expect_kbps: u32,
        /// Server process ids to report CPU (% of one core) and resident memory of (children included).
        #[arg(long = "pid")]
        pids: Vec<u32>,
        /// A label printed on every line (e.g. the server's name).
        #[arg(long, default_value = "")]
        label: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferrocast-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Publish { url, kbps, fps, gop, file, duration } => {
                run_publish(&url, kbps, fps, gop, file.as_deref(), duration).await
            }
            Command::Play { url, clients, rate, duration, interval, expect_kbps, pids, label } => {
                run_play(&url, clients, rate, duration, interval, expect_kbps, pids, &label).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrocast-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_publish(
    url: &str,
    kbps: u32,
    fps: u32,
    gop: u32,
    file: Option<&str>,
    duration: u64,
) -> Result<(), String> {
    let target = Target::parse(url)?;
    if target.scheme != "rtmp" {
        return Err("publish needs an rtmp:// URL".into());
    }
    let source = match file {
        Some(path) => Source::File(FileLoop::open(path).map_err(|e| e.to_string())?),
        None => Source::Synthetic(Synthetic::new(kbps, fps, gop)),
    };
    let deadline = Instant::now() + Duration::from_secs(duration);
    eprintln!("publishing {url} for {duration} s");
    let frames = client::publish(target, source, deadline).await?;
    eprintln!("published {frames} frames");
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn run_play(
    url: &str,
    clients: usize,
    rate: u32,
    duration: u64,
    interval: f64,
    expect_kbps: u32,
    pids: Vec<u32>,
    label: &str,
) -> Result<(), String> {
    let target = Target::parse(url)?;
    let stats = Arc::new(Stats::default());
    let start = Instant::now();
    let deadline = start + Duration::from_secs(duration);
    let meters: Vec<Arc<PlayerMeter>> = (0..clients).map(|_| Arc::new(PlayerMeter::default())).collect();
    {
        let stats = stats.clone();
        let meters = meters.clone();
        let rate = rate.max(1) as f64;
        tokio::spawn(async move {
            for (i, meter) in meters.into_iter().enumerate() {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                tokio::spawn(client::play(target.for_index(i), stats.clone(), meter, deadline));
            }
        });
    }
    let mut watched: Vec<Watched> = pids.into_iter().map(Watched::new).collect();
    for w in &mut watched {
        w.sample(interval);
    }
    let (mut ttff_all, mut latency_all) = (Snapshot::default(), Snapshot::default());
    let (mut last_bytes, mut last_video) = (0u64, 0u64);
    let mut peak = Peak::default();
    let mut history: Vec<Vec<u64>> = vec![Vec::with_capacity(FULL_RATE_WINDOW + 1); clients];
    let mut intervals_seen = 0usize;
    let tick = Duration::from_secs_f64(interval.max(0.1));
    let mut next = start + tick;
    println!(
        "# label time clients started full_rate mbps video_fps ttff_p50 ttff_p99 lat_p50 lat_p99 errors [cpu% rss_mb per --pid]"
    );
    while Instant::now() < deadline {
        tokio::time::sleep_until(next.into()).await;
        next += tick;
        let secs = tick.as_secs_f64();
        let bytes = stats.bytes.load(Ordering::Relaxed);
        let video = stats.video_frames.load(Ordering::Relaxed);
        let mbps = (bytes - last_bytes) as f64 * 8.0 / secs / 1e6;
        let fps = (video - last_video) as f64 / secs;
        (last_bytes, last_video) = (bytes, video);
        // Full rate is judged over the last few intervals: a server that merges writes (SRS mw_latency, our
        // merge window) delivers in bursts that do not line up with one reporting interval.
        let window = FULL_RATE_WINDOW.min(intervals_seen + 1);
        let full_threshold = expect_kbps as f64 * 1000.0 / 8.0 * secs * window as f64 * 0.95;
        let mut full = 0;
        for (i, m) in meters.iter().enumerate() {
            let b = m.interval_bytes.swap(0, Ordering::Relaxed);
            history[i].push(b);
            if history[i].len() > FULL_RATE_WINDOW {
                history[i].remove(0);
            }
            let sum: u64 = history[i].iter().sum();
            if expect_kbps > 0 && history[i].len() >= window && sum as f64 >= full_threshold {
                full += 1;
            }
        }
        intervals_seen += 1;
        let ttff = stats.ttff.take();
        let latency = stats.latency.take();
        ttff_all.merge(&ttff);
        latency_all.merge(&latency);
        let connected = stats.connected.load(Ordering::Relaxed);
        let mut line = format!(
            "{label} t={:.0}s clients={connected} started={} full={full} mbps={mbps:.1} fps={fps:.0} ttff_p50={} ttff_p99={} lat_p50={} lat_p99={} errors={}",
            start.elapsed().as_secs_f64(),
            stats.started.load(Ordering::Relaxed),
            ms(ttff.quantile(0.5)),
            ms(ttff.quantile(0.99)),
            ms(latency.quantile(0.5)),
            ms(latency.quantile(0.99)),
            stats.errors.load(Ordering::Relaxed),
        );
        let mut cpu_sum = 0.0;
        let mut rss_sum = 0;
        for w in &mut watched {
            let (cpu, rss) = w.sample(secs);
            cpu_sum += cpu.unwrap_or(0.0);
            rss_sum += rss.unwrap_or(0);
            line.push_str(&format!(" pid{}={:.1}%/{}MB", w.pid, cpu.unwrap_or(0.0), rss.unwrap_or(0) / (1 << 20)));
        }
        println!("{line}");
        peak.observe(connected as usize, full, cpu_sum, rss_sum);
    }
    println!(
        "{label} SUMMARY clients={clients} peak_connected={} peak_full_rate={} ttff_p50={} ttff_p99={} lat_p50={} lat_p99={} latency_samples={} errors={} peak_cpu={:.1}% peak_rss={}MB",
        peak.connected,
        peak.full,
        ms(ttff_all.quantile(0.5)),
        ms(ttff_all.quantile(0.99)),
        ms(latency_all.quantile(0.5)),
        ms(latency_all.quantile(0.99)),
        latency_all.count(),
        stats.errors.load(Ordering::Relaxed),
        peak.cpu,
        peak.rss / (1 << 20),
    );
    Ok(())
}

/// Intervals over which a player's bitrate is compared with the expected one.
const FULL_RATE_WINDOW: usize = 3;

#[derive(Default)]
struct Peak {
    connected: usize,
    full: usize,
    cpu: f64,
    rss: u64,
}

impl Peak {
    fn observe(&mut self, connected: usize, full: usize, cpu: f64, rss: u64) {
        self.connected = self.connected.max(connected);
        self.full = self.full.max(full);
        self.cpu = self.cpu.max(cpu);
        self.rss = self.rss.max(rss);
    }
}
