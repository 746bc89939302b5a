//! The module seam: features register typed IQ handlers, disco features and session hooks here;
//! the router dispatches to them and never knows which modules exist.

use crate::session::SessionHandle;
use crate::Server;
use async_trait::async_trait;
use rookery_core::stanza::StanzaError;
use rookery_core::{BareJid, Element, Jid};
use std::collections::HashMap;
use std::sync::Arc;

pub mod adhoc;
pub mod blocking;
pub mod carbons;
pub mod disco;
pub mod extdisco;
pub mod invites;
pub mod last;
pub mod mam;
pub mod muc;
pub mod ping;
pub mod privacy;
pub mod private;
pub mod proxy65;
pub mod pubsub;
pub mod push;
pub mod register;
pub mod reporting;
pub mod roster;
pub mod rpc;
pub mod strangers;
pub mod time;
pub mod upload;
pub mod vcard;
pub mod version;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IqType {
    Get,
    Set,
}

/// Where an IQ was addressed, once the router has resolved it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A served domain.
    Server(String),
    /// A local account's bare JID (the sender's own or another's).
    Account(BareJid),
}

pub struct IqRequest {
    pub stanza: Element,
    pub kind: IqType,
    pub from: Jid,
    pub target: Target,
    /// The sending session when it is a local client.
    pub session: Option<SessionHandle>,
}

impl IqRequest {
    pub fn payload(&self) -> &Element {
        self.stanza
            .children()
            .next()
            .expect("router checked the payload")
    }

    /// The sender addressed its own account (or gave no `to`).
    pub fn is_self(&self) -> bool {
        matches!(&self.target, Target::Account(b) if self.from.to_bare() == *b)
    }
}

/// How a handler answered.
pub enum IqReply {
    /// An empty result.
    Empty,
    /// A result carrying this payload.
    Payload(Element),
    /// The handler already sent its answer.
    Sent,
}

/// A reply, or a stanza error.
pub type IqResult = Result<IqReply, StanzaError>;

#[async_trait]
pub trait IqHandler: Send + Sync {
    async fn handle_iq(&self, server: &Server, req: IqRequest) -> IqResult;
}

/// Lifecycle events modules may act on.
#[async_trait]
pub trait SessionHook: Send + Sync {
    /// The session sent its initial presence.
    async fn on_available(&self, _server: &Server, _session: &SessionHandle) {}
    /// The session became unavailable (by presence or by ending), with its status text.
    async fn on_unavailable(
        &self,
        _server: &Server,
        _session: &SessionHandle,
        _status: Option<String>,
    ) {
    }
    /// The account was deleted.
    async fn on_user_deleted(&self, _server: &Server, _user: &BareJid) {}
    /// The user stored a document: `store` names it (`vcard`, or `private` for a XEP-0049
    /// fragment), `el` is what was stored. Features that keep another copy (PEP avatars,
    /// bookmarks) follow.
    async fn on_user_data(&self, _server: &Server, _user: &BareJid, _store: &str, _el: &Element) {}
    /// The session's connection dropped and it waits to be resumed (XEP-0198); `unacked` is what
    /// was sent that the client has not acknowledged. What arrives meanwhile still goes through
    /// `message_delivered` (the session is in `PresenceState::hibernating`).
    async fn on_hibernating(
        &self,
        _server: &Server,
        _session: &SessionHandle,
        _unacked: &std::collections::VecDeque<Element>,
    ) {
    }
}

/// A service on a domain of its own (MUC, later pubsub and components): it receives every
/// stanza addressed to that domain or a JID in it.
#[async_trait]
pub trait Service: Send + Sync {
    /// Called once at start, e.g. to load persistent state.
    async fn start(&self, _server: &Server) {}
    async fn handle(&self, server: &Server, el: Element);
    /// In a cluster, what decides which node handles `el` (a room's JID): stateful services
    /// live on one home node per key. None: any node may (the default).
    fn home_key(&self, _el: &Element) -> Option<String> {
        None
    }
    /// The cluster's live nodes changed: drop what this node is no longer home to, so a key
    /// that comes back later is loaded afresh from storage.
    async fn rehome(&self, _server: &Server) {}
}

