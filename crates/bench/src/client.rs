//! Minimal RTMP and HTTP-FLV clients for load: each reports what it receives into shared [`Stats`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrocast_formats::flv::{self, FlvReader};
use ferrocast_rtmp::{ClientConfig, ClientEvent, ClientSession};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::stats::Stats;
use crate::synth::{Source, find_stamp, now_micros};

/// How long after its first frame a player starts counting latency: the frames of the GOP cache it starts with
/// are seconds old by design and say nothing about the server's added latency.
pub const LATENCY_WARMUP: Duration = Duration::from_secs(3);

/// A parsed `rtmp://host[:port]/app/stream[?query]` or `http://host[:port]/path` URL.
#[derive(Debug, Clone)]
pub struct Target {
    /// `rtmp` or `http`.
    pub scheme: String,
    /// `host:port`.
    pub authority: String,
    /// For RTMP: the application. For HTTP: unused.
    pub app: String,
    /// For RTMP: the stream name with its query. For HTTP: the path with its query.
    pub name: String,
}

impl Target {
    /// Parses a URL; the default ports are 1935 (rtmp) and 80 (http).
    pub fn parse(url: &str) -> Result<Target, String> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("not a URL: {url}"))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let default_port = match scheme {
            "rtmp" => 1935,
            "http" => 80,
            other => {
                return Err(format!("unsupported scheme {other}: use rtmp:// or http://"));
            }
        };
        let authority =
            if authority.contains(':') { authority.to_string() } else { format!("{authority}:{default_port}") };
        let (app, name) = match scheme {
            "rtmp" => {
                let (app, name) =
                    path.split_once('/').ok_or_else(|| format!("{url}: expected rtmp://host/app/stream"))?;
                (app.to_string(), name.to_string())
            }
            _ => (String::new(), format!("/{path}")),
        };
        Ok(Target { scheme: scheme.to_string(), authority, app, name })
    }

    /// The same target with `{i}` in the stream name replaced by `i`.
    pub fn for_index(&self, i: usize) -> Target {
        Target { name: self.name.replace("{i}", &i.to_string()), ..self.clone() }
    }

    fn tc_url(&self) -> String {
        format!("rtmp://{}/{}", self.authority, self.app)
    }
}

/// What a player counts that is its own (bytes of the current interval, for the full-rate check).
#[derive(Default)]
pub struct PlayerMeter {
    /// Bytes received since the reporter last looked.
    pub interval_bytes: AtomicU64,
}

/// Plays `target` until the stream ends, the connection fails, or `deadline`.
pub async fn play(target: Target, stats: Arc<Stats>, meter: Arc<PlayerMeter>, deadline: Instant) {
    let started = Instant::now();
    let result = tokio::time::timeout_at(deadline.into(), async {
        match target.scheme.as_str() {
            "rtmp" => play_rtmp(&target, &stats, &meter, started).await,
            _ => play_http(&target, &stats, &meter, started).await,
        }
    })
    .await;
    if let Ok(Err(e)) = result {
        stats.errors.fetch_add(1, Ordering::Relaxed);
        if stats.errors.load(Ordering::Relaxed) <= 5 {
            eprintln!("player error: {e}");
        }
    }
}

struct Receiver<'a> {
    stats: &'a Stats,
    meter: &'a PlayerMeter,
    started: Instant,
    got_video: bool,
    /// Latency is counted from this moment on: frames before it are the GOP-cache burst, old by design.
    latency_from: Option<Instant>,
}

impl Receiver<'_> {
    fn bytes(&self, n: usize) {
        self.stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
        self.meter.interval_bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn video(&mut self, body: &[u8]) {
        if matches!(body.get(1), Some(0)) && body.first().is_some_and(|b| b & 0x0f == 7) {
            return; // sequence header
        }
        self.stats.video_frames.fetch_add(1, Ordering::Relaxed);
        if !self.got_video {
            self.got_video = true;
            self.stats.started.fetch_add(1, Ordering::Relaxed);
            self.stats.ttff.record(self.started.elapsed().as_micros() as u64);
            self.latency_from = Some(Instant::now() + LATENCY_WARMUP);
        }
        if self.latency_from.is_some_and(|from| Instant::now() >= from)
            && let Some(sent) = find_stamp(body)
        {
            self.stats.latency.record(now_micros().saturating_sub(sent));
        }
    }

    fn audio(&mut self) {
        self.stats.audio_frames.fetch_add(1, Ordering::Relaxed);
    }
}

