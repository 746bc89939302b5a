"""Message Carbons (XEP-0280), driven by slixmpp's xep_0280 plugin."""
from rookery_harness import DEFAULT_PLUGINS, NS_CLIENT, TIMEOUT, Pred, dump, message, q

CARBON_PLUGINS = DEFAULT_PLUGINS + ("xep_0280",)
NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_HINTS = "urn:xmpp:hints"
PASSWORD = "secret-password"


def forwarded(x, kind):
    """The message inside <kind xmlns='urn:xmpp:carbons:2'><forwarded><message/>..., or None."""
    wrapper = x.find(q(NS_CARBONS, kind))
    fwd = wrapper.find(q(NS_FORWARD, "forwarded")) if wrapper is not None else None
    return fwd.find(q(NS_CLIENT, "message")) if fwd is not None else None


def carbon(kind: str, user_bare: str, body: str) -> Pred:
    """A <sent/> or <received/> carbon from the user's own bare JID whose forwarded message has `body`."""
    def fn(x):
        inner = forwarded(x, kind)
        return inner is not None and inner.findtext(q(NS_CLIENT, "body")) == body
    return message(frm=user_bare) & Pred(fn, "%s carbon of body=%r" % (kind, body))


def any_copy_of(body: str) -> Pred:
    """Any carbon (sent or received, from anyone) of a message with `body`."""
    def fn(x):
        return any(forwarded(x, k) is not None and forwarded(x, k).findtext(q(NS_CLIENT, "body")) == body
                   for k in ("sent", "received"))
    return message() & Pred(fn, "carbon copy of body=%r" % body)


async def enable_carbons(client):
    reply = await client.reply_of(client.xmpp.plugin["xep_0280"].enable(timeout=TIMEOUT))
    assert reply["type"] == "result", "%s: enabling carbons failed: %s" % (client.name, dump(reply))


async def alice_and_bob(server, clients, *resources):
    server.add_user("alice", PASSWORD)
    alice = [await clients.login("alice", PASSWORD, resource=r, plugins=CARBON_PLUGINS) for r in resources]
    bob = await clients.user("bob", PASSWORD, plugins=CARBON_PLUGINS)
    return alice, bob


async def test_carbons_feature_advertised(server, clients):
    (alice,), _bob = await alice_and_bob(server, clients, "phone")
    info = await alice.xmpp.plugin["xep_0030"].get_info(jid=server.domain, local=False, timeout=TIMEOUT)
    assert NS_CARBONS in info["disco_info"]["features"], \
        "server disco#info lacks %s: %s" % (NS_CARBONS, sorted(info["disco_info"]["features"]))


async def test_received_carbon(server, clients):
    (phone, laptop), bob = await alice_and_bob(server, clients, "phone", "laptop")
    await enable_carbons(phone)
    await enable_carbons(laptop)
    bob.send_message(phone.full, "Are you at home?")
    await phone.expect(message(frm=bob.full, body="Are you at home?"))
    c = await laptop.expect(carbon("received", "alice@localhost", "Are you at home?"),
                            what="received carbon of Bob's message to the phone")
    assert c["to"] == laptop.jid, "carbon should be addressed to the laptop's full JID: %s" % dump(c)
    assert c["type"] == "chat", "carbon should keep the type 'chat': %s" % dump(c)
    inner = forwarded(c.xml, "received")
    assert inner.get("from") == bob.full and inner.get("to") == phone.full, \
        "forwarded message should be Bob's original (from %s to %s): %s" % (bob.full, phone.full, dump(c))
    # the addressee itself gets the original, not a copy (XEP-0280 §6)
    await phone.ping_server()
    phone.assert_none(any_copy_of("Are you at home?"))


async def test_sent_carbon(server, clients):
    (phone, laptop), bob = await alice_and_bob(server, clients, "phone", "laptop")
    await enable_carbons(phone)
    await enable_carbons(laptop)
    phone.send_message(bob.full, "On my way")
    await bob.expect(message(frm=phone.full, body="On my way"))
    c = await laptop.expect(carbon("sent", "alice@localhost", "On my way"),
                            what="sent carbon of the phone's message to Bob")
    assert c["to"] == laptop.jid, "carbon should be addressed to the laptop's full JID: %s" % dump(c)
    inner = forwarded(c.xml, "sent")
    assert inner.get("from") == phone.full and inner.get("to") == bob.full, \
        "forwarded message should be the phone's original (from %s to %s): %s" % (phone.full, bob.full, dump(c))
    # the sender gets no copy of its own message (§7: SHOULD NOT)
    await phone.ping_server()
    phone.assert_none(any_copy_of("On my way"))


async def test_private_message_not_copied(server, clients):
    (phone, laptop), bob = await alice_and_bob(server, clients, "phone", "laptop")
    await enable_carbons(phone)
    await enable_carbons(laptop)
    private = ("<message xmlns='jabber:client' to='%s' type='chat'><body>%s</body>"
               "<private xmlns='urn:xmpp:carbons:2'/><no-copy xmlns='urn:xmpp:hints'/></message>")

    phone.send_raw(private % (bob.full, "outgoing secret"))
    await bob.expect(message(frm=phone.full, body="outgoing secret"))
    bob.send_raw(private % (phone.full, "incoming secret"))
    await phone.expect(message(frm=bob.full, body="incoming secret"))
    # barrier: ordinary messages on the same paths are copied, so any copy of the private ones came first
    phone.send_message(bob.full, "outgoing marker")
    await laptop.expect(carbon("sent", "alice@localhost", "outgoing marker"))
    bob.send_message(phone.full, "incoming marker")
    await laptop.expect(carbon("received", "alice@localhost", "incoming marker"))
    laptop.assert_none(any_copy_of("outgoing secret"), what="sent carbon of a <private/> message")
    laptop.assert_none(any_copy_of("incoming secret"), what="received carbon of a <private/> message")


async def test_resource_without_carbons_gets_no_copies(server, clients):
    (phone, laptop, tablet), bob = await alice_and_bob(server, clients, "phone", "laptop", "tablet")
    await enable_carbons(phone)
    await enable_carbons(laptop)  # the tablet never enables carbons
    bob.send_message(phone.full, "for the phone")
    phone.send_message(bob.full, "from the phone")
    await laptop.expect(carbon("received", "alice@localhost", "for the phone"))
    await laptop.expect(carbon("sent", "alice@localhost", "from the phone"))
    # barrier: later direct messages from both senders to the tablet
    bob.send_message(tablet.full, "bob marker")
    phone.send_message(tablet.full, "phone marker")
    await tablet.expect(message(frm=bob.full, body="bob marker"))
    await tablet.expect(message(frm=phone.full, body="phone marker"))
    tablet.assert_none(any_copy_of("for the phone"), what="received carbon at a resource without carbons")
    tablet.assert_none(any_copy_of("from the phone"), what="sent carbon at a resource without carbons")


async def test_disable_stops_copies(server, clients):
    (phone, laptop), bob = await alice_and_bob(server, clients, "phone", "laptop")
    await enable_carbons(phone)
    await enable_carbons(laptop)
    reply = await laptop.reply_of(laptop.xmpp.plugin["xep_0280"].disable(timeout=TIMEOUT))
    assert reply["type"] == "result", "disabling carbons failed: %s" % dump(reply)
    bob.send_message(phone.full, "after disable")
    await phone.expect(message(frm=bob.full, body="after disable"))
    bob.send_message(laptop.full, "marker")
    await laptop.expect(message(frm=bob.full, body="marker"))
    laptop.assert_none(any_copy_of("after disable"), what="carbon after <disable/>")
