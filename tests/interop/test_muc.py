"""Multi-user chat (XEP-0045) at conference.localhost, driven by slixmpp's xep_0045 plugin."""
import asyncio

import pytest
from slixmpp import JID
from slixmpp.exceptions import IqError, IqTimeout, PresenceError

from rookery_harness import (DEFAULT_PLUGINS, NS_CLIENT, NS_DELAY, TIMEOUT, Pred, dump, error_condition,
                             message, presence, q)

MUC_SERVICE = "conference.localhost"
MUC_PLUGINS = DEFAULT_PLUGINS + ("xep_0045",)
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_MUC_OWNER = "http://jabber.org/protocol/muc#owner"
NS_DATA = "jabber:x:data"
PASSWORD = "secret-password"


def room_jid(name: str) -> str:
    return "%s@%s" % (name, MUC_SERVICE)


def occ(room: str, nick: str) -> str:
    """The occupant JID room@service/nick."""
    return "%s/%s" % (room, nick)


async def muc_user(clients, local: str, **kw):
    return await clients.user(local, plugins=MUC_PLUGINS, **kw)


def muc_item(st) -> dict:
    """Attributes of <x xmlns='muc#user'><item/></x> ({} if absent)."""
    x = st.xml.find(q(NS_MUC_USER, "x")) if hasattr(st, "xml") else st.find(q(NS_MUC_USER, "x"))
    item = x.find(q(NS_MUC_USER, "item")) if x is not None else None
    return dict(item.attrib) if item is not None else {}


def status_codes(st) -> set:
    x = (st.xml if hasattr(st, "xml") else st).find(q(NS_MUC_USER, "x"))
    if x is None:
        return set()
    return {int(s.get("code")) for s in x.findall(q(NS_MUC_USER, "status")) if (s.get("code") or "").isdigit()}


def with_codes(*codes) -> Pred:
    return Pred(lambda x: set(codes) <= status_codes(x), "muc#user status codes %s" % sorted(codes))


def groupchat(frm: str, body: str) -> Pred:
    return message(frm=frm, type="groupchat", body=body)


def subject_msg(frm_bare: str, subject: str) -> Pred:
    return message(frm_bare=frm_bare, type="groupchat") & Pred(
        lambda x: x.findtext(q(NS_CLIENT, "subject")) == subject and x.find(q(NS_CLIENT, "body")) is None,
        "subject=%r without body" % subject)


def _recent(client, n: int = 15) -> str:
    return "\n".join("    " + dump(s) for s in client.received[-n:]) or "    (nothing)"


async def join(client, room: str, nick: str, *, password: str | None = None, maxstanzas: int | None = None):
    """Join with slixmpp's join_muc_wait (self-presence with status 110, then the subject).
    Returns (self_presence, subject_message, occupant_presences, history_messages)."""
    muc = client.xmpp.plugin["xep_0045"]
    try:
        result = await muc.join_muc_wait(JID(room), nick, password=password, maxstanzas=maxstanzas,
                                         timeout=TIMEOUT)
    except PresenceError as e:
        raise AssertionError("%s could not join %s as %r: error presence %s"
                             % (client.name, room, nick, dump(e.presence))) from None
    except asyncio.TimeoutError:
        raise AssertionError("%s joining %s as %r: no self-presence (status 110) followed by the room subject "
                             "(XEP-0045 7.2) within %.0fs; last received:\n%s"
                             % (client.name, room, nick, TIMEOUT, _recent(client))) from None
    return result


async def join_refused(client, room: str, nick: str, *, password: str | None = None):
    """Send a join presence that must be refused; return the error presence from room/nick."""
    muc = client.xmpp.plugin["xep_0045"]
    muc.make_join_stanza(JID(room), nick, password=password).send()
    p = await client.expect(presence(frm=occ(room, nick)),
                            what="answer to %s's join of %s as %r" % (client.name, room, nick))
    assert p["type"] == "error", "%s's join of %s as %r should have been refused, but got %s" % (
        client.name, room, nick, dump(p))
    return p


