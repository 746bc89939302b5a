//! Cluster mode: several nodes serving as one, on a shared Redis (and a shared database). Each
//! node keeps a replica of the cluster's session directory (every node's sessions with their
//! presence state), fed by Redis pub/sub events and bootstrapped from one Redis hash per node;
//! stanzas for a session on another node cross the node bus (a Redis channel per node); one that
//! no node hears (its node died and is not purged yet) is handled as for a session that ended
//! meanwhile: a message goes to the account, offline storage at worst. Nodes
//! prove they live with a heartbeat key that expires; the survivors purge a dead node's
//! sessions (its users' contacts see them go unavailable). Rooms and other stateful services
//! have one home node at a time, chosen by rendezvous hashing over the live nodes.
//!
//! Redis layout, under `cluster.prefix` (`p`): `p:node:<name>` heartbeat key with a TTL;
//! `p:nodes` set of member names; `p:sessions:<name>` hash full JID → session record;
//! channel `p:events` for directory changes; channel `p:bus:<name>` for one node's deliveries.

mod directory;
mod wire;

pub use directory::ClusterRegistry;

use crate::session::{DeliveryError, SessionHandle};
use crate::Server;
use redis::AsyncCommands;
use rookery_core::config::ClusterConfig;
use rookery_core::Element;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;
use wire::{BusMsg, Event, Record};

/// What the writer task sends to Redis, in order.
#[derive(Debug)]
enum Write {
    Up(String, Record),
    Down(String, u64),
    Bus(Arc<str>, BusMsg),
    Invalidate(String, String),
}

/// The way to a session on another node.
#[derive(Clone, Debug)]
pub struct RemoteSink {
    node: Arc<str>,
    writes: mpsc::Sender<Write>,
}

impl RemoteSink {
    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn deliver(
        &self,
        to: &rookery_core::FullJid,
        id: u64,
        el: Element,
    ) -> Result<(), DeliveryError> {
        let msg = BusMsg::Deliver {
            to: to.to_string(),
            id,
            xml: el.to_xml(),
        };
        self.writes
            .try_send(Write::Bus(self.node.clone(), msg))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => DeliveryError::Full,
                mpsc::error::TrySendError::Closed(_) => DeliveryError::Gone,
            })
    }

    /// Delivers `el` only if the session's node says the session wants it (`filter` with `key`,
    /// see `modules::DeliveryFilter`).
    pub fn deliver_if(
        &self,
        to: &rookery_core::FullJid,
        id: u64,
        el: Element,
        filter: &str,
        key: &str,
    ) {
        let msg = BusMsg::DeliverIf {
            to: to.to_string(),
            id,
            xml: el.to_xml(),
            filter: filter.to_string(),
            key: key.to_string(),
        };
        let _ = self.writes.try_send(Write::Bus(self.node.clone(), msg));
    }

    pub fn close(
        &self,
        to: &rookery_core::FullJid,
        id: u64,
        condition: &'static str,
        text: Option<String>,
    ) {
        let msg = BusMsg::Close {
            to: to.to_string(),
            id,
            condition: condition.to_string(),
            text,
        };
        let _ = self.writes.try_send(Write::Bus(self.node.clone(), msg));
    }
}

pub struct Cluster {
    pub node: Arc<str>,
    config: ClusterConfig,
    client: redis::Client,
    writes: mpsc::Sender<Write>,
    /// Taken by `run`.
    writes_rx: std::sync::Mutex<Option<mpsc::Receiver<Write>>>,
    /// Live nodes, this one included, sorted.
    live: RwLock<Vec<Arc<str>>>,
    pub(crate) directory: directory::Directory,
    /// Set by `halt`: this node has stopped speaking to the cluster.
    halted: std::sync::atomic::AtomicBool,
    /// Session handovers asked of other nodes, by token.
    migrations: dashmap::DashMap<u64, tokio::sync::oneshot::Sender<Option<wire::MigratedState>>>,
}

