//! Delayed playback (`txDelayTime`, AddDelayLiveStream): a publisher's frames wait in a delay line and enter the
//! stream's ring only `delay` after they arrived, so every viewer of every protocol sees the stream that late.
//!
//! The line keeps up to a memory budget of media; beyond it, items go to a spill file on disk (in order: once
//! spilling started, everything newer goes to the file until it is drained) and are read back as they come due.
//! One thread per delayed stream releases items on time and writes the spill file, so neither the ingest
//! connection nor the async runtime ever waits for the disk.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrocast_media::{Codec, Frame, MediaType, TrackInfo};

use crate::stream::Publisher;
use crate::{EndReason, PushError};

/// Longest delay a push may ask for (seconds).
pub const MAX_DELAY_SECS: u64 = 600;

/// Parses `txDelayTime`: whole seconds, 0 (no delay) to [`MAX_DELAY_SECS`].
pub fn parse_delay(value: &str) -> Result<Duration, String> {
    let secs: u64 = value.trim().parse().map_err(|_| {
        format!("txDelayTime={value}: the delay must be a whole number of seconds from 1 to {MAX_DELAY_SECS}")
    })?;
    if secs > MAX_DELAY_SECS {
        return Err(format!("txDelayTime={value}: the delay is at most {MAX_DELAY_SECS} seconds"));
    }
    Ok(Duration::from_secs(secs))
}

/// What waits in a delay line.
#[derive(Debug, Clone)]
pub(crate) enum Item {
    Frame(Frame),
    Track(TrackInfo),
    Metadata(Bytes),
    /// A publisher took over the line (a reconnect while it was draining): its timeline splices on.
    NewSession,
    /// The publisher of `generation` left.
    Close {
        generation: u64,
        reason: EndReason,
    },
}

impl Item {
    fn size(&self) -> usize {
        64 + match self {
            Item::Frame(f) => f.data.len(),
            Item::Track(t) => t.config.len(),
            Item::Metadata(m) => m.len(),
            Item::NewSession => 0,
            Item::Close { reason, .. } => reason_text(reason).len(),
        }
    }
}

/// The shared half of a delay line: what the ingest side and the hub need to see.
#[derive(Debug)]
pub(crate) struct DelayLine {
    pub(crate) delay: Duration,
    tx: parking_lot::Mutex<Sender<(Instant, Item)>>,
    /// The latest publisher's generation; a `Close` of an older one is ignored.
    pub(crate) generation: AtomicU64,
    /// The latest publisher has left; its `Close` is still in the line.
    pub(crate) ingest_closed: AtomicBool,
    /// The releasing thread has finished (stream stopped or publisher gone).
    pub(crate) finished: AtomicBool,
}

impl DelayLine {
    /// Queues an item, due `delay` from now. Fails only when the releasing thread is gone.
    pub(crate) fn send(&self, item: Item) -> Result<(), PushError> {
        self.tx.lock().send((Instant::now() + self.delay, item)).map_err(|_| PushError::Stopped)
    }
}

/// Memory and disk settings of delay lines.
#[derive(Debug, Clone)]
pub struct DelayConfig {
    /// Media bytes a delayed stream keeps in memory before spilling to disk.
    pub memory_budget: usize,
    /// Directory for spill files.
    pub spill_dir: PathBuf,
}

impl Default for DelayConfig {
    fn default() -> Self {
        DelayConfig { memory_budget: 32 << 20, spill_dir: std::env::temp_dir().join("ferrocast-delay") }
    }
}

/// Starts a delay line that feeds `direct` (a publisher writing straight into the ring).
pub(crate) fn start(delay: Duration, direct: Publisher, config: &DelayConfig) -> Arc<DelayLine> {
    let (tx, rx) = std::sync::mpsc::channel();
    let line = Arc::new(DelayLine {
        delay,
        tx: parking_lot::Mutex::new(tx),
        generation: AtomicU64::new(1),
        ingest_closed: AtomicBool::new(false),
        finished: AtomicBool::new(false),
    });
    let worker = Worker {
        line: line.clone(),
        direct: Some(direct),
        rx,
        mem: VecDeque::new(),
        mem_bytes: 0,
        budget: config.memory_budget.max(1),
        spill: None,
        spill_dir: config.spill_dir.clone(),
        epoch: Instant::now(),
        spilled_total: 0,
    };
    let key = worker.direct.as_ref().map(|d| d.key().to_string()).unwrap_or_default();
    let spawned = std::thread::Builder::new().name(format!("delay {key}")).spawn(move || worker.run());
    if let Err(e) = spawned {
        tracing::error!(stream = %key, error = %e, "cannot start the delay line thread; the stream will not play");
        line.finished.store(true, Ordering::Relaxed);
    }
    line
}

