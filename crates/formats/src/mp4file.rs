//! Recording-grade MP4 files: recordings are written as fragmented MP4 (our init segment, then `moof`+`mdat`
//! fragments), which stays playable up to its last complete fragment if the process dies; on close — or when a
//! crashed recording is recovered — the fragments are rewritten into a normal, seekable ("progressive") MP4 with
//! `moov` first.
//!
//! [`scan`] reads the fragmented file through a [`ReadAt`] (box headers and `moof`s only, never the media) and
//! stops at the first incomplete box; [`progressive_layout`] turns the scan into the new file's header (`ftyp`,
//! `moov`, `mdat` header) plus the list of byte ranges of the old file to copy after it, in order.

use std::ops::Range;

use crate::fmp4::W;

/// Why an MP4 could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mp4FileError {
    /// The source could not be read.
    #[error("read: {0}")]
    Read(String),
    /// The file does not start with our init segment (`ftyp` + `moov`).
    #[error("not a fragmented MP4: {0}")]
    NotFragmented(&'static str),
    /// A box is malformed.
    #[error("malformed {0} box")]
    Malformed(&'static str),
    /// No complete fragment: nothing to make a file from.
    #[error("no complete fragment")]
    Empty,
    /// A size or offset does not fit its field.
    #[error("file too large")]
    TooLarge,
}

/// Random-access reading of the source file (a `std::fs::File` via `FileExt::read_at`, or a byte slice).
pub trait ReadAt {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at the end).
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, String>;
}

impl ReadAt for &[u8] {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, String> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(self.len());
        let n = buf.len().min(self.len() - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
}

fn read_exact(src: &mut impl ReadAt, offset: u64, len: usize) -> Result<Option<Vec<u8>>, Mp4FileError> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        let n = src.read_at(offset + done as u64, &mut buf[done..]).map_err(Mp4FileError::Read)?;
        if n == 0 {
            return Ok(None);
        }
        done += n;
    }
    Ok(Some(buf))
}

/// One sample found in the fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedSample {
    /// Decode time in the track's timescale.
    pub dts: u64,
    /// Duration in the track's timescale.
    pub duration: u32,
    /// Composition offset (signed).
    pub cto: i32,
    /// Size in bytes.
    pub size: u32,
    /// A sync sample (keyframe).
    pub sync: bool,
    /// Where its bytes are in the source file.
    pub offset: u64,
}

/// One track of a scanned file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedTrack {
    /// `track_ID`.
    pub id: u32,
    /// The `hdlr` handler type (`vide`, `soun`).
    pub handler: [u8; 4],
    /// `mdhd` timescale.
    pub timescale: u32,
    /// `tkhd` width and height (16.16 fixed point, as stored).
    pub size: (u32, u32),
    /// The whole `stsd` box, copied into the progressive file.
    pub stsd: Vec<u8>,
    /// The samples, grouped by the fragment runs they came in (each run becomes one chunk).
    pub runs: Vec<Vec<ScannedSample>>,
}

/// What [`scan`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The tracks, in `moov` order.
    pub tracks: Vec<ScannedTrack>,
    /// Bytes of the source that form complete boxes; anything after was cut off by a crash.
    pub complete_len: u64,
    /// The runs of all tracks in file order: (track index, run index).
    pub order: Vec<(usize, usize)>,
}

struct Boxes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Boxes<'a> {
    type Item = Result<([u8; 4], &'a [u8]), Mp4FileError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos + 8 > self.data.len() {
            return None;
        }
        let d = &self.data[self.pos..];
        let size = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize;
        let typ = [d[4], d[5], d[6], d[7]];
        if size < 8 || size > d.len() {
            self.pos = self.data.len();
            return Some(Err(Mp4FileError::Malformed("child")));
        }
        self.pos += size;
        Some(Ok((typ, &d[8..size])))
    }
}

fn children(data: &[u8]) -> Boxes<'_> {
    Boxes { data, pos: 0 }
}

fn child<'a>(data: &'a [u8], typ: &[u8; 4]) -> Result<Option<&'a [u8]>, Mp4FileError> {
    for b in children(data) {
        let (t, body) = b?;
        if &t == typ {
            return Ok(Some(body));
        }
    }
    Ok(None)
}

fn be32(d: &[u8], at: usize, what: &'static str) -> Result<u32, Mp4FileError> {
    d.get(at..at + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]])).ok_or(Mp4FileError::Malformed(what))
}

