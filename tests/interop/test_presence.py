"""Presence broadcast and probes (RFC 6121 §4)."""
from rookery_harness import NS_CLIENT, Pred, befriend, message, presence, q


async def test_contacts_see_available_and_unavailable(server, clients):
    romeo = await clients.user("romeo")
    juliet = await clients.user("juliet")
    await befriend(romeo, juliet)

    juliet.send_presence(pshow="away", pstatus="On the balcony")
    p = await romeo.expect(presence(frm=juliet.full, type=None) & _status("On the balcony"))
    assert p["show"] == "away"
    # a user's own resources get the broadcast too (RFC 6121 4.4.2)
    await juliet.expect(presence(frm=juliet.full, type=None) & _status("On the balcony"))

    juliet.send_presence(pshow="dnd", pstatus="Do not disturb", ppriority=5)
    p = await romeo.expect(presence(frm=juliet.full, type=None) & _status("Do not disturb"))
    assert p["show"] == "dnd"
    assert p["priority"] == 5

    juliet.send_presence(ptype="unavailable", pstatus="Good night")
    p = await romeo.expect(presence(frm=juliet.full, type="unavailable"))
    assert p["status"] == "Good night"


async def test_graceful_logout_sends_unavailable(server, clients):
    romeo = await clients.user("romeo")
    juliet = await clients.user("juliet")
    await befriend(romeo, juliet)
    juliet_full = juliet.full
    await juliet.close()
    await romeo.expect(presence(frm=juliet_full, type="unavailable"))


async def test_dropped_connection_sends_unavailable(server, clients):
    romeo = await clients.user("romeo")
    juliet = await clients.user("juliet")
    await befriend(romeo, juliet)
    juliet_full = juliet.full
    juliet.abort()  # TCP connection just dropped: no </stream:stream>, no unavailable presence
    await romeo.expect(presence(frm=juliet_full, type="unavailable"), timeout=30)


async def test_login_gets_contacts_presence_via_probe(server, clients):
    romeo = await clients.user("romeo")
    juliet = await clients.user("juliet")
    await befriend(romeo, juliet)
    juliet.send_presence(pshow="chat", pstatus="Here")
    await romeo.expect(presence(frm=juliet.full) & _status("Here"))
    await romeo.close()
    # on initial presence the server probes Juliet and sends her current presence (RFC 6121 4.3)
    romeo2 = await clients.login("romeo", resource="second")
    p = await romeo2.expect(presence(frm=juliet.full, type=None))
    assert p["show"] == "chat" and p["status"] == "Here", p
    # and Juliet is told that Romeo came back
    await juliet.expect(presence(frm=romeo2.full, type=None))


async def test_non_subscriber_gets_no_presence(server, clients):
    romeo = await clients.user("romeo")
    juliet = await clients.user("juliet")
    paris = await clients.user("paris")
    await befriend(romeo, juliet)

    juliet.send_presence(pshow="xa", pstatus="Only for Romeo")
    await romeo.expect(presence(frm=juliet.full) & _status("Only for Romeo"))
    # Stanzas from one session are delivered in order (RFC 6120 10.1): once the marker arrives,
    # any presence Juliet's broadcast wrongly sent to Paris would have arrived before it.
    juliet.send_message(paris.full, "marker")
    await paris.expect(message(frm=juliet.full, body="marker"))
    paris.assert_none(presence(frm_bare=juliet.bare))
    paris.assert_none(presence(frm_bare=romeo.bare))


async def test_directed_presence(server, clients):
    romeo = await clients.user("romeo")
    paris = await clients.user("paris")
    romeo.send_presence(pto=paris.full, pstatus="Directed to Paris")
    p = await paris.expect(presence(frm=romeo.full, type=None))
    assert p["status"] == "Directed to Paris"
    # RFC 6121 4.6.3: when Romeo goes offline, Paris (who got directed presence) is told
    await romeo.close()
    await paris.expect(presence(frm_bare=romeo.bare, type="unavailable"))


async def test_two_resources_see_each_other(server, clients):
    server.add_user("romeo", "password")
    phone = await clients.login("romeo", "password", resource="phone")
    laptop = await clients.login("romeo", "password", resource="laptop")
    await phone.expect(presence(frm=laptop.full, type=None))
    await laptop.expect(presence(frm=phone.full, type=None))
    await laptop.close()
    await phone.expect(presence(frm="romeo@localhost/laptop", type="unavailable"))


def _status(text):
    return Pred(lambda x: (x.findtext(q(NS_CLIENT, "status")) or "") == text, "status=%r" % text)
