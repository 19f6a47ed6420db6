//! `ferrocast url push|play`: prints signed push or play addresses for a stream (control-plane brief §5), with the
//! domain's key read from the store. `txTime` = 8 uppercase hex digits of `now + --expire`; `txSecret` =
//! MD5 (SHA-256 with `--sha256`) of `KEY + N + txTime`, `N` = the stream name, or `S_T` with `--template T`.

use std::fmt::Write as _;
use std::path::Path;

use clap::{Args, ValueEnum};
use ferrocast_control::auth::{Algorithm, sign_tx_secret};
use ferrocast_control::store::{DOMAIN_PLAY, DOMAIN_PUSH, Store, StoreError, unix_now};

use crate::config::Config;

/// SRT port of the printed SRT URLs when `[srt] listen` names none.
const SRT_PORT: u16 = 9000;
/// The port `rtmp://` means without one.
const RTMP_DEFAULT_PORT: u16 = 1935;
/// The port `http://` means without one.
const HTTP_DEFAULT_PORT: u16 = 80;
/// Width of the label column of the output.
const LABEL_WIDTH: usize = 19;

/// Whether the addresses are for publishing or for viewing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Direction {
    /// Publishing addresses, signed with the push domain's push key.
    Push,
    /// Viewing addresses, signed with the play domain's play key.
    Play,
}

/// Arguments of `ferrocast url`.
#[derive(Debug, Clone, Args)]
pub struct UrlArgs {
    /// `push` or `play`.
    #[arg(value_enum)]
    pub direction: Direction,
    /// The push domain (push) or play domain (play), as configured through the API.
    #[arg(long)]
    pub domain: String,
    /// AppName (the path segment before the stream name).
    #[arg(long, default_value = "live")]
    pub app: String,
    /// StreamName.
    #[arg(long)]
    pub stream: String,
    /// How long the address stays valid: a number with a unit, `s`, `m`, `h` or `d` (`90s`, `30m`, `24h`, `7d`,
    /// `1h30m`); a bare number is seconds.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub expire: u64,
    /// Sign with SHA-256 (64 hex digits) instead of MD5.
    #[arg(long)]
    pub sha256: bool,
    /// Transcoding template: play `StreamName_Template`, signed as such (play only).
    #[arg(long)]
    pub template: Option<String>,
}

/// Why no addresses could be printed.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    /// A bad argument.
    #[error("{0}")]
    Invalid(String),
    /// The SQLite store does not exist yet.
    #[error("no store at {0}: start the server once and add the domain through the API")]
    NoStore(String),
    /// The domain is not configured, or is of the other type.
    #[error("{0}")]
    Domain(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Parses `--expire`: one or more `<number><unit>` groups (`s`, `m`, `h`, `d`; none = seconds), total > 0.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let bad = || format!("invalid duration {text:?}: expected e.g. 90s, 30m, 24h, 7d or 1h30m");
    let text = text.trim();
    if text.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut pending = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            pending = true;
            continue;
        }
        let unit = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        if !pending {
            return Err(bad());
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(bad)?;
        digits.clear();
        pending = false;
    }
    if pending {
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = total.checked_add(n).ok_or_else(bad)?;
    }
    if total == 0 {
        return Err(bad());
    }
    Ok(total)
}

/// The ports the printed addresses name; `None` = the scheme's default, left out of the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// RTMP port, when not 1935.
    pub rtmp: Option<u16>,
    /// HTTP port (FLV, HLS, WHIP/WHEP), when not 80.
    pub http: Option<u16>,
    /// SRT port (always printed).
    pub srt: u16,
}

impl Ports {
    /// The ports of the configured listeners (an empty or unparsable listen address counts as the default).
    pub fn from_config(config: &Config) -> Ports {
        Ports {
            rtmp: non_default(listen_port(&config.rtmp.listen), RTMP_DEFAULT_PORT),
            http: non_default(listen_port(&config.http.listen), HTTP_DEFAULT_PORT),
            srt: listen_port(&config.srt.listen).unwrap_or(SRT_PORT),
        }
    }
}

