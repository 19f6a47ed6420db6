//! Callback configuration actions (brief §2.4): templates, rules and `DescribeCallbackRecordsList`.

use serde_json::{Map, Value, json};

use super::sign::datetime;
use super::streams::{iso_utc, parse_iso_utc};
use super::{ApiError, ApiState, Out, Params, object};
use crate::store::unix_now;
use crate::store_callbacks::{CallbackTemplate, RecordQuery};

const BEIJING: i64 = 8 * 3600;
/// Most templates per account.
const MAX_TEMPLATES: i64 = 50;

fn not_found(id: i64) -> ApiError {
    ApiError::new("InternalError.ConfNotFound", format!("The callback template {id} does not exist."))
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new("InvalidParameter", message)
}

/// The URL fields of a template, as (param name, field accessor).
type UrlField = (&'static str, fn(&mut CallbackTemplate) -> &mut String);

const URL_FIELDS: &[UrlField] = &[
    ("StreamBeginNotifyUrl", |t| &mut t.stream_begin_url),
    ("StreamEndNotifyUrl", |t| &mut t.stream_end_url),
    ("RecordNotifyUrl", |t| &mut t.record_url),
    ("RecordStatusNotifyUrl", |t| &mut t.record_status_url),
    ("SnapshotNotifyUrl", |t| &mut t.snapshot_url),
    ("PornCensorshipNotifyUrl", |t| &mut t.porn_url),
    ("StreamMixNotifyUrl", |t| &mut t.stream_mix_url),
    ("PushExceptionNotifyUrl", |t| &mut t.push_exception_url),
    ("AudioAuditNotifyUrl", |t| &mut t.audio_audit_url),
    ("RecordExceptionNotifyUrl", |t| &mut t.record_exception_url),
];

fn check_url(name: &str, url: &str) -> Result<(), ApiError> {
    if url.is_empty() {
        return Ok(());
    }
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && url.len() <= 512
        && !url.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control());
    if ok {
        Ok(())
    } else {
        Err(ApiError::new("InvalidParameter.UrlNotSafe", format!("`{name}` is not an acceptable URL.")))
    }
}

/// Applies the params present in `p` to `t`.
fn apply(p: &Params, t: &mut CallbackTemplate) -> Result<(), ApiError> {
    if let Some(name) = p.str_opt("TemplateName")? {
        let ok =
            !name.is_empty() && name.len() <= 255 && name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-');
        if !ok {
            return Err(invalid("`TemplateName` must be 1-255 bytes of letters, digits, `_` and `-`."));
        }
        t.name = name;
    }
    if let Some(d) = p.str_opt("Description")? {
        if d.len() > 1024 {
            return Err(invalid("`Description` is longer than 1024 bytes."));
        }
        t.description = d;
    }
    for (name, field) in URL_FIELDS {
        if let Some(url) = p.str_opt(name)? {
            let url = url.trim().to_string();
            check_url(name, &url)?;
            *field(t) = url;
        }
    }
    if let Some(k) = p.str_opt("CallbackKey")? {
        t.callback_key = k;
    }
    if let Some(levels) = p.str_list_opt("RecordExceptionLevels")? {
        if let Some(bad) = levels.iter().find(|l| !matches!(l.as_str(), "error" | "warning" | "info")) {
            return Err(ApiError::new("InvalidParameterValue", format!("Unknown RecordExceptionLevels `{bad}`.")));
        }
        t.record_exception_levels = Value::from(levels).to_string();
    }
    Ok(())
}

fn has_url(t: &CallbackTemplate) -> bool {
    let mut t = t.clone();
    URL_FIELDS.iter().any(|(_, f)| !f(&mut t).is_empty())
}

fn template_info(t: &CallbackTemplate) -> Value {
    let levels: Value = serde_json::from_str(&t.record_exception_levels).unwrap_or_else(|_| json!([]));
    json!({
        "TemplateId": t.id,
        "TemplateName": t.name,
        "Description": t.description,
        "StreamBeginNotifyUrl": t.stream_begin_url,
        "StreamMixNotifyUrl": t.stream_mix_url,
        "StreamEndNotifyUrl": t.stream_end_url,
        "RecordNotifyUrl": t.record_url,
        "SnapshotNotifyUrl": t.snapshot_url,
        "PornCensorshipNotifyUrl": t.porn_url,
        "CallbackKey": t.callback_key,
        "PushExceptionNotifyUrl": t.push_exception_url,
        "AudioAuditNotifyUrl": t.audio_audit_url,
        "RecordExceptionNotifyUrl": t.record_exception_url,
        "RecordExceptionLevels": levels,
    })
}

/// `CreateLiveCallbackTemplate`.
pub async fn create_template(state: &ApiState, p: &Params) -> Out {
    p.str_req("TemplateName")?;
    let mut t = CallbackTemplate { record_exception_levels: "[]".into(), ..CallbackTemplate::default() };
    apply(p, &mut t)?;
    if !has_url(&t) {
        return Err(invalid("At least one callback URL is required."));
    }
    if state.store.callback_template_count().await? >= MAX_TEMPLATES {
        return Err(ApiError::new("InternalError.ConfOutLimit", "At most 50 callback templates can be created."));
    }
    let id = state.store.create_callback_template(&t).await?;
    object(json!({ "TemplateId": id }))
}

/// `ModifyLiveCallbackTemplate`.
pub async fn modify_template(state: &ApiState, p: &Params) -> Out {
    let id = p.int_req("TemplateId")?;
    let mut t = state.store.callback_template(id).await?.ok_or_else(|| not_found(id))?;
    apply(p, &mut t)?;
    if !state.store.update_callback_template(&t).await? {
        return Err(not_found(id));
    }
    Ok(Map::new())
}

