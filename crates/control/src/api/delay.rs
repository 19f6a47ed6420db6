//! Delayed playback through the API: AddDelayLiveStream, ResumeDelayLiveStream, DescribeLiveDelayInfoList.
//! A setting applies when the stream's next push starts (the service's "configuration caching"); a push URL's
//! own `txDelayTime` wins over it.

use serde_json::{Value, json};

use super::streams::{iso_utc, parse_iso_utc};
use super::{ApiError, ApiState, Out, Params, invalid_value, object};
use crate::store::unix_now;
use crate::store_delay::DelayedStream;

/// Default and longest validity of a delay setting (7 days).
const MAX_VALIDITY_SECS: i64 = 7 * 86_400;

fn target(state: &ApiState, p: &Params) -> Result<(String, String, String), ApiError> {
    let domain = p.str_req("DomainName")?.trim().to_ascii_lowercase();
    let app = p.str_opt("AppName")?.map(|a| a.trim().to_string()).filter(|a| !a.is_empty());
    let stream = p.str_req("StreamName")?.trim().to_string();
    if domain.is_empty() || stream.is_empty() {
        return Err(invalid_value("`DomainName` and `StreamName` must not be empty."));
    }
    super::streams::check_push_domain(state, &domain)?;
    Ok((domain, app.unwrap_or_else(|| "live".to_string()), stream))
}

/// AddDelayLiveStream: sets a stream's delay (1–600 s) until `ExpireTime` (default and at most 7 days).
pub async fn add(state: &ApiState, p: &Params) -> Out {
    let (domain, app, stream) = target(state, p)?;
    let delay = p.int_req("DelayTime")?;
    if !(1..=ferrocast_hub::MAX_DELAY_SECS as i64).contains(&delay) {
        return Err(invalid_value(format!(
            "`DelayTime` must be between 1 and {} seconds, got {delay}.",
            ferrocast_hub::MAX_DELAY_SECS
        )));
    }
    let now = unix_now();
    let expire_at = match p.str_opt("ExpireTime")?.filter(|t| !t.trim().is_empty()) {
        None => now + MAX_VALIDITY_SECS,
        Some(t) => {
            let at = parse_iso_utc(&t).ok_or_else(|| {
                invalid_value(format!("`ExpireTime` is not a UTC ISO 8601 time (`2018-11-29T19:00:00Z`): {t}"))
            })?;
            if at <= now {
                return Err(invalid_value("`ExpireTime` must be in the future."));
            }
            if at > now + MAX_VALIDITY_SECS {
                return Err(invalid_value("`ExpireTime` must be at most 7 days from now."));
            }
            at
        }
    };
    let row = DelayedStream { domain, app, stream, delay_secs: delay, created_at: now, expire_at };
    state.store.set_delay(&row).await?;
    tracing::info!(domain = %row.domain, app = %row.app, stream = %row.stream, delay, expire_at, "AddDelayLiveStream");
    object(json!({}))
}

/// ResumeDelayLiveStream: removes a stream's delay (from its next push on).
pub async fn resume(state: &ApiState, p: &Params) -> Out {
    let (domain, app, stream) = target(state, p)?;
    if !state.store.clear_delay(&domain, &app, &stream).await? {
        return Err(ApiError::new(
            "ResourceNotFound.StreamNotExist",
            format!("No delay is set for {domain}/{app}/{stream}."),
        ));
    }
    object(json!({}))
}

/// DescribeLiveDelayInfoList: every delay setting, with `Status` 1 (in force) or -1 (expired).
pub async fn list(state: &ApiState, _p: &Params) -> Out {
    let now = unix_now();
    let list: Vec<Value> = state
        .store
        .delayed_streams()
        .await?
        .iter()
        .map(|d| {
            json!({
                "DomainName": d.domain,
                "AppName": d.app,
                "StreamName": d.stream,
                "DelayInterval": d.delay_secs,
                "CreateTime": iso_utc(d.created_at),
                "ExpireTime": iso_utc(d.expire_at),
                "Status": if now < d.expire_at { 1 } else { -1 },
            })
        })
        .collect();
    object(json!({ "DelayInfoList": list }))
}