/// HTTP routes a module serves on every HTTP(S) listener (file upload).
pub trait HttpRoutes: Send + Sync {
    /// The routes for the listener bound at `local`; `tls`: it is an HTTPS listener.
    fn routes(&self, server: Arc<Server>, local: std::net::SocketAddr, tls: bool) -> axum::Router;
}

/// A listener a module owns (the SOCKS5 proxy). It is bound with the server's own listeners,
/// so an address in use fails the start like theirs.
#[async_trait]
pub trait ModuleListener: Send + Sync {
    /// Binds, and returns the accept loop to run until shutdown.
    async fn bind(
        &self,
        server: Arc<Server>,
    ) -> anyhow::Result<futures_util::future::BoxFuture<'static, ()>>;
}

/// What a stanza hook decides.
pub enum Verdict {
    Pass,
    /// Drop silently.
    Drop,
    /// Refuse with this error to the sender.
    Bounce(StanzaError),
}

/// The calls of [`StanzaHook`] a hook answers. The router makes each call only on the hooks that
/// list it: every call is a boxed future, and most hooks answer one or two of nine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Events(u16);

impl Events {
    pub const OUTBOUND: Events = Events(1);
    pub const INBOUND: Events = Events(1 << 1);
    pub const MESSAGE_INBOUND: Events = Events(1 << 2);
    pub const MESSAGE_SENT: Events = Events(1 << 3);
    pub const MESSAGE_DELIVERED: Events = Events(1 << 4);
    pub const MESSAGE_OFFLINE: Events = Events(1 << 5);
    pub const PRESENCE_OUTBOUND: Events = Events(1 << 6);
    pub const PRESENCE_INBOUND: Events = Events(1 << 7);
    pub const IQ_RESPONSE: Events = Events(1 << 8);
    const COUNT: usize = 9;
    pub const ALL: Events = Events((1 << Self::COUNT) - 1);

    pub fn contains(self, other: Events) -> bool {
        self.0 & other.0 == other.0
    }

    /// The position of a single event.
    fn index(self) -> usize {
        debug_assert_eq!(self.0.count_ones(), 1, "one event at a time");
        self.0.trailing_zeros() as usize
    }
}

impl std::ops::BitOr for Events {
    type Output = Events;
    fn bitor(self, o: Events) -> Events {
        Events(self.0 | o.0)
    }
}

/// Hooks on the routing path: filters that may refuse a stanza, and observers of messages.
#[async_trait]
pub trait StanzaHook: Send + Sync {
    /// The calls below this hook answers; the others are not made on it.
    fn events(&self) -> Events {
        Events::ALL
    }
    /// `user` (local) sends `el`. May refuse it.
    async fn outbound(&self, _server: &Server, _user: &BareJid, _el: &Element) -> Verdict {
        Verdict::Pass
    }
    /// `el` is about to reach local `user`. May refuse it.
    async fn inbound(&self, _server: &Server, _user: &BareJid, _el: &Element) -> Verdict {
        Verdict::Pass
    }
    /// A message is about to be delivered to (or stored for) local `user`; may annotate it.
    async fn message_inbound(&self, _server: &Server, _user: &BareJid, _el: &mut Element) {}
    /// A message a local client sent was routed.
    async fn message_sent(&self, _server: &Server, _origin: &SessionHandle, _el: &Element) {}
    /// A message was delivered to these sessions of `user`.
    async fn message_delivered(
        &self,
        _server: &Server,
        _user: &BareJid,
        _el: &Element,
        _sessions: &[SessionHandle],
    ) {
    }
    /// A message for local `user` went to offline storage (XEP-0160): no session got it.
    async fn message_offline(&self, _server: &Server, _user: &BareJid, _el: &Element) {}
    /// A local client sends available presence, broadcast or (`directed`) to one JID; may
    /// annotate it (XEP-0398 avatar hash) and learn from it (XEP-0115 capabilities).
    async fn presence_outbound(
        &self,
        _server: &Server,
        _origin: &SessionHandle,
        _el: &mut Element,
        _directed: bool,
    ) {
    }
    /// Available or unavailable presence from another entity reached local `user`'s account.
    async fn presence_inbound(&self, _server: &Server, _user: &BareJid, _el: &Element) {}
    /// An IQ result or error addressed to local `user`'s bare JID: an answer to a request the
    /// server sent on the account's behalf. True when the hook consumed it.
    async fn iq_response(&self, _server: &Server, _user: &BareJid, _el: &Element) -> bool {
        false
    }
}

