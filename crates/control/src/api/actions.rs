//! The actions: domains, push/play auth keys, referer rules (brief §2.1, §2.2), stream management (§2.3, in
//! [`super::streams`]). Fields follow the SDK's models.py.

use serde_json::{Map, Value, json};

use super::sign::datetime;
use super::{ApiError, ApiState, Out, Params, callbacks, delay, history, object, record, snapshot, streams, timeshift};
use crate::store::{AuthKeyUpdate, DOMAIN_PLAY, DOMAIN_PUSH, Domain, NewDomain, RefererRow, StoreError};

const BEIJING: i64 = 8 * 3600;

/// Runs one action.
pub async fn dispatch(state: &ApiState, action: &str, p: Params) -> Out {
    let (out, modifies) = match action {
        "AddLiveDomain" => (add_domain(state, &p).await, true),
        "DeleteLiveDomain" => (delete_domain(state, &p).await, true),
        "DescribeLiveDomain" => (describe_domain(state, &p).await, false),
        "DescribeLiveDomains" => (describe_domains(state, &p).await, false),
        "EnableLiveDomain" => (set_status(state, &p, 1).await, true),
        "ForbidLiveDomain" => (set_status(state, &p, 0).await, true),
        "ModifyLivePlayDomain" => (modify_play_domain(state, &p).await, true),
        "DescribeLivePushAuthKey" => (describe_push_key(state, &p).await, false),
        "ModifyLivePushAuthKey" => (modify_push_key(state, &p).await, true),
        "DescribeLivePlayAuthKey" => (describe_play_key(state, &p).await, false),
        "ModifyLivePlayAuthKey" => (modify_play_key(state, &p).await, true),
        "DescribeLiveDomainReferer" => (describe_referer(state, &p).await, false),
        "ModifyLiveDomainReferer" => (modify_referer(state, &p).await, true),
        "DescribeLiveStreamOnlineList" => (streams::online_list(state, &p).await, false),
        "DescribeLiveStreamState" => (streams::stream_state(state, &p).await, false),
        "DescribeLiveStreamPushInfoList" => (streams::push_info_list(state, &p).await, false),
        "DropLiveStream" => (streams::drop_stream(state, &p).await, false),
        "ForbidLiveStream" => (streams::forbid_stream(state, &p).await, false),
        "ResumeLiveStream" => (streams::resume_stream(state, &p).await, true),
        "DescribeLiveStreamEventList" => (history::event_list(state, &p).await, false),
        "DescribeLiveStreamPublishedList" => (history::published_list(state, &p).await, false),
        "DescribeStreamPlayInfoList" => (history::play_info_list(state, &p).await, false),
        "CreateLiveCallbackTemplate" => (callbacks::create_template(state, &p).await, false),
        "ModifyLiveCallbackTemplate" => (callbacks::modify_template(state, &p).await, false),
        "DescribeLiveCallbackTemplate" => (callbacks::describe_template(state, &p).await, false),
        "DescribeLiveCallbackTemplates" => (callbacks::describe_templates(state, &p).await, false),
        "DeleteLiveCallbackTemplate" => (callbacks::delete_template(state, &p).await, false),
        "CreateLiveCallbackRule" => (callbacks::create_rule(state, &p).await, false),
        "DescribeLiveCallbackRules" => (callbacks::describe_rules(state, &p).await, false),
        "DeleteLiveCallbackRule" => (callbacks::delete_rule(state, &p).await, false),
        "DescribeCallbackRecordsList" => (callbacks::records_list(state, &p).await, false),
        "AddDelayLiveStream" => (delay::add(state, &p).await, true),
        "ResumeDelayLiveStream" => (delay::resume(state, &p).await, true),
        "DescribeLiveDelayInfoList" => (delay::list(state, &p).await, false),
        "CreateLiveTimeShiftTemplate" => (timeshift::create_template(state, &p).await, false),
        "ModifyLiveTimeShiftTemplate" => (timeshift::modify_template(state, &p).await, false),
        "DescribeLiveTimeShiftTemplates" => (timeshift::describe_templates(state, &p).await, false),
        "DeleteLiveTimeShiftTemplate" => (timeshift::delete_template(state, &p).await, false),
        "CreateLiveTimeShiftRule" => (timeshift::create_rule(state, &p).await, false),
        "DescribeLiveTimeShiftRules" => (timeshift::describe_rules(state, &p).await, false),
        "DeleteLiveTimeShiftRule" => (timeshift::delete_rule(state, &p).await, false),
        "DescribeTimeShiftStreamList" => (timeshift::stream_list(state, &p).await, false),
        "DescribeTimeShiftRecordDetail" => (timeshift::record_detail(state, &p).await, false),
        "CreateLiveRecordTemplate" => (record::create_template(state, &p).await, false),
        "ModifyLiveRecordTemplate" => (record::modify_template(state, &p).await, false),
        "DescribeLiveRecordTemplate" => (record::describe_template(state, &p).await, false),
        "DescribeLiveRecordTemplates" => (record::describe_templates(state, &p).await, false),
        "DeleteLiveRecordTemplate" => (record::delete_template(state, &p).await, false),
        "CreateLiveRecordRule" => (record::create_rule(state, &p).await, false),
        "DescribeLiveRecordRules" => (record::describe_rules(state, &p).await, false),
        "DeleteLiveRecordRule" => (record::delete_rule(state, &p).await, false),
        "CreateRecordTask" => (record::create_task(state, &p).await, false),
        "StopRecordTask" => (record::stop_task(state, &p).await, false),
        "DeleteRecordTask" => (record::delete_task(state, &p).await, false),
        "DescribeRecordTask" => (record::describe_tasks(state, &p).await, false),
        "CreateLiveSnapshotTemplate" => (snapshot::create_template(state, &p).await, false),
        "ModifyLiveSnapshotTemplate" => (snapshot::modify_template(state, &p).await, false),
        "DescribeLiveSnapshotTemplate" => (snapshot::describe_template(state, &p).await, false),
        "DescribeLiveSnapshotTemplates" => (snapshot::describe_templates(state, &p).await, false),
        "DeleteLiveSnapshotTemplate" => (snapshot::delete_template(state, &p).await, false),
        "CreateLiveSnapshotRule" => (snapshot::create_rule(state, &p).await, false),
        "DescribeLiveSnapshotRules" => (snapshot::describe_rules(state, &p).await, false),
        "DeleteLiveSnapshotRule" => (snapshot::delete_rule(state, &p).await, false),
        "CreateScreenshotTask" => (snapshot::create_task(state, &p).await, false),
        "StopScreenshotTask" => (snapshot::stop_task(state, &p).await, false),
        "DeleteScreenshotTask" => (snapshot::delete_task(state, &p).await, false),
        "DescribeScreenshotTask" => (snapshot::describe_tasks(state, &p).await, false),
        _ => return Err(ApiError::new("InvalidAction", format!("The API `{action}` does not exist."))),
    };
    if modifies && out.is_ok() {
        state.snapshot.refresh(&state.store).await.map_err(ApiError::internal)?;
    }
    out
}

