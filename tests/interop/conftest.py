"""Fixtures for the interop suite (see rookery_harness.py).

* ``server``: a fresh Rookery process per test (free ports, temp data dir). A test
  can change its config with ``@pytest.mark.rookery_config({...})``, deep-merged
  into the default config.
* ``clients``: a ClientPool bound to ``server``; every client it makes is
  disconnected at teardown.
On failure the server log is attached to the report ("rookery log" section).
"""
import pytest

from rookery_harness import ClientPool, RookeryServer, ServerError


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for srv in getattr(item, "_rookery_servers", []):
            report.sections.append(("rookery log: %s (%s)" % (srv.name, srv.log_path), srv.log_tail()))


@pytest.fixture
def server_factory(request, tmp_path):
    """Make extra servers: server_factory(overrides=None, name=...). Stopped at teardown."""
    servers = []
    request.node._rookery_servers = servers

    def make(overrides=None, name=None, start=True):
        name = name or "rookery-%d" % (len(servers) + 1)
        srv = RookeryServer(tmp_path / name, overrides, name=name)
        servers.append(srv)
        if start:
            error = None
            try:
                srv.start()
            except ServerError as e:
                error = str(e)
            if error is not None:
                pytest.fail(error, pytrace=False)
        return srv

    yield make

    died = [(s, s.died_unexpectedly()) for s in servers]
    for s in servers:
        s.stop()
    crashed = [(s, rc) for s, rc in died if rc is not None]
    if crashed:
        pytest.fail("server process exited on its own during the test: %s"
                    % ", ".join("%s (status %s)" % (s.name, rc) for s, rc in crashed), pytrace=False)


@pytest.fixture
def server(request, server_factory):
    marker = request.node.get_closest_marker("rookery_config")
    overrides = marker.args[0] if marker else {}
    return server_factory(overrides, name="rookery")


@pytest.fixture
async def clients(server):
    pool = ClientPool(server)
    yield pool
    await pool.close_all()