struct Worker {
    line: Arc<DelayLine>,
    direct: Option<Publisher>,
    rx: Receiver<(Instant, Item)>,
    mem: VecDeque<(Instant, Item)>,
    mem_bytes: usize,
    budget: usize,
    spill: Option<Spill>,
    spill_dir: PathBuf,
    epoch: Instant,
    spilled_total: u64,
}

impl Worker {
    fn run(mut self) {
        let key = self.direct.as_ref().map(|d| d.key().to_string()).unwrap_or_default();
        tracing::info!(stream = %key, delay_s = self.line.delay.as_secs(), "delayed playback started");
        let mut disconnected = false;
        loop {
            let now = Instant::now();
            let wait = match self.mem.front() {
                Some((due, _)) => due.saturating_duration_since(now),
                None if self.spill.as_ref().is_some_and(|s| s.pending > 0) => Duration::ZERO,
                None if disconnected => break,
                None => Duration::from_secs(3600),
            };
            if !disconnected {
                match self.rx.recv_timeout(wait) {
                    Ok(msg) => self.accept(msg),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => disconnected = true,
                }
                while let Ok(msg) = self.rx.try_recv() {
                    self.accept(msg);
                }
            } else if !wait.is_zero() {
                std::thread::sleep(wait);
            }
            if !self.release_due() {
                break;
            }
            self.refill();
        }
        self.line.finished.store(true, Ordering::Relaxed);
        if let Some(s) = self.spill.take() {
            s.remove();
        }
        tracing::info!(stream = %key, spilled_bytes = self.spilled_total, "delayed playback ended");
    }

    fn accept(&mut self, (due, item): (Instant, Item)) {
        let size = item.size();
        let spilling = self.spill.as_ref().is_some_and(|s| s.pending > 0);
        if !spilling && self.mem_bytes + size <= self.budget {
            self.mem_bytes += size;
            self.mem.push_back((due, item));
            return;
        }
        if self.spill.is_none() {
            match Spill::create(&self.spill_dir) {
                Ok(s) => self.spill = Some(s),
                Err(e) => {
                    // Without a disk, memory is the only place left: keep the media rather than lose it.
                    tracing::error!(dir = %self.spill_dir.display(), error = %e, "delay line cannot spill to disk; keeping the media in memory");
                    self.mem_bytes += size;
                    self.mem.push_back((due, item));
                    return;
                }
            }
        }
        let due_ms = due.saturating_duration_since(self.epoch).as_millis() as u64;
        if let Some(spill) = self.spill.as_mut() {
            if !spilling {
                tracing::info!(budget = self.budget, "delay line over its memory budget; spilling to disk");
            }
            if let Err(e) = spill.write(due_ms, &item) {
                tracing::error!(error = %e, "delay line spill write failed; keeping the item in memory");
                self.mem_bytes += size;
                self.mem.push_back((due, item));
                return;
            }
            self.spilled_total += size as u64;
        }
    }

    /// Moves spilled items back to memory once memory has room, oldest first.
    fn refill(&mut self) {
        let Some(spill) = self.spill.as_mut() else { return };
        while spill.pending > 0 && self.mem_bytes < self.budget / 2 {
            match spill.read() {
                Ok((due_ms, item)) => {
                    self.mem_bytes += item.size();
                    self.mem.push_back((self.epoch + Duration::from_millis(due_ms), item));
                }
                Err(e) => {
                    tracing::error!(error = %e, "delay line spill read failed; dropping the spilled media");
                    spill.pending = 0;
                }
            }
        }
        if spill.pending == 0 {
            spill.reset();
        }
    }