async def create_instant_room(owner, room: str, nick: str = "owner"):
    """XEP-0045 10.1.2: join a new room (status 201, locked), then accept the default configuration."""
    pres, _subject, _occupants, _history = await join(owner, room, nick)
    codes = status_codes(pres)
    assert 201 in codes, "creating %s: self-presence lacks status 201 (room created): %s" % (room, dump(pres))
    item = muc_item(pres)
    assert (item.get("affiliation"), item.get("role")) == ("owner", "moderator"), \
        "the creator of %s should be owner/moderator: %s" % (room, dump(pres))
    reply = await owner.iq_set("<query xmlns='%s'><x xmlns='%s' type='submit'/></query>" % (NS_MUC_OWNER, NS_DATA),
                               to=room)
    assert reply["type"] == "result", "instant-room submit for %s was refused: %s" % (room, dump(reply))
    return pres


async def configure(owner, room: str, values: dict) -> None:
    """Fetch the owner configuration form with slixmpp, set `values`, submit it."""
    muc = owner.xmpp.plugin["xep_0045"]
    try:
        form = await muc.get_room_config(room, timeout=TIMEOUT)
    except IqError as e:
        raise AssertionError("%s: owner config form request for %s failed: %s" % (owner.name, room, dump(e.iq))) \
            from None
    except (IqTimeout, ValueError) as e:
        raise AssertionError("%s: no config form for %s: %r" % (owner.name, room, e)) from None
    fields = form.get_fields()
    missing = sorted(set(values) - set(fields))
    assert not missing, "room config form of %s lacks fields %s; it has %s" % (room, missing, sorted(fields))
    for var, value in values.items():
        fields[var]["value"] = value
    err = await owner.reply_of(muc.set_room_config(room, form, timeout=TIMEOUT))
    assert err is None, "submitting the config form of %s failed: %s" % (room, dump(err))


# ---------------------------------------------------------------------------


async def test_instant_room_and_second_occupant(server, clients):
    room = room_jid("lobby")
    owner = await muc_user(clients, "owner")
    bob = await muc_user(clients, "bob")

    pres, _, _, _ = await join(owner, room, "Owner")
    assert {110, 201} <= status_codes(pres), "new room: expected status 110 and 201: %s" % dump(pres)
    # XEP-0045 10.1.1: until the owner configures it, the new room is locked to everyone else
    err = await join_refused(bob, room, "Bob")
    assert error_condition(err) == "item-not-found", \
        "joining a locked (unconfigured) room should fail with item-not-found: %s" % dump(err)

    reply = await owner.iq_set("<query xmlns='%s'><x xmlns='%s' type='submit'/></query>" % (NS_MUC_OWNER, NS_DATA),
                               to=room)
    assert reply["type"] == "result", "instant-room submit refused: %s" % dump(reply)

    pres, subject, occupants, _ = await join(bob, room, "Bob")
    assert muc_item(pres).get("role") == "participant" and muc_item(pres).get("affiliation") == "none", \
        "Bob's self-presence should be role=participant affiliation=none: %s" % dump(pres)
    assert 201 not in status_codes(pres), "201 (room created) on joining an existing room: %s" % dump(pres)
    # Bob got the owner's presence before his own (XEP-0045 7.2.3)
    seen = {p["from"].resource: p for p in occupants}
    assert "Owner" in seen, "Bob did not get the owner's occupant presence before his self-presence; got %s" \
        % [dump(p) for p in occupants]
    item = muc_item(seen["Owner"])
    assert (item.get("role"), item.get("affiliation")) == ("moderator", "owner"), \
        "Bob should see the owner as moderator/owner: %s" % dump(seen["Owner"])
    assert "jid" not in item, \
        "semi-anonymous room (default whois=moderators) leaked the owner's real JID to a participant: %s" \
        % dump(seen["Owner"])

    # the owner sees Bob arrive, with his real JID (moderators may see it)
    p = await owner.expect(presence(frm=occ(room, "Bob"), type=None), what="Bob's join presence at the owner")
    item = muc_item(p)
    assert (item.get("role"), item.get("affiliation")) == ("participant", "none"), \
        "owner should see Bob as participant/none: %s" % dump(p)
    assert JID(item.get("jid", "")).bare == bob.bare, "moderator should see Bob's real JID: %s" % dump(p)
    assert 110 not in status_codes(p), "status 110 (self) sent to another occupant: %s" % dump(p)


