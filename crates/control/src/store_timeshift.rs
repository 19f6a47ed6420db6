//! Store functions for time shifting: templates, rules, recording sessions and the per-segment time index.
//!
//! The time index is one row per stored segment (`timeshift_segments`): which session (`sid`) and sequence
//! number it is, the wall-clock time of its first frame (UNIX ms), its duration, where the object lives in the
//! object store, and when it expires. Playback windows are answered from this table alone; the object store only
//! holds the bytes. Portable SQL through `sqlx::Any`, like [`crate::store`].
//!
//! Rule precedence (most specific wins): an exact (domain, app, stream) rule, then (domain, app, `*`), then
//! (domain, `*`, stream), then (domain, `*`, `*`). An empty AppName or StreamName is stored as `*`.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::store::{AnyQuery, Store, StoreError, TemplateRow, TemplateTables, unix_now};
use crate::store_record::{RecordRule, insert_rule_row};

/// A time-shift template (`TimeShiftTemplate`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeShiftTemplate {
    /// `TemplateId`.
    pub id: i64,
    /// `TemplateName`.
    pub name: String,
    /// `Description`.
    pub description: String,
    /// `Duration`: retention in seconds.
    pub duration: i64,
    /// `ItemDuration`: segment length in seconds.
    pub item_duration: i64,
    /// `Area`.
    pub area: String,
    /// `RemoveWatermark`.
    pub remove_watermark: bool,
    /// `TranscodeTemplateIds` as a JSON array.
    pub transcode_template_ids: String,
}

/// A time-shift rule (`RuleInfo`): the same row as a record rule, but a wildcard app or stream is stored as `*`.
pub type TimeShiftRule = RecordRule;

/// One recording session: one publisher of a stream under a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeShiftSession {
    /// Session id (`Sid`).
    pub sid: String,
    /// Push domain.
    pub domain: String,
    /// App name.
    pub app: String,
    /// Stream name.
    pub stream: String,
    /// The template it was recorded with.
    pub template_id: i64,
    /// Retention in seconds (the template's `Duration` when the session started).
    pub retention_s: i64,
    /// Segment length in seconds (the template's `ItemDuration` when the session started).
    pub item_duration: i64,
    /// UNIX ms when the publisher started.
    pub start_ms: i64,
    /// UNIX ms of the end of the last stored segment, if any.
    pub end_ms: Option<i64>,
}

/// One row of the time index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeShiftSegment {
    /// Session id.
    pub sid: String,
    /// Sequence number within the session, from 0.
    pub seq: i64,
    /// Push domain.
    pub domain: String,
    /// App name.
    pub app: String,
    /// Stream name.
    pub stream: String,
    /// Wall clock of the first frame, UNIX ms.
    pub wall_ms: i64,
    /// Duration in ms.
    pub duration_ms: i64,
    /// Object path in the object store.
    pub path: String,
    /// Preceded by a discontinuity (new tracks within the session).
    pub discontinuity: bool,
    /// Size in bytes.
    pub bytes: i64,
    /// UNIX ms after which retention deletes it.
    pub expires_at_ms: i64,
}

impl TimeShiftSegment {
    /// Wall clock of its end, UNIX ms.
    pub fn end_ms(&self) -> i64 {
        self.wall_ms + self.duration_ms
    }
}

const SESSION_COLUMNS: &str = "sid, domain, app, stream, template_id, retention_s, item_duration, start_ms, end_ms";
const SEGMENT_COLUMNS: &str =
    "sid, seq, domain, app, stream, wall_ms, duration_ms, path, discontinuity, bytes, expires_at_ms";

impl TemplateRow for TimeShiftTemplate {
    const FIELDS: &'static [&'static str] =
        &["name", "description", "duration", "item_duration", "area", "remove_watermark", "transcode_template_ids"];

    fn bind_fields<'q>(&'q self, q: AnyQuery<'q>) -> Result<AnyQuery<'q>, StoreError> {
        Ok(q.bind(&self.name)
            .bind(&self.description)
            .bind(self.duration)
            .bind(self.item_duration)
            .bind(&self.area)
            .bind(i64::from(self.remove_watermark))
            .bind(&self.transcode_template_ids))
    }

    fn from_row(row: &AnyRow) -> Result<TimeShiftTemplate, sqlx::Error> {
        Ok(TimeShiftTemplate {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            description: row.try_get("description")?,
            duration: row.try_get("duration")?,
            item_duration: row.try_get("item_duration")?,
            area: row.try_get("area")?,
            remove_watermark: row.try_get::<i64, _>("remove_watermark")? != 0,
            transcode_template_ids: row.try_get("transcode_template_ids")?,
        })
    }
}

