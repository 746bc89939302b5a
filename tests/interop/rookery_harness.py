"""Harness for the interop suite: a real Rookery process plus slixmpp clients.

* ``RookeryServer``: writes a TOML config with free ports into a temp dir, runs
  ``$ROOKERY_BIN serve --config FILE`` (stderr+stdout to a log file), waits until
  the listeners accept connections, and offers ``add_user``/``stop``/``restart``.
* ``Client``: a connected ``slixmpp.ClientXMPP`` that records every stanza it
  receives, so tests can ``await client.expect(predicate)`` (with a timeout)
  instead of sleeping.
* ``RawStream``: a hand-driven XML stream over a plain asyncio socket, for the
  tests that must send things no well-behaved client library would send.
* Predicates (``presence(...)``, ``message(...)``, ``roster_push(...)``, ...) over
  the received stanzas' XML.
"""
from __future__ import annotations

import asyncio
import copy
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable

import slixmpp
from slixmpp import JID
from slixmpp.exceptions import IqError, IqTimeout

REPO_ROOT = Path(__file__).resolve().parents[2]
DOMAIN = "localhost"
TIMEOUT = 10.0  # default wait for one expected stanza / IQ reply

NS_CLIENT = "jabber:client"
NS_STREAMS = "http://etherx.jabber.org/streams"
NS_STREAM_ERR = "urn:ietf:params:xml:ns:xmpp-streams"
NS_STANZA_ERR = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_ROSTER = "jabber:iq:roster"
NS_DELAY = "urn:xmpp:delay"
NS_REGISTER = "jabber:iq:register"

DEFAULT_PLUGINS = ("xep_0030", "xep_0092", "xep_0199", "xep_0202")


def q(ns: str, name: str) -> str:
    """Clark notation for ElementTree: q('jabber:client', 'message')."""
    return "{%s}%s" % (ns, name)


# ---------------------------------------------------------------------------
# The server process
# ---------------------------------------------------------------------------

def rookery_bin() -> str:
    return os.environ.get("ROOKERY_BIN") or str(REPO_ROOT / "target" / "debug" / "rookery")