fn be64(d: &[u8], at: usize, what: &'static str) -> Result<u64, Mp4FileError> {
    let hi = be32(d, at, what)?;
    let lo = be32(d, at + 4, what)?;
    Ok(u64::from(hi) << 32 | u64::from(lo))
}

fn parse_trak(trak: &[u8]) -> Result<ScannedTrack, Mp4FileError> {
    let tkhd = child(trak, b"tkhd")?.ok_or(Mp4FileError::Malformed("tkhd"))?;
    let v1 = tkhd.first() == Some(&1);
    let id = be32(tkhd, if v1 { 20 } else { 12 }, "tkhd")?;
    let wh_at = tkhd.len().checked_sub(8).ok_or(Mp4FileError::Malformed("tkhd"))?;
    let size = (be32(tkhd, wh_at, "tkhd")?, be32(tkhd, wh_at + 4, "tkhd")?);
    let mdia = child(trak, b"mdia")?.ok_or(Mp4FileError::Malformed("mdia"))?;
    let mdhd = child(mdia, b"mdhd")?.ok_or(Mp4FileError::Malformed("mdhd"))?;
    let timescale = be32(mdhd, if mdhd.first() == Some(&1) { 20 } else { 12 }, "mdhd")?;
    let hdlr = child(mdia, b"hdlr")?.ok_or(Mp4FileError::Malformed("hdlr"))?;
    let handler: [u8; 4] = hdlr.get(8..12).and_then(|s| s.try_into().ok()).ok_or(Mp4FileError::Malformed("hdlr"))?;
    let minf = child(mdia, b"minf")?.ok_or(Mp4FileError::Malformed("minf"))?;
    let stbl = child(minf, b"stbl")?.ok_or(Mp4FileError::Malformed("stbl"))?;
    let stsd_body = child(stbl, b"stsd")?.ok_or(Mp4FileError::Malformed("stsd"))?;
    let mut stsd = Vec::with_capacity(stsd_body.len() + 8);
    stsd.extend_from_slice(&((stsd_body.len() + 8) as u32).to_be_bytes());
    stsd.extend_from_slice(b"stsd");
    stsd.extend_from_slice(stsd_body);
    if timescale == 0 {
        return Err(Mp4FileError::Malformed("mdhd timescale"));
    }
    Ok(ScannedTrack { id, handler, timescale, size, stsd, runs: Vec::new() })
}

