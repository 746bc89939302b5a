//! SQL shared by the SQLite and PostgreSQL backends: archive (XEP-0313) paging and pubsub
//! (XEP-0060) node assembly.

use rookery_core::storage::{
    ArchivePage, ArchiveQuery, Archived, StoredItem, StoredNode, StoredSubscription,
};
use sqlx::{Database, Encode, QueryBuilder, Type};

/// The `WHERE` clause of an archive query: owner and filters, not the RSM window, so that the
/// same clause also counts every match.
pub(crate) fn push_archive_filters<'a, DB>(
    qb: &mut QueryBuilder<'a, DB>,
    owner: &'a str,
    q: &'a ArchiveQuery,
) where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    qb.push(" WHERE owner = ").push_bind(owner);
    if let Some(w) = &q.with {
        qb.push(" AND with_jid = ").push_bind(w.as_str());
    }
    if let Some(s) = q.start {
        qb.push(" AND ts >= ").push_bind(s);
    }
    if let Some(e) = q.end {
        qb.push(" AND ts <= ").push_bind(e);
    }
    if !q.ids.is_empty() {
        qb.push(" AND id IN (");
        let mut sep = qb.separated(", ");
        for id in &q.ids {
            sep.push_bind(id.as_str());
        }
        qb.push(")");
    }
}

/// Appends the RSM window (`after`/`before` as `seq` values), the order and one row more than a
/// page (to tell whether the page is complete). Returns whether rows come newest first.
pub(crate) fn push_archive_window<'a, DB>(
    qb: &mut QueryBuilder<'a, DB>,
    q: &ArchiveQuery,
    after: Option<i64>,
    before: Option<i64>,
) -> bool
where
    DB: Database,
    i64: Encode<'a, DB> + Type<DB>,
{
    if let Some(a) = after {
        qb.push(" AND seq > ").push_bind(a);
    }
    if let Some(b) = before {
        qb.push(" AND seq < ").push_bind(b);
    }
    let backwards = before.is_some() || (q.from_end && after.is_none());
    qb.push(if backwards {
        " ORDER BY seq DESC"
    } else {
        " ORDER BY seq ASC"
    });
    qb.push(" LIMIT ")
        .push_bind(q.max.min(i64::MAX as usize - 1) as i64 + 1);
    backwards
}

/// The page from the rows `push_archive_window` selected.
pub(crate) fn archive_page(
    rows: Vec<(String, i64, String, String)>,
    max: usize,
    backwards: bool,
    count: i64,
) -> ArchivePage {
    let complete = rows.len() <= max;
    let mut items: Vec<Archived> = rows
        .into_iter()
        .take(max)
        .map(|(id, timestamp, with, stanza)| Archived {
            id,
            timestamp,
            with,
            stanza,
        })
        .collect();
    if backwards {
        items.reverse();
    }
    ArchivePage {
        items,
        complete,
        count: count as usize,
    }
}

/// Rows of `pubsub_affiliations`: (node, jid, affiliation).
pub(crate) type AffiliationRow = (String, String, String);
/// Rows of `pubsub_subscriptions`: (node, jid, subid, state, options).
pub(crate) type SubscriptionRow = (String, String, String, String, String);
/// Rows of `pubsub_items`: (node, id, publisher, ts, payload).
pub(crate) type ItemRow = (String, String, String, i64, String);

/// One service's nodes from its rows: `nodes` ordered by name, items in publication order.
/// Rows of nodes that do not exist are dropped.
pub(crate) fn assemble_nodes(
    nodes: Vec<(String, String)>,
    affiliations: Vec<AffiliationRow>,
    subscriptions: Vec<SubscriptionRow>,
    items: Vec<ItemRow>,
) -> Vec<StoredNode> {
    let mut nodes: Vec<StoredNode> = nodes
        .into_iter()
        .map(|(node, config)| StoredNode {
            node,
            config,
            ..Default::default()
        })
        .collect();
    let find = |nodes: &mut Vec<StoredNode>, name: &str| -> Option<usize> {
        nodes.binary_search_by(|n| n.node.as_str().cmp(name)).ok()
    };
    for (node, jid, aff) in affiliations {
        if let Some(i) = find(&mut nodes, &node) {
            nodes[i].affiliations.push((jid, aff));
        }
    }
    for (node, jid, subid, state, options) in subscriptions {
        if let Some(i) = find(&mut nodes, &node) {
            nodes[i].subscriptions.push(StoredSubscription {
                jid,
                subid,
                state,
                options,
            });
        }
    }
    for (node, id, publisher, timestamp, payload) in items {
        if let Some(i) = find(&mut nodes, &node) {
            nodes[i].items.push(StoredItem {
                id,
                publisher,
                timestamp,
                payload,
            });
        }
    }
    nodes
}

/// An `uploads` row as both backends select it (`UPLOAD_COLUMNS`).
pub(crate) type UploadRow = (
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    bool,
    Vec<u8>,
);

pub(crate) const UPLOAD_COLUMNS: &str =
    "id, owner, filename, content_type, size, created, expires, stored, token_hash";

pub(crate) fn upload_from_row(r: UploadRow) -> rookery_core::storage::Upload {
    let (id, owner, filename, content_type, size, created, expires, stored, token_hash) = r;
    rookery_core::storage::Upload {
        id,
        owner,
        filename,
        content_type,
        size: size as u64,
        created: created as u64,
        expires: expires.map(|e| e as u64),
        stored,
        token_hash,
    }
}
