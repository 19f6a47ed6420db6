//! CPU cost of the audio bridge per stream: transcodes 60 s of a 44.1 kHz stereo AAC-LC tone to Opus (the
//! AAC → Opus bridge every WHEP-watched RTMP stream runs once) and 60 s of 48 kHz Opus to AAC (the Opus → AAC
//! bridge of every WHIP stream), and prints the CPU time per second of audio.
//!
//! `cargo run --release -p ferrocast-webrtc --example bridge_cost`

use std::time::Instant;

use bytes::Bytes;
use ferrocast_media::{Codec, Frame, MediaType};
use ferrocast_webrtc::audio::{AacToOpus, OpusToAac};

const SECONDS: usize = 60;

fn tone(rate: u32, n: usize, offset: usize) -> Vec<i16> {
    (0..n)
        .flat_map(|i| {
            let t = (i + offset) as f64 / rate as f64;
            let l = ((t * 440.0 * std::f64::consts::TAU).sin() * 8000.0) as i16;
            let r = ((t * 660.0 * std::f64::consts::TAU).sin() * 8000.0) as i16;
            [l, r]
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 48 kHz Opus input, as a WHIP publisher sends it.
    let mut enc = opus::Encoder::new(48_000, opus::Channels::Stereo, opus::Application::Audio)?;
    let mut buf = vec![0u8; 4000];
    let mut opus_in = Vec::new();
    for i in 0..SECONDS * 50 {
        let n = enc.encode(&tone(48_000, 960, i * 960), &mut buf)?;
        let pts = (i * 960) as i64;
        opus_in.push(Frame {
            media: MediaType::Audio,
            codec: Codec::Opus,
            timebase: 48_000,
            dts: pts,
            pts,
            keyframe: true,
            data: Bytes::copy_from_slice(&buf[..n]),
        });
    }
    let t = Instant::now();
    let mut to_aac = OpusToAac::new()?;
    let mut aac = Vec::new();
    for f in &opus_in {
        aac.extend(to_aac.push(f)?);
    }
    let opus_to_aac = t.elapsed();

    // 44.1 kHz AAC input, as an RTMP publisher (ffmpeg's default) sends it: made with FDK at 44.1 kHz.
    let aac44 = {
        let e = fdk_aac::enc::Encoder::new(fdk_aac::enc::EncoderParams {
            bit_rate: fdk_aac::enc::BitRate::Cbr(128_000),
            sample_rate: 44_100,
            transport: fdk_aac::enc::Transport::Raw,
            channels: fdk_aac::enc::ChannelMode::Stereo,
            audio_object_type: fdk_aac::enc::AudioObjectType::Mpeg4LowComplexity,
        })
        .map_err(|e| format!("{e:?}"))?;
        let info = e.info().map_err(|e| format!("{e:?}"))?;
        let asc = info.confBuf[..info.confSize as usize].to_vec();
        let mut out = vec![0u8; 8192];
        let mut frames = Vec::new();
        for i in 0..SECONDS * 44_100 / 1024 {
            let r = e.encode(&tone(44_100, 1024, i * 1024), &mut out).map_err(|e| format!("{e:?}"))?;
            if r.output_size > 0 {
                let pts = (frames.len() * 1024) as i64;
                frames.push(Frame {
                    media: MediaType::Audio,
                    codec: Codec::Aac,
                    timebase: 44_100,
                    dts: pts,
                    pts,
                    keyframe: true,
                    data: Bytes::copy_from_slice(&out[..r.output_size]),
                });
            }
        }
        (asc, frames)
    };
    let t = Instant::now();
    let mut to_opus = AacToOpus::new(&aac44.0)?;
    let mut packets = 0;
    for f in &aac44.1 {
        packets += to_opus.push(f)?.len();
    }
    let aac_to_opus = t.elapsed();

    let per_sec = |d: std::time::Duration| d.as_secs_f64() * 1000.0 / SECONDS as f64;
    println!(
        "aac->opus (44.1 kHz stereo AAC-LC -> 48 kHz Opus 96 kbit/s): {:.2} ms CPU per second of audio ({:.2}% of a core per stream), {} packets",
        per_sec(aac_to_opus),
        per_sec(aac_to_opus) / 10.0,
        packets
    );
    println!(
        "opus->aac (48 kHz Opus -> AAC-LC 128 kbit/s): {:.2} ms CPU per second of audio ({:.2}% of a core per stream), {} frames",
        per_sec(opus_to_aac),
        per_sec(opus_to_aac) / 10.0,
        aac.len()
    );
    Ok(())
}
