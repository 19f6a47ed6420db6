//! Live HLS, LL-HLS and DASH packaging.
//!
//! Every live stream gets one [`Package`], fed by one internal hub subscriber: frames are cut into segments and
//! parts once ([`segmenter`]), and each (variant, container) form of a segment, part or initialization segment is
//! muxed the first time a viewer asks and shared by all viewers after that. A package outlives its publisher by
//! `linger`, so a publisher that comes back continues the same playlist after an `EXT-X-DISCONTINUITY` instead of
//! restarting the media sequence.

pub mod package;
pub mod segmenter;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrocast_hub::{Batch, Hub, HubEvent, StreamKey};
use parking_lot::Mutex;
use tokio::sync::broadcast;

pub use package::{Container, Package, PackageError, Resource, Variant};
pub use segmenter::SegmenterConfig;

/// Packaging settings (`[hls]` in the server config).
#[derive(Debug, Clone)]
pub struct PackagerConfig {
    /// Segment and part targets.
    pub segmenter: SegmenterConfig,
    /// Segments listed in a playlist.
    pub window_segments: usize,
    /// Segments kept beyond the window for players that are a little behind.
    pub extra_segments: usize,
    /// fMP4 playlists carry the LL-HLS tags (parts, preload hints, blocking reload).
    pub low_latency: bool,
    /// How long a package outlives its publisher, waiting for a new one to continue it.
    pub linger: Duration,
    /// AES-128 encryption of TS segments for streams of these push domains (`*` for every domain).
    pub encrypt_domains: Vec<String>,
    /// A new key every this many segments.
    pub key_rotation_segments: u64,
    /// How segment and part files are named.
    pub naming: SegmentNaming,
}

/// The name of segment files: a template with `{seq}` (the media sequence number) and optionally `{app}` and
/// `{stream}`; `.ts`/`.m4s` is appended, and `.{part}` before `.m4s` for LL-HLS parts. Default `{seq}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentNaming {
    template: String,
}

impl Default for SegmentNaming {
    fn default() -> Self {
        SegmentNaming { template: "{seq}".to_string() }
    }
}

impl SegmentNaming {
    /// A naming from a template; it must hold `{seq}` exactly once and no `/ . ? # %` (they would make names
    /// ambiguous or leave the resource path).
    pub fn new(template: &str) -> Result<SegmentNaming, String> {
        if template.matches("{seq}").count() != 1 {
            return Err(format!("segment name {template:?} must contain {{seq}} exactly once"));
        }
        if template.contains(['/', '.', '?', '#', '%', '\\']) {
            return Err(format!("segment name {template:?} must not contain / . ? # % or \\"));
        }
        Ok(SegmentNaming { template: template.to_string() })
    }

    fn expanded(&self, app: &str, stream: &str) -> String {
        self.template.replace("{app}", app).replace("{stream}", stream)
    }

    /// The file stem of segment `seq` of a stream (`$Number$` for DASH templates).
    pub fn stem(&self, app: &str, stream: &str, seq: &str) -> String {
        self.expanded(app, stream).replace("{seq}", seq)
    }

    /// The sequence number named by a file stem, if it follows this naming.
    pub fn parse(&self, app: &str, stream: &str, stem: &str) -> Option<u64> {
        let expanded = self.expanded(app, stream);
        let (prefix, suffix) = expanded.split_once("{seq}")?;
        let digits = stem.strip_prefix(prefix)?.strip_suffix(suffix)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }
}

