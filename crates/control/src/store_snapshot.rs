//! Store functions for screenshots: snapshot templates, snapshot rules and screenshot tasks
//! (CreateScreenshotTask). Rules and tasks share their plumbing with recording ([`crate::store_record`]): the same
//! rule precedence, `""` wildcards, one rule per (domain, app, stream), and task windows [start, end).

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::store::{Store, StoreError, TemplateTables, unix_now};
use crate::store_record::{FeatureTables, RecordRule, RecordTask, RuleInsert, TaskQuery};

/// `SnapshotInterval` when the request leaves it out (seconds).
pub const DEFAULT_SNAPSHOT_INTERVAL_S: i64 = 10;
/// `CosPrefix` when the request leaves it out.
pub const DEFAULT_COS_PREFIX: &str = "/{Year}-{Month}-{Day}";
/// `CosFileName` when the request leaves it out.
pub const DEFAULT_COS_FILE_NAME: &str = "{StreamID}-screenshot-{Hour}-{Minute}-{Second}-{Width}x{Height}{Ext}";

/// A snapshot template (`SnapshotTemplateInfo`). Storage fields are kept verbatim: the engine maps `bucket` to a
/// configured storage target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotTemplate {
    /// `TemplateId`.
    pub id: i64,
    /// `TemplateName`.
    pub name: String,
    /// `Description`.
    pub description: String,
    /// `SnapshotInterval`: seconds between screenshots.
    pub interval_s: i64,
    /// `Width`: 0 = derived from the source (see the spec's output size rules).
    pub width: i64,
    /// `Height`: 0 = derived from the source.
    pub height: i64,
    /// `PornFlag`: 1 = send screenshots to moderation.
    pub porn_flag: i64,
    /// `CosAppId`.
    pub cos_app_id: i64,
    /// `CosBucket`.
    pub bucket: String,
    /// `CosRegion`.
    pub region: String,
    /// `CosPrefix`: the folder template.
    pub prefix: String,
    /// `CosFileName`: the file name template.
    pub file_name: String,
}

/// A snapshot rule (`RuleInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotRule {
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

