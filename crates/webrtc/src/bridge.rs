//! The AAC → Opus bridge: one task per stream with WHEP viewers and AAC audio, transcoding once and feeding
//! every viewer of the stream through an [`OpusFeed`].

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use ferrocast_hub::{Batch, EntryKind, Hub, Protocol, StreamKey, SubscriberOptions};
use ferrocast_media::{Codec, MediaType};

use crate::OpusFeed;
use crate::audio::AacToOpus;

/// Starts a bridge for `key`; `None` when the stream is not live.
pub(crate) fn start(hub: &Hub, key: &StreamKey) -> Option<Arc<OpusFeed>> {
    let options = SubscriberOptions { gop_cache: Some(true), internal: true };
    let mut sub = hub.subscribe(key, Protocol::WebRtc, None, options).ok()?;
    let feed = OpusFeed::new();
    let weak = Arc::downgrade(&feed);
    let hub = hub.clone();
    let key = key.clone();
    tokio::spawn(async move {
        let metrics = hub.metrics().clone();
        metrics.audio_transcoders.fetch_add(1, Ordering::Relaxed);
        tracing::info!(stream = %key, "aac to opus bridge started");
        let mut transcoder: Option<(bytes::Bytes, AacToOpus)> = None;
        if let Some(t) = sub.start_tracks().audio.as_ref().filter(|t| t.codec == Codec::Aac) {
            transcoder = AacToOpus::new(&t.config).ok().map(|x| (t.config.clone(), x));
        }
        let mut batch = Vec::new();
        let mut frames_out = 0u64;
        'run: loop {
            batch.clear();
            if let Batch::Ended = sub.next_batch(&mut batch, 64).await {
                break;
            }
            let Some(feed) = Weak::upgrade(&weak) else {
                break;
            };
            for entry in &batch {
                match &entry.kind {
                    EntryKind::Track(t) if t.media == MediaType::Audio => {
                        if t.codec != Codec::Aac {
                            transcoder = None;
                        } else if transcoder.as_ref().is_none_or(|(c, _)| *c != t.config) {
                            match AacToOpus::new(&t.config) {
                                Ok(x) => transcoder = Some((t.config.clone(), x)),
                                Err(e) => {
                                    tracing::warn!(stream = %key, error = %e, "aac to opus bridge: bad AAC configuration");
                                    transcoder = None;
                                }
                            }
                        }
                    }
                    EntryKind::Frame(f) if f.media == MediaType::Audio && f.codec == Codec::Aac => {
                        let Some((_, t)) = transcoder.as_mut() else { continue };
                        match t.push(f) {
                            Ok(packets) => {
                                for p in packets {
                                    frames_out += 1;
                                    if feed.tx.send(p).is_err() && feed.tx.receiver_count() == 0 {
                                        // Nobody is listening right now; viewers may still be connecting.
                                    }
                                }
                            }
                            Err(e) => {
                                metrics.audio_transcode_errors.fetch_add(1, Ordering::Relaxed);
                                tracing::debug!(stream = %key, error = %e, "aac to opus bridge: frame skipped");
                            }
                        }
                    }
                    _ => {}
                }
            }
            drop(feed);
            if weak.strong_count() == 0 {
                break 'run;
            }
        }
        metrics.audio_transcoders.fetch_sub(1, Ordering::Relaxed);
        tracing::info!(stream = %key, opus_packets = frames_out, "aac to opus bridge stopped");
    });
    Some(feed)
}