/// Service discovery (XEP-0030) of accounts' nodes (PEP): items and node information.
#[async_trait]
pub trait DiscoProvider: Send + Sync {
    /// Items of `user`'s account (`node` None) or of one of its nodes, as `from` may see them;
    /// None when the node is not this provider's.
    async fn items(
        &self,
        server: &Server,
        user: &BareJid,
        node: Option<&str>,
        from: &Jid,
    ) -> Option<Vec<Element>>;
    /// The disco#info children (identities, features, forms) of one of `user`'s nodes; None
    /// when it is not this provider's.
    async fn info(
        &self,
        server: &Server,
        user: &BareJid,
        node: &str,
        from: &Jid,
    ) -> Option<Result<Vec<Element>, StanzaError>>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum On {
    Server,
    Account,
    Both,
}

/// IQ handlers by payload (namespace, element name).
type IqTable = HashMap<(String, String), Vec<(On, Arc<dyn IqHandler>)>>;

#[derive(Default)]
pub struct Registry {
    iq: IqTable,
    pub server_features: Vec<String>,
    pub account_features: Vec<String>,
    /// Identities (category, type) accounts show besides account/registered.
    pub account_identities: Vec<(String, String)>,
    pub disco: Vec<Arc<dyn DiscoProvider>>,
    /// Features offered after authentication (`<ver/>`, `<sub/>`...).
    pub stream_features: Vec<Element>,
    pub hooks: Vec<Arc<dyn SessionHook>>,
    /// Stanza hooks by the event they answer (`Events::index`).
    stanza_hooks: [Vec<Arc<dyn StanzaHook>>; Events::COUNT],
    /// Services by domain.
    pub services: HashMap<String, Arc<dyn Service>>,
    /// Disco nodes answered by a module rather than by `disco`.
    pub disco_nodes: HashMap<String, Arc<dyn IqHandler>>,
    pub http: Vec<Arc<dyn HttpRoutes>>,
    pub listeners: Vec<Arc<dyn ModuleListener>>,
    /// Per-user caches other cluster nodes may make stale.
    pub caches: Vec<Arc<dyn UserCache>>,
    /// Decisions only the node serving a session can make (`DeliveryFilter`), by name.
    pub delivery_filters: HashMap<&'static str, Arc<dyn DeliveryFilter>>,
    /// Module state read when metrics are scraped.
    pub samplers: Vec<Arc<dyn crate::metrics::Sampler>>,
    /// Room administration (the MUC service), for the admin API.
    pub rooms: Option<Arc<dyn RoomAdmin>>,
    /// Modules whose options a configuration reload (SIGHUP) replaces.
    pub reloadable: Vec<Arc<dyn Reload>>,
}

/// A module's options, read at use and replaced whole by a reload.
pub struct Live<T>(arc_swap::ArcSwap<T>);

impl<T> Live<T> {
    pub fn new(value: T) -> Live<T> {
        Live(arc_swap::ArcSwap::from_pointee(value))
    }

    pub fn get(&self) -> arc_swap::Guard<Arc<T>> {
        self.0.load()
    }

    pub fn set(&self, value: T) {
        self.0.store(Arc::new(value));
    }
}

/// A module that takes new options from a reloaded configuration.
#[async_trait]
pub trait Reload: Send + Sync {
    /// Applies `config`'s options for this module. Options fixed at start (a service's
    /// subdomain, a listener's address) keep their running values; their names are returned.
    async fn reload(&self, config: &rookery_core::config::Config) -> Vec<&'static str>;
}

/// One room as administrators see it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RoomSummary {
    pub jid: String,
    pub name: String,
    pub occupants: usize,
    pub persistent: bool,
    pub public: bool,
}

/// Rooms managed by an administrator rather than through XEP-0045 (admin API and page).
#[async_trait]
pub trait RoomAdmin: Send + Sync {
    /// Rooms of every MUC service, by JID.
    async fn rooms(&self, server: &Server) -> Vec<RoomSummary>;
    /// Creates a persistent, unlocked room owned by `owner`.
    async fn create_room(
        &self,
        server: &Server,
        jid: &BareJid,
        owner: &BareJid,
        name: &str,
    ) -> Result<(), String>;
    /// Destroys a room, telling its occupants `reason`; false when there is no such room.
    async fn destroy_room(
        &self,
        server: &Server,
        jid: &BareJid,
        reason: Option<&str>,
    ) -> Result<bool, String>;
}

