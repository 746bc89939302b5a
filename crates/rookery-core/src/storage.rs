//! Storage contracts by data shape (accounts, roster, offline queue, per-user key-value, archive,
//! pubsub, uploads) and the export surface that copies a backend. Every backend (SQLite, PostgreSQL,
//! memory) implements all of them; modules see only these traits.

use async_trait::async_trait;
use jid::BareJid;

pub type StorageResult<T> = Result<T, StorageError>;

#[derive(Debug, thiserror::Error)]
#[error("storage: {0}")]
pub struct StorageError(pub String);

/// SCRAM keys for one hash function (RFC 5802 §3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramKeys {
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// What is kept of a password: salted SCRAM keys for each supported hash, never the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub sha1: ScramKeys,
    pub sha256: ScramKeys,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Subscription {
    #[default]
    None,
    To,
    From,
    Both,
    /// Only a roster push answer for removal; never stored.
    Remove,
}

impl Subscription {
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
            Subscription::Remove => "remove",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Subscription::None,
            "to" => Subscription::To,
            "from" => Subscription::From,
            "both" => Subscription::Both,
            "remove" => Subscription::Remove,
            _ => return None,
        })
    }

    /// The contact sends us presence.
    pub fn has_to(self) -> bool {
        matches!(self, Subscription::To | Subscription::Both)
    }

    /// We send the contact presence.
    pub fn has_from(self) -> bool {
        matches!(self, Subscription::From | Subscription::Both)
    }

    pub fn from_flags(to: bool, from: bool) -> Self {
        match (to, from) {
            (true, true) => Subscription::Both,
            (true, false) => Subscription::To,
            (false, true) => Subscription::From,
            (false, false) => Subscription::None,
        }
    }
}

/// One roster entry (RFC 6121 §2.1.2) plus the server-side subscription bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RosterItem {
    pub jid: String,
    pub name: Option<String>,
    pub subscription: Subscription,
    /// We asked the contact for a subscription (pending out).
    pub ask: bool,
    /// The user pre-approved the contact's subscription request (§3.4).
    pub approved: bool,
    pub groups: Vec<String>,
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Creates the account; false when it exists.
    async fn create_account(&self, user: &BareJid, creds: &Credentials) -> StorageResult<bool>;
    async fn credentials(&self, user: &BareJid) -> StorageResult<Option<Credentials>>;
    /// Replaces the credentials; false when there is no such account.
    async fn set_credentials(&self, user: &BareJid, creds: &Credentials) -> StorageResult<bool>;
    /// Deletes the account and everything stored for it; false when there was none.
    async fn delete_account(&self, user: &BareJid) -> StorageResult<bool>;
    async fn list_accounts(&self, host: &str) -> StorageResult<Vec<String>>;
}

#[async_trait]
pub trait RosterStore: Send + Sync {
    /// The roster and its current version.
    async fn roster(&self, user: &BareJid) -> StorageResult<(u64, Vec<RosterItem>)>;
    async fn roster_item(&self, user: &BareJid, contact: &str)
        -> StorageResult<Option<RosterItem>>;
    /// Inserts or replaces one item; returns the new roster version.
    async fn put_roster_item(&self, user: &BareJid, item: &RosterItem) -> StorageResult<u64>;
    /// Removes one item; returns the new roster version, None when there was no such item.
    async fn remove_roster_item(&self, user: &BareJid, contact: &str)
        -> StorageResult<Option<u64>>;
    /// Stores an inbound subscription request (the whole stanza) until the user answers it.
    async fn put_pending_in(
        &self,
        user: &BareJid,
        contact: &str,
        stanza: &str,
    ) -> StorageResult<()>;
    async fn remove_pending_in(&self, user: &BareJid, contact: &str) -> StorageResult<bool>;
    async fn pending_in(&self, user: &BareJid) -> StorageResult<Vec<(String, String)>>;
}

#[async_trait]
pub trait OfflineStore: Send + Sync {
    /// Queues a stanza; false when the queue already holds `cap` stanzas.
    async fn push_offline(&self, user: &BareJid, stanza: &str, cap: usize) -> StorageResult<bool>;
    /// Removes and returns the whole queue, oldest first.
    async fn take_offline(&self, user: &BareJid) -> StorageResult<Vec<String>>;
    async fn count_offline(&self, user: &BareJid) -> StorageResult<usize>;
}

/// Small per-user documents by store name and key (vCard, private XML, last activity…).
#[async_trait]
pub trait KeyValueStore: Send + Sync {
    async fn kv_get(&self, user: &BareJid, store: &str, key: &str)
        -> StorageResult<Option<String>>;
    /// Sets or, with None, deletes.
    async fn kv_set(
        &self,
        user: &BareJid,
        store: &str,
        key: &str,
        value: Option<&str>,
    ) -> StorageResult<()>;
    /// Every (owner, key, value) of one store: how services find their persistent state at start.
    async fn kv_all(&self, store: &str) -> StorageResult<Vec<(String, String, String)>>;
}

