//! The access policy the ingest and playback doors ask, evaluated on an in-memory snapshot of the store that the
//! API refreshes after every modifying action.

use std::sync::{Arc, RwLock};

use ferrocast_hub::{AccessPolicy, AccessRequest, Denied, Direction, Protocol};

use crate::auth::{AuthKey, RefererRule, check_referer, verify_tx_secret};
use crate::store::{AuthKeyRow, DOMAIN_PLAY, DOMAIN_PUSH, Domain, RefererRow, Snapshot, Store, StoreError};

/// The current snapshot of the store, shared between the API (writer) and the policy (reader).
#[derive(Debug, Default)]
pub struct SnapshotCell {
    inner: RwLock<Arc<Snapshot>>,
}

impl SnapshotCell {
    /// A cell holding `snapshot`.
    pub fn new(snapshot: Snapshot) -> SnapshotCell {
        SnapshotCell { inner: RwLock::new(Arc::new(snapshot)) }
    }

    /// The current snapshot.
    pub fn get(&self) -> Arc<Snapshot> {
        match self.inner.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the snapshot.
    pub fn set(&self, snapshot: Snapshot) {
        let mut g = match self.inner.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *g = Arc::new(snapshot);
    }

    /// Re-reads the store.
    pub async fn refresh(&self, store: &Store) -> Result<(), StoreError> {
        self.set(store.snapshot().await?);
        Ok(())
    }
}

impl Snapshot {
    /// The domain named `name`.
    pub fn domain(&self, name: &str) -> Option<&Domain> {
        self.domains.iter().find(|d| d.name == name)
    }

    fn auth_key(&self, name: &str) -> AuthKey {
        self.auth_keys.iter().find(|k| k.domain == name).map(AuthKey::from).unwrap_or_default()
    }

    fn referer(&self, name: &str) -> RefererRule {
        self.referers.iter().find(|r| r.domain == name).map(RefererRule::from).unwrap_or_default()
    }

    /// The push domain whose streams a play domain plays: its binding, else the only push domain if there is
    /// exactly one.
    pub fn bound_push_domain(&self, play: &Domain) -> Option<String> {
        if let Some(p) = &play.push_domain {
            return Some(p.clone());
        }
        let mut pushes = self.domains.iter().filter(|d| d.kind == DOMAIN_PUSH);
        match (pushes.next(), pushes.next()) {
            (Some(only), None) => Some(only.name.clone()),
            _ => None,
        }
    }
}

impl From<&AuthKeyRow> for AuthKey {
    fn from(k: &AuthKeyRow) -> Self {
        AuthKey {
            enabled: k.enable != 0,
            master: k.master_key.clone(),
            backup: k.backup_key.clone(),
            auth_delta_secs: u64::try_from(k.auth_delta).unwrap_or(0),
        }
    }
}

impl From<&RefererRow> for RefererRule {
    fn from(r: &RefererRow) -> Self {
        RefererRule {
            enabled: r.enable != 0,
            allow_list: r.kind == 1,
            rules: RefererRule::parse_rules(&r.rules),
            allow_empty: r.allow_empty != 0,
        }
    }
}

/// The control plane's [`AccessPolicy`]:
/// - no domain configured → everything allowed (the open single-machine default);
/// - publish: to a push domain unless it is forbidden, with its push key checked (`txSecret`/`txTime`); to an
///   unknown domain only while no push domain exists;
/// - play by a play domain: refused if forbidden; its play key, and on HTTP playback its referer rule, applied;
/// - play by a push domain (how the doors key streams today): the rules of the play domain bound to it apply when
///   there is exactly one, otherwise it is open; play by an unknown domain is refused once domains exist.
pub struct ControlPolicy {
    snapshot: Arc<SnapshotCell>,
    clock: Box<dyn Fn() -> u64 + Send + Sync>,
}

impl ControlPolicy {
    /// A policy reading `snapshot`, with the system clock.
    pub fn new(snapshot: Arc<SnapshotCell>) -> ControlPolicy {
        ControlPolicy::with_clock(snapshot, || u64::try_from(crate::store::unix_now()).unwrap_or(0))
    }

    /// A policy with a custom clock (UNIX seconds), for tests.
    pub fn with_clock(snapshot: Arc<SnapshotCell>, clock: impl Fn() -> u64 + Send + Sync + 'static) -> ControlPolicy {
        ControlPolicy { snapshot, clock: Box::new(clock) }
    }

