//! The Live API (version 2018-08-01) on the HTTP listener: `POST /` and `GET /`, signed with TC3-HMAC-SHA256 or the
//! legacy HmacSHA1/HmacSHA256 form, answered in the wire format the official SDKs expect (brief §1).

mod actions;
pub mod callbacks;
mod delay;
mod history;
mod params;
pub mod record;
pub mod sign;
pub mod snapshot;
pub mod streams;
pub mod timeshift;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};

use crate::credentials::Credentials;
use crate::policy::SnapshotCell;
use crate::store::{Store, unix_now};
pub use params::Params;

/// What an action returns: the fields of its `Response` (the endpoint adds `RequestId`), or an error.
pub(crate) type Out = Result<Map<String, Value>, ApiError>;

/// An action's response made of a JSON object's fields.
pub(crate) fn object(v: Value) -> Out {
    match v {
        Value::Object(m) => Ok(m),
        _ => Ok(Map::new()),
    }
}

/// `InvalidParameterValue` with a message.
pub(crate) fn invalid_value(message: impl Into<String>) -> ApiError {
    ApiError::new("InvalidParameterValue", message)
}

/// An optional integer parameter that must lie in `lo..=hi`; `default` when absent.
pub(crate) fn int_in_range(p: &Params, name: &str, lo: i64, hi: i64, default: i64) -> Result<i64, ApiError> {
    match p.int_opt(name)? {
        Some(v) if v < lo || v > hi => Err(invalid_value(format!("`{name}` must be between {lo} and {hi}, got {v}."))),
        v => Ok(v.unwrap_or(default)),
    }
}

/// The API version this server speaks.
pub const VERSION: &str = "2018-08-01";
/// Largest accepted timestamp skew, in seconds.
pub const MAX_SKEW: i64 = 300;
const MAX_BODY: usize = 1 << 20;

/// Shared state of the API router.
#[derive(Clone)]
pub struct ApiState {
    /// The database.
    pub store: Store,
    /// The one SecretId/SecretKey pair that may call the API.
    pub credentials: Arc<Credentials>,
    /// The in-memory copy of the store the access policy reads; refreshed after every modifying action.
    pub snapshot: Arc<SnapshotCell>,
    /// Most domains the store may hold (`CreateLimitCount`).
    pub max_domains: i64,
    /// The live streams, for the stream management actions.
    pub hub: ferrocast_hub::Hub,
    /// Push rates measured between queries (DescribeLiveStreamPushInfoList).
    pub rates: Arc<streams::RateMeter>,
}

/// An API error: a Tencent error code and message, sent as HTTP 200 with `Response.Error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// E.g. `AuthFailure.SignatureFailure`.
    pub code: String,
    /// Human-readable text.
    pub message: String,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: &str, message: impl Into<String>) -> ApiError {
        ApiError { code: code.to_string(), message: message.into() }
    }

    /// `MissingParameter` naming the field.
    pub fn missing(name: &str) -> ApiError {
        ApiError::new("MissingParameter", format!("The request is missing a required parameter `{name}`."))
    }

    /// `InternalError` (store failure etc.).
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "api internal error");
        ApiError::new("InternalError", "Internal error.")
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::internal(e)
    }
}

/// The router serving `GET /` and `POST /`.
pub fn api_router(state: ApiState) -> Router {
    Router::new().route("/", get(handle).post(handle)).with_state(state)
}

/// A fresh UUID v4 in its canonical text form.
fn request_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = sign::hex(&b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

async fn handle(State(state): State<ApiState>, req: Request) -> Response {
    let id = request_id();
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return reply(&id, "", Err(ApiError::new("InvalidParameter", "request body too large or unreadable")));
        }
    };
    let incoming = Incoming {
        method: &parts.method,
        host: host_of(&parts.headers, &parts.uri),
        query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        body: &body,
    };
    let (action, result) = match authenticate(&incoming, &state.credentials, unix_now()) {
        Ok(call) => {
            let action = call.action.clone();
            (action, actions::dispatch(&state, &call.action, call.params).await)
        }
        Err(e) => (String::new(), Err(e)),
    };
    reply(&id, &action, result)
}

