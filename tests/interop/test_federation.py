"""Federation between two Rookery processes (RFC 6120 s2s with XEP-0220 dialback) used by slixmpp
clients on each side, and a slixmpp external component (XEP-0114)."""
import asyncio

import pytest
import slixmpp

from rookery_harness import ClientPool, free_ports, message, presence

SECRET = "component-secret"


def federated(me: str, port: int, other: str, other_port: int) -> dict:
    return {
        "hosts": [me],
        "listen": {"s2s": ["127.0.0.1:%d" % port]},
        "s2s": {"enabled": True, "routes": {other: "127.0.0.1:%d" % other_port,
                                             "conference." + other: "127.0.0.1:%d" % other_port}},
    }


async def test_users_on_two_servers_subscribe_and_chat(server_factory, clients):
    pa, pb = free_ports(2)
    a = server_factory(federated("a.test", pa, "b.test", pb), name="a")
    b = server_factory(federated("b.test", pb, "a.test", pa), name="b")
    a.domain, b.domain = "a.test", "b.test"
    a.add_user("alice", "alice-password")
    b.add_user("bob", "bob-password")
    pool_a, pool_b = ClientPool(a), ClientPool(b)
    try:
        alice = await pool_a.login("alice", "alice-password", roster=True, presence=True)
        bob = await pool_b.login("bob", "bob-password", roster=True, presence=True)
        alice.xmpp.send_presence(pto="bob@b.test", ptype="subscribe")
        await bob.expect(presence(frm_bare="alice@a.test", type="subscribe"))
        bob.xmpp.send_presence(pto="alice@a.test", ptype="subscribed")
        await alice.expect(presence(frm_bare="bob@b.test", type="subscribed"))
        # Bob's presence reaches Alice once she is subscribed.
        await alice.expect(presence(frm="bob@b.test/" + bob.jid.resource))
        alice.send_message("bob@b.test", "hello across servers")
        await bob.expect(message(frm_bare="alice@a.test", body="hello across servers"))
        bob.send_message("alice@a.test", "and back")
        await alice.expect(message(frm_bare="bob@b.test", body="and back"))
    finally:
        await pool_a.close_all()
        await pool_b.close_all()


class Echo(slixmpp.ComponentXMPP):
    def __init__(self, jid, secret, host, port):
        super().__init__(jid, secret, host, port)
        self.ready = asyncio.get_running_loop().create_future()
        self.add_event_handler("session_start", lambda _: self.ready.done() or self.ready.set_result(True))
        self.add_event_handler("message", self.echo)

    def echo(self, msg):
        if msg["type"] in ("chat", "normal"):
            msg.reply("echo: %s" % msg["body"]).send()


COMPONENT_PORT = free_ports(1)[0]


@pytest.mark.rookery_config({"components": [{"domain": "echo.localhost", "secret": SECRET}],
                             "listen": {"component": ["127.0.0.1:%d" % COMPONENT_PORT]}})
async def test_slixmpp_component_receives_and_answers(server, clients):
    port = COMPONENT_PORT
    bot = Echo("echo.localhost", SECRET, "127.0.0.1", port)
    bot.connect()
    await asyncio.wait_for(bot.ready, 10)
    try:
        alice = await clients.user("alice")
        alice.send_message("anyone@echo.localhost", "ping")
        await alice.expect(message(frm="anyone@echo.localhost", body="echo: ping"))
    finally:
        bot.disconnect()

    # A wrong secret is refused: the session never starts.
    intruder = Echo("echo.localhost", "not-the-secret", "127.0.0.1", port)
    failed = asyncio.get_running_loop().create_future()
    intruder.add_event_handler("disconnected", lambda _: failed.done() or failed.set_result(True))
    intruder.add_event_handler("stream_error", lambda _: failed.done() or failed.set_result(True))
    intruder.connect()
    await asyncio.wait_for(failed, 10)
    assert not intruder.ready.done()
    intruder.abort()
