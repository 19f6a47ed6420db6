//! Delayed-playback settings (AddDelayLiveStream / ResumeDelayLiveStream / DescribeLiveDelayInfoList).

use sqlx::Row;

use crate::store::{Store, StoreError};

/// A stream shown `delay_secs` late to every viewer until `expire_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelayedStream {
    /// The push domain.
    pub domain: String,
    /// The application.
    pub app: String,
    /// The stream name.
    pub stream: String,
    /// The delay in seconds (1–600).
    pub delay_secs: i64,
    /// When it was set (UNIX seconds).
    pub created_at: i64,
    /// When it stops applying (UNIX seconds).
    pub expire_at: i64,
}

impl Store {
    /// Sets (or replaces) the delay of a stream.
    pub async fn set_delay(&self, d: &DelayedStream) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM delayed_streams WHERE domain = $1 AND app = $2 AND stream = $3")
            .bind(&d.domain)
            .bind(&d.app)
            .bind(&d.stream)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO delayed_streams (domain, app, stream, delay_secs, created_at, expire_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&d.domain)
        .bind(&d.app)
        .bind(&d.stream)
        .bind(d.delay_secs)
        .bind(d.created_at)
        .bind(d.expire_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a stream's delay; returns whether it had one.
    pub async fn clear_delay(&self, domain: &str, app: &str, stream: &str) -> Result<bool, StoreError> {
        let n = sqlx::query("DELETE FROM delayed_streams WHERE domain = $1 AND app = $2 AND stream = $3")
            .bind(domain)
            .bind(app)
            .bind(stream)
            .execute(self.pool())
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    /// Every delay setting, expired ones included, oldest first.
    pub async fn delayed_streams(&self) -> Result<Vec<DelayedStream>, StoreError> {
        let rows = sqlx::query(
            "SELECT domain, app, stream, delay_secs, created_at, expire_at FROM delayed_streams \
             ORDER BY created_at, domain, app, stream",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DelayedStream {
                    domain: r.try_get("domain")?,
                    app: r.try_get("app")?,
                    stream: r.try_get("stream")?,
                    delay_secs: r.try_get("delay_secs")?,
                    created_at: r.try_get("created_at")?,
                    expire_at: r.try_get("expire_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::stores_with_empty;

    #[tokio::test]
    async fn store_delays_round_trip() {
        for store in stores_with_empty(&["delayed_streams"]).await {
            let d = DelayedStream {
                domain: "push.example.com".into(),
                app: "live".into(),
                stream: "s".into(),
                delay_secs: 30,
                created_at: 1000,
                expire_at: 2000,
            };
            store.set_delay(&d).await.expect("set");
            store.set_delay(&DelayedStream { delay_secs: 45, ..d.clone() }).await.expect("replace");
            let all = store.delayed_streams().await.expect("list");
            assert_eq!(all, [DelayedStream { delay_secs: 45, ..d.clone() }], "{:?}", store.backend());
            assert!(store.clear_delay("push.example.com", "live", "s").await.expect("clear"));
            assert!(!store.clear_delay("push.example.com", "live", "s").await.expect("clear again"));
            assert!(store.delayed_streams().await.expect("list").is_empty());
        }
    }
}