/// One archived message (XEP-0313).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Archived {
    /// The stanza id (XEP-0359), unique within its archive.
    pub id: String,
    /// Microseconds since the Unix epoch.
    pub timestamp: i64,
    /// Bare JID of the other party (for a room archive: the occupant's nick JID).
    pub with: String,
    pub stanza: String,
}

/// A query over one archive; `before`/`after` are archive ids (RSM, XEP-0059).
#[derive(Clone, Debug, Default)]
pub struct ArchiveQuery {
    pub with: Option<String>,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub after: Option<String>,
    pub before: Option<String>,
    /// Page from the end backwards (RSM `<before/>`).
    pub from_end: bool,
    pub ids: Vec<String>,
    pub max: usize,
}

#[derive(Clone, Debug, Default)]
pub struct ArchivePage {
    /// Oldest first.
    pub items: Vec<Archived>,
    /// No more items in the direction of paging.
    pub complete: bool,
    /// Items matching the filters, regardless of paging.
    pub count: usize,
}

#[async_trait]
pub trait ArchiveStore: Send + Sync {
    /// Appends messages, each to its archive (`owner` is a user's or a room's bare JID).
    async fn archive_append(&self, batch: &[(String, Archived)]) -> StorageResult<()>;
    async fn archive_query(&self, owner: &str, q: &ArchiveQuery) -> StorageResult<ArchivePage>;
    /// Removes messages older than `before` (microseconds) from every archive; returns how many.
    async fn archive_expire(&self, before: i64) -> StorageResult<u64>;
    async fn archive_clear(&self, owner: &str) -> StorageResult<()>;
}

/// Enumeration and restoration that copying a whole backend needs (`rookery migrate`): the
/// per-user contracts above can read one owner's data but not list the owners.
#[async_trait]
pub trait ExportStore: Send + Sync {
    /// Every account of every host, ordered.
    async fn all_accounts(&self) -> StorageResult<Vec<String>>;
    /// Users with roster items, a roster version or pending inbound requests, ordered.
    async fn roster_owners(&self) -> StorageResult<Vec<String>>;
    /// Replaces a user's roster items and sets its version as it was elsewhere, so clients'
    /// cached versions (XEP-0237) stay meaningful.
    async fn restore_roster(
        &self,
        user: &BareJid,
        version: u64,
        items: &[RosterItem],
    ) -> StorageResult<()>;
    /// Users with queued offline stanzas, ordered.
    async fn offline_owners(&self) -> StorageResult<Vec<String>>;
    /// A user's offline queue, oldest first, left in place.
    async fn peek_offline(&self, user: &BareJid) -> StorageResult<Vec<String>>;
    /// Names of the key-value stores holding at least one value, ordered.
    async fn kv_stores(&self) -> StorageResult<Vec<String>>;
    /// Owners of non-empty archives (users and rooms), ordered.
    async fn archive_owners(&self) -> StorageResult<Vec<String>>;
    /// Pubsub services with at least one node, ordered.
    async fn pubsub_services(&self) -> StorageResult<Vec<String>>;
    /// Every stored upload (not unused slots), ordered by id.
    async fn all_uploads(&self) -> StorageResult<Vec<Upload>>;
    /// Writes a consistent copy of the whole database to `dest` (a new file) while the server
    /// runs; false when this backend has no such copy (PostgreSQL: use `pg_dump`).
    async fn backup(&self, _dest: &std::path::Path) -> StorageResult<bool> {
        Ok(false)
    }
}

/// Everything a backend provides.
pub trait Storage:
    AccountStore
    + RosterStore
    + OfflineStore
    + KeyValueStore
    + ArchiveStore
    + PubSubStore
    + UploadStore
    + ExportStore
{
}
impl<T> Storage for T where
    T: AccountStore
        + RosterStore
        + OfflineStore
        + KeyValueStore
        + ArchiveStore
        + PubSubStore
        + UploadStore
        + ExportStore
{
}

/// A file uploaded over HTTP (XEP-0363), or a slot granted for one and not used yet. Every
/// node of a cluster sees the same records, so a slot granted by one is honoured by another.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Upload {
    /// 32 lowercase hex digits.
    pub id: String,
    /// Bare JID of the uploader.
    pub owner: String,
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    /// Unix seconds: when the slot was granted, then when the file was stored.
    pub created: u64,
    /// Unix seconds: when an unused slot lapses, or when a stored file goes (None: kept).
    pub expires: Option<u64>,
    /// The file is stored (else this is a slot).
    pub stored: bool,
    /// SHA-256 of the slot's bearer token (empty once stored).
    pub token_hash: Vec<u8>,
}

/// Contents kept in the database are cut into pieces of this many bytes (the last one
/// shorter), numbered from 0: a range request reads only the pieces it covers.
pub const UPLOAD_CHUNK: usize = 256 * 1024;

