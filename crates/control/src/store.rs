//! The store: domains, their auth keys and referer rules, in SQLite (default, a file under the data dir) or
//! PostgreSQL (`[store] url = "postgres://..."`). Runtime queries only (`sqlx::query`), through `sqlx::Any`, with
//! portable SQL (`$n` placeholders, which SQLite accepts too) and embedded migrations per backend.

use std::borrow::Cow;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use rand::Rng;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::{AnyPool, Row};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or a query failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The schema could not be migrated.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The URL names a database this build does not speak.
    #[error("unsupported store url `{0}` (expected sqlite:... or postgres://...)")]
    UnsupportedUrl(String),
    /// A domain of that name exists already.
    #[error("domain {0} already exists")]
    DomainExists(String),
}

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (a file, or `sqlite::memory:` in tests).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// Domain type: where streams are pushed to.
pub const DOMAIN_PUSH: i64 = 0;
/// Domain type: where streams are played from.
pub const DOMAIN_PLAY: i64 = 1;

/// One domain row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// Lowercase host name.
    pub name: String,
    /// [`DOMAIN_PUSH`] or [`DOMAIN_PLAY`].
    pub kind: i64,
    /// 1 enabled, 0 forbidden (ForbidLiveDomain).
    pub status: i64,
    /// 1 Chinese mainland, 2 global, 3 outside mainland (informational).
    pub play_type: i64,
    /// 1 for a LEB (low-latency) domain (informational).
    pub is_delay_live: i64,
    /// 1 for a mini program domain (informational).
    pub is_mini_program_live: i64,
    /// For a play domain, the push domain whose streams it plays.
    pub push_domain: Option<String>,
    /// CNAME target (informational).
    pub target_cname: String,
    /// UNIX seconds.
    pub created_at: i64,
}

/// A new domain for [`Store::add_domain`].
#[derive(Debug, Clone)]
pub struct NewDomain {
    /// Lowercase host name.
    pub name: String,
    /// [`DOMAIN_PUSH`] or [`DOMAIN_PLAY`].
    pub kind: i64,
    /// Play type (1-3).
    pub play_type: i64,
    /// LEB flag.
    pub is_delay_live: i64,
    /// Mini program flag.
    pub is_mini_program_live: i64,
    /// Play → push binding.
    pub push_domain: Option<String>,
}

/// The auth key of a domain: the push key of a push domain, the play key of a play domain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthKeyRow {
    /// The domain.
    pub domain: String,
    /// 1 when URLs must be signed.
    pub enable: i64,
    /// Master key.
    pub master_key: String,
    /// Backup key ("" = none).
    pub backup_key: String,
    /// Seconds a URL stays valid after its `txTime`.
    pub auth_delta: i64,
}

/// A partial update of an auth key; `None` keeps the stored value.
#[derive(Debug, Clone, Default)]
pub struct AuthKeyUpdate {
    /// New enable flag.
    pub enable: Option<i64>,
    /// New master key.
    pub master_key: Option<String>,
    /// New backup key.
    pub backup_key: Option<String>,
    /// New validity delta.
    pub auth_delta: Option<i64>,
}

/// The referer rule of a domain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RefererRow {
    /// The domain.
    pub domain: String,
    /// 1 when the rule applies.
    pub enable: i64,
    /// 0 blocklist, 1 allowlist.
    pub kind: i64,
    /// 1 when an absent or empty Referer is allowed.
    pub allow_empty: i64,
    /// Rules separated by `;`.
    pub rules: String,
}

/// Everything the access policy needs, read in one go.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Every domain.
    pub domains: Vec<Domain>,
    /// Every auth key.
    pub auth_keys: Vec<AuthKeyRow>,
    /// Every referer rule.
    pub referers: Vec<RefererRow>,
    /// Every forbidden stream (expired entries included; the policy compares `resume_at` with its clock).
    pub forbidden: Vec<ForbiddenStream>,
    /// Every delayed-playback setting (expired ones included; the policy compares `expire_at` with its clock).
    pub delays: Vec<crate::store_delay::DelayedStream>,
}

