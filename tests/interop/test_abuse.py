"""Abuse limits as a public server needs them: invite-only registration (XEP-0445 tokens made by
the CLI), registrations throttled per address, reserved and look-alike usernames refused, spam
reports (XEP-0377) reaching the administrators, subscription floods bounced, and failed logins
locking an account name without saying whether it exists."""
import base64

import pytest

from rookery_harness import DEFAULT_PLUGINS, LoginFailed, RawStream, dump, error_condition, q

NS_CLIENT = "jabber:client"
NS_PARS = "urn:xmpp:pars:0"
NS_IBR_TOKEN = "urn:xmpp:ibr-token:0"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"


async def registration_stream(server) -> tuple[RawStream, object]:
    raw = await RawStream.open(server.c2s_port)
    await raw.open_stream()
    return raw, await raw.starttls()


async def iq(raw, xml: str):
    await raw.send(xml)
    return await raw.expect(q(NS_CLIENT, "iq"))


def register(user: str, password: str = "a-good-password") -> str:
    return ("<iq type='set' id='r-%s'><query xmlns='jabber:iq:register'><username>%s</username>"
            "<password>%s</password></query></iq>" % (user, user, password))


def preauth(token: str) -> str:
    return "<iq type='set' id='pa' to='localhost'><preauth xmlns='%s' token='%s'/></iq>" % (NS_PARS, token)


async def test_invite_only_registration_with_a_token_from_the_cli(server, clients):
    uri = server.ctl("invite", "create", "--host", "localhost").stdout.strip()
    assert uri.startswith("xmpp:localhost?register;preauth="), uri
    token = uri.split("preauth=", 1)[1]

    raw, features = await registration_stream(server)
    try:
        assert features.find(q(NS_IBR_TOKEN, "register")) is not None, dump(features)
        r = await iq(raw, register("juliet"))
        assert r.get("type") == "error" and error_condition(r) == "not-allowed", dump(r)
        r = await iq(raw, preauth("not-" + token))
        assert error_condition(r) == "item-not-found", dump(r)
        r = await iq(raw, preauth(token))
        assert r.get("type") == "result", dump(r)
        r = await iq(raw, register("juliet"))
        assert r.get("type") == "result", dump(r)
    finally:
        raw.close()
    juliet = await clients.login("juliet", "a-good-password")
    await juliet.ping_server()

    # The token was good for one account.
    raw, _ = await registration_stream(server)
    try:
        r = await iq(raw, preauth(token))
        assert error_condition(r) == "item-not-found", dump(r)
    finally:
        raw.close()


async def test_an_invitation_naming_a_user_registers_that_name_only(server):
    uri = server.ctl("invite", "create", "--host", "localhost", "--user", "romeo", "--uses", "2").stdout.strip()
    assert uri.startswith("xmpp:romeo@localhost?register;preauth="), uri
    raw, _ = await registration_stream(server)
    try:
        assert (await iq(raw, preauth(uri.split("preauth=", 1)[1]))).get("type") == "result"
        r = await iq(raw, register("mercutio"))
        assert error_condition(r) == "not-allowed", dump(r)
        assert (await iq(raw, register("romeo"))).get("type") == "result"
    finally:
        raw.close()


@pytest.mark.rookery_config({"registration": {"allow": True, "max_per_ip_per_hour": 2}})
async def test_open_registration_is_throttled_per_address(server):
    for i, want in enumerate(["result", "result", "error"]):
        raw, _ = await registration_stream(server)
        try:
            r = await iq(raw, register("user%d" % i))
            assert r.get("type") == want, dump(r)
            if want == "error":
                assert error_condition(r) == "policy-violation", dump(r)
        finally:
            raw.close()


@pytest.mark.rookery_config({"registration": {"allow": True}})
async def test_reserved_and_look_alike_usernames_are_refused(server):
    server.add_user("paypal", "a-good-password")
    # "admin" is reserved; "аdmin" starts with a Cyrillic a; "раураl" is all Cyrillic but the l.
    for name in ["admin", "Admin", "\u0430dmin", "\u0440\u0430\u0443\u0440\u0430l"]:
        raw, _ = await registration_stream(server)
        try:
            r = await iq(raw, register(name))
            assert error_condition(r) == "conflict", "%r: %s" % (name, dump(r))
        finally:
            raw.close()
    raw, _ = await registration_stream(server)
    try:
        assert (await iq(raw, register("paypal2"))).get("type") == "result"
    finally:
        raw.close()


@pytest.mark.rookery_config({"admins": ["boss@localhost"]})
async def test_a_spam_report_reaches_the_administrators(server, clients):
    server.add_user("boss", "boss-password")
    boss = await clients.login("boss", "boss-password")
    alice = await clients.user("alice")
    reply = await alice.iq_set(
        "<block xmlns='urn:xmpp:blocking'><item jid='spammer@example.net'>"
        "<report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'>"
        "<text>cheap watches</text></report></item></block>")
    assert reply["type"] == "result", dump(reply)
    note = await boss.expect(lambda st: st.name == "message" and st["subject"] == "Abuse report")
    assert note["body"] == "alice@localhost reported spammer@example.net (spam): cheap watches", note["body"]
    assert note.xml.find("{urn:xmpp:reporting:1}report") is not None


@pytest.mark.rookery_config({"limits": {"subscriptions_per_minute": 3}})
async def test_a_flood_of_subscription_requests_is_bounced(server, clients):
    alice = await clients.user("alice")
    for i in range(3):
        alice.xmpp.send_presence(pto="friend%d@localhost" % i, ptype="subscribe")
    alice.xmpp.send_presence(pto="friend3@localhost", ptype="subscribe")
    err = await alice.expect(lambda st: st.name == "presence" and st["type"] == "error")
    assert str(err["from"].bare) == "friend3@localhost", dump(err)
    assert error_condition(err) == "policy-violation", dump(err)


async def sasl_plain(server, user: str, password: str) -> str:
    """One PLAIN attempt on a fresh stream: the SASL outcome (`success` or the failure's condition)."""
    raw, _ = await registration_stream(server)
    try:
        blob = base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode()
        await raw.send("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>" % (NS_SASL, blob))
        while True:
            el = await raw.next_element(timeout=30)
            if el.tag == q(NS_SASL, "success"):
                return "success"
            if el.tag == q(NS_SASL, "failure"):
                return next(iter(el)).tag.split("}")[1]
    finally:
        raw.close()


@pytest.mark.rookery_config({"limits": {"auth_account_failures": 3, "auth_ban_failures": 0}})
async def test_failed_logins_lock_an_account_name_whether_it_exists_or_not(server):
    server.add_user("bob", "bob-password")
    for name in ["bob", "ghost"]:
        for _ in range(3):
            assert await sasl_plain(server, name, "wrong") == "not-authorized"
        # Locked now, even with the right password; the unknown name answers the same.
        assert await sasl_plain(server, name, "bob-password") == "temporary-auth-failure"
