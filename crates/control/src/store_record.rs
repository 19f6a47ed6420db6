//! Store functions for recording: record templates, record rules and record tasks (CreateRecordTask), plus the
//! rule and task plumbing the screenshot feature ([`crate::store_snapshot`]) shares (and the rule listing,
//! lookup and deletion time shifting ([`crate::store_timeshift`]) shares). Portable SQL through
//! `sqlx::Any`, like [`crate::store`].
//!
//! Rule precedence (most specific wins, docs 000 "Enabling Recording for All Live Streams"): an exact
//! (domain, app, stream) rule, then (domain, –, stream), then (domain, app, –), then (domain, –, –). An empty
//! AppName or StreamName (or `*`) is stored as `""` and means "every one". A (domain, app, stream) triple has at
//! most one rule: "the same push domain name, application, or stream cannot be bound with multiple templates".
//!
//! Each format's `RecordParam` is stored as a JSON object in its own column, so that every field the SDK sends
//! comes back unchanged from `Describe*` without one column per (format, field).

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::store::{AnyQuery, Store, StoreError, TemplateRow, TemplateTables, random_hex};

/// `RecordInterval` when the request leaves it out (seconds).
pub const DEFAULT_RECORD_INTERVAL_S: i64 = 1800;

/// The recording parameters of one format (`RecordParam`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecordFormatParam {
    /// `Enable`: whether this format is recorded.
    pub enable: bool,
    /// `RecordInterval`: longest file, seconds. For HLS the service ignores it and makes one file per push;
    /// ferrocast keeps the value as given (0 = one file).
    pub interval_s: i64,
    /// `StorageTime`: how long files are kept, seconds; 0 = forever.
    pub storage_time_s: i64,
    /// `CosBucketName`, verbatim: the engine maps it to a configured storage target.
    pub bucket: String,
    /// `CosBucketRegion`, verbatim.
    pub region: String,
    /// `CosBucketPath`: the folder template (`/{Domain}/{StreamID}/...`), verbatim.
    pub path: String,
    /// `VodFileName`: the file name template, verbatim.
    pub vod_file_name: String,
    /// `VodSubAppId` (informational).
    pub vod_sub_app_id: i64,
    /// `Procedure` (informational).
    pub procedure: String,
    /// `StorageMode`: `normal` or `cold` (informational).
    pub storage_mode: String,
    /// `ClassId` (informational).
    pub class_id: i64,
}

impl RecordFormatParam {
    /// A disabled format with the default interval: what a template has for a format the request left out.
    pub fn disabled() -> RecordFormatParam {
        RecordFormatParam { interval_s: DEFAULT_RECORD_INTERVAL_S, ..RecordFormatParam::default() }
    }
}

/// A record template (`RecordTemplateInfo`).
///
/// A template with no format enabled is valid and means "do not record" for the streams its rules bind: binding
/// it to a stream overrides a broader rule that records (docs 000 "Disabling Recording for Specific Streams").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordTemplate {
    /// `TemplateId` (0 for the built-in default of [`RecordTemplate::task_default`]).
    pub id: i64,
    /// `TemplateName`.
    pub name: String,
    /// `Description`.
    pub description: String,
    /// `FlvParam`.
    pub flv: RecordFormatParam,
    /// `HlsParam`.
    pub hls: RecordFormatParam,
    /// `Mp4Param`.
    pub mp4: RecordFormatParam,
    /// `AacParam`.
    pub aac: RecordFormatParam,
    /// `Mp3Param`.
    pub mp3: RecordFormatParam,
    /// `HlsSpecialParam.FlowContinueDuration`: how long an HLS recording waits for the push to resume, seconds.
    pub hls_resume_timeout_s: i64,
    /// `IsDelayLive`: 0 standard live, 1 slow live.
    pub is_delay_live: i64,
    /// `CosStore`: 1 = store to object storage.
    pub cos_store: i64,
    /// `RemoveWatermark`: record the original stream rather than the watermarked one.
    pub remove_watermark: bool,
    /// `FlvSpecialParam.UploadInRecording`: upload FLV files while they are being recorded.
    pub flv_upload_in_recording: bool,
}

impl RecordTemplate {
    /// Whether no format is enabled: streams bound to this template are not recorded.
    pub fn records_nothing(&self) -> bool {
        ![&self.flv, &self.hls, &self.mp4, &self.aac, &self.mp3].iter().any(|f| f.enable)
    }