def free_ports(n: int) -> list[int]:
    """n distinct TCP ports that are free on 127.0.0.1 right now."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):  # inline table, e.g. an entry of `components`
        key = lambda k: k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)
        return "{" + ", ".join("%s = %s" % (key(k), _toml_value(x)) for k, x in v.items()) + "}"
    raise TypeError("cannot write %r as TOML" % (v,))


def to_toml(d: dict, prefix: str = "") -> str:
    # A table whose keys are not identifiers (s2s.routes: domain names) is written inline.
    inline = lambda v: isinstance(v, dict) and any(not k.replace("_", "").isalnum() for k in v)
    scalars = [(k, v) for k, v in d.items() if not isinstance(v, dict) or inline(v)]
    tables = [(k, v) for k, v in d.items() if isinstance(v, dict) and not inline(v)]
    lines = []
    if prefix and (scalars or not tables):
        lines.append("[%s]" % prefix)
    for k, v in scalars:
        lines.append("%s = %s" % (k, _toml_value(v)))
    out = "\n".join(lines) + ("\n" if lines else "")
    for k, v in tables:
        out += "\n" + to_toml(v, "%s.%s" % (prefix, k) if prefix else k)
    return out


class ServerError(Exception):
    pass


class RookeryServer:
    """One Rookery process with its own config, data dir, ports and log file."""

    def __init__(self, workdir: Path, overrides: dict | None = None, binary: str | None = None,
                 name: str = "rookery"):
        self.binary = binary or rookery_bin()
        self.name = name
        self.domain = DOMAIN
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.config_path = self.workdir / "rookery.toml"
        self.log_path = self.workdir / "rookery.log"
        self.c2s_port, self.tls_port, self.http_port = free_ports(3)
        base = {
            "hosts": [DOMAIN],
            "data_dir": str(self.data_dir),
            "listen": {
                "c2s": ["127.0.0.1:%d" % self.c2s_port],
                "c2s_direct_tls": ["127.0.0.1:%d" % self.tls_port],
                "http": ["127.0.0.1:%d" % self.http_port],
            },
            "tls": {"require_encryption": True},
            "limits": {
                "max_stanza_bytes": 262144,
                "max_stanza_bytes_unauthenticated": 16384,
                "max_depth": 32,
            },
            "registration": {"allow": False},
            # The SOCKS5 proxy on a port of its own choosing (discovered by clients).
            "modules": {"proxy65": {"listen": "127.0.0.1:0"}},
        }
        self.config = deep_merge(base, overrides or {})
        self.config_path.write_text(to_toml(self.config))
        self.proc: subprocess.Popen | None = None
        self.passwords: dict[str, str] = {}
        self._log_file = None
        self._stopped_by_us = True

    # -- lifecycle ---------------------------------------------------------
    def _env(self) -> dict:
        # Rookery reads ROOKERY_* variables as config overrides and rejects unknown ones,
        # so the harness's own variables (ROOKERY_BIN, ...) must not reach it.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROOKERY_")}
        env.setdefault("RUST_LOG", "info,rookery=debug,rookery_server=debug,rookery_core=debug")
        env.setdefault("RUST_BACKTRACE", "1")       # backtraces for panics...
        env.setdefault("RUST_LIB_BACKTRACE", "0")   # ...but not for every anyhow error
        env.setdefault("NO_COLOR", "1")
        return env

    def start(self, timeout: float = 30.0) -> None:
        if not os.access(self.binary, os.X_OK):
            raise ServerError("ROOKERY_BIN %r is not an executable file (build it with cargo build)" % self.binary)
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(("==== harness: starting %s serve --config %s\n"
                              % (self.binary, self.config_path)).encode())
        self._log_file.flush()
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--config", str(self.config_path)],
            stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
            env=self._env(), cwd=str(self.workdir),
        )
        self._stopped_by_us = False
        try:
            self.wait_ready(timeout)
        except Exception:
            self.stop()
            raise

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll until the c2s and direct-TLS listeners accept TCP connections."""
        deadline = time.monotonic() + timeout
        pending = [self.c2s_port, self.tls_port]
        while pending:
            if self.proc.poll() is not None:
                raise ServerError("rookery exited with status %s during startup; log:\n%s"
                                  % (self.proc.returncode, self.log_tail(40)))
            try:
                with socket.create_connection(("127.0.0.1", pending[0]), timeout=1):
                    pass
                pending.pop(0)
                continue
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ServerError("rookery did not accept connections on 127.0.0.1:%d within %.0fs; log:\n%s"
                                  % (pending[0], timeout, self.log_tail(40)))
            time.sleep(0.05)

    def died_unexpectedly(self) -> int | None:
        """Exit status if the process ended without stop() being called, else None."""
        if self.proc is not None and not self._stopped_by_us and self.proc.poll() is not None:
            return self.proc.returncode
        return None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait (SIGKILL after `timeout`). Returns the exit status."""
        self._stopped_by_us = True
        rc = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._note("did not exit %.0fs after SIGTERM; sending SIGKILL" % timeout)
                    self.proc.kill()
                    self.proc.wait(10)
            rc = self.proc.returncode
            self._note("process exited with status %s" % rc)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return rc

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> int | None:
        """SIGKILL, as a crash: no shutdown, no goodbye to anyone. Returns the exit status
        once the process is gone (its sockets closed by the kernel)."""
        self._stopped_by_us = True
        rc = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            rc = self.proc.returncode
            self._note("killed with SIGKILL (status %s)" % rc)
        return rc

    def _note(self, text: str) -> None:
        if self._log_file is not None and not self._log_file.closed:
            self._log_file.write(("==== harness: %s\n" % text).encode())
            self._log_file.flush()

    # -- CLI ---------------------------------------------------------------
    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [self.binary, "--config", str(self.config_path), *args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=self._env(),
                           stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise ServerError("%s exited %d\nstdout: %s\nstderr: %s"
                              % (" ".join(cmd), r.returncode, r.stdout, r.stderr))
        return r

    def add_user(self, local: str, password: str) -> str:
        jid = "%s@%s" % (local, self.domain)
        self.ctl("user", "add", jid, password)
        self.passwords[local] = password
        return jid

    # -- diagnostics -------------------------------------------------------
    def log_tail(self, max_lines: int = 300) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log file)"
        if len(lines) > max_lines:
            lines = ["... (%d earlier lines in %s)" % (len(lines) - max_lines, self.log_path)] + lines[-max_lines:]
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# Predicates over received stanzas (slixmpp stanza objects or ET elements)
# ---------------------------------------------------------------------------

def _xml(st) -> ET.Element:
    return st.xml if hasattr(st, "xml") else st


def _jid_eq(a: str | None, b: str | JID | None) -> bool:
    if a is None or b is None:
        return False
    try:
        return JID(a) == JID(str(b))
    except Exception:
        return a == str(b)


def _bare(j: str | None) -> str | None:
    if j is None:
        return None
    try:
        return JID(j).bare
    except Exception:
        return j.split("/", 1)[0]


class Pred:
    """A named predicate, so that timeouts say what was awaited."""

    def __init__(self, fn: Callable[[ET.Element], bool], desc: str):
        self.fn, self.desc = fn, desc

    def __call__(self, st) -> bool:
        try:
            return bool(self.fn(_xml(st)))
        except Exception:
            return False

    def __and__(self, other: "Pred") -> "Pred":
        return Pred(lambda x: self.fn(x) and other.fn(x), "%s and %s" % (self.desc, other.desc))

    def __repr__(self) -> str:
        return self.desc


_UNSET = object()


def stanza(kind: str, *, frm=None, frm_bare=None, type=_UNSET, id=None) -> Pred:
    """kind: message|presence|iq. frm: exact (full or bare) JID; frm_bare: compare bare JIDs.
    type=None means 'no type attribute' (available presence / normal message)."""
    def fn(x):
        if x.tag != q(NS_CLIENT, kind):
            return False
        if frm is not None and not _jid_eq(x.get("from"), frm):
            return False
        if frm_bare is not None and _bare(x.get("from")) != _bare(str(frm_bare)):
            return False
        if type is not _UNSET:
            t = x.get("type")
            if type is None or type == "available" and kind == "presence":
                if t not in (None, "available"):
                    return False
            elif t != type:
                return False
        if id is not None and x.get("id") != id:
            return False
        return True
    parts = [kind]
    for k, v in (("from", frm), ("from~", frm_bare), ("id", id)):
        if v is not None:
            parts.append("%s=%s" % (k, v))
    if type is not _UNSET:
        parts.append("type=%s" % type)
    return Pred(fn, " ".join(parts))


def presence(frm=None, *, frm_bare=None, type=_UNSET) -> Pred:
    return stanza("presence", frm=frm, frm_bare=frm_bare, type=type)


def message(frm=None, *, frm_bare=None, type=_UNSET, body=None) -> Pred:
    p = stanza("message", frm=frm, frm_bare=frm_bare, type=type)
    if body is None:
        return p
    return p & Pred(lambda x: (x.findtext(q(NS_CLIENT, "body")) or "") == body, "body=%r" % body)


def roster_push(contact, *, subscription=None, ask=_UNSET) -> Pred:
    """An <iq type='set'> roster push whose single item is `contact` (bare JID)."""
    def fn(x):
        if x.tag != q(NS_CLIENT, "iq") or x.get("type") != "set":
            return False
        query = x.find(q(NS_ROSTER, "query"))
        if query is None:
            return False
        items = query.findall(q(NS_ROSTER, "item"))
        if len(items) != 1 or not _jid_eq(items[0].get("jid"), _bare(str(contact))):
            return False
        if subscription is not None and items[0].get("subscription", "none") != subscription:
            return False
        if ask is not _UNSET and items[0].get("ask") != ask:
            return False
        return True
    return Pred(fn, "roster push item=%s subscription=%s ask=%s"
                % (contact, subscription, "*" if ask is _UNSET else ask))


def stream_error() -> Pred:
    return Pred(lambda x: x.tag == q(NS_STREAMS, "error"), "<stream:error/>")


def error_condition(el) -> str | None:
    """The defined condition of a stanza error or stream error element (or of the stanza holding one)."""
    x = _xml(el)
    if x.tag == q(NS_STREAMS, "error"):
        err, ns = x, NS_STREAM_ERR
    else:
        err, ns = x.find(q(NS_CLIENT, "error")), NS_STANZA_ERR
        if err is None:
            err = x.find("error")
    if err is None:
        return None
    for child in err:
        if child.tag.startswith("{%s}" % ns) and child.tag != q(ns, "text"):
            return child.tag.split("}", 1)[1]
    return None


def child(x, ns: str, name: str):
    return _xml(x).find(q(ns, name))


def dump(st) -> str:
    """Readable XML of a stanza object or element."""
    try:
        if hasattr(st, "xml"):
            return str(st)
        return ET.tostring(st, encoding="unicode")
    except Exception:
        return repr(st)


def _is_stanza_or_stream_error(st) -> bool:
    tag = _xml(st).tag
    return tag.startswith("{%s}" % NS_CLIENT) or tag == q(NS_STREAMS, "error")


# ---------------------------------------------------------------------------
# slixmpp clients
# ---------------------------------------------------------------------------

class LoginFailed(Exception):
    def __init__(self, kind: str, detail: Any, client: "Client"):
        super().__init__("%s: %s" % (kind, dump(detail) if hasattr(detail, "xml") else detail))
        self.kind, self.detail, self.client = kind, detail, client

    @property
    def condition(self) -> str | None:
        if hasattr(self.detail, "xml"):
            x = self.detail.xml
            for c in x:
                if c.tag.startswith("{%s}" % NS_SASL) and not c.tag.endswith("}text"):
                    return c.tag.split("}", 1)[1]
            return error_condition(x)
        return None


class Client:
    """A slixmpp ClientXMPP and a log of every stanza it received."""

    def __init__(self, xmpp: slixmpp.ClientXMPP, name: str):
        self.xmpp = xmpp
        self.name = name
        self.received: list = []
        self._consumed: set[int] = set()
        self._waiters: list = []
        self.mechanism: str | None = None
        self.features: list = []  # <stream:features/> elements seen, in order
        xmpp.add_filter("in", self._record)
        xmpp.add_event_handler("auth_success", self._on_auth_success)

    def _on_auth_success(self, _):
        self.mechanism = getattr(self.xmpp.plugin["feature_mechanisms"].mech, "name", None)

    def _record(self, st):
        idx = len(self.received)
        self.received.append(st)
        if st.xml.tag == q(NS_STREAMS, "features"):
            self.features.append(st.xml)
        for waiter in list(self._waiters):
            pred, fut = waiter
            if not fut.done() and pred(st):
                self._consumed.add(idx)
                self._waiters.remove(waiter)
                fut.set_result(st)
                break
        return st

    # -- identity ------------------------------------------------------------
    @property
    def jid(self) -> JID:
        """The full JID the server bound."""
        return self.xmpp.boundjid

    @property
    def bare(self) -> str:
        return self.xmpp.boundjid.bare

    @property
    def full(self) -> str:
        return self.xmpp.boundjid.full

    @property
    def encrypted(self) -> bool:
        return isinstance(self.xmpp.socket, (ssl.SSLObject, ssl.SSLSocket))

    @property
    def connected(self) -> bool:
        return self.xmpp.transport is not None

    # -- waiting ---------------------------------------------------------------
    def pending(self, pred: Callable | None = None) -> list:
        """Received stanzas not consumed by expect(), optionally filtered."""
        return [st for i, st in enumerate(self.received)
                if i not in self._consumed and (pred is None or pred(st))]

    async def expect(self, pred: Callable, timeout: float = TIMEOUT, what: str | None = None):
        """Return (and consume) the first unconsumed received stanza matching pred,
        waiting up to `timeout` seconds for it to arrive."""
        for i, st in enumerate(self.received):
            if i not in self._consumed and pred(st):
                self._consumed.add(i)
                return st
        fut = asyncio.get_running_loop().create_future()
        waiter = (pred, fut)
        self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            unconsumed = "\n".join("    " + dump(s) for s in self.pending(_is_stanza_or_stream_error)[-15:])
            unconsumed = unconsumed or "    (nothing)"
            raise AssertionError("%s: no stanza matching [%s] within %.0fs; unconsumed stanzas received:\n%s"
                                 % (self.name, what or getattr(pred, "desc", pred), timeout, unconsumed)) from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def assert_none(self, pred: Callable, what: str | None = None) -> None:
        bad = self.pending(pred)
        assert not bad, "%s unexpectedly received [%s]:\n%s" % (
            self.name, what or getattr(pred, "desc", pred), "\n".join(dump(s) for s in bad))

    async def wait_disconnected(self, timeout: float = TIMEOUT) -> None:
        """Wait until the connection is closed (by either side)."""
        if self.xmpp.transport is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self.xmpp.disconnected), timeout)
        except asyncio.TimeoutError:
            raise AssertionError("%s: connection still open after %.0fs" % (self.name, timeout)) from None

    # -- sending -----------------------------------------------------------------
    async def iq(self, iq, timeout: float = TIMEOUT):
        """Send an IQ and return the reply, result or error (never raises IqError)."""
        try:
            return await iq.send(timeout=timeout)
        except IqError as e:
            return e.iq
        except IqTimeout:
            raise AssertionError("%s: no reply to IQ within %.0fs: %s" % (self.name, timeout, dump(iq))) from None

    async def reply_of(self, fut, timeout: float = TIMEOUT):
        """Await a future returned by a slixmpp plugin call (iq.send()); return the reply, result or error."""
        try:
            return await asyncio.wait_for(fut, timeout)
        except IqError as e:
            return e.iq
        except (IqTimeout, asyncio.TimeoutError):
            raise AssertionError("%s: no reply within %.0fs" % (self.name, timeout)) from None

    async def iq_get(self, payload: str | ET.Element, to: str | None = None, timeout: float = TIMEOUT):
        return await self.iq(self._make_iq("get", payload, to), timeout)

    async def iq_set(self, payload: str | ET.Element, to: str | None = None, timeout: float = TIMEOUT):
        return await self.iq(self._make_iq("set", payload, to), timeout)

    def _make_iq(self, itype: str, payload, to):
        iq = self.xmpp.Iq()
        iq["type"] = itype
        if to:
            iq["to"] = to
        if isinstance(payload, str):
            payload = ET.fromstring(payload)
        iq.append(payload)
        return iq

    async def ping_server(self, timeout: float = TIMEOUT) -> None:
        """Round trip to the server: everything this client sent before has been processed."""
        reply = await self.iq_get("<ping xmlns='urn:xmpp:ping'/>", to=DOMAIN, timeout=timeout)
        assert reply["type"] == "result", "ping to server failed: %s" % dump(reply)

    def send_presence(self, **kw) -> None:
        self.xmpp.send_presence(**kw)

    def send_message(self, to, body: str, mtype: str = "chat") -> None:
        self.xmpp.send_message(mto=to, mbody=body, mtype=mtype)

    def send_raw(self, data: str) -> None:
        self.xmpp.send_raw(data)

    # -- leaving -------------------------------------------------------------------
    async def close(self, wait: float = 2.0) -> None:
        """Graceful: </stream:stream>, wait for the server's closing tag (or `wait` s)."""
        if not self.connected:
            self.xmpp.cancel_connection_attempt()
            return
        try:
            await asyncio.wait_for(self.xmpp.disconnect(wait=wait), wait + 3)
        except Exception:
            self.abort()

    def abort(self) -> None:
        """Drop the TCP connection without closing the XML stream."""
        self.xmpp.cancel_connection_attempt()
        if self.xmpp.transport is not None:
            self.xmpp.abort()


