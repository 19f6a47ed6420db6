//! Request signatures of the Live API: TC3-HMAC-SHA256 and the legacy HmacSHA1/HmacSHA256 forms, exactly as the
//! official SDKs compute them (brief §1.2, §1.3).

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The service name in the TC3 credential scope.
pub const SERVICE: &str = "live";

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

fn hmac_sha1(key: &[u8], data: &[u8]) -> Vec<u8> {
    match Hmac::<Sha1>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Compares two byte strings in constant time (for equal lengths).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The TC3 canonical request.
pub fn tc3_canonical_request(
    method: &str,
    query: &str,
    canonical_headers: &str,
    signed_headers: &str,
    hashed_payload: &str,
) -> String {
    format!("{method}\n/\n{query}\n{canonical_headers}\n{signed_headers}\n{hashed_payload}")
}

/// The TC3 signing key, derived from the secret key and the credential date.
pub fn tc3_signing_key(secret_key: &str, date: &str) -> Vec<u8> {
    let k_date = hmac_sha256(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
    let k_service = hmac_sha256(&k_date, SERVICE.as_bytes());
    hmac_sha256(&k_service, b"tc3_request")
}

/// The TC3 signature (lowercase hex) of a canonical request.
pub fn tc3_signature(secret_key: &str, date: &str, timestamp: &str, canonical_request: &str) -> String {
    let string_to_sign = format!(
        "TC3-HMAC-SHA256\n{timestamp}\n{date}/{SERVICE}/tc3_request\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    hex(&hmac_sha256(&tc3_signing_key(secret_key, date), string_to_sign.as_bytes()))
}

/// The parts of a TC3 `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tc3Authorization {
    /// SecretId from the credential scope.
    pub secret_id: String,
    /// Date (`YYYY-MM-DD`) from the credential scope.
    pub date: String,
    /// `SignedHeaders`, as sent.
    pub signed_headers: String,
    /// The hex signature.
    pub signature: String,
}

/// Parses `TC3-HMAC-SHA256 Credential=<id>/<date>/live/tc3_request, SignedHeaders=..., Signature=...`.
/// `None` for anything else.
pub fn parse_tc3_authorization(value: &str) -> Option<Tc3Authorization> {
    let (algorithm, rest) = value.trim().split_once(' ')?;
    if algorithm != "TC3-HMAC-SHA256" {
        return None;
    }
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k.trim() {
            "Credential" => credential = Some(v.trim()),
            "SignedHeaders" => signed = Some(v.trim()),
            "Signature" => signature = Some(v.trim()),
            _ => {}
        }
    }
    let scope: Vec<&str> = credential?.split('/').collect();
    let [secret_id, date, service, terminator] = scope.as_slice() else {
        return None;
    };
    if *service != SERVICE || *terminator != "tc3_request" || secret_id.is_empty() {
        return None;
    }
    Some(Tc3Authorization {
        secret_id: secret_id.to_string(),
        date: date.to_string(),
        signed_headers: signed?.to_string(),
        signature: signature?.to_string(),
    })
}

/// The hash algorithm of a legacy signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyMethod {
    /// `HmacSHA1` (also when `SignatureMethod` is absent or unknown).
    HmacSha1,
    /// `HmacSHA256`.
    HmacSha256,
}

impl LegacyMethod {
    /// The method named by a `SignatureMethod` parameter.
    pub fn from_param(value: Option<&str>) -> LegacyMethod {
        if value == Some("HmacSHA256") { LegacyMethod::HmacSha256 } else { LegacyMethod::HmacSha1 }
    }
}

/// The legacy sign string: `METHOD + Host + "/?" + k=v&...` over the decoded params sorted by key, without
/// `Signature`.
pub fn legacy_sign_string(method: &str, host: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().filter(|(k, _)| k != "Signature").collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let joined: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{method}{host}/?{}", joined.join("&"))
}

/// The legacy signature (base64) of a sign string.
pub fn legacy_signature(method: LegacyMethod, secret_key: &str, sign_string: &str) -> String {
    let mac = match method {
        LegacyMethod::HmacSha1 => hmac_sha1(secret_key.as_bytes(), sign_string.as_bytes()),
        LegacyMethod::HmacSha256 => hmac_sha256(secret_key.as_bytes(), sign_string.as_bytes()),
    };
    base64::engine::general_purpose::STANDARD.encode(mac)
}