async def test_groupchat_messages_reach_everyone(server, clients):
    room = room_jid("hall")
    owner = await muc_user(clients, "owner")
    bob = await muc_user(clients, "bob")
    carol = await muc_user(clients, "carol")
    await create_instant_room(owner, room, "Owner")
    await join(bob, room, "Bob")
    await join(carol, room, "Carol")
    everyone = {"Owner": owner, "Bob": bob, "Carol": carol}
    for nick, sender in everyone.items():
        body = "Hello from %s" % nick
        sender.send_message(room, body, mtype="groupchat")
        for rnick, receiver in everyone.items():
            m = await receiver.expect(groupchat(occ(room, nick), body),
                                      what="%s's groupchat message at %s" % (nick, rnick))
            assert m["to"] == receiver.jid, "groupchat message addressed to %s, not %s: %s" % (
                m["to"], receiver.jid, dump(m))


async def test_subject_reaches_everyone(server, clients):
    room = room_jid("hall")
    owner = await muc_user(clients, "owner")
    bob = await muc_user(clients, "bob")
    await create_instant_room(owner, room, "Owner")
    await join(bob, room, "Bob")
    owner.xmpp.plugin["xep_0045"].set_subject(room, "Tonight: the masquerade")
    for c in (owner, bob):
        m = await c.expect(subject_msg(room, "Tonight: the masquerade"), what="the new subject at %s" % c.name)
        assert m["from"] == JID(occ(room, "Owner")), "subject change should come from room/Owner: %s" % dump(m)


async def test_late_joiner_gets_history_and_subject(server, clients):
    room = room_jid("hall")
    owner = await muc_user(clients, "owner")
    await create_instant_room(owner, room, "Owner")
    owner.xmpp.plugin["xep_0045"].set_subject(room, "Old news")
    await owner.expect(subject_msg(room, "Old news"))
    bodies = ["first", "second", "third"]
    for b in bodies:
        owner.send_message(room, b, mtype="groupchat")
        await owner.expect(groupchat(occ(room, "Owner"), b))

    late = await muc_user(clients, "late")
    _pres, subject, _occ, _hist = await join(late, room, "Late")
    assert subject["subject"] == "Old news", "late joiner got subject %r, expected 'Old news': %s" % (
        subject["subject"], dump(subject))
    # history comes after the self-presence and before the subject (XEP-0045 7.2.15/7.2.16)
    msgs = [m for m in late.received if m.xml.tag == q(NS_CLIENT, "message") and m["from"].bare == room]
    history = [m for m in msgs if m["body"]]
    assert [m["body"] for m in history] == bodies, "late joiner's history should be %s, got:\n%s" % (
        bodies, "\n".join(dump(m) for m in history))
    for m in history:
        assert m["from"] == JID(occ(room, "Owner")), "history message not from room/Owner: %s" % dump(m)
        delay = m.xml.find(q(NS_DELAY, "delay"))
        assert delay is not None and delay.get("stamp"), "history message without <delay xmlns='urn:xmpp:delay' " \
                                                         "stamp=.../>: %s" % dump(m)
        assert JID(delay.get("from") or "") == JID(room), "history delay 'from' should be the room JID: %s" % dump(m)
    assert msgs.index(subject) > msgs.index(history[-1]), "the subject must follow the history"