    /// Releases every due item into the stream; false when the line is done (stream stopped or closed).
    fn release_due(&mut self) -> bool {
        let now = Instant::now();
        while self.mem.front().is_some_and(|(due, _)| *due <= now) {
            let Some((_, item)) = self.mem.pop_front() else { break };
            self.mem_bytes = self.mem_bytes.saturating_sub(item.size());
            let Some(direct) = self.direct.as_mut() else { return false };
            let result = match item {
                Item::Frame(f) => direct.push_frame(f),
                Item::Track(t) => direct.set_track(t).map_err(|_| PushError::Stopped),
                Item::Metadata(m) => direct.set_metadata(m).map_err(|_| PushError::Stopped),
                Item::NewSession => {
                    direct.restart_timeline();
                    Ok(())
                }
                Item::Close { generation, reason } => {
                    if generation == self.line.generation.load(Ordering::Acquire) {
                        if let Some(d) = self.direct.take() {
                            d.close(reason);
                        }
                        return false;
                    }
                    Ok(())
                }
            };
            match result {
                Ok(()) => {}
                Err(PushError::Stopped) => return false,
                Err(PushError::Refused(why)) => {
                    tracing::warn!(stream = %direct.key(), "delayed frame refused: {why}");
                }
            }
        }
        true
    }
}

/// A spill file: records appended at the end, read from the front.
struct Spill {
    path: PathBuf,
    writer: BufWriter<File>,
    reader: BufReader<File>,
    pending: usize,
}

static SPILL_SEQ: AtomicU64 = AtomicU64::new(0);

impl Spill {
    fn create(dir: &Path) -> std::io::Result<Spill> {
        std::fs::create_dir_all(dir)?;
        let n = SPILL_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{}-{n}.spill", std::process::id()));
        let file = OpenOptions::new().create(true).truncate(true).write(true).open(&path)?;
        // A second open, not a clone: cloned handles share one file offset.
        let reader = BufReader::new(File::open(&path)?);
        Ok(Spill { path, writer: BufWriter::new(file), reader, pending: 0 })
    }

    fn write(&mut self, due_ms: u64, item: &Item) -> std::io::Result<()> {
        encode(&mut self.writer, due_ms, item)?;
        self.pending += 1;
        Ok(())
    }

    fn read(&mut self) -> std::io::Result<(u64, Item)> {
        self.writer.flush()?;
        let r = decode(&mut self.reader)?;
        self.pending -= 1;
        Ok(r)
    }

    /// Empties the file once everything was read back.
    fn reset(&mut self) {
        let result = self.writer.flush().and_then(|_| {
            self.writer.get_mut().set_len(0)?;
            self.writer.get_mut().seek(SeekFrom::Start(0))?;
            self.reader.seek(SeekFrom::Start(0)).map(|_| ())
        });
        if let Err(e) = result {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot truncate the delay spill file");
        }
    }

    fn remove(self) {
        drop(self.writer);
        drop(self.reader);
        let _ = std::fs::remove_file(&self.path);
    }
}

const CODECS: [Codec; 10] = [
    Codec::H264,
    Codec::H265,
    Codec::Av1,
    Codec::Vp9,
    Codec::Vp8,
    Codec::Aac,
    Codec::Opus,
    Codec::Mp3,
    Codec::G711A,
    Codec::G711U,
];

fn codec_id(c: Codec) -> u8 {
    CODECS.iter().position(|x| *x == c).unwrap_or(0) as u8
}

fn codec_from(id: u8) -> std::io::Result<Codec> {
    CODECS.get(id as usize).copied().ok_or_else(|| bad("codec"))
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("corrupt delay spill record ({what})"))
}

fn reason_text(r: &EndReason) -> &str {
    match r {
        EndReason::PublisherClosed => "",
        EndReason::PublisherLost(s) | EndReason::Stopped(s) => s,
    }
}

fn put_bytes(w: &mut impl Write, b: &[u8]) -> std::io::Result<()> {
    w.write_all(&(b.len() as u32).to_le_bytes())?;
    w.write_all(b)
}

fn encode(w: &mut impl Write, due_ms: u64, item: &Item) -> std::io::Result<()> {
    w.write_all(&due_ms.to_le_bytes())?;
    match item {
        Item::Frame(f) => {
            w.write_all(&[0, u8::from(f.media == MediaType::Video), codec_id(f.codec), u8::from(f.keyframe)])?;
            w.write_all(&f.timebase.to_le_bytes())?;
            w.write_all(&f.dts.to_le_bytes())?;
            w.write_all(&f.pts.to_le_bytes())?;
            put_bytes(w, &f.data)
        }
        Item::Track(t) => {
            w.write_all(&[1, codec_id(t.codec)])?;
            w.write_all(&t.timebase.to_le_bytes())?;
            put_bytes(w, &t.config)
        }
        Item::Metadata(m) => {
            w.write_all(&[2])?;
            put_bytes(w, m)
        }
        Item::NewSession => w.write_all(&[3]),
        Item::Close { generation, reason } => {
            let kind = match reason {
                EndReason::PublisherClosed => 0,
                EndReason::PublisherLost(_) => 1,
                EndReason::Stopped(_) => 2,
            };
            w.write_all(&[4, kind])?;
            w.write_all(&generation.to_le_bytes())?;
            put_bytes(w, reason_text(reason).as_bytes())
        }
    }
}