    /// Refuses a publish to a stream forbidden by ForbidLiveStream whose resume time has not passed.
    fn check_forbidden_stream(&self, snap: &Snapshot, req: &AccessRequest<'_>) -> Result<(), Denied> {
        let now = i64::try_from((self.clock)()).unwrap_or(i64::MAX);
        let k = req.key;
        let hit = snap
            .forbidden
            .iter()
            .any(|f| f.domain == k.domain && f.app == k.app && f.stream == k.stream && now < f.resume_at);
        if hit { Err(Denied::forbidden(format!("forbidden stream {k}"))) } else { Ok(()) }
    }

    fn check_play_domain(&self, snap: &Snapshot, d: &Domain, req: &AccessRequest<'_>) -> Result<(), Denied> {
        if d.status == 0 {
            return Err(Denied::forbidden(format!("forbidden domain {}", d.name)));
        }
        verify_tx_secret(&snap.auth_key(&d.name), &req.key.stream, req.params, (self.clock)())?;
        if matches!(req.protocol, Protocol::HttpFlv | Protocol::Hls | Protocol::Dash | Protocol::WebRtc) {
            check_referer(&snap.referer(&d.name), req.referer)?;
        }
        Ok(())
    }
}

impl AccessPolicy for ControlPolicy {
    fn check(&self, req: &AccessRequest<'_>) -> Result<(), Denied> {
        let snap = self.snapshot.get();
        if snap.domains.is_empty() {
            return match req.direction {
                Direction::Publish => self.check_forbidden_stream(&snap, req),
                Direction::Play => Ok(()),
            };
        }
        let name = req.key.domain.as_str();
        let domain = snap.domain(name);
        match req.direction {
            Direction::Publish => match domain {
                Some(d) if d.kind == DOMAIN_PUSH => {
                    if d.status == 0 {
                        return Err(Denied::forbidden(format!("forbidden domain {name}")));
                    }
                    self.check_forbidden_stream(&snap, req)?;
                    verify_tx_secret(&snap.auth_key(name), &req.key.stream, req.params, (self.clock)())?;
                    Ok(())
                }
                Some(_) => Err(Denied::unknown_domain(format!("{name} is not a push domain"))),
                None if snap.domains.iter().any(|d| d.kind == DOMAIN_PUSH) => {
                    Err(Denied::unknown_domain(format!("unknown domain {name}")))
                }
                None => self.check_forbidden_stream(&snap, req),
            },
            Direction::Play => match domain {
                Some(d) if d.kind == DOMAIN_PLAY => self.check_play_domain(&snap, d, req),
                Some(_) => {
                    let mut bound = snap
                        .domains
                        .iter()
                        .filter(|p| p.kind == DOMAIN_PLAY && snap.bound_push_domain(p).as_deref() == Some(name));
                    match (bound.next(), bound.next()) {
                        (Some(play), None) => self.check_play_domain(&snap, play, req),
                        _ => Ok(()),
                    }
                }
                None => Err(Denied::unknown_domain(format!("unknown domain {name}"))),
            },
        }
    }

    fn stream_domain(&self, requested: &str) -> Option<String> {
        let snap = self.snapshot.get();
        let play = snap.domain(requested).filter(|d| d.kind == DOMAIN_PLAY)?;
        snap.bound_push_domain(play)
    }

    fn stream_delay(&self, key: &ferrocast_hub::StreamKey) -> Option<std::time::Duration> {
        let snap = self.snapshot.get();
        let now = i64::try_from((self.clock)()).unwrap_or(i64::MAX);
        snap.delays
            .iter()
            .find(|d| d.domain == key.domain && d.app == key.app && d.stream == key.stream && now < d.expire_at)
            .map(|d| std::time::Duration::from_secs(d.delay_secs.clamp(0, ferrocast_hub::MAX_DELAY_SECS as i64) as u64))
    }
}

#[cfg(test)]
mod tests {
    use ferrocast_hub::{DenyKind, StreamKey};

    use super::*;
    use crate::auth::{Algorithm, sign_tx_secret};
    use crate::store::ForbiddenStream;

    const NOW: u64 = 1_700_000_000;

