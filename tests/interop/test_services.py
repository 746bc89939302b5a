"""Server services: disco (XEP-0030), ping (XEP-0199), version (XEP-0092), time (XEP-0202),
last activity (XEP-0012), vcard-temp (XEP-0054), private XML storage (XEP-0049)."""
import datetime
import xml.etree.ElementTree as ET

from rookery_harness import DOMAIN, befriend, dump, error_condition, presence, q

NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_VERSION = "jabber:iq:version"
NS_TIME = "urn:xmpp:time"
NS_LAST = "jabber:iq:last"
NS_VCARD = "vcard-temp"
NS_PRIVATE = "jabber:iq:private"

SERVER_FEATURES = {
    NS_DISCO_INFO,
    NS_DISCO_ITEMS,
    "urn:xmpp:ping",
    NS_VERSION,
    NS_TIME,
    NS_LAST,
    NS_VCARD,
    NS_PRIVATE,
}


async def test_server_disco_info(server, clients):
    romeo = await clients.user("romeo")
    info = await romeo.xmpp.plugin["xep_0030"].get_info(jid=DOMAIN, local=False, timeout=10)
    assert info["type"] == "result", info
    assert info["from"] == DOMAIN
    features = set(info["disco_info"]["features"])
    missing = SERVER_FEATURES - features
    assert not missing, "server disco#info lacks %s; has %s" % (sorted(missing), sorted(features))
    identities = info["disco_info"]["identities"]
    assert any(cat == "server" and typ == "im" for cat, typ, _lang, _name in identities), identities


async def test_server_disco_items(server, clients):
    romeo = await clients.user("romeo")
    reply = await romeo.iq_get("<query xmlns='%s'/>" % NS_DISCO_ITEMS, to=DOMAIN)
    assert reply["type"] == "result", reply


async def test_account_disco_info(server, clients):
    """Like disco_self.scs: the account's bare JID answers disco#info on the user's behalf."""
    romeo = await clients.user("romeo")
    reply = await romeo.iq_get("<query xmlns='%s'/>" % NS_DISCO_INFO, to=romeo.bare)
    assert reply["type"] == "result", reply
    query = reply.xml.find(q(NS_DISCO_INFO, "query"))
    ids = [(i.get("category"), i.get("type")) for i in query.findall(q(NS_DISCO_INFO, "identity"))]
    assert ("account", "registered") in ids, dump(reply)


async def test_unknown_iq_gets_service_unavailable(server, clients):
    romeo = await clients.user("romeo")
    reply = await romeo.iq_get("<query xmlns='urn:example:no-such-protocol'/>", to=DOMAIN)
    assert reply["type"] == "error"
    assert error_condition(reply) in ("service-unavailable", "feature-not-implemented"), dump(reply)


async def test_ping_server(server, clients):
    romeo = await clients.user("romeo")
    reply = await romeo.xmpp.plugin["xep_0199"].send_ping(DOMAIN, timeout=10)
    assert reply["type"] == "result"
    assert reply["from"] == DOMAIN
    rtt = await romeo.xmpp.plugin["xep_0199"].ping(DOMAIN, timeout=10)
    assert rtt < 10


async def test_ping_between_clients(server, clients):
    """An IQ to a full JID is routed to that client, and its answer comes back (slixmpp answers pings)."""
    romeo = await clients.user("romeo")
    juliet = await clients.user("juliet")
    reply = await romeo.xmpp.plugin["xep_0199"].send_ping(juliet.full, timeout=10)
    assert reply["type"] == "result"
    assert reply["from"] == juliet.jid


async def test_software_version(server, clients):
    romeo = await clients.user("romeo")
    reply = await romeo.xmpp.plugin["xep_0092"].get_version(DOMAIN, timeout=10)
    assert reply["type"] == "result", reply
    name = reply["software_version"]["name"]
    version = reply["software_version"]["version"]
    assert "rookery" in name.lower(), name
    assert version, "empty version"


async def test_entity_time(server, clients):
    romeo = await clients.user("romeo")
    reply = await romeo.xmpp.plugin["xep_0202"].get_entity_time(DOMAIN, timeout=10)
    assert reply["type"] == "result", reply
    t = reply.xml.find(q(NS_TIME, "time"))
    utc = t.findtext(q(NS_TIME, "utc"))
    tzo = t.findtext(q(NS_TIME, "tzo"))
    assert utc and tzo, dump(reply)
    assert tzo == "Z" or (len(tzo) == 6 and tzo[0] in "+-" and tzo[3] == ":"), tzo
    when = datetime.datetime.fromisoformat(utc.replace("Z", "+00:00"))
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((when - now).total_seconds()) < 60, (utc, now)