    /// What a record task without a (valid) template records: HLS, kept forever (CreateRecordTask `TemplateId`:
    /// "if absent or wrong, records HLS and stores it permanently").
    pub fn task_default() -> RecordTemplate {
        RecordTemplate {
            name: "default".into(),
            flv: RecordFormatParam::disabled(),
            hls: RecordFormatParam { enable: true, ..RecordFormatParam::disabled() },
            mp4: RecordFormatParam::disabled(),
            aac: RecordFormatParam::disabled(),
            mp3: RecordFormatParam::disabled(),
            ..RecordTemplate::default()
        }
    }
}

/// A record rule (`RuleInfo`); also the row of a snapshot or time-shift rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordRule {
    /// Push domain.
    pub domain: String,
    /// App name, `""` for every app.
    pub app: String,
    /// Stream name, `""` for every stream.
    pub stream: String,
    /// The bound template.
    pub template_id: i64,
    /// UNIX seconds.
    pub created_at: i64,
    /// UNIX seconds.
    pub updated_at: i64,
}

/// A record task (`RecordTask`): record the stream during [start_time, end_time); also the row of a screenshot
/// task (`ScreenshotTask`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordTask {
    /// `TaskId`.
    pub id: String,
    /// Push domain.
    pub domain: String,
    /// App name.
    pub app: String,
    /// Stream name.
    pub stream: String,
    /// UNIX seconds, inclusive.
    pub start_time: i64,
    /// UNIX seconds, exclusive. StopRecordTask (StopScreenshotTask) moves it to the time of the call.
    pub end_time: i64,
    /// The template; for a record task 0 = [`RecordTemplate::task_default`].
    pub template_id: i64,
    /// 0 a pushed stream, 1 a mix output.
    pub stream_type: i64,
    /// `Extension`, verbatim.
    pub extension: String,
    /// UNIX seconds.
    pub created_at: i64,
    /// `Stopped`: when StopRecordTask (StopScreenshotTask) was called, 0 if never.
    pub stopped_at: i64,
}

/// Normalizes a rule's app or stream: empty or `*` means every one, stored as `""`.
pub fn rule_part(s: &str) -> String {
    let s = s.trim();
    if s == "*" { String::new() } else { s.to_string() }
}

/// How specific a rule on (`rule_app`, `rule_stream`) is for a stream, or `None` when it does not match (higher
/// wins: exact 3 > stream only 2 > app only 1 > domain only 0).
pub fn rule_rank(rule_app: &str, rule_stream: &str, app: &str, stream: &str) -> Option<u8> {
    let app_rank = match rule_app {
        "" | "*" => 0,
        a if a == app => 1,
        _ => return None,
    };
    let stream_rank = match rule_stream {
        "" | "*" => 0,
        s if s == stream => 2,
        _ => return None,
    };
    Some(app_rank + stream_rank)
}

/// A new task's id: 12 hex digits of the creation time in ms, then 20 random ones (sortable, unique).
pub fn new_task_id(now_ms: i64) -> String {
    format!("{:012x}{}", now_ms.max(0), random_hex(20))
}

/// Why a rule was not created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleInsert {
    /// It was created.
    Created,
    /// A rule of that (domain, app, stream) exists already.
    Exists,
    /// The table holds its maximum number of rules already.
    LimitReached,
}

/// The rule and task tables of a template + rule + task feature (recording, screenshots).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FeatureTables {
    /// Templates and rules, for count/delete/in-use.
    pub templates: TemplateTables,
    /// The tasks.
    pub tasks: &'static str,
}

/// A filter for a page of tasks (DescribeRecordTask / DescribeScreenshotTask).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskQuery {
    /// Tasks starting at or after this (UNIX seconds)...
    pub from: i64,
    /// ...and ending at or before this.
    pub to: i64,
    /// Push domain, `""` = any.
    pub domain: String,
    /// App, `""` = any.
    pub app: String,
    /// Stream, `""` = any.
    pub stream: String,
    /// Continue after this (start_time, id) (the order of the listing).
    pub after: Option<(i64, String)>,
    /// Most tasks returned.
    pub limit: i64,
}

