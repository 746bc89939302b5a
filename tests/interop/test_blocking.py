"""Blocking Command (XEP-0191), driven by slixmpp's xep_0191 plugin."""
import pytest
from slixmpp import JID

from rookery_harness import (DEFAULT_PLUGINS, NS_CLIENT, TIMEOUT, Pred, befriend, dump, error_condition, message,
                             presence, q)

BLOCK_PLUGINS = DEFAULT_PLUGINS + ("xep_0191",)
NS_BLOCKING = "urn:xmpp:blocking"
NS_BLOCKING_ERRORS = "urn:xmpp:blocking:errors"
PASSWORD = "secret-password"


def block_push(kind: str, jid: str) -> Pred:
    """An <iq type='set'> push with <block/> or <unblock/> naming `jid`."""
    def fn(x):
        if x.tag != q(NS_CLIENT, "iq") or x.get("type") != "set":
            return False
        el = x.find(q(NS_BLOCKING, kind))
        return el is not None and [i.get("jid") for i in el.findall(q(NS_BLOCKING, "item"))] == [jid]
    return Pred(fn, "%s push for %s" % (kind, jid))


def status(text: str) -> Pred:
    return Pred(lambda x: (x.findtext(q(NS_CLIENT, "status")) or "") == text, "status=%r" % text)


async def blocklist(client) -> set:
    jids = await client.xmpp.plugin["xep_0191"].get_blocked_jids(timeout=TIMEOUT)
    return {JID(j).bare for j in jids}


async def setup(server, clients):
    """Alice on two resources (both have fetched the blocklist, so both get pushes), Bob, mutual subscription."""
    server.add_user("alice", PASSWORD)
    phone = await clients.login("alice", PASSWORD, resource="phone", plugins=BLOCK_PLUGINS)
    laptop = await clients.login("alice", PASSWORD, resource="laptop", plugins=BLOCK_PLUGINS)
    bob = await clients.user("bob", PASSWORD, plugins=BLOCK_PLUGINS)
    await befriend(phone, bob)
    await bob.expect(presence(frm=laptop.full, type=None), what="the laptop's presence after subscribing")
    for c in (phone, laptop):
        assert await blocklist(c) == set(), "%s: a new account's blocklist should be empty" % c.name
    return phone, laptop, bob


async def block(client, jid):
    err = await client.reply_of(client.xmpp.plugin["xep_0191"].block(jid, timeout=TIMEOUT))
    assert err is None or err["type"] == "result", "%s: blocking %s failed: %s" % (client.name, jid, dump(err))


async def unblock(client, jid):
    err = await client.reply_of(client.xmpp.plugin["xep_0191"].unblock(jid, timeout=TIMEOUT))
    assert err is None or err["type"] == "result", "%s: unblocking %s failed: %s" % (client.name, jid, dump(err))


