"""Stream negotiation and authentication (RFC 6120 §5 STARTTLS, §6 SASL, XEP-0368 direct TLS)."""
import base64

import pytest

from rookery_harness import NS_SASL, NS_STREAMS, NS_TLS, DOMAIN, LoginFailed, RawStream, message, q


def offered_mechanisms(client):
    """SASL mechanisms listed in the stream features the client saw."""
    mechs = []
    for feats in client.features:
        m = feats.find(q(NS_SASL, "mechanisms"))
        if m is not None:
            mechs = [e.text.strip() for e in m.findall(q(NS_SASL, "mechanism")) if e.text]
    return mechs


async def test_starttls_login_picks_best_scram(server, clients):
    server.add_user("alice", "wonderland")
    alice = await clients.login("alice", "wonderland")
    assert alice.encrypted, "session is not protected by TLS after STARTTLS"
    assert alice.bare == "alice@localhost"
    assert alice.jid.resource, "server must bind a resource when the client asks for none"
    mechs = offered_mechanisms(alice)
    assert "SCRAM-SHA-1" in mechs and "SCRAM-SHA-256" in mechs, "offered mechanisms: %r" % mechs
    assert alice.mechanism == "SCRAM-SHA-256", "slixmpp should pick SCRAM-SHA-256, used %r" % alice.mechanism
    await alice.ping_server()


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
async def test_forced_scram_mechanism(server, clients, mech):
    server.add_user("bob", "builder-pw")
    bob = await clients.login("bob", "builder-pw", sasl_mech=mech, resource="laptop")
    assert bob.mechanism == mech
    assert bob.full == "bob@localhost/laptop"
    assert bob.encrypted
    await bob.ping_server()


@pytest.mark.parametrize("mech", [None, "SCRAM-SHA-1"])
async def test_wrong_password_fails(server, clients, mech):
    server.add_user("carol", "right-password")
    with pytest.raises(LoginFailed) as exc:
        await clients.login("carol", "wrong-password", sasl_mech=mech)
    assert exc.value.kind in ("failed_auth", "failed_all_auth"), str(exc.value)
    if exc.value.kind == "failed_auth":
        assert exc.value.condition == "not-authorized", str(exc.value)
    # the right password still works afterwards
    carol = await clients.login("carol", "right-password")
    await carol.ping_server()


async def test_unknown_user_fails_like_wrong_password(server, clients):
    with pytest.raises(LoginFailed) as exc:
        await clients.login("nobody", "whatever")
    assert exc.value.kind in ("failed_auth", "failed_all_auth"), str(exc.value)
    if exc.value.kind == "failed_auth":
        assert exc.value.condition == "not-authorized", str(exc.value)


async def test_direct_tls_login(server, clients):
    server.add_user("dave", "direct-pw")
    dave = await clients.login("dave", "direct-pw", direct_tls=True)
    assert dave.encrypted, "direct TLS session is not encrypted"
    assert not any(f.find(q(NS_TLS, "starttls")) is not None for f in dave.features), \
        "STARTTLS must not be offered inside a direct TLS connection"
    assert dave.mechanism and dave.mechanism.startswith("SCRAM-")
    await dave.ping_server()


async def test_starttls_and_direct_tls_clients_talk(server, clients):
    server.add_user("erin", "pw-erin")
    server.add_user("frank", "pw-frank")
    erin = await clients.login("erin", "pw-erin")
    frank = await clients.login("frank", "pw-frank", direct_tls=True)
    erin.send_message(frank.full, "over two kinds of TLS")
    await frank.expect(message(frm=erin.full, body="over two kinds of TLS"))


async def test_no_authentication_before_tls_when_required(server):
    """[tls] require_encryption = true: STARTTLS is offered, and SASL without TLS never succeeds."""
    raw = await RawStream.open(server.c2s_port)
    try:
        feats = await raw.open_stream()
        assert raw.root_attrs.get("from") == DOMAIN, raw.root_attrs
        assert raw.root_attrs.get("id"), "stream header must carry an id"
        assert feats.find(q(NS_TLS, "starttls")) is not None, "STARTTLS not offered: %r" % feats
        server.add_user("gina", "plain-pw")
        token = base64.b64encode(b"\0gina\0plain-pw").decode()
        await raw.send("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>" % (NS_SASL, token))
        el = await raw.next_element()
        assert el is None or el.tag != q(NS_SASL, "success"), "authenticated without TLS"
        assert el is None or el.tag in (q(NS_SASL, "failure"), q(NS_STREAMS, "error")), el.tag
    finally:
        raw.close()


async def test_login_after_restart_persists_account(server, clients):
    server.add_user("hank", "persist-pw")
    server.restart()
    hank = await clients.login("hank", "persist-pw")
    await hank.ping_server()
