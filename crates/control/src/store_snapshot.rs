//! Store functions for screenshots: snapshot templates, snapshot rules and screenshot tasks
//! (CreateScreenshotTask). Rules and tasks share their plumbing with recording ([`crate::store_record`]): the same
//! rule precedence, `""` wildcards, one rule per (domain, app, stream), and task windows [start, end).

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::store::{AnyQuery, Store, StoreError, TemplateRow, TemplateTables};
use crate::store_record::{FeatureTables, RecordRule, RecordTask, RuleInsert, TaskQuery, rule_part};

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

/// A snapshot rule (`RuleInfo`): the same row as a record rule (`""` = every app or stream).
pub type SnapshotRule = RecordRule;

/// A screenshot task (`ScreenshotTask`): take screenshots of the stream during [start_time, end_time). The same
/// row as a record task; its template must exist (there is no default).
pub type ScreenshotTask = RecordTask;

pub(crate) const SNAPSHOT: FeatureTables = FeatureTables {
    templates: TemplateTables { templates: "snapshot_templates", rules: "snapshot_rules" },
    tasks: "screenshot_tasks",
};

impl TemplateRow for SnapshotTemplate {
    const FIELDS: &'static [&'static str] = &[
        "name",
        "description",
        "interval_s",
        "width",
        "height",
        "porn_flag",
        "cos_app_id",
        "bucket",
        "region",
        "prefix",
        "file_name",
    ];

    fn bind_fields<'q>(&'q self, q: AnyQuery<'q>) -> Result<AnyQuery<'q>, StoreError> {
        Ok(q.bind(&self.name)
            .bind(&self.description)
            .bind(self.interval_s)
            .bind(self.width)
            .bind(self.height)
            .bind(self.porn_flag)
            .bind(self.cos_app_id)
            .bind(&self.bucket)
            .bind(&self.region)
            .bind(&self.prefix)
            .bind(&self.file_name))
    }

    fn from_row(row: &AnyRow) -> Result<SnapshotTemplate, sqlx::Error> {
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
}

impl Store {
    /// Number of snapshot templates.
    pub async fn snapshot_template_count(&self) -> Result<i64, StoreError> {
        self.template_count(SNAPSHOT.templates).await
    }

    /// Inserts a template (its `id` is ignored) and returns the new id.
    pub async fn create_snapshot_template(&self, t: &SnapshotTemplate) -> Result<i64, StoreError> {
        self.insert_template(SNAPSHOT.templates, t).await
    }

    /// Overwrites every field of template `t.id`. Returns whether it exists.
    pub async fn update_snapshot_template(&self, t: &SnapshotTemplate) -> Result<bool, StoreError> {
        self.update_template(SNAPSHOT.templates, t.id, t).await
    }

    /// One template.
    pub async fn snapshot_template(&self, id: i64) -> Result<Option<SnapshotTemplate>, StoreError> {
        self.template_by_id(SNAPSHOT.templates, id).await
    }

    /// Every template, by id.
    pub async fn snapshot_templates(&self) -> Result<Vec<SnapshotTemplate>, StoreError> {
        self.all_templates(SNAPSHOT.templates).await
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
        self.insert_rule(SNAPSHOT.templates, rule, max_rules).await
    }

    /// Every rule, by (domain, app, stream).
    pub async fn snapshot_rules(&self) -> Result<Vec<SnapshotRule>, StoreError> {
        self.rules_in(SNAPSHOT.templates, None).await
    }

    /// Deletes the rule of (domain, app, stream). Returns whether it existed.
    pub async fn delete_snapshot_rule(&self, domain: &str, app: &str, stream: &str) -> Result<bool, StoreError> {
        self.delete_rule_in(SNAPSHOT.templates, domain, &rule_part(app), &rule_part(stream)).await
    }

    /// The highest-priority rule matching the stream, with its template.
    pub async fn snapshot_rule_for(
        &self,
        domain: &str,
        app: &str,
        stream: &str,
    ) -> Result<Option<(SnapshotRule, SnapshotTemplate)>, StoreError> {
        self.rule_for_in(SNAPSHOT.templates, domain, app, stream).await
    }

    /// Stores a new task.
    pub async fn create_screenshot_task(&self, task: &ScreenshotTask) -> Result<(), StoreError> {
        self.insert_task(SNAPSHOT, task).await
    }

    /// One task.
    pub async fn screenshot_task(&self, id: &str) -> Result<Option<ScreenshotTask>, StoreError> {
        self.task_in(SNAPSHOT, id).await
    }

    /// Stops a task at `now` (its end moves to `now`, or to its start if it has not started, unless it ended
    /// already; `stopped_at` is set once); `None` if there is no such task.
    pub async fn stop_screenshot_task(&self, id: &str, now: i64) -> Result<Option<ScreenshotTask>, StoreError> {
        self.stop_task_in(SNAPSHOT, id, now).await
    }

    /// Deletes a task. Returns whether it existed.
    pub async fn delete_screenshot_task(&self, id: &str) -> Result<bool, StoreError> {
        self.delete_task_in(SNAPSHOT, id).await
    }

    /// A page of tasks, by (start_time, id).
    pub async fn screenshot_tasks(&self, q: &TaskQuery) -> Result<Vec<ScreenshotTask>, StoreError> {
        self.tasks_page(SNAPSHOT, q).await
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
                out.push((task, template));
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