async fn play_rtmp(target: &Target, stats: &Stats, meter: &PlayerMeter, started: Instant) -> Result<(), String> {
    let mut socket = TcpStream::connect(&target.authority).await.map_err(|e| format!("connect: {e}"))?;
    let _ = socket.set_nodelay(true);
    let mut session = ClientSession::new(ClientConfig::default());
    session.connect(&target.app, &target.tc_url()).map_err(|e| e.to_string())?;
    session.play(&target.name).map_err(|e| e.to_string())?;
    let mut rx = Receiver { stats, meter, started, got_video: false, latency_from: None };
    let mut buf = vec![0u8; 64 * 1024];
    let mut connected = false;
    let result = loop {
        while let Some(out) = session.take_output() {
            socket.write_all(&out).await.map_err(|e| format!("write: {e}"))?;
        }
        let n = match socket.read(&mut buf).await {
            Ok(0) => break Err("server closed the connection".to_string()),
            Ok(n) => n,
            Err(e) => break Err(format!("read: {e}")),
        };
        rx.bytes(n);
        session.handle_input(&buf[..n]).map_err(|e| format!("rtmp: {e}"))?;
        let mut end = None;
        while let Some(event) = session.poll_event() {
            match event {
                ClientEvent::PlayStarted { .. } => {
                    connected = true;
                    stats.connected.fetch_add(1, Ordering::Relaxed);
                }
                ClientEvent::Video { payload, .. } => rx.video(&payload),
                ClientEvent::Audio { .. } => rx.audio(),
                ClientEvent::Status { level, code, .. } if level == "error" || code.contains("Unpublish") => {
                    end = Some(code);
                }
                ClientEvent::Error { code, description } => end = Some(format!("{code}: {description}")),
                ClientEvent::StreamEof { .. } | ClientEvent::Disconnected => end = Some("stream ended".into()),
                _ => {}
            }
        }
        if let Some(e) = end {
            break Err(e);
        }
    };
    if connected {
        stats.connected.fetch_sub(1, Ordering::Relaxed);
    }
    result
}

