//! Hotlink protection: `txSecret`/`txTime` signatures and referer rules (brief §3). Pure functions, no I/O: the
//! access policy calls them with the keys and rules of a domain and the current time.
//!
//! `txSecret = lowerhex(H(KEY + StreamName + txTime))`, plain concatenation, where `H` is MD5 (32 hex digits) or
//! SHA-256 (64 hex digits, formula assumed), `StreamName` is the stream segment only (a transcoded play signs
//! `StreamName_Template`), and `txTime` is hashed exactly as it appears in the URL. `txTime` is the URL's expiry
//! in UNIX seconds, hex (≤ 8 digits) or decimal; a URL is valid while `now ≤ txTime + AuthDelta`.

use md5::{Digest, Md5};
use sha2::Sha256;

/// The hash of a `txSecret`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// MD5: 32 lowercase hex digits (the service's default).
    Md5,
    /// SHA-256: 64 lowercase hex digits.
    Sha256,
}

impl Algorithm {
    /// The algorithm a `txSecret` was made with, by its length: 32 → MD5, 64 → SHA-256, else none.
    pub fn for_secret(tx_secret: &str) -> Option<Algorithm> {
        match tx_secret.len() {
            32 => Some(Algorithm::Md5),
            64 => Some(Algorithm::Sha256),
            _ => None,
        }
    }

    /// Lowercase hex digest of `parts` concatenated.
    fn hex_digest(self, parts: &[&str]) -> String {
        match self {
            Algorithm::Md5 => {
                let mut h = Md5::new();
                parts.iter().for_each(|p| h.update(p.as_bytes()));
                to_hex(&h.finalize())
            }
            Algorithm::Sha256 => {
                let mut h = Sha256::new();
                parts.iter().for_each(|p| h.update(p.as_bytes()));
                to_hex(&h.finalize())
            }
        }
    }
}

/// The push or play authentication settings of one domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthKey {
    /// Whether URLs must be signed (`Enable`).
    pub enabled: bool,
    /// `MasterAuthKey` (push) or `AuthKey` (play); empty when unset.
    pub master: String,
    /// `BackupAuthKey` (push) or `AuthBackKey` (play); empty when unset.
    pub backup: String,
    /// `AuthDelta`: seconds a URL stays valid after its `txTime`.
    pub auth_delta_secs: u64,
}

impl AuthKey {
    /// The keys to try, master first, skipping empty ones.
    fn keys(&self) -> impl Iterator<Item = &str> {
        [self.master.as_str(), self.backup.as_str()].into_iter().filter(|k| !k.is_empty())
    }
}

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A required query parameter (`txSecret`, `txTime`) is absent or empty.
    #[error("missing {0}")]
    Missing(&'static str),
    /// `txSecret` matches neither key (or is not 32/64 hex digits).
    #[error("bad signature")]
    BadSignature,
    /// `now > txTime + AuthDelta`.
    #[error("expired: txTime {tx_time} (plus AuthDelta) is before now {now}")]
    Expired {
        /// The URL's `txTime`, UNIX seconds.
        tx_time: u64,
        /// The time of the check, UNIX seconds.
        now: u64,
    },
    /// `txTime` is neither ≤ 8 hex digits nor decimal digits.
    #[error("bad txTime {0:?}: expected UNIX seconds as up to 8 hex digits or as decimal digits")]
    BadTxTime(String),
    /// Authentication is enabled but neither key is set: every URL is refused (fail closed).
    #[error("authentication is enabled but no key is configured")]
    NoKey,
    /// The `Referer` is refused by the domain's referer rules.
    #[error("referer {0}")]
    Referer(String),
}

impl From<AuthError> for ferrocast_hub::Denied {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Referer(_) => ferrocast_hub::Denied::forbidden(e.to_string()),
            _ => ferrocast_hub::Denied::unauthorized(e.to_string()),
        }
    }
}

/// Parses `txTime`: up to 8 hex digits (any case) → hex; else all decimal digits → decimal; else refused.
pub fn parse_tx_time(tx_time: &str) -> Result<u64, AuthError> {
    let bad = || AuthError::BadTxTime(tx_time.to_string());
    if tx_time.is_empty() {
        return Err(bad());
    }
    if tx_time.len() <= 8 && tx_time.bytes().all(|b| b.is_ascii_hexdigit()) {
        return u64::from_str_radix(tx_time, 16).map_err(|_| bad());
    }
    if tx_time.bytes().all(|b| b.is_ascii_digit()) {
        return tx_time.parse().map_err(|_| bad());
    }
    Err(bad())
}

