//! SQLite side of the export surface (`ExportStore`) that `rookery migrate` copies through.

use super::SqliteStorage;
use crate::storage::err;
use async_trait::async_trait;
use rookery_core::storage::*;
use rookery_core::BareJid;

impl SqliteStorage {
    async fn strings(&self, sql: &str) -> StorageResult<Vec<String>> {
        sqlx::query_scalar(sql)
            .fetch_all(&self.pool)
            .await
            .map_err(err)
    }
}

#[async_trait]
impl ExportStore for SqliteStorage {
    async fn all_accounts(&self) -> StorageResult<Vec<String>> {
        self.strings("SELECT jid FROM accounts ORDER BY jid").await
    }

    async fn roster_owners(&self) -> StorageResult<Vec<String>> {
        self.strings(
            "SELECT user FROM roster_versions UNION SELECT user FROM roster_items
             UNION SELECT user FROM subscription_requests ORDER BY 1",
        )
        .await
    }

    async fn restore_roster(
        &self,
        user: &BareJid,
        version: u64,
        items: &[RosterItem],
    ) -> StorageResult<()> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        sqlx::query("DELETE FROM roster_items WHERE user = ?")
            .bind(user.as_str())
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        for item in items {
            Self::upsert_item(&mut tx, user.as_str(), item).await?;
        }
        sqlx::query(
            "INSERT INTO roster_versions (user, version) VALUES (?, ?)
             ON CONFLICT(user) DO UPDATE SET version = excluded.version",
        )
        .bind(user.as_str())
        .bind(version as i64)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)
    }

    async fn offline_owners(&self) -> StorageResult<Vec<String>> {
        self.strings("SELECT DISTINCT user FROM offline_messages ORDER BY user")
            .await
    }

    async fn peek_offline(&self, user: &BareJid) -> StorageResult<Vec<String>> {
        sqlx::query_scalar("SELECT stanza FROM offline_messages WHERE user = ? ORDER BY id")
            .bind(user.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(err)
    }

    async fn kv_stores(&self) -> StorageResult<Vec<String>> {
        self.strings("SELECT DISTINCT store FROM user_data ORDER BY store")
            .await
    }

    async fn archive_owners(&self) -> StorageResult<Vec<String>> {
        self.strings("SELECT DISTINCT owner FROM archive ORDER BY owner")
            .await
    }

    async fn pubsub_services(&self) -> StorageResult<Vec<String>> {
        self.strings("SELECT DISTINCT service FROM pubsub_nodes ORDER BY service")
            .await
    }

    async fn all_uploads(&self) -> StorageResult<Vec<Upload>> {
        self.stored_uploads().await
    }

    /// `VACUUM INTO`: one read transaction, so a snapshot even while the server writes (WAL),
    /// compacted; the copy is readable by its owner only.
    async fn backup(&self, dest: &std::path::Path) -> StorageResult<bool> {
        if dest.exists() {
            return Err(err(format!("{} exists", dest.display())));
        }
        let path = dest
            .to_str()
            .ok_or_else(|| err(format!("{} is not UTF-8", dest.display())))?;
        sqlx::query("VACUUM INTO ?")
            .bind(path)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
        }
        Ok(true)
    }
}