/// A stream refused for publishing until `resume_at` (ForbidLiveStream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForbiddenStream {
    /// The push domain.
    pub domain: String,
    /// The application.
    pub app: String,
    /// The stream name.
    pub stream: String,
    /// Why it was forbidden (`Reason`).
    pub reason: String,
    /// When it was forbidden (UNIX seconds).
    pub forbidden_at: i64,
    /// When pushing is allowed again (UNIX seconds).
    pub resume_at: i64,
}

fn forbidden_from_row(row: &AnyRow) -> Result<ForbiddenStream, sqlx::Error> {
    Ok(ForbiddenStream {
        domain: row.try_get("domain")?,
        app: row.try_get("app")?,
        stream: row.try_get("stream")?,
        reason: row.try_get("reason")?,
        forbidden_at: row.try_get("forbidden_at")?,
        resume_at: row.try_get("resume_at")?,
    })
}

/// The tables of a template + rule feature (callbacks, time shift; later recording and screenshots): the
/// pieces of their store code that differ only by table name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TemplateTables {
    /// The templates (`id` primary key).
    pub templates: &'static str,
    /// The rules binding templates (`template_id`).
    pub rules: &'static str,
}

/// A query on the `Any` driver, as the template helpers pass it to [`TemplateRow::bind_fields`].
pub(crate) type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// A template row of a [`TemplateTables`] feature: which columns it has and how they map, so that the create,
/// update, get and list SQL is written once for every feature.
pub(crate) trait TemplateRow: Sized {
    /// The columns written on create and update, in the order of [`TemplateRow::bind_fields`] (all but `id`,
    /// `created_at` and `updated_at`).
    const FIELDS: &'static [&'static str];
    /// Binds the values of [`TemplateRow::FIELDS`], in order.
    fn bind_fields<'q>(&'q self, q: AnyQuery<'q>) -> Result<AnyQuery<'q>, StoreError>;
    /// A template from a row holding `id` and [`TemplateRow::FIELDS`].
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error>;
}

/// `$from, $from+1, ...`: `n` placeholders.
fn placeholders(from: usize, n: usize) -> String {
    (from..from + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

impl Store {
    /// Inserts a template (with `created_at` = `updated_at` = now) and returns its new id.
    pub(crate) async fn insert_template<T: TemplateRow>(&self, t: TemplateTables, row: &T) -> Result<i64, StoreError> {
        let n = T::FIELDS.len();
        let sql = format!(
            "INSERT INTO {} ({}, created_at, updated_at) VALUES ({}) RETURNING id",
            t.templates,
            T::FIELDS.join(", "),
            placeholders(1, n + 2)
        );
        let now = unix_now();
        let inserted = row.bind_fields(sqlx::query(&sql))?.bind(now).bind(now).fetch_one(&self.pool).await?;
        Ok(inserted.try_get("id")?)
    }

    /// Overwrites every field of template `id` (and its `updated_at`). Returns whether it exists.
    pub(crate) async fn update_template<T: TemplateRow>(
        &self,
        t: TemplateTables,
        id: i64,
        row: &T,
    ) -> Result<bool, StoreError> {
        let n = T::FIELDS.len();
        let sets: Vec<String> = T::FIELDS.iter().enumerate().map(|(i, c)| format!("{c} = ${}", i + 1)).collect();
        let sql =
            format!("UPDATE {} SET {}, updated_at = ${} WHERE id = ${}", t.templates, sets.join(", "), n + 1, n + 2);
        let r = row.bind_fields(sqlx::query(&sql))?.bind(unix_now()).bind(id).execute(&self.pool).await?;
        Ok(r.rows_affected() > 0)
    }

    /// Template `id`, if it exists.
    pub(crate) async fn template_by_id<T: TemplateRow>(
        &self,
        t: TemplateTables,
        id: i64,
    ) -> Result<Option<T>, StoreError> {
        let sql = format!("SELECT id, {} FROM {} WHERE id = $1", T::FIELDS.join(", "), t.templates);
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(T::from_row).transpose()?)
    }

    /// Every template, by id.
    pub(crate) async fn all_templates<T: TemplateRow>(&self, t: TemplateTables) -> Result<Vec<T>, StoreError> {
        let sql = format!("SELECT id, {} FROM {} ORDER BY id", T::FIELDS.join(", "), t.templates);
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(T::from_row).collect::<Result<_, _>>()?)
    }

    /// How many templates exist.
    pub(crate) async fn template_count(&self, t: TemplateTables) -> Result<i64, StoreError> {
        let row = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {}", t.templates)).fetch_one(&self.pool).await?;
        Ok(row.try_get("n")?)
    }

    /// Deletes template `id`; returns whether it existed.
    pub(crate) async fn delete_template(&self, t: TemplateTables, id: i64) -> Result<bool, StoreError> {
        let r = sqlx::query(&format!("DELETE FROM {} WHERE id = $1", t.templates)).bind(id).execute(&self.pool).await?;
        Ok(r.rows_affected() > 0)
    }

    /// Whether a rule binds template `id`.
    pub(crate) async fn template_in_use(&self, t: TemplateTables, id: i64) -> Result<bool, StoreError> {
        let row = sqlx::query(&format!("SELECT template_id FROM {} WHERE template_id = $1", t.rules))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }
}