fn session_from_row(row: &AnyRow) -> Result<TimeShiftSession, sqlx::Error> {
    Ok(TimeShiftSession {
        sid: row.try_get("sid")?,
        domain: row.try_get("domain")?,
        app: row.try_get("app")?,
        stream: row.try_get("stream")?,
        template_id: row.try_get("template_id")?,
        retention_s: row.try_get("retention_s")?,
        item_duration: row.try_get("item_duration")?,
        start_ms: row.try_get("start_ms")?,
        end_ms: row.try_get("end_ms")?,
    })
}

fn segment_from_row(row: &AnyRow) -> Result<TimeShiftSegment, sqlx::Error> {
    Ok(TimeShiftSegment {
        sid: row.try_get("sid")?,
        seq: row.try_get("seq")?,
        domain: row.try_get("domain")?,
        app: row.try_get("app")?,
        stream: row.try_get("stream")?,
        wall_ms: row.try_get("wall_ms")?,
        duration_ms: row.try_get("duration_ms")?,
        path: row.try_get("path")?,
        discontinuity: row.try_get::<i64, _>("discontinuity")? != 0,
        bytes: row.try_get("bytes")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
    })
}

/// Normalizes a rule's app or stream: empty means every one (`*`).
pub fn rule_part(s: &str) -> String {
    let s = s.trim();
    if s.is_empty() { "*".to_string() } else { s.to_string() }
}

/// How specific a rule is for a stream, or `None` when it does not match (higher wins).
pub fn rule_rank(rule: &TimeShiftRule, domain: &str, app: &str, stream: &str) -> Option<u8> {
    if !rule.domain.eq_ignore_ascii_case(domain) {
        return None;
    }
    crate::store_record::rule_rank(&rule.app, &rule.stream, app, stream)
}

const TABLES: TemplateTables = TemplateTables { templates: "timeshift_templates", rules: "timeshift_rules" };

impl Store {
    /// Number of time-shift templates.
    pub async fn timeshift_template_count(&self) -> Result<i64, StoreError> {
        self.template_count(TABLES).await
    }

    /// Inserts a template (its `id` is ignored) and returns the new id.
    pub async fn create_timeshift_template(&self, t: &TimeShiftTemplate) -> Result<i64, StoreError> {
        self.insert_template(TABLES, t).await
    }

    /// Overwrites every field of template `t.id`. Returns whether it exists.
    pub async fn update_timeshift_template(&self, t: &TimeShiftTemplate) -> Result<bool, StoreError> {
        self.update_template(TABLES, t.id, t).await
    }

    /// One template.
    pub async fn timeshift_template(&self, id: i64) -> Result<Option<TimeShiftTemplate>, StoreError> {
        self.template_by_id(TABLES, id).await
    }

    /// Every template, by id.
    pub async fn timeshift_templates(&self) -> Result<Vec<TimeShiftTemplate>, StoreError> {
        self.all_templates(TABLES).await
    }

    /// Deletes a template. Returns whether it existed.
    pub async fn delete_timeshift_template(&self, id: i64) -> Result<bool, StoreError> {
        self.delete_template(TABLES, id).await
    }

    /// Whether a rule binds the template.
    pub async fn timeshift_template_in_use(&self, id: i64) -> Result<bool, StoreError> {
        self.template_in_use(TABLES, id).await
    }

