//! PostgreSQL storage (cluster mode): every storage contract over one database that several
//! Rookery nodes may share, migrations embedded and applied at open.
//!
//! Nothing is cached in the process: counters and order come from the database (roster version
//! rows, identity columns), and the few check-then-write sequences take a transaction-scoped
//! advisory lock, so two nodes cannot interleave them.

use super::err;
use super::sql::{archive_page, push_archive_filters, push_archive_window};
use anyhow::Context;
use async_trait::async_trait;
use rookery_core::storage::*;
use rookery_core::BareJid;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, PgPool, Row};
use std::str::FromStr;
use std::time::Duration;

#[path = "postgres_export.rs"]
mod export;
#[path = "postgres_pubsub.rs"]
mod pubsub;

super::sql_upload::sql_upload_store!(PostgresStorage, super::sql_upload::numbered);

/// Connections per node when the URL does not say (`?max_connections=N`).
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;

pub struct PostgresStorage {
    pool: PgPool,
}

impl PostgresStorage {
    /// Opens `postgres://user[:password]@host[:port]/database[?max_connections=N]`; other query
    /// parameters are libpq's (`sslmode`, `application_name`…).
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let (url, max) = split_max_connections(url)?;
        let opts = PgConnectOptions::from_str(&url).context("PostgreSQL storage URL")?;
        Self::connect(opts, max).await
    }

    pub async fn connect(opts: PgConnectOptions, max_connections: u32) -> anyhow::Result<Self> {
        // Named without the password, which the URL may hold.
        let target = format!(
            "{}@{}:{}/{}",
            opts.get_username(),
            opts.get_host(),
            opts.get_port(),
            opts.get_database().unwrap_or(opts.get_username())
        );
        // The pool retries failed connections until its timeout and then reports only that:
        // one plain connection first gives the real cause (refused, authentication, no database).
        PgConnection::connect_with(&opts)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {target}"))?
            .close()
            .await?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {target}"))?;
        // sqlx holds an advisory lock while migrating, so nodes starting together wait in turn.
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .with_context(|| format!("migrating PostgreSQL database {target}"))?;
        Ok(PostgresStorage { pool })
    }

    /// A transaction holding `owner`'s upload lock: one reservation per owner at a time on
    /// every node.
    async fn upload_tx(&self, owner: &str) -> StorageResult<sqlx::Transaction<'_, sqlx::Postgres>> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        Self::lock(&mut tx, &format!("upload {owner}")).await?;
        Ok(tx)
    }

    /// Serialises one check-then-write sequence per `key` across every node, until the
    /// transaction ends.
    async fn lock(tx: &mut PgConnection, key: &str) -> StorageResult<()> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn bump_version(tx: &mut PgConnection, user: &str) -> StorageResult<u64> {
        let v: i64 = sqlx::query_scalar(
            "INSERT INTO roster_versions (username, version) VALUES ($1, 1)
             ON CONFLICT (username) DO UPDATE SET version = roster_versions.version + 1
             RETURNING version",
        )
        .bind(user)
        .fetch_one(&mut *tx)
        .await
        .map_err(err)?;
        Ok(v as u64)
    }

    async fn upsert_item(
        tx: &mut PgConnection,
        user: &str,
        item: &RosterItem,
    ) -> StorageResult<()> {
        sqlx::query(
            "INSERT INTO roster_items (username, contact, name, subscription, ask, approved, groups)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (username, contact) DO UPDATE SET
             name = excluded.name, subscription = excluded.subscription, ask = excluded.ask,
             approved = excluded.approved, groups = excluded.groups",
        )
        .bind(user)
        .bind(&item.jid)
        .bind(&item.name)
        .bind(item.subscription.as_str())
        .bind(item.ask)
        .bind(item.approved)
        .bind(&item.groups)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        Ok(())
    }
}

/// Takes our own `max_connections` parameter out of the URL (sqlx would warn about it).
fn split_max_connections(url: &str) -> anyhow::Result<(String, u32)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), DEFAULT_MAX_CONNECTIONS));
    };
    let mut max = DEFAULT_MAX_CONNECTIONS;
    let mut rest = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("max_connections", v)) => {
                max =
                    v.parse().ok().filter(|n| *n > 0).with_context(|| {
                        format!("max_connections={v}: expected a positive number")
                    })?;
            }
            _ => rest.push(pair),
        }
    }
    Ok(if rest.is_empty() {
        (base.to_string(), max)
    } else {
        (format!("{base}?{}", rest.join("&")), max)
    })
}

