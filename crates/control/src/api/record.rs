//! Recording actions: record templates, record rules and record tasks, plus the rule and task plumbing the
//! screenshot actions ([`super::snapshot`]) share. Fields follow the SDK's models.py (`RecordParam`,
//! `RecordTemplateInfo`, `RuleInfo`, `RecordTask`).
//!
//! Limits (docs 000 "Recording", models.py): at most 50 record templates and 50 record rules; `RecordInterval`
//! 60–43200 s for FLV/MP4, 60–7200 s for AAC (and MP3, the other audio-only format), any non-negative value for
//! HLS (the service ignores it and makes one file per push; 0 = one file), default 1800; `StorageTime` 0–1500
//! days; `HlsSpecialParam.FlowContinueDuration` 0–1800 s. A template with no format enabled is valid and means
//! "do not record" for the streams bound to it.
//!
//! Tasks (CreateRecordTask in models.py): `EndTime` must be later than `StartTime` and than now, and earlier than
//! now + 7 days; `EndTime - StartTime` at most 24 h. Without `StartTime` the task is real-time recording, which
//! starts now and needs the stream to be live ("Make sure that the push is ongoing", docs 000 "Real-Time
//! Recording"). Deviation: an unknown non-zero `TemplateId` is refused (`InvalidParameter.TemplateNotFound`)
//! instead of silently recording with the default template; 0 or no `TemplateId` is the default (HLS, kept).

use ferrocast_hub::StreamKey;
use serde_json::{Map, Value, json};

use super::sign::datetime;
use super::streams::check_push_domain;
use super::{ApiError, ApiState, Out, Params, object};
use crate::store::unix_now;
use crate::store_record::{
    RecordFormatParam, RecordRule, RecordTask, RecordTemplate, RuleInsert, TaskQuery, new_task_id, rule_part,
};

const BEIJING: i64 = 8 * 3600;
/// Most record templates per account.
const MAX_TEMPLATES: i64 = 50;
/// Most record rules per account.
const MAX_RULES: i64 = 50;
/// Longest `StorageTime`: 1500 days.
const MAX_STORAGE_S: i64 = 1500 * 86_400;
/// Longest task window (`EndTime - StartTime`).
const MAX_TASK_WINDOW_S: i64 = 86_400;
/// How far ahead a task may end.
const MAX_TASK_AHEAD_S: i64 = 7 * 86_400;
/// Longest DescribeRecordTask query span ("不超过一周").
const MAX_QUERY_SPAN_S: i64 = 7 * 86_400;
/// How far back DescribeRecordTask may look ("不早于当前时间之前90天").
const MAX_QUERY_AGE_S: i64 = 90 * 86_400;
/// Tasks per DescribeRecordTask page.
pub(super) const TASK_PAGE: i64 = 100;

fn template_not_found(id: i64) -> ApiError {
    ApiError::new("InternalError.ConfNotFound", format!("The record template {id} does not exist."))
}

pub(super) fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new("InvalidParameter", message)
}

pub(super) fn invalid_value(message: impl Into<String>) -> ApiError {
    ApiError::new("InvalidParameterValue", message)
}

/// An optional integer in `lo..=hi`; `label` names it in the error (e.g. `FlvParam.RecordInterval`).
pub(super) fn int_range(p: &Params, name: &str, label: &str, lo: i64, hi: i64) -> Result<Option<i64>, ApiError> {
    match p.int_opt(name)? {
        Some(v) if v < lo || v > hi => Err(invalid_value(format!("`{label}` must be between {lo} and {hi}, got {v}."))),
        v => Ok(v),
    }
}

/// An optional string of at most `max` bytes without control characters.
pub(super) fn text_opt(p: &Params, name: &str, label: &str, max: usize) -> Result<Option<String>, ApiError> {
    let Some(v) = p.str_opt(name)? else {
        return Ok(None);
    };
    if v.len() > max || v.chars().any(char::is_control) {
        return Err(invalid_value(format!("`{label}` must be at most {max} bytes without control characters.")));
    }
    Ok(Some(v))
}

