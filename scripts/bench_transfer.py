"""File transfer benchmark (run through scripts/bench-transfer): HTTP upload and download
throughput (XEP-0363, curl as the HTTP client), SOCKS5 proxy throughput (XEP-0065, two plain
sockets through the proxy), and the server's resident memory sampled every 20 ms meanwhile.

The slot and the proxy activation go over XMPP with slixmpp; the bytes move with curl and
blocking sockets, so the client side is not the bottleneck. Prints a Markdown table."""
import argparse
import asyncio
import hashlib
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import slixmpp

MB = 1024 * 1024
DOMAIN = "localhost"
PASSWORD = "bench-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RssSampler:
    """Samples a process's VmRSS (kB) from /proc until stopped; keeps the peak."""

    def __init__(self, pid: int):
        self.pid, self.peak, self.samples = pid, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> int:
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            self.samples += 1
            self._stop.wait(0.02)

    def __enter__(self):
        self.peak = self.now()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


async def login(local: str, port: int) -> slixmpp.ClientXMPP:
    loop = asyncio.get_running_loop()
    x = slixmpp.ClientXMPP("%s@%s/bench" % (local, DOMAIN), PASSWORD, loop=loop)
    x.ssl_context.check_hostname = False
    x.ssl_context.verify_mode = ssl.CERT_NONE
    for p in ("xep_0030", "xep_0363"):
        x.register_plugin(p)
    started = loop.create_future()
    x.add_event_handler("session_start", lambda _: started.done() or started.set_result(True))
    x.add_event_handler("failed_all_auth", lambda _: started.done() or started.set_exception(
        RuntimeError("login of %s failed" % local)))
    x.connect("127.0.0.1", port)
    await asyncio.wait_for(started, 30)
    return x


def curl(args: list[str]) -> dict:
    """Runs curl; returns its -w numbers."""
    out = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w",
         "%{http_code} %{time_total} %{speed_upload} %{speed_download} %{size_download}"] + args,
        check=True, capture_output=True, text=True).stdout.split()
    return {"status": int(out[0]), "seconds": float(out[1]), "up": float(out[2]),
            "down": float(out[3]), "size": int(out[4])}


def socks5(host: str, port: int, dst: str) -> socket.socket:
    s = socket.create_connection((host, port))
    s.sendall(b"\x05\x01\x00")
    assert s.recv(2) == b"\x05\x00"
    s.sendall(b"\x05\x01\x00\x03" + bytes([len(dst)]) + dst.encode() + b"\x00\x00")
    reply = b""
    while len(reply) < 7 + len(dst):
        reply += s.recv(7 + len(dst) - len(reply))
    assert reply[1] == 0, reply
    return s


def pump(sender: socket.socket, receiver: socket.socket, total: int) -> float:
    """Sends `total` bytes one way; returns the seconds until the receiver has them all."""
    block = os.urandom(MB)
    got = 0

    def send():
        left = total
        while left > 0:
            n = min(left, len(block))
            sender.sendall(block[:n])
            left -= n
        sender.shutdown(socket.SHUT_WR)

    t = threading.Thread(target=send)
    start = time.perf_counter()
    t.start()
    buf = bytearray(4 * MB)
    view = memoryview(buf)
    while got < total:
        n = receiver.recv_into(view)
        if n == 0:
            break
        got += n
    elapsed = time.perf_counter() - start
    t.join()
    assert got == total, "the proxy relayed %d of %d bytes" % (got, total)
    return elapsed