/// Reads the samples of one `moof` that starts at `moof_offset` in the source.
fn parse_moof(moof: &[u8], moof_offset: u64, scan: &mut Scan) -> Result<(), Mp4FileError> {
    for b in children(moof) {
        let (typ, traf) = b?;
        if &typ != b"traf" {
            continue;
        }
        let tfhd = child(traf, b"tfhd")?.ok_or(Mp4FileError::Malformed("tfhd"))?;
        let tf_flags = be32(tfhd, 0, "tfhd")? & 0x00ff_ffff;
        let track_id = be32(tfhd, 4, "tfhd")?;
        let mut at = 8;
        let base_offset = if tf_flags & 0x01 != 0 {
            let v = be64(tfhd, at, "tfhd")?;
            at += 8;
            v
        } else {
            moof_offset
        };
        if tf_flags & 0x02 != 0 {
            at += 4; // sample_description_index
        }
        let default_duration = if tf_flags & 0x08 != 0 { Some(be32(tfhd, at, "tfhd")?) } else { None };
        at += if tf_flags & 0x08 != 0 { 4 } else { 0 };
        let default_size = if tf_flags & 0x10 != 0 { Some(be32(tfhd, at, "tfhd")?) } else { None };
        at += if tf_flags & 0x10 != 0 { 4 } else { 0 };
        let default_flags = if tf_flags & 0x20 != 0 { Some(be32(tfhd, at, "tfhd")?) } else { None };
        let tfdt = child(traf, b"tfdt")?.ok_or(Mp4FileError::Malformed("tfdt"))?;
        let mut dts = if tfdt.first() == Some(&1) { be64(tfdt, 4, "tfdt")? } else { u64::from(be32(tfdt, 4, "tfdt")?) };
        let Some(ti) = scan.tracks.iter().position(|t| t.id == track_id) else {
            return Err(Mp4FileError::Malformed("traf of an unknown track"));
        };
        for b in children(traf) {
            let (typ, trun) = b?;
            if &typ != b"trun" {
                continue;
            }
            let flags = be32(trun, 0, "trun")? & 0x00ff_ffff;
            let count = be32(trun, 4, "trun")? as usize;
            let mut at = 8;
            let data_offset = if flags & 0x001 != 0 {
                let v = be32(trun, at, "trun")? as i32;
                at += 4;
                v
            } else {
                0
            };
            let first_flags = if flags & 0x004 != 0 {
                let v = be32(trun, at, "trun")?;
                at += 4;
                Some(v)
            } else {
                None
            };
            let mut offset = base_offset.checked_add_signed(i64::from(data_offset)).ok_or(Mp4FileError::TooLarge)?;
            let mut run = Vec::with_capacity(count.min(100_000));
            for i in 0..count {
                let mut field = |bit: u32| -> Result<Option<u32>, Mp4FileError> {
                    if flags & bit == 0 {
                        return Ok(None);
                    }
                    let v = be32(trun, at, "trun")?;
                    at += 4;
                    Ok(Some(v))
                };
                let duration = field(0x100)?.or(default_duration).unwrap_or(0);
                let size = field(0x200)?.or(default_size).ok_or(Mp4FileError::Malformed("trun sample size"))?;
                let sflags = field(0x400)?.or(if i == 0 { first_flags } else { None }).or(default_flags).unwrap_or(0);
                let cto = field(0x800)?.map_or(0, |v| v as i32);
                // sample_is_non_sync_sample (bit 16) clear = sync.
                run.push(ScannedSample { dts, duration, cto, size, sync: sflags & 0x0001_0000 == 0, offset });
                dts = dts.saturating_add(u64::from(duration));
                offset = offset.checked_add(u64::from(size)).ok_or(Mp4FileError::TooLarge)?;
            }
            if !run.is_empty() {
                let ri = scan.tracks[ti].runs.len();
                scan.tracks[ti].runs.push(run);
                scan.order.push((ti, ri));
            }
        }
    }
    Ok(())
}

/// Scans a fragmented MP4 of `len` bytes: the init segment's tracks and every sample of every complete
/// `moof`+`mdat` pair. A fragment cut off by a crash (an incomplete `moof`, or an `mdat` shorter than its header
/// says) ends the scan; [`Scan::complete_len`] says where.
pub fn scan(src: &mut impl ReadAt, len: u64) -> Result<Scan, Mp4FileError> {
    let mut scan = Scan { tracks: Vec::new(), complete_len: 0, order: Vec::new() };
    let mut pos = 0u64;
    let mut pending: Option<(Scan, u64)> = None;
    while pos + 8 <= len {
        let Some(head) = read_exact(src, pos, 16.min((len - pos) as usize))? else { break };
        let size32 = u64::from(u32::from_be_bytes([head[0], head[1], head[2], head[3]]));
        let typ: [u8; 4] = [head[4], head[5], head[6], head[7]];
        let size = match size32 {
            1 if head.len() >= 16 => u64::from_be_bytes(head[8..16].try_into().map_err(|_| Mp4FileError::TooLarge)?),
            0 => len - pos,
            s => s,
        };
        if size < 8 || size > len - pos {
            break; // cut off
        }
        if matches!(&typ, b"moov" | b"moof") && size > MAX_HEADER_BOX {
            return Err(Mp4FileError::Malformed("oversized moov/moof"));
        }
        match &typ {
            b"moov" => {
                let body = read_exact(src, pos + 8, (size - 8) as usize)?.ok_or(Mp4FileError::Read("moov".into()))?;
                for b in children(&body) {
                    let (t, trak) = b?;
                    if &t == b"trak" {
                        scan.tracks.push(parse_trak(trak)?);
                    }
                }
            }
            b"moof" => {
                if scan.tracks.is_empty() {
                    return Err(Mp4FileError::NotFragmented("moof before moov"));
                }
                let body = read_exact(src, pos + 8, (size - 8) as usize)?.ok_or(Mp4FileError::Read("moof".into()))?;
                // Commit the fragment only once its mdat is complete too.
                let mut next = scan.clone();
                parse_moof(&body, pos, &mut next)?;
                pending = Some((next, pos + size));
                pos += size;
                continue;
            }
            b"mdat" => {
                if let Some((next, _)) = pending.take() {
                    let end = pos + size;
                    let fits = next.order.iter().all(|&(t, r)| {
                        next.tracks[t].runs[r].last().is_none_or(|s| s.offset + u64::from(s.size) <= end)
                    });
                    if !fits {
                        break;
                    }
                    scan = next;
                }
            }
            _ => {}
        }
        pos += size;
        if pending.is_none() {
            scan.complete_len = pos;
        }
    }
    if scan.tracks.is_empty() {
        return Err(Mp4FileError::NotFragmented("no moov"));
    }
    Ok(scan)
}