async def connect(server: RookeryServer, local: str, password: str | None = None, *,
                  resource: str | None = None, direct_tls: bool = False, port: int | None = None,
                  sasl_mech: str | None = None, plugins=DEFAULT_PLUGINS, plugin_config: dict | None = None,
                  roster: bool = True, presence: bool = True, timeout: float = 20.0,
                  setup: Callable[[slixmpp.ClientXMPP], None] | None = None,
                  name: str | None = None) -> Client:
    """Connect, authenticate and bind a slixmpp client; return it after session_start.

    With roster=True the roster is requested (so this resource gets roster pushes);
    with presence=True initial presence is sent and its reflection to the sender
    (RFC 6121 4.2.2) is awaited, so the server treats the resource as available
    before the test goes on. Raises LoginFailed if the login does not succeed."""
    if password is None:
        password = server.passwords.get(local, "password")
    jid = "%s@%s" % (local, server.domain) + ("/" + resource if resource else "")
    loop = asyncio.get_running_loop()
    xmpp = slixmpp.ClientXMPP(jid, password, sasl_mech=sasl_mech, loop=loop,
                              plugin_config=plugin_config or {})
    # Rookery generates a self-signed certificate: accept it.
    xmpp.ssl_context.check_hostname = False
    xmpp.ssl_context.verify_mode = ssl.CERT_NONE
    xmpp.enable_direct_tls = direct_tls
    xmpp.enable_starttls = not direct_tls
    xmpp.enable_plaintext = False
    xmpp.auto_authorize = None   # tests answer subscription requests themselves
    xmpp.auto_subscribe = False
    for p in plugins:
        xmpp.register_plugin(p)
    if setup is not None:
        setup(xmpp)
    client = Client(xmpp, name or jid)

    outcome = loop.create_future()

    def finish(kind):
        def handler(data=None):
            if not outcome.done():
                outcome.set_result((kind, data))
        return handler

    for event, kind in (("session_start", "ok"), ("failed_auth", "failed_auth"),
                        ("failed_all_auth", "failed_all_auth"), ("stream_error", "stream_error"),
                        ("connection_failed", "connection_failed"), ("disconnected", "disconnected")):
        xmpp.add_event_handler(event, finish(kind), disposable=True)

    if port is None:
        port = server.tls_port if direct_tls else server.c2s_port
    xmpp.connect("127.0.0.1", port)
    try:
        kind, data = await asyncio.wait_for(outcome, timeout)
    except asyncio.TimeoutError:
        client.abort()
        received = "\n".join("    " + dump(s) for s in client.received[-10:])
        raise LoginFailed("timeout", "no session_start within %.0fs; last received:\n%s" % (timeout, received),
                          client) from None
    if kind != "ok":
        client.abort()
        raise LoginFailed(kind, data, client)

    if roster:
        reply = await client.iq(client.xmpp.make_iq_get(queryxmlns=NS_ROSTER))
        assert reply["type"] == "result", "%s: roster get failed: %s" % (client.name, dump(reply))
        client.roster_result = reply
    if presence:
        xmpp.send_presence()
        await client.expect(stanza("presence", frm=client.full, type=None),
                            what="reflection of own initial presence (RFC 6121 4.2.2)")
    return client


