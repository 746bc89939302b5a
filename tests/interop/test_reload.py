"""Configuration reload on SIGHUP: a new certificate is shown to the next connection while a
signed-in slixmpp client stays connected, and a changed `admins` list takes effect; a broken
config is refused and the server keeps its old one."""
import asyncio
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request

from rookery_harness import ClientPool, to_toml


def make_cert(cert, key, cn: str) -> bytes:
    """A self-signed certificate for localhost (subject CN `cn`), written to cert/key; its DER."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=" + cn,
         "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True)
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


def shown_certificate(port: int) -> bytes:
    """The certificate the direct-TLS listener shows for localhost now."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["xmpp-client"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.getpeercert(binary_form=True)


def is_admin(server, user: str, password: str) -> bool:
    req = urllib.request.Request(
        "http://127.0.0.1:%d/api/v1/tokens" % server.http_port, method="POST",
        data=json.dumps({"jid": user + "@localhost", "password": password}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())["admin"]


async def until(probe, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        await asyncio.sleep(0.05)


async def test_sighup_reloads_certificates_and_admins_without_dropping_clients(server_factory, tmp_path):
    cert, key = tmp_path / "localhost.crt", tmp_path / "localhost.key"
    first = make_cert(cert, key, "first")
    overrides = {"tls": {"certificates": [{"host": "localhost", "cert": str(cert), "key": str(key)}]}}
    server = server_factory(overrides)
    assert shown_certificate(server.tls_port) == first
    server.add_user("alice", "alice-password")
    pool = ClientPool(server)
    try:
        alice = await pool.login("alice", "alice-password")
        assert not is_admin(server, "alice", "alice-password")

        second = make_cert(cert, key, "second")
        server.config["admins"] = ["alice@localhost"]
        server.config_path.write_text(to_toml(server.config))
        os.kill(server.proc.pid, signal.SIGHUP)
        await until(lambda: shown_certificate(server.tls_port) == second, "the new certificate")
        assert hashlib.sha256(second).digest() != hashlib.sha256(first).digest()
        assert is_admin(server, "alice", "alice-password")
        # The session from before the reload is still up.
        await alice.xmpp.plugin["xep_0199"].ping(jid="localhost", timeout=5)

        # A config that does not parse is refused; the running one stays.
        server.config_path.write_text("hosts = [unterminated\n")
        os.kill(server.proc.pid, signal.SIGHUP)
        await until(lambda: "configuration not reloaded" in server.log_tail(200), "the refusal")
        assert is_admin(server, "alice", "alice-password")
        assert shown_certificate(server.tls_port) == second
        await alice.xmpp.plugin["xep_0199"].ping(jid="localhost", timeout=5)
    finally:
        await pool.close_all()