    /// Creates or replaces the rule of (domain, app, stream); empty app/stream are stored as `*`.
    pub async fn upsert_timeshift_rule(
        &self,
        domain: &str,
        app: &str,
        stream: &str,
        template_id: i64,
    ) -> Result<(), StoreError> {
        let (app, stream) = (rule_part(app), rule_part(stream));
        let now = unix_now();
        let mut tx = self.pool().begin().await?;
        let old = sqlx::query("SELECT created_at FROM timeshift_rules WHERE domain = $1 AND app = $2 AND stream = $3")
            .bind(domain)
            .bind(&app)
            .bind(&stream)
            .fetch_optional(&mut *tx)
            .await?;
        let created: i64 = match old {
            Some(row) => row.try_get("created_at")?,
            None => now,
        };
        sqlx::query("DELETE FROM timeshift_rules WHERE domain = $1 AND app = $2 AND stream = $3")
            .bind(domain)
            .bind(&app)
            .bind(&stream)
            .execute(&mut *tx)
            .await?;
        let rule =
            RecordRule { domain: domain.to_string(), app, stream, template_id, created_at: created, updated_at: now };
        insert_rule_row(&mut tx, TABLES.rules, &rule).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every rule, by (domain, app, stream).
    pub async fn timeshift_rules(&self) -> Result<Vec<TimeShiftRule>, StoreError> {
        self.rules_in(TABLES, None).await
    }

    /// Deletes the rule of (domain, app, stream). Returns whether it existed.
    pub async fn delete_timeshift_rule(&self, domain: &str, app: &str, stream: &str) -> Result<bool, StoreError> {
        self.delete_rule_in(TABLES, domain, &rule_part(app), &rule_part(stream)).await
    }

    /// The template of the most specific rule matching a stream (see the module docs for the precedence).
    pub async fn timeshift_template_for(
        &self,
        domain: &str,
        app: &str,
        stream: &str,
    ) -> Result<Option<TimeShiftTemplate>, StoreError> {
        Ok(self.rule_for_in(TABLES, domain, app, stream).await?.map(|(_, template)| template))
    }

    /// Records a new session.
    pub async fn create_timeshift_session(&self, s: &TimeShiftSession) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO timeshift_sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(&s.sid)
        .bind(&s.domain)
        .bind(&s.app)
        .bind(&s.stream)
        .bind(s.template_id)
        .bind(s.retention_s)
        .bind(s.item_duration)
        .bind(s.start_ms)
        .bind(s.end_ms)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Sessions of a domain (and stream, when not empty) whose recorded span overlaps [from_ms, to_ms], by start.
    pub async fn timeshift_sessions(
        &self,
        domain: &str,
        app: Option<&str>,
        stream: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<TimeShiftSession>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM timeshift_sessions WHERE end_ms IS NOT NULL AND start_ms <= $1 \
             AND end_ms >= $2 AND ($3 = '' OR domain = $3) AND ($4 = '' OR stream = $4) AND ($5 = '' OR app = $5) \
             ORDER BY start_ms, sid"
        ))
        .bind(to_ms)
        .bind(from_ms)
        .bind(domain)
        .bind(stream)
        .bind(app.unwrap_or(""))
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(session_from_row).collect::<Result<_, _>>()?)
    }

    /// One session.
    pub async fn timeshift_session(&self, sid: &str) -> Result<Option<TimeShiftSession>, StoreError> {
        let row = sqlx::query(&format!("SELECT {SESSION_COLUMNS} FROM timeshift_sessions WHERE sid = $1"))
            .bind(sid)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(session_from_row).transpose()?)
    }

    /// Adds a segment to the index and extends its session's end.
    pub async fn add_timeshift_segment(&self, s: &TimeShiftSegment) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(&format!(
            "INSERT INTO timeshift_segments ({SEGMENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(&s.sid)
        .bind(s.seq)
        .bind(&s.domain)
        .bind(&s.app)
        .bind(&s.stream)
        .bind(s.wall_ms)
        .bind(s.duration_ms)
        .bind(&s.path)
        .bind(i64::from(s.discontinuity))
        .bind(s.bytes)
        .bind(s.expires_at_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE timeshift_sessions SET end_ms = $1 WHERE sid = $2 AND (end_ms IS NULL OR end_ms < $1)")
            .bind(s.end_ms())
            .bind(&s.sid)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The segments of a stream that overlap [from_ms, to_ms), by wall clock.
    pub async fn timeshift_segments_between(
        &self,
        domain: &str,
        app: &str,
        stream: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<TimeShiftSegment>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SEGMENT_COLUMNS} FROM timeshift_segments WHERE domain = $1 AND app = $2 AND stream = $3 \
             AND wall_ms < $4 AND wall_ms + duration_ms > $5 ORDER BY wall_ms, seq"
        ))
        .bind(domain)
        .bind(app)
        .bind(stream)
        .bind(to_ms)
        .bind(from_ms)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(segment_from_row).collect::<Result<_, _>>()?)
    }

    /// The last `limit` segments of a stream that start at or before `until_ms`, oldest first.
    pub async fn timeshift_segments_until(
        &self,
        domain: &str,
        app: &str,
        stream: &str,
        until_ms: i64,
        limit: i64,
    ) -> Result<Vec<TimeShiftSegment>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SEGMENT_COLUMNS} FROM timeshift_segments WHERE domain = $1 AND app = $2 AND stream = $3 \
             AND wall_ms <= $4 ORDER BY wall_ms DESC, seq DESC LIMIT $5"
        ))
        .bind(domain)
        .bind(app)
        .bind(stream)
        .bind(until_ms)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let mut out: Vec<TimeShiftSegment> = rows.iter().map(segment_from_row).collect::<Result<_, _>>()?;
        out.reverse();
        Ok(out)
    }

    /// One segment of the index.
    pub async fn timeshift_segment(&self, sid: &str, seq: i64) -> Result<Option<TimeShiftSegment>, StoreError> {
        let row = sqlx::query(&format!("SELECT {SEGMENT_COLUMNS} FROM timeshift_segments WHERE sid = $1 AND seq = $2"))
            .bind(sid)
            .bind(seq)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(segment_from_row).transpose()?)
    }

    /// The sequence number a new session of a stream starts at: one past the stream's last stored segment, so
    /// that numbers (and the media sequence of time-shift playlists) keep increasing across sessions.
    pub async fn timeshift_next_seq(&self, domain: &str, app: &str, stream: &str) -> Result<i64, StoreError> {
        let row =
            sqlx::query("SELECT MAX(seq) AS m FROM timeshift_segments WHERE domain = $1 AND app = $2 AND stream = $3")
                .bind(domain)
                .bind(app)
                .bind(stream)
                .fetch_one(self.pool())
                .await?;
        let max: Option<i64> = row.try_get("m")?;
        Ok(max.map_or(0, |m| m + 1))
    }

    /// Up to `limit` segments whose retention ended before `now_ms`, oldest first.
    pub async fn expired_timeshift_segments(
        &self,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<TimeShiftSegment>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SEGMENT_COLUMNS} FROM timeshift_segments WHERE expires_at_ms < $1 \
             ORDER BY expires_at_ms LIMIT $2"
        ))
        .bind(now_ms)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(segment_from_row).collect::<Result<_, _>>()?)
    }

    /// Removes one segment from the index. Returns whether it was there.
    pub async fn delete_timeshift_segment(&self, sid: &str, seq: i64) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM timeshift_segments WHERE sid = $1 AND seq = $2")
            .bind(sid)
            .bind(seq)
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Deletes sessions without segments: those that had segments (all expired) and those that started more than
    /// `stale_ms` before `now_ms` without ever storing one. Returns how many went.
    pub async fn delete_empty_timeshift_sessions(&self, now_ms: i64, stale_ms: i64) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "DELETE FROM timeshift_sessions WHERE NOT EXISTS \
             (SELECT 1 FROM timeshift_segments g WHERE g.sid = timeshift_sessions.sid) \
             AND (end_ms IS NOT NULL OR start_ms < $1)",
        )
        .bind(now_ms - stale_ms)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::stores_with_empty;

    async fn stores() -> Vec<Store> {
        stores_with_empty(&["timeshift_segments", "timeshift_sessions", "timeshift_rules", "timeshift_templates"]).await
    }

    fn template(name: &str) -> TimeShiftTemplate {
        TimeShiftTemplate {
            name: name.into(),
            duration: 86_400,
            item_duration: 5,
            transcode_template_ids: "[]".into(),
            ..TimeShiftTemplate::default()
        }
    }

    fn segment(sid: &str, seq: i64, wall_ms: i64) -> TimeShiftSegment {
        TimeShiftSegment {
            sid: sid.into(),
            seq,
            domain: "d.com".into(),
            app: "live".into(),
            stream: "s".into(),
            wall_ms,
            duration_ms: 3000,
            path: format!("timeshift/d.com/live/s/{sid}/{seq}.ts"),
            discontinuity: false,
            bytes: 100,
            expires_at_ms: wall_ms + 3000 + 60_000,
        }
    }

    #[tokio::test]
    async fn store_timeshift_templates_and_rule_precedence() {
        for store in stores().await {
            let a = store.create_timeshift_template(&template("a")).await.expect("create");
            let b = store.create_timeshift_template(&template("b")).await.expect("create");
            let c = store.create_timeshift_template(&template("c")).await.expect("create");
            let mut t = store.timeshift_template(a).await.expect("get").expect("exists");
            assert_eq!((t.name.as_str(), t.item_duration, t.remove_watermark), ("a", 5, false));
            t.item_duration = 3;
            t.remove_watermark = true;
            assert!(store.update_timeshift_template(&t).await.expect("update"));
            assert_eq!(store.timeshift_template(a).await.expect("get"), Some(t));
            assert_eq!(store.timeshift_template_count().await.expect("count"), 3);

            store.upsert_timeshift_rule("d.com", "*", "", a).await.expect("rule");
            store.upsert_timeshift_rule("d.com", "live", "*", b).await.expect("rule");
            store.upsert_timeshift_rule("d.com", "live", "s1", c).await.expect("rule");
            let id_for = |app: &'static str, stream: &'static str| {
                let store = store.clone();
                async move { store.timeshift_template_for("d.com", app, stream).await.expect("match").map(|t| t.id) }
            };
            assert_eq!(id_for("live", "s1").await, Some(c), "exact stream wins");
            assert_eq!(id_for("live", "s2").await, Some(b), "then domain+app");
            assert_eq!(id_for("other", "s1").await, Some(a), "then the domain");
            assert_eq!(store.timeshift_template_for("x.com", "live", "s1").await.expect("m"), None);
            assert!(store.timeshift_template_in_use(a).await.expect("in use"));
            assert_eq!(store.timeshift_rules().await.expect("rules").len(), 3);
            assert!(store.delete_timeshift_rule("d.com", "*", "*").await.expect("delete"));
            assert!(!store.delete_timeshift_rule("d.com", "*", "*").await.expect("delete"));
            assert_eq!(id_for("other", "s1").await, None);
            assert!(!store.timeshift_template_in_use(a).await.expect("in use"));
            assert!(store.delete_timeshift_template(a).await.expect("delete"));
            assert_eq!(store.timeshift_templates().await.expect("all").len(), 2);
        }
    }

    #[tokio::test]
    async fn store_timeshift_index_windows_and_retention() {
        for store in stores().await {
            let session = |sid: &str, start_ms: i64| TimeShiftSession {
                sid: sid.into(),
                domain: "d.com".into(),
                app: "live".into(),
                stream: "s".into(),
                template_id: 1,
                retention_s: 60,
                item_duration: 3,
                start_ms,
                end_ms: None,
            };
            let t0 = 1_700_000_000_000_i64;
            store.create_timeshift_session(&session("one", t0)).await.expect("session");
            store.create_timeshift_session(&session("two", t0 + 20_000)).await.expect("session");
            store.create_timeshift_session(&session("never", t0)).await.expect("session");
            for seq in 0..4 {
                store.add_timeshift_segment(&segment("one", seq, t0 + seq * 3000)).await.expect("segment");
            }
            for seq in 0..2 {
                store.add_timeshift_segment(&segment("two", seq, t0 + 20_000 + seq * 3000)).await.expect("segment");
            }
            let s = store.timeshift_session("one").await.expect("get").expect("exists");
            assert_eq!(s.end_ms, Some(t0 + 12_000));
            // [t0+4000, t0+7000) touches segments 1 (3000..6000) and 2 (6000..9000).
            let w = store.timeshift_segments_between("d.com", "live", "s", t0 + 4000, t0 + 7000).await.expect("w");
            assert_eq!(w.iter().map(|s| s.seq).collect::<Vec<_>>(), [1, 2]);
            let w = store.timeshift_segments_between("d.com", "live", "s", t0, t0 + 30_000).await.expect("w");
            assert_eq!(w.len(), 6);
            let last = store.timeshift_segments_until("d.com", "live", "s", t0 + 12_000, 2).await.expect("until");
            assert_eq!(last.iter().map(|s| (s.sid.as_str(), s.seq)).collect::<Vec<_>>(), [("one", 2), ("one", 3)]);
            let listed = store.timeshift_sessions("d.com", None, "s", t0, t0 + 30_000).await.expect("sessions");
            assert_eq!(listed.iter().map(|s| s.sid.as_str()).collect::<Vec<_>>(), ["one", "two"]);
            assert!(
                store.timeshift_sessions("", Some("live"), "", t0 + 13_000, t0 + 14_000).await.expect("s").is_empty()
            );
            assert!(store.timeshift_segment("two", 1).await.expect("get").is_some());
            assert_eq!(store.timeshift_next_seq("d.com", "live", "s").await.expect("next"), 4);
            assert_eq!(store.timeshift_next_seq("d.com", "live", "x").await.expect("next"), 0);

            // Session one expires entirely; "never" is stale; "two" keeps its segments.
            let expired = store.expired_timeshift_segments(t0 + 12_000 + 60_001, 100).await.expect("expired");
            assert_eq!(expired.len(), 4);
            for s in &expired {
                assert!(store.delete_timeshift_segment(&s.sid, s.seq).await.expect("delete"));
            }
            let gone = store.delete_empty_timeshift_sessions(t0 + 700_000, 600_000).await.expect("empty");
            assert_eq!(gone, 2);
            assert!(store.timeshift_session("one").await.expect("get").is_none());
            assert!(store.timeshift_session("two").await.expect("get").is_some());
        }
    }
}
