//! Screenshot actions: snapshot templates, snapshot rules and screenshot tasks. Fields follow the SDK's models.py
//! (`SnapshotTemplateInfo`, `RuleInfo`, `ScreenshotTask`); rules and tasks work like the recording ones
//! ([`super::record`]).
//!
//! Limits (models.py, spec features-processing-security §2): at most 50 snapshot templates; `SnapshotInterval`
//! 2–300 s, default 10 (ModifyLiveSnapshotTemplate's text says 5–300; ferrocast accepts 2–300 on both so that a
//! template it created can be modified unchanged); `Width` 0–3000 and `Height` 0–2000 (0 = derived from the
//! source); `PornFlag` 0/1; `CosBucket` without the `-<appid>` suffix. The storage fields are stored verbatim and
//! no storage credential is ever stored or returned (`CosSecretId`/`CosSecretKey` are left out of answers).
//! CreateScreenshotTask needs an existing `TemplateId` (the service silently takes no screenshots otherwise).

use serde_json::{Map, Value, json};

use super::record::{
    description, in_use, int_range, invalid_value, new_rule, rule_deleted, rule_inserted, rule_key, rules_answer,
    task_done, task_from_params, task_id, task_page, task_query, template_name, text_opt,
};
use super::{ApiError, ApiState, Out, Params, object};
use crate::store::unix_now;
use crate::store_snapshot::{
    DEFAULT_COS_FILE_NAME, DEFAULT_COS_PREFIX, DEFAULT_SNAPSHOT_INTERVAL_S, ScreenshotTask, SnapshotTemplate,
};

/// Most snapshot templates per account.
const MAX_TEMPLATES: i64 = 50;

fn template_not_found(id: i64) -> ApiError {
    ApiError::new("InternalError.ConfNotFound", format!("The snapshot template {id} does not exist."))
}

/// Applies the params present in `p` to `t`.
fn apply(p: &Params, t: &mut SnapshotTemplate) -> Result<(), ApiError> {
    if let Some(v) = template_name(p)? {
        t.name = v;
    }
    if let Some(v) = description(p)? {
        t.description = v;
    }
    if let Some(v) = int_range(p, "SnapshotInterval", "SnapshotInterval", 2, 300)? {
        t.interval_s = v;
    }
    if let Some(v) = int_range(p, "Width", "Width", 0, 3000)? {
        t.width = v;
    }
    if let Some(v) = int_range(p, "Height", "Height", 0, 2000)? {
        t.height = v;
    }
    if let Some(v) = int_range(p, "PornFlag", "PornFlag", 0, 1)? {
        t.porn_flag = v;
    }
    if let Some(v) = int_range(p, "CosAppId", "CosAppId", 0, i64::MAX)? {
        t.cos_app_id = v;
    }
    if let Some(v) = text_opt(p, "CosBucket", "CosBucket", 100)? {
        t.bucket = v.trim().to_string();
    }
    if let Some(v) = text_opt(p, "CosRegion", "CosRegion", 100)? {
        t.region = v.trim().to_string();
    }
    // "If not passed, the default applies": an empty value means the default too.
    if let Some(v) = text_opt(p, "CosPrefix", "CosPrefix", 1024)? {
        t.prefix = if v.is_empty() { DEFAULT_COS_PREFIX.to_string() } else { v };
    }
    if let Some(v) = text_opt(p, "CosFileName", "CosFileName", 1024)? {
        t.file_name = if v.is_empty() { DEFAULT_COS_FILE_NAME.to_string() } else { v };
    }
    if t.cos_app_id > 0 && t.bucket.ends_with(&format!("-{}", t.cos_app_id)) {
        return Err(invalid_value("`CosBucket` must not include the `-<CosAppId>` suffix."));
    }
    Ok(())
}

fn template_info(t: &SnapshotTemplate) -> Value {
    json!({
        "TemplateId": t.id,
        "TemplateName": t.name,
        "SnapshotInterval": t.interval_s,
        "Width": t.width,
        "Height": t.height,
        "PornFlag": t.porn_flag,
        "CosAppId": t.cos_app_id,
        "CosBucket": t.bucket,
        "CosRegion": t.region,
        "Description": t.description,
        "CosPrefix": t.prefix,
        "CosFileName": t.file_name,
    })
}

/// `CreateLiveSnapshotTemplate`: `TemplateName`, `CosAppId`, `CosBucket` and `CosRegion` are required.
pub async fn create_template(state: &ApiState, p: &Params) -> Out {
    p.str_req("TemplateName")?;
    p.int_req("CosAppId")?;
    for name in ["CosBucket", "CosRegion"] {
        if p.str_req(name)?.trim().is_empty() {
            return Err(ApiError::missing(name));
        }
    }
    let mut t = SnapshotTemplate {
        interval_s: DEFAULT_SNAPSHOT_INTERVAL_S,
        prefix: DEFAULT_COS_PREFIX.into(),
        file_name: DEFAULT_COS_FILE_NAME.into(),
        ..SnapshotTemplate::default()
    };
    apply(p, &mut t)?;
    if state.store.snapshot_template_count().await? >= MAX_TEMPLATES {
        return Err(ApiError::new(
            "InternalError.ConfOutLimit",
            format!("At most {MAX_TEMPLATES} snapshot templates can be created."),
        ));
    }
    let id = state.store.create_snapshot_template(&t).await?;
    object(json!({ "TemplateId": id }))
}

