"""Cluster mode with real processes: three Rookery nodes on loopback sharing one fresh
PostgreSQL database and one Redis (a key prefix of their own per test), slixmpp clients logged
in to chosen nodes.

PostgreSQL (127.0.0.1:5432, user postgres) and Redis (127.0.0.1:6379) must be running
(./scripts/test starts them); when they are not, these tests fail, unless
ROOKERY_SKIP_POSTGRES=1 / ROOKERY_SKIP_REDIS=1 say to skip them.
"""
import asyncio
import json
import os
import secrets
import socket
import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import aiohttp
import pytest

from rookery_harness import DEFAULT_PLUGINS, NS_CLIENT, ClientPool, Pred, RookeryServer, befriend, dump, message, presence, q
from test_muc import MUC_PLUGINS, create_instant_room, groupchat, join, occ, room_jid

PASSWORD = "secret-password"
PG_SERVER = "postgres://postgres@127.0.0.1:5432"
REDIS_URL = "redis://127.0.0.1:6379/"
HEARTBEAT_MS = 200
NODE_TIMEOUT_MS = 1500
NS_MAM = "urn:xmpp:mam:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_DELAY = "urn:xmpp:delay"


# ---------------------------------------------------------------------------
# The shared services
# ---------------------------------------------------------------------------

def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)


