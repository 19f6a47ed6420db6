//! Store functions for callbacks: templates, rules, the durable outbox, its delivery attempts and the pushes whose
//! event 0 is still owed (brief §4.2, §6). Portable SQL through `sqlx::Any`, like [`crate::store`].

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::store::{Store, StoreError, TemplateTables, unix_now};

/// Every field of a callback template (`CallBackTemplateInfo` plus `RecordStatusNotifyUrl`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallbackTemplate {
    /// `TemplateId`.
    pub id: i64,
    /// `TemplateName`.
    pub name: String,
    /// `Description`.
    pub description: String,
    /// `StreamBeginNotifyUrl` (event 1).
    pub stream_begin_url: String,
    /// `StreamEndNotifyUrl` (event 0).
    pub stream_end_url: String,
    /// `RecordNotifyUrl`.
    pub record_url: String,
    /// `RecordStatusNotifyUrl`.
    pub record_status_url: String,
    /// `SnapshotNotifyUrl`.
    pub snapshot_url: String,
    /// `PornCensorshipNotifyUrl`.
    pub porn_url: String,
    /// `StreamMixNotifyUrl`.
    pub stream_mix_url: String,
    /// `PushExceptionNotifyUrl`.
    pub push_exception_url: String,
    /// `AudioAuditNotifyUrl`.
    pub audio_audit_url: String,
    /// `RecordExceptionNotifyUrl`.
    pub record_exception_url: String,
    /// `RecordExceptionLevels` as a JSON array.
    pub record_exception_levels: String,
    /// `CallbackKey`.
    pub callback_key: String,
}

/// One callback rule (`CallBackRuleInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackRule {
    /// Push domain.
    pub domain: String,
    /// App name (`""` = the whole domain).
    pub app: String,
    /// The bound template.
    pub template_id: i64,
    /// UNIX seconds.
    pub created_at: i64,
    /// UNIX seconds.
    pub updated_at: i64,
}

/// A new outbox row: one event to deliver to one URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutbox {
    /// 1 push, 0 interruption.
    pub event_type: i64,
    /// Target URL (snapshot of the template at event time).
    pub url: String,
    /// `CallbackKey` snapshot.
    pub callback_key: String,
    /// The JSON body without `t` and `sign`.
    pub payload: String,
    /// Push domain.
    pub domain: String,
    /// App.
    pub app: String,
    /// Stream name.
    pub stream: String,
    /// The push's sequence.
    pub sequence: String,
    /// UNIX seconds.
    pub event_time: i64,
}

/// A pending outbox row claimed for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueOutbox {
    /// Row id.
    pub id: i64,
    /// Target URL.
    pub url: String,
    /// `CallbackKey`.
    pub callback_key: String,
    /// The JSON body without `t` and `sign`.
    pub payload: String,
    /// Attempts made so far.
    pub attempts: i64,
}

/// One recorded delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Outbox row.
    pub outbox_id: i64,
    /// 1-based attempt number.
    pub attempt: i64,
    /// UNIX ms.
    pub started_at_ms: i64,
    /// UNIX ms.
    pub finished_at_ms: i64,
    /// The body sent.
    pub request_body: String,
    /// HTTP status, if a response arrived.
    pub http_status: Option<i64>,
    /// The body received (truncated).
    pub response_body: String,
    /// 0 = HTTP 200, else the status, or -1.
    pub result_code: i64,
    /// Transport error text.
    pub error: Option<String>,
}

/// A row of `DescribeCallbackRecordsList`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackRecord {
    /// UNIX seconds of the event.
    pub event_time: i64,
    /// Event type.
    pub event_type: i64,
    /// The body sent.
    pub request: String,
    /// The body received.
    pub response: String,
    /// UNIX ms when the attempt finished.
    pub response_time_ms: i64,
    /// 0 success, else failure.
    pub result_code: i64,
    /// Stream name.
    pub stream: String,
}

/// A push whose event 0 is still owed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenPush {
    /// The push's sequence.
    pub sequence: String,
    /// `StreamEndNotifyUrl` snapshot.
    pub url: String,
    /// `CallbackKey` snapshot.
    pub callback_key: String,
    /// The event 1 payload (without `t`/`sign`) to derive event 0 from.
    pub payload: String,
    /// Push domain.
    pub domain: String,
    /// App.
    pub app: String,
    /// Stream name.
    pub stream: String,
    /// UNIX ms.
    pub started_at_ms: i64,
    /// The node that owns the push (`[callbacks] node`).
    pub node: String,
}

