//! One keyframe to one JPEG with an ffmpeg child process.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use ferrocast_formats::av1::{BitReader, OBU_SEQUENCE_HEADER, OBU_TEMPORAL_DELIMITER, obus, sequence_header};
use ferrocast_formats::ts::{avc_param_sets, hevc_param_sets, length_prefixed_nals};
use ferrocast_media::codec::av1_sequence_header_dimensions;
use ferrocast_media::{Codec, Frame, MediaType, TrackInfo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::SnapshotError;
use crate::size::MAX_SIDE;

/// The most JPEG bytes read from ffmpeg; a picture of at most MAX_SIDE² at `-q:v 3` is far smaller.
const MAX_JPEG: u64 = 64 << 20;
/// How much of ffmpeg's standard error an error message carries (its end, where the reason is).
const STDERR_TAIL: usize = 1000;

/// Decodes one keyframe (plus the track's codec configuration) into a JPEG of `size` with an ffmpeg child
/// process, killed after `timeout`. H.264/H.265 go in as an Annex B elementary stream (parameter sets from the
/// configuration record unless the frame carries its own); AV1, VP9 and VP8 as a one-frame IVF file (AV1 with a
/// temporal delimiter and, when the frame lacks one, the sequence header of the `av1C` record).
pub async fn keyframe_to_jpeg(
    ffmpeg: &Path,
    track: &TrackInfo,
    keyframe: &Frame,
    size: (u32, u32),
    timeout: Duration,
) -> Result<Bytes, SnapshotError> {
    let (w, h) = size;
    if !(1..=MAX_SIDE).contains(&w) || !(1..=MAX_SIDE).contains(&h) {
        return Err(SnapshotError::BadSpec(format!("picture size {w}x{h} is outside 1..={MAX_SIDE}")));
    }
    let (format, input) = decoder_input(track, keyframe)?;
    let scale = format!("scale={w}:{h}");
    let mut cmd = Command::new(ffmpeg);
    // One thread: a single picture gains nothing from more, and jobs of many streams share a few cores.
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-threads", "1", "-f", format, "-i", "pipe:0"])
        .args(["-an", "-sn", "-filter_threads", "1"])
        .args(["-frames:v", "1", "-vf", &scale, "-pix_fmt", "yuvj420p", "-q:v", "3"])
        .args(["-f", "image2pipe", "-c:v", "mjpeg", "pipe:1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child =
        cmd.spawn().map_err(|source| SnapshotError::Spawn { path: ffmpeg.display().to_string(), source })?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(SnapshotError::Io(std::io::Error::other("ffmpeg's pipes were not set up")));
    };
    let work = async {
        let write = async move {
            let r = stdin.write_all(&input).await;
            // Closing stdin is what tells ffmpeg the stream is over.
            drop(stdin);
            match r {
                // ffmpeg may stop reading once it has its frame, or after an error it reports on stderr.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                r => r,
            }
        };
        let (written, jpeg, err) = tokio::join!(write, read_capped(stdout, MAX_JPEG), read_capped(stderr, 1 << 20));
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((written, jpeg?, err?, status))
    };
    let (written, jpeg, err, status) = match tokio::time::timeout(timeout, work).await {
        Ok(r) => r?,
        Err(_) => {
            // kill_on_drop would do it too, but only when `child` goes; reap it now.
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(SnapshotError::Timeout(timeout));
        }
    };
    let stderr = tail(&err);
    if !status.success() {
        return Err(SnapshotError::Ffmpeg { status: status.to_string(), stderr });
    }
    written?;
    if jpeg.len() < 4 || !jpeg.starts_with(&[0xff, 0xd8]) || !jpeg.ends_with(&[0xff, 0xd9]) {
        return Err(SnapshotError::NoPicture { len: jpeg.len(), stderr });
    }
    Ok(Bytes::from(jpeg))
}

async fn read_capped(r: impl AsyncRead + Unpin, cap: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    r.take(cap).read_to_end(&mut out).await?;
    Ok(out)
}

fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    let mut start = text.len().saturating_sub(STDERR_TAIL);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

/// The ffmpeg input format and bytes for one keyframe of `track`.
fn decoder_input(track: &TrackInfo, frame: &Frame) -> Result<(&'static str, Vec<u8>), SnapshotError> {
    if frame.media != MediaType::Video || track.media != MediaType::Video {
        return Err(SnapshotError::BadMedia("not a video frame".into()));
    }
    if frame.codec != track.codec {
        return Err(SnapshotError::BadMedia(format!(
            "a {} frame on a {} track",
            frame.codec.name(),
            track.codec.name()
        )));
    }
    let bad = |e: ferrocast_formats::ts::TsError| SnapshotError::BadMedia(format!("{}: {e}", frame.codec.name()));
    match frame.codec {
        Codec::H264 | Codec::H265 => {
            let h265 = frame.codec == Codec::H265;
            let mut nals = Vec::new();
            let mut has_params = false;
            for nal in length_prefixed_nals(&frame.data) {
                let nal = nal.map_err(bad)?;
                let Some(&hdr) = nal.first() else { continue };
                let t = if h265 { (hdr >> 1) & 0x3f } else { hdr & 0x1f };
                match (h265, t) {
                    // An access unit delimiter must come first; the parameter sets may be put before it.
                    (false, 9) | (true, 35) => continue,
                    (false, 7) | (true, 32 | 33) => has_params = true,
                    _ => {}
                }
                nals.push(nal);
            }
            if nals.is_empty() {
                return Err(SnapshotError::BadMedia(format!("empty {} frame", frame.codec.name())));
            }
            let mut out = Vec::with_capacity(frame.data.len() + track.config.len() + 64);
            if !has_params {
                let sets = if h265 { hevc_param_sets(&track.config) } else { avc_param_sets(&track.config) };
                out.extend_from_slice(&sets.map_err(bad)?);
            }
            for nal in nals {
                out.extend_from_slice(&[0, 0, 0, 1]);
                out.extend_from_slice(nal);
            }
            Ok((if h265 { "hevc" } else { "h264" }, out))
        }
        Codec::Av1 => Ok(("ivf", ivf(b"AV01", track, frame, &av1_temporal_unit(track, &frame.data)?))),
        Codec::Vp9 => Ok(("ivf", ivf(b"VP90", track, frame, &frame.data))),
        Codec::Vp8 => Ok(("ivf", ivf(b"VP80", track, frame, &frame.data))),
        other => Err(SnapshotError::Unsupported(other.name())),
    }
}

/// A one-frame IVF file.
fn ivf(fourcc: &[u8; 4], track: &TrackInfo, frame: &Frame, data: &[u8]) -> Vec<u8> {
    // The header's size is informative only (decoders read the bitstream's), but say what we know.
    let (w, h) = source_size(track, frame).unwrap_or((0, 0));
    let mut out = Vec::with_capacity(44 + data.len());
    out.extend_from_slice(b"DKIF");
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&32u16.to_le_bytes());
    out.extend_from_slice(fourcc);
    out.extend_from_slice(&(w.min(u32::from(u16::MAX)) as u16).to_le_bytes());
    out.extend_from_slice(&(h.min(u32::from(u16::MAX)) as u16).to_le_bytes());
    out.extend_from_slice(&1000u32.to_le_bytes()); // timebase denominator
    out.extend_from_slice(&1u32.to_le_bytes()); // numerator
    out.extend_from_slice(&1u32.to_le_bytes()); // frame count
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// The frame's OBUs as a decodable temporal unit: a temporal delimiter first, and the configuration record's
/// sequence header when the frame has none (RTMP and WebRTC senders usually leave both out).
fn av1_temporal_unit(track: &TrackInfo, data: &[u8]) -> Result<Vec<u8>, SnapshotError> {
    let units = obus(data).ok_or_else(|| SnapshotError::BadMedia("av1: malformed OBU sequence".into()))?;
    let td = units.first().filter(|(t, _)| *t == OBU_TEMPORAL_DELIMITER).map(|(_, o)| *o);
    let mut out = Vec::with_capacity(data.len() + track.config.len() + 2);
    if td.is_none() {
        out.extend_from_slice(&[OBU_TEMPORAL_DELIMITER << 3 | 0x02, 0]);
    }
    if !units.iter().any(|(t, _)| *t == OBU_SEQUENCE_HEADER) {
        // av1C: 4 fixed bytes, then configOBUs (low-overhead format).
        let config_obus = track.config.get(4..).unwrap_or_default();
        if sequence_header(config_obus).is_none() {
            return Err(SnapshotError::BadMedia("av1: no sequence header in the frame or the configuration".into()));
        }
        let (td, rest) = data.split_at(td.map_or(0, <[u8]>::len));
        out.extend_from_slice(td);
        out.extend_from_slice(config_obus);
        out.extend_from_slice(rest);
        return Ok(out);
    }
    out.extend_from_slice(data);
    Ok(out)
}

/// The picture size of a keyframe: from the track's parsed configuration, or else from the keyframe itself (AV1
/// sequence header, VP9 uncompressed header, VP8 key frame header). `None` when neither tells.
pub fn source_size(track: &TrackInfo, keyframe: &Frame) -> Option<(u32, u32)> {
    if let Some(v) = &track.video
        && v.width > 0
        && v.height > 0
    {
        return Some((v.width, v.height));
    }
    match keyframe.codec {
        Codec::Av1 => av1_sequence_header_dimensions(&keyframe.data).ok(),
        Codec::Vp9 => vp9_keyframe_size(&keyframe.data),
        Codec::Vp8 => vp8_keyframe_size(&keyframe.data),
        _ => None,
    }
}

/// Frame size from a VP9 key frame's uncompressed header (VP9 bitstream spec §6.2).
fn vp9_keyframe_size(data: &[u8]) -> Option<(u32, u32)> {
    let mut r = BitReader::new(data);
    if r.read(2)? != 2 {
        return None; // frame_marker
    }
    let low = r.read(1)?;
    let profile = (r.read(1)? << 1) | low;
    if profile == 3 {
        r.read(1)?;
    }
    if r.read(1)? == 1 || r.read(1)? != 0 {
        return None; // show_existing_frame, or not a key frame
    }
    r.read(2)?; // show_frame, error_resilient_mode
    if r.read(24)? != 0x49_83_42 {
        return None;
    }
    if profile >= 2 {
        r.read(1)?; // ten_or_twelve_bit
    }
    let color_space = r.read(3)?;
    if color_space != 7 {
        r.read(1)?; // color_range
        if profile == 1 || profile == 3 {
            r.read(3)?; // subsampling_x, subsampling_y, reserved_zero
        }
    } else if profile == 1 || profile == 3 {
        r.read(1)?;
    }
    Some((r.read(16)? + 1, r.read(16)? + 1))
}

/// Frame size from a VP8 key frame header (RFC 6386 §9.1).
fn vp8_keyframe_size(data: &[u8]) -> Option<(u32, u32)> {
    if data.len() < 10 || data[0] & 1 != 0 || data[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u32::from(u16::from_le_bytes([data[6], data[7]]) & 0x3fff);
    let h = u32::from(u16::from_le_bytes([data[8], data[9]]) & 0x3fff);
    (w > 0 && h > 0).then_some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(codec: Codec, data: &'static [u8]) -> Frame {
        Frame {
            media: MediaType::Video,
            codec,
            timebase: 1000,
            dts: 0,
            pts: 0,
            keyframe: true,
            data: Bytes::from_static(data),
        }
    }

    fn track(codec: Codec, config: &'static [u8]) -> TrackInfo {
        TrackInfo {
            media: MediaType::Video,
            codec,
            timebase: 1000,
            config: Bytes::from_static(config),
            video: None,
            audio: None,
        }
    }

    #[test]
    fn h264_gets_the_parameter_sets_of_the_record_in_annex_b() {
        // version 1, profile/compat/level, lengthSize, 1 SPS [67 42], 1 PPS [68 ce]
        let record = &[1, 0x42, 0, 0x1e, 0xff, 0xe1, 0, 2, 0x67, 0x42, 1, 0, 2, 0x68, 0xce];
        let idr = &[0, 0, 0, 2, 0x09, 0xf0, 0, 0, 0, 3, 0x65, 0x88, 0x80]; // AUD, IDR
        let (fmt, out) = decoder_input(&track(Codec::H264, record), &frame(Codec::H264, idr)).expect("converts");
        assert_eq!(fmt, "h264");
        assert_eq!(out, [0, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 1, 0x68, 0xce, 0, 0, 0, 1, 0x65, 0x88, 0x80], "AUD dropped");
        let with_own = &[0, 0, 0, 2, 0x67, 0x43, 0, 0, 0, 1, 0x65];
        let (_, out) = decoder_input(&track(Codec::H264, record), &frame(Codec::H264, with_own)).expect("ok");
        assert_eq!(out, [0, 0, 0, 1, 0x67, 0x43, 0, 0, 0, 1, 0x65], "the frame's own SPS; none inserted");
    }

    #[test]
    fn malformed_input_is_a_typed_error() {
        let record = &[1, 0x42, 0, 0x1e, 0xff, 0xe1, 0, 2, 0x67, 0x42, 1, 0, 2, 0x68, 0xce];
        let overrun = decoder_input(&track(Codec::H264, record), &frame(Codec::H264, &[0, 0, 0, 9, 0x65]));
        assert!(matches!(overrun, Err(SnapshotError::BadMedia(ref m)) if m.contains("overruns")), "{overrun:?}");
        let bad_record = decoder_input(&track(Codec::H265, &[7]), &frame(Codec::H265, &[0, 0, 0, 1, 0x26]));
        assert!(matches!(bad_record, Err(SnapshotError::BadMedia(_))), "{bad_record:?}");
        let mismatch = decoder_input(&track(Codec::H264, record), &frame(Codec::H265, &[0, 0, 0, 1, 0x26]));
        assert!(matches!(mismatch, Err(SnapshotError::BadMedia(ref m)) if m.contains("h265 frame on a h264")));
        let mut audio = frame(Codec::Aac, &[1]);
        audio.media = MediaType::Audio;
        assert!(matches!(decoder_input(&track(Codec::Aac, &[]), &audio), Err(SnapshotError::BadMedia(_))));
        let av1 = decoder_input(&track(Codec::Av1, &[0x81, 0, 0, 0]), &frame(Codec::Av1, &[0x32, 0x05, 1]));
        assert!(matches!(av1, Err(SnapshotError::BadMedia(_))), "OBU size overruns: {av1:?}");
    }

    #[test]
    fn av1_gets_a_temporal_delimiter_and_the_sequence_header() {
        // av1C header + a sequence header OBU (type 1, has_size, 2 payload bytes).
        let config = &[0x81, 0, 0, 0, 0x0a, 2, 0xaa, 0xbb];
        let frame_obu = &[0x32, 1, 0xcc]; // type 6 (frame), has_size, 1 byte
        let (fmt, out) = decoder_input(&track(Codec::Av1, config), &frame(Codec::Av1, frame_obu)).expect("ok");
        assert_eq!(fmt, "ivf");
        assert_eq!(&out[..4], b"DKIF");
        assert_eq!(&out[8..12], b"AV01");
        assert_eq!(u32::from_le_bytes([out[32], out[33], out[34], out[35]]) as usize, out.len() - 44);
        assert_eq!(&out[44..], &[0x12, 0, 0x0a, 2, 0xaa, 0xbb, 0x32, 1, 0xcc]);
    }

    #[test]
    fn vp8_and_vp9_sizes_come_from_the_keyframe() {
        let vp8 = &[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01];
        assert_eq!(source_size(&track(Codec::Vp8, &[]), &frame(Codec::Vp8, vp8)), Some((640, 360)));
        // profile 0 key frame: marker 10, profile 00, show_existing 0, type 0, show 1, er 0 → 0b1000_0010;
        // sync 49 83 42; color_space 000, range 0, then width-1 = 639, height-1 = 359.
        let mut bits: Vec<u8> = vec![0b1000_0010, 0x49, 0x83, 0x42];
        // 4 bits of color config (0000) then 16 + 16 bits of size.
        let size: u64 = (639u64 << 16) | 359;
        let packed = size << (64 - 4 - 32);
        bits.extend_from_slice(&packed.to_be_bytes()[..5]);
        let vp9: &'static [u8] = Box::leak(bits.into_boxed_slice());
        assert_eq!(source_size(&track(Codec::Vp9, &[]), &frame(Codec::Vp9, vp9)), Some((640, 360)));
        assert_eq!(source_size(&track(Codec::Vp9, &[]), &frame(Codec::Vp9, &[0x86])), None, "inter frame");
    }
}