async def test_nick_conflict(server, clients):
    room = room_jid("hall")
    owner = await muc_user(clients, "owner")
    bob = await muc_user(clients, "bob")
    await create_instant_room(owner, room, "Romeo")
    err = await join_refused(bob, room, "Romeo")
    assert error_condition(err) == "conflict", "taken nick should give <conflict/>: %s" % dump(err)
    # the occupants were not told about the failed attempt; Bob can still join with another nick
    await join(bob, room, "Bob")
    await owner.expect(presence(frm=occ(room, "Bob"), type=None))
    owner.assert_none(presence(frm=occ(room, "Romeo"), type="unavailable"),
                      what="the real Romeo leaving after a nick conflict")


async def test_password_protected_room(server, clients):
    room = room_jid("vault")
    owner = await muc_user(clients, "owner")
    bob = await muc_user(clients, "bob")
    await create_instant_room(owner, room, "Owner")
    await configure(owner, room, {"muc#roomconfig_passwordprotectedroom": True,
                                  "muc#roomconfig_roomsecret": "capulet"})
    for pw in (None, "montague"):
        err = await join_refused(bob, room, "Bob", password=pw)
        assert error_condition(err) == "not-authorized", \
            "join with password %r should fail with not-authorized: %s" % (pw, dump(err))
    await join(bob, room, "Bob", password="capulet")
    await owner.expect(presence(frm=occ(room, "Bob"), type=None), what="Bob in the room after the right password")


async def test_members_only_room(server, clients):
    room = room_jid("club")
    owner = await muc_user(clients, "owner")
    bob = await muc_user(clients, "bob")
    await create_instant_room(owner, room, "Owner")
    await configure(owner, room, {"muc#roomconfig_membersonly": True})
    err = await join_refused(bob, room, "Bob")
    assert error_condition(err) == "registration-required", \
        "non-member joining a members-only room should get registration-required: %s" % dump(err)
    err = await owner.reply_of(owner.xmpp.plugin["xep_0045"].set_affiliation(room, "member", jid=bob.bare,
                                                                            timeout=TIMEOUT))
    assert err is None, "owner could not make Bob a member: %s" % dump(err)
    pres, _, _, _ = await join(bob, room, "Bob")
    assert muc_item(pres).get("affiliation") == "member", "Bob should join as member: %s" % dump(pres)


async def test_private_message_reaches_only_that_occupant(server, clients):
    room = room_jid("hall")
    owner = await muc_user(clients, "owner")
    bob = await muc_user(clients, "bob")
    carol = await muc_user(clients, "carol")
    await create_instant_room(owner, room, "Owner")
    await join(bob, room, "Bob")
    await join(carol, room, "Carol")
    owner.send_message(occ(room, "Bob"), "Just between us", mtype="chat")
    m = await bob.expect(message(frm=occ(room, "Owner"), body="Just between us"),
                         what="private message from room/Owner")
    assert m["type"] == "chat", "private message type changed: %s" % dump(m)
    # barrier: a later groupchat message from the same sender, through the same room
    owner.send_message(room, "public marker", mtype="groupchat")
    await carol.expect(groupchat(occ(room, "Owner"), "public marker"))
    await owner.expect(groupchat(occ(room, "Owner"), "public marker"))
    carol.assert_none(message(body="Just between us"))
    owner.assert_none(message(body="Just between us"))


async def test_kick(server, clients):
    room = room_jid("hall")
    owner = await muc_user(clients, "owner")
    bob = await muc_user(clients, "bob")
    carol = await muc_user(clients, "carol")
    await create_instant_room(owner, room, "Owner")
    await join(bob, room, "Bob")
    await join(carol, room, "Carol")
    err = await owner.reply_of(owner.xmpp.plugin["xep_0045"].set_role(room, "Bob", "none", reason="Behave",
                                                                    timeout=TIMEOUT))
    assert err is None, "kick refused: %s" % dump(err)
    p = await bob.expect(presence(frm=occ(room, "Bob"), type="unavailable"), what="Bob's own kick presence")
    assert {307, 110} <= status_codes(p), "kicked occupant should get status 307 and 110: %s" % dump(p)
    assert muc_item(p).get("role") == "none", "kick presence should carry role=none: %s" % dump(p)
    for c in (owner, carol):
        p = await c.expect(presence(frm=occ(room, "Bob"), type="unavailable"), what="Bob kicked, seen by %s" % c.name)
        assert 307 in status_codes(p), "%s should see status 307 for Bob's kick: %s" % (c.name, dump(p))
    # a kick is not a ban: Bob may come back
    await join(bob, room, "Bob")


