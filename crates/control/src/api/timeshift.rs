//! Time-shift actions: templates, rules, `DescribeTimeShiftStreamList` and `DescribeTimeShiftRecordDetail`.
//!
//! `Duration` (retention, seconds): the service accepts 86400, 259200, 604800, 1296000 and 2592000; ferrocast also
//! accepts any value from 10 to 2592000 (short retention is useful for tests and small deployments).
//! `ItemDuration` (segment length): 3–10 s, default 5.

use serde_json::{Map, Value, json};

use super::record::{domain_param, rules_answer};
use super::{ApiError, ApiState, Out, Params, object};
use crate::store_timeshift::{TimeShiftTemplate, rule_part};

/// Most templates per account.
const MAX_TEMPLATES: i64 = 50;
/// Longest retention (30 days).
const MAX_DURATION: i64 = 2_592_000;

fn not_found(id: i64) -> ApiError {
    ApiError::new("ResourceNotFound.TemplateNotFound", format!("The time-shift template {id} does not exist."))
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new("InvalidParameter", message)
}

/// Applies the params present in `p` to `t`.
fn apply(p: &Params, t: &mut TimeShiftTemplate) -> Result<(), ApiError> {
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
    if let Some(d) = p.int_opt("Duration")? {
        if !(10..=MAX_DURATION).contains(&d) {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!("`Duration` must be between 10 and {MAX_DURATION} seconds, got {d}."),
            ));
        }
        t.duration = d;
    }
    if let Some(d) = p.int_opt("ItemDuration")? {
        if !(3..=10).contains(&d) {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!("`ItemDuration` must be between 3 and 10 seconds, got {d}."),
            ));
        }
        t.item_duration = d;
    }
    if let Some(a) = p.str_opt("Area")? {
        t.area = a;
    }
    if let Some(w) = p.bool_opt("RemoveWatermark")? {
        t.remove_watermark = w;
    }
    if let Some(ids) = p.int_list_opt("TranscodeTemplateIds")? {
        if ids.iter().any(|i| *i < 0) {
            return Err(invalid("`TranscodeTemplateIds` must be non-negative."));
        }
        t.transcode_template_ids = Value::from(ids).to_string();
    }
    Ok(())
}

fn template_info(t: &TimeShiftTemplate) -> Value {
    let ids: Value = serde_json::from_str(&t.transcode_template_ids).unwrap_or_else(|_| json!([]));
    json!({
        "TemplateName": t.name,
        "Duration": t.duration,
        "ItemDuration": t.item_duration,
        "TemplateId": t.id,
        "Description": t.description,
        "Area": t.area,
        "RemoveWatermark": t.remove_watermark,
        "TranscodeTemplateIds": ids,
    })
}

/// `CreateLiveTimeShiftTemplate`.
pub async fn create_template(state: &ApiState, p: &Params) -> Out {
    p.str_req("TemplateName")?;
    p.int_req("Duration")?;
    let mut t = TimeShiftTemplate {
        item_duration: 5,
        area: "Mainland".into(),
        transcode_template_ids: "[]".into(),
        ..TimeShiftTemplate::default()
    };
    apply(p, &mut t)?;
    if state.store.timeshift_template_count().await? >= MAX_TEMPLATES {
        return Err(ApiError::new("FailedOperation", "At most 50 time-shift templates can be created."));
    }
    let id = state.store.create_timeshift_template(&t).await?;
    object(json!({ "TemplateId": id }))
}

/// `ModifyLiveTimeShiftTemplate`.
pub async fn modify_template(state: &ApiState, p: &Params) -> Out {
    let id = p.int_req("TemplateId")?;
    let mut t = state.store.timeshift_template(id).await?.ok_or_else(|| not_found(id))?;
    apply(p, &mut t)?;
    if !state.store.update_timeshift_template(&t).await? {
        return Err(not_found(id));
    }
    Ok(Map::new())
}

/// `DescribeLiveTimeShiftTemplates`.
pub async fn describe_templates(state: &ApiState, _p: &Params) -> Out {
    let all: Vec<Value> = state.store.timeshift_templates().await?.iter().map(template_info).collect();
    object(json!({ "Templates": all }))
}

/// `DeleteLiveTimeShiftTemplate`.
pub async fn delete_template(state: &ApiState, p: &Params) -> Out {
    let id = p.int_req("TemplateId")?;
    if state.store.timeshift_template(id).await?.is_none() {
        return Err(not_found(id));
    }
    if state.store.timeshift_template_in_use(id).await? {
        return Err(ApiError::new("FailedOperation.ConfInUsed", format!("The template {id} is bound by a rule.")));
    }
    state.store.delete_timeshift_template(id).await?;
    Ok(Map::new())
}