/// The control plane's database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "domains", include_str!("../migrations/sqlite/0001_domains.sql")),
    (2, "forbidden_streams", include_str!("../migrations/sqlite/0002_forbidden_streams.sql")),
    (3, "callbacks", include_str!("../migrations/sqlite/0003_callbacks.sql")),
    (4, "history", include_str!("../migrations/sqlite/0004_history.sql")),
    (5, "callback_nodes", include_str!("../migrations/sqlite/0005_callback_nodes.sql")),
    (6, "timeshift", include_str!("../migrations/sqlite/0006_timeshift.sql")),
    (7, "delays", include_str!("../migrations/sqlite/0007_delays.sql")),
    (8, "record", include_str!("../migrations/sqlite/0008_record.sql")),
    (9, "snapshot", include_str!("../migrations/sqlite/0009_snapshot.sql")),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "domains", include_str!("../migrations/postgres/0001_domains.sql")),
    (2, "forbidden_streams", include_str!("../migrations/postgres/0002_forbidden_streams.sql")),
    (3, "callbacks", include_str!("../migrations/postgres/0003_callbacks.sql")),
    (4, "history", include_str!("../migrations/postgres/0004_history.sql")),
    (5, "callback_nodes", include_str!("../migrations/postgres/0005_callback_nodes.sql")),
    (6, "timeshift", include_str!("../migrations/postgres/0006_timeshift.sql")),
    (7, "delays", include_str!("../migrations/postgres/0007_delays.sql")),
    (8, "record", include_str!("../migrations/postgres/0008_record.sql")),
    (9, "snapshot", include_str!("../migrations/postgres/0009_snapshot.sql")),
];

/// The migrations compiled into the binary, for one backend.
#[derive(Debug)]
struct Embedded(&'static [(i64, &'static str, &'static str)]);

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(version, name, sql)| {
                    Migration::new(*version, Cow::Borrowed(*name), MigrationType::Simple, Cow::Borrowed(*sql), false)
                })
                .collect())
        })
    }
}

/// Current UNIX time in seconds.
pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Current UNIX time in milliseconds.
pub fn unix_now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A random key of `len` lowercase hex digits.
pub fn random_hex(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len).map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap_or('0')).collect()
}

