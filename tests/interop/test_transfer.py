"""File transfer with slixmpp's own implementations: HTTP upload (XEP-0363, xep_0363 with
aiohttp), SOCKS5 bytestreams through the server's proxy (XEP-0065, xep_0065) and in-band
bytestreams (XEP-0047, xep_0047), each checked byte for byte."""
import asyncio
import hashlib
import io
import os

import aiohttp
import pytest
from slixmpp.exceptions import IqError
from slixmpp.plugins.xep_0363.http_upload import HTTPError

from rookery_harness import DEFAULT_PLUGINS, DOMAIN, TIMEOUT, dump, error_condition, q

NS_UPLOAD = "urn:xmpp:http:upload:0"
UPLOAD_JID = "upload." + DOMAIN
PROXY_JID = "proxy." + DOMAIN


def payload(n: int) -> bytes:
    """n random bytes: a lost, repeated or reordered block changes the checksum."""
    return os.urandom(n)


def digest(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


async def uploader(clients, name="romeo"):
    return await clients.user(name, plugins=DEFAULT_PLUGINS + ("xep_0363",))


async def fetch(url: str) -> tuple[int, bytes, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as r:
            return r.status, await r.read(), dict(r.headers)


async def test_upload_5mb_and_fetch_it_back_identical(server, clients):
    romeo = await uploader(clients)
    data = payload(5 * 1024 * 1024)
    url = await romeo.xmpp.plugin["xep_0363"].upload_file(
        "holiday.bin", size=len(data), content_type="application/octet-stream",
        input_file=io.BytesIO(data), timeout=TIMEOUT)
    assert url.startswith("http://127.0.0.1:%d/upload/" % server.http_port), url
    status, body, headers = await fetch(url)
    assert status == 200
    assert digest(body) == digest(data)
    assert headers["Content-Type"] == "application/octet-stream"
    # The service advertised its limit (XEP-0128), and slixmpp read it.
    assert romeo.xmpp.plugin["xep_0363"].max_file_size == 100 * 1024 * 1024


@pytest.mark.rookery_config({"modules": {"upload": {"max_file_size": 100000}}})
async def test_oversize_request_is_refused_with_the_limit(server, clients):
    romeo = await uploader(clients)
    with pytest.raises(IqError) as e:
        await romeo.xmpp.plugin["xep_0363"].request_slot(
            UPLOAD_JID, "big.bin", 100001, "application/octet-stream", timeout=TIMEOUT)
    iq = e.value.iq
    assert error_condition(iq) == "not-acceptable", dump(iq)
    limit = iq.xml.find(".//" + q(NS_UPLOAD, "max-file-size"))
    assert limit is not None and limit.text == "100000", dump(iq)


@pytest.mark.rookery_config({"modules": {"upload": {"quota_bytes": 300000}}})
async def test_the_quota_is_enforced(server, clients):
    romeo = await uploader(clients)
    upload = romeo.xmpp.plugin["xep_0363"]
    first = payload(200000)
    await upload.upload_file("one.bin", size=len(first), input_file=io.BytesIO(first),
                             content_type="application/octet-stream", timeout=TIMEOUT)
    with pytest.raises(IqError) as e:
        await upload.request_slot(UPLOAD_JID, "two.bin", 200000, "application/octet-stream",
                                  timeout=TIMEOUT)
    assert error_condition(e.value.iq) == "resource-constraint", dump(e.value.iq)
    assert e.value.iq["error"]["type"] == "wait"
    # What still fits is granted; another user has a quota of their own.
    await upload.request_slot(UPLOAD_JID, "three.bin", 100000, "application/octet-stream",
                              timeout=TIMEOUT)
    juliet = await uploader(clients, "juliet")
    await juliet.xmpp.plugin["xep_0363"].request_slot(
        UPLOAD_JID, "two.bin", 200000, "application/octet-stream", timeout=TIMEOUT)


@pytest.mark.rookery_config({"modules": {"upload": {"slot_lifetime_seconds": 0}}})
async def test_an_expired_slot_is_refused(server, clients):
    """A lifetime of 0: every slot is void as soon as it is granted."""
    romeo = await uploader(clients)
    data = b"too late"
    with pytest.raises(HTTPError) as e:
        await romeo.xmpp.plugin["xep_0363"].upload_file(
            "late.txt", size=len(data), content_type="text/plain",
            input_file=io.BytesIO(data), timeout=TIMEOUT)
    assert e.value.args[0] == 403, e.value.args


# --- SOCKS5 bytestreams (XEP-0065) --------------------------------------------------------

S5B = DEFAULT_PLUGINS + ("xep_0065",)


async def test_file_through_the_socks5_proxy(server, clients):
    romeo = await clients.user("romeo", plugins=S5B)
    juliet = await clients.user("juliet", plugins=S5B,
                                plugin_config={"xep_0065": {"auto_accept": True}})
    data = payload(3 * 1024 * 1024)
    received = bytearray()
    closed = asyncio.get_running_loop().create_future()
    juliet.xmpp.add_event_handler("socks5_data", received.extend)
    juliet.xmpp.add_event_handler(
        "socks5_closed", lambda exc: closed.done() or closed.set_result(exc))

    s5b = romeo.xmpp.plugin["xep_0065"]
    proxies = await s5b.discover_proxies(timeout=TIMEOUT)
    assert PROXY_JID in proxies, proxies
    assert proxies[PROXY_JID][0] == "127.0.0.1", proxies
    sock = await asyncio.wait_for(s5b.handshake(juliet.full), TIMEOUT)
    assert sock is not None, "handshake through the proxy failed"
    for i in range(0, len(data), 65536):
        await sock.write(data[i:i + 65536])
    sock.transport.close()
    await asyncio.wait_for(closed, TIMEOUT)
    assert len(received) == len(data)
    assert digest(bytes(received)) == digest(data)


async def socks5_connect(host: str, port: int, dst: str):
    """A raw SOCKS5 CONNECT as XEP-0065 uses it; returns the open streams."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"\x05\x01\x00")
    assert await reader.readexactly(2) == b"\x05\x00"
    writer.write(b"\x05\x01\x00\x03" + bytes([len(dst)]) + dst.encode() + b"\x00\x00")
    reply = await reader.readexactly(5 + len(dst) + 2)
    assert reply[1] == 0, reply
    return reader, writer


async def test_only_the_initiator_may_activate(server, clients):
    romeo = await clients.user("romeo", plugins=S5B)
    juliet = await clients.user("juliet", plugins=S5B)
    mercutio = await clients.user("mercutio", plugins=S5B)
    addr = await romeo.xmpp.plugin["xep_0065"].get_network_address(PROXY_JID, timeout=TIMEOUT)
    host, port = addr["socks"]["streamhost"]["host"], int(addr["socks"]["streamhost"]["port"])
    sid = "s5b-activation"
    dst = romeo.xmpp.plugin["xep_0065"]._get_dest_sha1(sid, romeo.full, juliet.full)
    target_r, target_w = await socks5_connect(host, port, dst)
    init_r, init_w = await socks5_connect(host, port, dst)

    for who, target in ((juliet, romeo.full), (mercutio, juliet.full), (juliet, juliet.full)):
        with pytest.raises(IqError) as e:
            await who.xmpp.plugin["xep_0065"].activate(PROXY_JID, sid, target, timeout=TIMEOUT)
        assert error_condition(e.value.iq) == "item-not-found", dump(e.value.iq)

    await romeo.xmpp.plugin["xep_0065"].activate(PROXY_JID, sid, juliet.full, timeout=TIMEOUT)
    init_w.write(b"wherefore")
    await init_w.drain()
    assert await asyncio.wait_for(target_r.readexactly(9), TIMEOUT) == b"wherefore"
    for w in (init_w, target_w):
        w.close()


# --- In-band bytestreams (XEP-0047) --------------------------------------------------------

IBB = DEFAULT_PLUGINS + ("xep_0047",)


async def ibb_transfer(clients, size: int, use_messages: bool) -> None:
    romeo = await clients.user("romeo", plugins=IBB)
    juliet = await clients.user("juliet", plugins=IBB,
                                plugin_config={"xep_0047": {"auto_accept": True}})
    data = payload(size)
    started = asyncio.get_running_loop().create_future()
    juliet.xmpp.add_event_handler(
        "ibb_stream_start", lambda s: started.done() or started.set_result(s))
    stream = await romeo.xmpp.plugin["xep_0047"].open_stream(
        juliet.full, block_size=4096, use_messages=use_messages, timeout=TIMEOUT)
    incoming = await asyncio.wait_for(started, TIMEOUT)
    gathered = asyncio.ensure_future(incoming.gather(timeout=60))
    await stream.sendall(data, timeout=TIMEOUT)
    await stream.close(timeout=TIMEOUT)
    got = await asyncio.wait_for(gathered, 60)
    assert len(got) == len(data)
    assert digest(got) == digest(data)
    # No block was refused or reordered on the way: the receiver never answered an error.
    assert not romeo.pending(lambda st: st.xml.get("type") == "error"), \
        [dump(s) for s in romeo.pending(lambda st: st.xml.get("type") == "error")]


async def test_ibb_file_over_iq(server, clients):
    await ibb_transfer(clients, 512 * 1024, use_messages=False)


# The sender is slowed to 64 KB/s: data blocks queue up in the server but stay in sequence.
@pytest.mark.rookery_config({"limits": {"rate_bytes_per_second": 65536}})
async def test_ibb_file_over_messages_under_the_rate_limit(server, clients):
    await ibb_transfer(clients, 256 * 1024, use_messages=True)