impl From<RecordRule> for SnapshotRule {
    fn from(r: RecordRule) -> SnapshotRule {
        SnapshotRule {
            domain: r.domain,
            app: r.app,
            stream: r.stream,
            template_id: r.template_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// A screenshot task (`ScreenshotTask`): take screenshots of the stream during [start_time, end_time).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScreenshotTask {
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
    /// UNIX seconds, exclusive. StopScreenshotTask moves it to the time of the call.
    pub end_time: i64,
    /// The template.
    pub template_id: i64,
    /// 0 a pushed stream, 1 a mix output.
    pub stream_type: i64,
    /// `Extension`, verbatim.
    pub extension: String,
    /// UNIX seconds.
    pub created_at: i64,
    /// `Stopped`: when StopScreenshotTask was called, 0 if never.
    pub stopped_at: i64,
}

impl From<RecordTask> for ScreenshotTask {
    fn from(t: RecordTask) -> ScreenshotTask {
        ScreenshotTask {
            id: t.id,
            domain: t.domain,
            app: t.app,
            stream: t.stream,
            start_time: t.start_time,
            end_time: t.end_time,
            template_id: t.template_id,
            stream_type: t.stream_type,
            extension: t.extension,
            created_at: t.created_at,
            stopped_at: t.stopped_at,
        }
    }
}

impl From<&ScreenshotTask> for RecordTask {
    fn from(t: &ScreenshotTask) -> RecordTask {
        RecordTask {
            id: t.id.clone(),
            domain: t.domain.clone(),
            app: t.app.clone(),
            stream: t.stream.clone(),
            start_time: t.start_time,
            end_time: t.end_time,
            template_id: t.template_id,
            stream_type: t.stream_type,
            extension: t.extension.clone(),
            created_at: t.created_at,
            stopped_at: t.stopped_at,
        }
    }
}

const TEMPLATE_COLUMNS: &str =
    "id, name, description, interval_s, width, height, porn_flag, cos_app_id, bucket, region, prefix, file_name";

pub(crate) const SNAPSHOT: FeatureTables = FeatureTables {
    templates: TemplateTables { templates: "snapshot_templates", rules: "snapshot_rules" },
    tasks: "screenshot_tasks",
};

fn template_from_row(row: &AnyRow) -> Result<SnapshotTemplate, sqlx::Error> {
    Ok(SnapshotTemplate {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        interval_s: row.try_get("interval_s")?,
        width: row.try_get("width")?,
        height: row.try_get("height")?,
        porn_flag: row.try_get("porn_flag")?,
        cos_app_id: row.try_get("cos_app_id")?,
        bucket: row.try_get("bucket")?,
        region: row.try_get("region")?,
        prefix: row.try_get("prefix")?,
        file_name: row.try_get("file_name")?,
    })
}

impl Store {
    /// Number of snapshot templates.
    pub async fn snapshot_template_count(&self) -> Result<i64, StoreError> {
        self.template_count(SNAPSHOT.templates).await
    }

    /// Inserts a template (its `id` is ignored) and returns the new id.
    pub async fn create_snapshot_template(&self, t: &SnapshotTemplate) -> Result<i64, StoreError> {
        let now = unix_now();
        let row = sqlx::query(
            "INSERT INTO snapshot_templates (name, description, interval_s, width, height, porn_flag, cos_app_id, \
             bucket, region, prefix, file_name, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
        )
        .bind(&t.name)
        .bind(&t.description)
        .bind(t.interval_s)
        .bind(t.width)
        .bind(t.height)
        .bind(t.porn_flag)
        .bind(t.cos_app_id)
        .bind(&t.bucket)
        .bind(&t.region)
        .bind(&t.prefix)
        .bind(&t.file_name)
        .bind(now)
        .bind(now)
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get("id")?)
    }

    /// Overwrites every field of template `t.id`. Returns whether it exists.
    pub async fn update_snapshot_template(&self, t: &SnapshotTemplate) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE snapshot_templates SET name = $1, description = $2, interval_s = $3, width = $4, height = $5, \
             porn_flag = $6, cos_app_id = $7, bucket = $8, region = $9, prefix = $10, file_name = $11, \
             updated_at = $12 WHERE id = $13",
        )
        .bind(&t.name)
        .bind(&t.description)
        .bind(t.interval_s)
        .bind(t.width)
        .bind(t.height)
        .bind(t.porn_flag)
        .bind(t.cos_app_id)
        .bind(&t.bucket)
        .bind(&t.region)
        .bind(&t.prefix)
        .bind(&t.file_name)
        .bind(unix_now())
        .bind(t.id)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// One template.
    pub async fn snapshot_template(&self, id: i64) -> Result<Option<SnapshotTemplate>, StoreError> {
        let row = sqlx::query(&format!("SELECT {TEMPLATE_COLUMNS} FROM snapshot_templates WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(template_from_row).transpose()?)
    }

    /// Every template, by id.
    pub async fn snapshot_templates(&self) -> Result<Vec<SnapshotTemplate>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {TEMPLATE_COLUMNS} FROM snapshot_templates ORDER BY id"))
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(template_from_row).collect::<Result<_, _>>()?)
    }

    /// Deletes a template. Returns whether it existed.
    pub async fn delete_snapshot_template(&self, id: i64) -> Result<bool, StoreError> {
        self.delete_template(SNAPSHOT.templates, id).await
    }

    /// Whether a rule binds the template, or a task that has not ended by `now` uses it.
    pub async fn snapshot_template_in_use(&self, id: i64, now: i64) -> Result<bool, StoreError> {
        Ok(self.template_in_use(SNAPSHOT.templates, id).await?
            || self.template_has_pending_tasks(SNAPSHOT, id, now).await?)
    }

    /// Creates a rule (empty or `*` app/stream = every one) unless one of that (domain, app, stream) exists or
    /// `max_rules` (when given) exist already.
    pub async fn create_snapshot_rule(
        &self,
        rule: &SnapshotRule,
        max_rules: Option<i64>,
    ) -> Result<RuleInsert, StoreError> {
        let r = RecordRule {
            domain: rule.domain.clone(),
            app: rule.app.clone(),
            stream: rule.stream.clone(),
            template_id: rule.template_id,
            created_at: rule.created_at,
            updated_at: rule.updated_at,
        };
        self.insert_rule(SNAPSHOT, &r, max_rules).await
    }

    /// Every rule, by (domain, app, stream).
    pub async fn snapshot_rules(&self) -> Result<Vec<SnapshotRule>, StoreError> {
        Ok(self.rules_in(SNAPSHOT, None).await?.into_iter().map(SnapshotRule::from).collect())
    }