async fn play_http(target: &Target, stats: &Stats, meter: &PlayerMeter, started: Instant) -> Result<(), String> {
    let mut socket = TcpStream::connect(&target.authority).await.map_err(|e| format!("connect: {e}"))?;
    let _ = socket.set_nodelay(true);
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ferrocast-bench\r\nAccept: */*\r\n\r\n",
        target.name, target.authority
    );
    socket.write_all(request.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut head = Vec::new();
    let (chunked, mut leftover) = loop {
        let n = socket.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed before the response".into());
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
            let status = text.split_whitespace().nth(1).unwrap_or("");
            if status != "200" {
                return Err(format!("http status {status}"));
            }
            break (text.contains("transfer-encoding: chunked"), head.split_off(end + 4));
        }
        if head.len() > 16 * 1024 {
            return Err("response head too large".into());
        }
    };
    stats.connected.fetch_add(1, Ordering::Relaxed);
    let mut rx = Receiver { stats, meter, started, got_video: false, latency_from: None };
    let mut dechunk = Dechunker::default();
    let mut flv = FlvReader::new();
    let mut body = Vec::with_capacity(64 * 1024);
    let result = loop {
        body.clear();
        if chunked {
            if let Err(e) = dechunk.feed(&leftover, &mut body) {
                break Err(e);
            }
        } else {
            body.extend_from_slice(&leftover);
        }
        rx.bytes(leftover.len());
        flv.push(&body);
        loop {
            match flv.next_tag() {
                Ok(Some(tag)) => match tag.tag_type {
                    flv::TAG_VIDEO => rx.video(&tag.body),
                    flv::TAG_AUDIO => rx.audio(),
                    _ => {}
                },
                Ok(None) => break,
                Err(e) => {
                    stats.connected.fetch_sub(1, Ordering::Relaxed);
                    return Err(format!("flv: {e}"));
                }
            }
        }
        if dechunk.done {
            break Err("response ended".into());
        }
        let n = match socket.read(&mut buf).await {
            Ok(0) => break Err("server closed the connection".into()),
            Ok(n) => n,
            Err(e) => break Err(format!("read: {e}")),
        };
        leftover = buf[..n].to_vec();
    };
    stats.connected.fetch_sub(1, Ordering::Relaxed);
    result
}

/// Decodes HTTP/1.1 chunked transfer coding incrementally.
#[derive(Default)]
struct Dechunker {
    /// Bytes left in the current chunk's data.
    remaining: usize,
    /// Partial size line (or CRLF after data) being read.
    line: Vec<u8>,
    after_data: bool,
    done: bool,
}

impl Dechunker {
    fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        while !input.is_empty() && !self.done {
            if self.remaining > 0 {
                let n = self.remaining.min(input.len());
                out.extend_from_slice(&input[..n]);
                self.remaining -= n;
                input = &input[n..];
                if self.remaining == 0 {
                    self.after_data = true;
                }
                continue;
            }
            let Some(pos) = input.iter().position(|b| *b == b'\n') else {
                self.line.extend_from_slice(input);
                if self.line.len() > 1024 {
                    return Err("chunk size line too long".into());
                }
                return Ok(());
            };
            self.line.extend_from_slice(&input[..pos]);
            input = &input[pos + 1..];
            let line = String::from_utf8_lossy(&self.line).trim().to_string();
            self.line.clear();
            if self.after_data {
                self.after_data = false;
                if !line.is_empty() {
                    return Err("missing CRLF after chunk data".into());
                }
                continue;
            }
            let size = line.split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size, 16).map_err(|_| format!("bad chunk size {line:?}"))?;
            if size == 0 {
                self.done = true;
            }
            self.remaining = size;
        }
        Ok(())
    }
}

/// Publishes `source` to `target` in real time until `deadline`.
pub async fn publish(target: Target, mut source: Source, deadline: Instant) -> Result<u64, String> {
    let mut socket = TcpStream::connect(&target.authority).await.map_err(|e| format!("connect: {e}"))?;
    let _ = socket.set_nodelay(true);
    let mut session = ClientSession::new(ClientConfig::default());
    session.connect(&target.app, &target.tc_url()).map_err(|e| e.to_string())?;
    session.publish(&target.name).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 16 * 1024];
    // Wait for NetStream.Publish.Start.
    loop {
        while let Some(out) = session.take_output() {
            socket.write_all(&out).await.map_err(|e| format!("write: {e}"))?;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf))
            .await
            .map_err(|_| "no answer to publish within 10 s".to_string())?
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("server closed the connection".into());
        }
        session.handle_input(&buf[..n]).map_err(|e| format!("rtmp: {e}"))?;
        let mut started = false;
        while let Some(event) = session.poll_event() {
            match event {
                ClientEvent::PublishStarted { .. } => started = true,
                ClientEvent::Status { level, code, description, .. } if level == "error" => {
                    return Err(format!("publish refused: {code} {description}"));
                }
                ClientEvent::Error { code, description } => {
                    return Err(format!("refused: {code} {description}"));
                }
                _ => {}
            }
        }
        if started {
            break;
        }
    }
    for tag in source.headers() {
        send(&mut session, &tag.tag_type, tag.timestamp_ms, tag.body)?;
    }
    let start = tokio::time::Instant::now();
    let (mut reader, mut writer) = socket.into_split();
    // Drain whatever the server sends (acks, pings are answered by the session only if we read them; pings are rare
    // and the server does not need answers to keep a publisher), so its socket buffer never fills.
    tokio::spawn(async move {
        let mut sink = vec![0u8; 4096];
        while let Ok(n) = reader.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    });
    let mut frames = 0u64;
    let mut pending: Option<crate::synth::Tag> = None;
    loop {
        while let Some(out) = session.take_output() {
            writer.write_all(&out).await.map_err(|e| format!("write: {e}"))?;
        }
        if Instant::now() >= deadline {
            return Ok(frames);
        }
        let tag = match pending.take() {
            Some(t) => t,
            None => source.next_tag(),
        };
        let due = start + Duration::from_millis(tag.timestamp_ms as u64);
        if due > tokio::time::Instant::now() + Duration::from_millis(1) {
            // Generate the stamp at send time, not ahead of it: regenerate synthetic frames when due.
            tokio::time::sleep_until(due).await;
        }
        send(&mut session, &tag.tag_type, tag.timestamp_ms, restamp(tag.body))?;
        frames += 1;
    }
}

/// Re-writes a frame's stamp with the current time (the frame may have been made a little before it was due).
fn restamp(body: Bytes) -> Bytes {
    let Some(at) = body.windows(16).take(256).position(|w| w == crate::synth::STAMP_UUID) else {
        return body;
    };
    let mut v = body.to_vec();
    if let Some(slot) = v.get_mut(at + 16..at + 32) {
        slot.copy_from_slice(format!("{:016x}", now_micros()).as_bytes());
    }
    Bytes::from(v)
}

fn send(session: &mut ClientSession, tag_type: &u8, ts: u32, body: Bytes) -> Result<(), String> {
    let r = match *tag_type {
        flv::TAG_VIDEO => session.send_video(ts, body),
        flv::TAG_AUDIO => session.send_audio(ts, body),
        _ => session.send_metadata(body),
    };
    r.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunker_handles_split_input() {
        let wire = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
        for split in 1..wire.len() {
            let mut d = Dechunker::default();
            let mut out = Vec::new();
            d.feed(&wire[..split], &mut out).expect("first half");
            d.feed(&wire[split..], &mut out).expect("second half");
            assert_eq!(out, b"hello world", "split at {split}");
            assert!(d.done);
        }
    }

    #[test]
    fn urls_parse() {
        let t = Target::parse("rtmp://127.0.0.1/live/s{i}?a=1").expect("rtmp");
        assert_eq!((t.authority.as_str(), t.app.as_str(), t.name.as_str()), ("127.0.0.1:1935", "live", "s{i}?a=1"));
        assert_eq!(t.for_index(3).name, "s3?a=1");
        let h = Target::parse("http://h:8080/live/s.flv").expect("http");
        assert_eq!((h.authority.as_str(), h.name.as_str()), ("h:8080", "/live/s.flv"));
        assert!(Target::parse("srt://x").is_err());
    }
}