const RULE_COLUMNS: &str = "domain, app, stream, template_id, created_at, updated_at";
const TASK_COLUMNS: &str =
    "id, domain, app, stream, start_time, end_time, template_id, stream_type, extension, stopped_at, created_at";
pub(crate) const RECORD: FeatureTables = FeatureTables {
    templates: TemplateTables { templates: "record_templates", rules: "record_rules" },
    tasks: "record_tasks",
};

fn rule_from_row(row: &AnyRow) -> Result<RecordRule, sqlx::Error> {
    Ok(RecordRule {
        domain: row.try_get("domain")?,
        app: row.try_get("app")?,
        stream: row.try_get("stream")?,
        template_id: row.try_get("template_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn task_from_row(row: &AnyRow) -> Result<RecordTask, sqlx::Error> {
    Ok(RecordTask {
        id: row.try_get("id")?,
        domain: row.try_get("domain")?,
        app: row.try_get("app")?,
        stream: row.try_get("stream")?,
        start_time: row.try_get("start_time")?,
        end_time: row.try_get("end_time")?,
        template_id: row.try_get("template_id")?,
        stream_type: row.try_get("stream_type")?,
        extension: row.try_get("extension")?,
        stopped_at: row.try_get("stopped_at")?,
        created_at: row.try_get("created_at")?,
    })
}

fn format_param(row: &AnyRow, column: &str) -> Result<RecordFormatParam, sqlx::Error> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn format_json(p: &RecordFormatParam) -> Result<String, StoreError> {
    serde_json::to_string(p).map_err(|e| StoreError::Db(sqlx::Error::Encode(Box::new(e))))
}

impl TemplateRow for RecordTemplate {
    const FIELDS: &'static [&'static str] = &[
        "name",
        "description",
        "flv_param",
        "hls_param",
        "mp4_param",
        "aac_param",
        "mp3_param",
        "hls_resume_timeout_s",
        "is_delay_live",
        "cos_store",
        "remove_watermark",
        "upload_in_recording",
    ];

    fn bind_fields<'q>(&'q self, q: AnyQuery<'q>) -> Result<AnyQuery<'q>, StoreError> {
        Ok(q.bind(&self.name)
            .bind(&self.description)
            .bind(format_json(&self.flv)?)
            .bind(format_json(&self.hls)?)
            .bind(format_json(&self.mp4)?)
            .bind(format_json(&self.aac)?)
            .bind(format_json(&self.mp3)?)
            .bind(self.hls_resume_timeout_s)
            .bind(self.is_delay_live)
            .bind(self.cos_store)
            .bind(i64::from(self.remove_watermark))
            .bind(i64::from(self.flv_upload_in_recording)))
    }

    fn from_row(row: &AnyRow) -> Result<RecordTemplate, sqlx::Error> {
        Ok(RecordTemplate {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            description: row.try_get("description")?,
            flv: format_param(row, "flv_param")?,
            hls: format_param(row, "hls_param")?,
            mp4: format_param(row, "mp4_param")?,
            aac: format_param(row, "aac_param")?,
            mp3: format_param(row, "mp3_param")?,
            hls_resume_timeout_s: row.try_get("hls_resume_timeout_s")?,
            is_delay_live: row.try_get("is_delay_live")?,
            cos_store: row.try_get("cos_store")?,
            remove_watermark: row.try_get::<i64, _>("remove_watermark")? != 0,
            flv_upload_in_recording: row.try_get::<i64, _>("upload_in_recording")? != 0,
        })
    }
}

/// Inserts one rule row as given (its app and stream already in their stored form).
pub(crate) async fn insert_rule_row(
    conn: &mut sqlx::AnyConnection,
    rules: &str,
    rule: &RecordRule,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("INSERT INTO {rules} ({RULE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"))
        .bind(&rule.domain)
        .bind(&rule.app)
        .bind(&rule.stream)
        .bind(rule.template_id)
        .bind(rule.created_at)
        .bind(rule.updated_at)
        .execute(conn)
        .await?;
    Ok(())
}

/// The most specific rule of `rules` matching the stream (see the module docs).
pub(crate) fn best_rule<'a>(rules: &'a [RecordRule], domain: &str, app: &str, stream: &str) -> Option<&'a RecordRule> {
    rules
        .iter()
        .filter(|r| r.domain.eq_ignore_ascii_case(domain))
        .filter_map(|r| rule_rank(&r.app, &r.stream, app, stream).map(|k| (k, r)))
        .max_by_key(|x| x.0)
        .map(|x| x.1)
}