async def test_last_activity_of_contact(server, clients):
    romeo = await clients.user("romeo")
    juliet = await clients.user("juliet")
    paris = await clients.user("paris")
    await befriend(romeo, juliet)
    juliet_full = juliet.full
    juliet.send_presence(ptype="unavailable", pstatus="Gone to Mantua")
    await romeo.expect(presence(frm=juliet_full, type="unavailable"))
    await juliet.close()

    reply = await romeo.iq_get("<query xmlns='%s'/>" % NS_LAST, to=juliet.bare)
    assert reply["type"] == "result", dump(reply)
    query = reply.xml.find(q(NS_LAST, "query"))
    seconds = int(query.get("seconds"))
    assert 0 <= seconds < 60, seconds
    if (query.text or "").strip():
        assert query.text.strip() == "Gone to Mantua", dump(reply)

    # not subscribed to Juliet's presence: forbidden (XEP-0012 §4)
    reply = await paris.iq_get("<query xmlns='%s'/>" % NS_LAST, to=juliet.bare)
    assert reply["type"] == "error", dump(reply)
    assert error_condition(reply) == "forbidden", dump(reply)


async def test_vcard_set_and_get(server, clients):
    romeo = await clients.user("romeo")
    juliet = await clients.user("juliet")
    vcard = ("<vCard xmlns='vcard-temp'><FN>Romeo Montague</FN><NICKNAME>Romeo</NICKNAME>"
             "<URL>https://example.org/romeo</URL></vCard>")
    reply = await romeo.iq_set(vcard)
    assert reply["type"] == "result", dump(reply)

    own = await romeo.iq_get("<vCard xmlns='vcard-temp'/>")
    assert own["type"] == "result", dump(own)
    card = own.xml.find(q(NS_VCARD, "vCard"))
    assert card.findtext(q(NS_VCARD, "FN")) == "Romeo Montague"
    assert card.findtext(q(NS_VCARD, "NICKNAME")) == "Romeo"

    # anyone may read it, by the bare JID (XEP-0054 §3.2)
    other = await juliet.iq_get("<vCard xmlns='vcard-temp'/>", to=romeo.bare)
    assert other["type"] == "result", dump(other)
    card = other.xml.find(q(NS_VCARD, "vCard"))
    assert card.findtext(q(NS_VCARD, "URL")) == "https://example.org/romeo"

    # replace, then persist across a restart
    reply = await romeo.iq_set("<vCard xmlns='vcard-temp'><FN>Romeo</FN></vCard>")
    assert reply["type"] == "result", dump(reply)
    await romeo.close()
    await juliet.close()
    server.restart()
    juliet = await clients.login("juliet")
    again = await juliet.iq_get("<vCard xmlns='vcard-temp'/>", to="romeo@localhost")
    card = again.xml.find(q(NS_VCARD, "vCard"))
    assert card.findtext(q(NS_VCARD, "FN")) == "Romeo"
    assert card.find(q(NS_VCARD, "NICKNAME")) is None, "vCard set must replace the whole card"


async def test_vcard_of_user_without_one(server, clients):
    romeo = await clients.user("romeo")
    await clients.user("juliet")
    reply = await romeo.iq_get("<vCard xmlns='vcard-temp'/>", to="juliet@localhost")
    # XEP-0054 §3.2: an empty vCard or item-not-found
    if reply["type"] == "error":
        assert error_condition(reply) == "item-not-found", dump(reply)
    else:
        card = reply.xml.find(q(NS_VCARD, "vCard"))
        assert card is not None and len(card) == 0, dump(reply)


async def test_vcard_of_someone_else_cannot_be_set(server, clients):
    romeo = await clients.user("romeo")
    await clients.user("juliet")
    reply = await romeo.iq_set("<vCard xmlns='vcard-temp'><FN>Hacked</FN></vCard>", to="juliet@localhost")
    assert reply["type"] == "error", dump(reply)


async def test_private_xml_storage(server, clients):
    romeo = await clients.user("romeo")
    juliet = await clients.user("juliet")
    store = ("<query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'>"
             "<defaultnick>Hamlet</defaultnick></exodus></query>")
    reply = await romeo.iq_set(store)
    assert reply["type"] == "result", dump(reply)

    reply = await romeo.iq_get("<query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/></query>")
    assert reply["type"] == "result", dump(reply)
    got = reply.xml.find(q(NS_PRIVATE, "query")).find(q("exodus:prefs", "exodus"))
    assert got is not None and got.findtext(q("exodus:prefs", "defaultnick")) == "Hamlet", dump(reply)

    # a namespace never stored comes back empty
    reply = await romeo.iq_get("<query xmlns='jabber:iq:private'><other xmlns='urn:example:none'/></query>")
    assert reply["type"] == "result", dump(reply)
    got = reply.xml.find(q(NS_PRIVATE, "query")).find(q("urn:example:none", "other"))
    assert got is not None and len(got) == 0, dump(reply)

    # another user's private storage is off limits (XEP-0049 §3)
    reply = await juliet.iq_get("<query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/></query>",
                                to=romeo.bare)
    assert reply["type"] == "error", dump(reply)
    assert error_condition(reply) in ("forbidden", "not-allowed", "service-unavailable"), dump(reply)

    # persistent across a restart
    await romeo.close()
    await juliet.close()
    server.restart()
    romeo = await clients.login("romeo")
    reply = await romeo.iq_get("<query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/></query>")
    got = reply.xml.find(q(NS_PRIVATE, "query")).find(q("exodus:prefs", "exodus"))
    assert got.findtext(q("exodus:prefs", "defaultnick")) == "Hamlet", ET.tostring(reply.xml)