class ClientPool:
    """Creates clients for a test and disconnects them all at teardown."""

    def __init__(self, server: RookeryServer):
        self.server = server
        self.clients: list[Client] = []

    async def login(self, local: str, password: str | None = None, *,
                    server: RookeryServer | None = None, **kw) -> Client:
        """Log in to this pool's server, or to `server` (another node sharing its accounts)."""
        if password is None:
            password = self.server.passwords.get(local)
        try:
            c = await connect(server or self.server, local, password, **kw)
        except LoginFailed as e:
            self.clients.append(e.client)
            raise
        self.clients.append(c)
        return c

    async def user(self, local: str, password: str = "secret-password", **kw) -> Client:
        """Create the account with the CLI (on this pool's server), then log in (to `server=`
        if given)."""
        self.server.add_user(local, password)
        return await self.login(local, password, **kw)

    async def close_all(self) -> None:
        await asyncio.gather(*(c.close(wait=1.0) for c in self.clients), return_exceptions=True)
        for c in self.clients:
            c.abort()


async def befriend(a: Client, b: Client) -> None:
    """Mutual presence subscription between two online clients (RFC 6121 3.1), asserting
    the presence stanzas and the final roster pushes on both sides."""
    for x, y in ((a, b), (b, a)):
        x.send_presence(pto=y.bare, ptype="subscribe")
        await y.expect(presence(frm_bare=x.bare, type="subscribe"))
        y.send_presence(pto=x.bare, ptype="subscribed")
        await x.expect(presence(frm_bare=y.bare, type="subscribed"))
        # y's current presence reaches x once x is subscribed to it (RFC 6121 3.1.5/4.3.2)
        await x.expect(presence(frm=y.full, type=None), what="%s's presence after 'subscribed'" % y.name)
    await a.expect(roster_push(b.bare, subscription="both"))
    await b.expect(roster_push(a.bare, subscription="both"))


