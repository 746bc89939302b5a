"""Client state indication (XEP-0352) with slixmpp's plugin: while inactive, presence updates
wait (only the latest of each contact is kept) and messages arrive at once."""
from rookery_harness import DEFAULT_PLUGINS, befriend, message


async def test_inactive_client_gets_messages_at_once_and_presence_later(server, clients):
    alice = await clients.user("alice", roster=True, presence=True)
    bob = await clients.user("bob", plugins=DEFAULT_PLUGINS + ("xep_0352",), roster=True,
                             presence=True)
    await befriend(alice, bob)
    bob.xmpp.plugin["xep_0352"].send_inactive()
    await bob.ping_server()  # the server has seen <inactive/>
    alice.send_presence(pshow="away", pstatus="lunch")
    alice.send_presence(pshow="xa", pstatus="gone home")
    alice.send_message(bob.bare, "are you there?")
    await bob.expect(message(frm=alice.full, body="are you there?"))
    # The held presence came with the message (before it), and only the latest one.
    shows = [p["show"] for p in bob.received if p.name == "presence" and p["from"] == alice.full
             and p["show"] in ("away", "xa")]
    assert shows == ["xa"], shows
    # Held presence comes at once when the client is active again.
    alice.send_presence(pshow="dnd", pstatus="busy")
    # Synchronise on Alice's stream: an IQ answer to Bob would itself release what is held.
    await alice.ping_server()
    dnd = lambda: [p for p in bob.received if p.name == "presence" and p["show"] == "dnd"]
    assert dnd() == [], "presence reached an inactive client"
    bob.xmpp.plugin["xep_0352"].send_active()
    await bob.ping_server()
    assert len(dnd()) == 1, bob.received
