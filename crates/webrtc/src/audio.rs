//! The audio bridge codecs: AAC → Opus (FDK AAC decoder, libopus encoder) for WebRTC viewers of RTMP/SRT
//! streams, and Opus → AAC (libopus decoder, FDK AAC encoder) for RTMP/FLV/HLS viewers of WHIP streams.
//!
//! Both work on interleaved 16-bit stereo PCM at 48 kHz (mono is duplicated; other rates are resampled with a
//! linear interpolator). Output timestamps are in 48 kHz units, anchored on the input timestamps and re-anchored
//! when the input jumps by more than 100 ms, so A/V sync follows the source.

use std::collections::VecDeque;

use bytes::Bytes;
use ferrocast_media::{Codec, Frame, MediaType, rescale};

/// The WebRTC audio clock and the rate both bridges work at.
pub const RATE: u32 = 48_000;
/// Samples per channel of one Opus packet we produce (20 ms).
const OPUS_FRAME: usize = 960;
/// Samples per channel of one AAC-LC frame.
const AAC_FRAME: usize = 1024;
/// Input timestamp jumps larger than this (48 kHz units, 100 ms) re-anchor the output timeline.
const RESYNC: i64 = 4_800;

/// Why a transcoder could not be built or could not process a frame.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The AAC decoder refused the configuration or a frame.
    #[error("aac decoder: {0}")]
    AacDecode(String),
    /// The AAC encoder failed.
    #[error("aac encoder: {0}")]
    AacEncode(String),
    /// libopus failed.
    #[error("opus: {0}")]
    Opus(#[from] opus::Error),
}

/// Linear-interpolation resampler for interleaved stereo `i16`, keeping its phase across calls.
#[derive(Debug)]
struct Resampler {
    /// Input samples per output sample.
    step: f64,
    /// Position of the next output sample, in input samples relative to `last`.
    pos: f64,
    /// The last input frame of the previous call.
    last: [i16; 2],
}

impl Resampler {
    fn new(from: u32) -> Resampler {
        Resampler { step: from as f64 / RATE as f64, pos: 1.0, last: [0, 0] }
    }

    fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        if (self.step - 1.0).abs() < f64::EPSILON {
            out.extend_from_slice(input);
            return;
        }
        let frames = input.len() / 2;
        // Sample k of the virtual signal: k = 0 is `last`, k >= 1 is input[k - 1].
        let at =
            |k: usize, c: usize| -> f64 { if k == 0 { self.last[c] as f64 } else { input[(k - 1) * 2 + c] as f64 } };
        while self.pos < frames as f64 {
            let k = self.pos.floor() as usize;
            let frac = self.pos - k as f64;
            for c in 0..2 {
                let v = at(k, c) * (1.0 - frac) + at(k + 1, c) * frac;
                out.push(v.round().clamp(i16::MIN as f64, i16::MAX as f64) as i16);
            }
            self.pos += self.step;
        }
        if frames > 0 {
            self.last = [input[(frames - 1) * 2], input[(frames - 1) * 2 + 1]];
            self.pos -= frames as f64;
        }
    }
}

/// PCM waiting to be encoded, with the timestamp of its first sample.
#[derive(Debug, Default)]
struct PcmQueue {
    samples: Vec<i16>,
    start: Option<i64>,
}

impl PcmQueue {
    /// Places decoded PCM whose first sample is at `pts` (48 kHz units), re-anchoring on a jump.
    fn anchor(&mut self, pts: i64) {
        let expected = self.start.map(|s| s + (self.samples.len() / 2) as i64);
        match expected {
            Some(e) if (e - pts).abs() <= RESYNC => {}
            _ => {
                self.samples.clear();
                self.start = Some(pts);
            }
        }
    }

    /// Takes `n` frames (per channel) when available, with their timestamp.
    fn take(&mut self, n: usize) -> Option<(Vec<i16>, i64)> {
        if self.samples.len() < n * 2 {
            return None;
        }
        let start = self.start?;
        let rest = self.samples.split_off(n * 2);
        let chunk = std::mem::replace(&mut self.samples, rest);
        self.start = Some(start + n as i64);
        Some((chunk, start))
    }
}