/// The port of a `host:port` listen address.
fn listen_port(listen: &str) -> Option<u16> {
    listen.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

fn non_default(port: Option<u16>, default: u16) -> Option<u16> {
    port.filter(|p| *p != default)
}

/// A `txSecret`/`txTime` pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// Lowercase hex digest.
    pub tx_secret: String,
    /// 8 uppercase hex digits of the expiry, UNIX seconds.
    pub tx_time: String,
}

impl Signature {
    /// Signs `name` (the stream name, or `S_T`) with `key`, valid until `expires_at` (UNIX seconds).
    pub fn new(key: &str, name: &str, expires_at: u64, algorithm: Algorithm) -> Result<Signature, UrlError> {
        if expires_at > u64::from(u32::MAX) {
            return Err(UrlError::Invalid("expiry is beyond what 8 hex digits of txTime can hold".into()));
        }
        let tx_time = format!("{expires_at:08X}");
        Ok(Signature { tx_secret: sign_tx_secret(key, name, &tx_time, algorithm), tx_time })
    }
}

/// What the addresses are built from.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// Push or play.
    pub direction: Direction,
    /// Host of every address.
    pub domain: &'a str,
    /// AppName.
    pub app: &'a str,
    /// The signed stream segment: `S`, or `S_T` for a transcoded play.
    pub name: &'a str,
    /// `None` when the domain's authentication is disabled (no query).
    pub signature: Option<&'a Signature>,
    /// Ports to print.
    pub ports: Ports,
}

fn host_port(domain: &str, port: Option<u16>) -> String {
    match port {
        Some(p) => format!("{domain}:{p}"),
        None => domain.to_string(),
    }
}

/// The labelled addresses for `t`, in print order.
pub fn build_urls(t: &Target<'_>) -> Vec<(&'static str, String)> {
    let q = t.signature.map(|s| format!("?txSecret={}&txTime={}", s.tx_secret, s.tx_time)).unwrap_or_default();
    let srt_auth = t.signature.map(|s| format!(",txSecret={},txTime={}", s.tx_secret, s.tx_time)).unwrap_or_default();
    let rtmp = host_port(t.domain, t.ports.rtmp);
    let http = host_port(t.domain, t.ports.http);
    let (d, a, n) = (t.domain, t.app, t.name);
    let mut rows = vec![("RTMP URL", format!("rtmp://{rtmp}/{a}/{n}{q}"))];
    match t.direction {
        Direction::Push => {
            rows.push(("OBS server", format!("rtmp://{rtmp}/{a}/")));
            rows.push(("OBS stream key", format!("{n}{q}")));
            rows.push(("WebRTC URL", format!("webrtc://{d}/{a}/{n}{q}")));
            rows.push(("WHIP endpoint", format!("http://{http}/whip/{a}/{n}{q}")));
            rows.push(("SRT URL", format!("srt://{d}:{}?streamid=#!::h={d},r={a}/{n}{srt_auth}", t.ports.srt)));
            rows.push(("SRT stream key", format!("r={a}/{n}{srt_auth}")));
        }
        Direction::Play => {
            rows.push(("FLV URL", format!("http://{http}/{a}/{n}.flv{q}")));
            rows.push(("HLS URL", format!("http://{http}/{a}/{n}.m3u8{q}")));
            rows.push(("WebRTC URL", format!("webrtc://{d}/{a}/{n}{q}")));
            rows.push(("WHEP endpoint", format!("http://{http}/whep/{a}/{n}{q}")));
            rows.push((
                "SRT URL",
                format!("srt://{d}:{}?streamid=#!::h={d},r={a}/{n},m=request{srt_auth}", t.ports.srt),
            ));
        }
    }
    rows
}