/// The layout of the progressive file: `header` (ftyp, moov, mdat header) then the bytes of `ranges` of the
/// source, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The new file's first bytes.
    pub header: Vec<u8>,
    /// The source byte ranges to append after the header, in order (one per chunk).
    pub ranges: Vec<Range<u64>>,
    /// The longest track's duration in milliseconds.
    pub duration_ms: u64,
}

fn track_duration(t: &ScannedTrack) -> u64 {
    let first = t.runs.first().and_then(|r| r.first()).map_or(0, |s| s.dts);
    let last = t.runs.last().and_then(|r| r.last()).map_or(0, |s| s.dts + u64::from(s.duration));
    last.saturating_sub(first)
}

fn full(w: &mut W, typ: &[u8; 4], version: u8, flags: u32, body: impl FnOnce(&mut W)) -> Result<(), Mp4FileError> {
    let pos = w.start_full(typ, version, flags);
    body(w);
    w.end(pos).map_err(|_| Mp4FileError::TooLarge)
}

fn open(w: &mut W, typ: &[u8; 4]) -> usize {
    w.start(typ)
}

fn close(w: &mut W, pos: usize) -> Result<(), Mp4FileError> {
    w.end(pos).map_err(|_| Mp4FileError::TooLarge)
}

const MOVIE_TIMESCALE: u32 = 1000;
/// Largest `moov`/`moof` read into memory; ours are a few kilobytes.
const MAX_HEADER_BOX: u64 = 64 << 20;