fn empty() -> Out {
    Ok(Map::new())
}

fn domain_not_exist(name: &str) -> ApiError {
    ApiError::new("ResourceNotFound.DomainNotExist", format!("The domain `{name}` does not exist or does not match."))
}

/// Validates and lowercases a domain name.
fn domain_name(p: &Params) -> Result<String, ApiError> {
    let name = p.str_req("DomainName")?.trim().to_ascii_lowercase();
    validate_domain(&name)?;
    Ok(name)
}

fn validate_domain(name: &str) -> Result<(), ApiError> {
    if name.len() > 253 {
        return Err(ApiError::new("InvalidParameter.DomainTooLong", "The domain name is longer than 253 characters."));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.is_empty() || !name.split('.').all(label_ok) {
        return Err(ApiError::new(
            "InvalidParameter.DomainFormatError",
            format!("`{name}` is not a valid domain name."),
        ));
    }
    Ok(())
}

fn in_range(p: &Params, name: &str, lo: i64, hi: i64) -> Result<Option<i64>, ApiError> {
    match p.int_opt(name)? {
        Some(v) if v < lo || v > hi => {
            Err(ApiError::new("InvalidParameterValue", format!("`{name}` must be between {lo} and {hi}, got {v}.")))
        }
        v => Ok(v),
    }
}

fn req_range(p: &Params, name: &str, lo: i64, hi: i64) -> Result<i64, ApiError> {
    in_range(p, name, lo, hi)?.ok_or_else(|| ApiError::missing(name))
}

fn domain_info(d: &Domain) -> Value {
    json!({
        "Name": d.name,
        "Type": d.kind,
        "Status": d.status,
        "CreateTime": datetime(d.created_at, BEIJING),
        "BCName": 0,
        "TargetDomain": d.target_cname,
        "PlayType": d.play_type,
        "IsDelayLive": d.is_delay_live,
        "CurrentCName": d.target_cname,
        "RentTag": 0,
        "RentExpireTime": "0000-00-00 00:00:00",
        "IsMiniProgramLive": d.is_mini_program_live,
    })
}

/// The ferrocast-only `BindPushDomain` param: must name an existing push domain.
async fn bind_target(state: &ApiState, p: &Params) -> Result<Option<String>, ApiError> {
    let Some(push) = p.str_opt("BindPushDomain")? else {
        return Ok(None);
    };
    let push = push.trim().to_ascii_lowercase();
    match state.store.domain(&push).await? {
        Some(d) if d.kind == DOMAIN_PUSH => Ok(Some(push)),
        _ => Err(domain_not_exist(&push)),
    }
}

async fn add_domain(state: &ApiState, p: &Params) -> Out {
    let name = domain_name(p)?;
    let kind = req_range(p, "DomainType", 0, 1)?;
    let play_type = in_range(p, "PlayType", 1, 3)?.unwrap_or(1);
    let is_delay_live = in_range(p, "IsDelayLive", 0, 1)?.unwrap_or(0);
    let is_mini_program_live = in_range(p, "IsMiniProgramLive", 0, 1)?.unwrap_or(0);
    let all = state.store.domains().await?;
    if all.len() as i64 >= state.max_domains {
        return Err(ApiError::new("LimitExceeded", format!("At most {} domains can be added.", state.max_domains)));
    }
    let mut push_domain = None;
    if kind == DOMAIN_PLAY {
        push_domain = bind_target(state, p).await?;
        if push_domain.is_none() {
            // Auto-bind when exactly one push domain exists (brief §7.1).
            let pushes: Vec<&Domain> = all.iter().filter(|d| d.kind == DOMAIN_PUSH).collect();
            if let [only] = pushes.as_slice() {
                push_domain = Some(only.name.clone());
            }
        }
    }
    let new = NewDomain { name: name.clone(), kind, play_type, is_delay_live, is_mini_program_live, push_domain };
    match state.store.add_domain(&new).await {
        Ok(()) => empty(),
        Err(StoreError::DomainExists(_)) => {
            Err(ApiError::new("InvalidParameter.DomainAlreadyExist", format!("The domain `{name}` already exists.")))
        }
        Err(e) => Err(e.into()),
    }
}

async fn delete_domain(state: &ApiState, p: &Params) -> Out {
    let name = domain_name(p)?;
    let kind = req_range(p, "DomainType", 0, 1)?;
    if state.store.delete_domain(&name, kind).await? { empty() } else { Err(domain_not_exist(&name)) }
}

async fn describe_domain(state: &ApiState, p: &Params) -> Out {
    let name = p.str_req("DomainName")?.trim().to_ascii_lowercase();
    match state.store.domain(&name).await? {
        Some(d) => object(json!({ "DomainInfo": domain_info(&d) })),
        None => Err(domain_not_exist(&name)),
    }
}

async fn describe_domains(state: &ApiState, p: &Params) -> Out {
    let status = in_range(p, "DomainStatus", 0, 1)?;
    let kind = in_range(p, "DomainType", 0, 1)?;
    let page_size = in_range(p, "PageSize", 10, 100)?.unwrap_or(10);
    let page_num = in_range(p, "PageNum", 1, 100_000)?.unwrap_or(1);
    let delay = in_range(p, "IsDelayLive", 0, 1)?;
    let prefix = p.str_opt("DomainPrefix")?.map(|s| s.to_ascii_lowercase());
    let play_type = in_range(p, "PlayType", 1, 3)?;
    let all = state.store.domains().await?;
    let total_domains = all.len() as i64;
    let matching: Vec<&Domain> = all
        .iter()
        .filter(|d| status.is_none_or(|s| d.status == s))
        .filter(|d| kind.is_none_or(|k| d.kind == k))
        .filter(|d| delay.is_none_or(|v| d.is_delay_live == v))
        .filter(|d| prefix.as_deref().is_none_or(|px| d.name.starts_with(px)))
        .filter(|d| play_type.is_none_or(|t| d.kind == DOMAIN_PLAY && d.play_type == t))
        .collect();
    let mut play_type_count = [0_i64; 3];
    for d in all.iter().filter(|d| d.kind == DOMAIN_PLAY) {
        if let Some(slot) = usize::try_from(d.play_type - 1).ok().and_then(|i| play_type_count.get_mut(i)) {
            *slot += 1;
        }
    }
    let start = usize::try_from((page_num - 1) * page_size).unwrap_or(usize::MAX);
    let list: Vec<Value> =
        matching.iter().skip(start).take(usize::try_from(page_size).unwrap_or(10)).map(|d| domain_info(d)).collect();
    object(json!({
        "AllCount": matching.len(),
        "DomainList": list,
        "CreateLimitCount": (state.max_domains - total_domains).max(0),
        "PlayTypeCount": play_type_count,
    }))
}

async fn set_status(state: &ApiState, p: &Params, status: i64) -> Out {
    let name = domain_name(p)?;
    if state.store.set_domain_status(&name, status).await? { empty() } else { Err(domain_not_exist(&name)) }
}

async fn modify_play_domain(state: &ApiState, p: &Params) -> Out {
    let name = domain_name(p)?;
    let play_type = req_range(p, "PlayType", 1, 3)?;
    match state.store.domain(&name).await? {
        Some(d) if d.kind == DOMAIN_PLAY => {}
        _ => return Err(domain_not_exist(&name)),
    }
    let bind = bind_target(state, p).await?;
    state.store.set_play_type(&name, play_type).await?;
    if let Some(push) = bind {
        state.store.set_push_binding(&name, Some(&push)).await?;
    }
    empty()
}

/// The domain named by `DomainName` if it exists with type `kind`.
async fn domain_of_kind(state: &ApiState, p: &Params, kind: i64, missing_code: &str) -> Result<String, ApiError> {
    let name = p.str_req("DomainName")?.trim().to_ascii_lowercase();
    match state.store.domain(&name).await? {
        Some(d) if d.kind == kind => Ok(name),
        _ => Err(ApiError::new(missing_code, format!("The domain `{name}` has no record."))),
    }
}

const PUSH_NO_RECORD: &str = "ResourceNotFound.PushDomainNoRecord";
const PLAY_NO_RECORD: &str = "ResourceNotFound.PlayDomainNoRecord";

async fn describe_push_key(state: &ApiState, p: &Params) -> Out {
    let name = domain_of_kind(state, p, DOMAIN_PUSH, PUSH_NO_RECORD).await?;
    let k = state.store.auth_key(&name).await?.unwrap_or_default();
    object(json!({ "PushAuthKeyInfo": {
        "DomainName": name,
        "Enable": k.enable,
        "MasterAuthKey": k.master_key,
        "BackupAuthKey": k.backup_key,
        "AuthDelta": k.auth_delta,
    }}))
}

async fn describe_play_key(state: &ApiState, p: &Params) -> Out {
    let name = domain_of_kind(state, p, DOMAIN_PLAY, PLAY_NO_RECORD).await?;
    let k = state.store.auth_key(&name).await?.unwrap_or_default();
    object(json!({ "PlayAuthKeyInfo": {
        "DomainName": name,
        "Enable": k.enable,
        "AuthKey": k.master_key,
        "AuthDelta": k.auth_delta,
        "AuthBackKey": k.backup_key,
    }}))
}

/// A key param: absent or `""` keeps the stored key ("left empty → not modified").
fn key_param(p: &Params, name: &str) -> Result<Option<String>, ApiError> {
    let Some(v) = p.str_opt(name)?.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if v.len() > 256 || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::new(
            "InvalidParameterValue",
            format!("`{name}` must be printable ASCII, at most 256 bytes."),
        ));
    }
    Ok(Some(v))
}