async def test_ban(server, clients):
    room = room_jid("hall")
    owner = await muc_user(clients, "owner")
    bob = await muc_user(clients, "bob")
    carol = await muc_user(clients, "carol")
    await create_instant_room(owner, room, "Owner")
    await join(bob, room, "Bob")
    await join(carol, room, "Carol")
    err = await owner.reply_of(owner.xmpp.plugin["xep_0045"].set_affiliation(room, "outcast", jid=bob.bare,
                                                                            reason="Out", timeout=TIMEOUT))
    assert err is None, "ban refused: %s" % dump(err)
    p = await bob.expect(presence(frm=occ(room, "Bob"), type="unavailable"), what="Bob's own ban presence")
    assert {301, 110} <= status_codes(p), "banned occupant should get status 301 and 110: %s" % dump(p)
    assert muc_item(p).get("affiliation") == "outcast", "ban presence should carry affiliation=outcast: %s" % dump(p)
    p = await carol.expect(presence(frm=occ(room, "Bob"), type="unavailable"), what="Bob banned, seen by Carol")
    assert 301 in status_codes(p), "Carol should see status 301 for Bob's ban: %s" % dump(p)
    err = await join_refused(bob, room, "Bobby")
    assert error_condition(err) == "forbidden", "a banned user's rejoin should fail with forbidden: %s" % dump(err)


async def test_room_configuration_form(server, clients):
    room = room_jid("salon")
    owner = await muc_user(clients, "owner")
    await create_instant_room(owner, room, "Owner")
    await configure(owner, room, {"muc#roomconfig_roomname": "The Capulet Salon",
                                  "muc#roomconfig_persistentroom": True})
    form = await owner.xmpp.plugin["xep_0045"].get_room_config(room, timeout=TIMEOUT)
    values = form.get_values()
    assert values.get("muc#roomconfig_roomname") == "The Capulet Salon", \
        "room name not kept in the config form: %r" % values
    assert values.get("muc#roomconfig_persistentroom") in (True, "1", "true"), \
        "persistentroom not kept in the config form: %r" % values

    async def room_info():
        info = await owner.xmpp.plugin["xep_0030"].get_info(jid=room, local=False, timeout=TIMEOUT)
        return set(info["disco_info"]["features"]), info["disco_info"]["identities"]

    features, identities = await room_info()
    assert "muc_persistent" in features and "muc_temporary" not in features, \
        "room disco#info should show muc_persistent (not muc_temporary): %s" % sorted(features)
    assert any(cat == "conference" and name == "The Capulet Salon" for cat, _t, _l, name in identities), \
        "room disco#info identity should be conference named 'The Capulet Salon': %s" % identities
    # persistent: the room outlives its last occupant
    owner.xmpp.plugin["xep_0045"].leave_muc(room, "Owner")
    await owner.expect(presence(frm=occ(room, "Owner"), type="unavailable"))
    features, identities = await room_info()
    assert "muc_persistent" in features, "persistent room changed after everybody left: %s" % sorted(features)