fn moov(scan: &Scan, chunk_offsets: &[Vec<u64>], co64: bool) -> Result<Vec<u8>, Mp4FileError> {
    let mut w = W::default();
    // Tracks start together: a track that starts later than the earliest one gets an empty edit of the gap.
    let start_ms = |t: &ScannedTrack| {
        t.runs.first().and_then(|r| r.first()).map_or(0, |s| s.dts.saturating_mul(1000) / u64::from(t.timescale))
    };
    let movie_start = scan.tracks.iter().filter(|t| !t.runs.is_empty()).map(start_ms).min().unwrap_or(0);
    let movie_duration = scan
        .tracks
        .iter()
        .map(|t| {
            (start_ms(t) - movie_start).saturating_add(track_duration(t).saturating_mul(1000) / u64::from(t.timescale))
        })
        .max()
        .unwrap_or(0);
    let moov = open(&mut w, b"moov");
    full(&mut w, b"mvhd", 1, 0, |w| {
        w.u64(0);
        w.u64(0);
        w.u32(MOVIE_TIMESCALE);
        w.u64(movie_duration);
        w.u32(0x0001_0000);
        w.u16(0x0100);
        w.zeros(10);
        w.matrix();
        w.zeros(24);
        w.u32(scan.tracks.iter().map(|t| t.id).max().unwrap_or(0) + 1);
    })?;
    for (ti, t) in scan.tracks.iter().enumerate() {
        if t.runs.is_empty() {
            continue;
        }
        let samples: Vec<&ScannedSample> = t.runs.iter().flatten().collect();
        let media_duration = track_duration(t);
        let delay_ms = start_ms(t) - movie_start;
        let track_ms = media_duration.saturating_mul(1000) / u64::from(t.timescale);
        let is_video = &t.handler == b"vide";
        let trak = open(&mut w, b"trak");
        full(&mut w, b"tkhd", 1, 0x3, |w| {
            w.u64(0);
            w.u64(0);
            w.u32(t.id);
            w.u32(0);
            w.u64(delay_ms.saturating_add(track_ms));
            w.zeros(8);
            w.u16(0);
            w.u16(0);
            w.u16(if is_video { 0 } else { 0x0100 });
            w.u16(0);
            w.matrix();
            w.u32(t.size.0);
            w.u32(t.size.1);
        })?;
        let edts = open(&mut w, b"edts");
        // Sample tables start at decode time 0. With B-frames the earliest presented frame is at a positive
        // composition time: the edit starts the track there, so it neither begins with a gap nor loses its end.
        let base = samples.first().map_or(0, |s| s.dts);
        let first_cto =
            samples.iter().map(|s| s.dts.saturating_sub(base) as i64 + i64::from(s.cto)).min().unwrap_or(0).max(0);
        let entries: Vec<(u64, i64)> =
            if delay_ms > 0 { vec![(delay_ms, -1), (track_ms, first_cto)] } else { vec![(track_ms, first_cto)] };
        full(&mut w, b"elst", 1, 0, |w| {
            w.u32(entries.len() as u32);
            for (duration, media_time) in &entries {
                w.u64(*duration);
                w.u64(*media_time as u64);
                w.u16(1);
                w.u16(0);
            }
        })?;
        close(&mut w, edts)?;
        let mdia = open(&mut w, b"mdia");
        full(&mut w, b"mdhd", 1, 0, |w| {
            w.u64(0);
            w.u64(0);
            w.u32(t.timescale);
            w.u64(media_duration);
            w.u16(0x55c4);
            w.u16(0);
        })?;
        full(&mut w, b"hdlr", 0, 0, |w| {
            w.u32(0);
            w.bytes(&t.handler);
            w.zeros(12);
            w.bytes(if is_video { b"VideoHandler\0" } else { b"SoundHandler\0" });
        })?;
        let minf = open(&mut w, b"minf");
        if is_video {
            full(&mut w, b"vmhd", 0, 1, |w| w.zeros(8))?;
        } else {
            full(&mut w, b"smhd", 0, 0, |w| w.zeros(4))?;
        }
        let dinf = open(&mut w, b"dinf");
        full(&mut w, b"dref", 0, 0, |w| {
            w.u32(1);
            w.u32(12);
            w.bytes(b"url ");
            w.u32(1);
        })?;
        close(&mut w, dinf)?;
        let stbl = open(&mut w, b"stbl");
        w.bytes(&t.stsd);
        // stts: run-length durations.
        let mut stts: Vec<(u32, u32)> = Vec::new();
        for s in &samples {
            match stts.last_mut() {
                Some((n, d)) if *d == s.duration => *n += 1,
                _ => stts.push((1, s.duration)),
            }
        }
        full(&mut w, b"stts", 0, 0, |w| {
            w.u32(stts.len() as u32);
            for (n, d) in &stts {
                w.u32(*n);
                w.u32(*d);
            }
        })?;
        if samples.iter().any(|s| s.cto != 0) {
            let mut ctts: Vec<(u32, i32)> = Vec::new();
            for s in &samples {
                match ctts.last_mut() {
                    Some((n, c)) if *c == s.cto => *n += 1,
                    _ => ctts.push((1, s.cto)),
                }
            }
            full(&mut w, b"ctts", 1, 0, |w| {
                w.u32(ctts.len() as u32);
                for (n, c) in &ctts {
                    w.u32(*n);
                    w.bytes(&c.to_be_bytes());
                }
            })?;
        }
        if samples.iter().any(|s| !s.sync) {
            let sync: Vec<u32> =
                samples.iter().enumerate().filter(|(_, s)| s.sync).map(|(i, _)| i as u32 + 1).collect();
            full(&mut w, b"stss", 0, 0, |w| {
                w.u32(sync.len() as u32);
                for i in &sync {
                    w.u32(*i);
                }
            })?;
        }
        // stsc: one chunk per run; entries only where the samples-per-chunk changes.
        let mut stsc: Vec<(u32, u32)> = Vec::new();
        for (i, run) in t.runs.iter().enumerate() {
            if stsc.last().is_none_or(|(_, n)| *n != run.len() as u32) {
                stsc.push((i as u32 + 1, run.len() as u32));
            }
        }
        full(&mut w, b"stsc", 0, 0, |w| {
            w.u32(stsc.len() as u32);
            for (first, n) in &stsc {
                w.u32(*first);
                w.u32(*n);
                w.u32(1);
            }
        })?;
        full(&mut w, b"stsz", 0, 0, |w| {
            w.u32(0);
            w.u32(samples.len() as u32);
            for s in &samples {
                w.u32(s.size);
            }
        })?;
        let offsets = &chunk_offsets[ti];
        if co64 {
            full(&mut w, b"co64", 0, 0, |w| {
                w.u32(offsets.len() as u32);
                for o in offsets {
                    w.u64(*o);
                }
            })?;
        } else {
            full(&mut w, b"stco", 0, 0, |w| {
                w.u32(offsets.len() as u32);
                for o in offsets {
                    w.u32(*o as u32);
                }
            })?;
        }
        close(&mut w, stbl)?;
        close(&mut w, minf)?;
        close(&mut w, mdia)?;
        close(&mut w, trak)?;
    }
    close(&mut w, moov)?;
    Ok(w.buf)
}