impl Cluster {
    /// The cluster this node joins, when `cluster.redis` is set.
    pub fn new(config: &ClusterConfig) -> anyhow::Result<Option<Arc<Cluster>>> {
        let Some(url) = &config.redis else {
            return Ok(None);
        };
        let node: Arc<str> = config
            .node
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!("cluster.node (a unique name) is required with cluster.redis")
            })?
            .into();
        let client = redis::Client::open(url.as_str())
            .map_err(|e| anyhow::anyhow!("cluster.redis {url}: {e}"))?;
        let (writes, rx) = mpsc::channel(64 * 1024);
        Ok(Some(Arc::new(Cluster {
            live: RwLock::new(vec![node.clone()]),
            directory: directory::Directory::default(),
            node,
            config: config.clone(),
            client,
            writes,
            writes_rx: std::sync::Mutex::new(Some(rx)),
            halted: Default::default(),
            migrations: Default::default(),
        })))
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut k = self.config.prefix.clone();
        for p in parts {
            k.push(':');
            k.push_str(p);
        }
        k
    }

    fn sink(&self, node: &str) -> RemoteSink {
        RemoteSink {
            node: node.into(),
            writes: self.writes.clone(),
        }
    }

    /// Publishes a local session's state (new or changed).
    pub(crate) fn session_up(&self, h: &SessionHandle) {
        let rec = Record::of(h);
        let _ = self.writes.try_send(Write::Up(h.jid.to_string(), rec));
    }

    pub(crate) fn session_down(&self, jid: &rookery_core::FullJid, id: u64) {
        let _ = self.writes.try_send(Write::Down(jid.to_string(), id));
    }

    pub(crate) fn invalidate(&self, topic: &str, user: &rookery_core::BareJid) {
        let _ = self
            .writes
            .try_send(Write::Invalidate(topic.to_string(), user.to_string()));
    }

    /// Asks `node` to hand over the resumable session `id` of `user` (XEP-0198 resumption on
    /// this node of a session that lives there).
    pub async fn migrate(
        &self,
        node: &str,
        id: &str,
        user: &rookery_core::BareJid,
    ) -> Option<crate::c2s::sm::Migrated> {
        let token = rand::random::<u64>();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.migrations.insert(token, tx);
        let msg = BusMsg::Migrate {
            id: id.to_string(),
            user: user.to_string(),
            from: self.node.to_string(),
            token,
        };
        let sent = self.writes.try_send(Write::Bus(node.into(), msg)).is_ok();
        let answer = if sent {
            tokio::time::timeout(Duration::from_secs(5), rx)
                .await
                .ok()
                .and_then(|r| r.ok())
        } else {
            None
        };
        self.migrations.remove(&token);
        let state = answer??;
        Some(crate::c2s::sm::Migrated {
            h_in: state.h_in,
            acked: state.acked,
            unacked: state
                .unacked
                .iter()
                .filter_map(|x| Element::parse(x).ok())
                .collect(),
        })
    }

    pub(crate) fn reply_migrated(
        &self,
        node: &str,
        token: u64,
        state: Option<wire::MigratedState>,
    ) {
        let _ = self
            .writes
            .try_send(Write::Bus(node.into(), BusMsg::Migrated { token, state }));
    }

    pub(crate) fn migrated(&self, token: u64, state: Option<wire::MigratedState>) {
        if let Some((_, tx)) = self.migrations.remove(&token) {
            let _ = tx.send(state);
        }
    }

    /// The live nodes, sorted.
    pub fn live_nodes(&self) -> Vec<Arc<str>> {
        self.live.read().unwrap().clone()
    }

    /// The node that is home to `key` (a room's bare JID, a service domain): rendezvous hashing
    /// over the live nodes, so a node's death moves only its own keys.
    pub fn home(&self, key: &str) -> Arc<str> {
        let live = self.live.read().unwrap();
        home_among(&live, key)
            .cloned()
            .unwrap_or_else(|| self.node.clone())
    }

    pub fn is_home(&self, key: &str) -> bool {
        *self.home(key) == *self.node
    }

    /// Hands a stanza for a service to the node that is home to it.
    pub fn route_to(&self, node: &str, el: &Element) -> bool {
        let msg = BusMsg::Route { xml: el.to_xml() };
        self.writes.try_send(Write::Bus(node.into(), msg)).is_ok()
    }

    /// Joins: purges what an earlier run of this node left, loads the directory, then keeps the
    /// heartbeat, the writer and the bus reader running until shutdown.
    pub async fn run(
        self: &Arc<Self>,
        server: &Arc<Server>,
    ) -> anyhow::Result<Vec<futures_util::future::BoxFuture<'static, ()>>> {
        let mut conn = redis::aio::ConnectionManager::new(self.client.clone()).await?;
        let pubsub = self.subscribe().await?;
        // Sessions an earlier run of this node left behind ended without anyone being told.
        self.purge(server, &mut conn, &self.node.clone()).await?;
        self.beat(&mut conn).await?;
        let live = self.refresh_live(&mut conn).await?;
        self.load_directory(&mut conn, &live).await?;
        tracing::info!(node = %self.node, live = ?live, "joined the cluster");
        // Services loaded everything at start; keep only what this node is home to.
        for svc in server.modules.services.values() {
            svc.rehome(server).await;
        }
        let rx = self.writes_rx.lock().unwrap().take().expect("run once");
        let mut tasks: Vec<futures_util::future::BoxFuture<'static, ()>> = vec![];
        let (me, srv) = (self.clone(), server.clone());
        let writer_conn = conn.clone();
        tasks.push(Box::pin(
            async move { me.writer(&srv, writer_conn, rx).await },
        ));
        let (me, srv) = (self.clone(), server.clone());
        tasks.push(Box::pin(async move { me.reader(&srv, pubsub).await }));
        let (me, srv) = (self.clone(), server.clone());
        tasks.push(Box::pin(async move { me.watch(&srv, conn).await }));
        Ok(tasks)
    }

    /// Stops speaking to the cluster at once, without a word, as a crashed node does (tests
    /// use it to see the survivors take over).
    pub fn halt(&self) {
        self.halted.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn is_halted(&self) -> bool {
        self.halted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Leaves the cluster at shutdown: the others need not wait for the heartbeat to expire.
    pub async fn leave(&self) {
        if self.is_halted() {
            return;
        }
        let Ok(mut conn) = self.client.get_multiplexed_async_connection().await else {
            return;
        };
        let _: Result<(), _> = redis::pipe()
            .del(self.key(&["sessions", &self.node]))
            .del(self.key(&["node", &self.node]))
            .srem(self.key(&["nodes"]), &*self.node)
            .publish(
                self.key(&["events"]),
                serde_json::to_string(&Event::NodeDown {
                    node: self.node.to_string(),
                })
                .expect("serialises"),
            )
            .query_async(&mut conn)
            .await;
    }

    async fn beat(&self, conn: &mut redis::aio::ConnectionManager) -> redis::RedisResult<()> {
        redis::pipe()
            .set_options(
                self.key(&["node", &self.node]),
                1,
                redis::SetOptions::default()
                    .with_expiration(redis::SetExpiry::PX(self.config.node_timeout_ms.max(100))),
            )
            .sadd(self.key(&["nodes"]), &*self.node)
            .query_async(conn)
            .await
    }

    /// Reads which members are alive; updates `live` and tells the services when it changed.
    async fn refresh_live(
        &self,
        conn: &mut redis::aio::ConnectionManager,
    ) -> redis::RedisResult<Vec<Arc<str>>> {
        Ok(self.read_members(conn).await?.0)
    }

    /// The live nodes (also kept in `live`) and the members whose heartbeat expired.
    async fn read_members(
        &self,
        conn: &mut redis::aio::ConnectionManager,
    ) -> redis::RedisResult<(Vec<Arc<str>>, Vec<String>)> {
        let members: Vec<String> = conn.smembers(self.key(&["nodes"])).await?;
        let mut pipe = redis::pipe();
        for m in &members {
            pipe.exists(self.key(&["node", m]));
        }
        let alive: Vec<bool> = pipe.query_async(conn).await?;
        let (live, dead): (Vec<_>, Vec<_>) = members.into_iter().zip(alive).partition(|(_, a)| *a);
        let mut live: Vec<Arc<str>> = live.into_iter().map(|(m, _)| m.into()).collect();
        let dead = dead
            .into_iter()
            .map(|(m, _)| m)
            .filter(|m| **m != *self.node)
            .collect();
        if !live.iter().any(|n| **n == *self.node) {
            live.push(self.node.clone());
        }
        live.sort();
        *self.live.write().unwrap() = live.clone();
        Ok((live, dead))
    }

    /// Heartbeat, and the purge of nodes that stopped beating.
    async fn watch(self: Arc<Self>, server: &Arc<Server>, mut conn: redis::aio::ConnectionManager) {
        let mut every =
            tokio::time::interval(Duration::from_millis(self.config.heartbeat_ms.max(50)));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = server.shutdown.cancelled() => return,
            }
            if self.is_halted() {
                return;
            }
            if let Err(e) = self.beat(&mut conn).await {
                tracing::warn!(%e, "cluster heartbeat failed");
                continue;
            }
            let before = self.live_nodes();
            let (live, dead) = match self.read_members(&mut conn).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(%e, "reading cluster members failed");
                    continue;
                }
            };
            for dead in &dead {
                self.directory.node_down(dead);
                if let Err(e) = self.purge(server, &mut conn, dead).await {
                    tracing::warn!(%e, node = %dead, "purging a dead node failed");
                }
            }
            if before != live {
                tracing::info!(node = %self.node, ?live, "cluster membership changed");
                for svc in server.modules.services.values() {
                    svc.rehome(server).await;
                }
            }
        }
    }

    /// Ends the sessions a dead node served, once in the cluster (whoever takes the lock):
    /// contacts get unavailable presence, then the node's records go.
    async fn purge(
        &self,
        server: &Arc<Server>,
        conn: &mut redis::aio::ConnectionManager,
        node: &str,
    ) -> redis::RedisResult<()> {
        let lock: Option<String> = redis::cmd("SET")
            .arg(self.key(&["purge", node]))
            .arg(&*self.node)
            .arg("NX")
            .arg("PX")
            .arg(30_000)
            .query_async(conn)
            .await?;
        if lock.is_none() {
            return Ok(());
        }
        let sessions_key = self.key(&["sessions", node]);
        let all: Vec<(String, String)> = conn.hgetall(&sessions_key).await?;
        let _: () = redis::pipe()
            .del(&sessions_key)
            .srem(self.key(&["nodes"]), node)
            .publish(
                self.key(&["events"]),
                serde_json::to_string(&Event::NodeDown {
                    node: node.to_string(),
                })
                .expect("serialises"),
            )
            .query_async(conn)
            .await?;
        if !all.is_empty() {
            tracing::info!(%node, sessions = all.len(), "purging the sessions of a dead node");
        }
        for (jid, rec) in all {
            let (Ok(jid), Ok(rec)) = (
                rookery_core::FullJid::new(&jid),
                serde_json::from_str::<Record>(&rec),
            ) else {
                continue;
            };
            // A stand-in for the lost session, so presence goes out as when a session ends.
            let gone = SessionHandle::remote(rec.id, jid, self.sink(node), rec.state());
            crate::presence::broadcast_unavailable(server, &gone, None).await;
        }
        let _: () = conn.del(self.key(&["purge", node])).await?;
        Ok(())
    }

    /// Sends what the rest of the server queued, many commands per round trip.
    async fn writer(
        self: Arc<Self>,
        server: &Arc<Server>,
        mut conn: redis::aio::ConnectionManager,
        mut rx: mpsc::Receiver<Write>,
    ) {
        let events = self.key(&["events"]);
        let sessions = self.key(&["sessions", &self.node]);
        let mut batch = Vec::with_capacity(256);
        // Deliveries in this batch, in the order of the pipeline's (not ignored) replies.
        let mut delivers: Vec<(String, u64, String)> = vec![];
        while rx.recv_many(&mut batch, 256).await > 0 {
            if self.is_halted() {
                batch.clear();
                continue;
            }
            let mut pipe = redis::pipe();
            for w in batch.drain(..) {
                match w {
                    Write::Up(jid, rec) => {
                        let rec_json = serde_json::to_string(&rec).expect("serialises");
                        pipe.hset(&sessions, &jid, &rec_json).ignore();
                        let ev = Event::Up {
                            node: self.node.to_string(),
                            jid,
                            rec,
                        };
                        pipe.publish(&events, serde_json::to_string(&ev).expect("serialises"))
                            .ignore();
                    }
                    Write::Down(jid, id) => {
                        pipe.hdel(&sessions, &jid).ignore();
                        let ev = Event::Down {
                            node: self.node.to_string(),
                            jid,
                            id,
                        };
                        pipe.publish(&events, serde_json::to_string(&ev).expect("serialises"))
                            .ignore();
                    }
                    Write::Invalidate(topic, user) => {
                        let ev = Event::Invalidate {
                            node: self.node.to_string(),
                            topic,
                            user,
                        };
                        pipe.publish(&events, serde_json::to_string(&ev).expect("serialises"))
                            .ignore();
                    }
                    Write::Bus(node, msg) => {
                        let channel = self.key(&["bus", &node]);
                        let json = serde_json::to_string(&msg).expect("serialises");
                        match msg {
                            // How many heard it: none when that node died and is not purged yet.
                            BusMsg::Deliver { to, id, xml } => {
                                pipe.publish(channel, json);
                                delivers.push((to, id, xml));
                            }
                            _ => {
                                pipe.publish(channel, json).ignore();
                            }
                        }
                    }
                }
            }
            // A dropped connection fails the batch before Redis ran it (the connection manager
            // reconnects on the next use): send it again rather than lose it. A drop while Redis
            // was answering may deliver part of it twice: at least once, not at most once.
            let mut result = pipe.query_async::<Vec<i64>>(&mut conn).await;
            for attempt in 1..=3u64 {
                match &result {
                    Err(e) if e.is_io_error() || e.is_connection_dropped() => {
                        tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                        result = pipe.query_async::<Vec<i64>>(&mut conn).await;
                    }
                    _ => break,
                }
            }
            match result {
                Ok(heard) => {
                    let unheard: Vec<_> = std::mem::take(&mut delivers)
                        .into_iter()
                        .zip(heard)
                        .filter(|(_, n)| *n == 0)
                        .map(|(d, _)| d)
                        .collect();
                    if !unheard.is_empty() {
                        let (me, srv) = (self.clone(), server.clone());
                        tokio::spawn(async move {
                            for (to, id, xml) in unheard {
                                me.directory.down(&to, id);
                                wire::to_account(&srv, &to, &xml).await;
                            }
                        });
                    }
                }
                Err(e) => {
                    delivers.clear();
                    tracing::warn!(%e, "cluster write failed");
                }
            }
        }
    }

    /// Applies other nodes' directory events and serves this node's bus.
    async fn subscribe(&self) -> redis::RedisResult<redis::aio::PubSub> {
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(self.key(&["events"])).await?;
        pubsub.subscribe(self.key(&["bus", &self.node])).await?;
        Ok(pubsub)
    }

    /// Reads every other live node's sessions into the directory, replacing what it held.
    async fn load_directory(
        &self,
        conn: &mut redis::aio::ConnectionManager,
        live: &[Arc<str>],
    ) -> redis::RedisResult<()> {
        for node in live.iter().filter(|n| n.as_ref() != self.node.as_ref()) {
            let all: Vec<(String, String)> = conn.hgetall(self.key(&["sessions", node])).await?;
            self.directory.node_down(node);
            for (jid, rec) in all {
                if let Ok(rec) = serde_json::from_str::<Record>(&rec) {
                    self.directory.up(self.sink(node), &jid, rec);
                }
            }
        }
        Ok(())
    }

    /// Serves the bus until shutdown; when the subscription breaks (Redis restarted, network),
    /// subscribes again and reloads the directory, since events were missed meanwhile.
    async fn reader(self: Arc<Self>, server: &Arc<Server>, first: redis::aio::PubSub) {
        let mut pubsub = Some(first);
        loop {
            let ps = match pubsub.take() {
                Some(ps) => ps,
                None => {
                    let again = async {
                        let ps = self.subscribe().await?;
                        let mut conn =
                            redis::aio::ConnectionManager::new(self.client.clone()).await?;
                        let live = self.refresh_live(&mut conn).await?;
                        self.load_directory(&mut conn, &live).await?;
                        Ok::<_, redis::RedisError>(ps)
                    };
                    match again.await {
                        Ok(ps) => {
                            tracing::info!("the cluster bus is back");
                            ps
                        }
                        Err(e) => {
                            tracing::warn!(%e, "cluster bus reconnection failed");
                            tokio::select! {
                                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                                _ = server.shutdown.cancelled() => return,
                            }
                        }
                    }
                }
            };
            self.serve_bus(server, ps).await;
            if server.shutdown.is_cancelled() || self.is_halted() {
                return;
            }
            tracing::error!("the cluster bus connection ended; reconnecting");
        }
    }

    async fn serve_bus(&self, server: &Arc<Server>, mut pubsub: redis::aio::PubSub) {
        use futures_util::StreamExt;
        let events = self.key(&["events"]);
        let mut stream = pubsub.on_message();
        loop {
            let msg = tokio::select! {
                m = stream.next() => match m {
                    Some(m) => m,
                    None => return,
                },
                _ = server.shutdown.cancelled() => return,
            };
            if self.is_halted() {
                return;
            }
            let payload = msg.get_payload_bytes();
            if msg.get_channel_name() == events {
                match serde_json::from_slice::<Event>(payload) {
                    Ok(Event::Up { node, jid, rec }) if *node != *self.node => {
                        self.directory.up(self.sink(&node), &jid, rec)
                    }
                    Ok(Event::Down { node, jid, id }) if *node != *self.node => {
                        self.directory.down(&jid, id);
                        // Copies of a user's data made while routing to them (privacy lists)
                        // are kept only while they are online somewhere.
                        if let Ok(user) = rookery_core::FullJid::new(&jid).map(|j| j.to_bare()) {
                            if server.sessions.resources(&user).is_empty() {
                                for c in &server.modules.caches {
                                    c.forget(&user);
                                }
                            }
                        }
                    }
                    Ok(Event::NodeDown { node }) if *node != *self.node => {
                        self.directory.node_down(&node)
                    }
                    Ok(Event::Invalidate { node, topic, user }) if *node != *self.node => {
                        if let Ok(user) = rookery_core::BareJid::new(&user) {
                            for c in server.modules.caches.iter().filter(|c| c.topic() == topic) {
                                c.forget(&user);
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(%e, "bad cluster event"),
                }
                continue;
            }
            match serde_json::from_slice::<BusMsg>(payload) {
                Ok(m) => wire::serve(server, m).await,
                Err(e) => tracing::warn!(%e, "bad cluster bus message"),
            }
        }
    }

    /// Sessions per live node (this one's counted locally), for `rookery cluster status`.
    pub fn status(&self, server: &Server) -> Vec<(String, usize)> {
        self.live_nodes()
            .iter()
            .map(|n| {
                let count = if **n == *self.node {
                    server.sessions.local().len()
                } else {
                    self.directory.count_on(n)
                };
                (n.to_string(), count)
            })
            .collect()
    }
}

/// Rendezvous weight of `node` for `key`: a stable 64-bit hash of both.
/// Which of `nodes` is home to `key` (what [`Cluster::home`] says when they are the live ones).
pub fn home_among<'a, N: AsRef<str>>(nodes: &'a [N], key: &str) -> Option<&'a N> {
    nodes.iter().max_by_key(|n| weight(n.as_ref(), key))
}

fn weight(node: &str, key: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(node.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    u64::from_be_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_moves_only_the_dead_nodes_keys() {
        let keys: Vec<String> = (0..300)
            .map(|i| format!("room{i}@conference.example"))
            .collect();
        let home = |nodes: &[&str], k: &str| -> String {
            nodes
                .iter()
                .max_by_key(|n| weight(n, k))
                .unwrap()
                .to_string()
        };
        let three = ["a", "b", "c"];
        let two = ["a", "c"];
        let mut counts = std::collections::HashMap::new();
        for k in &keys {
            let before = home(&three, k);
            *counts.entry(before.clone()).or_insert(0) += 1;
            if before != "b" {
                assert_eq!(home(&two, k), before, "{k} moved though its home lives");
            }
        }
        // Spread over all three.
        assert!(counts.values().all(|c| *c > 50), "{counts:?}");
    }
}