/// `TemplateName`: 1–255 bytes of letters (any script), digits, `_` and `-`.
pub(super) fn template_name(p: &Params) -> Result<Option<String>, ApiError> {
    let Some(name) = p.str_opt("TemplateName")? else {
        return Ok(None);
    };
    let ok = !name.is_empty() && name.len() <= 255 && name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    if !ok {
        return Err(invalid("`TemplateName` must be 1-255 bytes of letters, digits, `_` and `-`."));
    }
    Ok(Some(name))
}

/// `Description`: at most 1024 bytes.
pub(super) fn description(p: &Params) -> Result<Option<String>, ApiError> {
    text_opt(p, "Description", "Description", 1024)
}

/// A record format and the `RecordInterval` range it accepts.
#[derive(Debug, Clone, Copy)]
enum Format {
    Flv,
    Hls,
    Mp4,
    Aac,
    Mp3,
}

impl Format {
    const ALL: [Format; 5] = [Format::Flv, Format::Hls, Format::Mp4, Format::Aac, Format::Mp3];

    fn param_name(self) -> &'static str {
        match self {
            Format::Flv => "FlvParam",
            Format::Hls => "HlsParam",
            Format::Mp4 => "Mp4Param",
            Format::Aac => "AacParam",
            Format::Mp3 => "Mp3Param",
        }
    }

    fn interval_range(self) -> (i64, i64) {
        match self {
            Format::Flv | Format::Mp4 => (60, 43_200),
            Format::Aac | Format::Mp3 => (60, 7_200),
            Format::Hls => (0, i64::from(i32::MAX)),
        }
    }

    fn of(self, t: &mut RecordTemplate) -> &mut RecordFormatParam {
        match self {
            Format::Flv => &mut t.flv,
            Format::Hls => &mut t.hls,
            Format::Mp4 => &mut t.mp4,
            Format::Aac => &mut t.aac,
            Format::Mp3 => &mut t.mp3,
        }
    }
}

/// Applies the fields present in a `RecordParam` object to `f`.
fn apply_format(p: &Params, format: Format, f: &mut RecordFormatParam) -> Result<(), ApiError> {
    let obj = format.param_name();
    let label = |field: &str| format!("{obj}.{field}");
    if let Some(v) = int_range(p, "Enable", &label("Enable"), 0, 1)? {
        f.enable = v == 1;
    }
    let (lo, hi) = format.interval_range();
    if let Some(v) = int_range(p, "RecordInterval", &label("RecordInterval"), lo, hi)? {
        f.interval_s = v;
    }
    if let Some(v) = int_range(p, "StorageTime", &label("StorageTime"), 0, MAX_STORAGE_S)? {
        f.storage_time_s = v;
    }
    if let Some(v) = int_range(p, "VodSubAppId", &label("VodSubAppId"), 0, i64::MAX)? {
        f.vod_sub_app_id = v;
    }
    if let Some(v) = int_range(p, "ClassId", &label("ClassId"), 0, i64::MAX)? {
        f.class_id = v;
    }
    if let Some(v) = text_opt(p, "VodFileName", &label("VodFileName"), 1024)? {
        f.vod_file_name = v;
    }
    if let Some(v) = text_opt(p, "Procedure", &label("Procedure"), 256)? {
        f.procedure = v;
    }
    if let Some(v) = p.str_opt("StorageMode")? {
        if !matches!(v.as_str(), "" | "normal" | "cold") {
            return Err(invalid_value(format!("`{}` must be `normal` or `cold`.", label("StorageMode"))));
        }
        f.storage_mode = v;
    }
    // Bucket and region: at most 100 characters (docs 001, third-party storage).
    if let Some(v) = text_opt(p, "CosBucketName", &label("CosBucketName"), 100)? {
        f.bucket = v;
    }
    if let Some(v) = text_opt(p, "CosBucketRegion", &label("CosBucketRegion"), 100)? {
        f.region = v;
    }
    if let Some(v) = text_opt(p, "CosBucketPath", &label("CosBucketPath"), 1024)? {
        // models.py: "must start with a slash".
        if !v.is_empty() && !v.starts_with('/') {
            return Err(invalid_value(format!("`{}` must start with `/`.", label("CosBucketPath"))));
        }
        f.path = v;
    }
    Ok(())
}