/// Lays out the progressive file for a scan: `ftyp` (isom, mp41, iso2, avc1), `moov` with full sample tables
/// (one chunk per fragment run, `co64` when offsets need it, an edit list per track so tracks that started at
/// different times stay in sync), then one `mdat` holding every run's bytes in file order.
pub fn progressive_layout(scan: &Scan) -> Result<Layout, Mp4FileError> {
    if scan.order.is_empty() {
        return Err(Mp4FileError::Empty);
    }
    let mut ftyp = W::default();
    let f = ftyp.start(b"ftyp");
    ftyp.bytes(b"isom");
    ftyp.u32(0x200);
    for b in [b"isom", b"iso2", b"mp41", b"avc1"] {
        ftyp.bytes(b);
    }
    ftyp.end(f).map_err(|_| Mp4FileError::TooLarge)?;
    let ranges: Vec<Range<u64>> = scan
        .order
        .iter()
        .map(|&(t, r)| {
            let run = &scan.tracks[t].runs[r];
            let start = run.first().map_or(0, |s| s.offset);
            let end = run.last().map_or(0, |s| s.offset + u64::from(s.size));
            start..end
        })
        .collect();
    // Samples of a run are contiguous in our fragments; check rather than assume.
    for &(t, r) in &scan.order {
        let run = &scan.tracks[t].runs[r];
        if run.windows(2).any(|w| w[0].offset + u64::from(w[0].size) != w[1].offset) {
            return Err(Mp4FileError::Malformed("trun with non-contiguous samples"));
        }
    }
    let payload: u64 = ranges.iter().map(|r| r.end - r.start).sum();
    let mdat_header: u64 = if payload + 8 <= u64::from(u32::MAX) { 8 } else { 16 };
    let co64 = ftyp.buf.len() as u64 + payload + mdat_header + 1024 * 1024 > u64::from(u32::MAX);
    // The moov's size does not depend on the offsets' values, so lay it out once with placeholders.
    let offsets_for = |data_start: u64| -> Vec<Vec<u64>> {
        let mut per_track: Vec<Vec<u64>> = vec![Vec::new(); scan.tracks.len()];
        let mut at = data_start;
        for (i, &(t, _)) in scan.order.iter().enumerate() {
            per_track[t].push(at);
            at += ranges[i].end - ranges[i].start;
        }
        per_track
    };
    let probe = moov(scan, &offsets_for(0), co64)?;
    let data_start = ftyp.buf.len() as u64 + probe.len() as u64 + mdat_header;
    let moov_bytes = moov(scan, &offsets_for(data_start), co64)?;
    let mut header = ftyp.buf;
    header.extend_from_slice(&moov_bytes);
    if mdat_header == 8 {
        header.extend_from_slice(&((payload + 8) as u32).to_be_bytes());
        header.extend_from_slice(b"mdat");
    } else {
        header.extend_from_slice(&1u32.to_be_bytes());
        header.extend_from_slice(b"mdat");
        header.extend_from_slice(&(payload + 16).to_be_bytes());
    }
    let duration_ms = scan
        .tracks
        .iter()
        .map(|t| track_duration(t).saturating_mul(1000) / u64::from(t.timescale.max(1)))
        .max()
        .unwrap_or(0);
    Ok(Layout { header, ranges, duration_ms })
}

/// The progressive file of a whole fragmented file held in memory (tests, small files).
pub fn defragment(data: &[u8]) -> Result<Vec<u8>, Mp4FileError> {
    let mut src = data;
    let s = scan(&mut src, data.len() as u64)?;
    let layout = progressive_layout(&s)?;
    let mut out = layout.header;
    for r in layout.ranges {
        out.extend_from_slice(&data[r.start as usize..r.end as usize]);
    }
    Ok(out)
}