fn reply(id: &str, action: &str, result: Result<Map<String, Value>, ApiError>) -> Response {
    let body = match result {
        Ok(mut fields) => {
            tracing::debug!(request_id = id, action, "api ok");
            fields.insert("RequestId".into(), Value::String(id.to_string()));
            json!({ "Response": fields })
        }
        Err(e) => {
            tracing::info!(request_id = id, action, code = %e.code, message = %e.message, "api error");
            json!({ "Response": { "Error": { "Code": e.code, "Message": e.message }, "RequestId": id } })
        }
    };
    // axum's Json sets exactly `Content-Type: application/json` (the Python SDK ignores errors otherwise).
    Json(body).into_response()
}

fn host_of<'a>(headers: &'a HeaderMap, uri: &'a axum::http::Uri) -> &'a str {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("")
}

/// One received request, as the verifier needs it.
#[derive(Debug)]
pub struct Incoming<'a> {
    /// GET or POST.
    pub method: &'a Method,
    /// The `Host` header as sent (port included).
    pub host: &'a str,
    /// The raw query string.
    pub query: &'a str,
    /// Every header.
    pub headers: &'a HeaderMap,
    /// The raw body.
    pub body: &'a [u8],
}

/// An authenticated call: the action and its params as a JSON object.
#[derive(Debug)]
pub struct Call {
    /// The action name.
    pub action: String,
    /// The action's params.
    pub params: Params,
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn is_form(headers: &HeaderMap) -> bool {
    header_str(headers, "content-type").is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
}

fn decode_form(raw: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(raw).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

fn signature_failure() -> ApiError {
    ApiError::new(
        "AuthFailure.SignatureFailure",
        "The provided credentials could not be validated. Please check your signature is correct.",
    )
}

fn signature_expire() -> ApiError {
    ApiError::new(
        "AuthFailure.SignatureExpire",
        "Signature expired. Timestamp and server time cannot differ by more than five minutes.",
    )
}

fn secret_id_not_found() -> ApiError {
    ApiError::new(
        "AuthFailure.SecretIdNotFound",
        "The SecretId is not found, please ensure that your SecretId is correct.",
    )
}

fn parse_timestamp(raw: Option<&str>, name: &str) -> Result<i64, ApiError> {
    let raw = raw.ok_or_else(|| ApiError::missing(name))?;
    raw.trim().parse::<i64>().map_err(|_| ApiError::new("InvalidParameter", format!("`{name}` is not a UNIX time")))
}

fn check_version_action(
    action: Option<&str>,
    version: Option<&str>,
    action_name: &str,
    version_name: &str,
) -> Result<String, ApiError> {
    let action = action.filter(|a| !a.is_empty()).ok_or_else(|| ApiError::missing(action_name))?;
    let version = version.filter(|v| !v.is_empty()).ok_or_else(|| ApiError::missing(version_name))?;
    if version != VERSION {
        return Err(ApiError::new("NoSuchVersion", format!("The API version `{version}` does not exist.")));
    }
    Ok(action.to_string())
}

/// Verifies a request's signature (TC3 or legacy) and extracts its action and params (brief §1.5 order of checks).
pub fn authenticate(req: &Incoming<'_>, creds: &Credentials, now: i64) -> Result<Call, ApiError> {
    if let Some(auth) = header_str(req.headers, "authorization") {
        return authenticate_tc3(req, auth, creds, now);
    }
    let raw: &[u8] = if *req.method == Method::POST { req.body } else { req.query.as_bytes() };
    let params = decode_form(raw);
    if params.iter().any(|(k, _)| k == "Signature") {
        return authenticate_legacy(req, params, creds, now);
    }
    Err(ApiError::new("AuthFailure.InvalidAuthorization", "The request has no Authorization header and no Signature."))
}

fn authenticate_tc3(req: &Incoming<'_>, auth: &str, creds: &Credentials, now: i64) -> Result<Call, ApiError> {
    let a = sign::parse_tc3_authorization(auth)
        .ok_or_else(|| ApiError::new("AuthFailure.InvalidAuthorization", "The Authorization header is malformed."))?;
    if a.secret_id != creds.secret_id {
        return Err(secret_id_not_found());
    }
    let ts_raw = header_str(req.headers, "x-tc-timestamp");
    let ts = parse_timestamp(ts_raw, "X-TC-Timestamp")?;
    if (now - ts).abs() > MAX_SKEW {
        return Err(signature_expire());
    }
    if a.date != sign::utc_date(ts) {
        return Err(signature_failure());
    }
    let hashed_payload = if header_str(req.headers, "x-tc-content-sha256") == Some("UNSIGNED-PAYLOAD") {
        sign::sha256_hex(b"UNSIGNED-PAYLOAD")
    } else {
        sign::sha256_hex(req.body)
    };
    let query = if *req.method == Method::GET { req.query } else { "" };
    let mut canonical_headers = String::new();
    for name in a.signed_headers.split(';') {
        let value = if name.eq_ignore_ascii_case("host") {
            req.host.to_string()
        } else {
            req.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
        };
        canonical_headers.push_str(&format!("{name}:{}\n", value.trim()));
    }
    let ts_text = ts_raw.unwrap_or_default().trim();
    let mut ok = false;
    for headers in [canonical_headers.clone(), canonical_headers.to_ascii_lowercase()] {
        let canonical =
            sign::tc3_canonical_request(req.method.as_str(), query, &headers, &a.signed_headers, &hashed_payload);
        let expected = sign::tc3_signature(&creds.secret_key, &a.date, ts_text, &canonical);
        if sign::constant_time_eq(expected.as_bytes(), a.signature.to_ascii_lowercase().as_bytes()) {
            ok = true;
            break;
        }
    }
    if !ok {
        return Err(signature_failure());
    }
    let action = check_version_action(
        header_str(req.headers, "x-tc-action"),
        header_str(req.headers, "x-tc-version"),
        "X-TC-Action",
        "X-TC-Version",
    )?;
    let params = if *req.method == Method::GET {
        Params::from_pairs(decode_form(req.query.as_bytes()))
    } else if is_form(req.headers) {
        Params::from_pairs(decode_form(req.body))
    } else {
        Params::from_json(req.body)?
    };
    Ok(Call { action, params })
}

/// The common params of the legacy form, stripped before the action sees its params.
const LEGACY_COMMON: &[&str] = &[
    "Action",
    "Version",
    "Timestamp",
    "Nonce",
    "SecretId",
    "SignatureMethod",
    "Signature",
    "Region",
    "Token",
    "Language",
    "RequestClient",
];

fn authenticate_legacy(
    req: &Incoming<'_>,
    params: Vec<(String, String)>,
    creds: &Credentials,
    now: i64,
) -> Result<Call, ApiError> {
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    for required in ["SecretId", "Signature", "Timestamp", "Nonce", "Action"] {
        if get(required).is_none() {
            return Err(ApiError::missing(required));
        }
    }
    if get("SecretId") != Some(creds.secret_id.as_str()) {
        return Err(secret_id_not_found());
    }
    let ts = parse_timestamp(get("Timestamp"), "Timestamp")?;
    if (now - ts).abs() > MAX_SKEW {
        return Err(signature_expire());
    }
    let method = sign::LegacyMethod::from_param(get("SignatureMethod"));
    let sign_string = sign::legacy_sign_string(req.method.as_str(), req.host, &params);
    let expected = sign::legacy_signature(method, &creds.secret_key, &sign_string);
    let given = get("Signature").unwrap_or_default();
    if !sign::constant_time_eq(expected.as_bytes(), given.as_bytes()) {
        return Err(signature_failure());
    }
    let action = check_version_action(get("Action"), get("Version"), "Action", "Version")?;
    let rest = params.into_iter().filter(|(k, _)| !LEGACY_COMMON.contains(&k.as_str())).collect();
    Ok(Call { action, params: Params::from_pairs(rest) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const ID: &str = "AKIDferrocastEXAMPLE0000000000000000";
    const KEY: &str = "ferrocastSecretKeyEXAMPLE0000000";
    const BODY: &str = r#"{"DomainName": "push.example.com", "DomainType": 0, "PlayType": 1}"#;
    const SIG: &str = "8a3a577482a682f4a715418d9c36693afb13fb4cea9dae7fe79b1e3761a8768d";

    fn creds() -> Credentials {
        Credentials { secret_id: ID.into(), secret_key: KEY.into() }
    }

    fn tc3_headers(sig: &str, id: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let auth = format!(
            "TC3-HMAC-SHA256 Credential={id}/2023-11-14/live/tc3_request, SignedHeaders=content-type;host, Signature={sig}"
        );
        h.insert("authorization", HeaderValue::from_str(&auth).expect("ascii"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert("host", HeaderValue::from_static("127.0.0.1:8080"));
        h.insert("x-tc-action", HeaderValue::from_static("AddLiveDomain"));
        h.insert("x-tc-timestamp", HeaderValue::from_static("1700000000"));
        h.insert("x-tc-version", HeaderValue::from_static("2018-08-01"));
        h
    }

    fn run(headers: &HeaderMap, body: &str, now: i64) -> Result<Call, ApiError> {
        let req = Incoming { method: &Method::POST, host: "127.0.0.1:8080", query: "", headers, body: body.as_bytes() };
        authenticate(&req, &creds(), now)
    }

    #[test]
    fn tc3_request_a_is_accepted_and_parsed() {
        let call = run(&tc3_headers(SIG, ID), BODY, 1_700_000_100).expect("valid");
        assert_eq!(call.action, "AddLiveDomain");
        assert_eq!(call.params.str_opt("DomainName").expect("str"), Some("push.example.com".to_string()));
    }

    #[test]
    fn tc3_failures_have_the_documented_codes() {
        let bad = SIG.replace('8', "9");
        assert_eq!(
            run(&tc3_headers(&bad, ID), BODY, 1_700_000_000).expect_err("bad").code,
            "AuthFailure.SignatureFailure"
        );
        assert_eq!(
            run(&tc3_headers(SIG, ID), &BODY.replace("push", "pull"), 1_700_000_000).expect_err("body").code,
            "AuthFailure.SignatureFailure",
            "the raw body is signed"
        );
        assert_eq!(
            run(&tc3_headers(SIG, "AKIDother"), BODY, 1_700_000_000).expect_err("id").code,
            "AuthFailure.SecretIdNotFound"
        );
        assert_eq!(
            run(&tc3_headers(SIG, ID), BODY, 1_700_000_301).expect_err("late").code,
            "AuthFailure.SignatureExpire"
        );
        assert!(run(&tc3_headers(SIG, ID), BODY, 1_700_000_300).is_ok(), "exactly 5 minutes is still fine");
        let mut h = tc3_headers(SIG, ID);
        h.insert("x-tc-version", HeaderValue::from_static("2017-01-01"));
        assert_eq!(run(&h, BODY, 1_700_000_000).expect_err("version").code, "NoSuchVersion");
        h.remove("authorization");
        assert_eq!(run(&h, BODY, 1_700_000_000).expect_err("no auth").code, "AuthFailure.InvalidAuthorization");
    }

    #[test]
    fn legacy_form_post_vector_is_accepted() {
        let body = format!(
            "DomainName=push.example.com&DomainType=0&PlayType=1&Action=AddLiveDomain&RequestClient=SDK_PYTHON_3.1.195&\
             Nonce=1234567&Timestamp=1700000000&Version=2018-08-01&Region=ap-guangzhou&SecretId={ID}&\
             SignatureMethod=HmacSHA1&Language=en-US&Signature=vV1uDmUN5T1jDtTer%2Bn7M1fC1%2F8%3D"
        );
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/x-www-form-urlencoded"));
        let call = run(&h, &body, 1_700_000_000).expect("valid legacy");
        assert_eq!(call.action, "AddLiveDomain");
        assert_eq!(call.params.int_opt("DomainType").expect("int"), Some(0));
        assert_eq!(call.params.str_opt("Nonce").expect("stripped"), None, "common params are stripped");
        let tampered = body.replace("PlayType=1", "PlayType=2");
        assert_eq!(run(&h, &tampered, 1_700_000_000).expect_err("bad").code, "AuthFailure.SignatureFailure");
        assert_eq!(run(&h, &body, 1_699_999_000).expect_err("early").code, "AuthFailure.SignatureExpire");
        let no_nonce = body.replace("Nonce=1234567&", "");
        assert_eq!(run(&h, &no_nonce, 1_700_000_000).expect_err("nonce").code, "MissingParameter");
    }
}