/// Rule and task plumbing shared by recording and screenshots (the rule part also by time shifting).
impl Store {
    /// Creates the rule of (domain, app, stream) unless one exists or the table holds `max_rules` already.
    pub(crate) async fn insert_rule(
        &self,
        t: TemplateTables,
        rule: &RecordRule,
        max_rules: Option<i64>,
    ) -> Result<RuleInsert, StoreError> {
        let rule = RecordRule { app: rule_part(&rule.app), stream: rule_part(&rule.stream), ..rule.clone() };
        let rules = t.rules;
        let mut tx = self.pool().begin().await?;
        let old =
            sqlx::query(&format!("SELECT template_id FROM {rules} WHERE domain = $1 AND app = $2 AND stream = $3"))
                .bind(&rule.domain)
                .bind(&rule.app)
                .bind(&rule.stream)
                .fetch_optional(&mut *tx)
                .await?;
        if old.is_some() {
            return Ok(RuleInsert::Exists);
        }
        if let Some(max) = max_rules {
            let row = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {rules}")).fetch_one(&mut *tx).await?;
            if row.try_get::<i64, _>("n")? >= max {
                return Ok(RuleInsert::LimitReached);
            }
        }
        insert_rule_row(&mut tx, rules, &rule).await?;
        tx.commit().await?;
        Ok(RuleInsert::Created)
    }

    /// Every rule of a feature, by (domain, app, stream); only those of `domain` when it is given.
    pub(crate) async fn rules_in(
        &self,
        t: TemplateTables,
        domain: Option<&str>,
    ) -> Result<Vec<RecordRule>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {RULE_COLUMNS} FROM {} WHERE ($1 = '' OR domain = $1) ORDER BY domain, app, stream",
            t.rules
        ))
        .bind(domain.map(str::to_ascii_lowercase).unwrap_or_default())
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(rule_from_row).collect::<Result<_, _>>()?)
    }

    /// Deletes the rule of (domain, app, stream), app and stream in their stored form. Returns whether it
    /// existed.
    pub(crate) async fn delete_rule_in(
        &self,
        t: TemplateTables,
        domain: &str,
        app: &str,
        stream: &str,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(&format!("DELETE FROM {} WHERE domain = $1 AND app = $2 AND stream = $3", t.rules))
            .bind(domain)
            .bind(app)
            .bind(stream)
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// The most specific rule matching a stream, with its template; `None` if no rule matches or its template
    /// is gone.
    pub(crate) async fn rule_for_in<T: TemplateRow>(
        &self,
        t: TemplateTables,
        domain: &str,
        app: &str,
        stream: &str,
    ) -> Result<Option<(RecordRule, T)>, StoreError> {
        let rules = self.rules_in(t, Some(domain)).await?;
        let Some(rule) = best_rule(&rules, domain, app, stream) else {
            return Ok(None);
        };
        Ok(self.template_by_id(t, rule.template_id).await?.map(|template| (rule.clone(), template)))
    }

    /// Stores a new task.
    pub(crate) async fn insert_task(&self, t: FeatureTables, task: &RecordTask) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO {} ({TASK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            t.tasks
        ))
        .bind(&task.id)
        .bind(&task.domain)
        .bind(&task.app)
        .bind(&task.stream)
        .bind(task.start_time)
        .bind(task.end_time)
        .bind(task.template_id)
        .bind(task.stream_type)
        .bind(&task.extension)
        .bind(task.stopped_at)
        .bind(task.created_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// One task.
    pub(crate) async fn task_in(&self, t: FeatureTables, id: &str) -> Result<Option<RecordTask>, StoreError> {
        let row = sqlx::query(&format!("SELECT {TASK_COLUMNS} FROM {} WHERE id = $1", t.tasks))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(task_from_row).transpose()?)
    }

    /// Stops a task at `now`: its end moves to `now` unless it ended already (to its start if it has not
    /// started, so that the window stays [start, end) with start <= end), and `stopped_at` is set once.
    /// Returns the task as it is afterwards, `None` if there is no such task.
    pub(crate) async fn stop_task_in(
        &self,
        t: FeatureTables,
        id: &str,
        now: i64,
    ) -> Result<Option<RecordTask>, StoreError> {
        sqlx::query(&format!(
            "UPDATE {} SET end_time = CASE WHEN end_time <= $1 THEN end_time \
             WHEN start_time > $1 THEN start_time ELSE $1 END, stopped_at = CASE WHEN stopped_at = 0 THEN $1 ELSE stopped_at END WHERE id = $2",
            t.tasks
        ))
        .bind(now)
        .bind(id)
        .execute(self.pool())
        .await?;
        self.task_in(t, id).await
    }

    /// Deletes a task. Returns whether it existed.
    pub(crate) async fn delete_task_in(&self, t: FeatureTables, id: &str) -> Result<bool, StoreError> {
        let r = sqlx::query(&format!("DELETE FROM {} WHERE id = $1", t.tasks)).bind(id).execute(self.pool()).await?;
        Ok(r.rows_affected() > 0)
    }

    /// A page of tasks matching `q`, by (start_time, id).
    pub(crate) async fn tasks_page(&self, t: FeatureTables, q: &TaskQuery) -> Result<Vec<RecordTask>, StoreError> {
        let (after_start, after_id) = q.after.clone().unwrap_or((i64::MIN, String::new()));
        let rows = sqlx::query(&format!(
            "SELECT {TASK_COLUMNS} FROM {} WHERE start_time >= $1 AND end_time <= $2 AND ($3 = '' OR domain = $3) \
             AND ($4 = '' OR app = $4) AND ($5 = '' OR stream = $5) \
             AND (start_time > $6 OR (start_time = $6 AND id > $7)) ORDER BY start_time, id LIMIT $8",
            t.tasks
        ))
        .bind(q.from)
        .bind(q.to)
        .bind(&q.domain)
        .bind(&q.app)
        .bind(&q.stream)
        .bind(after_start)
        .bind(after_id)
        .bind(q.limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(task_from_row).collect::<Result<_, _>>()?)
    }

    /// Tasks whose window contains `now` (start_time <= now < end_time), by (start_time, id).
    pub(crate) async fn active_tasks_in(&self, t: FeatureTables, now: i64) -> Result<Vec<RecordTask>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TASK_COLUMNS} FROM {} WHERE start_time <= $1 AND end_time > $1 ORDER BY start_time, id",
            t.tasks
        ))
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(task_from_row).collect::<Result<_, _>>()?)
    }

    /// Whether a task that has not ended by `now` uses template `id`.
    pub(crate) async fn template_has_pending_tasks(
        &self,
        t: FeatureTables,
        id: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(&format!("SELECT id FROM {} WHERE template_id = $1 AND end_time > $2", t.tasks))
            .bind(id)
            .bind(now)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.is_some())
    }
}