/// Decodes AAC (raw frames + AudioSpecificConfig) and encodes 20 ms Opus packets.
pub struct AacToOpus {
    decoder: fdk_aac::dec::Decoder,
    encoder: opus::Encoder,
    resampler: Option<Resampler>,
    queue: PcmQueue,
    pcm: Vec<i16>,
    resampled: Vec<i16>,
    out: Vec<u8>,
}

impl AacToOpus {
    /// A transcoder for the AAC track with this AudioSpecificConfig.
    pub fn new(asc: &[u8]) -> Result<AacToOpus, AudioError> {
        let mut decoder = fdk_aac::dec::Decoder::new(fdk_aac::dec::Transport::Raw);
        decoder.config_raw(asc).map_err(|e| AudioError::AacDecode(e.message().to_string()))?;
        let _ = decoder.set_min_output_channels(2);
        let _ = decoder.set_max_output_channels(2);
        let mut encoder = opus::Encoder::new(RATE, opus::Channels::Stereo, opus::Application::Audio)?;
        encoder.set_bitrate(opus::Bitrate::Bits(96_000))?;
        Ok(AacToOpus {
            decoder,
            encoder,
            resampler: None,
            queue: PcmQueue::default(),
            pcm: vec![0; 8192],
            resampled: Vec::with_capacity(8192),
            out: vec![0; 4000],
        })
    }

    /// Transcodes one AAC frame; returns the Opus packets completed by it (timebase 48 kHz).
    pub fn push(&mut self, frame: &Frame) -> Result<Vec<Frame>, AudioError> {
        self.decoder.fill(&frame.data).map_err(|e| AudioError::AacDecode(e.message().to_string()))?;
        self.decoder.decode_frame(&mut self.pcm).map_err(|e| AudioError::AacDecode(e.message().to_string()))?;
        let info = self.decoder.stream_info();
        let (rate, channels, size) = (info.sampleRate.max(1) as u32, info.numChannels.max(1) as usize, info.frameSize);
        let n = (size.max(0) as usize * channels).min(self.pcm.len());
        let stereo: Vec<i16> = if channels == 1 {
            self.pcm[..n].iter().flat_map(|&s| [s, s]).collect()
        } else {
            self.pcm[..n].chunks_exact(channels).flat_map(|c| [c[0], c[1]]).collect()
        };
        let resampler = self.resampler.get_or_insert_with(|| Resampler::new(rate));
        self.resampled.clear();
        resampler.process(&stereo, &mut self.resampled);
        self.queue.anchor(rescale(frame.pts, frame.timebase, RATE));
        self.queue.samples.extend_from_slice(&self.resampled);
        let mut packets = Vec::new();
        while let Some((pcm, pts)) = self.queue.take(OPUS_FRAME) {
            let len = self.encoder.encode(&pcm, &mut self.out)?;
            packets.push(Frame {
                media: MediaType::Audio,
                codec: Codec::Opus,
                timebase: RATE,
                dts: pts,
                pts,
                keyframe: true,
                data: Bytes::copy_from_slice(&self.out[..len]),
            });
        }
        Ok(packets)
    }
}

/// Decodes Opus packets and encodes AAC-LC (48 kHz stereo, 128 kbit/s).
pub struct OpusToAac {
    decoder: opus::Decoder,
    encoder: fdk_aac::enc::Encoder,
    config: Bytes,
    queue: PcmQueue,
    /// Timestamps of the PCM blocks handed to the encoder, popped as access units come out (encoder delay).
    pending: VecDeque<i64>,
    pcm: Vec<i16>,
    out: Vec<u8>,
}

impl OpusToAac {
    /// A transcoder for a 48 kHz Opus track.
    pub fn new() -> Result<OpusToAac, AudioError> {
        let decoder = opus::Decoder::new(RATE, opus::Channels::Stereo)?;
        let encoder = fdk_aac::enc::Encoder::new(fdk_aac::enc::EncoderParams {
            bit_rate: fdk_aac::enc::BitRate::Cbr(128_000),
            sample_rate: RATE,
            transport: fdk_aac::enc::Transport::Raw,
            channels: fdk_aac::enc::ChannelMode::Stereo,
            audio_object_type: fdk_aac::enc::AudioObjectType::Mpeg4LowComplexity,
        })
        .map_err(|e| AudioError::AacEncode(format!("{e:?}")))?;
        let info = encoder.info().map_err(|e| AudioError::AacEncode(format!("{e:?}")))?;
        let size = (info.confSize as usize).min(info.confBuf.len());
        let config = Bytes::copy_from_slice(&info.confBuf[..size]);
        Ok(OpusToAac {
            decoder,
            encoder,
            config,
            queue: PcmQueue::default(),
            pending: VecDeque::new(),
            pcm: vec![0; 5760 * 2],
            out: vec![0; 8192],
        })
    }

