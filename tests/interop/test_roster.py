"""Roster management and presence subscriptions (RFC 6121 §2 and §3)."""
from rookery_harness import NS_ROSTER, befriend, message, presence, q, roster_push


def roster_items(iq):
    query = iq.xml.find(q(NS_ROSTER, "query"))
    assert query is not None, "roster result without <query/>"
    return {item.get("jid"): item for item in query.findall(q(NS_ROSTER, "item"))}


async def fetch_roster(client):
    reply = await client.iq(client.xmpp.make_iq_get(queryxmlns=NS_ROSTER))
    assert reply["type"] == "result", reply
    return roster_items(reply)


async def test_roster_add_update_remove(server, clients):
    romeo = await clients.user("romeo")
    item = "<query xmlns='jabber:iq:roster'><item jid='nurse@localhost' name='Nurse'><group>Servants</group></item></query>"
    reply = await romeo.iq_set(item)
    assert reply["type"] == "result", reply
    push = await romeo.expect(roster_push("nurse@localhost", subscription="none"))
    pushed = push.xml.find(q(NS_ROSTER, "query")).find(q(NS_ROSTER, "item"))
    assert pushed.get("name") == "Nurse"
    assert [g.text for g in pushed.findall(q(NS_ROSTER, "group"))] == ["Servants"]

    items = await fetch_roster(romeo)
    assert set(items) == {"nurse@localhost"}
    assert items["nurse@localhost"].get("name") == "Nurse"
    assert items["nurse@localhost"].get("subscription", "none") == "none"

    # rename
    reply = await romeo.iq_set("<query xmlns='jabber:iq:roster'><item jid='nurse@localhost' name='Angelica'/></query>")
    assert reply["type"] == "result", reply
    push = await romeo.expect(roster_push("nurse@localhost"))
    assert push.xml.find(q(NS_ROSTER, "query")).find(q(NS_ROSTER, "item")).get("name") == "Angelica"

    # remove
    reply = await romeo.iq_set("<query xmlns='jabber:iq:roster'><item jid='nurse@localhost' subscription='remove'/></query>")
    assert reply["type"] == "result", reply
    await romeo.expect(roster_push("nurse@localhost", subscription="remove"))
    assert await fetch_roster(romeo) == {}


async def test_roster_persists_across_restart(server, clients):
    server.add_user("romeo", "password")
    romeo = await clients.login("romeo", "password")
    reply = await romeo.iq_set("<query xmlns='jabber:iq:roster'><item jid='tybalt@localhost' name='Cat'/></query>")
    assert reply["type"] == "result", reply
    await romeo.close()
    server.restart()
    romeo2 = await clients.login("romeo", "password")
    items = await fetch_roster(romeo2)
    assert items["tybalt@localhost"].get("name") == "Cat"


async def test_subscription_both_ways(server, clients):
    romeo = await clients.user("romeo")
    juliet = await clients.user("juliet")

    # Romeo asks Juliet (RFC 6121 3.1.2: roster push with ask='subscribe' to the user)
    romeo.send_presence(pto=juliet.bare, ptype="subscribe")
    await romeo.expect(roster_push(juliet.bare, subscription="none", ask="subscribe"))
    req = await juliet.expect(presence(frm_bare=romeo.bare, type="subscribe"))
    assert req["from"].bare == romeo.bare and not req["from"].resource, \
        "subscription requests carry the bare JID (RFC 6121 3.1.2): %s" % req

    # Juliet accepts
    juliet.send_presence(pto=romeo.bare, ptype="subscribed")
    await juliet.expect(roster_push(romeo.bare, subscription="from"))
    await romeo.expect(presence(frm_bare=juliet.bare, type="subscribed"))
    await romeo.expect(roster_push(juliet.bare, subscription="to"))
    await romeo.expect(presence(frm=juliet.full, type=None), what="Juliet's presence once subscribed")

    # and the other way round
    juliet.send_presence(pto=romeo.bare, ptype="subscribe")
    await juliet.expect(roster_push(romeo.bare, subscription="from", ask="subscribe"))
    await romeo.expect(presence(frm_bare=juliet.bare, type="subscribe"))
    romeo.send_presence(pto=juliet.bare, ptype="subscribed")
    await romeo.expect(roster_push(juliet.bare, subscription="both"))
    await juliet.expect(presence(frm_bare=romeo.bare, type="subscribed"))
    await juliet.expect(roster_push(romeo.bare, subscription="both"))
    await juliet.expect(presence(frm=romeo.full, type=None))

    r_items = await fetch_roster(romeo)
    j_items = await fetch_roster(juliet)
    assert r_items[juliet.bare].get("subscription") == "both"
    assert r_items[juliet.bare].get("ask") is None
    assert j_items[romeo.bare].get("subscription") == "both"
    assert j_items[romeo.bare].get("ask") is None


async def test_subscription_denied(server, clients):
    romeo = await clients.user("romeo")
    rosaline = await clients.user("rosaline")
    romeo.send_presence(pto=rosaline.bare, ptype="subscribe")
    await rosaline.expect(presence(frm_bare=romeo.bare, type="subscribe"))
    rosaline.send_presence(pto=romeo.bare, ptype="unsubscribed")
    await romeo.expect(presence(frm_bare=rosaline.bare, type="unsubscribed"))
    await romeo.expect(roster_push(rosaline.bare, subscription="none", ask=None))
    items = await fetch_roster(romeo)
    assert items.get(rosaline.bare) is None or (
        items[rosaline.bare].get("subscription", "none") == "none" and items[rosaline.bare].get("ask") is None)
    # no presence leaks after the refusal
    rosaline.send_presence(pstatus="busy")
    romeo.send_presence(pto=rosaline.bare, ptype="probe")  # a client-sent probe must not reveal presence either
    rosaline.send_message(romeo.full, "marker")  # in-order delivery: anything broadcast before arrives first
    await romeo.expect(message(frm=rosaline.full, body="marker"))
    romeo.assert_none(presence(frm_bare=rosaline.bare, type=None))


async def test_remove_contact_cancels_both_subscriptions(server, clients):
    romeo = await clients.user("romeo")
    juliet = await clients.user("juliet")
    await befriend(romeo, juliet)

    reply = await romeo.iq_set(
        "<query xmlns='jabber:iq:roster'><item jid='%s' subscription='remove'/></query>" % juliet.bare)
    assert reply["type"] == "result", reply
    await romeo.expect(roster_push(juliet.bare, subscription="remove"))
    # RFC 6121 2.5.2: the contact sees unsubscribe + unsubscribed, and Romeo's resources go unavailable
    await juliet.expect(presence(frm_bare=romeo.bare, type="unsubscribe"))
    await juliet.expect(presence(frm_bare=romeo.bare, type="unsubscribed"))
    await juliet.expect(presence(frm=romeo.full, type="unavailable"))
    await juliet.expect(roster_push(romeo.bare, subscription="none"))
    assert await fetch_roster(romeo) == {}
    j_items = await fetch_roster(juliet)
    assert j_items[romeo.bare].get("subscription", "none") == "none"