impl Default for PackagerConfig {
    fn default() -> Self {
        PackagerConfig {
            segmenter: SegmenterConfig { segment_target_ms: 2000, part_target_ms: 500 },
            window_segments: 6,
            extra_segments: 4,
            low_latency: true,
            linger: Duration::from_secs(30),
            encrypt_domains: Vec::new(),
            key_rotation_segments: 10,
            naming: SegmentNaming::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        let n = SegmentNaming::new("{stream}-{seq}-x").expect("valid");
        assert_eq!(n.stem("live", "cam", "12"), "cam-12-x");
        assert_eq!(n.parse("live", "cam", "cam-12-x"), Some(12));
        assert_eq!(n.parse("live", "cam", "cam--x"), None);
        assert_eq!(n.parse("live", "cam", "other-12-x"), None);
        assert_eq!(SegmentNaming::default().parse("a", "s", "7"), Some(7));
        assert!(SegmentNaming::new("seg").is_err());
        assert!(SegmentNaming::new("{seq}.{seq}").is_err());
        assert!(SegmentNaming::new("a/{seq}").is_err());
    }

    #[test]
    fn resources_are_named_by_the_naming() {
        let key = StreamKey::new("d.com", "live", "cam");
        let default = Package::new(key.clone(), Arc::new(PackagerConfig::default()), false);
        assert_eq!(default.resource("init-3.mp4"), Some(Resource::Init(3)));
        assert_eq!(default.resource("12.ts"), Some(Resource::Ts(12)));
        assert_eq!(default.resource("12.m4s"), Some(Resource::Segment(12)));
        assert_eq!(default.resource("12.3.m4s"), Some(Resource::Part(12, 3)));
        assert_eq!(default.resource("key-4.key"), Some(Resource::Key(4)));
        for bad in ["x.ts", "12.x.m4s", "../etc/passwd", "12.ts.m4s", ".m4s", "12..m4s"] {
            assert_eq!(default.resource(bad), None, "{bad}");
        }
        let naming = SegmentNaming::new("{stream}-{seq}").expect("valid");
        let named = Package::new(key, Arc::new(PackagerConfig { naming, ..PackagerConfig::default() }), false);
        assert_eq!(named.resource("cam-12.ts"), Some(Resource::Ts(12)));
        assert_eq!(named.resource("cam-12.3.m4s"), Some(Resource::Part(12, 3)));
        assert_eq!(named.resource("12.ts"), None);
    }
}

impl PackagerConfig {
    fn encrypts(&self, domain: &str) -> bool {
        self.encrypt_domains.iter().any(|d| d == "*" || d.eq_ignore_ascii_case(domain))
    }
}

/// The packages of every live stream.
#[derive(Clone)]
pub struct Packager {
    inner: Arc<Inner>,
}

struct Inner {
    hub: Hub,
    config: Arc<PackagerConfig>,
    packages: Mutex<HashMap<StreamKey, Entry>>,
}

#[derive(Debug)]
struct Entry {
    package: Arc<Package>,
    /// Bumped by every new publisher; a feeder that ends removes the package only if no newer one took over.
    epoch: u64,
}

fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl std::fmt::Debug for Packager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packager").field("packages", &self.inner.packages.lock().len()).finish()
    }
}

impl Packager {
    /// Starts packaging every stream published on `hub` from now on (and the ones live already).
    pub fn start(hub: Hub, config: PackagerConfig) -> Packager {
        let packager = Packager {
            inner: Arc::new(Inner { hub: hub.clone(), config: Arc::new(config), packages: Mutex::new(HashMap::new()) }),
        };
        let events = hub.events();
        for s in hub.streams() {
            packager.on_published(s.key);
        }
        let me = packager.clone();
        tokio::spawn(async move { me.listen(events).await });
        packager
    }

    /// The package of a stream, while it is live or lingering.
    pub fn get(&self, key: &StreamKey) -> Option<Arc<Package>> {
        self.inner.packages.lock().get(key).map(|e| e.package.clone())
    }

    /// The configuration.
    pub fn config(&self) -> &PackagerConfig {
        &self.inner.config
    }

    async fn listen(self, mut events: broadcast::Receiver<HubEvent>) {
        loop {
            match events.recv().await {
                Ok(HubEvent::Published { key, resumed: false, .. }) => self.on_published(key),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "packager: hub events lagged; catching up from the registry");
                    for s in self.inner.hub.streams() {
                        let known = self.inner.packages.lock().get(&s.key).is_some_and(|e| e.package.live());
                        if !known {
                            self.on_published(s.key);
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    fn on_published(&self, key: StreamKey) {
        let sub = match self.inner.hub.subscribe_internal(&key) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(stream = %key, error = %e, "packager: stream ended before packaging started");
                return;
            }
        };
        let (package, epoch) = {
            let mut packages = self.inner.packages.lock();
            let entry = packages.entry(key.clone()).or_insert_with(|| Entry {
                package: Arc::new(Package::new(
                    key.clone(),
                    self.inner.config.clone(),
                    self.inner.config.encrypts(&key.domain),
                )),
                epoch: 0,
            });
            entry.epoch += 1;
            if entry.epoch > 1 {
                // A new publisher continues the lingering package on a new timeline.
                entry.package.feed(wall_ms(), |s| s.new_timeline());
                entry.package.set_live(true);
            }
            (entry.package.clone(), entry.epoch)
        };
        tracing::debug!(stream = %key, "packager: packaging started");
        let me = self.clone();
        tokio::spawn(async move { me.feed(sub, package, epoch).await });
    }

    async fn feed(self, mut sub: ferrocast_hub::Subscriber, package: Arc<Package>, epoch: u64) {
        let start = sub.start_tracks().clone();
        package.feed(wall_ms(), |s| s.set_tracks(start.video.clone(), start.audio.clone()));
        let mut batch = Vec::with_capacity(64);
        loop {
            batch.clear();
            match sub.next_batch(&mut batch, 64).await {
                Batch::Ended => break,
                Batch::Entries { .. } => {}
            }
            let now = wall_ms();
            package.feed(now, |s| batch.iter().flat_map(|entry| s.push_entry(&entry.kind, now)).collect());
        }
        package.feed(wall_ms(), |s| s.flush());
        package.set_live(false);
        tracing::debug!(stream = %package.key, "packager: publisher gone; lingering");
        tokio::time::sleep(self.inner.config.linger).await;
        let mut packages = self.inner.packages.lock();
        if packages.get(&package.key).is_some_and(|e| e.epoch == epoch) {
            packages.remove(&package.key);
            tracing::debug!(stream = %package.key, "packager: package removed");
        }
    }
}