/// Recording.
impl Store {
    /// Number of record templates.
    pub async fn record_template_count(&self) -> Result<i64, StoreError> {
        self.template_count(RECORD.templates).await
    }

    /// Inserts a template (its `id` is ignored) and returns the new id.
    pub async fn create_record_template(&self, t: &RecordTemplate) -> Result<i64, StoreError> {
        self.insert_template(RECORD.templates, t).await
    }

    /// Overwrites every field of template `t.id`. Returns whether it exists.
    pub async fn update_record_template(&self, t: &RecordTemplate) -> Result<bool, StoreError> {
        self.update_template(RECORD.templates, t.id, t).await
    }

    /// One template.
    pub async fn record_template(&self, id: i64) -> Result<Option<RecordTemplate>, StoreError> {
        self.template_by_id(RECORD.templates, id).await
    }

    /// Every template, by id.
    pub async fn record_templates(&self) -> Result<Vec<RecordTemplate>, StoreError> {
        self.all_templates(RECORD.templates).await
    }

    /// Deletes a template. Returns whether it existed.
    pub async fn delete_record_template(&self, id: i64) -> Result<bool, StoreError> {
        self.delete_template(RECORD.templates, id).await
    }

    /// Whether a rule binds the template, or a task that has not ended by `now` uses it.
    pub async fn record_template_in_use(&self, id: i64, now: i64) -> Result<bool, StoreError> {
        Ok(self.template_in_use(RECORD.templates, id).await?
            || self.template_has_pending_tasks(RECORD, id, now).await?)
    }

