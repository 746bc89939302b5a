"""Service administration: XEP-0133 ad-hoc commands (XEP-0050) used by a slixmpp admin client,
the `rookery` CLI against the running server (its admin socket), and the admin HTTP API."""
import json
import urllib.error
import urllib.request

import pytest

from rookery_harness import DEFAULT_PLUGINS, DOMAIN, LoginFailed, message

ADMIN = "http://jabber.org/protocol/admin"
ADMIN_CONFIG = {"admins": ["boss@localhost"]}


def submit(xmpp, values: dict):
    """A submitted XEP-0004 form with FORM_TYPE admin and these fields."""
    form = xmpp.plugin["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", ftype="hidden", value=ADMIN)
    for var, value in values.items():
        form.add_field(var=var, value=value)
    return form


async def run_command(admin, node: str, values: dict | None):
    """Executes a command; with values, completes its single form page. Returns the last reply."""
    adhoc = admin.xmpp.plugin["xep_0050"]
    first = await adhoc.send_command(DOMAIN, node, timeout=10)
    cmd = first["command"]
    if values is None:
        return first
    assert cmd["status"] == "executing", first
    return await adhoc.send_command(DOMAIN, node, action="complete", sessionid=cmd["sessionid"],
                                    payload=submit(admin.xmpp, values), timeout=10)


@pytest.mark.rookery_config(ADMIN_CONFIG)
async def test_slixmpp_admin_manages_users_with_adhoc_commands(server, clients):
    server.add_user("boss", "boss-password")
    plugins = DEFAULT_PLUGINS + ("xep_0004", "xep_0050")
    boss = await clients.login("boss", "boss-password", plugins=plugins)
    items = await boss.xmpp.plugin["xep_0050"].get_commands(DOMAIN, timeout=10)
    nodes = {i[1] for i in items["disco_items"]["items"]}
    assert ADMIN + "#add-user" in nodes and ADMIN + "#end-user-session" in nodes, nodes

    done = await run_command(boss, ADMIN + "#add-user", {
        "accountjid": "fresh@localhost", "password": "fresh-password",
        "password-verify": "fresh-password"})
    assert done["command"]["status"] == "completed", done
    fresh = await clients.login("fresh", "fresh-password")

    count = await run_command(boss, ADMIN + "#get-registered-users-num", None)
    form = count["command"]["form"]
    assert form.get_values()["registeredusersnum"] == "2", count

    # Ending the session disconnects the client; disabling keeps it out.
    done = await run_command(boss, ADMIN + "#end-user-session", {"accountjids": ["fresh@localhost"]})
    assert done["command"]["status"] == "completed", done
    await fresh.wait_disconnected()
    done = await run_command(boss, ADMIN + "#disable-user", {"accountjids": ["fresh@localhost"]})
    assert done["command"]["status"] == "completed", done
    with pytest.raises(LoginFailed):
        await clients.login("fresh", "fresh-password")

    # An announcement reaches online sessions.
    other = await clients.user("other")
    done = await run_command(boss, ADMIN + "#announce", {"subject": "Heads up",
                                                          "announcement": "Restart at five"})
    assert done["command"]["status"] == "completed", done
    await other.expect(message(frm=DOMAIN, body="Restart at five"))


@pytest.mark.rookery_config(ADMIN_CONFIG)
async def test_non_admins_cannot_run_commands(server, clients):
    plugins = DEFAULT_PLUGINS + ("xep_0004", "xep_0050")
    eve = await clients.user("eve", plugins=plugins)
    from slixmpp.exceptions import IqError
    with pytest.raises(IqError) as exc:
        await eve.xmpp.plugin["xep_0050"].send_command(DOMAIN, ADMIN + "#add-user", timeout=10)
    assert exc.value.condition == "forbidden"


async def test_cli_reaches_the_running_server(server, clients):
    alice = await clients.user("alice")
    listed = server.ctl("sessions", "list").stdout.split()
    assert alice.full in listed, listed
    assert server.ctl("sessions", "count").stdout.strip() == "1"
    assert "online_sessions: 1" in server.ctl("stats").stdout
    # Announcements and the message of the day go through the live server.
    server.ctl("announce", "--subject", "Hi", "Hello from the CLI")
    await alice.expect(message(frm=DOMAIN, body="Hello from the CLI"))
    server.ctl("motd", "set", "--subject", "Welcome", "Be nice")
    assert "Be nice" in server.ctl("motd", "show").stdout
    bob = await clients.user("bob")
    await bob.expect(message(frm=DOMAIN, body="Be nice"))
    # Disabling through the CLI ends the live session at once.
    server.ctl("user", "disable", alice.bare)
    await alice.wait_disconnected()
    with pytest.raises(LoginFailed):
        await clients.login("alice")
    server.ctl("user", "enable", alice.bare)
    again = await clients.login("alice")
    await again.ping_server()
    # Errors come back as a failing exit status with the reason.
    r = server.ctl("user", "disable", "nobody@localhost", check=False)
    assert r.returncode != 0 and "no such account" in r.stderr, r


def api(server, method: str, path: str, body=None, token: str | None = None):
    """One admin API call on the server's HTTP listener: (status, decoded JSON or None)."""
    req = urllib.request.Request(
        "http://127.0.0.1:%d/api/v1%s" % (server.http_port, path), method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json",
                 **({"Authorization": "Bearer " + token} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw else None


@pytest.mark.rookery_config(ADMIN_CONFIG)
async def test_a_user_added_through_the_http_api_signs_in_with_slixmpp(server, clients):
    server.add_user("boss", "boss-password")
    server.add_user("pleb", "pleb-password")
    status, pleb = api(server, "POST", "/tokens", {"jid": "pleb@localhost", "password": "pleb-password"})
    assert status == 201 and pleb["admin"] is False
    status, _ = api(server, "POST", "/users", {"jid": "nina@localhost", "password": "nina-password"},
                    token=pleb["token"])
    assert status == 403
    status, boss = api(server, "POST", "/tokens", {"jid": "boss@localhost", "password": "boss-password"})
    assert status == 201 and boss["admin"] is True
    status, _ = api(server, "POST", "/users", {"jid": "nina@localhost", "password": "nina-password"},
                    token=boss["token"])
    assert status == 201
    nina = await clients.login("nina", "nina-password")
    status, sessions = api(server, "GET", "/sessions", token=boss["token"])
    assert status == 200 and str(nina.xmpp.boundjid) in sessions, sessions