/// Applies the params present in `p` to `t`. `IsDelayLive` and `CosStore` exist only on create.
fn apply(p: &Params, t: &mut RecordTemplate, create: bool) -> Result<(), ApiError> {
    if let Some(v) = template_name(p)? {
        t.name = v;
    }
    if let Some(v) = description(p)? {
        t.description = v;
    }
    for format in Format::ALL {
        if let Some(sub) = p.object_opt(format.param_name())? {
            apply_format(&sub, format, format.of(t))?;
        }
    }
    if let Some(sub) = p.object_opt("HlsSpecialParam")? {
        let label = "HlsSpecialParam.FlowContinueDuration";
        if let Some(v) = int_range(&sub, "FlowContinueDuration", label, 0, 1800)? {
            t.hls_resume_timeout_s = v;
        }
    }
    if let Some(sub) = p.object_opt("FlvSpecialParam")?
        && let Some(v) = sub.bool_opt("UploadInRecording")?
    {
        t.flv_upload_in_recording = v;
    }
    if let Some(v) = p.bool_opt("RemoveWatermark")? {
        t.remove_watermark = v;
    }
    if create {
        if let Some(v) = int_range(p, "IsDelayLive", "IsDelayLive", 0, 1)? {
            t.is_delay_live = v;
        }
        if let Some(v) = int_range(p, "CosStore", "CosStore", 0, 1)? {
            t.cos_store = v;
        }
    }
    Ok(())
}

fn record_param(f: &RecordFormatParam) -> Value {
    json!({
        "RecordInterval": f.interval_s,
        "StorageTime": f.storage_time_s,
        "Enable": i64::from(f.enable),
        "VodSubAppId": f.vod_sub_app_id,
        "VodFileName": f.vod_file_name,
        "Procedure": f.procedure,
        "StorageMode": f.storage_mode,
        "ClassId": f.class_id,
        "CosBucketName": f.bucket,
        "CosBucketRegion": f.region,
        "CosBucketPath": f.path,
    })
}

fn template_info(t: &RecordTemplate) -> Value {
    json!({
        "TemplateId": t.id,
        "TemplateName": t.name,
        "Description": t.description,
        "FlvParam": record_param(&t.flv),
        "HlsParam": record_param(&t.hls),
        "Mp4Param": record_param(&t.mp4),
        "AacParam": record_param(&t.aac),
        "IsDelayLive": t.is_delay_live,
        "HlsSpecialParam": { "FlowContinueDuration": t.hls_resume_timeout_s },
        "Mp3Param": record_param(&t.mp3),
        "RemoveWatermark": t.remove_watermark,
        "CosStore": t.cos_store,
        "FlvSpecialParam": { "UploadInRecording": t.flv_upload_in_recording },
    })
}

/// `CreateLiveRecordTemplate`.
pub async fn create_template(state: &ApiState, p: &Params) -> Out {
    p.str_req("TemplateName")?;
    let mut t = RecordTemplate {
        flv: RecordFormatParam::disabled(),
        hls: RecordFormatParam::disabled(),
        mp4: RecordFormatParam::disabled(),
        aac: RecordFormatParam::disabled(),
        mp3: RecordFormatParam::disabled(),
        ..RecordTemplate::default()
    };
    apply(p, &mut t, true)?;
    if state.store.record_template_count().await? >= MAX_TEMPLATES {
        return Err(ApiError::new(
            "InternalError.ConfOutLimit",
            format!("At most {MAX_TEMPLATES} record templates can be created."),
        ));
    }
    let id = state.store.create_record_template(&t).await?;
    object(json!({ "TemplateId": id }))
}

/// `ModifyLiveRecordTemplate`: the fields present replace the stored ones (within a `RecordParam`, field by
/// field).
pub async fn modify_template(state: &ApiState, p: &Params) -> Out {
    let id = p.int_req("TemplateId")?;
    let mut t = state.store.record_template(id).await?.ok_or_else(|| template_not_found(id))?;
    apply(p, &mut t, false)?;
    if !state.store.update_record_template(&t).await? {
        return Err(template_not_found(id));
    }
    Ok(Map::new())
}