pub use ferrocast_formats::time::{datetime, utc_date};

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "AKIDferrocastEXAMPLE0000000000000000";
    const KEY: &str = "ferrocastSecretKeyEXAMPLE0000000";
    const BODY: &str = r#"{"DomainName": "push.example.com", "DomainType": 0, "PlayType": 1}"#;

    #[test]
    fn tc3_post_vector() {
        let payload = sha256_hex(BODY.as_bytes());
        assert_eq!(payload, "7a43ba38629f1193f4e43c4675480917c8d5e71e4d110f30ca056d5e921bce41");
        let canonical = tc3_canonical_request(
            "POST",
            "",
            "content-type:application/json\nhost:127.0.0.1:8080\n",
            "content-type;host",
            &payload,
        );
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            "5b3354f4468251d4d720fe56ff46eec6ba4c8025f2eef1928439ebb98e871bff"
        );
        assert_eq!(
            hex(&tc3_signing_key(KEY, "2023-11-14")),
            "f826b86670b314437f33b0d921815ff1064658d3030ca9ee8e0bcffdbe193853"
        );
        assert_eq!(
            tc3_signature(KEY, "2023-11-14", "1700000000", &canonical),
            "8a3a577482a682f4a715418d9c36693afb13fb4cea9dae7fe79b1e3761a8768d"
        );
        assert_eq!(utc_date(1_700_000_000), "2023-11-14");
    }

    #[test]
    fn tc3_get_vector() {
        let payload = sha256_hex(b"");
        assert_eq!(payload, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        let canonical = tc3_canonical_request(
            "GET",
            "DomainName=push.example.com&DomainType=0&PlayType=1",
            "content-type:application/x-www-form-urlencoded\nhost:127.0.0.1:8080\n",
            "content-type;host",
            &payload,
        );
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            "8809091b4055f905d3b13d2404435ae7668ee4de12605fa02746b4dc77b6a72b"
        );
        assert_eq!(
            tc3_signature(KEY, "2023-11-14", "1700000000", &canonical),
            "76a9d2cbbcfb967ad1b17576591faab077a0e9a242655b0e8a7e387951079343"
        );
    }

    #[test]
    fn parses_the_sdk_authorization_header() {
        let h = format!(
            "TC3-HMAC-SHA256 Credential={ID}/2023-11-14/live/tc3_request, SignedHeaders=content-type;host, \
             Signature=8a3a577482a682f4a715418d9c36693afb13fb4cea9dae7fe79b1e3761a8768d"
        );
        let a = parse_tc3_authorization(&h).expect("parses");
        assert_eq!(
            (a.secret_id.as_str(), a.date.as_str(), a.signed_headers.as_str()),
            (ID, "2023-11-14", "content-type;host")
        );
        assert!(parse_tc3_authorization(&h.replace("/live/", "/cvm/")).is_none());
        assert!(parse_tc3_authorization(&h.replace("TC3-HMAC-SHA256", "HMAC")).is_none());
        assert!(parse_tc3_authorization("TC3-HMAC-SHA256 Credential=x").is_none());
    }

    fn legacy_params(method: &str) -> Vec<(String, String)> {
        [
            ("DomainName", "push.example.com"),
            ("DomainType", "0"),
            ("PlayType", "1"),
            ("Action", "AddLiveDomain"),
            ("RequestClient", "SDK_PYTHON_3.1.195"),
            ("Nonce", "1234567"),
            ("Timestamp", "1700000000"),
            ("Version", "2018-08-01"),
            ("Region", "ap-guangzhou"),
            ("SecretId", ID),
            ("SignatureMethod", method),
            ("Language", "en-US"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn legacy_vectors() {
        let s = legacy_sign_string("GET", "127.0.0.1:8080", &legacy_params("HmacSHA1"));
        assert_eq!(
            s,
            format!(
                "GET127.0.0.1:8080/?Action=AddLiveDomain&DomainName=push.example.com&DomainType=0&Language=en-US&\
                 Nonce=1234567&PlayType=1&Region=ap-guangzhou&RequestClient=SDK_PYTHON_3.1.195&SecretId={ID}&\
                 SignatureMethod=HmacSHA1&Timestamp=1700000000&Version=2018-08-01"
            )
        );
        let cases = [
            ("HmacSHA1", "POST", "vV1uDmUN5T1jDtTer+n7M1fC1/8="),
            ("HmacSHA1", "GET", "fShIkGR+Y5ZHLi1LaZa2Ei9crMU="),
            ("HmacSHA256", "POST", "+uw9Yk9dZBaj+3Zb4Aj3sJR3MWPbZxm2+lTb6xvNnUM="),
            ("HmacSHA256", "GET", "8FIZSC0qrm/EHABTWb9HTha0z+QF+J529wzbFoXoGsw="),
        ];
        for (sm, method, want) in cases {
            let s = legacy_sign_string(method, "127.0.0.1:8080", &legacy_params(sm));
            assert_eq!(legacy_signature(LegacyMethod::from_param(Some(sm)), KEY, &s), want, "{sm} {method}");
        }
    }

    #[test]
    fn dates() {
        assert_eq!(datetime(1_700_000_000, 0), "2023-11-14 22:13:20");
        assert_eq!(datetime(1_700_000_000, 8 * 3600), "2023-11-15 06:13:20");
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
    }
}