    /// The AudioSpecificConfig of the AAC output.
    pub fn config(&self) -> Bytes {
        self.config.clone()
    }

    /// Transcodes one Opus packet; returns the AAC frames completed by it (timebase 48 kHz).
    pub fn push(&mut self, frame: &Frame) -> Result<Vec<Frame>, AudioError> {
        let n = self.decoder.decode(&frame.data, &mut self.pcm, false)?;
        self.queue.anchor(rescale(frame.pts, frame.timebase, RATE));
        self.queue.samples.extend_from_slice(&self.pcm[..n * 2]);
        let mut frames = Vec::new();
        while let Some((pcm, pts)) = self.queue.take(AAC_FRAME) {
            self.pending.push_back(pts);
            let info = self.encoder.encode(&pcm, &mut self.out).map_err(|e| AudioError::AacEncode(format!("{e:?}")))?;
            if info.output_size > 0 {
                let pts = self.pending.pop_front().unwrap_or(pts);
                frames.push(Frame {
                    media: MediaType::Audio,
                    codec: Codec::Aac,
                    timebase: RATE,
                    dts: pts,
                    pts,
                    keyframe: true,
                    data: Bytes::copy_from_slice(&self.out[..info.output_size]),
                });
            }
        }
        Ok(frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, n: usize, offset: usize) -> Vec<i16> {
        (0..n)
            .flat_map(|i| {
                let t = (i + offset) as f64 / rate as f64;
                let v = ((t * 440.0 * std::f64::consts::TAU).sin() * 8000.0) as i16;
                [v, v]
            })
            .collect()
    }

    #[test]
    fn opus_to_aac_to_opus_round_trip() {
        let mut enc = opus::Encoder::new(RATE, opus::Channels::Stereo, opus::Application::Audio).unwrap();
        let mut to_aac = OpusToAac::new().unwrap();
        assert!(!to_aac.config().is_empty());
        let mut aac = Vec::new();
        let mut buf = vec![0u8; 4000];
        for i in 0..50 {
            let pcm = tone(RATE, 960, i * 960);
            let len = enc.encode(&pcm, &mut buf).unwrap();
            let pts = (i * 960) as i64;
            let f = Frame {
                media: MediaType::Audio,
                codec: Codec::Opus,
                timebase: RATE,
                dts: pts,
                pts,
                keyframe: true,
                data: Bytes::copy_from_slice(&buf[..len]),
            };
            aac.extend(to_aac.push(&f).unwrap());
        }
        // 1 s of audio: ~46 AAC frames, minus the encoder's delay.
        assert!(aac.len() >= 40, "{} aac frames", aac.len());
        assert!(aac.windows(2).all(|w| w[1].pts - w[0].pts == 1024));
        let mut to_opus = AacToOpus::new(&to_aac.config()).unwrap();
        let mut opus_out = Vec::new();
        for f in &aac {
            opus_out.extend(to_opus.push(f).unwrap());
        }
        assert!(opus_out.len() >= 40, "{} opus packets", opus_out.len());
        assert!(opus_out.windows(2).all(|w| w[1].pts - w[0].pts == 960));
    }

    #[test]
    fn resampler_converts_44100_to_48000() {
        let mut r = Resampler::new(44_100);
        let mut out = Vec::new();
        for i in 0..10 {
            r.process(&tone(44_100, 4410, i * 4410), &mut out);
        }
        let frames = out.len() / 2;
        assert!((47_990..=48_010).contains(&frames), "{frames}");
    }

    #[test]
    fn garbage_aac_is_an_error_not_a_panic() {
        // AAC-LC 44.1 kHz stereo.
        let mut t = AacToOpus::new(&[0x12, 0x10]).unwrap();
        let f = Frame {
            media: MediaType::Audio,
            codec: Codec::Aac,
            timebase: 1000,
            dts: 0,
            pts: 0,
            keyframe: true,
            data: Bytes::from_static(&[0xff; 3]),
        };
        let _ = t.push(&f);
    }
}
