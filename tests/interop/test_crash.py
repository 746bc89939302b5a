"""Durability: the server is killed with SIGKILL at random moments 20 times while a client
sends messages to an offline user with stream management; after each crash it starts again with
no manual step, and in the end every message the server had acknowledged (XEP-0198 <a/>) is in
the recipient's archive exactly once and reaches the recipient from offline storage exactly once."""
import asyncio
import random
import secrets
from collections import Counter

from rookery_harness import DEFAULT_PLUGINS, NS_CLIENT, connect, q

NS_MAM = "urn:xmpp:mam:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_RSM = "http://jabber.org/protocol/rsm"
ROUNDS = 20


async def until(probe, what: str, timeout: float = 15.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not probe():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting for " + what
        await asyncio.sleep(0.05)


async def archive_ids(client) -> list[str]:
    """Ids of every message in the client's own archive, oldest first, page by page (RSM)."""
    ids, after = [], None
    while True:
        qid = "q" + secrets.token_hex(4)
        rsm = "<set xmlns='%s'><max>100</max>%s</set>" % (
            NS_RSM, "<after>%s</after>" % after if after else "")
        start = len(client.received)
        reply = await client.iq_set("<query xmlns='%s' queryid='%s'>%s</query>" % (NS_MAM, qid, rsm))
        assert reply["type"] == "result", reply
        for st in client.received[start:]:
            res = st.xml.find(q(NS_MAM, "result"))
            if st.name == "message" and res is not None and res.get("queryid") == qid:
                msg = res.find(q(NS_FORWARD, "forwarded")).find(q(NS_CLIENT, "message"))
                ids.append(msg.get("id"))
        fin = reply.xml.find(q(NS_MAM, "fin"))
        last = fin.find(q(NS_RSM, "set")).findtext(q(NS_RSM, "last"))
        if fin.get("complete") == "true" or last is None:
            return ids
        after = last


async def test_messages_acknowledged_before_a_kill_survive_it_exactly_once(server_factory):
    # Room for every message in bob's offline queue: a full queue bounces (also "handled").
    server = server_factory({"limits": {"max_offline_messages": 100000}})
    server.add_user("alice", "alice-password")
    server.add_user("bob", "bob-password")
    rng = random.Random(0x5eed)
    acked: list[str] = []
    sent = 0
    for round_ in range(ROUNDS):
        if round_:
            server.start()  # after a crash: no manual step
        done = []

        def watch(xmpp):
            xmpp.add_event_handler("stanza_acked", lambda st: st.name == "message" and done.append(st["id"]))

        alice = await connect(server, "alice", "alice-password",
                              plugins=DEFAULT_PLUGINS + ("xep_0198",),
                              plugin_config={"xep_0198": {"window": 1}}, setup=watch)

        async def chat():
            nonlocal sent
            i = 0
            while True:
                m = alice.xmpp.make_message(mto="bob@localhost", mbody="round %d #%d" % (round_, i), mtype="chat")
                m["id"] = "r%d-%d" % (round_, i)
                m.send()
                sent += 1
                i += 1
                await asyncio.sleep(0.002)

        task = asyncio.ensure_future(chat())
        await asyncio.sleep(rng.uniform(0.05, 0.5))
        server.kill()
        task.cancel()
        alice.abort()
        acked.extend(done)
    assert len(acked) > ROUNDS * 10, "too few acknowledged messages (%d of %d sent) to mean anything" % (len(acked), sent)

    server.start()
    bob = await connect(server, "bob", "bob-password", presence=False)
    bob.xmpp.send_presence()  # offline messages come after initial presence

    def delivered() -> Counter:
        return Counter(st["id"] for st in bob.received if st.name == "message" and st["body"])

    # The queue is fed to the session as it is written out; wait for every acknowledged message,
    # then a round trip (a second copy of anything would have come before it).
    await until(lambda: all(delivered()[m] for m in acked), "the offline queue")
    await bob.ping_server()
    delivered = delivered()
    archived = Counter(await archive_ids(bob))
    for mid in acked:
        assert archived[mid] == 1, "%s acknowledged, archived %d times" % (mid, archived[mid])
        assert delivered[mid] == 1, "%s acknowledged, delivered %d times from offline storage" % (mid, delivered[mid])
    assert max(archived.values()) == 1 and max(delivered.values()) == 1
    await bob.close(wait=1.0)