/// `DescribeLiveCallbackTemplate`.
pub async fn describe_template(state: &ApiState, p: &Params) -> Out {
    let id = p.int_req("TemplateId")?;
    let t = state.store.callback_template(id).await?.ok_or_else(|| not_found(id))?;
    object(json!({ "Template": template_info(&t) }))
}

/// `DescribeLiveCallbackTemplates`.
pub async fn describe_templates(state: &ApiState, _p: &Params) -> Out {
    let all: Vec<Value> = state.store.callback_templates().await?.iter().map(template_info).collect();
    object(json!({ "Templates": all }))
}

/// `DeleteLiveCallbackTemplate`.
pub async fn delete_template(state: &ApiState, p: &Params) -> Out {
    let id = p.int_req("TemplateId")?;
    if state.store.callback_template(id).await?.is_none() {
        return Err(not_found(id));
    }
    if state.store.callback_template_in_use(id).await? {
        return Err(ApiError::new("FailedOperation.ConfInUsed", format!("The template {id} is bound by a rule.")));
    }
    state.store.delete_callback_template(id).await?;
    Ok(Map::new())
}

fn rule_domain(p: &Params) -> Result<String, ApiError> {
    let d = p.str_req("DomainName")?.trim().to_ascii_lowercase();
    let label_ok =
        |l: &str| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if d.is_empty() || d.len() > 253 || !d.split('.').all(label_ok) {
        return Err(ApiError::new("InvalidParameter.DomainFormatError", format!("`{d}` is not a valid domain name.")));
    }
    Ok(d)
}

/// `CreateLiveCallbackRule` (an upsert on (DomainName, AppName)).
pub async fn create_rule(state: &ApiState, p: &Params) -> Out {
    let domain = rule_domain(p)?;
    let app = p.str_req("AppName")?.trim().to_string();
    let id = p.int_req("TemplateId")?;
    if state.store.callback_template(id).await?.is_none() {
        return Err(ApiError::new("InvalidParameter.ConfNotFound", format!("The template {id} does not exist.")));
    }
    state.store.upsert_callback_rule(&domain, &app, id).await?;
    Ok(Map::new())
}

/// `DescribeLiveCallbackRules`.
pub async fn describe_rules(state: &ApiState, _p: &Params) -> Out {
    let rules: Vec<Value> = state
        .store
        .callback_rules()
        .await?
        .iter()
        .map(|r| {
            json!({
                "CreateTime": datetime(r.created_at, BEIJING),
                "UpdateTime": datetime(r.updated_at, BEIJING),
                "TemplateId": r.template_id,
                "DomainName": r.domain,
                "AppName": r.app,
            })
        })
        .collect();
    object(json!({ "Rules": rules }))
}

/// `DeleteLiveCallbackRule`.
pub async fn delete_rule(state: &ApiState, p: &Params) -> Out {
    let domain = rule_domain(p)?;
    let app = p.str_req("AppName")?.trim().to_string();
    if !state.store.delete_callback_rule(&domain, &app).await? {
        return Err(ApiError::new("FailedOperation.NotFound", "The callback rule does not exist."));
    }
    Ok(Map::new())
}

/// A time param in UTC ISO 8601 or Beijing `YYYY-MM-DD hh:mm:ss`; returns (UNIX s, whether it was ISO).
fn parse_time(p: &Params, name: &str) -> Result<(i64, bool), ApiError> {
    let raw = p.str_req(name)?;
    let raw = raw.trim();
    if raw.contains('T') || raw.contains('t') {
        return parse_iso_utc(raw)
            .map(|t| (t, true))
            .ok_or_else(|| ApiError::new("InvalidParameterValue", format!("`{name}` is not a valid time.")));
    }
    parse_iso_utc(&format!("{raw}Z"))
        .map(|t| (t - BEIJING, false))
        .ok_or_else(|| ApiError::new("InvalidParameterValue", format!("`{name}` is not a valid time.")))
}

/// `DescribeCallbackRecordsList`: one row per delivery attempt.
pub async fn records_list(state: &ApiState, p: &Params) -> Out {
    let (start, iso) = parse_time(p, "StartTime")?;
    let (end, _) = parse_time(p, "EndTime")?;
    let bad = |m: &str| ApiError::new("InvalidParameterValue", m.to_string());
    if end < start {
        return Err(bad("`EndTime` is before `StartTime`."));
    }
    if end - start > 86_400 {
        return Err(bad("The time span must not exceed one day."));
    }
    if start < unix_now() - 14 * 86_400 {
        return Err(bad("Only the last 14 days can be queried."));
    }
    let stream = p.str_req("StreamName")?.trim().to_string();
    let page_num = p.int_req("PageNum")?;
    let page_size = p.int_req("PageSize")?;
    if page_num < 1 || !(1..=10_000).contains(&page_size) {
        return Err(bad("`PageNum` must be ≥ 1 and `PageSize` between 1 and 10000."));
    }
    let q =
        RecordQuery { start, end, stream, event_type: p.int_opt("EventType")?, result_code: p.int_opt("ResultCode")? };
    let (rows, total) = state.store.callback_records(&q, (page_num - 1).saturating_mul(page_size), page_size).await?;
    let fmt = |t: i64| if iso { iso_utc(t) } else { datetime(t, BEIJING) };
    let list: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "EventTime": fmt(r.event_time),
                "EventType": r.event_type,
                "Request": r.request,
                "Response": r.response,
                "ResponseTime": fmt(r.response_time_ms / 1000),
                "ResultCode": r.result_code,
                "StreamId": r.stream,
            })
        })
        .collect();
    object(json!({
        "DataInfoList": list,
        "PageNum": page_num,
        "PageSize": page_size,
        "TotalNum": total,
        "TotalPage": (total + page_size - 1) / page_size,
    }))
}