# ---------------------------------------------------------------------------
# A raw XML stream, for input no client library would send
# ---------------------------------------------------------------------------

STREAM_HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                 "xmlns:stream='http://etherx.jabber.org/streams' to='%s' version='1.0' xml:lang='en'>")


class RawStream:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.root_attrs: dict | None = None
        self.closed_by_peer = False   # </stream:stream> seen
        self.eof = False
        self._elements: list[ET.Element] = []
        self._raw = b""
        self._new_parser()

    @classmethod
    async def open(cls, port: int, host: str = "127.0.0.1", timeout: float = TIMEOUT) -> "RawStream":
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        return cls(reader, writer)

    def _new_parser(self) -> None:
        self._parser = ET.XMLPullParser(events=("start", "end"))
        self._depth = 0

    async def send(self, data: str | bytes) -> bool:
        """Write and drain; False if the peer already closed the connection."""
        if isinstance(data, str):
            data = data.encode()
        try:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), TIMEOUT)
            return True
        except (ConnectionError, OSError, asyncio.TimeoutError):
            return False

    async def _read_more(self, timeout: float) -> None:
        try:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
        except (ConnectionError, OSError):
            data = b""
        if not data:
            self.eof = True
            return
        self._raw += data
        try:
            self._parser.feed(data)
            events = list(self._parser.read_events())
        except ET.ParseError as e:
            raise AssertionError("server sent malformed XML (%s): %r" % (e, self._raw[-2000:])) from None
        for ev, el in events:
            if ev == "start":
                if self._depth == 0:
                    self.root_attrs = dict(el.attrib)
                self._depth += 1
            else:
                self._depth -= 1
                if self._depth == 1:
                    self._elements.append(el)
                elif self._depth == 0:
                    self.closed_by_peer = True

    async def next_element(self, timeout: float = TIMEOUT) -> ET.Element | None:
        """The next top-level element, or None at end of stream/connection."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self._elements:
            if self.eof or self.closed_by_peer:
                return None
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError("no element from the server within %.0fs; raw data so far: %r"
                                     % (timeout, self._raw[-2000:]))
            try:
                await self._read_more(remaining)
            except asyncio.TimeoutError:
                pass
        return self._elements.pop(0)

    async def expect(self, tag: str, timeout: float = TIMEOUT) -> ET.Element:
        el = await self.next_element(timeout)
        assert el is not None, "stream ended while waiting for %s; raw: %r" % (tag, self._raw[-2000:])
        assert el.tag == tag, "expected %s, got %s" % (tag, dump(el))
        return el

    async def open_stream(self, to: str = DOMAIN, timeout: float = TIMEOUT) -> ET.Element:
        """Send a stream header; return the server's <stream:features/>."""
        await self.send(STREAM_HEADER % to)
        return await self.expect(q(NS_STREAMS, "features"), timeout)

    async def starttls(self) -> ET.Element:
        """STARTTLS + stream restart; returns the new features."""
        await self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        await self.expect(q(NS_TLS, "proceed"))
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        await asyncio.wait_for(self.writer.start_tls(ctx, server_hostname=DOMAIN), TIMEOUT)
        self._new_parser()
        return await self.open_stream()

    async def stream_error(self, timeout: float = TIMEOUT) -> str | None:
        """Read until a <stream:error/>; return its condition (None if the stream ended without one)."""
        while True:
            el = await self.next_element(timeout)
            if el is None:
                return None
            if el.tag == q(NS_STREAMS, "error"):
                return error_condition(el)

    async def wait_closed(self, timeout: float = TIMEOUT) -> bool:
        """True once the server closed the connection (EOF) within `timeout`."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.eof:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            try:
                await self._read_more(remaining)
            except asyncio.TimeoutError:
                return False
            except AssertionError:
                continue
        return True

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:
            pass