/// Refuses names that would break the addresses (separators, spaces, control characters).
fn check_segment(what: &str, value: &str) -> Result<(), UrlError> {
    let ok = !value.is_empty()
        && value.chars().all(|c| !c.is_whitespace() && !c.is_control() && !"/?#&=,;:@%\\\"'<>".contains(c));
    if ok {
        Ok(())
    } else {
        Err(UrlError::Invalid(format!("invalid {what} {value:?}: must be non-empty, without spaces or URL separators")))
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of UNIX seconds.
fn format_utc(secs: u64) -> String {
    ferrocast_formats::time::datetime(i64::try_from(secs).unwrap_or(i64::MAX), 0)
}

/// Reads the domain's key from the store and returns the text to print.
pub async fn run(args: &UrlArgs, config: &Config) -> Result<String, UrlError> {
    check_segment("domain", &args.domain)?;
    check_segment("app", &args.app)?;
    check_segment("stream", &args.stream)?;
    let name = match (&args.template, args.direction) {
        (Some(_), Direction::Push) => {
            return Err(UrlError::Invalid("--template applies to play addresses only".into()));
        }
        (Some(t), Direction::Play) => {
            check_segment("template", t)?;
            format!("{}_{t}", args.stream)
        }
        (None, _) => args.stream.clone(),
    };
    let data_dir = Path::new(&config.storage.data_dir);
    if config.store.url.is_empty() {
        let file = data_dir.join("ferrocast.db");
        if !file.is_file() {
            return Err(UrlError::NoStore(file.display().to_string()));
        }
    }
    let store = Store::open_default(data_dir, &config.store.url).await?;
    let (kind, kind_name, other) = match args.direction {
        Direction::Push => (DOMAIN_PUSH, "push", "play"),
        Direction::Play => (DOMAIN_PLAY, "play", "push"),
    };
    let domain = store
        .domain(&args.domain)
        .await?
        .ok_or_else(|| UrlError::Domain(format!("{} is not a configured domain (AddLiveDomain)", args.domain)))?;
    if domain.kind != kind {
        return Err(UrlError::Domain(format!("{} is a {other} domain, not a {kind_name} domain", args.domain)));
    }
    let key = store.auth_key(&args.domain).await?.unwrap_or_default();
    let algorithm = if args.sha256 { Algorithm::Sha256 } else { Algorithm::Md5 };
    let expires_at = u64::try_from(unix_now()).unwrap_or(0).saturating_add(args.expire);
    let signature = if key.enable != 0 {
        let secret = if key.master_key.is_empty() { &key.backup_key } else { &key.master_key };
        if secret.is_empty() {
            return Err(UrlError::Domain(format!(
                "{kind_name} authentication of {} is enabled but no key is set",
                args.domain
            )));
        }
        Some(Signature::new(secret, &name, expires_at, algorithm)?)
    } else {
        None
    };
    let target = Target {
        direction: args.direction,
        domain: &args.domain,
        app: &args.app,
        name: &name,
        signature: signature.as_ref(),
        ports: Ports::from_config(config),
    };
    let mut out = String::new();
    for (label, url) in build_urls(&target) {
        let _ = writeln!(out, "{label:<LABEL_WIDTH$}{url}");
    }
    match &signature {
        Some(s) => {
            let _ = writeln!(out, "{:<LABEL_WIDTH$}{}", "txTime", s.tx_time);
            let _ = writeln!(
                out,
                "{:<LABEL_WIDTH$}{} UTC (UNIX {expires_at}); actual expiry = txTime + AuthDelta ({} s) = {} UTC",
                "Expires",
                format_utc(expires_at),
                key.auth_delta,
                format_utc(expires_at.saturating_add(u64::try_from(key.auth_delta).unwrap_or(0)))
            );
        }
        None => {
            let _ = writeln!(out, "{:<LABEL_WIDTH$}never ({kind_name} authentication is disabled)", "Expires");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H2_KEY: &str = "92f1bc5c00ebf3277d2a467f887a184d";

    fn sig(secret: &str, time: &str) -> Signature {
        Signature { tx_secret: secret.into(), tx_time: time.into() }
    }

    fn get(rows: &[(&'static str, String)], label: &str) -> String {
        rows.iter().find(|(l, _)| *l == label).map(|(_, u)| u.clone()).unwrap_or_else(|| panic!("no {label}"))
    }

    #[test]
    fn push_urls_match_the_reference_console_output() {
        // H3 [CB §13.1]: key H2, stream test, txTime 669A1783.
        let s = Signature::new(H2_KEY, "test", 0x669A1783, Algorithm::Md5).expect("sign");
        assert_eq!(s, sig("5763cbd11726a9e726efb71a412c6d38", "669A1783"));
        let t = Target {
            direction: Direction::Push,
            domain: "example.com",
            app: "live",
            name: "test",
            signature: Some(&s),
            ports: Ports { rtmp: None, http: None, srt: 9000 },
        };
        let rows = build_urls(&t);
        let q = "txSecret=5763cbd11726a9e726efb71a412c6d38&txTime=669A1783";
        assert_eq!(get(&rows, "RTMP URL"), format!("rtmp://example.com/live/test?{q}"));
        assert_eq!(get(&rows, "OBS server"), "rtmp://example.com/live/");
        assert_eq!(get(&rows, "OBS stream key"), format!("test?{q}"));
        assert_eq!(get(&rows, "WebRTC URL"), format!("webrtc://example.com/live/test?{q}"));
        assert_eq!(get(&rows, "WHIP endpoint"), format!("http://example.com/whip/live/test?{q}"));
        assert_eq!(
            get(&rows, "SRT URL"),
            "srt://example.com:9000?streamid=#!::h=example.com,r=live/test,\
             txSecret=5763cbd11726a9e726efb71a412c6d38,txTime=669A1783"
        );
        assert!(rows.iter().all(|(l, _)| !l.contains("FLV") && !l.contains("HLS")));
    }

    #[test]
    fn play_urls_carry_ports_and_the_transcoded_name() {
        // T1: key H2, test_hd, 669F5D4C.
        let s = Signature::new(H2_KEY, "test_hd", 0x669F5D4C, Algorithm::Md5).expect("sign");
        assert_eq!(s.tx_secret, "03d1bc7ff4583fb9bdc0a8cfdbda3aac");
        let t = Target {
            direction: Direction::Play,
            domain: "play.example.com",
            app: "live",
            name: "test_hd",
            signature: Some(&s),
            ports: Ports { rtmp: Some(19350), http: Some(8080), srt: 9000 },
        };
        let rows = build_urls(&t);
        let q = "?txSecret=03d1bc7ff4583fb9bdc0a8cfdbda3aac&txTime=669F5D4C";
        assert_eq!(get(&rows, "RTMP URL"), format!("rtmp://play.example.com:19350/live/test_hd{q}"));
        assert_eq!(get(&rows, "FLV URL"), format!("http://play.example.com:8080/live/test_hd.flv{q}"));
        assert_eq!(get(&rows, "HLS URL"), format!("http://play.example.com:8080/live/test_hd.m3u8{q}"));
        assert_eq!(get(&rows, "WebRTC URL"), format!("webrtc://play.example.com/live/test_hd{q}"));
        assert_eq!(get(&rows, "WHEP endpoint"), format!("http://play.example.com:8080/whep/live/test_hd{q}"));
        assert!(get(&rows, "SRT URL").contains(",r=live/test_hd,m=request,txSecret=03d1bc7ff4583fb9bdc0a8cfdbda3aac,"));
        assert!(rows.iter().all(|(l, _)| !l.starts_with("OBS")));
    }

    #[test]
    fn unsigned_urls_have_no_query() {
        let t = Target {
            direction: Direction::Play,
            domain: "d.example.com",
            app: "app",
            name: "s",
            signature: None,
            ports: Ports { rtmp: None, http: None, srt: 9000 },
        };
        let rows = build_urls(&t);
        assert_eq!(get(&rows, "FLV URL"), "http://d.example.com/app/s.flv");
        assert_eq!(get(&rows, "SRT URL"), "srt://d.example.com:9000?streamid=#!::h=d.example.com,r=app/s,m=request");
        assert!(rows.iter().all(|(_, u)| !u.contains("txSecret")));
    }

    #[test]
    fn sha256_signatures_are_64_hex_digits() {
        // H1 with SHA-256 (brief §3.2).
        let s = Signature::new("e12c46f2612d5106e2034781ab261ca3", "test", 0x5C271099, Algorithm::Sha256).expect("s");
        assert_eq!(s.tx_secret, "2fe51d13bff48deaddd7e4e086265e69d5a04a64db9a2cbc737bd585c472fd07");
        assert_eq!(s.tx_time, "5C271099");
        assert!(Signature::new("k", "s", u64::from(u32::MAX) + 1, Algorithm::Md5).is_err());
        // Uppercase, zero-padded txTime.
        assert_eq!(Signature::new("k", "s", 0xABC, Algorithm::Md5).expect("s").tx_time, "00000ABC");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h"), Ok(86_400));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("3600"), Ok(3600));
        assert_eq!(parse_duration("2H"), Ok(7200));
        for bad in ["", "0", "0h", "h", "1x", "-1h", "1.5h", "99999999999999999999d", "1 h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn ports_from_the_listen_addresses() {
        let mut c = Config::default();
        assert_eq!(Ports::from_config(&c), Ports { rtmp: None, http: Some(8080), srt: 9000 });
        c.rtmp.listen = "127.0.0.1:19350".into();
        c.http.listen = "[::]:80".into();
        assert_eq!(Ports::from_config(&c), Ports { rtmp: Some(19350), http: None, srt: 9000 });
        c.rtmp.listen = String::new();
        assert_eq!(Ports::from_config(&c).rtmp, None);
        c.srt.listen = "0.0.0.0:9100".into();
        assert_eq!(Ports::from_config(&c).srt, 9100);
    }

    #[test]
    fn segments_and_dates() {
        assert!(check_segment("stream", "ok-name_1.x").is_ok());
        for bad in ["", "a/b", "a?b", "a b", "a&b", "a,b", "a\nb"] {
            assert!(check_segment("stream", bad).is_err(), "{bad:?}");
        }
        assert_eq!(format_utc(0x5C271099), "2018-12-29 06:13:45");
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00");
    }

    #[tokio::test]
    async fn run_reads_the_key_from_the_store() {
        let dir = std::env::temp_dir().join(format!("ferrocast-url-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut config = Config::default();
        config.storage.data_dir = dir.display().to_string();
        let args = |direction, domain: &str, template: Option<&str>| UrlArgs {
            direction,
            domain: domain.into(),
            app: "live".into(),
            stream: "test".into(),
            expire: 3600,
            sha256: false,
            template: template.map(str::to_string),
        };
        assert!(matches!(run(&args(Direction::Push, "p.example.com", None), &config).await, Err(UrlError::NoStore(_))));
        let store = Store::open_default(&dir, "").await.expect("store");
        store
            .add_domain(&ferrocast_control::store::NewDomain {
                name: "p.example.com".into(),
                kind: DOMAIN_PUSH,
                play_type: 1,
                is_delay_live: 0,
                is_mini_program_live: 0,
                push_domain: None,
            })
            .await
            .expect("add");
        store
            .update_auth_key(
                "p.example.com",
                &ferrocast_control::store::AuthKeyUpdate {
                    enable: Some(1),
                    master_key: Some("masterkey".into()),
                    ..Default::default()
                },
            )
            .await
            .expect("key");
        let out = run(&args(Direction::Push, "p.example.com", None), &config).await.expect("run");
        let tx_time = out.lines().find_map(|l| l.strip_prefix("txTime")).map(str::trim).expect("txTime").to_string();
        let secret = sign_tx_secret("masterkey", "test", &tx_time, Algorithm::Md5);
        assert!(out.contains(&format!("rtmp://p.example.com/live/test?txSecret={secret}&txTime={tx_time}")), "{out}");
        let e = run(&args(Direction::Play, "p.example.com", None), &config).await.expect_err("push domain");
        assert!(e.to_string().contains("push domain"), "{e}");
        assert!(run(&args(Direction::Push, "p.example.com", Some("hd")), &config).await.is_err());
        assert!(run(&args(Direction::Push, "nope.example.com", None), &config).await.is_err());
        drop(store);
        std::fs::remove_dir_all(&dir).ok();
    }
}