    fn domain(name: &str, kind: i64, push: Option<&str>) -> Domain {
        Domain {
            name: name.into(),
            kind,
            status: 1,
            play_type: 1,
            is_delay_live: 0,
            is_mini_program_live: 0,
            push_domain: push.map(str::to_string),
            target_cname: String::new(),
            created_at: 0,
        }
    }

    fn key(domain: &str, enable: i64, master: &str, backup: &str) -> AuthKeyRow {
        AuthKeyRow {
            domain: domain.into(),
            enable,
            master_key: master.into(),
            backup_key: backup.into(),
            auth_delta: 0,
        }
    }

    fn policy(snap: Snapshot) -> ControlPolicy {
        ControlPolicy::with_clock(Arc::new(SnapshotCell::new(snap)), || NOW)
    }

    fn ask(
        p: &ControlPolicy,
        direction: Direction,
        protocol: Protocol,
        domain: &str,
        params: &[(String, String)],
        referer: Option<&str>,
    ) -> Result<(), Denied> {
        let k = StreamKey::new(domain, "live", "s");
        p.check(&AccessRequest { direction, protocol, key: &k, params, client: None, referer })
    }

    fn signed(key: &str, tx_time: u64) -> Vec<(String, String)> {
        let t = format!("{tx_time:08X}");
        vec![("txSecret".into(), sign_tx_secret(key, "s", &t, Algorithm::Md5)), ("txTime".into(), t)]
    }

    #[test]
    fn delays_apply_until_they_expire() {
        let delay = |stream: &str, secs: i64, expire_at: u64| crate::store_delay::DelayedStream {
            domain: "push.com".into(),
            app: "live".into(),
            stream: stream.into(),
            delay_secs: secs,
            created_at: 0,
            expire_at: expire_at as i64,
        };
        let p =
            policy(Snapshot { delays: vec![delay("s", 30, NOW + 10), delay("old", 20, NOW)], ..Snapshot::default() });
        assert_eq!(p.stream_delay(&StreamKey::new("push.com", "live", "s")), Some(std::time::Duration::from_secs(30)));
        assert_eq!(p.stream_delay(&StreamKey::new("push.com", "live", "old")), None, "expired");
        assert_eq!(p.stream_delay(&StreamKey::new("push.com", "other", "s")), None);
    }

    #[test]
    fn no_domains_means_open() {
        let p = policy(Snapshot::default());
        assert_eq!(ask(&p, Direction::Publish, Protocol::Rtmp, "any.com", &[], None), Ok(()));
        assert_eq!(ask(&p, Direction::Play, Protocol::HttpFlv, "any.com", &[], None), Ok(()));
    }

    #[test]
    fn publish_rules() {
        let mut forbidden = domain("off.com", DOMAIN_PUSH, None);
        forbidden.status = 0;
        let snap = Snapshot {
            domains: vec![domain("push.com", DOMAIN_PUSH, None), forbidden],
            auth_keys: vec![key("push.com", 1, "master", "backup"), key("off.com", 0, "", "")],
            referers: vec![],
            forbidden: vec![],
            delays: vec![],
        };
        let p = policy(snap);
        let rtmp = Protocol::Rtmp;
        assert_eq!(ask(&p, Direction::Publish, rtmp, "push.com", &signed("master", NOW), None), Ok(()));
        assert_eq!(ask(&p, Direction::Publish, rtmp, "push.com", &signed("backup", NOW), None), Ok(()));
        let e = ask(&p, Direction::Publish, rtmp, "push.com", &signed("wrong", NOW), None).expect_err("wrong key");
        assert_eq!(e.kind, DenyKind::Unauthorized);
        let e = ask(&p, Direction::Publish, rtmp, "push.com", &signed("master", NOW - 1), None).expect_err("expired");
        assert!(e.reason.contains("expired"), "{e}");
        let e = ask(&p, Direction::Publish, rtmp, "push.com", &[], None).expect_err("unsigned");
        assert_eq!(e.kind, DenyKind::Unauthorized);
        let e = ask(&p, Direction::Publish, rtmp, "other.com", &[], None).expect_err("unknown");
        assert_eq!(e.kind, DenyKind::UnknownDomain);
        let e = ask(&p, Direction::Publish, rtmp, "off.com", &[], None).expect_err("forbidden");
        assert_eq!(e.kind, DenyKind::Forbidden);
    }