/// The first non-empty value of `name` in `params`.
fn param<'a>(params: &'a [(String, String)], name: &'static str) -> Result<&'a str, AuthError> {
    params.iter().find(|(k, v)| k == name && !v.is_empty()).map(|(_, v)| v.as_str()).ok_or(AuthError::Missing(name))
}

/// Checks `txSecret`/`txTime` of a push or play URL for `stream_name` (the stream segment as requested, without
/// domain, app or extension; transcoded names are signed as `StreamName_Template`, so callers pass the name as
/// requested). A disabled key lets everything in. Otherwise: both parameters are required; `txTime` must parse and
/// `now_unix ≤ txTime + AuthDelta`; `txSecret` (MD5 if 32 hex digits, SHA-256 if 64, any case) must be the digest
/// of the master or the backup key + `stream_name` + `txTime` exactly as sent. Other parameters are ignored.
pub fn verify_tx_secret(
    key: &AuthKey,
    stream_name: &str,
    params: &[(String, String)],
    now_unix: u64,
) -> Result<(), AuthError> {
    if !key.enabled {
        return Ok(());
    }
    if key.keys().next().is_none() {
        return Err(AuthError::NoKey);
    }
    let tx_secret = param(params, "txSecret")?;
    let tx_time_raw = param(params, "txTime")?;
    let tx_time = parse_tx_time(tx_time_raw)?;
    if now_unix > tx_time.saturating_add(key.auth_delta_secs) {
        return Err(AuthError::Expired { tx_time, now: now_unix });
    }
    let algorithm = Algorithm::for_secret(tx_secret).ok_or(AuthError::BadSignature)?;
    let sent = tx_secret.to_ascii_lowercase();
    // Every key is hashed and compared in full, whichever matches, so timing tells nothing.
    let matched = key.keys().fold(false, |found, k| {
        let expected = sign_tx_secret(k, stream_name, tx_time_raw, algorithm);
        constant_time_eq(expected.as_bytes(), sent.as_bytes()) | found
    });
    if matched { Ok(()) } else { Err(AuthError::BadSignature) }
}

/// `lowerhex(H(key + stream_name + tx_time))`: the `txSecret` of a URL. `tx_time` is used exactly as given (the
/// address generator passes 8 uppercase hex digits).
pub fn sign_tx_secret(key: &str, stream_name: &str, tx_time_hex: &str, algorithm: Algorithm) -> String {
    algorithm.hex_digest(&[key, stream_name, tx_time_hex])
}

/// The referer rules of a play domain (HTTP playback only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefererRule {
    /// Whether the rules apply (`Enable`).
    pub enabled: bool,
    /// `Type`: true (1) → only matching referers are allowed; false (0) → matching referers are refused.
    pub allow_list: bool,
    /// Patterns: `( … )` is a regular expression searched in the whole `Referer` value; anything else is a
    /// case-insensitive substring match where `*` stands for any run of characters (`*.example.com`,
    /// `https://*.xxx.co`).
    pub rules: Vec<String>,
    /// `AllowEmpty`: whether a request without a (non-empty) `Referer` is allowed.
    pub allow_empty: bool,
}

impl RefererRule {
    /// Splits the API's `Rules` string on `;`, trimming items and dropping empty ones.
    pub fn parse_rules(rules: &str) -> Vec<String> {
        rules.split(';').map(str::trim).filter(|r| !r.is_empty()).map(str::to_string).collect()
    }
}

/// Checks one pattern for the API: a `( … )` pattern must be a valid regular expression.
pub fn validate_referer_pattern(pattern: &str) -> Result<(), String> {
    if is_regex_pattern(pattern) {
        regex::Regex::new(pattern).map(drop).map_err(|e| format!("invalid referer regex {pattern:?}: {e}"))
    } else {
        Ok(())
    }
}

