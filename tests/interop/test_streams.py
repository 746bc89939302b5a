"""Stream-level behaviour: resource conflicts (RFC 6120 §7.7.2.2) and hostile input
(RFC 6120 §4.9 stream errors; Rookery's [limits])."""
import pytest

from rookery_harness import DOMAIN, RawStream, dump, error_condition, message, presence, stream_error

PLAIN_OK = {"tls": {"require_encryption": False}}


async def test_same_resource_twice_replaces_old_session(server, clients):
    server.add_user("romeo", "password")
    first = await clients.login("romeo", "password", resource="orchard", name="first")
    second = await clients.login("romeo", "password", resource="orchard", name="second")
    assert second.full == "romeo@localhost/orchard"
    err = await first.expect(stream_error())
    assert error_condition(err) == "conflict", dump(err)
    await first.wait_disconnected()
    await second.ping_server()
    # stanzas for the full JID now reach the new session
    other = await clients.user("juliet")
    other.send_message("romeo@localhost/orchard", "to the new session")
    await second.expect(message(frm=other.full, body="to the new session"))


async def test_server_generated_resources_are_distinct(server, clients):
    server.add_user("romeo", "password")
    a = await clients.login("romeo", "password")
    b = await clients.login("romeo", "password")
    assert a.jid.resource and b.jid.resource and a.full != b.full
    await a.ping_server()
    await b.ping_server()


async def assert_still_serving(server, clients, local="survivor"):
    """After hostile input, an ordinary client can still log in and be served."""
    if local not in server.passwords:
        server.add_user(local, "still-here")
    c = await clients.login(local)
    await c.ping_server()
    await c.close()


async def raw_error_after(server, payload: str, *, open_stream: bool = True) -> tuple[str | None, bool, RawStream]:
    raw = await RawStream.open(server.c2s_port)
    if open_stream:
        await raw.open_stream()
    await raw.send(payload)
    cond = await raw.stream_error(timeout=10)
    closed = await raw.wait_closed(timeout=10)
    raw.close()
    return cond, closed, raw


@pytest.mark.rookery_config(PLAIN_OK)
async def test_malformed_xml(server, clients):
    cond, closed, raw = await raw_error_after(server, "<message to='x@localhost'><body>oops</message>")
    assert cond == "not-well-formed", "got %r; raw: %r" % (cond, raw._raw[-500:])
    assert closed, "server must close the connection after a stream error"
    await assert_still_serving(server, clients)


@pytest.mark.rookery_config(PLAIN_OK)
async def test_garbage_instead_of_stream_header(server, clients):
    raw = await RawStream.open(server.c2s_port)
    await raw.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    closed = await raw.wait_closed(timeout=10)
    raw.close()
    assert closed, "server kept a non-XMPP connection open"
    await assert_still_serving(server, clients)


@pytest.mark.rookery_config(PLAIN_OK)
async def test_oversized_stanza_before_auth(server, clients):
    limit = server.config["limits"]["max_stanza_bytes_unauthenticated"]
    # Never closed: the limit must be enforced while parsing, not once the stanza is complete.
    # Only a few bytes beyond the limit, so the server has read everything when it closes
    # (unread data would turn its close into a RST that can swallow the stream error).
    payload = "<message to='x@localhost'><body>" + "a" * (limit + 64)
    cond, closed, raw = await raw_error_after(server, payload)
    assert cond == "policy-violation", "got %r; raw: %r" % (cond, raw._raw[-500:])
    assert closed
    await assert_still_serving(server, clients)


async def test_oversized_stanza_after_auth(server, clients):
    limit = server.config["limits"]["max_stanza_bytes"]
    server.add_user("big", "password")
    big = await clients.login("big", "password")
    big.send_raw("<message to='%s'><body>%s</body></message>" % (big.full, "b" * (limit + 64)))
    err = await big.expect(stream_error(), timeout=15)
    assert error_condition(err) == "policy-violation", dump(err)
    await big.wait_disconnected()
    # a stanza just under the limit is fine
    ok = await clients.login("big", "password")
    body = "c" * (limit // 2)
    ok.send_raw("<message to='%s'><body>%s</body></message>" % (ok.full, body))
    m = await ok.expect(message(frm=ok.full), timeout=15)
    assert len(m["body"]) == len(body)


@pytest.mark.rookery_config(PLAIN_OK)
async def test_nesting_bomb(server, clients):
    depth = server.config["limits"]["max_depth"]
    payload = "<message to='x@localhost'>" + "<a>" * (depth * 20)
    cond, closed, raw = await raw_error_after(server, payload)
    assert cond == "policy-violation", "got %r; raw: %r" % (cond, raw._raw[-500:])
    assert closed
    await assert_still_serving(server, clients)


@pytest.mark.rookery_config(PLAIN_OK)
async def test_nesting_within_limit_is_accepted(server, clients):
    server.add_user("deep", "password")
    c = await clients.login("deep", "password")
    inner = "<x xmlns='urn:example:nest'>" + "<a>" * 10 + "</a>" * 10 + "</x>"
    c.send_raw("<message to='%s'><body>nested</body>%s</message>" % (c.full, inner))
    await c.expect(message(frm=c.full, body="nested"))


@pytest.mark.rookery_config(PLAIN_OK)
async def test_doctype_is_rejected(server, clients):
    """RFC 6120 11.1: no DTDs, so no entity expansion ('billion laughs')."""
    payload = ("<?xml version='1.0'?>"
               "<!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;'>]>"
               "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
               "to='localhost' version='1.0'><message to='x@localhost'><body>&lol2;</body></message>")
    cond, closed, raw = await raw_error_after(server, payload, open_stream=False)
    assert cond in ("restricted-xml", "not-well-formed", "policy-violation"), \
        "got %r; raw: %r" % (cond, raw._raw[-500:])
    assert closed
    await assert_still_serving(server, clients)


@pytest.mark.rookery_config(PLAIN_OK)
async def test_stanza_before_authentication(server, clients):
    server.add_user("victim", "password")
    victim = await clients.login("victim", "password")
    cond, closed, raw = await raw_error_after(
        server, "<message to='victim@localhost' type='chat'><body>unauthenticated</body></message>")
    assert cond == "not-authorized", "got %r; raw: %r" % (cond, raw._raw[-500:])
    assert closed
    await victim.ping_server()
    victim.assert_none(message(body="unauthenticated"))


@pytest.mark.rookery_config(PLAIN_OK)
async def test_unknown_host(server, clients):
    raw = await RawStream.open(server.c2s_port)
    await raw.send("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                   "xmlns:stream='http://etherx.jabber.org/streams' to='not-served.example' version='1.0'>")
    cond = await raw.stream_error(timeout=10)
    closed = await raw.wait_closed(timeout=10)
    raw.close()
    assert cond == "host-unknown", cond
    assert closed
    await assert_still_serving(server, clients)


async def test_many_hostile_connections_then_normal_service(server, clients):
    """A burst of broken connections leaves the server healthy."""
    for i in range(20):
        raw = await RawStream.open(server.c2s_port)
        await raw.send("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                       "xmlns:stream='http://etherx.jabber.org/streams' to='%s' version='1.0'><<<" % DOMAIN)
        raw.close()
    await assert_still_serving(server, clients)
    server.add_user("watcher", "password")
    c = await clients.login("watcher", "password")
    c.send_presence(pstatus="fine")
    await c.expect(presence(frm=c.full, type=None))
