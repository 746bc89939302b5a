//! SQLite storage (embedded default): WAL mode, migrations embedded and applied at open.

use super::err;
use super::sql::{archive_page, push_archive_filters, push_archive_window};
use async_trait::async_trait;
use rookery_core::storage::*;
use rookery_core::BareJid;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::str::FromStr;

#[path = "sqlite_export.rs"]
mod export;
#[path = "sqlite_pubsub.rs"]
mod pubsub;

super::sql_upload::sql_upload_store!(SqliteStorage, str::to_string);

pub struct SqliteStorage {
    pool: SqlitePool,
}

impl SqliteStorage {
    pub async fn open(path: &str) -> anyhow::Result<Self> {
        if let Some(dir) = std::path::Path::new(path).parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)?;
            }
        }
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(SqliteStorage { pool })
    }

    /// A write transaction taken at once: one upload reservation at a time.
    async fn upload_tx(&self, _owner: &str) -> StorageResult<sqlx::Transaction<'_, sqlx::Sqlite>> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(err)
    }

    async fn bump_version(tx: &mut sqlx::SqliteConnection, user: &str) -> StorageResult<u64> {
        let v: i64 = sqlx::query_scalar(
            "INSERT INTO roster_versions (user, version) VALUES (?, 1)
             ON CONFLICT(user) DO UPDATE SET version = version + 1 RETURNING version",
        )
        .bind(user)
        .fetch_one(&mut *tx)
        .await
        .map_err(err)?;
        Ok(v as u64)
    }

    async fn upsert_item(
        tx: &mut sqlx::SqliteConnection,
        user: &str,
        item: &RosterItem,
    ) -> StorageResult<()> {
        sqlx::query(
            "INSERT INTO roster_items (user, contact, name, subscription, ask, approved, groups)
             VALUES (?,?,?,?,?,?,?) ON CONFLICT(user, contact) DO UPDATE SET name=excluded.name,
             subscription=excluded.subscription, ask=excluded.ask, approved=excluded.approved,
             groups=excluded.groups",
        )
        .bind(user)
        .bind(&item.jid)
        .bind(&item.name)
        .bind(item.subscription.as_str())
        .bind(item.ask as i64)
        .bind(item.approved as i64)
        .bind(serde_json::to_string(&item.groups).map_err(err)?)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        Ok(())
    }
}