    /// Deletes the rule of (domain, app, stream). Returns whether it existed.
    pub async fn delete_snapshot_rule(&self, domain: &str, app: &str, stream: &str) -> Result<bool, StoreError> {
        self.delete_rule_in(SNAPSHOT, domain, app, stream).await
    }

    /// The highest-priority rule matching the stream, with its template.
    pub async fn snapshot_rule_for(
        &self,
        domain: &str,
        app: &str,
        stream: &str,
    ) -> Result<Option<(SnapshotRule, SnapshotTemplate)>, StoreError> {
        let Some(rule) = self.rule_for_in(SNAPSHOT, domain, app, stream).await? else {
            return Ok(None);
        };
        Ok(self.snapshot_template(rule.template_id).await?.map(|t| (rule.into(), t)))
    }

    /// Stores a new task.
    pub async fn create_screenshot_task(&self, task: &ScreenshotTask) -> Result<(), StoreError> {
        self.insert_task(SNAPSHOT, &task.into()).await
    }

    /// One task.
    pub async fn screenshot_task(&self, id: &str) -> Result<Option<ScreenshotTask>, StoreError> {
        Ok(self.task_in(SNAPSHOT, id).await?.map(ScreenshotTask::from))
    }

    /// Stops a task at `now` (its end moves to `now`, or to its start if it has not started, unless it ended
    /// already; `stopped_at` is set once); `None` if there is no such task.
    pub async fn stop_screenshot_task(&self, id: &str, now: i64) -> Result<Option<ScreenshotTask>, StoreError> {
        Ok(self.stop_task_in(SNAPSHOT, id, now).await?.map(ScreenshotTask::from))
    }

    /// Deletes a task. Returns whether it existed.
    pub async fn delete_screenshot_task(&self, id: &str) -> Result<bool, StoreError> {
        self.delete_task_in(SNAPSHOT, id).await
    }

    /// A page of tasks, by (start_time, id).
    pub async fn screenshot_tasks(&self, q: &TaskQuery) -> Result<Vec<ScreenshotTask>, StoreError> {
        Ok(self.tasks_page(SNAPSHOT, q).await?.into_iter().map(ScreenshotTask::from).collect())
    }