/// A filter for [`Store::callback_records`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordQuery {
    /// UNIX seconds, inclusive.
    pub start: i64,
    /// UNIX seconds, inclusive.
    pub end: i64,
    /// Exact stream name.
    pub stream: String,
    /// Event type filter.
    pub event_type: Option<i64>,
    /// `Some(0)` successes only, `Some(_)` failures only.
    pub result_code: Option<i64>,
}

const TEMPLATE_COLUMNS: &str = "id, name, description, stream_begin_url, stream_end_url, record_url, \
     record_status_url, snapshot_url, porn_url, stream_mix_url, push_exception_url, audio_audit_url, \
     record_exception_url, record_exception_levels, callback_key";

fn template_from_row(row: &AnyRow) -> Result<CallbackTemplate, sqlx::Error> {
    Ok(CallbackTemplate {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        stream_begin_url: row.try_get("stream_begin_url")?,
        stream_end_url: row.try_get("stream_end_url")?,
        record_url: row.try_get("record_url")?,
        record_status_url: row.try_get("record_status_url")?,
        snapshot_url: row.try_get("snapshot_url")?,
        porn_url: row.try_get("porn_url")?,
        stream_mix_url: row.try_get("stream_mix_url")?,
        push_exception_url: row.try_get("push_exception_url")?,
        audio_audit_url: row.try_get("audio_audit_url")?,
        record_exception_url: row.try_get("record_exception_url")?,
        record_exception_levels: row.try_get("record_exception_levels")?,
        callback_key: row.try_get("callback_key")?,
    })
}