/// `DescribeLiveRecordTemplate`.
pub async fn describe_template(state: &ApiState, p: &Params) -> Out {
    let id = p.int_req("TemplateId")?;
    let t = state.store.record_template(id).await?.ok_or_else(|| template_not_found(id))?;
    object(json!({ "Template": template_info(&t) }))
}

/// `DescribeLiveRecordTemplates`: the templates of one live type (`IsDelayLive`, default 0 = standard live).
pub async fn describe_templates(state: &ApiState, p: &Params) -> Out {
    let delay = int_range(p, "IsDelayLive", "IsDelayLive", 0, 1)?.unwrap_or(0);
    let all: Vec<Value> =
        state.store.record_templates().await?.iter().filter(|t| t.is_delay_live == delay).map(template_info).collect();
    object(json!({ "Templates": all }))
}

/// `DeleteLiveRecordTemplate`: refused while a rule binds the template or a task that has not ended uses it.
pub async fn delete_template(state: &ApiState, p: &Params) -> Out {
    let id = p.int_req("TemplateId")?;
    if state.store.record_template(id).await?.is_none() {
        return Err(template_not_found(id));
    }
    if state.store.record_template_in_use(id, unix_now()).await? {
        return Err(in_use(id));
    }
    state.store.delete_record_template(id).await?;
    Ok(Map::new())
}

pub(super) fn in_use(id: i64) -> ApiError {
    ApiError::new("FailedOperation.ConfInUsed", format!("The template {id} is bound by a rule or used by a task."))
}

/// A push domain param, lowercased.
pub(super) fn domain_param(p: &Params, name: &str) -> Result<String, ApiError> {
    let d = p.str_req(name)?.trim().to_ascii_lowercase();
    let label_ok =
        |l: &str| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if d.is_empty() || d.len() > 253 || !d.split('.').all(label_ok) {
        return Err(ApiError::new("InvalidParameter.DomainFormatError", format!("`{d}` is not a valid domain name.")));
    }
    Ok(d)
}

/// An app or stream name of a rule: empty or `*` = every one.
pub(super) fn rule_name(p: &Params, name: &str) -> Result<String, ApiError> {
    let v = rule_part(&p.str_opt(name)?.unwrap_or_default());
    check_name(name, &v)?;
    Ok(v)
}

/// At most 256 bytes, no whitespace or control characters.
fn check_name(name: &str, v: &str) -> Result<(), ApiError> {
    if v.len() > 256 || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid_value(format!("`{name}` must be at most 256 bytes without spaces.")));
    }
    Ok(())
}

/// The (DomainName, AppName, StreamName) of a rule request; the domain must be a push domain.
pub(super) fn rule_target(state: &ApiState, p: &Params) -> Result<(String, String, String), ApiError> {
    let domain = domain_param(p, "DomainName")?;
    check_push_domain(state, &domain)?;
    Ok((domain, rule_name(p, "AppName")?, rule_name(p, "StreamName")?))
}

/// Maps the outcome of a rule insert to the action's answer.
pub(super) fn rule_inserted(r: RuleInsert, max: i64) -> Out {
    match r {
        RuleInsert::Created => Ok(Map::new()),
        RuleInsert::Exists => Err(ApiError::new(
            "FailedOperation.RuleAlreadyExist",
            "A rule for this DomainName, AppName and StreamName exists already; delete it first.",
        )),
        RuleInsert::LimitReached => {
            Err(ApiError::new("InternalError.RuleOutLimit", format!("At most {max} rules can be created.")))
        }
    }
}

/// One `RuleInfo` (record, snapshot and time-shift rules alike).
fn rule_info(r: &RecordRule) -> Value {
    json!({
        "CreateTime": datetime(r.created_at, BEIJING),
        "UpdateTime": datetime(r.updated_at, BEIJING),
        "TemplateId": r.template_id,
        "DomainName": r.domain,
        "AppName": r.app,
        "StreamName": r.stream,
    })
}

/// The answer of a `Describe*Rules` action.
pub(super) fn rules_answer(rules: &[RecordRule]) -> Out {
    object(json!({ "Rules": rules.iter().map(rule_info).collect::<Vec<Value>>() }))
}