/// `CreateLiveTimeShiftRule` (an upsert on (DomainName, AppName, StreamName); empty or `*` = every one).
pub async fn create_rule(state: &ApiState, p: &Params) -> Out {
    let domain = domain_param(p, "DomainName")?;
    let app = p.str_opt("AppName")?.unwrap_or_default();
    let stream = p.str_opt("StreamName")?.unwrap_or_default();
    let id = p.int_req("TemplateId")?;
    if state.store.timeshift_template(id).await?.is_none() {
        return Err(ApiError::new("InvalidParameter.ConfNotFound", format!("The template {id} does not exist.")));
    }
    state.store.upsert_timeshift_rule(&domain, &app, &stream, id).await?;
    Ok(Map::new())
}

/// `DescribeLiveTimeShiftRules`.
pub async fn describe_rules(state: &ApiState, _p: &Params) -> Out {
    rules_answer(&state.store.timeshift_rules().await?)
}

/// `DeleteLiveTimeShiftRule`.
pub async fn delete_rule(state: &ApiState, p: &Params) -> Out {
    let domain = domain_param(p, "DomainName")?;
    let app = rule_part(&p.str_opt("AppName")?.unwrap_or_default());
    let stream = rule_part(&p.str_opt("StreamName")?.unwrap_or_default());
    if !state.store.delete_timeshift_rule(&domain, &app, &stream).await? {
        return Err(ApiError::new("FailedOperation.NotFound", "The time-shift rule does not exist."));
    }
    Ok(Map::new())
}

fn time_range(p: &Params) -> Result<(i64, i64), ApiError> {
    let start = p.int_req("StartTime")?;
    let end = p.int_req("EndTime")?;
    if end < start {
        return Err(ApiError::new("InvalidParameterValue", "`EndTime` is before `StartTime`."));
    }
    Ok((start, end))
}

/// `DescribeTimeShiftStreamList`: one entry per recording session overlapping [StartTime, EndTime].
pub async fn stream_list(state: &ApiState, p: &Params) -> Out {
    let (start, end) = time_range(p)?;
    let stream = p.str_opt("StreamName")?.unwrap_or_default();
    let domain = p.str_opt("Domain")?.unwrap_or_default().trim().to_ascii_lowercase();
    let page_size = match p.int_opt("PageSize")? {
        None | Some(0) => 100,
        Some(n) if (1..=100).contains(&n) => n,
        Some(n) => return Err(ApiError::new("InvalidParameterValue", format!("`PageSize` must be 0-100, got {n}."))),
    };
    let page_num = p.int_opt("PageNum")?.unwrap_or(1).max(1);
    let sessions = state.store.timeshift_sessions(&domain, None, &stream, start * 1000, end * 1000).await?;
    let skip = usize::try_from((page_num - 1).saturating_mul(page_size)).unwrap_or(usize::MAX);
    let list: Vec<Value> = sessions
        .iter()
        .skip(skip)
        .take(usize::try_from(page_size).unwrap_or(100))
        .map(|s| {
            json!({
                "DomainGroup": "",
                "Domain": s.domain,
                "AppName": s.app,
                "StreamName": s.stream,
                "StartTime": s.start_ms / 1000,
                "EndTime": s.end_ms.unwrap_or(s.start_ms) / 1000,
                "TransCodeId": 0,
                "StreamType": 0,
                "Duration": s.retention_s,
                "TimeShiftSubStreams": [],
            })
        })
        .collect();
    object(json!({ "TotalSize": sessions.len(), "StreamList": list }))
}

/// `DescribeTimeShiftRecordDetail`: the recording sessions of one stream overlapping [StartTime, EndTime].
pub async fn record_detail(state: &ApiState, p: &Params) -> Out {
    let domain = domain_param(p, "Domain")?;
    let app = p.str_req("AppName")?.trim().to_string();
    let stream = p.str_req("StreamName")?.trim().to_string();
    if stream.is_empty() {
        return Err(ApiError::missing("StreamName"));
    }
    let (start, end) = time_range(p)?;
    let sessions = state.store.timeshift_sessions(&domain, Some(&app), &stream, start * 1000, end * 1000).await?;
    let list: Vec<Value> = sessions
        .iter()
        .map(|s| {
            json!({
                "Sid": s.sid,
                "StartTime": s.start_ms / 1000,
                "EndTime": s.end_ms.unwrap_or(s.start_ms) / 1000,
            })
        })
        .collect();
    object(json!({ "RecordList": list }))
}