async def test_block_and_unblock(server, clients):
    phone, laptop, bob = await setup(server, clients)

    await block(phone, bob.bare)
    assert await blocklist(phone) == {bob.bare}, "blocklist after blocking Bob should be exactly {bob}"
    await laptop.expect(block_push("block", bob.bare), what="block push at Alice's other resource")
    # XEP-0191 §3.3: the blocked contact stops seeing the user: unavailable from every resource
    for c in (phone, laptop):
        await bob.expect(presence(frm=c.full, type="unavailable"),
                         what="unavailable presence from %s when Bob was blocked" % c.full)

    # Bob -> Alice bounces with service-unavailable (and never reaches Alice)
    bob.send_message(phone.full, "Let me in")
    err = await bob.expect(message(frm=phone.full, type="error"), what="bounce of Bob's message to blocked Alice")
    assert error_condition(err) == "service-unavailable", \
        "a blocked contact's message should bounce with service-unavailable: %s" % dump(err)
    bob.send_message(laptop.bare, "To the bare JID")
    err = await bob.expect(message(frm_bare=laptop.bare, type="error"), what="bounce of Bob's message to the bare JID")
    assert error_condition(err) == "service-unavailable", \
        "a blocked contact's message to the bare JID should bounce with service-unavailable: %s" % dump(err)

    # Alice -> Bob bounces with not-acceptable + <blocked/>
    phone.send_message(bob.full, "Hello?")
    err = await phone.expect(message(frm=bob.full, type="error"), what="bounce of Alice's message to blocked Bob")
    assert error_condition(err) == "not-acceptable", \
        "a message to a blocked contact should bounce with not-acceptable: %s" % dump(err)
    assert err.xml.find(q(NS_CLIENT, "error")).find(q(NS_BLOCKING_ERRORS, "blocked")) is not None, \
        "the bounce should carry <blocked xmlns='urn:xmpp:blocking:errors'/>: %s" % dump(err)
    for c in (phone, laptop):
        c.assert_none(message(frm_bare=bob.bare, type="chat"), what="Bob's messages while blocked")
    bob.assert_none(message(frm_bare=phone.bare, type="chat"), what="Alice's message to Bob while blocked")

    # unblock: push, current presence to Bob (§3.4), delivery both ways
    await unblock(phone, bob.bare)
    await laptop.expect(block_push("unblock", bob.bare), what="unblock push at Alice's other resource")
    assert await blocklist(laptop) == set(), "blocklist after unblocking Bob should be empty"
    for c in (phone, laptop):
        await bob.expect(presence(frm=c.full, type=None),
                         what="%s's current presence after unblocking (XEP-0191 3.4)" % c.full)
    bob.send_message(phone.full, "Back again")
    await phone.expect(message(frm=bob.full, body="Back again"))
    phone.send_message(bob.full, "Welcome back")
    await bob.expect(message(frm=phone.full, body="Welcome back"))
    phone.send_presence(pstatus="Visible again")
    await bob.expect(presence(frm=phone.full, type=None) & status("Visible again"),
                     what="Alice's presence broadcast after unblocking")


async def test_blocked_contact_does_not_see_presence_updates(server, clients):
    phone, laptop, bob = await setup(server, clients)
    await block(phone, bob.bare)
    await bob.expect(presence(frm=phone.full, type="unavailable"))
    phone.send_presence(pstatus="Hidden from Bob")
    await laptop.expect(presence(frm=phone.full) & status("Hidden from Bob"))
    # barrier: Alice's broadcast is routed before her ping is answered; Bob's ping answer
    # follows anything already queued for him
    await phone.ping_server()
    await bob.ping_server()
    bob.assert_none(presence(frm_bare=phone.bare, type=None),
                    what="Alice's presence update while Alice blocks Bob (XEP-0191 3.3: she must appear offline)")


async def test_user_gets_no_presence_from_blocked_contact(server, clients):
    phone, laptop, bob = await setup(server, clients)
    await block(laptop, bob.bare)
    await phone.expect(block_push("block", bob.bare))
    await bob.expect(presence(frm=phone.full, type="unavailable"))
    bob.send_presence(pstatus="Bob is here")
    await bob.expect(presence(frm=bob.full) & status("Bob is here"))
    await bob.ping_server()
    await phone.ping_server()
    await laptop.ping_server()
    for c in (phone, laptop):
        c.assert_none(presence(frm_bare=bob.bare) & status("Bob is here"),
                      what="Bob's presence broadcast reaching Alice while she blocks him (XEP-0191 3.3)")
    bob.assert_none(presence(frm_bare=phone.bare, type="error"),
                    what="an error for presence to a blocking user (must be dropped silently)")


async def test_iq_from_blocked_contact_refused(server, clients):
    phone, laptop, bob = await setup(server, clients)
    await block(phone, bob.bare)
    await laptop.expect(block_push("block", bob.bare))
    reply = await bob.iq_get("<ping xmlns='urn:xmpp:ping'/>", to=phone.full)
    assert reply["type"] == "error" and error_condition(reply) == "service-unavailable", \
        "an IQ get from a blocked contact should get service-unavailable (XEP-0191 3.3): %s" % dump(reply)


async def test_block_persists_across_sessions(server, clients):
    phone, laptop, bob = await setup(server, clients)
    await block(phone, bob.bare)
    await laptop.close()
    await phone.close()
    again = await clients.login("alice", PASSWORD, resource="again", plugins=BLOCK_PLUGINS)
    assert await blocklist(again) == {bob.bare}, "the blocklist should survive logging out"
    bob.send_message(again.full, "Still blocked?")
    err = await bob.expect(message(frm=again.full, type="error"), what="bounce after Alice logged in again")
    assert error_condition(err) == "service-unavailable", \
        "the block should still apply in a new session: %s" % dump(err)
