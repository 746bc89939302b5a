//! In-memory storage for XEP-0060 pubsub nodes; same contract as SQLite.

use super::MemoryStorage;
use async_trait::async_trait;
use rookery_core::storage::*;
use std::collections::BTreeMap;

/// Nodes by (service, node).
pub(super) type Nodes = BTreeMap<(String, String), StoredNode>;

#[async_trait]
impl PubSubStore for MemoryStorage {
    async fn pubsub_load(&self, service: &str) -> StorageResult<Vec<StoredNode>> {
        let g = self.inner.lock().unwrap();
        Ok(g.pubsub
            .iter()
            .filter(|((s, _), _)| s == service)
            .map(|(_, n)| n.clone())
            .collect())
    }

    async fn pubsub_put_node(&self, service: &str, node: &str, config: &str) -> StorageResult<()> {
        let mut g = self.inner.lock().unwrap();
        let n = g
            .pubsub
            .entry((service.to_string(), node.to_string()))
            .or_insert_with(|| StoredNode {
                node: node.to_string(),
                ..Default::default()
            });
        n.config = config.to_string();
        Ok(())
    }

    async fn pubsub_delete_node(&self, service: &str, node: &str) -> StorageResult<()> {
        let mut g = self.inner.lock().unwrap();
        g.pubsub.remove(&(service.to_string(), node.to_string()));
        Ok(())
    }

    async fn pubsub_set_affiliation(
        &self,
        service: &str,
        node: &str,
        jid: &str,
        affiliation: Option<&str>,
    ) -> StorageResult<()> {
        let mut g = self.inner.lock().unwrap();
        let Some(n) = g.pubsub.get_mut(&(service.to_string(), node.to_string())) else {
            return Ok(());
        };
        n.affiliations.retain(|(j, _)| j != jid);
        if let Some(a) = affiliation {
            n.affiliations.push((jid.to_string(), a.to_string()));
            n.affiliations.sort();
        }
        Ok(())
    }

    async fn pubsub_set_subscription(
        &self,
        service: &str,
        node: &str,
        jid: &str,
        subscription: Option<&StoredSubscription>,
    ) -> StorageResult<()> {
        let mut g = self.inner.lock().unwrap();
        let Some(n) = g.pubsub.get_mut(&(service.to_string(), node.to_string())) else {
            return Ok(());
        };
        n.subscriptions.retain(|s| s.jid != jid);
        if let Some(s) = subscription {
            n.subscriptions.push(StoredSubscription {
                jid: jid.to_string(),
                ..s.clone()
            });
            n.subscriptions.sort_by(|a, b| a.jid.cmp(&b.jid));
        }
        Ok(())
    }

    async fn pubsub_put_item(
        &self,
        service: &str,
        node: &str,
        item: &StoredItem,
        keep: usize,
    ) -> StorageResult<()> {
        let mut g = self.inner.lock().unwrap();
        let Some(n) = g.pubsub.get_mut(&(service.to_string(), node.to_string())) else {
            return Ok(());
        };
        n.items.retain(|i| i.id != item.id);
        n.items.push(item.clone());
        let extra = n.items.len().saturating_sub(keep);
        n.items.drain(..extra);
        Ok(())
    }

    async fn pubsub_delete_items(
        &self,
        service: &str,
        node: &str,
        ids: &[String],
    ) -> StorageResult<()> {
        let mut g = self.inner.lock().unwrap();
        if let Some(n) = g.pubsub.get_mut(&(service.to_string(), node.to_string())) {
            n.items.retain(|i| !ids.contains(&i.id));
        }
        Ok(())
    }

    async fn pubsub_purge(&self, service: &str, node: &str) -> StorageResult<()> {
        let mut g = self.inner.lock().unwrap();
        if let Some(n) = g.pubsub.get_mut(&(service.to_string(), node.to_string())) {
            n.items.clear();
        }
        Ok(())
    }

    async fn pubsub_delete_service(&self, service: &str) -> StorageResult<()> {
        let mut g = self.inner.lock().unwrap();
        g.pubsub.retain(|(s, _), _| s != service);
        Ok(())
    }
}
