"""Push notifications (XEP-0357): slixmpp clients enable push against an app server that is a
slixmpp external component (XEP-0114), which receives the pubsub publishes. slixmpp has no
xep_0357 plugin, so the client sends the enable IQ itself."""
import asyncio

import pytest
import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from rookery_harness import DEFAULT_PLUGINS, free_ports, q

SECRET = "push-secret"
PUSH = "urn:xmpp:push:0"
PUBSUB = "http://jabber.org/protocol/pubsub"
DATA = "jabber:x:data"
APP_PORT = free_ports(1)[0]
CONFIG = {"components": [{"domain": "push.localhost", "secret": SECRET}],
          "listen": {"component": ["127.0.0.1:%d" % APP_PORT]}}


class AppServer(slixmpp.ComponentXMPP):
    """Accepts every publish and queues (from, node, summary fields, publish-options fields)."""

    def __init__(self):
        super().__init__("push.localhost", SECRET, "127.0.0.1", APP_PORT)
        self.ready = asyncio.get_running_loop().create_future()
        self.pushes: asyncio.Queue = asyncio.Queue()
        self.add_event_handler("session_start", lambda _: self.ready.done() or self.ready.set_result(True))
        self.register_handler(Callback(
            "push publish",
            MatchXPath("{jabber:component:accept}iq/{%s}pubsub" % PUBSUB),
            self.on_publish))

    def on_publish(self, iq):
        pubsub = iq.xml.find(q(PUBSUB, "pubsub"))
        publish = pubsub.find(q(PUBSUB, "publish"))
        form = publish.find("%s/%s/%s" % (q(PUBSUB, "item"), q(PUSH, "notification"), q(DATA, "x")))
        options = pubsub.find("%s/%s" % (q(PUBSUB, "publish-options"), q(DATA, "x")))
        self.pushes.put_nowait((str(iq["from"]), publish.get("node"), fields(form), fields(options)))
        iq.reply().send()


def fields(x) -> dict:
    if x is None:
        return {}
    return {f.get("var"): [v.text for v in f.findall(q(DATA, "value"))] for f in x.findall(q(DATA, "field"))}


ENABLE = ("<enable xmlns='%s' jid='push.localhost' node='%s'>"
          "<x xmlns='%s' type='submit'>"
          "<field var='FORM_TYPE'><value>%s#publish-options</value></field>"
          "<field var='secret'><value>s-%s</value></field></x></enable>")


async def enable(client, node: str) -> None:
    reply = await client.iq_set(ENABLE % (PUSH, node, DATA, PUBSUB, node))
    assert reply["type"] == "result", reply


@pytest.fixture
async def app():
    a = AppServer()
    a.connect()
    await asyncio.wait_for(a.ready, 10)
    yield a
    a.disconnect()


@pytest.mark.rookery_config(CONFIG)
async def test_offline_user_is_pushed(server, clients, app):
    alice = await clients.user("alice")
    info = await alice.xmpp.plugin["xep_0030"].get_info(jid=alice.bare)
    assert PUSH in info["disco_info"]["features"]
    await enable(alice, "device-1")
    await alice.close()
    bob = await clients.user("bob")
    bob.send_message(alice.bare, "you have mail")
    sender, node, summary, options = await asyncio.wait_for(app.pushes.get(), 10)
    assert sender == alice.bare
    assert node == "device-1"
    assert summary["FORM_TYPE"] == ["urn:xmpp:push:summary"]
    assert summary["message-count"] == ["1"]
    assert summary["last-message-sender"] == [bob.full]
    assert "last-message-body" not in summary
    assert options["secret"] == ["s-device-1"]


@pytest.mark.rookery_config(CONFIG)
async def test_dropped_resumable_session_is_pushed_then_resumes(server, clients, app):
    enabled = asyncio.get_running_loop().create_future()

    def watch(xmpp):
        xmpp.add_event_handler("sm_enabled", lambda _: enabled.done() or enabled.set_result(True))

    alice = await clients.user("alice", plugins=DEFAULT_PLUGINS + ("xep_0198",), setup=watch)
    await asyncio.wait_for(enabled, 10)
    await enable(alice, "phone")
    bob = await clients.user("bob")
    resumed = asyncio.get_running_loop().create_future()
    alice.xmpp.add_event_handler("session_resumed", lambda _: resumed.done() or resumed.set_result(True))
    alice.xmpp.abort()  # the phone loses its connection; the session hibernates
    bob.send_message(alice.bare, "wake up")
    _, node, summary, _ = await asyncio.wait_for(app.pushes.get(), 10)
    assert node == "phone"
    assert summary["last-message-sender"] == [bob.full]
    # Woken by the push, the device comes back and gets the message.
    alice.xmpp.connect("127.0.0.1", server.c2s_port)
    await asyncio.wait_for(resumed, 15)
    await alice.expect(lambda st: st.name == "message" and st["body"] == "wake up")
    assert app.pushes.empty()