/// Judges a reservation by everything its owner holds (see [`UploadStore::upload_reserve`]).
pub type UploadAdmission<'j> = dyn for<'a> Fn(&'a [Upload]) -> bool + Send + Sync + 'j;

#[async_trait]
pub trait UploadStore: Send + Sync {
    /// Records `slot` when `admit` accepts everything its owner holds (files and slots,
    /// lapsed ones included), with no other reservation of that owner in between, on any node;
    /// false when refused. Errors when the id is taken.
    async fn upload_reserve(
        &self,
        slot: &Upload,
        admit: &UploadAdmission<'_>,
    ) -> StorageResult<bool>;
    async fn upload_get(&self, id: &str) -> StorageResult<Option<Upload>>;
    /// Everything `owner` holds: files and slots, lapsed ones included.
    async fn upload_by_owner(&self, owner: &str) -> StorageResult<Vec<Upload>>;
    /// Turns a slot into a stored file created at `created`, kept until `expires`, in one
    /// transaction with moving the contents written under `staged` (if any) to `id`; false when
    /// `id` is no slot (already used, or gone), and then the staged contents are dropped. Of two
    /// uploads racing for one slot, on any nodes, one wins.
    async fn upload_finish(
        &self,
        id: &str,
        created: u64,
        expires: Option<u64>,
        staged: Option<&str>,
    ) -> StorageResult<bool>;
    /// Records a stored file as it was elsewhere (`rookery migrate`, an older store).
    async fn upload_restore(&self, file: &Upload) -> StorageResult<()>;
    /// Removes records with their contents, staged ones (`<id>~…`) included.
    async fn upload_delete(&self, ids: &[String]) -> StorageResult<()>;
    /// The slots lapsed and files expired at `now`, by id.
    async fn upload_expired(&self, now: u64) -> StorageResult<Vec<Upload>>;
    /// Stores piece `seq` of the contents of `id` (see [`UPLOAD_CHUNK`]), replacing it.
    async fn upload_put_chunk(&self, id: &str, seq: u32, data: &[u8]) -> StorageResult<()>;
    async fn upload_chunk(&self, id: &str, seq: u32) -> StorageResult<Option<Vec<u8>>>;
    /// Removes the contents stored under `id` (an upload that failed midway).
    async fn upload_delete_chunks(&self, id: &str) -> StorageResult<()>;
}

/// One pubsub node as stored (XEP-0060): its configuration (JSON the pubsub module owns), plus
/// its affiliations, subscriptions and items.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct StoredNode {
    pub node: String,
    pub config: String,
    /// (bare JID, affiliation)
    pub affiliations: Vec<(String, String)>,
    pub subscriptions: Vec<StoredSubscription>,
    /// Oldest first.
    pub items: Vec<StoredItem>,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct StoredSubscription {
    /// The subscribed JID, bare or full.
    pub jid: String,
    pub subid: String,
    /// `subscribed`, `pending` or `unconfigured`.
    pub state: String,
    /// Subscription options (JSON the pubsub module owns).
    pub options: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct StoredItem {
    pub id: String,
    /// Bare JID of the publisher.
    pub publisher: String,
    /// Microseconds since the Unix epoch.
    pub timestamp: i64,
    /// The payload element (empty for notification-only items).
    pub payload: String,
}

/// PubSub services (XEP-0060): a pubsub domain, or an account's bare JID for its PEP (XEP-0163).
#[async_trait]
pub trait PubSubStore: Send + Sync {
    /// Every node of one service, ordered by name, with items oldest first.
    async fn pubsub_load(&self, service: &str) -> StorageResult<Vec<StoredNode>>;
    /// Creates the node or replaces its configuration.
    async fn pubsub_put_node(&self, service: &str, node: &str, config: &str) -> StorageResult<()>;
    /// Removes a node with its affiliations, subscriptions and items.
    async fn pubsub_delete_node(&self, service: &str, node: &str) -> StorageResult<()>;
    /// Sets or, with None, removes one affiliation.
    async fn pubsub_set_affiliation(
        &self,
        service: &str,
        node: &str,
        jid: &str,
        affiliation: Option<&str>,
    ) -> StorageResult<()>;
    /// Sets or, with None, removes the subscription of `jid`.
    async fn pubsub_set_subscription(
        &self,
        service: &str,
        node: &str,
        jid: &str,
        subscription: Option<&StoredSubscription>,
    ) -> StorageResult<()>;
    /// Stores `item` as the node's newest (replacing one with the same id), then keeps only the
    /// newest `keep` items.
    async fn pubsub_put_item(
        &self,
        service: &str,
        node: &str,
        item: &StoredItem,
        keep: usize,
    ) -> StorageResult<()>;
    async fn pubsub_delete_items(
        &self,
        service: &str,
        node: &str,
        ids: &[String],
    ) -> StorageResult<()>;
    /// Removes every item of a node.
    async fn pubsub_purge(&self, service: &str, node: &str) -> StorageResult<()>;
    /// Removes every node of a service.
    async fn pubsub_delete_service(&self, service: &str) -> StorageResult<()>;
}
