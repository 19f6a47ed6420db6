//! Viewer counts for sessionless protocols (HLS, DASH): a player is one (stream, protocol, client IP, User-Agent)
//! that requested a playlist, segment or part within the last `idle` period. The counts go to the stream's
//! viewer figure (online lists, DescribeStreamPlayInfoList samples) and to the per-protocol viewers gauge.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ferrocast_hub::{Hub, Protocol, StreamKey};
use parking_lot::Mutex;

/// How long after its last request a player still counts.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(15);

type Player = (IpAddr, u64);
/// Players by (stream, protocol), with when each was last seen.
type Players = HashMap<(StreamKey, Protocol), HashMap<Player, Instant>>;

/// The players of sessionless protocols, by stream and protocol.
#[derive(Clone, Default)]
pub struct SessionTracker {
    inner: Arc<Mutex<Players>>,
}

impl std::fmt::Debug for SessionTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTracker").field("streams", &self.inner.lock().len()).finish()
    }
}

impl SessionTracker {
    /// A tracker whose counts are published to `hub` every second, players expiring after `idle`.
    pub fn start(hub: Hub, idle: Duration) -> SessionTracker {
        let tracker = SessionTracker::default();
        let me = tracker.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                me.publish(&hub, Instant::now(), idle);
            }
        });
        tracker
    }

    /// Notes a request of a player.
    pub fn touch(&self, key: &StreamKey, protocol: Protocol, ip: IpAddr, user_agent: &str) {
        let mut h = DefaultHasher::new();
        user_agent.hash(&mut h);
        let mut inner = self.inner.lock();
        inner.entry((key.clone(), protocol)).or_default().insert((ip, h.finish()), Instant::now());
    }

    /// Drops idle players and writes the counts to the hub; returns (stream, protocol) counts.
    pub(crate) fn publish(&self, hub: &Hub, now: Instant, idle: Duration) -> HashMap<(StreamKey, Protocol), usize> {
        let counts: HashMap<(StreamKey, Protocol), usize> = {
            let mut inner = self.inner.lock();
            inner.retain(|_, players| {
                players.retain(|_, seen| now.duration_since(*seen) < idle);
                !players.is_empty()
            });
            inner.iter().map(|(k, players)| (k.clone(), players.len())).collect()
        };
        let mut per_stream: HashMap<&StreamKey, usize> = HashMap::new();
        let mut per_protocol: HashMap<Protocol, usize> = HashMap::new();
        for ((key, protocol), n) in &counts {
            *per_stream.entry(key).or_default() += n;
            *per_protocol.entry(*protocol).or_default() += n;
        }
        for s in hub.streams() {
            hub.set_sessionless_viewers(&s.key, per_stream.get(&s.key).copied().unwrap_or(0));
        }
        for protocol in [Protocol::Hls, Protocol::Dash] {
            let n = per_protocol.get(&protocol).copied().unwrap_or(0);
            hub.metrics().protocol(protocol).viewers.store(n as i64, Ordering::Relaxed);
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrocast_hub::{HubConfig, Metrics, PublishRequest};

    #[tokio::test]
    async fn players_count_until_they_go_idle() {
        let hub = Hub::new(HubConfig::default(), Arc::new(Metrics::default()));
        let key = StreamKey::new("d.com", "live", "s");
        let _p = hub
            .publish(PublishRequest {
                key: key.clone(),
                protocol: Protocol::Rtmp,
                client: None,
                server: None,
                params: vec![],
            })
            .expect("publish");
        let t = SessionTracker::default();
        let ip: IpAddr = [10, 0, 0, 1].into();
        t.touch(&key, Protocol::Hls, ip, "hls.js");
        t.touch(&key, Protocol::Hls, ip, "hls.js");
        t.touch(&key, Protocol::Hls, ip, "Safari");
        t.touch(&key, Protocol::Dash, [10, 0, 0, 2].into(), "dash.js");
        let counts = t.publish(&hub, Instant::now(), Duration::from_secs(15));
        assert_eq!(counts.get(&(key.clone(), Protocol::Hls)), Some(&2));
        assert_eq!(hub.stream(&key).expect("live").viewers, 3);
        assert_eq!(hub.metrics().protocol(Protocol::Dash).viewers.load(Ordering::Relaxed), 1);
        let later = Instant::now() + Duration::from_secs(16);
        assert!(t.publish(&hub, later, Duration::from_secs(15)).is_empty());
        assert_eq!(hub.stream(&key).expect("live").viewers, 0);
    }
}