def _psql(sql: str) -> subprocess.CompletedProcess:
    return _run(["psql", "-h", "127.0.0.1", "-p", "5432", "-U", "postgres", "-d", "postgres",
                 "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql])


def _redis(*args: str) -> subprocess.CompletedProcess:
    return _run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", *args])


def _require(service: str, skip_var: str, reachable: bool, detail: str) -> None:
    if os.environ.get(skip_var) == "1":
        pytest.skip("%s=1: cluster tests skipped" % skip_var)
    if not reachable:
        pytest.fail("%s is not reachable (%s). Start it (./scripts/test does), or set %s=1 to skip "
                    "the cluster tests" % (service, detail, skip_var), pytrace=False)


@dataclass
class Backing:
    database: str
    prefix: str

    @property
    def storage(self) -> str:
        return "%s/%s" % (PG_SERVER, self.database)


@pytest.fixture
def backing():
    """A fresh PostgreSQL database and a Redis key prefix of this test's own; dropped and
    deleted at teardown (after the nodes stopped: `cluster` depends on this fixture first)."""
    pg_ok = _port_open(5432) and _psql("SELECT 1").returncode == 0
    _require("PostgreSQL at 127.0.0.1:5432", "ROOKERY_SKIP_POSTGRES", pg_ok,
             "port closed" if not _port_open(5432) else _psql("SELECT 1").stderr.strip())
    redis_ok = _port_open(6379) and _redis("PING").stdout.strip() == "PONG"
    _require("Redis at 127.0.0.1:6379", "ROOKERY_SKIP_REDIS", redis_ok,
             "port closed" if not _port_open(6379) else _redis("PING").stdout.strip())
    tag = "%d_%s" % (os.getpid(), secrets.token_hex(4))
    b = Backing(database="rookery_pytest_%s" % tag, prefix="rookery-pytest-%s" % tag.replace("_", "-"))
    r = _psql("CREATE DATABASE %s" % b.database)
    assert r.returncode == 0, "CREATE DATABASE %s failed: %s" % (b.database, r.stderr)
    yield b
    r = _psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % b.database)
    assert r.returncode == 0, "DROP DATABASE %s failed: %s" % (b.database, r.stderr)
    keys = [k for k in _redis("--scan", "--pattern", b.prefix + ":*").stdout.split() if k]
    if keys:
        _redis("DEL", *keys)
    left = _redis("--scan", "--pattern", b.prefix + ":*").stdout.split()
    assert not left, "Redis keys left under %s: %s" % (b.prefix, left)


@dataclass
class Cluster:
    nodes: list[RookeryServer]
    pool: ClientPool


@pytest.fixture
async def cluster(backing, server_factory):
    """Three nodes n1, n2, n3 (started in turn: the first migrates the database) and a client
    pool whose accounts live in the shared database. The nodes are stopped by server_factory's
    teardown, before `backing` drops the database."""
    nodes = []
    for i in (1, 2, 3):
        nodes.append(server_factory({
            "storage": backing.storage,
            "cluster": {"redis": REDIS_URL, "node": "n%d" % i, "prefix": backing.prefix,
                        "heartbeat_ms": HEARTBEAT_MS, "node_timeout_ms": NODE_TIMEOUT_MS},
        }, name="n%d" % i))
    pool = ClientPool(nodes[0])
    yield Cluster(nodes, pool)
    await pool.close_all()


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

async def eventually(probe, ok, what: str, timeout: float = 8.0, every: float = 0.1):
    """Poll `probe()` (sync, run in a thread) until `ok(value)`; return the value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(probe)
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError("%s: not so within %.0fs; last seen: %r" % (what, timeout, value))
        await asyncio.sleep(every)


def cluster_status(node: RookeryServer) -> dict[str, int]:
    """`rookery cluster status` of one node: {node name: session count}."""
    out = node.ctl("cluster", "status").stdout
    return {d["node"]: d["sessions"] for d in (json.loads(l) for l in out.splitlines() if l.strip())}


async def status_becomes(node: RookeryServer, expected: dict[str, int]) -> None:
    await eventually(lambda: cluster_status(node), lambda s: s == expected,
                     "`rookery cluster status` on %s should be %s" % (node.name, expected))


async def mam_query(client, *, to: str | None = None, with_jid: str | None = None) -> list[ET.Element]:
    """One XEP-0313 query (a single page); the archived <message/>s, oldest first."""
    qid = "q" + secrets.token_hex(4)
    fields = "<field var='FORM_TYPE' type='hidden'><value>%s</value></field>" % NS_MAM
    if with_jid:
        fields += "<field var='with'><value>%s</value></field>" % with_jid
    reply = await client.iq_set("<query xmlns='%s' queryid='%s'><x xmlns='jabber:x:data' type='submit'>%s</x>"
                                "</query>" % (NS_MAM, qid, fields), to=to)
    assert reply["type"] == "result", "%s: MAM query refused: %s" % (client.name, dump(reply))
    found = []
    for st in client.received:  # the results precede the IQ result
        res = st.xml.find(q(NS_MAM, "result"))
        if st.name == "message" and res is not None and res.get("queryid") == qid:
            fwd = res.find(q(NS_FORWARD, "forwarded"))
            found.append(fwd.find(q(NS_CLIENT, "message")))
    return found


def bodies(msgs) -> list[str]:
    return [m.findtext(q(NS_CLIENT, "body")) for m in msgs]


async def archived(client, body: str, **kw) -> ET.Element:
    """The archived message with `body`, polled for (archives are written in batches)."""
    deadline = time.monotonic() + 8.0
    while True:
        msgs = await mam_query(client, **kw)
        hits = [m for m in msgs if m.findtext(q(NS_CLIENT, "body")) == body]
        if hits:
            assert len(hits) == 1, "%s: %r archived %d times: %s" % (client.name, body, len(hits),
                                                                    [dump(m) for m in hits])
            return hits[0]
        if time.monotonic() > deadline:
            raise AssertionError("%s: %r not in the archive (%s) within 8s; archive holds %s"
                                 % (client.name, body, kw, bodies(msgs)))
        await asyncio.sleep(0.1)


async def friends_on_n1_and_n2(cluster):
    """alice logged in to n1, bob to n2, subscribed to each other (presence and roster pushes
    crossing the node bus both ways). Both accounts are made with n1's CLI: one shared database,
    every node knows them."""
    n1, n2, _ = cluster.nodes
    n1.add_user("alice", PASSWORD)
    n1.add_user("bob", PASSWORD)
    alice = await cluster.pool.login("alice", server=n1)
    bob = await cluster.pool.login("bob", server=n2)
    await befriend(alice, bob)
    return alice, bob


def showing(show: str, status: str) -> Pred:
    return Pred(lambda x: x.findtext(q(NS_CLIENT, "show")) == show and x.findtext(q(NS_CLIENT, "status")) == status,
                "show=%s status=%r" % (show, status))


def received_bodies(client, frm_bare: str) -> list[str]:
    return [st["body"] for st in client.received
            if st.name == "message" and st["body"] and str(st["from"].bare) == frm_bare]


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------

async def test_users_on_different_nodes_subscribe_see_presence_and_chat(cluster):
    n1, n2, n3 = cluster.nodes
    alice, bob = await friends_on_n1_and_n2(cluster)

    bob.xmpp.send_presence(pshow="away", pstatus="on n2")
    await alice.expect(presence(frm=bob.full, type=None) & showing("away", "on n2"))
    alice.xmpp.send_presence(pshow="dnd", pstatus="on n1")
    await bob.expect(presence(frm=alice.full, type=None) & showing("dnd", "on n1"))

    alice.send_message(bob.full, "to bob's full JID")
    await bob.expect(message(frm=alice.full, type="chat", body="to bob's full JID"))
    alice.send_message(bob.bare, "to bob's bare JID")
    await bob.expect(message(frm=alice.full, type="chat", body="to bob's bare JID"))
    bob.send_message(alice.bare, "and back")
    await alice.expect(message(frm=bob.full, type="chat", body="and back"))

    for node in (n1, n2, n3):
        await status_becomes(node, {"n1": 1, "n2": 1, "n3": 0})


async def test_room_with_an_occupant_on_each_node_and_archives_read_elsewhere(cluster):
    n1, n2, n3 = cluster.nodes
    for u in ("alice", "bob", "carol"):
        n1.add_user(u, PASSWORD)
    alice = await cluster.pool.login("alice", server=n1, plugins=MUC_PLUGINS)
    bob = await cluster.pool.login("bob", server=n2, plugins=MUC_PLUGINS)
    carol = await cluster.pool.login("carol", server=n3, plugins=MUC_PLUGINS)

    room = room_jid("cluster-lobby")
    await create_instant_room(alice, room, "Alice")
    await join(bob, room, "Bob")
    await alice.expect(presence(frm=occ(room, "Bob"), type=None), what="Bob (n2) entering, seen on n1")
    await join(carol, room, "Carol")
    for c in (alice, bob):
        await c.expect(presence(frm=occ(room, "Carol"), type=None),
                       what="Carol (n3) entering, seen by %s" % c.name)

    for sender, nick in ((bob, "Bob"), (alice, "Alice"), (carol, "Carol")):
        body = "groupchat from %s" % nick
        sender.send_message(room, body, mtype="groupchat")
        for c in (alice, bob, carol):
            await c.expect(groupchat(occ(room, nick), body),
                           what="%r (sent on %s's node) reaching %s" % (body, nick, c.name))

    # 1:1 chat archived by the nodes it crossed, read back on a third node.
    alice.send_message(bob.bare, "archived across nodes")
    await bob.expect(message(frm=alice.full, body="archived across nodes"))
    alice_n3 = await cluster.pool.login("alice", server=n3, resource="elsewhere", presence=False)
    m = await archived(alice_n3, "archived across nodes", with_jid=bob.bare)
    assert str(m.get("to")).startswith(bob.bare), dump(m)
    await archived(bob, "archived across nodes", with_jid=alice.bare)
    # The room's archive, asked for from a node that may not be the room's home.
    m = await archived(carol, "groupchat from Bob", to=room)
    assert m.get("from") == occ(room, "Bob"), dump(m)


async def test_killed_node_is_purged_and_its_user_gets_what_was_sent_meanwhile(cluster):
    """SIGKILL bob's node while alice (another node) chats with him.

    What is guaranteed, and asserted:
    * alice sees bob go unavailable within a few seconds: the survivors notice the dead node
      (heartbeat expired) and purge its sessions from the directory;
    * `rookery cluster status` on each survivor lists only the two live nodes;
    * messages for bob's bare JID that the server accepted after bob's session left the
      directory (alice saw him go) go to offline storage in PostgreSQL and reach bob on his next
      login, on a surviving node, each exactly once with a delay stamp;
    * messages bob received before the kill are not delivered again;
    * bob can chat again from the surviving node, both ways.
    Not guaranteed: stanzas that were inside the dead process (its queues, its socket buffers)
    when it died; once written to bob's TCP stream a stanza is his client's business (stream
    management resumption cannot survive the death of the node that held the session).
    See the next test for messages sent between the kill and the purge."""
    n1, n2, n3 = cluster.nodes
    alice, bob = await friends_on_n1_and_n2(cluster)
    for i in range(3):
        alice.send_message(bob.bare, "before %d" % i)
        await bob.expect(message(frm=alice.full, body="before %d" % i))
        bob.send_message(alice.bare, "reply %d" % i)
        await alice.expect(message(frm=bob.full, body="reply %d" % i))
    await status_becomes(n1, {"n1": 1, "n2": 1, "n3": 0})

    killed_at = time.monotonic()
    n2.kill()
    await bob.wait_disconnected()
    await alice.expect(presence(frm=bob.full, type="unavailable"), timeout=8,
                       what="bob's unavailable presence after his node (n2) was killed")
    noticed = time.monotonic() - killed_at
    assert noticed < 5, "the survivors took %.1fs to purge the dead node's sessions" % noticed

    for i in range(3):
        alice.send_message(bob.bare, "while away %d" % i)
    await alice.ping_server()  # n1 has handled (and stored) all three

    for node in (n1, n3):
        await status_becomes(node, {"n1": 1, "n3": 0})

    bob2 = await cluster.pool.login("bob", server=n3, name="bob on n3")
    await alice.expect(presence(frm=bob2.full, type=None), what="bob back, on n3")
    for i in range(3):
        m = await bob2.expect(message(frm_bare=alice.bare, body="while away %d" % i),
                              what="offline message 'while away %d' on bob's new login" % i)
        assert m.xml.find(q(NS_DELAY, "delay")) is not None, "offline message without delay stamp: %s" % dump(m)

    bob2.send_message(alice.bare, "back on n3")
    await alice.expect(message(frm=bob2.full, body="back on n3"))
    alice.send_message(bob2.bare, "welcome back")
    await bob2.expect(message(frm=alice.full, body="welcome back"))
    for node in (n1, n3):
        await status_becomes(node, {"n1": 1, "n3": 1})

    got = received_bodies(bob2, alice.bare)
    for i in range(3):
        assert got.count("while away %d" % i) == 1, got
        assert got.count("before %d" % i) == 0, "delivered before the kill, delivered again: %s" % got
    assert got.count("welcome back") == 1, got


async def test_messages_accepted_between_the_kill_and_the_purge_are_not_lost(cluster):
    """Messages alice's node accepts for bob after bob's node died, but before the survivors
    noticed (the heartbeat has not expired yet, the directory still names bob's dead session),
    must still reach offline storage and bob's next login, each exactly once."""
    n1, n2, n3 = cluster.nodes
    alice, bob = await friends_on_n1_and_n2(cluster)
    alice.send_message(bob.bare, "before")
    await bob.expect(message(frm=alice.full, body="before"))

    n2.kill()  # returns once the process is gone
    for i in range(3):
        alice.send_message(bob.bare, "in the window %d" % i)
    await alice.ping_server()  # accepted by n1
    purged = alice.pending(presence(frm=bob.full, type="unavailable"))
    assert not purged, "the purge came before the messages: this test did not test the window"
    await alice.expect(presence(frm=bob.full, type="unavailable"), timeout=8)

    bob2 = await cluster.pool.login("bob", server=n3, name="bob on n3")
    bob2.send_message(alice.bare, "back")
    await alice.expect(message(frm=bob2.full, body="back"))
    alice.send_message(bob2.full, "sync")
    await bob2.expect(message(frm=alice.full, body="sync"))
    got = received_bodies(bob2, alice.bare)
    for i in range(3):
        assert got.count("in the window %d" % i) == 1, \
            "bob's new login should get 'in the window %d' exactly once; got %s" % (i, got)


async def test_an_upload_slot_from_one_node_is_used_on_another_and_served_by_all(cluster):
    """HTTP upload (XEP-0363) behind a load balancer: slixmpp asks n1 for a slot, the PUT lands
    on n2, every node serves the file from PostgreSQL, and the slot is spent everywhere."""
    n1, n2, n3 = cluster.nodes
    n1.add_user("alice", PASSWORD)
    alice = await cluster.pool.login("alice", server=n1, plugins=DEFAULT_PLUGINS + ("xep_0363",))
    data = os.urandom(700_000)
    slot = await alice.xmpp.plugin["xep_0363"].request_slot(
        "upload.localhost", "photo.jpg", len(data), "image/jpeg", timeout=10)
    put = slot["http_upload_slot"]["put"]
    url = put["url"]
    headers = {h["name"]: h["value"] for h in put["headers"]}
    headers["Content-Type"] = "image/jpeg"
    path = url[url.index("/upload/"):]

    def on(node):
        return "http://127.0.0.1:%d%s" % (node.http_port, path)

    async with aiohttp.ClientSession() as http:
        async with http.put(on(n2), data=data, headers=headers) as r:
            assert r.status == 201, await r.text()
        for node in (n1, n2, n3):
            async with http.get(on(node)) as r:
                assert r.status == 200, node.name
                assert await r.read() == data, node.name
                assert r.headers["Content-Type"] == "image/jpeg"
        async with http.get(on(n3), headers={"Range": "bytes=300000-300099"}) as r:
            assert r.status == 206
            assert await r.read() == data[300000:300100]
        async with http.put(on(n3), data=data, headers=headers) as r:
            assert r.status == 409, await r.text()