fn key_update(p: &Params, master: &str, backup: &str) -> Result<AuthKeyUpdate, ApiError> {
    Ok(AuthKeyUpdate {
        enable: in_range(p, "Enable", 0, 1)?,
        master_key: key_param(p, master)?,
        backup_key: key_param(p, backup)?,
        auth_delta: in_range(p, "AuthDelta", 0, i64::from(i32::MAX))?,
    })
}

async fn modify_push_key(state: &ApiState, p: &Params) -> Out {
    let name = domain_of_kind(state, p, DOMAIN_PUSH, PUSH_NO_RECORD).await?;
    let u = key_update(p, "MasterAuthKey", "BackupAuthKey")?;
    state.store.update_auth_key(&name, &u).await?;
    empty()
}

async fn modify_play_key(state: &ApiState, p: &Params) -> Out {
    let name = domain_of_kind(state, p, DOMAIN_PLAY, PLAY_NO_RECORD).await?;
    let u = key_update(p, "AuthKey", "AuthBackKey")?;
    state.store.update_auth_key(&name, &u).await?;
    empty()
}

async fn describe_referer(state: &ApiState, p: &Params) -> Out {
    let name = p.str_req("DomainName")?.trim().to_ascii_lowercase();
    let r = state.store.referer(&name).await?.ok_or_else(|| domain_not_exist(&name))?;
    object(json!({ "RefererAuthConfig": {
        "DomainName": r.domain,
        "Enable": r.enable,
        "Type": r.kind,
        "AllowEmpty": r.allow_empty,
        "Rules": r.rules,
    }}))
}

async fn modify_referer(state: &ApiState, p: &Params) -> Out {
    let name = p.str_req("DomainName")?.trim().to_ascii_lowercase();
    let enable = req_range(p, "Enable", 0, 1)?;
    let kind = req_range(p, "Type", 0, 1)?;
    let allow_empty = req_range(p, "AllowEmpty", 0, 1)?;
    let rules = p.str_req("Rules")?;
    if rules.len() > 4096 {
        return Err(ApiError::new("InvalidParameterValue", "`Rules` is longer than 4096 bytes."));
    }
    for rule in crate::auth::RefererRule::parse_rules(&rules) {
        crate::auth::validate_referer_pattern(&rule).map_err(|e| ApiError::new("InvalidParameterValue", e))?;
    }
    let row = RefererRow { domain: name.clone(), enable, kind, allow_empty, rules };
    if state.store.set_referer(&row).await? { empty() } else { Err(domain_not_exist(&name)) }
}