/// The domain of a service addressed by an IQ get or set to the service itself, which simple
/// services (upload, proxy) answer; anything else is answered for them (a message bounces, a
/// JID below the domain is `item-not-found`) or dropped, and None returned.
pub fn service_request(server: &Server, el: &Element) -> Option<String> {
    let to = el.attr("to").and_then(|t| Jid::new(t).ok())?;
    if el.name() != "iq" || !matches!(el.attr("type"), Some("get" | "set")) {
        if el.name() == "message" {
            crate::router::bounce(server, el, StanzaError::service_unavailable());
        }
        return None;
    }
    if to.node().is_some() {
        crate::router::bounce(server, el, StanzaError::item_not_found());
        return None;
    }
    Some(to.domain().to_string())
}

/// Whether a local session wants a stanza, by what only its own node knows (PEP: the
/// capabilities its client announced). In a cluster, another node sends such a stanza with the
/// filter's name and lets the session's node decide (`cluster::RemoteSink::deliver_if`).
pub trait DeliveryFilter: Send + Sync {
    fn wants(&self, to: &rookery_core::FullJid, key: &str) -> bool;
}

/// Counts a cache's invalidations, so a copy loaded while one happened is not kept: without
/// it, a load that read storage before another node's change and finished after its
/// invalidation would keep the old copy for good.
#[derive(Default)]
pub struct CacheEpoch(std::sync::atomic::AtomicU64);

