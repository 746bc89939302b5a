"""Message routing (RFC 6121 §5 and §8) and offline storage (XEP-0160, XEP-0203 delay)."""
import datetime

from rookery_harness import (NS_CLIENT, NS_DELAY, befriend, child, error_condition, message, presence, q)


async def test_message_to_full_jid(server, clients):
    romeo = await clients.user("romeo")
    juliet = await clients.user("juliet")
    romeo.send_message(juliet.full, "To the full JID")
    m = await juliet.expect(message(frm=romeo.full, body="To the full JID"))
    assert m["type"] == "chat"
    assert m["to"] == juliet.jid


async def test_message_to_bare_jid(server, clients):
    romeo = await clients.user("romeo")
    juliet = await clients.user("juliet")
    romeo.send_message(juliet.bare, "To the bare JID")
    m = await juliet.expect(message(frm=romeo.full, body="To the bare JID"))
    assert m["to"].bare == juliet.bare


async def test_chat_both_ways(server, clients):
    romeo = await clients.user("romeo")
    juliet = await clients.user("juliet")
    await befriend(romeo, juliet)
    for i in range(5):
        romeo.send_message(juliet.full, "ping %d" % i)
        await juliet.expect(message(frm=romeo.full, body="ping %d" % i))
        juliet.send_message(romeo.full, "pong %d" % i)
        await romeo.expect(message(frm=juliet.full, body="pong %d" % i))


async def test_messages_keep_order(server, clients):
    romeo = await clients.user("romeo")
    juliet = await clients.user("juliet")
    for i in range(50):
        romeo.send_message(juliet.full, "n%02d" % i)
    await juliet.expect(message(frm=romeo.full, body="n49"))
    bodies = [m.xml.findtext(q(NS_CLIENT, "body")) for m in juliet.received if m.xml.tag == q(NS_CLIENT, "message")]
    assert bodies == ["n%02d" % i for i in range(50)]


async def test_bare_jid_never_goes_to_negative_priority(server, clients):
    """RFC 6121 8.5.2.1.1: a resource with negative priority never gets messages sent to the bare JID."""
    server.add_user("juliet", "password")
    romeo = await clients.user("romeo")
    shy = await clients.login("juliet", "password", resource="shy", presence=False)
    main = await clients.login("juliet", "password", resource="main", presence=False)
    shy.send_presence(ppriority=-1)
    await shy.expect(presence(frm=shy.full, type=None))
    main.send_presence(ppriority=10)
    await main.expect(presence(frm=main.full, type=None))
    romeo.send_message("juliet@localhost", "for the bare JID")
    await main.expect(message(frm=romeo.full, body="for the bare JID"))
    # barrier: Romeo's later message to shy's full JID arrives after anything sent before it
    romeo.send_message(shy.full, "marker")
    await shy.expect(message(frm=romeo.full, body="marker"))
    shy.assert_none(message(body="for the bare JID"))


async def test_message_to_nonexistent_user_bounces(server, clients):
    romeo = await clients.user("romeo")
    romeo.send_message("nobody@localhost", "Is anybody there?")
    err = await romeo.expect(message(frm="nobody@localhost", type="error"))
    assert error_condition(err) == "service-unavailable", err


async def test_offline_message_delivered_with_delay(server, clients):
    server.add_user("juliet", "password")
    romeo = await clients.user("romeo")
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    romeo.send_message("juliet@localhost", "Wherefore art thou?")
    romeo.send_message("juliet@localhost", "Second offline message")
    await romeo.ping_server()  # the server has handled (stored) both messages
    juliet = await clients.login("juliet", "password")
    m1 = await juliet.expect(message(frm_bare=romeo.bare, body="Wherefore art thou?"))
    m2 = await juliet.expect(message(frm_bare=romeo.bare, body="Second offline message"))
    msgs = [m.xml for m in juliet.received if m.xml.tag == q(NS_CLIENT, "message")]
    assert msgs.index(m1.xml) < msgs.index(m2.xml), "offline messages must keep their order"
    for m in (m1, m2):
        delay = child(m, NS_DELAY, "delay")
        assert delay is not None, "offline message without <delay xmlns='urn:xmpp:delay'/>"
        stamp = delay.get("stamp")
        assert stamp, "delay without stamp"
        when = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        assert when.tzinfo is not None, "stamp must be UTC (XEP-0082): %s" % stamp
        now = datetime.datetime.now(datetime.timezone.utc)
        assert before - datetime.timedelta(seconds=2) <= when <= now + datetime.timedelta(seconds=2), stamp
    # delivered once: a second login gets nothing more
    await juliet.close()
    juliet2 = await clients.login("juliet", "password")
    romeo.send_message(juliet2.full, "marker")
    await juliet2.expect(message(frm=romeo.full, body="marker"))
    juliet2.assert_none(message(body="Wherefore art thou?"))


async def test_offline_message_survives_restart(server, clients):
    server.add_user("juliet", "password")
    romeo = await clients.user("romeo")
    romeo.send_message("juliet@localhost", "Kept on disk")
    await romeo.ping_server()
    await romeo.close()
    server.restart()
    juliet = await clients.login("juliet", "password")
    m = await juliet.expect(message(frm_bare="romeo@localhost", body="Kept on disk"))
    assert child(m, NS_DELAY, "delay") is not None


async def test_offline_subscription_request_delivered_at_login(server, clients):
    server.add_user("juliet", "password")
    romeo = await clients.user("romeo")
    romeo.send_presence(pto="juliet@localhost", ptype="subscribe", pstatus="Let me see you")
    await romeo.ping_server()
    juliet = await clients.login("juliet", "password")
    req = await juliet.expect(presence(frm_bare=romeo.bare, type="subscribe"))
    assert req["status"] == "Let me see you", "the stored request keeps its content (RFC 6121 3.1.3): %s" % req
    juliet.send_presence(pto=romeo.bare, ptype="subscribed")
    await romeo.expect(presence(frm_bare=juliet.bare, type="subscribed"))
    await romeo.expect(presence(frm=juliet.full, type=None))