/// The answer of a `Delete*Rule` action whose store call returned `existed`.
pub(super) fn rule_deleted(existed: bool) -> Out {
    if !existed {
        return Err(ApiError::new(
            "FailedOperation.NotFound",
            "No rule of this DomainName, AppName and StreamName exists.",
        ));
    }
    Ok(Map::new())
}

/// The (DomainName, AppName, StreamName) of a `Delete*Rule` request (the domain need not be a push domain any
/// more).
pub(super) fn rule_key(p: &Params) -> Result<(String, String, String), ApiError> {
    Ok((domain_param(p, "DomainName")?, rule_name(p, "AppName")?, rule_name(p, "StreamName")?))
}

/// The new rule of a `Create*Rule` request: its target, then its `TemplateId`, which must exist (`exists` looks
/// it up; `kind` names the template kind in the error).
pub(super) async fn new_rule<F, Fut>(
    state: &ApiState,
    p: &Params,
    kind: &str,
    exists: F,
) -> Result<RecordRule, ApiError>
where
    F: FnOnce(i64) -> Fut,
    Fut: Future<Output = Result<bool, ApiError>>,
{
    let (domain, app, stream) = rule_target(state, p)?;
    let template_id = p.int_req("TemplateId")?;
    if !exists(template_id).await? {
        return Err(ApiError::new(
            "InvalidParameter.ConfNotFound",
            format!("The {kind} template {template_id} does not exist."),
        ));
    }
    let now = unix_now();
    Ok(RecordRule { domain, app, stream, template_id, created_at: now, updated_at: now })
}

/// `CreateLiveRecordRule`: one rule per (DomainName, AppName, StreamName); at most 50.
pub async fn create_rule(state: &ApiState, p: &Params) -> Out {
    let exists = |id| async move { Ok(state.store.record_template(id).await?.is_some()) };
    let rule = new_rule(state, p, "record", exists).await?;
    rule_inserted(state.store.create_record_rule(&rule, MAX_RULES).await?, MAX_RULES)
}

/// `DescribeLiveRecordRules`.
pub async fn describe_rules(state: &ApiState, _p: &Params) -> Out {
    rules_answer(&state.store.record_rules().await?)
}

/// `DeleteLiveRecordRule`: (DomainName, AppName, StreamName) must match the rule exactly (`""` = wildcard).
pub async fn delete_rule(state: &ApiState, p: &Params) -> Out {
    let (domain, app, stream) = rule_key(p)?;
    rule_deleted(state.store.delete_record_rule(&domain, &app, &stream).await?)
}

/// The validated params of CreateRecordTask / CreateScreenshotTask (everything but the template).
pub(super) fn task_from_params(state: &ApiState, p: &Params, now: i64) -> Result<RecordTask, ApiError> {
    let name_req = |name: &str| -> Result<String, ApiError> {
        let v = p.str_req(name)?.trim().to_string();
        if v.is_empty() {
            return Err(ApiError::missing(name));
        }
        check_name(name, &v)?;
        Ok(v)
    };
    let domain = domain_param(p, "DomainName")?;
    let app = name_req("AppName")?;
    let stream = name_req("StreamName")?;
    check_push_domain(state, &domain)?;
    let end = p.int_req("EndTime")?;
    let start = p.int_opt("StartTime")?;
    let bad_time = |m: String| ApiError::new("InvalidParameter.InvalidTaskTime", m);
    let start_time = start.unwrap_or(now);
    if end <= start_time || end <= now {
        return Err(bad_time(format!("`EndTime` ({end}) must be later than `StartTime` and than now ({now}).")));
    }
    if end >= now + MAX_TASK_AHEAD_S {
        return Err(bad_time("`EndTime` must be less than 7 days from now.".into()));
    }
    if end - start_time > MAX_TASK_WINDOW_S {
        return Err(bad_time("`EndTime - StartTime` must not exceed 24 hours.".into()));
    }
    if start.is_none() {
        // Real-time: the push must be going on now.
        let key = StreamKey::new(&domain, &app, &stream);
        if !state.hub.stream(&key).is_some_and(|s| s.publishing) {
            return Err(ApiError::new(
                "FailedOperation.HasNotLivingStream",
                format!("The stream {key} is not live; a task without StartTime needs a live stream."),
            ));
        }
    }
    let stream_type = int_range(p, "StreamType", "StreamType", 0, 1)?.unwrap_or(0);
    let extension = text_opt(p, "Extension", "Extension", 2048)?.unwrap_or_default();
    Ok(RecordTask {
        id: new_task_id(now.saturating_mul(1000)),
        domain,
        app,
        stream,
        start_time,
        end_time: end,
        template_id: 0,
        stream_type,
        extension,
        created_at: now,
        stopped_at: 0,
    })
}