fn creds_from_row(r: &sqlx::sqlite::SqliteRow) -> Credentials {
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

fn item_from_row(r: &sqlx::sqlite::SqliteRow) -> RosterItem {
    let groups: String = r.get("groups");
    RosterItem {
        jid: r.get("contact"),
        name: r.get("name"),
        subscription: Subscription::parse(r.get::<&str, _>("subscription")).unwrap_or_default(),
        ask: r.get::<i64, _>("ask") != 0,
        approved: r.get::<i64, _>("approved") != 0,
        groups: serde_json::from_str(&groups).unwrap_or_default(),
    }
}

#[async_trait]
impl AccountStore for SqliteStorage {
    async fn create_account(&self, user: &BareJid, c: &Credentials) -> StorageResult<bool> {
        let r = sqlx::query(
            "INSERT INTO accounts (jid, host, salt, iterations, sha1_stored_key, sha1_server_key,
             sha256_stored_key, sha256_server_key, created_at) VALUES (?,?,?,?,?,?,?,?,?)
             ON CONFLICT(jid) DO NOTHING",
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
        let row = sqlx::query("SELECT * FROM accounts WHERE jid = ?")
            .bind(user.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        Ok(row.as_ref().map(creds_from_row))
    }

    async fn set_credentials(&self, user: &BareJid, c: &Credentials) -> StorageResult<bool> {
        let r = sqlx::query(
            "UPDATE accounts SET salt=?, iterations=?, sha1_stored_key=?, sha1_server_key=?,
             sha256_stored_key=?, sha256_server_key=? WHERE jid=?",
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
        let r = sqlx::query("DELETE FROM accounts WHERE jid = ?")
            .bind(u)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        for q in [
            "DELETE FROM roster_items WHERE user = ?",
            "DELETE FROM roster_versions WHERE user = ?",
            "DELETE FROM subscription_requests WHERE user = ?",
            "DELETE FROM offline_messages WHERE user = ?",
            "DELETE FROM user_data WHERE user = ?",
            "DELETE FROM archive WHERE owner = ?",
            "DELETE FROM pubsub_items WHERE service = ?",
            "DELETE FROM pubsub_subscriptions WHERE service = ?",
            "DELETE FROM pubsub_affiliations WHERE service = ?",
            "DELETE FROM pubsub_nodes WHERE service = ?",
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
        sqlx::query_scalar("SELECT jid FROM accounts WHERE host = ? ORDER BY jid")
            .bind(host)
            .fetch_all(&self.pool)
            .await
            .map_err(err)
    }
}

#[async_trait]
impl RosterStore for SqliteStorage {
    async fn roster(&self, user: &BareJid) -> StorageResult<(u64, Vec<RosterItem>)> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT version FROM roster_versions WHERE user = ?")
                .bind(user.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?;
        let rows = sqlx::query("SELECT * FROM roster_items WHERE user = ? ORDER BY contact")
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
        let row = sqlx::query("SELECT * FROM roster_items WHERE user = ? AND contact = ?")
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
        let r = sqlx::query("DELETE FROM roster_items WHERE user = ? AND contact = ?")
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
            "INSERT INTO subscription_requests (user, contact, stanza) VALUES (?,?,?)
             ON CONFLICT(user, contact) DO UPDATE SET stanza = excluded.stanza",
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
        let r = sqlx::query("DELETE FROM subscription_requests WHERE user = ? AND contact = ?")
            .bind(user.as_str())
            .bind(contact)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(r.rows_affected() > 0)
    }

    async fn pending_in(&self, user: &BareJid) -> StorageResult<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT contact, stanza FROM subscription_requests WHERE user = ? ORDER BY contact",
        )
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        Ok(rows
            .iter()
            .map(|r| (r.get("contact"), r.get("stanza")))
            .collect())
    }
}

#[async_trait]
impl OfflineStore for SqliteStorage {
    async fn push_offline(&self, user: &BareJid, stanza: &str, cap: usize) -> StorageResult<bool> {
        // One statement, so concurrent senders cannot overshoot the cap.
        let r = sqlx::query(
            "INSERT INTO offline_messages (user, stanza) SELECT ?1, ?2
             WHERE (SELECT COUNT(*) FROM offline_messages WHERE user = ?1) < ?3",
        )
        .bind(user.as_str())
        .bind(stanza)
        .bind(cap.min(i64::MAX as usize) as i64)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn take_offline(&self, user: &BareJid) -> StorageResult<Vec<String>> {
        // Most logins find nothing: a read first keeps them off the write lock.
        let any: bool =
            sqlx::query_scalar("SELECT EXISTS(SELECT 1 FROM offline_messages WHERE user = ?)")
                .bind(user.as_str())
                .fetch_one(&self.pool)
                .await
                .map_err(err)?;
        if !any {
            return Ok(Vec::new());
        }
        // One statement, so no read-to-write lock upgrade can fail under concurrency.
        let mut rows: Vec<(i64, String)> =
            sqlx::query_as("DELETE FROM offline_messages WHERE user = ? RETURNING id, stanza")
                .bind(user.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(err)?;
        rows.sort_by_key(|(id, _)| *id);
        Ok(rows.into_iter().map(|(_, s)| s).collect())
    }

    async fn count_offline(&self, user: &BareJid) -> StorageResult<usize> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM offline_messages WHERE user = ?")
            .bind(user.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(err)?;
        Ok(n as usize)
    }
}

#[async_trait]
impl KeyValueStore for SqliteStorage {
    async fn kv_get(
        &self,
        user: &BareJid,
        store: &str,
        key: &str,
    ) -> StorageResult<Option<String>> {
        sqlx::query_scalar("SELECT value FROM user_data WHERE user = ? AND store = ? AND key = ?")
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
                "INSERT INTO user_data (user, store, key, value) VALUES (?,?,?,?)
                 ON CONFLICT(user, store, key) DO UPDATE SET value = excluded.value",
            )
            .bind(user.as_str())
            .bind(store)
            .bind(key)
            .bind(v)
            .execute(&self.pool)
            .await
            .map_err(err)?,
            None => sqlx::query("DELETE FROM user_data WHERE user = ? AND store = ? AND key = ?")
                .bind(user.as_str())
                .bind(store)
                .bind(key)
                .execute(&self.pool)
                .await
                .map_err(err)?,
        };
        Ok(())
    }

    async fn kv_all(&self, store: &str) -> StorageResult<Vec<(String, String, String)>> {
        sqlx::query_as("SELECT user, key, value FROM user_data WHERE store = ? ORDER BY user, key")
            .bind(store)
            .fetch_all(&self.pool)
            .await
            .map_err(err)
    }
}

#[async_trait]
impl ArchiveStore for SqliteStorage {
    async fn archive_append(&self, batch: &[(String, Archived)]) -> StorageResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        // Multi-row inserts in one transaction: the cost of archiving is shared by many messages.
        let mut tx = self.pool.begin().await.map_err(err)?;
        for chunk in batch.chunks(500) {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT OR IGNORE INTO archive (owner, id, ts, with_jid, stanza) ",
            );
            qb.push_values(chunk, |mut b, (owner, m)| {
                b.push_bind(owner)
                    .push_bind(&m.id)
                    .push_bind(m.timestamp)
                    .push_bind(&m.with)
                    .push_bind(&m.stanza);
            });
            qb.build().execute(&mut *tx).await.map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }

    async fn archive_query(&self, owner: &str, q: &ArchiveQuery) -> StorageResult<ArchivePage> {
        let seq_of = |id: &str| {
            let id = id.to_string();
            let owner = owner.to_string();
            async move {
                let seq: Option<i64> =
                    sqlx::query_scalar("SELECT seq FROM archive WHERE owner = ? AND id = ?")
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
        let r = sqlx::query("DELETE FROM archive WHERE ts < ?")
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(r.rows_affected())
    }

    async fn archive_clear(&self, owner: &str) -> StorageResult<()> {
        sqlx::query("DELETE FROM archive WHERE owner = ?")
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn conforms() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite");
        let s = super::SqliteStorage::open(path.to_str().unwrap())
            .await
            .unwrap();
        crate::storage::conformance::run(&s).await;
    }
}