/// Applies a domain's referer rules to the request's `Referer` header. An absent or empty referer is allowed iff
/// `allow_empty`; otherwise an allow list refuses unless a rule matches and a block list refuses if one does.
/// A `( … )` pattern that is not a valid regular expression matches nothing.
pub fn check_referer(rule: &RefererRule, referer: Option<&str>) -> Result<(), AuthError> {
    if !rule.enabled {
        return Ok(());
    }
    let referer = referer.map(str::trim).unwrap_or("");
    if referer.is_empty() {
        return if rule.allow_empty {
            Ok(())
        } else {
            Err(AuthError::Referer("missing (empty referer not allowed)".into()))
        };
    }
    let matched = rule.rules.iter().map(|r| r.trim()).filter(|r| !r.is_empty()).any(|r| pattern_matches(r, referer));
    match (rule.allow_list, matched) {
        (true, false) => Err(AuthError::Referer(format!("{referer:?} is not in the allow list"))),
        (false, true) => Err(AuthError::Referer(format!("{referer:?} is in the block list"))),
        _ => Ok(()),
    }
}

fn is_regex_pattern(pattern: &str) -> bool {
    pattern.len() >= 2 && pattern.starts_with('(') && pattern.ends_with(')')
}

fn pattern_matches(pattern: &str, referer: &str) -> bool {
    if is_regex_pattern(pattern) {
        return regex::Regex::new(pattern).is_ok_and(|re| re.is_match(referer));
    }
    let haystack = referer.to_ascii_lowercase();
    let pattern = pattern.to_ascii_lowercase();
    // Unanchored: each `*`-separated piece must occur after the previous one; the leftmost occurrence is best.
    let mut pos = 0;
    for piece in pattern.split('*').filter(|p| !p.is_empty()) {
        match haystack[pos..].find(piece) {
            Some(i) => pos += i + piece.len(),
            None => return false,
        }
    }
    true
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const H1_KEY: &str = "e12c46f2612d5106e2034781ab261ca3";
    const H2_KEY: &str = "92f1bc5c00ebf3277d2a467f887a184d";

    /// One row of brief §3.2.
    struct Vector {
        name: &'static str,
        key: &'static str,
        stream: &'static str,
        tx_time: &'static str,
        md5: &'static str,
        sha256: Option<&'static str>,
    }

    /// Every row of brief §3.2 (the SHA-256 column uses the assumed formula).
    const VECTORS: &[Vector] = &[
        Vector {
            name: "H1",
            key: H1_KEY,
            stream: "test",
            tx_time: "5C271099",
            md5: "f85a2ab363fe4deaffef9754d79da6fe",
            sha256: Some("2fe51d13bff48deaddd7e4e086265e69d5a04a64db9a2cbc737bd585c472fd07"),
        },
        Vector {
            name: "H2",
            key: H2_KEY,
            stream: "test",
            tx_time: "669F5D4C",
            md5: "99805218fb4ae433879aa85b66d9f947",
            sha256: Some("ab4c96bd4152f8d7776c5f331860fa3bd652e27bce46608b47ad28f5501b4b8f"),
        },
        Vector {
            name: "H3",
            key: H2_KEY,
            stream: "test",
            tx_time: "669A1783",
            md5: "5763cbd11726a9e726efb71a412c6d38",
            sha256: Some("5f5e4b0bcc3395f1115af66b595c1967b6d2fc85dcfcc240769ea61c01028507"),
        },
        Vector {
            name: "O1",
            key: "testkey",
            stream: "test",
            tx_time: "669A1783",
            md5: "ef134dbce5e82d6ff9c60115672275e9",
            sha256: Some("1bfeb050994b46ef09344711684e921a30b850bb3ee2f1ac75687258901feacd"),
        },
        Vector {
            name: "N1",
            key: H1_KEY,
            stream: "test",
            tx_time: "5c271099",
            md5: "9603387445825a481e6b7496aced5746",
            sha256: None,
        },
        Vector {
            name: "N2",
            key: H2_KEY,
            stream: "test",
            tx_time: "669f5d4c",
            md5: "631d294b70e30c95e3a3032db4ff3cec",
            sha256: None,
        },
        Vector {
            name: "N3",
            key: H2_KEY,
            stream: "test",
            tx_time: "1721720140",
            md5: "f204a271a76b75d394fe47718f001215",
            sha256: None,
        },
        Vector {
            name: "T1",
            key: H2_KEY,
            stream: "test_hd",
            tx_time: "669F5D4C",
            md5: "03d1bc7ff4583fb9bdc0a8cfdbda3aac",
            sha256: None,
        },
    ];

    fn key(master: &str, backup: &str, delta: u64) -> AuthKey {
        AuthKey { enabled: true, master: master.into(), backup: backup.into(), auth_delta_secs: delta }
    }

    fn params(secret: &str, time: &str) -> Vec<(String, String)> {
        vec![("txSecret".into(), secret.into()), ("txTime".into(), time.into())]
    }

    /// Just before a URL's expiry.
    fn valid_now(tx_time: &str) -> u64 {
        parse_tx_time(tx_time).unwrap()
    }

    #[test]
    fn every_spec_vector_signs_as_documented() {
        for &Vector { name, key: k, stream, tx_time: time, md5, sha256 } in VECTORS {
            assert_eq!(sign_tx_secret(k, stream, time, Algorithm::Md5), md5, "{name} md5");
            if let Some(sha) = sha256 {
                assert_eq!(sign_tx_secret(k, stream, time, Algorithm::Sha256), sha, "{name} sha256");
            }
        }
    }

    #[test]
    fn every_spec_vector_verifies_with_its_key() {
        for &Vector { name, key: k, stream, tx_time: time, md5, sha256 } in VECTORS {
            let now = valid_now(time);
            assert_eq!(verify_tx_secret(&key(k, "", 0), stream, &params(md5, time), now), Ok(()), "{name} md5");
            if let Some(sha) = sha256 {
                assert_eq!(verify_tx_secret(&key(k, "", 0), stream, &params(sha, time), now), Ok(()), "{name} sha");
            }
        }
    }

    #[test]
    fn tx_time_is_hashed_exactly_as_sent() {
        // H1's secret with H1's time in lowercase (same instant) is refused, and N1's secret with uppercase.
        let now = 1_546_064_025;
        let k = key(H1_KEY, "", 0);
        assert_eq!(
            verify_tx_secret(&k, "test", &params("f85a2ab363fe4deaffef9754d79da6fe", "5c271099"), now),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify_tx_secret(&k, "test", &params("9603387445825a481e6b7496aced5746", "5C271099"), now),
            Err(AuthError::BadSignature)
        );
        // H2's secret with the same instant in decimal is refused; N3's decimal signature passes.
        let k = key(H2_KEY, "", 0);
        assert_eq!(
            verify_tx_secret(&k, "test", &params("99805218fb4ae433879aa85b66d9f947", "1721720140"), 1_721_720_140),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn transcoded_names_are_signed_with_the_template_suffix() {
        let k = key(H2_KEY, "", 0);
        let t1 = params("03d1bc7ff4583fb9bdc0a8cfdbda3aac", "669F5D4C");
        assert_eq!(verify_tx_secret(&k, "test_hd", &t1, 1_721_720_140), Ok(()));
        assert_eq!(verify_tx_secret(&k, "test", &t1, 1_721_720_140), Err(AuthError::BadSignature));
        let h2 = params("99805218fb4ae433879aa85b66d9f947", "669F5D4C");
        assert_eq!(verify_tx_secret(&k, "test_hd", &h2, 1_721_720_140), Err(AuthError::BadSignature));
    }

    #[test]
    fn the_backup_key_is_accepted_with_any_master() {
        let h2 = params("99805218fb4ae433879aa85b66d9f947", "669F5D4C");
        let sha = params("ab4c96bd4152f8d7776c5f331860fa3bd652e27bce46608b47ad28f5501b4b8f", "669F5D4C");
        let now = 1_721_720_140;
        for master in ["0123456789abcdef0123456789abcdef", "something else", ""] {
            assert_eq!(verify_tx_secret(&key(master, H2_KEY, 0), "test", &h2, now), Ok(()), "{master}");
            assert_eq!(verify_tx_secret(&key(master, H2_KEY, 0), "test", &sha, now), Ok(()), "{master}");
        }
        // The master still works with a backup set.
        assert_eq!(verify_tx_secret(&key(H2_KEY, "other", 0), "test", &h2, now), Ok(()));
    }

    #[test]
    fn a_wrong_key_is_refused() {
        let h2 = params("99805218fb4ae433879aa85b66d9f947", "669F5D4C");
        let sha = params("ab4c96bd4152f8d7776c5f331860fa3bd652e27bce46608b47ad28f5501b4b8f", "669F5D4C");
        let now = 1_721_720_140;
        assert_eq!(verify_tx_secret(&key(H1_KEY, "", 0), "test", &h2, now), Err(AuthError::BadSignature));
        assert_eq!(verify_tx_secret(&key(H1_KEY, "testkey", 0), "test", &sha, now), Err(AuthError::BadSignature));
        // Right key, wrong stream.
        assert_eq!(verify_tx_secret(&key(H2_KEY, "", 0), "test2", &h2, now), Err(AuthError::BadSignature));
    }

    #[test]
    fn secrets_compare_case_insensitively_and_need_32_or_64_digits() {
        let k = key(H2_KEY, "", 0);
        let now = 1_721_720_140;
        let upper = params("99805218FB4AE433879AA85B66D9F947", "669F5D4C");
        assert_eq!(verify_tx_secret(&k, "test", &upper, now), Ok(()));
        for bad in
            ["99805218fb4ae433879aa85b66d9f94", "99805218fb4ae433879aa85b66d9f9470", "zz805218fb4ae433879aa85b66d9f947"]
        {
            assert_eq!(verify_tx_secret(&k, "test", &params(bad, "669F5D4C"), now), Err(AuthError::BadSignature));
        }
        assert_eq!(Algorithm::for_secret(&"a".repeat(32)), Some(Algorithm::Md5));
        assert_eq!(Algorithm::for_secret(&"a".repeat(64)), Some(Algorithm::Sha256));
        assert_eq!(Algorithm::for_secret(&"a".repeat(40)), None);
    }

    #[test]
    fn expiry_is_inclusive_of_tx_time_plus_auth_delta() {
        let h1 = params("f85a2ab363fe4deaffef9754d79da6fe", "5C271099");
        let tx = 1_546_064_025;
        for delta in [0, 1, 300, 86_400] {
            let k = key(H1_KEY, "", delta);
            assert_eq!(verify_tx_secret(&k, "test", &h1, tx + delta), Ok(()), "delta {delta}");
            assert_eq!(
                verify_tx_secret(&k, "test", &h1, tx + delta + 1),
                Err(AuthError::Expired { tx_time: tx, now: tx + delta + 1 }),
                "delta {delta}"
            );
        }
        // Long before the expiry is fine; a huge AuthDelta does not overflow.
        assert_eq!(verify_tx_secret(&key(H1_KEY, "", 0), "test", &h1, 0), Ok(()));
        assert_eq!(verify_tx_secret(&key(H1_KEY, "", u64::MAX), "test", &h1, u64::MAX), Ok(()));
        // Changing AuthDelta extends an existing URL: H3 a day after its txTime.
        let h3 = params("5763cbd11726a9e726efb71a412c6d38", "669A1783");
        assert!(verify_tx_secret(&key(H2_KEY, "", 0), "test", &h3, 1_721_374_595 + 86_400).is_err());
        assert_eq!(verify_tx_secret(&key(H2_KEY, "", 86_400), "test", &h3, 1_721_374_595 + 86_400), Ok(()));
    }

    #[test]
    fn an_expired_url_is_reported_as_expired_even_when_well_signed() {
        let err = verify_tx_secret(
            &key(H1_KEY, "", 0),
            "test",
            &params("f85a2ab363fe4deaffef9754d79da6fe", "5C271099"),
            1_700_000_000,
        )
        .unwrap_err();
        assert_eq!(err, AuthError::Expired { tx_time: 1_546_064_025, now: 1_700_000_000 });
        assert!(err.to_string().starts_with("expired"), "{err}");
    }

    #[test]
    fn missing_or_empty_parameters_are_refused() {
        let k = key(H2_KEY, "", 0);
        let now = 1_721_720_140;
        assert_eq!(verify_tx_secret(&k, "test", &[], now), Err(AuthError::Missing("txSecret")));
        let only_time = vec![("txTime".to_string(), "669F5D4C".to_string())];
        assert_eq!(verify_tx_secret(&k, "test", &only_time, now), Err(AuthError::Missing("txSecret")));
        let only_secret = vec![("txSecret".to_string(), "99805218fb4ae433879aa85b66d9f947".to_string())];
        assert_eq!(verify_tx_secret(&k, "test", &only_secret, now), Err(AuthError::Missing("txTime")));
        assert_eq!(verify_tx_secret(&k, "test", &params("", "669F5D4C"), now), Err(AuthError::Missing("txSecret")));
        assert_eq!(
            verify_tx_secret(&k, "test", &params("99805218fb4ae433879aa85b66d9f947", ""), now),
            Err(AuthError::Missing("txTime"))
        );
        // Parameter names are case-sensitive, as the service sends them.
        let lower = vec![
            ("txsecret".to_string(), "99805218fb4ae433879aa85b66d9f947".to_string()),
            ("txtime".to_string(), "669F5D4C".to_string()),
        ];
        assert_eq!(verify_tx_secret(&k, "test", &lower, now), Err(AuthError::Missing("txSecret")));
        assert_eq!(AuthError::Missing("txSecret").to_string(), "missing txSecret");
    }

    #[test]
    fn extra_parameters_are_ignored() {
        let mut p =
            vec![("bizid".to_string(), "1234".to_string()), ("txHost".to_string(), "push.example.com".to_string())];
        p.extend(params("99805218fb4ae433879aa85b66d9f947", "669F5D4C"));
        p.push(("txDelayTime".into(), "5".into()));
        assert_eq!(verify_tx_secret(&key(H2_KEY, "", 0), "test", &p, 1_721_720_140), Ok(()));
    }

    #[test]
    fn full_url_h1_verifies() {
        let url = "rtmp://livepush.tcloud.com/live/test?txSecret=f85a2ab363fe4deaffef9754d79da6fe&txTime=5C271099";
        let (path, query) = url.split_once('?').unwrap();
        let stream = path.rsplit('/').next().unwrap();
        let p: Vec<(String, String)> = query
            .split('&')
            .map(|kv| kv.split_once('=').unwrap())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(verify_tx_secret(&key(H1_KEY, "", 0), stream, &p, 1_546_064_025), Ok(()));
    }

    #[test]
    fn disabled_auth_lets_everything_in_and_enabled_without_keys_fails_closed() {
        let off = AuthKey { enabled: false, ..AuthKey::default() };
        assert_eq!(verify_tx_secret(&off, "test", &[], u64::MAX), Ok(()));
        let off_with_key = AuthKey { enabled: false, master: H2_KEY.into(), ..AuthKey::default() };
        assert_eq!(verify_tx_secret(&off_with_key, "test", &params("bad", "zz"), 0), Ok(()));
        let no_key = key("", "", 0);
        let h2 = params("99805218fb4ae433879aa85b66d9f947", "669F5D4C");
        assert_eq!(verify_tx_secret(&no_key, "test", &h2, 0), Err(AuthError::NoKey));
    }

    #[test]
    fn tx_time_parses_hex_up_to_8_digits_else_decimal() {
        for (text, secs) in [
            ("5C271099", 1_546_064_025),
            ("5c271099", 1_546_064_025),
            ("669F5D4C", 1_721_720_140),
            ("669A1783", 1_721_374_595),
            ("5867D600", 1_483_200_000),
            ("58540F7F", 1_481_903_999),
            ("65029b21", 1_694_669_601),
            ("5DEBEC80", 1_575_742_592),
            ("1721720140", 1_721_720_140),
            ("1694669601", 1_694_669_601),
            // 8 digits that are valid hex are hex, even if they look decimal.
            ("17217201", 0x1721_7201),
            ("0", 0),
        ] {
            assert_eq!(parse_tx_time(text), Ok(secs), "{text}");
        }
        for bad in ["", "0x5C271099", "5C27109G", "5C2710990", "-1", " 5C271099", "99999999999999999999999"] {
            assert_eq!(parse_tx_time(bad), Err(AuthError::BadTxTime(bad.to_string())), "{bad:?}");
        }
        let k = key(H2_KEY, "", 0);
        assert_eq!(
            verify_tx_secret(&k, "test", &params("99805218fb4ae433879aa85b66d9f947", "tomorrow"), 0),
            Err(AuthError::BadTxTime("tomorrow".into()))
        );
    }

    #[test]
    fn auth_errors_become_denials_of_the_right_kind() {
        use ferrocast_hub::{Denied, DenyKind};
        let d: Denied = AuthError::BadSignature.into();
        assert_eq!((d.kind, d.reason.as_str()), (DenyKind::Unauthorized, "bad signature"));
        let d: Denied = AuthError::Missing("txTime").into();
        assert_eq!((d.kind, d.reason.as_str()), (DenyKind::Unauthorized, "missing txTime"));
        let d: Denied = AuthError::Referer("x".into()).into();
        assert_eq!(d.kind, DenyKind::Forbidden);
        assert!(d.reason.starts_with("referer"));
    }

    fn referer_rule(allow_list: bool, rules: &str, allow_empty: bool) -> RefererRule {
        RefererRule { enabled: true, allow_list, rules: RefererRule::parse_rules(rules), allow_empty }
    }

    #[test]
    fn referer_rules_parse_from_the_api_string() {
        assert_eq!(RefererRule::parse_rules("xxx.com;yyy.com"), vec!["xxx.com", "yyy.com"]);
        assert_eq!(RefererRule::parse_rules(" a.com ;; ;b.com;"), vec!["a.com", "b.com"]);
        assert!(RefererRule::parse_rules("").is_empty());
    }

    #[test]
    fn referer_disabled_allows_everything() {
        let rule = RefererRule { enabled: false, allow_list: true, rules: vec![], allow_empty: false };
        assert_eq!(check_referer(&rule, None), Ok(()));
        assert_eq!(check_referer(&rule, Some("http://evil.com/")), Ok(()));
    }

    #[test]
    fn referer_empty_is_allowed_only_with_allow_empty() {
        for allow_list in [true, false] {
            let yes = referer_rule(allow_list, "good.com", true);
            let no = referer_rule(allow_list, "good.com", false);
            for empty in [None, Some(""), Some("  ")] {
                assert_eq!(check_referer(&yes, empty), Ok(()));
                assert!(matches!(check_referer(&no, empty), Err(AuthError::Referer(_))));
            }
        }
    }

    #[test]
    fn referer_allow_list_admits_only_matches() {
        let rule = referer_rule(true, "xxx.com;yyy.com", false);
        assert_eq!(check_referer(&rule, Some("https://xxx.com/page.html")), Ok(()));
        assert_eq!(check_referer(&rule, Some("http://www.YYY.com/")), Ok(()));
        let err = check_referer(&rule, Some("https://zzz.com/")).unwrap_err();
        assert!(err.to_string().starts_with("referer"), "{err}");
        let empty_list = referer_rule(true, "", false);
        assert!(check_referer(&empty_list, Some("https://xxx.com/")).is_err());
    }

    #[test]
    fn referer_block_list_refuses_matches() {
        let rule = referer_rule(false, "evil.com;*.bad.org", false);
        assert!(check_referer(&rule, Some("https://evil.com/x")).is_err());
        assert!(check_referer(&rule, Some("https://cdn.bad.org/x")).is_err());
        assert_eq!(check_referer(&rule, Some("https://bad.org/x")), Ok(()));
        assert_eq!(check_referer(&rule, Some("https://good.com/")), Ok(()));
        let empty_list = referer_rule(false, "", false);
        assert_eq!(check_referer(&empty_list, Some("https://anything/")), Ok(()));
    }

    #[test]
    fn referer_wildcards_match_any_run_of_characters() {
        let rule = referer_rule(true, "*.example.com;https://*.xxx.co", false);
        assert_eq!(check_referer(&rule, Some("https://www.example.com/a")), Ok(()));
        assert_eq!(check_referer(&rule, Some("http://a.b.Example.com/")), Ok(()));
        assert!(check_referer(&rule, Some("https://example.com/")).is_err());
        assert_eq!(check_referer(&rule, Some("https://cdn.xxx.co/x")), Ok(()));
        assert!(check_referer(&rule, Some("http://cdn.xxx.co/x")).is_err());
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("a*b*c", "xxaYYbZZc"));
        assert!(!pattern_matches("a*b*c", "xxcYYbZZa"));
    }

    #[test]
    fn referer_parenthesised_rules_are_regular_expressions() {
        let rule = referer_rule(true, r"(^https?://(www\.)?good\.com/);other.net", false);
        assert_eq!(check_referer(&rule, Some("https://good.com/watch")), Ok(()));
        assert_eq!(check_referer(&rule, Some("http://www.good.com/")), Ok(()));
        assert!(check_referer(&rule, Some("https://evil.com/?r=https://good.com/")).is_err());
        assert_eq!(check_referer(&rule, Some("https://other.net/")), Ok(()));
        assert_eq!(validate_referer_pattern(r"(^https://a\.com)"), Ok(()));
        assert_eq!(validate_referer_pattern("*.a.com"), Ok(()));
        assert!(validate_referer_pattern("(unclosed[)").is_err());
        // An invalid regex matches nothing.
        let broken = referer_rule(true, "(unclosed[)", false);
        assert!(check_referer(&broken, Some("(unclosed[)")).is_err());
    }
}