async def run(args, server_pid: int, c2s: int, work: Path) -> list[tuple[str, str, str]]:
    rows = []
    alice = await login("alice", c2s)
    bob = await login("bob", c2s)
    rss = RssSampler(server_pid)
    idle_kb = rss.now()
    rows.append(("server RSS, idle (2 clients signed in)", "%.1f MB" % (idle_kb / 1024), ""))

    # --- HTTP upload and download --------------------------------------------------------
    size = args.upload_mb * MB
    path = work / "upload.bin"
    with open(path, "wb") as f:
        for _ in range(args.upload_mb):
            f.write(os.urandom(MB))
    iq = await alice.plugin["xep_0363"].request_slot(
        "upload." + DOMAIN, "upload.bin", size, "application/octet-stream", timeout=30)
    slot = iq["http_upload_slot"]
    headers = [h for hd in slot["put"]["headers"] for h in ("-H", "%s: %s" % (hd["name"], hd["value"]))]
    with RssSampler(server_pid) as up_rss:
        put = await asyncio.to_thread(curl, [
            "-X", "PUT", "-T", str(path), "-H", "Content-Type: application/octet-stream",
            "-H", "Expect:"] + headers + [slot["put"]["url"]])
    assert put["status"] == 201, put
    rows.append(("HTTP upload (PUT) of %d MB" % args.upload_mb,
                 "%.0f MB/s" % (put["up"] / MB), "%.2f s" % put["seconds"]))
    rows.append(("server RSS, peak during the upload", "%.1f MB" % (up_rss.peak / 1024),
                 "%d samples, +%.1f MB over idle" % (up_rss.samples, (up_rss.peak - idle_kb) / 1024)))
    with RssSampler(server_pid) as down_rss:
        get = await asyncio.to_thread(curl, [slot["get"]["url"]])
    assert get["status"] == 200 and get["size"] == size, get
    rows.append(("HTTP download (GET) of %d MB" % args.upload_mb,
                 "%.0f MB/s" % (get["down"] / MB), "%.2f s" % get["seconds"]))
    rows.append(("server RSS, peak during the download", "%.1f MB" % (down_rss.peak / 1024), ""))
    if args.verify:
        stored = work / "data" / "upload" / slot["get"]["url"].split("/")[-2]
        same = hashlib.sha256(stored.read_bytes()).digest() == hashlib.sha256(path.read_bytes()).digest()
        rows.append(("stored file identical to the upload", "yes" if same else "NO", ""))
    path.unlink()

    # --- SOCKS5 proxy --------------------------------------------------------------------
    host, port = "127.0.0.1", args.proxy_port
    sid = "bench"
    dst = hashlib.sha1((sid + str(alice.boundjid) + str(bob.boundjid)).encode()).hexdigest()
    target = await asyncio.to_thread(socks5, host, port, dst)
    initiator = await asyncio.to_thread(socks5, host, port, dst)
    act = alice.make_iq_set(ito="proxy." + DOMAIN)
    act.xml.append(activate_query(sid, str(bob.boundjid)))
    await act.send(timeout=30)
    total = args.proxy_mb * MB
    with RssSampler(server_pid) as proxy_rss:
        secs = await asyncio.to_thread(pump, initiator, target, total)
    rows.append(("SOCKS5 proxy relay of %d MB" % args.proxy_mb,
                 "%.0f MB/s" % (total / secs / MB), "%.2f s" % secs))
    rows.append(("server RSS, peak during the relay", "%.1f MB" % (proxy_rss.peak / 1024), ""))
    for s in (target, initiator):
        s.close()
    for x in (alice, bob):
        x.disconnect()
    return rows


def activate_query(sid: str, target: str) -> ET.Element:
    """XEP-0065 §6.3.5: the requester asks the proxy to start the stream."""
    q = ET.Element("{http://jabber.org/protocol/bytestreams}query", sid=sid)
    ET.SubElement(q, "{http://jabber.org/protocol/bytestreams}activate").text = target
    return q


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True, help="the rookery binary (a release build)")
    ap.add_argument("--upload-mb", type=int, default=1024)
    ap.add_argument("--proxy-mb", type=int, default=2048)
    ap.add_argument("--verify", action="store_true", help="compare the stored file with the upload")
    ap.add_argument("--server-cpu", default="0", help="taskset CPU list for the server ('' for none)")
    ap.add_argument("--client-cpu", default="1", help="taskset CPU list for this script and curl")
    args = ap.parse_args()
    if args.client_cpu:
        os.sched_setaffinity(0, {int(c) for c in args.client_cpu.split(",")})
    work = Path(tempfile.mkdtemp(prefix="rookery-bench-transfer-"))
    c2s, http = free_port(), free_port()
    args.proxy_port = free_port()
    cfg = work / "rookery.toml"
    cfg.write_text(f"""hosts = ["{DOMAIN}"]
data_dir = "{work / 'data'}"
[listen]
c2s = ["127.0.0.1:{c2s}"]
c2s_direct_tls = []
http = ["127.0.0.1:{http}"]
[modules.upload]
max_file_size = {args.upload_mb * MB}
quota_bytes = 0
daily_quota_bytes = 0
[modules.proxy65]
listen = "127.0.0.1:{args.proxy_port}"
max_transfer_bytes = 0
""")
    for u in ("alice", "bob"):
        subprocess.run([args.bin, "--config", str(cfg), "user", "add", "%s@%s" % (u, DOMAIN), PASSWORD],
                       check=True, capture_output=True)
    cmd = [args.bin, "--config", str(cfg), "serve"]
    if args.server_cpu:
        cmd = ["taskset", "-c", args.server_cpu] + cmd
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOKERY_")}
    log = open(work / "server.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", c2s), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    sys.exit("the server did not start; see %s" % (work / "server.log"))
                time.sleep(0.1)
        rows = asyncio.run(run(args, proc.pid, c2s, work))
    finally:
        proc.terminate()
        proc.wait(10)
    print("| measurement | result | notes |")
    print("|---|---|---|")
    for r in rows:
        print("| %s | %s | %s |" % r)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