fn take<const N: usize>(r: &mut impl Read) -> std::io::Result<[u8; N]> {
    let mut b = [0u8; N];
    r.read_exact(&mut b)?;
    Ok(b)
}

fn get_bytes(r: &mut impl Read) -> std::io::Result<Bytes> {
    let len = u32::from_le_bytes(take(r)?) as usize;
    if len > 256 << 20 {
        return Err(bad("length"));
    }
    let mut v = vec![0u8; len];
    r.read_exact(&mut v)?;
    Ok(Bytes::from(v))
}

fn decode(r: &mut impl Read) -> std::io::Result<(u64, Item)> {
    let due = u64::from_le_bytes(take(r)?);
    let [kind] = take::<1>(r)?;
    let item = match kind {
        0 => {
            let [video, codec, key] = take::<3>(r)?;
            let timebase = u32::from_le_bytes(take(r)?);
            let dts = i64::from_le_bytes(take(r)?);
            let pts = i64::from_le_bytes(take(r)?);
            let data = get_bytes(r)?;
            let media = if video == 1 { MediaType::Video } else { MediaType::Audio };
            Item::Frame(Frame { media, codec: codec_from(codec)?, timebase, dts, pts, keyframe: key == 1, data })
        }
        1 => {
            let [codec] = take::<1>(r)?;
            let timebase = u32::from_le_bytes(take(r)?);
            let config = get_bytes(r)?;
            let info = TrackInfo::from_config(codec_from(codec)?, timebase, config).map_err(|_| bad("track"))?;
            Item::Track(info)
        }
        2 => Item::Metadata(get_bytes(r)?),
        3 => Item::NewSession,
        4 => {
            let [k] = take::<1>(r)?;
            let generation = u64::from_le_bytes(take(r)?);
            let text = String::from_utf8_lossy(&get_bytes(r)?).into_owned();
            let reason = match k {
                0 => EndReason::PublisherClosed,
                1 => EndReason::PublisherLost(text),
                _ => EndReason::Stopped(text),
            };
            Item::Close { generation, reason }
        }
        _ => return Err(bad("kind")),
    };
    Ok((due, item))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_whole_seconds_up_to_600() {
        assert_eq!(parse_delay("20"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_delay("0"), Ok(Duration::ZERO));
        assert!(parse_delay("601").unwrap_err().contains("at most 600"));
        assert!(parse_delay("1.5").unwrap_err().contains("whole number"));
        assert!(parse_delay("-3").is_err());
        assert!(parse_delay("").is_err());
    }

    #[test]
    fn spill_records_round_trip() {
        let frame = Frame {
            media: MediaType::Video,
            codec: Codec::H265,
            timebase: 90_000,
            dts: -5,
            pts: 3003,
            keyframe: true,
            data: Bytes::from_static(b"\x00\x00\x00\x01abc"),
        };
        let items = [
            Item::Frame(frame.clone()),
            Item::Metadata(Bytes::from_static(b"meta")),
            Item::NewSession,
            Item::Close { generation: 7, reason: EndReason::PublisherLost("reset".into()) },
        ];
        let mut buf = Vec::new();
        for (i, item) in items.iter().enumerate() {
            encode(&mut buf, i as u64 * 10, item).expect("encode");
        }
        let mut r = &buf[..];
        match decode(&mut r).expect("frame") {
            (0, Item::Frame(f)) => assert_eq!(f, frame),
            other => panic!("{other:?}"),
        }
        assert!(matches!(decode(&mut r).expect("meta"), (10, Item::Metadata(m)) if &m[..] == b"meta"));
        assert!(matches!(decode(&mut r).expect("new"), (20, Item::NewSession)));
        assert!(matches!(
            decode(&mut r).expect("close"),
            (30, Item::Close { generation: 7, reason: EndReason::PublisherLost(s) }) if s == "reset"
        ));
        assert!(decode(&mut r).is_err(), "end of data");
        let mut corrupt = &[0u8, 0, 0, 0, 0, 0, 0, 0, 9][..];
        assert!(decode(&mut corrupt).is_err());
    }
}
