"""Federation with a real Prosody (Debian package): a slixmpp user on each server adds the other
and they chat over STARTTLS, once with dialback (self-signed certificates on both sides) and once
with SASL EXTERNAL (certificates from a test CA both trust, dialback refused by policy on both
sides). Prosody offers bidirectional streams (XEP-0288), so one stream carries both directions.

Prosody 0.12 has no static s2s routes, so it finds Rookery by DNS: the test maps the two test
domains to 127.0.0.1 in /etc/hosts and Rookery's s2s listener takes port 5269 (the fallback port
when there is no SRV record). Rookery reaches Prosody through a static route. When Prosody is
not installed, /etc/hosts is not writable or 5269 is taken, the test is skipped with the reason.
"""
import asyncio
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import slixmpp

from rookery_harness import ClientPool, free_ports, message, presence

PROSODY_DOMAIN = "prosody.test"
ROOKERY_DOMAIN = "rookery.test"


def ensure_hosts_entries() -> str | None:
    """Adds the test domains to /etc/hosts; returns why it cannot, or None."""
    hosts = Path("/etc/hosts")
    try:
        text = hosts.read_text()
        missing = [d for d in (PROSODY_DOMAIN, ROOKERY_DOMAIN) if d not in text.split()]
        if missing:
            with hosts.open("a") as f:
                f.write("\n127.0.0.1 %s\n" % " ".join(missing))
    except OSError as e:
        return "cannot map the test domains in /etc/hosts: %s" % e
    return None


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def wait_port(port: int, timeout: float = 20.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("port %d never opened" % port)


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


class FederationCa:
    """A certificate authority and the certificates it issues, made with the openssl CLI."""

    def __init__(self, workdir: Path):
        self.dir = workdir
        self.key, self.crt = workdir / "ca.key", workdir / "ca.crt"
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-subj", "/CN=Federation test CA", "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout", str(self.key), "-out", str(self.crt))

    def issue(self, domain: str) -> tuple[Path, Path]:
        key, csr, crt = (self.dir / ("%s.%s" % (domain, ext)) for ext in ("key", "csr", "crt"))
        ext = self.dir / ("%s.ext" % domain)
        ext.write_text("subjectAltName=DNS:%s,DNS:*.%s\n"
                       "extendedKeyUsage=serverAuth,clientAuth\n" % (domain, domain))
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=%s" % domain,
                "-keyout", str(key), "-out", str(csr))
        openssl("x509", "-req", "-in", str(csr), "-CA", str(self.crt), "-CAkey", str(self.key),
                "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(crt))
        return key, crt


class Prosody:
    def __init__(self, workdir: Path, ca: FederationCa | None = None):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.c2s, self.s2s = free_ports(2)
        if ca is None:
            key, crt = self.dir / "prosody.key", self.dir / "prosody.crt"
            openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=%s" % PROSODY_DOMAIN,
                    "-addext", "subjectAltName=DNS:%s" % PROSODY_DOMAIN,
                    "-keyout", str(key), "-out", str(crt))
            ssl_extra, secure = "", "false"
        else:
            key, crt = ca.issue(PROSODY_DOMAIN)
            ssl_extra, secure = '; cafile = "%s"' % ca.crt, "true"
        (self.dir / "data").mkdir(exist_ok=True)
        self.config = self.dir / "prosody.cfg.lua"
        self.config.write_text("""
pidfile = "{dir}/prosody.pid"
data_path = "{dir}/data"
log = {{ debug = "{dir}/prosody.log" }}
-- Prosody resolves with libunbound: let it see the test domains mapped in /etc/hosts.
unbound = {{ hoststxt = "/etc/hosts" }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s} }}
s2s_ports = {{ {s2s} }}
c2s_direct_tls_ports = {{ }}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "dialback"; "disco"; "ping"; "s2s_bidi" }}
authentication = "internal_hashed"
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = {secure}
ssl = {{ key = "{key}"; certificate = "{crt}"{ssl_extra} }}
VirtualHost "{domain}"
""".format(dir=self.dir, c2s=self.c2s, s2s=self.s2s, key=key, crt=crt, domain=PROSODY_DOMAIN,
           secure=secure, ssl_extra=ssl_extra))
        self.own()
        self.log = open(self.dir / "prosody.out", "wb")
        self.proc = None

    def own(self) -> None:
        # Run as root, prosody and prosodyctl switch to the 'prosody' user: it must own its files.
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", "prosody:prosody", str(self.dir)], check=True)

    def ctl(self, *args: str) -> None:
        subprocess.run(["prosodyctl", "--config", str(self.config), *args], check=True,
                       capture_output=True, timeout=30)

    def start(self) -> None:
        # Prosody refuses to work properly as root (mod_posix): run it as its own user.
        as_user = ["runuser", "-u", "prosody", "--"] if os.geteuid() == 0 else []
        self.proc = subprocess.Popen(as_user + ["prosody", "--config", str(self.config), "-F"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.c2s)
        wait_port(self.s2s)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


async def prosody_client(port: int, jid: str, password: str):
    """A slixmpp client signed in to Prosody, with roster and initial presence."""
    xmpp = slixmpp.ClientXMPP(jid, password)
    xmpp.ssl_context.check_hostname = False
    xmpp.ssl_context.verify_mode = ssl.CERT_NONE
    xmpp.enable_plaintext = False
    xmpp.auto_authorize = None
    xmpp.auto_subscribe = False
    inbox: asyncio.Queue = asyncio.Queue()
    started = asyncio.get_running_loop().create_future()

    async def on_start(_):
        await xmpp.get_roster()
        xmpp.send_presence()
        started.done() or started.set_result(True)

    xmpp.add_event_handler("session_start", on_start)
    xmpp.add_event_handler("failed_auth", lambda _: started.done() or started.set_exception(
        RuntimeError("prosody login failed")))
    for ev in ("message", "presence"):
        xmpp.add_event_handler(ev, inbox.put_nowait)
    xmpp.connect("127.0.0.1", port)
    await asyncio.wait_for(started, 20)
    return xmpp, inbox


async def expect(inbox: asyncio.Queue, pred, what: str, timeout: float = 20.0):
    end = asyncio.get_running_loop().time() + timeout
    seen = []
    while True:
        left = end - asyncio.get_running_loop().time()
        if left <= 0:
            raise AssertionError("prosody user: no %s; got %s" % (what, seen))
        try:
            st = await asyncio.wait_for(inbox.get(), left)
        except asyncio.TimeoutError:
            continue
        seen.append(str(st))
        if pred(st):
            return st


@pytest.mark.parametrize("auth", ["dialback", "sasl-external"])
async def test_rookery_and_prosody_users_subscribe_and_chat(server_factory, tmp_path, auth):
    if not shutil.which("prosody") or not shutil.which("openssl"):
        pytest.skip("prosody (Debian package) is not installed; scripts/test installs it")
    why = ensure_hosts_entries()
    if why:
        pytest.skip(why)
    if not port_free(5269):
        pytest.skip("port 5269 is taken; Prosody can only find Rookery there")
    # Not under pytest's tmp_path: the prosody user must be able to reach it.
    import tempfile
    workdir = Path(tempfile.mkdtemp(prefix="rookery-prosody-"))
    os.chmod(workdir, 0o755)
    ca = FederationCa(workdir) if auth == "sasl-external" else None
    prosody = Prosody(workdir, ca)
    config = {
        "hosts": [ROOKERY_DOMAIN],
        "listen": {"s2s": ["127.0.0.1:5269"]},
        "s2s": {"enabled": True, "routes": {PROSODY_DOMAIN: "127.0.0.1:%d" % prosody.s2s}},
    }
    if ca is not None:
        key, crt = ca.issue(ROOKERY_DOMAIN)
        config["tls"] = {"certificates": [{"host": ROOKERY_DOMAIN, "cert": str(crt),
                                           "key": str(key)}]}
        config["s2s"].update({"ca_file": str(ca.crt), "secure_auth": True})
    rookery = server_factory(config, name="rookery")
    rookery.domain = ROOKERY_DOMAIN
    rookery.add_user("romeo", "romeo-password")
    prosody.ctl("register", "juliet", PROSODY_DOMAIN, "juliet-password")
    prosody.start()
    pool = ClientPool(rookery)
    juliet = None
    try:
        romeo = await pool.login("romeo", "romeo-password", roster=True, presence=True)
        juliet, inbox = await prosody_client(prosody.c2s, "juliet@%s" % PROSODY_DOMAIN,
                                            "juliet-password")
        # Romeo (Rookery) asks; Juliet (Prosody) accepts and asks back.
        romeo.xmpp.send_presence(pto="juliet@%s" % PROSODY_DOMAIN, ptype="subscribe")
        await expect(inbox, lambda p: p.name == "presence" and p["type"] == "subscribe"
                     and p["from"].bare == "romeo@%s" % ROOKERY_DOMAIN, "subscription request")
        juliet.send_presence(pto="romeo@%s" % ROOKERY_DOMAIN, ptype="subscribed")
        await romeo.expect(presence(frm_bare="juliet@%s" % PROSODY_DOMAIN, type="subscribed"))
        juliet.send_presence(pto="romeo@%s" % ROOKERY_DOMAIN, ptype="subscribe")
        await romeo.expect(presence(frm_bare="juliet@%s" % PROSODY_DOMAIN, type="subscribe"))
        romeo.xmpp.send_presence(pto="juliet@%s" % PROSODY_DOMAIN, ptype="subscribed")
        await expect(inbox, lambda p: p.name == "presence" and p["type"] == "available"
                     and p["from"].bare == "romeo@%s" % ROOKERY_DOMAIN, "Romeo's presence")

        romeo.send_message("juliet@%s" % PROSODY_DOMAIN, "Wherefore art thou?")
        m = await expect(inbox, lambda s: s.name == "message" and s["body"], "Romeo's message")
        assert m["body"] == "Wherefore art thou?"
        assert m["from"].bare == "romeo@%s" % ROOKERY_DOMAIN
        juliet.send_message(mto="romeo@%s" % ROOKERY_DOMAIN, mbody="Here, on the balcony",
                            mtype="chat")
        await romeo.expect(message(frm_bare="juliet@%s" % PROSODY_DOMAIN,
                                   body="Here, on the balcony"))

        streams = [json.loads(line) for line in rookery.ctl("s2s").stdout.splitlines()]
        print("s2s streams:", streams)
        assert streams, "no s2s stream is listed"
        assert {s["auth"] for s in streams} == {auth}, streams
        assert all(s["remote"] == PROSODY_DOMAIN for s in streams), streams
    finally:
        if juliet is not None:
            juliet.disconnect()
        await pool.close_all()
        prosody.stop()
        if os.environ.get("KEEP_PROSODY") is None:
            shutil.rmtree(workdir, ignore_errors=True)
