//! PostgreSQL storage for XEP-0060 pubsub nodes (pubsub domains and PEP).

use super::PostgresStorage;
use crate::storage::err;
use crate::storage::sql::assemble_nodes;
use async_trait::async_trait;
use rookery_core::storage::*;

const NODE_TABLES: [&str; 4] = [
    "pubsub_items",
    "pubsub_subscriptions",
    "pubsub_affiliations",
    "pubsub_nodes",
];

#[async_trait]
impl PubSubStore for PostgresStorage {
    async fn pubsub_load(&self, service: &str) -> StorageResult<Vec<StoredNode>> {
        // One snapshot for the four reads, so a node is never seen half-written by another node.
        let mut tx = self.pool.begin().await.map_err(err)?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        let nodes = sqlx::query_as(
            "SELECT node, config FROM pubsub_nodes WHERE service = $1 ORDER BY node",
        )
        .bind(service)
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        let affiliations = sqlx::query_as(
            "SELECT node, jid, affiliation FROM pubsub_affiliations WHERE service = $1
             ORDER BY node, jid",
        )
        .bind(service)
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        let subscriptions = sqlx::query_as(
            "SELECT node, jid, subid, state, options FROM pubsub_subscriptions
             WHERE service = $1 ORDER BY node, jid",
        )
        .bind(service)
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        let items = sqlx::query_as(
            "SELECT node, id, publisher, ts, payload FROM pubsub_items WHERE service = $1
             ORDER BY seq",
        )
        .bind(service)
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(assemble_nodes(nodes, affiliations, subscriptions, items))
    }

    async fn pubsub_put_node(&self, service: &str, node: &str, config: &str) -> StorageResult<()> {
        sqlx::query(
            "INSERT INTO pubsub_nodes (service, node, config) VALUES ($1, $2, $3)
             ON CONFLICT (service, node) DO UPDATE SET config = excluded.config",
        )
        .bind(service)
        .bind(node)
        .bind(config)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn pubsub_delete_node(&self, service: &str, node: &str) -> StorageResult<()> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        for table in NODE_TABLES {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE service = $1 AND node = $2"
            ))
            .bind(service)
            .bind(node)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }

    async fn pubsub_set_affiliation(
        &self,
        service: &str,
        node: &str,
        jid: &str,
        affiliation: Option<&str>,
    ) -> StorageResult<()> {
        match affiliation {
            Some(a) => sqlx::query(
                "INSERT INTO pubsub_affiliations (service, node, jid, affiliation)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (service, node, jid)
                 DO UPDATE SET affiliation = excluded.affiliation",
            )
            .bind(service)
            .bind(node)
            .bind(jid)
            .bind(a),
            None => sqlx::query(
                "DELETE FROM pubsub_affiliations WHERE service = $1 AND node = $2 AND jid = $3",
            )
            .bind(service)
            .bind(node)
            .bind(jid),
        }
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn pubsub_set_subscription(
        &self,
        service: &str,
        node: &str,
        jid: &str,
        subscription: Option<&StoredSubscription>,
    ) -> StorageResult<()> {
        match subscription {
            Some(s) => sqlx::query(
                "INSERT INTO pubsub_subscriptions (service, node, jid, subid, state, options)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (service, node, jid) DO UPDATE SET
                 subid = excluded.subid, state = excluded.state, options = excluded.options",
            )
            .bind(service)
            .bind(node)
            .bind(jid)
            .bind(&s.subid)
            .bind(&s.state)
            .bind(&s.options),
            None => sqlx::query(
                "DELETE FROM pubsub_subscriptions WHERE service = $1 AND node = $2 AND jid = $3",
            )
            .bind(service)
            .bind(node)
            .bind(jid),
        }
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn pubsub_put_item(
        &self,
        service: &str,
        node: &str,
        item: &StoredItem,
        keep: usize,
    ) -> StorageResult<()> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        // Two nodes publishing to one pubsub node at once would otherwise both delete nothing
        // and collide on the id, or each trim to `keep` without counting the other's item.
        Self::lock(&mut tx, &format!("pubsub\n{service}\n{node}")).await?;
        // Delete then insert, so a republished id becomes the newest.
        sqlx::query("DELETE FROM pubsub_items WHERE service = $1 AND node = $2 AND id = $3")
            .bind(service)
            .bind(node)
            .bind(&item.id)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        sqlx::query(
            "INSERT INTO pubsub_items (service, node, id, publisher, ts, payload)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(service)
        .bind(node)
        .bind(&item.id)
        .bind(&item.publisher)
        .bind(item.timestamp)
        .bind(&item.payload)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        sqlx::query(
            "DELETE FROM pubsub_items WHERE service = $1 AND node = $2 AND seq NOT IN
             (SELECT seq FROM pubsub_items WHERE service = $1 AND node = $2
              ORDER BY seq DESC LIMIT $3)",
        )
        .bind(service)
        .bind(node)
        .bind(keep.min(i64::MAX as usize) as i64)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)
    }

    async fn pubsub_delete_items(
        &self,
        service: &str,
        node: &str,
        ids: &[String],
    ) -> StorageResult<()> {
        sqlx::query("DELETE FROM pubsub_items WHERE service = $1 AND node = $2 AND id = ANY($3)")
            .bind(service)
            .bind(node)
            .bind(ids)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn pubsub_purge(&self, service: &str, node: &str) -> StorageResult<()> {
        sqlx::query("DELETE FROM pubsub_items WHERE service = $1 AND node = $2")
            .bind(service)
            .bind(node)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn pubsub_delete_service(&self, service: &str) -> StorageResult<()> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        for table in NODE_TABLES {
            sqlx::query(&format!("DELETE FROM {table} WHERE service = $1"))
                .bind(service)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }
}