fn domain_from_row(row: &AnyRow) -> Result<Domain, sqlx::Error> {
    Ok(Domain {
        name: row.try_get("name")?,
        kind: row.try_get("type")?,
        status: row.try_get("status")?,
        play_type: row.try_get("play_type")?,
        is_delay_live: row.try_get("is_delay_live")?,
        is_mini_program_live: row.try_get("is_mini_program_live")?,
        push_domain: row.try_get("push_domain")?,
        target_cname: row.try_get("target_cname")?,
        created_at: row.try_get("created_at")?,
    })
}

fn auth_from_row(row: &AnyRow) -> Result<AuthKeyRow, sqlx::Error> {
    Ok(AuthKeyRow {
        domain: row.try_get("domain")?,
        enable: row.try_get("enable")?,
        master_key: row.try_get("master_key")?,
        backup_key: row.try_get("backup_key")?,
        auth_delta: row.try_get("auth_delta")?,
    })
}

fn referer_from_row(row: &AnyRow) -> Result<RefererRow, sqlx::Error> {
    Ok(RefererRow {
        domain: row.try_get("domain")?,
        enable: row.try_get("enable")?,
        kind: row.try_get("type")?,
        allow_empty: row.try_get("allow_empty")?,
        rules: row.try_get("rules")?,
    })
}

const DOMAIN_COLUMNS: &str =
    "name, type, status, play_type, is_delay_live, is_mini_program_live, push_domain, target_cname, created_at";

impl Store {
    /// Opens the store at `url`, or the SQLite file `<data_dir>/ferrocast.db` when `url` is empty, and migrates it.
    pub async fn open_default(data_dir: &Path, url: &str) -> Result<Store, StoreError> {
        if url.is_empty() {
            let file = data_dir.join("ferrocast.db");
            Store::open(&format!("sqlite://{}?mode=rwc", file.display())).await
        } else {
            Store::open(url).await
        }
    }

