"""In-band registration (XEP-0077): new accounts, password change, account removal."""
import asyncio

import pytest

from rookery_harness import NS_REGISTER, LoginFailed, RawStream, dump, error_condition, q

REG_OPEN = {"registration": {"allow": True}}
NS_REGISTER_FEATURE = "http://jabber.org/features/iq-register"


async def register_with_slixmpp(server, clients, local, password):
    """Register `local` through slixmpp's XEP-0077 support, which then logs in with it."""
    result = {}

    def setup(xmpp):
        async def on_register(form):
            iq = xmpp.Iq()
            iq["type"] = "set"
            iq["register"]["username"] = local
            iq["register"]["password"] = password
            try:
                await iq.send(timeout=10)
                result["ok"] = True
            except Exception as e:  # IqError / IqTimeout
                result["error"] = e
                xmpp.disconnect()
        xmpp.add_event_handler("register", on_register)

    try:
        client = await clients.login(local, password, plugins=("xep_0004", "xep_0066", "xep_0077", "xep_0199"),
                                     plugin_config={"xep_0077": {"force_registration": True}}, setup=setup)
    except LoginFailed as e:
        raise AssertionError("registration + login failed (%s); registration step: %r" % (e, result)) from None
    assert result.get("ok"), "registration did not succeed: %r" % result
    return client


@pytest.mark.rookery_config(REG_OPEN)
async def test_register_new_account_then_login(server, clients):
    first = await register_with_slixmpp(server, clients, "newbie", "fresh-password")
    assert first.bare == "newbie@localhost"
    await first.close()
    again = await clients.login("newbie", "fresh-password")
    await again.ping_server()
    listed = server.ctl("user", "list", "localhost").stdout
    assert "newbie" in listed, listed


@pytest.mark.rookery_config(REG_OPEN)
async def test_registration_form_and_feature(server):
    raw = await RawStream.open(server.c2s_port)
    try:
        await raw.open_stream()
        feats = await raw.starttls()
        assert feats.find(q(NS_REGISTER_FEATURE, "register")) is not None, \
            "registration allowed but not advertised in stream features: %s" % dump(feats)
        await raw.send("<iq type='get' id='reg1'><query xmlns='jabber:iq:register'/></iq>")
        reply = await raw.expect(q("jabber:client", "iq"))
        assert reply.get("type") == "result" and reply.get("id") == "reg1", dump(reply)
        query = reply.find(q(NS_REGISTER, "query"))
        assert query is not None, dump(reply)
        assert query.find(q(NS_REGISTER, "username")) is not None, dump(reply)
        assert query.find(q(NS_REGISTER, "password")) is not None, dump(reply)
    finally:
        raw.close()


@pytest.mark.rookery_config(REG_OPEN)
async def test_register_taken_username_conflicts(server):
    server.add_user("taken", "original-pw")
    raw = await RawStream.open(server.c2s_port)
    try:
        await raw.open_stream()
        await raw.starttls()
        await raw.send("<iq type='set' id='reg2'><query xmlns='jabber:iq:register'>"
                       "<username>taken</username><password>other-pw</password></query></iq>")
        reply = await raw.expect(q("jabber:client", "iq"))
        assert reply.get("type") == "error", dump(reply)
        assert error_condition(reply) == "conflict", dump(reply)
    finally:
        raw.close()


async def test_registration_refused_when_disabled(server, clients):
    raw = await RawStream.open(server.c2s_port)
    try:
        await raw.open_stream()
        feats = await raw.starttls()
        assert feats.find(q(NS_REGISTER_FEATURE, "register")) is None, \
            "registration disabled but advertised: %s" % dump(feats)
        await raw.send("<iq type='set' id='reg3'><query xmlns='jabber:iq:register'>"
                       "<username>intruder</username><password>intruder-pw</password></query></iq>")
        el = await raw.next_element()
        if el is not None and el.tag == q("jabber:client", "iq"):
            assert el.get("type") == "error", dump(el)
    finally:
        raw.close()
    with pytest.raises(LoginFailed):
        await clients.login("intruder", "intruder-pw")


@pytest.mark.parametrize("addressing", ["no-to", "to-server"])
async def test_change_password(server, clients, addressing):
    """slixmpp sends the change without 'to' (handled by the account, RFC 6120 10.3);
    XEP-0077 example 18 addresses the server. Both must work."""
    server.add_user("juliet", "old-password")
    juliet = await clients.login("juliet", "old-password", plugins=("xep_0004", "xep_0066", "xep_0077"))
    if addressing == "no-to":
        reply = await juliet.reply_of(juliet.xmpp.plugin["xep_0077"].change_password("new-password"))
    else:
        reply = await juliet.iq_set("<query xmlns='jabber:iq:register'><username>juliet</username>"
                                    "<password>new-password</password></query>", to="localhost")
    assert reply["type"] == "result", dump(reply)
    await juliet.close()
    with pytest.raises(LoginFailed):
        await clients.login("juliet", "old-password")
    again = await clients.login("juliet", "new-password")
    await again.ping_server()


async def test_change_password_of_someone_else_is_refused(server, clients):
    server.add_user("juliet", "juliet-pw")
    server.add_user("romeo", "romeo-pw")
    romeo = await clients.login("romeo", "romeo-pw")
    reply = await romeo.iq_set("<query xmlns='jabber:iq:register'><username>juliet</username>"
                               "<password>stolen</password></query>")
    assert reply["type"] == "error", dump(reply)
    juliet = await clients.login("juliet", "juliet-pw")
    await juliet.ping_server()


async def test_remove_account(server, clients):
    server.add_user("mercutio", "plague-pw")
    mercutio = await clients.login("mercutio", "plague-pw", plugins=("xep_0004", "xep_0066", "xep_0077"))
    fut = asyncio.ensure_future(mercutio.xmpp.plugin["xep_0077"].cancel_registration())
    done, _ = await asyncio.wait({fut}, timeout=10)
    assert done, "no reply to account removal within 10s"
    assert not fut.cancelled(), "stream closed before the removal was confirmed"
    exc = fut.exception()
    assert exc is None, "account removal failed: %s" % (dump(exc.iq) if hasattr(exc, "iq") else exc)
    assert fut.result()["type"] == "result", dump(fut.result())
    with pytest.raises(LoginFailed):
        await clients.login("mercutio", "plague-pw")
    assert "mercutio" not in server.ctl("user", "list", "localhost").stdout