@pytest.mark.rookery_config({"modules": {"muc": {"history_length": 10}}})
async def test_fifty_occupants(server, clients):
    room = room_jid("crowd")
    n = 50
    owner = await muc_user(clients, "owner")
    await create_instant_room(owner, room, "Owner")

    async def enter(i):
        await asyncio.to_thread(server.add_user, "u%02d" % i, PASSWORD)  # the CLI, off the event loop
        c = await clients.login("u%02d" % i, PASSWORD, plugins=MUC_PLUGINS, roster=False)
        await join(c, room, "n%02d" % i, maxstanzas=0)
        return c

    occupants = {"Owner": owner}
    for start in range(1, n, 10):
        batch = range(start, min(start + 10, n))
        for i, c in zip(batch, await asyncio.gather(*(enter(i) for i in batch))):
            occupants["n%02d" % i] = c
    assert len(occupants) == n
    for nick in occupants:
        if nick != "Owner":
            await owner.expect(presence(frm=occ(room, nick), type=None), what="%s's join seen by the owner" % nick)

    muc = owner.xmpp.plugin["xep_0045"]
    err = await owner.reply_of(muc.set_role(room, "n01", "moderator", timeout=TIMEOUT))
    assert err is None, "owner could not make n01 a moderator: %s" % dump(err)
    for nick, c in occupants.items():
        p = await c.expect(presence(frm=occ(room, "n01"), type=None) & Pred(
            lambda x: muc_item(x).get("role") == "moderator", "role=moderator"),
            what="n01 promoted to moderator, seen by %s" % nick)
    moderator = occupants["n01"]
    err = await moderator.reply_of(moderator.xmpp.plugin["xep_0045"].set_role(room, "n02", "none", timeout=TIMEOUT))
    assert err is None, "moderator n01 could not kick n02: %s" % dump(err)
    kicked = occupants.pop("n02")
    p = await kicked.expect(presence(frm=occ(room, "n02"), type="unavailable"), what="n02's own kick")
    assert {307, 110} <= status_codes(p), "kicked n02 should get 307 and 110: %s" % dump(p)
    for nick, c in occupants.items():
        p = await c.expect(presence(frm=occ(room, "n02"), type="unavailable"), what="n02's kick seen by %s" % nick)
        assert 307 in status_codes(p), "%s should see status 307 for n02's kick: %s" % (nick, dump(p))

    owner.send_message(room, "Welcome, all forty-nine of you", mtype="groupchat")
    for nick, c in occupants.items():
        await c.expect(groupchat(occ(room, "Owner"), "Welcome, all forty-nine of you"),
                       what="the owner's message at %s" % nick)
    senders = [nick for nick in occupants][:12]
    for k, nick in enumerate(senders):
        occupants[nick].send_message(room, "line %02d" % k, mtype="groupchat")
        await occupants[nick].expect(groupchat(occ(room, nick), "line %02d" % k))

    late = await muc_user(clients, "late")
    _p, _s, present, history = await join(late, room, "Late")
    others = {p["from"].resource for p in present} - {"Late"}  # slixmpp lists the self-presence too
    assert others == set(occupants), \
        "the 51st joiner should see exactly the %d remaining occupants; missing %s, extra %s" % (
            len(occupants), sorted(set(occupants) - others), sorted(others - set(occupants)))
    got = [m["body"] for m in late.received
           if m.xml.tag == q(NS_CLIENT, "message") and m["from"].bare == room and m["body"]]
    want = ["line %02d" % k for k in range(2, 12)]
    assert got == want, "the 51st joiner should get the last 10 messages as history (history_length=10): %s" % got
    assert len(history) == len(want), "slixmpp recognised %d of the history messages (delay from=room)" % len(history)


async def test_dropped_occupant_leaves_room(server, clients):
    room = room_jid("hall")
    owner = await muc_user(clients, "owner")
    bob = await muc_user(clients, "bob")
    await create_instant_room(owner, room, "Owner")
    await join(bob, room, "Bob")
    await owner.expect(presence(frm=occ(room, "Bob"), type=None))
    bob.abort()  # TCP connection dropped: no unavailable presence, no </stream:stream>
    p = await owner.expect(presence(frm=occ(room, "Bob"), type="unavailable"), timeout=30,
                           what="Bob's departure after his connection dropped")
    assert muc_item(p).get("role") == "none", "departure presence should have role=none: %s" % dump(p)
    # the nick is free again
    bob2 = await clients.login("bob", PASSWORD, plugins=MUC_PLUGINS)
    await join(bob2, room, "Bob")