/// `ModifyLiveSnapshotTemplate`: the fields present replace the stored ones.
pub async fn modify_template(state: &ApiState, p: &Params) -> Out {
    let id = p.int_req("TemplateId")?;
    let mut t = state.store.snapshot_template(id).await?.ok_or_else(|| template_not_found(id))?;
    apply(p, &mut t)?;
    if t.bucket.is_empty() || t.region.is_empty() {
        return Err(invalid_value("`CosBucket` and `CosRegion` must not be empty."));
    }
    if !state.store.update_snapshot_template(&t).await? {
        return Err(template_not_found(id));
    }
    Ok(Map::new())
}

/// `DescribeLiveSnapshotTemplate`.
pub async fn describe_template(state: &ApiState, p: &Params) -> Out {
    let id = p.int_req("TemplateId")?;
    let t = state.store.snapshot_template(id).await?.ok_or_else(|| template_not_found(id))?;
    object(json!({ "Template": template_info(&t) }))
}

/// `DescribeLiveSnapshotTemplates`.
pub async fn describe_templates(state: &ApiState, _p: &Params) -> Out {
    let all: Vec<Value> = state.store.snapshot_templates().await?.iter().map(template_info).collect();
    object(json!({ "Templates": all }))
}

/// `DeleteLiveSnapshotTemplate`: refused while a rule binds the template or a task that has not ended uses it.
pub async fn delete_template(state: &ApiState, p: &Params) -> Out {
    let id = p.int_req("TemplateId")?;
    if state.store.snapshot_template(id).await?.is_none() {
        return Err(template_not_found(id));
    }
    if state.store.snapshot_template_in_use(id, unix_now()).await? {
        return Err(in_use(id));
    }
    state.store.delete_snapshot_template(id).await?;
    Ok(Map::new())
}

/// `CreateLiveSnapshotRule`: one rule per (DomainName, AppName, StreamName).
pub async fn create_rule(state: &ApiState, p: &Params) -> Out {
    let exists = |id| async move { Ok(state.store.snapshot_template(id).await?.is_some()) };
    let rule = new_rule(state, p, "snapshot", exists).await?;
    rule_inserted(state.store.create_snapshot_rule(&rule, None).await?, i64::MAX)
}

/// `DescribeLiveSnapshotRules`.
pub async fn describe_rules(state: &ApiState, _p: &Params) -> Out {
    rules_answer(&state.store.snapshot_rules().await?)
}

/// `DeleteLiveSnapshotRule`: (DomainName, AppName, StreamName) must match the rule exactly (`""` = wildcard).
pub async fn delete_rule(state: &ApiState, p: &Params) -> Out {
    let (domain, app, stream) = rule_key(p)?;
    rule_deleted(state.store.delete_snapshot_rule(&domain, &app, &stream).await?)
}

/// `CreateScreenshotTask`.
pub async fn create_task(state: &ApiState, p: &Params) -> Out {
    let now = unix_now();
    let template_id = p.int_req("TemplateId")?;
    if state.store.snapshot_template(template_id).await?.is_none() {
        return Err(ApiError::new(
            "InvalidParameter.TemplateNotFound",
            format!("The snapshot template {template_id} does not exist."),
        ));
    }
    let task = ScreenshotTask { template_id, ..task_from_params(state, p, now)? };
    state.store.create_screenshot_task(&task).await?;
    object(json!({ "TaskId": task.id }))
}

/// `StopScreenshotTask`: the task ends now; `Stopped` records when.
pub async fn stop_task(state: &ApiState, p: &Params) -> Out {
    let id = task_id(p)?;
    task_done(state.store.stop_screenshot_task(&id, unix_now()).await?.is_some(), &id)
}

/// `DeleteScreenshotTask`.
pub async fn delete_task(state: &ApiState, p: &Params) -> Out {
    let id = task_id(p)?;
    task_done(state.store.delete_screenshot_task(&id).await?, &id)
}

/// `DescribeScreenshotTask`: up to 100 tasks per call by start time; `ScrollToken` continues.
pub async fn describe_tasks(state: &ApiState, p: &Params) -> Out {
    let q = task_query(p, unix_now())?;
    task_page(state.store.screenshot_tasks(&q).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(v: Value) -> Params {
        Params::from_json(v.to_string().as_bytes()).expect("json")
    }

    #[test]
    fn snapshot_params_are_validated() {
        let mut t = SnapshotTemplate::default();
        let ok = params(json!({"SnapshotInterval": 2, "Width": 3000, "Height": 2000, "PornFlag": 1,
                               "CosAppId": 125, "CosBucket": "b", "CosRegion": "r", "CosPrefix": ""}));
        apply(&ok, &mut t).expect("valid");
        assert_eq!((t.interval_s, t.width, t.height, t.porn_flag), (2, 3000, 2000, 1));
        assert_eq!(t.prefix, DEFAULT_COS_PREFIX);
        for bad in [
            json!({"SnapshotInterval": 1}),
            json!({"SnapshotInterval": 301}),
            json!({"Width": 3001}),
            json!({"Height": 2001}),
            json!({"Width": -1}),
            json!({"PornFlag": 2}),
            json!({"CosBucket": "b-125"}),
        ] {
            let e = apply(&params(bad.clone()), &mut t).expect_err("invalid");
            assert_eq!(e.code, "InvalidParameterValue", "{bad}");
        }
    }
}