    /// Creates a rule (`created_at`/`updated_at` as given; empty or `*` app/stream = every one) unless one of that
    /// (domain, app, stream) exists or `max_rules` exist already.
    pub async fn create_record_rule(&self, rule: &RecordRule, max_rules: i64) -> Result<RuleInsert, StoreError> {
        self.insert_rule(RECORD.templates, rule, Some(max_rules)).await
    }

    /// Every rule, by (domain, app, stream).
    pub async fn record_rules(&self) -> Result<Vec<RecordRule>, StoreError> {
        self.rules_in(RECORD.templates, None).await
    }

    /// Deletes the rule of (domain, app, stream). Returns whether it existed.
    pub async fn delete_record_rule(&self, domain: &str, app: &str, stream: &str) -> Result<bool, StoreError> {
        self.delete_rule_in(RECORD.templates, domain, &rule_part(app), &rule_part(stream)).await
    }

    /// The highest-priority rule matching the stream, with its template.
    pub async fn record_rule_for(
        &self,
        domain: &str,
        app: &str,
        stream: &str,
    ) -> Result<Option<(RecordRule, RecordTemplate)>, StoreError> {
        self.rule_for_in(RECORD.templates, domain, app, stream).await
    }

    /// Stores a new task.
    pub async fn create_record_task(&self, task: &RecordTask) -> Result<(), StoreError> {
        self.insert_task(RECORD, task).await
    }

    /// One task.
    pub async fn record_task(&self, id: &str) -> Result<Option<RecordTask>, StoreError> {
        self.task_in(RECORD, id).await
    }

    /// Stops a task at `now` (see [`Store::stop_task_in`]); `None` if there is no such task.
    pub async fn stop_record_task(&self, id: &str, now: i64) -> Result<Option<RecordTask>, StoreError> {
        self.stop_task_in(RECORD, id, now).await
    }

    /// Deletes a task. Returns whether it existed.
    pub async fn delete_record_task(&self, id: &str) -> Result<bool, StoreError> {
        self.delete_task_in(RECORD, id).await
    }

    /// A page of tasks, by (start_time, id).
    pub async fn record_tasks(&self, q: &TaskQuery) -> Result<Vec<RecordTask>, StoreError> {
        self.tasks_page(RECORD, q).await
    }

