//! PostgreSQL side of the export surface (`ExportStore`) that `rookery migrate` copies through.

use super::PostgresStorage;
use crate::storage::err;
use async_trait::async_trait;
use rookery_core::storage::*;
use rookery_core::BareJid;

impl PostgresStorage {
    async fn strings(&self, sql: &str) -> StorageResult<Vec<String>> {
        sqlx::query_scalar(sql)
            .fetch_all(&self.pool)
            .await
            .map_err(err)
    }
}

#[async_trait]
impl ExportStore for PostgresStorage {
    async fn all_accounts(&self) -> StorageResult<Vec<String>> {
        self.strings("SELECT jid FROM accounts ORDER BY jid").await
    }

    async fn roster_owners(&self) -> StorageResult<Vec<String>> {
        self.strings(
            "SELECT username FROM roster_versions UNION SELECT username FROM roster_items
             UNION SELECT username FROM subscription_requests ORDER BY 1",
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
        sqlx::query("DELETE FROM roster_items WHERE username = $1")
            .bind(user.as_str())
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        for item in items {
            Self::upsert_item(&mut tx, user.as_str(), item).await?;
        }
        sqlx::query(
            "INSERT INTO roster_versions (username, version) VALUES ($1, $2)
             ON CONFLICT (username) DO UPDATE SET version = excluded.version",
        )
        .bind(user.as_str())
        .bind(version as i64)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)
    }

    async fn offline_owners(&self) -> StorageResult<Vec<String>> {
        self.strings("SELECT DISTINCT username FROM offline_messages ORDER BY username")
            .await
    }

    async fn peek_offline(&self, user: &BareJid) -> StorageResult<Vec<String>> {
        sqlx::query_scalar("SELECT stanza FROM offline_messages WHERE username = $1 ORDER BY id")
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
}