fn rule_from_row(row: &AnyRow) -> Result<CallbackRule, sqlx::Error> {
    Ok(CallbackRule {
        domain: row.try_get("domain")?,
        app: row.try_get("app")?,
        template_id: row.try_get("template_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

const TABLES: TemplateTables = TemplateTables { templates: "callback_templates", rules: "callback_rules" };

impl Store {
    /// Number of callback templates.
    pub async fn callback_template_count(&self) -> Result<i64, StoreError> {
        self.template_count(TABLES).await
    }

    /// Inserts a template (its `id` is ignored) and returns the new id.
    pub async fn create_callback_template(&self, t: &CallbackTemplate) -> Result<i64, StoreError> {
        let now = unix_now();
        let row = sqlx::query(
            "INSERT INTO callback_templates (name, description, stream_begin_url, stream_end_url, record_url, \
             record_status_url, snapshot_url, porn_url, stream_mix_url, push_exception_url, audio_audit_url, \
             record_exception_url, record_exception_levels, callback_key, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) RETURNING id",
        )
        .bind(&t.name)
        .bind(&t.description)
        .bind(&t.stream_begin_url)
        .bind(&t.stream_end_url)
        .bind(&t.record_url)
        .bind(&t.record_status_url)
        .bind(&t.snapshot_url)
        .bind(&t.porn_url)
        .bind(&t.stream_mix_url)
        .bind(&t.push_exception_url)
        .bind(&t.audio_audit_url)
        .bind(&t.record_exception_url)
        .bind(&t.record_exception_levels)
        .bind(&t.callback_key)
        .bind(now)
        .bind(now)
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get("id")?)
    }

    /// Overwrites every field of template `t.id`. Returns whether it exists.
    pub async fn update_callback_template(&self, t: &CallbackTemplate) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE callback_templates SET name = $1, description = $2, stream_begin_url = $3, stream_end_url = $4, \
             record_url = $5, record_status_url = $6, snapshot_url = $7, porn_url = $8, stream_mix_url = $9, \
             push_exception_url = $10, audio_audit_url = $11, record_exception_url = $12, \
             record_exception_levels = $13, callback_key = $14, updated_at = $15 WHERE id = $16",
        )
        .bind(&t.name)
        .bind(&t.description)
        .bind(&t.stream_begin_url)
        .bind(&t.stream_end_url)
        .bind(&t.record_url)
        .bind(&t.record_status_url)
        .bind(&t.snapshot_url)
        .bind(&t.porn_url)
        .bind(&t.stream_mix_url)
        .bind(&t.push_exception_url)
        .bind(&t.audio_audit_url)
        .bind(&t.record_exception_url)
        .bind(&t.record_exception_levels)
        .bind(&t.callback_key)
        .bind(unix_now())
        .bind(t.id)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// One template.
    pub async fn callback_template(&self, id: i64) -> Result<Option<CallbackTemplate>, StoreError> {
        let row = sqlx::query(&format!("SELECT {TEMPLATE_COLUMNS} FROM callback_templates WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(template_from_row).transpose()?)
    }

    /// Every template, by id.
    pub async fn callback_templates(&self) -> Result<Vec<CallbackTemplate>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {TEMPLATE_COLUMNS} FROM callback_templates ORDER BY id"))
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(template_from_row).collect::<Result<_, _>>()?)
    }

    /// Deletes a template. Returns whether it existed.
    pub async fn delete_callback_template(&self, id: i64) -> Result<bool, StoreError> {
        self.delete_template(TABLES, id).await
    }

    /// Whether a rule binds the template.
    pub async fn callback_template_in_use(&self, id: i64) -> Result<bool, StoreError> {
        self.template_in_use(TABLES, id).await
    }

    /// Creates or replaces the rule of (domain, app).
    pub async fn upsert_callback_rule(&self, domain: &str, app: &str, template_id: i64) -> Result<(), StoreError> {
        let now = unix_now();
        let mut tx = self.pool().begin().await?;
        let old = sqlx::query("SELECT created_at FROM callback_rules WHERE domain = $1 AND app = $2")
            .bind(domain)
            .bind(app)
            .fetch_optional(&mut *tx)
            .await?;
        let created: i64 = match old {
            Some(row) => row.try_get("created_at")?,
            None => now,
        };
        sqlx::query("DELETE FROM callback_rules WHERE domain = $1 AND app = $2")
            .bind(domain)
            .bind(app)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO callback_rules (domain, app, template_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(domain)
        .bind(app)
        .bind(template_id)
        .bind(created)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every rule.
    pub async fn callback_rules(&self) -> Result<Vec<CallbackRule>, StoreError> {
        let rows = sqlx::query(
            "SELECT domain, app, template_id, created_at, updated_at FROM callback_rules ORDER BY domain, app",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(rule_from_row).collect::<Result<_, _>>()?)
    }

    /// Deletes a rule. Returns whether it existed.
    pub async fn delete_callback_rule(&self, domain: &str, app: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM callback_rules WHERE domain = $1 AND app = $2")
            .bind(domain)
            .bind(app)
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// The template that applies to a push on (domain, app): the rule of (domain, app), else of (domain, "").
    pub async fn callback_template_for(&self, domain: &str, app: &str) -> Result<Option<CallbackTemplate>, StoreError> {
        for a in [app, ""] {
            let row = sqlx::query("SELECT template_id FROM callback_rules WHERE domain = $1 AND app = $2")
                .bind(domain)
                .bind(a)
                .fetch_optional(self.pool())
                .await?;
            if let Some(row) = row {
                let id: i64 = row.try_get("template_id")?;
                return self.callback_template(id).await;
            }
        }
        Ok(None)
    }

    /// Queues events (due now) and records or clears the open push in the same transaction.
    pub async fn enqueue_callbacks(
        &self,
        rows: &[NewOutbox],
        open: Option<&OpenPush>,
        close_sequence: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = unix_now();
        let now_ms = now * 1000;
        let mut tx = self.pool().begin().await?;
        for o in rows {
            sqlx::query(
                "INSERT INTO callback_outbox (event_type, url, callback_key, payload, domain, app, stream, sequence, \
                 event_time, status, attempts, next_attempt_at_ms, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', 0, $10, $11)",
            )
            .bind(o.event_type)
            .bind(&o.url)
            .bind(&o.callback_key)
            .bind(&o.payload)
            .bind(&o.domain)
            .bind(&o.app)
            .bind(&o.stream)
            .bind(&o.sequence)
            .bind(o.event_time)
            .bind(now_ms)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(seq) = close_sequence {
            sqlx::query("DELETE FROM callback_open_pushes WHERE sequence = $1").bind(seq).execute(&mut *tx).await?;
        }
        if let Some(p) = open {
            sqlx::query(
                "INSERT INTO callback_open_pushes (sequence, url, callback_key, payload, domain, app, stream, \
                 started_at_ms, node) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&p.sequence)
            .bind(&p.url)
            .bind(&p.callback_key)
            .bind(&p.payload)
            .bind(&p.domain)
            .bind(&p.app)
            .bind(&p.stream)
            .bind(p.started_at_ms)
            .bind(&p.node)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Pushes of `node` left open (by a crash, or still running).
    pub async fn open_pushes(&self, node: &str) -> Result<Vec<OpenPush>, StoreError> {
        let rows = sqlx::query(
            "SELECT sequence, url, callback_key, payload, domain, app, stream, started_at_ms, node \
             FROM callback_open_pushes WHERE node = $1 ORDER BY started_at_ms",
        )
        .bind(node)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(OpenPush {
                    sequence: row.try_get("sequence")?,
                    url: row.try_get("url")?,
                    callback_key: row.try_get("callback_key")?,
                    payload: row.try_get("payload")?,
                    domain: row.try_get("domain")?,
                    app: row.try_get("app")?,
                    stream: row.try_get("stream")?,
                    started_at_ms: row.try_get("started_at_ms")?,
                    node: row.try_get("node")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Claims up to `limit` pending rows due at `now_ms`, oldest first, for one attempt each.
    ///
    /// A claim moves the row's due time to `lease_until_ms` with a compare-and-set on the due time it was read
    /// with, so when several nodes share the store each row is attempted by one of them; a node that dies
    /// mid-attempt leaves the row due again when the lease runs out (at-least-once, never lost).
    pub async fn claim_due_callbacks(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> Result<Vec<DueOutbox>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, url, callback_key, payload, attempts, next_attempt_at_ms FROM callback_outbox \
             WHERE status = 'pending' AND next_attempt_at_ms <= $1 ORDER BY next_attempt_at_ms, id LIMIT $2",
        )
        .bind(now_ms)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row.try_get("id")?;
            let due: i64 = row.try_get("next_attempt_at_ms")?;
            let won = sqlx::query(
                "UPDATE callback_outbox SET next_attempt_at_ms = $1 \
                 WHERE id = $2 AND status = 'pending' AND next_attempt_at_ms = $3",
            )
            .bind(lease_until_ms)
            .bind(id)
            .bind(due)
            .execute(self.pool())
            .await?
            .rows_affected()
                == 1;
            if won {
                claimed.push(DueOutbox {
                    id,
                    url: row.try_get("url")?,
                    callback_key: row.try_get("callback_key")?,
                    payload: row.try_get("payload")?,
                    attempts: row.try_get("attempts")?,
                });
            }
        }
        Ok(claimed)
    }

    /// Deletes delivered and failed rows (and their attempts) queued before `before` (unix seconds); returns how
    /// many rows went. Pending rows are kept whatever their age.
    pub async fn prune_callbacks(&self, before: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "DELETE FROM callback_attempts WHERE outbox_id IN \
             (SELECT id FROM callback_outbox WHERE status <> 'pending' AND created_at < $1)",
        )
        .bind(before)
        .execute(&mut *tx)
        .await?;
        let gone = sqlx::query("DELETE FROM callback_outbox WHERE status <> 'pending' AND created_at < $1")
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(gone)
    }

    /// The earliest `next_attempt_at_ms` of a pending row.
    pub async fn next_callback_due(&self) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT MIN(next_attempt_at_ms) AS m FROM callback_outbox WHERE status = 'pending'")
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get::<Option<i64>, _>("m")?)
    }

    /// Records an attempt and moves the row on: `status` (`pending`, `delivered`, `failed`) and the next due time.
    pub async fn record_callback_attempt(
        &self,
        a: &Attempt,
        status: &str,
        next_attempt_at_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO callback_attempts (outbox_id, attempt, started_at_ms, finished_at_ms, request_body, \
             http_status, response_body, result_code, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(a.outbox_id)
        .bind(a.attempt)
        .bind(a.started_at_ms)
        .bind(a.finished_at_ms)
        .bind(&a.request_body)
        .bind(a.http_status)
        .bind(&a.response_body)
        .bind(a.result_code)
        .bind(a.error.as_deref())
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE callback_outbox SET status = $1, attempts = $2, next_attempt_at_ms = $3 WHERE id = $4")
            .bind(status)
            .bind(a.attempt)
            .bind(next_attempt_at_ms)
            .bind(a.outbox_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Delivery attempts matching `q`, newest first, with the total count: `(page, total)`.
    pub async fn callback_records(
        &self,
        q: &RecordQuery,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<CallbackRecord>, i64), StoreError> {
        let mut filter = String::from("o.stream = $1 AND a.started_at_ms >= $2 AND a.started_at_ms <= $3");
        if let Some(e) = q.event_type {
            filter.push_str(&format!(" AND o.event_type = {e}"));
        }
        match q.result_code {
            Some(0) => filter.push_str(" AND a.result_code = 0"),
            Some(_) => filter.push_str(" AND a.result_code <> 0"),
            None => {}
        }
        let from = "callback_attempts a JOIN callback_outbox o ON o.id = a.outbox_id";
        let start_ms = q.start * 1000;
        let end_ms = q.end * 1000 + 999;
        let total: i64 = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {from} WHERE {filter}"))
            .bind(&q.stream)
            .bind(start_ms)
            .bind(end_ms)
            .fetch_one(self.pool())
            .await?
            .try_get("n")?;
        let rows = sqlx::query(&format!(
            "SELECT o.event_time, o.event_type, a.request_body, a.response_body, a.finished_at_ms, a.result_code, \
             o.stream FROM {from} WHERE {filter} ORDER BY a.started_at_ms DESC, a.id DESC LIMIT $4 OFFSET $5"
        ))
        .bind(&q.stream)
        .bind(start_ms)
        .bind(end_ms)
        .bind(limit)
        .bind(offset)
        .fetch_all(self.pool())
        .await?;
        let records = rows
            .iter()
            .map(|row| {
                Ok(CallbackRecord {
                    event_time: row.try_get("event_time")?,
                    event_type: row.try_get("event_type")?,
                    request: row.try_get("request_body")?,
                    response: row.try_get("response_body")?,
                    response_time_ms: row.try_get("finished_at_ms")?,
                    result_code: row.try_get("result_code")?,
                    stream: row.try_get("stream")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok((records, total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::stores_with_empty;

    async fn stores() -> Vec<Store> {
        stores_with_empty(&[
            "callback_attempts",
            "callback_outbox",
            "callback_open_pushes",
            "callback_rules",
            "callback_templates",
        ])
        .await
    }

    fn outbox(sequence: &str) -> NewOutbox {
        NewOutbox {
            event_type: 1,
            url: "http://a/b".into(),
            callback_key: "k".into(),
            payload: "{}".into(),
            domain: "d.com".into(),
            app: "live".into(),
            stream: "s".into(),
            sequence: sequence.into(),
            event_time: unix_now(),
        }
    }

    fn attempt(outbox_id: i64, result_code: i64) -> Attempt {
        let now_ms = unix_now() * 1000;
        Attempt {
            outbox_id,
            attempt: 1,
            started_at_ms: now_ms,
            finished_at_ms: now_ms,
            request_body: "{\"x\":1}".into(),
            http_status: Some(if result_code == 0 { 200 } else { result_code }),
            response_body: String::new(),
            result_code,
            error: None,
        }
    }

    #[tokio::test]
    async fn rules_outbox_and_attempts_round_trip() {
        for store in stores().await {
            let b = store.backend();
            let t = CallbackTemplate { name: "t".into(), stream_begin_url: "http://a/b".into(), ..Default::default() };
            let id = store.create_callback_template(&t).await.expect("create");
            store.upsert_callback_rule("d.com", "", id).await.expect("rule");
            let found = store.callback_template_for("d.com", "live").await.expect("lookup");
            assert_eq!(found.map(|t| t.id), Some(id), "falls back to the domain-wide rule ({b:?})");
            assert!(store.callback_template_for("other.com", "live").await.expect("lookup").is_none());
            assert!(store.callback_template_in_use(id).await.expect("in use"));

            store.enqueue_callbacks(&[outbox("1")], None, None).await.expect("enqueue");
            let now_ms = unix_now() * 1000;
            let due = store.claim_due_callbacks(now_ms + 1, now_ms + 30_000, 10).await.expect("due");
            assert_eq!(due.len(), 1, "{b:?}");
            assert!(
                store.claim_due_callbacks(now_ms + 1, now_ms + 30_000, 10).await.expect("due").is_empty(),
                "a claimed row is leased ({b:?})"
            );
            assert!(!store.claim_due_callbacks(now_ms + 30_001, now_ms + 60_000, 10).await.expect("due").is_empty());
            store.record_callback_attempt(&attempt(due[0].id, 500), "pending", now_ms + 60_000).await.expect("record");
            assert!(store.claim_due_callbacks(now_ms + 1, now_ms + 2, 10).await.expect("due").is_empty());
            assert_eq!(store.next_callback_due().await.expect("next"), Some(now_ms + 60_000));
            let q = RecordQuery {
                start: unix_now() - 10,
                end: unix_now() + 10,
                stream: "s".into(),
                event_type: Some(1),
                result_code: Some(1),
            };
            let (records, total) = store.callback_records(&q, 0, 10).await.expect("records");
            assert_eq!((total, records[0].result_code, records[0].request.as_str()), (1, 500, "{\"x\":1}"), "{b:?}");
        }
    }

    /// Two nodes sharing the store claim the same due rows at once: each row goes to exactly one of them.
    #[tokio::test]
    async fn concurrent_claims_never_share_a_row() {
        for store in stores().await {
            let rows: Vec<NewOutbox> = (0..40).map(|i| outbox(&i.to_string())).collect();
            store.enqueue_callbacks(&rows, None, None).await.expect("enqueue");
            let now_ms = unix_now() * 1000 + 1;
            let other = store.clone();
            let (a, b) = tokio::join!(
                store.claim_due_callbacks(now_ms, now_ms + 30_000, 25),
                other.claim_due_callbacks(now_ms, now_ms + 30_000, 25)
            );
            let (a, b) = (a.expect("claim a"), b.expect("claim b"));
            let mut ids: Vec<i64> = a.iter().chain(&b).map(|r| r.id).collect();
            ids.sort_unstable();
            let total = ids.len();
            ids.dedup();
            assert_eq!(ids.len(), total, "a row was claimed twice ({:?})", store.backend());
            assert!(total >= 25, "{total}");
        }
    }

    #[tokio::test]
    async fn finished_rows_are_pruned_and_open_pushes_belong_to_their_node() {
        for store in stores().await {
            store.enqueue_callbacks(&[outbox("a"), outbox("b")], None, None).await.expect("enqueue");
            let now_ms = unix_now() * 1000 + 1;
            let due = store.claim_due_callbacks(now_ms, now_ms + 1, 10).await.expect("due");
            assert_eq!(due.len(), 2);
            store.record_callback_attempt(&attempt(due[0].id, 0), "delivered", now_ms).await.expect("record");
            assert_eq!(store.prune_callbacks(unix_now() - 60).await.expect("prune"), 0, "too young");
            assert_eq!(store.prune_callbacks(unix_now() + 1).await.expect("prune"), 1, "the pending row stays");
            assert_eq!(store.claim_due_callbacks(now_ms + 10, now_ms + 20, 10).await.expect("due").len(), 1);

            let open = |sequence: &str, node: &str| OpenPush {
                sequence: sequence.into(),
                url: "http://a/e".into(),
                callback_key: "k".into(),
                payload: "{}".into(),
                domain: "d.com".into(),
                app: "live".into(),
                stream: "s".into(),
                started_at_ms: now_ms,
                node: node.into(),
            };
            store.enqueue_callbacks(&[], Some(&open("p1", "10.0.0.1")), None).await.expect("open");
            store.enqueue_callbacks(&[], Some(&open("p2", "10.0.0.2")), None).await.expect("open");
            let mine: Vec<String> =
                store.open_pushes("10.0.0.1").await.expect("open").into_iter().map(|p| p.sequence).collect();
            assert_eq!(mine, ["p1"]);
        }
    }
}
