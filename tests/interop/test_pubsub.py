"""Publish-subscribe (XEP-0060) at pubsub.localhost, PEP (XEP-0163) with entity capabilities
(XEP-0115), avatars (XEP-0084) and bookmarks (XEP-0402), driven by slixmpp's plugins."""
import hashlib

from slixmpp.plugins.xep_0004 import Form

from rookery_harness import DEFAULT_PLUGINS, NS_CLIENT, Pred, befriend, dump, error_condition, q

SERVICE = "pubsub.localhost"
NS_EVENT = "http://jabber.org/protocol/pubsub#event"
NS_ATOM = "http://www.w3.org/2005/Atom"
PUBSUB_PLUGINS = DEFAULT_PLUGINS + ("xep_0060",)
PEP_PLUGINS = DEFAULT_PLUGINS + ("xep_0060", "xep_0115", "xep_0163", "xep_0084", "xep_0402")


def pubsub_event(frm: str, node: str) -> Pred:
    def fn(x):
        if x.tag != q(NS_CLIENT, "message") or x.get("from") != frm:
            return False
        ev = x.find(q(NS_EVENT, "event"))
        return ev is not None and any(c.get("node") == node for c in ev)
    return Pred(fn, "pubsub event from %s on %s" % (frm, node))


def entry(title: str):
    from slixmpp.xmlstream import ET
    e = ET.Element("{%s}entry" % NS_ATOM)
    t = ET.SubElement(e, "{%s}title" % NS_ATOM)
    t.text = title
    return e


async def test_service_create_publish_subscribe_retract_delete(server, clients):
    romeo = await clients.user("romeo", plugins=PUBSUB_PLUGINS)
    juliet = await clients.user("juliet", plugins=PUBSUB_PLUGINS)
    ps_r = romeo.xmpp.plugin["xep_0060"]
    ps_j = juliet.xmpp.plugin["xep_0060"]

    form = Form()
    form["type"] = "submit"
    form.add_field(var="FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/pubsub#node_config")
    form.add_field(var="pubsub#title", value="Musings")
    form.add_field(var="pubsub#max_items", value="10")
    reply = await romeo.reply_of(ps_r.create_node(SERVICE, "musings", config=form))
    assert reply["type"] == "result", dump(reply)

    reply = await juliet.reply_of(ps_j.subscribe(SERVICE, "musings", bare=False))
    assert reply["type"] == "result", dump(reply)
    assert reply["pubsub"]["subscription"]["subscription"] == "subscribed", dump(reply)

    reply = await romeo.reply_of(ps_r.publish(SERVICE, "musings", id="first", payload=entry("Soliloquy")))
    assert reply["type"] == "result", dump(reply)
    msg = await juliet.expect(pubsub_event(SERVICE, "musings"))
    item = msg.xml.find(".//{%s}item" % NS_EVENT)
    assert item.get("id") == "first" and item.get("publisher") == romeo.bare, dump(msg)
    assert item.find(".//{%s}title" % NS_ATOM).text == "Soliloquy"

    reply = await juliet.reply_of(ps_j.get_items(SERVICE, "musings"))
    assert reply["type"] == "result", dump(reply)
    assert [i["id"] for i in reply["pubsub"]["items"]] == ["first"]

    # Only publishers may publish.
    reply = await juliet.reply_of(ps_j.publish(SERVICE, "musings", payload=entry("Mine")))
    assert error_condition(reply) == "forbidden", dump(reply)

    reply = await romeo.reply_of(ps_r.retract(SERVICE, "musings", "first", notify=True))
    assert reply["type"] == "result", dump(reply)
    msg = await juliet.expect(pubsub_event(SERVICE, "musings"))
    assert msg.xml.find(".//{%s}retract" % NS_EVENT).get("id") == "first", dump(msg)

    reply = await romeo.reply_of(ps_r.delete_node(SERVICE, "musings"))
    assert reply["type"] == "result", dump(reply)
    msg = await juliet.expect(pubsub_event(SERVICE, "musings"))
    assert msg.xml.find(".//{%s}delete" % NS_EVENT) is not None, dump(msg)


async def test_service_node_configuration_round_trip(server, clients):
    romeo = await clients.user("romeo", plugins=PUBSUB_PLUGINS)
    ps = romeo.xmpp.plugin["xep_0060"]
    reply = await romeo.reply_of(ps.create_node(SERVICE, "conf"))
    assert reply["type"] == "result", dump(reply)
    reply = await romeo.reply_of(ps.get_node_config(SERVICE, "conf"))
    assert reply["type"] == "result", dump(reply)
    form = reply["pubsub_owner"]["configure"]["form"]
    values = form.get_values()
    assert values["pubsub#access_model"] == "open"
    assert values["pubsub#max_items"] == "20"
    form = Form()
    form["type"] = "submit"
    form.add_field(var="FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/pubsub#node_config")
    form.add_field(var="pubsub#access_model", value="whitelist")
    reply = await romeo.reply_of(ps.set_node_config(SERVICE, "conf", form))
    assert reply["type"] == "result", dump(reply)
    reply = await romeo.reply_of(ps.get_node_config(SERVICE, "conf"))
    assert reply["pubsub_owner"]["configure"]["form"].get_values()["pubsub#access_model"] == "whitelist"


