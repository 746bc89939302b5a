//! Copying everything one backend holds into another, empty one (`rookery migrate`), through the
//! storage contracts only, so any pair of backends works.

use anyhow::Context;
use rookery_core::storage::*;
use rookery_core::BareJid;

/// Archive entries read and written per step.
const ARCHIVE_PAGE: usize = 1000;

/// What was copied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyReport {
    pub accounts: usize,
    pub rosters: usize,
    pub offline_stanzas: usize,
    pub kv_values: usize,
    pub archived_messages: usize,
    pub pubsub_nodes: usize,
    pub uploads: usize,
}

impl std::fmt::Display for CopyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} accounts, {} rosters, {} offline stanzas, {} key-value entries, \
             {} archived messages, {} pubsub nodes, {} uploads",
            self.accounts,
            self.rosters,
            self.offline_stanzas,
            self.kv_values,
            self.archived_messages,
            self.pubsub_nodes,
            self.uploads
        )
    }
}

/// Whether a backend holds nothing at all.
pub async fn is_empty(s: &dyn Storage) -> StorageResult<bool> {
    Ok(s.all_accounts().await?.is_empty()
        && s.roster_owners().await?.is_empty()
        && s.offline_owners().await?.is_empty()
        && s.kv_stores().await?.is_empty()
        && s.archive_owners().await?.is_empty()
        && s.pubsub_services().await?.is_empty()
        && s.all_uploads().await?.is_empty())
}

fn jid(s: &str) -> anyhow::Result<BareJid> {
    BareJid::new(s).with_context(|| format!("stored owner `{s}` is not a bare JID"))
}

/// Copies every account (with its SCRAM keys), roster (with its version and pending inbound
/// requests), offline queue, key-value entry, archive (ids, timestamps and order kept) and pubsub
/// service (items in publication order) and upload record (with contents kept in the database)
/// from `from` into `to`, which must be empty. Neither
/// should be in use by a running server meanwhile.
pub async fn copy(from: &dyn Storage, to: &dyn Storage) -> anyhow::Result<CopyReport> {
    // Merging into existing data could silently replace rosters or skip archive ids.
    anyhow::ensure!(
        is_empty(to).await?,
        "the target storage is not empty; migrate copies into an empty database only"
    );
    let mut report = CopyReport::default();
    for user in from.all_accounts().await? {
        let user = jid(&user)?;
        let creds = from
            .credentials(&user)
            .await?
            .with_context(|| format!("account {user} vanished while copying"))?;
        to.create_account(&user, &creds).await?;
        report.accounts += 1;
    }
    for user in from.roster_owners().await? {
        let user = jid(&user)?;
        let (version, items) = from.roster(&user).await?;
        if version > 0 || !items.is_empty() {
            to.restore_roster(&user, version, &items).await?;
            report.rosters += 1;
        }
        for (contact, stanza) in from.pending_in(&user).await? {
            to.put_pending_in(&user, &contact, &stanza).await?;
        }
    }
    for user in from.offline_owners().await? {
        let user = jid(&user)?;
        for stanza in from.peek_offline(&user).await? {
            to.push_offline(&user, &stanza, usize::MAX).await?;
            report.offline_stanzas += 1;
        }
    }
    for store in from.kv_stores().await? {
        for (owner, key, value) in from.kv_all(&store).await? {
            to.kv_set(&jid(&owner)?, &store, &key, Some(&value)).await?;
            report.kv_values += 1;
        }
    }
    for owner in from.archive_owners().await? {
        let mut after = None;
        loop {
            let q = ArchiveQuery {
                after,
                max: ARCHIVE_PAGE,
                ..Default::default()
            };
            let page = from.archive_query(&owner, &q).await?;
            let batch: Vec<(String, Archived)> =
                page.items.into_iter().map(|m| (owner.clone(), m)).collect();
            to.archive_append(&batch).await?;
            report.archived_messages += batch.len();
            after = batch.last().map(|(_, m)| m.id.clone());
            if page.complete || after.is_none() {
                break;
            }
        }
    }
    for service in from.pubsub_services().await? {
        for node in from.pubsub_load(&service).await? {
            let name = node.node.as_str();
            to.pubsub_put_node(&service, name, &node.config).await?;
            for (j, affiliation) in &node.affiliations {
                to.pubsub_set_affiliation(&service, name, j, Some(affiliation))
                    .await?;
            }
            for sub in &node.subscriptions {
                to.pubsub_set_subscription(&service, name, &sub.jid, Some(sub))
                    .await?;
            }
            for item in &node.items {
                to.pubsub_put_item(&service, name, item, usize::MAX).await?;
            }
            report.pubsub_nodes += 1;
        }
    }
    for file in from.all_uploads().await? {
        to.upload_restore(&file).await?;
        // Contents kept in the database come along; files on disk stay where they are.
        let mut seq = 0;
        while let Some(piece) = from.upload_chunk(&file.id, seq).await? {
            to.upload_put_chunk(&file.id, seq, &piece).await?;
            seq += 1;
        }
        report.uploads += 1;
    }
    Ok(report)
}

#[cfg(test)]
#[path = "copy_tests.rs"]
mod tests;