/// The `TaskId` param: our ids are 32 hex digits; anything else that is not a plausible id is refused.
pub(super) fn task_id(p: &Params) -> Result<String, ApiError> {
    let id = p.str_req("TaskId")?.trim().to_string();
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(ApiError::new("InvalidParameter.InvalidTaskId", format!("`{id}` is not a valid TaskId.")));
    }
    Ok(id)
}

/// The answer of a `Stop*Task` or `Delete*Task` action on task `id`, which the store `found` or not.
pub(super) fn task_done(found: bool, id: &str) -> Out {
    if !found {
        return Err(ApiError::new("InvalidParameter.TaskNotExist", format!("The task {id} does not exist.")));
    }
    Ok(Map::new())
}

/// The filter of DescribeRecordTask / DescribeScreenshotTask: the task's whole window must lie in
/// [StartTime, EndTime], which spans at most a week and starts at most 90 days ago.
pub(super) fn task_query(p: &Params, now: i64) -> Result<TaskQuery, ApiError> {
    let from = p.int_req("StartTime")?;
    let to = p.int_req("EndTime")?;
    if to <= from {
        return Err(invalid_value("`EndTime` must be later than `StartTime`."));
    }
    if to - from > MAX_QUERY_SPAN_S {
        return Err(invalid_value("`EndTime - StartTime` must not exceed 7 days."));
    }
    if from < now - MAX_QUERY_AGE_S {
        return Err(invalid_value("`StartTime` must not be more than 90 days ago."));
    }
    let filter = |name: &str| Ok::<_, ApiError>(p.str_opt(name)?.map(|s| s.trim().to_string()).unwrap_or_default());
    let after = match p.str_opt("ScrollToken")?.filter(|t| !t.is_empty()) {
        None => None,
        Some(token) => Some(parse_token(&token)?),
    };
    Ok(TaskQuery {
        from,
        to,
        domain: filter("DomainName")?.to_ascii_lowercase(),
        app: filter("AppName")?,
        stream: filter("StreamName")?,
        after,
        limit: TASK_PAGE + 1,
    })
}

/// A scroll token: `<start_time>.<task id>` of the last task of the previous page.
fn parse_token(token: &str) -> Result<(i64, String), ApiError> {
    let bad = || invalid_value("`ScrollToken` is not a token this API returned.");
    let (start, id) = token.split_once('.').ok_or_else(bad)?;
    let start: i64 = start.parse().map_err(|_| bad())?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(bad());
    }
    Ok((start, id.to_string()))
}

/// One `RecordTask` / `ScreenshotTask`.
pub(super) fn task_info(t: &RecordTask) -> Value {
    json!({
        "TaskId": t.id,
        "DomainName": t.domain,
        "AppName": t.app,
        "StreamName": t.stream,
        "StartTime": t.start_time,
        "EndTime": t.end_time,
        "TemplateId": t.template_id,
        "Stopped": t.stopped_at,
    })
}

/// The response of a task listing fetched with `limit: TASK_PAGE + 1`.
pub(super) fn task_page(mut tasks: Vec<RecordTask>) -> Out {
    let more = tasks.len() > usize::try_from(TASK_PAGE).unwrap_or(usize::MAX);
    tasks.truncate(usize::try_from(TASK_PAGE).unwrap_or(usize::MAX));
    let token = match tasks.last() {
        Some(t) if more => format!("{}.{}", t.start_time, t.id),
        _ => String::new(),
    };
    let list: Vec<Value> = tasks.iter().map(task_info).collect();
    object(json!({ "ScrollToken": token, "TaskList": list }))
}