async def test_pep_avatar_reaches_contacts_whose_caps_ask_for_it(server, clients):
    romeo = await clients.user("romeo", plugins=PEP_PLUGINS)
    juliet = await clients.user("juliet", plugins=PEP_PLUGINS)
    # Mercutio's client does not ask for avatar notifications.
    mercutio = await clients.user("mercutio", plugins=DEFAULT_PLUGINS + ("xep_0060", "xep_0115"))
    await befriend(romeo, juliet)
    await befriend(romeo, mercutio)
    # slixmpp computes its caps after the initial presence went out: announce them again. The
    # server asks what they mean (XEP-0115 §6.2) unless another client already told it: the
    # question arrives before the first ping's answer, and the client's reply goes out before
    # the second ping.
    for c in (juliet, mercutio):
        c.send_presence()
        await c.ping_server()
        await c.ping_server()

    avatar = b"\x89PNG\r\n\x1a\n not quite an image"
    avatar_id = hashlib.sha1(avatar).hexdigest()
    av = romeo.xmpp.plugin["xep_0084"]
    reply = await romeo.reply_of(av.publish_avatar(avatar))
    assert reply["type"] == "result", dump(reply)
    reply = await romeo.reply_of(av.publish_avatar_metadata(
        {"id": avatar_id, "type": "image/png", "bytes": len(avatar)}))
    assert reply["type"] == "result", dump(reply)

    msg = await juliet.expect(pubsub_event(romeo.bare, "urn:xmpp:avatar:metadata"))
    info = msg.xml.find(".//{urn:xmpp:avatar:metadata}info")
    assert info is not None and info.get("id") == avatar_id, dump(msg)

    # Juliet fetches the data with the plugin.
    reply = await juliet.reply_of(av.__class__.retrieve_avatar(juliet.xmpp.plugin["xep_0084"], romeo.bare, avatar_id))
    assert reply["type"] == "result", dump(reply)
    data = reply.xml.find(".//{urn:xmpp:avatar:data}data")
    assert data is not None

    # Barrier: Romeo's next presence reaches both; only then check Mercutio got no event.
    romeo.send_presence()
    p = await mercutio.expect(Pred(lambda x: x.tag == q(NS_CLIENT, "presence") and x.get("from") == romeo.full,
                                   "Romeo's presence"))
    photo = p.xml.find("{vcard-temp:x:update}x/{vcard-temp:x:update}photo")
    assert photo is not None and photo.text == avatar_id, dump(p)
    mercutio.assert_none(pubsub_event(romeo.bare, "urn:xmpp:avatar:metadata"))


async def test_bookmarks2_and_legacy_private_storage_agree(server, clients):
    romeo = await clients.user("romeo", plugins=PEP_PLUGINS + ("xep_0048", "xep_0049"))
    ps = romeo.xmpp.plugin["xep_0060"]
    from slixmpp.plugins.xep_0402.stanza import Conference
    conf = Conference()
    conf["name"] = "The Orchard"
    conf["autojoin"] = True
    conf["nick"] = "Romeo"
    options = Form()
    options["type"] = "submit"
    options.add_field(var="FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/pubsub#publish-options")
    options.add_field(var="pubsub#persist_items", value="true")
    options.add_field(var="pubsub#max_items", value="max")
    options.add_field(var="pubsub#send_last_published_item", value="never")
    options.add_field(var="pubsub#access_model", value="whitelist")
    reply = await romeo.reply_of(ps.publish(romeo.bare, "urn:xmpp:bookmarks:1", id="orchard@conference.localhost",
                                            payload=conf, options=options))
    assert reply["type"] == "result", dump(reply)

    # A XEP-0048 client sees it in private XML storage.
    reply = await romeo.iq_get("<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>")
    assert reply["type"] == "result", dump(reply)
    confs = reply.xml.findall(".//{storage:bookmarks}conference")
    assert [c.get("jid") for c in confs] == ["orchard@conference.localhost"], dump(reply)
    assert confs[0].get("autojoin") in ("true", "1")
    assert confs[0].findtext("{storage:bookmarks}nick") == "Romeo"

    # And the other way: a legacy write shows up in the XEP-0402 node.
    reply = await romeo.iq_set(
        "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>"
        "<conference jid='balcony@conference.localhost' name='Balcony' autojoin='false'/>"
        "</storage></query>")
    assert reply["type"] == "result", dump(reply)
    reply = await romeo.reply_of(ps.get_items(romeo.bare, "urn:xmpp:bookmarks:1"))
    assert reply["type"] == "result", dump(reply)
    assert [i["id"] for i in reply["pubsub"]["items"]] == ["balcony@conference.localhost"], dump(reply)