impl CacheEpoch {
    pub fn now(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn bump(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Loads with `load` until no invalidation happened meanwhile (a few tries at most).
    pub async fn load<T, F: std::future::Future<Output = T>>(
        &self,
        mut load: impl FnMut() -> F,
    ) -> T {
        for _ in 0..3 {
            let at = self.now();
            let v = load().await;
            if self.now() == at {
                return v;
            }
        }
        load().await
    }
}

/// Per-user data a module caches from storage. In a cluster, the node that changes it tells the
/// others, which forget their copy (`Server::changed_user_data`).
pub trait UserCache: Send + Sync {
    /// The name nodes use for this cache.
    fn topic(&self) -> &'static str;
    fn forget(&self, user: &BareJid);
    /// Whether a copy for `user` is held (for operators and tests).
    fn holds(&self, user: &BareJid) -> bool;
}

impl Registry {
    pub fn iq(&mut self, ns: &str, name: &str, on: On, handler: Arc<dyn IqHandler>) {
        self.iq
            .entry((ns.to_string(), name.to_string()))
            .or_default()
            .push((on, handler));
    }

    /// Disco queries on `node` (info and items, any target) go to `h` (XEP-0030 §3.2, §4.2).
    pub fn disco_node(&mut self, node: &str, h: Arc<dyn IqHandler>) {
        self.disco_nodes.insert(node.to_string(), h);
    }

    pub fn server_feature(&mut self, f: &str) {
        self.server_features.push(f.to_string());
    }

    pub fn account_feature(&mut self, f: &str) {
        self.account_features.push(f.to_string());
    }

    pub fn account_identity(&mut self, category: &str, kind: &str) {
        self.account_identities
            .push((category.to_string(), kind.to_string()));
    }

    pub fn disco(&mut self, p: Arc<dyn DiscoProvider>) {
        self.disco.push(p);
    }

    pub fn hook(&mut self, h: Arc<dyn SessionHook>) {
        self.hooks.push(h);
    }

    pub fn stanza_hook(&mut self, h: Arc<dyn StanzaHook>) {
        let events = h.events();
        for (i, list) in self.stanza_hooks.iter_mut().enumerate() {
            if events.contains(Events(1 << i)) {
                list.push(h.clone());
            }
        }
    }

    /// The stanza hooks that answer `event`, in registration order.
    pub fn stanza_hooks(&self, event: Events) -> &[Arc<dyn StanzaHook>] {
        &self.stanza_hooks[event.index()]
    }

    pub fn service(&mut self, domain: &str, s: Arc<dyn Service>) {
        self.services.insert(domain.to_string(), s);
    }

    pub fn http(&mut self, h: Arc<dyn HttpRoutes>) {
        self.http.push(h);
    }

    pub fn reload(&mut self, r: Arc<dyn Reload>) {
        self.reloadable.push(r);
    }

    pub fn room_admin(&mut self, r: Arc<dyn RoomAdmin>) {
        self.rooms = Some(r);
    }

    pub fn sampler(&mut self, s: Arc<dyn crate::metrics::Sampler>) {
        self.samplers.push(s);
    }

    pub fn listener(&mut self, l: Arc<dyn ModuleListener>) {
        self.listeners.push(l);
    }

    pub fn find_iq(&self, payload: &Element, target: &Target) -> Option<Arc<dyn IqHandler>> {
        let list = self
            .iq
            .get(&(payload.ns().to_string(), payload.name().to_string()))?;
        list.iter()
            .find(|(on, _)| {
                matches!(
                    (on, target),
                    (On::Both, _)
                        | (On::Server, Target::Server(_))
                        | (On::Account, Target::Account(_))
                )
            })
            .map(|(_, h)| h.clone())
    }
}

/// Whether `session` is the user's last available one: per-user caches can go with it.
pub fn is_last_available(server: &Server, session: &SessionHandle) -> bool {
    !server
        .sessions
        .resources(&session.bare())
        .iter()
        .any(|s| s.id != session.id && s.is_available())
}

/// A feature: its name (for `modules.disabled`) and what it registers.
pub trait Module: Send + Sync {
    fn name(&self) -> &'static str;
    fn register(self: Arc<Self>, reg: &mut Registry);
}

/// Every built-in module; `modules.disabled` filters them.
pub fn builtin(config: &rookery_core::config::Config) -> Vec<Arc<dyn Module>> {
    let privacy_store = Arc::new(privacy::Store::default());
    vec![
        Arc::new(roster::Roster),
        Arc::new(disco::Disco),
        Arc::new(ping::Ping),
        Arc::new(version::Version {
            options: Live::new(config.modules.version.clone()),
        }),
        Arc::new(time::Time),
        Arc::new(last::Last),
        Arc::new(vcard::VCard),
        Arc::new(private::Private),
        Arc::new(register::Register),
        Arc::new(carbons::Carbons),
        Arc::new(mam::Mam::default()),
        Arc::new(adhoc::AdHoc::default()),
        Arc::new(rpc::Rpc),
        Arc::new(blocking::Blocking::new(privacy_store.clone())),
        Arc::new(privacy::Privacy::new(privacy_store)),
        Arc::new(muc::Muc::new(&config.hosts, config.modules.muc.clone())),
        Arc::new(upload::Upload::new(config)),
        Arc::new(proxy65::Proxy65::new(
            &config.hosts,
            config.modules.proxy65.clone(),
        )),
        Arc::new(extdisco::ExtDisco::new(config.modules.extdisco.clone())),
        Arc::new(pubsub::PubSubModule::new(
            &config.hosts,
            config.modules.pubsub.clone(),
        )),
        Arc::new(pubsub::pep::Pep::new(config.modules.pubsub.clone())),
        Arc::new(push::Push::new(config.modules.push.clone())),
        Arc::new(strangers::Strangers::default()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Filter;

    #[async_trait]
    impl StanzaHook for Filter {
        fn events(&self) -> Events {
            Events::OUTBOUND | Events::MESSAGE_DELIVERED
        }
    }

    struct Everything;

    #[async_trait]
    impl StanzaHook for Everything {}

    #[test]
    fn hooks_are_called_only_for_the_events_they_declare() {
        let mut reg = Registry::default();
        reg.stanza_hook(Arc::new(Filter));
        reg.stanza_hook(Arc::new(Everything));
        assert_eq!(reg.stanza_hooks(Events::OUTBOUND).len(), 2);
        assert_eq!(reg.stanza_hooks(Events::MESSAGE_DELIVERED).len(), 2);
        for e in [
            Events::INBOUND,
            Events::MESSAGE_INBOUND,
            Events::MESSAGE_SENT,
            Events::MESSAGE_OFFLINE,
            Events::PRESENCE_OUTBOUND,
            Events::PRESENCE_INBOUND,
            Events::IQ_RESPONSE,
        ] {
            assert_eq!(reg.stanza_hooks(e).len(), 1, "{e:?}");
        }
    }
}