    #[test]
    fn play_rules() {
        let snap = Snapshot {
            domains: vec![domain("push.com", DOMAIN_PUSH, None), domain("play.com", DOMAIN_PLAY, Some("push.com"))],
            auth_keys: vec![key("push.com", 0, "", ""), key("play.com", 1, "pk", "")],
            referers: vec![RefererRow {
                domain: "play.com".into(),
                enable: 1,
                kind: 1,
                allow_empty: 0,
                rules: "good.com".into(),
            }],
            forbidden: vec![],
            delays: vec![],
        };
        let p = policy(snap);
        let ok = signed("pk", NOW);
        let flv = Protocol::HttpFlv;
        assert_eq!(ask(&p, Direction::Play, flv, "play.com", &ok, Some("http://good.com/x")), Ok(()));
        let e = ask(&p, Direction::Play, flv, "play.com", &ok, Some("http://bad.com/")).expect_err("referer");
        assert_eq!(e.kind, DenyKind::Forbidden);
        assert_eq!(ask(&p, Direction::Play, Protocol::Rtmp, "play.com", &ok, None), Ok(()), "no referer on RTMP");
        let e = ask(&p, Direction::Play, Protocol::Rtmp, "play.com", &[], None).expect_err("unsigned");
        assert_eq!(e.kind, DenyKind::Unauthorized);
        // Playing by the push domain applies the bound play domain's rules.
        let e = ask(&p, Direction::Play, Protocol::Rtmp, "push.com", &[], None).expect_err("by push domain");
        assert_eq!(e.kind, DenyKind::Unauthorized);
        assert_eq!(ask(&p, Direction::Play, Protocol::Rtmp, "push.com", &ok, None), Ok(()));
        let e = ask(&p, Direction::Play, flv, "nope.com", &ok, None).expect_err("unknown");
        assert_eq!(e.kind, DenyKind::UnknownDomain);
    }

    #[test]
    fn a_play_domain_plays_the_streams_of_its_push_domain() {
        let snap = Snapshot {
            domains: vec![
                domain("push.com", DOMAIN_PUSH, None),
                domain("push2.com", DOMAIN_PUSH, None),
                domain("play.com", DOMAIN_PLAY, Some("push.com")),
                domain("loose.com", DOMAIN_PLAY, None),
            ],
            auth_keys: vec![],
            referers: vec![],
            forbidden: vec![],
            delays: vec![],
        };
        let p = policy(snap);
        assert_eq!(p.stream_domain("play.com").as_deref(), Some("push.com"));
        assert_eq!(p.stream_domain("push.com"), None, "a push domain plays its own streams");
        assert_eq!(p.stream_domain("loose.com"), None, "unbound with two push domains: no mapping");
        assert_eq!(p.stream_domain("nope.com"), None);
    }

    #[test]
    fn forbidden_streams_are_refused_until_their_resume_time() {
        let forbid = |stream: &str, resume_at: i64| ForbiddenStream {
            domain: "push.com".into(),
            app: "live".into(),
            stream: stream.into(),
            reason: String::new(),
            forbidden_at: 0,
            resume_at,
        };
        let snap = Snapshot {
            domains: vec![domain("push.com", DOMAIN_PUSH, None)],
            auth_keys: vec![key("push.com", 0, "", "")],
            referers: vec![],
            forbidden: vec![forbid("s", NOW as i64 + 10)],
            delays: vec![],
        };
        let p = policy(snap);
        let e = ask(&p, Direction::Publish, Protocol::Rtmp, "push.com", &[], None).expect_err("forbidden");
        assert_eq!(e.kind, DenyKind::Forbidden);
        assert_eq!(ask(&p, Direction::Play, Protocol::Rtmp, "push.com", &[], None), Ok(()), "play is not refused");
        let expired = Snapshot { forbidden: vec![forbid("s", NOW as i64)], ..Snapshot::default() };
        let p = policy(Snapshot { domains: vec![domain("push.com", DOMAIN_PUSH, None)], ..expired });
        assert_eq!(ask(&p, Direction::Publish, Protocol::Rtmp, "push.com", &[], None), Ok(()), "resume time passed");
        let open = policy(Snapshot { forbidden: vec![forbid("s", NOW as i64 + 10)], ..Snapshot::default() });
        let e = ask(&open, Direction::Publish, Protocol::Rtmp, "push.com", &[], None).expect_err("no domains");
        assert_eq!(e.kind, DenyKind::Forbidden);
    }
}
