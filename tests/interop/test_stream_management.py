"""Stream management (XEP-0198) with slixmpp's own implementation: a connection dropped
mid-conversation is resumed, and every message sent meanwhile arrives exactly once."""
import asyncio

from rookery_harness import DEFAULT_PLUGINS, message


async def test_dropped_connection_resumes_with_every_message_once(server, clients):
    alice = await clients.user("alice")
    enabled = asyncio.get_running_loop().create_future()

    def watch(xmpp):
        xmpp.add_event_handler("sm_enabled", lambda _: enabled.done() or enabled.set_result(True))

    bob = await clients.user("bob", plugins=DEFAULT_PLUGINS + ("xep_0198",), setup=watch)
    await asyncio.wait_for(enabled, 10)
    assert bob.xmpp.plugin["xep_0198"].sm_id, "stream management was enabled without resumption"

    alice.send_message(bob.bare, "before")
    await bob.expect(message(frm=alice.full, body="before"))

    resumed = asyncio.get_running_loop().create_future()
    bob.xmpp.add_event_handler("session_resumed", lambda _: resumed.done() or resumed.set_result(True))
    bob.xmpp.abort()  # the TCP connection dies without a closing stream
    await alice.ping_server()
    for i in range(5):
        alice.send_message(bob.bare, "while away %d" % i)
    await alice.ping_server()

    bob.xmpp.connect("127.0.0.1", server.c2s_port)
    await asyncio.wait_for(resumed, 15)
    for i in range(5):
        await bob.expect(message(frm=alice.full, body="while away %d" % i))
    # Nothing twice: an extra round trip, then no second copy of anything.
    alice.send_message(bob.bare, "after")
    await bob.expect(message(frm=alice.full, body="after"))
    bodies = [m["body"] for m in bob.received if m.name == "message" and m["body"]]
    for i in range(5):
        assert bodies.count("while away %d" % i) == 1, bodies
    assert bodies.count("before") == 1, bodies