    /// Opens the store at `url` (`sqlite:...` or `postgres://...`) and applies pending migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        let mut options = AnyPoolOptions::new();
        if backend == Backend::Sqlite {
            // One connection: SQLite has one writer at a time anyway, and a deferred transaction that reads then
            // writes fails at once with "database is locked" while another connection writes (the hub-event
            // writers of callbacks and history made that happen). An in-memory database also lives on one
            // connection.
            options = options.max_connections(1);
        } else {
            options = options.max_connections(8);
        }
        let pool = options.connect(url).await?;
        let source = match backend {
            Backend::Sqlite => Embedded(SQLITE_MIGRATIONS),
            Backend::Postgres => Embedded(POSTGRES_MIGRATIONS),
        };
        Migrator::new(source).await?.run(&pool).await?;
        Ok(Store { pool, backend })
    }

    /// The connection pool, for the store functions in sibling modules.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The database this store talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Adds a domain with its default auth key (push: enabled with a random key; play: disabled) and an inactive
    /// referer rule.
    pub async fn add_domain(&self, d: &NewDomain) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let exists =
            sqlx::query("SELECT name FROM domains WHERE name = $1").bind(&d.name).fetch_optional(&mut *tx).await?;
        if exists.is_some() {
            return Err(StoreError::DomainExists(d.name.clone()));
        }
        sqlx::query(
            "INSERT INTO domains (name, type, status, play_type, is_delay_live, is_mini_program_live, push_domain, \
             target_cname, created_at) VALUES ($1, $2, 1, $3, $4, $5, $6, '', $7)",
        )
        .bind(&d.name)
        .bind(d.kind)
        .bind(d.play_type)
        .bind(d.is_delay_live)
        .bind(d.is_mini_program_live)
        .bind(d.push_domain.clone())
        .bind(unix_now())
        .execute(&mut *tx)
        .await?;
        let (enable, key) = if d.kind == DOMAIN_PUSH { (1_i64, random_hex(32)) } else { (0, String::new()) };
        sqlx::query(
            "INSERT INTO domain_auth (domain, enable, master_key, backup_key, auth_delta) VALUES ($1, $2, $3, '', 0)",
        )
        .bind(&d.name)
        .bind(enable)
        .bind(key)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO domain_referer (domain, enable, type, allow_empty, rules) VALUES ($1, 0, 0, 1, '')")
            .bind(&d.name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a domain of the given type with its key and referer rule; play domains bound to it are unbound.
    /// Returns false if there is no such domain of that type.
    pub async fn delete_domain(&self, name: &str, kind: i64) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let found = sqlx::query("SELECT name FROM domains WHERE name = $1 AND type = $2")
            .bind(name)
            .bind(kind)
            .fetch_optional(&mut *tx)
            .await?;
        if found.is_none() {
            return Ok(false);
        }
        sqlx::query("DELETE FROM domain_auth WHERE domain = $1").bind(name).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM domain_referer WHERE domain = $1").bind(name).execute(&mut *tx).await?;
        sqlx::query("UPDATE domains SET push_domain = NULL WHERE push_domain = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM domains WHERE name = $1").bind(name).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// One domain.
    pub async fn domain(&self, name: &str) -> Result<Option<Domain>, StoreError> {
        let row = sqlx::query(&format!("SELECT {DOMAIN_COLUMNS} FROM domains WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(domain_from_row).transpose()?)
    }

    /// Every domain, oldest first.
    pub async fn domains(&self) -> Result<Vec<Domain>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {DOMAIN_COLUMNS} FROM domains ORDER BY created_at, name"))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(domain_from_row).collect::<Result<_, _>>()?)
    }

    /// Sets a domain's status (1 enabled, 0 forbidden). Returns false if there is no such domain.
    pub async fn set_domain_status(&self, name: &str, status: i64) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE domains SET status = $1 WHERE name = $2")
            .bind(status)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Sets a domain's play type. Returns false if there is no such domain.
    pub async fn set_play_type(&self, name: &str, play_type: i64) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE domains SET play_type = $1 WHERE name = $2")
            .bind(play_type)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Binds a play domain to a push domain (or unbinds it). Returns false if there is no such domain.
    pub async fn set_push_binding(&self, name: &str, push_domain: Option<&str>) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE domains SET push_domain = $1 WHERE name = $2")
            .bind(push_domain.map(str::to_string))
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// A domain's auth key.
    pub async fn auth_key(&self, name: &str) -> Result<Option<AuthKeyRow>, StoreError> {
        let row =
            sqlx::query("SELECT domain, enable, master_key, backup_key, auth_delta FROM domain_auth WHERE domain = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.as_ref().map(auth_from_row).transpose()?)
    }

    /// Applies a partial update to a domain's auth key. Returns false if the domain has none.
    pub async fn update_auth_key(&self, name: &str, u: &AuthKeyUpdate) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row =
            sqlx::query("SELECT domain, enable, master_key, backup_key, auth_delta FROM domain_auth WHERE domain = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        let mut key = auth_from_row(&row)?;
        if let Some(v) = u.enable {
            key.enable = v;
        }
        if let Some(v) = &u.master_key {
            key.master_key = v.clone();
        }
        if let Some(v) = &u.backup_key {
            key.backup_key = v.clone();
        }
        if let Some(v) = u.auth_delta {
            key.auth_delta = v;
        }
        sqlx::query(
            "UPDATE domain_auth SET enable = $1, master_key = $2, backup_key = $3, auth_delta = $4 WHERE domain = $5",
        )
        .bind(key.enable)
        .bind(key.master_key)
        .bind(key.backup_key)
        .bind(key.auth_delta)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A domain's referer rule.
    pub async fn referer(&self, name: &str) -> Result<Option<RefererRow>, StoreError> {
        let row = sqlx::query("SELECT domain, enable, type, allow_empty, rules FROM domain_referer WHERE domain = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(referer_from_row).transpose()?)
    }

    /// Replaces a domain's referer rule. Returns false if there is no such domain.
    pub async fn set_referer(&self, r: &RefererRow) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "UPDATE domain_referer SET enable = $1, type = $2, allow_empty = $3, rules = $4 WHERE domain = $5",
        )
        .bind(r.enable)
        .bind(r.kind)
        .bind(r.allow_empty)
        .bind(&r.rules)
        .bind(&r.domain)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() > 0)
    }

    /// Everything the access policy needs.
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let domains = self.domains().await?;
        let auth_keys = sqlx::query("SELECT domain, enable, master_key, backup_key, auth_delta FROM domain_auth")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(auth_from_row)
            .collect::<Result<_, _>>()?;
        let referers = sqlx::query("SELECT domain, enable, type, allow_empty, rules FROM domain_referer")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(referer_from_row)
            .collect::<Result<_, _>>()?;
        let forbidden = self.forbidden_streams().await?;
        let delays = self.delayed_streams().await?;
        Ok(Snapshot { domains, auth_keys, referers, forbidden, delays })
    }

    /// Forbids pushing `f.domain/f.app/f.stream` until `f.resume_at`, replacing an earlier entry.
    pub async fn forbid_stream(&self, f: &ForbiddenStream) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM forbidden_streams WHERE domain = $1 AND app = $2 AND stream = $3")
            .bind(&f.domain)
            .bind(&f.app)
            .bind(&f.stream)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO forbidden_streams (domain, app, stream, reason, forbidden_at, resume_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&f.domain)
        .bind(&f.app)
        .bind(&f.stream)
        .bind(&f.reason)
        .bind(f.forbidden_at)
        .bind(f.resume_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Lifts a forbid. Returns whether there was one.
    pub async fn resume_stream(&self, domain: &str, app: &str, stream: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM forbidden_streams WHERE domain = $1 AND app = $2 AND stream = $3")
            .bind(domain)
            .bind(app)
            .bind(stream)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Every forbidden stream, oldest forbid first.
    pub async fn forbidden_streams(&self) -> Result<Vec<ForbiddenStream>, StoreError> {
        let rows = sqlx::query(
            "SELECT domain, app, stream, reason, forbidden_at, resume_at FROM forbidden_streams \
             ORDER BY forbidden_at, domain, app, stream",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(forbidden_from_row).collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// SQLite in memory, plus PostgreSQL when `FERROCAST_TEST_PG_URL` is set, with `tables` emptied first (the
    /// PostgreSQL database is shared by the store tests, which run one at a time there).
    pub(crate) async fn stores_with_empty(tables: &[&str]) -> Vec<Store> {
        let mut out = vec![Store::open("sqlite::memory:").await.expect("sqlite")];
        if let Ok(url) = std::env::var("FERROCAST_TEST_PG_URL") {
            let pg = Store::open(&url).await.expect("postgres");
            for t in tables {
                sqlx::query(&format!("DELETE FROM {t}")).execute(&pg.pool).await.expect("clean");
            }
            out.push(pg);
        }
        out
    }

    async fn stores() -> Vec<Store> {
        stores_with_empty(&["domain_auth", "domain_referer", "domains", "forbidden_streams"]).await
    }

    fn push(name: &str) -> NewDomain {
        NewDomain {
            name: name.into(),
            kind: DOMAIN_PUSH,
            play_type: 1,
            is_delay_live: 0,
            is_mini_program_live: 0,
            push_domain: None,
        }
    }

    #[tokio::test]
    async fn domains_keys_and_referers_round_trip() {
        for store in stores().await {
            let b = store.backend();
            store.add_domain(&push("push.example.com")).await.expect("add");
            assert!(matches!(store.add_domain(&push("push.example.com")).await, Err(StoreError::DomainExists(_))));
            let play = NewDomain {
                kind: DOMAIN_PLAY,
                push_domain: Some("push.example.com".into()),
                ..push("play.example.com")
            };
            store.add_domain(&play).await.expect("add play");

            let d = store.domain("play.example.com").await.expect("get").expect("exists");
            assert_eq!(
                (d.kind, d.status, d.push_domain.as_deref()),
                (DOMAIN_PLAY, 1, Some("push.example.com")),
                "{b:?}"
            );
            assert_eq!(store.domains().await.expect("list").len(), 2);

            let k = store.auth_key("push.example.com").await.expect("key").expect("exists");
            assert_eq!((k.enable, k.master_key.len()), (1, 32), "a new push domain gets a generated key");
            let k = store.auth_key("play.example.com").await.expect("key").expect("exists");
            assert_eq!(k.enable, 0);

            let u = AuthKeyUpdate { enable: Some(0), backup_key: Some("bk".into()), ..Default::default() };
            assert!(store.update_auth_key("push.example.com", &u).await.expect("update"));
            let k2 = store.auth_key("push.example.com").await.expect("key").expect("exists");
            assert_eq!((k2.enable, k2.backup_key.as_str(), k2.auth_delta), (0, "bk", 0));
            assert!(!store.update_auth_key("nope.example.com", &u).await.expect("update"));

            assert!(store.set_domain_status("push.example.com", 0).await.expect("forbid"));
            assert!(store.set_play_type("play.example.com", 3).await.expect("play type"));
            let r = RefererRow {
                domain: "play.example.com".into(),
                enable: 1,
                kind: 1,
                allow_empty: 0,
                rules: "a.com;b.com".into(),
            };
            assert!(store.set_referer(&r).await.expect("referer"));
            assert_eq!(store.referer("play.example.com").await.expect("get"), Some(r));

            let snap = store.snapshot().await.expect("snapshot");
            assert_eq!((snap.domains.len(), snap.auth_keys.len(), snap.referers.len()), (2, 2, 2));

            assert!(!store.delete_domain("push.example.com", DOMAIN_PLAY).await.expect("wrong type"));
            assert!(store.delete_domain("push.example.com", DOMAIN_PUSH).await.expect("delete"));
            let d = store.domain("play.example.com").await.expect("get").expect("exists");
            assert_eq!(d.push_domain, None, "deleting a push domain unbinds its play domains");
            assert!(store.auth_key("push.example.com").await.expect("key").is_none());
            assert!(store.delete_domain("play.example.com", DOMAIN_PLAY).await.expect("delete"));
            assert!(store.domains().await.expect("list").is_empty());
        }
    }

    #[tokio::test]
    async fn sqlite_file_persists_across_opens() {
        let dir = std::env::temp_dir().join(format!("ferrocast-store-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        {
            let s = Store::open_default(&dir, "").await.expect("open");
            s.add_domain(&push("persist.example.com")).await.expect("add");
        }
        let s = Store::open_default(&dir, "").await.expect("reopen (migrations already applied)");
        assert!(s.domain("persist.example.com").await.expect("get").is_some());
        assert!(dir.join("ferrocast.db").is_file());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn forbidden_streams_round_trip() {
        for store in stores().await {
            let f = ForbiddenStream {
                domain: "push.example.com".into(),
                app: "live".into(),
                stream: "s".into(),
                reason: "test".into(),
                forbidden_at: 100,
                resume_at: 200,
            };
            store.forbid_stream(&f).await.expect("forbid");
            store.forbid_stream(&ForbiddenStream { resume_at: 300, ..f.clone() }).await.expect("again replaces");
            let snap = store.snapshot().await.expect("snapshot");
            assert_eq!(snap.forbidden, vec![ForbiddenStream { resume_at: 300, ..f.clone() }]);
            assert!(store.resume_stream("push.example.com", "live", "s").await.expect("resume"));
            assert!(!store.resume_stream("push.example.com", "live", "s").await.expect("resume twice"));
            assert!(store.forbidden_streams().await.expect("list").is_empty());
        }
    }

    #[tokio::test]
    async fn unknown_url_scheme_is_an_error() {
        assert!(matches!(Store::open("mysql://x").await, Err(StoreError::UnsupportedUrl(_))));
    }
}