    /// Tasks whose window contains `now_s` (start <= now < end), with their templates; a task whose template is 0
    /// or gone gets [`RecordTemplate::task_default`].
    pub async fn active_record_tasks(&self, now_s: i64) -> Result<Vec<(RecordTask, RecordTemplate)>, StoreError> {
        let tasks = self.active_tasks_in(RECORD, now_s).await?;
        let mut out = Vec::with_capacity(tasks.len());
        for task in tasks {
            let template = match task.template_id {
                0 => None,
                id => self.record_template(id).await?,
            };
            out.push((task, template.unwrap_or_else(RecordTemplate::task_default)));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::stores_with_empty;

    async fn stores() -> Vec<Store> {
        stores_with_empty(&["record_tasks", "record_rules", "record_templates"]).await
    }

    fn template(name: &str) -> RecordTemplate {
        RecordTemplate {
            name: name.into(),
            flv: RecordFormatParam {
                enable: true,
                interval_s: 600,
                storage_time_s: 3600,
                bucket: "b".into(),
                region: "r".into(),
                path: "/{StreamID}".into(),
                vod_file_name: "f".into(),
                vod_sub_app_id: 7,
                procedure: "p".into(),
                storage_mode: "cold".into(),
                class_id: 3,
            },
            hls: RecordFormatParam::disabled(),
            mp4: RecordFormatParam::disabled(),
            aac: RecordFormatParam::disabled(),
            mp3: RecordFormatParam::disabled(),
            hls_resume_timeout_s: 30,
            ..RecordTemplate::default()
        }
    }

    fn rule(app: &str, stream: &str, template_id: i64) -> RecordRule {
        RecordRule {
            domain: "d.com".into(),
            app: app.into(),
            stream: stream.into(),
            template_id,
            created_at: 1,
            updated_at: 2,
        }
    }

    fn task(id: &str, start_time: i64, end_time: i64, template_id: i64) -> RecordTask {
        RecordTask {
            id: id.into(),
            domain: "d.com".into(),
            app: "live".into(),
            stream: "s".into(),
            start_time,
            end_time,
            template_id,
            extension: "x".into(),
            created_at: start_time,
            ..RecordTask::default()
        }
    }

    #[tokio::test]
    async fn store_record_templates_round_trip_and_in_use() {
        for store in stores().await {
            let a = store.create_record_template(&template("a")).await.expect("create");
            let mut t = store.record_template(a).await.expect("get").expect("exists");
            assert_eq!(t, RecordTemplate { id: a, ..template("a") }, "every field comes back");
            assert!(!t.records_nothing());
            t.flv.enable = false;
            t.mp3 = RecordFormatParam { enable: true, interval_s: 120, ..RecordFormatParam::default() };
            t.remove_watermark = true;
            t.flv_upload_in_recording = true;
            assert!(store.update_record_template(&t).await.expect("update"));
            assert_eq!(store.record_template(a).await.expect("get"), Some(t.clone()));
            let none = RecordTemplate { name: "none".into(), ..RecordTemplate::default() };
            let n = store.create_record_template(&none).await.expect("create");
            assert!(store.record_template(n).await.expect("get").expect("exists").records_nothing());
            assert_eq!(store.record_template_count().await.expect("count"), 2);
            assert!(!store.update_record_template(&RecordTemplate { id: 9999, ..t }).await.expect("update"));

            assert!(!store.record_template_in_use(a, 100).await.expect("in use"));
            store.create_record_task(&task("t1", 100, 200, a)).await.expect("task");
            assert!(store.record_template_in_use(a, 150).await.expect("in use"), "a pending task uses it");
            assert!(!store.record_template_in_use(a, 200).await.expect("in use"), "the task has ended");
            assert_eq!(store.create_record_rule(&rule("", "", a), 50).await.expect("rule"), RuleInsert::Created);
            assert!(store.record_template_in_use(a, 200).await.expect("in use"), "a rule binds it");
            assert!(store.delete_record_rule("d.com", "*", "").await.expect("delete"));
            assert!(!store.record_template_in_use(a, 200).await.expect("in use"));
            assert!(store.delete_record_template(a).await.expect("delete"));
            assert!(!store.delete_record_template(a).await.expect("delete"));
            assert_eq!(store.record_templates().await.expect("all").len(), 1);
        }
    }

    #[tokio::test]
    async fn store_record_rule_priority_uniqueness_and_limit() {
        for store in stores().await {
            let ids: Vec<i64> = {
                let mut v = Vec::new();
                for name in ["domain", "app", "stream", "exact"] {
                    v.push(store.create_record_template(&template(name)).await.expect("create"));
                }
                v
            };
            let (domain, app, stream, exact) = (ids[0], ids[1], ids[2], ids[3]);
            for r in [rule("*", "", domain), rule("live", "", app), rule("", "s1", stream), rule("live", "s1", exact)] {
                assert_eq!(store.create_record_rule(&r, 50).await.expect("rule"), RuleInsert::Created);
            }
            assert_eq!(store.create_record_rule(&rule("", "*", exact), 50).await.expect("dup"), RuleInsert::Exists);
            let id_for = |app: &'static str, stream: &'static str| {
                let store = store.clone();
                async move {
                    store.record_rule_for("D.com", app, stream).await.expect("match").map(|(r, t)| {
                        assert_eq!(r.template_id, t.id);
                        t.id
                    })
                }
            };
            assert_eq!(id_for("live", "s1").await, Some(exact), "(D,A,S) first");
            assert_eq!(id_for("other", "s1").await, Some(stream), "then (D,-,S)");
            assert_eq!(id_for("live", "s2").await, Some(app), "then (D,A,-)");
            assert_eq!(id_for("other", "s2").await, Some(domain), "then (D,-,-)");
            assert_eq!(store.record_rule_for("x.com", "live", "s1").await.expect("m"), None);
            let rules = store.record_rules().await.expect("rules");
            assert_eq!(rules.len(), 4);
            assert_eq!((rules[0].app.as_str(), rules[0].stream.as_str()), ("", ""), "wildcards are stored as ''");
            assert_eq!((rules[0].created_at, rules[0].updated_at), (1, 2));

            // The limit counts every rule.
            for i in 0..46 {
                let r = rule("live", &format!("n{i}"), domain);
                assert_eq!(store.create_record_rule(&r, 50).await.expect("rule"), RuleInsert::Created);
            }
            let r = rule("live", "one-too-many", domain);
            assert_eq!(store.create_record_rule(&r, 50).await.expect("rule"), RuleInsert::LimitReached);
            assert_eq!(store.record_rules().await.expect("rules").len(), 50);
        }
    }

    #[tokio::test]
    async fn store_record_task_windows_stop_and_paging() {
        for store in stores().await {
            let a = store.create_record_template(&template("a")).await.expect("create");
            store.create_record_task(&task("t1", 100, 200, a)).await.expect("task");
            store.create_record_task(&task("t2", 150, 300, 0)).await.expect("task");
            store.create_record_task(&task("t3", 150, 160, 9999)).await.expect("task");
            store.create_record_task(&task("t4", 400, 500, a)).await.expect("task");
            let active = |now: i64| {
                let store = store.clone();
                async move {
                    store
                        .active_record_tasks(now)
                        .await
                        .expect("active")
                        .into_iter()
                        .map(|(t, tpl)| (t.id, tpl.id))
                        .collect::<Vec<_>>()
                }
            };
            assert_eq!(active(99).await, []);
            assert_eq!(active(100).await, [("t1".to_string(), a)], "the start is inclusive");
            assert_eq!(
                active(155).await,
                [("t1".to_string(), a), ("t2".to_string(), 0), ("t3".to_string(), 0)],
                "template 0 or a missing one means the default template"
            );
            assert_eq!(active(200).await, [("t2".to_string(), 0)], "the end is exclusive");
            let (t, tpl) = store.active_record_tasks(155).await.expect("active").remove(1);
            assert_eq!(tpl, RecordTemplate::task_default());
            assert!(tpl.hls.enable && !tpl.records_nothing());
            assert_eq!(t, task("t2", 150, 300, 0));

            // Stop: the end moves to now, `stopped_at` is set once; a task that ended keeps its end.
            let stopped = store.stop_record_task("t2", 170).await.expect("stop").expect("exists");
            assert_eq!((stopped.end_time, stopped.stopped_at), (170, 170));
            let again = store.stop_record_task("t2", 180).await.expect("stop").expect("exists");
            assert_eq!((again.end_time, again.stopped_at), (170, 170));
            let ended = store.stop_record_task("t3", 180).await.expect("stop").expect("exists");
            assert_eq!((ended.end_time, ended.stopped_at), (160, 180));
            assert_eq!(store.stop_record_task("nope", 180).await.expect("stop"), None);
            store.create_record_task(&task("t5", 900, 950, a)).await.expect("task");
            let early = store.stop_record_task("t5", 180).await.expect("stop").expect("exists");
            assert_eq!((early.start_time, early.end_time, early.stopped_at), (900, 900, 180), "never started");
            assert!(store.delete_record_task("t5").await.expect("delete"));
            assert_eq!(active(175).await, [("t1".to_string(), a)]);

            // Paging by (start_time, id); the window must contain the whole task.
            let mut q = TaskQuery { from: 100, to: 500, limit: 2, ..TaskQuery::default() };
            let page = store.record_tasks(&q).await.expect("page");
            assert_eq!(page.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["t1", "t2"]);
            q.after = Some((150, "t2".into()));
            let page = store.record_tasks(&q).await.expect("page");
            assert_eq!(page.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["t3", "t4"]);
            let q = TaskQuery { from: 100, to: 499, limit: 10, stream: "s".into(), ..TaskQuery::default() };
            assert_eq!(store.record_tasks(&q).await.expect("page").len(), 3, "t4 ends after the window");
            let q = TaskQuery { from: 0, to: 999, limit: 10, app: "other".into(), ..TaskQuery::default() };
            assert!(store.record_tasks(&q).await.expect("page").is_empty());

            assert!(store.delete_record_task("t1").await.expect("delete"));
            assert!(!store.delete_record_task("t1").await.expect("delete"));
            assert_eq!(store.record_task("t1").await.expect("get"), None);
            assert_eq!(store.record_task("t4").await.expect("get"), Some(task("t4", 400, 500, a)));
        }
    }

    #[test]
    fn task_ids_are_unique_and_sortable() {
        let a = new_task_id(1_700_000_000_000);
        let b = new_task_id(1_700_000_000_001);
        assert_eq!(a.len(), 32);
        assert!(a < b);
        assert_ne!(new_task_id(5), new_task_id(5));
    }
}