/// `CreateRecordTask`.
pub async fn create_task(state: &ApiState, p: &Params) -> Out {
    let now = unix_now();
    let template_id = p.int_opt("TemplateId")?.unwrap_or(0);
    if template_id != 0 && state.store.record_template(template_id).await?.is_none() {
        return Err(ApiError::new(
            "InvalidParameter.TemplateNotFound",
            format!("The record template {template_id} does not exist (0 or none = the default HLS template)."),
        ));
    }
    let task = RecordTask { template_id, ..task_from_params(state, p, now)? };
    state.store.create_record_task(&task).await?;
    object(json!({ "TaskId": task.id }))
}

/// `StopRecordTask`: the task ends now (a running recording stops; one that has not started never will);
/// `Stopped` records when.
pub async fn stop_task(state: &ApiState, p: &Params) -> Out {
    let id = task_id(p)?;
    task_done(state.store.stop_record_task(&id, unix_now()).await?.is_some(), &id)
}

/// `DeleteRecordTask`.
pub async fn delete_task(state: &ApiState, p: &Params) -> Out {
    let id = task_id(p)?;
    task_done(state.store.delete_record_task(&id).await?, &id)
}

/// `DescribeRecordTask`: up to 100 tasks per call by start time; `ScrollToken` continues.
pub async fn describe_tasks(state: &ApiState, p: &Params) -> Out {
    let q = task_query(p, unix_now())?;
    task_page(state.store.record_tasks(&q).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(v: Value) -> Params {
        Params::from_json(v.to_string().as_bytes()).expect("json")
    }

    #[test]
    fn record_params_are_validated_per_format() {
        let mut t = RecordTemplate::default();
        let ok = params(json!({"FlvParam": {"Enable": 1, "RecordInterval": 43200, "CosBucketPath": "/a"},
                               "HlsParam": {"Enable": true, "RecordInterval": 0},
                               "HlsSpecialParam": {"FlowContinueDuration": 1800},
                               "FlvSpecialParam": {"UploadInRecording": true}, "RemoveWatermark": "true"}));
        apply(&ok, &mut t, true).expect("valid");
        assert!(t.flv.enable && t.hls.enable && t.flv_upload_in_recording && t.remove_watermark);
        assert_eq!((t.flv.interval_s, t.hls.interval_s, t.hls_resume_timeout_s), (43200, 0, 1800));
        for bad in [
            json!({"FlvParam": {"RecordInterval": 59}}),
            json!({"Mp4Param": {"RecordInterval": 43201}}),
            json!({"AacParam": {"RecordInterval": 7201}}),
            json!({"Mp3Param": {"RecordInterval": 7201}}),
            json!({"HlsParam": {"RecordInterval": -1}}),
            json!({"FlvParam": {"StorageTime": MAX_STORAGE_S + 1}}),
            json!({"FlvParam": {"Enable": 2}}),
            json!({"FlvParam": {"CosBucketPath": "no-slash"}}),
            json!({"FlvParam": {"StorageMode": "hot"}}),
            json!({"HlsSpecialParam": {"FlowContinueDuration": 1801}}),
            json!({"IsDelayLive": 2}),
        ] {
            let e = apply(&params(bad.clone()), &mut t, true).expect_err("invalid");
            assert_eq!(e.code, "InvalidParameterValue", "{bad}");
        }
        assert_eq!(apply(&params(json!({"FlvParam": 3})), &mut t, true).expect_err("type").code, "InvalidParameter");
        assert_eq!(
            apply(&params(json!({"TemplateName": "a b"})), &mut t, true).expect_err("name").code,
            "InvalidParameter"
        );
    }

    #[test]
    fn scroll_tokens_round_trip_and_bad_ones_are_refused() {
        assert_eq!(parse_token("170.abc").expect("token"), (170, "abc".to_string()));
        for bad in ["", "170", "x.abc", "170.", "170.a b"] {
            assert_eq!(parse_token(bad).expect_err("bad").code, "InvalidParameterValue", "{bad}");
        }
    }
}