    /// Tasks whose window contains `now_s` (start <= now < end), with their templates. A task whose template was
    /// deleted takes no screenshots (CreateScreenshotTask: "with a wrong template ID, no screenshots are taken"),
    /// so it is left out.
    pub async fn active_screenshot_tasks(
        &self,
        now_s: i64,
    ) -> Result<Vec<(ScreenshotTask, SnapshotTemplate)>, StoreError> {
        let tasks = self.active_tasks_in(SNAPSHOT, now_s).await?;
        let mut out = Vec::with_capacity(tasks.len());
        for task in tasks {
            if let Some(template) = self.snapshot_template(task.template_id).await? {
                out.push((task.into(), template));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::stores_with_empty;

    async fn stores() -> Vec<Store> {
        stores_with_empty(&["screenshot_tasks", "snapshot_rules", "snapshot_templates"]).await
    }

    fn template(name: &str) -> SnapshotTemplate {
        SnapshotTemplate {
            name: name.into(),
            description: "d".into(),
            interval_s: 10,
            width: 640,
            height: 360,
            porn_flag: 1,
            cos_app_id: 1_250_000_000,
            bucket: "bucket".into(),
            region: "ap-guangzhou".into(),
            prefix: DEFAULT_COS_PREFIX.into(),
            file_name: DEFAULT_COS_FILE_NAME.into(),
            ..SnapshotTemplate::default()
        }
    }

    fn rule(app: &str, stream: &str, template_id: i64) -> SnapshotRule {
        SnapshotRule {
            domain: "d.com".into(),
            app: app.into(),
            stream: stream.into(),
            template_id,
            ..Default::default()
        }
    }

    fn task(id: &str, start_time: i64, end_time: i64, template_id: i64) -> ScreenshotTask {
        ScreenshotTask {
            id: id.into(),
            domain: "d.com".into(),
            app: "live".into(),
            stream: "s".into(),
            start_time,
            end_time,
            template_id,
            stream_type: 1,
            created_at: start_time,
            ..ScreenshotTask::default()
        }
    }

    #[tokio::test]
    async fn store_snapshot_templates_rules_and_priority() {
        for store in stores().await {
            let a = store.create_snapshot_template(&template("a")).await.expect("create");
            let mut t = store.snapshot_template(a).await.expect("get").expect("exists");
            assert_eq!(t, SnapshotTemplate { id: a, ..template("a") });
            t.interval_s = 300;
            t.width = 0;
            t.bucket = "other".into();
            assert!(store.update_snapshot_template(&t).await.expect("update"));
            assert_eq!(store.snapshot_template(a).await.expect("get"), Some(t));
            let mut ids = vec![a];
            for name in ["app", "stream", "exact"] {
                ids.push(store.create_snapshot_template(&template(name)).await.expect("create"));
            }
            let rules =
                [rule("", "", ids[0]), rule("live", "*", ids[1]), rule("*", "s1", ids[2]), rule("live", "s1", ids[3])];
            for r in &rules {
                assert_eq!(store.create_snapshot_rule(r, None).await.expect("rule"), RuleInsert::Created);
            }
            assert_eq!(store.create_snapshot_rule(&rules[3], None).await.expect("dup"), RuleInsert::Exists);
            assert_eq!(
                store.create_snapshot_rule(&rule("x", "y", a), Some(4)).await.expect("full"),
                RuleInsert::LimitReached
            );
            let id_for = |app: &'static str, stream: &'static str| {
                let store = store.clone();
                async move { store.snapshot_rule_for("d.com", app, stream).await.expect("match").map(|(_, t)| t.id) }
            };
            assert_eq!(id_for("live", "s1").await, Some(ids[3]));
            assert_eq!(id_for("other", "s1").await, Some(ids[2]));
            assert_eq!(id_for("live", "s2").await, Some(ids[1]));
            assert_eq!(id_for("other", "s2").await, Some(ids[0]));
            assert_eq!(store.snapshot_rules().await.expect("rules").len(), 4);
            assert!(store.snapshot_template_in_use(a, 0).await.expect("in use"));
            assert!(store.delete_snapshot_rule("d.com", "", "*").await.expect("delete"));
            assert!(!store.delete_snapshot_rule("d.com", "", "").await.expect("delete"));
            assert_eq!(id_for("other", "s2").await, None);
            assert!(!store.snapshot_template_in_use(a, 0).await.expect("in use"));
            assert_eq!(store.snapshot_template_count().await.expect("count"), 4);
            assert!(store.delete_snapshot_template(a).await.expect("delete"));
            assert_eq!(store.snapshot_templates().await.expect("all").len(), 3);
        }
    }

    #[tokio::test]
    async fn store_screenshot_task_windows() {
        for store in stores().await {
            let a = store.create_snapshot_template(&template("a")).await.expect("create");
            let gone = store.create_snapshot_template(&template("gone")).await.expect("create");
            store.create_screenshot_task(&task("t1", 100, 200, a)).await.expect("task");
            store.create_screenshot_task(&task("t2", 150, 300, gone)).await.expect("task");
            assert!(store.snapshot_template_in_use(gone, 299).await.expect("in use"));
            assert!(!store.snapshot_template_in_use(gone, 300).await.expect("in use"));
            assert!(store.delete_snapshot_template(gone).await.expect("delete"));
            let active = store.active_screenshot_tasks(160).await.expect("active");
            assert_eq!(active.len(), 1, "a task whose template is gone takes no screenshots");
            assert_eq!(active[0].0, task("t1", 100, 200, a));
            assert_eq!(active[0].1.id, a);
            assert!(store.active_screenshot_tasks(200).await.expect("active").is_empty());
            let s = store.stop_screenshot_task("t1", 120).await.expect("stop").expect("exists");
            assert_eq!((s.end_time, s.stopped_at), (120, 120));
            assert!(store.active_screenshot_tasks(130).await.expect("active").is_empty());
            let q = TaskQuery { from: 0, to: 1000, limit: 10, domain: "d.com".into(), ..TaskQuery::default() };
            let listed = store.screenshot_tasks(&q).await.expect("list");
            assert_eq!(listed.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["t1", "t2"]);
            assert!(store.delete_screenshot_task("t2").await.expect("delete"));
            assert_eq!(store.screenshot_task("t2").await.expect("get"), None);
            assert_eq!(store.screenshot_task("t1").await.expect("get").map(|t| t.stopped_at), Some(120));
        }
    }
}