fn creds_from_row(r: &PgRow) -> Credentials {
    Credentials {
        salt: r.get("salt"),
        iterations: r.get::<i64, _>("iterations") as u32,
        sha1: ScramKeys {
            stored_key: r.get("sha1_stored_key"),
            server_key: r.get("sha1_server_key"),
        },
        sha256: ScramKeys {
            stored_key: r.get("sha256_stored_key"),
            server_key: r.get("sha256_server_key"),
        },
    }
}

fn item_from_row(r: &PgRow) -> RosterItem {
    RosterItem {
        jid: r.get("contact"),
        name: r.get("name"),
        subscription: Subscription::parse(r.get::<&str, _>("subscription")).unwrap_or_default(),
        ask: r.get("ask"),
        approved: r.get("approved"),
        groups: r.get("groups"),
    }
}

#[async_trait]
impl AccountStore for PostgresStorage {
    async fn create_account(&self, user: &BareJid, c: &Credentials) -> StorageResult<bool> {
        let r = sqlx::query(
            "INSERT INTO accounts (jid, host, salt, iterations, sha1_stored_key, sha1_server_key,
             sha256_stored_key, sha256_server_key, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (jid) DO NOTHING",
        )
        .bind(user.as_str())
        .bind(user.domain().as_str())
        .bind(&c.salt)
        .bind(c.iterations as i64)
        .bind(&c.sha1.stored_key)
        .bind(&c.sha1.server_key)
        .bind(&c.sha256.stored_key)
        .bind(&c.sha256.server_key)
        .bind(chrono::Utc::now().timestamp())
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn credentials(&self, user: &BareJid) -> StorageResult<Option<Credentials>> {
        let row = sqlx::query("SELECT * FROM accounts WHERE jid = $1")
            .bind(user.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        Ok(row.as_ref().map(creds_from_row))
    }

    async fn set_credentials(&self, user: &BareJid, c: &Credentials) -> StorageResult<bool> {
        let r = sqlx::query(
            "UPDATE accounts SET salt = $1, iterations = $2, sha1_stored_key = $3,
             sha1_server_key = $4, sha256_stored_key = $5, sha256_server_key = $6 WHERE jid = $7",
        )
        .bind(&c.salt)
        .bind(c.iterations as i64)
        .bind(&c.sha1.stored_key)
        .bind(&c.sha1.server_key)
        .bind(&c.sha256.stored_key)
        .bind(&c.sha256.server_key)
        .bind(user.as_str())
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn delete_account(&self, user: &BareJid) -> StorageResult<bool> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        let u = user.as_str();
        let r = sqlx::query("DELETE FROM accounts WHERE jid = $1")
            .bind(u)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        for q in [
            "DELETE FROM roster_items WHERE username = $1",
            "DELETE FROM roster_versions WHERE username = $1",
            "DELETE FROM subscription_requests WHERE username = $1",
            "DELETE FROM offline_messages WHERE username = $1",
            "DELETE FROM user_data WHERE username = $1",
            "DELETE FROM archive WHERE owner = $1",
            "DELETE FROM pubsub_items WHERE service = $1",
            "DELETE FROM pubsub_subscriptions WHERE service = $1",
            "DELETE FROM pubsub_affiliations WHERE service = $1",
            "DELETE FROM pubsub_nodes WHERE service = $1",
        ] {
            sqlx::query(q)
                .bind(u)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn list_accounts(&self, host: &str) -> StorageResult<Vec<String>> {
        sqlx::query_scalar("SELECT jid FROM accounts WHERE host = $1 ORDER BY jid")
            .bind(host)
            .fetch_all(&self.pool)
            .await
            .map_err(err)
    }
}

#[async_trait]
impl RosterStore for PostgresStorage {
    async fn roster(&self, user: &BareJid) -> StorageResult<(u64, Vec<RosterItem>)> {
        // Version first: a change committed in between pairs an older version with newer items,
        // which only costs the client a full roster next time; the other order could pair a new
        // version with old items, which the client would then keep.
        let v: Option<i64> =
            sqlx::query_scalar("SELECT version FROM roster_versions WHERE username = $1")
                .bind(user.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?;
        let rows = sqlx::query("SELECT * FROM roster_items WHERE username = $1 ORDER BY contact")
            .bind(user.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        Ok((
            v.unwrap_or(0) as u64,
            rows.iter().map(item_from_row).collect(),
        ))
    }

    async fn roster_item(
        &self,
        user: &BareJid,
        contact: &str,
    ) -> StorageResult<Option<RosterItem>> {
        let row = sqlx::query("SELECT * FROM roster_items WHERE username = $1 AND contact = $2")
            .bind(user.as_str())
            .bind(contact)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        Ok(row.as_ref().map(item_from_row))
    }

    async fn put_roster_item(&self, user: &BareJid, item: &RosterItem) -> StorageResult<u64> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        Self::upsert_item(&mut tx, user.as_str(), item).await?;
        let v = Self::bump_version(&mut tx, user.as_str()).await?;
        tx.commit().await.map_err(err)?;
        Ok(v)
    }

    async fn remove_roster_item(
        &self,
        user: &BareJid,
        contact: &str,
    ) -> StorageResult<Option<u64>> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        let r = sqlx::query("DELETE FROM roster_items WHERE username = $1 AND contact = $2")
            .bind(user.as_str())
            .bind(contact)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        if r.rows_affected() == 0 {
            return Ok(None);
        }
        let v = Self::bump_version(&mut tx, user.as_str()).await?;
        tx.commit().await.map_err(err)?;
        Ok(Some(v))
    }

    async fn put_pending_in(
        &self,
        user: &BareJid,
        contact: &str,
        stanza: &str,
    ) -> StorageResult<()> {
        sqlx::query(
            "INSERT INTO subscription_requests (username, contact, stanza) VALUES ($1, $2, $3)
             ON CONFLICT (username, contact) DO UPDATE SET stanza = excluded.stanza",
        )
        .bind(user.as_str())
        .bind(contact)
        .bind(stanza)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn remove_pending_in(&self, user: &BareJid, contact: &str) -> StorageResult<bool> {
        let r =
            sqlx::query("DELETE FROM subscription_requests WHERE username = $1 AND contact = $2")
                .bind(user.as_str())
                .bind(contact)
                .execute(&self.pool)
                .await
                .map_err(err)?;
        Ok(r.rows_affected() > 0)
    }

    async fn pending_in(&self, user: &BareJid) -> StorageResult<Vec<(String, String)>> {
        sqlx::query_as(
            "SELECT contact, stanza FROM subscription_requests WHERE username = $1
             ORDER BY contact",
        )
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(err)
    }
}

#[async_trait]
impl OfflineStore for PostgresStorage {
    async fn push_offline(&self, user: &BareJid, stanza: &str, cap: usize) -> StorageResult<bool> {
        // Under READ COMMITTED two nodes could both see room for one more; the lock makes the
        // count and the insert one step per user.
        let mut tx = self.pool.begin().await.map_err(err)?;
        Self::lock(&mut tx, &format!("offline\n{user}")).await?;
        let r = sqlx::query(
            "INSERT INTO offline_messages (username, stanza) SELECT $1, $2
             WHERE (SELECT COUNT(*) FROM offline_messages WHERE username = $1) < $3",
        )
        .bind(user.as_str())
        .bind(stanza)
        .bind(cap.min(i64::MAX as usize) as i64)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn take_offline(&self, user: &BareJid) -> StorageResult<Vec<String>> {
        let mut rows: Vec<(i64, String)> =
            sqlx::query_as("DELETE FROM offline_messages WHERE username = $1 RETURNING id, stanza")
                .bind(user.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(err)?;
        rows.sort_by_key(|(id, _)| *id);
        Ok(rows.into_iter().map(|(_, s)| s).collect())
    }

    async fn count_offline(&self, user: &BareJid) -> StorageResult<usize> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM offline_messages WHERE username = $1")
                .bind(user.as_str())
                .fetch_one(&self.pool)
                .await
                .map_err(err)?;
        Ok(n as usize)
    }
}

#[async_trait]
impl KeyValueStore for PostgresStorage {
    async fn kv_get(
        &self,
        user: &BareJid,
        store: &str,
        key: &str,
    ) -> StorageResult<Option<String>> {
        sqlx::query_scalar(
            "SELECT value FROM user_data WHERE username = $1 AND store = $2 AND key = $3",
        )
        .bind(user.as_str())
        .bind(store)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(err)
    }

    async fn kv_set(
        &self,
        user: &BareJid,
        store: &str,
        key: &str,
        value: Option<&str>,
    ) -> StorageResult<()> {
        match value {
            Some(v) => sqlx::query(
                "INSERT INTO user_data (username, store, key, value) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (username, store, key) DO UPDATE SET value = excluded.value",
            )
            .bind(user.as_str())
            .bind(store)
            .bind(key)
            .bind(v),
            None => {
                sqlx::query("DELETE FROM user_data WHERE username = $1 AND store = $2 AND key = $3")
                    .bind(user.as_str())
                    .bind(store)
                    .bind(key)
            }
        }
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn kv_all(&self, store: &str) -> StorageResult<Vec<(String, String, String)>> {
        sqlx::query_as(
            "SELECT username, key, value FROM user_data WHERE store = $1 ORDER BY username, key",
        )
        .bind(store)
        .fetch_all(&self.pool)
        .await
        .map_err(err)
    }
}

/// Rows per archive insert statement (5 parameters each; PostgreSQL allows 65535).
const ARCHIVE_CHUNK: usize = 1000;

fn archive_insert(chunk: &[(String, Archived)]) -> sqlx::QueryBuilder<'_, sqlx::Postgres> {
    let mut qb = sqlx::QueryBuilder::new("INSERT INTO archive (owner, id, ts, with_jid, stanza) ");
    qb.push_values(chunk, |mut b, (owner, m)| {
        b.push_bind(owner)
            .push_bind(&m.id)
            .push_bind(m.timestamp)
            .push_bind(&m.with)
            .push_bind(&m.stanza);
    });
    qb.push(" ON CONFLICT (owner, id) DO NOTHING");
    qb
}

#[async_trait]
impl ArchiveStore for PostgresStorage {
    async fn archive_append(&self, batch: &[(String, Archived)]) -> StorageResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        if batch.len() <= ARCHIVE_CHUNK {
            archive_insert(batch)
                .build()
                .execute(&self.pool)
                .await
                .map_err(err)?;
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(err)?;
        for chunk in batch.chunks(ARCHIVE_CHUNK) {
            archive_insert(chunk)
                .build()
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }

    async fn archive_query(&self, owner: &str, q: &ArchiveQuery) -> StorageResult<ArchivePage> {
        let seq_of = |id: &str| {
            let id = id.to_string();
            let owner = owner.to_string();
            async move {
                let seq: Option<i64> =
                    sqlx::query_scalar("SELECT seq FROM archive WHERE owner = $1 AND id = $2")
                        .bind(owner)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(err)?;
                seq.ok_or_else(|| StorageError("item-not-found".into()))
            }
        };
        let after = match &q.after {
            Some(id) => Some(seq_of(id).await?),
            None => None,
        };
        let before = match &q.before {
            Some(id) => Some(seq_of(id).await?),
            None => None,
        };
        let mut count_q = sqlx::QueryBuilder::new("SELECT COUNT(*) FROM archive");
        push_archive_filters(&mut count_q, owner, q);
        let count: i64 = count_q
            .build_query_scalar()
            .fetch_one(&self.pool)
            .await
            .map_err(err)?;
        let mut qb = sqlx::QueryBuilder::new("SELECT id, ts, with_jid, stanza FROM archive");
        push_archive_filters(&mut qb, owner, q);
        let backwards = push_archive_window(&mut qb, q, after, before);
        let rows = qb
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        Ok(archive_page(rows, q.max, backwards, count))
    }

    async fn archive_expire(&self, before: i64) -> StorageResult<u64> {
        let r = sqlx::query("DELETE FROM archive WHERE ts < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(r.rows_affected())
    }

    async fn archive_clear(&self, owner: &str) -> StorageResult<()> {
        sqlx::query("DELETE FROM archive WHERE owner = $1")
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
#[path = "postgres_testdb.rs"]
pub(crate) mod testdb;

#[cfg(test)]
mod tests {
    use super::split_max_connections;

    #[test]
    fn max_connections_is_taken_from_the_url() {
        let u = "postgres://u@h/db";
        assert_eq!(split_max_connections(u).unwrap(), (u.to_string(), 16));
        assert_eq!(
            split_max_connections("postgres://u@h/db?max_connections=4").unwrap(),
            (u.to_string(), 4)
        );
        assert_eq!(
            split_max_connections("postgres://u@h/db?sslmode=require&max_connections=2").unwrap(),
            ("postgres://u@h/db?sslmode=require".to_string(), 2)
        );
        assert!(split_max_connections("postgres://u@h/db?max_connections=0").is_err());
    }

    #[tokio::test]
    async fn conforms() {
        let Some(db) = super::testdb::TestDb::create().await else {
            return;
        };
        let s = db.open().await;
        crate::storage::conformance::run(&s).await;
    }
}
